//! The store's one error type.
//!
//! Every variant names the object it is about (a clip id, a path) and, where the fix is known,
//! says what to do next; the cause, when there is one, is the error's `source`, so an
//! `anyhow` chain printed with `{:#}` shows both without repeating either. Variants say whose
//! fault it is: the caller's ([`StoreError::NotFound`], [`StoreError::InvalidClip`],
//! [`StoreError::Held`]…), the world's ([`StoreError::DiskFull`], [`StoreError::Io`],
//! [`StoreError::Locked`]) or the disk contents' ([`StoreError::Corrupt`],
//! [`StoreError::Missing`]). None of them is ever a panic: nothing read from disk can make
//! the store panic.

use std::io;
use std::path::PathBuf;

use porchlight_protocol::{ClipId, CryptoError, ProtocolError, Timestamp};
use thiserror::Error;

/// What went wrong in a store operation. When an operation that writes fails, nothing that
/// was stored before it has changed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No clip with this id is in the index.
    #[error("clip {0} not found; list clips with `porchlight clips list`")]
    NotFound(ClipId),

    /// Another process (or another `Store` in this one) has the data dir open.
    #[error(
        "data dir {} is locked; is another porchlight already using this data dir?",
        path.display()
    )]
    Locked {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The data dir's clips are sealed to a different vault key than the one given. Opening
    /// would make every clip look foreign, so nothing is touched.
    #[error(
        "the clips in {} are sealed to vault key {found}, not to this node's vault key \
         {expected}; is this the right key file? (nothing was changed)",
        path.display()
    )]
    WrongVault {
        path: PathBuf,
        found: String,
        expected: String,
    },

    /// The filesystem is out of space (ENOSPC or a quota). The write was abandoned and its
    /// partial file removed; the index is unchanged, and the next write works once space is
    /// free.
    #[error(
        "disk full while {action} {}; nothing was stored: free space (or lower the retention \
         limits) and try again",
        path.display()
    )]
    DiskFull {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Any other file system error.
    #[error("could not {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The sled index failed.
    #[error("the clip index in {} failed; if it persists, run `porchlight store rebuild`", path.display())]
    Index {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    /// An index record does not parse. The clip files are the source of truth, so a rebuild
    /// repairs this.
    #[error("index record {key} is unreadable; run `porchlight store rebuild`")]
    BadRecord {
        key: String,
        #[source]
        source: serde_json::Error,
    },

    /// A clip's file failed verification: it was damaged or altered on disk.
    #[error(
        "clip {clip_id} is damaged ({reason}); run `porchlight store rebuild` to quarantine it"
    )]
    Corrupt { clip_id: ClipId, reason: String },

    /// The index lists a clip whose file is gone.
    #[error(
        "clip {clip_id} is listed but its file {} is missing; run `porchlight store rebuild`",
        path.display()
    )]
    Missing { clip_id: ClipId, path: PathBuf },

    /// The clip's metadata breaks the clip header's rules (camera name, `start <= end`).
    #[error("cannot store a clip for camera {camera:?}")]
    InvalidClip {
        camera: String,
        #[source]
        source: ProtocolError,
    },

    /// The clip to store has no bytes.
    #[error("the clip for camera {camera:?} is empty; nothing was stored")]
    Empty { camera: String },

    /// The reader given to `import` failed. Nothing was stored.
    #[error("reading the clip to import failed after {read} bytes; nothing was stored")]
    ImportRead {
        read: u64,
        #[source]
        source: io::Error,
    },

    /// The writer given to `export` failed. What was written is incomplete: discard it.
    #[error("writing exported clip {clip_id} failed after {written} bytes; discard the output")]
    ExportWrite {
        clip_id: ClipId,
        written: u64,
        #[source]
        source: io::Error,
    },

    /// A clip's file key cannot be wrapped to a grantee's key: the key is a low-order
    /// point, so any wrap to it would be readable by anyone. Nothing is released.
    #[error(
        "cannot wrap the key of clip {clip_id} to the grantee's key (not a usable X25519 key); \
         nothing was released"
    )]
    Grantee {
        clip_id: ClipId,
        #[source]
        source: CryptoError,
    },

    /// The clip is on hold, so it cannot be deleted.
    #[error("clip {0} is on hold; release it with `porchlight clips release {0}` first")]
    Held(ClipId),

    /// The clip is named by an active grant, so it cannot be deleted yet.
    #[error("clip {clip_id} is under an active grant until {until}; it is kept until then")]
    Protected { clip_id: ClipId, until: Timestamp },
}

impl StoreError {
    /// Maps an I/O error on `path` to [`StoreError::DiskFull`] when the file system is out of
    /// space, and to [`StoreError::Io`] otherwise.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if is_disk_full(&source) {
            StoreError::DiskFull {
                action,
                path,
                source,
            }
        } else {
            StoreError::Io {
                action,
                path,
                source,
            }
        }
    }

    /// Maps a sled error, keeping a full disk recognisable.
    pub(crate) fn index(path: impl Into<PathBuf>, source: sled::Error) -> Self {
        let path = path.into();
        match source {
            sled::Error::Io(io) if is_disk_full(&io) => StoreError::DiskFull {
                action: "updating the clip index in",
                path,
                source: io,
            },
            source => StoreError::Index { path, source },
        }
    }

    /// Whether this error means the disk is full (so retention may help).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull { .. })
    }
}

/// ENOSPC, or EDQUOT: either way, writing more needs space freed first.
pub(crate) fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}
