//! `POST /builds`.

use axum::extract::State;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use super::extract::Json;
use super::jobs::accepted;
use crate::jobs::BuildRequest;

pub async fn create(
    State(state): State<AppState>,
    Json(request): Json<BuildRequest>,
) -> Result<Response, ApiError> {
    Ok(accepted(state.jobs.submit_build(request).await?))
}
