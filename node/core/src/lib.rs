//! porchlight-core: the sans-IO Porchlight node, the consent state machine that every
//! request, decision, fetch and revocation goes through.
//!
//! # Design overview
//!
//! The core is deterministic and does no I/O, the way quinn-proto and str0m are: no sockets,
//! no files, no threads, no async, no clock, no OS randomness. The shell (porchlight-node's
//! swarm, store and API) or the simulator feeds it [`Input`]s with the current time through
//! [`Node::handle`] and carries out the [`Output`]s it drains from [`Node::poll`]; the RNG is
//! a ChaCha20 seeded at [`Node::new`]. The same seed and the same inputs give the same
//! outputs, byte for byte, which is what lets the city simulator run this exact code.
//!
//! **Drain rule**: after every `handle`, poll until `None`, then re-arm the timer from
//! [`Node::poll_timeout`] and call `handle(now, Input::Timeout)` when it fires.
//!
//! - [`node`]: the [`Node`] type, its API and plumbing (clock clamping, misbehavior
//!   counting, audit appends).
//! - [`owner`](crate::owner) (private): admission, triage and the owner's decisions; fetch
//!   checks; revocation; the owner's queue limits ([`MAX_PENDING_REQUESTS`], [`PENDING_FOR`]).
//! - [`requester`](crate::requester) (private): sending requests and receiving decisions.
//! - [`audit`]: the hash-chained audit log and [`verify_chain`].
//! - [`config`], [`input`], [`output`], [`error`]: the data at the boundary.
//! - [`state`]: what survives a restart ([`Node::durable_state`], [`Node::restore`]).
//! - `limits`, `catalog` (private): rate limits (requests and fetches), the replay cache,
//!   the clip catalog.
//! - [`refusals`]: fetch refusals recorded once, then counted and summarized per interval.
//!
//! Deliberately absent: the wire format and cryptography (porchlight-protocol), transports,
//! storage and clip bytes (the shells stream ciphertext and wrap file keys on
//! [`Output::ServeFetch`]), and logging (the shell logs what it drains). Network input never
//! makes `handle` fail or panic; it becomes [`Output::PeerMisbehaved`], a fetch rejection or
//! silence. Caller mistakes are a [`CoreError`].

pub mod audit;
mod catalog;
pub mod config;
pub mod error;
pub mod input;
mod limits;
pub mod node;
pub mod output;
mod owner;
pub mod refusals;
mod requester;
pub mod state;

pub use audit::{AuditDecodeError, AuditEntry, AuditError, AuditEvent, check_entry, verify_chain};
pub use config::{
    BucketConfig, ByteBudget, FetchLimits, NodeConfig, PreAuthorization, RateLimits, StandingRules,
};
pub use error::{CoreError, Misbehavior, MisbehaviorCause};
pub use input::Input;
pub use limits::MAX_FETCH_PEERS;
pub use node::Node;
pub use output::{ClipSummary, Output, RequestSummary, Requester};
pub use owner::{MAX_PENDING_REQUESTS, PENDING_FOR};
pub use state::DurableState;
