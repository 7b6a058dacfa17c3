//! The HTTP API: axum routes, one file per resource, errors as problem+json.
//!
//! Every route is a row of [`ROUTES`], the table the router is built from and the
//! `openapi` test holds `openapi.yaml` against. Every request passes `guard` first.
//! Handlers parse requests into domain types at the edge and call `jobs` (and, for the
//! read-only image queries and `/tags`, `registry`; for `/cache`, `store`; both through
//! `Jobs::env`). Nothing below this module knows axum. Not for: deciding what a job does
//! (`jobs`), or the daemon's listeners and lifetime (`serve`).

mod access_log;
mod builds;
mod cache;
mod copies;
mod error;
mod extract;
mod guard;
mod images;
mod jobs;
mod metrics;
mod pulls;
mod registries;
mod system;
mod tags;
mod trees;
mod v2;
mod wire;

pub use error::ApiError;
pub use guard::AllowedHosts;
pub use wire::ProblemListener;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::jobs::Jobs;
use crate::mirror::Mirror;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub jobs: Jobs,
    /// `/v2/`: the pull-through registry over the same cache.
    pub mirror: Mirror,
    pub api_token: Option<Arc<str>>,
    /// The `Host` names answered to; `None` on a Unix socket, which no browser can reach
    /// (and where `Host` names no address: curl sends `localhost`, the CLI too).
    pub hosts: Option<Arc<AllowedHosts>>,
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
    route(Method::POST, "/copies", |m| on(m, copies::create)),
    route(Method::GET, "/jobs", |m| on(m, jobs::list)),
    route(Method::GET, "/jobs/{id}", |m| on(m, jobs::get)),
    route(Method::DELETE, "/jobs/{id}", |m| on(m, jobs::cancel)),
    route(Method::GET, "/jobs/{id}/events", |m| on(m, jobs::events)),
    route(Method::GET, "/digest", |m| on(m, images::digest)),
    route(Method::GET, "/inspect", |m| on(m, images::inspect)),
    route(Method::GET, "/tags", |m| on(m, tags::list)),
    route(Method::GET, "/cache", |m| on(m, cache::stats)),
    route(Method::DELETE, "/cache", |m| on(m, cache::purge)),
    route(Method::GET, "/registries/{host}", |m| {
        on(m, registries::get)
    }),
    // hoist as a registry (`v2/`): a GET route answers HEAD too (the handler tells them
    // apart); the wildcard takes repository names of any depth; every write is a 405.
    route(Method::GET, "/v2/", |m| on(m, v2::ping)),
    route(Method::GET, "/v2/{*path}", |m| on(m, v2::read)),
    route(Method::PUT, "/v2/{*path}", |m| on(m, v2::write)),
    route(Method::POST, "/v2/{*path}", |m| on(m, v2::write)),
    route(Method::PATCH, "/v2/{*path}", |m| on(m, v2::write)),
    route(Method::DELETE, "/v2/{*path}", |m| on(m, v2::write)),
    route(Method::DELETE, "/trees", |m| on(m, trees::remove)),
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
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .layer(middleware::from_fn(access_log::access_log))
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
