//! Determinism and convergence of the simulator's building blocks, through the public API
//! only: the same seed replays byte for byte, a different seed does not, the link model's
//! loss converges to what its profile promises, and partitions cut exactly the traffic they
//! should. Every assertion names its seed so a failure can be replayed.

use std::fmt::Write as _;

use porchlight_sim::{
    Delivery, EventQueue, LinkModel, LinkProfile, LinkProfileParams, NodeIndex, SimTime,
    sample_link_profile,
};

fn presets() -> [(&'static str, LinkProfile); 3] {
    [
        ("lan", LinkProfile::lan()),
        ("city", LinkProfile::city()),
        ("flaky", LinkProfile::flaky()),
    ]
}

/// The fates of a fixed script of messages, varying sender, receiver and size, with a
/// partition raised and healed partway through.
fn transit_script(seed: u64, profile: &LinkProfile) -> Vec<Delivery> {
    let mut model = LinkModel::new(seed);
    let mut fates = Vec::new();
    for step in 0..10_000u32 {
        if step == 3_000 {
            model
                .partition([[NodeIndex(0), NodeIndex(1)]])
                .expect("one group cannot overlap itself");
        }
        if step == 6_000 {
            model.heal();
        }
        let from = NodeIndex(step % 4);
        let to = NodeIndex((step / 4) % 4);
        let bytes = usize::try_from(step % 1_500).expect("fits");
        fates.push(model.transit(from, to, profile, bytes));
    }
    fates
}

#[test]
fn same_seed_gives_an_identical_sample_sequence() {
    for (name, profile) in presets() {
        for seed in [0, 7, u64::MAX] {
            assert_eq!(
                transit_script(seed, &profile),
                transit_script(seed, &profile),
                "profile {name}, seed {seed}: two runs diverged"
            );
        }
    }
}

#[test]
fn different_seeds_give_different_sample_sequences() {
    for (name, profile) in presets() {
        let first = transit_script(7, &profile);
        let second = transit_script(8, &profile);
        let differing = first.iter().zip(&second).filter(|(a, b)| a != b).count();
        // Jitter alone makes nearly every arrival differ; demand most of them do.
        assert!(
            differing > first.len() / 2,
            "profile {name}, seeds 7 and 8: only {differing} of {} fates differ",
            first.len()
        );
    }
}

#[test]
fn loss_rate_converges_to_the_profile_over_100k_samples() {
    const SAMPLES: usize = 100_000;
    let custom = LinkProfile::new(LinkProfileParams {
        loss: 0.3,
        ..LinkProfile::city().params()
    })
    .expect("0.3 is a valid loss");
    let mut cases = presets().to_vec();
    cases.push(("city with 30% loss", custom));
    for (name, profile) in cases {
        for seed in [1, 2, 3] {
            let stats = sample_link_profile(&profile, seed, SAMPLES, 1_200);
            let expected = profile.loss();
            // Five standard deviations of a binomial proportion: a correct model fails this
            // about once in 1.7 million seeds; a model off by a tenth of the rate fails it.
            let sigma = (expected * (1.0 - expected) / SAMPLES as f64).sqrt();
            let tolerance = 5.0 * sigma;
            let measured = stats.loss_rate();
            assert!(
                (measured - expected).abs() <= tolerance,
                "profile {name}, seed {seed}: loss rate {measured} is not within {tolerance} of {expected}"
            );
            assert_eq!(stats.samples, SAMPLES);
        }
    }
}

#[test]
fn sampling_a_profile_is_reproducible() {
    for (name, profile) in presets() {
        let first = sample_link_profile(&profile, 42, 20_000, 800);
        let second = sample_link_profile(&profile, 42, 20_000, 800);
        assert_eq!(first, second, "profile {name}, seed 42");
    }
}

#[test]
fn partition_drops_cross_group_traffic_and_heal_restores_it() {
    let lossless = LinkProfile::new(LinkProfileParams {
        loss: 0.0,
        ..LinkProfile::flaky().params()
    })
    .expect("zero loss is valid");
    let north = [NodeIndex(0), NodeIndex(1), NodeIndex(2)];
    let south = [NodeIndex(3), NodeIndex(4)];
    let seed = 99;
    let mut model = LinkModel::new(seed);
    model
        .partition([&north[..], &south[..]])
        .expect("groups are disjoint");
    for from in north {
        for to in south {
            assert_eq!(
                model.transit(from, to, &lossless, 100),
                Delivery::Lost,
                "seed {seed}: {from} reached {to} across the partition"
            );
            assert_eq!(model.transit(to, from, &lossless, 100), Delivery::Lost);
        }
        for to in north {
            assert_ne!(
                model.transit(from, to, &lossless, 100),
                Delivery::Lost,
                "seed {seed}: {from} could not reach {to} inside its group"
            );
        }
    }
    model.heal();
    for from in north {
        for to in south {
            assert_ne!(
                model.transit(from, to, &lossless, 100),
                Delivery::Lost,
                "seed {seed}: {from} still cannot reach {to} after heal"
            );
        }
    }
}

/// A rumor flooding a small city: the shape of the later simulator loop (pop the earliest
/// event, act on it, schedule each send through the link model), rendered as a text trace.
fn flood_trace(seed: u64, partitioned: bool) -> (String, usize) {
    const HOMES: u32 = 12;
    let profile = LinkProfile::city();
    let mut links = LinkModel::new(seed);
    if partitioned {
        links
            .partition([(0..HOMES / 2).map(NodeIndex)])
            .expect("a single group cannot overlap");
    }
    let mut queue = EventQueue::new();
    let mut heard = vec![false; HOMES as usize];
    let mut trace = String::new();
    queue
        .schedule(SimTime::ZERO, (NodeIndex(0), NodeIndex(0)))
        .expect("the queue starts at zero");
    while let Some((now, (from, to))) = queue.pop() {
        let index = usize::try_from(to.0).expect("fits");
        writeln!(trace, "{now} {to} <- {from}").expect("writing to a String cannot fail");
        if heard[index] {
            continue;
        }
        heard[index] = true;
        for neighbor in (0..HOMES).map(NodeIndex).filter(|&n| n != to) {
            match links.transit(to, neighbor, &profile, 600) {
                Delivery::Lost => {
                    writeln!(trace, "{now} {to} -> {neighbor} lost").expect("infallible");
                }
                Delivery::Arrives(latency) => queue
                    .schedule(now + latency, (to, neighbor))
                    .expect("a delivery is never in the past"),
            }
        }
    }
    (trace, heard.iter().filter(|&&h| h).count())
}

#[test]
fn same_seed_gives_a_byte_identical_trace() {
    for seed in [0, 1, 2024] {
        let (first, _) = flood_trace(seed, false);
        let (second, _) = flood_trace(seed, false);
        assert!(first.lines().count() > 100, "seed {seed}: trace too short");
        assert_eq!(first, second, "seed {seed}: traces differ");
    }
    assert_ne!(flood_trace(1, false).0, flood_trace(2, false).0);
}

#[test]
fn a_partitioned_flood_reaches_only_its_own_half_of_the_city() {
    let seed = 5;
    let (_, reached_whole) = flood_trace(seed, false);
    let (_, reached_split) = flood_trace(seed, true);
    assert_eq!(reached_whole, 12, "seed {seed}");
    assert_eq!(reached_split, 6, "seed {seed}");
}
