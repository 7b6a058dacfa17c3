//! The daemon's answers, checked against the spec: the rows, then the jobs as a story
//! (each step depends on the one before), then the API token; at the end, every documented
//! operation must have been exercised.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::rows::{Expect, get, rows};
use super::spec::{Answer, SPEC_PATH, Spec};
use crate::common::{Hoist, HoistConfig};

/// `hoist serve` with its own folders and no registry; its log is printed when the test
/// fails.
pub struct Daemon {
    pub hoist: Hoist,
    _dir: TempDir,
}

impl Daemon {
    fn start(config: HoistConfig) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("hoist-test-openapi-")
            .tempdir()
            .expect("tempdir");
        let hoist = Hoist::start(dir.path(), &config);
        Daemon { hoist, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.hoist.base_url())
    }

    pub fn root(&self) -> &Path {
        &self.hoist.roots[0]
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- hoist serve log ---\n{}", self.hoist.log_text());
        }
    }
}

/// A "registry" that accepts connections and never answers, until stopped: jobs pulling
/// from it stay running.
struct SilentRegistry {
    addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl SilentRegistry {
    async fn start() -> SilentRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        SilentRegistry { addr, task }
    }

    /// Closes the port and every connection: what was waiting on it fails.
    fn stop(&self) {
        self.task.abort();
    }
}

fn client() -> Client {
    Client::builder().no_proxy().build().expect("http client")
}

pub async fn send(request: RequestBuilder) -> Answer {
    let r = request.send().await.expect("request to the daemon");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("reading the answer").to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn post_json(http: &Client, url: String, body: &str) -> RequestBuilder {
    http.post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string())
}

/// Polls `GET /jobs/{id}` (each answer checked) until `ok` holds.
async fn job_until(
    spec: &mut Spec,
    d: &Daemon,
    id: &str,
    ok: impl Fn(&Value) -> bool,
    what: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = send(client().get(d.url(&format!("/jobs/{id}")))).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let job = spec.check("GET", "/jobs/{id}", &a);
        if ok(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job never {what}: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(jobs: &Value) -> Vec<&str> {
    jobs.as_array()
        .expect("a list")
        .iter()
        .map(|j| j["id"].as_str().expect("id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_answers_match_the_spec() {
    let mut spec = Spec::load();
    let http = client();
    // One worker: a job stuck on a silent registry keeps the next one queued.
    let d = Daemon::start(HoistConfig {
        workers: Some(1),
        ..HoistConfig::default()
    });

    // The answers that need more than a row: the spec itself, the cache's own folder.
    let a = send(http.get(d.url("/openapi.yaml"))).await;
    assert_eq!(a.status, 200);
    spec.check("GET", "/openapi.yaml", &a);
    assert_eq!(
        a.text(),
        std::fs::read_to_string(SPEC_PATH).unwrap(),
        "GET /openapi.yaml differs from openapi.yaml (rebuild the binary)"
    );
    let a = send(http.get(d.url("/cache"))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let stats = spec.check("GET", "/cache", &a);
    assert_eq!(stats["blobs"], 0);
    assert_eq!(stats["max_bytes"], Value::Null);
    assert_eq!(
        Path::new(stats["path"].as_str().unwrap()),
        d.hoist.cache_dir
    );

    // The rows.
    std::fs::create_dir_all(d.root().join("exists")).unwrap();
    std::fs::create_dir_all(d.root().join("src")).unwrap();
    std::fs::write(d.root().join("src/hello.txt"), "hello\n").unwrap();
    std::fs::write(d.root().join("file"), "not a folder\n").unwrap();
    let rows = rows(&d);
    assert!(rows.len() >= 60, "{} rows", rows.len());
    for row in &rows {
        row.run(&mut spec, &http, &d).await;
    }

    // Jobs. A: stuck on a silent registry, holding the only worker; B: queued behind it.
    let silent = SilentRegistry::start().await;
    let body = json!({"image": format!("{}/x:y", silent.addr), "dest": "a",
                      "auth": {"username": "u", "password": "secret"}});
    let a = send(post_json(&http, d.url("/pulls"), &body.to_string())).await;
    assert_eq!(a.status, 202, "{}", a.text());
    let job_a = spec.check("POST", "/pulls", &a);
    let id_a = job_a["id"].as_str().unwrap().to_string();
    assert_eq!(a.header("location"), Some(format!("/jobs/{id_a}").as_str()));
    assert_eq!(job_a["status"], "queued");
    assert!(
        job_a["request"].get("auth").is_none(),
        "credentials echoed: {job_a}"
    );
    assert!(
        !a.text().contains("secret"),
        "credentials echoed: {}",
        a.text()
    );
    job_until(
        &mut spec,
        &d,
        &id_a,
        |j| j["status"] == "running",
        "running",
    )
    .await;
    let started = Instant::now();
    let a = send(http.get(d.url(&format!("/jobs/{id_a}?wait=0.3")))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(spec.check("GET", "/jobs/{id}", &a)["status"], "running");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "?wait= did not wait"
    );

    let body = r#"{"image": "127.0.0.1:1/x:y", "dest": "b"}"#;
    let a = send(post_json(&http, d.url("/pulls"), body)).await;
    assert_eq!(a.status, 202, "{}", a.text());
    let id_b = spec.check("POST", "/pulls", &a)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = send(http.get(d.url(&format!("/jobs/{id_b}")))).await;
    assert_eq!(spec.check("GET", "/jobs/{id}", &a)["status"], "queued");
    let a = send(http.delete(d.url(&format!("/jobs/{id_b}")))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let cancelled = spec.check("DELETE", "/jobs/{id}", &a);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["error"]["code"], "cancelled");
    let a = send(http.delete(d.url(&format!("/jobs/{id_b}")))).await;
    assert_eq!(a.status, 409, "{}", a.text());
    assert_eq!(
        spec.check("DELETE", "/jobs/{id}", &a)["code"],
        "job_finished"
    );
    let a = send(http.get(d.url(&format!("/jobs/{id_b}/events")))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let events = spec.check("GET", "/jobs/{id}/events", &a);
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    assert_eq!(events[0]["data"]["status"], "cancelled");

    // C: queued behind A. Follow both from now on; then let the silent registry go away:
    // A fails, C runs (progress: resolving) and fails on a closed port.
    let body = r#"{"image": "127.0.0.1:1/x:y", "dest": "c", "platform": "linux/amd64",
                   "force": true, "cache": "bypass", "layout": "rootfs", "auth": null}"#;
    let a = send(post_json(&http, d.url("/pulls"), body)).await;
    assert_eq!(a.status, 202, "{}", a.text());
    let id_c = spec.check("POST", "/pulls", &a)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let follow = |id: &str| {
        let request = http.get(d.url(&format!("/jobs/{id}/events")));
        async move {
            tokio::time::timeout(Duration::from_secs(60), send(request))
                .await
                .expect("the event stream of an ended job ends")
        }
    };
    let stream_a = tokio::spawn(follow(&id_a));
    let stream_c = tokio::spawn(follow(&id_c));
    tokio::time::sleep(Duration::from_millis(300)).await;
    silent.stop();

    // ?wait= holds the answer until C has ended.
    let a = send(http.get(d.url(&format!("/jobs/{id_c}?wait=30")))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let failed = spec.check("GET", "/jobs/{id}", &a);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "registry_unreachable", "{failed}");
    assert_eq!(failed["request"]["platform"], "linux/amd64");
    let a = send(http.delete(d.url(&format!("/jobs/{id_c}")))).await;
    assert_eq!(a.status, 409, "{}", a.text());
    spec.check("DELETE", "/jobs/{id}", &a);

    let a = stream_a.await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    let events = spec.check("GET", "/jobs/{id}/events", &a);
    let states: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "state")
        .map(|e| e["data"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["running", "failed"], "{events}");
    let a = stream_c.await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    let events = spec.check("GET", "/jobs/{id}/events", &a);
    let names: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e["event"].as_str().unwrap() {
            "state" => e["data"]["status"].as_str().unwrap(),
            other => other,
        })
        .collect();
    assert_eq!(names.first(), Some(&"queued"), "{events}");
    assert!(
        names.contains(&"running") && names.contains(&"progress"),
        "{events}"
    );
    assert_eq!(names.last(), Some(&"failed"), "{events}");

    // D: a build that makes its layer, then fails to push to a closed port. Followed from
    // the start: its progress lists its blobs.
    let body = json!({"source": "src", "target": "127.0.0.1:1/team/app:1.0",
                      "config": {"entrypoint": ["/app"], "env": ["A=1"], "labels": {"k": "v"}},
                      "format": "oci", "compression": "zstd", "source_date_epoch": 1700000000,
                      "auth": {"username": "u", "password": "secret"}, "base_auth": null});
    let a = send(post_json(&http, d.url("/builds"), &body.to_string())).await;
    assert_eq!(a.status, 202, "{}", a.text());
    let job_d = spec.check("POST", "/builds", &a);
    let id_d = job_d["id"].as_str().unwrap().to_string();
    assert_eq!(a.header("location"), Some(format!("/jobs/{id_d}").as_str()));
    assert_eq!(job_d["kind"], "build");
    assert!(
        !a.text().contains("secret"),
        "credentials echoed: {}",
        a.text()
    );
    let stream_d = tokio::spawn(follow(&id_d));
    let a = send(http.get(d.url(&format!("/jobs/{id_d}?wait=30")))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let failed = spec.check("GET", "/jobs/{id}", &a);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "registry_unreachable", "{failed}");
    let a = stream_d.await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    let events = spec.check("GET", "/jobs/{id}/events", &a);
    let progress_layers = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "progress")
        .map(|e| e["data"]["layers"].as_array().map_or(0, Vec::len))
        .max();
    // The new layer and the config.
    assert_eq!(progress_layers, Some(2), "{events}");

    // The list, newest first, and its filters.
    for (query, expected) in [
        ("", vec![&id_d, &id_c, &id_b, &id_a]),
        ("?status=failed", vec![&id_d, &id_c, &id_a]),
        ("?status=cancelled&kind=pull", vec![&id_b]),
        ("?kind=build", vec![&id_d]),
        ("?kind=pull&limit=2", vec![&id_c, &id_b]),
        ("?limit=1", vec![&id_d]),
    ] {
        let a = send(http.get(d.url(&format!("/jobs{query}")))).await;
        assert_eq!(a.status, 200, "{query}: {}", a.text());
        let jobs = spec.check("GET", "/jobs", &a);
        assert_eq!(ids(&jobs), expected, "{query}");
    }
    let a = send(http.get(d.url("/metrics"))).await;
    let text = spec.check("GET", "/metrics", &a);
    for series in [
        "hoist_jobs{kind=\"pull\",status=\"failed\"} 2",
        "hoist_jobs{kind=\"build\",status=\"failed\"} 1",
        "hoist_jobs{kind=\"pull\",status=\"cancelled\"} 1",
    ] {
        assert!(text.as_str().unwrap().contains(series), "{series}: {text}");
    }

    // With HOIST_API_TOKEN: /healthz stays open, the rest needs the token.
    let t = Daemon::start(HoistConfig {
        api_token: Some("sesame".into()),
        ..HoistConfig::default()
    });
    let mut token_rows = vec![get(
        "/healthz",
        "/healthz",
        200,
        Expect::Body(json!({"status": "ok"})),
    )];
    token_rows.push(get("/jobs", "/jobs", 401, Expect::Code("unauthorized")));
    for token in ["Bearer wrong", "sesame"] {
        token_rows.push(
            get("/jobs", "/jobs", 401, Expect::Code("unauthorized"))
                .with_header("authorization", token),
        );
    }
    token_rows.push(
        get("/jobs", "/jobs", 200, Expect::Body(json!([])))
            .with_header("authorization", "Bearer sesame"),
    );
    for row in &token_rows {
        row.run(&mut spec, &http, &t).await;
    }

    // Every documented operation was exercised, and nothing undocumented was.
    let documented = spec.operations();
    let unexercised: Vec<_> = documented.difference(&spec.checked).collect();
    let undocumented: Vec<_> = spec.checked.difference(&documented).collect();
    assert!(
        unexercised.is_empty() && undocumented.is_empty(),
        "in openapi.yaml but not exercised here: {unexercised:?}\n\
         exercised but not in openapi.yaml: {undocumented:?}"
    );
}
