//! The network between homes: [`LinkProfile`] describes a kind of link, [`LinkModel`] decides
//! the fate of each message sent over one.
//!
//! A message either is [`Delivery::Lost`] or [`Delivery::Arrives`] after
//! `base latency + uniform jitter + serialization delay`, the last being the message size
//! over the profile's bandwidth (the sender's uplink, which is what limits a home sending
//! footage). Independent jitter per message means messages on one link can overtake each
//! other, as they do on the real internet. On top of that, [`LinkModel::partition`] splits
//! the city into groups that cannot reach each other until [`LinkModel::heal`].
//!
//! The model owns one seeded [`ChaCha20Rng`] and nothing else random, so the same seed and
//! the same sequence of calls give the same fates. Every call to [`LinkModel::transit`] draws
//! its loss and jitter values whatever the outcome, so changing a partition or a loss rate
//! does not shift the randomness, and hence the latency, of unrelated messages; comparisons
//! between runs stay like for like.
//!
//! Profiles are validated once, when built from [`LinkProfileParams`]; a [`LinkProfile`] in
//! hand is always usable, so `transit` cannot fail. Congestion and queueing are deliberately
//! not modelled yet: each message sees the link as if it were alone on it.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::NodeIndex;
use crate::clock::SimDuration;

const MICROS_PER_SEC: u128 = 1_000_000;

/// The unchecked description of a link, as a user or a config file gives it. Turn it into a
/// [`LinkProfile`] with [`LinkProfile::new`], which validates it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkProfileParams {
    /// The latency every message pays, one way.
    pub base_latency: SimDuration,
    /// The most extra latency a message may pay; each message draws uniformly from
    /// `0..=jitter`.
    pub jitter: SimDuration,
    /// The probability that a message is lost, in `[0, 1]`.
    pub loss: f64,
    /// How fast the sender can put bytes on the link, in bytes per second; at least 1.
    pub bandwidth_bytes_per_sec: u64,
}

/// Why a [`LinkProfileParams`] does not describe a usable link.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkProfileError {
    /// The loss probability is NaN or infinite.
    #[error("link loss must be a finite probability between 0 and 1, got {0}")]
    LossNotFinite(f64),
    /// The loss probability is below 0 or above 1.
    #[error("link loss must be a probability between 0 and 1, got {0} (for 5% loss, pass 0.05)")]
    LossOutOfRange(f64),
    /// A bandwidth of zero would make every message take forever.
    #[error("link bandwidth must be at least 1 byte per second, got 0")]
    ZeroBandwidth,
    /// `base_latency + jitter` does not fit in a [`SimDuration`].
    #[error("link latency overflows: base latency {base_latency} plus jitter {jitter}")]
    LatencyOverflow {
        /// The requested base latency.
        base_latency: SimDuration,
        /// The requested jitter.
        jitter: SimDuration,
    },
}

/// A validated kind of link: latency, jitter, loss and bandwidth.
///
/// The presets [`LinkProfile::lan`], [`LinkProfile::city`] and [`LinkProfile::flaky`] name
/// the links a simulation usually needs; [`LinkProfile::new`] builds any other.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkProfile {
    params: LinkProfileParams,
}

impl LinkProfile {
    /// Validates `params`: loss must be a finite probability in `[0, 1]`, bandwidth at least
    /// one byte per second, and `base_latency + jitter` must not overflow.
    pub fn new(params: LinkProfileParams) -> Result<Self, LinkProfileError> {
        if !params.loss.is_finite() {
            return Err(LinkProfileError::LossNotFinite(params.loss));
        }
        if !(0.0..=1.0).contains(&params.loss) {
            return Err(LinkProfileError::LossOutOfRange(params.loss));
        }
        if params.bandwidth_bytes_per_sec == 0 {
            return Err(LinkProfileError::ZeroBandwidth);
        }
        if params.base_latency.checked_add(params.jitter).is_none() {
            return Err(LinkProfileError::LatencyOverflow {
                base_latency: params.base_latency,
                jitter: params.jitter,
            });
        }
        Ok(LinkProfile { params })
    }

    /// Two machines on one home network: sub-millisecond, no loss, gigabit.
    pub const fn lan() -> Self {
        LinkProfile {
            params: LinkProfileParams {
                base_latency: SimDuration::from_micros(300),
                jitter: SimDuration::from_micros(200),
                loss: 0.0,
                bandwidth_bytes_per_sec: 125_000_000, // 1 Gbit/s
            },
        }
    }

    /// Two homes on typical broadband across a city: 20 ms plus up to 10 ms of jitter,
    /// 0.5% loss, limited by a 20 Mbit/s home uplink.
    pub const fn city() -> Self {
        LinkProfile {
            params: LinkProfileParams {
                base_latency: SimDuration::from_millis(20),
                jitter: SimDuration::from_millis(10),
                loss: 0.005,
                bandwidth_bytes_per_sec: 2_500_000, // 20 Mbit/s
            },
        }
    }

    /// A bad link (a congested cellular backup, a far Wi-Fi extender): 80 ms plus up to
    /// 150 ms of jitter, 10% loss, a 1 Mbit/s uplink.
    pub const fn flaky() -> Self {
        LinkProfile {
            params: LinkProfileParams {
                base_latency: SimDuration::from_millis(80),
                jitter: SimDuration::from_millis(150),
                loss: 0.10,
                bandwidth_bytes_per_sec: 125_000, // 1 Mbit/s
            },
        }
    }

    /// The validated parameters; copy and change them to derive a variant profile.
    pub const fn params(&self) -> LinkProfileParams {
        self.params
    }

    /// The latency every message pays.
    pub const fn base_latency(&self) -> SimDuration {
        self.params.base_latency
    }

    /// The most extra latency a message may pay.
    pub const fn jitter(&self) -> SimDuration {
        self.params.jitter
    }

    /// The probability that a message is lost.
    pub const fn loss(&self) -> f64 {
        self.params.loss
    }

    /// The sender's bandwidth in bytes per second.
    pub const fn bandwidth_bytes_per_sec(&self) -> u64 {
        self.params.bandwidth_bytes_per_sec
    }

    /// How long putting `bytes` on this link takes, rounded up to a whole microsecond and
    /// clamped at [`SimDuration::MAX`].
    pub fn serialization_delay(&self, bytes: usize) -> SimDuration {
        let bandwidth = u128::from(self.params.bandwidth_bytes_per_sec);
        let micros = (bytes as u128 * MICROS_PER_SEC).div_ceil(bandwidth);
        SimDuration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

/// What the network did with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The message never arrives: dropped at random or across a partition.
    Lost,
    /// The message arrives this long after it was sent.
    Arrives(SimDuration),
}

/// Why [`LinkModel::partition`] refused a set of groups; the model is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartitionError {
    /// A node was listed in two groups; a node belongs to at most one.
    #[error(
        "{node} is listed in partition groups {first_group} and {second_group}; a node belongs to at most one group"
    )]
    NodeInTwoGroups {
        /// The node listed twice.
        node: NodeIndex,
        /// The position of the first group that lists it.
        first_group: usize,
        /// The position of the second group that lists it.
        second_group: usize,
    },
}

/// Which partition group a node is in. Nodes not listed in any group share the group
/// [`PartitionGroup::Rest`], the rest of the city.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartitionGroup {
    Listed(usize),
    Rest,
}

/// The seeded network: decides each message's fate from its profile, the current partition
/// and a ChaCha20 stream.
#[derive(Debug)]
pub struct LinkModel {
    rng: ChaCha20Rng,
    /// `None` when the network is whole; otherwise the listed group of each listed node.
    partition: Option<BTreeMap<NodeIndex, usize>>,
}

impl LinkModel {
    /// A whole (unpartitioned) network whose randomness is fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        LinkModel {
            rng: ChaCha20Rng::seed_from_u64(seed),
            partition: None,
        }
    }

    /// Decides the fate of a `bytes`-long message from `from` to `to` over a `profile` link.
    ///
    /// Lost with probability `profile.loss()`, and always lost when `from` and `to` are in
    /// different partition groups; otherwise it arrives after the base latency, a jitter
    /// drawn uniformly from `0..=profile.jitter()`, and the serialization delay of `bytes`.
    pub fn transit(
        &mut self,
        from: NodeIndex,
        to: NodeIndex,
        profile: &LinkProfile,
        bytes: usize,
    ) -> Delivery {
        // Draw both values unconditionally, in a fixed order: see the module docs.
        let loss_draw = unit_interval(&mut self.rng);
        let jitter_micros = uniform_up_to(&mut self.rng, profile.jitter().as_micros());

        if !self.reachable(from, to) || loss_draw < profile.loss() {
            return Delivery::Lost;
        }
        let latency = profile
            .base_latency()
            .saturating_add(SimDuration::from_micros(jitter_micros))
            .saturating_add(profile.serialization_delay(bytes));
        Delivery::Arrives(latency)
    }

    /// Splits the network: nodes in different `groups` cannot reach each other, and nodes in
    /// no group form one more group, the rest of the city. Replaces any earlier partition.
    ///
    /// Each group is anything that iterates over nodes or node references: an array, a
    /// `Vec`, a slice, a range mapped to [`NodeIndex`].
    pub fn partition<G, N>(&mut self, groups: G) -> Result<(), PartitionError>
    where
        G: IntoIterator,
        G::Item: IntoIterator<Item = N>,
        N: Borrow<NodeIndex>,
    {
        let mut group_of = BTreeMap::new();
        for (group, nodes) in groups.into_iter().enumerate() {
            for node in nodes {
                let node = *node.borrow();
                if let Some(first_group) = group_of.insert(node, group) {
                    if first_group != group {
                        return Err(PartitionError::NodeInTwoGroups {
                            node,
                            first_group,
                            second_group: group,
                        });
                    }
                }
            }
        }
        self.partition = Some(group_of);
        Ok(())
    }

    /// Ends any partition: every node can reach every other again.
    pub fn heal(&mut self) {
        self.partition = None;
    }

    /// Whether a message from `from` can reach `to` under the current partition (ignoring
    /// random loss).
    pub fn reachable(&self, from: NodeIndex, to: NodeIndex) -> bool {
        self.group_of(from) == self.group_of(to)
    }

    fn group_of(&self, node: NodeIndex) -> PartitionGroup {
        match &self.partition {
            None => PartitionGroup::Rest,
            Some(group_of) => match group_of.get(&node) {
                Some(&group) => PartitionGroup::Listed(group),
                None => PartitionGroup::Rest,
            },
        }
    }
}

/// A uniform draw from `[0, 1)` with 53 random bits, the full precision of an `f64`.
fn unit_interval(rng: &mut ChaCha20Rng) -> f64 {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    (rng.next_u64() >> 11) as f64 * SCALE
}

/// A uniform draw from `0..=max` without modulo bias (Lemire's multiply-and-reject). Always
/// consumes at least one value from `rng`, even when `max` is zero.
fn uniform_up_to(rng: &mut ChaCha20Rng, max: u64) -> u64 {
    let Some(range) = max.checked_add(1) else {
        return rng.next_u64();
    };
    let mut product = u128::from(rng.next_u64()) * u128::from(range);
    let mut low = product as u64;
    if low < range {
        let threshold = range.wrapping_neg() % range;
        while low < threshold {
            product = u128::from(rng.next_u64()) * u128::from(range);
            low = product as u64;
        }
    }
    (product >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeIndex = NodeIndex(0);
    const B: NodeIndex = NodeIndex(1);
    const C: NodeIndex = NodeIndex(2);
    const D: NodeIndex = NodeIndex(3);

    fn params() -> LinkProfileParams {
        LinkProfile::city().params()
    }

    #[test]
    fn presets_pass_their_own_validation() {
        for preset in [
            LinkProfile::lan(),
            LinkProfile::city(),
            LinkProfile::flaky(),
        ] {
            assert_eq!(LinkProfile::new(preset.params()), Ok(preset));
        }
    }

    #[test]
    fn loss_outside_zero_to_one_is_rejected() {
        for loss in [-0.01, 1.000_001, 5.0] {
            let result = LinkProfile::new(LinkProfileParams { loss, ..params() });
            assert_eq!(
                result,
                Err(LinkProfileError::LossOutOfRange(loss)),
                "{loss}"
            );
        }
        for loss in [0.0, 1.0] {
            assert!(LinkProfile::new(LinkProfileParams { loss, ..params() }).is_ok());
        }
    }

    #[test]
    fn non_finite_loss_is_rejected() {
        for loss in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let result = LinkProfile::new(LinkProfileParams { loss, ..params() });
            assert!(
                matches!(result, Err(LinkProfileError::LossNotFinite(_))),
                "{loss}: {result:?}"
            );
        }
    }

    #[test]
    fn zero_bandwidth_and_overflowing_latency_are_rejected() {
        let zero = LinkProfileParams {
            bandwidth_bytes_per_sec: 0,
            ..params()
        };
        assert_eq!(LinkProfile::new(zero), Err(LinkProfileError::ZeroBandwidth));
        let overflowing = LinkProfileParams {
            base_latency: SimDuration::MAX,
            jitter: SimDuration::from_micros(1),
            ..params()
        };
        assert!(matches!(
            LinkProfile::new(overflowing),
            Err(LinkProfileError::LatencyOverflow { .. })
        ));
    }

    #[test]
    fn serialization_delay_is_size_over_bandwidth_rounded_up() {
        let profile = LinkProfile::new(LinkProfileParams {
            bandwidth_bytes_per_sec: 1_000_000,
            ..params()
        })
        .unwrap();
        assert_eq!(profile.serialization_delay(0), SimDuration::ZERO);
        assert_eq!(
            profile.serialization_delay(1_500),
            SimDuration::from_micros(1_500)
        );
        let slow = LinkProfile::new(LinkProfileParams {
            bandwidth_bytes_per_sec: 3,
            ..params()
        })
        .unwrap();
        // 1 byte at 3 B/s is 333_333.33 µs, rounded up.
        assert_eq!(
            slow.serialization_delay(1),
            SimDuration::from_micros(333_334)
        );
        let slowest = LinkProfile::new(LinkProfileParams {
            bandwidth_bytes_per_sec: 1,
            ..params()
        })
        .unwrap();
        assert_eq!(slowest.serialization_delay(usize::MAX), SimDuration::MAX);
    }

    #[test]
    fn latency_stays_within_base_plus_jitter_plus_serialization() {
        let profile = LinkProfile::flaky();
        let bytes = 1_200;
        let low = profile.base_latency() + profile.serialization_delay(bytes);
        let high = low + profile.jitter();
        let mut model = LinkModel::new(11);
        let (mut min_seen, mut max_seen) = (SimDuration::MAX, SimDuration::ZERO);
        for _ in 0..20_000 {
            if let Delivery::Arrives(latency) = model.transit(A, B, &profile, bytes) {
                assert!(
                    (low..=high).contains(&latency),
                    "{latency} outside {low}..={high}"
                );
                min_seen = min_seen.min(latency);
                max_seen = max_seen.max(latency);
            }
        }
        // The jitter really is spread over the whole range, not stuck at one end.
        let slack = SimDuration::from_millis(2);
        assert!(min_seen <= low + slack, "min {min_seen} never near {low}");
        assert!(max_seen + slack >= high, "max {max_seen} never near {high}");
    }

    #[test]
    fn zero_loss_never_loses_and_full_loss_always_loses() {
        let mut model = LinkModel::new(3);
        let never = LinkProfile::new(LinkProfileParams {
            loss: 0.0,
            ..params()
        })
        .unwrap();
        let always = LinkProfile::new(LinkProfileParams {
            loss: 1.0,
            ..params()
        })
        .unwrap();
        for _ in 0..10_000 {
            assert_ne!(model.transit(A, B, &never, 100), Delivery::Lost);
            assert_eq!(model.transit(A, B, &always, 100), Delivery::Lost);
        }
    }

    #[test]
    fn zero_jitter_gives_a_constant_latency() {
        let profile = LinkProfile::new(LinkProfileParams {
            jitter: SimDuration::ZERO,
            loss: 0.0,
            ..params()
        })
        .unwrap();
        let expected = profile.base_latency() + profile.serialization_delay(64);
        let mut model = LinkModel::new(5);
        for _ in 0..1_000 {
            assert_eq!(
                model.transit(A, B, &profile, 64),
                Delivery::Arrives(expected)
            );
        }
    }

    #[test]
    fn partition_drops_cross_group_traffic_and_heal_restores_it() {
        let lossless = LinkProfile::lan();
        let mut model = LinkModel::new(9);
        model.partition([[A, B], [C, D]]).unwrap();
        for _ in 0..100 {
            assert_eq!(model.transit(A, C, &lossless, 10), Delivery::Lost);
            assert_eq!(model.transit(D, B, &lossless, 10), Delivery::Lost);
            assert_ne!(model.transit(A, B, &lossless, 10), Delivery::Lost);
            assert_ne!(model.transit(D, C, &lossless, 10), Delivery::Lost);
        }
        model.heal();
        for _ in 0..100 {
            assert_ne!(model.transit(A, C, &lossless, 10), Delivery::Lost);
            assert_ne!(model.transit(D, B, &lossless, 10), Delivery::Lost);
        }
    }

    #[test]
    fn unlisted_nodes_form_the_rest_of_the_city() {
        let mut model = LinkModel::new(0);
        model.partition([[A]]).unwrap();
        assert!(!model.reachable(A, B));
        assert!(!model.reachable(C, A));
        assert!(model.reachable(B, C));
        assert!(model.reachable(A, A));
    }

    #[test]
    fn a_node_in_two_groups_is_refused_and_the_old_partition_stays() {
        let mut model = LinkModel::new(0);
        model.partition([vec![A], vec![B]]).unwrap();
        let refused = model.partition([vec![A, C], vec![D], vec![C]]);
        assert_eq!(
            refused,
            Err(PartitionError::NodeInTwoGroups {
                node: C,
                first_group: 0,
                second_group: 2
            })
        );
        assert!(!model.reachable(A, B), "the earlier partition was replaced");
        // Listing a node twice in the same group is harmless.
        model.partition([vec![A, A], vec![B]]).unwrap();
        assert!(!model.reachable(A, B));
    }

    #[test]
    fn a_partition_does_not_shift_the_randomness_of_other_messages() {
        let profile = LinkProfile::flaky();
        let mut whole = LinkModel::new(21);
        let mut split = LinkModel::new(21);
        split.partition([[A, B]]).unwrap();
        let mut cross_lost = 0;
        for _ in 0..1_000 {
            assert_eq!(
                whole.transit(A, B, &profile, 500),
                split.transit(A, B, &profile, 500)
            );
            whole.transit(A, C, &profile, 500);
            if split.transit(A, C, &profile, 500) == Delivery::Lost {
                cross_lost += 1;
            }
        }
        assert_eq!(cross_lost, 1_000);
    }

    #[test]
    fn uniform_up_to_covers_small_ranges_evenly() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            let draw = uniform_up_to(&mut rng, 3);
            counts[usize::try_from(draw).unwrap()] += 1;
        }
        for count in counts {
            assert!((9_500..10_500).contains(&count), "{counts:?}");
        }
        assert_eq!(uniform_up_to(&mut rng, 0), 0);
        // The full range is allowed too.
        let _ = uniform_up_to(&mut rng, u64::MAX);
    }

    #[test]
    fn unit_interval_stays_in_zero_to_one() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut sum = 0.0;
        for _ in 0..100_000 {
            let draw = unit_interval(&mut rng);
            assert!((0.0..1.0).contains(&draw), "{draw}");
            sum += draw;
        }
        let mean = sum / 100_000.0;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
    }
}
