//! What subscribers do, measured: a tap on a CTA button of a published post goes through the
//! bot's signed redirect and is counted (once per client and window; tampered and unknown links
//! get 404 and count nothing), or, with deep links, opens the bot, which counts it with the
//! reader's Telegram id and answers with the real address; reaction counts arrive as Telegram
//! updates the bot asked for. All show up in the next report. The real teloxide client, axum server and redb store,
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

/// A bot on `setup` that has published [`due_post`] (post 1) to the channel.
fn with_published_post(setup: impl Fn() -> Setup) -> Bot {
    let mut bot = Bot::start(setup());
    bot.say(ADMIN, "/start");
    bot.restart_after(setup(), |store| {
        store.save_post(due_post()).unwrap();
    });
    bot.wait_for("the post published", || {
        bot.store().post(1).unwrap().is_some_and(|p| p.status == PostStatus::Published && !p.message_ids.is_empty())
    });
    bot
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
    let bot = with_published_post(tracked);
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
fn a_deep_link_click_opens_the_bot_counts_the_reader_once_and_answers_with_the_address() {
    let deep = || Setup { deep_links: true, ..Setup::default() };
    let mut bot = with_published_post(deep);
    let buttons = button_urls(bot.fake.channel_posts()[0].markup.as_ref().expect("buttons under the post"));
    assert_eq!(buttons[0].0, "Գնել", "the reader sees the same label");
    let start = format!("https://t.me/{}?start=", common::fake_telegram::BOT_USERNAME);
    let parameters: Vec<String> = buttons
        .iter()
        .map(|(_, url)| url.strip_prefix(&start).unwrap_or_else(|| panic!("a deep link: {url}")).to_string())
        .collect();
    for parameter in &parameters {
        // Telegram's rule for a start parameter.
        assert!(parameter.len() <= 64, "{parameter}");
        assert!(parameter.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{parameter}");
    }

    // A subscriber (no admin) taps «Գնել»: Telegram opens the bot and sends `/start <parameter>`.
    const READER: i64 = 777_000_111;
    let answer = bot.say(READER, &format!("/start {}", parameters[0]));
    assert_eq!(answer.len(), 1, "one answer: {answer:?}");
    assert!(answer[0].plain.contains("«Գնել»"), "{}", answer[0].plain);
    assert_eq!(
        button_urls(answer[0].markup.as_ref().expect("a button")),
        [("Գնել".to_string(), "https://shop.example/p/1?utm=tg".to_string())]
    );
    // Tapping again within the window: counted once, and the answer above is not repeated.
    assert!(bot.say(READER, &format!("/start {}", parameters[0])).is_empty());
    // The same reader's other button, and an admin's tap, count.
    let catalogue = bot.say(READER, &format!("/start {}", parameters[1]));
    assert_eq!(button_urls(catalogue[0].markup.as_ref().unwrap())[0].1, "https://shop.example/catalog");
    let admin = bot.say(ADMIN, &format!("/start {}", parameters[0]));
    assert!(admin[0].plain.contains("«Գնել»"), "an admin gets the link too, not the menu: {}", admin[0].plain);

    // A tampered link and a foreign one: a friendly answer (once a window), nothing counted.
    let mut tampered = parameters[0].clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    const STRANGER: i64 = 777_000_222;
    let refused = bot.say(STRANGER, &format!("/start {tampered}"));
    assert_eq!(refused.len(), 1);
    assert!(refused[0].plain.contains("հղումը չի գործում"), "{}", refused[0].plain);
    assert!(refused[0].markup.is_none());
    let foreign = postflow::http::ClickLinks::new("", b"another secret".to_vec()).token(1, 0);
    assert!(bot.say(STRANGER, &format!("/start c_{foreign}")).is_empty(), "one answer a window");
    // A plain /start from a stranger is still refused as before.
    let plain = bot.say(STRANGER, "/start");
    assert!(plain[0].plain.contains("ադմինիստրատորներին"), "{}", plain[0].plain);

    let clicks = bot.store().clicks().unwrap();
    let seen: Vec<(u8, Option<i64>)> = clicks.iter().map(|c| (c.button, c.user)).collect();
    assert_eq!(seen, [(0, Some(READER)), (1, Some(READER)), (0, Some(ADMIN))]);
    let frame = report(&bot, "clicks");
    let counts: Vec<u32> =
        (0..frame.height()).map(|i| frame.column("clicks").unwrap().u32().unwrap().get(i).unwrap()).collect();
    assert_eq!(counts, [2, 1], "the next report has them");
    let context = postflow::analytics::SourceContext { timezone: chrono_tz::Asia::Yerevan, channel_link: None };
    let readers = postflow::analytics::sources::load("clicks", bot.store(), &context).unwrap();
    let users: Vec<Option<i64>> = readers.column("user").unwrap().i64().unwrap().iter().collect();
    assert_eq!(users, [Some(READER), Some(READER), Some(ADMIN)], "the clicks source names the reader");

    // After a restart the window kept in memory is gone, but the same tap again within it (as
    // when Telegram delivers an update a second time) is found in the store: answered, not
    // counted twice.
    bot.restart(deep());
    let again = bot.say(READER, &format!("/start {}", parameters[0]));
    assert_eq!(again.len(), 1, "answered: {again:?}");
    assert_eq!(bot.store().clicks().unwrap().len(), 3);
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
