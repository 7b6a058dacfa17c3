//! `GET /digest` and `GET /inspect`: what an image is, without pulling it.

use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::Query;
use crate::jobs::parse_platform;
use crate::registry::{Credentials, ManifestKind, Platform, Reference};

/// The caller's registry credentials for this one question, named as Docker's Engine API
/// names them: base64 (URL-safe or standard) of `{"username": …, "password": …}`. A
/// header, not the query, so they stay out of URLs and request logs; never stored.
pub const REGISTRY_AUTH: &str = "x-registry-auth";

/// The credentials of `X-Registry-Auth`, if sent. Messages never quote the value.
pub(super) fn registry_auth(headers: &HeaderMap) -> Result<Option<Credentials>, ApiError> {
    let Some(value) = headers.get(REGISTRY_AUTH) else {
        return Ok(None);
    };
    let bad = |why: &str| {
        ApiError::bad_request(
            "invalid_registry_auth",
            format!("X-Registry-Auth {why}: send base64 of {{\"username\": …, \"password\": …}}"),
        )
    };
    let text = value.to_str().map_err(|_| bad("is not ASCII"))?;
    let text: String = text
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad("is not base64"))?;
    let creds: Credentials = serde_json::from_slice(&bytes)
        .map_err(|_| bad("is not JSON with username and password"))?;
    Ok(Some(creds))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageQuery {
    image: Option<String>,
    platform: Option<String>,
}

impl ImageQuery {
    fn parse(&self) -> Result<(Reference, Option<Platform>), ApiError> {
        let image = self.image.as_deref().unwrap_or("").trim();
        if image.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_reference",
                "give the image as ?image=REF (e.g. ?image=ubuntu:24.04)",
            ));
        }
        let reference: Reference =
            image
                .parse()
                .map_err(|e: crate::registry::ReferenceError| {
                    ApiError::bad_request("invalid_reference", e.to_string())
                })?;
        let platform = parse_platform(self.platform.as_deref())?;
        Ok((reference, platform))
    }
}

pub async fn digest(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ImageQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let (reference, platform) = q.parse()?;
    let creds = registry_auth(&headers)?;
    let registry = &state.jobs.env().registry;
    // Concurrent identical questions share one registry request (single flight).
    let answer = registry
        .digest(&reference, platform.as_ref(), creds.as_ref())
        .await?;
    let mut body = json!({
        "image": reference.to_string(),
        "digest": answer.digest,
        "media_type": answer.media_type,
    });
    if let Some((platform, platform_digest)) = answer.platform {
        body["platform"] = json!(platform.to_string());
        body["platform_digest"] = json!(platform_digest);
    }
    Ok(axum::Json(body))
}

pub async fn inspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ImageQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let (reference, platform) = q.parse()?;
    let creds = registry_auth(&headers)?;
    let registry = &state.jobs.env().registry;
    let image = registry
        .resolve(&reference, platform.as_ref(), creds.as_ref())
        .await?;
    let ManifestKind::Image { config, layers } = &image.manifest.kind else {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_manifest",
            format!("{reference} resolved to an index, not an image"),
        ));
    };
    let config_json: Value = serde_json::from_slice(&image.config).unwrap_or(Value::Null);
    let size: u64 = layers.iter().map(|l| l.size).sum::<u64>() + config.size;
    Ok(axum::Json(json!({
        "image": reference.to_string(),
        "digest": image.top.digest,
        "media_type": image.top.media_type,
        "platforms": image.platforms.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "platform": image.platform.to_string(),
        "platform_digest": image.manifest.digest,
        "manifest_media_type": image.manifest.media_type,
        "config_digest": config.digest,
        "config": config_json,
        "layers": layers,
        "size": size,
    })))
}
