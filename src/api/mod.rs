//! The HTTP API: axum routes, one file per resource, errors as problem+json.
//!
//! Handlers parse requests into domain types at the edge and call `jobs` (and, for the
//! read-only image queries, `registry`). Nothing below this module knows axum.

mod builds;
mod cache;
mod error;
mod extract;
mod images;
mod jobs;
mod metrics;
mod pulls;
mod system;

pub use error::ApiError;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::jobs::Jobs;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub jobs: Jobs,
    pub api_token: Option<Arc<str>>,
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
        .layer(middleware::from_fn_with_state(state.clone(), guard))
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

/// Bearer-token check (when `HOIST_API_TOKEN` is set) and idle bookkeeping.
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    state.last_request.store(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
    if let Some(token) = &state.api_token {
        let open = req.uri().path() == "/healthz"
            && matches!(
                *req.method(),
                axum::http::Method::GET | axum::http::Method::HEAD
            );
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if !open && !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this daemon needs Authorization: Bearer <HOIST_API_TOKEN>",
            )
            .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"hoist\""),
            );
            return resp;
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
