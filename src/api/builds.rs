//! `POST /builds`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;
use super::error::ApiError;
use super::extract::Json;
use crate::jobs::BuildRequest;

pub async fn create(
    State(state): State<AppState>,
    Json(request): Json<BuildRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let job = state.jobs.submit_build(request).await?;
    let location = format!("/jobs/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(job),
    ))
}
