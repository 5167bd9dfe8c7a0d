//! Time as the protocol sees it: milliseconds since the Unix epoch, passed in by the caller.
//!
//! The protocol crate never reads a clock. Every check that depends on time takes `now` as
//! an argument, which is what lets the node core and the simulator run the same code under
//! simulated time (spec/wire.md#timestamps).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time: whole milliseconds since 1970-01-01T00:00:00Z, UTC, no leap seconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// Builds a timestamp from milliseconds since the Unix epoch.
    pub const fn from_unix_millis(millis: u64) -> Timestamp {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_unix_millis(self) -> u64 {
        self.0
    }

    /// `self + duration`, saturating at the far future rather than wrapping.
    pub fn saturating_add(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_millis(duration)))
    }

    /// `self - duration`, saturating at the epoch.
    pub fn saturating_sub(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_millis(duration)))
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// A duration in whole milliseconds as it travels on the wire, saturating at `u64::MAX`.
pub fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A half-open span of time `[from, to)`, as in "footage from 22:00 to 23:00".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeWindow {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl TimeWindow {
    /// Whether the two half-open windows overlap by more than zero time: a window that only
    /// touches the other (one ends where the other starts) does not, and neither does an
    /// empty one (`from == to`) lying inside the other, since they share no length of time.
    pub fn overlaps(&self, other: &TimeWindow) -> bool {
        self.from.max(other.from) < self.to.min(other.to)
    }

    /// The window's length (zero if reversed).
    pub fn length(&self) -> Duration {
        self.to.duration_since(self.from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = Timestamp::from_unix_millis(u64::MAX - 1);
        assert_eq!(
            t.saturating_add(Duration::from_secs(1)).as_unix_millis(),
            u64::MAX
        );
        assert_eq!(
            Timestamp::from_unix_millis(5).saturating_sub(Duration::from_secs(1)),
            Timestamp::EPOCH
        );
        assert_eq!(Timestamp::EPOCH.duration_since(t), Duration::ZERO);
    }

    #[test]
    fn windows_are_half_open() {
        let w = |a, b| TimeWindow {
            from: Timestamp::from_unix_millis(a),
            to: Timestamp::from_unix_millis(b),
        };
        assert!(w(0, 10).overlaps(&w(9, 20)));
        assert!(!w(0, 10).overlaps(&w(10, 20)));
        assert!(!w(10, 20).overlaps(&w(0, 10)));
        assert!(w(0, 10).overlaps(&w(0, 10)));
        assert!(w(5, 6).overlaps(&w(0, 10)));
    }

    #[test]
    fn an_empty_window_overlaps_nothing() {
        let w = |a, b| TimeWindow {
            from: Timestamp::from_unix_millis(a),
            to: Timestamp::from_unix_millis(b),
        };
        assert!(!w(5, 5).overlaps(&w(0, 10)), "inside, but zero time");
        assert!(!w(0, 10).overlaps(&w(5, 5)));
        assert!(!w(0, 0).overlaps(&w(0, 10)), "at the start");
    }
}
