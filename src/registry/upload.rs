//! Blob uploads: one streamed PUT for blobs up to 64 MiB, PATCH chunks of 16 MiB for
//! larger ones, then the PUT that names the digest (the registry checks it).
//!
//! A chunk that fails on the way (connection cut, 5xx, 408, 429) is not sent again
//! blindly: the registry is asked where the upload stands (`GET` of the upload location,
//! its `Range`) and the chunk goes on from there. The chunk is still in memory, so any offset
//! inside it can be resumed from; an offset before it cannot (the blob reader is not
//! rewound), nor can an upload whose status the registry will not tell: those fail with
//! [`RegistryError::UploadNotResumed`], carrying the first failure. The final PUT is sent
//! again only when safe: when the blob is not there yet (HEAD) and the registry says it
//! has every byte. Cancelling is dropping the future (`push_image` does): between tries
//! it only waits. Not for: existence checks, mounts, manifests (`push`), the order of an
//! image's blobs (`push_image`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::ReaderStream;

use super::auth::Scope;
use super::endpoint::Endpoint;
use super::error_map::{Target, error_for};
use super::push::{check_answered_digest, location, number, octet_stream};
use super::retry;
use super::transport::{Body, Request};
use super::{Credentials, Reference, RegistryClient, RegistryError};
use crate::digest::Digest;

/// How blobs are cut for upload. Blobs up to `monolithic_max` go up in one streamed PUT;
/// larger ones in PATCH chunks of `chunk` bytes, which pass proxies with request size
/// limits and can be resumed one by one. Tests make them small.
#[derive(Clone, Copy, Debug)]
pub(super) struct UploadSizes {
    pub monolithic_max: u64,
    pub chunk: usize,
}

impl Default for UploadSizes {
    fn default() -> Self {
        UploadSizes {
            monolithic_max: 64 << 20,
            chunk: 16 << 20,
        }
    }
}

/// One upload under way: what goes where, as whom.
struct Upload<'a> {
    origin: Arc<Endpoint>,
    reference: &'a Reference,
    digest: &'a Digest,
    size: u64,
    scopes: Vec<Scope>,
    creds: Option<&'a Credentials>,
}

/// What one try of an upload request came to.
enum Try {
    /// An answer that is not worth another try (success or not: the caller reads it).
    Answer(Response),
    /// A failure worth asking the registry about, and the wait before doing so.
    Transient {
        error: RegistryError,
        wait: Duration,
    },
}

impl RegistryClient {
    /// Uploads blob `digest` of `size` bytes read from `reader` into `reference`'s
    /// repository. The registry checks the digest; a mismatch comes back as its error.
    pub async fn upload_blob<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        reader: R,
        creds: Option<&Credentials>,
    ) -> Result<(), RegistryError> {
        let sizes = UploadSizes::default();
        self.upload_blob_sized(reference, digest, size, reader, creds, sizes)
            .await
    }

    /// [`upload_blob`](Self::upload_blob) with the blob cut as `sizes` says.
    pub(super) async fn upload_blob_sized<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        reader: R,
        creds: Option<&Credentials>,
        sizes: UploadSizes,
    ) -> Result<(), RegistryError> {
        let up = Upload {
            origin: self.inner.origin(reference).await?,
            reference,
            digest,
            size,
            scopes: vec![Scope::push(&reference.repository)],
            creds,
        };
        let path = format!("{}/blobs/uploads/", reference.repository);
        let mut start = self.request(
            &up.origin,
            Method::POST,
            reference,
            &path,
            up.scopes.clone(),
            creds,
        )?;
        start.headers.insert(header::CONTENT_LENGTH, number(0));
        let resp = self.inner.send(&start).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(error_for(resp, reference, &up.scopes, Target::Other).await);
        }
        let loc = location(&resp, &start.url)?;
        if size <= sizes.monolithic_max {
            self.upload_whole(&up, &loc, reader).await
        } else {
            let loc = self.upload_chunks(&up, loc, reader, sizes.chunk).await?;
            self.finish_chunks(&up, loc).await
        }
    }

    /// The blob streamed in one PUT. The stream cannot be sent twice: after a failure the
    /// upload succeeded only if the blob is there now.
    async fn upload_whole<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        up: &Upload<'_>,
        loc: &Url,
        reader: R,
    ) -> Result<(), RegistryError> {
        let counters = self.inner.clone();
        let stream = ReaderStream::new(reader).inspect(move |chunk| {
            if let Ok(c) = chunk {
                counters
                    .counters
                    .uploaded
                    .fetch_add(c.len() as u64, Ordering::Relaxed);
            }
        });
        let body = Body::once(reqwest::Body::wrap_stream(stream));
        let put = self.digest_put(up, loc, body, up.size)?;
        match self.try_once(up, &put, 0).await? {
            Try::Answer(resp) => self.created(up, resp).await,
            Try::Transient { error, .. } if self.blob_landed(up).await => {
                tracing::debug!(digest = %up.digest, %error, "blob upload answered no success, but the blob is there");
                Ok(())
            }
            Try::Transient { error, .. } => Err(error),
        }
    }

    /// PATCHes the blob to `loc` in chunks of `chunk_size` bytes; returns the location the
    /// last chunk's answer gave, for the final PUT. Counts each chunk's bytes as uploaded
    /// once the registry has them all (resent bytes are not counted twice).
    async fn upload_chunks<R: AsyncRead + Unpin>(
        &self,
        up: &Upload<'_>,
        mut loc: Url,
        mut reader: R,
        chunk_size: usize,
    ) -> Result<Url, RegistryError> {
        let mut sent = 0u64;
        loop {
            let chunk = read_chunk(&mut reader, chunk_size).await.map_err(|e| {
                RegistryError::Protocol(format!("reading blob {} to upload: {e}", up.digest))
            })?;
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len() as u64;
            loc = self.patch_chunk(up, loc, sent, chunk).await?;
            sent += len;
            self.inner
                .counters
                .uploaded
                .fetch_add(len, Ordering::Relaxed);
        }
        if sent != up.size {
            return Err(RegistryError::DigestMismatch {
                image: up.reference.to_string(),
                what: format!("size of blob {} to upload", up.digest),
                expected: format!("{} bytes", up.size),
                actual: format!("{sent} bytes"),
            });
        }
        Ok(loc)
    }

    /// Sends `chunk`, bytes `sent..` of the blob, to `loc`. After a transient failure,
    /// asks the registry how much of the upload it has and sends the rest of the chunk
    /// from there, up to the retry policy's attempts in all. Returns the next location.
    async fn patch_chunk(
        &self,
        up: &Upload<'_>,
        mut loc: Url,
        sent: u64,
        chunk: Bytes,
    ) -> Result<Url, RegistryError> {
        let end = sent + chunk.len() as u64;
        let mut at = sent;
        let mut failures = 0u32;
        loop {
            let piece = chunk.slice((at - sent) as usize..);
            let patch = self.patch_request(up, &loc, at, piece)?;
            let (error, wait) = match self.try_once(up, &patch, failures).await? {
                Try::Answer(resp) if resp.status() == StatusCode::ACCEPTED => {
                    return location(&resp, &loc);
                }
                Try::Answer(resp) => {
                    return Err(error_for(resp, up.reference, &up.scopes, Target::Other).await);
                }
                Try::Transient { error, wait } => (error, wait),
            };
            failures += 1;
            if failures >= self.inner.retry.attempts {
                return Err(error);
            }
            tracing::debug!(digest = %up.digest, at, %error, ?wait, "blob upload chunk failed; asking the registry where the upload stands");
            tokio::time::sleep(wait).await;
            let (have, next) = match self.upload_status(up, &loc).await {
                Ok(status) => status,
                Err(e) => return Err(not_resumed(up, at, error, e.to_string())),
            };
            if have < sent {
                let why = format!(
                    "the registry has {have} bytes of it, fewer than the {sent} it had taken; \
                     those are no longer in memory to send again"
                );
                return Err(not_resumed(up, at, error, why));
            }
            if have > end {
                let why = format!("the registry says it has {have} bytes, but {end} were sent");
                return Err(not_resumed(up, at, error, why));
            }
            tracing::info!(digest = %up.digest, from = at, to = have, "resuming blob upload where the registry has it");
            (loc, at) = (next, have);
            if at == end {
                return Ok(loc);
            }
        }
    }

    /// The PUT that ends a chunked upload. Sent again after a transient failure only when
    /// that is safe: the blob is not there yet (else the first PUT did it) and the
    /// registry says it has all of its bytes.
    async fn finish_chunks(&self, up: &Upload<'_>, mut loc: Url) -> Result<(), RegistryError> {
        let mut failures = 0u32;
        loop {
            let put = self.digest_put(up, &loc, Body::Empty, 0)?;
            let (error, wait) = match self.try_once(up, &put, failures).await? {
                Try::Answer(resp) => return self.created(up, resp).await,
                Try::Transient { error, wait } => (error, wait),
            };
            failures += 1;
            tokio::time::sleep(wait).await;
            if self.blob_landed(up).await {
                return Ok(());
            }
            if failures >= self.inner.retry.attempts {
                return Err(error);
            }
            match self.upload_status(up, &loc).await {
                Ok((have, next)) if have == up.size => loc = next,
                Ok((have, _)) => {
                    let why = format!("the registry has {have} of its {} bytes", up.size);
                    return Err(not_resumed(up, up.size, error, why));
                }
                Err(e) => return Err(not_resumed(up, up.size, error, e.to_string())),
            }
        }
    }

    /// Sends an upload request once (the caller decides about another try).
    async fn try_once(
        &self,
        up: &Upload<'_>,
        req: &Request<'_>,
        failures: u32,
    ) -> Result<Try, RegistryError> {
        match self.inner.send(req).await {
            // 408: the registry gave up waiting for the body (a slow chunk).
            Ok(resp)
                if retry::is_retryable_status(resp.status())
                    || resp.status() == StatusCode::REQUEST_TIMEOUT =>
            {
                let wait = self.inner.retry.wait_for(failures, resp.headers());
                let error = error_for(resp, up.reference, &up.scopes, Target::Other).await;
                Ok(Try::Transient { error, wait })
            }
            Ok(resp) => Ok(Try::Answer(resp)),
            Err(error @ RegistryError::Unreachable { .. }) => Ok(Try::Transient {
                error,
                wait: self.inner.retry.backoff(failures),
            }),
            Err(e) => Err(e),
        }
    }

    /// How many bytes of the upload at `loc` the registry has, and the location to go on
    /// at (the registry may renew it). Any failure is the registry not telling.
    async fn upload_status(&self, up: &Upload<'_>, loc: &Url) -> Result<(u64, Url), RegistryError> {
        let req = self.at_upload(up, Method::GET, loc)?;
        let resp = self.inner.send(&req).await?;
        if !resp.status().is_success() {
            return Err(error_for(resp, up.reference, &up.scopes, Target::Other).await);
        }
        let range = resp.headers().get(header::RANGE);
        let have = uploaded_bytes(range).ok_or_else(|| {
            RegistryError::Protocol(format!(
                "upload status of blob {} has an unreadable Range {:?}",
                up.digest,
                range.and_then(|v| v.to_str().ok()).unwrap_or_default()
            ))
        })?;
        let next = match resp.headers().contains_key(header::LOCATION) {
            true => location(&resp, loc)?,
            false => loc.clone(),
        };
        Ok((have, next))
    }

    /// True when the target repository has the blob now (a HEAD that fails says no).
    async fn blob_landed(&self, up: &Upload<'_>) -> bool {
        self.blob_exists(up.reference, up.digest, up.creds)
            .await
            .unwrap_or(false)
    }

    /// A request of `method` to the upload at `loc`, with the upload's scopes and
    /// credentials.
    fn at_upload<'a>(
        &self,
        up: &Upload<'a>,
        method: Method,
        loc: &Url,
    ) -> Result<Request<'a>, RegistryError> {
        let mut req = self.request(
            &up.origin,
            method,
            up.reference,
            "",
            up.scopes.clone(),
            up.creds,
        )?;
        req.url = loc.clone();
        Ok(req)
    }

    fn patch_request<'a>(
        &self,
        up: &Upload<'a>,
        loc: &Url,
        at: u64,
        piece: Bytes,
    ) -> Result<Request<'a>, RegistryError> {
        let len = piece.len() as u64;
        let mut patch = self.at_upload(up, Method::PATCH, loc)?;
        patch.one_try = true;
        patch.headers.insert(header::CONTENT_TYPE, octet_stream());
        patch.headers.insert(header::CONTENT_LENGTH, number(len));
        let range = format!("{at}-{}", at + len - 1);
        patch.headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&range).expect("ascii"),
        );
        patch.body = Body::Bytes(piece);
        Ok(patch)
    }

    /// The PUT to `loc` that names the digest, with the last `len` bytes in `body`.
    fn digest_put<'a>(
        &self,
        up: &Upload<'a>,
        loc: &Url,
        body: Body,
        len: u64,
    ) -> Result<Request<'a>, RegistryError> {
        let mut put = self.at_upload(up, Method::PUT, loc)?;
        put.url
            .query_pairs_mut()
            .append_pair("digest", &up.digest.to_string());
        put.one_try = true;
        put.headers.insert(header::CONTENT_TYPE, octet_stream());
        put.headers.insert(header::CONTENT_LENGTH, number(len));
        put.body = body;
        Ok(put)
    }

    async fn created(&self, up: &Upload<'_>, resp: Response) -> Result<(), RegistryError> {
        if resp.status() != StatusCode::CREATED {
            return Err(error_for(resp, up.reference, &up.scopes, Target::Other).await);
        }
        check_answered_digest(&resp, up.reference, up.digest, "blob")
    }
}

fn not_resumed(up: &Upload<'_>, at: u64, cause: RegistryError, why: String) -> RegistryError {
    RegistryError::UploadNotResumed {
        registry: up.reference.registry.clone(),
        digest: up.digest.clone(),
        at,
        why,
        cause: Box::new(cause),
    }
}

/// How many bytes an upload status's `Range: 0-LAST` says the registry has (LAST + 1).
/// Distribution answers `0-0` for an upload with no bytes yet (the letter of the spec
/// would mean one byte); that, and no `Range`, are read as none: a wrong guess either way
/// is caught by the registry's digest check at the end. None: not a range from 0.
fn uploaded_bytes(range: Option<&HeaderValue>) -> Option<u64> {
    let Some(value) = range else { return Some(0) };
    let value = value.to_str().ok()?.trim();
    let value = value.strip_prefix("bytes=").unwrap_or(value);
    let (first, last) = value.split_once('-')?;
    if first.trim().parse::<u64>().ok()? != 0 {
        return None;
    }
    match last.trim().parse::<u64>().ok()? {
        0 => Some(0),
        last => last.checked_add(1),
    }
}

/// Up to `max` bytes from `reader` (fewer only at the end).
async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(max);
    while buf.len() < max {
        let mut limited = (&mut *reader).take((max - buf.len()) as u64);
        if limited.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_status_ranges_count_bytes() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(uploaded_bytes(Some(&h("0-16777215"))), Some(16 << 20));
        assert_eq!(uploaded_bytes(Some(&h("bytes=0-99"))), Some(100));
        assert_eq!(
            uploaded_bytes(Some(&h("0-0"))),
            Some(0),
            "distribution: empty"
        );
        assert_eq!(uploaded_bytes(None), Some(0));
        assert_eq!(uploaded_bytes(Some(&h("5-10"))), None, "not from 0");
        assert_eq!(uploaded_bytes(Some(&h("0-"))), None);
        assert_eq!(uploaded_bytes(Some(&h("ten"))), None);
        assert_eq!(uploaded_bytes(Some(&h(&format!("0-{}", u64::MAX)))), None);
    }
}
