//! Pushing one image: every blob, then the manifest, the way go-containerregistry's
//! `remote.Write` does it.
//!
//! Vocabulary: a blob's *digest* is the sha256 of its bytes as stored and sent (a layer
//! compressed); that is what a manifest names and what every request here is about. A
//! layer's *diff_id* is the sha256 of its uncompressed tar and appears only inside the
//! image config (`rootfs.diff_ids`); pushing never needs it.
//!
//! Order, enforced by [`RegistryClient::push_image`]:
//! 1. per blob, layers oldest first and then the config: HEAD, and skip it when the target
//!    repository has it; else, when the blob carries a source repository on the target's
//!    registry, ask for a cross-repository mount; else open its bytes and upload them. The
//!    bytes are opened only in that last case, so a skipped or mounted base layer is never
//!    downloaded.
//! 2. the manifest, last: a tag must never name an image whose blobs are not all in the
//!    repository yet (the registry refuses such a manifest, and a failed or cancelled push
//!    leaves the tag as it was).
//!
//! Cancellation is checked before every registry call and ends the one in flight.
//!
//! A registry-to-registry copy reuses this unchanged: its blobs are
//! [`BlobSource::Repository`] of the source, mounted within one registry, else opened by
//! its own [`OpenBlob`] (streamed from the source, through the cache or not); an index is
//! its children pushed with [`RegistryClient::push_image`] under their digests, then the
//! index's own manifest.
//! Not for: building the image (see `image::assemble`) or where a blob's bytes are kept
//! (the caller's [`OpenBlob`]).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::{Credentials, Reference, RegistryClient, RegistryError};
use crate::digest::Digest;
use crate::oci::{Descriptor, MediaType};

/// An image ready to push, as a value: its blobs, each with where its bytes come from,
/// and its manifest document.
#[derive(Clone, Debug)]
pub struct ImageToPush {
    /// The layers, oldest first, with the descriptors the manifest lists.
    pub layers: Vec<PushBlob>,
    /// The config blob.
    pub config: PushBlob,
    /// The manifest's exact bytes, PUT last.
    pub manifest: Bytes,
    /// The manifest's media type (its `Content-Type`).
    pub media_type: MediaType,
}

impl ImageToPush {
    /// Every blob in push order (layers, then config); a blob's place here is its
    /// `index` for [`OpenBlob`] and [`PushProgress`].
    pub fn blobs(&self) -> impl Iterator<Item = &PushBlob> {
        self.layers.iter().chain(std::iter::once(&self.config))
    }
}

/// One blob to push: what it is, and where its bytes come from.
#[derive(Clone, Debug)]
pub struct PushBlob {
    pub descriptor: Descriptor,
    pub source: BlobSource,
}

/// Where the bytes of a blob to push come from. Only [`BlobSource::Repository`] changes
/// what push_image asks the registry (a mount); how the bytes of any source are read is
/// the caller's [`OpenBlob`].
#[derive(Clone, Debug)]
pub enum BlobSource {
    /// Bytes in memory (a config).
    Bytes(Bytes),
    /// A local file (a layer just built).
    File(PathBuf),
    /// A blob another repository has (a base image's layer; later a copy's source): mounted
    /// from there when it is on the target's registry, else opened and uploaded. Whether
    /// the bytes are then read through the verified cache or streamed straight from that
    /// repository is the opener's choice, not push_image's.
    Repository(Reference),
}

/// A blob's bytes, to upload. `'static` because a monolithic upload streams it as the
/// request body.
pub type BlobReader = Box<dyn AsyncRead + Send + Unpin>;

/// Opens the bytes of a blob that must be uploaded (the target has it not, and no mount
/// happened). Called at most once per blob, just before its upload; errors end the push.
pub trait OpenBlob: Sync {
    /// The push's error: registry errors (and `cancelled`) become it.
    type Error: From<RegistryError> + Send;

    /// The bytes of `blob`, the `index`-th of [`ImageToPush::blobs`].
    fn open(
        &self,
        index: usize,
        blob: &PushBlob,
    ) -> impl Future<Output = Result<BlobReader, Self::Error>> + Send;
}

/// How a blob got into the target repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobPushed {
    /// The target had it already (HEAD answered).
    Skipped,
    /// Linked from its source repository (same registry), nothing sent.
    Mounted,
    /// Its bytes were uploaded.
    Uploaded,
}

/// Told of each blob's progress as the push goes; cheap calls, from the pushing task or
/// from the upload's body stream.
pub trait PushProgress: Send + Sync + 'static {
    /// `n` more bytes of blob `index` are in the target: as they are uploaded, or all at
    /// once when the blob was skipped or mounted.
    fn bytes(&self, index: usize, n: u64);
    /// Blob `index` is being uploaded.
    fn uploading(&self, index: usize);
    /// Blob `index` is in the target.
    fn done(&self, index: usize, how: BlobPushed);
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest's digest, as pushed (and as the registry confirmed when it said).
    pub digest: Digest,
    pub skipped: usize,
    pub mounted: usize,
    pub uploaded: usize,
    /// Bytes of the uploaded blobs.
    pub bytes_uploaded: u64,
}

impl RegistryClient {
    /// Pushes `image` to `target` (its repository, and its tag or digest for the manifest)
    /// in the order the module doc states. `creds` are the target's; a mount uses them
    /// too (pull on the source repository). The bytes of uploaded blobs come from `open`.
    /// An index (a later copy) is pushed as its children with this, then its own manifest.
    pub async fn push_image<O: OpenBlob, P: PushProgress>(
        &self,
        target: &Reference,
        image: &ImageToPush,
        creds: Option<&Credentials>,
        open: &O,
        progress: &Arc<P>,
        cancel: &CancellationToken,
    ) -> Result<PushReport, O::Error> {
        let push = Push {
            client: self,
            target,
            creds,
            open,
            progress,
            cancel,
        };
        let (mut skipped, mut mounted, mut uploaded, mut bytes_uploaded) = (0, 0, 0, 0);
        for (index, blob) in image.blobs().enumerate() {
            match push.blob(index, blob).await? {
                BlobPushed::Skipped => skipped += 1,
                BlobPushed::Mounted => mounted += 1,
                BlobPushed::Uploaded => {
                    uploaded += 1;
                    bytes_uploaded += blob.descriptor.size;
                }
            }
        }
        // Only now, with every blob in the repository, may a tag name the manifest.
        let digest = until_cancelled(
            cancel,
            self.put_manifest(target, &image.media_type, image.manifest.clone(), creds),
        )
        .await?;
        Ok(PushReport {
            digest,
            skipped,
            mounted,
            uploaded,
            bytes_uploaded,
        })
    }
}

/// One push under way: where to, with what, told to whom.
struct Push<'a, O, P> {
    client: &'a RegistryClient,
    target: &'a Reference,
    creds: Option<&'a Credentials>,
    open: &'a O,
    progress: &'a Arc<P>,
    cancel: &'a CancellationToken,
}

impl<O: OpenBlob, P: PushProgress> Push<'_, O, P> {
    /// One blob into the target repository: skipped, mounted or uploaded.
    async fn blob(&self, index: usize, blob: &PushBlob) -> Result<BlobPushed, O::Error> {
        let (client, target, creds, cancel) = (self.client, self.target, self.creds, self.cancel);
        let desc = &blob.descriptor;
        if until_cancelled(cancel, client.blob_exists(target, &desc.digest, creds)).await? {
            self.progress.bytes(index, desc.size);
            self.progress.done(index, BlobPushed::Skipped);
            return Ok(BlobPushed::Skipped);
        }
        if let BlobSource::Repository(from) = &blob.source {
            // Within one repository there is nothing to mount from: it has not the blob.
            let mountable =
                from.registry == target.registry && from.repository != target.repository;
            if mountable
                && until_cancelled(cancel, client.mount_blob(target, &desc.digest, from, creds))
                    .await?
            {
                self.progress.bytes(index, desc.size);
                self.progress.done(index, BlobPushed::Mounted);
                return Ok(BlobPushed::Mounted);
            }
        }
        // Opening may take long (a base layer is fetched first); a cancel seen meanwhile
        // ends the push here, before the blob is reported as uploading.
        let reader = self.open.open(index, blob).await?;
        if cancel.is_cancelled() {
            return Err(RegistryError::Cancelled.into());
        }
        self.progress.uploading(index);
        let counted = Counted {
            inner: reader,
            progress: self.progress.clone(),
            index,
        };
        until_cancelled(
            cancel,
            client.upload_blob(target, &desc.digest, desc.size, counted, creds),
        )
        .await?;
        self.progress.done(index, BlobPushed::Uploaded);
        Ok(BlobPushed::Uploaded)
    }
}

/// Runs one registry call until it ends or `cancel` fires (checked first, so a cancelled
/// push starts no further request). Dropping a call is safe: an upload left half done is
/// the registry's to expire, and nothing names it.
async fn until_cancelled<T>(
    cancel: &CancellationToken,
    call: impl Future<Output = Result<T, RegistryError>>,
) -> Result<T, RegistryError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(RegistryError::Cancelled),
        result = call => result,
    }
}

/// An `AsyncRead` that reports what passes through it as upload progress.
struct Counted<R, P: ?Sized> {
    inner: R,
    progress: Arc<P>,
    index: usize,
}

impl<R: AsyncRead + Unpin, P: PushProgress + ?Sized> AsyncRead for Counted<R, P> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.progress.bytes(self.index, n);
        }
        poll
    }
}
