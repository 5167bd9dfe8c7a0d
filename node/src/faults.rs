//! Injected disk faults: the seam that lets tests make the audit log and the consent state
//! fail to write, so that what the node does then (fail closed, recover) can be tested
//! without filling a real disk at exactly the right moment.
//!
//! Debug builds only. A test points `PORCHLIGHT_FAULTS_FILE` at a file of its own; while
//! that file names a [`FaultPoint`] on a line of its own (`audit-append`, `state-save`),
//! every write at that point fails with `ENOSPC` (`StorageFull`) before touching the disk.
//! The file is read at every check, so a test can start and stop a fault while the daemon
//! runs. In a release build [`check`] is a no-op the optimizer removes: no environment
//! variable can make a shipped node drop a write, and none can make one skip a write
//! either, since a fault only ever refuses.

use std::io;

/// The environment variable naming the fault file.
pub const FAULTS_FILE_ENV: &str = "PORCHLIGHT_FAULTS_FILE";

/// Where a write can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// Appending records to `audit.log`.
    AuditAppend,
    /// Writing `consent-state.json`.
    StateSave,
}

impl FaultPoint {
    /// The line that turns this fault on in the fault file.
    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::AuditAppend => "audit-append",
            FaultPoint::StateSave => "state-save",
        }
    }
}

/// `Err(StorageFull)` while the fault file names `point`; `Ok(())` otherwise, always in a
/// release build.
pub fn check(point: FaultPoint) -> io::Result<()> {
    if cfg!(debug_assertions) && active(point) {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("injected fault: {}", point.name()),
        ));
    }
    Ok(())
}

fn active(point: FaultPoint) -> bool {
    let Some(path) = std::env::var_os(FAULTS_FILE_ENV) else {
        return false;
    };
    std::fs::read_to_string(path).is_ok_and(|text| listed(&text, point))
}

/// Whether the fault file's text turns `point` on: a line that is its name alone.
fn listed(text: &str, point: FaultPoint) -> bool {
    text.lines().any(|line| line.trim() == point.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_on_only_while_a_line_names_it() {
        assert!(listed("state-save
", FaultPoint::StateSave));
        assert!(listed("audit-append
  state-save  
", FaultPoint::StateSave));
        assert!(!listed("state-save
", FaultPoint::AuditAppend));
        assert!(!listed("", FaultPoint::AuditAppend));
        assert!(!listed("# audit-append
audit-append-later
", FaultPoint::AuditAppend));
    }

    #[test]
    fn without_the_variable_nothing_fails() {
        // The test binary never sets the variable (edition 2024 makes set_var unsafe, and
        // this crate forbids unsafe), so every check passes.
        assert!(std::env::var_os(FAULTS_FILE_ENV).is_none());
        assert!(check(FaultPoint::AuditAppend).is_ok());
        assert!(check(FaultPoint::StateSave).is_ok());
    }
}
