//! The `hoist` command-line client: each subcommand is one or two calls to a running
//! daemon; a job is followed through its event stream, with progress bars on a terminal
//! and plain lines otherwise (CI logs).

mod follow;
mod http;

pub use http::{Api, ClientError, Daemon};

use std::io::IsTerminal;
use std::path::PathBuf;

use hyper::Method;
use serde_json::{Value, json};

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

/// Registry credentials for one job; never printed.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CredsArgs {
    /// registry credentials as USER:PASSWORD
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
    /// a file holding USER:PASSWORD, or a GCR JSON key (sent as user _json_key)
    #[arg(long, value_name = "FILE", conflicts_with = "creds")]
    pub creds_file: Option<PathBuf>,
}

impl CredsArgs {
    pub fn to_auth(&self) -> anyhow::Result<Option<Value>> {
        let text = match (&self.creds, &self.creds_file) {
            (Some(c), _) => c.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("reading credentials file {}: {e}", f.display()))?,
            (None, None) => return Ok(None),
        };
        let trimmed = text.trim();
        if trimmed.starts_with('{') {
            // A service-account JSON key: GCR and Artifact Registry take it as the password.
            return Ok(Some(
                json!({ "username": "_json_key", "password": trimmed }),
            ));
        }
        let (user, pass) = trimmed
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("credentials must be USER:PASSWORD"))?;
        Ok(Some(json!({ "username": user, "password": pass })))
    }
}

/// How to show a followed job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// Progress bars (stderr is a terminal, not CI).
    Bars,
    /// One line per change.
    Lines,
}

impl Display {
    pub fn detect() -> Display {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
        if std::io::stderr().is_terminal() && !ci {
            Display::Bars
        } else {
            Display::Lines
        }
    }
}

/// Submits a job (`/pulls` or `/builds`) and follows it to its end unless `detach`.
pub async fn submit_and_follow(
    api: &Api,
    path: &str,
    body: Value,
    detach: bool,
) -> anyhow::Result<()> {
    let (_, job) = api.call(Method::POST, path, Some(&body)).await?;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    if detach {
        println!("{id}");
        return Ok(());
    }
    let end = follow::follow(api, &id, Display::detect()).await?;
    if std::io::stdout().is_terminal() {
        print_summary(&end["result"]);
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
fn print_summary(result: &Value) {
    let text = |k: &str| result[k].as_str().unwrap_or("").to_string();
    if result["dest"].is_string() {
        println!(
            "pulled {} ({}) into {}",
            text("image"),
            text("digest"),
            text("dest")
        );
    } else if result["target"].is_string() {
        println!("pushed {} ({})", text("target"), text("digest"));
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
