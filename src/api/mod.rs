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
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::jobs::Jobs;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub jobs: Jobs,
    pub api_token: Option<Arc<str>>,
    /// Seconds since the epoch of the last request (for idle exit).
    pub last_request: Arc<std::sync::atomic::AtomicU64>,
}

/// One route: a method on a path template (axum's `{param}` syntax, which is also
/// OpenAPI's), and the handler that answers it.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
}

/// Every route the daemon serves. [`router`] is built from this table and nothing else,
/// so it cannot drift from it; the OpenAPI test checks it against `openapi.yaml` (every
/// route documented, every documented path routed).
pub static ROUTES: &[Route] = &[
    route(Method::GET, "/healthz", |m| on(m, system::healthz)),
    route(Method::GET, "/openapi.yaml", |m| on(m, system::openapi)),
    route(Method::GET, "/metrics", |m| on(m, metrics::metrics)),
    route(Method::POST, "/pulls", |m| on(m, pulls::create)),
    route(Method::POST, "/builds", |m| on(m, builds::create)),
    route(Method::GET, "/jobs", |m| on(m, jobs::list)),
    route(Method::GET, "/jobs/{id}", |m| on(m, jobs::get)),
    route(Method::DELETE, "/jobs/{id}", |m| on(m, jobs::cancel)),
    route(Method::GET, "/jobs/{id}/events", |m| on(m, jobs::events)),
    route(Method::GET, "/digest", |m| on(m, images::digest)),
    route(Method::GET, "/inspect", |m| on(m, images::inspect)),
    route(Method::GET, "/cache", |m| on(m, cache::stats)),
    route(Method::DELETE, "/cache", |m| on(m, cache::purge)),
];

const fn route(
    method: Method,
    path: &'static str,
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
) -> Route {
    Route {
        method,
        path,
        handler,
    }
}

pub fn router(state: AppState) -> Router {
    let mut paths: Vec<&str> = ROUTES.iter().map(|r| r.path).collect();
    paths.sort_unstable();
    paths.dedup();
    let mut router = Router::new();
    for path in paths {
        let mut methods = MethodRouter::new();
        for r in ROUTES.iter().filter(|r| r.path == path) {
            let filter = MethodFilter::try_from(r.method.clone())
                .unwrap_or_else(|e| panic!("{} {}: {e}", r.method, r.path));
            methods = methods.merge((r.handler)(filter));
        }
        router = router.route(path, methods);
    }
    router
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
        let open =
            req.uri().path() == "/healthz" && matches!(*req.method(), Method::GET | Method::HEAD);
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
