//! hoist: a local daemon that gets container images out of registries and onto disk,
//! and puts simple images back. See ARCHITECTURE.md for the map of the rooms.

pub mod api;
pub mod cli;
pub mod config;
pub mod db;
pub mod digest;
pub(crate) mod error;
pub(crate) mod guard;
pub mod image;
pub mod jobs;
pub mod oci;
pub mod registry;
pub mod serve;
pub mod store;
pub mod text;
pub mod unpack;
