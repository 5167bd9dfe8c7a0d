//! `porchlight audit set-aside`: the owner's explicit way past a damaged log.
//!
//! The node never cuts or rewrites a damaged log (the damage is the evidence), and never
//! starts a new chain on its own: either would let whoever damaged the log choose what
//! disappears. This is the one way forward, and only on the owner's command: the damaged
//! file is kept whole under a dated name beside it, and `audit.log` becomes a new chain
//! whose first entry ([`AuditEvent::LogSetAside`], tag 15) records how far the old one
//! verified and the hash of its last verified entry, so the new chain points at the old.
//!
//! Crash-safe by order: the dated name is a hard link made first (both names hold the old
//! log), the new log is written and flushed under a temporary name, and only then renamed
//! over `audit.log`. A crash at any step leaves `audit.log` either the damaged log or the new
//! one, never neither.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use fs2::FileExt;
use porchlight_core::audit::GENESIS_HASH;
use porchlight_core::{AuditEntry, AuditEvent};
use porchlight_protocol::{SigningIdentity, Timestamp};

use super::{AuditLog, AuditLogError, io_error, open_for_reading, sync_parent, verify};

/// What [`set_aside`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// Where the damaged log is now kept.
    pub aside: PathBuf,
    /// How many of its entries verified, from the first.
    pub verified: u64,
    /// The first entry of the new log.
    pub first: AuditEntry,
}

/// Keeps the damaged log at `path` under a dated name in the same directory and puts a new
/// log in its place, whose first entry records the old log's verified length and last
/// verified hash, signed by `identity` and dated `now`.
///
/// # Errors
///
/// [`AuditLogError::Intact`] if the log verifies (a torn tail included: the node cuts that
/// itself), [`AuditLogError::Missing`] if there is none, [`AuditLogError::Locked`] if a node
/// has it open, [`AuditLogError::Io`] for the file system. The damaged log is never changed
/// or removed.
pub fn set_aside(
    path: &Path,
    identity: &SigningIdentity,
    now: Timestamp,
) -> Result<SetAside, AuditLogError> {
    let held = open_for_reading(path)?;
    held.try_lock_exclusive()
        .map_err(|source| AuditLogError::Locked {
            path: path.to_owned(),
            source,
        })?;
    let report = verify(path, &identity.peer_id())?;
    if report.is_intact() {
        return Err(AuditLogError::Intact {
            path: path.to_owned(),
            verified: report.verified,
        });
    }
    let aside = aside_path(path, now);
    fs::hard_link(path, &aside).map_err(io_error("keep a dated copy of", path))?;
    sync_parent(&aside)?;

    let last_hash = report.head.as_ref().map_or(GENESIS_HASH, |head| head.hash);
    let event = AuditEvent::LogSetAside {
        verified: report.verified,
        last_hash,
    };
    let first = AuditEntry {
        seq: 0,
        at: now,
        prev_hash: GENESIS_HASH,
        hash: AuditEntry::compute_hash(0, now, &GENESIS_HASH, &event),
        event,
    };
    let fresh = path.with_extension("log.new");
    match fs::remove_file(&fresh) {
        // Left by an earlier attempt that crashed: it holds nothing of the damaged log.
        Ok(()) => {}
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(io_error("remove the unfinished new log beside", path)(err)),
    }
    {
        let mut log = AuditLog::open(&fresh)?;
        log.append(&first, identity)?;
    }
    fs::rename(&fresh, path).map_err(io_error("put the new log in place of", path))?;
    sync_parent(path)?;
    drop(held);
    // The old file is whole under its new name; reopen it to be sure before saying so.
    File::open(&aside).map_err(io_error("reopen the set-aside copy of", path))?;
    Ok(SetAside {
        aside,
        verified: report.verified,
        first,
    })
}

/// `audit.log` -> `audit.log.set-aside-20261202T143700Z`.
fn aside_path(path: &Path, now: Timestamp) -> PathBuf {
    let stamp: String = crate::api::views::rfc3339(now)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".set-aside-{stamp}"));
    path.with_file_name(name)
}
