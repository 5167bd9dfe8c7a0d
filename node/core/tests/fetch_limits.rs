//! Fetch admission (issue #10): fetches are limited per peer and in all, by count and by
//! bytes, before the token is parsed; a fetch over a limit is closed unanswered; and
//! refusals cost the owner's log a bounded number of entries per interval however many
//! there are and however many identities send them, while an honest grantee is served
//! throughout.

mod harness;

use std::time::Duration;

use harness::*;
use porchlight_core::audit::{FetchRefusalCause, RefusedPeers};
use porchlight_core::refusals::{
    MAX_REFUSAL_ENTRIES_PER_INTERVAL, MAX_REFUSAL_KEYS, REFUSAL_INTERVAL,
};
use porchlight_core::{
    AuditEvent, BucketConfig, ByteBudget, FetchLimits, Input, MAX_FETCH_PEERS, NodeConfig, Output,
};
use porchlight_protocol::{
    AgreementPublic, ClipId, ConsentToken, PeerId, RejectCode, RequestId, Signed, Timestamp,
    TokenId,
};

/// A pair whose owner granted the requester clips 1 and 2 for a day, with `limits`.
fn granted(limits: FetchLimits) -> (Pair, Signed<ConsentToken>) {
    let owner = NodeConfig {
        fetch_limits: limits,
        ..NodeConfig::default()
    };
    let mut pair = Pair::new(owner, NodeConfig::default());
    let (request_id, _) = pair.ask_and_prompt();
    pair.owner_do(Input::Approve {
        request_id,
        duration: Duration::from_secs(24 * 3600),
        clips: None,
        retain: false,
    })
    .expect("pending request");
    let token = pair
        .requester_log
        .iter()
        .find_map(|output| match output {
            Output::Granted { token, .. } => Some(token.clone()),
            _ => None,
        })
        .expect("granted");
    pair.take();
    (pair, token)
}

/// One fetch at the pair's time; the owner's outputs.
fn fetch(pair: &mut Pair, from: PeerId, token_bytes: Vec<u8>, clip_id: ClipId) -> Vec<Output> {
    pair.owner
        .handle(
            pair.now,
            Input::FetchAsked {
                from,
                token_bytes,
                clip_id,
            },
        )
        .expect("network input never errs");
    pair.owner.drain()
}

/// The honest grantee fetches `clip_id` and, when served, reports `bytes` sent.
fn grantee_fetches(
    pair: &mut Pair,
    token: &Signed<ConsentToken>,
    clip_id: ClipId,
    bytes: u64,
) -> Vec<Output> {
    let grantee = identity(REQUESTER).peer_id();
    let mut log = fetch(pair, grantee, token.to_bytes(), clip_id);
    if served(&log) {
        pair.owner
            .handle(
                pair.now,
                Input::FetchCompleted {
                    to: grantee,
                    token_id: token.body().token_id,
                    clip_id,
                    bytes,
                },
            )
            .expect("network input never errs");
        log.extend(pair.owner.drain());
    }
    log
}

fn served(log: &[Output]) -> bool {
    log.iter()
        .any(|output| matches!(output, Output::ServeFetch { .. }))
}

fn closed(log: &[Output]) -> bool {
    log.iter()
        .any(|output| matches!(output, Output::CloseFetch { .. }))
        && !log.iter().any(|output| {
            matches!(
                output,
                Output::ServeFetch { .. } | Output::RejectFetch { .. }
            )
        })
}

/// Fires the owner's timer if it is due at the pair's time; the owner's outputs.
fn fire_timer(pair: &mut Pair) -> Vec<Output> {
    if pair.owner.poll_timeout().is_some_and(|at| at <= pair.now) {
        pair.owner
            .handle(pair.now, Input::Timeout)
            .expect("timeouts never err");
    }
    pair.owner.drain()
}

fn stranger(n: u32) -> PeerId {
    let mut bytes = [0xA5; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    PeerId::from_public_key_bytes(bytes)
}

/// A token for clip 1 to `grantee`, validly signed by an owner that is not the pair's.
fn foreign_token(grantee: PeerId, n: u8) -> Vec<u8> {
    let other = identity(8);
    let body = ConsentToken {
        token_id: TokenId::from_bytes([n; 16]),
        request_id: RequestId::from_bytes([n; 32]),
        owner: other.peer_id(),
        grantee,
        grantee_key: AgreementPublic::from_bytes([9; 32]),
        clips: vec![clip(1)],
        not_before: t(0),
        not_after: t(3600),
        retain: false,
    };
    Signed::sign(body, &other).expect("valid token").to_bytes()
}

/// Refusals an audit entry accounts for: 1 for a `FetchRefused`, the count of a summary.
fn refusals_recorded(entries: &[AuditEvent]) -> u64 {
    entries
        .iter()
        .map(|event| match event {
            AuditEvent::FetchRefused { .. } => 1,
            AuditEvent::FetchRefusalsCounted { count, .. } => *count,
            _ => 0,
        })
        .sum()
}

fn events(log: &[Output]) -> Vec<AuditEvent> {
    audit_entries(log)
        .into_iter()
        .map(|entry| entry.event)
        .collect()
}

const CLIP_BYTES: u64 = 15_000_000;

#[test]
fn a_fetch_flood_from_strangers_leaves_the_log_bounded_and_the_grantee_served() {
    let (mut pair, token) = granted(FetchLimits::default());
    let foreign: Vec<Vec<u8>> = (0..50u8)
        .map(|n| foreign_token(stranger(u32::from(n)), n))
        .collect();
    const FLOOD: u32 = 20_000;
    // 5,000 identities, four fetches each, interleaved; half junk bytes, half validly
    // signed tokens of another owner; one every millisecond.
    let mut flood_log = Vec::new();
    let mut honest = 0;
    for i in 0..FLOOD {
        pair.now = pair.now.saturating_add(Duration::from_millis(1));
        let from = stranger(i % 5_000);
        let token_bytes = if i % 2 == 0 {
            vec![i as u8; 1 + (i % 300) as usize]
        } else {
            foreign[(i % 50) as usize].clone()
        };
        let log = fetch(&mut pair, from, token_bytes, clip(1));
        assert!(!served(&log), "a stranger was served: {log:#?}");
        flood_log.extend(log);
        flood_log.extend(fire_timer(&mut pair));
        if i % 500 == 250 {
            let clip_id = clip(1 + (honest % 2) as u8);
            let log = grantee_fetches(&mut pair, &token, clip_id, CLIP_BYTES);
            assert!(
                served(&log),
                "the grantee was not served during the flood: {log:#?}"
            );
            honest += 1;
        }
    }
    assert!(pair.owner.refusal_keys() <= MAX_REFUSAL_KEYS);
    assert!(pair.owner.fetch_limiter_peers() <= MAX_FETCH_PEERS + 1);

    // The interval ends: the counts are written.
    pair.now = pair.now.saturating_add(REFUSAL_INTERVAL);
    flood_log.extend(fire_timer(&mut pair));
    let refusal_entries: Vec<AuditEvent> = events(&flood_log)
        .into_iter()
        .filter(|event| {
            matches!(
                event,
                AuditEvent::FetchRefused { .. } | AuditEvent::FetchRefusalsCounted { .. }
            )
        })
        .collect();
    assert!(
        refusal_entries.len() <= MAX_REFUSAL_ENTRIES_PER_INTERVAL,
        "{} refusal entries for one interval",
        refusal_entries.len()
    );
    assert_eq!(
        events(&flood_log).len(),
        refusal_entries.len(),
        "a stranger's fetch wrote something other than a refusal"
    );
    assert_eq!(
        refusals_recorded(&refusal_entries),
        u64::from(FLOOD),
        "every refusal is accounted for, once"
    );
    assert!(
        refusal_entries.iter().any(|event| matches!(
            event,
            AuditEvent::FetchRefusalsCounted {
                peers: RefusedPeers::Others,
                cause: FetchRefusalCause::OverLimit,
                ..
            }
        )),
        "the flood met the strangers' limit and past the tracked peers"
    );
    assert_eq!(pair.owner.refusal_keys(), 0, "a new interval starts empty");
    assert_eq!(
        pair.owner.poll_timeout().map(|at| at > pair.now),
        Some(true)
    );

    // After the flood the grantee is still served.
    pair.now = pair.now.saturating_add(Duration::from_secs(1));
    let log = grantee_fetches(&mut pair, &token, clip(2), CLIP_BYTES);
    assert!(served(&log), "{log:#?}");
}

#[test]
fn the_byte_budget_refuses_then_refills() {
    let limits = FetchLimits {
        per_peer_bytes: ByteBudget {
            bytes: 100_000_000,
            refill_over: Duration::from_secs(3600),
        },
        ..FetchLimits::default()
    };
    let (mut pair, token) = granted(limits);
    // 60 MB, then 60 MB more: the second clip starts inside the budget and ends 20 MB past it.
    for clip_id in [clip(1), clip(2)] {
        let log = grantee_fetches(&mut pair, &token, clip_id, 60_000_000);
        assert!(served(&log), "{log:#?}");
    }
    let log = grantee_fetches(&mut pair, &token, clip(1), 60_000_000);
    assert!(
        closed(&log),
        "the spent budget closes the fetch unanswered: {log:#?}"
    );
    assert!(
        events(&log).is_empty(),
        "an over-limit close is only counted"
    );
    // 10 minutes refill 16.7 MB: still in debt.
    pair.now = pair.now.saturating_add(Duration::from_secs(600));
    assert!(closed(&grantee_fetches(&mut pair, &token, clip(1), 1)));
    // 15 minutes refill 25 MB: the debt is paid and the grantee is served again.
    pair.now = pair.now.saturating_add(Duration::from_secs(300));
    let log = grantee_fetches(&mut pair, &token, clip(1), 1);
    assert!(served(&log), "{log:#?}");
}

#[test]
fn the_node_byte_budget_refuses_every_peer_then_refills() {
    let limits = FetchLimits {
        global_bytes: ByteBudget {
            bytes: 10_000_000,
            refill_over: Duration::from_secs(100),
        },
        ..FetchLimits::default()
    };
    let (mut pair, token) = granted(limits);
    assert!(served(&grantee_fetches(
        &mut pair,
        &token,
        clip(1),
        10_000_000
    )));
    assert!(closed(&grantee_fetches(&mut pair, &token, clip(2), 1)));
    let log = fetch(&mut pair, stranger(1), vec![0; 4], clip(1));
    assert!(
        closed(&log),
        "a stranger meets the node's budget too: {log:#?}"
    );
    pair.now = pair.now.saturating_add(Duration::from_secs(1));
    assert!(served(&grantee_fetches(&mut pair, &token, clip(2), 1)));
}

#[test]
fn a_peer_over_its_fetch_count_is_closed_unanswered_until_it_refills() {
    let limits = FetchLimits {
        per_peer: BucketConfig {
            burst: 2,
            refill_every: Duration::from_secs(10),
        },
        ..FetchLimits::default()
    };
    let (mut pair, token) = granted(limits);
    for _ in 0..2 {
        assert!(served(&grantee_fetches(&mut pair, &token, clip(1), 1)));
    }
    let log = grantee_fetches(&mut pair, &token, clip(1), 1);
    assert!(closed(&log), "{log:#?}");
    // A stranger's junk over the limit is closed before its token is looked at: no
    // misbehavior report and no reject code tell it anything.
    let junk = |pair: &mut Pair| fetch(pair, stranger(7), vec![0xFF; 9], clip(1));
    for _ in 0..2 {
        assert!(
            junk(&mut pair)
                .iter()
                .any(|o| matches!(o, Output::RejectFetch { .. }))
        );
    }
    let log = junk(&mut pair);
    assert!(closed(&log), "{log:#?}");
    assert!(
        !log.iter()
            .any(|o| matches!(o, Output::PeerMisbehaved { .. }))
    );
    pair.now = pair.now.saturating_add(Duration::from_secs(10));
    assert!(served(&grantee_fetches(&mut pair, &token, clip(1), 1)));
}

#[test]
fn a_revoked_grantee_retrying_is_recorded_once_then_summarized() {
    let (mut pair, token) = granted(FetchLimits::default());
    pair.owner_do(Input::Revoke {
        token_id: token.body().token_id,
    })
    .expect("issued here");
    pair.take();
    let start = pair.now;
    let mut log = Vec::new();
    for _ in 0..5 {
        pair.now = pair.now.saturating_add(Duration::from_secs(1));
        log.extend(grantee_fetches(&mut pair, &token, clip(1), 1));
    }
    let grantee = identity(REQUESTER).peer_id();
    assert_eq!(
        events(&log),
        [AuditEvent::FetchRefused {
            peer: grantee,
            code: RejectCode::Invalid
        }],
        "the first refusal at once, the rest counted"
    );
    assert_eq!(
        log.iter()
            .filter(|o| matches!(o, Output::RejectFetch { .. }))
            .count(),
        5,
        "every attempt is still answered"
    );
    let first = Timestamp::from_unix_millis(start.as_unix_millis() + 1_000);
    // The timer fires other work before the hour is up, but no summary.
    pair.now = first.saturating_add(REFUSAL_INTERVAL - Duration::from_millis(1));
    while pair.owner.poll_timeout().is_some_and(|at| at <= pair.now) {
        assert!(events(&fire_timer(&mut pair)).is_empty());
    }
    pair.now = first.saturating_add(REFUSAL_INTERVAL);
    assert_eq!(
        pair.owner.poll_timeout(),
        Some(pair.now),
        "the hour's end is armed"
    );
    assert_eq!(
        events(&fire_timer(&mut pair)),
        [AuditEvent::FetchRefusalsCounted {
            since: first,
            peers: RefusedPeers::One(grantee),
            cause: FetchRefusalCause::Rejected(RejectCode::Invalid),
            count: 4,
        }]
    );
    // The next interval records its first refusal again.
    let log = grantee_fetches(&mut pair, &token, clip(1), 1);
    assert_eq!(events(&log).len(), 1, "{log:#?}");
}
