//! The one place the node reads the wall clock, and converts between system time and the
//! protocol's [`Timestamp`].
//!
//! The protocol and the node core take time as an argument; the shell turns the system clock
//! into a protocol [`Timestamp`] here, so a clock before 1970 is an error, not a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use porchlight_protocol::Timestamp;
use porchlight_protocol::time::duration_millis;

/// The current wall-clock time.
pub fn now() -> anyhow::Result<Timestamp> {
    timestamp_of(SystemTime::now())
        .context("the system clock is set before 1970; set the date and try again")
}

/// A system time as a protocol timestamp; `None` before 1970.
pub fn timestamp_of(time: SystemTime) -> Option<Timestamp> {
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    Some(Timestamp::from_unix_millis(duration_millis(since_epoch)))
}

/// A protocol timestamp as a system time.
pub fn system_time_of(at: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(at.as_unix_millis())
}

/// The tokio instant at which the wall clock, reading `now`, will read `at`: a deadline for
/// a wall-clock time, taken once (later clock steps do not move it). `at` already past is
/// now.
pub fn deadline_of(now: Timestamp, at: Timestamp) -> tokio::time::Instant {
    // Capped so that no timestamp can overflow the instant; tokens last at most 30 days.
    const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let wait = Duration::from_millis(at.as_unix_millis().saturating_sub(now.as_unix_millis()));
    tokio::time::Instant::now() + wait.min(FAR)
}
