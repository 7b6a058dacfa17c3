//! The real `hoist serve` as a service manager would run it: listening on a Unix socket,
//! or started by `systemd-socket-activate` on an inherited TCP or Unix socket, with a
//! `NOTIFY_SOCKET` the test reads `READY=1`/`STOPPING=1` from. Also a small blocking
//! HTTP/1.1 client that speaks over TCP or a Unix socket (reqwest speaks no Unix
//! sockets), so the same assertions run on either transport.
//!
//! [`Service`] is the harness's one daemon launcher: the ordinary TCP daemon of a
//! [`super::World`] (`daemon::Hoist`) is a direct one on a loopback port. Not for: what a
//! test asserts about the service (see the `service` and `cli` test modules).

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::daemon::DaemonDirs;
use super::tools;

/// The absolute path of `tool`, or a panic naming the Debian package that ships it (for
/// the tools `tools::TOOLS` does not list).
pub fn require(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test needs `{tool}` and it is not on PATH: install the Debian package \
                 `{package}` (scripts/test installs what its table lists)"
            )
        })
}

/// Where a daemon listens, and how a client reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Endpoint {
    /// A loopback TCP endpoint on a port that was free a moment ago.
    pub fn free_tcp() -> Endpoint {
        Endpoint::Tcp(format!("127.0.0.1:{}", tools::free_port()).parse().unwrap())
    }

    /// The value of `HOIST_LISTEN` for this endpoint.
    pub fn listen_value(&self) -> String {
        match self {
            Endpoint::Tcp(a) => a.to_string(),
            Endpoint::Unix(p) => format!("unix:{}", p.display()),
        }
    }

    /// The `-l` argument of `systemd-socket-activate`.
    fn activate_arg(&self) -> String {
        match self {
            Endpoint::Tcp(a) => a.to_string(),
            Endpoint::Unix(p) => p.display().to_string(),
        }
    }

    /// The CLI's `--daemon` / `HOIST_URL` value.
    pub fn daemon_arg(&self) -> String {
        match self {
            Endpoint::Tcp(a) => format!("http://{a}"),
            Endpoint::Unix(p) => format!("unix:{}", p.display()),
        }
    }

    fn connect(&self) -> io::Result<Box<dyn Stream>> {
        let timeout = Some(Duration::from_secs(120));
        Ok(match self {
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, Duration::from_secs(2))?;
                s.set_read_timeout(timeout)?;
                Box::new(s)
            }
            Endpoint::Unix(p) => {
                let s = UnixStream::connect(p)?;
                s.set_read_timeout(timeout)?;
                Box::new(s)
            }
        })
    }

    /// One request on a new connection (`Connection: close`), read to the end.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> io::Result<Answer> {
        let mut stream = self.connect()?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if body.is_some() || matches!(method, "POST" | "PUT") {
            head.push_str(&format!("Content-Length: {}\r\n", payload.len()));
        }
        head.push_str("\r\n");
        head.push_str(&payload);
        // A server may answer (a 401, say) and close before it reads the body: a write
        // error then is no failure as long as the answer can be read.
        let written = stream.write_all(head.as_bytes());
        let mut raw = Vec::new();
        let read = stream.read_to_end(&mut raw);
        match Answer::parse(&raw) {
            Ok(answer) => Ok(answer),
            Err(e) => {
                written?;
                read?;
                Err(e)
            }
        }
    }

    /// `request` that panics on a transport error.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        self.request(method, path, &headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {self}: {e}"))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.daemon_arg())
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// An HTTP answer: status, headers (names lower case), body.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    fn parse(raw: &[u8]) -> io::Result<Answer> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| bad("no end of headers"))?;
        let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let rest = &raw[end + 4..];
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let body = if chunked {
            dechunk(rest)?
        } else {
            rest.to_vec()
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (Null when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.text())
    }
}

fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut out = Vec::new();
    loop {
        let nl = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("chunk size line"))?;
        let size_text = std::str::from_utf8(&rest[..nl]).map_err(|_| bad("chunk size"))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .map_err(|_| bad("chunk size"))?;
        rest = &rest[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// A `NOTIFY_SOCKET`: a Unix datagram socket the daemon sends its state to.
pub struct Notify {
    pub path: PathBuf,
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notify {
    pub fn bind(path: &Path) -> Notify {
        let _ = fs::remove_file(path);
        let socket = UnixDatagram::bind(path)
            .unwrap_or_else(|e| panic!("bind the notify socket {path:?}: {e}"));
        Notify {
            path: path.to_owned(),
            socket,
            seen: Vec::new(),
        }
    }

    /// Every assignment received so far (`READY=1`, `STOPPING=1`, …), in order.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Forgets what was received (to wait for the next `READY=1` of a restart).
    pub fn clear(&mut self) {
        self.seen.clear();
    }

    /// Reads what is queued, for at most `timeout`, until an assignment equal to `wanted`
    /// has been received; true when it has (now or before).
    pub fn wait_for(&mut self, wanted: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if self.seen.iter().any(|s| s == wanted) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.seen
                        .extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading the notify socket: {e}"),
            }
        }
    }
}

/// How the daemon gets its listening socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `hoist serve` binds `HOIST_LISTEN` itself.
    Direct,
    /// `systemd-socket-activate -l ENDPOINT [--fdname=NAME] … hoist serve`: the socket is
    /// bound first and inherited (`LISTEN_FDS`/`LISTEN_PID`); hoist is executed on the
    /// first connection, in the same process.
    Socket { fdname: Option<String> },
}

/// A `hoist serve` with its own folders under a temp dir, listening on `endpoint`.
pub struct Service {
    pub endpoint: Endpoint,
    pub activation: Activation,
    pub data_dir: PathBuf,
    pub roots: Vec<PathBuf>,
    pub notify: Option<Notify>,
    log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    exit: Option<ExitStatus>,
}

/// What to start.
pub struct ServiceSpec {
    pub endpoint: Endpoint,
    pub activation: Activation,
    /// Bind a `NOTIFY_SOCKET` for the daemon.
    pub notify: bool,
    /// Extra environment (after the harness's own, so it may override it).
    pub env: Vec<(String, String)>,
    /// A folder to put first on the daemon's PATH.
    pub path_first: Option<PathBuf>,
}

impl ServiceSpec {
    pub fn new(endpoint: Endpoint, activation: Activation) -> ServiceSpec {
        ServiceSpec {
            endpoint,
            activation,
            notify: false,
            env: Vec::new(),
            path_first: None,
        }
    }

    pub fn notify(mut self) -> ServiceSpec {
        self.notify = true;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> ServiceSpec {
        self.env.push((key.into(), value.into()));
        self
    }
}

impl Service {
    /// Lays out the daemon's folders under `dir` (kept across restarts) and starts it:
    /// a direct daemon until `GET /healthz` answers, an activated one until
    /// `systemd-socket-activate` listens (hoist itself starts on the first connection).
    pub fn start(dir: &Path, spec: ServiceSpec) -> Service {
        let dirs = DaemonDirs::create(dir);
        let mut env = dirs.env(spec.path_first.as_deref());
        match spec.activation {
            Activation::Direct => {
                env.push(("HOIST_LISTEN".into(), spec.endpoint.listen_value()));
            }
            // A decoy the daemon must not bind: it has to use the inherited socket.
            Activation::Socket { .. } => {
                env.push(("HOIST_LISTEN".into(), Endpoint::free_tcp().listen_value()));
            }
        }
        let notify = spec.notify.then(|| Notify::bind(&dir.join("notify.sock")));
        if let Some(n) = &notify {
            env.push(("NOTIFY_SOCKET".into(), n.path.display().to_string()));
        }
        env.extend(spec.env);
        let DaemonDirs {
            data_dir, roots, ..
        } = dirs;
        let mut service = Service {
            endpoint: spec.endpoint,
            activation: spec.activation,
            data_dir,
            roots,
            notify,
            log: dir.join("hoist.log"),
            env,
            child: None,
            exit: None,
        };
        service.spawn();
        service
    }

    /// The value of one of the daemon's environment variables.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn command(&self) -> Command {
        let hoist = env!("CARGO_BIN_EXE_hoist");
        let mut cmd = match &self.activation {
            Activation::Direct => {
                let mut cmd = Command::new(hoist);
                cmd.env_clear().envs(self.env.iter().map(|(k, v)| (k, v)));
                cmd
            }
            Activation::Socket { fdname } => {
                let mut cmd = Command::new(require("systemd-socket-activate", "systemd"));
                // systemd-socket-activate hands the program only LISTEN_*, its own PATH,
                // HOME and TERM, and what -E names
                cmd.env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .arg("-l")
                    .arg(self.endpoint.activate_arg());
                if let Some(name) = fdname {
                    cmd.arg(format!("--fdname={name}"));
                }
                for (k, v) in &self.env {
                    cmd.arg("-E").arg(format!("{k}={v}"));
                }
                cmd.arg(hoist);
                cmd
            }
        };
        cmd.arg("serve");
        cmd
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        self.exit = None;
        for attempt in 0..5 {
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("service log");
            let logged_before = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
            let mut cmd = self.command();
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            let mut child = tools::spawn_child(cmd);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let new_log = self
                    .log_text()
                    .get(logged_before as usize..)
                    .unwrap_or_default()
                    .to_owned();
                let up = match self.activation {
                    Activation::Direct => self
                        .endpoint
                        .request("GET", "/healthz", &[], None)
                        .is_ok_and(|a| a.status == 200),
                    Activation::Socket { .. } => new_log.contains("Listening on"),
                };
                if up {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let retry = new_log.contains("in use")
                        && matches!(self.endpoint, Endpoint::Tcp(_))
                        && attempt < 4;
                    if retry {
                        // lost the port race: another port, for the daemon's own listen
                        // too (it read the old one from HOIST_LISTEN)
                        self.endpoint = Endpoint::free_tcp();
                        if matches!(self.activation, Activation::Direct) {
                            let listen = self.endpoint.listen_value();
                            for (key, value) in &mut self.env {
                                if key == "HOIST_LISTEN" {
                                    value.clone_from(&listen);
                                }
                            }
                        }
                        break;
                    }
                    panic!(
                        "{:?} exited with {status} before it was up on {}\n--- log\n{new_log}",
                        self.command(),
                        self.endpoint
                    );
                }
                if Instant::now() > deadline {
                    tools::kill(&mut child);
                    panic!(
                        "the daemon was not up on {} within 30s\n--- log\n{new_log}",
                        self.endpoint
                    );
                }
                thread::sleep(Duration::from_millis(25));
            }
        }
    }

    /// Waits until `GET /healthz` answers 200 (for an activated daemon: the first
    /// connection, which starts hoist).
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(a) = self.endpoint.request("GET", "/healthz", &[], None) {
                assert_eq!(a.status, 200, "GET /healthz: {a:?}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "GET /healthz on {} did not answer within 30s\n--- log\n{}",
                self.endpoint,
                self.log_text()
            );
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The TCP address of a daemon on a TCP endpoint.
    pub fn tcp_addr(&self) -> SocketAddr {
        match &self.endpoint {
            Endpoint::Tcp(addr) => *addr,
            Endpoint::Unix(path) => panic!("the daemon listens on {path:?}, not on TCP"),
        }
    }

    /// SIGKILL: a crash, as far as the daemon can tell.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            tools::kill(&mut child);
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM to the daemon.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            tools::terminate(child);
        }
    }

    /// Waits at most `timeout` for the daemon to exit; its status when it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exit {
            return Some(status);
        }
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.exit = Some(status);
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => match c.try_wait() {
                Ok(Some(status)) => {
                    self.exit = Some(status);
                    self.child = None;
                    false
                }
                _ => true,
            },
            None => false,
        }
    }

    /// SIGTERM, and its exit status within `grace` (SIGKILL after).
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.terminate();
        let status = self.wait_exit(grace);
        if let Some(mut child) = self.child.take() {
            tools::kill(&mut child);
        }
        status
    }

    /// Starts the daemon again, the same way, on the same endpoint and folders.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            tools::kill(&mut child);
        }
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tools::tail(&self.log, lines)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            tools::kill(&mut child);
        }
        if std::thread::panicking() {
            eprintln!("--- service log (last 60 lines)\n{}", self.log_tail(60));
        }
    }
}
