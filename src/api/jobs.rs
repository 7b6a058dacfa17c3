//! `GET /jobs`, `GET /jobs/{id}[?wait=]`, `GET /jobs/{id}/events`, `DELETE /jobs/{id}`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::AppState;
use super::error::ApiError;
use super::extract::{Path, Query};
use crate::jobs::{Job, JobEvent, JobKind, JobStatus};

/// Longest `?wait=` honoured, in seconds; clients loop for longer waits.
const MAX_WAIT_SECS: u64 = 300;

/// `202 Accepted` with the new job and `Location: /jobs/{id}`.
pub fn accepted(job: Job) -> Response {
    let location = format!("/jobs/{}", job.id);
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(job),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    limit: Option<u32>,
    before: Option<String>,
}

/// Jobs, newest first, a page of `limit` (default 100, at most 1000) at a time. When older
/// jobs remain, `Link: </jobs?...&before=ID>; rel="next"` names the next page (RFC 8288, as
/// registries page tags), so the body stays the bare array it has always been.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            JobStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    format!(
                        "status {s:?} is not one of queued, running, succeeded, failed, cancelled"
                    ),
                )
            })
        })
        .transpose()?;
    let kind = q
        .kind
        .as_deref()
        .map(|k| {
            JobKind::parse(k).ok_or_else(|| {
                ApiError::bad_request("invalid_query", format!("kind {k:?} is not pull or build"))
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    // one more than asked: whether there is a next page
    let mut jobs = state
        .jobs
        .list(status, kind, q.before.as_deref(), limit + 1)
        .await?;
    let more = jobs.len() > limit as usize;
    jobs.truncate(limit as usize);
    let next = match (more, jobs.last()) {
        (true, Some(last)) => {
            let mut link = format!("</jobs?limit={limit}&before={}", last.id);
            if let Some(s) = status {
                link.push_str(&format!("&status={}", s.as_str()));
            }
            if let Some(k) = kind {
                link.push_str(&format!("&kind={}", k.as_str()));
            }
            link.push_str(">; rel=\"next\"");
            Some(link)
        }
        _ => None,
    };
    let mut response = axum::Json(jobs).into_response();
    if let Some(link) = next.and_then(|l| header::HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    wait: Option<f64>,
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
) -> Result<axum::Json<Job>, ApiError> {
    let job = match q.wait {
        Some(w) if w.is_finite() && w > 0.0 => {
            let wait = Duration::from_secs_f64(w.min(MAX_WAIT_SECS as f64));
            state.jobs.wait(&id, wait).await?
        }
        Some(w) if !w.is_finite() || w < 0.0 => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("wait {w} must be a number of seconds >= 0"),
            ));
        }
        _ => state.jobs.get(&id).await?,
    };
    Ok(axum::Json(job))
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Job>, ApiError> {
    Ok(axum::Json(state.jobs.cancel(&id).await?))
}

/// Server-sent events: `state` (the whole job) on every status change, `progress` while
/// running; the stream ends after the job ends.
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let rx = state.jobs.subscribe();
    let job = state.jobs.get(&id).await?;
    let jobs = state.jobs.clone();
    let stream = async_stream(jobs, id, job, rx);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn state_event(job: &Job) -> Event {
    Event::default()
        .event("state")
        .json_data(job)
        .unwrap_or_else(|_| Event::default().event("state"))
}

fn async_stream(
    jobs: crate::jobs::Jobs,
    id: String,
    first: Job,
    rx: broadcast::Receiver<JobEvent>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct St {
        jobs: crate::jobs::Jobs,
        id: String,
        first: Option<Job>,
        rx: broadcast::Receiver<JobEvent>,
        done: bool,
        /// Status last sent: the first row and the broadcast can carry the same change.
        last: Option<JobStatus>,
    }
    futures_util::stream::unfold(
        St {
            jobs,
            id,
            first: Some(first),
            rx,
            done: false,
            last: None,
        },
        |mut st| async move {
            if st.done {
                return None;
            }
            if let Some(job) = st.first.take() {
                st.done = job.status.is_terminal();
                st.last = Some(job.status);
                return Some((Ok(state_event(&job)), st));
            }
            loop {
                match st.rx.recv().await {
                    Ok(JobEvent::State(job)) if job.id == st.id && st.last != Some(job.status) => {
                        st.done = job.status.is_terminal();
                        st.last = Some(job.status);
                        return Some((Ok(state_event(&job)), st));
                    }
                    Ok(JobEvent::Progress { id, progress }) if id == st.id => {
                        let ev = Event::default()
                            .event("progress")
                            .json_data(&progress)
                            .unwrap_or_default();
                        return Some((Ok(ev), st));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some: resynchronise from the row.
                        if let Ok(job) = st.jobs.get(&st.id).await {
                            st.done = job.status.is_terminal();
                            return Some((Ok(state_event(&job)), st));
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    )
}
