//! The `git` pull layout: the image's tree as a git repository with one commit per
//! layer, oldest first, so `git log` is the image's history and `git diff` a layer.
//!
//! Layers are hostile input, so the repository lives outside the tree while layers are
//! applied (a layer could plant `.git/hooks` or `.git/config`), and git runs with no
//! system or global config, no hooks, no fsmonitor, no signing, no attributes from the
//! tree (an image's `.gitattributes` could otherwise rewrite line endings or name
//! filters), no ignore rules (`.gitignore` files are image content), a fixed identity
//! and dates from the image's history, so the same image gives the same commits.
//! [`GitHistory::finish`] moves the repository to `<tree>/.git`; an image that has its
//! own `/.git` cannot be given this layout and fails with `git_dir_in_image` rather than
//! have its content renamed behind the user's back.
//!
//! What git cannot hold is in the tree but not in the history: empty folders, owners,
//! modes other than the executable bit, FIFOs and devices, anything under a folder named
//! `.git` (at any depth), and the contents of a folder that is itself a git repository
//! (committed as a submodule link). Not for: applying layers (see `unpack::Tree`).

use crate::error::FromIo;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rustix::fs::{CWD, RenameFlags};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ImageError;
use crate::digest::Digest;

/// Who the commits are by (author and committer).
const IDENTITY: (&str, &str) = ("hoist", "hoist@localhost");

/// Settings for every git command, whatever the config files say (there are none: see
/// `command`). The tree's own attributes are overridden by `info/attributes`.
const SAFE_CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "commit.gpgsign=false",
    "core.autocrlf=false",
    "core.safecrlf=false",
    "core.symlinks=true",
    "core.fileMode=true",
    "core.ignoreCase=false",
    "core.precomposeUnicode=false",
    "core.protectNTFS=false",
    "core.protectHFS=false",
    "core.excludesFile=/dev/null",
    "core.attributesFile=/dev/null",
    "core.quotePath=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "advice.addEmbeddedRepo=false",
    "init.defaultBranch=main",
];

/// `$GIT_DIR/info/attributes` wins over every `.gitattributes` in the tree: files are
/// stored byte for byte.
const NEUTRAL_ATTRIBUTES: &str = "* -text -filter -ident -working-tree-encoding\n";

/// One layer's commit.
#[derive(Clone, Copy, Debug)]
pub struct LayerCommit<'a> {
    /// Zero-based position of the layer, oldest first.
    pub index: usize,
    /// How many layers the image has.
    pub total: usize,
    /// The layer blob's digest.
    pub digest: &'a Digest,
    /// The history entry's `created_by`, when the config has one for this layer.
    pub created_by: Option<&'a str>,
    /// The history entry's `created` (RFC 3339); the epoch when absent or unreadable.
    pub created: Option<&'a str>,
}

/// A git repository being built beside a tree, one commit per applied layer.
#[derive(Debug)]
pub struct GitHistory {
    work_tree: PathBuf,
    git_dir: PathBuf,
}

impl GitHistory {
    /// Creates an empty repository at `git_dir` for the tree `work_tree`. `git_dir` must
    /// not exist, must lie outside `work_tree`, and on the same filesystem (so that
    /// `finish` can move it into the tree).
    pub async fn init(work_tree: &Path, git_dir: &Path) -> Result<GitHistory, ImageError> {
        let inside = || ImageError::GitFailed {
            command: "init".into(),
            reason: format!(
                "the repository {} must not be inside the tree {}",
                git_dir.display(),
                work_tree.display()
            ),
        };
        let tree = std::path::absolute(work_tree).map_err(ImageError::io(work_tree))?;
        let dir = std::path::absolute(git_dir).map_err(ImageError::io(git_dir))?;
        if dir.starts_with(&tree) {
            return Err(inside());
        }
        if tokio::fs::symlink_metadata(&dir).await.is_ok() {
            return Err(ImageError::io(dir)(
                std::io::ErrorKind::AlreadyExists.into(),
            ));
        }
        let history = GitHistory {
            work_tree: tree,
            git_dir: dir,
        };
        history.git(&["init", "-q"], &[]).await?;
        let info = history.git_dir.join("info");
        tokio::fs::create_dir_all(&info)
            .await
            .map_err(ImageError::io(&info))?;
        let attributes = info.join("attributes");
        tokio::fs::write(&attributes, NEUTRAL_ATTRIBUTES)
            .await
            .map_err(ImageError::io(&attributes))?;
        Ok(history)
    }

    /// Commits the tree as it is now: everything added (ignored files too), everything
    /// gone removed; a layer that changed nothing still gets its (empty) commit. The
    /// message is `layer N/TOTAL: <digest>`, then `created_by` when known.
    pub async fn commit_layer(&self, layer: LayerCommit<'_>) -> Result<(), ImageError> {
        self.git(&["add", "--all", "--force"], &[]).await?;
        let mut message = format!(
            "layer {}/{}: {}",
            layer.index + 1,
            layer.total,
            layer.digest
        );
        if let Some(created_by) = layer.created_by.filter(|c| !c.trim().is_empty()) {
            message.push_str("\n\n");
            message.push_str(created_by.trim());
        }
        let date = git_date(layer.created);
        let env = [
            ("GIT_AUTHOR_DATE", date.clone()),
            ("GIT_COMMITTER_DATE", date),
        ];
        self.git(
            &[
                "commit",
                "-q",
                "--allow-empty",
                "--no-verify",
                "--no-gpg-sign",
                "--cleanup=verbatim",
                "-m",
                &message,
            ],
            &env,
        )
        .await?;
        Ok(())
    }

    /// Moves the repository to `<tree>/.git`, a normal repository from then on (no
    /// recorded work tree path, so the tree may be moved). Fails with `git_dir_in_image`
    /// when the tree has its own `.git`.
    pub async fn finish(self) -> Result<(), ImageError> {
        let target = self.work_tree.join(".git");
        if tokio::fs::symlink_metadata(&target).await.is_ok() {
            return Err(ImageError::GitDirInImage { path: target });
        }
        // Exit status 5: the key was not set; fine.
        let unset = self
            .run(&["config", "--unset", "core.worktree"], &[])
            .await?;
        if !matches!(unset.status.code(), Some(0 | 5)) {
            return Err(failure("config", &unset));
        }
        self.git(&["config", "core.bare", "false"], &[]).await?;
        rustix::fs::renameat_with(CWD, &self.git_dir, CWD, &target, RenameFlags::NOREPLACE).map_err(
            |e| match e {
                rustix::io::Errno::EXIST | rustix::io::Errno::NOTEMPTY => {
                    ImageError::GitDirInImage {
                        path: target.clone(),
                    }
                }
                other => ImageError::io(&self.git_dir)(other.into()),
            },
        )
    }

    /// Runs `git <args>` on this repository with the safe settings; its stdout.
    async fn git(&self, args: &[&str], env: &[(&str, String)]) -> Result<String, ImageError> {
        let output = self.run(args, env).await?;
        if !output.status.success() {
            return Err(failure(args.first().copied().unwrap_or_default(), &output));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `git <args>` with no system or global config, a clean environment, the
    /// fixed identity and [`SAFE_CONFIG`]; killed if this future is dropped.
    async fn run(
        &self,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<std::process::Output, ImageError> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("HOME", "/nonexistent")
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", IDENTITY.0)
            .env("GIT_AUTHOR_EMAIL", IDENTITY.1)
            .env("GIT_COMMITTER_NAME", IDENTITY.0)
            .env("GIT_COMMITTER_EMAIL", IDENTITY.1)
            .envs(env.iter().map(|(k, v)| (k, v)));
        let mut git_dir = OsString::from("--git-dir=");
        git_dir.push(&self.git_dir);
        let mut work_tree = OsString::from("--work-tree=");
        work_tree.push(&self.work_tree);
        cmd.arg(git_dir).arg(work_tree);
        for setting in SAFE_CONFIG {
            cmd.args(["-c", setting]);
        }
        cmd.args(args)
            .current_dir(&self.work_tree)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd.output().await.map_err(|e| ImageError::GitFailed {
            command: args.first().copied().unwrap_or_default().to_string(),
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "git is not installed (or not on PATH); install it for layout git".into()
                }
                _ => e.to_string(),
            },
        })
    }
}

/// The error for a git command that ran and failed: the end of what it said, and how
/// it exited.
fn failure(command: &str, output: &std::process::Output) -> ImageError {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    tail.reverse();
    ImageError::GitFailed {
        command: command.to_string(),
        reason: format!("{} ({})", tail.join("; "), output.status),
    }
}

/// A git date (`@SECONDS +0000`) from an RFC 3339 time; the epoch when there is none or
/// it cannot be read (or lies before 1970, which git refuses).
fn git_date(created: Option<&str>) -> String {
    let seconds = created
        .and_then(|c| OffsetDateTime::parse(c, &Rfc3339).ok())
        .map(|t| t.unix_timestamp().max(0))
        .unwrap_or(0);
    format!("@{seconds} +0000")
}

#[cfg(test)]
#[path = "git_tests.rs"]
mod tests;
