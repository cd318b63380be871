//! postflow: a declarative workflow engine that runs a Telegram channel with AI-written posts.
//!
//! The core (`config`, `engine`) is pure; `store`, `actions`, `console` and `cli` are adapters.

pub mod actions;
pub mod ai;
pub mod analytics;
pub mod backup_cli;
pub mod cli;
pub mod config;
pub mod console;
pub mod conversation;
pub mod doctor;
pub mod driver;
pub mod engine;
pub mod export_cli;
pub mod http;
pub mod memory;
pub mod posts_cli;
pub mod reload;
pub mod scheduler;
pub mod settings;
pub mod store;
pub mod telegram;
pub mod telemetry;
pub mod vitals;
