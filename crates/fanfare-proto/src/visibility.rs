//! Who reads what of a group's log whole: the rules the messages service applies to
//! `GetUpdates` (and to its history listings) and live delivery applies to its streams.
//! [`redact`](crate::redact) says what a reader who may not see an entry receives in its
//! place; this module says who may not.
//!
//! The rules must never disagree between the two services (a stream would show what a
//! catch-up hides, or the reverse), so they are written here once. This crate is the one
//! both services already share for what the log's entries mean (`redact`), and the rules
//! need nothing else: they read a member's standing, never a database or the clock, and
//! take time in whatever form the caller keeps it (a `DateTime`, µs since the epoch).
//! fanfare-core would hold them as well, but it is the services' plumbing, not the log's
//! meaning.

use crate::common::v1::Role;

/// Whether a role moderates its group: owners and admins. Every service asks this here.
pub fn moderates(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin)
}

/// What decides what of a group's log one member reads whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing<Time> {
    /// When the member joined the group.
    pub joined_at: Time,
    /// Whether the member moderates the group (its owner or an admin).
    pub moderates: bool,
    /// The group's `history_visible_to_new_members` setting.
    pub history_visible_to_new_members: bool,
    /// Whether the group is a BROADCAST group.
    pub broadcast: bool,
}

impl<Time: Copy> Standing<Time> {
    /// Messages created before this reach the member without their content: the member's
    /// join, when the group hides earlier history from new members and the member does not
    /// moderate it (moderators see everything); `None` when the member sees all history.
    pub fn history_hidden_before(&self) -> Option<Time> {
        let hidden = !self.history_visible_to_new_members && !self.moderates;
        hidden.then_some(self.joined_at)
    }

    /// Whether membership events about other users reach the member without them: a plain
    /// member of a BROADCAST group (the groups service lists its members to moderators only).
    pub fn hides_audience(&self) -> bool {
        self.broadcast && !self.moderates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(moderates: bool, history_visible_to_new_members: bool, broadcast: bool) -> Standing<i64> {
        Standing { joined_at: 1_000, moderates, history_visible_to_new_members, broadcast }
    }

    #[test]
    fn hidden_history_hides_what_came_before_the_join_from_plain_members_only() {
        assert_eq!(standing(false, false, false).history_hidden_before(), Some(1_000));
        assert_eq!(standing(true, false, false).history_hidden_before(), None, "moderators see everything");
        assert_eq!(standing(false, true, false).history_hidden_before(), None, "the group shows its history");
        assert_eq!(standing(true, true, true).history_hidden_before(), None);
    }

    #[test]
    fn owners_and_admins_moderate_and_no_one_else() {
        assert!(moderates(Role::Owner) && moderates(Role::Admin));
        assert!(!moderates(Role::Member) && !moderates(Role::Unspecified));
    }

    #[test]
    fn a_broadcast_audience_is_hidden_from_plain_members_only() {
        assert!(standing(false, true, true).hides_audience());
        assert!(!standing(true, true, true).hides_audience(), "moderators see the members");
        assert!(!standing(false, false, false).hides_audience(), "other kinds show their members");
    }
}
