//! The `hoist` binary: `hoist serve` runs the daemon; the other subcommands are clients of
//! a running daemon, over the same HTTP API (`hoist::cli::Client`).

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use hoist::cli::{self, Connection};
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
    #[command(flatten)]
    Client(cli::Client),
}

/// The client's own flags (`--daemon`, `--token`, `-o`) given to `hoist serve`, which
/// would otherwise be accepted and ignored (`serve --token X` ran without auth): a usage
/// error naming the daemon's flag.
fn refuse_client_flags_on_serve(matches: &ArgMatches) {
    let Some(serve) = matches.subcommand_matches("serve") else {
        return;
    };
    for (id, flag) in cli::CLIENT_ARGS {
        let given = [matches, serve]
            .iter()
            .any(|m| m.value_source(id) == Some(ValueSource::CommandLine));
        if given {
            let hint = match *id {
                "token" => "; the daemon's token is --api-token (or HOIST_API_TOKEN)",
                "daemon" => "; the daemon's address is --listen (or HOIST_LISTEN)",
                _ => "",
            };
            let mut cmd = Cli::command();
            cmd.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("{flag} is a client flag, not one of `hoist serve`{hint}"),
            )
            .exit();
        }
    }
}

fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    refuse_client_flags_on_serve(&matches);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
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
            let served = runtime.block_on(async {
                let config = Config::from_args(args)?;
                hoist::serve::run(config).await
            });
            // Through the log, like every other line of the daemon: under the journal it
            // is an error (`journalctl -p err` finds why it did not start), and with
            // `--log-format json` it is a JSON line too.
            if let Err(e) = served {
                tracing::error!("hoist serve stopped: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
            Ok(())
        }
        Command::Client(client) => runtime.block_on(client.run(cli.conn)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hoist: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument of every subcommand says what it is for in `--help`.
    #[test]
    fn every_flag_and_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the subcommand)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "hoist", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
        Cli::command().debug_assert();
    }
}
