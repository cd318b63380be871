//! `postflow posts …` as an operator uses it: list, show, cancel, delete, publish (queued without
//! Telegram settings, published at once through the fake Bot API with them) and the scheduler's
//! plan with every recurring job's next fire times.

mod common;

use common::fake_telegram::{CHANNEL_NAME, FakeTelegram, TOKEN};
use postflow::store::{Post, PostStatus, Store};

fn posts(store: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["posts"];
    all.extend_from_slice(args);
    let output = common::postflow(store, &all).env_remove("BOT_TOKEN").env_remove("CHANNEL_ID").output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn seeded() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut draft = Post::draft("<b>Draft</b> one", 7, now);
    draft.format = Some("selling".into());
    store.save_post(draft).unwrap();
    let mut scheduled = Post::draft("Scheduled two", 7, now);
    scheduled.status = PostStatus::Scheduled;
    scheduled.publish_at = Some(now + 86_400);
    store.save_post(scheduled).unwrap();
    let mut published = Post::draft("Published three", 7, now);
    published.status = PostStatus::Published;
    published.published_at = Some(now);
    published.message_ids = vec![12];
    store.save_post(published).unwrap();
    store.save_post(Post::draft("Draft four", 7, now)).unwrap();
    (dir, path)
}

#[test]
fn list_show_cancel_and_delete() {
    let (_dir, path) = seeded();
    let (ok, out, _) = posts(&path, &["list"]);
    assert!(ok);
    for line in ["    1  draft       selling", "    2  scheduled", "    3  published"] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
    let (ok, out, _) = posts(&path, &["list", "--status", "scheduled"]);
    assert!(ok && out.contains("Scheduled two") && !out.contains("Draft one"), "{out}");
    let (ok, _, err) = posts(&path, &["list", "--status", "sent"]);
    assert!(!ok && err.contains("unknown status `sent`"), "{err}");
    let (ok, out, _) = posts(&path, &["show", "3"]);
    assert!(ok && out.contains("post 3 — published") && out.contains("messages:   [12]"), "{out}");
    let (ok, out, _) = posts(&path, &["cancel", "2"]);
    assert!(ok && out.contains("post 2 is cancelled"), "{out}");
    let (ok, _, err) = posts(&path, &["cancel", "1"]);
    assert!(!ok && err.contains("post 1 is draft and cannot be cancelled"), "{err}");
    let (ok, out, _) = posts(&path, &["delete", "1"]);
    assert!(ok && out.contains("post 1 deleted"), "{out}");
    let (ok, _, err) = posts(&path, &["delete", "3"]);
    assert!(!ok && err.contains("post 3 is published"), "{err}");
    let (ok, _, err) = posts(&path, &["show", "1"]);
    assert!(!ok && err.contains("there is no post 1"), "{err}");
}

#[test]
fn publish_queues_without_telegram_and_publishes_at_once_with_it() {
    let (_dir, path) = seeded();
    let (ok, out, _) = posts(&path, &["publish", "4"]);
    assert!(ok && out.contains("post 4 is queued"), "{out}");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let fake = rt.block_on(FakeTelegram::start());
    let output = common::postflow(&path, &["posts", "publish", "4"])
        .env("BOT_TOKEN", TOKEN)
        .env("TELEGRAM_API_URL", &fake.url)
        .env("CHANNEL_ID", format!("@{CHANNEL_NAME}"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}{}", String::from_utf8_lossy(&output.stderr));
    let channel = fake.channel_posts();
    assert_eq!(channel.len(), 1);
    assert_eq!(channel[0].plain, "Draft four");
    assert!(
        out.contains(&format!("post 4 is published: https://t.me/{CHANNEL_NAME}/{}", channel[0].message_id)),
        "{out}"
    );
    assert_eq!(Store::open(&path).unwrap().post(4).unwrap().unwrap().status, PostStatus::Published);
}

#[test]
fn schedule_shows_the_queue_and_every_jobs_next_fire_times() {
    let (_dir, path) = seeded();
    let (ok, out, _) = posts(&path, &["schedule", "--count", "2"]);
    assert!(ok, "{out}");
    assert!(out.contains("Posts due next (1 scheduled):") && out.contains("#2  Scheduled two"), "{out}");
    assert!(out.contains("weekly_status") && out.contains("[0 9 * * Mon, Asia/Yerevan]"), "{out}");
    assert!(out.contains("archive_drafts"), "{out}");
    let fire_lines = out.lines().filter(|l| l.starts_with("      20")).count();
    let jobs =
        out.lines().filter(|l| l.starts_with("  ") && l.contains(" — ") && l.contains(", Asia/Yerevan]")).count();
    assert_eq!(jobs, 8, "{out}");
    assert_eq!(fire_lines, 2 * jobs, "two fire times per job:\n{out}");
    assert!(out.contains("daily_report (disabled)"), "{out}");
}
