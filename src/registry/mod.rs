//! The OCI / Docker distribution protocol: references, auth, manifests, blobs.
//!
//! Knows HTTP and registries; knows nothing of jobs, the cache or the filesystem
//! layout of a pull. Callers hand it a [`Reference`] and get typed answers or a
//! [`RegistryError`] with a stable code (`crate::error::ErrorCode`).
//!
//! Map: `reference`, `platform`, `manifest` and `select` parse and choose; `client`
//! (manifests, resolve), `blob` (downloads), `push` (one request each: HEAD, mount,
//! manifest PUT), `upload` (a blob's upload, chunks resumed where the registry has
//! them), `push_image` (an [`ImageToPush`] pushed whole), `copy` (a
//! fetched manifest as an `ImageToPush`, index subsets, referrers) and `tags` (tag
//! listing, paginated and bounded) are the API;
//! every request goes through `transport` (retries, redirects, `hosts` for the scheme),
//! which answers 401s with `token` (`challenge`, `auth`, `docker_config`). Errors:
//! `error`, with registry answers mapped in `error_map`. `singleflight` lets concurrent
//! identical questions (`/digest`) share one answer.
//!
//! Vocabulary: a blob's *digest* is the sha256 of its bytes as stored (a layer
//! compressed): manifests name blobs by it and every request here is about it. A layer's
//! *diff_id* is the sha256 of its uncompressed tar, listed only in the image config; this
//! module never needs it. A *manifest* describes one platform's image (config + layers);
//! an *index* (or Docker manifest list) points at manifests.
//!
//! Push order ([`RegistryClient::push_image`]): per blob, layers then config, HEAD (skip
//! what the target has), else mount when the blob carries a source repository on the
//! target's registry, else upload; the manifest last, so a tag never names missing blobs.

mod auth;
mod blame;
mod blob;
mod challenge;
mod client;
mod copy;
mod docker_config;
mod endpoint;
mod error;
mod error_map;
mod hosts;
mod hosts_config;
mod hosts_toml;
mod manifest;
mod platform;
mod push;
mod push_image;
mod reference;
mod retry;
mod select;
mod singleflight;
mod tags;
mod tls;
mod token;
mod transport;
mod upload;

#[cfg(test)]
mod fake_registry;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_blob;
#[cfg(test)]
mod tests_push;
#[cfg(test)]
mod tests_upload;

pub use auth::Credentials;
pub use blob::BlobCopied;
pub use client::{RegistryClient, RegistryConfig};
pub use copy::{MAX_REFERRERS, referrer_tags, subset_index};
pub use docker_config::DockerConfig;
pub use error::RegistryError;
pub use hosts_config::{FileRef, RegistrySettings};
pub use manifest::{FetchedManifest, ManifestKind, ResolvedImage, ResolvedManifest};
pub use platform::Platform;
pub use push_image::{
    BlobPushed, BlobReader, BlobSource, ImageToPush, OpenBlob, PushBlob, PushProgress,
};
pub use reference::{Reference, ReferenceError, is_registry};
