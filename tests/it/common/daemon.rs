//! The real `hoist serve` binary, started with its settings in the environment and a
//! fresh data dir, cache dir, roots and `DOCKER_CONFIG` under the test's temp dir.
//!
//! The daemon's environment is cleared first, so nothing of the host (proxies, a real
//! `~/.docker/config.json`, `HOIST_*` variables) reaches it. Restarting keeps the data dir
//! and the port.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::tools;

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
    /// `HOIST_ROOTS`, `DOCKER_CONFIG`, `HOME`), the test's `PATH` (after `path_first`,
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
            ("PATH".to_owned(), path),
            (
                "RUST_LOG".to_owned(),
                std::env::var("HOIST_TEST_LOG").unwrap_or_else(|_| "info".into()),
            ),
            ("RUST_BACKTRACE".to_owned(), "1".to_owned()),
        ]
    }
}

pub struct Hoist {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub roots: Vec<PathBuf>,
    pub docker_config_dir: PathBuf,
    pub api_token: Option<String>,
    log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Hoist {
    /// Lays out the daemon's folders under `dir` and starts it.
    pub fn start(dir: &Path, config: &HoistConfig) -> Hoist {
        let dirs = DaemonDirs::create(dir);
        // first on the daemon's PATH: where a test puts a credential helper
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).expect("daemon dirs");
        let port = tools::free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut env = vec![("HOIST_LISTEN".to_owned(), addr.to_string())];
        env.extend(dirs.env(Some(&bin)));
        if let Some(w) = config.workers {
            env.push(("HOIST_WORKERS".into(), w.to_string()));
        }
        if let Some(m) = config.cache_max_bytes {
            env.push(("HOIST_CACHE_MAX_BYTES".into(), m.to_string()));
        }
        if let Some(t) = &config.api_token {
            env.push(("HOIST_API_TOKEN".into(), t.clone()));
        }
        env.extend(config.extra_env.iter().cloned());
        let DaemonDirs {
            data_dir,
            cache_dir,
            roots,
            docker_config_dir,
            ..
        } = dirs;
        let mut hoist = Hoist {
            addr,
            data_dir,
            cache_dir,
            roots,
            docker_config_dir,
            api_token: config.api_token.clone(),
            log: dir.join("hoist.log"),
            env,
            child: None,
        };
        hoist.spawn();
        hoist
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "hoist is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("hoist log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
        cmd.arg("serve")
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = tools::spawn_child(cmd);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tools::http_status(self.addr, "/healthz") == Some(200) {
                self.child = Some(child);
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "`hoist serve` exited with {status} before GET /healthz answered 200 on {}\n\
                     --- hoist log (last 40 lines)\n{}",
                    self.addr,
                    self.log_tail(40)
                );
            }
            if Instant::now() > deadline {
                tools::kill(&mut child);
                panic!(
                    "`hoist serve` did not answer GET /healthz on {} within 30s\n\
                     --- hoist log (last 40 lines)\n{}",
                    self.addr,
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`. True when it exited by
    /// itself.
    pub fn stop(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        tools::terminate(&child);
        let clean = tools::wait_exit(&mut child, grace);
        tools::kill(&mut child);
        clean
    }

    /// SIGKILL: a crash, as far as the daemon can tell.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            tools::kill(&mut child);
        }
    }

    /// Stops (gracefully, 20 s at most) and starts again with the same data and port.
    pub fn restart(&mut self) {
        self.stop(Duration::from_secs(20));
        self.spawn();
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tools::tail(&self.log, lines)
    }

    /// The whole daemon log (to check that secrets never reach it).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Hoist {
    fn drop(&mut self) {
        self.kill();
    }
}
