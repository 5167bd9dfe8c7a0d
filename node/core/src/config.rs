//! The node's configuration: trust roots, the cells it answers for, rate limits and the
//! owner's standing rules.
//!
//! Everything here is plain data handed to [`crate::Node::new`]; the shell parses and
//! validates the owner's config file and builds it. Every standing rule is off by default,
//! so a fresh node prompts its owner for every request that matches footage and releases
//! nothing on its own.

use std::collections::BTreeSet;
use std::time::Duration;

use porchlight_protocol::{AuthorityRole, CellId, PeerId};

/// How the node behaves. [`NodeConfig::default`] trusts no authority, answers no area and has
/// every standing rule off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeConfig {
    /// Keys whose credential chains make a requester *verified* (`porchlight trust add`).
    pub trust_roots: Vec<PeerId>,
    /// The geographic cells this home opted into; area requests for other cells are ignored.
    pub cells: BTreeSet<CellId>,
    /// This node's own credential chain (leaf first), attached to every request it sends.
    /// Empty for a neighbor.
    pub credential_chain: Vec<Vec<u8>>,
    pub limits: RateLimits,
    /// Limits on incoming fetches, separate from the request limits.
    pub fetch_limits: FetchLimits,
    pub rules: StandingRules,
    /// The length of each clip while this node records live, `None` when it records nothing.
    /// A request whose window reaches into the clip being recorded waits (at most one clip
    /// length) for that clip to be sealed before it is matched, rather than finding nothing.
    pub live_clip_length: Option<Duration>,
}

/// A token bucket: `burst` requests at once, then one more every `refill_every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketConfig {
    pub burst: u32,
    pub refill_every: Duration,
}

/// Limits on incoming requests, applied before any signature is checked so that a flood
/// costs the node little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Per sending peer. Default: 10 at once, then 10 a minute.
    pub per_peer: BucketConfig,
    /// Across all peers. Default: 100 at once, then 10 a second.
    pub global: BucketConfig,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_peer: BucketConfig {
                burst: 10,
                refill_every: Duration::from_secs(6),
            },
            global: BucketConfig {
                burst: 100,
                refill_every: Duration::from_millis(100),
            },
        }
    }
}

/// A byte budget: up to `bytes` at once, refilled evenly so that an empty budget is full
/// again after `refill_over`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteBudget {
    pub bytes: u64,
    pub refill_over: Duration,
}

/// Limits on incoming fetches, checked before the token is parsed: how many fetch streams
/// are admitted (token buckets, per peer and for strangers in all), and how many ciphertext
/// bytes are served (byte budgets, per peer and in all, charged when the shell reports a
/// served fetch). A fetch over any of them is closed unanswered and counted
/// (spec/threat-model.md#fetch-admission).
///
/// The defaults are sized so an honest grantee never meets them: a full grant is 256 clips
/// (the protocol's `MAX_CLIPS_PER_TOKEN`), fetched 3 at a time, and a 60 s clip is about
/// 15 MB at x264's default 2 Mbit/s, 60 MB at a generous 8 Mbit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Fetch streams per peer. Default: 512 at once, then 10 a second. The burst covers a
    /// whole 256-clip grant with one resume for every clip however fast the link; clips
    /// already received are never asked again, so a grantee needs more only if it lost
    /// every clip twice.
    pub per_peer: BucketConfig,
    /// Fetch streams from peers that hold no live token of this node, all together.
    /// Default: 1000 at once, then 100 a second, which bounds the signature checks a flood
    /// of strangers costs to well under a percent of one core. Grantees are not charged
    /// here, so a flood from many identities cannot lock them out.
    pub strangers: BucketConfig,
    /// Bytes served to one peer. Default: 16 GiB, refilled over an hour: a full grant of
    /// 60 s clips at 8 Mbit/s (about 15.4 GB) fits at once.
    pub per_peer_bytes: ByteBudget,
    /// Bytes served to everyone. Default: 64 GiB, refilled over an hour: four full grants
    /// at once.
    pub global_bytes: ByteBudget,
}

impl Default for FetchLimits {
    fn default() -> Self {
        const GIB: u64 = 1 << 30;
        FetchLimits {
            per_peer: BucketConfig {
                burst: 512,
                refill_every: Duration::from_millis(100),
            },
            strangers: BucketConfig {
                burst: 1000,
                refill_every: Duration::from_millis(10),
            },
            per_peer_bytes: ByteBudget {
                bytes: 16 * GIB,
                refill_over: Duration::from_secs(3600),
            },
            global_bytes: ByteBudget {
                bytes: 64 * GIB,
                refill_over: Duration::from_secs(3600),
            },
        }
    }
}

/// The owner's standing rules (issue 4, "The flow", step 7). All off by default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StandingRules {
    /// Deny, silently, every request whose credential chain does not verify.
    pub deny_unverified: bool,
    /// Deny, silently, every request without a case number.
    pub deny_without_case_number: bool,
    /// Peers whose requests are dropped without a prompt.
    pub blocked: BTreeSet<PeerId>,
    /// Releases the owner agreed to in advance.
    pub pre_authorizations: Vec<PreAuthorization>,
}

/// "A verified authority of `role` may receive the last `max_lookback` of footage for
/// `grant_for`": the node grants without a prompt and notifies the owner at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreAuthorization {
    pub role: AuthorityRole,
    pub max_lookback: Duration,
    /// How long the token is valid; capped at the protocol's 30 days.
    pub grant_for: Duration,
}
