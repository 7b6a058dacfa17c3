//! `GET /tags?repository=REF[&n=N&last=TAG]`: a repository's tags, from the registry.
//!
//! Without `n`, the registry's `Link` pagination is followed within the registry client's
//! bounds (100 pages of at most 4 MiB, 100,000 tags); with `n`, one page is asked for. Either way `next` says the `last` to go on from when there is more.

use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::Query;
use crate::registry::{Reference, ReferenceError};

/// The largest page (`n`) asked of a registry.
const MAX_PAGE: u32 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsQuery {
    repository: Option<String>,
    n: Option<u32>,
    last: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<TagsQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    // The caller's credentials for this one listing, as /digest and /inspect take them.
    let auth = super::images::registry_auth(&headers)?;
    let repository = q.repository.as_deref().unwrap_or("").trim();
    if repository.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_reference",
            "give the repository as ?repository=REF (e.g. ?repository=registry.example/team/app)",
        ));
    }
    let reference: Reference = repository
        .parse()
        .map_err(|e: ReferenceError| ApiError::bad_request("invalid_reference", e.to_string()))?;
    if let Some(n) = q.n.filter(|n| *n == 0 || *n > MAX_PAGE) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("n={n}: give a page size from 1 to {MAX_PAGE}"),
        ));
    }
    let last = q.last.as_deref().filter(|l| !l.is_empty());
    if let Some(l) = last {
        // A tag's grammar: what the registry could have.
        let ok = l.len() <= 128
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!(
                    "last={}: not a tag (up to 128 of A-Z a-z 0-9 _ . -)",
                    crate::text::quote(l.as_bytes())
                ),
            ));
        }
    }
    let registry = &state.jobs.env().registry;
    let list = registry
        .list_tags(&reference, q.n, last, auth.as_ref())
        .await?;
    let mut body = json!({ "repository": reference.name(), "tags": list.tags });
    if let Some(next) = list.next {
        body["next"] = json!(next);
    }
    Ok(axum::Json(body))
}
