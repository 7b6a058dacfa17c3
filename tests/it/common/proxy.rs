//! A fault-injecting HTTP proxy in front of the real registry: the one test double, for
//! what a registry will not do on demand (drop a connection mid-body, answer 429 with
//! `Retry-After`, send a body slowly, send wrong bytes).
//!
//! Every request is forwarded as it came (Host kept, Range kept, no redirects followed,
//! no decompression) unless a [`Rule`] matches; every request is logged with its time,
//! method, path, `Range` and `Content-Range` headers, status and fault, so tests can
//! count what the daemon fetched (or uploaded) and when.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};

/// What a matching rule does to a request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Forward, but close the connection after this many body bytes (headers promise all).
    DropAfter(u64),
    /// Answer `429 Too Many Requests` with `Retry-After: secs`, without forwarding.
    TooManyRequests { retry_after_secs: u64 },
    /// Forward, sending the body at about this many bytes per second.
    Slow { bytes_per_sec: u64 },
    /// Forward, flipping the byte at this offset of the body (same length, wrong bytes).
    Corrupt { at: u64 },
    /// Answer this status (a 5xx: a broken mirror) without forwarding.
    Status(u16),
    /// Both: the byte at `at` flipped, the body sent at about `bytes_per_sec`.
    SlowCorrupt { at: u64, bytes_per_sec: u64 },
    /// Forward the request's first this many body bytes (under its own `Content-Length`),
    /// then break both connections: the registry sees a body cut short, the client no
    /// answer (logged with status 0).
    DropRequestAfter(u64),
}

impl Fault {
    fn name(&self) -> &'static str {
        match self {
            Fault::DropAfter(_) => "drop",
            Fault::TooManyRequests { .. } => "429",
            Fault::Slow { .. } => "slow",
            Fault::Corrupt { .. } => "corrupt",
            Fault::Status(_) => "status",
            Fault::SlowCorrupt { .. } => "slow+corrupt",
            Fault::DropRequestAfter(_) => "cut request",
        }
    }
}

/// A fault for requests whose path contains `path_contains` (and whose method is
/// `method`, if set), for the next `times` matches or forever, once the first `after`
/// matches went through untouched.
#[derive(Clone, Debug)]
pub struct Rule {
    pub fault: Fault,
    pub method: Option<String>,
    pub path_contains: String,
    pub times: Option<usize>,
    pub after: usize,
}

impl Rule {
    pub fn new(fault: Fault, path_contains: &str) -> Rule {
        Rule {
            fault,
            method: None,
            path_contains: path_contains.into(),
            times: None,
            after: 0,
        }
    }

    /// GETs whose path contains `path_contains` (e.g. `"/blobs/"`, or one blob's digest)
    /// are answered at `bytes_per_sec`.
    pub fn slow_gets(path_contains: &str, bytes_per_sec: u64) -> Rule {
        Rule::new(Fault::Slow { bytes_per_sec }, path_contains).method("GET")
    }

    pub fn method(mut self, method: &str) -> Rule {
        self.method = Some(method.into());
        self
    }

    pub fn times(mut self, n: usize) -> Rule {
        self.times = Some(n);
        self
    }

    /// Leaves the first `n` matching requests alone (e.g. 1: the fault hits the second).
    pub fn after(mut self, n: usize) -> Rule {
        self.after = n;
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.times != Some(0)
            && self.method.as_deref().is_none_or(|m| m == method)
            && path.contains(&self.path_contains)
    }
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    /// When the request arrived.
    pub at: Instant,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub range: Option<String>,
    /// The `Content-Range` header (upload chunks).
    pub content_range: Option<String>,
    /// The `Range` header of the answer (an upload's status: the bytes the registry has).
    pub answered_range: Option<String>,
    /// The status sent to the client (0: none, the upstream could not be reached or the
    /// request was cut).
    pub status: u16,
    pub fault: Option<&'static str>,
    /// The `Authorization` header the request carried (to prove whose credentials went where).
    pub authorization: Option<String>,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
}

struct ProxyState {
    upstream: SocketAddr,
    client: reqwest::Client,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Logged>>,
}

impl FaultProxy {
    /// Starts a proxy for `upstream` on a free loopback port.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let state = Arc::new(ProxyState {
            upstream,
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("proxy client"),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        super::bg().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            axum::serve(listener, app).await.expect("proxy server");
        });
        FaultProxy { addr, state }
    }

    /// `127.0.0.1:PORT`: use it as the registry part of image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn add_rule(&self, rule: Rule) {
        self.state.rules.lock().unwrap().push(rule);
    }

    pub fn clear_rules(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.state.log.lock().unwrap().clear();
    }

    /// The logged `GET`s of the blob `digest` (any repository).
    pub fn blob_gets(&self, digest: &str) -> Vec<Logged> {
        let needle = format!("/blobs/{digest}");
        self.log()
            .into_iter()
            .filter(|l| l.method == "GET" && l.path.contains(&needle))
            .collect()
    }

    /// The log, one line per request, for failure messages.
    pub fn log_text(&self) -> String {
        let log = self.log();
        let start = log.first().map(|l| l.at);
        log.iter()
            .map(|l| {
                format!(
                    "+{:>7.3}s {} {} range={:?}{} -> {}{} {}",
                    start.map_or(0.0, |s| l.at.duration_since(s).as_secs_f64()),
                    l.method,
                    l.path,
                    l.range,
                    l.content_range
                        .as_ref()
                        .map_or(String::new(), |r| format!(" content-range={r}")),
                    l.status,
                    l.answered_range
                        .as_ref()
                        .map_or(String::new(), |r| format!(" range={r}")),
                    l.fault.unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

fn hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

async fn forward(State(st): State<Arc<ProxyState>>, req: Request) -> Response {
    let at = Instant::now();
    let method = req.method().as_str().to_owned();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_range = req
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let fault = {
        let mut rules = st.rules.lock().unwrap();
        // The first matching rule past its `after` fires; every matching rule still
        // waiting counts the request.
        let mut fired = None;
        for r in rules.iter_mut().filter(|r| r.matches(&method, &path)) {
            if r.after > 0 {
                r.after -= 1;
            } else if fired.is_none() {
                if let Some(n) = r.times.as_mut() {
                    *n -= 1;
                }
                fired = Some(r.fault.clone());
            }
        }
        fired
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let log = |status: u16, answered_range: Option<String>| Logged {
        at,
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
        content_range: content_range.clone(),
        answered_range,
        status,
        fault: fault.as_ref().map(Fault::name),
        authorization: authorization.clone(),
    };

    // A request answered here is read whole first, as a registry would: an answer sent
    // while an upload's body is still coming reaches the client as a reset connection.
    if let Some(Fault::Status(status)) = fault {
        let _ = axum::body::to_bytes(req.into_body(), 1 << 30).await;
        st.log.lock().unwrap().push(log(status, None));
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        return (status, "hoist test proxy: broken on purpose").into_response();
    }

    if let Some(Fault::TooManyRequests { retry_after_secs }) = fault {
        let _ = axum::body::to_bytes(req.into_body(), 1 << 30).await;
        st.log.lock().unwrap().push(log(429, None));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::RETRY_AFTER, retry_after_secs.to_string()),
                (header::CONTENT_TYPE, "application/json".to_owned()),
            ],
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down (hoist test proxy)"}]}"#,
        )
            .into_response();
    }

    if let Some(Fault::DropRequestAfter(limit)) = fault {
        cut_request(&st, req, &path, limit).await;
        st.log.lock().unwrap().push(log(0, None));
        // No answer at all: ending this connection's task closes the client's connection.
        // `resume_unwind` skips the panic hook, so nothing is printed; tokio catches it.
        std::panic::resume_unwind(Box::new("hoist test proxy: request cut on purpose"));
    }

    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 1 << 30).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut upstream = st.client.request(
        parts.method.clone(),
        format!("http://{}{path}", st.upstream),
    );
    for (name, value) in parts.headers.iter() {
        if !hop_by_hop(name) && name != header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    if !body.is_empty() {
        upstream = upstream.body(body);
    }
    let resp = match upstream.send().await {
        Ok(r) => r,
        Err(e) => {
            st.log.lock().unwrap().push(log(0, None));
            return (StatusCode::BAD_GATEWAY, format!("proxy: {e}")).into_response();
        }
    };
    let status = resp.status();
    let answered_range = resp
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    st.log
        .lock()
        .unwrap()
        .push(log(status.as_u16(), answered_range));
    let mut out = Response::builder().status(status);
    for (name, value) in resp.headers().iter() {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    let stream = resp
        .bytes_stream()
        .map(|r| r.map_err(io::Error::other))
        .boxed();
    let stream: BodyStream = match fault {
        Some(Fault::DropAfter(limit)) => Box::pin(DropAfter {
            inner: stream,
            left: limit,
        }),
        Some(Fault::Slow { bytes_per_sec }) => Box::pin(slow(stream, bytes_per_sec)),
        Some(Fault::Corrupt { at }) => Box::pin(corrupt(stream, at)),
        Some(Fault::SlowCorrupt { at, bytes_per_sec }) => {
            Box::pin(slow(Box::pin(corrupt(stream, at)), bytes_per_sec))
        }
        _ => stream,
    };
    out.body(Body::from_stream(stream))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}

type BodyStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Sends upstream the first `limit` bytes of `req`'s body under the request's own
/// `Content-Length`, then breaks that connection (the body stream fails).
async fn cut_request(st: &ProxyState, req: Request, path: &str, limit: u64) {
    let (parts, body) = req.into_parts();
    let mut incoming = body.into_data_stream();
    let mut head = Vec::new();
    while (head.len() as u64) < limit {
        match incoming.next().await {
            Some(Ok(b)) => head.extend_from_slice(&b),
            _ => break,
        }
    }
    head.truncate(limit as usize);
    let pieces: Vec<io::Result<Bytes>> = vec![
        Ok(Bytes::from(head)),
        Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "hoist test proxy: request cut on purpose",
        )),
    ];
    let mut upstream = st
        .client
        .request(parts.method, format!("http://{}{path}", st.upstream));
    for (name, value) in parts.headers.iter() {
        if !hop_by_hop(name) {
            upstream = upstream.header(name, value);
        }
    }
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
    if let Ok(resp) = upstream.body(body).send().await {
        eprintln!(
            "hoist test proxy: the cut request was answered {}",
            resp.status()
        );
    }
}

/// Passes `left` bytes through, then fails the body: hyper then closes the connection
/// short of the promised `Content-Length`.
struct DropAfter {
    inner: BodyStream,
    left: u64,
}

impl Stream for DropAfter {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.left == 0 {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "hoist test proxy: connection dropped on purpose",
            ))));
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(mut chunk))) => {
                if chunk.len() as u64 > self.left {
                    chunk.truncate(self.left as usize);
                }
                self.left -= chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

fn slow(inner: BodyStream, bytes_per_sec: u64) -> impl Stream<Item = io::Result<Bytes>> {
    const PIECE: usize = 16 * 1024;
    inner
        .flat_map(|r| {
            // re-chunk into small pieces so the pace is even
            let pieces: Vec<io::Result<Bytes>> = match r {
                Ok(b) => (0..b.len())
                    .step_by(PIECE)
                    .map(|i| Ok(b.slice(i..(i + PIECE).min(b.len()))))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            futures_util::stream::iter(pieces)
        })
        .then(move |r| async move {
            if let Ok(b) = &r {
                let secs = b.len() as f64 / bytes_per_sec.max(1) as f64;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
            r
        })
}

fn corrupt(inner: BodyStream, at: u64) -> impl Stream<Item = io::Result<Bytes>> {
    let mut offset = 0u64;
    inner.map(move |r| {
        let b = r?;
        let start = offset;
        offset += b.len() as u64;
        if (start..offset).contains(&at) {
            let mut v = b.to_vec();
            v[(at - start) as usize] ^= 0xff;
            return Ok(Bytes::from(v));
        }
        Ok(b)
    })
}
