//! `porchlight audit list | verify | report`: the node's audit log, read straight from the
//! data dir.
//!
//! No daemon is needed, by design: the log is a file, and checking it must not depend on the
//! process that wrote it. `verify` checks every entry against the node's own PeerId (from its
//! identity key) or a PeerId given with `--peer`, so a copy of another node's log can be
//! checked too, and fails (non-zero exit) naming the first broken entry and why.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use porchlight_protocol::PeerId;

use crate::audit_log::{
    AuditLogError, AuditRecordView, TransparencyReport, VerifyReport, list_line, read_all, verify,
};
use crate::data_dir::DataDir;
use crate::keys::NodeKeys;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List every entry of the audit log, oldest first
    List {
        #[command(flatten)]
        log: LogArg,
        #[arg(long)]
        json: bool,
    },
    /// Check every entry's hash, signature and place in the chain
    ///
    /// Fails, naming the first broken entry, if an entry was edited, removed, inserted,
    /// reordered or signed by another key. Removing the newest entries is detectable only
    /// against a head noted earlier: this prints the head to note down.
    Verify {
        #[command(flatten)]
        log: LogArg,
        /// Verify against this node's PeerId instead of the data dir's own identity
        #[arg(long, value_name = "PEER_ID")]
        peer: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Summarize the log: requests by requester class and outcome, clips and bytes
    /// released, active grants, and what this node asked for and received
    Report {
        #[command(flatten)]
        log: LogArg,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct LogArg {
    /// Read this log file instead of the data dir's audit.log
    #[arg(long = "log", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl LogArg {
    fn path(&self, dir: &DataDir) -> PathBuf {
        self.file.clone().unwrap_or_else(|| dir.audit_log())
    }
}

/// Runs one `porchlight audit` command.
pub fn run(dir: &DataDir, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::List { log, json } => list(&log.path(dir), json),
        AuditCommand::Verify { log, peer, json } => {
            let node = match peer {
                Some(text) => text.parse::<PeerId>().map_err(|_| {
                    anyhow::anyhow!(
                        "{text:?} is not a peer id; copy one from `porchlight id` (it starts with 12D3KooW)"
                    )
                })?,
                None => {
                    dir.check_usable()?;
                    NodeKeys::load(dir)
                        .context("cannot read the node's identity to verify its log; pass --peer PEER_ID to verify against another key")?
                        .identity
                        .peer_id()
                }
            };
            verify_log(&log.path(dir), &node, json)
        }
        AuditCommand::Report { log, json } => report(&log.path(dir), json),
    }
}

/// The records of the log, or none if it does not exist yet (said on stderr).
fn records_or_none(path: &Path) -> anyhow::Result<Vec<crate::audit_log::SignedAuditRecord>> {
    match read_all(path) {
        Ok(records) => Ok(records),
        Err(AuditLogError::Missing { .. }) => {
            eprintln!(
                "no audit log at {} yet: the node creates it when it first records",
                path.display()
            );
            Ok(Vec::new())
        }
        Err(err) => Err(err.into()),
    }
}

fn list(path: &Path, json: bool) -> anyhow::Result<()> {
    let records = records_or_none(path)?;
    if json {
        let views: Vec<_> = records.iter().map(AuditRecordView::of).collect();
        return print_json(&views);
    }
    if records.is_empty() {
        println!("no audit entries");
    }
    for record in &records {
        println!("{}", list_line(record));
    }
    Ok(())
}

fn verify_log(path: &Path, node: &PeerId, json: bool) -> anyhow::Result<()> {
    let report = match verify(path, node) {
        Ok(report) => report,
        Err(AuditLogError::Missing { .. }) => {
            eprintln!(
                "no audit log at {} yet: nothing to verify (the node creates it when it first records)",
                path.display()
            );
            VerifyReport {
                verified: 0,
                head: None,
                torn_tail: None,
                failure: None,
            }
        }
        Err(err) => return Err(err.into()),
    };
    if json {
        print_json(&report.to_view())?;
    } else if report.is_intact() {
        println!(
            "audit log {} is intact: {} entries signed by {node}",
            path.display(),
            report.verified
        );
        if let Some(head) = &report.head {
            println!(
                "head: seq {}, hash {} (note it down: a log without this entry was cut short)",
                head.seq,
                hex::encode(head.hash)
            );
        }
    }
    if let Some(torn) = report.torn_tail {
        eprintln!(
            "warning: the log ends in an incomplete record ({} bytes at byte {}), left by a crash while appending; not tampering: the node cuts it off when it next starts",
            torn.bytes, torn.offset
        );
    }
    if let Some(failure) = &report.failure {
        let seq = failure
            .seq
            .map_or_else(String::new, |seq| format!(", seq {seq}"));
        bail!(
            "audit log {} is broken at entry {} (byte {}{seq}): {}; the {} entries before it verified, nothing from it on can be trusted",
            path.display(),
            failure.index,
            failure.offset,
            failure.problem,
            report.verified
        );
    }
    Ok(())
}

fn report(path: &Path, json: bool) -> anyhow::Result<()> {
    let records = records_or_none(path)?;
    let report = TransparencyReport::from_records(&records, crate::clock::now()?);
    if json {
        print_json(&report)
    } else {
        println!("{report}");
        Ok(())
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("cannot print JSON")?
    );
    Ok(())
}
