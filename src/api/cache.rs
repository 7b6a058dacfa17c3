//! `GET /cache` and `DELETE /cache`.

use axum::extract::State;

use super::AppState;
use super::error::ApiError;
use super::extract::{NoQuery, Query};
use crate::store::{CacheStats, PurgeReport};

pub async fn stats(
    State(state): State<AppState>,
    Query(NoQuery {}): Query<NoQuery>,
) -> Result<axum::Json<CacheStats>, ApiError> {
    Ok(axum::Json(state.jobs.env().store.stats().await?))
}

pub async fn purge(
    State(state): State<AppState>,
    Query(NoQuery {}): Query<NoQuery>,
) -> Result<axum::Json<PurgeReport>, ApiError> {
    let report = state.jobs.env().store.purge().await?;
    tracing::info!(
        removed_blobs = report.removed_blobs,
        freed_bytes = report.freed_bytes,
        "cache purged"
    );
    Ok(axum::Json(report))
}
