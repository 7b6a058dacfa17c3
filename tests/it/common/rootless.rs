//! hoist and umoci as an unprivileged user (`nobody`): the daemon on a loopback port with
//! its folders owned by that user, and `umoci unpack --rootless` of the same image, for
//! comparing what a daemon that is not root makes. The test itself runs as root (it
//! builds the images and chowns the folders). Not for: the ordinary daemon
//! (`daemon::Hoist`).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::daemon::DaemonDirs;
use super::image::Image;
use super::service::Endpoint;
use super::tools;

/// `nobody:nogroup`.
pub const UID: u32 = 65534;
pub const GID: u32 = 65534;

/// Chowns `path` and everything below it (symlinks themselves) to the user.
pub fn chown_tree(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "-h", &format!("{UID}:{GID}")])
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success(), "chown -R {path:?}");
}

/// Makes `dir` and its parents up to `/` traversable by the user.
pub fn open_path(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for d in dir.ancestors() {
        if let Ok(m) = fs::metadata(d) {
            let mode = m.permissions().mode();
            if mode & 0o011 != 0o011 {
                let _ = fs::set_permissions(d, fs::Permissions::from_mode(mode | 0o011));
            }
        }
    }
}

/// `umoci unpack --rootless` of `image` as the user, into `dir/umoci` (a copy of the
/// layout the user can read goes to `dir/layout`); the rootfs.
pub fn umoci_unpack(image: &Image, dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    open_path(dir);
    let layout = dir.join("layout");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&image.layout)
        .arg(&layout)
        .status()
        .expect("cp");
    assert!(status.success());
    chown_tree(dir);
    let bundle = dir.join("umoci");
    let out = Command::new(tools::require("umoci"))
        .arg("unpack")
        .arg("--rootless")
        .arg("--image")
        .arg(format!("{}:{}", layout.display(), image.tag))
        .arg(&bundle)
        .env("HOME", dir)
        .current_dir(dir)
        .uid(UID)
        .gid(GID)
        .output()
        .expect("umoci");
    assert!(
        out.status.success(),
        "umoci unpack --rootless: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bundle.join("rootfs")
}

/// `hoist serve` as the user, its folders under `dir` (owned by the user).
pub struct RootlessHoist {
    pub addr: std::net::SocketAddr,
    pub dirs: DaemonDirs,
    log: PathBuf,
    child: Child,
}

impl RootlessHoist {
    pub fn start(dir: &Path) -> RootlessHoist {
        fs::create_dir_all(dir).unwrap();
        let dirs = DaemonDirs::create(dir);
        fs::create_dir_all(&dirs.cache_dir).unwrap();
        chown_tree(dir);
        open_path(dir);
        let endpoint = Endpoint::free_tcp();
        let Endpoint::Tcp(addr) = endpoint else {
            unreachable!()
        };
        let log = dir.join("hoist.log");
        let file = fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
        cmd.arg("serve")
            .env_clear()
            .envs(dirs.env(None))
            .env("HOIST_LISTEN", endpoint.listen_value())
            .current_dir(dir)
            .uid(UID)
            .gid(GID)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let mut child = tools::spawn_child(cmd);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if endpoint
                .request("GET", "/healthz", &[], None)
                .is_ok_and(|a| a.status == 200)
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "hoist as {UID} exited with {status}:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "hoist as {UID} not up in 30 s");
            std::thread::sleep(Duration::from_millis(25));
        }
        RootlessHoist {
            addr,
            dirs,
            log,
            child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RootlessHoist {
    fn drop(&mut self) {
        tools::kill(&mut self.child);
        if std::thread::panicking() {
            eprintln!("--- rootless hoist log\n{}", self.log_text());
        }
    }
}
