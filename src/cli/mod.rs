//! The `hoist` command-line client: each subcommand is one or two calls to a running
//! daemon; a job is followed through its event stream, with progress bars on a terminal
//! and plain lines otherwise (CI logs).

mod copy;
mod follow;
mod http;
mod request;

pub use copy::{CopyArgs, LsArgs, TagArgs, copy, ls, tag};
pub use http::{Api, ClientError, Daemon};
pub use request::{BuildArgs, PullArgs};

use std::io::IsTerminal;

use hyper::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::jobs::{BuildResult, PullResult};

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
}

/// How to show a followed job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Display {
    /// Progress bars (stderr is a terminal, not CI).
    Bars,
    /// One line per change.
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

/// `hoist pull`: submits the pull and follows it to its end unless `--detach`.
pub async fn pull(api: &Api, args: &PullArgs) -> anyhow::Result<()> {
    let body = args.to_request()?;
    submit_and_follow::<PullResult>(api, "/pulls", &body, args.detach).await
}

/// `hoist build`: submits the build and follows it to its end unless `--detach`.
pub async fn build(api: &Api, args: &BuildArgs) -> anyhow::Result<()> {
    let body = args.to_request()?;
    submit_and_follow::<BuildResult>(api, "/builds", &body, args.detach).await
}

/// Submits a job (`/pulls` or `/builds`) and follows it to its end unless `detach`; `R`
/// is the job's typed result.
async fn submit_and_follow<R: Summary + DeserializeOwned>(
    api: &Api,
    path: &str,
    body: &impl Serialize,
    detach: bool,
) -> anyhow::Result<()> {
    let body = serde_json::to_value(body)?;
    let (_, job) = api.call(Method::POST, path, Some(&body)).await?;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    if detach {
        println!("{id}");
        return Ok(());
    }
    let end = follow::follow(api, &id, Display::detect()).await?;
    if std::io::stdout().is_terminal() {
        if let Ok(result) = R::deserialize(&end["result"]) {
            println!("{}", result.summary());
        }
    } else {
        print_json(&end["result"]);
    }
    if end["status"] != "succeeded" {
        let code = end["error"]["code"].as_str().unwrap_or("failed");
        let message = end["error"]["message"].as_str().unwrap_or("");
        anyhow::bail!(
            "job {id} {}: {code}: {message}",
            end["status"].as_str().unwrap_or("ended")
        );
    }
    Ok(())
}

/// Runs a simple GET/DELETE and prints its JSON answer.
pub async fn call_and_print(api: &Api, method: Method, path: &str) -> anyhow::Result<()> {
    let (_, value) = api.call(method, path, None).await?;
    print_json(&value);
    Ok(())
}

/// One line for a person: what was pulled or pushed, and its digest.
trait Summary {
    fn summary(&self) -> String;
}

impl Summary for PullResult {
    fn summary(&self) -> String {
        format!(
            "pulled {} ({}) into {}",
            self.image,
            self.digest,
            self.dest.display()
        )
    }
}

impl Summary for BuildResult {
    fn summary(&self) -> String {
        format!("pushed {} ({})", self.target, self.digest)
    }
}

pub fn print_json(v: &Value) {
    if !v.is_null() {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
}

pub use http::encode;

/// Follows a job to its end with the display this terminal calls for.
pub async fn follow_job(api: &Api, id: &str) -> anyhow::Result<Value> {
    follow::follow(api, id, Display::detect()).await
}
