//! Credentials from `$DOCKER_CONFIG/config.json`: `auths`, `credsStore`, `credHelpers`.
//!
//! Two readers share it: the daemon looks its own config up only when a registry asks for
//! authentication and the request brought no credentials of its own; the CLI reads its
//! caller's config (`DockerConfig::from_env`) and sends what it finds with that one
//! request, so a user's `docker login` works for `hoist pull`. A credential helper is run as `docker-credential-NAME get` with
//! the server URL on stdin, like Docker does. Answers are kept in memory for a minute so
//! a pull of many layers does not run the helper for each. Never logs what it reads.
//! Not for: writing credentials (`docker login` does that).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::AsyncWriteExt;

use super::reference::DOCKER_HUB;
use super::{Credentials, RegistryError};

/// The key `docker login` writes for Docker Hub, and the server URL its helpers know.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";
const CACHE_FOR: Duration = Duration::from_secs(60);
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Default, serde::Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// Reads Docker's client configuration for one registry at a time.
pub struct DockerConfig {
    dir: Option<PathBuf>,
    /// Where to find `docker-credential-*` (None: `PATH`); for tests.
    helper_dir: Option<PathBuf>,
    cache: Mutex<HashMap<String, (Instant, Option<Credentials>)>>,
}

impl DockerConfig {
    /// The `config.json` in `dir`; `None`: no credentials at all.
    pub fn new(dir: Option<PathBuf>) -> DockerConfig {
        DockerConfig {
            dir,
            helper_dir: None,
            cache: Mutex::default(),
        }
    }

    /// This process's own: `$DOCKER_CONFIG`, else `~/.docker`.
    pub fn from_env() -> DockerConfig {
        DockerConfig::new(default_dir())
    }

    /// Which file is read, for a log line: its path (marked when it does not exist), or
    /// `none`.
    pub fn describe(&self) -> String {
        match &self.dir {
            None => "none".to_string(),
            Some(dir) => {
                let path = dir.join("config.json");
                if path.exists() {
                    path.display().to_string()
                } else {
                    format!("{} (absent)", path.display())
                }
            }
        }
    }

    #[cfg(test)]
    pub fn with_helper_dir(mut self, dir: PathBuf) -> DockerConfig {
        self.helper_dir = Some(dir);
        self
    }

    /// The credentials configured for `registry` (`docker.io`, `host:5000`), if any.
    pub async fn credentials(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        if let Some((at, creds)) = self.lock().get(registry)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(creds.clone());
        }
        let creds = self.lookup(registry).await?;
        self.lock()
            .insert(registry.to_string(), (Instant::now(), creds.clone()));
        Ok(creds)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<Credentials>)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn lookup(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let path = dir.join("config.json");
        let config = match tokio::fs::read(&path).await {
            Ok(bytes) => match serde_json::from_slice::<ConfigFile>(&bytes) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable docker config");
                    return Ok(None);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable docker config");
                return Ok(None);
            }
        };
        let helper = config
            .cred_helpers
            .iter()
            .find(|(k, _)| normalise_key(k) == registry)
            .map(|(_, v)| v.clone())
            .or(config.creds_store.clone())
            .filter(|h| !h.is_empty());
        if let Some(helper) = helper
            && let Some(creds) = self.run_helper(&helper, registry).await?
        {
            return Ok(Some(creds));
        }
        Ok(from_auths(&config.auths, registry))
    }

    /// `docker-credential-HELPER get`; `Ok(None)` when the helper has nothing for the server.
    async fn run_helper(
        &self,
        helper: &str,
        registry: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        let fail = |message: String| RegistryError::CredentialHelper {
            helper: helper.to_string(),
            registry: registry.to_string(),
            message,
        };
        if helper.contains(['/', '\\']) || helper.starts_with('.') {
            return Err(fail("helper names may not contain a path".to_string()));
        }
        let program = format!("docker-credential-{helper}");
        let program = match &self.helper_dir {
            Some(d) => d.join(program),
            None => PathBuf::from(program),
        };
        let server = if registry == DOCKER_HUB {
            DOCKER_HUB_SERVER
        } else {
            registry
        };
        let spawned = tokio::process::Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            // A config copied from another machine often names a helper not installed
            // here: go on without it, as anonymous pulls must still work.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(helper = %program.display(), registry, "credential helper not installed; ignoring it");
                return Ok(None);
            }
            Err(e) => return Err(fail(format!("cannot run {}: {e}", program.display()))),
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading stdin is answered by its exit status.
            let _ = stdin.write_all(server.as_bytes()).await;
        }
        let out = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| fail(format!("no answer within {}s", HELPER_TIMEOUT.as_secs())))?
            .map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(if out.stdout.is_empty() {
                &out.stderr
            } else {
                &out.stdout
            });
            if text.to_ascii_lowercase().contains("credentials not found") {
                return Ok(None);
            }
            let first_line = text
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>();
            return Err(fail(format!("exited with {}: {first_line}", out.status)));
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            username: String,
            secret: String,
        }
        // The serde error would quote the input, which holds the secret: say less.
        let answer: Answer = serde_json::from_slice(&out.stdout)
            .map_err(|_| fail("answer is not JSON with Username and Secret".to_string()))?;
        if answer.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credentials {
            username: answer.username,
            password: answer.secret,
        }))
    }
}

/// `https://index.docker.io/v1/`, `http://h:5000/v2/`, `H.io` → `docker.io`, `h:5000`, `h.io`.
fn normalise_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

fn from_auths(auths: &BTreeMap<String, AuthEntry>, registry: &str) -> Option<Credentials> {
    let exact = if registry == DOCKER_HUB {
        DOCKER_HUB_SERVER
    } else {
        registry
    };
    let entry = auths.get(exact).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| normalise_key(k) == registry)
            .map(|(_, v)| v)
    })?;
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Some(Credentials {
            username: super::auth::IDENTITY_TOKEN_USER.to_string(),
            password: token.clone(),
        });
    }
    if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        match decoded.as_deref().and_then(|s| s.split_once(':')) {
            Some((u, p)) => {
                return Some(Credentials {
                    username: u.to_string(),
                    password: p.to_string(),
                });
            }
            None => {
                tracing::warn!(
                    registry,
                    "ignoring a docker config auth entry that is not base64 of user:password"
                );
            }
        }
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) if !u.is_empty() => Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => None,
    }
}

/// `$DOCKER_CONFIG`, else `~/.docker`: where Docker keeps `config.json`.
pub(super) fn default_dir() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use std::os::unix::fs::PermissionsExt;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn config(dir: &Path, json: &str) -> DockerConfig {
        std::fs::write(dir.join("config.json"), json).unwrap();
        DockerConfig::new(Some(dir.to_path_buf())).with_helper_dir(dir.to_path_buf())
    }

    fn helper(dir: &Path, name: &str, script: &str) {
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn creds(u: &str, p: &str) -> Option<Credentials> {
        Some(Credentials {
            username: u.into(),
            password: p.into(),
        })
    }

    #[tokio::test]
    async fn auths_by_hub_url_host_and_url_forms() {
        let dir = tempfile::tempdir().unwrap();
        let json = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},
            "reg.io:5000":{{"username":"bob","password":"pw2"}},
            "https://other.io/v2/":{{"auth":"{}"}},
            "empty.io":{{}},
            "tok.io":{{"identitytoken":"idt"}}}}}}"#,
            b64("alice:pa:ss"),
            b64("carol:pw3")
        );
        let c = config(dir.path(), &json);
        assert_eq!(
            c.credentials("docker.io").await.unwrap(),
            creds("alice", "pa:ss")
        );
        assert_eq!(
            c.credentials("reg.io:5000").await.unwrap(),
            creds("bob", "pw2")
        );
        assert_eq!(
            c.credentials("other.io").await.unwrap(),
            creds("carol", "pw3")
        );
        assert_eq!(c.credentials("empty.io").await.unwrap(), None);
        assert_eq!(c.credentials("nowhere.io").await.unwrap(), None);
        let t = c.credentials("tok.io").await.unwrap().unwrap();
        assert!(t.is_identity_token());
        assert_eq!(t.password, "idt");
    }

    #[tokio::test]
    async fn missing_or_broken_config_gives_no_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let none = DockerConfig::new(Some(dir.path().to_path_buf()));
        assert_eq!(none.credentials("docker.io").await.unwrap(), None);
        assert_eq!(
            DockerConfig::new(None)
                .credentials("docker.io")
                .await
                .unwrap(),
            None
        );
        let broken = config(dir.path(), "{not json");
        assert_eq!(broken.credentials("docker.io").await.unwrap(), None);
    }

    #[tokio::test]
    async fn cred_helper_gets_the_server_url_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        helper(
            dir.path(),
            "test",
            r#"read server; [ "$1" = get ] || exit 3
case "$server" in
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"hub","Secret":"s1"}';;
  reg.io) echo '{"Username":"<token>","Secret":"refresh"}';;
  *) echo "credentials not found in native keychain"; exit 1;;
esac"#,
        );
        let c = config(
            dir.path(),
            r#"{"credsStore":"test","auths":{"plain.io":{"username":"p","password":"q"}}}"#,
        );
        assert_eq!(
            c.credentials("docker.io").await.unwrap(),
            creds("hub", "s1")
        );
        assert!(
            c.credentials("reg.io")
                .await
                .unwrap()
                .unwrap()
                .is_identity_token()
        );
        // Not in the store: falls back to `auths`.
        assert_eq!(c.credentials("plain.io").await.unwrap(), creds("p", "q"));
    }

    #[tokio::test]
    async fn cred_helpers_win_over_creds_store_and_failures_are_reported_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        helper(
            dir.path(),
            "good",
            r#"echo '{"Username":"u","Secret":"s"}'"#,
        );
        helper(dir.path(), "bad", "echo 'boom' >&2; exit 2");
        helper(dir.path(), "junk", "echo 'Secret: hunter2'");
        let c = config(
            dir.path(),
            r#"{"credsStore":"bad","credHelpers":{"good.io":"good","junk.io":"junk","gone.io":"missing"}}"#,
        );
        assert_eq!(c.credentials("good.io").await.unwrap(), creds("u", "s"));
        let e = c.credentials("other.io").await.unwrap_err();
        assert_eq!(e.code(), "credential_helper_failed");
        assert!(e.to_string().contains("boom"), "{e}");
        let e = c.credentials("junk.io").await.unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(
            c.credentials("gone.io").await.unwrap(),
            None,
            "helper not installed"
        );
    }

    #[test]
    fn describe_names_the_file_read_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let absent = DockerConfig::new(Some(dir.path().to_path_buf())).describe();
        assert!(absent.ends_with("config.json (absent)"), "{absent}");
        let c = config(dir.path(), "{}");
        assert_eq!(
            c.describe(),
            dir.path().join("config.json").display().to_string()
        );
        assert_eq!(DockerConfig::new(None).describe(), "none");
    }

    #[test]
    fn keys_normalise_to_registry_names() {
        assert_eq!(normalise_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalise_key("registry-1.docker.io"), "docker.io");
        assert_eq!(normalise_key("http://Reg.io:5000/v2/"), "reg.io:5000");
        assert_eq!(normalise_key("ghcr.io"), "ghcr.io");
    }
}
