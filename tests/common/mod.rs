//! Helpers shared by the tests: the `postflow` binary, the fake Telegram Bot API and a bot
//! running against it.

#![allow(dead_code)]

pub mod analytics_fixture;
pub mod bot;
pub mod fake_openai;
pub mod fake_telegram;
pub mod shipped_config;

#[allow(unused_imports)] // Not every test binary copies the configuration.
pub use shipped_config::copy_shipped_config;

use std::path::Path;
use std::process::Command;

/// `postflow ARGS` on the shipped configuration and the given store, with no API key.
pub fn postflow(store: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_postflow"));
    command
        .args(args)
        .env("CONFIG_DIR", env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", store)
        .env_remove("OPENAI_API_KEY");
    command
}

/// Waits (up to a minute: a guard against hangs, not a timing test) until `ready` holds.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `postflow run` against the fake Bot API, as an operator would start it, for the admin `admin`.
pub fn run_command(fake: &fake_telegram::FakeTelegram, store: &Path, admin: i64) -> Command {
    let mut command = postflow(store, &["run"]);
    // Away from the repository, so a developer's `.env` cannot change the settings.
    command
        .current_dir(store.parent().unwrap_or(store))
        .env("BOT_TOKEN", fake_telegram::TOKEN)
        .env("TELEGRAM_API_URL", &fake.url)
        .env("CHANNEL_ID", format!("@{}", fake_telegram::CHANNEL_NAME))
        .env("AUTHORIZED_USERS", admin.to_string())
        .env("LOG_LEVEL", "warn")
        .env_remove("WEBHOOK_URL")
        .env("HTTP_ADDR", free_local_addr());
    command
}

/// A loopback address with a port nothing listens on now (health and metrics of a bot under
/// test; tests run side by side, so never the default port).
pub fn free_local_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").to_string()
}
