//! `porchlight audit verify`: the full check of a log file against the node's key
//! (spec/wire.md#audit-log-file, "Verifying").
//!
//! Every record in order: its length, its encoding, its hash, its signature under the node's
//! PeerId, and its place in the chain (seq counts from 0, each links to the one before, time
//! never goes backwards). The first record that fails is where the log is broken; nothing
//! after it is checked, since nothing after it can be trusted. A torn final record is
//! reported apart: a crash mid-append, which the node cuts off when it next opens the log
//! (only a prefix of one record is one, spec/wire.md#audit-torn-tail; a "torn" record that
//! is more is a failure like any other).
//!
//! Removing the newest entries leaves a log that verifies; only a head saved earlier shows
//! it. [`signed_head`] gives the head with the node's signature (`porchlight audit head`),
//! and [`check_head`] says whether a log still holds one (spec/wire.md#audit-head).

use std::io::BufReader;
use std::path::Path;

use porchlight_core::AuditEntry;
use porchlight_protocol::PeerId;
use serde::Serialize;

use porchlight_protocol::Timestamp;
use serde::Deserialize;

use super::{
    AuditLogError, FrameEnd, FrameReader, Framed, RecordProblem, SignedAuditRecord, TornTail,
    check_frame, io_error, open_for_reading,
};

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records that verified, from the first: all of them when the log is intact.
    pub verified: u64,
    /// The last verified entry: the head to note down, so that a later truncation of the
    /// log can be noticed.
    pub head: Option<AuditEntry>,
    /// An incomplete final record after the verified ones (not tampering).
    pub torn_tail: Option<TornTail>,
    /// The first record that failed, if one did.
    pub failure: Option<VerifyFailure>,
}

/// Where and why a log is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    /// The record's position in the file, from 0 (its seq, in an intact log).
    pub index: u64,
    /// The byte offset of its length prefix.
    pub offset: u64,
    /// The seq it claims, when it decodes.
    pub seq: Option<u64>,
    pub problem: RecordProblem,
}

impl VerifyReport {
    /// Whether every whole record verified.
    pub fn is_intact(&self) -> bool {
        self.failure.is_none()
    }
}

/// Verifies the log at `path` against `node`'s key. Problems in the log are the report's
/// business; an `Err` means the log could not be read at all.
///
/// # Errors
///
/// [`AuditLogError::Missing`] if there is no file, [`AuditLogError::Io`] if it cannot be read.
pub fn verify(path: &Path, node: &PeerId) -> Result<VerifyReport, AuditLogError> {
    verify_visiting(path, node, |_| {})
}

/// [`verify`], handing each record that verifies to `visit`, in order.
fn verify_visiting(
    path: &Path,
    node: &PeerId,
    mut visit: impl FnMut(&SignedAuditRecord),
) -> Result<VerifyReport, AuditLogError> {
    let file = open_for_reading(path)?;
    let mut frames = FrameReader::new(BufReader::new(file));
    let mut report = VerifyReport {
        verified: 0,
        head: None,
        torn_tail: None,
        failure: None,
    };
    loop {
        match frames.next().map_err(io_error("read", path))? {
            Framed::Record(frame) => {
                let index = report.verified;
                match check_frame(index, &frame, report.head.as_ref(), Some(node)) {
                    Ok(record) => {
                        visit(&record);
                        report.head = Some(record.entry);
                        report.verified += 1;
                    }
                    Err(problem) => {
                        let seq = AuditEntry::from_canonical_bytes(&frame.entry)
                            .ok()
                            .map(|entry| entry.seq);
                        report.failure = Some(VerifyFailure {
                            index,
                            offset: frame.offset,
                            seq,
                            problem,
                        });
                        return Ok(report);
                    }
                }
            }
            Framed::End(FrameEnd::Clean { .. }) => return Ok(report),
            Framed::End(FrameEnd::Torn(torn)) => {
                report.torn_tail = Some(torn);
                return Ok(report);
            }
            Framed::End(FrameEnd::Damaged { offset, problem }) => {
                report.failure = Some(VerifyFailure {
                    index: report.verified,
                    offset,
                    seq: None,
                    problem,
                });
                return Ok(report);
            }
        }
    }
}

/// The JSON form of a [`VerifyReport`] (`porchlight audit verify --json`).
#[derive(Debug, Clone, Serialize)]
pub struct VerifyView {
    pub intact: bool,
    pub verified: u64,
    pub head_seq: Option<u64>,
    pub head_hash: Option<String>,
    pub torn_tail: Option<TornTail>,
    pub failure: Option<VerifyFailureView>,
}

/// The JSON form of a [`VerifyFailure`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyFailureView {
    pub index: u64,
    pub offset: u64,
    pub seq: Option<u64>,
    /// A stable name for the kind of damage ([`RecordProblem::code`]).
    pub problem: &'static str,
    pub detail: String,
}

impl VerifyReport {
    pub fn to_view(&self) -> VerifyView {
        VerifyView {
            intact: self.is_intact(),
            verified: self.verified,
            head_seq: self.head.as_ref().map(|head| head.seq),
            head_hash: self.head.as_ref().map(|head| hex::encode(head.hash)),
            torn_tail: self.torn_tail,
            failure: self.failure.as_ref().map(|failure| VerifyFailureView {
                index: failure.index,
                offset: failure.offset,
                seq: failure.seq,
                problem: failure.problem.code(),
                detail: failure.problem.to_string(),
            }),
        }
    }
}

/// The log's last entry as the node signed it: what `porchlight audit head` prints so that
/// someone holding the node's PeerId can later check that the log still contains it
/// (`porchlight audit verify --head`), which is how a log cut short is noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    pub node: PeerId,
    pub seq: u64,
    pub hash: [u8; 32],
    pub at: Timestamp,
    /// The node's signature over `hash` (spec/crypto.md#audit-signatures).
    pub signature: [u8; 64],
}

/// The JSON form of a [`SignedHead`] (`porchlight audit head --json`), read back by
/// `porchlight audit verify --head FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHeadView {
    pub node: String,
    pub seq: u64,
    /// Hex.
    pub hash: String,
    /// RFC 3339, for people; `at_unix_ms` is the exact time.
    pub at: String,
    pub at_unix_ms: u64,
    /// Hex.
    pub signature: String,
}

impl SignedHead {
    pub fn to_view(&self) -> SignedHeadView {
        SignedHeadView {
            node: self.node.to_string(),
            seq: self.seq,
            hash: hex::encode(self.hash),
            at: crate::api::views::rfc3339(self.at),
            at_unix_ms: self.at.as_unix_millis(),
            signature: hex::encode(self.signature),
        }
    }

    /// Checks the fields' forms (not the signature: that is [`check_head`]'s).
    pub fn from_view(view: &SignedHeadView) -> Result<SignedHead, String> {
        let node = view
            .node
            .parse::<PeerId>()
            .map_err(|_| format!("node {:?} is not a peer id", view.node))?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&view.hash, &mut hash)
            .map_err(|_| format!("hash {:?} is not 32 bytes of hex", view.hash))?;
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&view.signature, &mut signature)
            .map_err(|_| format!("signature {:?} is not 64 bytes of hex", view.signature))?;
        Ok(SignedHead {
            node,
            seq: view.seq,
            hash,
            at: Timestamp::from_unix_millis(view.at_unix_ms),
            signature,
        })
    }
}

/// Verifies the log at `path` as [`verify`] does and returns the signed head of its
/// verified part (`None` when no entry verified).
///
/// # Errors
///
/// As [`verify`].
pub fn signed_head(
    path: &Path,
    node: &PeerId,
) -> Result<(VerifyReport, Option<SignedHead>), AuditLogError> {
    let mut last = None;
    let report = verify_visiting(path, node, |record| last = Some(record.signature))?;
    let head = report
        .head
        .as_ref()
        .zip(last)
        .map(|(entry, signature)| SignedHead {
            node: *node,
            seq: entry.seq,
            hash: entry.hash,
            at: entry.at,
            signature,
        });
    Ok((report, head))
}

/// Whether a log still holds a head saved earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadCheck {
    /// The entry at the head's seq verified and has the head's hash.
    Contained,
    /// The log ends, intact, before the head's seq: it was cut short after the head was
    /// saved.
    Cut { entries: u64 },
    /// The log is broken before the head's seq, so whether it held the head is unknown
    /// (the report's failure says where).
    BrokenBefore { verified: u64 },
    /// The entry at the head's seq is another entry: the log was rewritten from there (or
    /// before).
    Rewritten { found_hash: [u8; 32] },
    /// The saved head's signature does not verify under the node's key: it is not a head
    /// this node signed.
    BadSignature,
}

/// Verifies the log at `path` as [`verify`] does and checks that it still contains `head`
/// (same seq, same hash) and that `head`'s signature verifies under `node`.
///
/// # Errors
///
/// As [`verify`].
pub fn check_head(
    path: &Path,
    node: &PeerId,
    head: &SignedHead,
) -> Result<(VerifyReport, HeadCheck), AuditLogError> {
    let mut found = None;
    let report = verify_visiting(path, node, |record| {
        if record.entry.seq == head.seq {
            found = Some(record.entry.hash);
        }
    })?;
    let check = if node
        .verify_audit_entry(&head.hash, &head.signature)
        .is_err()
    {
        HeadCheck::BadSignature
    } else {
        match found {
            Some(hash) if hash == head.hash => HeadCheck::Contained,
            Some(found_hash) => HeadCheck::Rewritten { found_hash },
            None if report.is_intact() => HeadCheck::Cut {
                entries: report.verified,
            },
            None => HeadCheck::BrokenBefore {
                verified: report.verified,
            },
        }
    };
    Ok((report, check))
}
