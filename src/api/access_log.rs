//! One debug line per request: method, path, status and how long the answer's head took.
//!
//! The path is logged without its query string: hoist's queries carry no secret today
//! (image references, platforms, job filters, a `dest`), but a query is the caller's
//! free text and the route already says what was asked. No header is logged, so neither
//! `Authorization` (the API token) nor a registry credential can reach the log. Runs
//! outside `guard`, so refused requests are logged too. Not for: what a request did
//! (handlers and jobs log their own events at info).

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::text::quote;

pub async fn access_log(req: Request, next: Next) -> Response {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    // bounded: a path can be as long as hyper lets a request line be
    let path = quote(req.uri().path().as_bytes());
    let start = Instant::now();
    let response = next.run(req).await;
    let elapsed = start.elapsed();
    tracing::debug!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        duration_ms = format_args!("{:.1}", elapsed.as_secs_f64() * 1000.0),
        "request"
    );
    response
}
