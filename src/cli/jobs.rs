//! `hoist jobs` and `hoist job ID`: listing, showing, cancelling and following jobs, and
//! short ids.
//!
//! A short id (`hoist job 3f2a`) is matched here, against `GET /jobs`, rather than by a
//! new query on the API: an exact id is asked for first (`GET /jobs/{id}`, any age), and
//! only a prefix that is no id lists the newest jobs and picks the one that starts so;
//! two that do are an error naming them. The API stays as it is (one id, one job).

use hyper::Method;
use serde_json::Value;

use super::output::{self, Fields, Table};
use super::{Api, ClientError, Display, Output, encode, follow, job_outcome, query};

/// How many of the newest jobs a short id is looked for in (the API's largest page).
const PREFIX_SEARCH: u32 = 1000;

/// `hoist jobs`.
#[derive(Clone, Debug, clap::Args)]
pub struct JobsArgs {
    /// only jobs in this state: queued, running, succeeded, failed or cancelled
    #[arg(long)]
    status: Option<String>,
    /// only jobs of this kind: pull or build
    #[arg(long)]
    kind: Option<String>,
    /// at most this many jobs (the daemon's default: 100)
    #[arg(long)]
    limit: Option<u32>,
    /// print the job ids only, one a line
    #[arg(short, long)]
    quiet: bool,
}

/// `hoist job ID`.
#[derive(Clone, Debug, clap::Args)]
pub struct JobArgs {
    /// the job's id, or a prefix of it that no other job has
    id: String,
    /// cancel the job (queued or running)
    #[arg(long, conflicts_with = "follow")]
    cancel: bool,
    /// follow the job to its end with progress; exits non-zero unless it succeeds
    #[arg(long)]
    follow: bool,
}

/// The jobs of a `GET /jobs` answer (a bare array, or a page `{"jobs": [...]}`).
fn jobs_of(answer: &Value) -> Vec<Value> {
    answer
        .as_array()
        .or_else(|| answer["jobs"].as_array())
        .cloned()
        .unwrap_or_default()
}

/// What a job is about: the pulled image, or the build's target.
fn what(job: &Value) -> String {
    output::str(
        job["request"]
            .get("image")
            .unwrap_or(&job["request"]["target"]),
    )
}

pub(super) async fn list(api: &Api, out: Output, args: &JobsArgs) -> anyhow::Result<()> {
    let limit = args.limit.map(|l| l.to_string());
    let q = query(&[
        ("status", args.status.as_deref()),
        ("kind", args.kind.as_deref()),
        ("limit", limit.as_deref()),
    ]);
    let (_, answer) = api.call(Method::GET, &format!("/jobs{q}"), None).await?;
    let jobs = jobs_of(&answer);
    if args.quiet {
        for job in &jobs {
            println!("{}", output::str(&job["id"]));
        }
        return Ok(());
    }
    if out == Output::Json {
        output::json(&answer);
        return Ok(());
    }
    let mut table = Table::new(&["ID", "KIND", "STATUS", "CREATED", "IMAGE"]);
    for job in &jobs {
        table.row(vec![
            output::str(&job["id"]),
            output::str(&job["kind"]),
            output::str(&job["status"]),
            output::str(&job["created_at"]),
            what(job),
        ]);
    }
    table.print();
    Ok(())
}

/// The full id of the job `id` names: itself, or the one job whose id starts with it.
async fn resolve(api: &Api, id: &str) -> anyhow::Result<String> {
    let looks_like_a_prefix =
        !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    let not_found = match api
        .call(Method::GET, &format!("/jobs/{}", encode(id)), None)
        .await
    {
        Ok(_) => return Ok(id.to_string()),
        Err(e @ ClientError::Problem { status: 404, .. }) if looks_like_a_prefix => e,
        Err(e) => return Err(e.into()),
    };
    let (_, answer) = api
        .call(Method::GET, &format!("/jobs?limit={PREFIX_SEARCH}"), None)
        .await?;
    let prefix = id.to_ascii_lowercase();
    let matching: Vec<String> = jobs_of(&answer)
        .iter()
        .map(|j| output::str(&j["id"]))
        .filter(|j| j.starts_with(&prefix))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(not_found.into()),
        many => anyhow::bail!(
            "job id prefix {id:?} is ambiguous: {} jobs start with it ({}); give more of the id",
            many.len(),
            many.join(", ")
        ),
    }
}

pub(super) async fn show(api: &Api, out: Output, args: &JobArgs) -> anyhow::Result<()> {
    let id = resolve(api, &args.id).await?;
    let path = format!("/jobs/{}", encode(&id));
    if args.cancel {
        let (_, job) = api.call(Method::DELETE, &path, None).await?;
        match out {
            Output::Json => output::json(&job),
            Output::Text => match job["status"].as_str() {
                Some("cancelled") => println!("cancelled job {id}"),
                other => println!("job {id}: {}", other.unwrap_or("?")),
            },
        }
        return Ok(());
    }
    if args.follow {
        // Not started by this command: a signal stops following, the job goes on.
        let followed = follow::follow(api, &id, Display::detect(), false).await?;
        match out {
            Output::Json => output::json(&followed.job),
            Output::Text => print_job(&followed.job),
        }
        return job_outcome(&id, &followed.job, false);
    }
    let (_, job) = api.call(Method::GET, &path, None).await?;
    match out {
        Output::Json => output::json(&job),
        Output::Text => print_job(&job),
    }
    Ok(())
}

/// One job as `name: value` lines.
fn print_job(job: &Value) {
    let mut f = Fields::of(job, &["id", "kind", "status"]);
    let request = &job["request"];
    f.push_from(request, &["image", "source", "target", "base", "dest"]);
    f.push_from(job, &["created_at", "started_at", "finished_at"]);
    if let Some(p) = job.get("progress").filter(|p| p.is_object())
        && job["status"] == "running"
    {
        f.push(
            "progress",
            format!(
                "{}, layers {}/{}, {}/{}",
                output::str(&p["phase"]),
                p["layers_done"].as_u64().unwrap_or(0),
                p["layers_total"].as_u64().unwrap_or(0),
                output::bytes(p["bytes_done"].as_u64().unwrap_or(0)),
                output::bytes(p["bytes_total"].as_u64().unwrap_or(0)),
            ),
        );
    }
    let result = &job["result"];
    f.push("digest", output::str(&result["digest"]));
    if request.get("dest").is_some() {
        f.push("pulled_into", output::str(&result["dest"]));
    }
    if let Some(e) = job["error"].as_object() {
        f.push(
            "error",
            format!(
                "{}: {}",
                e.get("code").map(output::str).unwrap_or_default(),
                e.get("message").map(output::str).unwrap_or_default()
            ),
        );
    }
    f.print();
}
