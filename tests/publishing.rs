//! Publishing end to end: the real teloxide client, engine, scheduler and redb store against the
//! fake Bot API, on a clock the test moves. A post scheduled from Telegram appears in the
//! channel at its minute, once, exactly as previewed — also across restarts and downtime; what
//! a crash leaves half-done is put to the admins, never sent again silently.

mod common;

use std::time::Duration;

use common::bot::{Bot, Setup};
use common::fake_telegram::{ChannelRights, Output};
use postflow::config::bundle::MediaKind;
use postflow::engine::event::Media;
use postflow::engine::post_view::{Layout, LinkButton, PostOptions};
use postflow::store::{Post, PostStatus};
use postflow::telegram::pace::{Limits, TELEGRAM};

const ADMIN: i64 = 1001;
/// 2026-11-26 10:00 in Yerevan (UTC+4), the bot's clock at start.
const START: i64 = 1_795_672_800;
/// 2026-11-27 10:30 in Yerevan.
const TOMORROW_1030: i64 = 1_795_761_000;

fn no_violations(bot: &Bot) {
    let violations = bot.fake.violations();
    assert!(violations.is_empty(), "the bot broke Telegram's rules: {violations:#?}");
}

/// The parts of a message subscribers see: HTML, media files, buttons, link preview.
fn seen(output: &Output) -> serde_json::Value {
    serde_json::json!([output.html, output.media, output.markup, output.link_preview])
}

/// New selling post with a photo and a CTA button, up to its preview; returns the preview's
/// post messages (everything before the preview's own buttons).
fn to_preview_with_photo_and_button(bot: &Bot) -> Vec<Output> {
    bot.say(ADMIN, "📝 Նոր գրառում");
    bot.press(ADMIN, "Վաճառող փոստ");
    bot.say(ADMIN, "կաշվե պայուսակ, 20% զեղչ");
    bot.press(ADMIN, "Բաց թողնել ⏭");
    bot.press(ADMIN, "✅ Հաստատել");
    let id = bot.fake.send_media(ADMIN, "photo", "photo-bag");
    bot.wait(&[id]);
    bot.press(ADMIN, "🔗 Կոճակներ (0)");
    let refused = bot.say(ADMIN, "Պատվիրել - javascript:alert(1)");
    assert!(common::bot::plain(&refused).contains("Հղումը ճիշտ չէ"), "a bad address is refused in Armenian");
    bot.say(ADMIN, "Պատվիրել - https://shop.example/bag?ref=tg");
    let preview = bot.press(ADMIN, "⬅️ Նախադիտում");
    let at =
        preview.iter().position(|o| o.plain.contains("Այսպես գրառումը կտեսնեն")).expect("the preview's own message");
    preview[..at].to_vec()
}

#[test]
fn a_post_scheduled_from_telegram_appears_at_its_minute_once_exactly_as_previewed() {
    let bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    let preview = to_preview_with_photo_and_button(&bot);
    assert_eq!(preview.len(), 1, "a photo with a short caption and its button is one message");
    assert_eq!(preview[0].media, vec![("photo".to_string(), "photo-bag".to_string())]);
    bot.press(ADMIN, "📅 Պլանավորել");
    bot.say(ADMIN, "2026-11-27");
    let scheduled = common::bot::plain(&bot.say(ADMIN, "10:30"));
    assert!(scheduled.contains("կհրապարակվի 2026-11-27 10:30"), "{scheduled}");
    let post = bot.store().posts().unwrap().remove(0);
    assert_eq!((post.status, post.publish_at), (PostStatus::Scheduled, Some(TOMORROW_1030)));

    // A minute early: nothing.
    bot.clock.set(TOMORROW_1030 - 60);
    std::thread::sleep(Duration::from_millis(300));
    assert!(bot.fake.channel_posts().is_empty(), "nothing goes out early");
    // At its minute: out, once.
    bot.clock.set(TOMORROW_1030);
    bot.wait_for("the post in the channel", || !bot.fake.channel_posts().is_empty());
    bot.wait_for("the admin told", || {
        bot.fake.outputs().iter().any(|o| o.chat_id == ADMIN && o.plain.contains("հրապարակված է ալիքում"))
    });
    let channel = bot.fake.channel_posts();
    assert_eq!(channel.len(), 1);
    assert_eq!(seen(&channel[0]), seen(&preview[0]), "the channel got byte for byte what the admin approved");
    let post = bot.store().post(post.id).unwrap().unwrap();
    assert_eq!(post.status, PostStatus::Published);
    assert_eq!(post.message_ids, vec![channel[0].message_id]);
    assert_eq!(
        post.buttons,
        vec![LinkButton { label: "Պատվիրել".into(), url: "https://shop.example/bag?ref=tg".into() }]
    );
    let told = bot.fake.outputs().into_iter().rev().find(|o| o.chat_id == ADMIN).unwrap();
    assert!(told.plain.contains(&format!("https://t.me/time_2_shopping/{}", channel[0].message_id)), "{}", told.plain);
    // Later still: never again.
    bot.clock.set(TOMORROW_1030 + 3600);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bot.fake.channel_posts().len(), 1);
    no_violations(&bot);
}

#[test]
fn publish_now_from_the_preview_honours_silent_and_pin() {
    let bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    to_preview_with_photo_and_button(&bot);
    bot.press(ADMIN, "⚙️ Կարգավորումներ");
    bot.press(ADMIN, "🔔 Ձայնով ✅");
    bot.press(ADMIN, "📌 Չամրացնել ✅");
    let preview = bot.press(ADMIN, "⬅️ Նախադիտում");
    assert!(common::bot::plain(&preview).contains("🔕 Առանց ձայնի · 📌 Կամրացվի ալիքում"));
    bot.press(ADMIN, "🚀 Հրապարակել հիմա");
    let queued = common::bot::plain(&bot.press(ADMIN, "Այո, հրապարակել"));
    assert!(queued.contains("ուղարկվում է ալիք"), "{queued}");
    bot.wait_for("the post in the channel", || !bot.fake.channel_posts().is_empty());
    bot.wait_for("the pin", || !bot.fake.pinned().is_empty());
    let channel = bot.fake.channel_posts();
    assert!(channel[0].silent, "sent without a sound");
    assert_eq!(bot.fake.pinned(), vec![channel[0].message_id]);
    no_violations(&bot);
}

#[test]
fn a_restart_between_scheduling_and_the_due_time_publishes_once() {
    let mut bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    to_preview_with_photo_and_button(&bot);
    bot.press(ADMIN, "📅 Պլանավորել");
    bot.say(ADMIN, "2026-11-27");
    bot.say(ADMIN, "10:30");
    bot.restart(Setup::default());
    bot.clock.set(TOMORROW_1030 + 5);
    bot.wait_for("the post in the channel", || !bot.fake.channel_posts().is_empty());
    bot.restart(Setup::default());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bot.fake.channel_posts().len(), 1, "published once across restarts");
    no_violations(&bot);
}

/// A scheduled post written straight into the store.
fn scheduled(text: &str, at: i64) -> Post {
    let mut post = Post::draft(text, ADMIN, START);
    post.status = PostStatus::Scheduled;
    post.publish_at = Some(at);
    post
}

#[test]
fn missed_while_down_a_late_post_goes_out_with_a_note_and_an_old_one_is_held() {
    let mut bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    let (old, recent) = (TOMORROW_1030, TOMORROW_1030 + 6 * 3600);
    bot.restart_after(Setup::default(), |store| {
        store.save_post(scheduled("<b>Old</b> post", old)).unwrap();
        store.save_post(scheduled("<b>Recent</b> post", recent)).unwrap();
    });
    // The bot was down: it is back at 17:30, one hour after the recent post's time and seven
    // after the old one's (the grace window is six hours).
    let clock = bot.clock.clone();
    bot.restart_after(Setup::default(), |_| clock.set(recent + 3600));
    bot.wait_for("the recent post", || !bot.fake.channel_posts().is_empty());
    bot.wait_for("both notices", || {
        let text =
            common::bot::plain(&bot.fake.outputs().into_iter().filter(|o| o.chat_id == ADMIN).collect::<Vec<_>>());
        text.contains("ուշացումով") && text.contains("անցավ, երբ բոտը չէր աշխատում")
    });
    let channel = bot.fake.channel_posts();
    assert_eq!(channel.len(), 1);
    assert_eq!(channel[0].plain, "Recent post");
    let posts = bot.store().posts().unwrap();
    let old_post = posts.iter().find(|p| p.text.contains("Old")).unwrap();
    assert_eq!(old_post.status, PostStatus::Failed, "held, not published seven hours late");
    assert!(old_post.last_error.as_deref().unwrap_or_default().starts_with("missed"));
    // The held post's notice is on screen again once the late post's notice has been read.
    bot.wait_for("the held post's question shown again", || {
        bot.fake.outputs().iter().filter(|o| o.chat_id == ADMIN && o.plain.contains("Old post», ժամը")).count() == 2
    });
    let said = common::bot::plain(&bot.press(ADMIN, "🚀 Հրապարակել հիմա"));
    assert!(said.contains("Գրառում №1-ը կրկին ուղարկվում է ալիք"), "{said}");
    bot.wait_for("the old post", || bot.fake.channel_posts().len() == 2);
    assert_eq!(bot.fake.channel_posts()[1].plain, "Old post");
    no_violations(&bot);
}

#[test]
fn a_post_left_publishing_is_put_to_the_admins_and_never_sent_again_silently() {
    let mut bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    bot.restart_after(Setup::default(), |store| {
        let mut post = scheduled("<b>Half</b> sent", START - 60);
        post.status = PostStatus::Publishing;
        post.attempts = 1;
        store.save_post(post).unwrap();
    });
    bot.wait_for("the question", || bot.fake.find_button(ADMIN, "✅ Այն ալիքում է").is_some());
    std::thread::sleep(Duration::from_millis(200));
    assert!(bot.fake.channel_posts().is_empty(), "not sent again on its own");
    let said = bot.press(ADMIN, "✅ Այն ալիքում է");
    assert!(common::bot::plain(&said).contains("Նշված է որպես հրապարակված"));
    let post = bot.store().posts().unwrap().remove(0);
    assert_eq!(post.status, PostStatus::Published);
    assert!(bot.fake.channel_posts().is_empty());
    no_violations(&bot);
}

#[test]
fn a_final_failure_marks_the_post_failed_tells_the_admins_and_retry_publishes_it() {
    let bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    let rights = |can_post| ChannelRights { member: true, admin: true, can_post, can_edit: true, can_delete: true };
    bot.fake.set_channel_rights(Some(rights(false)));
    {
        let turn = bot.store().begin_turn().unwrap();
        turn.save_post(scheduled("Refused post", START)).unwrap();
        turn.commit().unwrap();
    }
    bot.wait_for("the failure notice", || bot.fake.find_button(ADMIN, "🔁 Կրկին փորձել").is_some());
    let post = bot.store().posts().unwrap().remove(0);
    assert_eq!(post.status, PostStatus::Failed);
    assert!(post.last_error.as_deref().unwrap_or_default().contains("administrator rights"), "{:?}", post.last_error);
    bot.fake.set_channel_rights(Some(rights(true)));
    bot.press(ADMIN, "🔁 Կրկին փորձել");
    bot.wait_for("the post in the channel", || bot.fake.channel_posts().len() == 1);
    bot.wait_for("published", || bot.store().posts().unwrap()[0].status == PostStatus::Published);
}

#[test]
fn a_hundred_posts_due_in_the_same_minute_all_go_out_in_order_within_the_channel_limit() {
    // Telegram's 20 a minute, with the minute shortened to a second on both sides.
    let limits = Limits { channel_window: Duration::from_secs(1), ..TELEGRAM };
    let mut bot = Bot::start(Setup { limits, ..Setup::default() });
    bot.fake.set_channel_limit(20, Duration::from_secs(1));
    bot.restart_after(Setup { limits, ..Setup::default() }, |store| {
        let turn = store.begin_turn().unwrap();
        for n in 1..=100 {
            turn.save_post(scheduled(&format!("Post {n}"), TOMORROW_1030)).unwrap();
        }
        turn.commit().unwrap();
    });
    bot.clock.set(TOMORROW_1030);
    bot.wait_for("a hundred posts", || bot.fake.channel_posts().len() == 100);
    let texts: Vec<String> = bot.fake.channel_posts().into_iter().map(|o| o.plain).collect();
    let expected: Vec<String> = (1..=100).map(|n| format!("Post {n}")).collect();
    assert_eq!(texts, expected, "all published, in order, none twice");
    bot.wait_for("all recorded as published", || {
        bot.store().posts_with_status(PostStatus::Published, 0, 1000).unwrap().total == 100
    });
    no_violations(&bot);
}

#[test]
fn every_layout_keeps_to_the_caption_limit_and_albums_carry_their_buttons_below() {
    let mut bot = Bot::start(Setup::default());
    for (id, kind) in [("p1", "photo"), ("p2", "photo"), ("v1", "video")] {
        bot.fake.know_file(id, kind);
    }
    let long = format!("<b>Long</b> {}", "բառ ".repeat(400));
    let button = vec![LinkButton { label: "Գնել".into(), url: "https://shop.example/x".into() }];
    let photo = Media::single(MediaKind::Photo, "p1");
    let album = Media {
        more: vec![postflow::engine::event::MediaFile { kind: MediaKind::Video, file_id: "v1".into() }],
        ..Media::single(MediaKind::Photo, "p2")
    };
    let post = |text: &str, media: Option<Media>, layout: Layout, link: Option<&str>| {
        let mut post = scheduled(text, START);
        post.media = media;
        post.buttons = button.clone();
        post.options = PostOptions { layout, link_url: link.map(str::to_string), ..PostOptions::default() };
        post
    };
    bot.restart_after(Setup::default(), |store| {
        store.save_post(post("Short caption", Some(photo.clone()), Layout::Caption, None)).unwrap();
        store.save_post(post(&long, Some(photo.clone()), Layout::Separate, None)).unwrap();
        store
            .save_post(post(&long, Some(photo.clone()), Layout::LinkPreview, Some("https://shop.example/item")))
            .unwrap();
        store.save_post(post("Album caption", Some(album.clone()), Layout::Caption, None)).unwrap();
        // A caption layout with a text too long for a caption is never sent as one.
        store.save_post(post(&long, Some(photo.clone()), Layout::Caption, None)).unwrap();
    });
    bot.wait_for("every post", || bot.store().posts_with_status(PostStatus::Published, 0, 10).unwrap().total == 5);
    let channel = bot.fake.channel_posts();
    let shape: Vec<(usize, bool, bool)> =
        channel.iter().map(|o| (o.media.len(), !o.plain.is_empty(), o.markup.is_some())).collect();
    assert_eq!(
        shape,
        vec![
            (1, true, true),   // photo, caption, button
            (1, false, false), // photo alone…
            (0, true, true),   // …then the text with the button
            (0, true, true),   // text with the page as a large preview above it
            (2, true, false),  // album with its caption…
            (0, true, true),   // …and the buttons on a follow-up
            (1, false, false), // too long for a caption: photo…
            (0, true, true),   // …then the text
        ]
    );
    let preview = channel[3].link_preview.clone().unwrap();
    assert_eq!(preview["url"], "https://shop.example/item");
    assert_eq!(preview["show_above_text"], true);
    assert_eq!(channel[5].plain, "👇 Ավելին՝");
    no_violations(&bot);
}

#[test]
fn cancelling_and_rescheduling_take_effect_before_the_post_is_due() {
    let mut bot = Bot::start(Setup::default());
    bot.restart_after(Setup::default(), |store| {
        store.save_post(scheduled("Moved", TOMORROW_1030)).unwrap();
        store.save_post(scheduled("Called off", TOMORROW_1030)).unwrap();
    });
    {
        let turn = bot.store().begin_turn().unwrap();
        let mut moved = turn.post(1).unwrap().unwrap();
        moved.publish_at = Some(TOMORROW_1030 + 3600);
        turn.save_post(moved).unwrap();
        let mut off = turn.post(2).unwrap().unwrap();
        off.status = PostStatus::Cancelled;
        turn.save_post(off).unwrap();
        turn.commit().unwrap();
    }
    bot.clock.set(TOMORROW_1030 + 60);
    std::thread::sleep(Duration::from_millis(300));
    assert!(bot.fake.channel_posts().is_empty());
    bot.clock.set(TOMORROW_1030 + 3600);
    bot.wait_for("the moved post", || bot.fake.channel_posts().len() == 1);
    assert_eq!(bot.fake.channel_posts()[0].plain, "Moved");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(bot.fake.channel_posts().len(), 1, "the cancelled post never goes out");
}

#[test]
fn a_published_post_is_edited_in_the_channel_and_deleted_from_it_within_48_hours() {
    let mut bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    bot.fake.know_file("p1", "photo");
    bot.restart_after(Setup::default(), |store| {
        let mut post = scheduled("<b>Sale</b> today", START);
        post.media = Some(Media::single(MediaKind::Photo, "p1"));
        post.buttons = vec![LinkButton { label: "Գնել".into(), url: "https://shop.example/x".into() }];
        store.save_post(post).unwrap();
    });
    bot.wait_for("the post in the channel", || bot.store().posts().unwrap()[0].status == PostStatus::Published);
    let message_id = bot.fake.channel_posts()[0].message_id;
    bot.say(ADMIN, "📅 Պլանավորված");
    bot.press(ADMIN, "✅ Հրապարակված");
    bot.press(ADMIN, "Sale today");
    bot.press(ADMIN, "✏️ Խմբագրել ալիքում");
    let refused = common::bot::plain(&bot.say(ADMIN, &"բառ ".repeat(300)));
    assert!(refused.contains("չի տեղավորվում"), "a caption over 1024 is refused: {refused}");
    bot.press(ADMIN, "⬅️ Ցանկ");
    bot.press(ADMIN, "Sale today");
    bot.press(ADMIN, "✏️ Խմբագրել ալիքում");
    bot.say(ADMIN, "<b>Sale</b> until Sunday");
    bot.wait_for("the edit", || bot.fake.channel_posts().iter().any(|o| o.edited && o.plain == "Sale until Sunday"));
    bot.wait_for("the admin told", || {
        bot.fake.outputs().iter().any(|o| o.chat_id == ADMIN && o.plain.contains("տեքստը ալիքում փոխված է"))
    });
    let edited = bot.fake.channel_posts().into_iter().rev().find(|o| o.edited).unwrap();
    assert_eq!(edited.message_id, message_id);
    assert!(edited.markup.is_some(), "the buttons stay");
    let post = bot.store().posts().unwrap().remove(0);
    assert_eq!(post.text, "<b>Sale</b> until Sunday");
    assert_eq!(post.revisions.last().map(|r| r.text.as_str()), Some("<b>Sale</b> today"));
    // Deleting: offered within 48 hours only.
    bot.say(ADMIN, "📅 Պլանավորված");
    bot.press(ADMIN, "✅ Հրապարակված");
    bot.press(ADMIN, "Sale until Sunday");
    bot.press(ADMIN, "🗑 Ջնջել ալիքից");
    bot.press(ADMIN, "Այո, ջնջել ալիքից");
    bot.wait_for("the deletion", || !bot.fake.has_message(common::fake_telegram::CHANNEL_ID, message_id));
    bot.wait_for("deleted", || bot.store().posts().unwrap()[0].status == PostStatus::Deleted);
    no_violations(&bot);
}

#[test]
fn after_48_hours_a_published_post_can_no_longer_be_deleted_from_the_channel() {
    let mut bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    bot.restart_after(Setup::default(), |store| {
        store.save_post(scheduled("Old news", START)).unwrap();
    });
    bot.wait_for("published", || bot.store().posts().unwrap()[0].status == PostStatus::Published);
    bot.clock.set(START + 49 * 3600);
    bot.say(ADMIN, "📅 Պլանավորված");
    bot.press(ADMIN, "✅ Հրապարակված");
    let shown = bot.press(ADMIN, "Old news");
    let labels: Vec<String> = shown.iter().flat_map(|o| o.inline_buttons()).map(|(label, _)| label).collect();
    assert!(labels.iter().any(|l| l == "✏️ Խմբագրել ալիքում"), "{labels:?}");
    assert!(!labels.iter().any(|l| l == "🗑 Ջնջել ալիքից"), "Telegram no longer allows it: {labels:?}");
}

#[test]
fn a_channel_send_that_ends_without_an_answer_is_put_to_the_admins_not_retried() {
    let bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    // The next call (the channel send) gets a 502: Telegram may or may not have posted it.
    bot.fake.set_faults(common::fake_telegram::Faults { server_errors: 1, ..Default::default() });
    {
        let turn = bot.store().begin_turn().unwrap();
        turn.save_post(scheduled("Maybe sent", START)).unwrap();
        turn.commit().unwrap();
    }
    bot.wait_for("the question", || bot.fake.find_button(ADMIN, "✅ Այն ալիքում է").is_some());
    let sends = bot
        .fake
        .calls()
        .iter()
        .filter(|c| c.method == "sendMessage" && c.chat_id == Some(common::fake_telegram::CHANNEL_ID))
        .count();
    assert_eq!(sends, 1, "one send, not retried");
    let post = bot.store().posts().unwrap().remove(0);
    assert_eq!(post.status, PostStatus::Publishing);
    // The admin looked: it is not in the channel.
    let said = common::bot::plain(&bot.press(ADMIN, "🔁 Հրապարակել կրկին"));
    assert!(said.contains("կրկին ուղարկվում"), "{said}");
    bot.wait_for("the post in the channel", || bot.fake.channel_posts().len() == 1);
    no_violations(&bot);
}
