//! What the node asks the shell to do or tell: sends, prompts, fetch verdicts, grant
//! lifecycle events and audit entries.
//!
//! Outputs are instructions, not effects: the shell performs them (send bytes, show a
//! prompt, stream a clip, delete received footage, append to the durable log). The owner's
//! view of a request is a [`RequestSummary`], built only from checked data: the authority is
//! shown as verified only when its chain verified against this node's trust roots.

use std::time::Duration;

use porchlight_protocol::{
    AgreementPublic, CellId, ClipId, ConsentToken, PeerId, RejectCode, RequestId, Signed,
    TimeWindow, Timestamp, TokenId, VerifiedAuthority,
};

use crate::audit::AuditEntry;
use crate::error::Misbehavior;

/// One instruction for the shell, from [`crate::Node::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these envelope bytes to one peer.
    Send { to: PeerId, bytes: Vec<u8> },
    /// Publish these envelope bytes to the topics of these cells (an area request).
    PublishArea { cells: Vec<CellId>, bytes: Vec<u8> },
    /// The requester side signed and sent a request; the id names it from now on.
    RequestSent { request_id: RequestId },
    /// Ask the owner to approve or deny.
    PromptOwner {
        request_id: RequestId,
        summary: RequestSummary,
    },
    /// A pre-authorization released footage without a prompt; tell the owner now.
    NotifyOwner {
        request_id: RequestId,
        summary: RequestSummary,
        token_id: TokenId,
    },
    /// Stream `clip_id` to `to` and wrap its file key to `grantee_key`. The stream must end
    /// at `not_after` (the token's) or when the token is revoked, whichever comes first
    /// (spec/threat-model.md#token-guarantees); report the bytes sent with
    /// [`crate::Input::FetchCompleted`] or [`crate::Input::FetchCut`].
    ServeFetch {
        to: PeerId,
        clip_id: ClipId,
        token_id: TokenId,
        grantee_key: AgreementPublic,
        not_after: Timestamp,
    },
    /// Refuse a fetch with the protocol's coarse code, which reveals nothing more.
    RejectFetch { to: PeerId, code: RejectCode },
    /// Close the fetch stream without an answer: the fetch is over a limit
    /// ([`crate::FetchLimits`]). The same as an owner with every serving slot busy or a
    /// dropped link, so a stranger learns nothing and a grantee's resume retries later.
    CloseFetch { to: PeerId },
    /// The owner side issued a token (and sent it in a grant).
    TokenIssued {
        token_id: TokenId,
        request_id: RequestId,
        grantee: PeerId,
        not_after: Timestamp,
    },
    /// The requester side received a verified grant for one of its requests.
    Granted {
        request_id: RequestId,
        token: Signed<ConsentToken>,
    },
    /// The requester side received an explicit deny.
    Denied {
        request_id: RequestId,
        owner: PeerId,
        message: Option<String>,
    },
    /// The requester side must delete what it received under this token (expired or
    /// revoked, and retention was not granted).
    DeleteReceived { token_id: TokenId },
    /// A peer sent something refused. Emitted once per peer and cause; repeats are counted
    /// ([`crate::Node::misbehavior_count`]). Diagnostic only.
    PeerMisbehaved { peer: PeerId, reason: Misbehavior },
    /// Append this entry to the durable audit log.
    Audit(AuditEntry),
}

/// Who asks, as far as this node can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// The credential chain verified against this node's trust roots.
    Verified(VerifiedAuthority),
    /// No chain, or one that did not verify. A claimed name is never shown on its own.
    Unverified { presented_credentials: bool },
}

/// A clip that overlaps a request's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipSummary {
    pub clip_id: ClipId,
    pub camera: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// What the owner sees of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSummary {
    pub requester_peer: PeerId,
    pub requester: Requester,
    pub reason: String,
    pub case_number: Option<String>,
    pub window: TimeWindow,
    /// How long the requester asked to have access.
    pub access: Duration,
    pub matching_clips: Vec<ClipSummary>,
    /// Whether it came as an area request rather than to this node alone.
    pub area: bool,
    pub received_at: Timestamp,
}
