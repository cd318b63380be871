//! Recurring jobs (`kind: schedule` files) in `postflow run`, on a clock the test moves: they fire
//! at their time, once — also across a restart — and a fire missed while the bot was down runs
//! once when it is back.

mod common;

use std::time::Duration;

use common::bot::{Bot, Setup};
use postflow::store::{Post, PostStatus};

const ADMIN: i64 = 1001;
/// 2026-11-26 10:00 in Yerevan, the bot's clock at start (a Thursday).
const START: i64 = 1_795_672_800;
/// Monday 2026-11-30 09:00 in Yerevan: the weekly summary's time.
const MONDAY: i64 = 1_796_014_800;
/// Monday 2026-12-07 10:00 in Yerevan: an hour after the next summary's time.
const NEXT_MONDAY_LATE: i64 = 1_796_623_200;
/// 2026-11-27 03:30 in Yerevan: the nightly archiving of old drafts.
const NIGHT: i64 = 1_795_735_800;

fn summaries(bot: &Bot) -> usize {
    bot.fake.outputs().iter().filter(|o| o.chat_id == ADMIN && o.plain.contains("շաբաթական ամփոփում")).count()
}

#[test]
fn the_weekly_summary_reaches_the_admins_once_even_across_restarts_and_downtime() {
    let mut bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    bot.clock.set(MONDAY - 60);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(summaries(&bot), 0, "not before its time");
    bot.clock.set(MONDAY);
    bot.wait_for("the summary", || summaries(&bot) == 1);
    let text = common::bot::plain(&bot.fake.outputs().into_iter().filter(|o| o.chat_id == ADMIN).collect::<Vec<_>>());
    assert!(text.contains("Հերթում՝ 0 գրառում"), "{text}");
    bot.restart(Setup::default());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(summaries(&bot), 1, "a restart does not repeat a fire");
    // Down over the next Monday morning; back an hour late: it runs once, now.
    let clock = bot.clock.clone();
    bot.restart_after(Setup::default(), |_| clock.set(NEXT_MONDAY_LATE));
    bot.wait_for("the missed summary", || summaries(&bot) == 2);
    bot.restart(Setup::default());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(summaries(&bot), 2);
    let violations = bot.fake.violations();
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn drafts_nobody_touched_for_sixty_days_are_archived_at_night() {
    let mut bot = Bot::start(Setup::default());
    bot.restart_after(Setup::default(), |store| {
        store.save_post(Post::draft("Old idea", ADMIN, START - 61 * 86_400)).unwrap();
        store.save_post(Post::draft("Fresh idea", ADMIN, START - 86_400)).unwrap();
    });
    bot.clock.set(NIGHT);
    bot.wait_for("the old draft archived", || {
        bot.store().post(1).unwrap().is_some_and(|p| p.status == PostStatus::Cancelled)
    });
    let old = bot.store().post(1).unwrap().unwrap();
    assert_eq!(old.last_error.as_deref(), Some("archived: untouched for 60 days"));
    assert_eq!(bot.store().post(2).unwrap().unwrap().status, PostStatus::Draft);
}

/// 2026-12-03 04:00 in Yerevan: readers are forgotten from old clicks.
const THIRD_OF_DECEMBER: i64 = 1_796_256_000;

#[test]
fn deep_link_readers_are_forgotten_from_clicks_older_than_ninety_days() {
    use postflow::store::Click;
    let mut bot = Bot::start(Setup::default());
    let day = 86_400;
    bot.restart_after(Setup::default(), |store| {
        store.record_click(Click { at: START - 100 * day, post: 1, button: 0, user: Some(555) }).unwrap();
        store.record_click(Click { at: START - 100 * day, post: 1, button: 1, user: None }).unwrap();
        store.record_click(Click { at: START - 10 * day, post: 1, button: 0, user: Some(556) }).unwrap();
    });
    bot.clock.set(THIRD_OF_DECEMBER - 60);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bot.store().clicks().unwrap()[0].user, Some(555), "not before its time");
    bot.clock.set(THIRD_OF_DECEMBER);
    bot.wait_for("the old reader forgotten", || bot.store().clicks().unwrap()[0].user.is_none());
    let clicks = bot.store().clicks().unwrap();
    let seen: Vec<(u8, Option<i64>)> = clicks.iter().map(|c| (c.button, c.user)).collect();
    assert_eq!(seen, [(0, None), (1, None), (0, Some(556))], "the clicks stay; the recent reader too");
}
