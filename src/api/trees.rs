//! `DELETE /trees?dest=PATH`: removes a tree inside the roots (see `jobs::trees`).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::Query;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeQuery {
    dest: Option<String>,
}

/// 204 once the tree is gone; 409 `dest_busy` while a queued or running job uses it, 403
/// `dest_outside_roots`, 404 `dest_not_found`, 400 `invalid_dest`.
pub async fn remove(
    State(state): State<AppState>,
    Query(q): Query<TreeQuery>,
) -> Result<StatusCode, ApiError> {
    let Some(dest) = q.dest else {
        return Err(ApiError::bad_request(
            "invalid_dest",
            "give the tree as ?dest=PATH (relative to the first root, or absolute inside one)",
        ));
    };
    state.jobs.remove_tree(&dest).await?;
    Ok(StatusCode::NO_CONTENT)
}
