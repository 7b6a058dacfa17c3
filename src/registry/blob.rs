//! Downloading blobs: streamed into the caller's sink chunk by chunk, resumed with `Range`
//! when a connection breaks off, cancellable between chunks. Asked of the registry's
//! `pull` hosts in order, the origin last: when a mirror fails, even mid-blob, the next
//! host goes on from the byte the sink has.
//!
//! Does not verify a layer's digest: the sink (the store's writer) hashes what passes.
//! Small blobs fetched whole (image configs) are verified here. Not for: uploads (`push`).

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use super::auth::Scope;
use super::client::check_config_size;
use super::endpoint::{Endpoint, Need, worth_next_host};
use super::error_map::{Target, error_chain, error_for};
use super::{Credentials, Reference, RegistryClient, RegistryError};
use crate::digest::Digest;
use crate::oci::Descriptor;

/// What [`RegistryClient::copy_blob`] did.
#[derive(Clone, Debug)]
pub struct BlobCopied {
    /// `host[:port]` of the host that sent the last bytes (a mirror or the origin).
    pub source: String,
    /// The mirrors that sent any of the bytes (a mirror that broke off mid-blob included):
    /// the ones to blame should the digest not match ([`RegistryClient::blame_mirrors`]).
    pub mirrors: Vec<String>,
}

impl RegistryClient {
    /// Streams blob `digest` of `reference`'s repository into `sink`, starting at byte
    /// `offset` (bytes the sink already holds). Resumes with `Range` after a dropped
    /// connection; `progress` is called with each chunk's length. Tries the `pull`
    /// mirrors, then the origin. Returns the total size. Does not verify the digest: the
    /// sink (the store's writer) does.
    ///
    /// The sink is only ever appended to, which is what lets readers follow it while it
    /// is written (`store::Follower`): a resumed body (from the same host or the next one)
    /// continues at the sink's offset, and a server that answers a `Range` request with
    /// the whole body has the bytes the sink already holds skipped, never written again.
    /// Should those restarted bytes differ from the first ones, the sink's digest (over
    /// the first ones and the rest) fails.
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_blob<W: AsyncWrite + Unpin + Send>(
        &self,
        reference: &Reference,
        digest: &Digest,
        expected_size: Option<u64>,
        creds: Option<&Credentials>,
        sink: &mut W,
        offset: u64,
        progress: &(dyn Fn(u64) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<BlobCopied, RegistryError> {
        let hosts = self.inner.endpoints(reference).await?.for_need(Need::Pull);
        let mut pos = offset;
        let mut last = None;
        let mut mirrors = Vec::new();
        for host in hosts {
            if !host.is_origin() && self.inner.blamed.is_blamed(host.name(), digest) {
                tracing::debug!(%digest, mirror = %host.name(), "blob: this mirror sent wrong bytes for it lately; not asked");
                continue;
            }
            let from = pos;
            let result = self
                .copy_blob_from(
                    &host,
                    reference,
                    digest,
                    expected_size,
                    creds,
                    sink,
                    &mut pos,
                    progress,
                    cancel,
                )
                .await;
            if pos > from && !host.is_origin() {
                mirrors.push(host.name().to_string());
            }
            match result {
                Ok(()) => {
                    return Ok(BlobCopied {
                        source: host.name().to_string(),
                        mirrors,
                    });
                }
                // The sink holds exactly `pos` good-so-far bytes: the next host goes on
                // from there (the whole is verified by the sink at the end).
                Err(e) if !host.is_origin() && worth_next_host(&e) => {
                    tracing::warn!(%digest, mirror = %host.name(), from, at = pos, error = %e, "blob: mirror failed; asking the next host");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Protocol(format!("no host for {digest}"))))
    }

    /// One host's part of [`copy_blob`](Self::copy_blob): from `*pos` to the end, or to
    /// the point it failed (`*pos` then says how far the sink got).
    #[allow(clippy::too_many_arguments)]
    async fn copy_blob_from<W: AsyncWrite + Unpin + Send>(
        &self,
        host: &Arc<Endpoint>,
        reference: &Reference,
        digest: &Digest,
        expected_size: Option<u64>,
        creds: Option<&Credentials>,
        sink: &mut W,
        pos: &mut u64,
        progress: &(dyn Fn(u64) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<(), RegistryError> {
        let offset = *pos;
        let size_error = |actual: String| RegistryError::DigestMismatch {
            image: reference.to_string(),
            what: format!("size of blob {digest}"),
            expected: format!("{} bytes", expected_size.unwrap_or_default()),
            actual,
        };
        match expected_size {
            Some(e) if offset > e => return Err(size_error(format!("{offset} bytes already"))),
            Some(e) if offset == e => return Ok(()),
            _ => {}
        }
        let path = format!("{}/blobs/{digest}", reference.repository);
        let scopes = vec![Scope::pull(&reference.repository)];
        // A mirror gets one try: when it breaks off, the next host goes on instead.
        let attempts = if host.is_origin() {
            self.inner.retry.attempts
        } else {
            1
        };
        let mut stalls = 0u32;
        loop {
            let pos_now = *pos;
            let mut req =
                self.request(host, Method::GET, reference, &path, scopes.clone(), creds)?;
            if pos_now > 0 {
                let range = HeaderValue::from_str(&format!("bytes={pos_now}-")).expect("ascii");
                req.headers.insert(header::RANGE, range);
            }
            let resp = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(RegistryError::Cancelled),
                r = self.inner.send(&req) => r?,
            };
            // A server that ignores `Range` sends everything: drop what the sink has.
            let mut skip = match resp.status() {
                StatusCode::PARTIAL_CONTENT => {
                    let start = content_range_start(resp.headers().get(header::CONTENT_RANGE));
                    if start.is_some_and(|s| s != pos_now) {
                        return Err(RegistryError::Protocol(format!(
                            "blob {digest} from {}: asked for bytes from {pos_now}, got a range from {}",
                            host.name(),
                            start.unwrap_or_default()
                        )));
                    }
                    0
                }
                StatusCode::OK => {
                    let len = resp
                        .headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                    if let (Some(len), Some(e)) = (len, expected_size)
                        && len != e
                    {
                        return Err(size_error(format!("{len} bytes (content-length)")));
                    }
                    pos_now
                }
                _ => return Err(error_for(resp, reference, &scopes, Target::Blob(digest)).await),
            };
            let before = pos_now;
            let mut stream = resp.bytes_stream();
            let broke = loop {
                let next = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(RegistryError::Cancelled),
                    n = stream.next() => n,
                };
                let mut chunk = match next {
                    None => break None,
                    Some(Err(e)) => break Some(error_chain(&e.without_url())),
                    Some(Ok(c)) => c,
                };
                self.inner.counters.add_downloaded(chunk.len() as u64);
                if skip > 0 {
                    let n = skip.min(chunk.len() as u64);
                    chunk = chunk.slice(n as usize..);
                    skip -= n;
                }
                if chunk.is_empty() {
                    continue;
                }
                let len = chunk.len() as u64;
                if expected_size.is_some_and(|e| *pos + len > e) {
                    return Err(size_error(format!("at least {} bytes", *pos + len)));
                }
                sink.write_all(&chunk)
                    .await
                    .map_err(|source| RegistryError::Write {
                        digest: digest.clone(),
                        source,
                    })?;
                *pos += len;
                progress(len);
            };
            let complete = skip == 0 && expected_size.is_none_or(|e| *pos == e);
            if broke.is_none() && complete {
                break;
            }
            stalls = if *pos > before { 0 } else { stalls + 1 };
            let ended_short = broke.is_none();
            let why = broke.unwrap_or_else(|| "the body ended early".to_string());
            if stalls >= attempts || !host.is_origin() {
                return Err(if ended_short && expected_size.is_some() {
                    size_error(format!("{} bytes", *pos))
                } else {
                    RegistryError::Unreachable {
                        registry: host.name().to_string(),
                        message: format!("blob {digest} broke off at byte {}: {why}", *pos),
                    }
                });
            }
            tracing::debug!(%digest, pos = *pos, %why, "blob download broke off; resuming");
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(RegistryError::Cancelled),
                _ = tokio::time::sleep(self.inner.retry.backoff(stalls)) => {}
            }
        }
        sink.flush().await.map_err(|source| RegistryError::Write {
            digest: digest.clone(),
            source,
        })?;
        Ok(())
    }

    /// The size of blob `digest` in `reference`'s repository (HEAD, pull scope): the
    /// registry's answer that these credentials may read it there. `BlobUnknown` on 404.
    pub async fn head_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        creds: Option<&Credentials>,
    ) -> Result<u64, RegistryError> {
        let path = format!("{}/blobs/{digest}", reference.repository);
        let scopes = vec![Scope::pull(&reference.repository)];
        // The origin decides who may read what.
        let origin = self.inner.origin(reference).await?;
        let req = self.request(&origin, Method::HEAD, reference, &path, scopes, creds)?;
        let resp = self.inner.send(&req).await?;
        if !resp.status().is_success() {
            return Err(error_for(resp, reference, &req.scopes, Target::Blob(digest)).await);
        }
        resp.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                RegistryError::Protocol(format!(
                    "HEAD of blob {digest} at {} answered no Content-Length",
                    reference.registry
                ))
            })
    }

    /// The image config `desc` names, downloaded whole and verified (at most 16 MiB).
    pub async fn fetch_config(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        creds: Option<&Credentials>,
    ) -> Result<Bytes, RegistryError> {
        check_config_size(reference, desc)?;
        let mut buf = Vec::with_capacity(desc.size as usize);
        let cancel = CancellationToken::new();
        loop {
            buf.clear();
            let copied = self
                .copy_blob(
                    reference,
                    &desc.digest,
                    Some(desc.size),
                    creds,
                    &mut buf,
                    0,
                    &|_| {},
                    &cancel,
                )
                .await?;
            if desc.digest.matches(&buf) {
                return Ok(Bytes::from(buf));
            }
            // Wrong bytes from a mirror: it is skipped for this blob from now on, so
            // asking again goes to another host (each round blames one more, the origin
            // is never skipped): the loop ends.
            if !copied.mirrors.is_empty() {
                self.blame_mirrors(&desc.digest, &copied.mirrors);
                continue;
            }
            let mut h = desc.digest.hasher();
            h.update(&buf);
            return Err(RegistryError::DigestMismatch {
                image: reference.to_string(),
                what: "config".to_string(),
                expected: desc.digest.to_string(),
                actual: h.finish().to_string(),
            });
        }
    }

    /// Skips `mirrors` for blob `digest` from now on (for a while): the bytes they sent
    /// for it did not match it. Each is named in a warning.
    pub fn blame_mirrors(&self, digest: &Digest, mirrors: &[String]) {
        for mirror in mirrors {
            tracing::warn!(%digest, %mirror, "blob: the bytes this mirror sent do not match the digest; it is skipped for this blob, the next host asked");
            self.inner.blamed.blame(mirror, digest);
        }
    }

    /// True when some mirror sent wrong bytes for `digest` lately: asking again would go
    /// to another host.
    pub fn mirror_blamed(&self, digest: &Digest) -> bool {
        self.inner.blamed.any_for(digest)
    }
}

/// START of `Content-Range: bytes START-END/TOTAL`.
fn content_range_start(value: Option<&HeaderValue>) -> Option<u64> {
    let v = value?.to_str().ok()?.trim();
    let range = v.strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start_is_read() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            content_range_start(Some(&h("bytes 100-199/200"))),
            Some(100)
        );
        assert_eq!(content_range_start(Some(&h("bytes 0-0/*"))), Some(0));
        assert_eq!(content_range_start(Some(&h("items 1-2/3"))), None);
        assert_eq!(content_range_start(None), None);
    }
}
