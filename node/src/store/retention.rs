//! Retention: which clips to delete, decided without touching anything.
//!
//! Everything here is a pure function of the clips' metadata, the policy and `now`: no
//! files, no index, no clock. That keeps the rules easy to test exhaustively, and lets them
//! move into the sans-IO node core (which will emit "delete these clips" as store requests)
//! unchanged. The store executes a plan by crypto-shredding each clip (see `Store`).
//!
//! The rules, in order:
//!
//! 1. **Age.** A clip whose `end + max_age <= now` is deleted. (The end, not the start: a
//!    clip is kept for `max_age` after its last recorded instant.)
//! 2. **Bytes.** If the clips that remain still take more than `max_bytes`, the oldest
//!    (by start, then end, then clip id, so the plan is deterministic) are deleted until
//!    they fit.
//! 3. **Never** a clip on hold or under an active grant, whatever rule 1 or 2 says. If kept
//!    clips alone exceed `max_bytes`, the plan says so (`over_budget_by`) rather than
//!    deleting them.
//!
//! [`plan_make_room`] is the same oldest-first rule for a full disk: delete until a number
//! of bytes is freed.

use std::time::Duration;

use porchlight_protocol::{ClipId, Timestamp};
use serde::Serialize;

/// How long and how much footage a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Clips are deleted this long after their end.
    pub max_age: Duration,
    /// When set, the oldest clips are deleted while the store is larger than this.
    pub max_bytes: Option<u64>,
}

/// Why a clip may not be deleted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// Nothing keeps it.
    No,
    /// The owner put it on hold.
    Held,
    /// An active grant names it.
    Protected,
}

/// What retention needs to know about one clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCandidate {
    pub clip_id: ClipId,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Bytes the clip takes on disk.
    pub size: u64,
    pub keep: Keep,
}

/// Which rule selected a clip for deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteReason {
    /// Older than `max_age`.
    Age,
    /// The store was over `max_bytes`.
    Bytes,
    /// The disk was full and space was needed for a new clip.
    MakeRoom,
    /// The owner asked.
    Owner,
}

/// A retention decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionPlan {
    /// Clips to delete, oldest first.
    pub delete: Vec<(ClipId, DeleteReason)>,
    /// Clips a rule selected but that are kept, and why.
    pub kept: Vec<(ClipId, Keep)>,
    /// Bytes the clips take once the plan is carried out.
    pub bytes_after: u64,
    /// How far over `max_bytes` the store stays because of kept clips (0 when within).
    pub over_budget_by: u64,
}

fn oldest_first(candidates: &[RetentionCandidate]) -> Vec<&RetentionCandidate> {
    let mut sorted: Vec<&RetentionCandidate> = candidates.iter().collect();
    sorted.sort_by_key(|c| (c.start, c.end, c.clip_id));
    sorted
}

/// Decides which clips to delete under `policy` at `now`.
pub fn plan_retention(
    candidates: &[RetentionCandidate],
    policy: &RetentionPolicy,
    now: Timestamp,
) -> RetentionPlan {
    let mut plan = RetentionPlan::default();
    let mut remaining = Vec::with_capacity(candidates.len());
    for clip in oldest_first(candidates) {
        let expired = clip.end.saturating_add(policy.max_age) <= now;
        match (expired, clip.keep) {
            (true, Keep::No) => plan.delete.push((clip.clip_id, DeleteReason::Age)),
            (true, keep) => {
                plan.kept.push((clip.clip_id, keep));
                remaining.push(clip);
            }
            (false, _) => remaining.push(clip),
        }
    }
    let mut total: u64 = remaining.iter().map(|c| c.size).sum();
    if let Some(max_bytes) = policy.max_bytes {
        for clip in &remaining {
            if total <= max_bytes {
                break;
            }
            match clip.keep {
                Keep::No => {
                    plan.delete.push((clip.clip_id, DeleteReason::Bytes));
                    total -= clip.size;
                }
                keep => {
                    if !plan.kept.iter().any(|(id, _)| *id == clip.clip_id) {
                        plan.kept.push((clip.clip_id, keep));
                    }
                }
            }
        }
        plan.over_budget_by = total.saturating_sub(max_bytes);
    }
    plan.bytes_after = total;
    plan
}

/// The oldest clips that may be deleted whose sizes add up to at least `bytes`, oldest
/// first. Fewer (possibly none) when kept clips stand in the way: the caller sees that the
/// sizes do not add up.
pub fn plan_make_room(candidates: &[RetentionCandidate], bytes: u64) -> Vec<ClipId> {
    let mut freed = 0u64;
    let mut out = Vec::new();
    for clip in oldest_first(candidates) {
        if freed >= bytes {
            break;
        }
        if clip.keep == Keep::No {
            freed = freed.saturating_add(clip.size);
            out.push(clip.clip_id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;
    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn id(n: u8) -> ClipId {
        ClipId::from_bytes([n; 32])
    }

    /// Clip `n` runs from hour `n` to hour `n + 1` and takes `size` bytes.
    fn clip(n: u8, size: u64, keep: Keep) -> RetentionCandidate {
        RetentionCandidate {
            clip_id: id(n),
            start: Timestamp::from_unix_millis(u64::from(n) * HOUR),
            end: Timestamp::from_unix_millis(u64::from(n) * HOUR + HOUR),
            size,
            keep,
        }
    }

    fn policy(max_age: Duration, max_bytes: Option<u64>) -> RetentionPolicy {
        RetentionPolicy { max_age, max_bytes }
    }

    fn deleted(plan: &RetentionPlan) -> Vec<(u8, DeleteReason)> {
        plan.delete
            .iter()
            .map(|(id, why)| (id.as_bytes()[0], *why))
            .collect()
    }

    #[test]
    fn nothing_to_do_on_an_empty_store() {
        let plan = plan_retention(&[], &policy(DAY, Some(0)), Timestamp::EPOCH);
        assert_eq!(plan, RetentionPlan::default());
    }

    #[test]
    fn age_deletes_clips_whose_end_is_older_than_max_age() {
        let clips = [
            clip(1, 10, Keep::No),
            clip(2, 10, Keep::No),
            clip(3, 10, Keep::No),
        ];
        // At hour 3 with a 1-hour max age: clip 1 ended at hour 2 (expired, exactly on the
        // boundary), clip 2 ends at hour 3 (expired only at hour 4), clip 3 is live.
        let now = Timestamp::from_unix_millis(3 * HOUR);
        let plan = plan_retention(&clips, &policy(Duration::from_secs(3600), None), now);
        assert_eq!(deleted(&plan), [(1, DeleteReason::Age)]);
        assert_eq!(plan.bytes_after, 20);
        let later = Timestamp::from_unix_millis(4 * HOUR);
        let plan = plan_retention(&clips, &policy(Duration::from_secs(3600), None), later);
        assert_eq!(
            deleted(&plan),
            [(1, DeleteReason::Age), (2, DeleteReason::Age)]
        );
    }

    #[test]
    fn age_never_underflows_near_the_epoch() {
        let clips = [clip(0, 10, Keep::No)];
        let plan = plan_retention(&clips, &policy(DAY, None), Timestamp::from_unix_millis(1));
        assert!(plan.delete.is_empty());
        let plan = plan_retention(
            &clips,
            &policy(Duration::MAX, None),
            Timestamp::from_unix_millis(u64::MAX - 1),
        );
        assert!(
            plan.delete.is_empty(),
            "saturates instead of wrapping to the past"
        );
    }

    #[test]
    fn bytes_deletes_oldest_first_until_within_budget() {
        // Given out of order, to check the plan sorts.
        let clips = [
            clip(3, 100, Keep::No),
            clip(1, 100, Keep::No),
            clip(2, 100, Keep::No),
            clip(4, 100, Keep::No),
        ];
        let plan = plan_retention(&clips, &policy(DAY, Some(250)), Timestamp::EPOCH);
        assert_eq!(
            deleted(&plan),
            [(1, DeleteReason::Bytes), (2, DeleteReason::Bytes)]
        );
        assert_eq!((plan.bytes_after, plan.over_budget_by), (200, 0));
        // Exactly at the budget is within it.
        let plan = plan_retention(&clips, &policy(DAY, Some(400)), Timestamp::EPOCH);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn age_runs_before_bytes_and_counts_toward_them() {
        let clips = [
            clip(1, 100, Keep::No),
            clip(2, 100, Keep::No),
            clip(30, 100, Keep::No),
        ];
        let now = Timestamp::from_unix_millis(30 * HOUR);
        let plan = plan_retention(&clips, &policy(DAY, Some(150)), now);
        assert_eq!(
            deleted(&plan),
            [(1, DeleteReason::Age), (2, DeleteReason::Age),]
        );
        assert_eq!(plan.bytes_after, 100);
    }

    #[test]
    fn held_and_protected_clips_are_never_deleted() {
        let clips = [
            clip(1, 100, Keep::Held),
            clip(2, 100, Keep::Protected),
            clip(3, 100, Keep::No),
            clip(4, 100, Keep::No),
        ];
        let now = Timestamp::from_unix_millis(100 * HOUR);
        // Everything is expired; only the unkept go.
        let plan = plan_retention(&clips, &policy(DAY, None), now);
        assert_eq!(
            deleted(&plan),
            [(3, DeleteReason::Age), (4, DeleteReason::Age)]
        );
        assert_eq!(plan.kept, [(id(1), Keep::Held), (id(2), Keep::Protected)]);
        // By bytes: the oldest two are kept, so the next oldest go instead, and the kept
        // clips alone are over a tiny budget.
        let plan = plan_retention(&clips, &policy(DAY, Some(150)), Timestamp::EPOCH);
        assert_eq!(
            deleted(&plan),
            [(3, DeleteReason::Bytes), (4, DeleteReason::Bytes)]
        );
        assert_eq!((plan.bytes_after, plan.over_budget_by), (200, 50));
        assert_eq!(plan.kept, [(id(1), Keep::Held), (id(2), Keep::Protected)]);
    }

    #[test]
    fn ties_are_broken_deterministically() {
        let mut a = clip(1, 100, Keep::No);
        let mut b = clip(1, 100, Keep::No);
        a.clip_id = id(9);
        b.clip_id = id(8);
        let plan = plan_retention(&[a, b], &policy(DAY, Some(100)), Timestamp::EPOCH);
        assert_eq!(deleted(&plan), [(8, DeleteReason::Bytes)]);
        let plan = plan_retention(&[b, a], &policy(DAY, Some(100)), Timestamp::EPOCH);
        assert_eq!(deleted(&plan), [(8, DeleteReason::Bytes)]);
    }

    #[test]
    fn make_room_takes_the_oldest_deletable_clips_until_enough_is_freed() {
        let clips = [
            clip(1, 100, Keep::Held),
            clip(2, 100, Keep::No),
            clip(3, 100, Keep::Protected),
            clip(4, 100, Keep::No),
            clip(5, 100, Keep::No),
        ];
        assert_eq!(plan_make_room(&clips, 0), Vec::<ClipId>::new());
        assert_eq!(plan_make_room(&clips, 1), [id(2)]);
        assert_eq!(plan_make_room(&clips, 100), [id(2)]);
        assert_eq!(plan_make_room(&clips, 101), [id(2), id(4)]);
        // Asking for more than can be freed returns everything deletable.
        assert_eq!(plan_make_room(&clips, 10_000), [id(2), id(4), id(5)]);
    }
}
