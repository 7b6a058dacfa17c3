use crate::error::ErrorCode;
use std::process::Command;

use super::*;

struct World {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    repo: PathBuf,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    World {
        repo: dir.path().join("repo.git"),
        tree,
        _dir: dir,
    }
}

fn digest(n: u8) -> Digest {
    Digest::sha256_of(&[n])
}

fn layer<'a>(index: usize, total: usize, digest: &'a Digest) -> LayerCommit<'a> {
    LayerCommit {
        index,
        total,
        digest,
        created_by: None,
        created: None,
    }
}

/// `git <args>` in `dir` as a user would run it; its stdout.
fn user_git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git must be installed for this test");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn one_commit_per_layer_oldest_first_and_diff_shows_a_layer() {
    let w = world();
    let history = GitHistory::init(&w.tree, &w.repo).await.unwrap();
    std::fs::write(w.tree.join("base.txt"), "base\n").unwrap();
    let (d1, d2) = (digest(1), digest(2));
    history.commit_layer(layer(0, 2, &d1)).await.unwrap();
    std::fs::write(w.tree.join("app.txt"), "app\n").unwrap();
    std::fs::remove_file(w.tree.join("base.txt")).unwrap();
    let second = LayerCommit {
        created_by: Some("COPY app.txt /"),
        ..layer(1, 2, &d2)
    };
    history.commit_layer(second).await.unwrap();
    history.finish().await.unwrap();

    let log = user_git(&w.tree, &["log", "--oneline", "--reverse", "--format=%s"]);
    assert_eq!(log, format!("layer 1/2: {d1}\nlayer 2/2: {d2}\n"));
    let body = user_git(&w.tree, &["log", "-1", "--format=%b"]);
    assert_eq!(body.trim(), "COPY app.txt /");
    let stat = user_git(&w.tree, &["diff", "HEAD~1", "--stat"]);
    assert!(
        stat.contains("app.txt") && stat.contains("base.txt"),
        "{stat}"
    );
    assert_eq!(user_git(&w.tree, &["status", "--porcelain"]), "");
    assert!(!w.repo.exists());
}

#[tokio::test]
async fn repository_keeps_working_after_the_tree_moves() {
    let w = world();
    let history = GitHistory::init(&w.tree, &w.repo).await.unwrap();
    std::fs::write(w.tree.join("f"), "x").unwrap();
    history.commit_layer(layer(0, 1, &digest(1))).await.unwrap();
    history.finish().await.unwrap();
    let moved = w.tree.with_file_name("moved");
    std::fs::rename(&w.tree, &moved).unwrap();
    assert_eq!(user_git(&moved, &["status", "--porcelain"]), "");
    assert_eq!(
        user_git(&moved, &["config", "--get", "core.bare"]).trim(),
        "false"
    );
}

#[tokio::test]
async fn empty_layer_still_gets_a_commit() {
    let w = world();
    let history = GitHistory::init(&w.tree, &w.repo).await.unwrap();
    history.commit_layer(layer(0, 2, &digest(1))).await.unwrap();
    history.commit_layer(layer(1, 2, &digest(2))).await.unwrap();
    history.finish().await.unwrap();
    assert_eq!(
        user_git(&w.tree, &["rev-list", "--count", "HEAD"]).trim(),
        "2"
    );
}

#[tokio::test]
async fn ignore_and_attribute_files_of_the_image_do_not_change_what_is_stored() {
    let w = world();
    let history = GitHistory::init(&w.tree, &w.repo).await.unwrap();
    std::fs::write(w.tree.join(".gitignore"), "*\n").unwrap();
    std::fs::write(w.tree.join(".gitattributes"), "* text eol=crlf\n").unwrap();
    std::fs::write(w.tree.join("crlf.txt"), "a\r\nb\r\n").unwrap();
    std::fs::write(w.tree.join("lf.txt"), "a\nb\n").unwrap();
    history.commit_layer(layer(0, 1, &digest(1))).await.unwrap();
    history.finish().await.unwrap();
    let files = user_git(&w.tree, &["ls-files"]);
    assert_eq!(files, ".gitattributes\n.gitignore\ncrlf.txt\nlf.txt\n");
    assert_eq!(
        user_git(&w.tree, &["cat-file", "blob", "HEAD:crlf.txt"]),
        "a\r\nb\r\n"
    );
    assert_eq!(
        user_git(&w.tree, &["cat-file", "blob", "HEAD:lf.txt"]),
        "a\nb\n"
    );
}

#[tokio::test]
async fn same_layers_and_dates_give_the_same_commits() {
    let mut heads = Vec::new();
    for _ in 0..2 {
        let w = world();
        let history = GitHistory::init(&w.tree, &w.repo).await.unwrap();
        std::fs::write(w.tree.join("f"), "x").unwrap();
        let d = digest(1);
        let commit = LayerCommit {
            created: Some("2024-05-01T12:00:00Z"),
            ..layer(0, 1, &d)
        };
        history.commit_layer(commit).await.unwrap();
        history.finish().await.unwrap();
        let line = user_git(&w.tree, &["log", "--format=%H %an <%ae> %at %ct"]);
        heads.push(line);
    }
    assert_eq!(heads[0], heads[1]);
    assert!(
        heads[0].ends_with(" hoist <hoist@localhost> 1714564800 1714564800\n"),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn planted_hooks_never_run_and_an_image_dot_git_fails_finish() {
    let w = world();
    let history = GitHistory::init(&w.tree, &w.repo).await.unwrap();
    let marker = w.tree.with_file_name("hook-ran");
    let hook = format!("#!/bin/sh\ntouch {}\n", marker.display());
    for hooks in [w.tree.join(".git/hooks"), w.repo.join("hooks")] {
        std::fs::create_dir_all(&hooks).unwrap();
        for name in ["pre-commit", "commit-msg", "post-commit"] {
            std::fs::write(hooks.join(name), &hook).unwrap();
            std::fs::set_permissions(
                hooks.join(name),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
        }
    }
    std::fs::write(w.tree.join("f"), "x").unwrap();
    history.commit_layer(layer(0, 1, &digest(1))).await.unwrap();
    assert!(!marker.exists(), "a hook ran");
    let e = history.finish().await.unwrap_err();
    assert_eq!(e.code(), "git_dir_in_image");
    assert!(e.to_string().contains("layout rootfs"), "{e}");
}

#[tokio::test]
async fn repository_inside_the_tree_is_refused() {
    let w = world();
    let e = GitHistory::init(&w.tree, &w.tree.join("sub/repo"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "git_failed");
    assert!(e.to_string().contains("must not be inside the tree"), "{e}");
}

#[test]
fn git_dates_come_from_rfc3339_or_the_epoch() {
    assert_eq!(git_date(Some("2024-05-01T12:00:00Z")), "@1714564800 +0000");
    assert_eq!(
        git_date(Some("2024-05-01T14:00:00+02:00")),
        "@1714564800 +0000"
    );
    assert_eq!(git_date(Some("yesterday")), "@0 +0000");
    assert_eq!(git_date(Some("1960-01-01T00:00:00Z")), "@0 +0000");
    assert_eq!(git_date(None), "@0 +0000");
}
