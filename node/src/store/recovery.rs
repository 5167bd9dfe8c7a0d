//! Recovery: bringing the index back in line with the clip files, which are the truth.
//!
//! Runs on every [`Store::open`](super::Store::open) and, over an emptied index, as
//! [`Store::rebuild`](super::Store::rebuild). What it does with each thing it finds:
//!
//! | found | meaning | action |
//! |---|---|---|
//! | `*.partial` (on open) | a write interrupted before its rename: ciphertext, no key | removed |
//! | an index entry whose file is gone | the file was deleted (or the entry outlived a shred) | entry dropped |
//! | an index entry whose file does not match it (size, header, name) or does not parse | the file changed | entry dropped; the file is then treated as unindexed |
//! | a clip file whose wrapped key is all zero | a deletion interrupted after the shred | deletion finished (file removed) |
//! | a clip file without an entry | a write interrupted after its rename, or a lost index | fully verified (unwrap with the vault key, decrypt every chunk, check the clip id against the name), then indexed |
//! | a clip file that fails that verification | damaged or foreign | moved to `quarantine/`, never listed |
//! | a file that cannot be read | a disk problem | left in place, not listed, reported |
//! | anything else | not ours | left alone, reported |
//!
//! Files already indexed are checked cheaply on open (their front is parsed and compared with
//! the record), not decrypted: a clip reaches its final name only after an fsync, so a full
//! check of every clip at every start would cost minutes for nothing. A rebuild verifies
//! every file completely. Holds and grant protections survive both; those of clips that no
//! longer exist are pruned.
//!
//! This module decides nothing about retention and never creates clips; it only reconciles.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use porchlight_protocol::{AgreementSecret, ClipId};
use serde::Serialize;

use super::Paths;
use super::clip_file::{
    self, CLIP_EXTENSION, ClipFilePrefix, FileFault, OpenFailure, PARTIAL_EXTENSION,
};
use super::error::StoreError;
use super::index::{Index, IndexRecord};

/// What recovery (or a rebuild) found and did. Everything in it was also logged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Indexed clips whose files checked out.
    pub clips_ok: usize,
    /// Interrupted writes (`.partial` files) removed.
    pub partials_removed: Vec<PathBuf>,
    /// Index entries dropped.
    pub entries_dropped: Vec<Finding>,
    /// Clip files verified and (re)added to the index.
    pub reindexed: Vec<ClipId>,
    /// Interrupted deletions finished: the key was already erased, the file is now gone.
    pub deletions_finished: Vec<PathBuf>,
    /// Files that failed verification, moved to `quarantine/`.
    pub quarantined: Vec<Quarantined>,
    /// Files that could not be read; left in place and not listed.
    pub unreadable: Vec<Finding>,
    /// Files under `clips/` that are not clip files; left alone.
    pub ignored: Vec<PathBuf>,
    /// Holds and grant protections of clips that no longer exist, removed.
    pub stale_marks_removed: usize,
}

/// A rebuild reports the same things as recovery on open.
pub type RebuildReport = RecoveryReport;

/// Something recovery acted on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A clip id, an index key or a path.
    pub what: String,
    pub reason: String,
}

/// A file moved to quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quarantined {
    pub from: PathBuf,
    pub to: PathBuf,
    pub reason: String,
}

impl RecoveryReport {
    /// Whether the index and the files already agreed: nothing was changed.
    pub fn is_clean(&self) -> bool {
        self.partials_removed.is_empty()
            && self.entries_dropped.is_empty()
            && self.reindexed.is_empty()
            && self.deletions_finished.is_empty()
            && self.quarantined.is_empty()
            && self.unreadable.is_empty()
            && self.stale_marks_removed == 0
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} clips ok, {} reindexed, {} index entries dropped, {} unfinished writes removed, \
             {} deletions finished, {} files quarantined, {} unreadable, {} ignored",
            self.clips_ok,
            self.reindexed.len(),
            self.entries_dropped.len(),
            self.partials_removed.len(),
            self.deletions_finished.len(),
            self.quarantined.len(),
            self.unreadable.len(),
            self.ignored.len(),
        )
    }
}

/// Whether recovery runs at open (no writer can be active: unfinished writes are debris) or
/// as a rebuild of an open store (a `.partial` may be a write in progress: leave it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Open,
    Rebuild,
}

/// Reconciles `index` with the files under `paths.clips`.
pub(crate) fn recover(
    paths: &Paths,
    index: &Index,
    vault: &AgreementSecret,
    mode: Mode,
) -> Result<RecoveryReport, StoreError> {
    let mut report = RecoveryReport::default();
    let mut files = scan(paths, mode, &mut report)?;
    if mode == Mode::Rebuild {
        index.clear_records()?;
    }
    check_entries(paths, index, &mut files, &mut report)?;
    for path in files {
        adopt(paths, index, vault, &path, &mut report)?;
    }
    report.stale_marks_removed = index.prune(None)?;
    index.flush()?;
    Ok(report)
}

/// Lists the clip files under `clips/<camera>/`, removing unfinished writes on open.
fn scan(
    paths: &Paths,
    mode: Mode,
    report: &mut RecoveryReport,
) -> Result<BTreeSet<PathBuf>, StoreError> {
    let mut files = BTreeSet::new();
    for camera_dir in read_dir(&paths.clips)? {
        let Ok(kind) = camera_dir.file_type() else {
            continue;
        };
        let path = camera_dir.path();
        if !kind.is_dir() {
            report.ignored.push(path);
            continue;
        }
        for entry in read_dir(&path)? {
            let path = entry.path();
            let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
            let ext = path.extension().and_then(|ext| ext.to_str());
            match (is_file, ext) {
                (true, Some(PARTIAL_EXTENSION)) if mode == Mode::Open => {
                    match fs::remove_file(&path) {
                        Ok(()) => {
                            tracing::warn!(path = %path.display(), "removed an unfinished clip write (interrupted before it was acknowledged)");
                            report.partials_removed.push(path);
                        }
                        Err(err) => report.unreadable.push(Finding {
                            what: path.display().to_string(),
                            reason: format!("unfinished write that could not be removed: {err}"),
                        }),
                    }
                }
                (true, Some(PARTIAL_EXTENSION)) => {}
                (true, Some(CLIP_EXTENSION)) => {
                    files.insert(path);
                }
                _ => report.ignored.push(path),
            }
        }
    }
    Ok(files)
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| StoreError::io("list", dir, err)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(StoreError::io("list", dir, err)),
    }
}

/// Checks every index entry against its file. Files that match are taken out of `files`.
fn check_entries(
    paths: &Paths,
    index: &Index,
    files: &mut BTreeSet<PathBuf>,
    report: &mut RecoveryReport,
) -> Result<(), StoreError> {
    for entry in index.entries()? {
        let key = entry.key_text();
        let mut drop_entry = |reason: String| -> Result<(), StoreError> {
            tracing::warn!(entry = %key, "dropped an index entry: {reason}");
            index.remove_key(&entry.key)?;
            report.entries_dropped.push(Finding {
                what: key.clone(),
                reason,
            });
            Ok(())
        };
        let record = match &entry.record {
            Ok(record) => record,
            Err(err) => {
                drop_entry(format!("unreadable record: {err}"))?;
                continue;
            }
        };
        if entry.key != record.clip_id.as_bytes() {
            drop_entry("stored under another clip's key".into())?;
            continue;
        }
        let Some(path) = paths.resolve(&record.file).filter(|p| files.contains(p)) else {
            drop_entry(format!("its file {} is missing", record.file))?;
            continue;
        };
        let prefix = match File::open(&path)
            .map_err(FileFault::Read)
            .and_then(|file| clip_file::read_prefix(&file))
        {
            Ok(prefix) => prefix,
            Err(fault) => {
                drop_entry(format!("its file does not parse: {fault}"))?;
                continue;
            }
        };
        if prefix.wrapped.is_none() {
            finish_deletion(&path, report)?;
            index.forget(&record.clip_id)?;
            files.remove(&path);
            continue;
        }
        if let Some(mismatch) = mismatch(record, &prefix, &path) {
            drop_entry(format!("its file does not match the record ({mismatch})"))?;
            continue;
        }
        files.remove(&path);
        report.clips_ok += 1;
    }
    Ok(())
}

fn mismatch(record: &IndexRecord, prefix: &ClipFilePrefix, path: &Path) -> Option<&'static str> {
    if clip_file::clip_id_from_path(path) != Some(record.clip_id) {
        Some("file name")
    } else if prefix.file_len != record.size {
        Some("size")
    } else if prefix.header.camera != record.camera
        || prefix.header.media_type != record.media_type
        || prefix.header.start != record.start
        || prefix.header.end != record.end
    {
        Some("header")
    } else {
        None
    }
}

/// Verifies an unindexed clip file completely and indexes it, or quarantines it.
fn adopt(
    paths: &Paths,
    index: &Index,
    vault: &AgreementSecret,
    path: &Path,
    report: &mut RecoveryReport,
) -> Result<(), StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) => {
            report.unreadable.push(Finding {
                what: path.display().to_string(),
                reason: err.to_string(),
            });
            return Ok(());
        }
    };
    let prefix = match clip_file::read_prefix(&file) {
        Ok(prefix) => prefix,
        Err(fault) => return reject(paths, path, &fault, report),
    };
    if prefix.wrapped.is_none() {
        return finish_deletion(path, report);
    }
    let Some(clip_id) = clip_file::clip_id_from_path(path) else {
        return reject(paths, path, &FileFault::BadName, report);
    };
    if index.get(&clip_id)?.is_some() {
        let reason = "a copy of a clip that is already indexed from another file";
        return quarantine(paths, path, reason, report);
    }
    match clip_file::open_stream(&file, &prefix, vault, &clip_id, None) {
        Ok(_) => {}
        Err(OpenFailure::Fault(fault)) => return reject(paths, path, &fault, report),
        Err(OpenFailure::Sink { source, .. }) => {
            return reject(paths, path, &FileFault::Read(source), report);
        }
    }
    let record = IndexRecord {
        clip_id,
        camera: prefix.header.camera.clone(),
        media_type: prefix.header.media_type.clone(),
        start: prefix.header.start,
        end: prefix.header.end,
        size: prefix.file_len,
        media_len: prefix.layout.plaintext_len(),
        file: paths.relative(path),
    };
    index.put(&record)?;
    tracing::info!(clip = %clip_id, path = %path.display(), "verified and indexed a clip file the index did not list");
    report.reindexed.push(clip_id);
    Ok(())
}

/// A file that failed: contents at fault go to quarantine, read errors are reported.
fn reject(
    paths: &Paths,
    path: &Path,
    fault: &FileFault,
    report: &mut RecoveryReport,
) -> Result<(), StoreError> {
    if fault.is_content() {
        return quarantine(paths, path, &fault.to_string(), report);
    }
    tracing::warn!(path = %path.display(), "could not read a clip file, not listing it: {fault}");
    report.unreadable.push(Finding {
        what: path.display().to_string(),
        reason: fault.to_string(),
    });
    Ok(())
}

/// Moves a file to `quarantine/<camera dir>/<name>` (adding `.1`, `.2`… if taken).
fn quarantine(
    paths: &Paths,
    path: &Path,
    reason: &str,
    report: &mut RecoveryReport,
) -> Result<(), StoreError> {
    let camera_dir = path
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "unknown".into(), |name| name.to_os_string());
    let dir = paths.quarantine.join(camera_dir);
    clip_file::create_private_dir(&dir)?;
    let name = path
        .file_name()
        .map_or_else(|| "clip".into(), |name| name.to_os_string());
    let mut target = dir.join(&name);
    let mut n = 0u32;
    while target.exists() {
        n += 1;
        let mut numbered = name.clone();
        numbered.push(format!(".{n}"));
        target = dir.join(numbered);
    }
    match fs::rename(path, &target) {
        Ok(()) => {
            clip_file::sync_dir(&dir)?;
            if let Some(parent) = path.parent() {
                clip_file::sync_dir(parent)?;
            }
            tracing::warn!(from = %path.display(), to = %target.display(), "quarantined a clip file: {reason}");
            report.quarantined.push(Quarantined {
                from: path.to_path_buf(),
                to: target,
                reason: reason.to_string(),
            });
        }
        Err(err) => {
            tracing::warn!(path = %path.display(), "could not quarantine a bad clip file ({err}); not listing it");
            report.unreadable.push(Finding {
                what: path.display().to_string(),
                reason: format!("{reason}; moving it to quarantine failed: {err}"),
            });
        }
    }
    Ok(())
}

/// Removes a clip file whose key is already erased: the last step of an interrupted shred.
fn finish_deletion(path: &Path, report: &mut RecoveryReport) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(StoreError::io("remove shredded clip file", path, err)),
    }
    if let Some(parent) = path.parent() {
        clip_file::sync_dir(parent)?;
    }
    tracing::info!(path = %path.display(), "finished an interrupted deletion");
    report.deletions_finished.push(path.to_path_buf());
    Ok(())
}
