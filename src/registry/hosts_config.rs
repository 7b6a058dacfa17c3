//! Registry host settings from `HOIST_HOSTS_DIR`: containerd's `certs.d` convention, so
//! one folder configures containerd, Docker and hoist alike.
//!
//! `<dir>/<host[:port]>/hosts.toml` (else `<dir>/_default/hosts.toml`) lists mirrors in
//! file order (`[host."URL"]`: `capabilities`, `ca`, `client`, `skip_verify`,
//! `override_path`) and the origin (`server`, with the top-level TLS keys); Docker's
//! `*.crt` and `NAME.cert` + `NAME.key` files in the same folder add roots and client
//! certificates to every host of the folder. The folders are looked at on every call
//! (a change needs no restart); a parsed `hosts.toml` is kept while its (inode, size,
//! mtime) stays the same. Not for: the file format itself (`hosts_toml`), opening files'
//! contents or building TLS clients (`tls`).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use reqwest::Url;

use super::hosts;
use super::hosts_toml::{
    Capability, ClientEntry, ClientField, OneOrMany, RawFile, RawHost, host_url, parse,
};

/// The folder containerd and hoist read for registries that have none of their own.
const DEFAULT_FOLDER: &str = "_default";
const HOSTS_FILE: &str = "hosts.toml";
/// A `hosts.toml` is a few hundred bytes; refusing big ones keeps memory bounded.
const MAX_HOSTS_FILE: u64 = 1 << 20;
/// Files of a host folder looked at, at most (Docker's certificate files).
const MAX_FOLDER_ENTRIES: usize = 256;

/// Identifies a file's version without reading it: a rewrite changes one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// What a host may be asked for (containerd's capabilities).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// Manifests and blobs by digest.
    pub pull: bool,
    /// Tags to digests.
    pub resolve: bool,
    pub push: bool,
}

impl Capabilities {
    const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };

    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.pull, "pull"),
            (self.resolve, "resolve"),
            (self.push, "push"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// A file read when TLS is set up, with the version it had when the settings were read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileRef {
    pub path: PathBuf,
    pub(super) stamp: Stamp,
}

/// A TLS client certificate: the certificate file and its key (`None`: both in `cert`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientCert {
    pub cert: FileRef,
    pub key: Option<FileRef>,
}

/// How to speak TLS to one host: extra roots, a client certificate, or no verification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    pub ca: Vec<FileRef>,
    pub client: Vec<ClientCert>,
    pub skip_verify: bool,
}

/// One host hoist may ask about a registry's content: a mirror, or the origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSettings {
    /// The distribution API root of the host (ends in `/`; `…/v2/` unless `override_path`).
    pub api: Url,
    /// `host[:port]`: what messages, metrics, `layers[].source` and credentials name.
    pub name: String,
    pub origin: bool,
    pub capabilities: Capabilities,
    pub tls: TlsSettings,
    pub override_path: bool,
}

/// Everything the folders say about one registry: its hosts in the order they are asked,
/// the origin last.
#[derive(Clone, Debug)]
pub struct RegistrySettings {
    pub registry: String,
    /// The `certs.d` folder used (the registry's own or `_default`), if any.
    pub folder: Option<PathBuf>,
    /// Its `hosts.toml`, if there is one.
    pub hosts_file: Option<PathBuf>,
    pub hosts: Vec<HostSettings>,
}

/// A `hosts.toml` as parsed, or why it does not parse (kept too: it is not read again
/// until it changes).
type Parsed = Arc<Result<RawFile, String>>;

/// The `HOIST_HOSTS_DIR` folders and the parsed `hosts.toml` files seen so far.
#[derive(Default)]
pub(super) struct HostsDirs {
    dirs: Vec<PathBuf>,
    parsed: Mutex<HashMap<PathBuf, (Stamp, Parsed)>>,
}

impl HostsDirs {
    pub fn new(dirs: Vec<PathBuf>) -> HostsDirs {
        HostsDirs {
            dirs,
            parsed: Mutex::default(),
        }
    }

    /// The settings in force for `registry` (`host[:port]`, as in a reference) whose API
    /// host is `api_host`, read now. `Err`: a message naming the file (and line).
    pub fn settings(
        &self,
        registry: &str,
        api_host: &str,
        insecure: &[String],
    ) -> Result<RegistrySettings, String> {
        let folder = self.folder_for(registry);
        let Some(folder) = folder else {
            return Ok(RegistrySettings {
                registry: registry.to_string(),
                folder: None,
                hosts_file: None,
                hosts: vec![default_origin(api_host, insecure, TlsSettings::default())?],
            });
        };
        let docker = docker_files(&folder)?;
        let file = folder.join(HOSTS_FILE);
        let raw = match fs::metadata(&file) {
            Ok(meta) if meta.is_file() => Some(self.parse_cached(&file, &meta)?),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        let hosts = match &raw {
            Some(raw) => {
                let raw = raw.as_ref().as_ref().map_err(Clone::clone)?;
                build_hosts(raw, &file, &folder, api_host, insecure, &docker)?
            }
            None => vec![default_origin(api_host, insecure, docker)?],
        };
        Ok(RegistrySettings {
            registry: registry.to_string(),
            hosts_file: raw.is_some().then_some(file),
            folder: Some(folder),
            hosts,
        })
    }

    /// The registry's own folder in any of the dirs, else the first `_default`: a
    /// registry's own settings are never shadowed by a catch-all.
    fn folder_for(&self, registry: &str) -> Option<PathBuf> {
        let names = [registry, DEFAULT_FOLDER];
        names
            .iter()
            .flat_map(|name| self.dirs.iter().map(move |d| d.join(name)))
            .find(|p| p.is_dir())
    }

    fn parse_cached(&self, file: &Path, meta: &fs::Metadata) -> Result<Parsed, String> {
        let stamp = Stamp::of(meta);
        let mut parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, raw)) = parsed.get(file)
            && *seen == stamp
        {
            return Ok(raw.clone());
        }
        if meta.len() > MAX_HOSTS_FILE {
            return Err(format!(
                "{}: {} bytes, more than {MAX_HOSTS_FILE}",
                file.display(),
                meta.len()
            ));
        }
        let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let raw = Arc::new(parse(&text).map_err(|e| format!("{}: {e}", file.display())));
        parsed.insert(file.to_path_buf(), (stamp, raw.clone()));
        Ok(raw)
    }
}

/// The origin as hoist speaks to it without a `server`: HTTPS, or plain HTTP for loopback
/// and `HOIST_INSECURE_REGISTRIES` unless TLS settings say otherwise.
fn default_origin(
    api_host: &str,
    insecure: &[String],
    tls: TlsSettings,
) -> Result<HostSettings, String> {
    let wants_tls = tls != TlsSettings::default();
    let base = if wants_tls {
        Url::parse(&format!("https://{api_host}/"))
            .map_err(|e| format!("registry host {api_host:?} is not a valid URL host: {e}"))?
    } else {
        hosts::base_url(api_host, insecure)?
    };
    Ok(HostSettings {
        api: base.join("v2/").expect("static path"),
        name: api_host.to_string(),
        origin: true,
        capabilities: Capabilities::ALL,
        tls,
        override_path: false,
    })
}

/// Docker's files in a host folder: `*.crt` roots, `NAME.cert` with `NAME.key` clients.
fn docker_files(folder: &Path) -> Result<TlsSettings, String> {
    let mut names: Vec<String> = fs::read_dir(folder)
        .map_err(|e| format!("{}: {e}", folder.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .take(MAX_FOLDER_ENTRIES)
        .collect();
    names.sort();
    let mut tls = TlsSettings::default();
    for name in &names {
        if name.ends_with(".crt") {
            tls.ca.push(file_ref(&folder.join(name))?);
        } else if let Some(stem) = name.strip_suffix(".cert") {
            let key = format!("{stem}.key");
            if !names.contains(&key) {
                return Err(format!(
                    "{}: client certificate without its key {key}",
                    folder.join(name).display()
                ));
            }
            tls.client.push(ClientCert {
                cert: file_ref(&folder.join(name))?,
                key: Some(file_ref(&folder.join(key))?),
            });
        }
    }
    Ok(tls)
}

fn file_ref(path: &Path) -> Result<FileRef, String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a file", path.display()));
    }
    Ok(FileRef {
        path: path.to_path_buf(),
        stamp: Stamp::of(&meta),
    })
}

/// The hosts of a parsed file, mirrors in file order, then the origin.
fn build_hosts(
    raw: &RawFile,
    file: &Path,
    folder: &Path,
    api_host: &str,
    insecure: &[String],
    docker: &TlsSettings,
) -> Result<Vec<HostSettings>, String> {
    let at = |key: &str, e: String| format!("{}: {key}: {e}", file.display());
    let mut out = Vec::new();
    for key in &raw.order {
        let entry = &raw.host[key];
        let what = format!("[host.{key:?}]");
        out.push(host(entry, key, false, folder, docker).map_err(|e| at(&what, e))?);
    }
    let origin = match &raw.server {
        Some(server) => {
            host(&raw.top, server, true, folder, docker).map_err(|e| at("server", e))?
        }
        None => {
            let mut tls = tls_of(&raw.top, folder).map_err(|e| at("top level", e))?;
            tls.merge(docker);
            let mut origin = default_origin(api_host, insecure, tls)?;
            if let Some(caps) = &raw.top.capabilities {
                origin.capabilities = capabilities(caps);
            }
            origin
        }
    };
    out.push(origin);
    Ok(out)
}

fn host(
    raw: &RawHost,
    url: &str,
    origin: bool,
    folder: &Path,
    docker: &TlsSettings,
) -> Result<HostSettings, String> {
    let override_path = raw.override_path.unwrap_or(false);
    let api = host_url(url, override_path)?;
    let mut tls = tls_of(raw, folder)?;
    if api.scheme() == "https" {
        tls.merge(docker);
    }
    Ok(HostSettings {
        name: hosts::url_host_port(&api),
        api,
        origin,
        capabilities: raw
            .capabilities
            .as_deref()
            .map_or(Capabilities::ALL, capabilities),
        tls,
        override_path,
    })
}

fn capabilities(list: &[Capability]) -> Capabilities {
    let mut caps = Capabilities {
        pull: false,
        resolve: false,
        push: false,
    };
    for c in list {
        match c {
            Capability::Pull => caps.pull = true,
            Capability::Resolve => caps.resolve = true,
            Capability::Push => caps.push = true,
        }
    }
    caps
}

impl TlsSettings {
    fn merge(&mut self, other: &TlsSettings) {
        self.ca.extend(other.ca.iter().cloned());
        self.client.extend(other.client.iter().cloned());
        self.skip_verify |= other.skip_verify;
    }
}

/// The TLS keys of one table; relative paths are relative to the host folder.
fn tls_of(raw: &RawHost, folder: &Path) -> Result<TlsSettings, String> {
    let resolve = |p: &str| file_ref(&folder.join(p));
    let ca = match &raw.ca {
        None => Vec::new(),
        Some(OneOrMany::One(p)) => vec![resolve(p)?],
        Some(OneOrMany::Many(ps)) => ps.iter().map(|p| resolve(p)).collect::<Result<_, _>>()?,
    };
    let entries = match &raw.client {
        None => Vec::new(),
        Some(ClientField::One(p)) => vec![ClientEntry::Combined(p.clone())],
        Some(ClientField::Many(list)) => list.clone(),
    };
    let mut client = Vec::new();
    for entry in entries {
        client.push(match entry {
            ClientEntry::Combined(p) => ClientCert {
                cert: resolve(&p)?,
                key: None,
            },
            ClientEntry::Pair(pair) => match pair.as_slice() {
                [cert] => ClientCert {
                    cert: resolve(cert)?,
                    key: None,
                },
                [cert, key] if key.is_empty() => ClientCert {
                    cert: resolve(cert)?,
                    key: None,
                },
                [cert, key] => ClientCert {
                    cert: resolve(cert)?,
                    key: Some(resolve(key)?),
                },
                _ => return Err("client: give [\"cert\", \"key\"] pairs".into()),
            },
        });
    }
    Ok(TlsSettings {
        ca,
        client,
        skip_verify: raw.skip_verify.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn no_folder_keeps_the_plain_http_rule() {
        let d = tempfile::tempdir().unwrap();
        let dirs = HostsDirs::new(vec![d.path().to_path_buf()]);
        let s = dirs
            .settings("127.0.0.1:5000", "127.0.0.1:5000", &[])
            .unwrap();
        assert_eq!(s.hosts.len(), 1);
        assert_eq!(s.hosts[0].api.as_str(), "http://127.0.0.1:5000/v2/");
        let s = dirs
            .settings("docker.io", "registry-1.docker.io", &[])
            .unwrap();
        assert_eq!(s.hosts[0].api.as_str(), "https://registry-1.docker.io/v2/");
    }

    #[test]
    fn mirrors_in_file_order_then_the_origin() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "r.io/ca.pem", "x");
        write(
            d.path(),
            "r.io/hosts.toml",
            r#"
server = "https://r.io"
ca = "ca.pem"
[host."http://127.0.0.1:5010"]
  capabilities = ["pull"]
[host."https://a.mirror/base"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
[host."https://b.mirror/x/v2"]
  override_path = true
"#,
        );
        let dirs = HostsDirs::new(vec![d.path().join("nowhere"), d.path().to_path_buf()]);
        let s = dirs.settings("r.io", "r.io", &[]).unwrap();
        let urls: Vec<_> = s.hosts.iter().map(|h| h.api.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:5010/v2/",
                "https://a.mirror/base/v2/",
                "https://b.mirror/x/v2/",
                "https://r.io/v2/"
            ]
        );
        assert_eq!(s.hosts[0].capabilities.names(), ["pull"]);
        assert!(s.hosts[1].tls.skip_verify);
        assert!(s.hosts[3].origin && s.hosts[3].tls.ca.len() == 1);
        assert_eq!(s.hosts[3].capabilities, Capabilities::ALL);
    }

    #[test]
    fn docker_files_make_a_loopback_origin_tls() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "127.0.0.1:5443/ca.crt", "x");
        write(d.path(), "127.0.0.1:5443/me.cert", "x");
        write(d.path(), "127.0.0.1:5443/me.key", "x");
        let dirs = HostsDirs::new(vec![d.path().to_path_buf()]);
        let s = dirs
            .settings("127.0.0.1:5443", "127.0.0.1:5443", &[])
            .unwrap();
        assert_eq!(s.hosts[0].api.as_str(), "https://127.0.0.1:5443/v2/");
        assert_eq!(s.hosts[0].tls.ca.len(), 1);
        assert!(s.hosts[0].tls.client[0].key.is_some());
        write(d.path(), "127.0.0.1:5443/lonely.cert", "x");
        let e = dirs
            .settings("127.0.0.1:5443", "127.0.0.1:5443", &[])
            .unwrap_err();
        assert!(e.contains("lonely.cert") && e.contains("lonely.key"), "{e}");
    }

    #[test]
    fn default_folder_is_the_fallback_not_a_shadow() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        write(
            d1.path(),
            "_default/hosts.toml",
            "[host.\"http://127.0.0.1:1\"]\n",
        );
        write(d2.path(), "r.io/hosts.toml", "");
        let dirs = HostsDirs::new(vec![d1.path().to_path_buf(), d2.path().to_path_buf()]);
        assert_eq!(dirs.settings("r.io", "r.io", &[]).unwrap().hosts.len(), 1);
        assert_eq!(dirs.settings("o.io", "o.io", &[]).unwrap().hosts.len(), 2);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let dirs = HostsDirs::new(vec![d.path().to_path_buf()]);
        for (text, want) in [
            (
                "server = \"https://r.io\"\n[host.\"http://m\"]\n  capabilities = [\"fly\"]\n",
                "line 3",
            ),
            ("\n\nserver = https://r.io\n", "line 3"),
            ("[host.\"ftp://m\"]\n", "line 1"),
            (
                "\n[host.\"http://m\"]\n  ca = \"missing.pem\"\n",
                "missing.pem",
            ),
        ] {
            write(d.path(), "r.io/hosts.toml", text);
            let e = dirs.settings("r.io", "r.io", &[]).unwrap_err();
            assert!(
                e.contains("r.io/hosts.toml") && e.contains(want),
                "{text:?}: {e}"
            );
        }
    }
}
