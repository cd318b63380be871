//! Crash tests of publishing: the real `postflow run` process is killed with SIGKILL between
//! "sent to Telegram" and "recorded", and at random points of a publishing run, then started
//! again against the same fake Bot API and store. No post is lost and none is published twice
//! without an admin saying so: a post whose fate is unknown is put to the admins.

mod common;

use common::wait_until;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::fake_telegram::FakeTelegram;
use postflow::store::{Post, PostStatus, Store, User};

const ADMIN: i64 = 1001;

struct Running(Child);

impl Running {
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, and waits for the clean stop.
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "SIGTERM did not stop the bot");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(fake: &FakeTelegram, store: &std::path::Path) -> Running {
    let before = fake.calls().iter().filter(|c| c.method == "getUpdates").count();
    let child = Running(common::run_command(fake, store, ADMIN).spawn().unwrap());
    wait_until("the bot to poll", || fake.calls().iter().filter(|c| c.method == "getUpdates").count() > before);
    child
}

/// A store with posts due now and the admin known (admins who never wrote cannot be told).
fn store_with_due_posts(path: &std::path::Path, count: usize) {
    let store = Store::open(path).unwrap();
    let now = chrono::Utc::now().timestamp();
    store.touch_user(&User { id: ADMIN, username: None, name: Some("Admin".into()), last_active: now }).unwrap();
    for n in 1..=count {
        let mut post = Post::draft(format!("Crash post {n}"), ADMIN, now);
        post.status = PostStatus::Scheduled;
        post.publish_at = Some(now - 5);
        store.save_post(post).unwrap();
    }
}

fn channel_copies(fake: &FakeTelegram, n: usize) -> usize {
    fake.channel_posts().iter().filter(|o| o.plain == format!("Crash post {n}")).count()
}

fn told_unsure(fake: &FakeTelegram, id: u64) -> bool {
    fake.outputs().iter().any(|o| {
        o.chat_id == ADMIN && o.plain.contains(&format!("Գրառում №{id}-ը")) && o.plain.contains("ավարտը չհաստատվեց")
    })
}

#[test]
fn a_kill_between_sending_and_recording_asks_the_admins_and_never_posts_twice() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let fake = rt.block_on(FakeTelegram::start());
    // The admin has talked to the bot before (Telegram lets bots write only to such users).
    fake.name_user(ADMIN, "Admin", None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    store_with_due_posts(&path, 1);
    // Telegram carries the send out but the bot is killed before it hears back.
    fake.hold_channel_answers(Duration::from_secs(30));
    let bot = start(&fake, &path);
    wait_until("the post to reach the channel", || channel_copies(&fake, 1) == 1);
    bot.kill();
    fake.hold_channel_answers(Duration::ZERO);

    let bot = start(&fake, &path);
    wait_until("the admins to be asked", || told_unsure(&fake, 1));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(channel_copies(&fake, 1), 1, "not sent again on its own");
    let press = fake.press_label(ADMIN, "✅ Այն ալիքում է").unwrap();
    wait_until("the answer", || !fake.outputs_after(ADMIN, press).is_empty());
    bot.stop();
    let store = Store::open(&path).unwrap();
    let post = store.post(1).unwrap().unwrap();
    assert_eq!(post.status, PostStatus::Published);
    assert_eq!(channel_copies(&fake, 1), 1);
    assert!(fake.violations().is_empty(), "{:#?}", fake.violations());
}

#[test]
fn kills_at_random_points_lose_no_post_and_duplicate_none() {
    const POSTS: usize = 8;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let fake = rt.block_on(FakeTelegram::start());
    // The admin has talked to the bot before (Telegram lets bots write only to such users).
    fake.name_user(ADMIN, "Admin", None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    store_with_due_posts(&path, POSTS);
    // Each channel send takes a while, so kills land before, during and after sends.
    fake.hold_channel_answers(Duration::from_millis(150));
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64 | 1;
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..4 {
        let bot = start(&fake, &path);
        let delay = Duration::from_millis(50 + next() % 500);
        std::thread::sleep(delay);
        bot.kill();
        eprintln!("seed {seed}: round {round} killed after {delay:?}; channel has {}", fake.channel_posts().len());
    }
    fake.hold_channel_answers(Duration::ZERO);
    let bot = start(&fake, &path);
    // Let the last run publish what is left, then stop it cleanly and read the store.
    wait_until("the queue to drain", || {
        let settled = (1..=POSTS).filter(|n| channel_copies(&fake, *n) >= 1 || told_unsure(&fake, *n as u64)).count();
        settled == POSTS
    });
    std::thread::sleep(Duration::from_millis(300));
    bot.stop();
    let store = Store::open(&path).unwrap();
    for n in 1..=POSTS {
        let post = store.post(n as u64).unwrap().unwrap();
        let copies = channel_copies(&fake, n);
        assert!(copies <= 1, "seed {seed}: post {n} is in the channel {copies} times");
        match post.status {
            PostStatus::Published => {
                assert_eq!(copies, 1, "seed {seed}: post {n} recorded published but not in the channel")
            }
            PostStatus::Publishing => {
                assert!(told_unsure(&fake, n as u64), "seed {seed}: post {n} unsure and nobody asked")
            }
            other => panic!("seed {seed}: post {n} is {other:?}: lost"),
        }
    }
    assert!(fake.violations().is_empty(), "seed {seed}: {:#?}", fake.violations());
}
