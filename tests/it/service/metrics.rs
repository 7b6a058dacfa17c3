//! `GET /metrics`: job counts and durations, cache hits, misses and evictions, registry
//! requests by status and bytes downloaded and uploaded, each checked against what the
//! harness measured (proxy log, cache files).

use super::*;

/// One sample of a Prometheus text exposition.
#[derive(Clone, Debug)]
pub(super) struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Clone)]
pub(super) struct Metrics {
    samples: Vec<Sample>,
    text: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{}", self.text)
    }
}

impl Metrics {
    /// Parses the text format strictly enough: every line is a comment or
    /// `name{labels} value`, every sample's family has `# TYPE`.
    pub(super) fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        let mut typed = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                let name = parts.next().unwrap().to_owned();
                let kind = parts.next().unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad TYPE line {line:?}"
                );
                typed.push(name);
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample line: {line:?}\n{text}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => {
                    let l = l.strip_suffix('}').unwrap_or_else(|| panic!("{line:?}"));
                    let labels = l
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (n.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line:?}"
            );
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| typed.iter().any(|t| t == f))
                .unwrap_or(&name)
                .to_owned();
            assert!(
                typed.contains(&family),
                "sample {name} has no # TYPE line before it\n{text}"
            );
            samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        Metrics {
            samples,
            text: text.to_owned(),
        }
    }

    pub(super) fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the samples named `name` whose labels include `labels` (0 when none).
    pub(super) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The one metric family whose name matches `pred`; panics naming `what` otherwise.
    pub(super) fn family(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut names: Vec<&str> = self
            .samples
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| pred(n))
            .collect();
        names.dedup();
        assert_eq!(
            names.len(),
            1,
            "GET /metrics has {} series for {what} (wanted exactly one family): {names:?}{self:?}",
            names.len()
        );
        names[0].to_owned()
    }
}

async fn metrics(world: &World) -> Metrics {
    let resp = world.get("/metrics").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    Metrics::parse(&resp.text().await.unwrap())
}

/// Sizes of the files in the cache's `blobs/sha256/` (count, bytes).
fn cache_files(world: &World) -> (usize, u64) {
    let blobs = world.cached_blobs();
    let bytes = blobs
        .iter()
        .map(|d| {
            std::fs::metadata(
                world
                    .cache_dir()
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .unwrap()
            .len()
        })
        .sum();
    (blobs.len(), bytes)
}

fn assert_histogram(m: &Metrics, name: &str, labels: &[(&str, &str)], count: f64) {
    let bucket = format!("{name}_bucket");
    let buckets: Vec<&Sample> = m.matching(&bucket, labels).collect();
    assert!(!buckets.is_empty(), "no {name} buckets for {labels:?}{m:?}");
    let mut last = 0.0;
    for b in &buckets {
        assert!(b.value >= last, "{name} buckets must not decrease{m:?}");
        last = b.value;
    }
    assert_eq!(
        buckets.last().unwrap().labels.get("le").map(String::as_str),
        Some("+Inf")
    );
    assert_eq!(last, count, "{name}{{le=\"+Inf\"}} for {labels:?}{m:?}");
    assert_eq!(m.value(&format!("{name}_count"), labels), count, "{m:?}");
    let sum = m.value(&format!("{name}_sum"), labels);
    assert!(sum > 0.0 && sum < 600.0, "{name}_sum {sum}{m:?}");
}

/// Jobs by kind and status, the duration histogram, cache hits and misses, cache bytes
/// and blobs, after two pulls of one image and a failed one.
#[tokio::test]
async fn metrics_count_jobs_durations_and_cache_hits_and_misses_after_pulls() {
    let world = World::start().await;
    world.push(&BIG, "metrics/big:1", Format::Oci);
    let m = metrics(&world).await;
    assert_eq!(m.value("hoist_cache_hits_total", &[]), 0.0);
    assert_eq!(m.value("hoist_cache_misses_total", &[]), 0.0);

    world.pull_ok(&world.image("metrics/big:1"), "first").await;
    let m = metrics(&world).await;
    let (blobs, bytes) = cache_files(&world);
    assert!(blobs >= 2, "both layers are cached");
    let pull_ok = [("kind", "pull"), ("status", "succeeded")];
    assert_eq!(m.value("hoist_jobs", &pull_ok), 1.0, "{m:?}");
    assert_histogram(&m, "hoist_job_duration_seconds", &pull_ok, 1.0);
    assert_eq!(
        m.value("hoist_cache_misses_total", &[]),
        blobs as f64,
        "one miss per blob now in the cache{m:?}"
    );
    assert_eq!(m.value("hoist_cache_hits_total", &[]), 0.0, "{m:?}");
    assert_eq!(m.value("hoist_cache_blobs", &[]), blobs as f64, "{m:?}");
    assert_eq!(m.value("hoist_cache_bytes", &[]), bytes as f64, "{m:?}");

    world.pull_ok(&world.image("metrics/big:1"), "second").await;
    let m = metrics(&world).await;
    assert_eq!(cache_files(&world), (blobs, bytes), "nothing new cached");
    assert_eq!(m.value("hoist_jobs", &pull_ok), 2.0, "{m:?}");
    assert_histogram(&m, "hoist_job_duration_seconds", &pull_ok, 2.0);
    assert_eq!(
        m.value("hoist_cache_hits_total", &[]),
        blobs as f64,
        "{m:?}"
    );
    assert_eq!(
        m.value("hoist_cache_misses_total", &[]),
        blobs as f64,
        "{m:?}"
    );
    assert_eq!(m.value("hoist_cache_shared_total", &[]), 0.0, "{m:?}");
    assert_eq!(m.value("hoist_cache_evictions_total", &[]), 0.0, "{m:?}");

    world
        .pull(json!({"image": world.image("metrics/missing:1"), "dest": "missing"}))
        .await
        .expect_failed("manifest_unknown");
    let m = metrics(&world).await;
    let failed = [("kind", "pull"), ("status", "failed")];
    assert_eq!(m.value("hoist_jobs", &failed), 1.0, "{m:?}");
    assert_eq!(m.value("hoist_jobs", &pull_ok), 2.0, "{m:?}");
    assert_histogram(&m, "hoist_job_duration_seconds", &failed, 1.0);
    assert_eq!(m.value("hoist_jobs", &[("kind", "build")]), 0.0, "{m:?}");
}

/// Blobs shared between concurrent pulls of one image: one download, the other job waits
/// for it.
#[tokio::test]
async fn metrics_count_blobs_shared_between_concurrent_pulls() {
    let world = World::builder().proxy().workers(2).start().await;
    let pushed = world.push(&BIG, "metrics/big:1", Format::Oci);
    world.proxy().add_rule(Rule::slow_gets("/blobs/", 500_000));
    let a = world
        .submit_pull(json!({"image": world.image("metrics/big:1"), "dest": "a"}))
        .await;
    let b = world
        .submit_pull(json!({"image": world.image("metrics/big:1"), "dest": "b"}))
        .await;
    world.wait_job(a.id()).await.expect_succeeded();
    world.wait_job(b.id()).await.expect_succeeded();
    let m = metrics(&world).await;
    let (blobs, _) = cache_files(&world);
    let layers = pushed.layer_digests().len() as f64;
    assert_eq!(
        m.value("hoist_cache_misses_total", &[]),
        blobs as f64,
        "{m:?}"
    );
    let shared = m.value("hoist_cache_shared_total", &[]);
    assert!(shared >= 1.0, "the big layer was shared{m:?}");
    assert_eq!(
        shared + m.value("hoist_cache_hits_total", &[]),
        blobs as f64,
        "the second job got every blob from the first (shared or hit){m:?}"
    );
    assert!(layers <= blobs as f64);
}

/// Evictions: with a cache limit of 1 byte, every blob goes after its job.
#[tokio::test]
async fn metrics_count_cache_evictions() {
    let world = World::builder().cache_max_bytes(1).start().await;
    world.push(&SMALL, "metrics/small:1", Format::Oci);
    world.pull_ok(&world.image("metrics/small:1"), "one").await;
    let m = metrics(&world).await;
    let misses = m.value("hoist_cache_misses_total", &[]);
    assert!(misses >= 1.0, "{m:?}");
    assert_eq!(m.value("hoist_cache_evictions_total", &[]), misses, "{m:?}");
    assert_eq!(cache_files(&world), (0, 0));
    assert_eq!(m.value("hoist_cache_bytes", &[]), 0.0, "{m:?}");
    assert_eq!(m.value("hoist_cache_blobs", &[]), 0.0, "{m:?}");
}

/// `status` → count of the registry requests the proxy answered.
fn proxy_statuses(proxy: &FaultProxy) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for l in proxy.log() {
        *out.entry(l.status.to_string()).or_insert(0.0) += 1.0;
    }
    out
}

fn registry_requests_by_status(m: &Metrics) -> BTreeMap<String, f64> {
    let family = m.family("registry requests by status", |n| {
        n.starts_with("hoist_registry_request") && !n.ends_with("_bucket")
    });
    let mut out = BTreeMap::new();
    for s in m.samples.iter().filter(|s| s.name == family) {
        let status = s
            .labels
            .get("status")
            .or_else(|| s.labels.get("code"))
            .unwrap_or_else(|| panic!("{family} without a status label{m:?}"));
        *out.entry(status.clone()).or_insert(0.0) += s.value;
    }
    out
}

fn bytes_family(m: &Metrics, direction: &str) -> String {
    m.family(&format!("bytes {direction}ed"), |n| {
        n.starts_with("hoist_") && n.contains(direction) && n.contains("bytes")
    })
}

/// Registry requests by status and bytes downloaded, checked against what the proxy in
/// front of the registry saw and the blob sizes: a pull downloads its layers once, a
/// second pull none, a missing tag is a 404.
#[tokio::test]
async fn metrics_count_registry_requests_by_status_and_bytes_downloaded() {
    let world = World::builder().proxy().start().await;
    let pushed: Pushed = world.push(&BIG, "metrics/big:1", Format::Oci);
    let layers: u64 = pushed
        .layers()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    let config = pushed.manifest["config"]["size"].as_u64().unwrap();
    let manifest = pushed.raw.len() as u64;

    world.pull_ok(&world.image("metrics/big:1"), "first").await;
    let m = metrics(&world).await;
    assert_eq!(
        registry_requests_by_status(&m),
        proxy_statuses(world.proxy()),
        "registry requests by status, against the proxy's log:\n{}",
        world.proxy().log_text()
    );
    let downloaded = bytes_family(&m, "download");
    let first = m.value(&downloaded, &[]);
    assert!(
        first >= layers as f64 && first <= (layers + config + manifest) as f64,
        "{downloaded} after one pull is {first}; the layers are {layers} bytes, the config \
         {config}, the manifest {manifest}{m:?}"
    );

    world.pull_ok(&world.image("metrics/big:1"), "second").await;
    world
        .pull(json!({"image": world.image("metrics/missing:1"), "dest": "missing"}))
        .await
        .expect_failed("manifest_unknown");
    let m = metrics(&world).await;
    let by_status = registry_requests_by_status(&m);
    assert_eq!(
        by_status,
        proxy_statuses(world.proxy()),
        "registry requests by status, against the proxy's log:\n{}",
        world.proxy().log_text()
    );
    assert!(by_status.get("404").is_some_and(|n| *n >= 1.0), "{m:?}");
    let second = m.value(&downloaded, &[]);
    assert!(
        second - first <= (config + manifest) as f64,
        "cached layers were counted as downloaded again: {first} → {second}{m:?}"
    );
}

/// Bytes uploaded by a build: its layer and config blobs.
#[tokio::test]
async fn metrics_count_bytes_uploaded_by_a_build() {
    let world = World::start().await;
    let src = world.root().join("app");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "hello from a build\n".repeat(1000)).unwrap();
    let target = world.image("metrics/built:1");
    let (status, job) = world
        .api(
            reqwest::Method::POST,
            "/builds",
            Some(&json!({"source": "app", "target": target})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let job = world.wait_job(job["id"].as_str().unwrap()).await;
    let result = job.expect_succeeded().clone();
    let layers: u64 = result["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    let m = metrics(&world).await;
    assert_eq!(
        m.value("hoist_jobs", &[("kind", "build"), ("status", "succeeded")]),
        1.0,
        "{m:?}"
    );
    let uploaded = bytes_family(&m, "upload");
    let sent = m.value(&uploaded, &[]);
    // the layer and the config (a few hundred bytes) went up
    assert!(
        sent >= layers as f64 && sent <= (layers + 64 * 1024) as f64,
        "{uploaded} after a build of {layers} layer bytes: {sent}{m:?}"
    );
}
