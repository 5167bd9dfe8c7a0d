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
use crate::limits::{FetchLimiter, RateLimiter, ReplayCache};
use crate::output::{Output, RequestSummary};
use crate::refusals::RefusalTally;
use crate::state::{DurableState, IssuedToken, OutgoingRequest, ReceivedGrant, SeenNonce};

/// A request waiting for the owner's decision.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) summary: RequestSummary,
    pub(crate) reply_key: porchlight_protocol::AgreementPublic,
}

/// A request that passed every check before the clip match, waiting for the clip in
/// progress to be sealed (see [`crate::owner`]'s "waiting for the clip in progress").
#[derive(Debug, Clone)]
pub(crate) struct AwaitingClip {
    pub(crate) request: porchlight_protocol::FootageRequest,
    pub(crate) requester: crate::output::Requester,
    pub(crate) received_at: Timestamp,
    /// When to match, sealed or not.
    pub(crate) match_at: Timestamp,
}

/// A token this node issued, remembered so fetches can be checked against revocation.
#[derive(Debug, Clone)]
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

impl Clone for Outgoing {
    fn clone(&self) -> Outgoing {
        Outgoing {
            reply_secret: AgreementSecret::from_bytes(*self.reply_secret.to_bytes()),
            target: self.target,
        }
    }
}

/// A grant this node received and may fetch under.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) owner: PeerId,
    pub(crate) not_after: Timestamp,
    pub(crate) retain: bool,
}

/// What [`Node::undo_step`] puts back. The audit head and the generation are saved at the
/// start of every step (they are small); the consent maps are copied only the first time a
/// step is about to change one of them ([`Node::checkpoint`]), so the flood of refused frames
/// a node must shrug off costs no copy at all.
#[derive(Debug)]
struct StepUndo {
    audit: AuditHead,
    generation: u64,
    maps: Option<Box<ConsentMaps>>,
    /// The fetch-refusal tally, copied the first time a step counts a refusal (a junk fetch
    /// costs a copy of at most `MAX_REFUSAL_KEYS` counts, not of every map).
    refusals: Option<RefusalTally>,
    /// The maps' sizes at the start, to catch (in debug builds) a change made without a
    /// checkpoint.
    sizes: [usize; 6],
}

/// The consent maps, as they were before a step changed them.
#[derive(Debug)]
struct ConsentMaps {
    pending: BTreeMap<RequestId, Pending>,
    awaiting_clip: BTreeMap<RequestId, AwaitingClip>,
    issued: BTreeMap<TokenId, Issued>,
    outgoing: BTreeMap<RequestId, Outgoing>,
    received: BTreeMap<TokenId, Received>,
    replay: ReplayCache,
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
    pub(crate) fetch_limiter: FetchLimiter,
    /// Fetch refusals of the current interval, summarized when it ends.
    pub(crate) refusals: RefusalTally,
    pub(crate) pending: BTreeMap<RequestId, Pending>,
    /// Requests waiting for the clip in progress before they are matched. Not durable: like
    /// a pending prompt, it does not survive a restart.
    pub(crate) awaiting_clip: BTreeMap<RequestId, AwaitingClip>,
    pub(crate) issued: BTreeMap<TokenId, Issued>,
    pub(crate) outgoing: BTreeMap<RequestId, Outgoing>,
    pub(crate) received: BTreeMap<TokenId, Received>,
    pub(crate) misbehavior: BTreeMap<(PeerId, MisbehaviorCause), u64>,
    pub(crate) global_limit_drops: u64,
    pub(crate) pending_overflow_drops: u64,
    /// Counts changes to the durable state (see [`Node::durable_generation`]).
    pub(crate) generation: u64,
    /// How to undo the step in progress (or the last one), see [`Node::undo_step`].
    undo: Option<StepUndo>,
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
        let fetch_limiter = FetchLimiter::new(config.fetch_limits, now);
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
            fetch_limiter,
            refusals: RefusalTally::default(),
            pending: BTreeMap::new(),
            awaiting_clip: BTreeMap::new(),
            issued: BTreeMap::new(),
            outgoing: BTreeMap::new(),
            received: BTreeMap::new(),
            misbehavior: BTreeMap::new(),
            global_limit_drops: 0,
            pending_overflow_drops: 0,
            generation: 0,
            undo: None,
        }
    }

    /// Feeds one event or command at time `now` (clamped so time never goes backwards).
    /// Then drain [`Node::poll`] (see the drain rule above).
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Result<(), CoreError> {
        self.now = self.now.max(now);
        self.undo = Some(StepUndo {
            audit: self.audit.clone(),
            generation: self.generation,
            maps: None,
            refusals: None,
            sizes: self.map_sizes(),
        });
        // Commands and timers are rare and change state more often than not: copy up front.
        // Network input checkpoints itself once it has passed admission and verification.
        if matches!(
            input,
            Input::Approve { .. }
                | Input::Deny { .. }
                | Input::Revoke { .. }
                | Input::SendRequest { .. }
                | Input::Timeout
        ) {
            self.checkpoint();
        }
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
            clock: self.now,
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
        self.now = self.now.max(state.clock);
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

    /// Undoes the last [`Node::handle`], for a shell that could not make that step durable
    /// (an audit entry or the durable state failed to write) and so carried out none of its
    /// outputs. The node is put back as it was before the step: the audit head again matches
    /// the durable log's end, the generation is the one last saved, a denied or approved
    /// request is pending again, a revoked token is live again (as the owner was told, since
    /// the command failed), and a request or grant from a peer is as if it had been lost on
    /// the way, so its sender can send it again. Queued outputs are dropped.
    ///
    /// Not undone, because they promise nothing to anyone: the clock (it never goes back),
    /// the RNG (a retried step draws fresh ids), rate-limit buckets and misbehavior counts
    /// (an undone flood still counts against its sender), and the catalog (clip inputs
    /// record nothing and so never need undoing).
    ///
    /// Call it at most once per `handle`, after draining [`Node::poll`] and before the next
    /// `handle`; a second call, or one before any step, does nothing.
    pub fn undo_step(&mut self) {
        let Some(undo) = self.undo.take() else {
            return;
        };
        self.audit = undo.audit;
        self.generation = undo.generation;
        if let Some(refusals) = undo.refusals {
            self.refusals = refusals;
        }
        match undo.maps {
            Some(maps) => {
                let ConsentMaps {
                    pending,
                    awaiting_clip,
                    issued,
                    outgoing,
                    received,
                    replay,
                } = *maps;
                self.pending = pending;
                self.awaiting_clip = awaiting_clip;
                self.issued = issued;
                self.outgoing = outgoing;
                self.received = received;
                self.replay = replay;
            }
            None => debug_assert_eq!(
                undo.sizes,
                self.map_sizes(),
                "a step changed the consent maps without Node::checkpoint"
            ),
        }
        self.outputs.clear();
    }

    /// Copies the consent maps for [`Node::undo_step`], once per step, before the step first
    /// changes one of them. Every change to `pending`, `awaiting_clip`, `issued`,
    /// `outgoing`, `received` or `replay` during a step must come after a call to this.
    pub(crate) fn checkpoint(&mut self) {
        if self.undo.as_ref().is_none_or(|undo| undo.maps.is_some()) {
            return;
        }
        let maps = ConsentMaps {
            pending: self.pending.clone(),
            awaiting_clip: self.awaiting_clip.clone(),
            issued: self.issued.clone(),
            outgoing: self.outgoing.clone(),
            received: self.received.clone(),
            replay: self.replay.clone(),
        };
        if let Some(undo) = self.undo.as_mut() {
            undo.maps = Some(Box::new(maps));
        }
    }

    /// Copies the fetch-refusal tally for [`Node::undo_step`], once per step, before the
    /// step first changes it: an undone refusal entry must not leave the tally believing it
    /// was recorded.
    pub(crate) fn checkpoint_refusals(&mut self) {
        if self
            .undo
            .as_ref()
            .is_none_or(|undo| undo.refusals.is_some())
        {
            return;
        }
        let refusals = self.refusals.clone();
        if let Some(undo) = self.undo.as_mut() {
            undo.refusals = Some(refusals);
        }
    }

    fn map_sizes(&self) -> [usize; 6] {
        [
            self.pending.len(),
            self.awaiting_clip.len(),
            self.issued.len(),
            self.outgoing.len(),
            self.received.len(),
            self.replay.entries(),
        ]
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
        let awaiting_match = self
            .awaiting_clip
            .values()
            .map(|awaiting| awaiting.match_at)
            .min();
        [
            self.replay.next_expiry(),
            grant_expiry,
            issued_expiry,
            pending_expiry,
            awaiting_match,
            self.refusals.closes_at(),
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

    /// (peer, cause) keys of fetch refusals counted in the current interval (at most
    /// [`crate::refusals::MAX_REFUSAL_KEYS`]).
    pub fn refusal_keys(&self) -> usize {
        self.refusals.tracked_keys()
    }

    /// Per-peer entries the fetch limiter holds: at most [`crate::MAX_FETCH_PEERS`] stream
    /// buckets, plus a byte budget for each peer served lately.
    pub fn fetch_limiter_peers(&self) -> usize {
        self.fetch_limiter.tracked_peers()
    }

    /// Requests waiting for the clip in progress to be sealed before they are matched.
    pub fn awaiting_clip(&self) -> impl Iterator<Item = &RequestId> {
        self.awaiting_clip.keys()
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
        self.fetch_limiter.prune(now);
        if self.refusals.is_due(now) {
            self.summarize_refusals();
        }
        self.expire_issued(now);
        self.expire_pending(now);
        self.expire_received(now);
        self.match_awaiting(now);
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
