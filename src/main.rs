//! The `hoist` binary: `hoist serve` runs the daemon; the other subcommands are clients of
//! a running daemon.

use clap::{Parser, Subcommand};

use hoist::config::{Config, ServeArgs};

#[derive(Parser)]
#[command(
    name = "hoist",
    version,
    about = "Pull container images onto disk, push simple images back"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground
    Serve(ServeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
            let format = args.log_format;
            hoist::serve::init_logging(format);
            runtime.block_on(async {
                let config = Config::from_args(args)?;
                hoist::serve::run(config).await
            })
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hoist: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
