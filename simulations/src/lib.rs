//! porchlight-sim: a deterministic discrete-event simulator for a city of Porchlight nodes.
//!
//! # What this crate owns
//!
//! The world around many sans-IO node cores: simulated time ([`SimTime`], [`SimDuration`]),
//! the agenda of things that will happen ([`EventQueue`], keyed by `(time, insertion order)`),
//! and the network between homes ([`LinkModel`]: latency, jitter, serialization delay, loss
//! and partitions, drawn from a seeded ChaCha20 stream). The later simulator loop holds N
//! `porchlight-core` nodes and steps them the way quinn's test `Pair` and str0m's netem do:
//! pop the earliest event, hand it to the node it concerns, drain the node's outputs, and
//! schedule each send as a future delivery through the link model.
//!
//! # Determinism
//!
//! Every source of randomness is a seeded [`rand_chacha::ChaCha20Rng`] and every clock is a
//! [`SimTime`] that only the event queue advances. The same seed therefore gives a
//! byte-identical trace on every machine, and a failing run prints its seed so that anyone
//! can replay it exactly. Equal timestamps pop in the order they were scheduled, so ties
//! never depend on heap layout. Nothing here iterates a `HashMap` (whose hasher is seeded
//! from the OS).
//!
//! # What this crate deliberately does not do
//!
//! - No sockets: messages are values moved through the [`EventQueue`], never bytes on a wire.
//! - No clocks: nothing reads `std::time`; time advances only by popping events, so a
//!   simulated day runs as fast as the events can be processed.
//! - No threads: one event at a time on one thread, which is what makes the order of events,
//!   and with it the trace, reproducible.
//! - No dependency on `porchlight-node`, GStreamer or libp2p: the simulator drives the same
//!   core that ships, never its shells, so it builds and runs fast.
//!
//! # Entry points
//!
//! - The `porchlight-sim` binary (`src/main.rs`): `porchlight-sim link-profile` samples a
//!   link profile so a researcher can see what `lan`, `city` or `flaky` mean before a run.
//! - [`LinkModel::transit`]: the network's answer for one message.
//! - [`sample_link_profile`]: the same sampling the binary does, as a library call.

pub mod clock;
pub mod link;
pub mod link_stats;
pub mod queue;

use std::fmt;

pub use clock::{SimDuration, SimTime};
pub use link::{
    Delivery, LinkModel, LinkProfile, LinkProfileError, LinkProfileParams, PartitionError,
};
pub use link_stats::{LatencyPercentiles, LinkStats, sample_link_profile};
pub use queue::{EventQueue, ScheduleError};

/// A node's position in the simulated city: an index into the simulator's list of nodes.
///
/// This is the simulator's own handle for a home, chosen so that lookups are array indexing
/// and traces are short. It is not a protocol `PeerId`; the world maps one to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIndex(pub u32);

impl fmt::Display for NodeIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node#{}", self.0)
    }
}
