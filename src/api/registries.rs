//! `GET /registries/{host}`: the host settings in force for one registry, as
//! `HOIST_HOSTS_DIR` says them now (mirrors in order, the origin last; capabilities; which
//! CA and client certificate files), never the files' contents.

use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{NoQuery, Path, Query};
use crate::registry::{FileRef, Reference, RegistrySettings};

/// The registry part of a reference is at most this long (a DNS name and a port).
const MAX_HOST: usize = 300;

pub async fn get(
    State(state): State<AppState>,
    Path(host): Path<String>,
    Query(NoQuery {}): Query<NoQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let reference = parse_host(&host)?;
    let settings = state
        .jobs
        .env()
        .registry
        .registry_settings(&reference)
        .await?;
    Ok(axum::Json(to_json(&settings)))
}

/// `host[:port]` as an image reference would name it: `docker.io`, `r.example:5000`.
fn parse_host(host: &str) -> Result<Reference, ApiError> {
    let invalid = |why: &str| {
        ApiError::bad_request(
            "invalid_host",
            format!(
                "{}: {why} (give a registry host as it appears in an image reference, e.g. \
                 /registries/docker.io or /registries/registry.example:5000)",
                crate::text::quote(host.as_bytes())
            ),
        )
    };
    let plain = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'));
    if host.is_empty() || host.len() > MAX_HOST || !plain || host.starts_with('.') {
        return Err(invalid("not a host name"));
    }
    let reference: Reference = format!("{host}/library/x")
        .parse()
        .map_err(|_| invalid("not a registry host"))?;
    let hub = matches!(
        host.to_ascii_lowercase().as_str(),
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    );
    if !hub && !reference.registry.eq_ignore_ascii_case(host) {
        return Err(invalid(
            "not a registry host: it needs a dot or a port, or to be localhost",
        ));
    }
    Ok(reference)
}

fn to_json(s: &RegistrySettings) -> Value {
    let path = |f: &FileRef| json!(f.path);
    let hosts: Vec<Value> = s
        .hosts
        .iter()
        .map(|h| {
            json!({
                "host": h.name,
                "url": h.api.as_str(),
                "origin": h.origin,
                "capabilities": h.capabilities.names(),
                "ca": h.tls.ca.iter().map(path).collect::<Vec<_>>(),
                "client": h.tls.client.iter().map(|c| json!({
                    "cert": c.cert.path,
                    "key": c.key.as_ref().map(|k| &k.path),
                })).collect::<Vec<_>>(),
                "skip_verify": h.tls.skip_verify,
                "override_path": h.override_path,
            })
        })
        .collect();
    json!({
        "registry": s.registry,
        "folder": s.folder,
        "hosts_file": s.hosts_file,
        "hosts": hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_registry_names_only() {
        for ok in ["docker.io", "r.example:5000", "127.0.0.1:5000", "localhost"] {
            assert!(parse_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "..",
            "a/b",
            "../etc",
            "x y",
            "plainname",
            "_default",
            ".hidden",
        ] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }
}
