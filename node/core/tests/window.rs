//! Which clips a request's window matches: only those overlapping it by more than zero time
//! (both edges), and, while the window reaches into the clip being recorded, the owner's
//! node waits for that clip to be sealed before it matches.

mod harness;

use std::time::Duration;

use harness::*;
use porchlight_core::{Input, NodeConfig};
use porchlight_protocol::Timestamp;

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
    add_clip(&mut pair, 14, ms(window.to, -30_000), ms(window.to, -30_000));
    let (_, summary) = pair.ask_and_prompt();
    let offered: Vec<_> = summary.matching_clips.iter().map(|c| c.clip_id).collect();
    assert!(!offered.contains(&clip(10)), "ends at the start: {offered:?}");
    assert!(!offered.contains(&clip(11)), "starts at the end: {offered:?}");
    assert!(offered.contains(&clip(12)), "1 ms inside the start: {offered:?}");
    assert!(offered.contains(&clip(13)), "1 ms inside the end: {offered:?}");
    assert!(!offered.contains(&clip(14)), "zero length: {offered:?}");
}
