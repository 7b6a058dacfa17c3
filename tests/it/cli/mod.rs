//! The `hoist` command-line client, run as a user runs it, against a running daemon:
//! every subcommand over TCP and over a Unix socket (`--daemon` and `HOIST_URL`), exit
//! status and the problem's `detail` on stderr when something fails, the API token,
//! registry credentials (`--creds`, `--creds-file` with a GCR-style JSON key) that reach
//! the registry and nowhere else, and progress: plain lines in CI logs, bars on a
//! terminal (a real one, under tmux).

mod creds;
mod habits;
mod progress;

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::image::Unpacked;
use common::service::{Activation, Endpoint, Service, ServiceSpec, require};
use common::{
    Format, Image, Registry, RegistryAuth, Rule, World, assert_same_tree, fixtures, tools,
};
use serde_json::{Value, json};

static SMALL: LazyLock<Image> = LazyLock::new(|| fixtures::small("cli"));
static SMALL_REF: LazyLock<Unpacked> = LazyLock::new(|| SMALL.unpack_reference());
/// Two layers, the second about 1 MB: seconds through a throttled proxy.
static BIG: LazyLock<Image> = LazyLock::new(|| fixtures::big(1_000_000, 5));
const PASSWORD: &str = "cli-test-password-Xy7!";
const TOKEN: &str = "cli-api-token-91c3";
/// How long one CLI run may take.
const RUN_DEADLINE: Duration = Duration::from_secs(180);

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hoist-cli-")
        .tempdir()
        .expect("temp dir")
}

/// What one run of the CLI did.
struct Ran {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Panics unless the run succeeded; returns it.
    fn ok(self) -> Ran {
        assert!(
            self.status.success(),
            "{} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the run failed with a message on stderr; returns it.
    fn fails(self) -> Ran {
        assert!(
            !self.status.success(),
            "{} succeeded, but should have failed\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.starts_with("hoist: ") || self.stderr.contains("\nhoist: "),
            "{}: no `hoist: …` error on stderr: {:?}",
            self.what,
            self.stderr
        );
        self
    }

    /// stdout as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.what, self.stdout, self.stderr
            )
        })
    }

    fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The last `hoist: …` line of stderr.
    fn error(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("hoist: "))
            .unwrap_or("")
    }
}

/// A `hoist` command with nothing of the host's settings (`HOIST_URL`, `HOIST_API_TOKEN`,
/// `CI`) unless a test sets them.
fn hoist() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
    for var in ["HOIST_URL", "HOIST_API_TOKEN", "CI", "HOIST_LISTEN"] {
        cmd.env_remove(var);
    }
    tools::scrub_env(&mut cmd);
    cmd
}

/// Runs `cmd` to its end (killed after [`RUN_DEADLINE`]).
fn run(mut cmd: Command) -> Ran {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        what,
        status,
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

/// How the CLI is told where the daemon is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Flag,
    Env,
}

/// The CLI pointed at one daemon.
#[derive(Clone)]
struct Cli {
    daemon: String,
    via: Via,
    token: Option<String>,
    env: Vec<(String, String)>,
}

impl Cli {
    fn new(daemon: &str, via: Via) -> Cli {
        Cli {
            daemon: daemon.to_owned(),
            via,
            token: None,
            env: Vec::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = hoist();
        match self.via {
            Via::Flag => {
                cmd.arg("--daemon").arg(&self.daemon);
            }
            Via::Env => {
                cmd.env("HOIST_URL", &self.daemon);
            }
        }
        if let Some(t) = &self.token {
            cmd.arg("--token").arg(t);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Ran {
        run(self.command(args))
    }

    fn ok(&self, args: &[&str]) -> Ran {
        self.run(args).ok()
    }
}

/// Every subcommand once, against a daemon whose first root is `root` and which reaches
/// the registry at `host` (where SMALL is `cli/small:1`).
fn exercise_every_subcommand(cli: &Cli, host: &str, root: &Path) {
    let image = format!("{host}/cli/small:1");
    let digest = cli.ok(&["digest", &image, "-o", "json"]).json();
    assert_eq!(
        digest["image"].as_str().map(|s| s.contains("cli/small")),
        Some(true),
        "{digest}"
    );
    let manifest_digest = digest["digest"].as_str().expect("digest").to_owned();
    assert!(manifest_digest.starts_with("sha256:"), "{digest}");

    let inspect = cli.ok(&["inspect", &image, "-o", "json"]).json();
    assert_eq!(inspect["digest"], manifest_digest.as_str(), "{inspect}");
    assert_eq!(
        inspect["layers"].as_array().map(Vec::len),
        Some(1),
        "{inspect}"
    );

    // pull and follow: the job on stdout, the tree in place
    let pulled = cli.ok(&["pull", &image, "one", "-o", "json"]);
    let result = pulled.json()["result"].clone();
    assert_eq!(
        result["dest"],
        root.join("one").display().to_string(),
        "{result}"
    );
    assert_eq!(result["digest"], manifest_digest.as_str(), "{result}");
    assert_same_tree(&SMALL_REF.rootfs, &root.join("one"));

    // detach, then follow by id
    let detached = cli.ok(&["pull", &image, "two", "--detach"]);
    let id = detached.stdout.trim().to_owned();
    assert_eq!(
        detached.lines(),
        vec![id.as_str()],
        "--detach prints the job id only"
    );
    let followed = cli.ok(&["job", &id, "--follow", "-o", "json"]).json();
    assert_eq!(followed["id"], id.as_str(), "{followed}");
    assert_eq!(followed["status"], "succeeded", "{followed}");
    assert_same_tree(&SMALL_REF.rootfs, &root.join("two"));
    let shown = cli.ok(&["job", &id, "-o", "json"]).json();
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["status"], "succeeded");
    assert_eq!(shown["request"]["image"], image.as_str());

    // the platform this machine has, picked explicitly
    let platform = format!("linux/{}", common::upload::host_arch());
    cli.ok(&["pull", &image, "three", "--platform", &platform]);
    assert_same_tree(&SMALL_REF.rootfs, &root.join("three"));

    let jobs = cli.ok(&["jobs"]);
    let lines = &jobs.lines()[1..];
    assert!(
        jobs.lines()[0].starts_with("ID "),
        "a header:\n{}",
        jobs.stdout
    );
    assert_eq!(lines.len(), 3, "three jobs:\n{}", jobs.stdout);
    assert!(lines[1].starts_with(&id), "newest first:\n{}", jobs.stdout);
    for line in lines {
        for word in ["pull", "succeeded", image.as_str()] {
            assert!(
                line.contains(word),
                "`hoist jobs` line without {word}: {line}"
            );
        }
    }
    assert_eq!(cli.ok(&["jobs", "--limit", "1", "-q"]).lines().len(), 1);
    assert_eq!(
        cli.ok(&["jobs", "--status", "failed", "-q"]).lines().len(),
        0
    );
    assert_eq!(cli.ok(&["jobs", "--kind", "build", "-q"]).lines().len(), 0);

    // build a folder into an image, push it, and ask for its digest
    let src = root.join("app");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "built by the cli test\n").unwrap();
    let target = format!("{host}/cli/built:1");
    let built = cli
        .ok(&[
            "build",
            "app",
            &target,
            "--entrypoint",
            "/hello",
            "--env",
            "K=V",
            "-o",
            "json",
        ])
        .json();
    let built_digest = built["result"]["digest"]
        .as_str()
        .expect("build digest")
        .to_owned();
    assert_eq!(
        cli.ok(&["digest", &target]).stdout,
        format!("{built_digest}\n")
    );
    let config = cli.ok(&["inspect", &target, "-o", "json"]).json();
    assert!(
        config.to_string().contains("K=V") && config.to_string().contains("/hello"),
        "the build's config: {config}"
    );
    assert_eq!(cli.ok(&["jobs", "--kind", "build", "-q"]).lines().len(), 1);

    // the cache, purged; a --no-cache pull (with --force and another layout) keeps it empty
    let cache = cli.ok(&["cache", "-o", "json"]).json();
    assert!(cache["blobs"].as_u64().is_some_and(|n| n > 0), "{cache}");
    let purged = cli.ok(&["cache", "purge", "-o", "json"]).json();
    assert!(
        purged["removed_blobs"].as_u64().is_some_and(|n| n > 0),
        "{purged}"
    );
    assert_eq!(cli.ok(&["cache", "-o", "json"]).json()["blobs"], 0);
    cli.ok(&[
        "pull",
        &image,
        "one",
        "--force",
        "--layout",
        "oci",
        "--no-cache",
    ]);
    assert!(root.join("one/oci-layout").is_file(), "--layout oci");
    assert!(root.join("one/index.json").is_file(), "--layout oci");
    assert_eq!(
        cli.ok(&["-o", "json", "cache"]).json()["blobs"],
        0,
        "--no-cache"
    );
}

#[tokio::test]
async fn every_subcommand_works_over_tcp() {
    let world = World::start().await;
    world.push(&SMALL, "cli/small:1", Format::Oci);
    let cli = Cli::new(&world.hoist.base_url(), Via::Flag);
    exercise_every_subcommand(&cli, &world.image_host(), world.root());
    // HOIST_URL, with or without the scheme
    let by_env = Cli::new(&world.hoist.base_url(), Via::Env);
    assert_eq!(by_env.ok(&["jobs", "-q"]).lines().len(), 5);
    let bare = Cli::new(&world.hoist.addr.to_string(), Via::Env);
    assert_eq!(bare.ok(&["jobs", "--kind", "build", "-q"]).lines().len(), 1);
}

#[tokio::test]
async fn every_subcommand_works_over_a_unix_socket() {
    let dir = tempdir();
    let registry = Registry::start(&dir.path().join("registry"), RegistryAuth::Open);
    SMALL.push(&registry, "cli/small:1", Format::Oci);
    let svc = Service::start(
        &dir.path().join("hoist"),
        ServiceSpec::new(
            Endpoint::Unix(dir.path().join("hoist.sock")),
            Activation::Direct,
        ),
    );
    let cli = Cli::new(&svc.endpoint.daemon_arg(), Via::Env);
    exercise_every_subcommand(&cli, &registry.host(), &svc.roots[0]);
    let by_flag = Cli::new(&svc.endpoint.daemon_arg(), Via::Flag);
    assert_eq!(by_flag.ok(&["jobs", "-q"]).lines().len(), 5);
}

/// A running pull cancelled by `hoist job ID --cancel`; cancelling it again is a 409 whose
/// detail is on stderr; following a cancelled job exits non-zero.
#[tokio::test]
async fn job_cancel_stops_a_running_pull() {
    let world = World::builder().proxy().start().await;
    world.push(&BIG, "cli/big:1", Format::Oci);
    world.proxy().add_rule(Rule::slow_gets("/blobs/", 100_000));
    let cli = Cli::new(&world.hoist.base_url(), Via::Flag);
    let id = cli
        .ok(&["pull", &world.image("cli/big:1"), "big", "--detach"])
        .stdout
        .trim()
        .to_owned();
    world
        .wait_until(&id, Duration::from_secs(30), |j| j.status() == "running")
        .await;
    let cancelled = cli.ok(&["job", &id, "--cancel", "-o", "json"]).json();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(!world.root().join("big").exists());

    let again = cli.run(&["job", &id, "--cancel"]).fails();
    let (status, problem) = world
        .api(reqwest::Method::DELETE, &format!("/jobs/{id}"), None)
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        again.error().contains(problem["detail"].as_str().unwrap()),
        "stderr {:?} lacks the problem's detail {}",
        again.stderr,
        problem["detail"]
    );
    let followed = cli.run(&["job", &id, "--follow"]).fails();
    assert!(
        followed.error().contains("cancelled"),
        "{}",
        followed.stderr
    );
}

/// Every failure: a non-zero exit status and, for a refused request, the problem's
/// `detail` (as the API gives it for the same request) on stderr.
#[tokio::test]
async fn failures_exit_non_zero_with_the_problem_detail_on_stderr() {
    let world = World::start().await;
    world.push(&SMALL, "cli/small:1", Format::Oci);
    let cli = Cli::new(&world.hoist.base_url(), Via::Flag);
    let image = world.image("cli/small:1");
    let outside = world.outside().join("x").display().to_string();

    // refused pulls: the same body through the API gives the detail to expect
    for (dest, image, status) in [
        (outside.as_str(), image.as_str(), 403),
        ("../escape", image.as_str(), 400),
        ("bad-ref", "Not A Reference!", 400),
    ] {
        let ran = cli.run(&["pull", image, dest]).fails();
        let body = json!({"image": image, "dest": dest, "force": false, "layout": "rootfs"});
        let resp = world.post_pull(&body).await;
        let problem = common::expect_problem(resp, status, None).await;
        let detail = problem["detail"].as_str().unwrap();
        assert_eq!(
            ran.error(),
            format!("hoist: {detail}"),
            "pull {image} {dest}: stderr {:?}",
            ran.stderr
        );
        assert!(ran.stdout.is_empty(), "{}", ran.stdout);
    }
    // a dest that exists: 409 dest_exists
    std::fs::create_dir_all(world.root().join("taken")).unwrap();
    let ran = cli.run(&["pull", &image, "taken"]).fails();
    assert!(ran.error().contains("taken"), "{}", ran.stderr);
    assert!(ran.error().contains("force"), "the hint: {}", ran.stderr);

    // GETs that the daemon refuses
    for (args, path, status) in [
        (
            vec!["job", "no-such-job"],
            "/jobs/no-such-job".to_owned(),
            404,
        ),
        (
            vec!["jobs", "--status", "bogus"],
            "/jobs?status=bogus".to_owned(),
            400,
        ),
        (
            vec!["digest", "NOT A REF"],
            "/digest?image=NOT%20A%20REF".to_owned(),
            400,
        ),
    ] {
        let ran = cli.run(&args).fails();
        let (got, problem) = world.get_json(&path).await;
        assert_eq!(got, status, "{path}: {problem}");
        assert_eq!(
            ran.error(),
            format!("hoist: {}", problem["detail"].as_str().unwrap()),
            "{args:?}"
        );
    }
    // what the registry lacks
    let missing = world.image("cli/missing:1");
    let ran = cli.run(&["digest", &missing]).fails();
    let (got, problem) = world
        .get_json(&format!("/digest?image={}", encode(&missing)))
        .await;
    assert_eq!(got, 404, "{problem}");
    assert_eq!(
        ran.error(),
        format!("hoist: {}", problem["detail"].as_str().unwrap())
    );
    // a job that fails: non-zero, with the job's error code and message
    let ran = cli.run(&["pull", &missing, "never"]).fails();
    assert!(
        ran.error().contains("failed") && ran.error().contains("manifest_unknown"),
        "{}",
        ran.stderr
    );
    assert!(!world.root().join("never").exists());
    // a build whose source is not a folder
    let ran = cli
        .run(&["build", "no-such-source", &world.image("cli/b:1")])
        .fails();
    assert!(ran.error().contains("no-such-source"), "{}", ran.stderr);
    // no daemon there
    let nowhere = Cli::new(
        &format!("http://127.0.0.1:{}", tools::free_port()),
        Via::Flag,
    );
    let ran = nowhere.run(&["jobs"]).fails();
    assert!(
        ran.error().contains("cannot reach the daemon"),
        "{}",
        ran.stderr
    );
    let ran = Cli::new("unix:/nonexistent/hoist.sock", Via::Env)
        .run(&["jobs"])
        .fails();
    assert!(
        ran.error().contains("/nonexistent/hoist.sock"),
        "{}",
        ran.stderr
    );
    // wrong usage: clap's status 2
    let ran = cli.run(&["cache", "bogus"]);
    assert_eq!(ran.status.code(), Some(2), "{}", ran.stderr);
    let ran = cli
        .run(&["pull", &image, "x", "--creds", "no-colon"])
        .fails();
    assert!(ran.error().contains("USER:PASSWORD"), "{}", ran.stderr);
    assert!(!world.root().join("x").exists());
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
