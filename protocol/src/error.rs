//! Errors of the protocol crate.
//!
//! One `#[non_exhaustive]` [`ProtocolError`] wraps three focused enums, split by what went
//! wrong rather than by which message was being read (the rustls shape):
//!
//! - [`DecodeError`]: the bytes are not a well-formed Porchlight message (too large,
//!   truncated, trailing bytes, wrong kind, unsupported version, non-canonical).
//! - [`CryptoError`]: the bytes are well formed but a signature, an AEAD tag, a clip id or a
//!   key agreement does not check out.
//! - [`ValidationError`]: authenticated content that breaks a rule (expired, not yet valid,
//!   a window that makes no sense, text too long, an untrusted credential chain).
//!
//! Every variant is diagnostic for the local log. What goes back over the wire is only the
//! coarse [`RejectCode`] from [`ProtocolError::reject_code`], which says nothing about *which*
//! check failed beyond its category, so a probing peer learns nothing useful.

use thiserror::Error;

/// Any error the protocol crate reports.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// The bytes are not a well-formed message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("malformed {what}")]
    Malformed { what: &'static str },
    #[error("{what} has {extra} trailing bytes after its end")]
    TrailingBytes { what: &'static str, extra: usize },
    #[error("{what} is not in canonical encoding")]
    NonCanonical { what: &'static str },
    #[error("unsupported protocol version {found} (this node speaks version {supported})")]
    UnsupportedVersion { found: u8, supported: u8 },
    #[error("expected a {expected} message, found kind {found}")]
    WrongKind { expected: &'static str, found: u8 },
}

/// A cryptographic check failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("signature does not verify")]
    BadSignature,
    #[error("public key is not a valid Ed25519 point")]
    InvalidPublicKey,
    #[error("clip chunk {index} failed authentication (tampered, reordered or wrong key)")]
    ChunkAuthentication { index: u64 },
    #[error("clip ciphertext is truncated")]
    Truncated,
    #[error("clip ciphertext ends with an empty chunk after data (not canonical)")]
    EmptyLastChunk,
    #[error("clip id does not match the header and ciphertext")]
    ClipIdMismatch,
    #[error("wrapped file key does not open (wrong recipient, wrong clip id or tampered)")]
    UnwrapFailed,
    #[error("key agreement produced an all-zero shared secret (low-order public key)")]
    NonContributory,
    #[error("clip stream was already finished or failed")]
    StreamClosed,
}

/// Authenticated content that breaks a protocol rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("issued too far from the current time (more than the allowed clock skew)")]
    NotFresh,
    #[error("time window is empty or reversed")]
    EmptyWindow,
    #[error("{what} is longer than the maximum of {max_ms} ms")]
    TooLong { what: &'static str, max_ms: u64 },
    #[error("{field} is empty")]
    EmptyText { field: &'static str },
    #[error("{field} is {len} bytes, more than the limit of {max}")]
    TextTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} contains a control character")]
    ControlCharacter { field: &'static str },
    #[error("{field} has {count} entries, more than the limit of {max}")]
    TooMany {
        field: &'static str,
        count: usize,
        max: usize,
    },
    #[error("{field} has no entries")]
    NoEntries { field: &'static str },
    #[error("{field} lists the same entry twice")]
    Duplicate { field: &'static str },
    #[error("signing identity is not the {role} named in the message")]
    SignerMismatch { role: &'static str },
    #[error("{what} is not allowed: {why}")]
    NotAllowed {
        what: &'static str,
        why: &'static str,
    },
    #[error("credential chain is broken at link {link}: {why}")]
    BrokenChain { link: usize, why: &'static str },
    #[error("credential chain does not end at a trusted root")]
    UntrustedRoot,
    #[error("coordinates are out of range")]
    BadCoordinates,
}

/// What an owner's node tells a remote peer when it rejects a message.
///
/// Deliberately coarse: the code says which category failed, never which field or which
/// internal check, and never whether the node holds any footage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum RejectCode {
    /// The bytes are not a message this node understands.
    Malformed = 1,
    /// The message is from a protocol version this node does not speak.
    Unsupported = 2,
    /// A signature or other cryptographic check failed.
    Unauthenticated = 3,
    /// The message or token is outside its validity window.
    OutOfWindow = 4,
    /// The message is authentic but breaks a protocol rule.
    Invalid = 5,
}

impl RejectCode {
    /// The code's byte on the wire.
    pub fn to_byte(self) -> u8 {
        self as u8
    }

    /// Parses a wire byte. Unknown codes are reported as `Malformed`, since a remote peer's
    /// reject code is diagnostic only.
    pub fn from_byte(byte: u8) -> RejectCode {
        match byte {
            2 => RejectCode::Unsupported,
            3 => RejectCode::Unauthenticated,
            4 => RejectCode::OutOfWindow,
            5 => RejectCode::Invalid,
            _ => RejectCode::Malformed,
        }
    }
}

impl ProtocolError {
    /// The reject code to send to the peer that caused this error.
    pub fn reject_code(&self) -> RejectCode {
        match self {
            ProtocolError::Decode(DecodeError::UnsupportedVersion { .. }) => {
                RejectCode::Unsupported
            }
            ProtocolError::Decode(_) => RejectCode::Malformed,
            ProtocolError::Crypto(_) => RejectCode::Unauthenticated,
            ProtocolError::Invalid(
                ValidationError::Expired | ValidationError::NotYetValid | ValidationError::NotFresh,
            ) => RejectCode::OutOfWindow,
            ProtocolError::Invalid(_) => RejectCode::Invalid,
        }
    }
}
