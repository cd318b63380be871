//! Operator requests to the running bot, from `postflow` commands on the same machine: a backup
//! of the store it holds open. Only loopback clients that know the bot token may ask.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::Store;

/// The path the backup request goes to.
pub const BACKUP_PATH: &str = "/admin/backup";

/// What the admin routes need.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    /// [`admin_key`] of the bot token.
    pub key: String,
}

/// The bearer key for admin requests: derived from the bot token, so a command with the same
/// settings can ask and nobody else can (the token itself never travels).
pub fn admin_key(bot_token: &str) -> String {
    let digest = Sha256::digest(format!("postflow admin requests\n{bot_token}").as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A backup request: where the bot writes the file (an absolute path on its machine).
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupRequest {
    pub file: PathBuf,
}

/// The answer to a backup request.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupAnswer {
    pub ok: bool,
    /// What the backup holds, or why there is none.
    pub detail: String,
}

pub fn routes(state: AdminState) -> Router {
    Router::new().route(BACKUP_PATH, post(backup)).with_state(state)
}

async fn backup(
    State(state): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let refuse =
        |status: StatusCode, detail: String| (status, axum::Json(BackupAnswer { ok: false, detail })).into_response();
    if !peer.ip().is_loopback() {
        tracing::warn!(peer = %peer, "an admin request from another machine was refused");
        return refuse(
            StatusCode::FORBIDDEN,
            "admin requests are taken from loopback only: run the command on the bot's machine, with HTTP_ADDR on 127.0.0.1 or 0.0.0.0".into(),
        );
    }
    let offered =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compared as digests: the time taken says nothing about how much of the key matched.
    let matches = offered.is_some_and(|key| Sha256::digest(key.as_bytes()) == Sha256::digest(state.key.as_bytes()));
    if !matches {
        tracing::warn!("an admin request with a wrong key was refused");
        return refuse(StatusCode::UNAUTHORIZED, "wrong admin key: use the bot's own BOT_TOKEN".into());
    }
    let request: BackupRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return refuse(StatusCode::BAD_REQUEST, format!("not a backup request: {error}")),
    };
    if !request.file.is_absolute() {
        return refuse(StatusCode::BAD_REQUEST, "give the backup file as an absolute path".into());
    }
    let store = state.store.clone();
    let file = request.file.clone();
    match tokio::task::spawn_blocking(move || store.backup_to(&file)).await {
        Ok(Ok(summary)) => {
            tracing::info!(file = %request.file.display(), "backup written: {}", summary.describe());
            (StatusCode::OK, axum::Json(BackupAnswer { ok: true, detail: summary.describe() })).into_response()
        }
        Ok(Err(error)) => refuse(StatusCode::CONFLICT, error.to_string()),
        Err(error) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("the backup failed: {error}")),
    }
}
