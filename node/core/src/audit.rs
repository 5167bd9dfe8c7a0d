//! The hash-chained audit log: every request received or sent, every decision, token,
//! fetch, revocation and deletion, in order, tamper-evident.
//!
//! The core builds entries and hands them to the shell ([`crate::Output::Audit`]), which
//! makes them durable; the core keeps only the head (next `seq` and last hash). Each entry's
//! hash covers its position, time, predecessor's hash and event, in the fixed encoding of
//! [`AuditEntry::canonical_bytes`], so [`verify_chain`] detects an edited, removed or
//! reordered entry. [`AuditEntry::from_canonical_bytes`] is the strict inverse of that
//! encoding, so a shell can store the bytes and a verifier can read them back without
//! trusting anything but the bytes (the file format is spec/wire.md#audit-log-file).
//!
//! Deliberately absent: signing and storing entries (the shell signs each entry's hash with
//! `SigningIdentity::sign_audit_entry` and appends it to its durable log) and anchoring the
//! head, without which dropping the *newest* entries is not detectable. A restarted node
//! continues the chain from the durable log's last entry with [`crate::Node::resume_audit`].

use porchlight_protocol::validate::{MAX_CLIPS_PER_TOKEN, MAX_DENY_MESSAGE_LEN, check_text};
use porchlight_protocol::{ClipId, PeerId, RejectCode, RequestId, Timestamp, TokenId};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Domain prefix of every entry hash.
pub const AUDIT_ENTRY_DOMAIN: &[u8] = b"porchlight/v1/audit-entry";

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Most clips a `Granted` entry may list: a token's limit.
pub const MAX_AUDIT_CLIPS: usize = MAX_CLIPS_PER_TOKEN;

/// Longest message a `DenialReceivedWithMessage` may carry, in UTF-8 bytes: the protocol's
/// deny message limit (spec/wire.md#limits).
pub const MAX_AUDIT_MESSAGE_LEN: usize = MAX_DENY_MESSAGE_LEN;

/// Longest canonical entry: the fixed prefix (domain, seq, at, prev_hash, tag) and the
/// largest event, a `Granted` with [`MAX_AUDIT_CLIPS`] clips (a
/// `DenialReceivedWithMessage` of [`MAX_AUDIT_MESSAGE_LEN`] bytes is far shorter). A reader
/// can refuse anything longer before allocating.
pub const MAX_CANONICAL_LEN: usize =
    AUDIT_ENTRY_DOMAIN.len() + 8 + 8 + 32 + 1 + (32 + 16 + 32 + 4 + 32 * MAX_AUDIT_CLIPS + 8 + 2);

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

/// What a [`AuditEvent::FetchRefusalsCounted`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchRefusalCause {
    /// Refused with this reject code.
    Rejected(RejectCode),
    /// Over a fetch limit (stream count or byte budget): closed unanswered.
    OverLimit,
}

/// Whose refusals a [`AuditEvent::FetchRefusalsCounted`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedPeers {
    One(PeerId),
    /// Every peer past the per-interval limit on peers counted one by one, summed.
    Others,
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
    /// The requester side received an explicit deny without a message.
    DenialReceived {
        request_id: RequestId,
        owner: PeerId,
    },
    /// The requester side received an explicit deny with the owner's message, kept as the
    /// owner wrote it (checked as peer text when it arrived, and again when read back).
    DenialReceivedWithMessage {
        request_id: RequestId,
        owner: PeerId,
        message: String,
    },
    /// A received grant ended; `deleted` unless retention was granted.
    GrantEnded {
        token_id: TokenId,
        why: GrantEnd,
        deleted: bool,
    },
    /// The owner side finished streaming a clip to `peer`: `bytes` left this home.
    FetchCompleted {
        token_id: TokenId,
        clip_id: ClipId,
        peer: PeerId,
        bytes: u64,
    },
    /// The requester side stored a clip it received under a grant.
    ClipReceived {
        token_id: TokenId,
        clip_id: ClipId,
        bytes: u64,
    },
    /// `count` fetch refusals of `peers` for `cause` between `since` and this entry's time
    /// that were not recorded one by one (the first of each peer and code is its own
    /// `FetchRefused`; see the core's `refusals` module).
    FetchRefusalsCounted {
        since: Timestamp,
        peers: RefusedPeers,
        cause: FetchRefusalCause,
        count: u64,
    },
    /// The first entry of a new chain, begun because the owner set a damaged log aside
    /// (`porchlight audit set-aside`): `verified` entries of that log verified, and
    /// `last_hash` is the hash of the last of them (seq `verified - 1`; the genesis hash
    /// when none did), so the new chain says where the old one can still be trusted to end.
    LogSetAside {
        verified: u64,
        last_hash: [u8; 32],
    },
    /// The owner side ended a stream to `peer` before the clip's end because its token
    /// expired or was revoked: `bytes` had left this home by then.
    FetchCut {
        token_id: TokenId,
        clip_id: ClipId,
        peer: PeerId,
        bytes: u64,
        why: GrantEnd,
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
    /// enum tags as one byte, a clip list as a u32 count then each 32-byte id, a text as a
    /// u16 byte count then that many bytes of UTF-8. No field has variable length except
    /// those two, which are length-prefixed, so the layout is unambiguous. Tags are part of
    /// the format: never renumber them.
    ///
    /// | tag | event | fields after the tag |
    /// |---|---|---|
    /// | 1 | `RequestReceived` | request id 32, requester 32, verified 1, outcome 1 (1..=6) |
    /// | 2 | `RequestSent` | request id 32, area 1 |
    /// | 3 | `Granted` | request id 32, token id 16, grantee 32, count u32, clips 32 each, not_after 8, retain 1, by_rule 1 |
    /// | 4 | `Denied` | request id 32, message_sent 1 |
    /// | 5 | `FetchServed` | token id 16, clip id 32, peer 32 |
    /// | 6 | `FetchRefused` | peer 32, reject code 1 (1..=5) |
    /// | 7 | `Revoked` | token id 16, grantee 32 |
    /// | 8 | `GrantReceived` | request id 32, token id 16, owner 32 |
    /// | 9 | `DenialReceived` | request id 32, owner 32 |
    /// | 10 | `GrantEnded` | token id 16, why 1 (1 expired, 2 revoked), deleted 1 |
    /// | 11 | `FetchCompleted` | token id 16, clip id 32, peer 32, bytes u64 |
    /// | 12 | `ClipReceived` | token id 16, clip id 32, bytes u64 |
    /// | 13 | `FetchRefusalsCounted` | since 8, peers 1 (1 one peer, 2 others), peer 32 (zero for others), cause 1 (1 rejected, 2 over a limit), reject code 1 (1..=5; 0 for over a limit), count u64 |
    /// | 14 | `FetchCut` | token id 16, clip id 32, peer 32, bytes u64, why 1 (1 expired, 2 revoked) |
    /// | 15 | `LogSetAside` | verified u64, last hash 32 |
    /// | 16 | `DenialReceivedWithMessage` | request id 32, owner 32, length u16 (1..=500), message UTF-8 |
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

    /// This entry's [`AuditEntry::canonical_bytes`].
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        AuditEntry::canonical_bytes(self.seq, self.at, &self.prev_hash, &self.event)
    }

    /// Decodes [`AuditEntry::canonical_bytes`], strictly: the exact inverse, so a decoded
    /// entry re-encodes to the same bytes. Rejects a wrong domain, an unknown tag or code, a
    /// bool that is not 0 or 1, more clips than a token may hold, truncated input and
    /// trailing bytes, without panicking on any input. `hash` is the SHA-256 of `bytes`;
    /// whether it matches a stored hash or links to a predecessor is for the caller (and
    /// [`verify_chain`]) to check.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<AuditEntry, AuditDecodeError> {
        if bytes.len() > MAX_CANONICAL_LEN {
            return Err(AuditDecodeError::TooLong {
                len: bytes.len(),
                max: MAX_CANONICAL_LEN,
            });
        }
        let mut reader = Reader { rest: bytes };
        let domain: [u8; AUDIT_ENTRY_DOMAIN.len()] = reader.take()?;
        if domain != AUDIT_ENTRY_DOMAIN {
            return Err(AuditDecodeError::WrongDomain);
        }
        let seq = reader.u64()?;
        let at = reader.time()?;
        let prev_hash = reader.take()?;
        let event = decode_event(&mut reader)?;
        if !reader.rest.is_empty() {
            return Err(AuditDecodeError::TrailingBytes {
                extra: reader.rest.len(),
            });
        }
        Ok(AuditEntry {
            seq,
            at,
            prev_hash,
            event,
            hash: Sha256::digest(bytes).into(),
        })
    }
}

/// The length of the canonical entry at the start of `bytes`, which may go on past it: the
/// entry's layout fixes its length (only a `Granted`'s clip list and a text vary, and both
/// are counted),
/// so a reader can learn where an entry must end from the entry itself, without trusting a
/// length stored beside it. Checks what [`AuditEntry::from_canonical_bytes`] checks except
/// trailing bytes; [`AuditDecodeError::Truncated`] means `bytes` end inside the entry.
pub fn canonical_len_at_start(bytes: &[u8]) -> Result<usize, AuditDecodeError> {
    let bytes = &bytes[..bytes.len().min(MAX_CANONICAL_LEN)];
    let mut reader = Reader { rest: bytes };
    let domain: [u8; AUDIT_ENTRY_DOMAIN.len()] = reader.take()?;
    if domain != AUDIT_ENTRY_DOMAIN {
        return Err(AuditDecodeError::WrongDomain);
    }
    reader.u64()?;
    reader.time()?;
    reader.take::<32>()?;
    decode_event(&mut reader)?;
    Ok(bytes.len() - reader.rest.len())
}

/// Why bytes are not a canonical audit entry. Every variant means the bytes were not written
/// by [`AuditEntry::canonical_bytes`]: damaged or forged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuditDecodeError {
    #[error("audit entry is {len} bytes, more than the longest possible ({max})")]
    TooLong { len: usize, max: usize },
    #[error("audit entry does not start with the audit domain")]
    WrongDomain,
    #[error("audit entry is truncated")]
    Truncated,
    #[error("audit entry has unknown event tag {0}")]
    UnknownEvent(u8),
    #[error("audit entry has invalid {field} byte {byte}")]
    BadValue { field: &'static str, byte: u8 },
    #[error("audit entry lists {count} clips, more than the limit of {max}")]
    TooManyClips { count: u32, max: usize },
    #[error("audit entry has {extra} trailing bytes after its end")]
    TrailingBytes { extra: usize },
    #[error("audit entry's {field} is not valid peer text: {reason}")]
    BadText { field: &'static str, reason: String },
}

/// A cursor over canonical bytes that never reads past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], AuditDecodeError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(AuditDecodeError::Truncated)?;
        self.rest = tail;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, AuditDecodeError> {
        self.take::<1>().map(|[byte]| byte)
    }

    fn u32(&mut self) -> Result<u32, AuditDecodeError> {
        self.take().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, AuditDecodeError> {
        self.take().map(u64::from_be_bytes)
    }

    fn time(&mut self) -> Result<Timestamp, AuditDecodeError> {
        self.u64().map(Timestamp::from_unix_millis)
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, AuditDecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(AuditDecodeError::BadValue { field, byte }),
        }
    }

    fn request_id(&mut self) -> Result<RequestId, AuditDecodeError> {
        self.take().map(RequestId::from_bytes)
    }

    fn token_id(&mut self) -> Result<TokenId, AuditDecodeError> {
        self.take().map(TokenId::from_bytes)
    }

    fn clip_id(&mut self) -> Result<ClipId, AuditDecodeError> {
        self.take().map(ClipId::from_bytes)
    }

    fn peer(&mut self) -> Result<PeerId, AuditDecodeError> {
        self.take().map(PeerId::from_public_key_bytes)
    }

    /// A u16-counted UTF-8 text of at most `max` bytes that passes the protocol's text
    /// check: exactly what `put_text` writes for a text the protocol accepted.
    fn text(&mut self, field: &'static str, max: usize) -> Result<String, AuditDecodeError> {
        let len = usize::from(u16::from_be_bytes(self.take()?));
        if len > max {
            return Err(AuditDecodeError::BadText {
                field,
                reason: format!("{len} bytes, more than the limit of {max}"),
            });
        }
        let (head, tail) = self
            .rest
            .split_at_checked(len)
            .ok_or(AuditDecodeError::Truncated)?;
        self.rest = tail;
        let text = std::str::from_utf8(head).map_err(|_| AuditDecodeError::BadText {
            field,
            reason: "not UTF-8".to_owned(),
        })?;
        check_text(field, text, max, false).map_err(|err| AuditDecodeError::BadText {
            field,
            reason: err.to_string(),
        })?;
        Ok(text.to_owned())
    }

    fn reject_code(&mut self) -> Result<RejectCode, AuditDecodeError> {
        let byte = self.u8()?;
        // from_byte maps unknown codes to Malformed; only an exact round trip is canonical.
        let code = RejectCode::from_byte(byte);
        if code.to_byte() != byte {
            return Err(AuditDecodeError::BadValue {
                field: "reject code",
                byte,
            });
        }
        Ok(code)
    }
}

fn put_time(out: &mut Vec<u8>, at: Timestamp) {
    out.extend_from_slice(&at.as_unix_millis().to_be_bytes());
}

fn put_bool(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

/// A u16 byte count then the UTF-8 bytes. The core only records text the protocol accepted
/// (at most [`MAX_AUDIT_MESSAGE_LEN`] bytes); a longer one, a caller's bug, is cut at a char
/// boundary within the limit rather than written in a form no reader would accept.
fn put_text(out: &mut Vec<u8>, text: &str) {
    let mut end = text.len().min(MAX_AUDIT_MESSAGE_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let len = u16::try_from(end).expect("MAX_AUDIT_MESSAGE_LEN fits a u16");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
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
        AuditEvent::DenialReceivedWithMessage {
            request_id,
            owner,
            message,
        } => {
            out.push(16);
            out.extend_from_slice(request_id.as_bytes());
            out.extend_from_slice(owner.public_key_bytes());
            put_text(out, message);
        }
        AuditEvent::GrantEnded {
            token_id,
            why,
            deleted,
        } => {
            out.push(10);
            out.extend_from_slice(token_id.as_bytes());
            out.push(grant_end_byte(*why));
            put_bool(out, *deleted);
        }
        AuditEvent::FetchCompleted {
            token_id,
            clip_id,
            peer,
            bytes,
        } => {
            out.push(11);
            out.extend_from_slice(token_id.as_bytes());
            out.extend_from_slice(clip_id.as_bytes());
            out.extend_from_slice(peer.public_key_bytes());
            out.extend_from_slice(&bytes.to_be_bytes());
        }
        AuditEvent::ClipReceived {
            token_id,
            clip_id,
            bytes,
        } => {
            out.push(12);
            out.extend_from_slice(token_id.as_bytes());
            out.extend_from_slice(clip_id.as_bytes());
            out.extend_from_slice(&bytes.to_be_bytes());
        }
        AuditEvent::FetchRefusalsCounted {
            since,
            peers,
            cause,
            count,
        } => {
            out.push(13);
            put_time(out, *since);
            match peers {
                RefusedPeers::One(peer) => {
                    out.push(1);
                    out.extend_from_slice(peer.public_key_bytes());
                }
                RefusedPeers::Others => {
                    out.push(2);
                    out.extend_from_slice(&[0; 32]);
                }
            }
            match cause {
                FetchRefusalCause::Rejected(code) => {
                    out.push(1);
                    out.push(code.to_byte());
                }
                FetchRefusalCause::OverLimit => out.extend_from_slice(&[2, 0]),
            }
            out.extend_from_slice(&count.to_be_bytes());
        }
        AuditEvent::FetchCut {
            token_id,
            clip_id,
            peer,
            bytes,
            why,
        } => {
            out.push(14);
            out.extend_from_slice(token_id.as_bytes());
            out.extend_from_slice(clip_id.as_bytes());
            out.extend_from_slice(peer.public_key_bytes());
            out.extend_from_slice(&bytes.to_be_bytes());
            out.push(grant_end_byte(*why));
        }
        AuditEvent::LogSetAside {
            verified,
            last_hash,
        } => {
            out.push(15);
            out.extend_from_slice(&verified.to_be_bytes());
            out.extend_from_slice(last_hash);
        }
    }
}

/// `GrantEnd`'s byte, as in `GrantEnded` (tag 10).
fn grant_end_byte(why: GrantEnd) -> u8 {
    match why {
        GrantEnd::Expired => 1,
        GrantEnd::Revoked => 2,
    }
}

fn grant_end_of(byte: u8) -> Result<GrantEnd, AuditDecodeError> {
    match byte {
        1 => Ok(GrantEnd::Expired),
        2 => Ok(GrantEnd::Revoked),
        byte => Err(AuditDecodeError::BadValue { field: "why", byte }),
    }
}

/// The inverse of [`encode_event`]: every field in the same order, every code checked.
fn decode_event(reader: &mut Reader<'_>) -> Result<AuditEvent, AuditDecodeError> {
    let event = match reader.u8()? {
        1 => AuditEvent::RequestReceived {
            request_id: reader.request_id()?,
            requester: reader.peer()?,
            verified: reader.bool("verified")?,
            outcome: match reader.u8()? {
                1 => RequestOutcome::Prompted,
                2 => RequestOutcome::NoMatchingClips,
                3 => RequestOutcome::Blocked,
                4 => RequestOutcome::DeniedUnverified,
                5 => RequestOutcome::DeniedNoCaseNumber,
                6 => RequestOutcome::PreAuthorized,
                byte => {
                    return Err(AuditDecodeError::BadValue {
                        field: "outcome",
                        byte,
                    });
                }
            },
        },
        2 => AuditEvent::RequestSent {
            request_id: reader.request_id()?,
            area: reader.bool("area")?,
        },
        3 => {
            let request_id = reader.request_id()?;
            let token_id = reader.token_id()?;
            let grantee = reader.peer()?;
            let count = reader.u32()?;
            let too_many = AuditDecodeError::TooManyClips {
                count,
                max: MAX_AUDIT_CLIPS,
            };
            let count = usize::try_from(count).map_err(|_| too_many.clone())?;
            if count > MAX_AUDIT_CLIPS {
                return Err(too_many);
            }
            let mut clips = Vec::with_capacity(count);
            for _ in 0..count {
                clips.push(reader.clip_id()?);
            }
            AuditEvent::Granted {
                request_id,
                token_id,
                grantee,
                clips,
                not_after: reader.time()?,
                retain: reader.bool("retain")?,
                by_rule: reader.bool("by_rule")?,
            }
        }
        4 => AuditEvent::Denied {
            request_id: reader.request_id()?,
            message_sent: reader.bool("message_sent")?,
        },
        5 => AuditEvent::FetchServed {
            token_id: reader.token_id()?,
            clip_id: reader.clip_id()?,
            peer: reader.peer()?,
        },
        6 => AuditEvent::FetchRefused {
            peer: reader.peer()?,
            code: reader.reject_code()?,
        },
        7 => AuditEvent::Revoked {
            token_id: reader.token_id()?,
            grantee: reader.peer()?,
        },
        8 => AuditEvent::GrantReceived {
            request_id: reader.request_id()?,
            token_id: reader.token_id()?,
            owner: reader.peer()?,
        },
        9 => AuditEvent::DenialReceived {
            request_id: reader.request_id()?,
            owner: reader.peer()?,
        },
        10 => AuditEvent::GrantEnded {
            token_id: reader.token_id()?,
            why: grant_end_of(reader.u8()?)?,
            deleted: reader.bool("deleted")?,
        },
        11 => AuditEvent::FetchCompleted {
            token_id: reader.token_id()?,
            clip_id: reader.clip_id()?,
            peer: reader.peer()?,
            bytes: reader.u64()?,
        },
        12 => AuditEvent::ClipReceived {
            token_id: reader.token_id()?,
            clip_id: reader.clip_id()?,
            bytes: reader.u64()?,
        },
        13 => AuditEvent::FetchRefusalsCounted {
            since: reader.time()?,
            peers: match reader.u8()? {
                1 => RefusedPeers::One(reader.peer()?),
                2 => {
                    let peer: [u8; 32] = reader.take()?;
                    if let Some(&byte) = peer.iter().find(|&&byte| byte != 0) {
                        return Err(AuditDecodeError::BadValue {
                            field: "peer of others",
                            byte,
                        });
                    }
                    RefusedPeers::Others
                }
                byte => {
                    return Err(AuditDecodeError::BadValue {
                        field: "peers",
                        byte,
                    });
                }
            },
            cause: match reader.u8()? {
                1 => FetchRefusalCause::Rejected(reader.reject_code()?),
                2 => match reader.u8()? {
                    0 => FetchRefusalCause::OverLimit,
                    byte => {
                        return Err(AuditDecodeError::BadValue {
                            field: "reject code",
                            byte,
                        });
                    }
                },
                byte => {
                    return Err(AuditDecodeError::BadValue {
                        field: "cause",
                        byte,
                    });
                }
            },
            count: reader.u64()?,
        },
        14 => AuditEvent::FetchCut {
            token_id: reader.token_id()?,
            clip_id: reader.clip_id()?,
            peer: reader.peer()?,
            bytes: reader.u64()?,
            why: grant_end_of(reader.u8()?)?,
        },
        15 => AuditEvent::LogSetAside {
            verified: reader.u64()?,
            last_hash: reader.take()?,
        },
        16 => AuditEvent::DenialReceivedWithMessage {
            request_id: reader.request_id()?,
            owner: reader.peer()?,
            message: reader.text("deny message", MAX_AUDIT_MESSAGE_LEN)?,
        },
        tag => return Err(AuditDecodeError::UnknownEvent(tag)),
    };
    Ok(event)
}

/// The head of the chain: what the next entry links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditHead {
    next_seq: u64,
    last_hash: [u8; 32],
}

impl AuditHead {
    pub(crate) fn new() -> AuditHead {
        AuditHead::resume(0, GENESIS_HASH)
    }

    /// A head that continues a chain whose last entry has `next_seq - 1` and `last_hash`.
    pub(crate) fn resume(next_seq: u64, last_hash: [u8; 32]) -> AuditHead {
        AuditHead {
            next_seq,
            last_hash,
        }
    }

    /// The seq the next entry will carry.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
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
        check_entry(index, previous, entry)?;
        previous = Some(entry);
    }
    Ok(())
}

/// Checks one entry of a chain read in order, as [`verify_chain`] does for each: its hash
/// matches its fields, and it follows `previous` (or, for `None`, starts the chain). For a
/// reader that checks entries as it reads them; `index` is the entry's position, for the
/// error.
pub fn check_entry(
    index: usize,
    previous: Option<&AuditEntry>,
    entry: &AuditEntry,
) -> Result<(), AuditError> {
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

    fn peer(n: u8) -> PeerId {
        PeerId::from_public_key_bytes([n; 32])
    }

    /// One event of every tag.
    fn every_event() -> Vec<AuditEvent> {
        let request_id = RequestId::from_bytes([1; 32]);
        let token_id = TokenId::from_bytes([2; 16]);
        let clip_id = ClipId::from_bytes([3; 32]);
        vec![
            AuditEvent::RequestReceived {
                request_id,
                requester: peer(4),
                verified: true,
                outcome: RequestOutcome::PreAuthorized,
            },
            AuditEvent::RequestSent {
                request_id,
                area: false,
            },
            AuditEvent::Granted {
                request_id,
                token_id,
                grantee: peer(5),
                clips: vec![clip_id, ClipId::from_bytes([6; 32])],
                not_after: Timestamp::from_unix_millis(77),
                retain: true,
                by_rule: false,
            },
            AuditEvent::Denied {
                request_id,
                message_sent: true,
            },
            AuditEvent::FetchServed {
                token_id,
                clip_id,
                peer: peer(5),
            },
            AuditEvent::FetchRefused {
                peer: peer(5),
                code: RejectCode::OutOfWindow,
            },
            AuditEvent::Revoked {
                token_id,
                grantee: peer(5),
            },
            AuditEvent::GrantReceived {
                request_id,
                token_id,
                owner: peer(7),
            },
            AuditEvent::DenialReceived {
                request_id,
                owner: peer(7),
            },
            AuditEvent::GrantEnded {
                token_id,
                why: GrantEnd::Revoked,
                deleted: true,
            },
            AuditEvent::FetchCompleted {
                token_id,
                clip_id,
                peer: peer(5),
                bytes: 1 << 40,
            },
            AuditEvent::ClipReceived {
                token_id,
                clip_id,
                bytes: 12_345,
            },
            AuditEvent::FetchRefusalsCounted {
                since: Timestamp::from_unix_millis(3),
                peers: RefusedPeers::One(peer(5)),
                cause: FetchRefusalCause::Rejected(RejectCode::Unauthenticated),
                count: 19_999,
            },
            AuditEvent::FetchCut {
                token_id,
                clip_id,
                peer: peer(5),
                bytes: 3 * 65_552,
                why: GrantEnd::Revoked,
            },
            AuditEvent::LogSetAside {
                verified: 7,
                last_hash: [6; 32],
            },
            AuditEvent::DenialReceivedWithMessage {
                request_id,
                owner: peer(7),
                message: "sorry, nothing useful — ça va".into(),
            },
        ]
    }

    fn encoded(event: &AuditEvent) -> Vec<u8> {
        AuditEntry::canonical_bytes(9, Timestamp::from_unix_millis(10), &[8; 32], event)
    }

    /// Offset of the event tag in canonical bytes.
    const TAG_AT: usize = AUDIT_ENTRY_DOMAIN.len() + 8 + 8 + 32;

    #[test]
    fn every_event_round_trips_with_its_hash() {
        let tags: Vec<u8> = (1..=16).collect();
        assert_eq!(every_event().len(), tags.len(), "one event per tag");
        for (event, tag) in every_event().into_iter().zip(tags) {
            let bytes = encoded(&event);
            assert_eq!(bytes[TAG_AT], tag, "tags in order");
            let entry = AuditEntry::from_canonical_bytes(&bytes).unwrap();
            assert_eq!(entry.event, event);
            assert_eq!((entry.seq, entry.prev_hash), (9, [8; 32]));
            assert_eq!(entry.at, Timestamp::from_unix_millis(10));
            assert_eq!(
                entry.hash,
                AuditEntry::compute_hash(9, entry.at, &[8; 32], &event)
            );
            assert_eq!(entry.to_canonical_bytes(), bytes);
        }
    }

    #[test]
    fn the_new_events_are_encoded_as_specified() {
        let token_id = TokenId::from_bytes([2; 16]);
        let clip_id = ClipId::from_bytes([3; 32]);
        let bytes = encoded(&AuditEvent::FetchCompleted {
            token_id,
            clip_id,
            peer: peer(5),
            bytes: 0x0102,
        });
        let mut expected = vec![11];
        expected.extend_from_slice(&[2; 16]);
        expected.extend_from_slice(&[3; 32]);
        expected.extend_from_slice(&[5; 32]);
        expected.extend_from_slice(&0x0102u64.to_be_bytes());
        assert_eq!(&bytes[TAG_AT..], &expected[..]);

        let bytes = encoded(&AuditEvent::ClipReceived {
            token_id,
            clip_id,
            bytes: 7,
        });
        let mut expected = vec![12];
        expected.extend_from_slice(&[2; 16]);
        expected.extend_from_slice(&[3; 32]);
        expected.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(&bytes[TAG_AT..], &expected[..]);

        let bytes = encoded(&AuditEvent::FetchCut {
            token_id,
            clip_id,
            peer: peer(5),
            bytes: 0x0304,
            why: GrantEnd::Expired,
        });
        let mut expected = vec![14];
        expected.extend_from_slice(&[2; 16]);
        expected.extend_from_slice(&[3; 32]);
        expected.extend_from_slice(&[5; 32]);
        expected.extend_from_slice(&0x0304u64.to_be_bytes());
        expected.push(1);
        assert_eq!(&bytes[TAG_AT..], &expected[..]);
        // A why that is neither expired nor revoked does not decode.
        let mut bytes = bytes;
        *bytes.last_mut().unwrap() = 3;
        assert_eq!(
            AuditEntry::from_canonical_bytes(&bytes),
            Err(AuditDecodeError::BadValue {
                field: "why",
                byte: 3
            })
        );
    }

    #[test]
    fn refusal_counts_are_encoded_as_specified_and_decoded_strictly() {
        let bytes = encoded(&AuditEvent::FetchRefusalsCounted {
            since: Timestamp::from_unix_millis(0x0304),
            peers: RefusedPeers::Others,
            cause: FetchRefusalCause::OverLimit,
            count: 7,
        });
        let mut expected = vec![13];
        expected.extend_from_slice(&0x0304u64.to_be_bytes());
        expected.push(2);
        expected.extend_from_slice(&[0; 32]);
        expected.extend_from_slice(&[2, 0]);
        expected.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(&bytes[TAG_AT..], &expected[..]);
        assert!(AuditEntry::from_canonical_bytes(&bytes).is_ok());

        let peers_at = TAG_AT + 1 + 8;
        let cause_at = peers_at + 1 + 32;
        for (at, byte, field) in [
            (peers_at, 3, "peers"),
            (peers_at + 1, 9, "peer of others"),
            (cause_at, 0, "cause"),
            (cause_at + 1, 5, "reject code"),
        ] {
            let mut bad = bytes.clone();
            bad[at] = byte;
            assert_eq!(
                AuditEntry::from_canonical_bytes(&bad),
                Err(AuditDecodeError::BadValue { field, byte }),
                "byte {at}"
            );
        }
        let mut bad = bytes.clone();
        bad[cause_at] = 1;
        bad[cause_at + 1] = 6;
        assert_eq!(
            AuditEntry::from_canonical_bytes(&bad),
            Err(AuditDecodeError::BadValue {
                field: "reject code",
                byte: 6
            })
        );
    }

    #[test]
    fn the_set_aside_event_is_tag_15_as_specified() {
        let event = AuditEvent::LogSetAside {
            verified: 0x0506,
            last_hash: [9; 32],
        };
        let bytes = encoded(&event);
        let mut expected = vec![15];
        expected.extend_from_slice(&0x0506u64.to_be_bytes());
        expected.extend_from_slice(&[9; 32]);
        assert_eq!(&bytes[TAG_AT..], &expected[..]);
        assert_eq!(
            AuditEntry::from_canonical_bytes(&bytes).unwrap().event,
            event
        );
    }

    #[test]
    fn a_denial_with_a_message_is_tag_16_and_decoded_strictly() {
        let event = AuditEvent::DenialReceivedWithMessage {
            request_id: RequestId::from_bytes([1; 32]),
            owner: peer(7),
            message: "sorry".into(),
        };
        let bytes = encoded(&event);
        let mut expected = vec![16];
        expected.extend_from_slice(&[1; 32]);
        expected.extend_from_slice(&[7; 32]);
        expected.extend_from_slice(&[0, 5]);
        expected.extend_from_slice(b"sorry");
        assert_eq!(&bytes[TAG_AT..], expected.as_slice());
        assert_eq!(
            AuditEntry::from_canonical_bytes(&bytes).map(|entry| entry.event),
            Ok(event)
        );

        let with_body = |len: u16, body: &[u8]| {
            let mut bytes = bytes[..TAG_AT + 65].to_vec();
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(body);
            bytes
        };
        let refused = |bytes: Vec<u8>| {
            matches!(
                AuditEntry::from_canonical_bytes(&bytes),
                Err(AuditDecodeError::BadText { .. })
            )
        };
        assert!(refused(with_body(2, &[0xc3, 0x28])), "not UTF-8");
        assert!(refused(with_body(6, b"so\x1b[2J")), "a control character");
        assert!(
            refused(with_body(4, "a\u{202e}".as_bytes())),
            "a bidi override"
        );
        assert!(refused(with_body(0, b"")), "empty");
        assert!(refused(with_body(2, b"  ")), "blank");
        let longest = "a".repeat(MAX_AUDIT_MESSAGE_LEN);
        let at_limit = with_body(MAX_AUDIT_MESSAGE_LEN as u16, longest.as_bytes());
        assert!(AuditEntry::from_canonical_bytes(&at_limit).is_ok());
        assert_eq!(canonical_len_at_start(&at_limit), Ok(at_limit.len()));
        let over = "a".repeat(MAX_AUDIT_MESSAGE_LEN + 1);
        assert!(
            refused(with_body(over.len() as u16, over.as_bytes())),
            "too long"
        );
        assert_eq!(
            AuditEntry::from_canonical_bytes(&with_body(6, b"sorry")),
            Err(AuditDecodeError::Truncated),
            "a count past the end"
        );
        assert!(matches!(
            AuditEntry::from_canonical_bytes(&with_body(4, b"sorry")),
            Err(AuditDecodeError::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn an_entry_tells_its_own_length() {
        for event in every_event() {
            let bytes = encoded(&event);
            let mut longer = bytes.clone();
            longer.extend_from_slice(b"porchlight/v1/audit-entry and more");
            assert_eq!(
                canonical_len_at_start(&longer),
                Ok(bytes.len()),
                "{event:?}"
            );
            assert_eq!(canonical_len_at_start(&bytes), Ok(bytes.len()));
            for len in 0..bytes.len() {
                assert_eq!(
                    canonical_len_at_start(&bytes[..len]),
                    Err(AuditDecodeError::Truncated),
                    "{event:?} cut at {len}"
                );
            }
        }
        let mut bytes = encoded(&every_event()[0]);
        bytes[0] ^= 1;
        assert_eq!(
            canonical_len_at_start(&bytes),
            Err(AuditDecodeError::WrongDomain)
        );
        bytes[0] ^= 1;
        bytes[TAG_AT] = 200;
        assert_eq!(
            canonical_len_at_start(&bytes),
            Err(AuditDecodeError::UnknownEvent(200))
        );
    }

    #[test]
    fn every_truncation_is_rejected() {
        for event in every_event() {
            let bytes = encoded(&event);
            for len in 0..bytes.len() {
                let result = AuditEntry::from_canonical_bytes(&bytes[..len]);
                assert!(
                    matches!(
                        result,
                        Err(AuditDecodeError::Truncated | AuditDecodeError::WrongDomain)
                    ),
                    "{event:?} cut at {len}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encoded(&every_event()[0]);
        bytes.push(0);
        assert_eq!(
            AuditEntry::from_canonical_bytes(&bytes),
            Err(AuditDecodeError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn a_wrong_domain_is_rejected() {
        let mut bytes = encoded(&every_event()[0]);
        bytes[0] ^= 1;
        assert_eq!(
            AuditEntry::from_canonical_bytes(&bytes),
            Err(AuditDecodeError::WrongDomain)
        );
    }

    #[test]
    fn unknown_tags_and_codes_are_rejected() {
        let mut bytes = encoded(&every_event()[1]);
        for tag in [0, 17, 255] {
            bytes[TAG_AT] = tag;
            assert_eq!(
                AuditEntry::from_canonical_bytes(&bytes),
                Err(AuditDecodeError::UnknownEvent(tag))
            );
        }
        // RequestReceived's outcome is its last byte; 7 is not an outcome.
        let mut bytes = encoded(&every_event()[0]);
        *bytes.last_mut().unwrap() = 7;
        assert_eq!(
            AuditEntry::from_canonical_bytes(&bytes),
            Err(AuditDecodeError::BadValue {
                field: "outcome",
                byte: 7
            })
        );
        // FetchRefused's reject code: 0 would read back as Malformed (1) if decoded leniently.
        let mut bytes = encoded(&every_event()[5]);
        *bytes.last_mut().unwrap() = 0;
        assert_eq!(
            AuditEntry::from_canonical_bytes(&bytes),
            Err(AuditDecodeError::BadValue {
                field: "reject code",
                byte: 0
            })
        );
        // A bool must be 0 or 1.
        let mut bytes = encoded(&every_event()[1]);
        *bytes.last_mut().unwrap() = 2;
        assert_eq!(
            AuditEntry::from_canonical_bytes(&bytes),
            Err(AuditDecodeError::BadValue {
                field: "area",
                byte: 2
            })
        );
    }

    #[test]
    fn an_absurd_clip_count_is_rejected_before_allocating() {
        let mut bytes = encoded(&every_event()[2]);
        let count_at = TAG_AT + 1 + 32 + 16 + 32;
        assert_eq!(&bytes[count_at..count_at + 4], &2u32.to_be_bytes());
        for count in [u32::MAX, 257] {
            bytes[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
            assert_eq!(
                AuditEntry::from_canonical_bytes(&bytes),
                Err(AuditDecodeError::TooManyClips {
                    count,
                    max: MAX_AUDIT_CLIPS
                })
            );
        }
        // A count the bytes do not hold is a truncation, not a panic.
        bytes[count_at..count_at + 4].copy_from_slice(&200u32.to_be_bytes());
        assert_eq!(
            AuditEntry::from_canonical_bytes(&bytes),
            Err(AuditDecodeError::Truncated)
        );
    }

    #[test]
    fn the_longest_entry_fits_the_limit_and_one_more_byte_does_not() {
        let event = AuditEvent::Granted {
            request_id: RequestId::from_bytes([1; 32]),
            token_id: TokenId::from_bytes([2; 16]),
            grantee: peer(5),
            clips: vec![ClipId::from_bytes([3; 32]); MAX_AUDIT_CLIPS],
            not_after: Timestamp::from_unix_millis(1),
            retain: false,
            by_rule: false,
        };
        let mut bytes = encoded(&event);
        assert_eq!(bytes.len(), MAX_CANONICAL_LEN);
        assert!(AuditEntry::from_canonical_bytes(&bytes).is_ok());
        bytes.push(0);
        assert_eq!(
            AuditEntry::from_canonical_bytes(&bytes),
            Err(AuditDecodeError::TooLong {
                len: MAX_CANONICAL_LEN + 1,
                max: MAX_CANONICAL_LEN
            })
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn arb_peer() -> impl Strategy<Value = PeerId> {
            any::<[u8; 32]>().prop_map(PeerId::from_public_key_bytes)
        }

        fn arb_request() -> impl Strategy<Value = RequestId> {
            any::<[u8; 32]>().prop_map(RequestId::from_bytes)
        }

        fn arb_token() -> impl Strategy<Value = TokenId> {
            any::<[u8; 16]>().prop_map(TokenId::from_bytes)
        }

        fn arb_clip() -> impl Strategy<Value = ClipId> {
            any::<[u8; 32]>().prop_map(ClipId::from_bytes)
        }

        fn arb_time() -> impl Strategy<Value = Timestamp> {
            any::<u64>().prop_map(Timestamp::from_unix_millis)
        }

        fn arb_outcome() -> impl Strategy<Value = RequestOutcome> {
            prop_oneof![
                Just(RequestOutcome::Prompted),
                Just(RequestOutcome::NoMatchingClips),
                Just(RequestOutcome::Blocked),
                Just(RequestOutcome::DeniedUnverified),
                Just(RequestOutcome::DeniedNoCaseNumber),
                Just(RequestOutcome::PreAuthorized),
            ]
        }

        fn arb_code() -> impl Strategy<Value = RejectCode> {
            (1u8..=5).prop_map(RejectCode::from_byte)
        }

        fn arb_event() -> impl Strategy<Value = AuditEvent> {
            prop_oneof![
                (arb_request(), arb_peer(), any::<bool>(), arb_outcome()).prop_map(
                    |(request_id, requester, verified, outcome)| AuditEvent::RequestReceived {
                        request_id,
                        requester,
                        verified,
                        outcome
                    }
                ),
                (arb_request(), any::<bool>())
                    .prop_map(|(request_id, area)| AuditEvent::RequestSent { request_id, area }),
                (
                    arb_request(),
                    arb_token(),
                    arb_peer(),
                    proptest::collection::vec(arb_clip(), 0..=8),
                    arb_time(),
                    any::<bool>(),
                    any::<bool>()
                )
                    .prop_map(
                        |(request_id, token_id, grantee, clips, not_after, retain, by_rule)| {
                            AuditEvent::Granted {
                                request_id,
                                token_id,
                                grantee,
                                clips,
                                not_after,
                                retain,
                                by_rule,
                            }
                        }
                    ),
                (arb_request(), any::<bool>()).prop_map(|(request_id, message_sent)| {
                    AuditEvent::Denied {
                        request_id,
                        message_sent,
                    }
                }),
                (arb_token(), arb_clip(), arb_peer()).prop_map(|(token_id, clip_id, peer)| {
                    AuditEvent::FetchServed {
                        token_id,
                        clip_id,
                        peer,
                    }
                }),
                (arb_peer(), arb_code())
                    .prop_map(|(peer, code)| AuditEvent::FetchRefused { peer, code }),
                (arb_token(), arb_peer())
                    .prop_map(|(token_id, grantee)| AuditEvent::Revoked { token_id, grantee }),
                (arb_request(), arb_token(), arb_peer()).prop_map(
                    |(request_id, token_id, owner)| AuditEvent::GrantReceived {
                        request_id,
                        token_id,
                        owner
                    }
                ),
                (arb_request(), arb_peer()).prop_map(|(request_id, owner)| {
                    AuditEvent::DenialReceived { request_id, owner }
                }),
                (arb_request(), arb_peer(), "[a-zA-Z0-9 ,.!é—]{0,40}[a-z]").prop_map(
                    |(request_id, owner, message)| AuditEvent::DenialReceivedWithMessage {
                        request_id,
                        owner,
                        message
                    }
                ),
                (
                    arb_token(),
                    prop_oneof![Just(GrantEnd::Expired), Just(GrantEnd::Revoked)],
                    any::<bool>()
                )
                    .prop_map(|(token_id, why, deleted)| AuditEvent::GrantEnded {
                        token_id,
                        why,
                        deleted
                    }),
                (arb_token(), arb_clip(), arb_peer(), any::<u64>()).prop_map(
                    |(token_id, clip_id, peer, bytes)| AuditEvent::FetchCompleted {
                        token_id,
                        clip_id,
                        peer,
                        bytes
                    }
                ),
                (arb_token(), arb_clip(), any::<u64>()).prop_map(|(token_id, clip_id, bytes)| {
                    AuditEvent::ClipReceived {
                        token_id,
                        clip_id,
                        bytes,
                    }
                }),
                (
                    arb_time(),
                    prop_oneof![
                        arb_peer().prop_map(RefusedPeers::One),
                        Just(RefusedPeers::Others)
                    ],
                    prop_oneof![
                        arb_code().prop_map(FetchRefusalCause::Rejected),
                        Just(FetchRefusalCause::OverLimit)
                    ],
                    any::<u64>()
                )
                    .prop_map(|(since, peers, cause, count)| {
                        AuditEvent::FetchRefusalsCounted {
                            since,
                            peers,
                            cause,
                            count,
                        }
                    }),
                (
                    arb_token(),
                    arb_clip(),
                    arb_peer(),
                    any::<u64>(),
                    prop_oneof![Just(GrantEnd::Expired), Just(GrantEnd::Revoked)]
                )
                    .prop_map(|(token_id, clip_id, peer, bytes, why)| {
                        AuditEvent::FetchCut {
                            token_id,
                            clip_id,
                            peer,
                            bytes,
                            why,
                        }
                    }),
                (any::<u64>(), any::<[u8; 32]>()).prop_map(|(verified, last_hash)| {
                    AuditEvent::LogSetAside {
                        verified,
                        last_hash,
                    }
                }),
            ]
        }

        proptest! {
            #[test]
            fn decode_is_the_inverse_of_encode(
                seq in any::<u64>(),
                at in arb_time(),
                prev_hash in any::<[u8; 32]>(),
                event in arb_event(),
            ) {
                let bytes = AuditEntry::canonical_bytes(seq, at, &prev_hash, &event);
                let entry = AuditEntry::from_canonical_bytes(&bytes).unwrap();
                prop_assert_eq!(entry.seq, seq);
                prop_assert_eq!(entry.at, at);
                prop_assert_eq!(entry.prev_hash, prev_hash);
                prop_assert_eq!(&entry.event, &event);
                prop_assert_eq!(entry.hash, AuditEntry::compute_hash(seq, at, &prev_hash, &event));
            }

            #[test]
            fn arbitrary_bytes_never_panic_and_only_canonical_ones_decode(
                bytes in proptest::collection::vec(any::<u8>(), 0..400),
            ) {
                if let Ok(entry) = AuditEntry::from_canonical_bytes(&bytes) {
                    prop_assert_eq!(entry.to_canonical_bytes(), bytes);
                }
            }

            #[test]
            fn arbitrary_bodies_after_a_valid_prefix_never_panic(
                header in proptest::collection::vec(any::<u8>(), 48),
                tag in 0u8..=16,
                body in proptest::collection::vec(any::<u8>(), 0..200),
            ) {
                // Past the domain, so the decoder reaches every event's fields.
                let mut bytes = AUDIT_ENTRY_DOMAIN.to_vec();
                bytes.extend_from_slice(&header);
                bytes.push(tag);
                bytes.extend_from_slice(&body);
                if let Ok(entry) = AuditEntry::from_canonical_bytes(&bytes) {
                    prop_assert_eq!(entry.to_canonical_bytes(), bytes);
                }
            }

            #[test]
            fn damaged_entries_never_panic_and_never_decode_to_another_meaning(
                event in arb_event(),
                flip in any::<usize>(),
                cut in any::<usize>(),
            ) {
                let bytes = AuditEntry::canonical_bytes(1, Timestamp::from_unix_millis(2), &[3; 32], &event);
                let mut flipped = bytes.clone();
                let at = flip % (flipped.len() * 8);
                flipped[at / 8] ^= 1 << (at % 8);
                if let Ok(entry) = AuditEntry::from_canonical_bytes(&flipped) {
                    prop_assert_eq!(entry.to_canonical_bytes(), flipped);
                    prop_assert_ne!(entry.hash, AuditEntry::compute_hash(1, Timestamp::from_unix_millis(2), &[3; 32], &event));
                }
                let cut = cut % bytes.len();
                prop_assert!(AuditEntry::from_canonical_bytes(&bytes[..cut]).is_err());
            }
        }
    }
}
