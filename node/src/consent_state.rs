//! The consent core's durable state on disk: `consent-state.json` in the data dir.
//!
//! The core says what must survive a restart ([`porchlight_core::DurableState`]: tokens
//! issued and revoked, requests sent with their reply secrets, grants received, nonces
//! seen); this module writes it after every step that changed it and reads it back at
//! start. The file holds reply secrets, so it is written like the key files: 0600, whole
//! (a temporary file, fsync, rename). A file that does not parse stops the start with one
//! clear error rather than silently forgetting revocations.

use std::path::{Path, PathBuf};

use anyhow::Context;
use porchlight_core::DurableState;
use porchlight_core::state::{IssuedToken, OutgoingRequest, ReceivedGrant, SeenNonce};
use porchlight_protocol::{AgreementSecret, PeerId, RequestId, Timestamp, TokenId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::data_dir::write_new;

/// The file's name in the data dir.
pub const CONSENT_STATE_FILE: &str = "consent-state.json";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    /// The core's clock high-water mark; absent (0) in files from before it was kept.
    #[serde(default)]
    clock_ms: u64,
    issued: Vec<IssuedRecord>,
    outgoing: Vec<OutgoingRecord>,
    received: Vec<ReceivedRecord>,
    seen_nonces: Vec<SeenRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuedRecord {
    token_id: TokenId,
    grantee: PeerId,
    not_after_ms: u64,
    revoked: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutgoingRecord {
    request_id: RequestId,
    /// Hex of the X25519 reply secret.
    reply_secret: String,
    target: Option<PeerId>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceivedRecord {
    token_id: TokenId,
    owner: PeerId,
    not_after_ms: u64,
    retain: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeenRecord {
    requester: PeerId,
    nonce: String,
    forget_at_ms: u64,
}

const VERSION: u32 = 1;

/// Writes `state` to `path` (0600, atomically): [`prepare`], then [`PreparedState::commit`].
pub fn save(path: &Path, state: &DurableState) -> anyhow::Result<()> {
    prepare(path, state)?.commit()
}

/// A new state written and flushed beside the file it will replace, not yet in its place.
/// Dropped without [`PreparedState::commit`], it is removed and the old file stands.
///
/// The split lets the driver do the part that needs disk space (writing and flushing the
/// whole file) before it appends the step's audit entries, and the part that needs none (a
/// rename) after: so a full disk fails a step before anything of it is recorded.
#[derive(Debug)]
pub struct PreparedState {
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl PreparedState {
    /// Puts the new state in place (a rename) and flushes the directory.
    pub fn commit(mut self) -> anyhow::Result<()> {
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("cannot replace {}", self.path.display()))?;
        self.committed = true;
        sync_dir(&self.path)
    }
}

impl Drop for PreparedState {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn sync_dir(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot flush the directory of {}", path.display()))
}

/// Writes `state` beside `path` (0600) and flushes it; see [`PreparedState`].
pub fn prepare(path: &Path, state: &DurableState) -> anyhow::Result<PreparedState> {
    let prepared = PreparedState {
        tmp: path.with_extension("tmp"),
        path: path.to_owned(),
        committed: false,
    };
    crate::faults::check(crate::faults::FaultPoint::StateSave)
        .with_context(|| format!("cannot write {}", prepared.tmp.display()))?;
    let file = StateFile {
        version: VERSION,
        clock_ms: state.clock.as_unix_millis(),
        issued: state
            .issued
            .iter()
            .map(|t| IssuedRecord {
                token_id: t.token_id,
                grantee: t.grantee,
                not_after_ms: t.not_after.as_unix_millis(),
                revoked: t.revoked,
            })
            .collect(),
        outgoing: state
            .outgoing
            .iter()
            .map(|o| OutgoingRecord {
                request_id: o.request_id,
                reply_secret: hex::encode(*o.reply_secret.to_bytes()),
                target: o.target,
            })
            .collect(),
        received: state
            .received
            .iter()
            .map(|g| ReceivedRecord {
                token_id: g.token_id,
                owner: g.owner,
                not_after_ms: g.not_after.as_unix_millis(),
                retain: g.retain,
            })
            .collect(),
        seen_nonces: state
            .seen_nonces
            .iter()
            .map(|s| SeenRecord {
                requester: s.requester,
                nonce: hex::encode(s.nonce),
                forget_at_ms: s.forget_at.as_unix_millis(),
            })
            .collect(),
    };
    let json =
        Zeroizing::new(serde_json::to_vec(&file).context("cannot encode the consent state")?);
    let _ = std::fs::remove_file(&prepared.tmp);
    // A write that fails part-way leaves the temporary behind; dropping `prepared` removes it.
    write_new(&prepared.tmp, &json, 0o600)?;
    Ok(prepared)
}

/// Reads the state written by [`save`]; a missing file is an empty state (a new node).
pub fn load(path: &Path) -> anyhow::Result<DurableState> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(DurableState::default());
        }
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read {}", path.display()));
        }
    };
    let damaged = || {
        format!(
            "{} is damaged; it holds the tokens this node issued and revoked. Restore it from a backup, or move it aside to start without them (issued grants stop working)",
            path.display()
        )
    };
    let file: StateFile = serde_json::from_slice(&bytes).with_context(damaged)?;
    if file.version != VERSION {
        anyhow::bail!(
            "{} is version {}, this porchlight reads version {VERSION}; use a matching porchlight",
            path.display(),
            file.version
        );
    }
    let mut outgoing = Vec::with_capacity(file.outgoing.len());
    for record in file.outgoing {
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(&record.reply_secret, secret.as_mut()).with_context(damaged)?;
        outgoing.push(OutgoingRequest {
            request_id: record.request_id,
            reply_secret: AgreementSecret::from_bytes(*secret),
            target: record.target,
        });
    }
    let mut seen_nonces = Vec::with_capacity(file.seen_nonces.len());
    for record in file.seen_nonces {
        let mut nonce = [0u8; 16];
        hex::decode_to_slice(&record.nonce, &mut nonce).with_context(damaged)?;
        seen_nonces.push(SeenNonce {
            requester: record.requester,
            nonce,
            forget_at: Timestamp::from_unix_millis(record.forget_at_ms),
        });
    }
    Ok(DurableState {
        clock: Timestamp::from_unix_millis(file.clock_ms),
        issued: file
            .issued
            .into_iter()
            .map(|r| IssuedToken {
                token_id: r.token_id,
                grantee: r.grantee,
                not_after: Timestamp::from_unix_millis(r.not_after_ms),
                revoked: r.revoked,
            })
            .collect(),
        outgoing,
        received: file
            .received
            .into_iter()
            .map(|r| ReceivedGrant {
                token_id: r.token_id,
                owner: r.owner,
                not_after: Timestamp::from_unix_millis(r.not_after_ms),
                retain: r.retain,
            })
            .collect(),
        seen_nonces,
    })
}

#[cfg(test)]
mod tests {
    use porchlight_core::state::IssuedToken;

    use super::*;

    #[test]
    fn the_state_round_trips_and_the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONSENT_STATE_FILE);
        let peer = PeerId::from_public_key_bytes([7; 32]);
        let state = DurableState {
            clock: Timestamp::from_unix_millis(10),
            issued: vec![IssuedToken {
                token_id: TokenId::from_bytes([1; 16]),
                grantee: peer,
                not_after: Timestamp::from_unix_millis(5),
                revoked: true,
            }],
            outgoing: vec![OutgoingRequest {
                request_id: RequestId::from_bytes([2; 32]),
                reply_secret: AgreementSecret::from_bytes([3; 32]),
                target: Some(peer),
            }],
            received: vec![ReceivedGrant {
                token_id: TokenId::from_bytes([4; 16]),
                owner: peer,
                not_after: Timestamp::from_unix_millis(6),
                retain: false,
            }],
            seen_nonces: vec![SeenNonce {
                requester: peer,
                nonce: [8; 16],
                forget_at: Timestamp::from_unix_millis(9),
            }],
        };
        save(&path, &state).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.clock, state.clock);
        assert_eq!(loaded.issued, state.issued);
        assert_eq!(loaded.received, state.received);
        assert_eq!(loaded.seen_nonces, state.seen_nonces);
        assert_eq!(loaded.outgoing[0].request_id, state.outgoing[0].request_id);
        assert_eq!(
            *loaded.outgoing[0].reply_secret.to_bytes(),
            *state.outgoing[0].reply_secret.to_bytes()
        );
    }

    #[test]
    fn a_missing_file_is_an_empty_state_and_a_damaged_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONSENT_STATE_FILE);
        assert!(load(&path).unwrap().issued.is_empty());
        std::fs::write(&path, b"{\"version\": 1, \"issued\": [").unwrap();
        let error = format!("{:#}", load(&path).unwrap_err());
        assert!(error.contains("damaged"), "{error}");
        std::fs::write(
            &path,
            br#"{"version":1,"issued":[],"outgoing":[{"request_id":"00","reply_secret":"zz","target":null}],"received":[],"seen_nonces":[]}"#,
        )
        .unwrap();
        assert!(load(&path).is_err());
    }

    #[test]
    fn a_file_from_before_the_clock_was_kept_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONSENT_STATE_FILE);
        std::fs::write(
            &path,
            br#"{"version":1,"issued":[],"outgoing":[],"received":[],"seen_nonces":[]}"#,
        )
        .unwrap();
        assert_eq!(load(&path).unwrap().clock, Timestamp::from_unix_millis(0));
    }

    #[test]
    fn a_prepared_state_changes_nothing_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONSENT_STATE_FILE);
        let old = DurableState {
            clock: Timestamp::from_unix_millis(1),
            ..DurableState::default()
        };
        save(&path, &old).unwrap();
        let new = DurableState {
            clock: Timestamp::from_unix_millis(2),
            ..DurableState::default()
        };
        // Abandoned: the old file stands and no temporary is left.
        drop(prepare(&path, &new).unwrap());
        assert_eq!(load(&path).unwrap().clock, old.clock);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Committed: the new one is in place.
        prepare(&path, &new).unwrap().commit().unwrap();
        assert_eq!(load(&path).unwrap().clock, new.clock);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
