//! The clip store: encrypted clip files on disk, a sled index beside them.
//!
//! # What it owns
//!
//! Everything a home node keeps of its footage, under one data dir:
//!
//! ```text
//! <data dir>/store.lock                 held while a Store is open (one user per data dir)
//! <data dir>/store.vault                the vault public key the clips are sealed to (hex)
//! <data dir>/index/                     sled: the clip index, holds, grant protections
//! <data dir>/clips/<camera>/<id>.plclip one clip file each (spec/wire.md#clip-file)
//! <data dir>/quarantine/<camera>/…      clip files that failed verification, never listed
//! ```
//!
//! The clip files are the source of truth: each is self-describing (magic, the file key
//! wrapped to the node's vault key, the clip header, the ciphertext), so the index is derived
//! data that [`Store::open`] reconciles and [`Store::rebuild`] recreates from the files
//! alone ([`recovery`]). Plaintext never reaches a file: a segment is sealed in memory with
//! a fresh file key, and only ciphertext is written, even while a write is in progress.
//! Sealing runs on the calling thread; the clip id's hash and the writes run on a second
//! (`pipeline.rs`), and plaintext never leaves the first.
//!
//! # Durability
//!
//! A clip is acknowledged (a method returns its [`ClipRecord`]) only after its file is
//! fsynced, renamed into place, its directory fsynced, and its index entry flushed. A crash at
//! any moment leaves every acknowledged clip readable; what a crash can leave behind (a
//! `.partial` file, a file without an entry, an entry without a file, a half-done deletion)
//! is repaired at the next open. Deleting a clip crypto-shreds it: the wrapped key in the
//! file is overwritten with zeros and fsynced, the index entry is removed and flushed, then
//! the file is unlinked.
//!
//! # What it does not own
//!
//! Policy: *when* to run retention, what counts as too little free space, which grants exist
//! (the daemon and, later, the sans-IO core decide; the pure retention rules are in
//! [`retention`]). Capture and clocks: time is always an argument. Async: the API is
//! synchronous and `Store` is `Sync`, so the daemon calls it from
//! `tokio::task::spawn_blocking`.

pub(crate) mod clip_file;
mod error;
mod index;
mod pipeline;
pub mod recovery;
pub mod retention;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use porchlight_protocol::clip::MEDIA_TYPE_MP4;
use porchlight_protocol::{
    AgreementPublic, AgreementSecret, ClipHeader, ClipId, Timestamp, WrappedFileKey, wrap_file_key,
};
use rand_core::OsRng;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::recording::Segment;
use clip_file::{FileFault, IO_BLOCK, OpenFailure, PartialClip};
use index::{Index, IndexRecord};
use pipeline::SealPipeline;
use recovery::Mode;
use retention::{Keep, RetentionCandidate, RetentionPolicy};

pub use clip_file::{
    CLIP_EXTENSION, CiphertextReader, HEADER_OFFSET, PARTIAL_EXTENSION, STORE_MAGIC,
    WRAPPED_KEY_FIELD_LEN, WRAPPED_KEY_OFFSET, camera_dir_name, erase_wrapped_key,
};
pub use error::StoreError;
pub use recovery::{Finding, Quarantined, RebuildReport, RecoveryReport};
pub use retention::DeleteReason;

/// Default retention: a week.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long and how much the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Clips are deleted this long after their end (default 7 days).
    pub max_age: Duration,
    /// When set, the oldest clips are deleted while the clips take more bytes than this.
    pub max_bytes: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_age: DEFAULT_MAX_AGE,
            max_bytes: None,
        }
    }
}

impl StoreConfig {
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            max_age: self.max_age,
            max_bytes: self.max_bytes,
        }
    }
}

/// Which clips [`Store::list`] returns. Every field narrows; the default is every clip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClipFilter {
    /// Only this camera's clips.
    pub camera: Option<String>,
    /// Only clips that overlap the half-open window `[from, to)`: a clip covers
    /// `[start, end)`, or just the instant `start` when `start == end`.
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

impl ClipFilter {
    fn matches(&self, record: &IndexRecord) -> bool {
        let camera = self.camera.as_ref().is_none_or(|c| *c == record.camera);
        let before_to = self.to.is_none_or(|to| record.start < to);
        let after_from = self
            .from
            .is_none_or(|from| from < record.end || from <= record.start);
        camera && before_to && after_from
    }
}

/// One stored clip, as `list` and `get` report it (and as `clips list --json` prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClipRecord {
    pub clip_id: ClipId,
    pub camera: String,
    pub media_type: String,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Bytes of the clip file on disk.
    pub size: u64,
    /// Bytes of the media once decrypted.
    pub media_len: u64,
    /// The clip file.
    pub path: PathBuf,
    /// On hold: retention keeps it until released.
    pub held: bool,
    /// Named by a grant: retention keeps it until this time.
    pub protected_until: Option<Timestamp>,
}

/// A clip deleted by retention or to make room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub clip_id: ClipId,
    pub reason: DeleteReason,
    pub size: u64,
}

/// What [`Store::apply_retention`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub deleted: Vec<Deleted>,
    pub freed_bytes: u64,
    /// Clips a rule selected but that are held or protected.
    pub kept: Vec<(ClipId, Keep)>,
    /// Bytes the clips take afterwards.
    pub bytes_after: u64,
    /// How far over `max_bytes` the store stays because of kept clips.
    pub over_budget_by: u64,
    /// Clips that should have been deleted but could not be (logged; retried next run).
    pub failed: Vec<Finding>,
}

/// What [`Store::free_space_for`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FreeSpaceReport {
    pub wanted: u64,
    pub available_before: u64,
    pub available_after: u64,
    pub deleted: Vec<Deleted>,
    /// Whether `available_after >= wanted`. False when held and protected clips (or other
    /// files) take the space: the caller must not write.
    pub satisfied: bool,
    pub failed: Vec<Finding>,
}

/// Totals for one camera.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CameraStats {
    pub clips: u64,
    pub bytes: u64,
    pub oldest: Option<Timestamp>,
    pub newest: Option<Timestamp>,
}

/// Totals for `porchlight status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    pub clips: u64,
    /// Bytes of clip files on disk.
    pub bytes: u64,
    /// Start of the oldest clip.
    pub oldest: Option<Timestamp>,
    /// End of the newest clip.
    pub newest: Option<Timestamp>,
    pub held: u64,
    pub per_camera: BTreeMap<String, CameraStats>,
    /// Free space for unprivileged writes on the clips file system.
    pub available_bytes: u64,
}

/// Where everything lives under the data dir.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub data_dir: PathBuf,
    pub clips: PathBuf,
    pub quarantine: PathBuf,
    pub index: PathBuf,
    pub lock: PathBuf,
    pub vault: PathBuf,
}

impl Paths {
    fn new(data_dir: &Path) -> Paths {
        Paths {
            data_dir: data_dir.to_path_buf(),
            clips: data_dir.join("clips"),
            quarantine: data_dir.join("quarantine"),
            index: data_dir.join("index"),
            lock: data_dir.join("store.lock"),
            vault: data_dir.join("store.vault"),
        }
    }

    /// A path under the data dir as the index records it.
    pub(crate) fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.data_dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// An index record's path back to a real one, only if it stays inside `clips/`.
    pub(crate) fn resolve(&self, relative: &str) -> Option<PathBuf> {
        let relative = Path::new(relative);
        let mut components = relative.components();
        if components.next() != Some(Component::Normal("clips".as_ref())) {
            return None;
        }
        if !components.all(|c| matches!(c, Component::Normal(_))) {
            return None;
        }
        Some(self.data_dir.join(relative))
    }
}

/// The store. See the module docs for the layout and the guarantees.
pub struct Store {
    paths: Paths,
    index: Index,
    vault: AgreementSecret,
    vault_public: AgreementPublic,
    config: StoreConfig,
    /// Serialises changes to which clips exist and which are kept (adding an index entry,
    /// deleting, holding, protecting, rebuilding), so retention never deletes a clip that
    /// was put on hold while it was deciding. Writing a clip's bytes happens outside it.
    changes: Mutex<()>,
    recovery: RecoveryReport,
    /// Fault-injection seam: the next writes fail with "no space" after this many bytes.
    /// Only tests set it.
    write_budget: Mutex<Option<u64>>,
    /// Held (locked) for as long as the store is open.
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.paths.data_dir)
            .field("config", &self.config)
            .field("vault", &self.vault_public)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state lives on disk; a panic elsewhere leaves nothing half-updated here.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Opens the store in `data_dir` (creating it), locks it against a second user, and
    /// reconciles the index with the clip files ([`recovery`]); see [`Store::recovery`] for
    /// what that did. `vault` is the node's vault secret: every clip's file key is wrapped
    /// to its public half, and only it can open them.
    pub fn open(
        data_dir: impl AsRef<Path>,
        vault: AgreementSecret,
        config: StoreConfig,
    ) -> Result<Store, StoreError> {
        let paths = Paths::new(data_dir.as_ref());
        clip_file::create_private_dir(&paths.data_dir)?;
        // The lock comes first: recovery removes unfinished writes, which must never be
        // another running store's writes in progress.
        let lock_file = lock_data_dir(&paths)?;
        check_vault(&paths, &vault.public())?;
        clip_file::create_private_dir(&paths.clips)?;
        let index = Index::open(&paths.index)?;
        let recovery = recovery::recover(&paths, &index, &vault, Mode::Open)?;
        if recovery.is_clean() {
            tracing::info!(data_dir = %paths.data_dir.display(), "clip store open: {recovery}");
        } else {
            tracing::warn!(data_dir = %paths.data_dir.display(), "clip store recovered: {recovery}");
        }
        Ok(Store {
            vault_public: vault.public(),
            paths,
            index,
            vault,
            config,
            changes: Mutex::new(()),
            recovery,
            write_budget: Mutex::new(None),
            _lock: lock_file,
        })
    }

    /// What recovery did when this store was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub fn data_dir(&self) -> &Path {
        &self.paths.data_dir
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The public half of the vault key every clip's file key is wrapped to.
    pub fn vault_public(&self) -> AgreementPublic {
        self.vault_public
    }

    /// Seals a recorded segment and stores it. Returns only once the clip is durable.
    pub fn add_segment(&self, segment: &Segment) -> Result<ClipRecord, StoreError> {
        if segment.mp4.is_empty() {
            return Err(StoreError::Empty {
                camera: segment.camera.clone(),
            });
        }
        let header = ClipHeader::new(
            segment.camera.as_str(),
            MEDIA_TYPE_MP4,
            segment.start,
            segment.end,
            &mut OsRng,
        );
        self.write_clip(header, |clip| clip.push(&segment.mp4))
    }

    /// Seals an MP4 read from `reader` (for `porchlight clips import`) and stores it, in
    /// constant memory: 1 MiB at a time goes from the reader through the sealer to the
    /// writer thread and the disk, a few batches in flight at most.
    /// The header comes first in the file, so the clip's times are arguments. Returns only
    /// once the clip is durable; on any error (the reader's included) nothing is stored.
    pub fn import(
        &self,
        mut reader: impl Read,
        camera: &str,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<ClipRecord, StoreError> {
        let header = ClipHeader::new(camera, MEDIA_TYPE_MP4, start, end, &mut OsRng);
        self.write_clip(header, |clip| {
            let mut block = Zeroizing::new(vec![0u8; IO_BLOCK]);
            let mut read = 0u64;
            loop {
                match reader.read(&mut block) {
                    Ok(0) => break,
                    Ok(n) => {
                        read += n as u64;
                        clip.push(&block[..n])?;
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => return Err(StoreError::ImportRead { read, source }),
                }
            }
            if read == 0 {
                return Err(StoreError::Empty {
                    camera: camera.to_string(),
                });
            }
            Ok(())
        })
    }

    /// The write discipline shared by every way a clip comes in: `fill` pushes the
    /// plaintext, which is sealed on this thread and hashed and written on a second one
    /// ([`pipeline`]); then fsync, rename, directory fsync, index flush.
    fn write_clip(
        &self,
        header: ClipHeader,
        fill: impl FnOnce(&mut SealPipeline<'_>) -> Result<(), StoreError>,
    ) -> Result<ClipRecord, StoreError> {
        let dir = self.paths.clips.join(camera_dir_name(&header.camera));
        let budget = *lock(&self.write_budget);
        let partial = PartialClip::create(&dir, header, budget)?;
        let written = partial
            .write(&self.vault_public, fill)
            .inspect_err(log_write_failure)?;
        let record = IndexRecord {
            clip_id: written.clip_id,
            camera: written.header.camera.clone(),
            media_type: written.header.media_type.clone(),
            start: written.header.start,
            end: written.header.end,
            size: written.file_len,
            media_len: written.layout.plaintext_len(),
            file: self.paths.relative(&written.path),
        };
        let _changes = lock(&self.changes);
        if let Err(err) = self.index.put(&record).and_then(|()| self.index.flush()) {
            // Not acknowledged, so not kept: take the file away again (recovery would index
            // it at the next open otherwise, which is harmless but surprising).
            let _ = self.index.remove_key(record.clip_id.as_bytes());
            if let Err(rm) = fs::remove_file(&written.path) {
                tracing::warn!(path = %written.path.display(), "could not remove an unacknowledged clip file ({rm})");
            }
            log_write_failure(&err);
            return Err(err);
        }
        tracing::info!(clip = %record.clip_id, camera = %record.camera, bytes = record.size, "stored clip");
        Ok(self.public_record(record, false, None))
    }

    fn public_record(
        &self,
        record: IndexRecord,
        held: bool,
        protected_until: Option<Timestamp>,
    ) -> ClipRecord {
        ClipRecord {
            path: self
                .paths
                .resolve(&record.file)
                .unwrap_or_else(|| self.paths.data_dir.join(&record.file)),
            clip_id: record.clip_id,
            camera: record.camera,
            media_type: record.media_type,
            start: record.start,
            end: record.end,
            size: record.size,
            media_len: record.media_len,
            held,
            protected_until,
        }
    }

    /// The clips that match `filter`, sorted by start (then clip id).
    pub fn list(&self, filter: &ClipFilter) -> Result<Vec<ClipRecord>, StoreError> {
        let held = self.index.held()?;
        let grants = self.index.grants()?;
        let mut records: Vec<IndexRecord> = self
            .index
            .records()?
            .into_iter()
            .filter(|r| filter.matches(r))
            .collect();
        records.sort_by_key(|r| (r.start, r.clip_id));
        Ok(records
            .into_iter()
            .map(|r| {
                let (h, g) = (held.contains(&r.clip_id), grants.get(&r.clip_id).copied());
                self.public_record(r, h, g)
            })
            .collect())
    }

    /// One clip.
    pub fn get(&self, clip_id: &ClipId) -> Result<ClipRecord, StoreError> {
        let record = self.record(clip_id)?;
        let held = self.index.is_held(clip_id)?;
        let until = self.index.protected_until(clip_id)?;
        Ok(self.public_record(record, held, until))
    }

    fn record(&self, clip_id: &ClipId) -> Result<IndexRecord, StoreError> {
        self.index
            .get(clip_id)?
            .ok_or(StoreError::NotFound(*clip_id))
    }

    /// Opens a clip's file and parses its front.
    fn open_clip_file(
        &self,
        record: &IndexRecord,
    ) -> Result<(File, clip_file::ClipFilePrefix, PathBuf), StoreError> {
        let missing = |path: PathBuf| StoreError::Missing {
            clip_id: record.clip_id,
            path,
        };
        let path = self
            .paths
            .resolve(&record.file)
            .ok_or_else(|| missing(PathBuf::from(&record.file)))?;
        let file = File::open(&path).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => missing(path.clone()),
            _ => StoreError::io("open clip file", &path, err),
        })?;
        let prefix =
            clip_file::read_prefix(&file).map_err(|fault| self.fault(record, &path, fault))?;
        Ok((file, prefix, path))
    }

    fn fault(&self, record: &IndexRecord, path: &Path, fault: FileFault) -> StoreError {
        match fault {
            FileFault::Read(err) => StoreError::io("read clip file", path, err),
            fault => StoreError::Corrupt {
                clip_id: record.clip_id,
                reason: fault.to_string(),
            },
        }
    }

    /// Decrypts a clip into `out`, verifying every chunk and, at the end, that the clip is
    /// exactly the one named. Returns the media length.
    ///
    /// Plaintext reaches `out` chunk by chunk as it authenticates, *before* the end of the
    /// clip is verified (spec/crypto.md#stream-opening). The caller MUST write to a
    /// temporary file and rename it into place only when this returns `Ok`, and delete it
    /// otherwise: a damaged clip yields an error, never a silently truncated MP4.
    pub fn export(&self, clip_id: &ClipId, out: impl Write) -> Result<u64, StoreError> {
        let record = self.record(clip_id)?;
        let (file, prefix, path) = self.open_clip_file(&record)?;
        let mut out = out;
        clip_file::open_stream(&file, &prefix, &self.vault, clip_id, Some(&mut out)).map_err(
            |failure| match failure {
                OpenFailure::Fault(fault) => self.fault(&record, &path, fault),
                OpenFailure::Sink { written, source } => StoreError::ExportWrite {
                    clip_id: *clip_id,
                    written,
                    source,
                },
            },
        )
    }

    /// A clip's header bytes and ciphertext, for serving a fetch: whole, or chunk by chunk.
    /// Nothing is decrypted.
    pub fn read_ciphertext(&self, clip_id: &ClipId) -> Result<CiphertextReader, StoreError> {
        let record = self.record(clip_id)?;
        let (file, prefix, _) = self.open_clip_file(&record)?;
        Ok(CiphertextReader::new(*clip_id, file, prefix))
    }

    /// A clip's file key wrapped to `grantee` (a token's `grantee_key`), bound to the clip
    /// id, for the reply of a fetch the node core allowed (spec/crypto.md#key-wrap, "In a
    /// grant"). The key is unwrapped from the clip file with the vault secret, wrapped again
    /// with a fresh ephemeral key, and wiped; a fresh wrap is made for every fetch.
    pub fn wrap_key_for(
        &self,
        clip_id: &ClipId,
        grantee: &AgreementPublic,
    ) -> Result<WrappedFileKey, StoreError> {
        let record = self.record(clip_id)?;
        let (_file, prefix, path) = self.open_clip_file(&record)?;
        let file_key = clip_file::unwrap_key(&prefix, &self.vault, clip_id)
            .map_err(|fault| self.fault(&record, &path, fault))?;
        wrap_file_key(
            &file_key,
            grantee,
            clip_id,
            AgreementSecret::generate(&mut OsRng),
        )
        .map_err(|source| StoreError::Grantee {
            clip_id: *clip_id,
            source,
        })
    }

    /// Puts a clip on hold: retention keeps it until [`release`](Store::release).
    pub fn hold(&self, clip_id: &ClipId) -> Result<(), StoreError> {
        let _changes = lock(&self.changes);
        self.record(clip_id)?;
        self.index.set_held(clip_id, true)?;
        self.index.flush()
    }

    /// Takes a clip off hold. Releasing a clip that is not held does nothing.
    pub fn release(&self, clip_id: &ClipId) -> Result<(), StoreError> {
        let _changes = lock(&self.changes);
        self.record(clip_id)?;
        self.index.set_held(clip_id, false)?;
        self.index.flush()
    }

    /// Keeps a clip at least until `until` because a grant names it. Several grants on one
    /// clip keep it until the latest ends.
    pub fn protect(&self, clip_id: &ClipId, until: Timestamp) -> Result<(), StoreError> {
        let _changes = lock(&self.changes);
        self.record(clip_id)?;
        self.index.protect(clip_id, until)?;
        self.index.flush()
    }

    /// Ends a clip's grant protection early (for example, every grant naming it was revoked).
    pub fn unprotect(&self, clip_id: &ClipId) -> Result<(), StoreError> {
        let _changes = lock(&self.changes);
        self.record(clip_id)?;
        self.index.unprotect(clip_id)?;
        self.index.flush()
    }

    /// Crypto-shreds one clip at the owner's request. Refuses a held clip, or one under a
    /// grant that is still active at `now`.
    pub fn delete(&self, clip_id: &ClipId, now: Timestamp) -> Result<(), StoreError> {
        let _changes = lock(&self.changes);
        let record = self.record(clip_id)?;
        if self.index.is_held(clip_id)? {
            return Err(StoreError::Held(*clip_id));
        }
        if let Some(until) = self.index.protected_until(clip_id)?.filter(|u| *u > now) {
            return Err(StoreError::Protected {
                clip_id: *clip_id,
                until,
            });
        }
        self.shred(&record)
    }

    /// Deletes one clip by crypto-shredding: zero the wrapped key in the file and fsync,
    /// remove the index entry (and its hold and grant marks) and flush, unlink the file and
    /// fsync its directory. A crash between steps is finished by recovery. Caller holds
    /// `changes`.
    fn shred(&self, record: &IndexRecord) -> Result<(), StoreError> {
        let path = self.paths.resolve(&record.file);
        if let Some(path) = &path {
            match erase_wrapped_key(path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(StoreError::io("erase the wrapped key of", path, err)),
            }
        }
        let forgotten = self
            .index
            .forget(&record.clip_id)
            .and_then(|()| self.index.flush());
        // The key is gone, so the file is dead weight: unlink it even if the index update
        // failed (recovery drops an entry whose file is missing).
        if let Some(path) = &path {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(StoreError::io("remove clip file", path, err)),
            }
            if let Some(dir) = path.parent() {
                clip_file::sync_dir(dir)?;
            }
        }
        forgotten?;
        tracing::info!(clip = %record.clip_id, camera = %record.camera, "deleted clip (key shredded, file removed)");
        Ok(())
    }

    /// Every clip with what keeps it at `now`.
    fn candidates(
        &self,
        now: Timestamp,
    ) -> Result<(Vec<RetentionCandidate>, BTreeMap<ClipId, IndexRecord>), StoreError> {
        let held = self.index.held()?;
        let grants = self.index.grants()?;
        let records: BTreeMap<ClipId, IndexRecord> = self
            .index
            .records()?
            .into_iter()
            .map(|r| (r.clip_id, r))
            .collect();
        let candidates = records
            .values()
            .map(|r| RetentionCandidate {
                clip_id: r.clip_id,
                start: r.start,
                end: r.end,
                size: r.size,
                keep: if held.contains(&r.clip_id) {
                    Keep::Held
                } else if grants.get(&r.clip_id).is_some_and(|until| *until > now) {
                    Keep::Protected
                } else {
                    Keep::No
                },
            })
            .collect();
        Ok((candidates, records))
    }

    /// Applies the retention policy at `now`: deletes (crypto-shreds) clips older than
    /// `max_age`, then the oldest while over `max_bytes`, never a held or protected clip
    /// (see [`retention`]). Grant protections that ended are forgotten. A clip that cannot be
    /// deleted is reported in `failed` and the rest go ahead.
    pub fn apply_retention(&self, now: Timestamp) -> Result<RetentionReport, StoreError> {
        let _changes = lock(&self.changes);
        self.index.prune(Some(now))?;
        let (candidates, records) = self.candidates(now)?;
        let plan = retention::plan_retention(&candidates, &self.config.policy(), now);
        let mut report = RetentionReport {
            kept: plan.kept,
            bytes_after: plan.bytes_after,
            over_budget_by: plan.over_budget_by,
            ..RetentionReport::default()
        };
        for (clip_id, reason) in plan.delete {
            let Some(record) = records.get(&clip_id) else {
                continue;
            };
            self.shred_into(record, reason, &mut report.deleted, &mut report.failed);
        }
        report.freed_bytes = report.deleted.iter().map(|d| d.size).sum();
        // Failed deletions still take space.
        report.bytes_after += report
            .failed
            .iter()
            .filter_map(|f| f.what.parse::<ClipId>().ok())
            .filter_map(|id| records.get(&id))
            .map(|r| r.size)
            .sum::<u64>();
        self.index.flush()?;
        if !report.deleted.is_empty() || !report.failed.is_empty() {
            tracing::info!(
                deleted = report.deleted.len(),
                freed_bytes = report.freed_bytes,
                failed = report.failed.len(),
                "retention ran"
            );
        }
        if report.over_budget_by > 0 {
            tracing::warn!(
                over_by = report.over_budget_by,
                "held and protected clips keep the store over max_bytes"
            );
        }
        Ok(report)
    }

    fn shred_into(
        &self,
        record: &IndexRecord,
        reason: DeleteReason,
        deleted: &mut Vec<Deleted>,
        failed: &mut Vec<Finding>,
    ) {
        match self.shred(record) {
            Ok(()) => deleted.push(Deleted {
                clip_id: record.clip_id,
                reason,
                size: record.size,
            }),
            Err(err) => {
                tracing::warn!(clip = %record.clip_id, "could not delete clip: {err}");
                failed.push(Finding {
                    what: record.clip_id.to_string(),
                    reason: format!("{err}"),
                });
            }
        }
    }

    /// Free bytes on the file system that holds the clips (what an unprivileged write can
    /// use).
    pub fn available_space(&self) -> Result<u64, StoreError> {
        fs2::available_space(&self.paths.clips)
            .map_err(|err| StoreError::io("measure free space on", &self.paths.clips, err))
    }

    /// Makes sure at least `bytes` are free on the clips file system, deleting the oldest
    /// clips that are neither held nor protected at `now`, one at a time, until they are.
    /// The daemon calls this before writing when free space runs low; check
    /// [`FreeSpaceReport::satisfied`] before writing.
    pub fn free_space_for(
        &self,
        bytes: u64,
        now: Timestamp,
    ) -> Result<FreeSpaceReport, StoreError> {
        let available_before = self.available_space()?;
        let mut report = FreeSpaceReport {
            wanted: bytes,
            available_before,
            available_after: available_before,
            satisfied: available_before >= bytes,
            ..FreeSpaceReport::default()
        };
        if report.satisfied {
            return Ok(report);
        }
        let _changes = lock(&self.changes);
        self.index.prune(Some(now))?;
        let (mut candidates, records) = self.candidates(now)?;
        while report.available_after < bytes {
            let deficit = bytes - report.available_after;
            let Some(next) = retention::plan_make_room(&candidates, deficit)
                .first()
                .copied()
            else {
                break;
            };
            candidates.retain(|c| c.clip_id != next);
            if let Some(record) = records.get(&next) {
                self.shred_into(
                    record,
                    DeleteReason::MakeRoom,
                    &mut report.deleted,
                    &mut report.failed,
                );
            }
            report.available_after = self.available_space()?;
        }
        report.satisfied = report.available_after >= bytes;
        if report.satisfied {
            tracing::info!(
                deleted = report.deleted.len(),
                available = report.available_after,
                "made room for new clips"
            );
        } else {
            tracing::warn!(
                wanted = bytes,
                available = report.available_after,
                "the disk is full of held or protected clips (or other files); new clips cannot be stored"
            );
        }
        Ok(report)
    }

    /// Drops the clip index and rebuilds it from the clip files, verifying each completely
    /// (every chunk decrypts and the clip id matches its name). Files that fail go to
    /// `quarantine/`. Holds and grant protections are kept for clips that still exist.
    pub fn rebuild(&self) -> Result<RebuildReport, StoreError> {
        let _changes = lock(&self.changes);
        let report = recovery::recover(&self.paths, &self.index, &self.vault, Mode::Rebuild)?;
        tracing::info!("rebuilt the clip index: {report}");
        Ok(report)
    }

    /// Counts and sizes, overall and per camera, and free space.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats {
            held: self.index.held()?.len() as u64,
            available_bytes: self.available_space()?,
            ..StoreStats::default()
        };
        for record in self.index.records()? {
            stats.clips += 1;
            stats.bytes += record.size;
            stats.oldest = Some(stats.oldest.map_or(record.start, |t| t.min(record.start)));
            stats.newest = Some(stats.newest.map_or(record.end, |t| t.max(record.end)));
            let camera = stats.per_camera.entry(record.camera.clone()).or_default();
            camera.clips += 1;
            camera.bytes += record.size;
            camera.oldest = Some(camera.oldest.map_or(record.start, |t| t.min(record.start)));
            camera.newest = Some(camera.newest.map_or(record.end, |t| t.max(record.end)));
        }
        Ok(stats)
    }

    /// Fault-injection seam for tests: every write after this fails with "no space left on
    /// device" once `budget` bytes of the clip file are written (`None` turns it off).
    #[cfg(test)]
    pub(crate) fn set_write_budget(&self, budget: Option<u64>) {
        *lock(&self.write_budget) = budget;
    }
}

fn log_write_failure(err: &StoreError) {
    if err.is_disk_full() {
        tracing::error!("clip not stored, the disk is full: {err}");
    } else {
        tracing::warn!("clip not stored: {err}");
    }
}

/// Checks that the data dir's clips are sealed to this vault key, recording the key on first
/// use. Without this, a node started with the wrong key file would find every clip
/// unopenable and quarantine them all at the next rebuild.
fn check_vault(paths: &Paths, public: &AgreementPublic) -> Result<(), StoreError> {
    let expected: String = public
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match fs::read_to_string(&paths.vault) {
        Ok(text) if text.trim() == expected => Ok(()),
        Ok(text) => Err(StoreError::WrongVault {
            path: paths.data_dir.clone(),
            found: text.trim().chars().take(64).collect(),
            expected,
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&paths.vault)
                .map_err(|err| StoreError::io("create", &paths.vault, err))?;
            file.write_all(format!("{expected}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|err| StoreError::io("write", &paths.vault, err))?;
            clip_file::sync_dir(&paths.data_dir)
        }
        Err(err) => Err(StoreError::io("read", &paths.vault, err)),
    }
}

/// Takes the data dir's lock, or says who has it.
fn lock_data_dir(paths: &Paths) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&paths.lock)
        .map_err(|err| StoreError::io("open lock file", &paths.lock, err))?;
    match fs2::FileExt::try_lock_exclusive(&file) {
        Ok(()) => Ok(file),
        Err(err) if err.kind() == fs2::lock_contended_error().kind() => Err(StoreError::Locked {
            path: paths.data_dir.clone(),
            source: err,
        }),
        Err(err) => Err(StoreError::io("lock", &paths.lock, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(camera: &str, start_ms: u64, len: usize) -> Segment {
        let mut mp4 = Zeroizing::new(vec![0u8; len]);
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut mp4);
        Segment {
            camera: camera.into(),
            start: Timestamp::from_unix_millis(start_ms),
            end: Timestamp::from_unix_millis(start_ms + 1_000),
            mp4,
        }
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    /// The fault-injection path of a full disk, for machines where the integration test
    /// cannot mount a small tmpfs: the same code runs, the error comes from the seam.
    #[test]
    fn injected_disk_full_stores_nothing_and_the_next_write_works() {
        let dir = tempfile::tempdir().unwrap();
        let vault = AgreementSecret::generate(&mut OsRng);
        let store = Store::open(dir.path(), vault, StoreConfig::default()).unwrap();
        let first = store.add_segment(&segment("porch", 0, 10_000)).unwrap();

        store.set_write_budget(Some(50_000));
        let err = store
            .add_segment(&segment("porch", 5_000, 300_000))
            .unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with("disk full while write clip file"),
            "{message}"
        );
        assert!(message.contains("nothing was stored"), "{message}");
        let err = store
            .import(
                &[1u8; 200_000][..],
                "porch",
                Timestamp::EPOCH,
                Timestamp::EPOCH,
            )
            .unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        // Nothing half-written remains, and the index still lists exactly the first clip.
        let clips = files_under(&dir.path().join("clips"));
        assert_eq!(clips, vec![first.path.clone()], "no partial files remain");
        let listed = store.list(&ClipFilter::default()).unwrap();
        assert_eq!(
            listed.iter().map(|c| c.clip_id).collect::<Vec<_>>(),
            [first.clip_id]
        );

        store.set_write_budget(None);
        let second = store
            .add_segment(&segment("porch", 5_000, 300_000))
            .unwrap();
        assert_eq!(store.list(&ClipFilter::default()).unwrap().len(), 2);
        let mut out = Vec::new();
        store.export(&second.clip_id, &mut out).unwrap();
        assert_eq!(out.len(), 300_000);
    }

    #[test]
    fn filter_matches_overlapping_clips_only() {
        let record = |start: u64, end: u64| IndexRecord {
            clip_id: ClipId::from_bytes([0; 32]),
            camera: "porch".into(),
            media_type: MEDIA_TYPE_MP4.into(),
            start: Timestamp::from_unix_millis(start),
            end: Timestamp::from_unix_millis(end),
            size: 1,
            media_len: 1,
            file: "clips/porch/x.plclip".into(),
        };
        let window = |from: u64, to: u64| ClipFilter {
            camera: None,
            from: Some(Timestamp::from_unix_millis(from)),
            to: Some(Timestamp::from_unix_millis(to)),
        };
        assert!(window(10, 20).matches(&record(5, 11)));
        assert!(
            !window(10, 20).matches(&record(5, 10)),
            "ends as the window starts"
        );
        assert!(
            !window(10, 20).matches(&record(20, 30)),
            "starts as the window ends"
        );
        assert!(window(10, 20).matches(&record(10, 10)), "an instant inside");
        assert!(!window(10, 20).matches(&record(20, 20)));
        assert!(ClipFilter::default().matches(&record(0, 0)));
        let other = ClipFilter {
            camera: Some("garage".into()),
            ..ClipFilter::default()
        };
        assert!(!other.matches(&record(0, 1)));
    }

    #[test]
    fn store_can_be_shared_across_threads() {
        // The daemon calls it from `spawn_blocking` through an `Arc<Store>`.
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Store>();
    }

    #[test]
    fn index_paths_cannot_escape_the_clips_dir() {
        let paths = Paths::new(Path::new("/data"));
        assert_eq!(
            paths.resolve("clips/porch/a.plclip"),
            Some(PathBuf::from("/data/clips/porch/a.plclip"))
        );
        for bad in ["/etc/passwd", "clips/../index/db", "quarantine/x", "../x"] {
            assert_eq!(paths.resolve(bad), None, "{bad}");
        }
    }
}
