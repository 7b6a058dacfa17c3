//! The systemd units shipped in `systemd/`: they pass `systemd-analyze verify` and
//! `security`, declare notify, state, cache, socket and hardening; the Unix socket
//! listener's mode and clean-up.

use super::*;

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
