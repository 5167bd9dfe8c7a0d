//! Fetch refusals, recorded the way misbehaving peers are reported: the first once, then
//! counted, with one summarizing audit entry per peer and cause when the interval ends.
//!
//! Without this every refused fetch was an fsynced audit entry, so anyone who could open a
//! stream could grow the owner's log without bound (issue #10). The first refusal of each
//! (peer, reject code) in an interval still gets its own `FetchRefused` entry: an owner who
//! revoked a token sees at once that the grantee tried again. Everything after it, and every
//! fetch closed by a limit, is only counted here; [`RefusalTally::close`] turns the counts
//! into `FetchRefusalsCounted` entries.
//!
//! Bounded by construction: at most [`MAX_REFUSAL_KEYS`] (peer, cause) keys per interval;
//! refusals past that are summed per cause into one aggregate, so a flood from many
//! identities costs a fixed amount of memory and at most
//! [`MAX_REFUSAL_ENTRIES_PER_INTERVAL`] audit entries per [`REFUSAL_INTERVAL`].

use std::collections::BTreeMap;
use std::time::Duration;

use porchlight_protocol::{PeerId, RejectCode, Timestamp};

use crate::audit::{AuditEvent, FetchRefusalCause, RefusedPeers};

/// How long refusals are counted before they are summarized.
pub const REFUSAL_INTERVAL: Duration = Duration::from_secs(3600);

/// (peer, cause) keys counted one by one in an interval; the rest are summed per cause.
pub const MAX_REFUSAL_KEYS: usize = 64;

/// The causes a refusal can have: the five reject codes and "over a limit".
const CAUSES: usize = 6;

/// The most audit entries fetch refusals write per interval: one `FetchRefused` and one
/// summary per tracked key, and one aggregate summary per cause (134 with the defaults).
pub const MAX_REFUSAL_ENTRIES_PER_INTERVAL: usize = 2 * MAX_REFUSAL_KEYS + CAUSES;

/// Whether a refusal gets its own entry now or is only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tally {
    /// The first of its (peer, reject code) this interval: record a `FetchRefused`.
    First,
    /// Counted, to be summarized when the interval ends.
    Counted,
}

/// A cause as a map key (`RejectCode` has no order of its own).
fn cause_key(cause: FetchRefusalCause) -> u8 {
    match cause {
        FetchRefusalCause::Rejected(code) => code.to_byte(),
        FetchRefusalCause::OverLimit => 0,
    }
}

fn cause_of(key: u8) -> FetchRefusalCause {
    if key == 0 {
        FetchRefusalCause::OverLimit
    } else {
        FetchRefusalCause::Rejected(RejectCode::from_byte(key))
    }
}

/// The refusals of the current interval.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RefusalTally {
    /// When the current interval began: at its first refusal. `None` while nothing is
    /// counted, so an idle node arms no timer.
    since: Option<Timestamp>,
    /// Refusals per tracked (peer, cause) not recorded one by one.
    counts: BTreeMap<(PeerId, u8), u64>,
    /// Refusals of peers past [`MAX_REFUSAL_KEYS`], per cause.
    others: BTreeMap<u8, u64>,
}

impl RefusalTally {
    /// Counts one refusal at `now` (the caller closes a due interval first).
    pub(crate) fn count(
        &mut self,
        peer: PeerId,
        cause: FetchRefusalCause,
        now: Timestamp,
    ) -> Tally {
        self.since.get_or_insert(now);
        let key = (peer, cause_key(cause));
        if let Some(count) = self.counts.get_mut(&key) {
            *count = count.saturating_add(1);
            return Tally::Counted;
        }
        if self.counts.len() >= MAX_REFUSAL_KEYS {
            let count = self.others.entry(key.1).or_insert(0);
            *count = count.saturating_add(1);
            return Tally::Counted;
        }
        match cause {
            FetchRefusalCause::Rejected(_) => {
                self.counts.insert(key, 0);
                Tally::First
            }
            FetchRefusalCause::OverLimit => {
                self.counts.insert(key, 1);
                Tally::Counted
            }
        }
    }

    /// When the current interval ends, if one is open.
    pub(crate) fn closes_at(&self) -> Option<Timestamp> {
        self.since
            .map(|since| since.saturating_add(REFUSAL_INTERVAL))
    }

    /// Whether the current interval has ended by `now`.
    pub(crate) fn is_due(&self, now: Timestamp) -> bool {
        self.closes_at().is_some_and(|at| at <= now)
    }

    /// Ends the interval: one summary event per (peer, cause) with refusals not recorded
    /// one by one, then one per cause for the peers past the key limit. Starts afresh.
    pub(crate) fn close(&mut self) -> Vec<AuditEvent> {
        let Some(since) = self.since.take() else {
            return Vec::new();
        };
        let tracked = std::mem::take(&mut self.counts)
            .into_iter()
            .filter(|&(_, count)| count > 0)
            .map(|((peer, cause), count)| (RefusedPeers::One(peer), cause, count));
        let others = std::mem::take(&mut self.others)
            .into_iter()
            .filter(|&(_, count)| count > 0)
            .map(|(cause, count)| (RefusedPeers::Others, cause, count));
        tracked
            .chain(others)
            .map(|(peers, cause, count)| AuditEvent::FetchRefusalsCounted {
                since,
                peers,
                cause: cause_of(cause),
                count,
            })
            .collect()
    }

    /// (peer, cause) keys held, for the bound's tests.
    pub(crate) fn tracked_keys(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    fn peer(n: u16) -> PeerId {
        let mut bytes = [0; 32];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        PeerId::from_public_key_bytes(bytes)
    }

    const INVALID: FetchRefusalCause = FetchRefusalCause::Rejected(RejectCode::Invalid);

    #[test]
    fn the_first_rejection_is_recorded_and_the_rest_summarized() {
        let mut tally = RefusalTally::default();
        assert_eq!(tally.count(peer(1), INVALID, t(5)), Tally::First);
        assert_eq!(tally.count(peer(1), INVALID, t(6)), Tally::Counted);
        assert_eq!(tally.count(peer(1), INVALID, t(7)), Tally::Counted);
        assert_eq!(
            tally.count(peer(1), FetchRefusalCause::OverLimit, t(8)),
            Tally::Counted,
            "a limited fetch never gets an entry of its own"
        );
        assert_eq!(tally.count(peer(2), INVALID, t(9)), Tally::First);
        assert_eq!(
            tally.closes_at(),
            Some(t(5).saturating_add(REFUSAL_INTERVAL))
        );
        let events = tally.close();
        assert_eq!(
            events,
            [
                AuditEvent::FetchRefusalsCounted {
                    since: t(5),
                    peers: RefusedPeers::One(peer(1)),
                    cause: FetchRefusalCause::OverLimit,
                    count: 1,
                },
                AuditEvent::FetchRefusalsCounted {
                    since: t(5),
                    peers: RefusedPeers::One(peer(1)),
                    cause: INVALID,
                    count: 2,
                },
            ],
            "peer 2's only refusal was recorded on its own"
        );
        assert_eq!(tally.closes_at(), None, "an idle tally arms no timer");
        assert_eq!(tally.count(peer(1), INVALID, t(10)), Tally::First);
    }

    #[test]
    fn keys_past_the_limit_fold_into_one_count_per_cause() {
        let mut tally = RefusalTally::default();
        for n in 0..10_000 {
            tally.count(peer(n), INVALID, t(0));
            tally.count(peer(n), FetchRefusalCause::OverLimit, t(0));
        }
        assert_eq!(tally.tracked_keys(), MAX_REFUSAL_KEYS);
        let events = tally.close();
        assert!(events.len() <= MAX_REFUSAL_KEYS + CAUSES);
        let others: Vec<_> = events
            .iter()
            .filter_map(|event| match event {
                AuditEvent::FetchRefusalsCounted {
                    peers: RefusedPeers::Others,
                    cause,
                    count,
                    ..
                } => Some((*cause, *count)),
                _ => None,
            })
            .collect();
        let folded = 2 * 10_000 - MAX_REFUSAL_KEYS as u64;
        assert_eq!(others.iter().map(|(_, count)| count).sum::<u64>(), folded);
        assert_eq!(others.len(), 2);
    }
}
