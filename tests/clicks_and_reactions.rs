//! What subscribers do, measured: a tap on a CTA button of a published post goes through the
//! bot's signed redirect and is counted (once per client and window; tampered and unknown links
//! get 404 and count nothing), and reaction counts arrive as Telegram updates the bot asked
//! for. Both show up in the next report. The real teloxide client, axum server and redb store,
//! against the fake Bot API.

mod common;

use common::bot::{Bot, Setup};
use postflow::engine::post_view::LinkButton;
use postflow::store::{Post, PostStatus};

const ADMIN: i64 = 1001;
/// 2026-11-26 10:00 in Yerevan, the bot's clock at start.
const START: i64 = 1_795_672_800;

fn tracked() -> Setup {
    Setup { click_tracking: true, ..Setup::default() }
}

/// A post due half a minute ago with two CTA buttons: published as soon as the bot starts.
fn due_post() -> Post {
    let mut post = Post::draft("<b>Աշնանային զեղչեր</b>", ADMIN, START - 3600);
    post.title = "Աշնանային զեղչեր".to_string();
    post.format = Some("promo".to_string());
    post.status = PostStatus::Scheduled;
    post.publish_at = Some(START - 30);
    post.buttons = vec![
        LinkButton { label: "Գնել".into(), url: "https://shop.example/p/1?utm=tg".into() },
        LinkButton { label: "Կատալոգ".into(), url: "https://shop.example/catalog".into() },
    ];
    post
}

fn button_urls(markup: &serde_json::Value) -> Vec<(String, String)> {
    markup["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().into_iter().flatten())
        .map(|b| {
            (b["text"].as_str().unwrap_or_default().to_string(), b["url"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

struct Hit {
    status: u16,
    location: Option<String>,
}

fn get(bot: &Bot, url: &str, agent: &str) -> Hit {
    request(bot, reqwest::Method::GET, url, agent, None)
}

fn request(bot: &Bot, method: reqwest::Method, url: &str, agent: &str, forwarded: Option<&str>) -> Hit {
    bot.rt.block_on(async {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let mut request = client.request(method, url).header("user-agent", agent);
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        let response = request.send().await.unwrap();
        Hit {
            status: response.status().as_u16(),
            location: response.headers().get("location").map(|v| v.to_str().unwrap().to_string()),
        }
    })
}

fn report(bot: &Bot, id: &str) -> polars::prelude::DataFrame {
    bot.report_all(id, |report| report.frame.clone())
}

#[test]
fn a_click_on_a_cta_button_is_counted_once_and_shows_in_the_next_report() {
    let mut bot = Bot::start(tracked());
    bot.say(ADMIN, "/start");
    bot.restart_after(tracked(), |store| {
        store.save_post(due_post()).unwrap();
    });
    bot.wait_for("the post published", || {
        bot.store().post(1).unwrap().is_some_and(|p| p.status == PostStatus::Published && !p.message_ids.is_empty())
    });
    let channel = bot.fake.channel_posts();
    let buttons = button_urls(channel[0].markup.as_ref().expect("buttons under the post"));
    let base = bot.http_base.clone().unwrap();
    assert_eq!(buttons.len(), 2);
    assert_eq!(buttons[0].0, "Գնել", "the reader sees the same label");
    for (_, url) in &buttons {
        assert!(url.starts_with(&format!("{base}/r/")), "{url}");
        assert!(url.len() < base.len() + 3 + 30, "a short token: {url}");
    }

    let hit = get(&bot, &buttons[0].1, "phone A");
    assert_eq!((hit.status, hit.location.as_deref()), (302, Some("https://shop.example/p/1?utm=tg")));
    let again = get(&bot, &buttons[0].1, "phone A");
    assert_eq!(again.status, 302, "a repeat still goes through");
    let other_client = get(&bot, &buttons[0].1, "phone B");
    assert_eq!(other_client.status, 302);
    let catalogue = get(&bot, &buttons[1].1, "phone A");
    assert_eq!(catalogue.location.as_deref(), Some("https://shop.example/catalog"));

    // A tampered token, a token of another bot, and nonsense: 404, nothing counted.
    let mut tampered = buttons[0].1.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(get(&bot, &tampered, "phone C").status, 404);
    let foreign = postflow::http::ClickLinks::new(&base, b"another secret".to_vec()).url(1, 0);
    assert_eq!(get(&bot, &foreign, "phone C").status, 404);
    assert_eq!(get(&bot, &format!("{base}/r/nonsense"), "phone C").status, 404);

    // A link checker's HEAD is not a reader.
    assert_eq!(request(&bot, reqwest::Method::HEAD, &buttons[1].1, "checker", None).status, 302);
    // Behind a proxy on this machine the client is the address the proxy added last.
    let proxied = |chain: &str| request(&bot, reqwest::Method::GET, &buttons[1].1, "phone D", Some(chain)).status;
    assert_eq!(proxied("10.0.0.7"), 302);
    assert_eq!(proxied("1.2.3.4, 10.0.0.7"), 302, "a forged first address is not a new client");

    let clicks = bot.store().clicks().unwrap();
    assert_eq!(clicks.len(), 4, "phone A's repeat within the window counted once: {clicks:?}");
    assert_eq!(clicks.iter().filter(|c| c.button == 0).count(), 2);

    let frame = report(&bot, "clicks");
    let labels: Vec<String> = (0..frame.height())
        .map(|i| frame.column("label").unwrap().str().unwrap().get(i).unwrap_or_default().to_string())
        .collect();
    assert_eq!(labels, ["Գնել", "Կատալոգ"]);
    let counts: Vec<u32> =
        (0..frame.height()).map(|i| frame.column("clicks").unwrap().u32().unwrap().get(i).unwrap()).collect();
    assert_eq!(counts, [2, 2]);
    let top = report(&bot, "top_posts");
    assert_eq!(top.column("clicks").unwrap().u32().unwrap().get(0), Some(4));
}

#[test]
fn without_a_public_base_url_buttons_link_directly() {
    let mut bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    bot.restart_after(Setup::default(), |store| {
        store.save_post(due_post()).unwrap();
    });
    bot.wait_for("the post in the channel", || !bot.fake.channel_posts().is_empty());
    let buttons = button_urls(bot.fake.channel_posts()[0].markup.as_ref().unwrap());
    assert_eq!(buttons[0].1, "https://shop.example/p/1?utm=tg");
}

#[test]
fn reaction_counts_from_telegram_are_kept_per_post_and_reported() {
    let mut bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    bot.restart_after(Setup::default(), |store| {
        store.save_post(due_post()).unwrap();
    });
    // Recorded as published with its message id (Telegram counts reactions seconds later).
    bot.wait_for("the post published", || {
        bot.store().post(1).unwrap().is_some_and(|p| p.status == PostStatus::Published && !p.message_ids.is_empty())
    });
    let message_id = bot.fake.channel_posts()[0].message_id;
    let asked = bot.fake.allowed_updates().unwrap_or_default();
    assert!(asked.iter().any(|k| k == "message_reaction_count"), "the bot asks for reaction counts: {asked:?}");

    bot.fake.react(message_id, &[("👍", 5), ("🔥", 2)]);
    bot.fake.react(9999, &[("👍", 50)]);
    bot.wait_for("the counts", || bot.store().reactions().unwrap().len() == 2);
    bot.fake.react(message_id, &[("👍", 6)]);
    bot.wait_for("the new counts", || {
        let reactions = bot.store().reactions().unwrap();
        reactions.len() == 1 && reactions[0].count == 6
    });
    let reactions = bot.store().reactions().unwrap();
    assert_eq!((reactions[0].reaction.as_str(), reactions[0].post), ("👍", 1), "🔥 went to zero; 9999 is no post");

    let top = report(&bot, "top_posts");
    assert_eq!(
        top.column("reactions").unwrap().cast(&polars::prelude::DataType::Int64).unwrap().i64().unwrap().get(0),
        Some(6)
    );
}
