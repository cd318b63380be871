//! The full stack under load: the release `postflow run` binary (teloxide + engine + redb) against
//! the fake Bot API server in this process, with N simulated admins creating posts at a human
//! pace. The bot runs in its own process, so its CPU time and memory are measured apart from the
//! fake server's.
//!
//! `cargo bench --bench telegram_load` (env: ADMINS=50, SECONDS=60, THINK_MS=2000..4000,
//! WEBHOOK=1 for webhook mode instead of long polling, AI=fake to draft with the real OpenAI
//! client against the fake OpenAI-compatible server (MODEL_MS=800 of model latency) instead of
//! the offline generator). Diagnostics: BY_STEP=1 (latency per step), SLOW=1 (every reply over
//! 100 ms, with its admin, round and step), DUMP=1 (the chats where the per-chat pace held a reply
//! back).

#[path = "../tests/common/fake_openai.rs"]
mod fake_openai;
#[path = "../tests/common/fake_telegram.rs"]
mod fake_telegram;

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fake_telegram::{FakeTelegram, Output};

const FORMATS: [&str; 4] = ["Վաճառող փոստ", "Ընտրանի", "Տեղեկատվական", "Ակցիա/Զեղչ"];

/// One step of the create-post flow: what the admin does and which button must appear next.
enum Act {
    Say(&'static str),
    Press(&'static str),
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn proc_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User and system CPU time of a process, in milliseconds.
fn cpu_ms(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let (user, system): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    Some((user as f64 * 1000.0 / hz, system as f64 * 1000.0 / hz))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `ready` holds (checked whenever the bot calls the fake), or gives up after 30 s.
async fn until(fake: &FakeTelegram, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let activity = fake.activity();
        if ready() {
            return true;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), activity).await;
    }
    false
}

/// One simulated admin: creates posts until `stop`, returns each step's reply latency.
async fn admin(
    fake: FakeTelegram,
    user: i64,
    think: (u64, u64),
    stop: Arc<AtomicBool>,
) -> (Vec<(usize, Duration)>, usize) {
    let mut latencies = Vec::new();
    let mut lost = 0;
    let mut seed = user as u64 * 2_654_435_761;
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        let format = FORMATS[(user as usize + round) % FORMATS.len()];
        round += 1;
        let steps = [
            (Act::Say("📝 Նոր գրառում"), Some(format)),
            (Act::Press(format), None),
            (Act::Say("կաշվե պայուսակ, նոր հավաքածու, զեղչ"), Some("Բաց թողնել ⏭")),
            (Act::Press("Բաց թողնել ⏭"), Some("✅ Հաստատել")),
            (Act::Press("✅ Հաստատել"), Some("Առանց մեդիայի ⏭")),
            (Act::Press("Առանց մեդիայի ⏭"), Some("💾 Պահել սևագիր")),
            (Act::Press("💾 Պահել սևագիր"), None),
        ];
        for (index, (act, next_button)) in steps.into_iter().enumerate() {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let pause = think.0 + (seed >> 33) % (think.1 - think.0 + 1);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let sent = Instant::now();
            let update = match act {
                Act::Say(text) => fake.send_text(user, text),
                Act::Press(label) => match fake.press_label(user, label) {
                    Some(update) => update,
                    None => {
                        lost += 1;
                        break;
                    }
                },
            };
            let replied = until(&fake, || !fake.outputs_after(user, update).is_empty()).await;
            let first: Option<Output> = fake.outputs_after(user, update).into_iter().next();
            match (replied, first) {
                (true, Some(first)) => {
                    let latency = first.at.saturating_duration_since(sent);
                    if latency > Duration::from_millis(100) && std::env::var("SLOW").is_ok() {
                        println!("slow: user {user} round {round} step {index}: {latency:?}");
                    }
                    latencies.push((index, latency))
                }
                _ => {
                    lost += 1;
                    break;
                }
            }
            if let Some(label) = next_button
                && !until(&fake, || fake.find_button(user, label).is_some()).await
            {
                lost += 1;
                break;
            }
        }
    }
    (latencies, lost)
}

fn main() {
    let admins = env_or("ADMINS", 50) as i64;
    let seconds = env_or("SECONDS", 60);
    let think = std::env::var("THINK_MS")
        .ok()
        .and_then(|v| v.split_once("..").and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?))))
        .unwrap_or((2000, 4000));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let fake = rt.block_on(FakeTelegram::start());
    let dir = tempfile::tempdir().expect("temp dir");
    let users: Vec<i64> = (0..admins).map(|i| 10_000 + i).collect();
    let authorized: Vec<String> = users.iter().map(i64::to_string).collect();
    // WEBHOOK=1: the fake pushes updates to the bot's webhook instead of answering getUpdates.
    let webhook = std::env::var("WEBHOOK").is_ok_and(|v| v == "1");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_postflow"));
    command.arg("run").env_remove("OPENAI_API_KEY");
    // AI=fake: every draft comes from the fake OpenAI server, after MODEL_MS of "thinking".
    let model = (std::env::var("AI").is_ok_and(|v| v == "fake")).then(|| {
        let model = fake_openai::FakeOpenAi::start_in_thread();
        model.set_delay(Duration::from_millis(env_or("MODEL_MS", 800)));
        command
            .env("OPENAI_API_KEY", fake_openai::API_KEY)
            .env("OPENAI_BASE_URL", model.base_url())
            .env("OPENAI_MODEL", "test-model");
        model
    });
    if webhook {
        command.args(["--webhook-url", &format!("http://127.0.0.1:{port}/hook")]);
    }
    let bot = Kill(
        command
            .env("CONFIG_DIR", env!("CARGO_MANIFEST_DIR"))
            .env("DATABASE_URL", dir.path().join("load.redb"))
            .env("BOT_TOKEN", fake_telegram::TOKEN)
            .env("TELEGRAM_API_URL", &fake.url)
            .env("CHANNEL_ID", format!("@{}", fake_telegram::CHANNEL_NAME))
            .env("AUTHORIZED_USERS", authorized.join(","))
            .env("LOG_LEVEL", std::env::var("BOT_LOG").unwrap_or_else(|_| "error".into()))
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .spawn()
            .expect("postflow run"),
    );
    let pid = bot.0.id();
    let started = rt.block_on(until(&fake, || {
        if webhook { fake.webhook().is_some() } else { fake.calls().iter().any(|c| c.method == "getUpdates") }
    }));
    assert!(started, "the bot did not start taking updates");
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = proc_field(pid, "VmRSS:").unwrap_or(0);
    let cpu_before = cpu_ms(pid).unwrap_or_default();
    let calls_before = fake.calls().len();
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let tasks: Vec<_> = users.iter().map(|&user| rt.spawn(admin(fake.clone(), user, think, stop.clone()))).collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut lost = 0;
    for task in tasks {
        let (mut l, n) = rt.block_on(task).expect("admin task");
        latencies.append(&mut l);
        lost += n;
    }
    let elapsed = began.elapsed();
    let cpu_after = cpu_ms(pid).unwrap_or_default();
    let (user_ms, system_ms) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    let calls = fake.calls();
    let count =
        |methods: &[&str]| calls[calls_before..].iter().filter(|c| methods.contains(&c.method.as_str())).count();
    let sends = count(&["sendMessage", "sendPhoto", "sendVideo", "sendAnimation", "sendDocument", "sendMediaGroup"]);
    let edits = count(&["editMessageText"]);
    let polls = count(&["getUpdates"]);
    let peak_rss = proc_field(pid, "VmHWM:").unwrap_or(0);
    let mut by_step: Vec<Vec<Duration>> = vec![Vec::new(); 7];
    for (index, latency) in &latencies {
        by_step[*index].push(*latency);
    }
    let mut latencies: Vec<Duration> = latencies.into_iter().map(|(_, latency)| latency).collect();
    latencies.sort();
    let steps = latencies.len();
    if std::env::var("BY_STEP").is_ok() {
        for (index, mut step) in by_step.into_iter().enumerate() {
            step.sort();
            println!(
                "  step {index}: p50 {:.1} ms, p99 {:.1} ms",
                percentile(&step, 0.5).as_secs_f64() * 1e3,
                percentile(&step, 0.99).as_secs_f64() * 1e3
            );
        }
    }
    // DUMP=1: the chats where a reply followed the previous answer's last message within 1.3 s
    // (so the per-chat pace held it back), with times — for chasing a latency tail.
    if std::env::var("DUMP").is_ok() {
        let outputs = fake.outputs();
        let first = outputs.first().map(|o| o.at).unwrap_or_else(Instant::now);
        for &user in &users {
            let chat: Vec<&Output> = outputs.iter().filter(|o| o.chat_id == user).collect();
            let close = chat.windows(2).any(|w| {
                w[0].after_update != w[1].after_update && w[1].at.duration_since(w[0].at) < Duration::from_millis(1300)
            });
            if close {
                println!("chat {user}:");
                for output in &chat {
                    let text: String = output.plain.chars().take(40).collect();
                    let at = output.at.duration_since(first).as_secs_f64();
                    println!("  {at:>9.3} s  after update {}  {text:?}", output.after_update);
                }
            }
        }
    }
    let violations = fake.violations();
    println!(
        "{admins} admins ({}), think {}..{} ms, {:.0} s: {steps} steps, {:.1} steps/s",
        if webhook { "webhook" } else { "long polling" },
        think.0,
        think.1,
        elapsed.as_secs_f64(),
        steps as f64 / elapsed.as_secs_f64()
    );
    println!(
        "reply latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    let per_step = |n: usize| n as f64 / steps.max(1) as f64;
    println!(
        "per step: {:.2} messages sent, {:.2} edits, {:.2} getUpdates calls",
        per_step(sends),
        per_step(edits),
        per_step(polls)
    );
    println!(
        "bot process: {:.2} CPU-ms per step ({:.2} user + {:.2} system), idle RSS {:.1} MiB, peak RSS {:.1} MiB",
        (user_ms + system_ms) / steps.max(1) as f64,
        user_ms / steps.max(1) as f64,
        system_ms / steps.max(1) as f64,
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    println!("lost steps: {lost}; Telegram rule violations recorded by the fake: {}", violations.len());
    if let Some(model) = &model {
        println!("model requests: {} (each answered after {} ms)", model.completions().len(), env_or("MODEL_MS", 800));
    }
    for violation in violations.iter().take(5) {
        println!("  {violation}");
    }
}
