//! A minimal HTTP/1.1 client for the daemon's API, over TCP or a Unix socket.
//!
//! One connection per request: the CLI makes a handful of calls, and a Unix socket is not
//! something reqwest speaks.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::request::Login;

/// The header `/digest` and `/inspect` take registry credentials in (the daemon's
/// `api::images::REGISTRY_AUTH`).
const REGISTRY_AUTH: &str = "x-registry-auth";

/// Where the daemon is: `http://HOST:PORT` or `unix:/path`.
#[derive(Clone, Debug)]
pub enum Daemon {
    Tcp { authority: String },
    Unix { path: std::path::PathBuf },
}

impl std::str::FromStr for Daemon {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(Daemon::Unix { path: path.into() });
        }
        let rest = s.strip_prefix("http://").unwrap_or(s);
        if s.starts_with("https://") {
            return Err(format!(
                "daemon URL {s:?}: hoist speaks plain HTTP on loopback or a Unix socket"
            ));
        }
        let authority = rest.trim_end_matches('/').to_string();
        if authority.is_empty() || authority.contains('/') {
            return Err(format!(
                "daemon URL {s:?} is not http://HOST:PORT or unix:/path"
            ));
        }
        Ok(Daemon::Tcp { authority })
    }
}

impl std::fmt::Display for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Daemon::Tcp { authority } => write!(f, "http://{authority}"),
            Daemon::Unix { path } => write!(f, "unix:{}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the daemon at {daemon}: {message} (is `hoist serve` running? set HOIST_URL or --daemon)"
    )]
    Connect { daemon: String, message: String },
    #[error("talking to the daemon: {0}")]
    Http(String),
    /// The daemon answered with a problem+json.
    #[error("{detail}")]
    Problem {
        status: u16,
        code: String,
        detail: String,
    },
}

/// A client of one daemon, with an optional bearer token.
#[derive(Clone)]
pub struct Api {
    pub daemon: Daemon,
    pub token: Option<String>,
}

impl Api {
    /// Sends a request; returns the response with its body unread (for event streams).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response<Incoming>, ClientError> {
        self.send_with(method, path, body, &[]).await
    }

    /// [`Api::send`] with extra request headers (`X-Registry-Auth`).
    async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Response<Incoming>, ClientError> {
        let connect_err = |e: std::io::Error| ClientError::Connect {
            daemon: self.daemon.to_string(),
            message: e.to_string(),
        };
        let (mut sender, host) = match &self.daemon {
            Daemon::Tcp { authority } => {
                let stream = tokio::net::TcpStream::connect(authority)
                    .await
                    .map_err(connect_err)?;
                (handshake(stream).await?, authority.clone())
            }
            Daemon::Unix { path } => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_err)?;
                (handshake(stream).await?, "localhost".to_string())
            }
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("accept", "application/json");
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let payload = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))
    }

    /// Sends a request and reads a JSON answer; a problem+json answer becomes `Problem`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        self.call_with(method, path, body, &[]).await
    }

    /// A GET carrying the caller's registry credentials for this one question
    /// (`/digest`, `/inspect`), in the header the daemon reads them from.
    pub(crate) async fn get_with_registry_auth(
        &self,
        path: &str,
        login: Option<&Login>,
    ) -> Result<Value, ClientError> {
        let headers: Vec<(&str, String)> = login
            .map(|l| (REGISTRY_AUTH, l.header_value()))
            .into_iter()
            .collect();
        let (_, value) = self.call_with(Method::GET, path, None, &headers).await?;
        Ok(value)
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, Value), ClientError> {
        let resp = self.send_with(method, path, body, headers).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if !status.is_success() {
            return Err(ClientError::Problem {
                status: status.as_u16(),
                code: value["code"].as_str().unwrap_or("error").to_string(),
                detail: value["detail"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("the daemon answered {status}: {value}")),
            });
        }
        Ok((status, value))
    }
}

async fn handshake<S>(
    stream: S,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
