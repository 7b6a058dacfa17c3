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

mod activation;
mod logs;
mod metrics;
mod units;

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
    FaultProxy, Format, Image, Pushed, Registry, RegistryAuth, Rule, World, assert_same_tree,
    fixtures,
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
