//! Analytics in Telegram: the 📊 menu shows reports as tables and switches periods, sends any
//! report as a CSV document (UTF-8 with BOM) through a real upload, and scheduled jobs send the
//! weekly summary, the monthly CSV and read the member count — the same pipelines as
//! `postflow export`. The real teloxide client against the fake Bot API, on a clock the test moves.

mod common;

use std::io::Cursor;

use common::bot::{Bot, Setup};
use polars::prelude::*;
use postflow::analytics::{self, FileFormat};

const ADMIN: i64 = 1001;
/// Friday 2026-11-27 08:00 in Yerevan: the daily member count.
const FRIDAY_0800: i64 = 1_795_752_000;
/// Monday 2026-11-30 09:05 in Yerevan: the weekly report's time.
const MONDAY_0905: i64 = 1_796_015_100;
/// Tuesday 2026-12-01 09:10 in Yerevan: the monthly export's time.
const DECEMBER_1: i64 = 1_796_101_800;

fn with_fixture() -> Bot {
    let mut bot = Bot::start(Setup::default());
    bot.say(ADMIN, "/start");
    bot.restart_after(Setup::default(), |store| {
        common::analytics_fixture::generate(store, 40, 240);
    });
    bot
}

fn read_csv(bytes: &[u8]) -> DataFrame {
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "a BOM for Excel");
    CsvReadOptions::default()
        .with_has_header(true)
        .into_reader_with_file_handle(Cursor::new(bytes[3..].to_vec()))
        .finish()
        .unwrap()
}

#[test]
fn the_stats_menu_shows_reports_switches_periods_and_sends_files() {
    let bot = with_fixture();
    let shown = common::bot::plain(&bot.say(ADMIN, "📊 Վիճակագրություն"));
    assert!(shown.contains("📊 Ամփոփում"), "{shown}");
    assert!(shown.contains("Այս շաբաթ (2026-11-23 — 2026-11-29)"), "{shown}");
    assert!(shown.contains("Ստեղծված գրառումներ"), "{shown}");

    let all = common::bot::plain(&bot.press(ADMIN, "Ամբողջը"));
    assert!(all.contains("Ամբողջ ժամանակը"), "{all}");
    let created = all.lines().find(|l| l.starts_with("Ստեղծված գրառումներ")).unwrap_or_default();
    assert!(created.ends_with(" 40"), "all forty posts: {all}");

    let top = common::bot::plain(&bot.press(ADMIN, "🏆 Լավագույնները"));
    assert!(top.contains("Լավագույն գրառումներ"), "{top}");

    bot.press(ADMIN, "📥 Արտահանել");
    let sent = bot.press(ADMIN, "📄 Այս հաշվետվությունը (CSV)");
    let uploads = bot.fake.uploads();
    assert_eq!(uploads.len(), 1, "{sent:?}");
    assert_eq!((uploads[0].kind.as_str(), uploads[0].file_name.as_str()), ("document", "top_posts.csv"));
    let frame = read_csv(&uploads[0].data);
    assert_eq!(frame.height(), 10);
    assert_eq!(frame.get_column_names()[1].as_str(), "Գրառում");
    assert!(common::bot::plain(&sent).contains("Լավագույն գրառումներ · 10 տող"));

    // The same file as `postflow export` makes from the same store.
    let expected = bot.report_all("top_posts", |report| {
        analytics::sinks::to_bytes(report.pipeline, &report.frame, FileFormat::Csv).unwrap()
    });
    assert_eq!(uploads[0].data, expected);

    bot.press(ADMIN, "📥 Արտահանել");
    bot.press(ADMIN, "🗂 Բոլոր գրառումները (CSV)");
    let uploads = bot.fake.uploads();
    assert_eq!(uploads.len(), 2);
    assert_eq!(read_csv(&uploads[1].data).height(), 40);

    // The subscribers' trend as a chart: a PNG photo.
    let trend = common::bot::plain(&bot.press(ADMIN, "👥 Բաժանորդներ"));
    assert!(trend.contains("Բաժանորդների դինամիկա"), "{trend}");
    let sent = common::bot::plain(&bot.press(ADMIN, "📈 Գրաֆիկ"));
    assert!(sent.contains("📈 Բաժանորդների դինամիկա"), "{sent}");
    let uploads = bot.fake.uploads();
    let chart = uploads.last().unwrap();
    assert_eq!(chart.kind, "photo");
    assert_eq!(&chart.data[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(u32::from_be_bytes(chart.data[16..20].try_into().unwrap()), 1000, "width");
    let violations = bot.fake.violations();
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn scheduled_reports_reach_the_admins_and_the_member_count_is_read_daily() {
    let bot = with_fixture();
    bot.fake.set_members(1777);
    bot.clock.set(FRIDAY_0800);
    bot.wait_for("the member count", || bot.store().subscribers().unwrap().iter().any(|(_, m)| *m == 1777));
    bot.clock.set(MONDAY_0905);
    bot.wait_for("the weekly report", || {
        bot.fake
            .outputs()
            .iter()
            .any(|o| o.chat_id == ADMIN && o.plain.contains("📬 Ամփոփում (2026-11-23 — 2026-11-29)"))
    });
    bot.clock.set(DECEMBER_1);
    bot.wait_for("the monthly file", || !bot.fake.uploads().is_empty());
    let upload = &bot.fake.uploads()[0];
    assert_eq!(upload.file_name, "posts_2026-11-01_2026-11-30.csv");
    let frame = read_csv(&upload.data);
    // Posts created in November: the fixture's posts from day 31 to 59 of its 60 days.
    assert!(frame.height() > 10 && frame.height() < 30, "{}", frame.height());
    let violations = bot.fake.violations();
    assert!(violations.is_empty(), "{violations:#?}");
}
