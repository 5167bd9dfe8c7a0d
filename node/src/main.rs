//! `porchlight`: the home node's command line.
//!
//! This is the outermost shell: it parses arguments, sets up logging (`RUST_LOG`), runs the
//! command, and prints any error once as `porchlight: {err:#}` with a non-zero exit.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use porchlight_node::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only the daemon logs by default; a one-shot command says what it did on stdout and
    // what went wrong once, below. libp2p's Kademlia warns about an empty routing table on
    // every lone start; the mesh says that once in its own words instead.
    let default_filter = match cli.command {
        cli::Command::Node(_) => "info,libp2p_kad=error",
        _ => "off",
    };
    // Colour only for a person at a terminal, and never when NO_COLOR is set (no-color.org):
    // a journal or a log file gets plain text.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_ansi(colour)
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
