//! The daemon's folders and the ordinary TCP daemon of a [`super::World`]: the real
//! `hoist serve` binary, started with its settings in the environment and a fresh data
//! dir, cache dir, roots and `DOCKER_CONFIG` under the test's temp dir.
//!
//! The launcher itself is [`Service`] (the harness has one): [`Hoist`] is its direct,
//! loopback-TCP case. The daemon's environment is cleared first, so nothing of the host
//! (proxies, a real `~/.docker/config.json`, `HOIST_*` variables) reaches it. Restarting
//! keeps the data dir and the port.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::service::{Activation, Endpoint, Service, ServiceSpec};

/// What a test may choose about the daemon; the rest is fixed by the harness.
#[derive(Clone, Debug, Default)]
pub struct HoistConfig {
    pub workers: Option<u32>,
    pub cache_max_bytes: Option<u64>,
    pub api_token: Option<String>,
    pub extra_env: Vec<(String, String)>,
}

/// The daemon's folders under a test's temp dir, the same for a [`Hoist`] and a
/// [`super::service::Service`]: data, cache (left for the daemon to create), two roots,
/// `DOCKER_CONFIG` and `HOME`.
pub struct DaemonDirs {
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub roots: Vec<PathBuf>,
    pub docker_config_dir: PathBuf,
    pub home: PathBuf,
}

impl DaemonDirs {
    /// Names the folders under `dir` and creates them, all but the cache dir.
    pub fn create(dir: &Path) -> DaemonDirs {
        let dirs = DaemonDirs {
            data_dir: dir.join("data"),
            cache_dir: dir.join("cache"),
            roots: vec![dir.join("root-a"), dir.join("root-b")],
            docker_config_dir: dir.join("docker-config"),
            home: dir.join("home"),
        };
        for d in [&dirs.data_dir, &dirs.docker_config_dir, &dirs.home]
            .into_iter()
            .chain(&dirs.roots)
        {
            fs::create_dir_all(d).expect("daemon dirs");
        }
        dirs
    }

    /// The daemon's environment for these folders (`HOIST_DATA_DIR`, `HOIST_CACHE_DIR`,
    /// `HOIST_ROOTS`, `DOCKER_CONFIG`, `HOME`, and a `HOIST_HOSTS_DIR` that does not
    /// exist, so the machine's `/etc/hoist/certs.d` never counts; a test's own setting
    /// comes later and wins), the test's `PATH` (after `path_first`,
    /// where given), `RUST_LOG` (`$HOIST_TEST_LOG`, else `info`) and `RUST_BACKTRACE=1`.
    pub fn env(&self, path_first: Option<&Path>) -> Vec<(String, String)> {
        let roots_var = self
            .roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let path = std::env::var("PATH").unwrap_or_default();
        let path = match path_first {
            Some(first) => format!("{}:{path}", first.display()),
            None => path,
        };
        vec![
            (
                "HOIST_DATA_DIR".to_owned(),
                self.data_dir.display().to_string(),
            ),
            (
                "HOIST_CACHE_DIR".to_owned(),
                self.cache_dir.display().to_string(),
            ),
            ("HOIST_ROOTS".to_owned(), roots_var),
            (
                "DOCKER_CONFIG".to_owned(),
                self.docker_config_dir.display().to_string(),
            ),
            ("HOME".to_owned(), self.home.display().to_string()),
            (
                "HOIST_HOSTS_DIR".to_owned(),
                self.home.join("no-certs.d").display().to_string(),
            ),
            ("PATH".to_owned(), path),
            (
                "RUST_LOG".to_owned(),
                std::env::var("HOIST_TEST_LOG").unwrap_or_else(|_| "info".into()),
            ),
            ("RUST_BACKTRACE".to_owned(), "1".to_owned()),
        ]
    }
}

/// `hoist serve` on a loopback TCP port, started directly: the [`Service`] the API tests
/// talk to (through [`super::World`]), with the folders they look into.
pub struct Hoist {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub roots: Vec<PathBuf>,
    pub docker_config_dir: PathBuf,
    pub api_token: Option<String>,
    service: Service,
}

impl Hoist {
    /// Lays out the daemon's folders under `dir` and starts it, with `dir/bin` first on
    /// its PATH (where a test puts a credential helper).
    pub fn start(dir: &Path, config: &HoistConfig) -> Hoist {
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).expect("daemon dirs");
        let mut spec = ServiceSpec::new(Endpoint::free_tcp(), Activation::Direct);
        spec.path_first = Some(bin);
        if let Some(w) = config.workers {
            spec = spec.env("HOIST_WORKERS", &w.to_string());
        }
        if let Some(m) = config.cache_max_bytes {
            spec = spec.env("HOIST_CACHE_MAX_BYTES", &m.to_string());
        }
        if let Some(t) = &config.api_token {
            spec = spec.env("HOIST_API_TOKEN", t);
        }
        for (k, v) in &config.extra_env {
            spec = spec.env(k, v);
        }
        let service = Service::start(dir, spec);
        let dirs = DaemonDirs::create(dir);
        Hoist {
            addr: service.tcp_addr(),
            data_dir: dirs.data_dir,
            cache_dir: dirs.cache_dir,
            roots: dirs.roots,
            docker_config_dir: dirs.docker_config_dir,
            api_token: config.api_token.clone(),
            service,
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`. True when it exited by
    /// itself.
    pub fn stop(&mut self, grace: Duration) -> bool {
        self.service.stop(grace).is_some()
    }

    /// SIGKILL: a crash, as far as the daemon can tell.
    pub fn kill(&mut self) {
        self.service.kill();
    }

    /// Stops (gracefully, 20 s at most) and starts again with the same data and port.
    pub fn restart(&mut self) {
        self.stop(Duration::from_secs(20));
        self.service.restart();
        self.addr = self.service.tcp_addr();
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The whole daemon log (to check that secrets never reach it).
    pub fn log_text(&self) -> String {
        self.service.log_text()
    }
}
