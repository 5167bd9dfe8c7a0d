//! What a link profile means in numbers: [`sample_link_profile`] sends many messages through
//! a fresh [`LinkModel`] and summarizes their fates as a [`LinkStats`].
//!
//! This exists so that a researcher can see what `lan`, `city` or `flaky` do to messages
//! before spending a city run on them (the `porchlight-sim link-profile` command is a thin
//! printer over it), and so tests can check that the model converges to what a profile
//! promises. Percentiles use the nearest-rank method on exact sorted samples: no
//! interpolation, no floating point, so the same seed prints the same digits everywhere.
//! Formatting (text or JSON) is the binary's job, not this module's.

use crate::NodeIndex;
use crate::clock::SimDuration;
use crate::link::{Delivery, LinkModel, LinkProfile};

/// The sender in every sampled message. Sampling never partitions, so the choice of nodes
/// does not matter; fixing it keeps the sample sequence identical to a real `transit` call.
const SAMPLE_SENDER: NodeIndex = NodeIndex(0);
/// The receiver in every sampled message.
const SAMPLE_RECEIVER: NodeIndex = NodeIndex(1);

/// The fates of `samples` messages sent over one link profile.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStats {
    /// How many messages were sent.
    pub samples: usize,
    /// How many of them were lost.
    pub lost: usize,
    /// The latency of those that arrived; `None` if none did.
    pub latency: Option<LatencyPercentiles>,
}

impl LinkStats {
    /// The fraction of messages lost, in `[0, 1]`; zero when nothing was sent.
    pub fn loss_rate(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.lost as f64 / self.samples as f64
        }
    }

    /// How many messages arrived.
    pub fn arrived(&self) -> usize {
        self.samples.saturating_sub(self.lost)
    }
}

/// Nearest-rank latency percentiles of the messages that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyPercentiles {
    /// The latency half of the arrived messages beat or matched.
    pub p50: SimDuration,
    /// The latency 90% of the arrived messages beat or matched.
    pub p90: SimDuration,
    /// The latency 99% of the arrived messages beat or matched.
    pub p99: SimDuration,
    /// The slowest arrival.
    pub max: SimDuration,
}

impl LatencyPercentiles {
    /// Summarizes `latencies`, sorting them in place; `None` if there are none.
    pub fn from_unsorted(latencies: &mut [SimDuration]) -> Option<Self> {
        latencies.sort_unstable();
        Some(LatencyPercentiles {
            p50: nearest_rank(latencies, 50)?,
            p90: nearest_rank(latencies, 90)?,
            p99: nearest_rank(latencies, 99)?,
            max: *latencies.last()?,
        })
    }
}

/// The smallest sample such that at least `percent`% of samples are at or below it.
fn nearest_rank(sorted: &[SimDuration], percent: usize) -> Option<SimDuration> {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// Sends `samples` messages of `bytes` bytes through a [`LinkModel`] seeded with `seed` over
/// `profile`, and summarizes what happened. Same arguments, same result, on every machine.
pub fn sample_link_profile(
    profile: &LinkProfile,
    seed: u64,
    samples: usize,
    bytes: usize,
) -> LinkStats {
    let mut model = LinkModel::new(seed);
    let mut latencies = Vec::with_capacity(samples);
    let mut lost = 0;
    for _ in 0..samples {
        match model.transit(SAMPLE_SENDER, SAMPLE_RECEIVER, profile, bytes) {
            Delivery::Lost => lost += 1,
            Delivery::Arrives(latency) => latencies.push(latency),
        }
    }
    LinkStats {
        samples,
        lost,
        latency: LatencyPercentiles::from_unsorted(&mut latencies),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::LinkProfileParams;

    fn micros(values: &[u64]) -> Vec<SimDuration> {
        values
            .iter()
            .copied()
            .map(SimDuration::from_micros)
            .collect()
    }

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred() {
        let mut latencies = micros(&(1..=100).rev().collect::<Vec<_>>());
        let percentiles = LatencyPercentiles::from_unsorted(&mut latencies).unwrap();
        assert_eq!(
            percentiles,
            LatencyPercentiles {
                p50: SimDuration::from_micros(50),
                p90: SimDuration::from_micros(90),
                p99: SimDuration::from_micros(99),
                max: SimDuration::from_micros(100),
            }
        );
    }

    #[test]
    fn percentiles_of_a_single_sample_are_that_sample_and_of_none_are_none() {
        let mut one = micros(&[42]);
        let percentiles = LatencyPercentiles::from_unsorted(&mut one).unwrap();
        assert_eq!(percentiles.p50, SimDuration::from_micros(42));
        assert_eq!(percentiles.max, SimDuration::from_micros(42));
        assert_eq!(LatencyPercentiles::from_unsorted(&mut []), None);
    }

    #[test]
    fn percentiles_on_small_odd_counts_round_up() {
        let mut three = micros(&[30, 10, 20]);
        let percentiles = LatencyPercentiles::from_unsorted(&mut three).unwrap();
        assert_eq!(percentiles.p50, SimDuration::from_micros(20));
        assert_eq!(percentiles.p90, SimDuration::from_micros(30));
    }

    #[test]
    fn a_total_loss_profile_reports_every_message_lost_and_no_latency() {
        let profile = LinkProfile::new(LinkProfileParams {
            loss: 1.0,
            ..LinkProfile::city().params()
        })
        .unwrap();
        let stats = sample_link_profile(&profile, 1, 1_000, 100);
        assert_eq!(stats.lost, 1_000);
        assert_eq!(stats.arrived(), 0);
        assert_eq!(stats.latency, None);
        assert_eq!(stats.loss_rate(), 1.0);
    }

    #[test]
    fn jitter_median_sits_near_the_middle_of_the_range() {
        let profile = LinkProfile::flaky();
        let stats = sample_link_profile(&profile, 4, 100_000, 0);
        let p50 = stats.latency.unwrap().p50.as_micros();
        let middle = profile.base_latency().as_micros() + profile.jitter().as_micros() / 2;
        let tolerance = profile.jitter().as_micros() / 100;
        assert!(p50.abs_diff(middle) <= tolerance, "p50 {p50} vs {middle}");
    }

    #[test]
    fn zero_samples_is_an_empty_report() {
        let stats = sample_link_profile(&LinkProfile::lan(), 0, 0, 0);
        assert_eq!(stats.samples, 0);
        assert_eq!(stats.loss_rate(), 0.0);
        assert_eq!(stats.latency, None);
    }
}
