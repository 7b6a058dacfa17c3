//! The HTTP API: axum routes, one file per resource, errors as problem+json.
//!
//! Handlers parse requests into domain types at the edge and call `jobs` (and, for the
//! read-only image queries, `registry`). Nothing below this module knows axum.

mod builds;
mod cache;
mod error;
mod extract;
mod guard;
mod images;
mod jobs;
mod metrics;
mod pulls;
mod system;
mod wire;

pub use error::ApiError;
pub use guard::AllowedHosts;
pub use wire::ProblemListener;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;

use crate::jobs::Jobs;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub jobs: Jobs,
    pub api_token: Option<Arc<str>>,
    /// The `Host` names answered to; `None` on a Unix socket, which no browser can reach
    /// (and where `Host` names no address: curl sends `localhost`, the CLI too).
    pub hosts: Option<Arc<AllowedHosts>>,
    /// Seconds since the epoch of the last request (for idle exit).
    pub last_request: Arc<std::sync::atomic::AtomicU64>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/openapi.yaml", get(system::openapi))
        .route("/metrics", get(metrics::metrics))
        .route("/pulls", axum::routing::post(pulls::create))
        .route("/builds", axum::routing::post(builds::create))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::get).delete(jobs::cancel))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/digest", get(images::digest))
        .route("/inspect", get(images::inspect))
        .route("/cache", get(cache::stats).delete(cache::purge))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint: {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}
