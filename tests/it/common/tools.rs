//! The external programs the harness stands on (umoci, skopeo, docker-registry, openssl,
//! htpasswd, git) and the child processes it starts.
//!
//! A missing tool fails the test loudly with the Debian package that brings it; nothing
//! is ever skipped. Children are started from one long-lived thread with
//! `PR_SET_PDEATHSIG`, so a registry or daemon never outlives the test binary, even when
//! a test panics or the binary is killed. Not for: HTTP (see `api`), images (see `image`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::LazyLock;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Each tool the harness runs, with the Debian package that ships it.
pub const TOOLS: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("openssl", "openssl"),
    ("htpasswd", "apache2-utils"),
    ("git", "git"),
    ("tar", "tar"),
    ("mkfifo", "coreutils"),
    ("containerd", "containerd"),
    ("ctr", "containerd"),
];

/// The absolute path of `tool`, or a panic naming the package to install.
pub fn require(tool: &str) -> PathBuf {
    let package = TOOLS
        .iter()
        .find(|(t, _)| *t == tool)
        .map_or(tool, |(_, p)| p);
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the test harness needs `{tool}` and it is not on PATH: install the Debian package \
         `{package}` (scripts/test does this when run as root)"
    );
}

/// A `Command` for `tool` with an environment that cannot reach outside loopback or read
/// the host's registry credentials: proxies removed, auth files pointed at nothing.
pub fn command(tool: &str) -> Command {
    let mut cmd = Command::new(require(tool));
    scrub_env(&mut cmd);
    if tool == "skopeo" {
        // containers/image reads credentials from here (and from DOCKER_CONFIG)
        cmd.env("REGISTRY_AUTH_FILE", empty_dir().join("auth.json"));
    }
    cmd
}

/// Removes what would make a child talk to another host or read the host's credentials.
pub fn scrub_env(cmd: &mut Command) {
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    // docker-registry takes every REGISTRY_* variable as a configuration override
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("REGISTRY_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("DOCKER_CONFIG", empty_dir());
}

/// An empty folder that lives as long as the test binary (for "no config here").
pub fn empty_dir() -> &'static Path {
    static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
        tempfile::Builder::new()
            .prefix("hoist-test-empty-")
            .tempdir()
            .expect("create an empty temp dir")
    });
    DIR.path()
}

/// Runs `cmd` to the end; panics with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs `cmd` and returns its stdout as text.
pub fn run_stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("tool output is UTF-8")
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Starts `cmd` as a child that is sent SIGKILL when the test binary ends.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, so every child
/// is forked by one thread that lives as long as the process; forking from a test's own
/// thread would kill the registry as soon as that test's thread ended.
pub fn spawn_child(mut cmd: Command) -> Child {
    static SPAWNER: LazyLock<mpsc::Sender<SpawnRequest>> = LazyLock::new(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the spawner thread");
        tx
    });
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(io::Error::from)
        });
    }
    let (tx, rx) = mpsc::channel();
    let shown = format!("{cmd:?}");
    SPAWNER.send((cmd, tx)).expect("spawner thread alive");
    rx.recv()
        .expect("spawner answers")
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"))
}

/// Sends SIGTERM to a child (for a graceful stop).
pub fn terminate(child: &Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("child pid");
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
}

/// Kills and reaps a child; harmless when it already ended.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A loopback port that was free a moment ago (the usual bind-and-release race: callers
/// retry when the server they start reports the address in use).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// The status code of a plain `GET path` against `addr`, or None while nothing answers.
/// Blocking and dependency-free, for readiness checks from sync code.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The last `lines` lines of a log file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({path:?}: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}
