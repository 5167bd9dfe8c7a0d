//! The owner side: admitting and triaging requests, the owner's decisions, fetch checks and
//! revocation.
//!
//! The order of checks on a request is the point of this module. Cheap admission first
//! (rate limits, keyed by the authenticated sender, before any signature work), then the
//! protocol's full verification at `now`, then the replay cache, addressing, blocking, the
//! credential chain, the clip match and the standing rules. Only a request that survives all
//! of them reaches the owner's prompt. Denials and non-matches are silent: the requester
//! learns nothing about homes that do not grant.
//!
//! # Waiting for the clip in progress
//!
//! A request for "the last few minutes" asks for footage still being recorded: the clip in
//! progress is not in the catalog until it is sealed. When this node records live
//! ([`NodeConfig::live_clip_length`](crate::NodeConfig)) and a request's window ends after
//! the footage sealed so far (and within one clip length of now, or later), the request,
//! having passed every other check, waits in `awaiting_clip` until one clip length (plus
//! [`SEAL_GRACE`]) past the earlier of its window's end and its arrival, which is when that
//! clip has been sealed, and is then matched as if it had just arrived. It is not durable,
//! like a pending prompt.

use std::time::Duration;

use porchlight_protocol::validate::MAX_TOKEN_LIFETIME;
use porchlight_protocol::{
    AgreementPublic, ClipId, ConsentToken, DecisionOutcome, FootageRequest, Kind, OwnerDecision,
    PeerId, ProtocolError, RejectCode, RequestId, RequestTarget, Revocation, Signed, TimeWindow,
    Timestamp, TokenId, verify_credential_chain,
};

use crate::audit::{AuditEvent, FetchRefusalCause, GrantEnd, RequestOutcome};
use crate::error::{CoreError, Misbehavior};
use crate::limits::Refused;
use crate::node::{AwaitingClip, Issued, Node, Pending, due};
use crate::output::{Output, RequestSummary, Requester};
use crate::refusals::Tally;

/// At most this many requests wait for the owner at once.
pub const MAX_PENDING_REQUESTS: usize = 500;
/// A request the owner has not decided within this time is dropped from the queue (the
/// requester's freshness window closed long ago; if it still matters it asks again).
pub const PENDING_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Time allowed, past a clip's end, for the shell to seal and store it and report it.
pub const SEAL_GRACE: Duration = Duration::from_secs(2);

/// What a grant is built from.
struct GrantTerms {
    request_id: RequestId,
    grantee: PeerId,
    grantee_key: AgreementPublic,
    clips: Vec<ClipId>,
    duration: Duration,
    retain: bool,
    by_rule: bool,
}

impl Node {
    pub(crate) fn on_request(&mut self, from: PeerId, bytes: &[u8]) {
        let now = self.now;
        match self.limiter.admit(from, now) {
            Ok(()) => {}
            Err(Refused::PeerLimit) => return self.misbehaved(from, Misbehavior::RateLimited),
            Err(Refused::GlobalLimit) => {
                self.global_limit_drops += 1;
                return;
            }
        }
        let signed = match Signed::<FootageRequest>::verify(bytes, now) {
            Ok(signed) => signed,
            Err(error) => {
                return self.misbehaved(
                    from,
                    Misbehavior::Invalid {
                        kind: Some(Kind::Request),
                        error,
                    },
                );
            }
        };
        let request_id = RequestId::of(&signed);
        let request = signed.into_body();
        if request.requester != from {
            return self.misbehaved(
                from,
                Misbehavior::SignerMismatch {
                    kind: Kind::Request,
                },
            );
        }
        self.checkpoint();
        if !self
            .replay
            .insert(request.requester, request.nonce, request.issued_at)
        {
            return self.misbehaved(from, Misbehavior::Replay(request_id));
        }
        self.changed();
        let addressed_here = match &request.target {
            RequestTarget::Peer(peer) => *peer == self.me,
            RequestTarget::Area(cells) => cells.iter().any(|cell| self.config.cells.contains(cell)),
        };
        if !addressed_here {
            return;
        }
        let received = |verified, outcome| AuditEvent::RequestReceived {
            request_id,
            requester: request.requester,
            verified,
            outcome,
        };
        if self.config.rules.blocked.contains(&request.requester) {
            return self.record(received(false, RequestOutcome::Blocked));
        }
        let requester = if request.credential_chain.is_empty() {
            Requester::Unverified {
                presented_credentials: false,
            }
        } else {
            match verify_credential_chain(
                &request.credential_chain,
                &request.requester,
                &self.config.trust_roots,
                now,
            ) {
                Ok(authority) => Requester::Verified(authority),
                Err(_) => Requester::Unverified {
                    presented_credentials: true,
                },
            }
        };
        if let Some(match_at) = self.clip_in_progress_match_at(&request.window) {
            if self.awaiting_clip.len() >= MAX_PENDING_REQUESTS {
                // As for a full prompt queue: drop the newest, counted.
                self.pending_overflow_drops += 1;
                return;
            }
            self.awaiting_clip.insert(
                request_id,
                AwaitingClip {
                    request,
                    requester,
                    received_at: now,
                    match_at,
                },
            );
            return;
        }
        self.match_and_triage(request_id, request, requester, now);
    }

    /// When a request for `window` should be matched, if its window reaches into footage
    /// that may still be in the clip being recorded; `None` to match now.
    fn clip_in_progress_match_at(&self, window: &TimeWindow) -> Option<Timestamp> {
        let clip_length = self.config.live_clip_length?;
        let now = self.now;
        // The clip in progress began where sealed footage ends, and at most one clip ago.
        let sealed_until = self
            .catalog
            .latest_end()
            .unwrap_or(Timestamp::EPOCH)
            .max(now.saturating_sub(clip_length));
        (window.to > sealed_until).then(|| {
            window
                .to
                .min(now)
                .saturating_add(clip_length)
                .saturating_add(SEAL_GRACE)
        })
    }

    /// Matches the requests whose clip in progress has had time to be sealed.
    pub(crate) fn match_awaiting(&mut self, now: Timestamp) {
        for request_id in due(&self.awaiting_clip, now, |awaiting| awaiting.match_at) {
            if let Some(awaiting) = self.awaiting_clip.remove(&request_id) {
                self.match_and_triage(
                    request_id,
                    awaiting.request,
                    awaiting.requester,
                    awaiting.received_at,
                );
            }
        }
    }

    /// The clip match, the standing rules and the owner's prompt, for a request that passed
    /// every check before them.
    fn match_and_triage(
        &mut self,
        request_id: RequestId,
        request: FootageRequest,
        requester: Requester,
        received_at: Timestamp,
    ) {
        let received = |verified, outcome| AuditEvent::RequestReceived {
            request_id,
            requester: request.requester,
            verified,
            outcome,
        };
        let verified = matches!(requester, Requester::Verified(_));
        let matching_clips = self.catalog.overlapping(&request.window);
        if matching_clips.is_empty() {
            return self.record(received(verified, RequestOutcome::NoMatchingClips));
        }
        let rules = &self.config.rules;
        if rules.deny_unverified && !verified {
            return self.record(received(verified, RequestOutcome::DeniedUnverified));
        }
        if rules.deny_without_case_number && request.case_number.is_none() {
            return self.record(received(verified, RequestOutcome::DeniedNoCaseNumber));
        }
        let summary = RequestSummary {
            requester_peer: request.requester,
            requester,
            reason: request.reason.clone(),
            case_number: request.case_number.clone(),
            window: request.window,
            access: request.access(),
            matching_clips,
            area: matches!(request.target, RequestTarget::Area(_)),
            received_at,
        };
        if self.try_pre_authorized(request_id, &request, &summary) {
            return;
        }
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            // The owner's queue is full (a flood from many identities, or an owner away for
            // long): drop the newest rather than grow without bound. Not the sender's fault
            // alone, so counted, not reported as misbehavior.
            self.pending_overflow_drops += 1;
            return;
        }
        self.record(received(verified, RequestOutcome::Prompted));
        self.pending.insert(
            request_id,
            Pending {
                summary: summary.clone(),
                reply_key: request.reply_key,
            },
        );
        self.emit(Output::PromptOwner {
            request_id,
            summary,
        });
    }

    /// Grants under the first pre-authorization for the verified requester's role that
    /// covers some matching clip; `false` if none applies (the owner is prompted instead).
    fn try_pre_authorized(
        &mut self,
        request_id: RequestId,
        request: &FootageRequest,
        summary: &RequestSummary,
    ) -> bool {
        let Requester::Verified(authority) = &summary.requester else {
            return false;
        };
        let now = self.now;
        let Some(rule) = self
            .config
            .rules
            .pre_authorizations
            .iter()
            .find(|rule| rule.role == authority.role)
            .copied()
        else {
            return false;
        };
        let lookback = TimeWindow {
            from: now.saturating_sub(rule.max_lookback),
            to: now,
        };
        let clips: Vec<ClipId> = summary
            .matching_clips
            .iter()
            .filter(|clip| {
                TimeWindow {
                    from: clip.start,
                    to: clip.end,
                }
                .overlaps(&lookback)
            })
            .map(|clip| clip.clip_id)
            .collect();
        if clips.is_empty() {
            return false;
        }
        self.record(AuditEvent::RequestReceived {
            request_id,
            requester: request.requester,
            verified: true,
            outcome: RequestOutcome::PreAuthorized,
        });
        let terms = GrantTerms {
            request_id,
            grantee: request.requester,
            grantee_key: request.reply_key,
            clips,
            duration: rule.grant_for,
            retain: false,
            by_rule: true,
        };
        match self.issue_grant(terms) {
            Ok(token_id) => {
                self.emit(Output::NotifyOwner {
                    request_id,
                    summary: summary.clone(),
                    token_id,
                });
                true
            }
            // Too many clips for one token, for instance: let the owner choose.
            Err(_) => false,
        }
    }

    /// Signs a token and its grant, sends it, and records it. Changes nothing on error.
    fn issue_grant(&mut self, terms: GrantTerms) -> Result<TokenId, CoreError> {
        let now = self.now;
        let token_id = TokenId::from_bytes(self.random_bytes());
        let not_after = now.saturating_add(terms.duration.min(MAX_TOKEN_LIFETIME));
        let token = ConsentToken {
            token_id,
            request_id: terms.request_id,
            owner: self.me,
            grantee: terms.grantee,
            grantee_key: terms.grantee_key,
            clips: terms.clips.clone(),
            not_before: now,
            not_after,
            retain: terms.retain,
        };
        let token = Signed::sign(token, &self.identity).map_err(refused("consent token"))?;
        let decision = OwnerDecision {
            owner: self.me,
            request_id: terms.request_id,
            decided_at: now,
            outcome: DecisionOutcome::Grant {
                token: token.to_bytes(),
            },
        };
        let decision = Signed::sign(decision, &self.identity).map_err(refused("grant"))?;
        self.checkpoint();
        self.issued.insert(
            token_id,
            Issued {
                grantee: terms.grantee,
                not_after,
                revoked: false,
            },
        );
        self.changed();
        self.emit(Output::Send {
            to: terms.grantee,
            bytes: decision.to_bytes(),
        });
        self.emit(Output::TokenIssued {
            token_id,
            request_id: terms.request_id,
            grantee: terms.grantee,
            not_after,
        });
        self.record(AuditEvent::Granted {
            request_id: terms.request_id,
            token_id,
            grantee: terms.grantee,
            clips: terms.clips,
            not_after,
            retain: terms.retain,
            by_rule: terms.by_rule,
        });
        Ok(token_id)
    }

    pub(crate) fn approve(
        &mut self,
        request_id: RequestId,
        duration: Duration,
        clips: Option<Vec<ClipId>>,
        retain: bool,
    ) -> Result<(), CoreError> {
        let pending = self
            .pending
            .get(&request_id)
            .ok_or(CoreError::UnknownRequest(request_id))?;
        if duration.is_zero() {
            return Err(CoreError::ZeroDuration);
        }
        let offered = |clip: &ClipId| {
            pending
                .summary
                .matching_clips
                .iter()
                .any(|offered| offered.clip_id == *clip)
        };
        let chosen: Vec<ClipId> = match clips {
            Some(chosen) => {
                if let Some(clip) = chosen
                    .iter()
                    .find(|clip| !offered(clip) || !self.catalog.contains(clip))
                {
                    return Err(CoreError::ClipNotOffered {
                        request: request_id,
                        clip: *clip,
                    });
                }
                chosen
            }
            None => pending
                .summary
                .matching_clips
                .iter()
                .map(|clip| clip.clip_id)
                .filter(|clip| self.catalog.contains(clip))
                .collect(),
        };
        if chosen.is_empty() {
            return Err(CoreError::NoClips);
        }
        let terms = GrantTerms {
            request_id,
            grantee: pending.summary.requester_peer,
            grantee_key: pending.reply_key,
            clips: chosen,
            duration,
            retain,
            by_rule: false,
        };
        self.issue_grant(terms)?;
        self.pending.remove(&request_id);
        Ok(())
    }

    /// Denies a pending request. Silent by default: the requester is sent a signed deny only
    /// when the owner wrote a message.
    pub(crate) fn deny(
        &mut self,
        request_id: RequestId,
        message: Option<String>,
    ) -> Result<(), CoreError> {
        let pending = self
            .pending
            .get(&request_id)
            .ok_or(CoreError::UnknownRequest(request_id))?;
        let requester = pending.summary.requester_peer;
        let message_sent = message.is_some();
        if message_sent {
            let decision = OwnerDecision {
                owner: self.me,
                request_id,
                decided_at: self.now,
                outcome: DecisionOutcome::Deny { message },
            };
            let decision = Signed::sign(decision, &self.identity).map_err(refused("deny"))?;
            self.emit(Output::Send {
                to: requester,
                bytes: decision.to_bytes(),
            });
        }
        self.pending.remove(&request_id);
        self.record(AuditEvent::Denied {
            request_id,
            message_sent,
        });
        Ok(())
    }

    /// Refuses every further fetch under `token_id` at once and tells the grantee.
    pub(crate) fn revoke(&mut self, token_id: TokenId) -> Result<(), CoreError> {
        let issued = self
            .issued
            .get(&token_id)
            .ok_or(CoreError::UnknownToken(token_id))?;
        if issued.revoked {
            return Err(CoreError::AlreadyRevoked(token_id));
        }
        let grantee = issued.grantee;
        let revocation = Revocation {
            owner: self.me,
            token_id,
            revoked_at: self.now,
            reason: None,
        };
        let revocation = Signed::sign(revocation, &self.identity).map_err(refused("revocation"))?;
        if let Some(issued) = self.issued.get_mut(&token_id) {
            issued.revoked = true;
        }
        self.changed();
        self.emit(Output::Send {
            to: grantee,
            bytes: revocation.to_bytes(),
        });
        self.record(AuditEvent::Revoked { token_id, grantee });
        Ok(())
    }

    /// Checks a fetch: first the fetch limits, keyed by the authenticated peer, before the
    /// token is even parsed (a fetch over one is closed unanswered); then token verifies
    /// now, issued here, not revoked, presented by its grantee, names the clip, and the clip
    /// is still stored. Every refusal gets the protocol's coarse code; the ones after
    /// verification all read `Invalid`, so a prober learns nothing about which check failed
    /// or whether the clip exists.
    pub(crate) fn on_fetch(&mut self, from: PeerId, token_bytes: &[u8], clip_id: ClipId) {
        let grantee = self.holds_live_token(&from);
        if self.fetch_limiter.admit(from, grantee, self.now).is_err() {
            return self.close_fetch(from);
        }
        let token = match Signed::<ConsentToken>::verify(token_bytes, self.now) {
            Ok(token) => token.into_body(),
            Err(error) => {
                let code = error.reject_code();
                if matches!(error, ProtocolError::Decode(_) | ProtocolError::Crypto(_)) {
                    self.misbehaved(from, Misbehavior::BadToken(error));
                }
                return self.reject_fetch(from, code);
            }
        };
        let live = token.owner == self.me
            && self
                .issued
                .get(&token.token_id)
                .is_some_and(|issued| !issued.revoked);
        if !live || token.check_fetch(&from, &clip_id).is_err() || !self.catalog.contains(&clip_id)
        {
            return self.reject_fetch(from, RejectCode::Invalid);
        }
        self.emit(Output::ServeFetch {
            to: from,
            clip_id,
            token_id: token.token_id,
            grantee_key: token.grantee_key,
            not_after: token.not_after,
        });
        self.record(AuditEvent::FetchServed {
            token_id: token.token_id,
            clip_id,
            peer: from,
        });
    }

    /// Records the bytes of a served clip, whatever became of its token since the stream
    /// began (revoked, or expired and forgotten): those bytes left all the same. Only the
    /// shell reports this, after a `ServeFetch`, so there is nothing to check.
    pub(crate) fn on_fetch_completed(
        &mut self,
        to: PeerId,
        token_id: TokenId,
        clip_id: ClipId,
        bytes: u64,
    ) {
        self.fetch_limiter.charge(to, bytes, self.now);
        self.record(AuditEvent::FetchCompleted {
            token_id,
            clip_id,
            peer: to,
            bytes,
        });
    }

    /// Records a served stream the shell ended early, at expiry or revocation, with the
    /// bytes that had left by then; recorded unconditionally, like a completed fetch.
    pub(crate) fn on_fetch_cut(
        &mut self,
        to: PeerId,
        token_id: TokenId,
        clip_id: ClipId,
        bytes: u64,
        why: GrantEnd,
    ) {
        self.fetch_limiter.charge(to, bytes, self.now);
        self.record(AuditEvent::FetchCut {
            token_id,
            clip_id,
            peer: to,
            bytes,
            why,
        });
    }

    /// Refuses a fetch with `code`. Only the first refusal of each peer and code in an
    /// interval is its own audit entry; the rest are counted ([`crate::refusals`]).
    fn reject_fetch(&mut self, to: PeerId, code: RejectCode) {
        self.emit(Output::RejectFetch { to, code });
        if self.count_refusal(to, FetchRefusalCause::Rejected(code)) == Tally::First {
            self.record(AuditEvent::FetchRefused { peer: to, code });
        }
    }

    /// Closes a fetch over a limit without an answer, and counts it. No reject code: a
    /// stranger learns nothing (it looks like an owner with every slot busy or a dropped
    /// link), and a grantee does not give up, since only a refusal is final to it; its
    /// resume-and-retry comes back after a backoff.
    fn close_fetch(&mut self, to: PeerId) {
        self.emit(Output::CloseFetch { to });
        self.count_refusal(to, FetchRefusalCause::OverLimit);
    }

    /// Counts one refusal, first closing the interval if it is over (the timer may not have
    /// fired yet).
    fn count_refusal(&mut self, peer: PeerId, cause: FetchRefusalCause) -> Tally {
        self.checkpoint_refusals();
        if self.refusals.is_due(self.now) {
            self.summarize_refusals();
        }
        self.refusals.count(peer, cause, self.now)
    }

    /// Writes the summaries of the refusal interval that ended.
    pub(crate) fn summarize_refusals(&mut self) {
        self.checkpoint_refusals();
        for event in self.refusals.close() {
            self.record(event);
        }
    }

    /// Whether `peer` is the grantee of a token of this node that is neither revoked nor
    /// expired: such a peer is not charged to the strangers' fetch bucket. A map scan, no
    /// parsing: the owner holds only the tokens it granted.
    fn holds_live_token(&self, peer: &PeerId) -> bool {
        self.issued.values().any(|issued| {
            issued.grantee == *peer && !issued.revoked && issued.not_after >= self.now
        })
    }

    /// Drops requests the owner left undecided for [`PENDING_FOR`].
    pub(crate) fn expire_pending(&mut self, now: Timestamp) {
        let stale = due(&self.pending, now, |pending| {
            pending.summary.received_at.saturating_add(PENDING_FOR)
        });
        for request_id in stale {
            self.pending.remove(&request_id);
        }
    }

    /// Forgets issued tokens that can no longer verify (past `not_after` plus the skew).
    pub(crate) fn expire_issued(&mut self, now: Timestamp) {
        for token_id in due(&self.issued, now, Issued::forget_at) {
            self.issued.remove(&token_id);
            self.changed();
        }
    }
}

fn refused(what: &'static str) -> impl Fn(ProtocolError) -> CoreError {
    move |source| CoreError::Refused { what, source }
}
