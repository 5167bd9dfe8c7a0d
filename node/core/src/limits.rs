//! Admission control for incoming requests: token-bucket rate limits (per peer and global)
//! and the replay cache; and for incoming fetches, their own count buckets and byte
//! budgets ([`FetchLimiter`]).
//!
//! Both are checked before the owner sees anything, and both are bounded: a per-peer bucket
//! that has refilled is indistinguishable from a new one and is dropped on the next timeout,
//! and a replay entry lives only as long as its request could still pass the freshness
//! check, so the cache holds at most what the global limit lets in over that span.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use porchlight_protocol::validate::MAX_CLOCK_SKEW;
use porchlight_protocol::{PeerId, Timestamp};

use crate::config::{BucketConfig, ByteBudget, FetchLimits, RateLimits};

/// A token bucket in whole tokens, refilled lazily from the time elapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bucket {
    available: u32,
    /// The time up to which refills have been counted.
    refilled_to: Timestamp,
}

impl Bucket {
    fn full(config: BucketConfig, now: Timestamp) -> Bucket {
        Bucket {
            available: config.burst,
            refilled_to: now,
        }
    }

    fn refill(&mut self, config: BucketConfig, now: Timestamp) {
        let every = config.refill_every.as_millis().max(1);
        let elapsed = now.duration_since(self.refilled_to).as_millis();
        let earned = elapsed / every;
        if self.available >= config.burst || earned == 0 {
            if self.available >= config.burst {
                self.refilled_to = now;
            }
            return;
        }
        let earned_u32 = u32::try_from(earned).unwrap_or(u32::MAX);
        self.available = self.available.saturating_add(earned_u32).min(config.burst);
        if self.available >= config.burst {
            self.refilled_to = now;
        } else {
            let used = u64::try_from(earned * every).unwrap_or(u64::MAX);
            self.refilled_to = self.refilled_to.saturating_add(Duration::from_millis(used));
        }
    }

    fn is_full(&self, config: BucketConfig, now: Timestamp) -> bool {
        let mut probe = self.clone();
        probe.refill(config, now);
        probe.available >= config.burst
    }

    fn try_take(&mut self, config: BucketConfig, now: Timestamp) -> bool {
        self.refill(config, now);
        if self.available == 0 {
            return false;
        }
        self.available -= 1;
        true
    }
}

/// Why admission refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The sending peer is over its own limit (the peer's doing).
    PeerLimit,
    /// The node is over its global limit (not necessarily this peer's doing).
    GlobalLimit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateLimiter {
    config: RateLimits,
    global: Bucket,
    peers: BTreeMap<PeerId, Bucket>,
}

impl RateLimiter {
    pub(crate) fn new(config: RateLimits, now: Timestamp) -> RateLimiter {
        RateLimiter {
            config,
            global: Bucket::full(config.global, now),
            peers: BTreeMap::new(),
        }
    }

    /// Takes one token from `peer`'s bucket and then the global one. A peer over its own
    /// limit does not drain the global bucket.
    pub(crate) fn admit(&mut self, peer: PeerId, now: Timestamp) -> Result<(), Refused> {
        let per_peer = self.config.per_peer;
        let bucket = self
            .peers
            .entry(peer)
            .or_insert_with(|| Bucket::full(per_peer, now));
        if !bucket.try_take(per_peer, now) {
            return Err(Refused::PeerLimit);
        }
        if !self.global.try_take(self.config.global, now) {
            return Err(Refused::GlobalLimit);
        }
        Ok(())
    }

    /// Forgets buckets that have refilled completely.
    pub(crate) fn prune(&mut self, now: Timestamp) {
        let per_peer = self.config.per_peer;
        self.peers
            .retain(|_, bucket| !bucket.is_full(per_peer, now));
    }
}

/// A byte budget's level, refilled lazily. It may go below zero: bytes are charged when a
/// served fetch is reported, after they left, so a clip started with a little budget left
/// puts the peer in debt, and it is refused until the debt is paid off by refills.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ByteBucket {
    level: i128,
    refilled_to: Timestamp,
}

impl ByteBucket {
    fn full(config: ByteBudget, now: Timestamp) -> ByteBucket {
        ByteBucket {
            level: i128::from(config.bytes),
            refilled_to: now,
        }
    }

    fn refill(&mut self, config: ByteBudget, now: Timestamp) {
        let elapsed = now.duration_since(self.refilled_to).as_millis();
        let over = config.refill_over.as_millis().max(1);
        // Whole bytes earned; until one is, `refilled_to` stays put so slow refills add up.
        // The fraction of a byte dropped on each refill is immaterial.
        let earned = elapsed.saturating_mul(u128::from(config.bytes)) / over;
        if earned == 0 {
            return;
        }
        let capacity = i128::from(config.bytes);
        let earned = i128::try_from(earned).unwrap_or(i128::MAX);
        self.level = self.level.saturating_add(earned).min(capacity);
        self.refilled_to = now;
    }

    fn is_full(&self, config: ByteBudget, now: Timestamp) -> bool {
        let mut probe = self.clone();
        probe.refill(config, now);
        probe.level >= i128::from(config.bytes)
    }

    fn has_budget(&mut self, config: ByteBudget, now: Timestamp) -> bool {
        self.refill(config, now);
        self.level > 0
    }

    fn charge(&mut self, config: ByteBudget, now: Timestamp, bytes: u64) {
        self.refill(config, now);
        self.level = self.level.saturating_sub(i128::from(bytes));
    }
}

/// At most this many per-peer fetch buckets are kept at once. Past it a *stranger* with no
/// bucket is refused as over the limit (a grantee always gets one: there are only as many
/// grantees as the owner granted), so a flood from many identities cannot grow memory.
pub const MAX_FETCH_PEERS: usize = 4096;

/// Why a fetch was not admitted: which limit it met, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverFetchLimit {
    /// The peer's own stream count or byte budget is spent.
    PeerLimit,
    /// The strangers' stream count, the node's byte budget, or the table of per-peer
    /// buckets is full.
    NodeLimit,
}

/// Fetch admission: stream counts per peer and for strangers, bytes per peer and in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchLimiter {
    config: FetchLimits,
    strangers: Bucket,
    bytes: ByteBucket,
    peers: BTreeMap<PeerId, Bucket>,
    peer_bytes: BTreeMap<PeerId, ByteBucket>,
}

impl FetchLimiter {
    pub(crate) fn new(config: FetchLimits, now: Timestamp) -> FetchLimiter {
        FetchLimiter {
            config,
            strangers: Bucket::full(config.strangers, now),
            bytes: ByteBucket::full(config.global_bytes, now),
            peers: BTreeMap::new(),
            peer_bytes: BTreeMap::new(),
        }
    }

    /// Admits one fetch stream from `peer`, or says which limit it met. `grantee` is whether
    /// `peer` holds a live token of this node: only strangers share the strangers' bucket.
    /// Byte budgets are checked first and take nothing; a peer over its own count does not
    /// drain the strangers' bucket.
    pub(crate) fn admit(
        &mut self,
        peer: PeerId,
        grantee: bool,
        now: Timestamp,
    ) -> Result<(), OverFetchLimit> {
        let config = self.config;
        if let Some(budget) = self.peer_bytes.get_mut(&peer) {
            if !budget.has_budget(config.per_peer_bytes, now) {
                return Err(OverFetchLimit::PeerLimit);
            }
        }
        if !self.bytes.has_budget(config.global_bytes, now) {
            return Err(OverFetchLimit::NodeLimit);
        }
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_FETCH_PEERS {
            self.prune(now);
            if self.peers.len() >= MAX_FETCH_PEERS && !grantee {
                return Err(OverFetchLimit::NodeLimit);
            }
        }
        let bucket = self
            .peers
            .entry(peer)
            .or_insert_with(|| Bucket::full(config.per_peer, now));
        if !bucket.try_take(config.per_peer, now) {
            return Err(OverFetchLimit::PeerLimit);
        }
        if !grantee && !self.strangers.try_take(config.strangers, now) {
            return Err(OverFetchLimit::NodeLimit);
        }
        Ok(())
    }

    /// Charges `bytes` served to `peer` against its budget and the node's.
    pub(crate) fn charge(&mut self, peer: PeerId, bytes: u64, now: Timestamp) {
        let config = self.config;
        self.bytes.charge(config.global_bytes, now, bytes);
        self.peer_bytes
            .entry(peer)
            .or_insert_with(|| ByteBucket::full(config.per_peer_bytes, now))
            .charge(config.per_peer_bytes, now, bytes);
    }

    /// Forgets per-peer buckets and budgets that have refilled completely.
    pub(crate) fn prune(&mut self, now: Timestamp) {
        let config = self.config;
        self.peers
            .retain(|_, bucket| !bucket.is_full(config.per_peer, now));
        self.peer_bytes
            .retain(|_, budget| !budget.is_full(config.per_peer_bytes, now));
    }

    /// Per-peer entries held (stream buckets and byte budgets).
    pub(crate) fn tracked_peers(&self) -> usize {
        self.peers.len() + self.peer_bytes.len()
    }
}

/// (requester, nonce) pairs seen recently, each kept until its request can no longer pass
/// the freshness check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ReplayCache {
    seen: BTreeSet<(PeerId, [u8; 16])>,
    /// (forget at, requester, nonce), ordered by time for pruning.
    expiry: BTreeSet<(Timestamp, PeerId, [u8; 16])>,
}

impl ReplayCache {
    /// How long past `issued_at` an entry is kept: the request passes freshness up to
    /// `issued_at + skew`; one more skew covers a node whose clock was clamped.
    pub(crate) const KEEP_FOR: Duration = MAX_CLOCK_SKEW.saturating_mul(2);

    /// Records the pair; `false` if it was already there (a replay).
    pub(crate) fn insert(
        &mut self,
        requester: PeerId,
        nonce: [u8; 16],
        issued_at: Timestamp,
    ) -> bool {
        if !self.seen.insert((requester, nonce)) {
            return false;
        }
        self.expiry
            .insert((issued_at.saturating_add(Self::KEEP_FOR), requester, nonce));
        true
    }

    pub(crate) fn prune(&mut self, now: Timestamp) {
        while let Some(&(at, requester, nonce)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.expiry.pop_first();
            self.seen.remove(&(requester, nonce));
        }
    }

    pub(crate) fn next_expiry(&self) -> Option<Timestamp> {
        self.expiry.first().map(|&(at, _, _)| at)
    }

    /// Every entry as (forget at, requester, nonce), for the durable state.
    pub(crate) fn snapshot(&self) -> impl Iterator<Item = (Timestamp, PeerId, [u8; 16])> + '_ {
        self.expiry.iter().copied()
    }

    /// Puts back an entry from the durable state.
    pub(crate) fn restore(&mut self, forget_at: Timestamp, requester: PeerId, nonce: [u8; 16]) {
        if self.seen.insert((requester, nonce)) {
            self.expiry.insert((forget_at, requester, nonce));
        }
    }

    pub(crate) fn entries(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    const TEN_A_MINUTE: BucketConfig = BucketConfig {
        burst: 10,
        refill_every: Duration::from_secs(6),
    };

    #[test]
    fn bucket_allows_a_burst_then_refills_one_per_interval() {
        let mut bucket = Bucket::full(TEN_A_MINUTE, t(0));
        for _ in 0..10 {
            assert!(bucket.try_take(TEN_A_MINUTE, t(0)));
        }
        assert!(!bucket.try_take(TEN_A_MINUTE, t(5_999)));
        assert!(bucket.try_take(TEN_A_MINUTE, t(6_000)));
        assert!(!bucket.try_take(TEN_A_MINUTE, t(6_000)));
        // Refill credit is not lost between intervals.
        assert!(!bucket.try_take(TEN_A_MINUTE, t(11_999)));
        assert!(bucket.try_take(TEN_A_MINUTE, t(12_000)));
        assert!(bucket.is_full(TEN_A_MINUTE, t(12_000 + 60_000)));
    }

    #[test]
    fn a_peer_over_its_limit_does_not_drain_the_global_bucket() {
        let limits = RateLimits {
            per_peer: BucketConfig {
                burst: 1,
                refill_every: Duration::from_secs(60),
            },
            global: BucketConfig {
                burst: 2,
                refill_every: Duration::from_secs(60),
            },
        };
        let mut limiter = RateLimiter::new(limits, t(0));
        let (a, b, c) = (
            PeerId::from_public_key_bytes([1; 32]),
            PeerId::from_public_key_bytes([2; 32]),
            PeerId::from_public_key_bytes([3; 32]),
        );
        assert_eq!(limiter.admit(a, t(0)), Ok(()));
        assert_eq!(limiter.admit(a, t(0)), Err(Refused::PeerLimit));
        assert_eq!(limiter.admit(b, t(0)), Ok(()));
        assert_eq!(limiter.admit(c, t(0)), Err(Refused::GlobalLimit));
        limiter.prune(t(60_000));
        assert!(limiter.peers.is_empty());
    }

    #[test]
    fn replay_cache_forgets_after_the_window() {
        let mut cache = ReplayCache::default();
        let peer = PeerId::from_public_key_bytes([1; 32]);
        assert!(cache.insert(peer, [9; 16], t(1_000)));
        assert!(!cache.insert(peer, [9; 16], t(1_000)));
        assert_eq!(cache.next_expiry(), Some(t(121_000)));
        cache.prune(t(120_999));
        assert_eq!(cache.entries(), 1);
        cache.prune(t(121_000));
        assert_eq!(cache.entries(), 0);
        assert_eq!(cache.next_expiry(), None);
    }
}
