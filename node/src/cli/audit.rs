//! `porchlight audit list | verify | head | report | set-aside`: the node's audit log, read
//! straight from the data dir.
//!
//! No daemon is needed, by design: the log is a file, and checking it must not depend on the
//! process that wrote it. `verify` checks every entry against the node's own PeerId (from its
//! identity key) or a PeerId given with `--peer`, so a copy of another node's log can be
//! checked too, and fails (non-zero exit) naming the first broken entry and why. `head`
//! prints the signed head to keep elsewhere, and `verify --head FILE` checks the log still
//! holds it, which is how a log cut short is caught. `set-aside` is the owner's way past a
//! damaged log: the node itself never cuts or replaces one.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use porchlight_protocol::PeerId;

use crate::audit_log::{
    AuditLogError, AuditRecordView, HeadCheck, SignedHead, SignedHeadView, TransparencyReport,
    VerifyReport, check_head, describe_event, list_line, read_all, set_aside, signed_head, verify,
};
use crate::data_dir::DataDir;
use crate::keys::NodeKeys;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List every entry of the audit log, oldest first
    List {
        #[command(flatten)]
        log: LogArg,
        /// Show whole peer ids and lines of any length (by default each line fits in 100
        /// columns: peer ids are cut to their first 12 characters)
        #[arg(long)]
        wide: bool,
        /// Print JSON (the local API's own shape) instead of text
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
        /// Also check that the log still holds this head, saved earlier from
        /// `porchlight audit head --json`
        #[arg(long, value_name = "FILE")]
        head: Option<PathBuf>,
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Print the log's signed head (seq, hash, time, and the node's signature over it)
    ///
    /// Keep it somewhere the node cannot reach; `porchlight audit verify --head FILE` later
    /// tells whether the log still holds it, which catches a log cut short or rewritten.
    Head {
        #[command(flatten)]
        log: LogArg,
        /// Verify against this node's PeerId instead of the data dir's own identity
        #[arg(long, value_name = "PEER_ID")]
        peer: Option<String>,
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Keep a damaged audit log under a dated name and start a new one
    ///
    /// The node refuses to start on a damaged log and never cuts one. This keeps the damaged
    /// file whole (as audit.log.set-aside-<time> in the data dir) and begins a new chain
    /// whose first entry records how far the old one verified and its last verified hash.
    /// Refused when the log is intact. Stop the node first.
    SetAside,
    /// Summarize the log: requests by requester class and outcome, clips and bytes
    /// released, active grants, and what this node asked for and received
    Report {
        #[command(flatten)]
        log: LogArg,
        /// Print JSON (the local API's own shape) instead of text
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
        AuditCommand::List { log, wide, json } => list(&log.path(dir), wide, json),
        AuditCommand::Verify {
            log,
            peer,
            head,
            json,
        } => {
            let node = node_to_verify(dir, peer)?;
            match head {
                Some(head) => verify_with_head(&log.path(dir), &node, &head, json),
                None => verify_log(&log.path(dir), &node, json),
            }
        }
        AuditCommand::Head { log, peer, json } => {
            let node = node_to_verify(dir, peer)?;
            print_head(&log.path(dir), &node, json)
        }
        AuditCommand::SetAside => set_aside_log(dir),
        AuditCommand::Report { log, json } => report(&log.path(dir), json),
    }
}

/// The PeerId a log is verified against: `--peer`, or the data dir's own identity.
fn node_to_verify(dir: &DataDir, peer: Option<String>) -> anyhow::Result<PeerId> {
    Ok(match peer {
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
    })
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

/// The width `audit list` keeps to without `--wide`.
const LIST_WIDTH: usize = 100;

/// A list line made to fit `width` columns: peer ids (`12D3KooW…`, 52 characters) cut to
/// their first 12, then, if still too long, the end cut with an ellipsis.
fn narrow(line: &str, width: usize) -> String {
    let short: Vec<String> = line
        .split(' ')
        .map(|word| {
            let (id, rest) = word.split_at(
                word.find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(word.len()),
            );
            if id.starts_with("12D3KooW") && id.len() > 16 {
                format!("{}…{rest}", &id[..12])
            } else {
                word.to_owned()
            }
        })
        .collect();
    let line = short.join(" ");
    if line.chars().count() <= width {
        return line;
    }
    let mut cut: String = line.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

fn list(path: &Path, wide: bool, json: bool) -> anyhow::Result<()> {
    let records = records_or_none(path)?;
    if json {
        let views: Vec<_> = records.iter().map(AuditRecordView::of).collect();
        return print_json(&views);
    }
    if records.is_empty() {
        println!("no audit entries");
    }
    for record in &records {
        let line = list_line(record);
        if wide {
            println!("{line}");
        } else {
            println!("{}", narrow(&line, LIST_WIDTH));
        }
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
    }
    verify_outcome(path, node, &report, json)?;
    if !json && let Some(head) = &report.head {
        println!(
            "head: seq {}, hash {} (keep `porchlight audit head --json` elsewhere: a log without this entry was cut short)",
            head.seq,
            hex::encode(head.hash)
        );
    }
    Ok(())
}

/// Says what a verification found: intact, a torn tail (a crash), or damage, which is an
/// error (non-zero exit).
fn verify_outcome(
    path: &Path,
    node: &PeerId,
    report: &VerifyReport,
    json: bool,
) -> anyhow::Result<()> {
    if !json && report.is_intact() {
        println!(
            "audit log {} is intact: {} entries signed by {node}",
            path.display(),
            report.verified
        );
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
            "audit log {} is broken at entry {} (byte {}{seq}): {}; this is damage or tampering, not a crash: the {} entries before it verified, nothing from it on can be trusted. The node will not start on this log; keep a copy, then `porchlight audit set-aside` keeps it under a dated name and starts a new one",
            path.display(),
            failure.index,
            failure.offset,
            failure.problem,
            report.verified
        );
    }
    Ok(())
}

fn print_head(path: &Path, node: &PeerId, json: bool) -> anyhow::Result<()> {
    let (report, head) = signed_head(path, node)?;
    if let Some(failure) = &report.failure {
        bail!(
            "audit log {} is broken at entry {} (byte {}): {}; its head cannot be vouched for. Run `porchlight audit verify` for details",
            path.display(),
            failure.index,
            failure.offset,
            failure.problem
        );
    }
    let Some(head) = head else {
        bail!(
            "audit log {} has no entries yet: there is no head to keep",
            path.display()
        );
    };
    let view = head.to_view();
    if json {
        return print_json(&view);
    }
    println!(
        "audit log {} head, signed by {}:",
        path.display(),
        view.node
    );
    println!("  seq:       {}", view.seq);
    println!("  hash:      {}", view.hash);
    println!("  at:        {} (unix ms {})", view.at, view.at_unix_ms);
    println!("  signature: {}", view.signature);
    println!(
        "keep the output of `porchlight audit head --json` elsewhere; `porchlight audit verify --head FILE` checks the log still holds it"
    );
    Ok(())
}

fn verify_with_head(
    path: &Path,
    node: &PeerId,
    head_file: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(head_file)
        .with_context(|| format!("cannot read the saved head {}", head_file.display()))?;
    let view: SignedHeadView = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a saved head; save one with `porchlight audit head --json > FILE`",
            head_file.display()
        )
    })?;
    let head = SignedHead::from_view(&view).map_err(|err| {
        anyhow::anyhow!("the saved head {} is malformed: {err}", head_file.display())
    })?;
    if head.node != *node {
        bail!(
            "the saved head {} is of node {}, but the log is being verified against {node}; pass --peer {} to check that node's log",
            head_file.display(),
            head.node,
            head.node
        );
    }
    let (report, check) = match check_head(path, node, &head) {
        Ok(checked) => checked,
        Err(AuditLogError::Missing { .. }) => bail!(
            "no audit log at {}: it does not hold the saved head (seq {}); the log was removed",
            path.display(),
            head.seq
        ),
        Err(err) => return Err(err.into()),
    };
    if json {
        print_json(&HeadVerifyView {
            log: report.to_view(),
            saved_head: head_check_name(check),
        })?;
    }
    let seq = head.seq;
    let hash = hex::encode(head.hash);
    match check {
        HeadCheck::Contained => {
            if !json {
                println!(
                    "audit log {} still holds the saved head: seq {seq}, hash {hash}",
                    path.display()
                );
            }
            // The log may still be broken after the head.
            verify_outcome(path, node, &report, json)
        }
        HeadCheck::Cut { entries } => bail!(
            "audit log {} no longer holds the saved head (seq {seq}): it ends after {entries} entries, so it was cut short after the head was saved",
            path.display()
        ),
        HeadCheck::BrokenBefore { verified } => bail!(
            "audit log {} is broken before the saved head (seq {seq}): only {verified} entries verified, so it cannot be shown to hold it; run `porchlight audit verify` for details",
            path.display()
        ),
        HeadCheck::Rewritten { found_hash } => bail!(
            "audit log {} no longer holds the saved head: its entry seq {seq} has hash {}, not {hash}, so the log was rewritten",
            path.display(),
            hex::encode(found_hash)
        ),
        HeadCheck::BadSignature => bail!(
            "the saved head {} is not signed by {node}: its signature does not verify (the file was edited, or is of another node)",
            head_file.display()
        ),
    }
}

/// `porchlight audit verify --head FILE --json`: the log's report and what became of the head.
#[derive(serde::Serialize)]
struct HeadVerifyView {
    #[serde(flatten)]
    log: crate::audit_log::VerifyView,
    /// `contained`, `cut`, `broken_before`, `rewritten` or `bad_signature`.
    saved_head: &'static str,
}

fn head_check_name(check: HeadCheck) -> &'static str {
    match check {
        HeadCheck::Contained => "contained",
        HeadCheck::Cut { .. } => "cut",
        HeadCheck::BrokenBefore { .. } => "broken_before",
        HeadCheck::Rewritten { .. } => "rewritten",
        HeadCheck::BadSignature => "bad_signature",
    }
}

fn set_aside_log(dir: &DataDir) -> anyhow::Result<()> {
    dir.check_usable()?;
    let keys = NodeKeys::load(dir)
        .context("cannot read the node's identity, which signs the new log's first entry")?;
    let done = set_aside(&dir.audit_log(), &keys.identity, crate::clock::now()?)?;
    println!(
        "kept the damaged audit log, unchanged, as {} ({} entries verified)",
        done.aside.display(),
        done.verified
    );
    println!(
        "started a new audit log at {}: {}",
        dir.audit_log().display(),
        describe_event(&done.first.event)
    );
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

#[cfg(test)]
mod tests {
    use super::narrow;

    #[test]
    fn list_lines_fit_in_100_columns_with_peer_ids_cut() {
        let peer = "12D3KooWDyFFaqyLaCqWvTevvcaJr43kNNjK1o6xXtXy34KTvfCF";
        let line = format!(
            "    12  2026-12-02T15:01:51Z  granted token 0a0b0c0d to {peer}: 2 clips until 2026-12-03"
        );
        let short = narrow(&line, 100);
        assert!(short.chars().count() <= 100, "{short}");
        assert!(
            short.ends_with("to 12D3KooWDyFF…: 2 clips until 2026-12-03"),
            "{short}"
        );
        let longer = format!(
            "     0  2026-12-02T15:01:51Z  request b2e1445f2c4c444d received from unverified requester {peer}: no matching clips, not answered"
        );
        assert_eq!(narrow(&longer, 100).chars().count(), 100);
        let long = format!("{} {}", "x".repeat(120), peer);
        let cut = narrow(&long, 100);
        assert_eq!(cut.chars().count(), 100);
        assert!(cut.ends_with('…'));
        assert_eq!(narrow("short line", 100), "short line");
    }
}
