//! The bodies the CLI sends: the API's own request types (`jobs::PullRequest`,
//! `jobs::BuildRequest`, so the CLI has every field the API has), with the credentials
//! that those types never serialize (a stored request has none) carried beside them:
//! the flags' (`--creds`, `--creds-file`), else the caller's own from their Docker config
//! (`$DOCKER_CONFIG` or `~/.docker/config.json`, credential helpers included), looked up
//! for the image's registry and sent with this one request.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::image::ConfigOverrides;
use crate::jobs::{BuildCompression, BuildRequest, CacheMode, Layout, PullRequest};
use crate::oci::Format;
use crate::registry::{Credentials, DockerConfig, Reference};

/// A request as sent: the API's request type plus its credentials.
#[derive(Serialize)]
pub(crate) struct Submit<R: Serialize> {
    #[serde(flatten)]
    pub request: R,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Login>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_auth: Option<Login>,
}

/// Registry credentials as the API takes them; never printed.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Login {
    pub username: String,
    pub password: String,
}

impl Login {
    /// The `X-Registry-Auth` form: base64url of the JSON `{"username", "password"}`.
    pub(crate) fn header_value(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }
}

impl From<Credentials> for Login {
    fn from(c: Credentials) -> Login {
        Login {
            username: c.username,
            password: c.password,
        }
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Login {{ username: {:?}, password: <redacted> }}",
            self.username
        )
    }
}

/// Registry credentials for one request; never printed.
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct CredsArgs {
    /// registry credentials as USER:PASSWORD [default: yours for that registry, from
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json, credential helpers included]
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
    /// a file holding USER:PASSWORD, or a GCR JSON key (sent as user _json_key)
    #[arg(long, value_name = "FILE", conflicts_with = "creds")]
    pub creds_file: Option<PathBuf>,
}

/// Credentials for a build's base registry, when they differ from `--creds`.
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct BaseCredsArgs {
    /// credentials for the base's registry as USER:PASSWORD (default: --creds)
    #[arg(long, value_name = "USER:PASSWORD")]
    pub base_creds: Option<String>,
    /// a file holding the base's USER:PASSWORD, or a GCR JSON key
    #[arg(long, value_name = "FILE", conflicts_with = "base_creds")]
    pub base_creds_file: Option<PathBuf>,
}

impl CredsArgs {
    pub(crate) fn to_login(&self) -> anyhow::Result<Option<Login>> {
        login(self.creds.as_deref(), self.creds_file.as_ref())
    }

    /// The flags' credentials, else the caller's own for `image`'s registry.
    pub(crate) async fn for_image(
        &self,
        image: &str,
        docker: &DockerConfig,
    ) -> anyhow::Result<Option<Login>> {
        match self.to_login()? {
            Some(login) => Ok(Some(login)),
            None => caller_login(image, docker).await,
        }
    }
}

/// The caller's credentials for `image`'s registry from their Docker config, if any. An
/// image that does not parse has none: the daemon says what is wrong with it.
pub(crate) async fn caller_login(
    image: &str,
    docker: &DockerConfig,
) -> anyhow::Result<Option<Login>> {
    let Ok(reference) = image.parse::<Reference>() else {
        return Ok(None);
    };
    let creds = docker
        .credentials(&reference.registry)
        .await
        .map_err(|e| anyhow::anyhow!("your docker credentials for {}: {e}", reference.registry))?;
    Ok(creds.map(Login::from))
}

impl BaseCredsArgs {
    pub(crate) fn to_login(&self) -> anyhow::Result<Option<Login>> {
        login(self.base_creds.as_deref(), self.base_creds_file.as_ref())
    }
}

/// `USER:PASSWORD` from the flag or the file; a JSON key becomes user `_json_key`.
pub(super) fn login(creds: Option<&str>, file: Option<&PathBuf>) -> anyhow::Result<Option<Login>> {
    let text = match (creds, file) {
        (Some(c), _) => c.to_string(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("reading credentials file {}: {e}", f.display()))?,
        (None, None) => return Ok(None),
    };
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        // A service-account JSON key: GCR and Artifact Registry take it as the password.
        return Ok(Some(Login {
            username: "_json_key".into(),
            password: trimmed.into(),
        }));
    }
    let (user, pass) = trimmed
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("credentials must be USER:PASSWORD"))?;
    Ok(Some(Login {
        username: user.into(),
        password: pass.into(),
    }))
}

/// A value of one of the API's lower-case enums (`rootfs`, `oci`, `zstd`…), parsed the
/// way the daemon parses it.
fn api_enum<T: DeserializeOwned + Send + Sync + Clone + 'static>(value: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(value.to_string())).map_err(|e| e.to_string())
}

/// `hoist pull`: every field of `POST /pulls`.
#[derive(Clone, Debug, clap::Args)]
pub struct PullArgs {
    /// the image: [docker://][HOST[:PORT]/]REPO[:TAG|@DIGEST], e.g. debian:bookworm
    image: String,
    /// where the tree goes: relative to the daemon's first root, or absolute inside a root
    dest: String,
    /// os/arch[/variant] to pick from a multi-platform index
    #[arg(long)]
    platform: Option<String>,
    /// replace DEST if it exists (atomically, once the new tree is complete)
    #[arg(long)]
    force: bool,
    /// rootfs, git or oci
    #[arg(long, default_value = "rootfs", value_parser = api_enum::<Layout>)]
    layout: Layout,
    /// neither read nor write the daemon's shared cache
    #[arg(long)]
    no_cache: bool,
    /// do not flush the tree to disk before it replaces DEST (faster; a power loss soon
    /// after may leave DEST with empty or missing files)
    #[arg(long)]
    no_sync: bool,
    /// print the job id and return without following it (Ctrl-C then cancels nothing)
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    creds: CredsArgs,
}

impl PullArgs {
    pub(crate) async fn to_request(
        &self,
        docker: &DockerConfig,
    ) -> anyhow::Result<Submit<PullRequest>> {
        Ok(Submit {
            request: PullRequest {
                image: self.image.clone(),
                dest: self.dest.clone(),
                platform: self.platform.clone(),
                force: self.force,
                cache: if self.no_cache {
                    CacheMode::Bypass
                } else {
                    CacheMode::Use
                },
                layout: self.layout,
                sync: !self.no_sync,
                auth: None,
            },
            auth: self.creds.for_image(&self.image, docker).await?,
            base_auth: None,
        })
    }
}

/// `hoist digest` and `hoist inspect`: one image, asked about without pulling it.
#[derive(Clone, Debug, clap::Args)]
pub struct ImageArgs {
    /// the image: [docker://][HOST[:PORT]/]REPO[:TAG|@DIGEST], e.g. debian:bookworm
    pub(crate) image: String,
    /// os/arch[/variant] to pick from a multi-platform index
    #[arg(long)]
    pub(crate) platform: Option<String>,
    #[command(flatten)]
    pub(crate) creds: CredsArgs,
}

/// `hoist build`: every field of `POST /builds`.
#[derive(Clone, Debug, clap::Args)]
pub struct BuildArgs {
    /// the folder to build: relative to the daemon's first root, or absolute inside a root
    source: String,
    /// where to push: [docker://]HOST[:PORT]/REPO:TAG
    target: String,
    /// image the new layer goes on top of
    #[arg(long)]
    base: Option<String>,
    /// entrypoint, one argument per flag
    #[arg(long)]
    entrypoint: Vec<String>,
    /// cmd, one argument per flag
    #[arg(long)]
    cmd: Vec<String>,
    /// K=V, repeatable
    #[arg(long)]
    env: Vec<String>,
    /// the image's working directory
    #[arg(long)]
    working_dir: Option<String>,
    /// the user the image runs as (USER[:GROUP])
    #[arg(long)]
    user: Option<String>,
    /// K=V, repeatable: merged into the base's labels
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// PORT[/tcp|udp|sctp], repeatable: added to the base's exposed ports
    #[arg(long = "expose", value_name = "PORT")]
    exposed_ports: Vec<String>,
    /// os/arch[/variant] of the image, and the one picked from the base's index
    #[arg(long)]
    platform: Option<String>,
    /// oci or docker
    #[arg(long, default_value = "oci", value_parser = api_enum::<Format>)]
    format: Format,
    /// gzip or zstd
    #[arg(long, default_value = "gzip", value_parser = api_enum::<BuildCompression>)]
    compression: BuildCompression,
    /// record the files' owners in the layer instead of 0:0
    #[arg(long)]
    keep_owners: bool,
    /// clamp file times to this time (seconds since the epoch) and use it as `created`
    #[arg(long, value_name = "SECONDS")]
    source_date_epoch: Option<u64>,
    /// print the job id and return without following it (Ctrl-C then cancels nothing)
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    creds: CredsArgs,
    #[command(flatten)]
    base_creds: BaseCredsArgs,
}

impl BuildArgs {
    pub(crate) async fn to_request(
        &self,
        docker: &DockerConfig,
    ) -> anyhow::Result<Submit<BuildRequest>> {
        let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let labels = self
            .labels
            .iter()
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| anyhow::anyhow!("--label {l:?}: expected K=V"))
            })
            .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
        // With --creds and no --base-creds the daemon uses --creds for the base, as the
        // API says; from the Docker config, each registry gets its own entry.
        let base_auth = match (self.base_creds.to_login()?, &self.base) {
            (Some(login), _) => Some(login),
            (None, Some(base)) if self.creds.to_login()?.is_none() => {
                caller_login(base, docker).await?
            }
            (None, _) => None,
        };
        Ok(Submit {
            request: BuildRequest {
                source: self.source.clone(),
                target: self.target.clone(),
                base: self.base.clone(),
                config: ConfigOverrides {
                    entrypoint: some(&self.entrypoint),
                    cmd: some(&self.cmd),
                    env: some(&self.env),
                    working_dir: self.working_dir.clone(),
                    user: self.user.clone(),
                    labels: (!labels.is_empty()).then_some(labels),
                    exposed_ports: some(&self.exposed_ports),
                },
                platform: self.platform.clone(),
                format: self.format,
                compression: self.compression,
                keep_owners: self.keep_owners,
                source_date_epoch: self.source_date_epoch,
                auth: None,
                base_auth: None,
            },
            auth: self.creds.for_image(&self.target, docker).await?,
            base_auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    #[allow(clippy::large_enum_variant)] // parsed once per test
    enum Cli {
        Pull(PullArgs),
        Build(BuildArgs),
    }

    /// The body sent, for a caller without a Docker config.
    fn body(args: &[&str]) -> serde_json::Value {
        body_with(args, &DockerConfig::new(None))
    }

    fn body_with(args: &[&str], docker: &DockerConfig) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let value = rt.block_on(async {
            match Cli::try_parse_from(args).unwrap() {
                Cli::Pull(a) => serde_json::to_value(a.to_request(docker).await.unwrap()),
                Cli::Build(a) => serde_json::to_value(a.to_request(docker).await.unwrap()),
            }
        });
        value.unwrap()
    }

    #[test]
    fn the_callers_docker_config_gives_each_registry_its_own_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let auth = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            dir.path().join("config.json"),
            format!(
                r#"{{"auths":{{"t.io":{{"auth":"{}"}},"b.io:5000":{{"auth":"{}"}}}}}}"#,
                auth("tu:tp"),
                auth("bu:bp")
            ),
        )
        .unwrap();
        let docker = DockerConfig::new(Some(dir.path().to_path_buf()));
        let login = |u: &str, p: &str| json!({"username": u, "password": p});
        let pull = body_with(&["x", "pull", "docker://t.io/a:1", "d"], &docker);
        assert_eq!(pull["auth"], login("tu", "tp"));
        let other = body_with(&["x", "pull", "elsewhere.io/a:1", "d"], &docker);
        assert!(other.get("auth").is_none(), "{other}");
        let flagged = body_with(&["x", "pull", "t.io/a", "d", "--creds", "f:fp"], &docker);
        assert_eq!(flagged["auth"], login("f", "fp"));
        let build = body_with(
            &["x", "build", "app", "t.io/a:1", "--base", "b.io:5000/b:1"],
            &docker,
        );
        assert_eq!(build["auth"], login("tu", "tp"));
        assert_eq!(build["base_auth"], login("bu", "bp"));
        // --creds is for both, as the API has it, unless --base-creds says otherwise
        let build = body_with(
            &[
                "x",
                "build",
                "app",
                "t.io/a:1",
                "--base",
                "b.io:5000/b:1",
                "--creds",
                "f:fp",
            ],
            &docker,
        );
        assert_eq!(build["auth"], login("f", "fp"));
        assert!(build.get("base_auth").is_none(), "{build}");
    }

    #[test]
    fn build_flags_carry_every_field_of_the_api_build_request() {
        let sent = body(&[
            "x",
            "build",
            "app",
            "reg:5000/a:1",
            "--base",
            "reg:5000/b:1",
            "--entrypoint",
            "/bin/a",
            "--cmd",
            "x",
            "--env",
            "A=1",
            "--working-dir",
            "/w",
            "--user",
            "1:2",
            "--label",
            "k=v",
            "--expose",
            "80",
            "--platform",
            "linux/arm64",
            "--format",
            "docker",
            "--compression",
            "gzip",
            "--keep-owners",
            "--source-date-epoch",
            "7",
            "--creds",
            "t:tp",
            "--base-creds",
            "b:bp",
        ]);
        assert_eq!(
            sent,
            json!({
                "source": "app", "target": "reg:5000/a:1", "base": "reg:5000/b:1",
                "config": {
                    "entrypoint": ["/bin/a"], "cmd": ["x"], "env": ["A=1"],
                    "working_dir": "/w", "user": "1:2", "labels": {"k": "v"},
                    "exposed_ports": ["80"],
                },
                "platform": "linux/arm64", "format": "docker", "compression": "gzip",
                "keep_owners": true, "source_date_epoch": 7,
                "auth": {"username": "t", "password": "tp"},
                "base_auth": {"username": "b", "password": "bp"},
            })
        );
        // The body is what the daemon takes.
        let request: BuildRequest = serde_json::from_value(sent).unwrap();
        assert_eq!(request.base_auth.unwrap().username, "b");
    }

    #[test]
    fn pull_flags_make_the_api_pull_request_and_bad_values_are_refused_by_name() {
        let sent = body(&[
            "x",
            "pull",
            "alpine",
            "d",
            "--no-cache",
            "--no-sync",
            "--layout",
            "git",
            "--creds",
            "u:p",
        ]);
        assert_eq!(
            sent,
            json!({
                "image": "alpine", "dest": "d", "force": false, "cache": "bypass",
                "layout": "git", "sync": false, "auth": {"username": "u", "password": "p"},
            })
        );
        let request: PullRequest = serde_json::from_value(sent).unwrap();
        assert!(request.auth.is_some());
        let err = Cli::try_parse_from(["x", "pull", "alpine", "d", "--layout", "tar"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("--layout"), "{err}");
        let bare = body(&["x", "build", "app", "reg/a:1"]);
        assert!(
            bare.get("auth").is_none() && bare.get("base_auth").is_none(),
            "{bare}"
        );
    }
}
