//! hoist's integration tests: one test binary, so the harness in `common/` compiles once.
//!
//! Every module drives the real `hoist` binary (and the real tools) through
//! [`common::World`] or one of its parts; the module names say the area they cover (see
//! ARCHITECTURE.md, "Testing map"). A new area is a new module here; a new helper shared by
//! several areas goes in `common/`.

mod common;

mod api_requests;
mod auth;
mod build;
mod cache;
mod cli;
mod copies;
mod failures;
mod forgery;
mod harness;
mod hoist_chain;
mod hostile_headers;
mod images;
mod jobs;
mod layouts;
mod leftovers;
mod openapi;
mod ops;
mod pipeline;
mod pull_layers;
mod registry_hosts;
mod registry_v2;
mod resources;
mod rootless;
mod service;
mod streaming;
