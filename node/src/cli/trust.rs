//! `porchlight trust`: the owner's list of authority trust roots (`<data dir>/trust.toml`).
//!
//! The commands edit the file directly, whether or not a node is running; a running node
//! reads the list when it starts, so each change says to restart it.

use std::path::PathBuf;

use clap::Subcommand;

use crate::clock;
use crate::data_dir::DataDir;
use crate::trust::{TrustEntryRecord, TrustList, parse_public_key};

use super::print;

const RESTART_NOTE: &str =
    "a running porchlight node reads the trust list when it starts; restart it to apply this";

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust a root: requesters whose credentials it vouches for are shown as verified
    Add {
        /// The root's public key (a peer id, 12D3KooW...), as `authority root-keygen` printed it
        #[arg(value_name = "PUBKEY")]
        public_key: String,
        /// Your own name for this root
        #[arg(long, value_name = "TEXT")]
        label: String,
    },
    /// List the trusted roots
    List {
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a root
    Remove {
        /// The root's public key or its label
        #[arg(value_name = "PUBKEY")]
        root: String,
    },
}

/// Runs a `trust` subcommand on the data dir's trust list.
pub fn run(data_dir: Option<PathBuf>, command: TrustCommand) -> anyhow::Result<()> {
    let dir = DataDir::resolve(data_dir)?;
    dir.check_usable()?;
    let mut list = TrustList::load(&dir)?;
    match command {
        TrustCommand::Add { public_key, label } => {
            let public_key = parse_public_key(&public_key)?;
            let entry = list.add(public_key, &label, clock::now()?)?;
            println!("trusted {} as {:?}", entry.public_key, entry.label);
            println!("{RESTART_NOTE}");
            Ok(())
        }
        TrustCommand::List { json } => {
            let records: Vec<TrustEntryRecord> =
                list.list().iter().map(|entry| entry.to_record()).collect();
            print(json, &records, |records| {
                if records.is_empty() {
                    println!(
                        "no trust roots: every requester is shown as unverified \
                         (add one with `porchlight trust add PUBKEY --label TEXT`)"
                    );
                }
                for record in records {
                    println!(
                        "{}  {}  added {}",
                        record.public_key, record.label, record.added_at
                    );
                }
            })
        }
        TrustCommand::Remove { root } => {
            let removed = list.remove(&root)?;
            println!(
                "no longer trusting {} ({:?})",
                removed.public_key, removed.label
            );
            println!("{RESTART_NOTE}");
            Ok(())
        }
    }
}
