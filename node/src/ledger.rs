//! The node's book of requests and tokens, as the owner and the requester see them:
//! what `porchlight requests list` and `porchlight tokens list` show.
//!
//! The core decides; the ledger only remembers what the core reported (prompts, grants,
//! denials, tokens issued and received, clips fetched) in the shapes the API serves. It is
//! kept by the driver thread alone, so it needs no locking, and it holds no secret: reply
//! keys stay in the core and file keys in the stores.

use std::collections::BTreeMap;

use porchlight_core::audit::GrantEnd;
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

impl IncomingState {
    /// How the owner reads it.
    pub fn label(self) -> &'static str {
        match self {
            IncomingState::Pending => "awaiting a decision",
            IncomingState::Granted => "granted",
            IncomingState::Denied => "denied",
            IncomingState::GrantedByRule => "granted by a pre-authorization",
        }
    }
}

/// Where an outgoing request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutgoingState {
    /// Sent; no owner has granted yet (denials are silent by default).
    Sent,
    /// At least one owner granted, and a grant is still live.
    Granted,
    /// The one owner asked sent an explicit deny.
    Denied,
    /// Granted, and every grant has ended since (revoked or expired): `grant_states` says
    /// how, and whether the footage was deleted.
    Ended,
}

impl OutgoingState {
    /// How the requester reads it.
    pub fn label(self) -> &'static str {
        match self {
            OutgoingState::Sent => "sent, no grant yet",
            OutgoingState::Granted => "granted",
            OutgoingState::Denied => "denied",
            OutgoingState::Ended => "ended: every grant was revoked or expired",
        }
    }
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
    /// Set while the window ends in the future or reaches into footage still being
    /// recorded: what that means for the answer (see [`window_note`]).
    pub window_note: Option<String>,
    pub grants: Vec<String>,
    /// Where each grant of `grants` stands, in the same order.
    pub grant_states: Vec<GrantStateView>,
    pub denied_by: Vec<String>,
    /// Each explicit deny, with the owner's message when it sent one.
    pub denials: Vec<DenialView>,
}

/// An owner's explicit deny, as the requester received it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DenialView {
    pub owner: String,
    /// The owner's words, checked as peer text (no control or invisible characters) by the
    /// protocol when the deny arrived: show it as text, never as markup.
    pub message: Option<String>,
}

/// Where a grant this node received stands: `granted` (nothing fetched yet), `fetching`,
/// `received` (every clip), `revoked` or `expired` (footage deleted), or `kept` (ended, and
/// the footage stays because the owner granted retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    Granted,
    Fetching,
    Received,
    Revoked,
    Expired,
    Kept,
}

/// One received grant's state, built once here for the CLI and the phone page alike.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantStateView {
    pub token_id: String,
    pub state: GrantState,
    /// Clips received completely so far.
    pub clips_received: usize,
    /// Clips the grant names; unknown (`null`) for a grant whose footage was deleted before
    /// this node last started, as only the audit log remembers it.
    pub clips_granted: Option<usize>,
    /// When it was revoked or expired, RFC 3339.
    pub ended_at: Option<String>,
    /// Why it ended, for `kept`: `revoked` or `expired`.
    pub ended_by: Option<String>,
    /// The node's encrypted copy was deleted (files already exported with `fetch -o` are
    /// not touched).
    pub footage_deleted: bool,
    /// One line for a person, e.g. "revoked by the owner at …; its footage was deleted".
    pub summary: String,
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
    /// For a received token: where the grant stands, as `requests list` shows it.
    pub grant_state: Option<GrantStateView>,
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
    denied_by: Vec<(PeerId, Option<String>)>,
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
    /// A received grant's end, from its `GrantEnded` audit entry.
    ended: Option<Ended>,
    /// A received grant known only from the audit log: its footage (and token) are gone.
    received_gone: bool,
}

/// How and when a received grant ended.
#[derive(Debug, Clone, Copy)]
struct Ended {
    why: GrantEnd,
    at: Timestamp,
    deleted: bool,
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
    /// revocations), and those it received, from the received store's grants and, for
    /// grants whose footage is gone, from the audit log (so a revoked grant still says so).
    /// Requests are not rebuilt (see `porchlight_core::state`: pending prompts do not
    /// survive a restart).
    pub fn rebuild(entries: &[AuditEntry], received: &[ReceivedGrant], owner: PeerId) -> Ledger {
        let mut ledger = Ledger::default();
        let mut received_in_log: BTreeMap<TokenId, (RequestId, PeerId, Timestamp)> =
            BTreeMap::new();
        let mut ends: BTreeMap<TokenId, Ended> = BTreeMap::new();
        let mut clips_received: BTreeMap<TokenId, Vec<ClipId>> = BTreeMap::new();
        for entry in entries {
            match &entry.event {
                AuditEvent::GrantReceived {
                    request_id,
                    token_id,
                    owner,
                } => {
                    received_in_log.insert(*token_id, (*request_id, *owner, entry.at));
                }
                AuditEvent::GrantEnded {
                    token_id,
                    why,
                    deleted,
                } => {
                    ends.insert(
                        *token_id,
                        Ended {
                            why: *why,
                            at: entry.at,
                            deleted: *deleted,
                        },
                    );
                }
                AuditEvent::ClipReceived {
                    token_id, clip_id, ..
                } => clips_received.entry(*token_id).or_default().push(*clip_id),
                _ => {}
            }
        }
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
        for (token_id, (request_id, granted_by, at)) in received_in_log {
            if ledger.tokens.contains_key(&token_id) {
                continue;
            }
            // Its footage and token were deleted; the log still says what it was (not its
            // clips or validity: those were in the token).
            ledger.tokens.insert(
                token_id,
                TokenEntry {
                    token_id,
                    request_id,
                    owner: granted_by,
                    grantee: owner,
                    clips: Vec::new(),
                    not_before: at,
                    not_after: ends.get(&token_id).map_or(at, |end| end.at),
                    retain: false,
                    received: None,
                    revoked: false,
                    deleted: true,
                    transferred: clips_received.remove(&token_id).unwrap_or_default(),
                    ended: None,
                    received_gone: true,
                },
            );
        }
        for (token_id, end) in ends {
            ledger.grant_ended(&token_id, end.why, end.at, end.deleted);
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
                ended: None,
                received_gone: false,
            },
        );
    }

    /// An explicit deny, with the owner's message if it sent one (already checked as peer
    /// text by the protocol).
    pub fn denial_received(
        &mut self,
        request_id: &RequestId,
        owner: PeerId,
        message: Option<String>,
    ) {
        if let Some(outgoing) = self.outgoing.get_mut(request_id) {
            if outgoing.state == OutgoingState::Sent {
                outgoing.state = OutgoingState::Denied;
            }
            outgoing.denied_by.push((owner, message));
        }
    }

    /// A received grant ended (its `GrantEnded` audit entry): revoked or expired, its
    /// footage deleted unless retention was granted.
    pub fn grant_ended(&mut self, token_id: &TokenId, why: GrantEnd, at: Timestamp, deleted: bool) {
        if let Some(entry) = self.tokens.get_mut(token_id) {
            entry.ended = Some(Ended { why, at, deleted });
            entry.deleted |= deleted;
            entry.revoked |= why == GrantEnd::Revoked;
        }
    }

    /// Why `fetch` cannot give anything for a received grant that ended with its footage
    /// deleted, in words: `None` while it still has footage (or is not known).
    pub fn ended_refusal(&self, token_id: &TokenId) -> Option<String> {
        let entry = self.tokens.get(token_id)?;
        let view = grant_state(entry);
        if !view.footage_deleted {
            return None;
        }
        Some(match view.ended_at {
            Some(_) => format!("token {token_id} {}", view.summary),
            // Gone from the received store without a recorded end (deleted by hand).
            None => format!("nothing of token {token_id} is on this node any more"),
        })
    }

    /// Received grants of an outgoing request, known to this ledger (with or without their
    /// token).
    pub fn grant_ids_of(&self, request_id: &RequestId) -> Vec<TokenId> {
        let mut ids: Vec<TokenId> = self
            .outgoing
            .get(request_id)
            .map(|outgoing| outgoing.grants.clone())
            .unwrap_or_default();
        for entry in self.tokens.values() {
            let received = entry.received.is_some() || entry.received_gone;
            if received && entry.request_id == *request_id && !ids.contains(&entry.token_id) {
                ids.push(entry.token_id);
            }
        }
        ids
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
                ended: None,
                received_gone: false,
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

    pub fn requests_view(&self, now: Timestamp) -> RequestsView {
        RequestsView {
            incoming: self
                .incoming
                .iter()
                .map(|(id, incoming)| incoming_view(id, incoming))
                .collect(),
            outgoing: self
                .outgoing
                .iter()
                .map(|(id, outgoing)| (id, outgoing, self.grant_states_of(outgoing)))
                .map(|(id, outgoing, grant_states)| OutgoingView {
                    request_id: id.to_string(),
                    state: if outgoing.state == OutgoingState::Granted
                        && !grant_states.is_empty()
                        && grant_states.iter().all(|grant| grant.ended_at.is_some())
                    {
                        OutgoingState::Ended
                    } else {
                        outgoing.state
                    },
                    target: outgoing.target.clone(),
                    reason: outgoing.reason.clone(),
                    case_number: outgoing.case_number.clone(),
                    from: rfc3339(outgoing.window.from),
                    to: rfc3339(outgoing.window.to),
                    sent_at: rfc3339(outgoing.sent_at),
                    window_note: window_note(&outgoing.window, now),
                    grants: outgoing.grants.iter().map(ToString::to_string).collect(),
                    grant_states,
                    denied_by: outgoing
                        .denied_by
                        .iter()
                        .map(|(owner, _)| owner.to_string())
                        .collect(),
                    denials: outgoing
                        .denied_by
                        .iter()
                        .map(|(owner, message)| DenialView {
                            owner: owner.to_string(),
                            message: message.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn grant_states_of(&self, outgoing: &Outgoing) -> Vec<GrantStateView> {
        outgoing
            .grants
            .iter()
            .filter_map(|token_id| self.tokens.get(token_id))
            .map(grant_state)
            .collect()
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
                    let direction = if entry.received.is_some() || entry.received_gone {
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
                        grant_state: (direction == "received").then(|| grant_state(entry)),
                    }
                })
                .collect(),
        }
    }
}

/// How far back footage may still be in an owner's clip being recorded, as far as the
/// requester can tell: the default clip length (an owner may set another with
/// `--clip-seconds`; the requester cannot know it).
const RECORDING_NOTE_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// What a requester should know about a window that is not all recorded yet: it ends in
/// the future, or within the last minute (the default clip length), so an owner's node
/// waits up to one clip length for the clip being recorded before it matches. `None` for a
/// window wholly in the past.
pub fn window_note(window: &TimeWindow, now: Timestamp) -> Option<String> {
    if window.to > now {
        Some(format!(
            "the window ends in the future ({}): only footage recorded by the time each owner's \
             node answers (about one clip length from when it gets the request) can match",
            rfc3339(window.to)
        ))
    } else if window.to > now.saturating_sub(RECORDING_NOTE_WITHIN) {
        Some(
            "the window's end is still being recorded: each owner's node waits for its \
             current clip (up to one clip length) before it answers"
                .to_owned(),
        )
    } else {
        None
    }
}

/// Where a received grant stands, and the line that says so.
fn grant_state(entry: &TokenEntry) -> GrantStateView {
    let clips_received = entry.transferred.len();
    let clips_granted = (!entry.received_gone).then_some(entry.clips.len());
    let of_clips = |n: usize| match clips_granted {
        Some(m) => format!("{n} of {m} clips"),
        None => format!("{n} clips"),
    };
    let (state, summary) = match entry.ended {
        Some(Ended {
            why: GrantEnd::Revoked,
            at,
            deleted: true,
        }) => (
            GrantState::Revoked,
            format!(
                "was revoked by the owner at {}; its footage was deleted from this node",
                rfc3339(at)
            ),
        ),
        Some(Ended {
            why: GrantEnd::Expired,
            at,
            deleted: true,
        }) => (
            GrantState::Expired,
            format!(
                "expired at {}; its footage was deleted from this node",
                rfc3339(at)
            ),
        ),
        Some(Ended {
            why,
            at,
            deleted: false,
        }) => (
            GrantState::Kept,
            format!(
                "{} at {}; its footage is kept (the owner granted retention): {} received",
                match why {
                    GrantEnd::Revoked => "was revoked by the owner",
                    GrantEnd::Expired => "expired",
                },
                rfc3339(at),
                of_clips(clips_received)
            ),
        ),
        None if clips_granted.is_some_and(|m| m > 0 && clips_received >= m) => (
            GrantState::Received,
            format!("received: {}", of_clips(clips_received)),
        ),
        None if clips_received > 0 => (
            GrantState::Fetching,
            format!("fetching: {} received", of_clips(clips_received)),
        ),
        None => (
            GrantState::Granted,
            format!(
                "granted until {}: {} received",
                rfc3339(entry.not_after),
                of_clips(0)
            ),
        ),
    };
    GrantStateView {
        token_id: entry.token_id.to_string(),
        state,
        clips_received,
        clips_granted,
        ended_at: entry.ended.map(|end| rfc3339(end.at)),
        ended_by: entry.ended.map(|end| {
            match end.why {
                GrantEnd::Revoked => "revoked",
                GrantEnd::Expired => "expired",
            }
            .to_owned()
        }),
        footage_deleted: entry.ended.is_some_and(|end| end.deleted)
            || (entry.received_gone && entry.deleted),
        summary,
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

#[cfg(test)]
mod tests {
    use porchlight_protocol::{AgreementPublic, SigningIdentity};

    use super::*;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_unix_millis(1_700_000_000_000 + secs * 1000)
    }

    /// A ledger that sent request 1 and received token 2 for clips 3 and 4, retained or not.
    fn granted(retain: bool) -> (Ledger, TokenId) {
        let owner = SigningIdentity::from_secret_bytes(&[1; 32]);
        let request_id = RequestId::from_bytes([1; 32]);
        let token_id = TokenId::from_bytes([2; 16]);
        let token = ConsentToken {
            token_id,
            request_id,
            owner: owner.peer_id(),
            grantee: PeerId::from_public_key_bytes([9; 32]),
            grantee_key: AgreementPublic::from_bytes([8; 32]),
            clips: vec![ClipId::from_bytes([3; 32]), ClipId::from_bytes([4; 32])],
            not_before: at(0),
            not_after: at(3600),
            retain,
        };
        let mut ledger = Ledger::default();
        ledger.sent(
            request_id,
            OutgoingDetails {
                target: "a home".into(),
                reason: "bike theft".into(),
                case_number: None,
                window: TimeWindow {
                    from: at(0),
                    to: at(60),
                },
            },
            at(100),
        );
        ledger.grant_received(&request_id, Signed::sign(token, &owner).expect("valid"));
        (ledger, token_id)
    }

    fn state(ledger: &Ledger) -> GrantStateView {
        ledger.requests_view(at(200)).outgoing[0].grant_states[0].clone()
    }

    #[test]
    fn a_grant_goes_from_granted_through_fetching_to_received() {
        let (mut ledger, token_id) = granted(false);
        assert_eq!(state(&ledger).state, GrantState::Granted);
        ledger.transferred(&token_id, ClipId::from_bytes([3; 32]));
        let fetching = state(&ledger);
        assert_eq!(fetching.state, GrantState::Fetching);
        assert_eq!(fetching.summary, "fetching: 1 of 2 clips received");
        ledger.transferred(&token_id, ClipId::from_bytes([4; 32]));
        assert_eq!(state(&ledger).state, GrantState::Received);
        assert_eq!(
            ledger.requests_view(at(200)).outgoing[0].state,
            OutgoingState::Granted
        );
    }

    #[test]
    fn an_ended_grant_says_how_and_whether_its_footage_stayed() {
        let (mut ledger, token_id) = granted(true);
        ledger.grant_ended(&token_id, GrantEnd::Expired, at(3600), false);
        let kept = state(&ledger);
        assert_eq!(kept.state, GrantState::Kept);
        assert!(!kept.footage_deleted);
        assert_eq!(
            ledger.ended_refusal(&token_id),
            None,
            "kept footage exports"
        );

        let (mut ledger, token_id) = granted(false);
        ledger.grant_ended(&token_id, GrantEnd::Expired, at(3600), true);
        let expired = state(&ledger);
        assert_eq!(expired.state, GrantState::Expired);
        assert!(expired.footage_deleted);
        assert_eq!(
            ledger.requests_view(at(4000)).outgoing[0].state,
            OutgoingState::Ended
        );
        let refusal = ledger.ended_refusal(&token_id).expect("a refusal");
        assert!(
            refusal.contains("expired at") && refusal.contains("deleted"),
            "{refusal}"
        );
    }

    #[test]
    fn windows_not_all_recorded_yet_get_a_note() {
        let window = |from, to| TimeWindow {
            from: at(from),
            to: at(to),
        };
        let now = at(1000);
        assert!(window_note(&window(900, 1100), now).is_some_and(|n| n.contains("future")));
        assert!(window_note(&window(900, 990), now).is_some_and(|n| n.contains("recorded")));
        assert_eq!(window_note(&window(100, 900), now), None);
    }
}
