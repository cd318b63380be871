//! `/healthz` (the process answers), `/readyz` (its parts work: store, Telegram, scheduler,
//! configuration) and `/metrics` (Prometheus text format).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::config::live::LiveBundle;
use crate::store::Store;
use crate::vitals::{SCHEDULER_STALE_SECS, TELEGRAM_STALE_SECS, Vitals};

/// What the health routes look at.
#[derive(Clone)]
pub struct HealthState {
    pub vitals: Arc<Vitals>,
    pub store: Store,
    pub live: Arc<LiveBundle>,
    /// The process's metrics recorder, if it keeps metrics.
    pub metrics: Option<PrometheusHandle>,
}

/// One readiness check and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The health routes.
pub fn routes(state: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n").into_response()
}

async fn readyz(State(state): State<HealthState>) -> Response {
    let checks = match tokio::task::spawn_blocking(move || readiness(&state)).await {
        Ok(checks) => checks,
        Err(error) => vec![Check { name: "health", ok: false, detail: format!("the check itself failed: {error}") }],
    };
    let ready = checks.iter().all(|check| check.ok);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(serde_json::json!({ "ready": ready, "checks": checks }))).into_response()
}

async fn metrics(State(state): State<HealthState>) -> Response {
    match state.metrics {
        Some(handle) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "this process keeps no metrics\n").into_response(),
    }
}

/// Every readiness check, in a fixed order (reads the store: call it off the async threads).
pub fn readiness(state: &HealthState) -> Vec<Check> {
    let now = state.vitals.now();
    vec![store_check(&state.store), telegram_check(&state.vitals, now), scheduler_check(&state.vitals, now), {
        let (version, bundle) = state.live.snapshot();
        Check { name: "config", ok: true, detail: format!("version {version}: {}", bundle.summary()) }
    }]
}

fn store_check(store: &Store) -> Check {
    let path = store.path();
    // redb keeps writing to a file that was deleted under it; all of it is gone at the restart.
    if !path.exists() {
        return Check {
            name: "store",
            ok: false,
            detail: format!(
                "the store file {} is gone (a lost volume?): what is written now is lost at the next restart",
                path.display()
            ),
        };
    }
    match store.schema_version() {
        Ok(version) => Check { name: "store", ok: true, detail: format!("{} (schema {version})", path.display()) },
        Err(error) => Check { name: "store", ok: false, detail: format!("{}: {error}", path.display()) },
    }
}

fn telegram_check(vitals: &Vitals, now: i64) -> Check {
    let (ok, detail) = match vitals.telegram_ok_at() {
        None => (false, "no answer from Telegram yet".to_string()),
        Some(at) if now - at > TELEGRAM_STALE_SECS => (false, format!("no answer from Telegram for {} s", now - at)),
        Some(at) => (true, format!("last answer {} s ago", (now - at).max(0))),
    };
    Check { name: "telegram", ok, detail }
}

fn scheduler_check(vitals: &Vitals, now: i64) -> Check {
    let (ok, detail) = match vitals.scheduler() {
        (false, None) => (false, "the scheduler has not started".to_string()),
        (false, Some(_)) => (false, "the scheduler has stopped: nothing will be published".to_string()),
        (true, Some(at)) if now - at > SCHEDULER_STALE_SECS => {
            (false, format!("the scheduler's loop has not gone round for {} s (stuck?)", now - at))
        }
        (true, Some(at)) => (true, format!("last round {} s ago", (now - at).max(0))),
        (true, None) => (true, "starting".to_string()),
    };
    Check { name: "scheduler", ok, detail }
}
