//! The `hoist` binary: `hoist serve` runs the daemon; the other subcommands are clients of
//! a running daemon, over the same HTTP API.

use clap::{Parser, Subcommand};
use hyper::Method;

use hoist::cli::{self, Api, Connection, encode};
use hoist::config::{Config, ServeArgs};

#[derive(Parser)]
#[command(
    name = "hoist",
    version,
    about = "Pull container images onto disk, push simple images back"
)]
struct Cli {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground
    Serve(ServeArgs),
    /// Pull IMAGE into DEST (a folder inside HOIST_ROOTS) and follow the job
    Pull(cli::PullArgs),
    /// Print an image's digest without pulling it
    Digest {
        image: String,
        #[arg(long)]
        platform: Option<String>,
    },
    /// Print an image's platforms, config and layers without pulling it
    Inspect {
        image: String,
        #[arg(long)]
        platform: Option<String>,
    },
    /// Build SOURCE (a folder inside HOIST_ROOTS) into one layer and push it as TARGET
    Build(cli::BuildArgs),
    /// List jobs, newest first
    Jobs {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show one job (or cancel it, or follow it to its end)
    Job {
        id: String,
        #[arg(long, conflicts_with = "follow")]
        cancel: bool,
        #[arg(long)]
        follow: bool,
    },
    /// Show the cache, or purge it
    Cache {
        /// `purge` removes every blob no running job uses
        action: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        hoist::serve::tune_allocator();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hoist: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => {
            hoist::serve::init_logging(args.log_format, args.log.as_deref());
            runtime.block_on(async {
                let config = Config::from_args(args)?;
                hoist::serve::run(config).await
            })
        }
        other => runtime.block_on(run_client(other, cli.conn)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hoist: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn api(conn: Connection) -> Api {
    Api {
        daemon: conn.daemon,
        token: conn.token,
    }
}

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

async fn run_client(command: Command, conn: Connection) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => unreachable!("handled in main"),
        Command::Pull(args) => cli::pull(&api(conn), &args).await,
        Command::Digest { image, platform } => {
            let q = query(&[("image", Some(&image)), ("platform", platform.as_deref())]);
            cli::call_and_print(&api(conn), Method::GET, &format!("/digest{q}")).await
        }
        Command::Inspect { image, platform } => {
            let q = query(&[("image", Some(&image)), ("platform", platform.as_deref())]);
            cli::call_and_print(&api(conn), Method::GET, &format!("/inspect{q}")).await
        }
        Command::Build(args) => cli::build(&api(conn), &args).await,
        Command::Jobs {
            status,
            kind,
            limit,
        } => {
            let limit = limit.map(|l| l.to_string());
            let q = query(&[
                ("status", status.as_deref()),
                ("kind", kind.as_deref()),
                ("limit", limit.as_deref()),
            ]);
            let (_, jobs) = api(conn)
                .call(Method::GET, &format!("/jobs{q}"), None)
                .await?;
            for job in jobs.as_array().into_iter().flatten() {
                let what = job["request"]["image"]
                    .as_str()
                    .or_else(|| job["request"]["target"].as_str())
                    .unwrap_or("");
                println!(
                    "{}  {:<5}  {:<9}  {}  {}",
                    job["id"].as_str().unwrap_or(""),
                    job["kind"].as_str().unwrap_or(""),
                    job["status"].as_str().unwrap_or(""),
                    job["created_at"].as_str().unwrap_or(""),
                    what
                );
            }
            Ok(())
        }
        Command::Job { id, cancel, follow } => {
            let api = api(conn);
            if cancel {
                return cli::call_and_print(
                    &api,
                    Method::DELETE,
                    &format!("/jobs/{}", encode(&id)),
                )
                .await;
            }
            if follow {
                let end = cli::follow_job(&api, &id).await?;
                cli::print_json(&end);
                if end["status"] != "succeeded" {
                    anyhow::bail!("job {id} {}", end["status"].as_str().unwrap_or("ended"));
                }
                return Ok(());
            }
            cli::call_and_print(&api, Method::GET, &format!("/jobs/{}", encode(&id))).await
        }
        Command::Cache { action } => match action.as_deref() {
            None => cli::call_and_print(&api(conn), Method::GET, "/cache").await,
            Some("purge") => cli::call_and_print(&api(conn), Method::DELETE, "/cache").await,
            Some(other) => anyhow::bail!(
                "unknown cache action {other:?}; use `hoist cache` or `hoist cache purge`"
            ),
        },
    }
}
