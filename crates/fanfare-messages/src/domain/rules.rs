//! Rules both stores evaluate in Rust, so they cannot drift: times at the precision
//! PostgreSQL keeps, slow mode, the edit window and claim leases (the time arithmetic itself
//! is `fanfare_core::time`'s).

use std::time::Duration;

use chrono::{DateTime, Utc};
use fanfare_core::ids::UserId;
use fanfare_proto::common::v1 as common;

pub use fanfare_core::time::{later, lease_end, stored_time};

/// How long a sender who last posted at `last_posted` must still wait under `slow_mode`
/// (`None`: they may post now). A zero interval is slow mode off.
pub fn slow_mode_wait(
    last_posted: Option<DateTime<Utc>>,
    slow_mode: Option<Duration>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let interval = slow_mode.filter(|interval| !interval.is_zero())?;
    let next_allowed = later(last_posted?, interval);
    (now < next_allowed).then(|| (next_allowed - now).to_std().unwrap_or_default())
}

/// Whether a message created at `created_at` is too old to edit: it may be edited while it
/// is younger than `window`.
pub fn edit_window_closed(created_at: DateTime<Utc>, window: Duration, now: DateTime<Utc>) -> bool {
    now >= later(created_at, window)
}

/// The user a relayed event makes a member, if it is a join. A new member's read marker
/// starts at the group's latest message: what was said before they joined is not unread.
pub fn joined_member(event: &common::GroupEvent) -> Option<UserId> {
    match &event.change {
        Some(common::group_event::Change::MemberJoined(joined)) => UserId::parse("user_id", joined.user_id).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn slow_mode_names_the_remaining_wait() {
        let interval = Some(Duration::from_secs(10));
        assert_eq!(slow_mode_wait(Some(at(0)), interval, at(4)), Some(Duration::from_secs(6)));
        assert_eq!(slow_mode_wait(Some(at(0)), interval, at(10)), None);
        assert_eq!(slow_mode_wait(None, interval, at(4)), None, "a first post is never held back");
        assert_eq!(slow_mode_wait(Some(at(0)), Some(Duration::ZERO), at(1)), None, "zero is off");
    }

    #[test]
    fn the_edit_window_closes_at_its_end() {
        let window = Duration::from_secs(60);
        assert!(!edit_window_closed(at(0), window, at(59)));
        assert!(edit_window_closed(at(0), window, at(60)));
    }

    #[test]
    fn far_leases_saturate_instead_of_overflowing() {
        let end = lease_end(at(0), Duration::from_secs(u64::MAX));
        assert!(end > at(0));
        assert_eq!(stored_time(end), end);
    }
}
