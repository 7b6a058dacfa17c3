//! Progress: plain lines in CI, one bar per layer on a terminal (a real one, in tmux).

use super::*;

/// Progress in a CI log: `CI=true` and stderr not a terminal give plain lines (no escape
/// sequence, no carriage return), one per change, naming the job and the layers.
#[tokio::test]
async fn progress_in_ci_is_plain_lines() {
    let world = World::builder().proxy().start().await;
    let pushed = world.push(&BIG, "cli/big:1", Format::Oci);
    world
        .proxy()
        .add_rule(Rule::slow_gets("/blobs/", 1_000_000));
    for (ci, dest) in [(Some("true"), "ci"), (None, "piped")] {
        let mut cli = Cli::new(&world.hoist.base_url(), Via::Flag);
        if let Some(v) = ci {
            cli.env.push(("CI".into(), v.into()));
        }
        let ran = cli.ok(&["pull", &world.image("cli/big:1"), dest, "-o", "json"]);
        let err = &ran.stderr;
        assert!(
            !err.contains('\u{1b}'),
            "escape sequences in CI output:\n{err:?}"
        );
        assert!(
            !err.contains('\r'),
            "carriage returns in CI output:\n{err:?}"
        );
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            lines.iter().all(|l| l.starts_with("job ")),
            "every progress line names the job:\n{err}"
        );
        assert!(
            lines.last().is_some_and(|l| l.ends_with(": succeeded")),
            "the last line says how the job ended:\n{err}"
        );
        for layer in pushed.layer_digests() {
            assert!(
                lines.iter().any(|l| l.contains(&format!("layer {layer}"))),
                "no line about layer {layer}:\n{err}"
            );
        }
        assert!(
            lines.len() < 60,
            "one line per change, not per chunk: {} lines\n{err}",
            lines.len()
        );
        assert!(
            ran.json()["result"]["dest"].is_string(),
            "the job on stdout"
        );
    }
}

/// A private tmux server (its own socket), started without `CI` in its environment.
pub(super) struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    pub(super) fn start(dir: &Path) -> Tmux {
        require("tmux", "tmux");
        Tmux {
            socket: dir.join("tmux.sock"),
        }
    }

    pub(super) fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("-S")
            .arg(&self.socket);
        cmd
    }

    /// A detached 200×50 session running `script` in `sh`.
    pub(super) fn session(&self, name: &str, script: &str) {
        let mut cmd = self.command();
        cmd.args([
            "new-session",
            "-d",
            "-x",
            "200",
            "-y",
            "50",
            "-s",
            name,
            script,
        ]);
        tools::run(&mut cmd);
    }

    pub(super) fn capture(&self, name: &str) -> String {
        let mut cmd = self.command();
        cmd.args(["capture-pane", "-p", "-t", name]);
        tools::run_stdout(&mut cmd)
    }

    /// Captures until `done` holds for the screen, calling `each` on every capture.
    pub(super) fn watch(
        &self,
        name: &str,
        done: impl Fn(&str) -> bool,
        mut each: impl FnMut(&str),
    ) -> String {
        let deadline = Instant::now() + RUN_DEADLINE;
        loop {
            let screen = self.capture(name);
            each(&screen);
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the tmux pane did not finish:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let mut cmd = self.command();
        let _ = cmd
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A progress bar line of a layer: its digest's start, brackets with `=` inside.
fn bar_lines(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter(|l| {
            l.contains("sha256:")
                && l.contains('[')
                && l.contains(']')
                && l[l.find('[').unwrap()..].contains('=')
        })
        .collect()
}

pub(super) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// On a terminal: progress bars, one per layer, moving while the job runs and full at
/// the end; with `CI=true` on the same terminal, plain lines again.
#[tokio::test]
async fn progress_on_a_terminal_is_bars_per_layer() {
    let world = World::builder().proxy().start().await;
    let pushed = world.push(&BIG, "cli/big:1", Format::Oci);
    // ~1 MB at 200 kB/s: about five seconds of bars
    world.proxy().add_rule(Rule::slow_gets("/blobs/", 200_000));
    let tmux = Tmux::start(world.dir());
    let hoist = env!("CARGO_BIN_EXE_hoist");
    let script = |env: &str, dest: &str| {
        format!(
            "{env} {} --daemon {} pull {} {dest}; echo EXIT=$?; sleep 120",
            quote(hoist),
            quote(&world.hoist.base_url()),
            quote(&world.image("cli/big:1"))
        )
    };
    tmux.session("bars", &script("", "bars"));
    let mut moving = Vec::new();
    let screen = tmux.watch(
        "bars",
        |s| s.contains("EXIT="),
        |s| {
            let bars = bar_lines(s);
            // a bar that is not full yet: `>` at its head, or room left in it
            if bars.iter().any(|l| l.contains('>')) {
                moving.push(s.to_owned());
            }
        },
    );
    assert!(
        screen.contains("EXIT=0"),
        "the pull failed on the terminal:\n{screen}"
    );
    assert!(
        !moving.is_empty(),
        "no moving progress bar was ever on the terminal; at the end:\n{screen}"
    );
    let bars = bar_lines(&screen);
    assert_eq!(
        bars.len(),
        pushed.layer_digests().len(),
        "one bar per layer at the end:\n{screen}"
    );
    for layer in pushed.layer_digests() {
        let short = &layer[..19];
        assert!(
            bars.iter().any(|b| b.contains(short)),
            "no bar for layer {layer}:\n{screen}"
        );
    }
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("job ") && l.trim_end().ends_with(": succeeded")),
        "the end of the job is said:\n{screen}"
    );
    assert!(
        !screen.contains("layer sha256:"),
        "plain progress lines on a terminal:\n{screen}"
    );
    assert_same_tree(&BIG.unpack_reference().rootfs, &world.root().join("bars"));

    // CI=true wins over the terminal
    tmux.session("ci", &script("CI=true", "ci"));
    let screen = tmux.watch("ci", |s| s.contains("EXIT="), |_| {});
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        bar_lines(&screen).is_empty(),
        "bars under CI=true:\n{screen}"
    );
    assert!(
        screen.contains("layer sha256:"),
        "plain lines under CI=true:\n{screen}"
    );
}
