//! The OCI / Docker distribution protocol: references, auth, manifests, blobs.
//!
//! Knows HTTP and registries; knows nothing of jobs, the cache or the filesystem
//! layout of a pull. Callers hand it a [`Reference`] and get typed answers or a
//! [`RegistryError`] with a stable [`RegistryError::code`].
//!
//! Map: `reference`, `platform` and `manifest` parse; `client` (manifests, resolve),
//! `blob` (downloads) and `push` (uploads) are the API; every request goes through
//! `transport` (auth via `auth` and `docker_config`, `retry`, redirects, `hosts`).

mod auth;
mod blob;
mod client;
mod docker_config;
mod error;
mod error_map;
mod hosts;
mod manifest;
mod platform;
mod push;
mod reference;
mod retry;
mod transport;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_blob;

pub use auth::Credentials;
pub use client::{RegistryClient, RegistryConfig};
pub use error::RegistryError;
pub use manifest::{FetchedManifest, LayerDescriptor, ManifestKind, ResolvedImage, media_types};
pub use platform::Platform;
pub use reference::{Reference, ReferenceError};
#[cfg(test)]
mod tests_live;
