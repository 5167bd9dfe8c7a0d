//! `porchlight`: the home node's command line.
//!
//! This is the outermost shell: it parses arguments, sets up logging (`RUST_LOG`), runs the
//! command, and prints any error once as `porchlight: {err:#}` with a non-zero exit.

use std::process::ExitCode;

use clap::Parser;
use porchlight_node::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo tells its own story on stdout; its nodes log to their own files.
    let default_filter = if matches!(cli.command, cli::Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("porchlight: {err:#}");
            ExitCode::FAILURE
        }
    }
}
