//! The node's durable, signed audit log: `audit.log` in the data dir
//! (spec/wire.md#audit-log-file).
//!
//! The core builds the hash-chained entries ([`porchlight_core::AuditEntry`]) and emits each as
//! `Output::Audit`; this shell signs the entry's hash with the node's identity key
//! (spec/crypto.md#audit-signatures) and appends `length || entry || hash || signature`,
//! flushed to disk, before the daemon acts on the event it records. The daemon's part:
//!
//! ```text
//! let mut log = AuditLog::open(dir.audit_log())?;          // learns where the chain ends
//! if let Some(last) = log.last_entry() { node.resume_audit(last)?; }
//! // the Output::Audit entries one step of the core produced, all or none:
//! log.append_all(&entries, &identity)?;
//! ```
//!
//! Reading needs no daemon: [`read_all`] and [`verify`] take a path, and
//! [`TransparencyReport`] summarizes what the records say. Open checks every record's length,
//! encoding, hash and chain link, which is cheap, but not its signature: an Ed25519 check per
//! entry would slow every start as the log grows, and [`verify`] checks them all. A torn
//! final record (a crash mid-append) is cut off at open and reported, because it is an
//! accident, not tampering; any other damage stops the open, so the node never extends a log
//! it cannot vouch for. The length in front of a record is signed by nothing, so "the file
//! ends before the length says" is not trusted to mean a crash: only a prefix of the one
//! record the entry itself describes is a torn tail (`check_torn_tail`). Otherwise cutting
//! would let one edited length make the node destroy every record after it. The node never
//! cuts or replaces a damaged log; the owner sets it aside (`set_aside`).
//!
//! - `verify`: the full check behind `porchlight audit verify`, and the signed head kept
//!   elsewhere (`audit head`, `audit verify --head`).
//! - `set_aside`: `porchlight audit set-aside`, the owner's way past a damaged log.
//! - `report`: the transparency report behind `porchlight audit report`.
//! - `view`: JSON mirrors of entries (the core knows no JSON) and the human lines of
//!   `porchlight audit list`.

mod report;
mod set_aside;
mod verify;
mod view;

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use fs2::FileExt;
use porchlight_core::audit::{AUDIT_ENTRY_DOMAIN, MAX_CANONICAL_LEN, canonical_len_at_start};
use porchlight_core::{AuditDecodeError, AuditEntry, AuditError, check_entry};
use porchlight_protocol::{CryptoError, PeerId, SigningIdentity};
use thiserror::Error;

pub use report::{
    ActiveGrant, OutcomeCounts, Releases, RequesterSide, RequestsReceived, TransparencyReport,
};
pub use set_aside::{SetAside, set_aside};
pub use verify::{
    HeadCheck, SignedHead, SignedHeadView, VerifyFailure, VerifyFailureView, VerifyReport,
    VerifyView, check_head, signed_head, verify,
};
pub use view::{AuditEventView, AuditRecordView, describe_event, list_line};

/// The log's file name in the data dir.
pub const AUDIT_LOG_FILE: &str = "audit.log";

/// Bytes of the length prefix in front of each record.
const LENGTH_PREFIX_LEN: usize = 4;
/// Bytes after the entry: its SHA-256 hash and the node's Ed25519 signature.
const TRAILER_LEN: usize = 32 + 64;
/// The fixed part of an entry: domain, seq, at, prev_hash and the event tag.
const MIN_ENTRY_LEN: usize = AUDIT_ENTRY_DOMAIN.len() + 8 + 8 + 32 + 1;
/// Smallest value of a record's length field (spec/wire.md#audit-log-file).
pub const MIN_RECORD_LEN: usize = MIN_ENTRY_LEN + TRAILER_LEN;
/// Largest value of a record's length field: the longest entry and its trailer.
pub const MAX_RECORD_LEN: usize = MAX_CANONICAL_LEN + TRAILER_LEN;

/// One record of the log: an entry and the node's signature over its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAuditRecord {
    pub entry: AuditEntry,
    pub signature: [u8; 64],
}

impl SignedAuditRecord {
    /// Signs `entry`'s hash with the node's identity key.
    pub fn sign(entry: AuditEntry, identity: &SigningIdentity) -> SignedAuditRecord {
        let signature = identity.sign_audit_entry(&entry.hash);
        SignedAuditRecord { entry, signature }
    }

    /// The record as it is stored: `length || entry || hash || signature`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let entry = self.entry.to_canonical_bytes();
        // An entry the core built is at most MAX_CANONICAL_LEN bytes, far below u32::MAX.
        let length = u32::try_from(entry.len() + TRAILER_LEN).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(LENGTH_PREFIX_LEN + entry.len() + TRAILER_LEN);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&entry);
        out.extend_from_slice(&self.entry.hash);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Checks the signature under `node`'s key (spec/crypto.md#audit-signatures).
    pub fn verify_signature(&self, node: &PeerId) -> Result<(), CryptoError> {
        node.verify_audit_entry(&self.entry.hash, &self.signature)
    }
}

/// Why one record of a log is not trustworthy. Each names the kind of damage the check
/// catches; the first failing record is where the log is broken.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecordProblem {
    #[error(
        "its length field says {len} bytes, outside {MIN_RECORD_LEN}..={MAX_RECORD_LEN} (damaged, or not an audit log)"
    )]
    BadLength { len: u32 },
    #[error("it is not a valid entry ({0})")]
    Undecodable(AuditDecodeError),
    #[error("its stored hash does not match its content (edited)")]
    HashMismatch,
    #[error(
        "its signature does not verify under this node's key (forged, or written by another node)"
    )]
    BadSignature,
    #[error("it has seq {seq} and does not start the chain (the first entries were removed)")]
    NotTheStart { seq: u64 },
    #[error(
        "it has seq {found} where seq {expected} belongs (an entry was removed, inserted or moved)"
    )]
    SeqGap { expected: u64, found: u64 },
    #[error(
        "it does not link to the entry before it (an entry was removed, inserted or reordered)"
    )]
    BrokenLink,
    #[error("it is dated before the entry before it")]
    TimeWentBackwards,
    #[error(
        "the file ends inside it, and its length field says {len} bytes where its entry makes a {actual}-byte record (the length was edited: this is not a torn write, and the records it hides are still in the file)"
    )]
    LengthMismatch { len: u32, actual: usize },
    #[error(
        "the file ends inside it, yet another entry starts inside it at byte {at} (not a torn write: a length was edited to hide the records after it)"
    )]
    RecordInTail { at: u64 },
    #[error(
        "the file ends inside it, and its bytes are not the start of an entry ({0}), so it is not a torn write (damaged)"
    )]
    NotATornRecord(AuditDecodeError),
}

impl RecordProblem {
    /// A short stable name for JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            RecordProblem::BadLength { .. } => "bad_length",
            RecordProblem::Undecodable(_) => "undecodable",
            RecordProblem::HashMismatch => "hash_mismatch",
            RecordProblem::BadSignature => "bad_signature",
            RecordProblem::NotTheStart { .. } => "not_the_start",
            RecordProblem::SeqGap { .. } => "seq_gap",
            RecordProblem::BrokenLink => "broken_link",
            RecordProblem::TimeWentBackwards => "time_went_backwards",
            RecordProblem::LengthMismatch { .. } => "length_mismatch",
            RecordProblem::RecordInTail { .. } => "record_in_tail",
            RecordProblem::NotATornRecord(_) => "not_a_torn_record",
        }
    }

    fn from_chain(error: AuditError) -> RecordProblem {
        match error {
            AuditError::BadHash { .. } => RecordProblem::HashMismatch,
            AuditError::BadStart { seq, .. } => RecordProblem::NotTheStart { seq },
            AuditError::SeqGap {
                expected, found, ..
            } => RecordProblem::SeqGap { expected, found },
            AuditError::TimeWentBackwards { .. } => RecordProblem::TimeWentBackwards,
            // BrokenLink, and any check the core adds later: the entry does not follow.
            _ => RecordProblem::BrokenLink,
        }
    }
}

/// What went wrong opening, reading or appending to a log.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuditLogError {
    /// The file system refused.
    #[error("could not {action} audit log {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another process holds the log open for appending.
    #[error(
        "audit log {} is in use; is another porchlight node running on this data dir?",
        path.display()
    )]
    Locked {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// There is no log file (yet).
    #[error(
        "no audit log at {}: this node has not recorded anything yet (the node creates it)",
        path.display()
    )]
    Missing { path: PathBuf },
    /// A record before the end is malformed: the node will not extend the log.
    #[error(
        "audit log {} is damaged at entry {index} (byte {offset}): {problem}; the node will neither add to it nor cut it. Run `porchlight audit verify` for details, keep a copy of the file, then `porchlight audit set-aside` to keep it under a dated name and start a new log",
        path.display()
    )]
    Damaged {
        path: PathBuf,
        index: u64,
        offset: u64,
        problem: RecordProblem,
    },
    /// `porchlight audit set-aside` was asked to set aside a log that verifies.
    #[error(
        "audit log {} is intact ({verified} entries verified): there is nothing to set aside, and the node continues it",
        path.display()
    )]
    Intact { path: PathBuf, verified: u64 },
    /// The caller appended an entry that does not continue the log: the core's chain was not
    /// resumed from [`AuditLog::last_entry`], or entries were skipped.
    #[error(
        "audit entry seq {seq} does not continue audit log {} (next is seq {next_seq}): {problem}; resume the node's audit chain from the log's last entry before it records",
        path.display()
    )]
    DoesNotFollow {
        path: PathBuf,
        seq: u64,
        next_seq: u64,
        problem: RecordProblem,
    },
}

/// An incomplete final record, from a crash mid-append (spec/wire.md#audit-log-file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TornTail {
    /// Where the last whole record ends.
    pub offset: u64,
    /// Bytes after it.
    pub bytes: u64,
}

/// The open log, locked for appending.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// Bytes of whole records: where the next one goes.
    len: u64,
    last: Option<AuditEntry>,
    torn_tail: Option<TornTail>,
    /// A failed append left bytes after `len` that are not yet cut off.
    uncut: bool,
    #[cfg(test)]
    test_faults: TestFaults,
}

impl AuditLog {
    /// Opens (creating, mode 0600) the log at `path` and locks it, reads it to learn where the
    /// chain ends, and cuts off a torn final record (reported by [`AuditLog::torn_tail`] and
    /// logged as a warning).
    ///
    /// # Errors
    ///
    /// [`AuditLogError::Damaged`] if any whole record is malformed, fails its hash or does not
    /// chain (signatures are [`verify`]'s job); [`AuditLogError::Locked`] if another process
    /// has it open; [`AuditLogError::Io`] for the file system. Nothing is changed then.
    pub fn open(path: impl Into<PathBuf>) -> Result<AuditLog, AuditLogError> {
        let path = path.into();
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error("open", &path))?;
        file.try_lock_exclusive()
            .map_err(|source| AuditLogError::Locked {
                path: path.clone(),
                source,
            })?;
        if !existed {
            sync_parent(&path)?;
        }

        let mut frames = FrameReader::new(BufReader::new(&file));
        let mut last: Option<AuditEntry> = None;
        let mut index = 0u64;
        let end = loop {
            match frames.next().map_err(io_error("read", &path))? {
                Framed::Record(frame) => {
                    let record = check_frame(index, &frame, last.as_ref(), None)
                        .map_err(|problem| damaged(&path, index, frame.offset, problem))?;
                    last = Some(record.entry);
                    index += 1;
                }
                Framed::End(end) => break end,
            }
        };
        let (len, torn_tail) = match end {
            FrameEnd::Clean { offset } => (offset, None),
            FrameEnd::Torn(torn) => {
                file.set_len(torn.offset)
                    .and_then(|()| file.sync_all())
                    .map_err(io_error("cut the torn tail of", &path))?;
                tracing::warn!(
                    path = %path.display(),
                    offset = torn.offset,
                    bytes = torn.bytes,
                    "audit log ended in a torn record (a crash while appending); cut it off"
                );
                (torn.offset, Some(torn))
            }
            FrameEnd::Damaged { offset, problem } => {
                return Err(damaged(&path, index, offset, problem));
            }
        };
        Ok(AuditLog {
            path,
            file,
            len,
            last,
            torn_tail,
            uncut: false,
            #[cfg(test)]
            test_faults: TestFaults::default(),
        })
    }

    /// The last entry of the log, to resume the core's chain from
    /// (`Node::resume_audit`); `None` for an empty log.
    pub fn last_entry(&self) -> Option<&AuditEntry> {
        self.last.as_ref()
    }

    /// The seq the next appended entry must carry.
    pub fn next_seq(&self) -> u64 {
        self.last
            .as_ref()
            .map_or(0, |last| last.seq.saturating_add(1))
    }

    /// The torn record cut off at open, if there was one.
    pub fn torn_tail(&self) -> Option<TornTail> {
        self.torn_tail
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Signs `entry`'s hash and appends the record, flushed to disk: [`AuditLog::append_all`]
    /// of one entry.
    ///
    /// # Errors
    ///
    /// As [`AuditLog::append_all`].
    pub fn append(
        &mut self,
        entry: &AuditEntry,
        identity: &SigningIdentity,
    ) -> Result<(), AuditLogError> {
        self.append_all(std::slice::from_ref(entry), identity)
    }

    /// Signs each entry's hash and appends all the records at once, so that either all of
    /// them are on disk when this returns (one `write_all`, then `sync_data`) or none are.
    /// The batch must continue the log: the first entry follows the log's last, each one
    /// after follows the one before (the next seq, linked to its hash, not dated before it).
    ///
    /// # Errors
    ///
    /// [`AuditLogError::DoesNotFollow`] for a batch that does not continue the log (nothing
    /// is written); [`AuditLogError::Io`] if the write or flush fails, after cutting the file
    /// back to where it was before the batch. If even that cut fails, the log remembers it
    /// and retries it before the next append, refusing to append while it fails, so a
    /// half-written batch never stays in front of a new record.
    pub fn append_all(
        &mut self,
        entries: &[AuditEntry],
        identity: &SigningIdentity,
    ) -> Result<(), AuditLogError> {
        self.cut_failed_batch()?;
        let mut previous = self.last.as_ref();
        for entry in entries {
            let next_seq = previous.map_or(0, |last| last.seq.saturating_add(1));
            let index = usize::try_from(next_seq).unwrap_or(usize::MAX);
            check_entry(index, previous, entry).map_err(|error| AuditLogError::DoesNotFollow {
                path: self.path.clone(),
                seq: entry.seq,
                next_seq,
                problem: RecordProblem::from_chain(error),
            })?;
            previous = Some(entry);
        }
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        for entry in entries {
            bytes.extend_from_slice(&SignedAuditRecord::sign(entry.clone(), identity).to_bytes());
        }
        let written = crate::faults::check(crate::faults::FaultPoint::AuditAppend)
            .and_then(|()| self.write_batch(&bytes))
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            // Leave no part of the batch behind: the caller acts as if none of it happened.
            self.uncut = true;
            if let Err(cut) = self.cut_failed_batch() {
                tracing::error!(error = %cut, "audit log: could not cut a failed append off; the next append retries");
            }
            return Err(AuditLogError::Io {
                action: "append to",
                path: self.path.clone(),
                source,
            });
        }
        self.len += bytes.len() as u64;
        self.last = Some(last.clone());
        Ok(())
    }

    fn write_batch(&mut self, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if let Some(fail) = self.test_faults.write_after.take() {
            // Write part of the batch for real, then fail, as a full disk does.
            (&self.file).write_all(&bytes[..fail.min(bytes.len())])?;
            return Err(io::Error::new(ErrorKind::StorageFull, "test: disk full"));
        }
        (&self.file).write_all(bytes)
    }

    /// Cuts the file back to its last whole record after a failed append, if that has not
    /// yet succeeded.
    fn cut_failed_batch(&mut self) -> Result<(), AuditLogError> {
        if !self.uncut {
            return Ok(());
        }
        #[cfg(test)]
        let cut = if self.test_faults.failing_cuts > 0 {
            self.test_faults.failing_cuts -= 1;
            Err(io::Error::other("test: cut refused"))
        } else {
            self.file.set_len(self.len)
        };
        #[cfg(not(test))]
        let cut = self.file.set_len(self.len);
        cut.and_then(|()| self.file.sync_all())
            .map_err(io_error("cut a failed append off", &self.path))?;
        self.uncut = false;
        Ok(())
    }
}

/// Faults a unit test can inject into one [`AuditLog`] (edition 2024 makes `set_var` unsafe
/// and the crate forbids unsafe, so the environment seam of [`crate::faults`] is out of
/// reach of unit tests).
#[cfg(test)]
#[derive(Debug, Default)]
struct TestFaults {
    /// Fail the next batch write after writing this many of its bytes.
    write_after: Option<usize>,
    /// Fail this many cuts of a failed batch.
    failing_cuts: u32,
}

/// Reads every whole record of the log at `path`, checking each one's encoding and hash but
/// not its signature or its place in the chain (that is [`verify`]). A torn final record is
/// left out.
///
/// # Errors
///
/// [`AuditLogError::Missing`] if there is no file, [`AuditLogError::Damaged`] at the first
/// record that does not decode or whose hash does not match, [`AuditLogError::Io`] otherwise.
pub fn read_all(path: &Path) -> Result<Vec<SignedAuditRecord>, AuditLogError> {
    let file = open_for_reading(path)?;
    let mut frames = FrameReader::new(BufReader::new(file));
    let mut records = Vec::new();
    loop {
        match frames.next().map_err(io_error("read", path))? {
            Framed::Record(frame) => {
                let index = records.len() as u64;
                let record = decode_frame(&frame)
                    .map_err(|problem| damaged(path, index, frame.offset, problem))?;
                records.push(record);
            }
            Framed::End(FrameEnd::Damaged { offset, problem }) => {
                let index = records.len() as u64;
                return Err(damaged(path, index, offset, problem));
            }
            Framed::End(FrameEnd::Clean { .. } | FrameEnd::Torn(_)) => return Ok(records),
        }
    }
}

fn open_for_reading(path: &Path) -> Result<File, AuditLogError> {
    File::open(path).map_err(|source| match source.kind() {
        ErrorKind::NotFound => AuditLogError::Missing {
            path: path.to_owned(),
        },
        _ => AuditLogError::Io {
            action: "open",
            path: path.to_owned(),
            source,
        },
    })
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AuditLogError {
    let path = path.to_owned();
    move |source| AuditLogError::Io {
        action,
        path,
        source,
    }
}

fn damaged(path: &Path, index: u64, offset: u64, problem: RecordProblem) -> AuditLogError {
    AuditLogError::Damaged {
        path: path.to_owned(),
        index,
        offset,
        problem,
    }
}

/// Makes a new file's directory entry durable.
fn sync_parent(path: &Path) -> Result<(), AuditLogError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("flush the directory of", path))
}

/// One whole record as framed, not yet checked.
struct Frame {
    /// Where its length prefix starts.
    offset: u64,
    entry: Vec<u8>,
    hash: [u8; 32],
    signature: [u8; 64],
}

/// How the records of a file end.
enum FrameEnd {
    /// After a whole record (or at 0): `offset` is the file's length.
    Clean { offset: u64 },
    /// In a torn write: a prefix of one record, or zeros, shorter than one record
    /// ([`check_torn_tail`]).
    Torn(TornTail),
    /// In bytes that are not a torn write (a length field out of bounds, or an incomplete
    /// "record" that is not a prefix of one): damage, which nobody may cut.
    Damaged { offset: u64, problem: RecordProblem },
}

enum Framed {
    Record(Frame),
    End(FrameEnd),
}

/// Splits a log into records by their length prefixes, one at a time, never holding more
/// than one record and never trusting a length before checking its bounds.
struct FrameReader<R> {
    reader: R,
    offset: u64,
}

impl<R: Read> FrameReader<R> {
    fn new(reader: R) -> FrameReader<R> {
        FrameReader { reader, offset: 0 }
    }

    fn next(&mut self) -> io::Result<Framed> {
        let start = self.offset;
        let mut prefix = [0u8; LENGTH_PREFIX_LEN];
        let got = read_full(&mut self.reader, &mut prefix)?;
        if got == 0 {
            return Ok(Framed::End(FrameEnd::Clean { offset: start }));
        }
        if got < LENGTH_PREFIX_LEN {
            // A length prefix cut short: nothing of an entry reached the file.
            return Ok(self.torn(start, got as u64));
        }
        let len = u32::from_be_bytes(prefix);
        let in_bounds =
            usize::try_from(len).is_ok_and(|len| (MIN_RECORD_LEN..=MAX_RECORD_LEN).contains(&len));
        if !in_bounds {
            if len == 0 {
                // Zeros where a record should start: a size update that reached the disk
                // before its data did, if everything after is zero too and there is less
                // of it than one record (read one byte past that, to know).
                let mut rest = Vec::new();
                (&mut self.reader)
                    .take(MAX_RECORD_LEN as u64)
                    .read_to_end(&mut rest)?;
                if rest.len() < MAX_RECORD_LEN && rest.iter().all(|&byte| byte == 0) {
                    return Ok(self.torn(start, (LENGTH_PREFIX_LEN + rest.len()) as u64));
                }
            }
            return Ok(Framed::End(FrameEnd::Damaged {
                offset: start,
                problem: RecordProblem::BadLength { len },
            }));
        }
        let len = len as usize;
        let mut body = vec![0u8; len];
        let got = read_full(&mut self.reader, &mut body)?;
        if got < len {
            // The file ends inside this record: a torn write only if what is there is the
            // start of the one record its length field announces.
            let bytes = (LENGTH_PREFIX_LEN + got) as u64;
            return Ok(match check_torn_tail(start, len, &body[..got]) {
                Ok(()) => self.torn(start, bytes),
                Err(problem) => Framed::End(FrameEnd::Damaged {
                    offset: start,
                    problem,
                }),
            });
        }
        self.offset = start + (LENGTH_PREFIX_LEN + len) as u64;
        let signature_at = len - 64;
        let hash_at = signature_at - 32;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&body[hash_at..signature_at]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&body[signature_at..]);
        body.truncate(hash_at);
        Ok(Framed::Record(Frame {
            offset: start,
            entry: body,
            hash,
            signature,
        }))
    }

    fn torn(&self, offset: u64, bytes: u64) -> Framed {
        Framed::End(FrameEnd::Torn(TornTail { offset, bytes }))
    }
}

/// Whether an incomplete final record, whose length field says `len` (in bounds) and of
/// which only `body` (fewer than `len` bytes) follows the prefix at `offset`, is what a
/// crash mid-append leaves: a prefix of that one record, perhaps followed by zeros where
/// blocks were never written (spec/wire.md#audit-log-file, "Torn tail").
///
/// The length field is covered by neither the hash nor the signature, so it is not trusted:
/// the entry's own layout says how long the record is ([`canonical_len_at_start`]). A tail
/// that holds a whole entry whose record length differs from the field, a whole entry whose
/// stored hash does not match, bytes that are not the start of an entry, or a second entry
/// domain label (a later record start) is damage, never a torn tail: cutting it would
/// destroy records an edit to one length field had hidden.
fn check_torn_tail(offset: u64, len: usize, body: &[u8]) -> Result<(), RecordProblem> {
    let written_len = body
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |at| at + 1);
    let written = &body[..written_len];
    let label = written.len().min(AUDIT_ENTRY_DOMAIN.len());
    if written[..label] != AUDIT_ENTRY_DOMAIN[..label] {
        return Err(RecordProblem::NotATornRecord(AuditDecodeError::WrongDomain));
    }
    let decoded = canonical_len_at_start(written);
    if let Ok(entry_len) = decoded {
        let actual = entry_len + TRAILER_LEN;
        if actual != len {
            return Err(RecordProblem::LengthMismatch {
                len: u32::try_from(len).unwrap_or(u32::MAX),
                actual,
            });
        }
        // The whole entry is there: what there is of its hash must be its hash.
        let entry = AuditEntry::from_canonical_bytes(&written[..entry_len])
            .map_err(RecordProblem::NotATornRecord)?;
        let stored = &written[entry_len..written.len().min(entry_len + 32)];
        if entry.hash[..stored.len()] != *stored {
            return Err(RecordProblem::HashMismatch);
        }
    }
    // A torn write holds one record start, at its front; a second label is a later record
    // (checked before the decode error, which a record read as the end of another causes).
    if let Some(at) = written
        .get(1..)
        .unwrap_or_default()
        .windows(AUDIT_ENTRY_DOMAIN.len())
        .position(|window| window == AUDIT_ENTRY_DOMAIN)
    {
        return Err(RecordProblem::RecordInTail {
            at: offset + (LENGTH_PREFIX_LEN + 1 + at) as u64,
        });
    }
    match decoded {
        Ok(_) | Err(AuditDecodeError::Truncated) => Ok(()),
        Err(error) => Err(RecordProblem::NotATornRecord(error)),
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Decodes a frame's entry and checks its stored hash.
fn decode_frame(frame: &Frame) -> Result<SignedAuditRecord, RecordProblem> {
    let entry =
        AuditEntry::from_canonical_bytes(&frame.entry).map_err(RecordProblem::Undecodable)?;
    if entry.hash != frame.hash {
        return Err(RecordProblem::HashMismatch);
    }
    Ok(SignedAuditRecord {
        entry,
        signature: frame.signature,
    })
}

/// Checks a frame as record `index` of a log read in order: it decodes, its hash matches,
/// its signature verifies under `node` (when given), and it follows `previous`.
fn check_frame(
    index: u64,
    frame: &Frame,
    previous: Option<&AuditEntry>,
    node: Option<&PeerId>,
) -> Result<SignedAuditRecord, RecordProblem> {
    let record = decode_frame(frame)?;
    if let Some(node) = node {
        record
            .verify_signature(node)
            .map_err(|_| RecordProblem::BadSignature)?;
    }
    let index = usize::try_from(index).unwrap_or(usize::MAX);
    check_entry(index, previous, &record.entry).map_err(RecordProblem::from_chain)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use porchlight_core::audit::{AuditEvent, GENESIS_HASH};
    use porchlight_protocol::{RequestId, Timestamp};

    use super::*;

    fn identity() -> SigningIdentity {
        SigningIdentity::from_secret_bytes(&[1; 32])
    }

    /// `n` denials continuing `last` (or starting the chain).
    fn chain(last: Option<&AuditEntry>, n: u8) -> Vec<AuditEntry> {
        let mut previous = last.cloned();
        (0..n)
            .map(|i| {
                let (seq, prev_hash) = previous
                    .as_ref()
                    .map_or((0, GENESIS_HASH), |last| (last.seq + 1, last.hash));
                let at = Timestamp::from_unix_millis(1_000 + seq);
                let event = AuditEvent::Denied {
                    request_id: RequestId::from_bytes([i; 32]),
                    message_sent: true,
                };
                let entry = AuditEntry {
                    seq,
                    at,
                    prev_hash,
                    hash: AuditEntry::compute_hash(seq, at, &prev_hash, &event),
                    event,
                };
                previous = Some(entry.clone());
                entry
            })
            .collect()
    }

    #[test]
    fn a_failed_batch_whose_cut_fails_is_cut_before_anything_else_is_appended() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(AUDIT_LOG_FILE);
        let mut log = AuditLog::open(&path).unwrap();
        log.append_all(&chain(None, 2), &identity()).unwrap();
        let before = std::fs::read(&path).unwrap();
        let batch = chain(log.last_entry(), 3);

        // The disk fills 300 bytes into the batch, and the cut back fails twice.
        log.test_faults = TestFaults {
            write_after: Some(300),
            failing_cuts: 2,
        };
        assert!(matches!(
            log.append_all(&batch, &identity()),
            Err(AuditLogError::Io {
                action: "append to",
                ..
            })
        ));
        let len = |path: &Path| std::fs::metadata(path).unwrap().len();
        assert_eq!(len(&path), before.len() as u64 + 300, "the cut failed");
        assert_eq!(log.next_seq(), 2);

        // While the cut fails, nothing is appended behind the half-written batch.
        assert!(matches!(
            log.append_all(&batch, &identity()),
            Err(AuditLogError::Io {
                action: "cut a failed append off",
                ..
            })
        ));
        assert_eq!(len(&path), before.len() as u64 + 300);

        // The cut works again: first the half batch goes, then the batch goes on whole.
        log.append_all(&batch, &identity()).unwrap();
        assert_eq!(log.next_seq(), 5);
        drop(log);
        let report = verify(&path, &identity().peer_id()).unwrap();
        assert!(report.is_intact() && report.verified == 5, "{report:?}");
        assert_eq!(
            std::fs::read(&path).unwrap()[..before.len()],
            before[..],
            "the records before the batch are untouched"
        );
    }
}
