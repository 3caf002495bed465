//! A short hold for updates that arrive ahead of their predecessor.
//!
//! Every messages pod publishes what it commits itself, so when two pods commit turns of one
//! group, update 8 can reach the bus a moment before 7. Passed on at once, 8 would make
//! every stream of the group see a jump and read the hole back from the log: one catch-up
//! call per stream, ten thousand for a big broadcast. The pod holds an early update instead,
//! per group, for at most [`HOLD`]; when the missing ones arrive it passes them all on in
//! order, and only a hole that stays open past the hold reaches the streams (which repair
//! it from the log, as they repair any lost publish).
//!
//! The hold sits in front of every stream of the pod; it never drops anything: a repeat or
//! an older update goes through at once (streams recognise repeats), and a hold that grows
//! past [`MAX_HELD`] updates of a group is released whole.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use fanfare_core::ids::{EventSeq, GroupId};
use tokio::time::Instant;

use crate::metrics::REORDERS_TOTAL;

/// Longest an update waits for its predecessor: far longer than two pods' publishes of
/// consecutive commits are apart, far shorter than a catch-up read.
pub(crate) const HOLD: Duration = Duration::from_millis(25);
/// Most updates held for one group.
pub(crate) const MAX_HELD: usize = 64;

/// One group's state.
struct Group<T> {
    /// The highest event_seq passed on in order.
    passed: EventSeq,
    /// Early updates by event_seq, and when the oldest hold ends.
    held: BTreeMap<EventSeq, T>,
    deadline: Option<Instant>,
}

/// Holds early updates per group (see the module docs).
pub(crate) struct Reorder<T> {
    groups: HashMap<GroupId, Group<T>>,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Self { groups: HashMap::new() }
    }
}

impl<T> Reorder<T> {
    /// Takes update `event_seq` of `group`; returns what to pass on now, in order.
    pub(crate) fn accept(&mut self, group: GroupId, event_seq: EventSeq, item: T, now: Instant) -> Vec<T> {
        let Some(state) = self.groups.get_mut(&group) else {
            // The first update since the channel was (re)subscribed is the baseline.
            self.groups.insert(group, Group { passed: event_seq, held: BTreeMap::new(), deadline: None });
            return vec![item];
        };
        if event_seq <= state.passed {
            return vec![item];
        }
        if event_seq == state.passed.next() {
            state.passed = event_seq;
            let mut ready = vec![item];
            while let Some(next) = state.held.remove(&state.passed.next()) {
                state.passed = state.passed.next();
                ready.push(next);
            }
            if state.held.is_empty() {
                if state.deadline.take().is_some() {
                    metrics::counter!(REORDERS_TOTAL, "outcome" => "filled").increment(1);
                }
            } else {
                state.deadline = Some(now + HOLD);
            }
            return ready;
        }
        state.held.insert(event_seq, item);
        state.deadline.get_or_insert(now + HOLD);
        if state.held.len() > MAX_HELD {
            return release(state);
        }
        Vec::new()
    }

    /// When the earliest hold ends, if anything is held.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.groups.values().filter_map(|state| state.deadline).min()
    }

    /// Releases, in order, what every group whose hold ended by `now` held.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<T> {
        let mut ready = Vec::new();
        for state in self.groups.values_mut() {
            if state.deadline.is_some_and(|deadline| deadline <= now) {
                metrics::counter!(REORDERS_TOTAL, "outcome" => "timed_out").increment(1);
                ready.extend(release(state));
            }
        }
        ready
    }

    /// Releases everything held and forgets every group (the bus may have lost updates:
    /// every stream repairs from the log, and positions start over).
    pub(crate) fn reset(&mut self) -> Vec<T> {
        let mut ready = Vec::new();
        for (_, mut state) in self.groups.drain() {
            ready.extend(release(&mut state));
        }
        ready
    }

    /// Forgets the groups `keep` refuses (no stream listens any more) that hold nothing.
    pub(crate) fn retain(&mut self, keep: impl Fn(GroupId) -> bool) {
        self.groups.retain(|group, state| !state.held.is_empty() || keep(*group));
    }

    /// Groups known.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.groups.len()
    }
}

/// Everything `state` holds, in order; the hole before it is left to the streams.
fn release<T>(state: &mut Group<T>) -> Vec<T> {
    state.deadline = None;
    let held = std::mem::take(&mut state.held);
    if let Some(last) = held.keys().next_back() {
        state.passed = state.passed.max(*last);
    }
    held.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: i64) -> GroupId {
        GroupId::from_trusted(id)
    }

    fn seq(raw: i64) -> EventSeq {
        EventSeq::from_trusted(raw)
    }

    #[test]
    fn in_order_updates_pass_at_once() {
        let mut reorder = Reorder::default();
        let now = Instant::now();
        assert_eq!(reorder.accept(group(1), seq(5), 5, now), [5], "the first is the baseline");
        assert_eq!(reorder.accept(group(1), seq(6), 6, now), [6]);
        assert_eq!(reorder.accept(group(2), seq(1), 1, now), [1], "groups are apart");
        assert_eq!(reorder.next_deadline(), None);
    }

    #[test]
    fn an_early_update_waits_for_its_predecessor_then_both_pass_in_order() {
        let mut reorder = Reorder::default();
        let now = Instant::now();
        reorder.accept(group(1), seq(6), 6, now);
        assert!(reorder.accept(group(1), seq(8), 8, now).is_empty(), "8 waits for 7");
        assert!(reorder.accept(group(1), seq(9), 9, now).is_empty());
        assert_eq!(reorder.next_deadline(), Some(now + HOLD));
        assert_eq!(reorder.accept(group(1), seq(7), 7, now), [7, 8, 9]);
        assert_eq!(reorder.next_deadline(), None);
        assert_eq!(reorder.accept(group(1), seq(10), 10, now), [10]);
    }

    #[test]
    fn a_hole_that_stays_open_is_released_after_the_hold() {
        let mut reorder = Reorder::default();
        let now = Instant::now();
        reorder.accept(group(1), seq(1), 1, now);
        reorder.accept(group(1), seq(4), 4, now);
        reorder.accept(group(1), seq(3), 3, now);
        assert!(reorder.expired(now + HOLD / 2).is_empty());
        assert_eq!(reorder.expired(now + HOLD), [3, 4], "released in order; the streams repair 2");
        assert_eq!(
            reorder.accept(group(1), seq(2), 2, now + HOLD),
            [2],
            "a late one goes through: streams drop repeats"
        );
        assert_eq!(reorder.accept(group(1), seq(5), 5, now + HOLD), [5]);
    }

    #[test]
    fn repeats_pass_and_a_full_hold_is_released() {
        let mut reorder = Reorder::default();
        let now = Instant::now();
        reorder.accept(group(1), seq(10), 10, now);
        assert_eq!(reorder.accept(group(1), seq(9), 9, now), [9]);
        for raw in 12..12 + MAX_HELD as i64 {
            assert!(reorder.accept(group(1), seq(raw), raw, now).is_empty());
        }
        let released = reorder.accept(group(1), seq(12 + MAX_HELD as i64), 0, now);
        assert_eq!(released.len(), MAX_HELD + 1, "everything held goes on");
        assert_eq!(reorder.next_deadline(), None);
    }

    #[test]
    fn a_reset_releases_everything_and_forgets_positions() {
        let mut reorder = Reorder::default();
        let now = Instant::now();
        reorder.accept(group(1), seq(1), 1, now);
        reorder.accept(group(1), seq(3), 3, now);
        reorder.accept(group(2), seq(1), 1, now);
        assert_eq!(reorder.reset(), [3]);
        assert_eq!(reorder.len(), 0);
        assert_eq!(reorder.accept(group(1), seq(7), 7, now), [7], "a new baseline");
    }

    #[test]
    fn groups_nobody_listens_to_are_forgotten_unless_they_hold_something() {
        let mut reorder = Reorder::default();
        let now = Instant::now();
        reorder.accept(group(1), seq(1), 1, now);
        reorder.accept(group(2), seq(1), 1, now);
        reorder.accept(group(2), seq(3), 3, now);
        reorder.retain(|_| false);
        assert_eq!(reorder.len(), 1, "group 2 still holds 3");
    }
}
