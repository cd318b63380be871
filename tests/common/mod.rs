//! Helpers shared by the tests: the `postflow` binary, the fake Telegram Bot API and a bot
//! running against it.

#![allow(dead_code)]

pub mod bot;
pub mod fake_openai;
pub mod fake_telegram;

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
