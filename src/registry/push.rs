//! Pushing: blob existence checks, cross-repository mounts and manifest PUTs; blob
//! uploads are `upload`'s.
//!
//! Push requests ask for `repository:REPO:pull,push`; a mount also for
//! `repository:FROM:pull`. Each function is one request; the order an image's blobs and
//! manifest go in is `push_image`'s. Not for: building the image (the
//! image module).

use bytes::Bytes;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};

use super::auth::Scope;
use super::client::DOCKER_CONTENT_DIGEST;
use super::error_map::{Target, error_for, url_for_humans};
use super::transport::Body;
use super::{Credentials, Reference, RegistryClient, RegistryError};
use crate::digest::Digest;
use crate::oci::MediaType;

pub(super) fn octet_stream() -> HeaderValue {
    HeaderValue::from_static("application/octet-stream")
}

pub(super) fn number(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

impl RegistryClient {
    /// True when `reference`'s repository already has blob `digest` (HEAD).
    pub async fn blob_exists(
        &self,
        reference: &Reference,
        digest: &Digest,
        creds: Option<&Credentials>,
    ) -> Result<bool, RegistryError> {
        let path = format!("{}/blobs/{digest}", reference.repository);
        let origin = self.inner.origin(reference).await?;
        let req = self.request(
            &origin,
            Method::HEAD,
            reference,
            &path,
            vec![Scope::push(&reference.repository)],
            creds,
        )?;
        let resp = self.inner.send(&req).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(error_for(resp, reference, &req.scopes, Target::Other).await),
        }
    }

    /// Asks the registry to link blob `digest` from `from`'s repository into `target`'s,
    /// without uploading it. False when it would not (another registry, or the registry
    /// started an upload instead, which is then cancelled).
    pub async fn mount_blob(
        &self,
        target: &Reference,
        digest: &Digest,
        from: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<bool, RegistryError> {
        if from.registry != target.registry {
            return Ok(false);
        }
        let scopes = vec![
            Scope::push(&target.repository),
            Scope::pull(&from.repository),
        ];
        let path = format!("{}/blobs/uploads/", target.repository);
        let origin = self.inner.origin(target).await?;
        let mut req = self.request(&origin, Method::POST, target, &path, scopes, creds)?;
        req.url
            .query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", &from.repository);
        req.headers.insert(header::CONTENT_LENGTH, number(0));
        let resp = self.inner.send(&req).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Ok(loc) = location(&resp, &req.url) {
                    let mut cancel = self.request(
                        &origin,
                        Method::DELETE,
                        target,
                        "",
                        req.scopes.clone(),
                        creds,
                    )?;
                    cancel.url = loc;
                    let _ = self.inner.send(&cancel).await;
                }
                Ok(false)
            }
            _ => Err(error_for(resp, target, &req.scopes, Target::Other).await),
        }
    }

    /// PUTs a manifest under `reference`'s tag (or digest) and returns its digest.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        media_type: &MediaType,
        bytes: Bytes,
        creds: Option<&Credentials>,
    ) -> Result<Digest, RegistryError> {
        let digest = match &reference.digest {
            Some(d) if !d.matches(&bytes) => {
                return Err(RegistryError::DigestMismatch {
                    image: reference.to_string(),
                    what: "manifest to push".to_string(),
                    expected: d.to_string(),
                    actual: Digest::sha256_of(&bytes).to_string(),
                });
            }
            Some(d) => d.clone(),
            None => Digest::sha256_of(&bytes),
        };
        let path = format!(
            "{}/manifests/{}",
            reference.repository,
            reference.manifest_ref()
        );
        let scopes = vec![Scope::push(&reference.repository)];
        let origin = self.inner.origin(reference).await?;
        let mut req = self.request(&origin, Method::PUT, reference, &path, scopes, creds)?;
        let content_type = HeaderValue::from_str(media_type.as_str()).map_err(|_| {
            RegistryError::Protocol(format!("invalid media type {:?}", media_type.as_str()))
        })?;
        req.headers.insert(header::CONTENT_TYPE, content_type);
        req.body = Body::Bytes(bytes);
        let resp = self.inner.send(&req).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(error_for(resp, reference, &req.scopes, Target::Other).await);
        }
        check_answered_digest(&resp, reference, &digest, "pushed manifest")?;
        Ok(digest)
    }
}

/// The upload `Location` of an answer, resolved against the URL it answered.
pub(super) fn location(resp: &Response, base: &Url) -> Result<Url, RegistryError> {
    let loc = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            RegistryError::Protocol(format!(
                "{} started an upload without a Location",
                url_for_humans(base)
            ))
        })?;
    base.join(loc).map_err(|e| {
        RegistryError::Protocol(format!(
            "upload location from {}: {e}",
            url_for_humans(base)
        ))
    })
}

/// A `Docker-Content-Digest` answer that disagrees with what was sent is an error.
pub(super) fn check_answered_digest(
    resp: &Response,
    reference: &Reference,
    digest: &Digest,
    what: &str,
) -> Result<(), RegistryError> {
    let said = resp
        .headers()
        .get(DOCKER_CONTENT_DIGEST)
        .and_then(|v| v.to_str().ok());
    match said {
        Some(s) if s.trim() != digest.to_string() => Err(RegistryError::DigestMismatch {
            image: reference.to_string(),
            what: what.to_string(),
            expected: digest.to_string(),
            actual: s.trim().to_string(),
        }),
        _ => Ok(()),
    }
}
