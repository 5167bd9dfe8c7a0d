//! What the shell feeds the node: frames from peers, catalog changes, owner and requester
//! commands, and timer expiries.
//!
//! Each variant is an event that already happened or a command the caller decided on; none
//! carries a time (the time is `handle`'s own argument) and none is a socket, a file or a
//! libp2p type. Peers are protocol [`PeerId`]s, authenticated by the shell's transport.

use std::time::Duration;

use porchlight_protocol::{
    ClipId, PeerId, RequestId, RequestTarget, TimeWindow, Timestamp, TokenId,
};

use crate::audit::GrantEnd;

/// One event or command for [`crate::Node::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A signed envelope (request, decision or revocation) from `from`, the peer the
    /// transport authenticated. Any bytes are accepted: bad ones become
    /// [`crate::Output::PeerMisbehaved`].
    FrameReceived { from: PeerId, bytes: Vec<u8> },
    /// A clip was sealed and stored: it can now match requests.
    ClipAdded {
        clip_id: ClipId,
        camera: String,
        start: Timestamp,
        end: Timestamp,
    },
    /// A clip was deleted (retention, owner): it no longer matches and is no longer served.
    ClipRemoved { clip_id: ClipId },
    /// The owner grants a pending request. `clips: None` grants every matching clip;
    /// `duration` is capped at 30 days.
    Approve {
        request_id: RequestId,
        duration: Duration,
        clips: Option<Vec<ClipId>>,
        retain: bool,
    },
    /// The owner denies a pending request. Silent (nothing is sent) unless `message` is given.
    Deny {
        request_id: RequestId,
        message: Option<String>,
    },
    /// The owner revokes a token this node issued.
    Revoke { token_id: TokenId },
    /// `from` asks for `clip_id` under the token in `token_bytes` (a signed token envelope).
    FetchAsked {
        from: PeerId,
        token_bytes: Vec<u8>,
        clip_id: ClipId,
    },
    /// The requester side asks for footage: the node signs the request with a fresh reply
    /// key and sends it to one peer or publishes it to the cells.
    SendRequest {
        target: RequestTarget,
        window: TimeWindow,
        reason: String,
        case_number: Option<String>,
        access: Duration,
    },
    /// The shell finished streaming a clip it was told to serve ([`crate::Output::ServeFetch`]):
    /// `bytes` of it went to `to`. Always recorded in the audit log, even for a token the
    /// node has since forgotten (its window closed while the stream ran): bytes that left
    /// are never left out of the record. Charged to the fetch byte budgets
    /// ([`crate::FetchLimits`]).
    FetchCompleted {
        to: PeerId,
        token_id: TokenId,
        clip_id: ClipId,
        bytes: u64,
    },
    /// The shell ended a stream it was serving before the clip's end, because the token
    /// expired or was revoked: `bytes` of it had gone to `to`. Always recorded, like
    /// [`Input::FetchCompleted`].
    FetchCut {
        to: PeerId,
        token_id: TokenId,
        clip_id: ClipId,
        bytes: u64,
        why: GrantEnd,
    },
    /// The requester side stored a clip it fetched under a grant it holds. Recorded in the
    /// audit log; a token with no live grant here is a caller mistake.
    ClipReceived {
        token_id: TokenId,
        clip_id: ClipId,
        bytes: u64,
    },
    /// The time from [`crate::Node::poll_timeout`] has come.
    Timeout,
}
