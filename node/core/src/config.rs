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
    pub rules: StandingRules,
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
