//! The world hoist's integration tests run in: a real `docker-registry` on a loopback
//! port, optionally behind a fault proxy, and the real `hoist serve` binary with temp
//! folders, built in one line (`let world = World::start().await;`).
//!
//! Also here: the API helpers (`world.get_json`, `world.pull` which POSTs `/pulls` and
//! long-polls `GET /jobs/{id}?wait=60`), the [`Job`] view of a job, the problem+json
//! check, and the submodules for images (umoci/skopeo), hand-made layers, tree comparison,
//! the fault proxy and the token server. Every external program is real; the proxy is
//! the only double. Not for: assertions about a particular feature (those live in the
//! test files).

pub mod daemon;
pub mod fixtures;
pub mod hostile_tar;
pub mod image;
pub mod mirror;
pub mod proxy;
pub mod registry;
pub mod resources;
pub mod rootless;
pub mod service;
pub mod sse;
pub mod tls;
pub mod token;
pub mod tools;
pub mod tree;
pub mod upload;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

pub use daemon::{Hoist, HoistConfig};
pub use hostile_tar::TarEntry;
pub use image::{Format, Image, ImageBuilder, Pushed};
pub use proxy::{Fault, FaultProxy, Rule};
pub use registry::{Registry, RegistryAuth};
pub use tree::{assert_same_tree, diff_trees};

/// The runtime the harness's own servers (proxy, token server) run on, apart from each
/// test's runtime, so a test that blocks on a tool (umoci, skopeo) never stalls them and
/// a server outlives the test that started it.
pub fn bg() -> &'static tokio::runtime::Runtime {
    static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("harness-bg")
            .enable_all()
            .build()
            .expect("harness runtime")
    });
    &RT
}

/// How long a pull may take before a test gives up on it.
pub const JOB_DEADLINE: Duration = Duration::from_secs(180);

pub struct WorldBuilder {
    auth: RegistryAuth,
    proxy: bool,
    hoist: HoistConfig,
}

impl WorldBuilder {
    pub fn auth(mut self, auth: RegistryAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Puts a [`FaultProxy`] between the daemon and the registry: [`World::image`] then
    /// names the proxy's address.
    pub fn proxy(mut self) -> Self {
        self.proxy = true;
        self
    }

    pub fn workers(mut self, n: u32) -> Self {
        self.hoist.workers = Some(n);
        self
    }

    pub fn cache_max_bytes(mut self, n: u64) -> Self {
        self.hoist.cache_max_bytes = Some(n);
        self
    }

    pub fn api_token(mut self, token: &str) -> Self {
        self.hoist.api_token = Some(token.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.hoist.extra_env.push((key.into(), value.into()));
        self
    }

    pub async fn start(self) -> World {
        let dir = tempfile::Builder::new()
            .prefix("hoist-test-world-")
            .tempdir()
            .expect("world temp dir");
        let registry = Registry::start(&dir.path().join("registry"), self.auth);
        let proxy = self.proxy.then(|| FaultProxy::start(registry.addr));
        // `World::image` uses the proxy when there is one; configs naming the registry
        // (DOCKER_CONFIG auths) are written by the test with `world.image_host()`.
        let hoist = Hoist::start(&dir.path().join("hoist"), &self.hoist);
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        World {
            hoist,
            proxy,
            registry,
            // no pooled connections: after a restart, a kept-alive connection to the old
            // process would fail the next request
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(120))
                .build()
                .expect("http client"),
            dir,
        }
    }
}

/// A registry, maybe a proxy, and a daemon, with their folders. Dropping it stops the
/// processes and removes the folders (kept when `HOIST_TEST_KEEP=1`); when the test is
/// failing, the daemon's and registry's logs are printed.
pub struct World {
    // drop order: daemon first, then what it talks to, then the folders
    pub hoist: Hoist,
    pub proxy: Option<FaultProxy>,
    pub registry: Registry,
    http: reqwest::Client,
    dir: TempDir,
}

impl World {
    pub async fn start() -> World {
        World::builder().start().await
    }

    pub fn builder() -> WorldBuilder {
        WorldBuilder {
            auth: RegistryAuth::Open,
            proxy: false,
            hoist: HoistConfig::default(),
        }
    }

    /// Where the daemon finds images: the proxy when there is one, else the registry.
    pub fn image_host(&self) -> String {
        match &self.proxy {
            Some(p) => p.host(),
            None => self.registry.host(),
        }
    }

    /// A full reference for `repo:tag` (or `repo@digest`) as the daemon should pull it.
    pub fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.image_host())
    }

    pub fn proxy(&self) -> &FaultProxy {
        self.proxy
            .as_ref()
            .expect("this world has no proxy: use World::builder().proxy()")
    }

    /// Pushes an umoci image to the registry (directly, not through the proxy).
    pub fn push(&self, image: &Image, repo_tag: &str, format: Format) -> Pushed {
        image.push(&self.registry, repo_tag, format)
    }

    /// Pushes hand-made layer tarballs through the registry's upload protocol.
    pub async fn push_layers(&self, repo_tag: &str, layers: &[Vec<u8>]) -> Pushed {
        upload::push_layers(&self.registry, repo_tag, layers).await
    }

    /// The test's temp folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The first folder of `HOIST_ROOTS` (where relative dests land).
    pub fn root(&self) -> &Path {
        &self.hoist.roots[0]
    }

    /// The second folder of `HOIST_ROOTS`.
    pub fn root2(&self) -> &Path {
        &self.hoist.roots[1]
    }

    /// A folder that is in no root.
    pub fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    pub fn cache_dir(&self) -> &Path {
        &self.hoist.cache_dir
    }

    /// The verified blob files in the cache (`blobs/sha256/<hex>`), as `sha256:<hex>`.
    pub fn cached_blobs(&self) -> Vec<String> {
        let dir = self.cache_dir().join("blobs/sha256");
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Files left in the cache's `tmp/` (in-progress downloads).
    pub fn cache_tmp_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.cache_dir().join("tmp")];
        while let Some(d) = stack.pop() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    } else {
                        out.push(e.path());
                    }
                }
            }
        }
        out
    }

    /// Panics unless every cached blob's content hashes to its name.
    pub fn assert_cache_verified(&self) {
        for digest in self.cached_blobs() {
            let path = self
                .cache_dir()
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert_eq!(
                tools::digest_of(&bytes),
                digest,
                "cache file {path:?} does not hold what its name says"
            );
        }
    }

    pub fn restart_hoist(&mut self) {
        self.hoist.restart();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.hoist.base_url())
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.hoist.api_token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// A request to the daemon, with the API token when the daemon has one.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.authed(self.http.get(self.url(path)))
    }

    /// `GET /metrics` of the daemon, as text.
    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.authed(self.http.post(self.url(path)))
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.authed(self.http.delete(self.url(path)))
    }

    /// A request without the API token, whatever the daemon's settings.
    pub fn anonymous(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// Any request with an optional JSON body → (status, JSON body; Null when the body is
    /// not JSON).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut rb = self.authed(self.http.request(method.clone(), self.url(path)));
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// `GET path` → (status, JSON body; Null when the body is not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self
            .get(path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e:?}"));
        let status = resp.status().as_u16();
        let body = resp.bytes().await.expect("body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// `POST /pulls` with `body`, as sent: for tests of refusals.
    pub async fn post_pull(&self, body: &Value) -> reqwest::Response {
        self.post("/pulls")
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /pulls: {e:?}"))
    }

    /// `POST /pulls`, which must be accepted: 202, `Location: /jobs/{id}`, a pull job.
    pub async fn submit_pull(&self, body: Value) -> Job {
        self.submit_job("/pulls", "pull", &body).await
    }

    /// `POST path` (`/pulls`, `/builds`), which must be accepted: 202,
    /// `Location: /jobs/{id}`, a job of `kind` whose stored request echoes no credential.
    pub async fn submit_job(&self, path: &str, kind: &str, body: &Value) -> Job {
        let resp = self
            .post(path)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e:?}"));
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 202, "POST {path} {body} answered {status}: {text}");
        let job = Job(serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("POST {path} answered 202 with a body that is not JSON ({e}): {text}")
        }));
        assert_eq!(
            location.as_deref(),
            Some(format!("/jobs/{}", job.id()).as_str()),
            "Location of the accepted job"
        );
        assert_eq!(job.0["kind"], kind, "kind of {job:?}");
        for secret in ["auth", "base_auth"] {
            assert!(
                job.0["request"].get(secret).is_none(),
                "{secret} echoed: {job:?}"
            );
        }
        job
    }

    /// `GET /jobs/{id}` now.
    pub async fn job(&self, id: &str) -> Job {
        let (status, body) = self.get_json(&format!("/jobs/{id}")).await;
        assert_eq!(status, 200, "GET /jobs/{id}: {body}");
        Job(body)
    }

    /// `DELETE /jobs/{id}` of a job that has not ended: 200 with that job, then waits for
    /// its end (which the caller checks: `cancelled`, or what won the race).
    pub async fn cancel_job(&self, id: &str) -> Job {
        let resp = self.delete(&format!("/jobs/{id}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "DELETE /jobs/{id}");
        let answered = Job(resp.json().await.unwrap());
        assert_eq!(answered.id(), id);
        self.wait_job(id).await
    }

    /// Long-polls `GET /jobs/{id}?wait=60` until the job ends.
    pub async fn wait_job(&self, id: &str) -> Job {
        let start = Instant::now();
        loop {
            let (status, body) = self.get_json(&format!("/jobs/{id}?wait=60")).await;
            assert_eq!(status, 200, "GET /jobs/{id}?wait=60: {body}");
            let job = Job(body);
            if job.is_terminal() {
                return job;
            }
            assert!(
                start.elapsed() < JOB_DEADLINE,
                "job {id} did not end within {JOB_DEADLINE:?}: {job:?}"
            );
        }
    }

    /// Polls until `pred` holds for the job (e.g. it is running), within `timeout`.
    pub async fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Job) -> bool,
    ) -> Job {
        let start = Instant::now();
        loop {
            let job = self.job(id).await;
            if pred(&job) {
                return job;
            }
            assert!(
                start.elapsed() < timeout,
                "job {id} did not reach the awaited state within {timeout:?}: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submits a pull and waits for it to end.
    pub async fn pull(&self, body: Value) -> Job {
        let job = self.submit_pull(body).await;
        self.wait_job(job.id()).await
    }

    /// Pulls `image` into `dest` (relative to the first root) and expects success.
    pub async fn pull_ok(&self, image: &str, dest: &str) -> Job {
        let job = self.pull(json!({"image": image, "dest": dest})).await;
        job.expect_succeeded();
        job
    }
}

/// The value of the metric line that starts with `prefix` (0 when absent).
pub fn metric(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // the daemon's log is printed by its Service
            eprintln!(
                "--- registry log (last 20 lines)\n{}",
                self.registry.log_tail(20)
            );
            if let Some(p) = &self.proxy {
                eprintln!("--- proxy log\n{}", p.log_text());
            }
        }
        if std::env::var_os("HOIST_TEST_KEEP").is_some() {
            let path = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("placeholder temp dir"),
            )
            .keep();
            eprintln!("--- kept {path:?} (HOIST_TEST_KEEP)");
        }
    }
}

/// A job as the API shows it.
#[derive(Clone)]
pub struct Job(pub Value);

impl Job {
    /// `result.layers[].source`: who served each layer (a host, or `cache`).
    pub fn layer_sources(&self) -> Vec<String> {
        self.result()["layers"]
            .as_array()
            .expect("result.layers")
            .iter()
            .map(|l| l["source"].as_str().unwrap_or("<none>").to_owned())
            .collect()
    }

    pub fn id(&self) -> &str {
        self.0["id"]
            .as_str()
            .unwrap_or_else(|| panic!("job without id: {self:?}"))
    }

    pub fn status(&self) -> &str {
        self.0["status"].as_str().unwrap_or("")
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.status(), "succeeded" | "failed" | "cancelled")
    }

    pub fn error_code(&self) -> Option<&str> {
        self.0["error"]["code"].as_str()
    }

    pub fn result(&self) -> &Value {
        &self.0["result"]
    }

    /// The result of a succeeded job; panics with the job otherwise.
    pub fn expect_succeeded(&self) -> &Value {
        assert_eq!(self.status(), "succeeded", "job did not succeed: {self:?}");
        self.result()
    }

    /// Panics unless the job failed with `code`.
    pub fn expect_failed(&self, code: &str) {
        assert_eq!(
            self.status(),
            "failed",
            "job was expected to fail with {code}: {self:?}"
        );
        assert_eq!(self.error_code(), Some(code), "error code of {self:?}");
        assert!(
            self.0["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "a failed job says what went wrong: {self:?}"
        );
    }

    /// `result.dest` as a path.
    pub fn dest(&self) -> PathBuf {
        PathBuf::from(
            self.result()["dest"]
                .as_str()
                .unwrap_or_else(|| panic!("no result.dest: {self:?}")),
        )
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", serde_json::to_string_pretty(&self.0).unwrap())
    }
}

/// Checks an error response against the contract: `status`, `application/problem+json`,
/// `type`, `title`, `status`, `detail` and a stable `code` (equal to `code` when given).
/// Returns the body.
pub async fn expect_problem(resp: reqwest::Response, status: u16, code: Option<&str>) -> Value {
    let got = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(got, status, "status of the error answer {text}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "errors are application/problem+json, got {content_type:?}: {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("problem body is not JSON ({e}): {text}"));
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem without `{field}`: {body}");
    }
    assert_eq!(body["status"], json!(status), "problem `status`: {body}");
    let got_code = body["code"].as_str().unwrap_or("");
    assert!(!got_code.is_empty(), "problem without a `code`: {body}");
    if let Some(code) = code {
        assert_eq!(got_code, code, "problem `code`: {body}");
    }
    body
}

/// The jobs of a `GET /jobs` answer: a bare array, or `{"jobs": [...]}`.
pub fn jobs_of(list: &Value) -> Vec<Value> {
    list.as_array()
        .or_else(|| list["jobs"].as_array())
        .cloned()
        .unwrap_or_else(|| panic!("GET /jobs answered neither an array nor {{jobs: []}}: {list}"))
}
