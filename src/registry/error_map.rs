//! From a registry's error answer to a [`RegistryError`], and message helpers that keep
//! secrets (presigned query strings, credentials) out of error strings.
//!
//! Not for: deciding what to retry (see `retry`).

use reqwest::{Response, StatusCode, Url};

use super::auth::{Scope, scopes_string};
use super::transport::read_limited;
use super::{Reference, RegistryError};
use crate::digest::Digest;

/// What to do about a 401, for hoist: the CLI sends its caller's Docker credentials, the
/// daemon reads its own `DOCKER_CONFIG` only as a fallback.
fn login_hint(registry: &str) -> String {
    format!(
        "run `docker login {registry}` as the user running `hoist` (the CLI sends that \
         user's credentials), or pass --creds USER:PASSWORD (API: \"auth\")"
    )
}

/// What a failed request was about, to name the right "unknown" error.
pub(super) enum Target<'a> {
    Manifest,
    Blob(&'a Digest),
    /// A question about the repository itself (its tags).
    Repository,
    Other,
}

/// A URL without its query (CDN redirects carry signatures there) for messages and logs.
pub(super) fn url_for_humans(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// An error and its causes, `: `-joined (reqwest puts the useful part in the sources).
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_s = c.to_string();
        if !s.contains(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        cur = c.source();
    }
    s
}

pub(super) fn unauthorized(
    reference: &Reference,
    scopes: &[Scope],
    had_creds: bool,
) -> RegistryError {
    let login = login_hint(&reference.registry);
    let hint = if had_creds {
        format!(" (check the credentials; {login})")
    } else {
        format!(" (no credentials were given: {login}; and check that the repository exists)")
    };
    RegistryError::Unauthorized {
        registry: reference.registry.clone(),
        scope: scopes_string(scopes),
        hint,
    }
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(serde::Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The error a non-success answer stands for (the body's `errors[].code` first, then the status).
pub(super) async fn error_for(
    resp: Response,
    reference: &Reference,
    scopes: &[Scope],
    target: Target<'_>,
) -> RegistryError {
    let status = resp.status();
    let url = url_for_humans(resp.url());
    let body = read_limited(resp, 64 * 1024, &reference.registry, "error answer")
        .await
        .unwrap_or_default();
    let parsed = serde_json::from_slice::<ErrorBody>(&body).ok();
    let first = parsed.as_ref().and_then(|b| b.errors.first());
    let code = first.map_or("", |e| e.code.as_str());
    let not_found = status == StatusCode::NOT_FOUND
        || matches!(code, "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN");
    match target {
        Target::Manifest if not_found => {
            return RegistryError::ManifestUnknown {
                registry: reference.registry.clone(),
                reference: reference.to_string(),
            };
        }
        Target::Repository if not_found => {
            return RegistryError::NameUnknown {
                registry: reference.registry.clone(),
                repository: reference.repository.clone(),
            };
        }
        Target::Blob(digest) if not_found => {
            return RegistryError::BlobUnknown {
                repository: reference.name(),
                digest: digest.clone(),
            };
        }
        _ => {}
    }
    if status == StatusCode::UNAUTHORIZED || code == "UNAUTHORIZED" {
        return unauthorized(reference, scopes, true);
    }
    if status == StatusCode::FORBIDDEN || code == "DENIED" {
        return RegistryError::Denied {
            registry: reference.registry.clone(),
            scope: scopes_string(scopes),
        };
    }
    if status == StatusCode::TOO_MANY_REQUESTS || code == "TOOMANYREQUESTS" {
        return RegistryError::TooManyRequests {
            registry: reference.registry.clone(),
        };
    }
    let body = match first {
        Some(e) => format!("{} {}", e.code, e.message).trim().to_string(),
        None => String::from_utf8_lossy(&body).trim().to_string(),
    };
    RegistryError::Http {
        registry: reference.registry.clone(),
        url,
        status: status.as_u16(),
        body: body.chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn urls_for_humans_lose_query_and_userinfo() {
        let u = Url::parse("https://u:p@cdn.io/blob/x?X-Amz-Signature=secret#f").unwrap();
        assert_eq!(url_for_humans(&u), "https://cdn.io/blob/x");
    }

    #[test]
    fn unauthorized_hints_at_docker_login() {
        let r: Reference = "ubuntu".parse().unwrap();
        let e = unauthorized(&r, &[Scope::pull("library/ubuntu")], false);
        let s = e.to_string();
        assert!(
            s.contains("`docker login docker.io` as the user running `hoist`")
                && s.contains("--creds")
                && s.contains("repository:library/ubuntu:pull"),
            "{s}"
        );
        assert_eq!(e.code(), "unauthorized");
    }

    #[test]
    fn error_chain_joins_sources_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(error_chain(&outer), "refused");
    }
}
