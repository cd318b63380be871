//! The built-in HTTP server on `HTTP_ADDR`: health and metrics, the CTA click redirect, backups
//! asked for from this machine (and, in webhook mode, Telegram's webhook beside it).

pub mod admin;
pub mod clicks;
pub mod health;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;

pub use clicks::{ClickLinks, ClickState};
pub use health::HealthState;

/// The routes postflow serves itself.
pub fn router(clicks: Option<ClickState>, health: Option<HealthState>, admin: Option<admin::AdminState>) -> Router {
    let mut router = Router::new();
    if let Some(state) = clicks {
        router = router.merge(Router::new().route("/r/{token}", get(clicks::redirect)).with_state(state));
    }
    if let Some(state) = health {
        router = router.merge(health::routes(state));
    }
    if let Some(state) = admin {
        router = router.merge(admin::routes(state));
    }
    router.layer(axum::middleware::from_fn(log_request))
}

/// Each request runs in a `request` span and is logged with its status and time; health checks
/// and scrapes only at debug level (they come every few seconds).
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let span = tracing::info_span!("request", %method, path = %path);
    let started = std::time::Instant::now();
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let (status, ms) = (response.status().as_u16(), started.elapsed().as_millis() as u64);
    span.in_scope(|| {
        if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
            tracing::debug!(status, ms, "request");
        } else {
            tracing::info!(status, ms, "request");
        }
    });
    response
}

/// The URL of `path` on the server at `http_addr`, as a command on the same machine reaches it
/// (a server listening on every address is reached on loopback).
pub fn local_url(http_addr: &str, path: &str) -> Result<String, String> {
    let mut addr: SocketAddr =
        http_addr.parse().map_err(|_| format!("HTTP_ADDR `{http_addr}` is not an address such as 127.0.0.1:8080"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    Ok(format!("http://{addr}{path}"))
}

/// An HTTP client for postflow's own requests from the command line (backup through the
/// running bot, doctor's checks): rustls with the ring provider, bounded by `timeout`.
pub fn client(timeout: std::time::Duration) -> Result<openai_http::Client, openai_http::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    openai_http::Client::builder().timeout(timeout).build()
}

/// Serves `router` on `listener` until the task is dropped or aborted; client addresses reach
/// the handlers (the click rule needs them).
pub async fn serve(listener: tokio::net::TcpListener, router: Router) {
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(error) = axum::serve(listener, service).await {
        tracing::error!("the HTTP server failed: {error}");
    }
}
