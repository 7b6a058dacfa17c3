//! The habits of crane, skopeo and docker users, through the real `hoist` binary: the
//! caller's own Docker credentials (`auths`, a `credHelpers` helper on the caller's PATH)
//! go with the request and show nowhere, `--creds` wins; `hoist digest` prints the digest
//! alone, `-o json` the whole object, lists are tables, `docker://` works, short job ids;
//! `hoist serve --token` is refused; Ctrl-C cancels the job the CLI started (without a
//! terminal and under one); without a terminal a status line comes at least every 10 s.

use super::progress::{Tmux, quote};
use super::*;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;

/// A caller's Docker config folder under the world's dir, with `config.json` as given.
fn caller_config(world: &World, name: &str, config: &Value) -> PathBuf {
    let dir = world.dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

/// The CLI of a user whose Docker config is `docker_config`, with `bin` first on PATH.
fn as_user(world: &World, docker_config: &Path, bin: Option<&Path>) -> Cli {
    let mut cli = Cli::new(&world.hoist.base_url(), Via::Flag);
    cli.env
        .push(("DOCKER_CONFIG".into(), docker_config.display().to_string()));
    if let Some(bin) = bin {
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cli.env.push(("PATH".into(), path));
    }
    cli
}

/// `docker login` through a credential helper (`credHelpers`) and through `auths`: pull,
/// digest and inspect of a private image work with the caller's own credentials, which
/// are in neither the job row nor the daemon's log; `--creds` wins over them; without
/// them the error says what to do for hoist. The daemon says which docker config it
/// reads.
#[tokio::test]
async fn the_callers_docker_credentials_reach_the_registry_and_show_nowhere() {
    let world = World::builder()
        .auth(RegistryAuth::basic("alice", PASSWORD))
        .start()
        .await;
    let pushed = world.push(&SMALL, "cli/private:1", Format::Oci);
    let host = world.image_host();
    let image = world.image("cli/private:1");

    // the daemon's own config (the harness's, empty) is named at start
    let log = world.hoist.log_text();
    let own = world.hoist.docker_config_dir.join("config.json");
    assert!(
        log.lines()
            .any(|l| l.contains("docker_config") && l.contains(&own.display().to_string())),
        "no start line naming the daemon's docker config {own:?}:\n{log}"
    );

    // a helper, as `docker login` with a credential store leaves it
    let bin = world.dir().join("caller-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let asked = world.dir().join("helper.log");
    let script = format!(
        "#!/bin/sh\nread server\necho \"$1 $server\" >> {}\necho '{{\"ServerURL\":\"'\"$server\"'\",\"Username\":\"alice\",\"Secret\":\"{PASSWORD}\"}}'\n",
        asked.display()
    );
    let helper = bin.join("docker-credential-test");
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(
        &helper,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let helped = caller_config(
        &world,
        "caller-helper",
        &json!({"credHelpers": {host.clone(): "test"}}),
    );
    let cli = as_user(&world, &helped, Some(&bin));
    let pulled = cli.ok(&["pull", &image, "private", "-o", "json"]);
    assert_same_tree(&SMALL_REF.rootfs, &world.root().join("private"));
    let id = pulled.json()["id"].as_str().unwrap().to_owned();
    let helper_log = std::fs::read_to_string(&asked).unwrap_or_default();
    assert!(
        helper_log.lines().any(|l| l == format!("get {host}")),
        "the caller's helper was not asked `get {host}`: {helper_log:?}"
    );
    assert_eq!(
        cli.ok(&["digest", &image]).stdout,
        format!("{}\n", pushed.digest)
    );
    let inspected = cli.ok(&["inspect", &image, "-o", "json"]).json();
    assert_eq!(inspected["digest"], pushed.digest.as_str(), "{inspected}");

    // `auths`, as `docker login` without a store leaves it
    let encoded = base64_encode(&format!("alice:{PASSWORD}"));
    let authed = caller_config(
        &world,
        "caller-auths",
        &json!({"auths": {host.clone(): {"auth": encoded}}}),
    );
    let by_auths = as_user(&world, &authed, None);
    by_auths.ok(&["pull", &image, "by-auths"]);
    assert_same_tree(&SMALL_REF.rootfs, &world.root().join("by-auths"));
    let text = by_auths.ok(&["inspect", &image]).stdout;
    assert!(text.contains(&pushed.digest), "{text}");

    // what curl users send (README): standard base64 with padding, `+` and `/` allowed
    let header = base64_encode(&json!({"username": "alice", "password": PASSWORD}).to_string());
    for (endpoint, with) in [("/digest", true), ("/inspect", true), ("/digest", false)] {
        let mut rb = world.get(&format!("{endpoint}?image={image}"));
        if with {
            rb = rb.header("x-registry-auth", &header);
        }
        let status = rb.send().await.unwrap().status().as_u16();
        assert_eq!(
            status,
            if with { 200 } else { 403 },
            "{endpoint}, header {with}"
        );
    }

    // never in the job row, the job list or the daemon's log
    let (_, row) = world.get_json(&format!("/jobs/{id}")).await;
    assert_eq!(row["status"], "succeeded", "{row}");
    let (_, list) = world.get_json("/jobs").await;
    for (what, text) in [
        ("GET /jobs/ID", row.to_string()),
        ("GET /jobs", list.to_string()),
        ("the daemon's log", world.hoist.log_text()),
        (
            "the pull's output",
            format!("{}{}", pulled.stdout, pulled.stderr),
        ),
    ] {
        assert!(!text.contains(PASSWORD), "{what} has the password");
        assert!(!text.contains(&encoded), "{what} has the encoded password");
    }

    // --creds wins over the config: wrong ones fail although the config is right
    for args in [
        vec!["pull", &image, "wrong", "--creds", "alice:wrong"],
        vec!["digest", &image, "--creds", "alice:wrong"],
    ] {
        let ran = cli.run(&args).fails();
        assert!(
            ran.error().contains("unauthorized"),
            "{args:?}: {}",
            ran.stderr
        );
    }
    assert!(!world.root().join("wrong").exists());

    // nobody's credentials: the hint is for hoist, not for docker
    let nobody = Cli::new(&world.hoist.base_url(), Via::Flag);
    let ran = nobody.run(&["digest", &image]).fails();
    assert!(
        ran.error().contains(&format!("docker login {host}")) && ran.error().contains("--creds"),
        "{}",
        ran.stderr
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `hoist digest` prints the digest alone, `-o json` the whole object; `docker://` works
/// for every subcommand; lists are tables with a header, `-q` gives ids; a unique prefix
/// names a job, an ambiguous one is an error naming the jobs.
#[tokio::test]
async fn output_and_references_as_crane_and_skopeo_users_expect() {
    let world = World::start().await;
    let pushed = world.push(&SMALL, "cli/small:1", Format::Oci);
    let cli = Cli::new(&world.hoist.base_url(), Via::Flag);
    let image = world.image("cli/small:1");
    let skopeo_style = format!("docker://{image}");

    let digest = cli.ok(&["digest", &skopeo_style]);
    assert_eq!(
        digest.stdout,
        format!("{}\n", pushed.digest),
        "the digest alone"
    );
    let whole = cli.ok(&["digest", &image, "-o", "json"]).json();
    assert_eq!(whole["digest"], pushed.digest.as_str(), "{whole}");
    assert!(whole["media_type"].is_string(), "{whole}");
    let inspect = cli
        .ok(&["--output", "json", "inspect", &skopeo_style])
        .json();
    assert_eq!(inspect["digest"], pushed.digest.as_str(), "{inspect}");
    let text = cli.ok(&["inspect", &image]).stdout;
    let header = text
        .lines()
        .find(|l| l.starts_with("LAYER"))
        .unwrap_or_else(|| panic!("no layer table:\n{text}"));
    assert!(header.contains("SIZE"), "{text}");
    let layer = pushed.layer_digests()[0].clone();
    assert!(
        text.lines()
            .any(|l| l.starts_with(&layer) && l.contains("application/vnd.oci.image.layer")),
        "no row for {layer} with its media type:\n{text}"
    );

    let pulled = cli
        .ok(&["pull", &skopeo_style, "skopeo-style", "-o", "json"])
        .json();
    assert_eq!(pulled["status"], "succeeded", "{pulled}");
    assert_same_tree(&SMALL_REF.rootfs, &world.root().join("skopeo-style"));
    let text = cli.ok(&["pull", &image, "text"]).stdout;
    assert!(
        text.starts_with("pulled ") && text.contains(&pushed.digest),
        "{text}"
    );

    // jobs that fail at once, enough for two ids to share a first character
    let missing = world.image("cli/missing:1");
    for i in 0..16 {
        let job = world
            .submit_pull(json!({"image": missing, "dest": format!("m{i}")}))
            .await;
        world.wait_job(job.id()).await;
    }
    let ids = cli.ok(&["jobs", "-q"]).stdout;
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 18, "ids only: {ids:?}");
    let table = cli.ok(&["jobs"]);
    let lines = table.lines();
    assert_eq!(
        lines.len(),
        19,
        "a header and a row per job:\n{}",
        table.stdout
    );
    for word in ["ID", "KIND", "STATUS", "CREATED", "IMAGE"] {
        assert!(lines[0].contains(word), "header {:?}", lines[0]);
    }
    let listed = cli.ok(&["jobs", "-o", "json"]).json();
    assert_eq!(common::jobs_of(&listed).len(), 18, "{listed}");

    let first = ids[0];
    let unique = (4..first.len())
        .map(|n| &first[..n])
        .find(|p| ids.iter().filter(|i| i.starts_with(p)).count() == 1)
        .expect("a unique prefix");
    let shown = cli.ok(&["job", unique, "-o", "json"]).json();
    assert_eq!(shown["id"], first, "{shown}");
    let text = cli.ok(&["job", unique]).stdout;
    assert!(text.contains(first) && text.contains("status:"), "{text}");
    let shared = ids
        .iter()
        .flat_map(|a| ids.iter().map(move |b| (*a, *b)))
        .find(|(a, b)| a != b && a[..1] == b[..1])
        .expect("two of 18 ids share a first character");
    let ran = cli.run(&["job", &shared.0[..1]]).fails();
    assert!(
        ran.error().contains("ambiguous")
            && ran.error().contains(shared.0)
            && ran.error().contains(shared.1),
        "{}",
        ran.stderr
    );
    let ran = cli.run(&["job", "ffffffff-0000"]).fails();
    assert!(ran.error().contains("ffffffff-0000"), "{}", ran.stderr);
}

/// `hoist serve --token X` once ran without auth (the client's `--token` swallowed the
/// value): it is a usage error (status 2) naming `--api-token`, and no daemon starts.
#[test]
fn serve_refuses_the_clients_token_flag() {
    let dir = tempdir();
    for args in [
        vec!["serve", "--token", "secret"],
        vec!["--token", "secret", "serve"],
        vec!["serve", "--daemon", "http://127.0.0.1:1"],
        vec!["serve", "-o", "json"],
    ] {
        let mut cmd = hoist();
        cmd.env("HOIST_LISTEN", format!("127.0.0.1:{}", tools::free_port()))
            .env("HOIST_DATA_DIR", dir.path().join("data"))
            .env("HOIST_ROOTS", dir.path().join("roots"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("hoist {args:?} ran as a daemon instead of refusing the flag");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(2), "hoist {args:?}: {err}");
        assert!(err.contains("client flag"), "hoist {args:?}: {err}");
        if args.contains(&"--token") {
            assert!(err.contains("--api-token"), "{err}");
        }
    }
    assert!(
        !dir.path().join("data/hoist.db").exists(),
        "a daemon started"
    );
}

/// The CLI's stderr, line by line with the time each arrived.
fn stderr_lines(child: &mut std::process::Child) -> mpsc::Receiver<(Instant, String)> {
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// The id of the one job of the world, once it is running.
async fn running_job(world: &World) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, list) = world.get_json("/jobs").await;
        if let Some(job) = common::jobs_of(&list).first() {
            let id = job["id"].as_str().unwrap().to_owned();
            if job["status"] == "running" {
                return id;
            }
        }
        assert!(Instant::now() < deadline, "no running job: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Without a terminal, a slow pull says how it is doing at least every 10 s (phase,
/// bytes, rate, the layer at work), then SIGINT cancels it (and SIGTERM another one):
/// `cancelled job ID`, a non-zero status, the job `cancelled`, no dest.
#[tokio::test]
async fn without_a_terminal_progress_comes_every_few_seconds_and_signals_cancel() {
    let world = World::builder().proxy().start().await;
    world.push(&BIG, "cli/big:1", Format::Oci);
    // ~1 MB at 40 kB/s: some 25 s of one layer downloading, with no change of state
    world.proxy().add_rule(Rule::slow_gets("/blobs/", 40_000));
    let cli = Cli::new(&world.hoist.base_url(), Via::Flag);
    let mut cmd = cli.command(&["pull", &world.image("cli/big:1"), "big"]);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let id = running_job(&world).await;

    let mut seen: Vec<(Instant, String)> = Vec::new();
    let watch_from = Instant::now();
    while watch_from.elapsed() < Duration::from_secs(12) {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            seen.push(line);
        }
    }
    let mut last = watch_from;
    for (at, line) in &seen {
        assert!(
            at.duration_since(last) <= Duration::from_secs(10),
            "silent for {:?} before {line:?}; all: {seen:#?}",
            at.duration_since(last)
        );
        last = *at;
    }
    assert!(
        Instant::now().duration_since(last) <= Duration::from_secs(10),
        "silent for the last {:?}: {seen:#?}",
        Instant::now().duration_since(last)
    );
    let status = seen
        .iter()
        .map(|(_, l)| l)
        // The layer is applied while it downloads: either word is its state.
        .find(|l| {
            l.contains("B/s")
                && l.contains("layer 2/2")
                && (l.contains("downloading") || l.contains("extracting"))
        })
        .unwrap_or_else(|| panic!("no status line with bytes, rate and layer: {seen:#?}"));
    assert!(status.starts_with(&format!("job {id}: ")), "{status}");

    signal_cancels(
        &world,
        child,
        lines,
        &id,
        rustix::process::Signal::INT,
        "big",
    )
    .await;

    // SIGTERM (a CI system stopping the step) does the same
    let mut cmd = cli.command(&["pull", &world.image("cli/big:1"), "big-term"]);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let term_id = loop {
        let newest = running_job(&world).await;
        if newest != id {
            break newest;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let signal = rustix::process::Signal::TERM;
    signal_cancels(&world, child, lines, &term_id, signal, "big-term").await;
}

/// Sends `signal` to the CLI following job `id` into `dest`: it exits 1 saying
/// `cancelled job ID`, the job is `cancelled`, `dest` absent.
async fn signal_cancels(
    world: &World,
    mut child: std::process::Child,
    lines: mpsc::Receiver<(Instant, String)>,
    id: &str,
    signal: rustix::process::Signal,
    dest: &str,
) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the CLI did not end after {signal:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(100));
    let rest: Vec<String> = lines.try_iter().map(|(_, l)| l).collect();
    assert_eq!(exit.code(), Some(1), "{signal:?}: {rest:#?}");
    assert!(
        rest.iter()
            .any(|l| l == &format!("hoist: cancelled job {id}")),
        "{signal:?}: {rest:#?}"
    );
    let job = world.job(id).await;
    assert_eq!(job.status(), "cancelled", "{signal:?}: {job:?}");
    assert!(
        !world.root().join(dest).exists(),
        "{signal:?}: {dest} exists"
    );
}

/// On a terminal, Ctrl-C (through tmux, so the terminal sends SIGINT) cancels the pull.
#[tokio::test]
async fn ctrl_c_on_a_terminal_cancels_the_pull() {
    let world = World::builder().proxy().start().await;
    world.push(&BIG, "cli/big:1", Format::Oci);
    world.proxy().add_rule(Rule::slow_gets("/blobs/", 40_000));
    let tmux = Tmux::start(world.dir());
    let script = format!(
        "{} --daemon {} pull {} big; echo EXIT=$?; sleep 120",
        quote(env!("CARGO_BIN_EXE_hoist")),
        quote(&world.hoist.base_url()),
        quote(&world.image("cli/big:1"))
    );
    tmux.session("pull", &script);
    let id = running_job(&world).await;
    tmux.watch(
        "pull",
        |s| s.contains("downloading") || s.contains("extracting"),
        |_| {},
    );
    let mut keys = tmux.command();
    keys.args(["send-keys", "-t", "pull", "C-c"]);
    tools::run(&mut keys);
    let screen = tmux.watch("pull", |s| s.contains("EXIT="), |_| {});
    assert!(screen.contains("EXIT=1"), "{screen}");
    assert!(
        screen.contains(&format!("hoist: cancelled job {id}")),
        "{screen}"
    );
    assert_eq!(world.job(&id).await.status(), "cancelled");
    assert!(!world.root().join("big").exists());
}

/// `scripts/install --systemd` (staged with `DESTDIR`, from the binary under test) puts
/// `hoist` in PREFIX/bin, the units with ExecStart= naming it and DOCKER_CONFIG set (a
/// system service has no $HOME), a private /etc/hoist/env and /etc/hoist/docker; a
/// second run keeps the settings a user wrote.
#[test]
fn install_script_puts_hoist_on_path_with_units_and_settings() {
    let dest = tempdir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install");
    let install = || {
        let mut cmd = Command::new(&script);
        cmd.env("DESTDIR", dest.path())
            .args(["--systemd", "--prefix", "/opt/hoist", "--bin"])
            .arg(env!("CARGO_BIN_EXE_hoist"));
        tools::run(&mut cmd);
    };
    install();
    let bin = dest.path().join("opt/hoist/bin/hoist");
    let mut version = Command::new(&bin);
    version.arg("--version");
    assert!(tools::run_stdout(&mut version).starts_with("hoist "));
    let units = dest.path().join("etc/systemd/system");
    let service = std::fs::read_to_string(units.join("hoist.service")).unwrap();
    assert!(
        service
            .lines()
            .any(|l| l == "ExecStart=/opt/hoist/bin/hoist serve"),
        "{service}"
    );
    let docker_config = service
        .lines()
        .find_map(|l| l.strip_prefix("Environment=DOCKER_CONFIG="))
        .unwrap_or_else(|| panic!("the unit does not set DOCKER_CONFIG:\n{service}"));
    assert_eq!(docker_config, "/etc/hoist/docker");
    assert!(units.join("hoist.socket").is_file());
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    let env = dest.path().join("etc/hoist/env");
    assert_eq!(mode(&env), 0o600, "settings may hold HOIST_API_TOKEN");
    assert_eq!(mode(&dest.path().join("etc/hoist/docker")), 0o700);
    std::fs::write(&env, "HOIST_WORKERS=2\n").unwrap();
    install();
    assert_eq!(std::fs::read_to_string(&env).unwrap(), "HOIST_WORKERS=2\n");
}
