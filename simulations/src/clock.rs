//! Simulated time: [`SimTime`], an instant, and [`SimDuration`], a span between instants.
//!
//! Both are whole microseconds in a `u64`, counted from the start of the simulation, so a run
//! spans about 584,000 simulated years before overflow and every value compares, hashes and
//! prints the same on every machine (no floating point, no OS clock).
//!
//! Time never goes backwards: there is deliberately no way to subtract a duration from a
//! [`SimTime`], and the [`EventQueue`](crate::EventQueue) refuses to schedule an event before
//! the last instant it handed out. These types are the simulator's own; the node core owns
//! its `Time` type and the simulator converts at the boundary.

use std::fmt;
use std::ops::{Add, AddAssign};

const MICROS_PER_MILLI: u64 = 1_000;
const MICROS_PER_SEC: u64 = 1_000_000;

/// An instant in simulated time: microseconds since the simulation started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimTime(u64);

impl SimTime {
    /// The instant the simulation starts.
    pub const ZERO: SimTime = SimTime(0);

    /// The instant `micros` microseconds after the simulation started.
    pub const fn from_micros(micros: u64) -> Self {
        SimTime(micros)
    }

    /// Microseconds since the simulation started.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// `self + duration`, or `None` if that is past the last representable instant.
    pub const fn checked_add(self, duration: SimDuration) -> Option<SimTime> {
        match self.0.checked_add(duration.0) {
            Some(micros) => Some(SimTime(micros)),
            None => None,
        }
    }

    /// How long after `earlier` this instant is, or `None` if `earlier` is actually later.
    pub const fn checked_duration_since(self, earlier: SimTime) -> Option<SimDuration> {
        match self.0.checked_sub(earlier.0) {
            Some(micros) => Some(SimDuration(micros)),
            None => None,
        }
    }

    /// How long after `earlier` this instant is, or zero if `earlier` is actually later.
    pub const fn saturating_duration_since(self, earlier: SimTime) -> SimDuration {
        SimDuration(self.0.saturating_sub(earlier.0))
    }
}

impl Add<SimDuration> for SimTime {
    type Output = SimTime;

    /// # Panics
    ///
    /// If the sum overflows (after about 584,000 simulated years). Use
    /// [`SimTime::checked_add`] where the duration comes from outside the simulator.
    fn add(self, duration: SimDuration) -> SimTime {
        self.checked_add(duration)
            .expect("simulated time overflowed u64 microseconds; use SimTime::checked_add")
    }
}

impl AddAssign<SimDuration> for SimTime {
    fn add_assign(&mut self, duration: SimDuration) {
        *self = *self + duration;
    }
}

/// Prints as seconds with microsecond precision, e.g. `12.000345s`.
impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}s",
            self.0 / MICROS_PER_SEC,
            self.0 % MICROS_PER_SEC
        )
    }
}

/// A span of simulated time in whole microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimDuration(u64);

impl SimDuration {
    /// No time at all.
    pub const ZERO: SimDuration = SimDuration(0);
    /// The longest representable span.
    pub const MAX: SimDuration = SimDuration(u64::MAX);

    /// A span of `micros` microseconds.
    pub const fn from_micros(micros: u64) -> Self {
        SimDuration(micros)
    }

    /// A span of `millis` milliseconds, saturating at [`SimDuration::MAX`].
    pub const fn from_millis(millis: u64) -> Self {
        SimDuration(millis.saturating_mul(MICROS_PER_MILLI))
    }

    /// A span of `secs` seconds, saturating at [`SimDuration::MAX`].
    pub const fn from_secs(secs: u64) -> Self {
        SimDuration(secs.saturating_mul(MICROS_PER_SEC))
    }

    /// The span in whole microseconds.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// The span in seconds, for reports; never feed this back into the simulation.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / MICROS_PER_SEC as f64
    }

    /// `self + other`, or `None` on overflow.
    pub const fn checked_add(self, other: SimDuration) -> Option<SimDuration> {
        match self.0.checked_add(other.0) {
            Some(micros) => Some(SimDuration(micros)),
            None => None,
        }
    }

    /// `self + other`, clamped at [`SimDuration::MAX`].
    pub const fn saturating_add(self, other: SimDuration) -> SimDuration {
        SimDuration(self.0.saturating_add(other.0))
    }
}

impl Add for SimDuration {
    type Output = SimDuration;

    /// # Panics
    ///
    /// If the sum overflows `u64` microseconds. Use [`SimDuration::checked_add`] or
    /// [`SimDuration::saturating_add`] where the operands come from outside the simulator.
    fn add(self, other: SimDuration) -> SimDuration {
        self.checked_add(other)
            .expect("simulated duration overflowed u64 microseconds; use checked_add")
    }
}

/// Prints as milliseconds with microsecond precision, e.g. `20.125ms`.
impl fmt::Display for SimDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:03}ms",
            self.0 / MICROS_PER_MILLI,
            self.0 % MICROS_PER_MILLI
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_duration_moves_time_forward_by_exactly_that_much() {
        let start = SimTime::from_micros(1_500);
        let later = start + SimDuration::from_millis(2);
        assert_eq!(later.as_micros(), 3_500);
        assert_eq!(
            later.checked_duration_since(start),
            Some(SimDuration::from_micros(2_000))
        );
        let mut moving = start;
        moving += SimDuration::from_micros(1);
        assert_eq!(moving, SimTime::from_micros(1_501));
    }

    #[test]
    fn checked_add_reports_overflow_instead_of_wrapping() {
        let near_end = SimTime::from_micros(u64::MAX - 1);
        assert_eq!(
            near_end.checked_add(SimDuration::from_micros(1)),
            Some(SimTime::from_micros(u64::MAX))
        );
        assert_eq!(near_end.checked_add(SimDuration::from_micros(2)), None);
        assert_eq!(
            SimDuration::MAX.checked_add(SimDuration::from_micros(1)),
            None
        );
        assert_eq!(
            SimDuration::MAX.saturating_add(SimDuration::from_micros(1)),
            SimDuration::MAX
        );
    }

    #[test]
    #[should_panic(expected = "simulated time overflowed")]
    fn add_panics_on_overflow_rather_than_wrapping_to_the_past() {
        let _ = SimTime::from_micros(u64::MAX) + SimDuration::from_micros(1);
    }

    #[test]
    fn duration_since_a_later_instant_is_refused_or_zero() {
        let early = SimTime::from_micros(10);
        let late = SimTime::from_micros(25);
        assert_eq!(early.checked_duration_since(late), None);
        assert_eq!(early.saturating_duration_since(late), SimDuration::ZERO);
        assert_eq!(
            late.saturating_duration_since(early),
            SimDuration::from_micros(15)
        );
    }

    #[test]
    fn unit_constructors_saturate_instead_of_overflowing() {
        assert_eq!(SimDuration::from_secs(3).as_micros(), 3_000_000);
        assert_eq!(SimDuration::from_millis(7).as_micros(), 7_000);
        assert_eq!(SimDuration::from_secs(u64::MAX), SimDuration::MAX);
        assert_eq!(SimDuration::from_millis(u64::MAX), SimDuration::MAX);
    }

    #[test]
    fn display_is_exact_and_zero_padded() {
        assert_eq!(SimTime::from_micros(12_000_345).to_string(), "12.000345s");
        assert_eq!(SimTime::ZERO.to_string(), "0.000000s");
        assert_eq!(SimDuration::from_micros(20_125).to_string(), "20.125ms");
        assert_eq!(SimDuration::from_micros(7).to_string(), "0.007ms");
    }
}
