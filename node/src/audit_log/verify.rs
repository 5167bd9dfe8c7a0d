//! `porchlight audit verify`: the full check of a log file against the node's key
//! (spec/wire.md#audit-log-file, "Verifying").
//!
//! Every record in order: its length, its encoding, its hash, its signature under the node's
//! PeerId, and its place in the chain (seq counts from 0, each links to the one before, time
//! never goes backwards). The first record that fails is where the log is broken; nothing
//! after it is checked, since nothing after it can be trusted. A torn final record is
//! reported apart: a crash mid-append, which the node cuts off when it next opens the log.

use std::io::BufReader;
use std::path::Path;

use porchlight_core::AuditEntry;
use porchlight_protocol::PeerId;
use serde::Serialize;

use super::{
    AuditLogError, FrameEnd, FrameReader, Framed, RecordProblem, TornTail, check_frame, io_error,
    open_for_reading,
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
            Framed::End(FrameEnd::BadLength { offset, len }) => {
                report.failure = Some(VerifyFailure {
                    index: report.verified,
                    offset,
                    seq: None,
                    problem: RecordProblem::BadLength { len },
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
