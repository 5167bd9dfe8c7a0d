//! The sled index: what the store knows about its clips without opening their files.
//!
//! Three trees, each keyed by the 32-byte clip id, each value a JSON document (the node is
//! the crate that knows JSON; `jq`-able records beat a private binary layout for a store an
//! owner may have to inspect):
//!
//! - `clips`: one [`IndexRecord`] per clip (camera, times, sizes, file path). Derived data:
//!   every field can be recomputed from the clip file, so this tree is dropped and refilled by
//!   a rebuild.
//! - `holds`: clips the owner put on hold. Not derivable from the files, so it survives a
//!   rebuild (entries for clips that no longer exist are pruned). It does not survive the
//!   index directory being deleted: the clips come back from their files, their holds do not.
//! - `grants`: clips named by an active grant, with the time the protection ends (the latest
//!   of all grants naming the clip). Also survives a rebuild.
//!
//! The index deliberately holds no key material. The vault-wrapped file key lives only in
//! the clip file, where shredding overwrites it in place; sled is log-structured, so a value
//! removed from it can linger in old segments, and a copy there would outlive the shred.
//!
//! This module does not decide anything (retention is in `retention`, consistency with the
//! files in `recovery`) and does not flush on its own: callers flush before acknowledging.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use porchlight_protocol::{ClipId, Timestamp};
use serde::{Deserialize, Serialize};

use super::error::StoreError;

const CLIPS_TREE: &str = "clips";
const HOLDS_TREE: &str = "holds";
const GRANTS_TREE: &str = "grants";
/// The index is small (a few hundred bytes per clip); a Raspberry Pi need not give sled its
/// default 1 GiB of cache.
const CACHE_BYTES: u64 = 16 << 20;

/// One clip as the index records it. Every field comes from the clip file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexRecord {
    pub clip_id: ClipId,
    pub camera: String,
    pub media_type: String,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Bytes of the clip file on disk.
    pub size: u64,
    /// Bytes of the plaintext (from the ciphertext's chunk layout).
    pub media_len: u64,
    /// The clip file, relative to the data dir.
    pub file: String,
}

/// A raw entry of the `clips` tree, which may not parse.
pub(crate) struct RawEntry {
    pub key: Vec<u8>,
    pub record: Result<IndexRecord, serde_json::Error>,
}

impl RawEntry {
    /// The key as text for reports: the clip id when it is one.
    pub(crate) fn key_text(&self) -> String {
        match <[u8; 32]>::try_from(self.key.as_slice()) {
            Ok(bytes) => ClipId::from_bytes(bytes).to_string(),
            Err(_) => format!("<{} byte key>", self.key.len()),
        }
    }
}

pub(crate) struct Index {
    path: PathBuf,
    db: sled::Db,
    clips: sled::Tree,
    holds: sled::Tree,
    grants: sled::Tree,
}

impl Index {
    /// Opens (or creates) the index at `path`.
    pub(crate) fn open(path: &Path) -> Result<Index, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|err| match err {
                // sled takes an exclusive lock on its files; the store's own lock normally
                // reports a second user first, but keep the message clear either way.
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked {
                        path: path.to_path_buf(),
                        source: io,
                    }
                }
                err => StoreError::index(path, err),
            })?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|err| StoreError::index(path, err))
        };
        Ok(Index {
            path: path.to_path_buf(),
            clips: tree(CLIPS_TREE)?,
            holds: tree(HOLDS_TREE)?,
            grants: tree(GRANTS_TREE)?,
            db,
        })
    }

    fn err(&self, err: sled::Error) -> StoreError {
        StoreError::index(&self.path, err)
    }

    /// Makes every change so far durable. Nothing is acknowledged before this returns.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(|err| self.err(err))
    }

    pub(crate) fn get(&self, clip_id: &ClipId) -> Result<Option<IndexRecord>, StoreError> {
        let Some(value) = self
            .clips
            .get(clip_id.as_bytes())
            .map_err(|err| self.err(err))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&value)
            .map(Some)
            .map_err(|source| StoreError::BadRecord {
                key: clip_id.to_string(),
                source,
            })
    }

    pub(crate) fn put(&self, record: &IndexRecord) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record).map_err(|source| StoreError::BadRecord {
            key: record.clip_id.to_string(),
            source,
        })?;
        self.clips
            .insert(record.clip_id.as_bytes(), value)
            .map(|_| ())
            .map_err(|err| self.err(err))
    }

    pub(crate) fn remove_key(&self, key: &[u8]) -> Result<(), StoreError> {
        self.clips
            .remove(key)
            .map(|_| ())
            .map_err(|err| self.err(err))
    }

    /// Every entry of the `clips` tree, parsed or not, in key order.
    pub(crate) fn entries(&self) -> Result<Vec<RawEntry>, StoreError> {
        self.clips
            .iter()
            .map(|item| {
                let (key, value) = item.map_err(|err| self.err(err))?;
                Ok(RawEntry {
                    key: key.to_vec(),
                    record: serde_json::from_slice(&value),
                })
            })
            .collect()
    }

    /// Every record that parses. An unparseable one is an error: open and rebuild drop them,
    /// so meeting one here means the index changed under the store.
    pub(crate) fn records(&self) -> Result<Vec<IndexRecord>, StoreError> {
        self.entries()?
            .into_iter()
            .map(|entry| {
                let key = entry.key_text();
                entry
                    .record
                    .map_err(|source| StoreError::BadRecord { key, source })
            })
            .collect()
    }

    /// Empties the `clips` tree (for a rebuild); holds and grants stay.
    pub(crate) fn clear_records(&self) -> Result<(), StoreError> {
        self.clips.clear().map_err(|err| self.err(err))
    }

    /// Removes everything the index knows about a clip.
    pub(crate) fn forget(&self, clip_id: &ClipId) -> Result<(), StoreError> {
        self.remove_key(clip_id.as_bytes())?;
        self.holds
            .remove(clip_id.as_bytes())
            .map_err(|err| self.err(err))?;
        self.grants
            .remove(clip_id.as_bytes())
            .map_err(|err| self.err(err))?;
        Ok(())
    }

    pub(crate) fn is_held(&self, clip_id: &ClipId) -> Result<bool, StoreError> {
        self.holds
            .contains_key(clip_id.as_bytes())
            .map_err(|err| self.err(err))
    }

    pub(crate) fn set_held(&self, clip_id: &ClipId, held: bool) -> Result<(), StoreError> {
        let result = if held {
            self.holds.insert(clip_id.as_bytes(), &b"true"[..])
        } else {
            self.holds.remove(clip_id.as_bytes())
        };
        result.map(|_| ()).map_err(|err| self.err(err))
    }

    pub(crate) fn held(&self) -> Result<BTreeSet<ClipId>, StoreError> {
        self.holds
            .iter()
            .keys()
            .filter_map(|key| match key {
                Ok(key) => <[u8; 32]>::try_from(key.as_ref())
                    .ok()
                    .map(|bytes| Ok(ClipId::from_bytes(bytes))),
                Err(err) => Some(Err(self.err(err))),
            })
            .collect()
    }

    /// The end of the latest grant protecting each clip. Values that do not parse are
    /// skipped (and logged): a lost protection is re-established by the grant's owner, a
    /// panic would stop the node.
    pub(crate) fn grants(&self) -> Result<BTreeMap<ClipId, Timestamp>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.grants.iter() {
            let (key, value) = item.map_err(|err| self.err(err))?;
            let (Ok(bytes), Ok(until)) = (
                <[u8; 32]>::try_from(key.as_ref()),
                serde_json::from_slice::<Timestamp>(&value),
            ) else {
                tracing::warn!("skipping an unreadable grant protection in the index");
                continue;
            };
            out.insert(ClipId::from_bytes(bytes), until);
        }
        Ok(out)
    }

    pub(crate) fn protected_until(
        &self,
        clip_id: &ClipId,
    ) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .grants
            .get(clip_id.as_bytes())
            .map_err(|err| self.err(err))?
            .and_then(|value| serde_json::from_slice(&value).ok()))
    }

    /// Protects a clip until `until`, or later if it is already protected longer.
    pub(crate) fn protect(&self, clip_id: &ClipId, until: Timestamp) -> Result<(), StoreError> {
        let until = self
            .protected_until(clip_id)?
            .map_or(until, |current| current.max(until));
        let value = serde_json::to_vec(&until).map_err(|source| StoreError::BadRecord {
            key: clip_id.to_string(),
            source,
        })?;
        self.grants
            .insert(clip_id.as_bytes(), value)
            .map(|_| ())
            .map_err(|err| self.err(err))
    }

    pub(crate) fn unprotect(&self, clip_id: &ClipId) -> Result<(), StoreError> {
        self.grants
            .remove(clip_id.as_bytes())
            .map(|_| ())
            .map_err(|err| self.err(err))
    }

    /// Removes holds and grant protections of clips the `clips` tree no longer has, and
    /// protections that ended at or before `now` (when given). Returns how many were removed.
    pub(crate) fn prune(&self, now: Option<Timestamp>) -> Result<usize, StoreError> {
        let mut removed = 0;
        for (tree, is_grants) in [(&self.holds, false), (&self.grants, true)] {
            for item in tree.iter() {
                let (key, value) = item.map_err(|err| self.err(err))?;
                let orphan = !self.clips.contains_key(&key).map_err(|err| self.err(err))?;
                let ended = is_grants
                    && now.is_some_and(|now| {
                        serde_json::from_slice::<Timestamp>(&value)
                            .map_or(true, |until| until <= now)
                    });
                if orphan || ended {
                    tree.remove(&key).map_err(|err| self.err(err))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
