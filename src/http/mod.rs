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
    router
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
