//! The node's health as its owner sees it in `porchlight status`: which of the writes the
//! consent promise rests on is failing, since when, and why.
//!
//! The driver is the only writer: it marks a component failing when a step could not be
//! made durable (and so was not taken), and clears it once a write there succeeds again.
//! The API reads a snapshot. The node keeps running while degraded, because refusing is
//! safe: a step that cannot be recorded releases nothing, so a full disk stops grants and
//! fetches, never the promise.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use porchlight_protocol::Timestamp;

/// A durable write the consent promise depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// `audit.log`: no step is taken that cannot be recorded.
    AuditLog,
    /// `consent-state.json`: no step is taken that a restart would forget.
    ConsentState,
}

impl Component {
    /// How the owner reads it.
    pub fn label(self) -> &'static str {
        match self {
            Component::AuditLog => "audit log",
            Component::ConsentState => "consent state",
        }
    }
}

/// A failing component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first failure since the component was last healthy.
    pub since: Timestamp,
    /// The latest failure and its error, in the node's words.
    pub last_failure: Timestamp,
    pub error: String,
    /// Failed writes since `since`.
    pub failures: u64,
}

/// Shared between the driver (which writes) and the API (which reads).
#[derive(Debug, Clone, Default)]
pub struct Health {
    problems: Arc<Mutex<BTreeMap<Component, Problem>>>,
}

impl Health {
    /// Notes a failed write; `true` if the component was healthy until now.
    pub fn failed(&self, component: Component, at: Timestamp, error: String) -> bool {
        let mut problems = self.lock();
        match problems.get_mut(&component) {
            Some(problem) => {
                problem.last_failure = at;
                problem.error = error;
                problem.failures += 1;
                false
            }
            None => {
                problems.insert(
                    component,
                    Problem {
                        since: at,
                        last_failure: at,
                        error,
                        failures: 1,
                    },
                );
                true
            }
        }
    }

    /// Notes that writes succeed again; returns what was failing, if anything.
    pub fn recovered(&self, component: Component) -> Option<Problem> {
        self.lock().remove(&component)
    }

    pub fn is_degraded(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Every failing component, in a fixed order.
    pub fn problems(&self) -> Vec<(Component, Problem)> {
        self.lock()
            .iter()
            .map(|(component, problem)| (*component, problem.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Component, Problem>> {
        // A panic elsewhere while holding the lock leaves a map that is still whole.
        self.problems.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    #[test]
    fn a_failure_is_kept_with_its_first_time_until_the_component_recovers() {
        let health = Health::default();
        assert!(!health.is_degraded());
        assert!(health.failed(Component::AuditLog, t(1), "full".into()));
        assert!(!health.failed(Component::AuditLog, t(5), "still full".into()));
        let problems = health.problems();
        assert_eq!(problems.len(), 1);
        let (component, problem) = &problems[0];
        assert_eq!(*component, Component::AuditLog);
        assert_eq!((problem.since, problem.last_failure), (t(1), t(5)));
        assert_eq!(
            (problem.error.as_str(), problem.failures),
            ("still full", 2)
        );
        assert!(health.recovered(Component::ConsentState).is_none());
        assert!(health.is_degraded());
        assert_eq!(health.recovered(Component::AuditLog).unwrap().failures, 2);
        assert!(!health.is_degraded());
    }
}
