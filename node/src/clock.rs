//! The one place the node reads the wall clock.
//!
//! The protocol and the node core take time as an argument; the shell turns the system clock
//! into a protocol [`Timestamp`] here, so a clock before 1970 is an error, not a panic.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use porchlight_protocol::Timestamp;
use porchlight_protocol::time::duration_millis;

/// The current wall-clock time.
pub fn now() -> anyhow::Result<Timestamp> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is set before 1970; set the date and try again")?;
    Ok(Timestamp::from_unix_millis(duration_millis(since_epoch)))
}
