//! What every request passes before it reaches a handler: a bounded request target, a
//! `Host` the daemon answers to (DNS rebinding), no sign of a cross-site browser request
//! (a web page forging a request), and the bearer token when `HOIST_API_TOKEN` is set.
//!
//! The order matters: a refusal says the first thing wrong, and none of them needs the
//! token to be said (they tell a client how to reach the daemon properly, nothing more).
//! Not for: the request body's own rules (`extract.rs`: content type, duplicate keys).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

/// Longest request target (path and query string) served, in bytes. Requests are small:
/// references, platforms and job ids; anything longer is a 414 `uri_too_long`.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The `Host` names a TCP listener answers to: its own address, `localhost`, loopback
/// addresses and `HOIST_ALLOWED_HOSTS`. A page whose name an attacker re-points at
/// 127.0.0.1 (DNS rebinding) still sends its own name, so it is refused.
#[derive(Clone, Debug, Default)]
pub struct AllowedHosts {
    /// The addresses listened on (systemd's socket: its local address).
    listen: Vec<IpAddr>,
    /// Lower case, no trailing dot (see `Config::allowed_hosts`).
    names: Vec<String>,
}

impl AllowedHosts {
    pub fn new(listen: &[SocketAddr], names: &[String]) -> AllowedHosts {
        AllowedHosts {
            listen: listen.iter().map(SocketAddr::ip).collect(),
            names: names
                .iter()
                .map(|n| strip_brackets(n).to_string())
                .collect(),
        }
    }

    /// Whether `host` (a `Host` header's host part, port removed) is one to answer to.
    fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host == "localhost" || self.names.contains(&host) {
            return true;
        }
        match host.parse::<IpAddr>() {
            // An address literal cannot be re-pointed by DNS; a daemon listening on every
            // address (0.0.0.0, ::) answers to each of them, whichever the client used.
            Ok(ip) => {
                ip.is_loopback()
                    || ip.to_canonical().is_loopback()
                    || self.listen.iter().any(|l| *l == ip || l.is_unspecified())
            }
            Err(_) => false,
        }
    }
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The host part of an authority (`name`, `name:port`, `[v6]:port`), without the port.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The authority the client asked for: the request line's (absolute form), else `Host`.
fn requested_authority(req: &Request) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_string());
    }
    req.headers()
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).trim().to_string())
}

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    state.last_request.store(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
    if let Some(refused) = refusal(&state, &req) {
        return refused;
    }
    next.run(req).await
}

/// The answer refusing `req`, if something in it is wrong (the first thing, in order).
fn refusal(state: &AppState, req: &Request) -> Option<Response> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(
            ApiError::new(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!(
                    "the request target is {target} bytes, more than {MAX_URI_BYTES}; \
                 hoist's query strings are short (an image reference, a platform)"
                ),
            )
            .into_response(),
        );
    }
    let authority = requested_authority(req);
    if let (Some(hosts), Some(authority)) = (&state.hosts, &authority)
        && !hosts.allows(host_of(authority))
    {
        return Some(
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                format!(
                    "this daemon does not answer to the host {authority:?}; use its listen \
                     address or localhost, or add the name to HOIST_ALLOWED_HOSTS"
                ),
            )
            .into_response(),
        );
    }
    if let Some(why) = cross_site(req.headers(), authority.as_deref()) {
        return Some(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_site_request",
                format!(
                    "{why}: a web page may not drive this daemon; send the request from a \
                 program (curl, the hoist CLI) instead"
                ),
            )
            .into_response(),
        );
    }
    if let Some(token) = &state.api_token {
        let open =
            req.uri().path() == "/healthz" && matches!(*req.method(), Method::GET | Method::HEAD);
        if !open && !bearer_matches(req.headers(), token) {
            if is_registry_path(req.uri().path()) {
                // Registry clients read distribution errors and this challenge.
                return Some(
                    super::v2::error::V2Error::unauthorized(
                        "this daemon needs Authorization: Bearer <HOIST_API_TOKEN>",
                        super::v2::error::BEARER_CHALLENGE,
                    )
                    .into_response(),
                );
            }
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
            return Some(resp);
        }
    }
    None
}

/// Why the request looks sent by a browser on behalf of another site, if it does.
/// Browsers say so in `Sec-Fetch-Site` (anything but `same-origin` or `none`, a typed URL),
/// and in `Origin` on every cross-origin POST, even those sent without a CORS preflight;
/// programs send neither. `same-site` is refused too: another port of localhost is another
/// program's page.
fn cross_site(headers: &HeaderMap, authority: Option<&str>) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = String::from_utf8_lossy(site.as_bytes())
            .trim()
            .to_ascii_lowercase();
        if !matches!(site.as_str(), "same-origin" | "none") {
            return Some(format!("Sec-Fetch-Site is {site:?}"));
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = String::from_utf8_lossy(origin.as_bytes())
        .trim()
        .to_string();
    let origin_authority = origin
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest));
    match (origin_authority, authority) {
        (Some(o), Some(a)) if o.eq_ignore_ascii_case(a) => None,
        _ => Some(format!("Origin {origin:?} is not this daemon's own")),
    }
}

/// `/v2` and below: the registry API, whose clients read distribution-format errors.
fn is_registry_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

fn bearer_matches(headers: &HeaderMap, token: &Arc<str>) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, given)| given.trim())
        .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> AllowedHosts {
        AllowedHosts::new(
            &["127.0.0.1:7700".parse().unwrap()],
            &["hoist.example".to_string()],
        )
    }

    #[test]
    fn host_of_strips_the_port() {
        assert_eq!(host_of("localhost:7700"), "localhost");
        assert_eq!(host_of("localhost"), "localhost");
        assert_eq!(host_of("[::1]:7700"), "::1");
        assert_eq!(host_of("[::1]"), "::1");
    }

    #[test]
    fn loopback_localhost_listen_address_and_configured_names_are_allowed() {
        let h = hosts();
        for ok in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "hoist.example",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "10.0.0.1",
            "localhost.evil.example",
            "",
            "0.0.0.0",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
        let wildcard = AllowedHosts::new(&["0.0.0.0:7700".parse().unwrap()], &[]);
        assert!(wildcard.allows("192.168.1.5"));
        assert!(!wildcard.allows("rebound.example"));
    }

    #[test]
    fn cross_site_signs() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        let here = Some("localhost:7700");
        assert_eq!(cross_site(&h(&[]), here), None);
        assert_eq!(
            cross_site(&h(&[("sec-fetch-site", "same-origin")]), here),
            None
        );
        assert_eq!(cross_site(&h(&[("sec-fetch-site", "none")]), here), None);
        assert_eq!(
            cross_site(&h(&[("origin", "http://localhost:7700")]), here),
            None
        );
        for bad in [
            h(&[("sec-fetch-site", "cross-site")]),
            h(&[("sec-fetch-site", "same-site")]),
            h(&[("origin", "null")]),
            h(&[("origin", "http://evil.example")]),
            h(&[("origin", "http://localhost:3000")]),
        ] {
            assert!(cross_site(&bad, here).is_some(), "{bad:?}");
        }
    }
}
