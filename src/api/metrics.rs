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
        (
            "hoist_layer_inflates_total",
            "Layer decompressions started.",
            crate::unpack::inflates().0,
        ),
        (
            "hoist_layer_inflates_joined_total",
            "Layers applied by joining another pull's running decompression of the same cached blob.",
            crate::unpack::inflates().1,
        ),
        (
            "hoist_tree_flushes_total",
            "syncfs calls that flushed finished trees to disk (trees finishing together share one).",
            crate::unpack::flushes(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    mirror_counts(&mut out, &state.mirror.metrics());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}

/// `/v2/`'s counters, one series per upstream.
fn mirror_counts(out: &mut String, by_upstream: &[(String, crate::mirror::UpstreamCounts)]) {
    type Field = fn(&crate::mirror::UpstreamCounts) -> u64;
    let series: [(&str, &str, Field); 4] = [
        (
            "hoist_mirror_requests_total",
            "Requests for manifests and blobs on /v2/, by upstream.",
            |c| c.requests,
        ),
        (
            "hoist_mirror_hits_total",
            "/v2/ manifests and blobs served from the cache, by upstream.",
            |c| c.hits,
        ),
        (
            "hoist_mirror_misses_total",
            "/v2/ manifests and blobs fetched from the upstream, by upstream.",
            |c| c.misses,
        ),
        (
            "hoist_mirror_served_bytes_total",
            "Bytes of manifests and blobs sent to /v2/ clients, by upstream.",
            |c| c.bytes_served,
        ),
    ];
    for (name, help, field) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (upstream, counts) in by_upstream {
            let upstream = upstream.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{upstream=\"{upstream}\"}} {}", field(counts));
        }
    }
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
