//! The hash-chained audit log: every request received or sent, every decision, token,
//! fetch, revocation and deletion, in order, tamper-evident.
//!
//! The core builds entries and hands them to the shell ([`crate::Output::Audit`]), which
//! makes them durable; the core keeps only the head (next `seq` and last hash). Each entry's
//! hash covers its position, time, predecessor's hash and event, in the fixed encoding of
//! [`AuditEntry::canonical_bytes`], so [`verify_chain`] detects an edited, removed or
//! reordered entry. Deliberately absent for now: signing entries with the node key (the
//! protocol keeps `SigningIdentity::sign` crate-private, so it needs a protocol API first)
//! and anchoring the head, without which dropping the *newest* entries is not detectable.

use porchlight_protocol::{ClipId, PeerId, RejectCode, RequestId, Timestamp, TokenId};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Domain prefix of every entry hash.
pub const AUDIT_ENTRY_DOMAIN: &[u8] = b"porchlight/v1/audit-entry";

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// What happened to an incoming request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Queued for the owner.
    Prompted,
    /// No stored clip overlaps the window: nothing was said.
    NoMatchingClips,
    /// The requester is blocked.
    Blocked,
    /// Denied by the "deny unverified" rule.
    DeniedUnverified,
    /// Denied by the "deny without case number" rule.
    DeniedNoCaseNumber,
    /// Granted by a pre-authorization.
    PreAuthorized,
}

/// Why a received grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantEnd {
    Expired,
    Revoked,
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent {
    RequestReceived {
        request_id: RequestId,
        requester: PeerId,
        verified: bool,
        outcome: RequestOutcome,
    },
    RequestSent {
        request_id: RequestId,
        area: bool,
    },
    /// The owner side granted; `by_rule` when a pre-authorization did.
    Granted {
        request_id: RequestId,
        token_id: TokenId,
        grantee: PeerId,
        clips: Vec<ClipId>,
        not_after: Timestamp,
        retain: bool,
        by_rule: bool,
    },
    /// The owner denied; `message_sent` when the requester was told.
    Denied {
        request_id: RequestId,
        message_sent: bool,
    },
    FetchServed {
        token_id: TokenId,
        clip_id: ClipId,
        peer: PeerId,
    },
    FetchRefused {
        peer: PeerId,
        code: RejectCode,
    },
    Revoked {
        token_id: TokenId,
        grantee: PeerId,
    },
    /// The requester side received a grant.
    GrantReceived {
        request_id: RequestId,
        token_id: TokenId,
        owner: PeerId,
    },
    /// The requester side received an explicit deny.
    DenialReceived {
        request_id: RequestId,
        owner: PeerId,
    },
    /// A received grant ended; `deleted` unless retention was granted.
    GrantEnded {
        token_id: TokenId,
        why: GrantEnd,
        deleted: bool,
    },
}

/// One link of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: Timestamp,
    pub prev_hash: [u8; 32],
    pub event: AuditEvent,
    /// SHA-256 of [`AuditEntry::canonical_bytes`].
    pub hash: [u8; 32],
}

impl AuditEntry {
    /// The bytes the hash covers, a fixed layout (all integers big-endian):
    ///
    /// ```text
    /// "porchlight/v1/audit-entry" || seq: u64 || at: u64 (unix ms) || prev_hash: 32
    ///   || event tag: u8 || event fields in declaration order
    /// ```
    ///
    /// Fields: ids and peer ids as their raw fixed-size bytes, times as u64 ms, bools and
    /// enum tags as one byte, a clip list as a u32 count then each 32-byte id. No field has
    /// variable length except that list, which is length-prefixed, so the layout is
    /// unambiguous. Tags are part of the format: never renumber them.
    pub fn canonical_bytes(
        seq: u64,
        at: Timestamp,
        prev_hash: &[u8; 32],
        event: &AuditEvent,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(AUDIT_ENTRY_DOMAIN);
        out.extend_from_slice(&seq.to_be_bytes());
        put_time(&mut out, at);
        out.extend_from_slice(prev_hash);
        encode_event(&mut out, event);
        out
    }

    /// Computes the hash an entry with these fields must carry.
    pub fn compute_hash(
        seq: u64,
        at: Timestamp,
        prev_hash: &[u8; 32],
        event: &AuditEvent,
    ) -> [u8; 32] {
        Sha256::digest(AuditEntry::canonical_bytes(seq, at, prev_hash, event)).into()
    }
}

fn put_time(out: &mut Vec<u8>, at: Timestamp) {
    out.extend_from_slice(&at.as_unix_millis().to_be_bytes());
}

fn put_bool(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

fn encode_event(out: &mut Vec<u8>, event: &AuditEvent) {
    match event {
        AuditEvent::RequestReceived {
            request_id,
            requester,
            verified,
            outcome,
        } => {
            out.push(1);
            out.extend_from_slice(request_id.as_bytes());
            out.extend_from_slice(requester.public_key_bytes());
            put_bool(out, *verified);
            out.push(match outcome {
                RequestOutcome::Prompted => 1,
                RequestOutcome::NoMatchingClips => 2,
                RequestOutcome::Blocked => 3,
                RequestOutcome::DeniedUnverified => 4,
                RequestOutcome::DeniedNoCaseNumber => 5,
                RequestOutcome::PreAuthorized => 6,
            });
        }
        AuditEvent::RequestSent { request_id, area } => {
            out.push(2);
            out.extend_from_slice(request_id.as_bytes());
            put_bool(out, *area);
        }
        AuditEvent::Granted {
            request_id,
            token_id,
            grantee,
            clips,
            not_after,
            retain,
            by_rule,
        } => {
            out.push(3);
            out.extend_from_slice(request_id.as_bytes());
            out.extend_from_slice(token_id.as_bytes());
            out.extend_from_slice(grantee.public_key_bytes());
            let count = u32::try_from(clips.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            for clip in clips {
                out.extend_from_slice(clip.as_bytes());
            }
            put_time(out, *not_after);
            put_bool(out, *retain);
            put_bool(out, *by_rule);
        }
        AuditEvent::Denied {
            request_id,
            message_sent,
        } => {
            out.push(4);
            out.extend_from_slice(request_id.as_bytes());
            put_bool(out, *message_sent);
        }
        AuditEvent::FetchServed {
            token_id,
            clip_id,
            peer,
        } => {
            out.push(5);
            out.extend_from_slice(token_id.as_bytes());
            out.extend_from_slice(clip_id.as_bytes());
            out.extend_from_slice(peer.public_key_bytes());
        }
        AuditEvent::FetchRefused { peer, code } => {
            out.push(6);
            out.extend_from_slice(peer.public_key_bytes());
            out.push(code.to_byte());
        }
        AuditEvent::Revoked { token_id, grantee } => {
            out.push(7);
            out.extend_from_slice(token_id.as_bytes());
            out.extend_from_slice(grantee.public_key_bytes());
        }
        AuditEvent::GrantReceived {
            request_id,
            token_id,
            owner,
        } => {
            out.push(8);
            out.extend_from_slice(request_id.as_bytes());
            out.extend_from_slice(token_id.as_bytes());
            out.extend_from_slice(owner.public_key_bytes());
        }
        AuditEvent::DenialReceived { request_id, owner } => {
            out.push(9);
            out.extend_from_slice(request_id.as_bytes());
            out.extend_from_slice(owner.public_key_bytes());
        }
        AuditEvent::GrantEnded {
            token_id,
            why,
            deleted,
        } => {
            out.push(10);
            out.extend_from_slice(token_id.as_bytes());
            out.push(match why {
                GrantEnd::Expired => 1,
                GrantEnd::Revoked => 2,
            });
            put_bool(out, *deleted);
        }
    }
}

/// The head of the chain: what the next entry links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditHead {
    next_seq: u64,
    last_hash: [u8; 32],
}

impl AuditHead {
    pub(crate) fn new() -> AuditHead {
        AuditHead {
            next_seq: 0,
            last_hash: GENESIS_HASH,
        }
    }

    /// Builds the next entry and advances the head.
    pub(crate) fn append(&mut self, at: Timestamp, event: AuditEvent) -> AuditEntry {
        let seq = self.next_seq;
        let prev_hash = self.last_hash;
        let hash = AuditEntry::compute_hash(seq, at, &prev_hash, &event);
        self.next_seq += 1;
        self.last_hash = hash;
        AuditEntry {
            seq,
            at,
            prev_hash,
            event,
            hash,
        }
    }
}

/// How a chain failed to verify. `index` is the position in the slice given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error(
        "audit entry {index} does not start the chain (seq {seq}, or its prev_hash is not the genesis hash)"
    )]
    BadStart { index: usize, seq: u64 },
    #[error(
        "audit entry {index} has seq {found}, expected {expected} (an entry was removed or moved)"
    )]
    SeqGap {
        index: usize,
        expected: u64,
        found: u64,
    },
    #[error("audit entry {index} does not link to the entry before it (removed or reordered)")]
    BrokenLink { index: usize },
    #[error("audit entry {index}'s hash does not match its content (edited)")]
    BadHash { index: usize },
    #[error("audit entry {index} is dated before the entry before it")]
    TimeWentBackwards { index: usize },
}

/// Checks a whole chain from its first entry: each hash matches its entry, each entry links
/// to the one before, seq counts up from zero and time never goes backwards. An empty chain
/// is valid. Truncating the newest entries is not detectable here (see the module doc).
pub fn verify_chain(entries: &[AuditEntry]) -> Result<(), AuditError> {
    let mut previous: Option<&AuditEntry> = None;
    for (index, entry) in entries.iter().enumerate() {
        let expected_hash =
            AuditEntry::compute_hash(entry.seq, entry.at, &entry.prev_hash, &entry.event);
        if expected_hash != entry.hash {
            return Err(AuditError::BadHash { index });
        }
        match previous {
            None => {
                if entry.seq != 0 || entry.prev_hash != GENESIS_HASH {
                    return Err(AuditError::BadStart {
                        index,
                        seq: entry.seq,
                    });
                }
            }
            Some(before) => {
                let expected = before.seq.wrapping_add(1);
                if entry.seq != expected {
                    return Err(AuditError::SeqGap {
                        index,
                        expected,
                        found: entry.seq,
                    });
                }
                if entry.prev_hash != before.hash {
                    return Err(AuditError::BrokenLink { index });
                }
                if entry.at < before.at {
                    return Err(AuditError::TimeWentBackwards { index });
                }
            }
        }
        previous = Some(entry);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut head = AuditHead::new();
        (0..n)
            .map(|i| {
                head.append(
                    Timestamp::from_unix_millis(1_000 + i),
                    AuditEvent::Denied {
                        request_id: RequestId::from_bytes([i as u8; 32]),
                        message_sent: i % 2 == 0,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_fresh_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)), Ok(()));
        assert_eq!(verify_chain(&[]), Ok(()));
    }

    #[test]
    fn editing_an_event_breaks_its_hash() {
        let mut entries = chain(4);
        entries[2].event = AuditEvent::Denied {
            request_id: RequestId::from_bytes([2; 32]),
            message_sent: false,
        };
        assert_eq!(
            verify_chain(&entries),
            Err(AuditError::BadHash { index: 2 })
        );
    }

    #[test]
    fn editing_the_time_breaks_the_hash() {
        let mut entries = chain(3);
        entries[1].at = Timestamp::from_unix_millis(5);
        assert_eq!(
            verify_chain(&entries),
            Err(AuditError::BadHash { index: 1 })
        );
    }

    #[test]
    fn removing_an_entry_is_a_gap() {
        let mut entries = chain(4);
        entries.remove(1);
        assert_eq!(
            verify_chain(&entries),
            Err(AuditError::SeqGap {
                index: 1,
                expected: 1,
                found: 2
            })
        );
    }

    #[test]
    fn removing_the_first_entry_is_a_bad_start() {
        let mut entries = chain(3);
        entries.remove(0);
        assert_eq!(
            verify_chain(&entries),
            Err(AuditError::BadStart { index: 0, seq: 1 })
        );
    }

    #[test]
    fn swapping_entries_is_detected() {
        let mut entries = chain(4);
        entries.swap(1, 2);
        assert_eq!(
            verify_chain(&entries),
            Err(AuditError::SeqGap {
                index: 1,
                expected: 1,
                found: 2
            })
        );
    }

    #[test]
    fn renumbering_after_a_removal_still_breaks_the_link() {
        // A forger who removes entry 1 and rewrites seq must recompute hashes, and then the
        // chain links no longer match.
        let mut entries = chain(4);
        entries.remove(1);
        for (i, entry) in entries.iter_mut().enumerate() {
            entry.seq = i as u64;
            entry.hash =
                AuditEntry::compute_hash(entry.seq, entry.at, &entry.prev_hash, &entry.event);
        }
        assert_eq!(
            verify_chain(&entries),
            Err(AuditError::BrokenLink { index: 1 })
        );
    }

    #[test]
    fn encoding_is_fixed() {
        let event = AuditEvent::RequestSent {
            request_id: RequestId::from_bytes([7; 32]),
            area: true,
        };
        let bytes =
            AuditEntry::canonical_bytes(3, Timestamp::from_unix_millis(9), &[1; 32], &event);
        let mut expected = b"porchlight/v1/audit-entry".to_vec();
        expected.extend_from_slice(&3u64.to_be_bytes());
        expected.extend_from_slice(&9u64.to_be_bytes());
        expected.extend_from_slice(&[1; 32]);
        expected.push(2);
        expected.extend_from_slice(&[7; 32]);
        expected.push(1);
        assert_eq!(bytes, expected);
    }
}
