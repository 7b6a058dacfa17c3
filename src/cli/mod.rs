//! The `hoist` command-line client: each subcommand is one or two calls to a running
//! daemon; a job is followed through its event stream, with progress bars on a terminal
//! and plain lines otherwise (CI logs).
//!
//! It speaks like crane and skopeo: text for people (a table with a header for a list,
//! `name: value` lines for one object, the digest alone for `hoist digest`), the whole
//! object as the daemon answered it with `-o json`; exit status 0, 1 for a failure, 2 for
//! a usage error (clap's). The caller's own registry credentials go with each request
//! (`request`); Ctrl-C while following a job the CLI started cancels it (`follow`).
//!
//! A new subcommand is a variant of [`Client`] with its args struct and a function here
//! (or in a file of its own for a family, as `jobs`).

mod copy;
mod follow;
mod http;
mod jobs;
mod output;
mod request;

pub use copy::{CopyArgs, LsArgs, TagArgs};
pub use http::{Api, ClientError, Daemon};
pub use request::{BuildArgs, ImageArgs, PullArgs};

use std::io::IsTerminal;

use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jobs::{BuildResult, CopyResult, PullResult};

use crate::registry::DockerConfig;
use output::{Fields, Table};

/// Connection options shared by every client subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct Connection {
    /// the daemon: http://HOST:PORT or unix:/path/to/socket
    #[arg(
        long = "daemon",
        env = "HOIST_URL",
        default_value = "http://127.0.0.1:7700",
        global = true
    )]
    pub daemon: Daemon,
    /// bearer token, when the daemon has HOIST_API_TOKEN set
    #[arg(long, env = "HOIST_API_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// text (for people: tables, the digest alone) or json (the whole object, for scripts)
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub output: Output,
}

/// The arguments above, by id: `hoist serve` refuses them (they are the client's).
pub const CLIENT_ARGS: &[(&str, &str)] = &[
    ("daemon", "--daemon"),
    ("token", "--token"),
    ("output", "--output"),
];

impl Connection {
    fn api(&self) -> Api {
        Api {
            daemon: self.daemon.clone(),
            token: self.token.clone(),
        }
    }
}

/// What the client prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// The client subcommands.
#[derive(Debug, clap::Subcommand)]
#[allow(clippy::large_enum_variant)] // one, parsed once per run
pub enum Client {
    /// Pull IMAGE into DEST (a folder inside HOIST_ROOTS) and follow the job; Ctrl-C cancels it
    Pull(PullArgs),
    /// Print an image's digest (alone) without pulling it
    Digest(ImageArgs),
    /// Print an image's platforms, config and layers without pulling it
    Inspect(ImageArgs),
    /// Build SOURCE (a folder inside HOIST_ROOTS) into one layer, push it as TARGET, follow the job
    Build(BuildArgs),
    /// List jobs, newest first
    Jobs(jobs::JobsArgs),
    /// Show one job (or cancel it, or follow it to its end); ID may be a unique prefix
    Job(jobs::JobArgs),
    /// Show the cache, or purge it
    Cache(CacheArgs),
    /// Copy SOURCE to TARGET, registry to registry (all platforms, byte for byte, unless --platform)
    Copy(CopyArgs),
    /// Tag SOURCE's manifest as NEW_TAG in the same repository (one manifest PUT, no blobs)
    Tag(TagArgs),
    /// List a repository's tags
    Ls(LsArgs),
}

/// `hoist cache [purge]`.
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    action: Option<CacheAction>,
}

#[derive(Debug, clap::Subcommand)]
enum CacheAction {
    /// Remove every blob no running job uses
    Purge,
}

impl Client {
    pub async fn run(self, conn: Connection) -> anyhow::Result<()> {
        let api = conn.api();
        let out = conn.output;
        let docker = DockerConfig::from_env();
        match self {
            Client::Pull(args) => {
                let body = args.to_request(&docker).await?;
                submit_and_follow(&api, out, "/pulls", &body, args.detach).await
            }
            Client::Build(args) => {
                let body = args.to_request(&docker).await?;
                submit_and_follow(&api, out, "/builds", &body, args.detach).await
            }
            Client::Digest(args) => digest(&api, out, &args, &docker).await,
            Client::Inspect(args) => inspect(&api, out, &args, &docker).await,
            Client::Jobs(args) => jobs::list(&api, out, &args).await,
            Client::Job(args) => jobs::show(&api, out, &args).await,
            Client::Cache(args) => cache(&api, out, args.action).await,
            Client::Copy(args) => copy::copy(&api, out, &args, &docker).await,
            Client::Tag(args) => copy::tag(&api, out, &args, &docker).await,
            Client::Ls(args) => copy::ls(&api, out, &args, &docker).await,
        }
    }
}

/// How to show a followed job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Display {
    /// Progress bars (stderr is a terminal, not CI).
    Bars,
    /// One line per change, and one at least every few seconds.
    Lines,
}

impl Display {
    pub(crate) fn detect() -> Display {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
        if std::io::stderr().is_terminal() && !ci {
            Display::Bars
        } else {
            Display::Lines
        }
    }
}

/// Submits a job (`/pulls` or `/builds`) and follows it to its end unless `detach`. A
/// signal while following cancels the job (the CLI started it) and waits for its end.
async fn submit_and_follow(
    api: &Api,
    out: Output,
    path: &str,
    body: &impl Serialize,
    detach: bool,
) -> anyhow::Result<()> {
    let body = serde_json::to_value(body)?;
    let (_, job) = api.call(Method::POST, path, Some(&body)).await?;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    if detach {
        match out {
            Output::Json => output::json(&job),
            Output::Text => println!("{id}"),
        }
        return Ok(());
    }
    let followed = follow::follow(api, &id, Display::detect(), true).await?;
    let end = followed.job;
    match out {
        Output::Json => output::json(&end),
        Output::Text => {
            if let Some(line) = summary(&end).filter(|_| end["status"] == "succeeded") {
                println!("{line}");
            }
        }
    }
    job_outcome(&id, &end, followed.interrupted)
}

/// Ok for a succeeded job; else the error the CLI exits with.
fn job_outcome(id: &str, end: &Value, interrupted: bool) -> anyhow::Result<()> {
    let status = end["status"].as_str().unwrap_or("ended");
    if status == "succeeded" {
        return Ok(());
    }
    if interrupted && status == "cancelled" {
        anyhow::bail!("cancelled job {id}");
    }
    match end["error"]["code"].as_str() {
        Some(code) => {
            let message = end["error"]["message"].as_str().unwrap_or("");
            anyhow::bail!("job {id} {status}: {code}: {message}")
        }
        None => anyhow::bail!("job {id} {status}"),
    }
}

/// One line for a person: what was pulled or pushed, and its digest (read through the
/// daemon's own result types).
fn summary(job: &Value) -> Option<String> {
    let result = &job["result"];
    match job["kind"].as_str() {
        Some("build") => BuildResult::deserialize(result)
            .ok()
            .map(|r| format!("pushed {} ({})", r.target, r.digest)),
        Some("copy") => CopyResult::deserialize(result)
            .ok()
            .map(|r| copy::summary(&r)),
        _ => PullResult::deserialize(result).ok().map(|r| {
            format!(
                "pulled {} ({}) into {}",
                r.image,
                r.digest,
                r.dest.display()
            )
        }),
    }
}

fn image_query(args: &ImageArgs) -> String {
    query(&[
        ("image", Some(&args.image)),
        ("platform", args.platform.as_deref()),
    ])
}

/// `hoist digest`: the digest alone (with `--platform`, that platform's manifest's, as
/// `crane digest --platform` prints it).
async fn digest(
    api: &Api,
    out: Output,
    args: &ImageArgs,
    docker: &DockerConfig,
) -> anyhow::Result<()> {
    let login = args.creds.for_image(&args.image, docker).await?;
    let path = format!("/digest{}", image_query(args));
    let answer = api.get_with_registry_auth(&path, login.as_ref()).await?;
    match out {
        Output::Json => output::json(&answer),
        Output::Text => {
            let digest = answer
                .get("platform_digest")
                .unwrap_or(&answer["digest"])
                .as_str()
                .unwrap_or("");
            println!("{digest}");
        }
    }
    Ok(())
}

/// `hoist inspect`: what the image is, then its layers as a table.
async fn inspect(
    api: &Api,
    out: Output,
    args: &ImageArgs,
    docker: &DockerConfig,
) -> anyhow::Result<()> {
    let login = args.creds.for_image(&args.image, docker).await?;
    let path = format!("/inspect{}", image_query(args));
    let answer = api.get_with_registry_auth(&path, login.as_ref()).await?;
    if out == Output::Json {
        output::json(&answer);
        return Ok(());
    }
    let platforms: Vec<&str> = answer["platforms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut fields = Fields::of(&answer, &["image", "digest", "media_type"]);
    if !platforms.is_empty() {
        fields.push("platforms", platforms.join(", "));
    }
    fields.push_from(&answer, &["platform", "platform_digest", "config_digest"]);
    if let Some(size) = answer["size"].as_u64() {
        fields.push("size", output::bytes(size));
    }
    fields.print();
    println!();
    let mut table = Table::new(&["LAYER", "SIZE", "MEDIA TYPE"]);
    for layer in answer["layers"].as_array().into_iter().flatten() {
        table.row(vec![
            output::str(&layer["digest"]),
            layer["size"]
                .as_u64()
                .map(output::bytes)
                .unwrap_or_default(),
            output::str(layer.get("media_type").unwrap_or(&layer["mediaType"])),
        ]);
    }
    table.print();
    Ok(())
}

async fn cache(api: &Api, out: Output, action: Option<CacheAction>) -> anyhow::Result<()> {
    let method = match action {
        None => Method::GET,
        Some(CacheAction::Purge) => Method::DELETE,
    };
    let (_, answer) = api.call(method, "/cache", None).await?;
    match (out, action) {
        (Output::Json, _) => output::json(&answer),
        (Output::Text, None) => {
            let mut fields = Fields::of(&answer, &["path", "blobs"]);
            if let Some(b) = answer["bytes"].as_u64() {
                fields.push("bytes", output::bytes(b));
            }
            fields.push(
                "max_bytes",
                answer["max_bytes"]
                    .as_u64()
                    .map(output::bytes)
                    .unwrap_or_else(|| "unlimited".into()),
            );
            fields.print();
        }
        (Output::Text, Some(CacheAction::Purge)) => println!(
            "removed {} blobs, freed {}",
            answer["removed_blobs"].as_u64().unwrap_or(0),
            output::bytes(answer["freed_bytes"].as_u64().unwrap_or(0))
        ),
    }
    Ok(())
}

/// `?k=v&…` of the pairs that have a value, percent-encoded.
fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub use http::encode;
