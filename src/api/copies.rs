//! `POST /copies`: a copy between registries (or a retag within one repository), as a job.

use axum::extract::State;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use super::extract::Json;
use super::jobs::accepted;
use crate::jobs::CopyRequest;

pub async fn create(
    State(state): State<AppState>,
    Json(request): Json<CopyRequest>,
) -> Result<Response, ApiError> {
    Ok(accepted(state.jobs.submit_copy(request).await?))
}
