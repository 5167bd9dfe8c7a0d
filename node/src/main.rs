//! `porchlight`: the home node's command line.
//!
//! This is the outermost shell: it parses arguments, reads the wall clock and the OS RNG, and
//! prints. Everything it decides comes from `porchlight-protocol` (and, as they land, the
//! sans-IO node core). Errors flow to `main` as `anyhow` chains and print once as
//! `porchlight: {err:#}` with a non-zero exit.

mod clock;
mod walkthrough;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Porchlight: a neighborhood camera mesh where footage leaves a home only with its owner's
/// explicit, time-limited consent.
#[derive(Debug, Parser)]
#[command(name = "porchlight", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Walk through the consent flow in one process, with the real protocol code
    ///
    /// A home seals a clip, an authority asks for it with a credential, the owner grants a
    /// time-limited token, the authority opens the clip, tampering is caught, the owner
    /// revokes. The mesh, cameras and store come with the home-node and mesh milestones.
    Demo {
        /// Where to leave the demo's files (default: a new directory under the system
        /// temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { dir } => walkthrough::run(dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("porchlight: {err:#}");
            ExitCode::FAILURE
        }
    }
}
