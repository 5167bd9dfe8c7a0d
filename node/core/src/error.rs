//! The core's errors and its diagnostics about peers.
//!
//! Two kinds, kept apart the way rustls keeps them apart:
//!
//! - [`CoreError`]: the *caller* made a mistake (approved a request the node does not hold,
//!   revoked an unknown token, asked for a request the protocol would refuse). Returned
//!   from [`crate::Node::handle`]; never caused by network input.
//! - [`Misbehavior`]: a *peer* sent something the node refused. Never an error: it becomes a
//!   [`crate::Output::PeerMisbehaved`], emitted once per peer and cause and counted after
//!   that. Diagnostic only; do not branch on its variants.

use porchlight_protocol::{ClipId, Kind, ProtocolError, RequestId, TokenId};
use thiserror::Error;

/// A command the node cannot carry out. The node's state is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CoreError {
    #[error("no pending request {0}: it was never received, already decided, or auto-handled")]
    UnknownRequest(RequestId),
    #[error("clip {clip} was not offered for request {request}: pick from its matching clips")]
    ClipNotOffered { request: RequestId, clip: ClipId },
    #[error("a grant must name at least one clip")]
    NoClips,
    #[error("a grant must last longer than zero")]
    ZeroDuration,
    #[error("no token {0} was issued by this node")]
    UnknownToken(TokenId),
    #[error("token {0} is already revoked")]
    AlreadyRevoked(TokenId),
    #[error("no grant under token {0} is held here: it was never received, or it has ended")]
    UnknownGrant(TokenId),
    #[error(
        "the audit chain can only be resumed once, before the node records anything, from an intact last entry"
    )]
    AuditResume,
    #[error("the durable state must be restored before the node handles any input")]
    RestoreTooLate,
    #[error("the protocol refuses this {what}: {source}")]
    Refused {
        what: &'static str,
        source: ProtocolError,
    },
}

/// Why a peer's input was refused. Diagnostic: for the log and the counters, not for control
/// flow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misbehavior {
    /// The frame is not an envelope this node accepts here (malformed, wrong version, bad
    /// signature, broken rules, stale).
    Invalid {
        kind: Option<Kind>,
        error: ProtocolError,
    },
    /// A signed message of a kind that does not travel on its own (a token or credential).
    UnexpectedKind(Kind),
    /// A request whose (requester, nonce) was already seen within the freshness window.
    Replay(RequestId),
    /// More requests than the per-peer limit allows.
    RateLimited,
    /// A decision or revocation that answers nothing this node asked or holds.
    Unsolicited { kind: Kind },
    /// A frame whose signer is not the peer the transport authenticated.
    SignerMismatch { kind: Kind },
    /// A grant whose token names another grantee or another reply key.
    ForeignGrant(RequestId),
    /// A fetch with a token that is malformed or whose signature fails.
    BadToken(ProtocolError),
}

/// The cause a [`Misbehavior`] is counted under: one [`crate::Output::PeerMisbehaved`] per peer
/// and cause, then only the count grows ([`crate::Node::misbehavior_count`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MisbehaviorCause {
    Invalid,
    UnexpectedKind,
    Replay,
    RateLimited,
    Unsolicited,
    SignerMismatch,
    ForeignGrant,
    BadToken,
}

impl Misbehavior {
    pub fn cause(&self) -> MisbehaviorCause {
        match self {
            Misbehavior::Invalid { .. } => MisbehaviorCause::Invalid,
            Misbehavior::UnexpectedKind(_) => MisbehaviorCause::UnexpectedKind,
            Misbehavior::Replay(_) => MisbehaviorCause::Replay,
            Misbehavior::RateLimited => MisbehaviorCause::RateLimited,
            Misbehavior::Unsolicited { .. } => MisbehaviorCause::Unsolicited,
            Misbehavior::SignerMismatch { .. } => MisbehaviorCause::SignerMismatch,
            Misbehavior::ForeignGrant(_) => MisbehaviorCause::ForeignGrant,
            Misbehavior::BadToken(_) => MisbehaviorCause::BadToken,
        }
    }
}
