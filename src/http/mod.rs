//! The built-in HTTP server on `HTTP_ADDR`: the CTA click redirect (and, in webhook mode,
//! Telegram's webhook beside it).

pub mod clicks;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;

pub use clicks::{ClickLinks, ClickState};

/// The routes postflow serves itself.
pub fn router(clicks: Option<ClickState>) -> Router {
    let mut router = Router::new();
    if let Some(state) = clicks {
        router = router.merge(Router::new().route("/r/{token}", get(clicks::redirect)).with_state(state));
    }
    router
}

/// Serves `router` on `listener` until the task is dropped or aborted; client addresses reach
/// the handlers (the click rule needs them).
pub async fn serve(listener: tokio::net::TcpListener, router: Router) {
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(error) = axum::serve(listener, service).await {
        tracing::error!("the HTTP server failed: {error}");
    }
}
