//! `hoist copy`, `hoist tag` and `hoist ls`: copies between registries (and retags) as jobs
//! through `POST /copies`, and a repository's tags through `GET /tags`.

use std::path::PathBuf;

use serde::Serialize;

use super::request::{CredsArgs, Login, caller_login, login};
use super::{Api, Output, encode, output, submit_and_follow};
use crate::jobs::{CacheMode, CopyPlatforms, CopyRequest, CopyResult};
use crate::registry::{DockerConfig, Reference};

/// Credentials for the copy's target registry, when they differ from `--creds`.
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct TargetCredsArgs {
    /// credentials for the target's registry as USER:PASSWORD (default: --creds on the
    /// same registry, else the daemon's docker config)
    #[arg(long, value_name = "USER:PASSWORD")]
    pub target_creds: Option<String>,
    /// a file holding the target's USER:PASSWORD, or a GCR JSON key
    #[arg(long, value_name = "FILE", conflicts_with = "target_creds")]
    pub target_creds_file: Option<PathBuf>,
}

/// A copy as sent: the API's request plus its credentials (never stored by the daemon).
#[derive(Serialize)]
struct CopySubmit {
    #[serde(flatten)]
    request: CopyRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<Login>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_auth: Option<Login>,
}

/// `hoist copy SOURCE TARGET`: every field of `POST /copies`.
#[derive(Clone, Debug, clap::Args)]
pub struct CopyArgs {
    /// the image to copy, as REGISTRY/NAME:TAG or REGISTRY/NAME@DIGEST
    source: String,
    /// where to copy it, as REGISTRY/NAME:TAG
    target: String,
    /// os/arch[/variant] to copy, repeatable: one gives that platform's manifest, several
    /// a new index of them (default: all, the index byte for byte)
    #[arg(long = "platform", value_name = "PLATFORM")]
    platforms: Vec<String>,
    /// every platform, the index byte for byte (the default)
    #[arg(long, conflicts_with = "platforms")]
    all: bool,
    /// stream blobs through without the daemon's shared cache
    #[arg(long)]
    no_cache: bool,
    /// also copy signatures, SBOMs and attestations (referrers, `sha256-…` tags)
    #[arg(long)]
    referrers: bool,
    /// print the job id and return without following it
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    creds: CredsArgs,
    #[command(flatten)]
    target_creds: TargetCredsArgs,
}

impl CopyArgs {
    /// The request, with the flags' credentials, else the caller's own for each side's
    /// registry (the source's never go to the target's registry unless it is the same).
    async fn to_request(&self, docker: &DockerConfig) -> anyhow::Result<CopySubmit> {
        let mut sent = self.to_request_from_flags()?;
        if sent.auth.is_none() {
            sent.auth = caller_login(&self.source, docker).await?;
        }
        if sent.target_auth.is_none() {
            sent.target_auth = caller_login(&self.target, docker).await?;
        }
        Ok(sent)
    }

    fn to_request_from_flags(&self) -> anyhow::Result<CopySubmit> {
        let platforms = if self.all || self.platforms.is_empty() {
            CopyPlatforms::default()
        } else {
            CopyPlatforms::List(self.platforms.clone())
        };
        Ok(CopySubmit {
            request: CopyRequest {
                source: self.source.clone(),
                target: self.target.clone(),
                platforms,
                cache: if self.no_cache {
                    CacheMode::Bypass
                } else {
                    CacheMode::Use
                },
                referrers: self.referrers,
                auth: None,
                target_auth: None,
            },
            auth: self.creds.to_login()?,
            target_auth: login(
                self.target_creds.target_creds.as_deref(),
                self.target_creds.target_creds_file.as_ref(),
            )?,
        })
    }
}

/// `hoist tag SOURCE NEWTAG`: SOURCE's manifest under another tag of its repository.
#[derive(Clone, Debug, clap::Args)]
pub struct TagArgs {
    /// the image to tag, as REGISTRY/NAME:TAG or REGISTRY/NAME@DIGEST
    source: String,
    /// the new tag (a tag only: it goes in SOURCE's repository)
    new_tag: String,
    /// print the job id and return without following it
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    creds: CredsArgs,
}

impl TagArgs {
    async fn to_request(&self, docker: &DockerConfig) -> anyhow::Result<CopySubmit> {
        let mut sent = self.to_request_from_flags()?;
        if sent.auth.is_none() {
            sent.auth = caller_login(&self.source, docker).await?;
        }
        Ok(sent)
    }

    fn to_request_from_flags(&self) -> anyhow::Result<CopySubmit> {
        let source: Reference = self.source.trim().parse()?;
        if self.new_tag.contains(['/', ':', '@']) {
            anyhow::bail!(
                "{:?} is not a tag: `hoist tag` retags within {}; use `hoist copy` for another repository",
                self.new_tag,
                source.name()
            );
        }
        let target = Reference {
            tag: Some(self.new_tag.clone()),
            digest: None,
            ..source
        };
        Ok(CopySubmit {
            request: CopyRequest {
                source: self.source.clone(),
                target: target.to_string(),
                platforms: CopyPlatforms::default(),
                cache: CacheMode::Use,
                referrers: false,
                auth: None,
                target_auth: None,
            },
            auth: self.creds.to_login()?,
            target_auth: None,
        })
    }
}

/// `hoist ls REPOSITORY`: its tags, one a line.
#[derive(Clone, Debug, clap::Args)]
pub struct LsArgs {
    /// the repository, as REGISTRY/NAME (a tag or digest, if given, is ignored)
    repository: String,
    /// one page of at most N tags (default: every page)
    #[arg(short = 'n', long = "n", value_name = "N")]
    n: Option<u32>,
    /// start after this tag
    #[arg(long)]
    last: Option<String>,
    #[command(flatten)]
    creds: CredsArgs,
}

pub(super) async fn copy(
    api: &Api,
    out: Output,
    args: &CopyArgs,
    docker: &DockerConfig,
) -> anyhow::Result<()> {
    let body = args.to_request(docker).await?;
    submit_and_follow(api, out, "/copies", &body, args.detach).await
}

pub(super) async fn tag(
    api: &Api,
    out: Output,
    args: &TagArgs,
    docker: &DockerConfig,
) -> anyhow::Result<()> {
    let body = args.to_request(docker).await?;
    submit_and_follow(api, out, "/copies", &body, args.detach).await
}

/// `hoist ls`: one tag a line (`-o json`: the whole answer).
pub(super) async fn ls(
    api: &Api,
    out: Output,
    args: &LsArgs,
    docker: &DockerConfig,
) -> anyhow::Result<()> {
    let mut path = format!("/tags?repository={}", encode(&args.repository));
    if let Some(n) = args.n {
        path.push_str(&format!("&n={n}"));
    }
    if let Some(last) = &args.last {
        path.push_str(&format!("&last={}", encode(last)));
    }
    let login = args.creds.for_image(&args.repository, docker).await?;
    let answer = api.get_with_registry_auth(&path, login.as_ref()).await?;
    if out == Output::Json {
        output::json(&answer);
        return Ok(());
    }
    for tag in answer["tags"].as_array().into_iter().flatten() {
        if let Some(t) = tag.as_str() {
            println!("{t}");
        }
    }
    if let Some(next) = answer["next"].as_str() {
        eprintln!("hoist: more tags after {next}: go on with --last {next}");
    }
    Ok(())
}

/// One line for a person: what was copied where, and how.
pub(super) fn summary(r: &CopyResult) -> String {
    format!(
        "copied {} to {} ({}): {} blobs copied, {} mounted, {} skipped, {} bytes",
        r.source,
        r.target,
        r.digest,
        r.blobs.copied,
        r.blobs.mounted,
        r.blobs.skipped,
        r.bytes_copied
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    enum Cli {
        Copy(CopyArgs),
        Tag(TagArgs),
    }

    fn body(args: &[&str]) -> serde_json::Value {
        let sent = match Cli::try_parse_from(args).unwrap() {
            Cli::Copy(a) => a.to_request_from_flags().unwrap(),
            Cli::Tag(a) => a.to_request_from_flags().unwrap(),
        };
        serde_json::to_value(sent).unwrap()
    }

    #[test]
    fn copy_flags_make_the_api_copy_request() {
        let sent = body(&[
            "x",
            "copy",
            "a:5000/x:1",
            "b:5000/y:1",
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm64",
            "--no-cache",
            "--referrers",
            "--creds",
            "s:sp",
            "--target-creds",
            "t:tp",
        ]);
        assert_eq!(
            sent,
            json!({
                "source": "a:5000/x:1", "target": "b:5000/y:1",
                "platforms": ["linux/amd64", "linux/arm64"], "cache": "bypass", "referrers": true,
                "auth": {"username": "s", "password": "sp"},
                "target_auth": {"username": "t", "password": "tp"},
            })
        );
        let request: CopyRequest = serde_json::from_value(sent).unwrap();
        assert_eq!(request.target_auth.unwrap().username, "t");
        let all = body(&["x", "copy", "a/x:1", "b/y:1", "--all"]);
        assert_eq!(all["platforms"], "all");
    }

    #[test]
    fn tag_names_another_tag_of_the_same_repository() {
        let sent = body(&["x", "tag", "127.0.0.1:5000/team/app:1", "stable"]);
        assert_eq!(sent["target"], "127.0.0.1:5000/team/app:stable");
        assert_eq!(sent["source"], "127.0.0.1:5000/team/app:1");
        let bad = Cli::try_parse_from(["x", "tag", "r/a:1", "other/repo:2"]).unwrap();
        let Cli::Tag(a) = bad else { unreachable!() };
        assert!(a.to_request_from_flags().is_err());
    }
}
