//! Registries as they are deployed, on loopback: a private CA made with `openssl` in the
//! test, `docker-registry` serving over TLS with a certificate it signed (and asking for
//! client certificates), `docker-registry` as a pull-through cache (`proxy: remoteurl:`)
//! in front of another, and the `HOIST_HOSTS_DIR` folder the daemon reads.
//!
//! The TLS registries serve another registry's storage folder: images are pushed to the
//! world's plain registry with the harness's own tools and read over TLS, so the push
//! path needs no certificates. Not for: assertions (tests/it/registry_hosts.rs).

use std::fs;
use std::path::{Path, PathBuf};

use super::registry::{Registry, RegistryAuth, RegistrySpec};
use super::tools;

/// A certificate authority and what it signed, as PEM files in one folder.
pub struct TestCa {
    pub dir: PathBuf,
    pub cert: PathBuf,
    key: PathBuf,
}

/// A certificate and its key, signed by a [`TestCa`].
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let mut cmd = tools::command("openssl");
    cmd.current_dir(dir).args(args);
    tools::run(&mut cmd);
}

impl TestCa {
    /// A fresh CA (EC P-256, valid two days) under `dir/name`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let dir = dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                &format!("/CN=hoist test CA {name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        TestCa {
            cert: dir.join("ca.crt"),
            key: dir.join("ca.key"),
            dir,
        }
    }

    /// A server certificate for `names` (`IP:127.0.0.1`, `DNS:localhost`, …).
    pub fn server(&self, stem: &str, names: &str) -> Issued {
        self.issue(stem, names, "serverAuth")
    }

    /// A client certificate.
    pub fn client(&self, stem: &str) -> Issued {
        self.issue(stem, "DNS:hoist-test-client", "clientAuth")
    }

    fn issue(&self, stem: &str, names: &str, usage: &str) -> Issued {
        let ext = self.dir.join(format!("{stem}.ext"));
        fs::write(
            &ext,
            format!(
                "subjectAltName={names}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"
            ),
        )
        .unwrap();
        let (key, csr, cert) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.crt"),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={stem}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &self.cert.display().to_string(),
                "-CAkey",
                &self.key.display().to_string(),
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext.display().to_string(),
            ],
        );
        Issued {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }
}

/// `docker-registry` over TLS with `server`'s certificate, serving `storage` (another
/// registry's folder); with `client_ca`, it refuses clients without a certificate that
/// CA signed.
pub fn tls_registry(
    dir: &Path,
    storage: &Path,
    server: &Issued,
    client_ca: Option<&TestCa>,
) -> Registry {
    let mut http_yaml = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        server.cert.display(),
        server.key.display()
    );
    if let Some(ca) = client_ca {
        http_yaml.push_str(&format!("    clientcas:\n      - {}\n", ca.cert.display()));
    }
    Registry::start_spec(
        dir,
        RegistryAuth::Open,
        &RegistrySpec {
            storage: Some(storage.to_path_buf()),
            http_yaml,
            top_yaml: String::new(),
        },
    )
}

/// `docker-registry` as a pull-through cache of the plain registry at `upstream`
/// (`127.0.0.1:PORT`), with storage of its own.
pub fn pull_through_cache(dir: &Path, upstream: &str) -> Registry {
    Registry::start_spec(
        dir,
        RegistryAuth::Open,
        &RegistrySpec {
            storage: None,
            http_yaml: String::new(),
            top_yaml: format!("proxy:\n  remoteurl: http://{upstream}\n"),
        },
    )
}

/// A `HOIST_HOSTS_DIR` folder: one sub-folder per registry host.
pub struct HostsDir {
    pub path: PathBuf,
}

impl HostsDir {
    pub fn new(path: PathBuf) -> HostsDir {
        fs::create_dir_all(&path).unwrap();
        HostsDir { path }
    }

    /// `<dir>/<host>/<name>` with `content`; returns its path.
    pub fn write(&self, host: &str, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let folder = self.path.join(host);
        fs::create_dir_all(&folder).unwrap();
        let file = folder.join(name);
        fs::write(&file, content).unwrap();
        file
    }

    /// Copies `from` to `<dir>/<host>/<name>`.
    pub fn copy(&self, host: &str, name: &str, from: &Path) -> PathBuf {
        self.write(host, name, fs::read(from).unwrap())
    }

    pub fn remove(&self, host: &str) {
        let _ = fs::remove_dir_all(self.path.join(host));
    }
}
