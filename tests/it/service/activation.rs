//! Socket activation: `systemd-socket-activate` hands hoist a TCP or Unix socket; it serves
//! on it, notifies READY=1 and STOPPING=1, exits when idle and loses nothing when the next
//! connection activates it again.

use super::metrics::Metrics;
use super::*;

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
    proxy.add_rule(Rule::slow_gets("/blobs/", 250_000));
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
    // the cache survived: a second pull downloads no blob, the config included
    proxy.clear_rules();
    proxy.clear_log();
    let again = submit_pull(
        &svc.endpoint,
        None,
        json!({"image": image, "dest": "again"}),
    );
    assert_eq!(wait_job(&svc.endpoint, None, &again)["status"], "succeeded");
    let config = pushed.manifest["config"]["digest"].as_str().unwrap();
    for blob in pushed
        .layer_digests()
        .iter()
        .map(String::as_str)
        .chain([config])
    {
        assert!(
            proxy.blob_gets(blob).is_empty(),
            "blob {blob} fetched again after the restart:\n{}",
            proxy.log_text()
        );
    }
    let metrics = Metrics::parse(&svc.endpoint.call("GET", "/metrics", None, None).text());
    assert_eq!(
        metrics.value("hoist_cache_hits_total", &[]),
        (pushed.layer_digests().len() + 1) as f64,
        "the layers and the config: {metrics:?}"
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
