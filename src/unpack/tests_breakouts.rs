//! Hostile layers, one row each (in the spirit of containerd's `TestBreakouts`): every
//! row names an attack, the layers that carry it, and whether applying them must fail or
//! merely stay inside the root. Whatever the outcome, nothing outside the root may change:
//! each row runs in a temp dir holding `root/` and an `outside/` folder with a canary
//! file, and everything but `root/` is compared before and after. A new CVE is a new row.

use crate::error::ErrorCode;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::test_tar::{E, apply_all, layer};

enum Outcome {
    /// Applying fails (and still changes nothing outside).
    Fails,
    /// Applying fails with `invalid_layer` (the layer is refused as such, not because
    /// some syscall choked on it), with a message of at most [`MESSAGE_MAX`] bytes.
    Invalid,
    /// Applying succeeds; the check sees where things landed inside the root.
    Contained(fn(&Path, &Path)),
}

struct Row {
    name: &'static str,
    /// Layers, built from the absolute path of `outside/`.
    layers: fn(&str) -> Vec<Vec<E>>,
    outcome: Outcome,
}

fn landed(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    let got = fs::read(&path).unwrap_or_else(|e| panic!("{} missing: {e}", path.display()));
    assert_eq!(got, content.as_bytes(), "{}", path.display());
}

/// The longest message a refused row may give: hostile names are quoted cut.
const MESSAGE_MAX: usize = 1024;

/// Over the budget of one entry's headers (see `bounded`).
const TOO_BIG: usize = 2 << 20;

/// `n` components of 255 bytes: a long name every filesystem takes.
fn deep_name(n: usize) -> String {
    vec!["n".repeat(255); n].join("/")
}

/// `outside` below the root, as an absolute path resolved inside the root would land.
fn inside(root: &Path, outside: &Path) -> PathBuf {
    root.join(outside.strip_prefix("/").unwrap())
}

/// A name over 100 bytes that, if `..` were honoured, would climb exactly one level
/// above the root (into the temp dir, where a breakout shows).
fn long_escape() -> String {
    format!("{}{}outside/canary", "x/".repeat(60), "../".repeat(61))
}

const ROWS: &[Row] = &[
    Row {
        name: "dot_dot_name",
        layers: |_| vec![vec![E::file("../outside/canary", "pwned")]],
        outcome: Outcome::Contained(|root, _| landed(root, "outside/canary", "pwned")),
    },
    Row {
        name: "many_dot_dots",
        layers: |_| {
            vec![vec![E::file(
                "a/../../../../../../../../outside/x",
                "pwned",
            )]]
        },
        outcome: Outcome::Contained(|root, _| landed(root, "outside/x", "pwned")),
    },
    Row {
        name: "absolute_name",
        layers: |out| vec![vec![E::file(format!("{out}/canary"), "pwned")]],
        outcome: Outcome::Contained(|root, out| {
            landed(&inside(root, out), "canary", "pwned");
        }),
    },
    Row {
        name: "symlink_to_slash_then_file_through_it",
        layers: |out| {
            vec![vec![
                E::symlink("rootlink", "/"),
                E::file(format!("rootlink{out}/canary"), "pwned"),
            ]]
        },
        outcome: Outcome::Contained(|root, out| landed(&inside(root, out), "canary", "pwned")),
    },
    Row {
        name: "symlink_up_and_out_then_write_through",
        layers: |_| {
            vec![vec![
                E::symlink("up", ".."),
                E::file("up/outside/canary", "pwned"),
            ]]
        },
        outcome: Outcome::Contained(|root, _| landed(root, "outside/canary", "pwned")),
    },
    Row {
        name: "absolute_symlink_to_outside_then_write_through",
        layers: |out| vec![vec![E::symlink("out", out), E::file("out/canary", "pwned")]],
        outcome: Outcome::Contained(|root, out| landed(&inside(root, out), "canary", "pwned")),
    },
    Row {
        name: "relative_symlink_chain",
        layers: |_| {
            vec![vec![
                E::dir("c"),
                E::symlink("a", "b"),
                E::symlink("b", "c/../.."),
                E::file("a/outside/canary", "pwned"),
            ]]
        },
        outcome: Outcome::Contained(|root, _| landed(root, "outside/canary", "pwned")),
    },
    Row {
        name: "symlink_planted_in_layer_one_exploited_in_layer_two",
        layers: |out| {
            vec![
                vec![E::symlink("etc", out)],
                vec![E::file("etc/canary", "pwned")],
            ]
        },
        outcome: Outcome::Contained(|root, out| {
            assert!(fs::symlink_metadata(root.join("etc")).unwrap().is_symlink());
            landed(&inside(root, out), "canary", "pwned");
        }),
    },
    Row {
        name: "hardlink_to_outside_file_by_absolute_name",
        layers: |out| vec![vec![E::hardlink("pw", format!("{out}/canary"))]],
        outcome: Outcome::Fails,
    },
    Row {
        name: "hardlink_to_outside_file_by_dot_dot",
        layers: |_| vec![vec![E::hardlink("pw", "../outside/canary")]],
        outcome: Outcome::Fails,
    },
    Row {
        name: "hardlink_through_symlinked_dir",
        layers: |out| vec![vec![E::symlink("od", out), E::hardlink("pw", "od/canary")]],
        outcome: Outcome::Fails,
    },
    Row {
        name: "hardlink_to_symlink_then_file_over_it",
        layers: |out| {
            vec![vec![
                E::symlink("s", format!("{out}/canary")),
                E::hardlink("h", "s"),
                E::file("h", "pwned").mode(0o777),
            ]]
        },
        outcome: Outcome::Contained(|root, _| {
            landed(root, "h", "pwned");
            assert!(fs::symlink_metadata(root.join("s")).unwrap().is_symlink());
        }),
    },
    Row {
        name: "file_over_symlink_to_outside_file",
        layers: |out| {
            vec![
                vec![E::symlink("f", format!("{out}/canary"))],
                vec![E::file("f", "pwned").mode(0o777)],
            ]
        },
        outcome: Outcome::Contained(|root, _| landed(root, "f", "pwned")),
    },
    Row {
        name: "directory_over_symlink_to_outside_dir",
        layers: |out| {
            vec![vec![
                E::symlink("d", out),
                E::dir("d").mode(0o777).owner(1, 1),
            ]]
        },
        outcome: Outcome::Contained(|root, _| {
            assert!(fs::symlink_metadata(root.join("d")).unwrap().is_dir());
        }),
    },
    Row {
        name: "fifo_through_symlinked_dir",
        layers: |out| vec![vec![E::symlink("od", out), E::fifo("od/fifo")]],
        outcome: Outcome::Contained(|root, out| {
            assert!(fs::symlink_metadata(inside(root, out).join("fifo")).is_ok());
        }),
    },
    Row {
        name: "whiteout_of_dot_dot_name",
        layers: |_| vec![vec![E::file("../outside/.wh.canary", "")]],
        outcome: Outcome::Contained(|_, _| {}),
    },
    Row {
        name: "whiteout_through_symlink_to_outside",
        layers: |out| {
            vec![
                vec![E::symlink("od", out)],
                vec![E::file("od/.wh.canary", "")],
            ]
        },
        outcome: Outcome::Contained(|_, _| {}),
    },
    Row {
        name: "opaque_whiteout_through_symlink_to_outside",
        layers: |out| {
            vec![
                vec![E::symlink("od", out)],
                vec![E::file("od/.wh..wh..opq", "")],
            ]
        },
        outcome: Outcome::Contained(|_, _| {}),
    },
    Row {
        name: "whiteout_naming_the_parent",
        layers: |_| vec![vec![E::file("a/b", "b"), E::file("a/.wh..", "")]],
        outcome: Outcome::Fails,
    },
    Row {
        name: "root_replaced_by_symlink",
        layers: |_| vec![vec![E::symlink(".", "/")]],
        outcome: Outcome::Fails,
    },
    Row {
        name: "symlink_loop_as_parent",
        layers: |_| {
            vec![vec![
                E::symlink("l1", "l2"),
                E::symlink("l2", "l1"),
                E::file("l1/x", "pwned"),
            ]]
        },
        outcome: Outcome::Fails,
    },
    Row {
        name: "long_pax_name_with_dot_dots",
        layers: |_| vec![vec![E::file(long_escape(), "pwned")]],
        outcome: Outcome::Contained(|root, _| landed(root, "outside/canary", "pwned")),
    },
    Row {
        name: "long_gnu_name_with_dot_dots",
        layers: |_| vec![vec![E::file(long_escape(), "pwned").gnu()]],
        outcome: Outcome::Contained(|root, _| landed(root, "outside/canary", "pwned")),
    },
    Row {
        name: "hardlink_to_the_root",
        layers: |_| vec![vec![E::hardlink("r", ".")]],
        outcome: Outcome::Fails,
    },
    Row {
        name: "huge_gnu_long_name",
        layers: |_| vec![vec![E::file("a".repeat(TOO_BIG), "x").gnu()]],
        outcome: Outcome::Invalid,
    },
    Row {
        name: "huge_gnu_long_link",
        layers: |_| vec![vec![E::symlink("s", "t".repeat(TOO_BIG)).gnu()]],
        outcome: Outcome::Invalid,
    },
    Row {
        name: "huge_pax_record",
        layers: |_| vec![vec![E::file("f", "x").pax("comment", "c".repeat(TOO_BIG))]],
        outcome: Outcome::Invalid,
    },
    Row {
        name: "huge_pax_global_header",
        layers: |_| {
            vec![vec![
                E::pax_global("comment", "c".repeat(TOO_BIG)),
                E::file("f", "x"),
            ]]
        },
        outcome: Outcome::Invalid,
    },
    Row {
        name: "pax_path_with_nul",
        layers: |_| {
            vec![vec![
                E::file("placeholder", "x").pax("path", "etc/pass\0wd"),
            ]]
        },
        outcome: Outcome::Invalid,
    },
    Row {
        name: "pax_linkpath_with_nul",
        layers: |out| {
            vec![vec![
                E::symlink("s", "placeholder").pax("linkpath", format!("{out}/canary\0x")),
            ]]
        },
        outcome: Outcome::Invalid,
    },
    Row {
        name: "pax_key_with_nul",
        layers: |_| vec![vec![E::file("f", "x").pax("SCHILY.xattr.user.a\0b", "v")]],
        outcome: Outcome::Invalid,
    },
    Row {
        name: "long_legal_pax_name",
        layers: |_| vec![vec![E::file(deep_name(12), "deep")]],
        outcome: Outcome::Contained(|root, _| landed(root, &deep_name(12), "deep")),
    },
    Row {
        name: "long_legal_gnu_name",
        layers: |_| vec![vec![E::file(deep_name(12), "deep").gnu()]],
        outcome: Outcome::Contained(|root, _| landed(root, &deep_name(12), "deep")),
    },
    Row {
        name: "pax_record_just_under_the_limit",
        layers: |_| {
            vec![vec![
                E::file("f", "x").pax("comment", "c".repeat(1000 * 1024)),
            ]]
        },
        outcome: Outcome::Contained(|root, _| landed(root, "f", "x")),
    },
];

/// Every path below `dir` except `dir/root`, with what could betray a write.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path == dir.join("root") {
                continue;
            }
            let m = fs::symlink_metadata(&path).unwrap();
            let mut what = format!(
                "{:?} {:o} {}:{} {} {}.{}",
                m.file_type(),
                m.permissions().mode(),
                m.uid(),
                m.gid(),
                m.nlink(),
                m.mtime(),
                m.mtime_nsec()
            );
            if m.is_file() {
                what += &format!(" {:?}", fs::read(&path).unwrap());
            } else if m.is_symlink() {
                what += &format!(" -> {:?}", fs::read_link(&path).unwrap());
            } else if m.is_dir() {
                todo.push(path.clone());
            }
            out.insert(path, what);
        }
    }
    out
}

#[tokio::test]
async fn hostile_layers_stay_inside_the_root() {
    let mut failures = Vec::new();
    for row in ROWS {
        if let Err(msg) = run(row).await {
            failures.push(format!("{}: {msg}", row.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn run(row: &Row) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("canary"), "canary").unwrap();
    let root = tmp.path().join("root");
    let before = snapshot(tmp.path());

    let layers: Vec<Vec<u8>> = (row.layers)(outside.to_str().unwrap())
        .iter()
        .map(|entries| layer(entries))
        .collect();
    let result = apply_all(&root, &layers).await;

    if snapshot(tmp.path()) != before {
        return Err("something outside the root changed".into());
    }
    match (&row.outcome, result) {
        (Outcome::Fails, Err(_)) => Ok(()),
        (Outcome::Fails | Outcome::Invalid, Ok(_)) => Err("expected an error".into()),
        (Outcome::Invalid, Err(e)) if e.code() != "invalid_layer" => {
            Err(format!("expected invalid_layer, got {}: {e}", e.code()))
        }
        (Outcome::Invalid, Err(e)) if e.to_string().len() > MESSAGE_MAX => Err(format!(
            "message of {} bytes: {:?}",
            e.to_string().len(),
            e.to_string().chars().take(300).collect::<String>()
        )),
        (Outcome::Invalid, Err(_)) => Ok(()),
        (Outcome::Contained(check), Ok(_)) => {
            let check = *check;
            let (root, outside) = (root.clone(), outside.clone());
            std::panic::catch_unwind(move || check(&root, &outside))
                .map_err(|p| format!("{:?}", p.downcast_ref::<String>()))
        }
        (Outcome::Contained(_), Err(e)) => Err(format!("unexpected error: {e}")),
    }
}
