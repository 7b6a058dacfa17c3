//! The daemon's settings: environment variables (mirrored by `hoist serve` flags),
//! defaults applied and validated once at start.
//!
//! Also where a request's `dest`/`source` is resolved against `HOIST_ROOTS`, since that
//! rule is the daemon's security boundary and belongs with the setting.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Where the API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// `HOST:PORT`
    Tcp(String),
    /// `unix:/path/to/socket`
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("unix socket path {path:?} must be absolute"));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        if s.rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            return Err(format!(
                "listen address {s:?} is neither HOST:PORT nor unix:/path"
            ));
        }
        Ok(Listen::Tcp(s.to_string()))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `hoist serve` flags; each mirrors an environment variable.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// HOST:PORT or unix:/path/to/socket (ignored when systemd passes a socket)
    #[arg(long, env = "HOIST_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: Listen,
    /// SQLite database, blob cache and default roots folder
    #[arg(long, env = "HOIST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// content-addressed blob cache [default: DATA_DIR/cache]
    #[arg(long, env = "HOIST_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// ':'-separated absolute folders jobs may write into and read from [default: DATA_DIR/roots]
    #[arg(long, env = "HOIST_ROOTS")]
    pub roots: Option<String>,
    /// jobs running at once
    #[arg(long, env = "HOIST_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// evict least-recently-used blobs above this many bytes
    #[arg(long, env = "HOIST_CACHE_MAX_BYTES")]
    pub cache_max_bytes: Option<u64>,
    /// ','-separated host[:port] spoken to over plain HTTP
    #[arg(long, env = "HOIST_INSECURE_REGISTRIES", default_value = "")]
    pub insecure_registries: String,
    /// ':'-separated folders of per-registry settings (containerd's certs.d: hosts.toml,
    /// ca.crt, NAME.cert + NAME.key), read afresh for every job
    #[arg(long, env = "HOIST_HOSTS_DIR", default_value = "/etc/hoist/certs.d")]
    pub hosts_dir: String,
    /// bearer token every request but GET /healthz must carry
    #[arg(long, env = "HOIST_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// ','-separated host names (or addresses) the API answers to besides the listen
    /// address, localhost and loopback addresses (the `Host` header; DNS rebinding)
    #[arg(long, env = "HOIST_ALLOWED_HOSTS", default_value = "")]
    pub allowed_hosts: String,
    /// exit after this many idle seconds (for socket activation)
    #[arg(long, env = "HOIST_IDLE_EXIT")]
    pub idle_exit: Option<u64>,
    /// upstream registry of /v2/ names that carry none (Docker's `registry-mirrors`)
    #[arg(long, env = "HOIST_MIRROR_DEFAULT", default_value = "docker.io")]
    pub mirror_default: String,
    /// log format
    #[arg(long, env = "HOIST_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// which log lines to write, in RUST_LOG syntax (e.g. "info,hoist=debug"; "debug" logs
    /// every request) [default: RUST_LOG, else "info,sqlx=warn"]
    #[arg(long = "log", env = "HOIST_LOG", value_parser = crate::logging::parse_filter)]
    pub log: Option<String>,
    /// seconds a finished job is kept before it is deleted
    #[arg(long, env = "HOIST_JOB_RETENTION", default_value_t = 604_800)]
    pub job_retention: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) listen: Listen,
    pub(crate) data_dir: PathBuf,
    pub(crate) cache_dir: PathBuf,
    pub(crate) roots: Vec<PathBuf>,
    pub(crate) workers: usize,
    pub(crate) cache_max_bytes: Option<u64>,
    pub(crate) insecure_registries: Vec<String>,
    /// `HOIST_HOSTS_DIR`, absolute folders (they need not exist).
    pub(crate) hosts_dirs: Vec<PathBuf>,
    pub(crate) api_token: Option<String>,
    /// Extra names a request's `Host` may give, lower case, without a trailing dot.
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) docker_config_dir: Option<PathBuf>,
    pub(crate) idle_exit: Option<Duration>,
    /// The upstream of `/v2/` names without one: a registry host (`docker.io`, `host:port`).
    pub(crate) mirror_default: String,
    /// How long a finished job is kept (`HOIST_JOB_RETENTION`).
    pub(crate) job_retention: Duration,
}

impl Config {
    pub fn from_args(args: ServeArgs) -> Result<Config, ConfigError> {
        let data_dir = match args.data_dir {
            Some(d) => d,
            None => default_data_dir()?,
        };
        if !data_dir.is_absolute() {
            return Err(ConfigError::Invalid(format!(
                "HOIST_DATA_DIR {} must be an absolute path",
                data_dir.display()
            )));
        }
        let cache_dir = args.cache_dir.unwrap_or_else(|| data_dir.join("cache"));
        let roots: Vec<PathBuf> = match args.roots.as_deref() {
            Some(s) if !s.trim().is_empty() => s
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
            _ => vec![data_dir.join("roots")],
        };
        for root in &roots {
            if !root.is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "HOIST_ROOTS entry {} must be an absolute path",
                    root.display()
                )));
            }
        }
        if args.workers == 0 {
            return Err(ConfigError::Invalid(
                "HOIST_WORKERS must be at least 1".into(),
            ));
        }
        let insecure_registries = args
            .insecure_registries
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let hosts_dirs: Vec<PathBuf> = args
            .hosts_dir
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        if let Some(rel) = hosts_dirs.iter().find(|d| !d.is_absolute()) {
            return Err(ConfigError::Invalid(format!(
                "HOIST_HOSTS_DIR entry {} must be an absolute path",
                rel.display()
            )));
        }
        let allowed_hosts = args
            .allowed_hosts
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|h| {
                let h = h.trim_end_matches('.').to_ascii_lowercase();
                let valid = !h.is_empty()
                    && h.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
                    });
                match valid {
                    true => Ok(h),
                    false => Err(ConfigError::Invalid(format!(
                        "HOIST_ALLOWED_HOSTS entry {h:?} is not a host name or address"
                    ))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mirror_default = mirror_default(&args.mirror_default)?;
        let docker_config_dir = crate::registry::RegistryConfig::default_docker_config_dir();
        Ok(Config {
            listen: args.listen,
            data_dir,
            cache_dir,
            roots,
            workers: args.workers,
            cache_max_bytes: args.cache_max_bytes,
            insecure_registries,
            hosts_dirs,
            api_token: args.api_token.filter(|t| !t.is_empty()),
            allowed_hosts,
            docker_config_dir,
            idle_exit: args.idle_exit.filter(|s| *s > 0).map(Duration::from_secs),
            mirror_default,
            job_retention: Duration::from_secs(args.job_retention),
        })
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.data_dir.join("hoist.db")
    }

    /// Scratch space of the daemon's own (blobs of `cache: bypass` jobs).
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }
}

/// `HOIST_MIRROR_DEFAULT`: a registry host as references name it (`docker.io`,
/// `registry.example:5000`), checked by parsing a reference on it.
fn mirror_default(value: &str) -> Result<String, ConfigError> {
    let host = value.trim().trim_end_matches('/').to_ascii_lowercase();
    let parsed = format!("{host}/hoist/check").parse::<crate::registry::Reference>();
    match parsed {
        Ok(r) if !host.contains('/') && crate::registry::is_registry(&host) => Ok(r.registry),
        _ => Err(ConfigError::Invalid(format!(
            "HOIST_MIRROR_DEFAULT {value:?} is not a registry host (like docker.io or host:5000)"
        ))),
    }
}

fn default_data_dir() -> Result<PathBuf, ConfigError> {
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/hoist"));
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("hoist"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/hoist")),
        None => Err(ConfigError::Invalid(
            "set HOIST_DATA_DIR: neither XDG_DATA_HOME nor HOME is set".into(),
        )),
    }
}

/// Why a `dest` or `source` path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PathError {
    #[error("path {0:?} is empty")]
    Empty(String),
    #[error("path {0:?} contains '..'; give a path inside one of HOIST_ROOTS")]
    DotDot(String),
    #[error("path {0:?} contains a NUL or another control character")]
    Control(String),
    #[error("path {path:?} is outside the allowed roots ({roots}); set HOIST_ROOTS to allow it")]
    OutsideRoots { path: String, roots: String },
    #[error("path {0:?} is a root folder itself; name a folder inside it")]
    IsRoot(String),
}

impl crate::error::ErrorCode for PathError {
    fn code(&self) -> &'static str {
        match self {
            PathError::OutsideRoots { .. } | PathError::IsRoot(_) => "dest_outside_roots",
            PathError::Empty(_) | PathError::DotDot(_) | PathError::Control(_) => "invalid_dest",
        }
    }
}

/// Resolves a request path against the roots: relative → under the first root; absolute →
/// must lie strictly inside one root. Symlinks in the part that exists are resolved, so a
/// link inside a root cannot carry a job outside it.
pub(crate) fn resolve_in_roots(roots: &[PathBuf], requested: &str) -> Result<PathBuf, PathError> {
    if requested.trim().is_empty() {
        return Err(PathError::Empty(requested.to_string()));
    }
    // No file name the kernel takes has a NUL (the path would be cut short there), and
    // control characters in names only serve to confuse the people reading logs and listings.
    if requested.chars().any(char::is_control) {
        return Err(PathError::Control(requested.to_string()));
    }
    let p = Path::new(requested);
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(PathError::DotDot(requested.to_string()));
    }
    let candidate = if p.is_absolute() {
        p.to_path_buf()
    } else {
        roots[0].join(p)
    };
    let candidate: PathBuf = candidate
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect();
    let outside = || PathError::OutsideRoots {
        path: requested.to_string(),
        roots: roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
    };
    let real = canonicalize_existing_prefix(&candidate);
    for root in roots {
        let real_root = canonicalize_existing_prefix(root);
        if real == real_root || candidate == *root {
            return Err(PathError::IsRoot(requested.to_string()));
        }
        if candidate.starts_with(root) && real.starts_with(&real_root) {
            return Ok(candidate);
        }
    }
    Err(outside())
}

/// Canonicalizes the longest existing ancestor of `p` and appends the rest.
pub(crate) fn canonicalize_existing_prefix(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for c in rest.iter().rev() {
                out.push(c);
            }
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_default_is_a_registry_host() {
        assert_eq!(mirror_default("docker.io").unwrap(), "docker.io");
        assert_eq!(mirror_default("index.docker.io").unwrap(), "docker.io");
        assert_eq!(mirror_default("127.0.0.1:5000/").unwrap(), "127.0.0.1:5000");
        assert_eq!(mirror_default("Localhost").unwrap(), "localhost");
        for bad in ["", "registry", "a.io/b", "a b.io", "http://a.io"] {
            assert!(mirror_default(bad).is_err(), "{bad:?}");
        }
    }
    use crate::error::ErrorCode;

    fn roots() -> Vec<PathBuf> {
        vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]
    }

    #[test]
    fn relative_dest_lands_under_first_root() {
        assert_eq!(
            resolve_in_roots(&roots(), "ubuntu").unwrap(),
            PathBuf::from("/srv/a/ubuntu")
        );
        assert_eq!(
            resolve_in_roots(&roots(), "./x/y").unwrap(),
            PathBuf::from("/srv/a/x/y")
        );
    }

    #[test]
    fn absolute_dest_must_be_inside_a_root() {
        assert_eq!(
            resolve_in_roots(&roots(), "/srv/b/x").unwrap(),
            PathBuf::from("/srv/b/x")
        );
        assert_eq!(
            resolve_in_roots(&roots(), "/etc/x").unwrap_err().code(),
            "dest_outside_roots"
        );
        assert_eq!(
            resolve_in_roots(&roots(), "/srv/ab").unwrap_err().code(),
            "dest_outside_roots"
        );
        assert_eq!(
            resolve_in_roots(&roots(), "/srv/a").unwrap_err().code(),
            "dest_outside_roots"
        );
    }

    #[test]
    fn dotdot_is_refused() {
        assert_eq!(
            resolve_in_roots(&roots(), "../x").unwrap_err().code(),
            "invalid_dest"
        );
        assert_eq!(
            resolve_in_roots(&roots(), "/srv/a/../../etc")
                .unwrap_err()
                .code(),
            "invalid_dest"
        );
    }

    #[test]
    fn nul_and_control_characters_are_refused() {
        for bad in ["a\0b", "/srv/a/x\0", "a\nb", "a\u{7f}"] {
            assert_eq!(
                resolve_in_roots(&roots(), bad).unwrap_err().code(),
                "invalid_dest",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn symlink_inside_root_pointing_out_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        let err = resolve_in_roots(std::slice::from_ref(&root), "link/x").unwrap_err();
        assert_eq!(err.code(), "dest_outside_roots");
    }

    #[test]
    fn listen_parses_tcp_and_unix() {
        assert_eq!(
            "127.0.0.1:7700".parse::<Listen>().unwrap(),
            Listen::Tcp("127.0.0.1:7700".into())
        );
        assert_eq!(
            "unix:/run/hoist.sock".parse::<Listen>().unwrap(),
            Listen::Unix("/run/hoist.sock".into())
        );
        assert!("nonsense".parse::<Listen>().is_err());
        assert!("unix:relative".parse::<Listen>().is_err());
    }
}
