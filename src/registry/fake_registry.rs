//! A registry whose answers a test scripts (axum on a loopback port), recording every
//! request it sees. For the client's behaviour tests only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::Response;
use bytes::Bytes;

use super::retry::RetryPolicy;
use super::{Reference, RegistryClient, RegistryConfig};
use crate::digest::Digest;
use crate::oci::{Compression, MediaType};

/// A request as the fake registry saw it.
#[derive(Clone, Debug)]
pub(super) struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Handler = dyn Fn(&Seen, usize) -> Response + Send + Sync;

/// A registry whose answers a test scripts: the handler gets each request and how many
/// earlier requests had the same method and path.
pub(super) struct Fake {
    pub addr: String,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    pub async fn start(handler: impl Fn(&Seen, usize) -> Response + Send + Sync + 'static) -> Fake {
        let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let (log2, handler2) = (log.clone(), handler.clone());
        let app = axum::Router::new().fallback(move |req: Request<AxumBody>| {
            let (log, handler) = (log2.clone(), handler2.clone());
            async move {
                let seen = Seen {
                    method: req.method().to_string(),
                    path: req.uri().path().to_string(),
                    query: req.uri().query().unwrap_or_default().to_string(),
                    headers: req.headers().clone(),
                };
                let n = {
                    let mut log = log.lock().unwrap();
                    let n = log
                        .iter()
                        .filter(|s| s.method == seen.method && s.path == seen.path)
                        .count();
                    log.push(seen.clone());
                    n
                };
                // Drain the body so uploads complete.
                let _ = axum::body::to_bytes(req.into_body(), usize::MAX).await;
                handler(&seen, n)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { addr, log }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }

    pub fn reference(&self, rest: &str) -> Reference {
        format!("{}/{rest}", self.addr).parse().unwrap()
    }
}

pub(super) fn client() -> RegistryClient {
    let policy = RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(20),
    };
    RegistryClient::with_policy(RegistryConfig::default(), policy).unwrap()
}

pub(super) fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response {
    let mut r = Response::new(AxumBody::from(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        let name = axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        r.headers_mut()
            .append(name, HeaderValue::from_str(v).unwrap());
    }
    r
}

pub(super) fn image_manifest(config: &[u8], layer: &[u8]) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
        MediaType::OciManifest.as_str(),
        MediaType::OciConfig.as_str(),
        Digest::sha256_of(config),
        config.len(),
        MediaType::OciLayer(Compression::Gzip).as_str(),
        Digest::sha256_of(layer),
        layer.len()
    )
}
