//! The OCI / Docker distribution protocol: references, auth, manifests, blobs.
//!
//! Knows HTTP and registries; knows nothing of jobs, the cache or the filesystem
//! layout of a pull. Callers hand it a [`Reference`] and get typed answers or a
//! [`RegistryError`] with a stable [`RegistryError::code`].

mod auth;
mod client;
mod docker_config;
mod error;
mod manifest;
mod platform;
mod reference;

pub use auth::Credentials;
pub use client::{RegistryClient, RegistryConfig};
pub use error::RegistryError;
pub use manifest::{
    FetchedManifest, LayerDescriptor, ManifestKind, ResolvedImage, media_types,
};
pub use platform::Platform;
pub use reference::{Reference, ReferenceError};
