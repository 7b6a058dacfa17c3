//! hoist: a local daemon that gets container images out of registries and onto disk,
//! and puts simple images back. See ARCHITECTURE.md for the map of the rooms.

pub(crate) mod api;
pub mod cli;
pub mod config;
pub(crate) mod db;
pub(crate) mod digest;
pub(crate) mod error;
pub(crate) mod guard;
pub(crate) mod image;
pub(crate) mod jobs;
pub(crate) mod logging;
pub(crate) mod mirror;
pub(crate) mod oci;
pub(crate) mod registry;
pub mod serve;
pub(crate) mod store;
pub(crate) mod text;
pub(crate) mod unpack;

/// The routes the daemon serves (the table its router is built from), public so the
/// OpenAPI test can hold `openapi.yaml` against it.
pub use api::{ROUTES, Route};
