//! Which clips a request's window matches: only those overlapping it by more than zero time
//! (both edges), and, while the window reaches into the clip being recorded, the owner's
//! node waits for that clip to be sealed before it matches.

mod harness;

use std::time::Duration;

use harness::*;
use porchlight_core::audit::{AuditEvent, RequestOutcome};
use porchlight_core::{Input, NodeConfig, Output};
use porchlight_protocol::{RequestTarget, TimeWindow, Timestamp};

fn add_clip(pair: &mut Pair, n: u8, start: Timestamp, end: Timestamp) {
    pair.owner_do(Input::ClipAdded {
        clip_id: clip(n),
        camera: "porch".into(),
        start,
        end,
    })
    .expect("adding a clip cannot fail");
}

fn ms(at: Timestamp, delta: i64) -> Timestamp {
    Timestamp::from_unix_millis(at.as_unix_millis().saturating_add_signed(delta))
}

#[test]
fn a_clip_that_only_touches_the_window_or_has_no_length_is_not_offered() {
    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    let window = window();
    // Ends exactly at the window's start, and starts exactly at its end: zero overlap.
    add_clip(&mut pair, 10, ms(window.from, -60_000), window.from);
    add_clip(&mut pair, 11, window.to, ms(window.to, 60_000));
    // One millisecond inside each edge: offered.
    add_clip(&mut pair, 12, ms(window.from, -59_999), ms(window.from, 1));
    add_clip(&mut pair, 13, ms(window.to, -1), ms(window.to, 59_999));
    // No length at all, inside the window: it overlaps by zero time.
    add_clip(
        &mut pair,
        14,
        ms(window.to, -30_000),
        ms(window.to, -30_000),
    );
    let (_, summary) = pair.ask_and_prompt();
    let offered: Vec<_> = summary.matching_clips.iter().map(|c| c.clip_id).collect();
    assert!(
        !offered.contains(&clip(10)),
        "ends at the start: {offered:?}"
    );
    assert!(
        !offered.contains(&clip(11)),
        "starts at the end: {offered:?}"
    );
    assert!(
        offered.contains(&clip(12)),
        "1 ms inside the start: {offered:?}"
    );
    assert!(
        offered.contains(&clip(13)),
        "1 ms inside the end: {offered:?}"
    );
    assert!(!offered.contains(&clip(14)), "zero length: {offered:?}");
}

/// An owner recording live with 60 s clips: the last sealed clip (8) ends 10 s ago, and the
/// clip in progress (9) began then.
fn live_pair() -> Pair {
    let owner = NodeConfig {
        live_clip_length: Some(Duration::from_secs(60)),
        ..NodeConfig::default()
    };
    let mut pair = Pair::new(owner, NodeConfig::default());
    add_clip(&mut pair, 8, t(-70), t(-10));
    pair
}

/// A request for `[from, to)` (seconds from `T0`), sent now.
fn ask_for(pair: &mut Pair, from: i64, to: i64) {
    let target = pair.owner.peer_id();
    pair.requester_do(Input::SendRequest {
        target: RequestTarget::Peer(target),
        window: TimeWindow {
            from: t(from),
            to: t(to),
        },
        reason: "hit and run on Elm Street".into(),
        case_number: None,
        access: Duration::from_secs(3600),
    })
    .expect("valid request");
}

fn outcomes(log: &[Output]) -> Vec<RequestOutcome> {
    audit_entries(log)
        .into_iter()
        .filter_map(|entry| match entry.event {
            AuditEvent::RequestReceived { outcome, .. } => Some(outcome),
            _ => None,
        })
        .collect()
}

#[test]
fn a_request_for_the_last_seconds_waits_for_the_clip_in_progress_then_matches_it() {
    let mut pair = live_pair();
    // Only the clip in progress holds any of it.
    ask_for(&mut pair, -5, 0);
    assert!(prompts(&pair.owner_log).is_empty());
    assert!(
        outcomes(&pair.owner_log).is_empty(),
        "not answered \"no matching clips\" while the clip is being recorded"
    );
    assert_eq!(pair.owner.awaiting_clip().count(), 1);
    // At most one clip length (plus the seal grace) past the window's end.
    let due = pair.owner.poll_timeout().expect("a match timer");
    assert!(due > t(0) && due <= t(62), "{due:?}");

    pair.advance(Duration::from_secs(50));
    add_clip(&mut pair, 9, t(-10), t(50));
    assert!(prompts(&pair.owner_log).is_empty(), "not before the timer");
    pair.advance(Duration::from_secs(12));
    let prompts = prompts(&pair.owner_log);
    assert_eq!(prompts.len(), 1, "{:#?}", pair.owner_log);
    let offered: Vec<_> = prompts[0]
        .1
        .matching_clips
        .iter()
        .map(|c| c.clip_id)
        .collect();
    assert_eq!(offered, vec![clip(9)], "the clip that was in progress");
    assert_eq!(prompts[0].1.received_at, t(0), "received when it arrived");
    assert_eq!(outcomes(&pair.owner_log), vec![RequestOutcome::Prompted]);
    assert_eq!(pair.owner.awaiting_clip().count(), 0);
}

#[test]
fn a_request_that_still_finds_nothing_after_the_wait_is_silent_as_before() {
    let mut pair = live_pair();
    ask_for(&mut pair, -5, 0);
    pair.advance(Duration::from_secs(62));
    assert!(prompts(&pair.owner_log).is_empty());
    assert_eq!(
        outcomes(&pair.owner_log),
        vec![RequestOutcome::NoMatchingClips]
    );
}

#[test]
fn a_window_wholly_in_sealed_footage_or_a_node_not_recording_matches_at_once() {
    let mut pair = live_pair();
    ask_for(&mut pair, -1200, -20);
    assert_eq!(prompts(&pair.owner_log).len(), 1, "sealed footage: no wait");

    let mut pair = Pair::new(NodeConfig::default(), NodeConfig::default());
    ask_for(&mut pair, -30, 0);
    assert_eq!(
        outcomes(&pair.owner_log),
        vec![RequestOutcome::NoMatchingClips],
        "a node that records nothing has nothing in progress"
    );
}

#[test]
fn an_undone_wait_or_match_puts_the_request_back_as_it_was() {
    let mut pair = live_pair();
    let before: Vec<_> = pair.owner.awaiting_clip().copied().collect();
    // The request's step fails to be made durable: undone, it is not awaiting, and the
    // same frame again is no replay.
    pair.requester_do(Input::SendRequest {
        target: RequestTarget::Peer(pair.owner.peer_id()),
        window: TimeWindow {
            from: t(-30),
            to: t(0),
        },
        reason: "hit and run on Elm Street".into(),
        case_number: None,
        access: Duration::from_secs(3600),
    })
    .expect("valid request");
    assert_eq!(pair.owner.awaiting_clip().count(), 1);
    pair.owner.undo_step();
    assert_eq!(
        pair.owner.awaiting_clip().copied().collect::<Vec<_>>(),
        before
    );
    let frame = pair
        .requester_log
        .iter()
        .find_map(|output| match output {
            Output::Send { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .expect("the request frame");
    let from = pair.requester.peer_id();
    pair.owner
        .handle(pair.now, Input::FrameReceived { from, bytes: frame })
        .expect("network input never errs");
    let _ = pair.owner.drain();
    assert_eq!(
        pair.owner.awaiting_clip().count(),
        1,
        "no replay after undo"
    );

    // The match's step fails: undone, the request waits again and matches on retry.
    add_clip(&mut pair, 9, t(-10), t(50));
    pair.now = t(62);
    pair.owner
        .handle(pair.now, Input::Timeout)
        .expect("timeouts never err");
    assert_eq!(prompts(&pair.owner.drain()).len(), 1);
    pair.owner.undo_step();
    assert_eq!(pair.owner.awaiting_clip().count(), 1);
    assert!(pair.owner.pending_requests().next().is_none());
    pair.owner
        .handle(pair.now, Input::Timeout)
        .expect("timeouts never err");
    assert_eq!(prompts(&pair.owner.drain()).len(), 1);
    assert_eq!(pair.owner.awaiting_clip().count(), 0);
}
