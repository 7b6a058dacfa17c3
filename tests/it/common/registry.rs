//! A real `docker-registry` (distribution 2.8, Debian's package) on a free loopback port.
//!
//! Open, htpasswd (basic) or token auth; filesystem storage in the test's temp dir, so a
//! test can reach the stored blob files (to corrupt one: the registry verifies digests on
//! upload but serves stored bytes as they are, like a registry whose disk went bad). Not
//! for: faults on the wire (see `proxy`).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::token::TokenServer;
use super::tools;

/// Who may use the registry.
#[derive(Clone, Debug)]
pub enum RegistryAuth {
    Open,
    /// htpasswd (bcrypt) with one user.
    Basic {
        user: String,
        password: String,
    },
    /// Bearer tokens from a [`TokenServer`] that knows one user.
    Token {
        user: String,
        password: String,
    },
}

impl RegistryAuth {
    pub fn basic(user: &str, password: &str) -> RegistryAuth {
        RegistryAuth::Basic {
            user: user.into(),
            password: password.into(),
        }
    }

    pub fn token(user: &str, password: &str) -> RegistryAuth {
        RegistryAuth::Token {
            user: user.into(),
            password: password.into(),
        }
    }
}

/// What a test may change in a registry's configuration (`common/tls.rs` uses it for TLS
/// and pull-through registries).
#[derive(Clone, Debug, Default)]
pub struct RegistrySpec {
    /// Another registry's storage folder to serve (None: its own under `dir`).
    pub storage: Option<PathBuf>,
    /// YAML lines under `http:` (indented by two spaces), e.g. a `tls:` block.
    pub http_yaml: String,
    /// YAML at the top level, e.g. a `proxy:` block.
    pub top_yaml: String,
}

pub struct Registry {
    pub addr: SocketAddr,
    /// The storage driver's root directory.
    pub storage: PathBuf,
    pub auth: RegistryAuth,
    pub token_server: Option<TokenServer>,
    log: PathBuf,
    child: Child,
}

impl Registry {
    /// Starts a registry with its files under `dir` (created), and waits until `/v2/`
    /// answers.
    pub fn start(dir: &Path, auth: RegistryAuth) -> Registry {
        Registry::start_spec(dir, auth, &RegistrySpec::default())
    }

    /// [`Registry::start`] with changes to its configuration.
    pub fn start_spec(dir: &Path, auth: RegistryAuth, spec: &RegistrySpec) -> Registry {
        fs::create_dir_all(dir).expect("registry dir");
        let storage = spec.storage.clone().unwrap_or_else(|| dir.join("storage"));
        let log = dir.join("registry.log");
        let token_server = match &auth {
            RegistryAuth::Token { user, password } => {
                Some(TokenServer::start(&dir.join("token"), user, password))
            }
            _ => None,
        };
        let auth_yaml = match &auth {
            RegistryAuth::Open => String::new(),
            RegistryAuth::Basic { user, password } => {
                let line = tools::run_stdout(
                    tools::command("htpasswd")
                        .arg("-Bbn")
                        .arg(user)
                        .arg(password),
                );
                let file = dir.join("htpasswd");
                fs::write(&file, line.trim()).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: hoist-test\n    path: {}\n",
                    file.display()
                )
            }
            RegistryAuth::Token { .. } => {
                let ts = token_server.as_ref().expect("token server");
                format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    ts.realm(),
                    ts.service,
                    ts.issuer,
                    ts.cert_pem.display()
                )
            }
        };

        for _attempt in 0..5 {
            let port = tools::free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let config = dir.join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {addr}\n{}{auth_yaml}{}",
                    storage.display(),
                    spec.http_yaml,
                    spec.top_yaml,
                ),
            )
            .expect("write registry config");
            let logfile = fs::File::create(&log).expect("registry log");
            let mut cmd = tools::command("docker-registry");
            cmd.arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(logfile.try_clone().unwrap())
                .stderr(logfile);
            let mut child = tools::spawn_child(cmd);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = tools::http_status(addr, "/v2/") {
                    // 200 when open, 401 with a challenge when auth is on, 400 from a
                    // TLS registry asked in plain HTTP
                    if status == 200 || status == 401 || status == 400 {
                        return Registry {
                            addr,
                            storage,
                            auth,
                            token_server,
                            log,
                            child,
                        };
                    }
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let text = fs::read_to_string(&log).unwrap_or_default();
                    if text.contains("address already in use") {
                        break; // lost the port race: try another port
                    }
                    panic!("docker-registry exited with {status} before answering:\n{text}");
                }
                if Instant::now() > deadline {
                    tools::kill(&mut child);
                    panic!(
                        "docker-registry did not answer GET /v2/ on {addr} within 20s:\n{}",
                        tools::tail(&log, 40)
                    );
                }
                thread::sleep(Duration::from_millis(30));
            }
        }
        panic!("docker-registry could not bind a free port in 5 attempts");
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `(user, password)` when the registry wants credentials.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match &self.auth {
            RegistryAuth::Open => None,
            RegistryAuth::Basic { user, password } | RegistryAuth::Token { user, password } => {
                Some((user, password))
            }
        }
    }

    /// The file in which the registry keeps a blob (`sha256:<hex>`).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Flips one byte in the middle of a stored blob: same length, wrong content. The
    /// registry serves it as it is (it checks digests only on upload).
    pub fn corrupt_blob(&self, digest: &str) {
        let path = self.blob_file(digest);
        let mut bytes = fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert!(!bytes.is_empty(), "blob {digest} is empty");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&path, &bytes).expect("rewrite blob");
        assert_ne!(tools::digest_of(&bytes), digest);
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tools::tail(&self.log, lines)
    }

    /// The registry's access log lines (combined log format) that mention `needle`.
    pub fn access_log_lines(&self, needle: &str) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("HTTP/1.1\"") && l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Registry {
    /// Kills the registry now (a mirror going down).
    pub fn kill(&mut self) {
        tools::kill(&mut self.child);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        tools::kill(&mut self.child);
    }
}
