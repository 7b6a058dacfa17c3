//! `/v2/`: hoist as a read-only registry (the OCI distribution API's pull side), a
//! pull-through mirror over the shared cache for any OCI client.
//!
//! The handlers read HTTP (the client's Basic credentials, `?ns=`, `Range`, the method)
//! and write distribution answers (`Docker-Content-Digest`, the manifest's own media type,
//! 206 for ranges, errors in the distribution format, `error.rs`); what to serve and
//! whether this client may have it is `mirror`'s. Every write method is a 405
//! `UNSUPPORTED`. Not for: the API token (checked by `guard` before, as for every route).

pub mod error;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::AppState;
use crate::mirror::{ByteRange, MirrorError, Want};
use crate::registry::Credentials;
use error::{API_VERSION, BASIC_CHALLENGE, BEARER_CHALLENGE, V2Error};

/// Longest `Authorization` header read for Basic credentials.
const MAX_AUTHORIZATION: usize = 4096;

/// `GET /v2/`: the ping. 200 with the challenge clients read credentials from (registry
/// clients look for it here only): Basic, so they send the user's credentials for the
/// upstream; Bearer when `HOIST_API_TOKEN` is set (the guard passed the token already).
pub async fn ping(State(state): State<AppState>) -> Response {
    let challenge = challenge(&state);
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{}",
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    h.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    resp
}

/// Every write method on `/v2/`: hoist's registry is read-only.
pub async fn write(method: Method) -> V2Error {
    V2Error::unsupported(format!(
        "{method} is not supported: hoist's /v2/ is a read-only mirror; push to the upstream"
    ))
}

fn challenge(state: &AppState) -> &'static str {
    match state.api_token {
        Some(_) => BEARER_CHALLENGE,
        None => BASIC_CHALLENGE,
    }
}

/// `GET` and `HEAD` of `/v2/<name>/manifests/<ref>` and `/v2/<name>/blobs/<digest>`.
pub async fn read(
    State(state): State<AppState>,
    method: Method,
    Path(path): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let challenge = challenge(&state);
    match answer(&state, &method, &path, &uri, &headers).await {
        Ok(resp) => resp,
        Err(e) => V2Error::from_mirror(e, challenge).into_response(),
    }
}

async fn answer(
    state: &AppState,
    method: &Method,
    path: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, MirrorError> {
    let creds = match state.api_token {
        // The token is hoist's; upstream access stays anonymous.
        Some(_) => None,
        None => basic_credentials(headers).map_err(MirrorError::Credentials)?,
    };
    let ns = uri.query().and_then(|q| query_param(q, "ns"));
    let target = state.mirror.target(path, ns.as_deref())?;
    let head = *method == Method::HEAD;
    let mirror = &state.mirror;
    match &target.want {
        Want::Manifest(_) => {
            let m = mirror.manifest(&target, creds.as_ref(), head).await?;
            let mut resp = match m.bytes {
                Some(bytes) => Response::new(Body::from(bytes)),
                None => Response::new(Body::empty()),
            };
            let h = resp.headers_mut();
            set(h, header::CONTENT_TYPE, m.media_type.as_str());
            set(h, header::CONTENT_LENGTH, &m.size.to_string());
            set(h, "docker-content-digest", &m.digest.to_string());
            set(h, header::ETAG, &format!("\"{}\"", m.digest));
            finish(h, m.warning);
            Ok(resp)
        }
        Want::Blob(_) => {
            let range = headers.get(header::RANGE).and_then(parse_range);
            let b = mirror.blob(&target, creds.as_ref(), head, range).await?;
            let (status, len) = match b.range {
                Some((_, len)) => (StatusCode::PARTIAL_CONTENT, len),
                None => (StatusCode::OK, b.size),
            };
            let mut resp = match b.body {
                Some(body) => Response::new(Body::from_stream(body)),
                None => Response::new(Body::empty()),
            };
            *resp.status_mut() = status;
            let h = resp.headers_mut();
            set(h, header::CONTENT_TYPE, "application/octet-stream");
            set(h, header::CONTENT_LENGTH, &len.to_string());
            set(h, header::ACCEPT_RANGES, "bytes");
            set(h, "docker-content-digest", &b.digest.to_string());
            set(h, header::ETAG, &format!("\"{}\"", b.digest));
            if let Some((start, len)) = b.range {
                let end = start + len - 1;
                set(
                    h,
                    header::CONTENT_RANGE,
                    &format!("bytes {start}-{end}/{}", b.size),
                );
            }
            finish(h, b.warning);
            Ok(resp)
        }
    }
}

fn set(h: &mut HeaderMap, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn finish(h: &mut HeaderMap, warning: Option<&'static str>) {
    h.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    if let Some(w) = warning {
        h.insert(header::WARNING, HeaderValue::from_static(w));
    }
}

/// The client's Basic credentials for the upstream: `None` without any, and for the
/// empty credential `:` that clients without a login send to a Basic challenge. Other
/// schemes (a Bearer token meant for hoist) carry none.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<Credentials>, String> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    if value.len() > MAX_AUTHORIZATION {
        return Err("the Authorization header is too long".into());
    }
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not ASCII".to_string())?;
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| "the Basic credentials are not base64".to_string())?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| "the Basic credentials are not UTF-8".to_string())?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| "the Basic credentials have no ':'".to_string())?;
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

/// The first value of `name` in a query string, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One `Range: bytes=…` range; several ranges, other units or nonsense are ignored (the
/// whole blob is answered, as HTTP allows).
fn parse_range(value: &HeaderValue) -> Option<ByteRange> {
    let spec = value.to_str().ok()?.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        return Some(ByteRange::Suffix(end.parse().ok()?));
    }
    let start = start.parse().ok()?;
    let end = match end {
        "" => None,
        e => Some(e.parse().ok()?),
    };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some(ByteRange::From { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn basic_credentials_and_the_empty_one() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(basic_credentials(&HeaderMap::new()), Ok(None));
        assert_eq!(
            basic_credentials(&auth(&format!("Basic {}", b64(":")))),
            Ok(None)
        );
        assert_eq!(
            basic_credentials(&auth(&format!("basic {}", b64("u:p:q")))),
            Ok(Some(Credentials {
                username: "u".into(),
                password: "p:q".into()
            }))
        );
        assert_eq!(basic_credentials(&auth("Bearer abc")), Ok(None));
        assert!(basic_credentials(&auth("Basic !!!")).is_err());
        assert!(basic_credentials(&auth(&format!("Basic {}", b64("nocolon")))).is_err());
    }

    #[test]
    fn ranges() {
        let r = |s: &str| parse_range(&HeaderValue::from_str(s).unwrap());
        assert_eq!(
            r("bytes=0-9"),
            Some(ByteRange::From {
                start: 0,
                end: Some(9)
            })
        );
        assert_eq!(
            r("bytes=5-"),
            Some(ByteRange::From {
                start: 5,
                end: None
            })
        );
        assert_eq!(r("bytes=-3"), Some(ByteRange::Suffix(3)));
        for ignored in ["bytes=0-1,3-4", "items=0-1", "bytes=9-1", "bytes=x-"] {
            assert_eq!(r(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn ns_is_read_percent_decoded() {
        assert_eq!(
            query_param("a=1&ns=127.0.0.1%3A5000", "ns").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(
            query_param("ns=docker.io", "ns").as_deref(),
            Some("docker.io")
        );
        assert_eq!(query_param("x=1", "ns"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
