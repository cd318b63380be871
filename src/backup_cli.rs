//! `postflow backup`, `restore`, `dump` and `load`: the store copied, replaced, and moved as JSON
//! between versions or machines.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::http::admin::{BACKUP_PATH, BackupAnswer, BackupRequest, admin_key};
use crate::settings::Settings;
use crate::store::StoreError;
use crate::store::backup::{self, Overwrite};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A path as the operator meant it, from the current folder.
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) })
}

/// `postflow backup FILE`: directly when no process holds the store, else through the running
/// bot's HTTP server.
pub fn backup(settings: &Settings, file: &Path) -> anyhow::Result<ExitCode> {
    let target = absolute(file)?;
    let store = settings.store_path();
    match backup::backup_file(&store, &target) {
        Ok(summary) => {
            println!("backed up {} to {}: {}", store.display(), target.display(), summary.describe());
            Ok(ExitCode::SUCCESS)
        }
        Err(StoreError::Locked(_)) => {
            let detail = backup_through_running_bot(settings, &target)?;
            println!("backed up {} (in use by the running bot) to {}: {detail}", store.display(), target.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Err(error.into()),
    }
}

/// Asks the bot on `HTTP_ADDR` to write the backup (it holds the store open).
fn backup_through_running_bot(settings: &Settings, target: &Path) -> anyhow::Result<String> {
    let in_use = || format!("the store {} is in use by another postflow process", settings.store_path().display());
    let Some(token) = &settings.bot_token else {
        anyhow::bail!("{}; to back it up while it runs, give this command the bot's BOT_TOKEN", in_use());
    };
    let url = crate::http::local_url(&settings.http_addr, BACKUP_PATH)
        .map_err(|problem| anyhow::anyhow!("{}, and {problem}", in_use()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answer = runtime.block_on(async {
        let client = crate::http::client(std::time::Duration::from_secs(600))?;
        let response = client
            .post(&url)
            .bearer_auth(admin_key(token.expose()))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&BackupRequest { file: target.to_path_buf() })?)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        anyhow::Ok((status, body))
    });
    let (status, body) = answer.map_err(|error| {
        anyhow::anyhow!(
            "{}, and the bot does not answer on {url} ({error:#}). Is it `postflow chat`? Stop it and try again; for `postflow run`, give this command its HTTP_ADDR",
            in_use()
        )
    })?;
    match serde_json::from_slice::<BackupAnswer>(&body) {
        Ok(BackupAnswer { ok: true, detail }) => Ok(detail),
        Ok(BackupAnswer { ok: false, detail }) => anyhow::bail!("the running bot refused the backup: {detail}"),
        Err(_) => anyhow::bail!("{url} answered {status}, not as postflow does: is another program on HTTP_ADDR?"),
    }
}

/// `postflow restore FILE [--force]`.
pub fn restore(settings: &Settings, file: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let store = settings.store_path();
    let overwrite = if force { Overwrite::KeepAside } else { Overwrite::Refuse };
    let replaced = backup::restore(file, &store, overwrite, now()).map_err(|error| explain_locked(error, "restore"))?;
    println!("restored {} from {}: {}", store.display(), file.display(), replaced.summary.describe());
    if let Some(aside) = replaced.kept_aside {
        println!("the store it replaced is kept as {}", aside.display());
    }
    opened_after(&store)
}

/// `postflow dump --format json [--out FILE|-]`.
pub fn dump(settings: &Settings, out: &str) -> anyhow::Result<ExitCode> {
    let store = settings.store_path();
    let (document, summary) = backup::dump_file(&store, now()).map_err(|error| match error {
        StoreError::Locked(path) => anyhow::anyhow!(
            "the store {} is in use by the running bot; take `postflow backup FILE` (works while it runs) and dump that: `postflow dump --database-url FILE`",
            path.display()
        ),
        other => other.into(),
    })?;
    let text = serde_json::to_string_pretty(&document)?;
    if out == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.write_all(b"\n")?;
    } else {
        let partial = format!("{out}.partial");
        std::fs::write(&partial, format!("{text}\n"))?;
        std::fs::rename(&partial, out)?;
    }
    eprintln!("dumped {}: {}", store.display(), summary.describe());
    Ok(ExitCode::SUCCESS)
}

/// `postflow load FILE|- [--force]`.
pub fn load(settings: &Settings, file: &str, force: bool) -> anyhow::Result<ExitCode> {
    let text = if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?
    };
    let document: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{file} is not JSON: {e}"))?;
    let store = settings.store_path();
    let overwrite = if force { Overwrite::KeepAside } else { Overwrite::Refuse };
    let replaced = backup::load(&document, &store, overwrite, now()).map_err(|error| explain_locked(error, "load"))?;
    println!("loaded {} into {}: {}", file, store.display(), replaced.summary.describe());
    if let Some(aside) = replaced.kept_aside {
        println!("the store it replaced is kept as {}", aside.display());
    }
    opened_after(&store)
}

fn explain_locked(error: StoreError, what: &str) -> anyhow::Error {
    match error {
        StoreError::Locked(path) => {
            anyhow::anyhow!("the store {} is in use by a running postflow; stop it before the {what}", path.display())
        }
        other => other.into(),
    }
}

/// Opens the new store once, as `run` would: an older schema is migrated (a copy taken first)
/// and the event log's segments are rebuilt.
fn opened_after(store: &Path) -> anyhow::Result<ExitCode> {
    let opened = crate::store::Store::open(store)?;
    println!("the store opens: schema {}", opened.schema_version()?);
    Ok(ExitCode::SUCCESS)
}
