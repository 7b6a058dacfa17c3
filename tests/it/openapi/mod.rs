//! The daemon's answers match `openapi.yaml`, and `openapi.yaml` documents exactly the
//! endpoints the router serves (`hoist::ROUTES`, the table the router is built from).
//!
//! Starts the real `hoist serve` (the harness's [`Hoist`]) with no registry at all: it
//! exercises every answer that needs none, plus pulls and look-ups of images on a closed
//! loopback port (they fail) and on a silent one (they hang until the test lets them
//! fail). The answers that need no job are one table of rows (request → status and code
//! or body); the jobs are a story, since each step depends on the one before. Each answer's
//! status, content type, required headers and body are checked against the operation in
//! the spec ([`spec`]).

mod daemon;
mod rows;
pub mod spec;
mod spec_checks;

use std::collections::BTreeSet;

use spec::Spec;

#[test]
fn spec_documents_exactly_the_routed_endpoints() {
    let routed: BTreeSet<(String, String)> = hoist::ROUTES
        .iter()
        // axum's catch-all `{*path}` is OpenAPI's `{path}` (documented as taking `/`s)
        .map(|r| (r.method.to_string(), r.path.replace("{*", "{")))
        .collect();
    assert_eq!(
        routed.len(),
        hoist::ROUTES.len(),
        "a route is listed twice in hoist::ROUTES"
    );
    let documented = Spec::load().operations();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routed but not in openapi.yaml: {undocumented:?}\nin openapi.yaml but not routed: {unrouted:?}"
    );
}
