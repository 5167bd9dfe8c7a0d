//! The node's book of requests and tokens, as the owner and the requester see them:
//! what `porchlight requests list` and `porchlight tokens list` show.
//!
//! The core decides; the ledger only remembers what the core reported (prompts, grants,
//! denials, tokens issued and received, clips fetched) in the shapes the API serves. It is
//! kept by the driver thread alone, so it needs no locking, and it holds no secret: reply
//! keys stay in the core and file keys in the stores.

use std::collections::BTreeMap;

use porchlight_core::{AuditEntry, AuditEvent, RequestSummary, Requester};
use porchlight_protocol::{
    ClipId, ConsentToken, PeerId, RequestId, Signed, TimeWindow, Timestamp, TokenId,
};
use serde::{Deserialize, Serialize};

use crate::api::views::rfc3339;
use crate::received::ReceivedGrant;

/// Where an incoming request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncomingState {
    /// Waiting for the owner.
    Pending,
    /// The owner approved it.
    Granted,
    /// The owner denied it.
    Denied,
    /// A pre-authorization granted it without a prompt.
    GrantedByRule,
}

/// Where an outgoing request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutgoingState {
    /// Sent; no owner has granted yet (denials are silent by default).
    Sent,
    /// At least one owner granted.
    Granted,
    /// The one owner asked sent an explicit deny.
    Denied,
}

/// One incoming request, for the owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncomingView {
    pub request_id: String,
    pub state: IncomingState,
    pub requester_peer: String,
    /// `verified` or `unverified`.
    pub requester_status: String,
    /// The verified authority's name, jurisdiction, role and issuer; never a bare claim.
    pub authority: Option<AuthorityView>,
    /// Whether an unverified requester presented credentials that did not verify.
    pub presented_credentials: bool,
    pub reason: String,
    pub case_number: Option<String>,
    pub from: String,
    pub to: String,
    pub access_seconds: u64,
    pub area: bool,
    pub received_at: String,
    pub matching_clips: Vec<MatchingClipView>,
    pub token_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorityView {
    pub name: String,
    pub jurisdiction: String,
    pub role: String,
    pub issuer: String,
    pub root: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatchingClipView {
    pub clip_id: String,
    pub camera: String,
    pub start: String,
    pub end: String,
}

/// One outgoing request, for the requester.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutgoingView {
    pub request_id: String,
    pub state: OutgoingState,
    /// The peer asked, or `area` with its cells.
    pub target: String,
    pub reason: String,
    pub case_number: Option<String>,
    pub from: String,
    pub to: String,
    pub sent_at: String,
    pub grants: Vec<String>,
    pub denied_by: Vec<String>,
}

/// `GET /v1/requests`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestsView {
    pub incoming: Vec<IncomingView>,
    pub outgoing: Vec<OutgoingView>,
}

/// One token, issued or received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenView {
    pub token_id: String,
    pub request_id: String,
    /// `issued` (this node is the owner) or `received` (this node is the grantee).
    pub direction: String,
    pub owner: String,
    pub grantee: String,
    pub clips: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    pub retain: bool,
    /// `active`, `expired`, `revoked` (or, received, `deleted`). A received token that is
    /// `revoked` or `expired` but not `deleted` was granted with `retain`: its footage stays.
    pub state: String,
    /// Clips fetched (received) or served (issued) so far.
    pub clips_transferred: Vec<String>,
}

/// `GET /v1/tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokensView {
    pub tokens: Vec<TokenView>,
}

#[derive(Debug, Clone)]
struct Incoming {
    summary: RequestSummary,
    state: IncomingState,
    token: Option<TokenId>,
}

#[derive(Debug, Clone)]
struct Outgoing {
    target: String,
    reason: String,
    case_number: Option<String>,
    window: TimeWindow,
    sent_at: Timestamp,
    state: OutgoingState,
    grants: Vec<TokenId>,
    denied_by: Vec<PeerId>,
}

#[derive(Debug, Clone)]
struct TokenEntry {
    token_id: TokenId,
    request_id: RequestId,
    owner: PeerId,
    grantee: PeerId,
    clips: Vec<ClipId>,
    not_before: Timestamp,
    not_after: Timestamp,
    retain: bool,
    /// The signed token, for a grant this node received (it is presented at every fetch).
    received: Option<Signed<ConsentToken>>,
    revoked: bool,
    deleted: bool,
    transferred: Vec<ClipId>,
}

/// What the owner side knows of a token it issued (from its audit event).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token_id: TokenId,
    pub request_id: RequestId,
    pub owner: PeerId,
    pub grantee: PeerId,
    pub clips: Vec<ClipId>,
    pub issued_at: Timestamp,
    pub not_after: Timestamp,
    pub retain: bool,
}

/// The book itself.
#[derive(Debug, Default)]
pub struct Ledger {
    incoming: BTreeMap<RequestId, Incoming>,
    outgoing: BTreeMap<RequestId, Outgoing>,
    tokens: BTreeMap<TokenId, TokenEntry>,
}

/// What an outgoing request was, as the requester's command gave it.
#[derive(Debug, Clone)]
pub struct OutgoingDetails {
    pub target: String,
    pub reason: String,
    pub case_number: Option<String>,
    pub window: TimeWindow,
}

impl Ledger {
    /// The tokens of an earlier run: those this node issued, from its audit log (grants and
    /// revocations), and those it received, from the received store's grants. Requests are
    /// not rebuilt (see `porchlight_core::state`: pending prompts do not survive a restart).
    pub fn rebuild(entries: &[AuditEntry], received: &[ReceivedGrant], owner: PeerId) -> Ledger {
        let mut ledger = Ledger::default();
        for entry in entries {
            match &entry.event {
                AuditEvent::Granted {
                    request_id,
                    token_id,
                    grantee,
                    clips,
                    not_after,
                    retain,
                    ..
                } => ledger.token_issued(IssuedToken {
                    token_id: *token_id,
                    request_id: *request_id,
                    owner,
                    grantee: *grantee,
                    clips: clips.clone(),
                    issued_at: entry.at,
                    not_after: *not_after,
                    retain: *retain,
                }),
                AuditEvent::Revoked { token_id, .. } => ledger.revoked(token_id),
                AuditEvent::FetchCompleted {
                    token_id, clip_id, ..
                } => ledger.transferred(token_id, *clip_id),
                _ => {}
            }
        }
        for grant in received {
            let Ok(token) = Signed::<ConsentToken>::verify_untimed(&grant.token) else {
                continue;
            };
            let token_id = grant.token_id;
            ledger.grant_received(&grant.request_id, token);
            for clip in grant.clips.iter().filter(|clip| clip.complete) {
                ledger.transferred(&token_id, clip.clip_id);
            }
        }
        ledger
    }

    pub fn prompted(&mut self, request_id: RequestId, summary: RequestSummary) {
        self.incoming.insert(
            request_id,
            Incoming {
                summary,
                state: IncomingState::Pending,
                token: None,
            },
        );
    }

    pub fn granted_by_rule(
        &mut self,
        request_id: RequestId,
        summary: RequestSummary,
        token: TokenId,
    ) {
        self.incoming.insert(
            request_id,
            Incoming {
                summary,
                state: IncomingState::GrantedByRule,
                token: Some(token),
            },
        );
    }

    pub fn approved(&mut self, request_id: &RequestId, token: TokenId) {
        if let Some(incoming) = self.incoming.get_mut(request_id) {
            if incoming.state == IncomingState::Pending {
                incoming.state = IncomingState::Granted;
            }
            incoming.token = Some(token);
        }
    }

    pub fn denied(&mut self, request_id: &RequestId) {
        if let Some(incoming) = self.incoming.get_mut(request_id) {
            incoming.state = IncomingState::Denied;
        }
    }

    pub fn sent(&mut self, request_id: RequestId, details: OutgoingDetails, at: Timestamp) {
        self.outgoing.insert(
            request_id,
            Outgoing {
                target: details.target,
                reason: details.reason,
                case_number: details.case_number,
                window: details.window,
                sent_at: at,
                state: OutgoingState::Sent,
                grants: Vec::new(),
                denied_by: Vec::new(),
            },
        );
    }

    pub fn grant_received(&mut self, request_id: &RequestId, signed: Signed<ConsentToken>) {
        let token = signed.body().clone();
        if let Some(outgoing) = self.outgoing.get_mut(request_id) {
            outgoing.state = OutgoingState::Granted;
            outgoing.grants.push(token.token_id);
        }
        self.tokens.insert(
            token.token_id,
            TokenEntry {
                token_id: token.token_id,
                request_id: token.request_id,
                owner: token.owner,
                grantee: token.grantee,
                clips: token.clips,
                not_before: token.not_before,
                not_after: token.not_after,
                retain: token.retain,
                received: Some(signed),
                revoked: false,
                deleted: false,
                transferred: Vec::new(),
            },
        );
    }

    pub fn denial_received(&mut self, request_id: &RequestId, owner: PeerId) {
        if let Some(outgoing) = self.outgoing.get_mut(request_id) {
            if outgoing.state == OutgoingState::Sent {
                outgoing.state = OutgoingState::Denied;
            }
            outgoing.denied_by.push(owner);
        }
    }

    pub fn token_issued(&mut self, token: IssuedToken) {
        self.tokens.insert(
            token.token_id,
            TokenEntry {
                token_id: token.token_id,
                request_id: token.request_id,
                owner: token.owner,
                grantee: token.grantee,
                clips: token.clips,
                not_before: token.issued_at,
                not_after: token.not_after,
                retain: token.retain,
                received: None,
                revoked: false,
                deleted: false,
                transferred: Vec::new(),
            },
        );
    }

    pub fn revoked(&mut self, token_id: &TokenId) {
        if let Some(entry) = self.tokens.get_mut(token_id) {
            entry.revoked = true;
        }
    }

    pub fn received_deleted(&mut self, token_id: &TokenId) {
        if let Some(entry) = self.tokens.get_mut(token_id) {
            entry.deleted = true;
        }
    }

    pub fn transferred(&mut self, token_id: &TokenId, clip_id: ClipId) {
        if let Some(entry) = self.tokens.get_mut(token_id) {
            if !entry.transferred.contains(&clip_id) {
                entry.transferred.push(clip_id);
            }
        }
    }

    /// A grant this node received, by token id.
    pub fn received_token(&self, token_id: &TokenId) -> Option<&Signed<ConsentToken>> {
        self.tokens.get(token_id)?.received.as_ref()
    }

    /// The grants received for an outgoing request.
    pub fn grants_of(&self, request_id: &RequestId) -> Vec<Signed<ConsentToken>> {
        self.outgoing
            .get(request_id)
            .map(|outgoing| {
                outgoing
                    .grants
                    .iter()
                    .filter_map(|token_id| self.received_token(token_id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Clips of a token this node issued (to protect or unprotect them in the store).
    pub fn issued_clips(&self, token_id: &TokenId) -> Vec<ClipId> {
        self.tokens
            .get(token_id)
            .filter(|entry| entry.received.is_none())
            .map(|entry| entry.clips.clone())
            .unwrap_or_default()
    }

    pub fn requests_view(&self) -> RequestsView {
        RequestsView {
            incoming: self
                .incoming
                .iter()
                .map(|(id, incoming)| incoming_view(id, incoming))
                .collect(),
            outgoing: self
                .outgoing
                .iter()
                .map(|(id, outgoing)| OutgoingView {
                    request_id: id.to_string(),
                    state: outgoing.state,
                    target: outgoing.target.clone(),
                    reason: outgoing.reason.clone(),
                    case_number: outgoing.case_number.clone(),
                    from: rfc3339(outgoing.window.from),
                    to: rfc3339(outgoing.window.to),
                    sent_at: rfc3339(outgoing.sent_at),
                    grants: outgoing.grants.iter().map(ToString::to_string).collect(),
                    denied_by: outgoing.denied_by.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        }
    }

    pub fn tokens_view(&self, now: Timestamp) -> TokensView {
        TokensView {
            tokens: self
                .tokens
                .values()
                .map(|entry| {
                    let state = if entry.deleted {
                        "deleted"
                    } else if entry.revoked {
                        "revoked"
                    } else if entry.not_after <= now {
                        "expired"
                    } else {
                        "active"
                    };
                    let direction = if entry.received.is_some() {
                        "received"
                    } else {
                        "issued"
                    };
                    TokenView {
                        token_id: entry.token_id.to_string(),
                        request_id: entry.request_id.to_string(),
                        direction: direction.to_owned(),
                        owner: entry.owner.to_string(),
                        grantee: entry.grantee.to_string(),
                        clips: entry.clips.iter().map(ToString::to_string).collect(),
                        not_before: rfc3339(entry.not_before),
                        not_after: rfc3339(entry.not_after),
                        retain: entry.retain,
                        state: state.to_owned(),
                        clips_transferred: entry
                            .transferred
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                    }
                })
                .collect(),
        }
    }
}

fn incoming_view(id: &RequestId, incoming: &Incoming) -> IncomingView {
    let summary = &incoming.summary;
    let (status, authority, presented) = match &summary.requester {
        Requester::Verified(authority) => (
            "verified",
            Some(AuthorityView {
                name: authority.display_name.clone(),
                jurisdiction: authority.jurisdiction.clone(),
                role: authority.role.label().to_owned(),
                issuer: authority.issuer.to_string(),
                root: authority.root.to_string(),
            }),
            true,
        ),
        Requester::Unverified {
            presented_credentials,
        } => ("unverified", None, *presented_credentials),
    };
    IncomingView {
        request_id: id.to_string(),
        state: incoming.state,
        requester_peer: summary.requester_peer.to_string(),
        requester_status: status.to_owned(),
        authority,
        presented_credentials: presented,
        reason: summary.reason.clone(),
        case_number: summary.case_number.clone(),
        from: rfc3339(summary.window.from),
        to: rfc3339(summary.window.to),
        access_seconds: summary.access.as_secs(),
        area: summary.area,
        received_at: rfc3339(summary.received_at),
        matching_clips: summary
            .matching_clips
            .iter()
            .map(|clip| MatchingClipView {
                clip_id: clip.clip_id.to_string(),
                camera: clip.camera.clone(),
                start: rfc3339(clip.start),
                end: rfc3339(clip.end),
            })
            .collect(),
        token_id: incoming.token.map(|token| token.to_string()),
    }
}
