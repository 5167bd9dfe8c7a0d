//! [`Node`]: the state machine itself, its clock, its RNG and its output queue.
//!
//! This module owns the shape of the API (`new`, `handle`, `poll`, `poll_timeout`) and the
//! shared plumbing (time clamping, misbehavior counting, audit appends). The consent logic
//! lives in [`crate::owner`] (answering requests, fetches, revocations) and
//! [`crate::requester`] (asking, receiving grants), as further `impl Node` blocks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use porchlight_protocol::envelope::peek_kind;
use porchlight_protocol::validate::MAX_CLOCK_SKEW;
use porchlight_protocol::{
    AgreementSecret, Kind, PeerId, RequestId, SigningIdentity, Timestamp, TokenId,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::audit::{AuditEntry, AuditEvent, AuditHead};
use crate::catalog::Catalog;
use crate::config::NodeConfig;
use crate::error::{CoreError, Misbehavior, MisbehaviorCause};
use crate::input::Input;
use crate::limits::{RateLimiter, ReplayCache};
use crate::output::{Output, RequestSummary};
use crate::state::{DurableState, IssuedToken, OutgoingRequest, ReceivedGrant, SeenNonce};

/// A request waiting for the owner's decision.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) summary: RequestSummary,
    pub(crate) reply_key: porchlight_protocol::AgreementPublic,
}

/// A token this node issued, remembered so fetches can be checked against revocation.
#[derive(Debug)]
pub(crate) struct Issued {
    pub(crate) grantee: PeerId,
    pub(crate) not_after: Timestamp,
    pub(crate) revoked: bool,
}

impl Issued {
    /// The first time at which the token can no longer verify (past `not_after` plus the
    /// clock skew), so forgetting it cannot turn a refusal into a success.
    pub(crate) fn forget_at(&self) -> Timestamp {
        self.not_after
            .saturating_add(MAX_CLOCK_SKEW)
            .saturating_add(Duration::from_millis(1))
    }
}

/// A request this node sent, with the secret half of its reply key.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) reply_secret: AgreementSecret,
    /// The one peer asked, or `None` for an area request.
    pub(crate) target: Option<PeerId>,
}

/// A grant this node received and may fetch under.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) owner: PeerId,
    pub(crate) not_after: Timestamp,
    pub(crate) retain: bool,
}

/// The sans-IO Porchlight node: owner and requester side of the consent flow.
///
/// # Drain rule
///
/// After **every** call to [`Node::handle`] (even one that returned an error), call
/// [`Node::poll`] until it returns `None`, carrying out each [`Output`] in order; then read
/// [`Node::poll_timeout`] and arrange to call `handle(now, Input::Timeout)` once that time
/// has come. Outputs queue up until polled, so a shell under backpressure may pause polling,
/// but it must not feed more input than it can drain.
///
/// # Time
///
/// `now` is wall-clock time from the shell (or the simulator). Time never goes backwards
/// inside the node: a `now` earlier than the latest one seen is clamped to it.
///
/// # Errors
///
/// `handle` returns `Err(CoreError)` only for a caller's mistake in a command (approving an
/// unknown request, revoking an unknown token, a request the protocol would refuse), and
/// then changes nothing. Network input (`FrameReceived`, `FetchAsked`) always returns
/// `Ok(())`; what was wrong with it comes out as [`Output::PeerMisbehaved`],
/// [`Output::RejectFetch`] or silence.
#[derive(Debug)]
pub struct Node {
    pub(crate) config: NodeConfig,
    pub(crate) identity: SigningIdentity,
    pub(crate) me: PeerId,
    pub(crate) rng: ChaCha20Rng,
    pub(crate) now: Timestamp,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) audit: AuditHead,
    pub(crate) catalog: Catalog,
    pub(crate) limiter: RateLimiter,
    pub(crate) replay: ReplayCache,
    pub(crate) pending: BTreeMap<RequestId, Pending>,
    pub(crate) issued: BTreeMap<TokenId, Issued>,
    pub(crate) outgoing: BTreeMap<RequestId, Outgoing>,
    pub(crate) received: BTreeMap<TokenId, Received>,
    pub(crate) misbehavior: BTreeMap<(PeerId, MisbehaviorCause), u64>,
    pub(crate) global_limit_drops: u64,
    pub(crate) pending_overflow_drops: u64,
    /// Counts changes to the durable state (see [`Node::durable_generation`]).
    pub(crate) generation: u64,
}

impl Node {
    /// A node with no clips, no requests and no tokens. `seed` drives every random choice
    /// (token ids, nonces, reply keys): the shell passes 32 bytes from the OS RNG, the
    /// simulator a seed derived from its run seed.
    pub fn new(
        config: NodeConfig,
        identity: SigningIdentity,
        seed: [u8; 32],
        now: Timestamp,
    ) -> Node {
        let limiter = RateLimiter::new(config.limits, now);
        Node {
            me: identity.peer_id(),
            config,
            identity,
            rng: ChaCha20Rng::from_seed(seed),
            now,
            outputs: VecDeque::new(),
            audit: AuditHead::new(),
            catalog: Catalog::default(),
            limiter,
            replay: ReplayCache::default(),
            pending: BTreeMap::new(),
            issued: BTreeMap::new(),
            outgoing: BTreeMap::new(),
            received: BTreeMap::new(),
            misbehavior: BTreeMap::new(),
            global_limit_drops: 0,
            pending_overflow_drops: 0,
            generation: 0,
        }
    }

    /// Feeds one event or command at time `now` (clamped so time never goes backwards).
    /// Then drain [`Node::poll`] (see the drain rule above).
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Result<(), CoreError> {
        self.now = self.now.max(now);
        match input {
            Input::FrameReceived { from, bytes } => {
                self.on_frame(from, &bytes);
                Ok(())
            }
            Input::ClipAdded {
                clip_id,
                camera,
                start,
                end,
            } => {
                self.catalog.add(clip_id, camera, start, end);
                Ok(())
            }
            Input::ClipRemoved { clip_id } => {
                self.catalog.remove(&clip_id);
                Ok(())
            }
            Input::Approve {
                request_id,
                duration,
                clips,
                retain,
            } => self.approve(request_id, duration, clips, retain),
            Input::Deny {
                request_id,
                message,
            } => self.deny(request_id, message),
            Input::Revoke { token_id } => self.revoke(token_id),
            Input::FetchAsked {
                from,
                token_bytes,
                clip_id,
            } => {
                self.on_fetch(from, &token_bytes, clip_id);
                Ok(())
            }
            Input::SendRequest {
                target,
                window,
                reason,
                case_number,
                access,
            } => self.send_request(target, window, reason, case_number, access),
            Input::FetchCompleted {
                to,
                token_id,
                clip_id,
                bytes,
            } => {
                self.on_fetch_completed(to, token_id, clip_id, bytes);
                Ok(())
            }
            Input::FetchCut {
                to,
                token_id,
                clip_id,
                bytes,
                why,
            } => {
                self.on_fetch_cut(to, token_id, clip_id, bytes, why);
                Ok(())
            }
            Input::ClipReceived {
                token_id,
                clip_id,
                bytes,
            } => self.on_clip_received(token_id, clip_id, bytes),
            Input::Timeout => {
                self.on_timeout();
                Ok(())
            }
        }
    }

    /// Continues the audit chain of a restarted node where its durable log ends: the next
    /// entry gets `last.seq + 1` and links to `last.hash`, and the node's clock is raised to
    /// `last.at` if it is behind, so entries stay in time order even if the wall clock went
    /// back while the node was down. Call it once, right after [`Node::new`] and before any
    /// `handle`, with the last entry of the durable log (an empty log needs no call).
    ///
    /// # Errors
    ///
    /// [`CoreError::AuditResume`] if this node already recorded an entry (its chain would
    /// fork), if `last.hash` is not the hash of its fields, or if its seq is the last one
    /// possible. Nothing changes.
    pub fn resume_audit(&mut self, last: &AuditEntry) -> Result<(), CoreError> {
        let hash = AuditEntry::compute_hash(last.seq, last.at, &last.prev_hash, &last.event);
        let next_seq = last.seq.checked_add(1).ok_or(CoreError::AuditResume)?;
        if self.audit.next_seq() != 0 || hash != last.hash {
            return Err(CoreError::AuditResume);
        }
        self.audit = AuditHead::resume(next_seq, last.hash);
        self.now = self.now.max(last.at);
        Ok(())
    }

    /// A copy of what must survive a restart ([`crate::state`]).
    pub fn durable_state(&self) -> DurableState {
        DurableState {
            issued: self
                .issued
                .iter()
                .map(|(token_id, issued)| IssuedToken {
                    token_id: *token_id,
                    grantee: issued.grantee,
                    not_after: issued.not_after,
                    revoked: issued.revoked,
                })
                .collect(),
            outgoing: self
                .outgoing
                .iter()
                .map(|(request_id, out)| OutgoingRequest {
                    request_id: *request_id,
                    reply_secret: AgreementSecret::from_bytes(*out.reply_secret.to_bytes()),
                    target: out.target,
                })
                .collect(),
            received: self
                .received
                .iter()
                .map(|(token_id, grant)| ReceivedGrant {
                    token_id: *token_id,
                    owner: grant.owner,
                    not_after: grant.not_after,
                    retain: grant.retain,
                })
                .collect(),
            seen_nonces: self
                .replay
                .snapshot()
                .map(|(forget_at, requester, nonce)| SeenNonce {
                    requester,
                    nonce,
                    forget_at,
                })
                .collect(),
        }
    }

    /// Increases whenever the durable state changes: the shell saves
    /// [`Node::durable_state`] when this differs from what it last saved.
    pub fn durable_generation(&self) -> u64 {
        self.generation
    }

    /// Puts back the durable state of an earlier run. Call it once, right after
    /// [`Node::new`] (and [`Node::resume_audit`]) and before any `handle`; entries whose
    /// time has passed are dropped at the first timeout, as they would have been.
    ///
    /// # Errors
    ///
    /// [`CoreError::RestoreTooLate`] if this node has already handled input. Nothing changes.
    pub fn restore(&mut self, state: DurableState) -> Result<(), CoreError> {
        let fresh = self.issued.is_empty()
            && self.outgoing.is_empty()
            && self.received.is_empty()
            && self.replay.entries() == 0
            && self.pending.is_empty();
        if !fresh {
            return Err(CoreError::RestoreTooLate);
        }
        for token in state.issued {
            self.issued.insert(
                token.token_id,
                Issued {
                    grantee: token.grantee,
                    not_after: token.not_after,
                    revoked: token.revoked,
                },
            );
        }
        for request in state.outgoing {
            self.outgoing.insert(
                request.request_id,
                Outgoing {
                    reply_secret: request.reply_secret,
                    target: request.target,
                },
            );
        }
        for grant in state.received {
            self.received.insert(
                grant.token_id,
                Received {
                    owner: grant.owner,
                    not_after: grant.not_after,
                    retain: grant.retain,
                },
            );
        }
        for seen in state.seen_nonces {
            self.replay
                .restore(seen.forget_at, seen.requester, seen.nonce);
        }
        Ok(())
    }

    /// The next output, or `None` when drained.
    pub fn poll(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Every queued output, in order: [`Node::poll`] until `None`. For tests and simple shells.
    pub fn drain(&mut self) -> Vec<Output> {
        self.outputs.drain(..).collect()
    }

    /// When to call `handle(_, Input::Timeout)` next, or `None` if no timer is armed.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let grant_expiry = self.received.values().map(|grant| grant.not_after).min();
        let issued_expiry = self.issued.values().map(Issued::forget_at).min();
        let pending_expiry = self
            .pending
            .values()
            .map(|pending| {
                pending
                    .summary
                    .received_at
                    .saturating_add(crate::owner::PENDING_FOR)
            })
            .min();
        [
            self.replay.next_expiry(),
            grant_expiry,
            issued_expiry,
            pending_expiry,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.me
    }

    /// The latest time the node has seen.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// How many times `peer` misbehaved with this cause (the first was emitted as an output).
    pub fn misbehavior_count(&self, peer: &PeerId, cause: MisbehaviorCause) -> u64 {
        self.misbehavior.get(&(*peer, cause)).copied().unwrap_or(0)
    }

    /// (requester, nonce) pairs held by the replay cache.
    pub fn replay_entries(&self) -> usize {
        self.replay.entries()
    }

    /// Requests dropped because the global rate limit was exhausted.
    pub fn global_limit_drops(&self) -> u64 {
        self.global_limit_drops
    }

    /// Requests dropped because the owner's queue was full ([`crate::MAX_PENDING_REQUESTS`]).
    pub fn pending_overflow_drops(&self) -> u64 {
        self.pending_overflow_drops
    }

    /// Requests waiting for the owner, oldest id first.
    pub fn pending_requests(&self) -> impl Iterator<Item = (&RequestId, &RequestSummary)> {
        self.pending
            .iter()
            .map(|(id, pending)| (id, &pending.summary))
    }

    /// The reply secret of a request this node sent: the key its grants' file keys are
    /// wrapped to.
    pub fn reply_secret(&self, request_id: &RequestId) -> Option<&AgreementSecret> {
        self.outgoing.get(request_id).map(|out| &out.reply_secret)
    }

    /// Whether this node issued `token_id` and has since revoked it.
    pub fn is_revoked(&self, token_id: &TokenId) -> bool {
        self.issued
            .get(token_id)
            .is_some_and(|issued| issued.revoked)
    }

    /// Notes that the durable state changed.
    pub(crate) fn changed(&mut self) {
        self.generation += 1;
    }

    pub(crate) fn emit(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    pub(crate) fn record(&mut self, event: AuditEvent) {
        let entry = self.audit.append(self.now, event);
        self.emit(Output::Audit(entry));
    }

    /// Counts a misbehavior and emits it the first time for this peer and cause.
    pub(crate) fn misbehaved(&mut self, peer: PeerId, reason: Misbehavior) {
        let count = self.misbehavior.entry((peer, reason.cause())).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.emit(Output::PeerMisbehaved { peer, reason });
        }
    }

    pub(crate) fn random_bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut bytes = [0u8; N];
        self.rng.fill_bytes(&mut bytes);
        bytes
    }

    fn on_frame(&mut self, from: PeerId, bytes: &[u8]) {
        match peek_kind(bytes) {
            Ok(Kind::Request) => self.on_request(from, bytes),
            Ok(Kind::Decision) => self.on_decision(from, bytes),
            Ok(Kind::Revocation) => self.on_revocation(from, bytes),
            Ok(kind @ (Kind::ConsentToken | Kind::AuthorityCredential)) => {
                self.misbehaved(from, Misbehavior::UnexpectedKind(kind));
            }
            Err(error) => self.misbehaved(
                from,
                Misbehavior::Invalid {
                    kind: None,
                    error: error.into(),
                },
            ),
        }
    }

    fn on_timeout(&mut self) {
        let now = self.now;
        let seen = self.replay.entries();
        self.replay.prune(now);
        if self.replay.entries() != seen {
            self.changed();
        }
        self.limiter.prune(now);
        self.expire_issued(now);
        self.expire_pending(now);
        self.expire_received(now);
    }
}

/// Ids of map entries whose time has passed, collected first so the map can be edited.
pub(crate) fn due<K: Copy + Ord, V>(
    map: &BTreeMap<K, V>,
    now: Timestamp,
    at: impl Fn(&V) -> Timestamp,
) -> BTreeSet<K> {
    map.iter()
        .filter(|(_, value)| at(value) <= now)
        .map(|(key, _)| *key)
        .collect()
}
