//! The part of a node's state that must survive a restart, as plain data: tokens it issued
//! (and whether each was revoked), requests it sent (with their reply secrets), grants it
//! received, and the nonces it has seen recently.
//!
//! The shell saves a [`DurableState`] after every step that changed it
//! ([`crate::Node::durable_generation`] tells) and hands it back to
//! [`crate::Node::restore`] on the next start, so that a restart neither voids the grants
//! an owner made, nor forgets a revocation, nor drops the grants a requester is waiting
//! for, nor reopens the replay window. Requests waiting for the owner's decision are not
//! kept: their summaries were built from checks made at arrival (freshness, credentials
//! against the trust roots of the time), and a requester whose request went unanswered
//! asks again. The encoding is the shell's business; the core only defines the contents.

use porchlight_protocol::{AgreementSecret, PeerId, RequestId, Timestamp, TokenId};

/// Everything [`crate::Node::restore`] needs.
#[derive(Debug)]
pub struct DurableState {
    /// The latest time the node had seen when the state was taken: its clock's high-water
    /// mark. A node restarted with its wall clock set back resumes from here, so it cannot
    /// re-accept a request whose nonce it already forgot, nor date a token or an audit entry
    /// before what it did earlier. The epoch in state written by versions that did not keep
    /// it.
    pub clock: Timestamp,
    pub issued: Vec<IssuedToken>,
    pub outgoing: Vec<OutgoingRequest>,
    pub received: Vec<ReceivedGrant>,
    pub seen_nonces: Vec<SeenNonce>,
}

/// An empty state: what a new node starts from.
impl Default for DurableState {
    fn default() -> DurableState {
        DurableState {
            clock: Timestamp::from_unix_millis(0),
            issued: Vec::new(),
            outgoing: Vec::new(),
            received: Vec::new(),
            seen_nonces: Vec::new(),
        }
    }
}

/// A token this node issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuedToken {
    pub token_id: TokenId,
    pub grantee: PeerId,
    pub not_after: Timestamp,
    pub revoked: bool,
}

/// A request this node sent. `Debug` does not show the secret.
#[derive(Debug)]
pub struct OutgoingRequest {
    pub request_id: RequestId,
    pub reply_secret: AgreementSecret,
    /// The one peer asked, or `None` for an area request.
    pub target: Option<PeerId>,
}

/// A grant this node received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedGrant {
    pub token_id: TokenId,
    pub owner: PeerId,
    pub not_after: Timestamp,
    pub retain: bool,
}

/// A (requester, nonce) pair in the replay cache, kept until `forget_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenNonce {
    pub requester: PeerId,
    pub nonce: [u8; 16],
    pub forget_at: Timestamp,
}
