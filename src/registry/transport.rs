//! One registry request, done properly: authentication on a 401 challenge (answered by
//! `token`), retries with backoff, and redirects followed by hand so that an
//! `Authorization` header never leaves the registry's origin.
//!
//! Every registry call of the client goes through [`Transport::send`]. Not for: the
//! meaning of an answer (the client, blob and push modules read statuses and bodies).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};

use super::auth::{Scope, TokenCache};
use super::blame::Blamed;
use super::challenge::{self, Challenge};
use super::docker_config::DockerConfig;
use super::endpoint::Endpoint;
use super::error_map::{error_chain, unauthorized, url_for_humans};
use super::hosts;
use super::hosts_config::HostsDirs;
use super::retry::{self, RetryPolicy};
use super::tls::{self, TlsPool};
use super::{Credentials, Reference, RegistryError};

const MAX_REDIRECTS: usize = 10;
/// Hosts counted apart in `/metrics`; requests to further ones are counted as `other`.
const MAX_COUNTED_HOSTS: usize = 256;

/// A request body that can be sent again (for retries and auth) or only once (a stream).
pub(super) enum Body {
    Empty,
    Bytes(Bytes),
    Once(Mutex<Option<reqwest::Body>>),
}

impl Body {
    pub fn once(body: reqwest::Body) -> Body {
        Body::Once(Mutex::new(Some(body)))
    }
    fn replayable(&self) -> bool {
        !matches!(self, Body::Once(_))
    }
    fn take(&self) -> Option<reqwest::Body> {
        match self {
            Body::Empty => None,
            Body::Bytes(b) => Some(b.clone().into()),
            Body::Once(m) => m.lock().unwrap_or_else(|e| e.into_inner()).take(),
        }
    }
}

/// What the client asks of the transport.
pub(super) struct Request<'a> {
    pub method: Method,
    pub reference: &'a Reference,
    /// The host asked: a mirror or the origin (whose URL `url` is on).
    pub host: Arc<Endpoint>,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
    pub scopes: Vec<Scope>,
    /// The job's own credentials: for the origin only, never sent to a mirror.
    pub creds: Option<&'a Credentials>,
    /// The caller retries (and resumes) this request itself, knowing what a retry means
    /// (an upload chunk, the PUT that ends an upload): one try, and its answer handed back
    /// whatever the status, a 429 too (for its `Retry-After`). A 401 challenge is still
    /// met (authenticate, send again): nothing was taken.
    pub one_try: bool,
}

pub(super) enum SendError {
    /// Worth another try (connection reset, timeout, …).
    Net(reqwest::Error, Url),
    Fatal(RegistryError),
}

#[derive(Default)]
pub(super) struct Counters {
    by_status: Mutex<BTreeMap<u16, u64>>,
    by_host: Mutex<BTreeMap<String, u64>>,
    pub downloaded: AtomicU64,
    pub uploaded: AtomicU64,
}

impl Counters {
    pub fn count(&self, host: &str, status: u16) {
        {
            let mut hosts = self.by_host.lock().unwrap_or_else(|e| e.into_inner());
            let key = if hosts.contains_key(host) || hosts.len() < MAX_COUNTED_HOSTS {
                host
            } else {
                "other"
            };
            *hosts.entry(key.to_string()).or_default() += 1;
        }
        *self
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
    }
    pub fn by_status(&self) -> Vec<(u16, u64)> {
        let map = self.by_status.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(&s, &n)| (s, n)).collect()
    }
    pub fn by_host(&self) -> Vec<(String, u64)> {
        let map = self.by_host.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(h, &n)| (h.clone(), n)).collect()
    }
    pub fn add_downloaded(&self, n: u64) {
        self.downloaded.fetch_add(n, Ordering::Relaxed);
    }
}

pub(super) struct Transport {
    /// One client per distinct TLS setting, so each keeps its connection pool.
    pub(super) tls: Arc<TlsPool>,
    pub(super) hosts_dirs: Arc<HostsDirs>,
    pub insecure: Vec<String>,
    pub retry: RetryPolicy,
    pub counters: Counters,
    pub(super) tokens: TokenCache,
    /// The last challenge each API host sent, to authenticate up front next time.
    challenges: Mutex<HashMap<String, Challenge>>,
    pub(super) docker: DockerConfig,
    /// Mirrors that sent wrong bytes for a blob, skipped for it a while.
    pub(super) blamed: Blamed,
}

impl Transport {
    pub fn new(
        tls: TlsPool,
        hosts_dirs: HostsDirs,
        insecure: Vec<String>,
        docker: DockerConfig,
        retry: RetryPolicy,
    ) -> Self {
        Transport {
            tls: Arc::new(tls),
            hosts_dirs: Arc::new(hosts_dirs),
            insecure,
            retry,
            counters: Counters::default(),
            tokens: TokenCache::default(),
            challenges: Mutex::default(),
            docker,
            blamed: Blamed::default(),
        }
    }

    /// Sends `req`, authenticating when challenged, retrying transient failures and
    /// following redirects. Answers any final status except 401 (→ `Unauthorized`), 429
    /// after the last retry (→ `TooManyRequests`) and no answer (→ `Unreachable`).
    pub async fn send(&self, req: &Request<'_>) -> Result<Response, RegistryError> {
        let host = req.host.name().to_string();
        if req.host.settings.tls.skip_verify && req.url.scheme() == "https" {
            tracing::warn!(%host, "TLS certificate verification is off for this host (skip_verify in HOIST_HOSTS_DIR)");
        }
        let known = self.lock_challenges().get(&host).cloned();
        let (mut auth, mut key) = match known {
            Some(ch) => self.authorize(&ch, req).await?,
            None => (None, None),
        };
        let mut fresh = false;
        loop {
            // A streamed body cannot be sent twice, so such a request gets one try; a
            // mirror gets one too: when it fails, the next host is asked instead.
            let attempts = if req.body.replayable() && req.host.is_origin() && !req.one_try {
                self.retry.attempts
            } else {
                1
            };
            let resp = self
                .with_retries(&host, attempts, !req.one_try, || {
                    self.send_following(req, auth.as_ref())
                })
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let given = self.creds_for(req).await?.is_some();
            if fresh || !req.body.replayable() {
                return Err(unauthorized(req.reference, &req.scopes, given));
            }
            let values = resp.headers().get_all(header::WWW_AUTHENTICATE);
            let challenges =
                challenge::parse_challenges(values.iter().filter_map(|v| v.to_str().ok()));
            let Some(ch) = ["bearer", "basic"]
                .iter()
                .find_map(|s| challenges.iter().find(|c| c.scheme == *s))
            else {
                return Err(unauthorized(req.reference, &req.scopes, given));
            };
            if let Some(k) = key.take() {
                self.tokens.remove(&k);
            }
            self.lock_challenges().insert(host.clone(), ch.clone());
            (auth, key) = self.authorize(ch, req).await?;
            if auth.is_none() {
                return Err(unauthorized(req.reference, &req.scopes, given));
            }
            fresh = true;
        }
    }

    fn lock_challenges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Challenge>> {
        self.challenges.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `attempt` until it gives a response that is not worth retrying, or `attempts`
    /// tries are used up. A last 429 becomes `TooManyRequests` when `fail_429`, else it is
    /// answered.
    pub(super) async fn with_retries<F, Fut>(
        &self,
        registry: &str,
        attempts: u32,
        fail_429: bool,
        mut attempt: F,
    ) -> Result<Response, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response, SendError>>,
    {
        let registry = registry.to_string();
        let mut n = 0;
        loop {
            let last = n + 1 >= attempts;
            match attempt().await {
                Ok(resp) if retry::is_retryable_status(resp.status()) && !last => {
                    let wait = self.retry.wait_for(n, resp.headers());
                    tracing::debug!(%registry, status = resp.status().as_u16(), ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Ok(resp) if fail_429 && resp.status() == StatusCode::TOO_MANY_REQUESTS => {
                    return Err(RegistryError::TooManyRequests {
                        registry: registry.clone(),
                    });
                }
                Ok(resp) => return Ok(resp),
                // A certificate does not get better by asking again.
                Err(SendError::Net(e, _)) if tls::problem(&e).is_some() => {
                    self.counters.count(&registry, 0);
                    return Err(RegistryError::Tls {
                        host: registry,
                        problem: tls::problem(&e).unwrap_or_default(),
                    });
                }
                Err(SendError::Net(e, url)) if retry::is_retryable_error(&e) && !last => {
                    self.counters.count(&registry, 0);
                    let wait = self.retry.backoff(n);
                    tracing::debug!(%registry, url = %url_for_humans(&url), error = %error_chain(&e), ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(SendError::Net(e, url)) => {
                    self.counters.count(&registry, 0);
                    let chain = error_chain(&e);
                    let hint = tls::closed_hint(&url, &chain);
                    return Err(RegistryError::Unreachable {
                        registry: registry.clone(),
                        message: format!("{}: {chain}{hint}", url_for_humans(&url)),
                    });
                }
                Err(SendError::Fatal(e)) => return Err(e),
            }
            n += 1;
        }
    }

    /// One try: the request and the redirects it leads to, with `auth` sent only to the
    /// registry's own origin.
    async fn send_following(
        &self,
        req: &Request<'_>,
        auth: Option<&HeaderValue>,
    ) -> Result<Response, SendError> {
        // Credentials go to the registry's API origin only, never to a CDN or an upload
        // location on another host.
        let origin = &req.host.settings.api;
        let mut url = req.url.clone();
        let mut method = req.method.clone();
        let mut body = req.body.take();
        if body.is_none() && !matches!(req.body, Body::Empty) {
            return Err(SendError::Fatal(RegistryError::Protocol(format!(
                "cannot send the body to {} again",
                url_for_humans(&url)
            ))));
        }
        for _ in 0..=MAX_REDIRECTS {
            let mut rb = req
                .host
                .http
                .request(method.clone(), url.clone())
                .headers(req.headers.clone());
            if let Some(a) = auth.filter(|_| hosts::same_origin(&url, origin)) {
                rb = rb.header(header::AUTHORIZATION, a.clone());
            }
            if let Some(b) = body.take() {
                rb = rb.body(b);
            }
            let resp = rb
                .send()
                .await
                .map_err(|e| SendError::Net(e.without_url(), url.clone()))?;
            let status = resp.status();
            self.counters.count(req.host.name(), status.as_u16());
            tracing::debug!(%method, url = %url_for_humans(&url), status = status.as_u16(), "registry request");
            if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            let Some(location) = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
            else {
                return Ok(resp);
            };
            let next = url.join(location).map_err(|e| {
                SendError::Fatal(RegistryError::Protocol(format!(
                    "{} redirected to an invalid location: {e}",
                    url_for_humans(&url)
                )))
            })?;
            if url.scheme() == "https"
                && next.scheme() != "https"
                && !hosts::plain_http_allowed(&hosts::url_host_port(&next), &self.insecure)
            {
                return Err(SendError::Fatal(RegistryError::Protocol(format!(
                    "{} redirected to {}, which is not https; refusing the downgrade",
                    url_for_humans(&url),
                    url_for_humans(&next)
                ))));
            }
            let keeps_body = matches!(
                status,
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
            );
            if !keeps_body && method != Method::HEAD {
                method = Method::GET;
            } else if keeps_body && !matches!(req.body, Body::Empty) {
                body = req.body.take();
                if body.is_none() {
                    return Err(SendError::Fatal(RegistryError::Protocol(format!(
                        "{} redirected a streamed upload to {}",
                        url_for_humans(&url),
                        url_for_humans(&next)
                    ))));
                }
            }
            url = next;
        }
        Err(SendError::Fatal(RegistryError::Protocol(format!(
            "more than {MAX_REDIRECTS} redirects from {}",
            url_for_humans(&req.url)
        ))))
    }
}

/// The body of `resp`, refusing more than `limit` bytes (`what`: for the message).
pub(super) async fn read_limited(
    mut resp: Response,
    limit: usize,
    registry: &str,
    what: &str,
) -> Result<Bytes, RegistryError> {
    let mut buf = BytesMut::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| RegistryError::Unreachable {
            registry: registry.to_string(),
            message: format!("reading {what}: {}", error_chain(&e.without_url())),
        })?;
        let Some(chunk) = chunk else { break };
        if buf.len() + chunk.len() > limit {
            return Err(RegistryError::Protocol(format!(
                "{what} from {registry} is larger than {limit} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
