//! The requester's store of clips it received under consent tokens.
//!
//! ```text
//! <data dir>/received/                          0700
//!   <token id>/                                 0700, one per token something was fetched under
//!     grant.json                                the token and what was received (below)
//!     <clip id>.partial                         a fetch in progress: magic, no key, header, the
//!                                               verified chunks so far
//!     <clip id>.plclip                          a received clip (spec/wire.md#clip-file)
//! ```
//!
//! A received clip is kept exactly like one of the node's own: a clip file whose file key is
//! wrapped to this node's vault key, so nothing on disk is plaintext and deleting it is a
//! crypto-shred (the wrapped key is zeroed in place before the file is unlinked). The clip
//! bytes are the owner's, unchanged, so the clip id still names them. `grant.json` records
//! the token (its signed envelope in hex, id, request, owner, `not_after`, `retain`) and, per
//! clip, its size and whether it is complete; it is what lets the daemon find expired grants
//! after a restart ([`ReceivedStore::expired`]).
//!
//! Receiving ([`ReceivingClip`]) is driven by the fetch stream (`crate::fetch`): every chunk
//! is authenticated before it is written, the clip id is checked when the last chunk
//! arrives, and the file gets its key and its final name only then ([`ReceivingClip::finish`]).
//! An interrupted fetch leaves `<clip id>.partial`; the next [`ReceivedStore::begin`] counts
//! its whole chunks as the resume point and the next reply re-verifies them, because a crash
//! may have left a torn or unwritten tail (spec/wire.md#fetch-stream, "Resuming").
//!
//! It does not decide *when* to delete (the node core says so at expiry or revocation, and
//! [`ReceivedStore::expired`] covers restarts) and it does not talk to the network. Its API
//! is synchronous file I/O, a few chunks at a time; a large clip is also synced to disk in
//! the background as it arrives, so finishing it does not wait for the whole clip's fsync.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use porchlight_protocol::clip::MAX_HEADER_LEN;
use porchlight_protocol::stream::{ChunkLayout, ClipCipher, SEALED_CHUNK_SIZE};
use porchlight_protocol::{
    AgreementPublic, AgreementSecret, ClipHeader, ClipId, ClipIdHasher, ConsentToken, CryptoError,
    FileKey, PeerId, ProtocolError, RequestId, Signed, Timestamp, TokenId, wrap_file_key,
};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::data_dir::replace_file;
use crate::store::StoreError;
use crate::store::clip_file::{
    self, CLIP_EXTENSION, HEADER_OFFSET, OpenFailure, PARTIAL_EXTENSION, STORE_MAGIC,
    WRAPPED_KEY_FIELD_LEN, WRAPPED_KEY_OFFSET, erase_wrapped_key,
};

/// The directory under the data dir.
pub const RECEIVED_DIR: &str = "received";
/// Each token directory's record.
pub const GRANT_FILE: &str = "grant.json";

/// What went wrong in the received store. Nothing that was complete before a failing call
/// has changed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReceivedError {
    /// The clip is not one the token names: nothing is fetched or stored for it.
    #[error("clip {clip_id} is not named in token {token_id}; nothing was fetched")]
    NotInToken { token_id: TokenId, clip_id: ClipId },

    /// Another fetch is receiving this clip right now.
    #[error("clip {clip_id} is already being received under token {token_id}")]
    Busy { token_id: TokenId, clip_id: ClipId },

    /// The clip was already received completely under this token.
    #[error("clip {clip_id} was already received under token {token_id}")]
    AlreadyReceived { token_id: TokenId, clip_id: ClipId },

    /// What the owner sent does not authenticate (a chunk, the key or the clip id). The bad
    /// data was not stored; chunks verified before it are kept.
    #[error("clip {clip_id} from the owner failed verification; the bad data was discarded")]
    Tampered {
        clip_id: ClipId,
        #[source]
        source: ProtocolError,
    },

    /// Resuming: chunks held from an earlier fetch did not verify against this reply (a
    /// crash left a torn tail, or the owner sent other bytes) and were dropped, so this
    /// stream's chunks do not fit.
    #[error(
        "the held part of clip {clip_id} verified only up to chunk {held} (not {requested}); \
         fetch again to resume from chunk {held}"
    )]
    ResumeDiscarded {
        clip_id: ClipId,
        requested: u64,
        held: u64,
    },

    /// A caller wrote a chunk out of order, before [`ReceivingClip::start`], or finished an
    /// incomplete clip. A bug in the caller, never caused by peer data.
    #[error("clip {clip_id}: {what}")]
    Misuse { clip_id: ClipId, what: &'static str },

    /// The token's footage was deleted (expiry or revocation) while this clip was arriving;
    /// nothing of it was kept.
    #[error("token {token_id} was deleted while clip {clip_id} was arriving; nothing was kept")]
    Deleted { token_id: TokenId, clip_id: ClipId },

    /// Not enough free space for the rest of the clip; nothing more was written.
    #[error(
        "clip {clip_id} needs {needed} more bytes but {} has {available} free; free space \
         and fetch again to resume",
        path.display()
    )]
    NoSpace {
        clip_id: ClipId,
        path: PathBuf,
        needed: u64,
        available: u64,
    },

    /// Nothing was received under this token or with this clip id.
    #[error("nothing was received for {0}")]
    NotFound(String),

    /// A stored received clip fails verification (damaged on disk or sealed to another
    /// vault).
    #[error("received clip {clip_id} is damaged ({reason}); delete its token and fetch again")]
    Corrupt { clip_id: ClipId, reason: String },

    /// The vault public key this store was opened with is not a usable X25519 key.
    #[error("cannot wrap clip {clip_id}'s key to this node's vault key")]
    Vault {
        clip_id: ClipId,
        #[source]
        source: CryptoError,
    },

    /// A token directory's `grant.json` does not parse.
    #[error("{} is unreadable; delete that directory to drop the grant", path.display())]
    BadGrantFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// Writing a token directory's `grant.json` failed.
    #[error("could not record the grant in {}", path.display())]
    GrantFile {
        path: PathBuf,
        #[source]
        source: anyhow::Error,
    },

    /// Writing an exported MP4 failed; the incomplete output was removed.
    #[error("could not export clip {clip_id} to {}", path.display())]
    Export {
        clip_id: ClipId,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The file system failed (the variant says which file and whether the disk is full).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> ReceivedError {
    ReceivedError::Store(StoreError::io(action, path, source))
}

/// One received clip, as [`ReceivedStore::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedClip {
    pub clip_id: ClipId,
    /// Bytes of its file on disk (so far, while incomplete).
    pub bytes: u64,
    /// Received completely and verified against its clip id.
    pub complete: bool,
}

/// What was received under one token: the contents of its `grant.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedGrant {
    pub token_id: TokenId,
    pub request_id: RequestId,
    pub owner: PeerId,
    pub not_after: Timestamp,
    /// The owner allowed keeping the footage after `not_after`.
    pub retain: bool,
    /// The signed token envelope, as issued (hex in the file), for resuming fetches.
    #[serde(with = "hex_bytes")]
    pub token: Vec<u8>,
    pub clips: Vec<ReceivedClip>,
}

impl ReceivedGrant {
    fn new(token: &Signed<ConsentToken>) -> ReceivedGrant {
        let body = token.body();
        ReceivedGrant {
            token_id: body.token_id,
            request_id: body.request_id,
            owner: body.owner,
            not_after: body.not_after,
            retain: body.retain,
            token: token.to_bytes(),
            clips: Vec::new(),
        }
    }

    /// Whether the daemon must delete this grant's footage at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        !self.retain && self.not_after < now
    }

    fn entry(&mut self, clip_id: &ClipId) -> &mut ReceivedClip {
        let at = match self.clips.iter().position(|c| c.clip_id == *clip_id) {
            Some(at) => at,
            None => {
                self.clips.push(ReceivedClip {
                    clip_id: *clip_id,
                    bytes: 0,
                    complete: false,
                });
                self.clips.len() - 1
            }
        };
        &mut self.clips[at]
    }
}

/// Hex in `grant.json` for the token envelope.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// Which received clips [`ReceivedStore::export`] decrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportSelection {
    /// Every complete clip received under this token.
    Token(TokenId),
    /// This clip, under whichever token it was received.
    Clip(ClipId),
}

/// The requester's store of received clips. Cheap to clone; every clone is the same store.
#[derive(Clone)]
pub struct ReceivedStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    vault_public: AgreementPublic,
    /// Serialises `grant.json` updates, finishing and deleting, and knows which clips are
    /// being received (with the flag that tells a receiver its token was deleted).
    active: Mutex<BTreeMap<(TokenId, ClipId), Arc<AtomicBool>>>,
}

impl fmt::Debug for ReceivedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedStore")
            .field("dir", &self.inner.dir)
            .field("vault", &self.inner.vault_public)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state is a set of flags; a panic elsewhere leaves it consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ReceivedStore {
    /// Opens (creating, 0700) `<data_dir>/received/`. Received clips' file keys are wrapped
    /// to `vault_public`, this node's vault key.
    pub fn open(
        data_dir: impl AsRef<Path>,
        vault_public: AgreementPublic,
    ) -> Result<ReceivedStore, ReceivedError> {
        let dir = data_dir.as_ref().join(RECEIVED_DIR);
        clip_file::create_private_dir(&dir)?;
        Ok(ReceivedStore {
            inner: Arc::new(Inner {
                dir,
                vault_public,
                active: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn token_dir(&self, token_id: &TokenId) -> PathBuf {
        self.inner.dir.join(token_id.to_string())
    }

    /// Starts (or resumes) receiving `clip_id` under `token`, which must name it. Records
    /// the grant in `grant.json` first, so an expiry sweep finds it even if the fetch never
    /// completes. If an earlier fetch left a partial file, its whole chunks are the resume
    /// point ([`ReceivingClip::next_chunk`]) and a torn tail is cut off.
    pub fn begin(
        &self,
        token: &Signed<ConsentToken>,
        clip_id: &ClipId,
    ) -> Result<ReceivingClip, ReceivedError> {
        let body = token.body();
        let token_id = body.token_id;
        if !body.clips.iter().any(|listed| listed.ct_eq(clip_id)) {
            return Err(ReceivedError::NotInToken {
                token_id,
                clip_id: *clip_id,
            });
        }
        let mut active = lock(&self.inner.active);
        if active.contains_key(&(token_id, *clip_id)) {
            return Err(ReceivedError::Busy {
                token_id,
                clip_id: *clip_id,
            });
        }
        let dir = self.token_dir(&token_id);
        clip_file::create_private_dir(&dir)?;
        let (mut grant, recorded) = match read_grant(&dir)? {
            Some(grant) => (grant, true),
            None => (ReceivedGrant::new(token), false),
        };
        let final_path = dir.join(format!("{clip_id}.{CLIP_EXTENSION}"));
        if final_path.exists() {
            return Err(ReceivedError::AlreadyReceived {
                token_id,
                clip_id: *clip_id,
            });
        }
        if !recorded || !grant.clips.iter().any(|c| c.clip_id == *clip_id) {
            grant.entry(clip_id);
            write_grant(&dir, &grant)?;
        }
        let partial_path = dir.join(format!("{clip_id}.{PARTIAL_EXTENSION}"));
        let held = HeldPartial::open(&partial_path)?;
        let cancelled = Arc::new(AtomicBool::new(false));
        active.insert((token_id, *clip_id), Arc::clone(&cancelled));
        drop(active);
        Ok(ReceivingClip {
            store: Arc::clone(&self.inner),
            token_id,
            clip_id: *clip_id,
            dir,
            partial_path,
            next_chunk: held.as_ref().map_or(0, |h| h.chunks),
            held,
            session: None,
            cancelled,
            writeback: Writeback::default(),
        })
    }

    /// Every grant something was received under, with its clips, by token id.
    pub fn list(&self) -> Result<Vec<ReceivedGrant>, ReceivedError> {
        let mut grants = Vec::new();
        for dir in self.token_dirs()? {
            let Some(mut grant) = read_grant(&dir)? else {
                continue;
            };
            // The files are the truth: a crash between the rename and the record leaves a
            // complete clip recorded as incomplete.
            for clip in &mut grant.clips {
                let done = dir.join(format!("{}.{CLIP_EXTENSION}", clip.clip_id));
                let partial = dir.join(format!("{}.{PARTIAL_EXTENSION}", clip.clip_id));
                if let Ok(meta) = fs::metadata(&done) {
                    clip.complete = true;
                    clip.bytes = meta.len();
                } else {
                    clip.complete = false;
                    clip.bytes = fs::metadata(&partial).map_or(0, |m| m.len());
                }
            }
            grants.push(grant);
        }
        grants.sort_by_key(|g| g.token_id);
        Ok(grants)
    }

    /// The tokens whose footage must be deleted at `now`: `not_after` has passed and the
    /// owner did not allow retention. Read from disk, so it works after a restart.
    pub fn expired(&self, now: Timestamp) -> Result<Vec<TokenId>, ReceivedError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|grant| grant.is_expired(now))
            .map(|grant| grant.token_id)
            .collect())
    }

    /// Deletes everything received under `token_id` by crypto-shredding: each clip file's
    /// wrapped key is zeroed in place and fsynced, then every file is unlinked and the
    /// directory removed. A fetch still receiving under the token fails and keeps nothing.
    /// Returns how many complete clips were shredded; a token with nothing received is not an
    /// error (it returns 0).
    pub fn delete_token(&self, token_id: &TokenId) -> Result<usize, ReceivedError> {
        let active = lock(&self.inner.active);
        for ((token, _), cancelled) in active.iter() {
            if token == token_id {
                cancelled.store(true, Ordering::SeqCst);
            }
        }
        let dir = self.token_dir(token_id);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(io_error("read directory", &dir, err)),
        };
        let mut files = Vec::new();
        for entry in entries {
            files.push(
                entry
                    .map_err(|err| io_error("read directory", &dir, err))?
                    .path(),
            );
        }
        // Every key is gone before any file is: a failure part-way leaves files that can no
        // longer be opened, and the next sweep finishes the job.
        // Partial files have no key, except after a `finish` that failed between writing it
        // and the rename, so they are erased too; a file too short for a key, or without the
        // magic, holds none.
        let mut shredded = 0;
        for path in files.iter().filter(|p| !p.ends_with(GRANT_FILE)) {
            match erase_wrapped_key(path) {
                Ok(()) => shredded += usize::from(has_extension(path, CLIP_EXTENSION)),
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                    ) => {}
                Err(err) => return Err(io_error("erase the wrapped key of", path, err)),
            }
        }
        for path in &files {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_error("remove", path, err)),
            }
        }
        fs::remove_dir(&dir).map_err(|err| io_error("remove directory", &dir, err))?;
        clip_file::sync_dir(&self.inner.dir)?;
        drop(active);
        tracing::info!(token = %token_id, clips = shredded, "deleted received footage (keys shredded, files removed)");
        Ok(shredded)
    }

    /// Decrypts the selected complete clips into `out_dir` as `<clip id>.mp4`, verifying
    /// every chunk and the clip id first; each file appears under its name only once it is
    /// complete. This is the user's explicit export, so plaintext there is intended.
    pub fn export(
        &self,
        selection: ExportSelection,
        out_dir: &Path,
        vault: &AgreementSecret,
    ) -> Result<Vec<PathBuf>, ReceivedError> {
        let mut selected = Vec::new();
        for grant in self.list()? {
            let dir = self.token_dir(&grant.token_id);
            for clip in grant.clips.iter().filter(|c| c.complete) {
                let wanted = match selection {
                    ExportSelection::Token(token_id) => grant.token_id == token_id,
                    ExportSelection::Clip(clip_id) => clip.clip_id == clip_id,
                };
                if wanted && !selected.iter().any(|(id, _)| *id == clip.clip_id) {
                    selected.push((
                        clip.clip_id,
                        dir.join(format!("{}.{CLIP_EXTENSION}", clip.clip_id)),
                    ));
                }
            }
        }
        if selected.is_empty() {
            return Err(ReceivedError::NotFound(match selection {
                ExportSelection::Token(token_id) => format!("token {token_id}"),
                ExportSelection::Clip(clip_id) => format!("clip {clip_id}"),
            }));
        }
        let mut written = Vec::new();
        for (clip_id, path) in selected {
            written.push(export_clip(&clip_id, &path, out_dir, vault)?);
        }
        Ok(written)
    }

    fn token_dirs(&self) -> Result<Vec<PathBuf>, ReceivedError> {
        let entries = fs::read_dir(&self.inner.dir)
            .map_err(|err| io_error("read directory", &self.inner.dir, err))?;
        let mut dirs = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|err| io_error("read directory", &self.inner.dir, err))?
                .path();
            let is_token = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.parse::<TokenId>().is_ok());
            if is_token && path.is_dir() {
                dirs.push(path);
            }
        }
        Ok(dirs)
    }
}

fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension().is_some_and(|e| e == extension)
}

fn read_grant(dir: &Path) -> Result<Option<ReceivedGrant>, ReceivedError> {
    let path = dir.join(GRANT_FILE);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error("read", &path, err)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| ReceivedError::BadGrantFile { path, source })
}

fn write_grant(dir: &Path, grant: &ReceivedGrant) -> Result<(), ReceivedError> {
    let path = dir.join(GRANT_FILE);
    let mut json =
        serde_json::to_vec_pretty(grant).map_err(|source| ReceivedError::BadGrantFile {
            path: path.clone(),
            source,
        })?;
    json.push(b'\n');
    replace_file(&path, &json, 0o600)
        .map_err(|source| ReceivedError::GrantFile { path, source })?;
    clip_file::sync_dir(dir)?;
    Ok(())
}

/// Decrypts one received clip file into `out_dir/<clip id>.mp4`, through a temporary name.
fn export_clip(
    clip_id: &ClipId,
    path: &Path,
    out_dir: &Path,
    vault: &AgreementSecret,
) -> Result<PathBuf, ReceivedError> {
    let corrupt = |reason: String| ReceivedError::Corrupt {
        clip_id: *clip_id,
        reason,
    };
    let file = File::open(path).map_err(|err| io_error("open received clip", path, err))?;
    let prefix = clip_file::read_prefix(&file).map_err(|fault| corrupt(fault.to_string()))?;
    let out = out_dir.join(format!("{clip_id}.mp4"));
    let tmp = out_dir.join(format!(".{clip_id}.mp4.{PARTIAL_EXTENSION}"));
    let export_error = |source: io::Error| ReceivedError::Export {
        clip_id: *clip_id,
        path: out.clone(),
        source,
    };
    let mut sink = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(export_error)?;
    let opened = clip_file::open_stream(&file, &prefix, vault, clip_id, Some(&mut sink))
        .map_err(|failure| match failure {
            OpenFailure::Fault(fault) => corrupt(fault.to_string()),
            OpenFailure::Sink { source, .. } => export_error(source),
        })
        .and_then(|_| {
            sink.flush()
                .and_then(|()| sink.sync_all())
                .and_then(|()| fs::rename(&tmp, &out))
                .map_err(export_error)
        });
    if opened.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    opened.map(|()| out)
}

/// A partial file found by [`ReceivedStore::begin`]: its header and how many whole chunks
/// follow it. Not yet verified (that needs the file key from the next reply).
struct HeldPartial {
    file: File,
    header_bytes: Vec<u8>,
    chunks: u64,
}

impl HeldPartial {
    /// Opens `path` if it is a usable partial file, cutting a torn chunk off its end, and
    /// removes it if it is not (a crash before its header was written).
    fn open(path: &Path) -> Result<Option<HeldPartial>, ReceivedError> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_error("open partial clip", path, err)),
        };
        let len = file
            .metadata()
            .map_err(|err| io_error("read partial clip", path, err))?
            .len();
        let mut front =
            vec![0u8; usize::try_from(len.min(HEADER_OFFSET + MAX_HEADER_LEN as u64)).unwrap_or(0)];
        file.read_exact_at(&mut front, 0)
            .map_err(|err| io_error("read partial clip", path, err))?;
        let header = (front.len() as u64 > HEADER_OFFSET && front.starts_with(&STORE_MAGIC))
            .then(|| ClipHeader::decode_prefix(&front[HEADER_OFFSET as usize..]).ok())
            .flatten();
        let Some((_, header_len)) = header else {
            drop(file);
            fs::remove_file(path).map_err(|err| io_error("remove partial clip", path, err))?;
            return Ok(None);
        };
        let start = HEADER_OFFSET as usize;
        let header_bytes = front[start..start + header_len].to_vec();
        let ciphertext_offset = HEADER_OFFSET + header_len as u64;
        let chunks = (len - ciphertext_offset) / SEALED_CHUNK_SIZE as u64;
        let whole = ciphertext_offset + chunks * SEALED_CHUNK_SIZE as u64;
        if whole != len {
            file.set_len(whole)
                .map_err(|err| io_error("cut the torn end of partial clip", path, err))?;
        }
        Ok(Some(HeldPartial {
            file,
            header_bytes,
            chunks,
        }))
    }

    fn ciphertext_offset(&self) -> u64 {
        HEADER_OFFSET + self.header_bytes.len() as u64
    }
}

/// What one fetch's reply establishes: the key and layout every chunk is checked against,
/// and the clip id hash so far.
struct Session {
    file_key: FileKey,
    cipher: ClipCipher,
    layout: ChunkLayout,
    hasher: ClipIdHasher,
    /// The last chunk arrived and the clip hashes to its id.
    complete: bool,
}

/// One clip being received. Chunks go in with [`write_chunk`](Self::write_chunk), each
/// authenticated first; [`finish`](Self::finish) makes it a received clip. Dropping it
/// without finishing keeps the verified chunks for a later resume.
pub struct ReceivingClip {
    store: Arc<Inner>,
    token_id: TokenId,
    clip_id: ClipId,
    dir: PathBuf,
    partial_path: PathBuf,
    held: Option<HeldPartial>,
    next_chunk: u64,
    session: Option<Session>,
    cancelled: Arc<AtomicBool>,
    writeback: Writeback,
}

/// Bytes of a partial clip written between two background syncs.
const WRITEBACK_EVERY: u64 = 64 << 20;

/// Syncs a large partial clip to disk while it is still arriving, on a thread of its own,
/// so that the fsync in [`ReceivingClip::finish`] waits for the last few MiB rather than
/// for the whole clip (about 0.4 s per GiB on the bench machine). This changes when bytes
/// reach the disk, not what is durable when: nothing counts as received before `finish`.
#[derive(Default)]
struct Writeback {
    /// Bytes written since the last background sync started.
    unsynced: u64,
    /// At most one sync in flight.
    running: Option<std::thread::JoinHandle<()>>,
}

impl Writeback {
    fn wrote(&mut self, bytes: u64, file: &File) {
        self.unsynced += bytes;
        if self.unsynced < WRITEBACK_EVERY
            || self
                .running
                .as_ref()
                .is_some_and(|sync| !sync.is_finished())
        {
            return;
        }
        // Best effort: if the descriptor cannot be shared or no thread starts, the final
        // fsync simply has more to write.
        let Ok(file) = file.try_clone() else { return };
        let started = std::thread::Builder::new()
            .name("clip-writeback".into())
            .spawn(move || {
                let _ = file.sync_data();
            });
        if let Ok(sync) = started {
            self.unsynced = 0;
            self.running = Some(sync);
        }
    }

    /// Waits for the sync in flight, if any (its errors surface in the final fsync).
    fn wait(&mut self) {
        if let Some(sync) = self.running.take() {
            let _ = sync.join();
        }
    }
}

impl fmt::Debug for ReceivingClip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivingClip")
            .field("token_id", &self.token_id)
            .field("clip_id", &self.clip_id)
            .field("next_chunk", &self.next_chunk)
            .finish_non_exhaustive()
    }
}

impl Drop for ReceivingClip {
    fn drop(&mut self) {
        lock(&self.store.active).remove(&(self.token_id, self.clip_id));
    }
}

impl ReceivingClip {
    pub fn clip_id(&self) -> &ClipId {
        &self.clip_id
    }

    pub fn token_id(&self) -> &TokenId {
        &self.token_id
    }

    /// The first chunk still missing: what a fetch asks for as `from_chunk`. Counts only
    /// whole chunks that were authenticated when they were written.
    pub fn next_chunk(&self) -> u64 {
        self.next_chunk
    }

    /// Whether every chunk arrived and the clip hashes to its id: [`finish`](Self::finish)
    /// will succeed unless the disk fails or the token was deleted.
    pub fn is_complete(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.complete)
    }

    /// Takes a fetch reply's header, file key (already unwrapped with the reply secret) and
    /// layout. Held chunks are re-verified against them and feed the clip id hash; any that
    /// fail are dropped with everything after them, and if that moves the resume point the
    /// fetch that sent this reply cannot continue ([`ReceivedError::ResumeDiscarded`]).
    /// A partial under another header is discarded. Checks there is room for the rest.
    pub fn start(
        &mut self,
        header_bytes: &[u8],
        file_key: FileKey,
        layout: ChunkLayout,
    ) -> Result<(), ReceivedError> {
        let requested = self.next_chunk;
        self.session = None;
        let cipher =
            ClipCipher::new(&file_key, header_bytes).map_err(|source| self.tampered(source))?;
        let mut hasher = ClipIdHasher::new(header_bytes);
        let mut verified = 0u64;
        match &mut self.held {
            Some(held) if held.header_bytes == header_bytes => {
                let offset = held.ciphertext_offset();
                let mut sealed = vec![0u8; SEALED_CHUNK_SIZE];
                while verified < held.chunks {
                    held.file
                        .read_exact_at(&mut sealed, offset + verified * SEALED_CHUNK_SIZE as u64)
                        .map_err(|err| io_error("read partial clip", &self.partial_path, err))?;
                    match cipher.open_chunk(&layout, verified, &sealed) {
                        Ok(plaintext) => drop(Zeroizing::new(plaintext)),
                        Err(_) => break,
                    }
                    hasher.update(&sealed);
                    verified += 1;
                }
                if verified < held.chunks {
                    held.file
                        .set_len(offset + verified * SEALED_CHUNK_SIZE as u64)
                        .map_err(|err| io_error("cut partial clip", &self.partial_path, err))?;
                    held.chunks = verified;
                }
            }
            _ => self.create_partial(header_bytes)?,
        }
        self.next_chunk = verified;
        let remaining = layout
            .ciphertext_len()
            .saturating_sub(verified * SEALED_CHUNK_SIZE as u64);
        self.check_space(remaining)?;
        self.session = Some(Session {
            file_key,
            cipher,
            layout,
            hasher,
            complete: false,
        });
        if verified == layout.chunk_count() {
            self.check_clip_id()?;
        }
        if verified != requested {
            return Err(ReceivedError::ResumeDiscarded {
                clip_id: self.clip_id,
                requested,
                held: verified,
            });
        }
        Ok(())
    }

    /// Authenticates chunk `index` (which must be [`next_chunk`](Self::next_chunk)) and
    /// appends it. At the last chunk the whole clip must hash to its id; if it does not,
    /// every held chunk is dropped, since which of them differ is unknowable. After any
    /// error the next chunk must come from a new reply ([`start`](Self::start)).
    pub fn write_chunk(&mut self, index: u64, sealed: &[u8]) -> Result<(), ReceivedError> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(self.deleted());
        }
        let Some(mut session) = self.session.take() else {
            return Err(self.misuse("a chunk was written before the fetch reply was taken"));
        };
        if index != self.next_chunk || session.complete {
            return Err(self.misuse("a chunk was written out of order"));
        }
        // Opened only to authenticate it; the plaintext is wiped as soon as it is dropped.
        match session.cipher.open_chunk(&session.layout, index, sealed) {
            Ok(plaintext) => drop(Zeroizing::new(plaintext)),
            Err(err) => return Err(self.tampered(err.into())),
        }
        let Some(held) = &self.held else {
            return Err(self.misuse("the partial file is missing"));
        };
        let offset = held.ciphertext_offset() + index * SEALED_CHUNK_SIZE as u64;
        held.file
            .write_all_at(sealed, offset)
            .map_err(|err| io_error("write partial clip", &self.partial_path, err))?;
        self.writeback.wrote(sealed.len() as u64, &held.file);
        session.hasher.update(sealed);
        self.next_chunk += 1;
        if let Some(held) = &mut self.held {
            held.chunks = self.next_chunk;
        }
        let last = session.layout.is_last(index);
        self.session = Some(session);
        if last {
            self.check_clip_id()?;
        }
        Ok(())
    }

    /// Makes the clip a received clip: wraps its file key to the vault key, fsyncs, renames
    /// `<clip id>.partial` to `<clip id>.plclip`, fsyncs the directory and records it in
    /// `grant.json`. Only a complete, verified clip can be finished.
    pub fn finish(mut self) -> Result<ReceivedClip, ReceivedError> {
        let Some(session) = self.session.take().filter(|s| s.complete) else {
            return Err(self.misuse("finish was called before every chunk arrived and verified"));
        };
        let Some(held) = self.held.take() else {
            return Err(self.misuse("the partial file is missing"));
        };
        self.writeback.wait();
        let store = Arc::clone(&self.store);
        let active = lock(&store.active);
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(self.deleted());
        }
        let wrapped = wrap_file_key(
            &session.file_key,
            &store.vault_public,
            &self.clip_id,
            AgreementSecret::generate(&mut OsRng),
        )
        .map_err(|source| ReceivedError::Vault {
            clip_id: self.clip_id,
            source,
        })?;
        let file_len = held.ciphertext_offset() + session.layout.ciphertext_len();
        let path = &self.partial_path;
        let final_path = self.dir.join(format!("{}.{CLIP_EXTENSION}", self.clip_id));
        let keyed = held
            .file
            .set_len(file_len)
            .and_then(|()| {
                held.file
                    .write_all_at(&clip_file::encode_wrapped_key(&wrapped), WRAPPED_KEY_OFFSET)
            })
            .and_then(|()| held.file.sync_all())
            .and_then(|()| fs::rename(path, &final_path));
        if let Err(err) = keyed {
            // A partial file holds no key: take it back out (delete_token erases it anyway).
            let _ = held
                .file
                .write_all_at(&[0u8; WRAPPED_KEY_FIELD_LEN], WRAPPED_KEY_OFFSET);
            return Err(io_error("write received clip", path, err));
        }
        clip_file::sync_dir(&self.dir)?;
        let mut grant = read_grant(&self.dir)?.ok_or_else(|| {
            ReceivedError::NotFound(format!("the grant record of token {}", self.token_id))
        })?;
        let entry = grant.entry(&self.clip_id);
        entry.bytes = file_len;
        entry.complete = true;
        let entry = entry.clone();
        write_grant(&self.dir, &grant)?;
        drop(active);
        tracing::info!(clip = %self.clip_id, token = %self.token_id, bytes = file_len, "received clip");
        Ok(entry)
    }

    /// Starts the partial file over under `header_bytes`: magic, a zero key field (no key
    /// until the clip is complete), the header.
    fn create_partial(&mut self, header_bytes: &[u8]) -> Result<(), ReceivedError> {
        let path = &self.partial_path;
        let file = match self.held.take() {
            Some(held) => held.file,
            None => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(|err| io_error("create partial clip", path, err))?,
        };
        let mut front = Vec::with_capacity(HEADER_OFFSET as usize + header_bytes.len());
        front.extend_from_slice(&STORE_MAGIC);
        front.extend_from_slice(&[0u8; WRAPPED_KEY_FIELD_LEN]);
        front.extend_from_slice(header_bytes);
        file.set_len(0)
            .and_then(|()| file.write_all_at(&front, 0))
            .map_err(|err| io_error("write partial clip", path, err))?;
        self.held = Some(HeldPartial {
            file,
            header_bytes: header_bytes.to_vec(),
            chunks: 0,
        });
        Ok(())
    }

    /// After the last chunk: the clip must hash to its id (spec/crypto.md#clip-id). If not,
    /// nothing held can be trusted to belong to it, so the partial starts over.
    fn check_clip_id(&mut self) -> Result<(), ReceivedError> {
        let Some(session) = &mut self.session else {
            return Err(self.misuse("the clip id was checked before the fetch reply"));
        };
        if session.hasher.clone().finish().ct_eq(&self.clip_id) {
            session.complete = true;
            return Ok(());
        }
        self.session = None;
        self.next_chunk = 0;
        if let Some(held) = &mut self.held {
            held.chunks = 0;
            let offset = held.ciphertext_offset();
            held.file
                .set_len(offset)
                .map_err(|err| io_error("cut partial clip", &self.partial_path, err))?;
        }
        Err(self.tampered(CryptoError::ClipIdMismatch.into()))
    }

    fn check_space(&self, needed: u64) -> Result<(), ReceivedError> {
        let available = fs2::available_space(&self.dir)
            .map_err(|err| io_error("measure free space on", &self.dir, err))?;
        if available < needed {
            return Err(ReceivedError::NoSpace {
                clip_id: self.clip_id,
                path: self.dir.clone(),
                needed,
                available,
            });
        }
        Ok(())
    }

    fn tampered(&self, source: ProtocolError) -> ReceivedError {
        ReceivedError::Tampered {
            clip_id: self.clip_id,
            source,
        }
    }

    fn misuse(&self, what: &'static str) -> ReceivedError {
        ReceivedError::Misuse {
            clip_id: self.clip_id,
            what,
        }
    }

    fn deleted(&self) -> ReceivedError {
        ReceivedError::Deleted {
            token_id: self.token_id,
            clip_id: self.clip_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writeback_starts_one_background_sync_per_interval_and_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("clip.partial")).unwrap();
        let mut writeback = Writeback::default();
        writeback.wrote(WRITEBACK_EVERY - 1, &file);
        assert!(writeback.running.is_none(), "too early for a sync");
        assert_eq!(writeback.unsynced, WRITEBACK_EVERY - 1);
        writeback.wrote(1, &file);
        assert!(writeback.running.is_some(), "a sync starts at the interval");
        assert_eq!(writeback.unsynced, 0);
        writeback.wait();
        assert!(writeback.running.is_none());
        // A sync still running is not doubled: the bytes wait for the next chance.
        writeback.running = Some(std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }));
        writeback.wrote(WRITEBACK_EVERY, &file);
        assert_eq!(
            writeback.unsynced, WRITEBACK_EVERY,
            "no second sync in flight"
        );
        writeback.wait();
        writeback.wrote(1, &file);
        assert_eq!(
            writeback.unsynced, 0,
            "the next write after it ends starts one"
        );
        writeback.wait();
    }
}
