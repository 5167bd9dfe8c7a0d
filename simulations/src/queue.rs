//! The simulator's agenda: [`EventQueue`], every future event in the order it will happen.
//!
//! Events are keyed by `(SimTime, seq)`, where `seq` counts insertions. Two events due at the
//! same instant therefore pop in the order they were scheduled, never in whatever order a
//! binary heap happens to leave them, which is what makes a run with a given seed replay
//! byte for byte.
//!
//! The queue is also the simulator's clock: the time of the last popped event is "now", and
//! scheduling anything earlier than now is refused with [`ScheduleError::InThePast`] rather
//! than silently reordering history. A refusal is the caller's bug, reported as a value so
//! that a simulation can print its seed and stop cleanly.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::clock::{SimDuration, SimTime};

/// Why [`EventQueue`] refused to schedule an event. Both mean the caller broke the rule that
/// simulated time only moves forward; the queue is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The event was due before the time of the last event popped from the queue.
    #[error(
        "cannot schedule an event at {at}: the simulation has already reached {now} and time never goes backwards"
    )]
    InThePast {
        /// When the refused event was due.
        at: SimTime,
        /// The queue's current time: the time of the last popped event.
        now: SimTime,
    },
    /// `now + delay` is past the last representable instant.
    #[error("cannot schedule an event {delay} after {now}: simulated time would overflow")]
    TimeOverflow {
        /// The queue's current time.
        now: SimTime,
        /// The requested delay.
        delay: SimDuration,
    },
}

/// A min-heap of events keyed by `(time, insertion order)`.
///
/// `pop` always returns the earliest event; among events due at the same instant, the one
/// scheduled first. Popping advances [`EventQueue::now`], and nothing can be scheduled
/// before it.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Scheduled<E>>,
    next_seq: u64,
    now: SimTime,
}

impl<E> EventQueue<E> {
    /// An empty queue whose time is [`SimTime::ZERO`].
    pub fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            next_seq: 0,
            now: SimTime::ZERO,
        }
    }

    /// The time of the last popped event ([`SimTime::ZERO`] before the first pop).
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Schedules `event` to happen at `at`, which may equal [`EventQueue::now`] but not
    /// precede it.
    pub fn schedule(&mut self, at: SimTime, event: E) -> Result<(), ScheduleError> {
        if at < self.now {
            return Err(ScheduleError::InThePast { at, now: self.now });
        }
        let seq = self.next_seq;
        // 2^64 insertions would take centuries at a billion per second.
        self.next_seq = seq
            .checked_add(1)
            .expect("event sequence counter exhausted after 2^64 insertions");
        self.heap.push(Scheduled { at, seq, event });
        Ok(())
    }

    /// Schedules `event` to happen `delay` after [`EventQueue::now`].
    pub fn schedule_after(&mut self, delay: SimDuration, event: E) -> Result<(), ScheduleError> {
        let at = self
            .now
            .checked_add(delay)
            .ok_or(ScheduleError::TimeOverflow {
                now: self.now,
                delay,
            })?;
        self.schedule(at, event)
    }

    /// Removes and returns the earliest event with its time, advancing
    /// [`EventQueue::now`] to that time; `None` when nothing is left.
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let Scheduled { at, event, .. } = self.heap.pop()?;
        debug_assert!(at >= self.now, "schedule() admitted an event in the past");
        self.now = at;
        Some((at, event))
    }

    /// When the next event is due, without removing it.
    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|scheduled| scheduled.at)
    }

    /// How many events are waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no events are waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

/// One heap entry. Ordered by `(at, seq)` alone, reversed, so that the standard max-heap
/// pops the earliest entry; `seq` is unique, so no two entries compare equal.
#[derive(Debug)]
struct Scheduled<E> {
    at: SimTime,
    seq: u64,
    event: E,
}

impl<E> Scheduled<E> {
    fn key(&self) -> (SimTime, u64) {
        (self.at, self.seq)
    }
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(micros: u64) -> SimTime {
        SimTime::from_micros(micros)
    }

    fn drain<E>(queue: &mut EventQueue<E>) -> Vec<(SimTime, E)> {
        std::iter::from_fn(|| queue.pop()).collect()
    }

    #[test]
    fn pops_earliest_first_regardless_of_insertion_order() {
        let mut queue = EventQueue::new();
        queue.schedule(at(30), "c").unwrap();
        queue.schedule(at(10), "a").unwrap();
        queue.schedule(at(20), "b").unwrap();
        assert_eq!(
            drain(&mut queue),
            vec![(at(10), "a"), (at(20), "b"), (at(30), "c")]
        );
    }

    #[test]
    fn ties_pop_in_insertion_order() {
        let mut queue = EventQueue::new();
        let names = ["first", "second", "third", "fourth", "fifth", "sixth"];
        for name in names {
            queue.schedule(at(5), name).unwrap();
        }
        queue.schedule(at(1), "earlier").unwrap();
        let popped: Vec<_> = drain(&mut queue).into_iter().map(|(_, e)| e).collect();
        let mut expected = vec!["earlier"];
        expected.extend(names);
        assert_eq!(popped, expected);
    }

    #[test]
    fn scheduling_into_the_past_is_refused_and_changes_nothing() {
        let mut queue = EventQueue::new();
        queue.schedule(at(100), 1).unwrap();
        queue.schedule(at(200), 2).unwrap();
        assert_eq!(queue.pop(), Some((at(100), 1)));
        assert_eq!(queue.now(), at(100));

        let refused = queue.schedule(at(99), 3);
        assert_eq!(
            refused,
            Err(ScheduleError::InThePast {
                at: at(99),
                now: at(100)
            })
        );
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.peek_time(), Some(at(200)));
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("time never goes backwards")
        );
    }

    #[test]
    fn scheduling_at_the_current_instant_is_allowed_and_pops_after_earlier_ties() {
        let mut queue = EventQueue::new();
        queue.schedule(at(50), "popped").unwrap();
        queue.schedule(at(50), "already waiting").unwrap();
        assert_eq!(queue.pop(), Some((at(50), "popped")));
        queue.schedule(at(50), "scheduled now").unwrap();
        assert_eq!(
            drain(&mut queue),
            vec![(at(50), "already waiting"), (at(50), "scheduled now")]
        );
    }

    #[test]
    fn schedule_after_is_relative_to_now_and_reports_overflow() {
        let mut queue = EventQueue::new();
        queue.schedule(at(1_000), "tick").unwrap();
        queue.pop().unwrap();
        queue
            .schedule_after(SimDuration::from_micros(250), "tock")
            .unwrap();
        assert_eq!(queue.peek_time(), Some(at(1_250)));
        assert_eq!(
            queue.schedule_after(SimDuration::MAX, "never"),
            Err(ScheduleError::TimeOverflow {
                now: at(1_000),
                delay: SimDuration::MAX
            })
        );
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn len_peek_and_is_empty_track_the_contents() {
        let mut queue = EventQueue::default();
        assert!(queue.is_empty());
        assert_eq!(queue.len(), 0);
        assert_eq!(queue.peek_time(), None);
        assert_eq!(queue.pop(), None);
        queue.schedule(at(7), ()).unwrap();
        queue.schedule(at(3), ()).unwrap();
        assert!(!queue.is_empty());
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.peek_time(), Some(at(3)));
        queue.pop().unwrap();
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.peek_time(), Some(at(7)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Schedule an event this many microseconds after the queue's current time.
        ScheduleAfter(u64),
        /// Schedule an event this many microseconds before the queue's current time.
        ScheduleBefore(u64),
        Pop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..20).prop_map(Op::ScheduleAfter),
            1 => (1u64..20).prop_map(Op::ScheduleBefore),
            2 => Just(Op::Pop),
        ]
    }

    proptest! {
        /// Against a naive reference (a list searched for the smallest `(time, id)`), the heap
        /// pops the same events in the same order, refuses exactly the past events, and its
        /// clock never goes backwards.
        #[test]
        fn matches_a_naive_reference_and_never_goes_backwards(
            ops in proptest::collection::vec(op(), 0..200)
        ) {
            let mut queue = EventQueue::new();
            let mut reference: Vec<(SimTime, u64)> = Vec::new();
            let mut next_id = 0u64;
            let mut last_popped = SimTime::ZERO;
            for op in ops {
                match op {
                    Op::ScheduleAfter(offset) => {
                        let due = SimTime::from_micros(queue.now().as_micros() + offset);
                        prop_assert_eq!(queue.schedule(due, next_id), Ok(()));
                        reference.push((due, next_id));
                        next_id += 1;
                    }
                    Op::ScheduleBefore(offset) => {
                        let Some(due) = queue.now().as_micros().checked_sub(offset) else {
                            continue;
                        };
                        let due = SimTime::from_micros(due);
                        let refused = queue.schedule(due, next_id);
                        prop_assert_eq!(
                            refused,
                            Err(ScheduleError::InThePast { at: due, now: queue.now() })
                        );
                    }
                    Op::Pop => {
                        let expected = reference
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, entry)| **entry)
                            .map(|(index, _)| index)
                            .map(|index| reference.remove(index));
                        let popped = queue.pop();
                        prop_assert_eq!(popped, expected);
                        if let Some((time, _)) = popped {
                            prop_assert!(time >= last_popped);
                            last_popped = time;
                        }
                    }
                }
                prop_assert_eq!(queue.len(), reference.len());
            }
        }
    }
}
