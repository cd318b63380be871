//! Resident memory of an idle `postflow chat` on the shipped configuration (Linux /proc).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_postflow"))
        .args(["chat", "--user", "1"])
        .env("CONFIG_DIR", env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", dir.path().join("idle.redb"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("postflow chat");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let _banner = lines.next();
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(child.id(), "VmRSS:");
    let (idle_anon, idle_file) = (rss_kib(child.id(), "RssAnon:"), rss_kib(child.id(), "RssFile:"));
    // One conversation turn, then idle again.
    writeln!(stdin, "/start").expect("write");
    stdin.flush().expect("flush");
    for line in lines.by_ref() {
        if line.map(|l| l.contains("menu:")).unwrap_or(true) {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after_turn = rss_kib(child.id(), "VmRSS:");
    let peak = rss_kib(child.id(), "VmHWM:");
    drop(stdin);
    let _ = child.wait();
    let mib = |k: Option<u64>| k.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "n/a".into());
    println!("idle chat RSS: {} at start, {} after /start, peak {}", mib(idle), mib(after_turn), mib(peak));
    println!(
        "  at start: {} anonymous (the process's own), {} file-backed (the binary's code and data read in)",
        mib(idle_anon),
        mib(idle_file)
    );
}
