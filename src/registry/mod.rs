//! The OCI / Docker distribution protocol: references, auth, manifests, blobs.
//!
//! Knows HTTP and registries; knows nothing of jobs, the cache or the filesystem
//! layout of a pull. Callers hand it a [`Reference`] and get typed answers or a
//! [`RegistryError`] with a stable [`RegistryError::code`].
//!
//! Map: `reference`, `platform`, `manifest` and `select` parse and choose; `client`
//! (manifests, resolve), `blob` (downloads) and `push` (uploads) are the API; every
//! request goes through `transport` (retries, redirects, `hosts` for the scheme), which
//! answers 401s with `token` (`challenge`, `auth`, `docker_config`). Errors: `error`,
//! with registry answers mapped in `error_map`. `singleflight` lets concurrent identical
//! questions (`/digest`) share one answer.

mod auth;
mod blob;
mod challenge;
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
mod select;
mod singleflight;
mod token;
mod transport;

#[cfg(test)]
mod fake_registry;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_blob;

pub use auth::Credentials;
pub use client::{ImageDigest, RegistryClient, RegistryConfig};
pub use error::RegistryError;
pub use manifest::{FetchedManifest, ManifestKind, ResolvedImage};
pub use platform::Platform;
pub use reference::{Reference, ReferenceError};
