//! Domain records to their wire messages.

use fanfare_core::time::{to_optional_timestamp, to_timestamp};
use fanfare_proto::fanout::v1 as pb;

use crate::domain::{Follow, FollowCheck, FollowCounts};

/// The wire form of an edge.
pub fn follow(follow: &Follow) -> pb::Follow {
    pb::Follow {
        follower_user_id: follow.follower.get(),
        creator_user_id: follow.creator.get(),
        followed_at: Some(to_timestamp(follow.followed_at)),
    }
}

/// The wire form of one user's counters.
pub fn counts(counts: &FollowCounts) -> pb::FollowCounts {
    pb::FollowCounts {
        user_id: counts.user.get(),
        followers: i64::try_from(counts.followers).unwrap_or(i64::MAX),
        following: i64::try_from(counts.following).unwrap_or(i64::MAX),
    }
}

/// The wire form of one check.
pub fn check(check: &FollowCheck) -> pb::FollowCheck {
    pb::FollowCheck {
        creator_user_id: check.creator.get(),
        following: check.followed_at.is_some(),
        followed_at: to_optional_timestamp(check.followed_at),
    }
}
