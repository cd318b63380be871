//! The scheduler with 100,000 scheduled posts in the store: start-up time, memory, and how late
//! posts reach the channel when they fall due. The bot (`postflow::telegram::run`, the system
//! clock) and the fake Bot API run in this process with the channel's rate limit off on both
//! sides, so lateness is the scheduler's and the publisher's own (sleeping, claiming, sending,
//! recording), not Telegram's 20 a minute. The store is written by a child process first, so its
//! memory is not counted.
//!
//! `cargo bench --bench scheduler_load` (env: POSTS=100000, DUE=300 posts due during the run,
//! PER_SECOND=30 of them per second).

#[path = "../tests/common/fake_telegram.rs"]
mod fake_telegram;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fake_telegram::{FakeTelegram, TOKEN};
use postflow::store::{Post, PostStatus, Store, User};

const ADMIN: i64 = 1001;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Child mode: writes `posts` scheduled posts, `due` of them from `first_due` on, `per_second`
/// a second; the rest spread over the next year.
fn generate(path: &str, posts: u64, due: u64, per_second: u64, first_due: i64) {
    let store = Store::open(std::path::Path::new(path)).expect("store");
    store
        .touch_user(&User { id: ADMIN, username: None, name: Some("Admin".into()), last_active: first_due })
        .expect("user");
    let turn = store.begin_turn().expect("turn");
    for n in 0..posts {
        let mut post = Post::draft(format!("<b>Post {n}</b> with a little text"), ADMIN, first_due - 3600);
        post.status = PostStatus::Scheduled;
        post.publish_at = Some(if n < due {
            first_due + (n / per_second.max(1)) as i64
        } else {
            first_due + 3600 + (n as i64 * 313) % (365 * 86_400)
        });
        turn.save_post(post).expect("save");
    }
    turn.commit().expect("commit");
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--generate") {
        let field = |i: usize| args[at + i].parse::<i64>().expect("number");
        generate(&args[at + 1], field(2) as u64, field(3) as u64, field(4) as u64, field(5));
        return;
    }
    let posts = env_or("POSTS", 100_000);
    let due = env_or("DUE", 300).min(posts);
    let per_second = env_or("PER_SECOND", 30).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("scheduler.redb");
    // Far enough ahead for the generation and the start-up.
    let first_due = unix_ms() / 1000 + 20 + (posts / 10_000) as i64;
    let generated = Instant::now();
    let status = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--generate", path.to_str().expect("path")])
        .args([posts, due, per_second].map(|n| n.to_string()))
        .arg(first_due.to_string())
        .status()
        .expect("generate");
    assert!(status.success(), "the store generation failed");
    let store_mib = std::fs::metadata(&path).map_or(0, |m| m.len()) as f64 / (1024.0 * 1024.0);
    println!(
        "store: {posts} scheduled posts written in {:.1} s ({store_mib:.0} MiB file)",
        generated.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let fake = rt.block_on(FakeTelegram::start());
    fake.name_user(ADMIN, "Admin", None);
    fake.rate_limits_off();
    let rss_before = status_kib("VmRSS:");

    // Start-up: open the store, compile the configuration, connect, reconcile, plan the jobs,
    // and take the first updates.
    let started = Instant::now();
    let store = Store::open(&path).expect("open");
    let opened = started.elapsed();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = postflow::config::load(root, postflow::actions::CATALOGUE, chrono_tz::Asia::Yerevan);
    let bundle = Arc::new(loaded.result.unwrap_or_else(|_| panic!("the shipped configuration compiles")));
    let mut options = postflow::telegram::RunOptions::new(
        TOKEN.to_string(),
        &fake.url,
        format!("@{}", fake_telegram::CHANNEL_NAME),
        vec![ADMIN],
    );
    let unlimited = usize::MAX / 4;
    options.limits = postflow::telegram::pace::Limits {
        per_minute_in_channel: unlimited,
        per_second_overall: unlimited,
        ..postflow::telegram::pace::TELEGRAM
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    options.shutdown = Box::pin(async move {
        let _ = stopped.await;
    });
    let ai = Arc::new(postflow::ai::Ai::offline());
    let bot = rt.spawn(postflow::telegram::run(postflow::config::live::LiveBundle::new(bundle), store, ai, options));
    while !fake.calls().iter().any(|c| c.method == "getUpdates") {
        std::thread::sleep(Duration::from_millis(1));
    }
    let startup = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = status_kib("VmRSS:");
    println!(
        "start-up: {:.0} ms to polling ({:.0} ms of it opening the store); RSS {} before the bot, {} with it idle (+{})",
        startup.as_secs_f64() * 1000.0,
        opened.as_secs_f64() * 1000.0,
        mib(rss_before),
        mib(rss_idle),
        mib(rss_idle.saturating_sub(rss_before)),
    );

    // The due posts fall due; each one's lateness is its arrival at Telegram after its time.
    let base = (Instant::now(), unix_ms());
    let deadline = Instant::now() + Duration::from_secs(120 + due / 10);
    while fake.channel_posts().len() < due as usize {
        assert!(Instant::now() < deadline, "only {} of {due} posts arrived", fake.channel_posts().len());
        std::thread::sleep(Duration::from_millis(20));
    }
    let arrivals = fake.channel_posts();
    let mut lateness: Vec<i64> = arrivals
        .iter()
        .map(|output| {
            let n: i64 =
                output.plain.trim_start_matches("Post ").split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let publish_at = first_due + n / per_second as i64;
            let arrived = base.1 + output.at.saturating_duration_since(base.0).as_millis() as i64
                - base.0.saturating_duration_since(output.at).as_millis() as i64;
            arrived - publish_at * 1000
        })
        .collect();
    lateness.sort_unstable();
    let in_order = arrivals.windows(2).all(|w| {
        let n = |o: &fake_telegram::Output| {
            o.plain.trim_start_matches("Post ").split(' ').next().and_then(|n| n.parse::<u64>().ok())
        };
        n(&w[0]) < n(&w[1])
    });
    let peak = status_kib("VmHWM:");
    println!(
        "lateness of {due} posts ({per_second} due per second): p50 {} ms, p99 {} ms, max {} ms; in order: {in_order}",
        percentile(&lateness, 0.50),
        percentile(&lateness, 0.99),
        lateness.last().copied().unwrap_or(0),
    );
    println!("RSS after publishing: {} (peak {}, fake Bot API included)", mib(status_kib("VmRSS:")), mib(peak));
    let _ = stop.send(());
    let _ = rt.block_on(bot);
    let violations = fake.violations();
    assert!(violations.is_empty(), "{violations:#?}");
}
