//! A world for hoist as a registry (`/v2/`): a real `docker-registry` (the origin),
//! optionally behind the fault proxy, and the real daemon with `HOIST_MIRROR_DEFAULT`
//! pointing at it, so clients (skopeo, curl) name images `127.0.0.1:HOIST_PORT/repo:tag`
//! as Docker's `registry-mirrors` does. Plus skopeo run against the daemon.
//!
//! Not for: the API world of the other modules ([`super::World`]); this one differs only
//! in that the daemon's settings need the origin's address, known once it runs.

use std::path::Path;
use std::process::Output;

use tempfile::TempDir;

use super::daemon::{Hoist, HoistConfig};
use super::image::{Format, Image, Pushed};
use super::proxy::FaultProxy;
use super::registry::{Registry, RegistryAuth};
use super::tools;

pub struct MirrorWorld {
    // drop order: daemon first, then what it talks to, then the folders
    pub hoist: Hoist,
    pub proxy: Option<FaultProxy>,
    /// `None` once the test stopped it ([`MirrorWorld::stop_origin`]).
    pub registry: Option<Registry>,
    pub http: reqwest::Client,
    dir: TempDir,
}

pub struct MirrorBuilder {
    auth: RegistryAuth,
    proxy: bool,
    api_token: Option<String>,
    default_upstream: Option<String>,
}

impl MirrorBuilder {
    pub fn auth(mut self, auth: RegistryAuth) -> Self {
        self.auth = auth;
        self
    }
    /// The daemon reaches the origin through a [`FaultProxy`].
    pub fn proxy(mut self) -> Self {
        self.proxy = true;
        self
    }
    pub fn api_token(mut self, token: &str) -> Self {
        self.api_token = Some(token.into());
        self
    }
    /// `HOIST_MIRROR_DEFAULT` other than the origin (so only `?ns=` or a host in the
    /// path reaches the origin).
    pub fn default_upstream(mut self, host: &str) -> Self {
        self.default_upstream = Some(host.into());
        self
    }

    pub fn start(self) -> MirrorWorld {
        let dir = tempfile::Builder::new()
            .prefix("hoist-test-mirror-")
            .tempdir()
            .expect("world temp dir");
        let registry = Registry::start(&dir.path().join("registry"), self.auth);
        let proxy = self.proxy.then(|| FaultProxy::start(registry.addr));
        let origin = proxy
            .as_ref()
            .map_or_else(|| registry.host(), FaultProxy::host);
        let upstream = self.default_upstream.unwrap_or(origin);
        let config = HoistConfig {
            api_token: self.api_token,
            extra_env: vec![("HOIST_MIRROR_DEFAULT".into(), upstream)],
            ..HoistConfig::default()
        };
        let hoist = Hoist::start(&dir.path().join("hoist"), &config);
        MirrorWorld {
            hoist,
            proxy,
            registry: Some(registry),
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client"),
            dir,
        }
    }
}

impl MirrorWorld {
    pub fn builder() -> MirrorBuilder {
        MirrorBuilder {
            auth: RegistryAuth::Open,
            proxy: false,
            api_token: None,
            default_upstream: None,
        }
    }

    pub fn start() -> MirrorWorld {
        MirrorWorld::builder().start()
    }

    pub fn proxy(&self) -> &FaultProxy {
        self.proxy
            .as_ref()
            .expect("this world has no proxy: use MirrorWorld::builder().proxy()")
    }

    pub fn registry(&self) -> &Registry {
        self.registry.as_ref().expect("the origin was stopped")
    }

    /// Stops the origin registry (kills it): the upstream is unreachable from now on.
    pub fn stop_origin(&mut self) {
        drop(self.registry.take());
    }

    pub fn push(&self, image: &Image, repo_tag: &str, format: Format) -> Pushed {
        image.push(self.registry(), repo_tag, format)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `127.0.0.1:PORT` of the daemon: the registry part of references through hoist.
    pub fn host(&self) -> String {
        self.hoist.addr.to_string()
    }

    /// `http://127.0.0.1:PORT/v2/<rest>`.
    pub fn v2(&self, rest: &str) -> String {
        format!("http://{}/v2/{rest}", self.hoist.addr)
    }

    /// `GET /v2/<rest>` without credentials.
    pub async fn get_v2(&self, rest: &str) -> reqwest::Response {
        self.http.get(self.v2(rest)).send().await.unwrap()
    }

    /// `docker://127.0.0.1:PORT/<repo_tag>`: an image through hoist, for skopeo.
    pub fn docker_ref(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.host())
    }

    /// skopeo against the daemon (plain HTTP), with `--creds` when given, as it exits.
    pub fn skopeo(&self, args: &[&str], creds: Option<(&str, &str)>) -> Output {
        let mut cmd = tools::command("skopeo");
        let (verb, rest) = args.split_first().expect("a skopeo verb");
        cmd.arg(verb);
        match *verb {
            "copy" => cmd.args(["--src-tls-verify=false", "--quiet"]),
            _ => cmd.arg("--tls-verify=false"),
        };
        if let Some((u, p)) = creds {
            match *verb {
                "copy" => cmd.arg(format!("--src-creds={u}:{p}")),
                _ => cmd.arg(format!("--creds={u}:{p}")),
            };
        }
        cmd.args(rest);
        cmd.stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    /// `skopeo inspect --raw` through hoist, which must succeed.
    pub fn inspect_raw(&self, repo_tag: &str, creds: Option<(&str, &str)>) -> Vec<u8> {
        let out = self.skopeo(&["inspect", "--raw", &self.docker_ref(repo_tag)], creds);
        assert!(
            out.status.success(),
            "skopeo inspect --raw {repo_tag}: {}",
            stderr(&out)
        );
        out.stdout
    }

    /// `skopeo copy` through hoist into an OCI layout `dest:tag`, which must succeed.
    pub fn copy_to_layout(&self, repo_tag: &str, dest: &Path, creds: Option<(&str, &str)>) {
        let out = self.copy_to_layout_output(repo_tag, dest, creds);
        assert!(
            out.status.success(),
            "skopeo copy {repo_tag}: {}",
            stderr(&out)
        );
    }

    pub fn copy_to_layout_output(
        &self,
        repo_tag: &str,
        dest: &Path,
        creds: Option<(&str, &str)>,
    ) -> Output {
        let dest = format!("oci:{}:{COPIED_TAG}", dest.display());
        self.skopeo(&["copy", &self.docker_ref(repo_tag), &dest], creds)
    }

    /// The verified blob files in the daemon's cache, as `sha256:<hex>`.
    pub fn cached_blobs(&self) -> Vec<String> {
        let dir = self.hoist.cache_dir.join("blobs/sha256");
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// The origin's successful GETs of blob `digest`, from its own access log.
    pub fn origin_blob_gets(&self, digest: &str) -> usize {
        self.registry()
            .access_log_lines(&format!("/blobs/{digest}"))
            .iter()
            .filter(|l| l.contains("\"GET ") && (l.contains("\" 200 ") || l.contains("\" 206 ")))
            .count()
    }

    /// `GET /metrics` of the daemon.
    pub async fn metrics(&self) -> String {
        let mut rb = self.http.get(format!("http://{}/metrics", self.hoist.addr));
        if let Some(t) = &self.hoist.api_token {
            rb = rb.bearer_auth(t);
        }
        rb.send().await.unwrap().text().await.unwrap()
    }
}

impl Drop for MirrorWorld {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(r) = &self.registry {
                eprintln!("--- registry log (last 30 lines)\n{}", r.log_tail(30));
            }
            if let Some(p) = &self.proxy {
                eprintln!("--- proxy log\n{}", p.log_text());
            }
        }
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The tag [`MirrorWorld::copy_to_layout`] gives the copy in its layout.
pub const COPIED_TAG: &str = "copied";

/// A real containerd (Debian's package) on a private socket, root and state under `dir`
/// (no CRI plugin), for `ctr`; killed when dropped.
pub struct Containerd {
    pub socket: std::path::PathBuf,
    child: std::process::Child,
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        )
        .unwrap();
        let socket = dir.join("containerd.sock");
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let mut cmd = tools::command("containerd");
        cmd.arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--state")
            .arg(dir.join("state"))
            .arg("--address")
            .arg(&socket)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = tools::spawn_child(cmd);
        let c = Containerd { socket, child };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "containerd did not answer within 20 s:\n{}",
                tools::tail(&dir.join("containerd.log"), 30)
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        c
    }

    /// `ctr --address SOCKET args…`, as it exits.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let mut cmd = tools::command("ctr");
        cmd.arg("--address").arg(&self.socket).args(args);
        cmd.stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        tools::kill(&mut self.child);
    }
}
