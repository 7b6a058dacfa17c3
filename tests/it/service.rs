//! hoist as a system service, through the real binary: started by
//! `systemd-socket-activate` on an inherited TCP or Unix socket (the socket unit's way),
//! readiness and stopping told on a `NOTIFY_SOCKET` (`Type=notify`), idle exit and the
//! next activation finding every job and blob, the shipped unit files checked by
//! `systemd-analyze`; access (a Unix socket of mode 0660, the API token on every endpoint
//! but `GET /healthz`); and observability (`GET /metrics` numbers after real pulls and a
//! build, one log line per job event, JSON logs, no credential in any log).
//!
//! `systemd-socket-activate` binds the socket, waits for the first connection, then
//! executes hoist in its own process (so its exit status is hoist's) with `LISTEN_FDS=1`
//! and `LISTEN_PID` set. The daemon also gets a decoy `HOIST_LISTEN` it must not bind.

use crate::common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::image::Unpacked;
use common::service::{Activation, Answer, Endpoint, Service, ServiceSpec, require};
use common::{
    Fault, FaultProxy, Format, Image, Pushed, Registry, RegistryAuth, Rule, World,
    assert_same_tree, fixtures,
};
use serde_json::{Value, json};

static SMALL: LazyLock<Image> = LazyLock::new(|| fixtures::small("service"));
static SMALL_REF: LazyLock<Unpacked> = LazyLock::new(|| SMALL.unpack_reference());
/// Two layers, the second about 1 MB: a few seconds through a throttled proxy.
static BIG: LazyLock<Image> = LazyLock::new(|| fixtures::big(1_000_000, 77));
const PASSWORD: &str = "service-test-password-Zq8#";
const TOKEN: &str = "service-api-token-4f7a";

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hoist-svc-")
        .tempdir()
        .expect("temp dir")
}

fn slow_blobs(bytes_per_sec: u64) -> Rule {
    Rule::new(Fault::Slow { bytes_per_sec }, "/blobs/").method("GET")
}

/// Polls `GET /jobs/{id}?wait=30` until the job ends.
fn wait_job(endpoint: &Endpoint, token: Option<&str>, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let a = endpoint.call("GET", &format!("/jobs/{id}?wait=30"), token, None);
        assert_eq!(a.status, 200, "GET /jobs/{id}: {a:?}");
        let job = a.json();
        if matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return job;
        }
        assert!(
            start.elapsed() < common::JOB_DEADLINE,
            "job {id} did not end: {job}"
        );
    }
}

/// `POST /pulls` that must be accepted; the job's id.
fn submit_pull(endpoint: &Endpoint, token: Option<&str>, body: Value) -> String {
    let a = endpoint.call("POST", "/pulls", token, Some(&body));
    assert_eq!(a.status, 202, "POST /pulls {body}: {a:?}");
    assert_eq!(
        a.header("location").map(str::to_owned),
        Some(format!("/jobs/{}", a.json()["id"].as_str().unwrap_or("?"))),
        "{a:?}"
    );
    a.json()["id"].as_str().expect("job id").to_owned()
}

/// The number of migrations recorded as applied in the daemon's database, read with a
/// connection of our own (read-only; the daemon may be running).
async fn applied_migrations(db: &Path) -> i64 {
    use sqlx::Connection as _;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("open {db:?}: {e}"));
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("read _sqlx_migrations of {db:?}: {e}"))
}

fn migration_files() -> i64 {
    std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count() as i64
}

/// Socket activation end to end: hoist is not running before the first connection;
/// that connection starts it; it says READY=1 only once its database is open and
/// migrated; a pull of a real image from a real registry arrives on the inherited socket
/// and succeeds; it never binds its own `HOIST_LISTEN`; SIGTERM → STOPPING=1 → exit 0.
async fn socket_activated_pull(endpoint: Endpoint, fdname: Option<&str>) {
    let dir = tempdir();
    let registry = Registry::start(&dir.path().join("registry"), RegistryAuth::Open);
    SMALL.push(&registry, "svc/img:1", Format::Oci);
    let mut svc = Service::start(
        &dir.path().join("hoist"),
        ServiceSpec::new(
            endpoint,
            Activation::Socket {
                fdname: fdname.map(str::to_owned),
            },
        )
        .notify(),
    );
    let mut notify = svc.notify.take().expect("notify socket");
    let db = svc.data_dir.join("hoist.db");
    assert!(
        !notify.wait_for("READY=1", Duration::from_millis(500)),
        "READY=1 before any connection: hoist must start on the first one"
    );
    assert!(!db.exists(), "hoist ran before the first connection");

    // the first connection starts hoist; it is ready once its database is migrated
    let first = match &svc.endpoint {
        Endpoint::Tcp(a) => Box::new(TcpStream::connect(a).unwrap()) as Box<dyn std::any::Any>,
        Endpoint::Unix(p) => Box::new(std::os::unix::net::UnixStream::connect(p).unwrap()),
    };
    assert!(
        notify.wait_for("READY=1", Duration::from_secs(30)),
        "no READY=1 on NOTIFY_SOCKET after the first connection; got {:?}\n{}",
        notify.seen(),
        svc.log_text()
    );
    assert_eq!(
        applied_migrations(&db).await,
        migration_files(),
        "READY=1 came before every migration was applied"
    );
    drop(first);

    let image = format!("{}/svc/img:1", registry.host());
    let id = submit_pull(
        &svc.endpoint,
        None,
        json!({"image": image, "dest": "pulled"}),
    );
    let job = wait_job(&svc.endpoint, None, &id);
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_same_tree(&SMALL_REF.rootfs, &svc.roots[0].join("pulled"));

    let decoy = svc.env_value("HOIST_LISTEN").unwrap().to_owned();
    assert!(
        TcpStream::connect(&decoy).is_err(),
        "the daemon bound HOIST_LISTEN={decoy} although systemd passed it a socket"
    );
    assert!(
        svc.log_text().contains("listen=systemd"),
        "the daemon's start line does not say it took the systemd socket:\n{}",
        svc.log_text()
    );

    svc.terminate();
    let status = svc
        .wait_exit(Duration::from_secs(30))
        .expect("hoist did not exit within 30 s of SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    // sent before the exit, so queued on the socket by now
    assert!(
        notify.wait_for("STOPPING=1", Duration::from_secs(1)),
        "no STOPPING=1 after SIGTERM; got {:?}\n{}",
        notify.seen(),
        svc.log_tail(10)
    );
    let ready = notify.seen().iter().position(|s| s == "READY=1");
    let stopping = notify.seen().iter().position(|s| s == "STOPPING=1");
    assert!(
        ready < stopping,
        "READY=1, then STOPPING=1: {:?}",
        notify.seen()
    );
}

#[tokio::test]
async fn socket_activated_on_tcp_serves_a_pull_and_notifies_ready_and_stopping() {
    socket_activated_pull(Endpoint::free_tcp(), Some("hoist")).await;
}

#[tokio::test]
async fn socket_activated_on_a_unix_socket_serves_a_pull_and_notifies_ready_and_stopping() {
    let dir = tempdir();
    let sock = dir.path().join("hoist.sock");
    socket_activated_pull(Endpoint::Unix(sock), None).await;
}

/// STOPPING=1 on every SIGTERM, not only on some: twelve stops in a row, each after a
/// request (no connection left open), each with exit status 0.
#[test]
fn stopping_is_notified_on_every_sigterm() {
    let dir = tempdir();
    let mut svc = Service::start(
        &dir.path().join("hoist"),
        ServiceSpec::new(Endpoint::free_tcp(), Activation::Direct).notify(),
    );
    let mut notify = svc.notify.take().unwrap();
    let mut missing = Vec::new();
    for round in 0..12 {
        if round > 0 {
            svc.restart();
        }
        assert!(
            notify.wait_for("READY=1", Duration::from_secs(10)),
            "round {round}"
        );
        notify.clear();
        let a = svc.endpoint.call("GET", "/jobs", None, None);
        assert_eq!(a.status, 200);
        svc.terminate();
        let stopping = notify.wait_for("STOPPING=1", Duration::from_secs(10));
        let status = svc
            .wait_exit(Duration::from_secs(30))
            .expect("exit after SIGTERM");
        assert!(status.success(), "round {round}: {status}");
        if !stopping {
            missing.push(round);
        }
    }
    assert!(
        missing.is_empty(),
        "no STOPPING=1 after SIGTERM in rounds {missing:?} of 0..12\n{}",
        svc.log_text()
    );
}

/// Idle exit: with HOIST_IDLE_EXIT=2, a socket-activated daemon keeps running while a job
/// runs (no request comes meanwhile), exits with status 0 once idle, and the next
/// activation on the same data dir finds the job, its tree and its cached blobs.
#[tokio::test]
async fn idle_socket_activated_daemon_exits_0_and_the_next_activation_loses_nothing() {
    let dir = tempdir();
    let registry = Registry::start(&dir.path().join("registry"), RegistryAuth::Open);
    let proxy = FaultProxy::start(registry.addr);
    let pushed = BIG.push(&registry, "svc/big:1", Format::Oci);
    // ~1 MB at 250 kB/s: the job runs about 4 s, twice the idle time
    proxy.add_rule(slow_blobs(250_000));
    let mut svc = Service::start(
        &dir.path().join("hoist"),
        ServiceSpec::new(Endpoint::free_tcp(), Activation::Socket { fdname: None })
            .notify()
            .env("HOIST_IDLE_EXIT", "2"),
    );
    let image = format!("{}/svc/big:1", proxy.host());
    let id = submit_pull(&svc.endpoint, None, json!({"image": image, "dest": "big"}));
    let submitted = Instant::now();
    let dest = svc.roots[0].join("big");
    // no request while the job runs: only the job keeps the daemon up
    while !dest.exists() {
        assert!(
            svc.is_running(),
            "the daemon exited {:?} after the pull was submitted, with the job still \
             running:\n{}",
            submitted.elapsed(),
            svc.log_tail(30)
        );
        assert!(
            submitted.elapsed() < Duration::from_secs(120),
            "the pull did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = submitted.elapsed();
    assert!(
        took > Duration::from_secs(3),
        "the throttled pull took only {took:?}: too fast to show idle exit waits for jobs"
    );
    let status = svc
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("not exited 15 s after its job ended:\n{}", svc.log_tail(20)));
    assert!(status.success(), "idle exit status: {status}");
    let mut notify = svc.notify.take().unwrap();
    let stopping = notify.wait_for("STOPPING=1", Duration::from_secs(1));

    // the next connection: a new activation on the same data dir
    svc.restart();
    let job = svc.endpoint.call("GET", &format!("/jobs/{id}"), None, None);
    assert_eq!(job.status, 200, "{job:?}");
    let job = job.json();
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let list = svc.endpoint.call("GET", "/jobs", None, None).json();
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "GET /jobs after restart: {list:#}"
    );
    assert_same_tree(&BIG.unpack_reference().rootfs, &dest);
    // the cache survived: a second pull downloads no layer
    proxy.clear_rules();
    proxy.clear_log();
    let again = submit_pull(
        &svc.endpoint,
        None,
        json!({"image": image, "dest": "again"}),
    );
    assert_eq!(wait_job(&svc.endpoint, None, &again)["status"], "succeeded");
    for layer in pushed.layer_digests() {
        assert!(
            proxy.blob_gets(&layer).is_empty(),
            "layer {layer} fetched again after the restart:\n{}",
            proxy.log_text()
        );
    }
    let metrics = Metrics::parse(&svc.endpoint.call("GET", "/metrics", None, None).text());
    assert_eq!(
        metrics.value("hoist_cache_hits_total", &[]),
        pushed.layer_digests().len() as f64,
        "{metrics:?}"
    );
    assert_eq!(
        svc.stop(Duration::from_secs(30)).map(|s| s.success()),
        Some(true)
    );
    assert!(
        stopping,
        "no STOPPING=1 on the idle exit: {:?}\n{}",
        notify.seen(),
        svc.log_text()
    );
}

/// The socket file belongs to systemd (hoist.socket keeps listening on it after the
/// service exits): a socket-activated hoist whose `HOIST_LISTEN` names the same path
/// must not remove it when it exits, or the next client finds no socket to connect to.
#[tokio::test]
async fn socket_activated_daemon_leaves_the_inherited_unix_socket_file_in_place() {
    let dir = tempdir();
    let sock = dir.path().join("hoist.sock");
    let mut svc = Service::start(
        &dir.path().join("hoist"),
        ServiceSpec::new(
            Endpoint::Unix(sock.clone()),
            Activation::Socket { fdname: None },
        )
        .env("HOIST_IDLE_EXIT", "1")
        .env("HOIST_LISTEN", &format!("unix:{}", sock.display())),
    );
    svc.wait_healthy();
    let status = svc
        .wait_exit(Duration::from_secs(15))
        .expect("no idle exit within 15 s");
    assert!(status.success(), "{status}");
    assert!(
        std::fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket()),
        "the daemon removed {sock:?}, the socket systemd listens on, when it exited:\n{}",
        svc.log_tail(10)
    );
}

/// The unit files with `ExecStart` aimed at the built binary, in a temp dir.
fn units_for_this_build(dir: &Path) -> (PathBuf, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let service = std::fs::read_to_string(src.join("hoist.service")).unwrap();
    let mut rewritten = 0;
    let service: String = service
        .lines()
        .map(|l| match l.strip_prefix("ExecStart=") {
            Some(cmd) => {
                rewritten += 1;
                let args = cmd.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
                format!("ExecStart={} {args}\n", env!("CARGO_BIN_EXE_hoist"))
            }
            None => format!("{l}\n"),
        })
        .collect();
    assert_eq!(rewritten, 1, "hoist.service has one ExecStart=");
    let service_path = dir.join("hoist.service");
    let socket_path = dir.join("hoist.socket");
    std::fs::write(&service_path, service).unwrap();
    std::fs::copy(src.join("hoist.socket"), &socket_path).unwrap();
    (service_path, socket_path)
}

#[test]
fn unit_files_pass_systemd_analyze_verify_and_security() {
    let analyze = require("systemd-analyze", "systemd");
    let dir = tempdir();
    let (service, socket) = units_for_this_build(dir.path());
    let out = std::process::Command::new(&analyze)
        .arg("verify")
        .arg(&socket)
        .arg(&service)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "systemd-analyze verify exited {} and said:\n{said}",
        out.status
    );
    // In a container, verify may complain about the machine; never about our lines.
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| {
            ["hoist.service", "hoist.socket"]
                .iter()
                .any(|u| l.contains(&format!("{u}:")))
        })
        .collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify complains about the units:\n{}",
        ours.join("\n")
    );

    let out = std::process::Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&service)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze security");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let level = said
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for hoist.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level from systemd-analyze security:\n{said}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("systemd-analyze security --offline: exposure {level}");
    assert!(
        level <= 5.0,
        "hoist.service's exposure is {level} (above OK):\n{said}"
    );
}

/// `key=value` lines of a unit file, in order (comments and sections left out).
fn unit_settings(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn unit_files_declare_notify_state_cache_socket_and_hardening() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let service = unit_settings(&src.join("hoist.service"));
    let socket = unit_settings(&src.join("hoist.socket"));
    let get = |settings: &[(String, String)], key: &str| -> Vec<String> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let one = |key: &str| -> String {
        let v = get(&service, key);
        assert_eq!(v.len(), 1, "hoist.service sets {key}= once: {v:?}");
        v[0].clone()
    };
    assert_eq!(one("Type"), "notify");
    assert!(
        ["main", "exec", "all"].contains(&one("NotifyAccess").as_str()),
        "NotifyAccess lets hoist's main process notify"
    );
    assert!(one("ExecStart").ends_with("hoist serve"));
    let env: BTreeMap<String, String> = get(&service, "Environment")
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // the folders systemd creates and owns are the ones hoist is told to use
    assert_eq!(one("StateDirectory"), "hoist");
    assert_eq!(env["HOIST_DATA_DIR"], "/var/lib/hoist");
    assert_eq!(one("CacheDirectory"), "hoist");
    assert_eq!(env["HOIST_CACHE_DIR"], "/var/cache/hoist");
    let writable: Vec<String> = get(&service, "ReadWritePaths")
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .chain(["/var/lib/hoist".to_owned(), "/var/cache/hoist".to_owned()])
        .collect();
    for root in env["HOIST_ROOTS"].split(':') {
        assert!(
            writable.iter().any(|w| Path::new(root).starts_with(w)),
            "root {root} is not writable under ProtectSystem=strict"
        );
    }
    assert!(env.contains_key("HOIST_IDLE_EXIT"), "{env:?}");
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "true"),
        ("PrivateTmp", "true"),
        ("ProtectKernelTunables", "true"),
        ("ProtectKernelModules", "true"),
        ("ProtectControlGroups", "true"),
        ("RestrictRealtime", "true"),
        ("LockPersonality", "true"),
        ("MemoryDenyWriteExecute", "true"),
    ] {
        assert_eq!(one(key), value, "hardening: {key}");
    }
    let families = one("RestrictAddressFamilies");
    assert!(
        families.contains("AF_UNIX"),
        "sd_notify and Unix sockets need AF_UNIX: {families}"
    );
    assert!(
        get(&service, "Requires")
            .iter()
            .any(|v| v.contains("hoist.socket"))
    );
    let listen = get(&socket, "ListenStream");
    assert_eq!(listen.len(), 1, "hoist.socket: {socket:?}");
    assert!(
        listen[0].starts_with("127.0.0.1:") || listen[0].starts_with('/'),
        "the socket is loopback or a Unix socket: {listen:?}"
    );
}

/// `HOIST_LISTEN=unix:/path`: the parent folder is created, the socket is mode 0660, it
/// answers, a clean stop removes it, and a socket file left by a killed daemon does not
/// stop the next start.
#[test]
fn unix_socket_listener_is_mode_0660_and_cleaned_up() {
    let dir = tempdir();
    let sock = dir.path().join("run/nested/hoist.sock");
    let mut svc = Service::start(
        &dir.path().join("hoist"),
        ServiceSpec::new(Endpoint::Unix(sock.clone()), Activation::Direct),
    );
    let meta = std::fs::symlink_metadata(&sock).expect("the socket file");
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o660,
        "mode of {sock:?}: {:o}",
        meta.permissions().mode()
    );
    let a = svc.endpoint.call("GET", "/healthz", None, None);
    assert_eq!((a.status, a.json()), (200, json!({"status": "ok"})));

    let status = svc
        .stop(Duration::from_secs(30))
        .expect("exit after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(!sock.exists(), "a clean stop removes the socket it made");

    svc.restart();
    crash(&mut svc);
    assert!(sock.exists(), "a killed daemon leaves its socket file");
    svc.restart();
    let a = svc.endpoint.call("GET", "/healthz", None, None);
    assert_eq!(a.status, 200);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o660);
}

/// SIGKILL, like a crash.
fn crash(svc: &mut Service) {
    let pid = svc.pid().expect("running");
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    assert!(svc.wait_exit(Duration::from_secs(10)).is_some());
}

/// Checks a problem+json answer: status, content type, the fields, the code.
fn assert_problem(a: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!(a.status, status, "{what}: {a:?}");
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("application/problem+json")),
        "{what}: not problem+json: {a:?}"
    );
    let body = a.json();
    for field in ["type", "title", "detail"] {
        assert!(
            body[field].is_string(),
            "{what}: problem without {field}: {a:?}"
        );
    }
    assert_eq!(body["status"], json!(status), "{what}: {a:?}");
    assert_eq!(body["code"], code, "{what}: {a:?}");
}

/// With HOIST_API_TOKEN, on a Unix socket: every endpoint but `GET /healthz` answers 401
/// problem+json without the token, with a wrong one, or with one that merely starts or
/// ends like it; with the right one (the scheme in any case), none does.
#[test]
fn api_token_guards_every_endpoint_but_healthz_on_a_unix_socket() {
    let dir = tempdir();
    let svc = Service::start(
        &dir.path().join("hoist"),
        ServiceSpec::new(
            Endpoint::Unix(dir.path().join("hoist.sock")),
            Activation::Direct,
        )
        .env("HOIST_API_TOKEN", TOKEN),
    );
    let e = &svc.endpoint;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some(&*format!("Bearer {TOKEN}")),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        let a = e.request("GET", "/healthz", &headers, None).unwrap();
        assert_eq!(a.status, 200, "GET /healthz with {auth:?} is open: {a:?}");
    }
    let pull = json!({"image": "127.0.0.1:1/x:1", "dest": "x"});
    let build = json!({"source": "src", "target": "127.0.0.1:1/x:1"});
    let endpoints: Vec<(&str, &str, Option<&Value>)> = vec![
        ("GET", "/jobs", None),
        ("GET", "/jobs/00000000-0000-0000-0000-000000000000", None),
        (
            "GET",
            "/jobs/00000000-0000-0000-0000-000000000000?wait=1",
            None,
        ),
        (
            "GET",
            "/jobs/00000000-0000-0000-0000-000000000000/events",
            None,
        ),
        ("DELETE", "/jobs/00000000-0000-0000-0000-000000000000", None),
        ("POST", "/pulls", Some(&pull)),
        ("POST", "/builds", Some(&build)),
        ("GET", "/digest?image=127.0.0.1:1/x:1", None),
        ("GET", "/inspect?image=127.0.0.1:1/x:1", None),
        ("GET", "/cache", None),
        ("DELETE", "/cache", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.yaml", None),
        ("POST", "/healthz", None),
        ("DELETE", "/healthz", None),
        ("GET", "/no/such/endpoint", None),
    ];
    let wrong = [
        String::new(),
        "Bearer wrong".to_owned(),
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Basic {TOKEN}"),
        TOKEN.to_owned(),
        "Bearer ".to_owned(),
    ];
    for (method, path, body) in &endpoints {
        for auth in &wrong {
            let headers: Vec<(&str, &str)> = if auth.is_empty() {
                vec![]
            } else {
                vec![("Authorization", auth.as_str())]
            };
            let what = format!("{method} {path} with Authorization {auth:?}");
            let a = e.request(method, path, &headers, *body).unwrap();
            assert_problem(&a, 401, "unauthorized", &what);
            assert!(
                a.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{what}: {a:?}"
            );
            assert!(
                !a.text().contains(TOKEN),
                "{what}: the answer shows the token"
            );
        }
        for right in [format!("Bearer {TOKEN}"), format!("bearer {TOKEN}")] {
            let a = e
                .request(method, path, &[("Authorization", right.as_str())], *body)
                .unwrap();
            assert_ne!(a.status, 401, "{method} {path} with {right:?}: {a:?}");
        }
    }
    assert!(
        !svc.log_text().contains(TOKEN),
        "the API token is in the daemon's log"
    );
}

/// One sample of a Prometheus text exposition.
#[derive(Clone, Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Clone)]
struct Metrics {
    samples: Vec<Sample>,
    text: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{}", self.text)
    }
}

impl Metrics {
    /// Parses the text format strictly enough: every line is a comment or
    /// `name{labels} value`, every sample's family has `# TYPE`.
    fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        let mut typed = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                let name = parts.next().unwrap().to_owned();
                let kind = parts.next().unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad TYPE line {line:?}"
                );
                typed.push(name);
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample line: {line:?}\n{text}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => {
                    let l = l.strip_suffix('}').unwrap_or_else(|| panic!("{line:?}"));
                    let labels = l
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (n.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line:?}"
            );
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| typed.iter().any(|t| t == f))
                .unwrap_or(&name)
                .to_owned();
            assert!(
                typed.contains(&family),
                "sample {name} has no # TYPE line before it\n{text}"
            );
            samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        Metrics {
            samples,
            text: text.to_owned(),
        }
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the samples named `name` whose labels include `labels` (0 when none).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The one metric family whose name matches `pred`; panics naming `what` otherwise.
    fn family(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut names: Vec<&str> = self
            .samples
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| pred(n))
            .collect();
        names.dedup();
        assert_eq!(
            names.len(),
            1,
            "GET /metrics has {} series for {what} (wanted exactly one family): {names:?}{self:?}",
            names.len()
        );
        names[0].to_owned()
    }
}

async fn metrics(world: &World) -> Metrics {
    let resp = world.get("/metrics").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    Metrics::parse(&resp.text().await.unwrap())
}

/// Sizes of the files in the cache's `blobs/sha256/` (count, bytes).
fn cache_files(world: &World) -> (usize, u64) {
    let blobs = world.cached_blobs();
    let bytes = blobs
        .iter()
        .map(|d| {
            std::fs::metadata(
                world
                    .cache_dir()
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .unwrap()
            .len()
        })
        .sum();
    (blobs.len(), bytes)
}

fn assert_histogram(m: &Metrics, name: &str, labels: &[(&str, &str)], count: f64) {
    let bucket = format!("{name}_bucket");
    let buckets: Vec<&Sample> = m.matching(&bucket, labels).collect();
    assert!(!buckets.is_empty(), "no {name} buckets for {labels:?}{m:?}");
    let mut last = 0.0;
    for b in &buckets {
        assert!(b.value >= last, "{name} buckets must not decrease{m:?}");
        last = b.value;
    }
    assert_eq!(
        buckets.last().unwrap().labels.get("le").map(String::as_str),
        Some("+Inf")
    );
    assert_eq!(last, count, "{name}{{le=\"+Inf\"}} for {labels:?}{m:?}");
    assert_eq!(m.value(&format!("{name}_count"), labels), count, "{m:?}");
    let sum = m.value(&format!("{name}_sum"), labels);
    assert!(sum > 0.0 && sum < 600.0, "{name}_sum {sum}{m:?}");
}

/// Jobs by kind and status, the duration histogram, cache hits and misses, cache bytes
/// and blobs, after two pulls of one image and a failed one.
#[tokio::test]
async fn metrics_count_jobs_durations_and_cache_hits_and_misses_after_pulls() {
    let world = World::start().await;
    world.push(&BIG, "metrics/big:1", Format::Oci);
    let m = metrics(&world).await;
    assert_eq!(m.value("hoist_cache_hits_total", &[]), 0.0);
    assert_eq!(m.value("hoist_cache_misses_total", &[]), 0.0);

    world.pull_ok(&world.image("metrics/big:1"), "first").await;
    let m = metrics(&world).await;
    let (blobs, bytes) = cache_files(&world);
    assert!(blobs >= 2, "both layers are cached");
    let pull_ok = [("kind", "pull"), ("status", "succeeded")];
    assert_eq!(m.value("hoist_jobs", &pull_ok), 1.0, "{m:?}");
    assert_histogram(&m, "hoist_job_duration_seconds", &pull_ok, 1.0);
    assert_eq!(
        m.value("hoist_cache_misses_total", &[]),
        blobs as f64,
        "one miss per blob now in the cache{m:?}"
    );
    assert_eq!(m.value("hoist_cache_hits_total", &[]), 0.0, "{m:?}");
    assert_eq!(m.value("hoist_cache_blobs", &[]), blobs as f64, "{m:?}");
    assert_eq!(m.value("hoist_cache_bytes", &[]), bytes as f64, "{m:?}");

    world.pull_ok(&world.image("metrics/big:1"), "second").await;
    let m = metrics(&world).await;
    assert_eq!(cache_files(&world), (blobs, bytes), "nothing new cached");
    assert_eq!(m.value("hoist_jobs", &pull_ok), 2.0, "{m:?}");
    assert_histogram(&m, "hoist_job_duration_seconds", &pull_ok, 2.0);
    assert_eq!(
        m.value("hoist_cache_hits_total", &[]),
        blobs as f64,
        "{m:?}"
    );
    assert_eq!(
        m.value("hoist_cache_misses_total", &[]),
        blobs as f64,
        "{m:?}"
    );
    assert_eq!(m.value("hoist_cache_shared_total", &[]), 0.0, "{m:?}");
    assert_eq!(m.value("hoist_cache_evictions_total", &[]), 0.0, "{m:?}");

    world
        .pull(json!({"image": world.image("metrics/missing:1"), "dest": "missing"}))
        .await
        .expect_failed("manifest_unknown");
    let m = metrics(&world).await;
    let failed = [("kind", "pull"), ("status", "failed")];
    assert_eq!(m.value("hoist_jobs", &failed), 1.0, "{m:?}");
    assert_eq!(m.value("hoist_jobs", &pull_ok), 2.0, "{m:?}");
    assert_histogram(&m, "hoist_job_duration_seconds", &failed, 1.0);
    assert_eq!(m.value("hoist_jobs", &[("kind", "build")]), 0.0, "{m:?}");
}

/// Blobs shared between concurrent pulls of one image: one download, the other job waits
/// for it.
#[tokio::test]
async fn metrics_count_blobs_shared_between_concurrent_pulls() {
    let world = World::builder().proxy().workers(2).start().await;
    let pushed = world.push(&BIG, "metrics/big:1", Format::Oci);
    world.proxy().add_rule(slow_blobs(500_000));
    let a = world
        .submit_pull(json!({"image": world.image("metrics/big:1"), "dest": "a"}))
        .await;
    let b = world
        .submit_pull(json!({"image": world.image("metrics/big:1"), "dest": "b"}))
        .await;
    world.wait_job(a.id()).await.expect_succeeded();
    world.wait_job(b.id()).await.expect_succeeded();
    let m = metrics(&world).await;
    let (blobs, _) = cache_files(&world);
    let layers = pushed.layer_digests().len() as f64;
    assert_eq!(
        m.value("hoist_cache_misses_total", &[]),
        blobs as f64,
        "{m:?}"
    );
    let shared = m.value("hoist_cache_shared_total", &[]);
    assert!(shared >= 1.0, "the big layer was shared{m:?}");
    assert_eq!(
        shared + m.value("hoist_cache_hits_total", &[]),
        blobs as f64,
        "the second job got every blob from the first (shared or hit){m:?}"
    );
    assert!(layers <= blobs as f64);
}

/// Evictions: with a cache limit of 1 byte, every blob goes after its job.
#[tokio::test]
async fn metrics_count_cache_evictions() {
    let world = World::builder().cache_max_bytes(1).start().await;
    world.push(&SMALL, "metrics/small:1", Format::Oci);
    world.pull_ok(&world.image("metrics/small:1"), "one").await;
    let m = metrics(&world).await;
    let misses = m.value("hoist_cache_misses_total", &[]);
    assert!(misses >= 1.0, "{m:?}");
    assert_eq!(m.value("hoist_cache_evictions_total", &[]), misses, "{m:?}");
    assert_eq!(cache_files(&world), (0, 0));
    assert_eq!(m.value("hoist_cache_bytes", &[]), 0.0, "{m:?}");
    assert_eq!(m.value("hoist_cache_blobs", &[]), 0.0, "{m:?}");
}

/// `status` → count of the registry requests the proxy answered.
fn proxy_statuses(proxy: &FaultProxy) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for l in proxy.log() {
        *out.entry(l.status.to_string()).or_insert(0.0) += 1.0;
    }
    out
}

fn registry_requests_by_status(m: &Metrics) -> BTreeMap<String, f64> {
    let family = m.family("registry requests by status", |n| {
        n.starts_with("hoist_registry_request") && !n.ends_with("_bucket")
    });
    let mut out = BTreeMap::new();
    for s in m.samples.iter().filter(|s| s.name == family) {
        let status = s
            .labels
            .get("status")
            .or_else(|| s.labels.get("code"))
            .unwrap_or_else(|| panic!("{family} without a status label{m:?}"));
        *out.entry(status.clone()).or_insert(0.0) += s.value;
    }
    out
}

fn bytes_family(m: &Metrics, direction: &str) -> String {
    m.family(&format!("bytes {direction}ed"), |n| {
        n.starts_with("hoist_") && n.contains(direction) && n.contains("bytes")
    })
}

/// Registry requests by status and bytes downloaded, checked against what the proxy in
/// front of the registry saw and the blob sizes: a pull downloads its layers once, a
/// second pull none, a missing tag is a 404.
#[tokio::test]
async fn metrics_count_registry_requests_by_status_and_bytes_downloaded() {
    let world = World::builder().proxy().start().await;
    let pushed: Pushed = world.push(&BIG, "metrics/big:1", Format::Oci);
    let layers: u64 = pushed
        .layers()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    let config = pushed.manifest["config"]["size"].as_u64().unwrap();
    let manifest = pushed.raw.len() as u64;

    world.pull_ok(&world.image("metrics/big:1"), "first").await;
    let m = metrics(&world).await;
    assert_eq!(
        registry_requests_by_status(&m),
        proxy_statuses(world.proxy()),
        "registry requests by status, against the proxy's log:\n{}",
        world.proxy().log_text()
    );
    let downloaded = bytes_family(&m, "download");
    let first = m.value(&downloaded, &[]);
    assert!(
        first >= layers as f64 && first <= (layers + config + manifest) as f64,
        "{downloaded} after one pull is {first}; the layers are {layers} bytes, the config \
         {config}, the manifest {manifest}{m:?}"
    );

    world.pull_ok(&world.image("metrics/big:1"), "second").await;
    world
        .pull(json!({"image": world.image("metrics/missing:1"), "dest": "missing"}))
        .await
        .expect_failed("manifest_unknown");
    let m = metrics(&world).await;
    let by_status = registry_requests_by_status(&m);
    assert_eq!(
        by_status,
        proxy_statuses(world.proxy()),
        "registry requests by status, against the proxy's log:\n{}",
        world.proxy().log_text()
    );
    assert!(by_status.get("404").is_some_and(|n| *n >= 1.0), "{m:?}");
    let second = m.value(&downloaded, &[]);
    assert!(
        second - first <= (config + manifest) as f64,
        "cached layers were counted as downloaded again: {first} → {second}{m:?}"
    );
}

/// Bytes uploaded by a build: its layer and config blobs.
#[tokio::test]
async fn metrics_count_bytes_uploaded_by_a_build() {
    let world = World::start().await;
    let src = world.root().join("app");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "hello from a build\n".repeat(1000)).unwrap();
    let target = world.image("metrics/built:1");
    let (status, job) = world
        .api(
            reqwest::Method::POST,
            "/builds",
            Some(&json!({"source": "app", "target": target})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let job = world.wait_job(job["id"].as_str().unwrap()).await;
    let result = job.expect_succeeded().clone();
    let layers: u64 = result["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    let m = metrics(&world).await;
    assert_eq!(
        m.value("hoist_jobs", &[("kind", "build"), ("status", "succeeded")]),
        1.0,
        "{m:?}"
    );
    let uploaded = bytes_family(&m, "upload");
    let sent = m.value(&uploaded, &[]);
    // the layer and the config (a few hundred bytes) went up
    assert!(
        sent >= layers as f64 && sent <= (layers + 64 * 1024) as f64,
        "{uploaded} after a build of {layers} layer bytes: {sent}{m:?}"
    );
}

/// The lines of a log that are about job `id`.
fn job_lines<'a>(log: &'a str, id: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(id)).collect()
}

/// JSON logs: every line is a JSON object; every line about a job has a `job` field with
/// its id and names the image; queued, started and ended each have their line; the
/// registry password of the job appears nowhere.
#[tokio::test]
async fn json_logs_have_a_line_per_job_event_with_job_and_image_and_no_credential() {
    let world = World::builder()
        .auth(RegistryAuth::basic("alice", PASSWORD))
        .env("HOIST_LOG_FORMAT", "json")
        .start()
        .await;
    world.push(&SMALL, "logs/img:1", Format::Oci);
    let image = world.image("logs/img:1");
    let job = world
        .pull(json!({"image": image, "dest": "logged",
                     "auth": {"username": "alice", "password": PASSWORD}}))
        .await;
    job.expect_succeeded();
    let failed = world
        .pull(
            json!({"image": world.image("logs/missing:1"), "dest": "nope",
                     "auth": {"username": "alice", "password": PASSWORD}}),
        )
        .await;
    failed.expect_failed("manifest_unknown");

    let log = world.hoist.log_text();
    assert!(
        !log.contains(PASSWORD),
        "the registry password is in the log:\n{log}"
    );
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        assert!(
            v.get("message").or_else(|| v.get("msg")).is_some(),
            "a JSON log line without a message: {line}"
        );
    }
    for (id, image) in [
        (job.id(), image.clone()),
        (failed.id(), world.image("logs/missing:1")),
    ] {
        let lines = job_lines(&log, id);
        assert!(
            lines.len() >= 3,
            "queued, started, ended for job {id}:\n{log}"
        );
        for line in &lines {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["job"], id, "the `job` field of {line}");
            assert!(
                line.contains(&image),
                "a log line about job {id} does not name its image {image}: {line}"
            );
        }
        let messages: Vec<String> = lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["message"].to_string())
            .collect();
        for event in ["queued", "started", "ended"] {
            assert!(
                messages.iter().any(|m| m.contains(event)),
                "no `{event}` line for job {id}: {messages:?}"
            );
        }
    }
}

/// Text logs: one line per job event, each with `job=<id>` and the image.
#[tokio::test]
async fn text_logs_have_a_line_per_job_event_with_job_and_image() {
    let world = World::start().await;
    world.push(&SMALL, "logs/img:1", Format::Oci);
    let image = world.image("logs/img:1");
    let job = world.pull_ok(&image, "logged").await;
    let log = world.hoist.log_text();
    let lines = job_lines(&log, job.id());
    for event in ["queued", "started", "ended"] {
        assert!(
            lines.iter().any(|l| l.contains(event)),
            "no `{event}` line for job {}:\n{log}",
            job.id()
        );
    }
    for line in lines {
        assert!(
            line.contains(&format!("job={}", job.id())),
            "job id field: {line}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "escape sequences in a log that is not a terminal: {line:?}"
        );
        assert!(
            line.contains(&image),
            "a log line about job {} does not name its image {image}: {line}",
            job.id()
        );
    }
}
