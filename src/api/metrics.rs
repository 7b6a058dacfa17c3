//! `GET /metrics`: Prometheus text exposition format.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use super::error::ApiError;
use crate::jobs::JobMetrics;

pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut out = String::new();
    let counts = state.jobs.counts().await?;
    out.push_str("# HELP hoist_jobs Jobs in the database by kind and status.\n");
    out.push_str("# TYPE hoist_jobs gauge\n");
    for (kind, status, n) in counts {
        let _ = writeln!(out, "hoist_jobs{{kind=\"{kind}\",status=\"{status}\"}} {n}");
    }
    job_durations(&mut out, state.jobs.metrics());

    let store = &state.jobs.env().store;
    let c = store.counters();
    let stats = store.stats().await?;
    for (name, help, value) in [
        (
            "hoist_cache_hits_total",
            "Blob requests answered from the cache.",
            c.hits,
        ),
        (
            "hoist_cache_misses_total",
            "Blob requests that downloaded the blob.",
            c.misses,
        ),
        (
            "hoist_cache_shared_total",
            "Blob requests that waited for another job's download of the same blob.",
            c.shared,
        ),
        (
            "hoist_cache_evictions_total",
            "Blobs evicted by the size limit.",
            c.evictions,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP hoist_cache_bytes Bytes of blobs in the cache.\n# TYPE hoist_cache_bytes gauge\nhoist_cache_bytes {}",
        stats.bytes
    );
    let _ = writeln!(
        out,
        "# HELP hoist_cache_blobs Blobs in the cache.\n# TYPE hoist_cache_blobs gauge\nhoist_cache_blobs {}",
        stats.blobs
    );
    let registry = &state.jobs.env().registry;
    out.push_str("# HELP hoist_registry_requests_total Registry HTTP requests by response status (0: no answer).\n");
    out.push_str("# TYPE hoist_registry_requests_total counter\n");
    for (status, n) in registry.request_counts() {
        let _ = writeln!(
            out,
            "hoist_registry_requests_total{{status=\"{status}\"}} {n}"
        );
    }
    out.push_str("# HELP hoist_registry_host_requests_total Registry HTTP requests by host asked (mirrors, origins, token realms).\n");
    out.push_str("# TYPE hoist_registry_host_requests_total counter\n");
    for (host, n) in registry.request_counts_by_host() {
        let host = host.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "hoist_registry_host_requests_total{{host=\"{host}\"}} {n}"
        );
    }
    for (name, help, value) in [
        (
            "hoist_registry_download_bytes_total",
            "Blob bytes received from registries.",
            registry.bytes_downloaded(),
        ),
        (
            "hoist_registry_upload_bytes_total",
            "Blob bytes sent to registries.",
            registry.bytes_uploaded(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}

fn job_durations(out: &mut String, metrics: &JobMetrics) {
    out.push_str("# HELP hoist_job_duration_seconds Time from start to end of jobs.\n");
    out.push_str("# TYPE hoist_job_duration_seconds histogram\n");
    for ((kind, status), h) in metrics.snapshot() {
        let labels = format!("kind=\"{}\",status=\"{}\"", kind.as_str(), status.as_str());
        for (bound, n) in crate::jobs::DURATION_BUCKETS.iter().zip(h.buckets) {
            let _ = writeln!(
                out,
                "hoist_job_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "hoist_job_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "hoist_job_duration_seconds_sum{{{labels}}} {}", h.sum);
        let _ = writeln!(
            out,
            "hoist_job_duration_seconds_count{{{labels}}} {}",
            h.count
        );
    }
}
