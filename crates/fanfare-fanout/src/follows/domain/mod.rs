//! The fanout domain: the records of the follow graph and its pure rules. Ids arrive
//! already validated (`fanfare_core::ids::UserId`); the rules here span several of them.

pub mod rules;

use chrono::{DateTime, Utc};
use fanfare_core::ids::UserId;

/// One follow edge: `follower` follows `creator` since `followed_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follow {
    /// Who follows.
    pub follower: UserId,
    /// Whom they follow.
    pub creator: UserId,
    /// Since when (microsecond precision, as stored).
    pub followed_at: DateTime<Utc>,
}

impl Follow {
    /// Its position in the creator's follower listing.
    pub fn follower_key(&self) -> FollowKey {
        FollowKey { followed_at: self.followed_at, user: self.follower }
    }

    /// Its position in the follower's following listing.
    pub fn following_key(&self) -> FollowKey {
        FollowKey { followed_at: self.followed_at, user: self.creator }
    }
}

/// A position in a newest-first listing of one user's edges: the time of the edge and the
/// id of the user at its other end, which breaks ties between edges of the same instant.
/// A page holds the edges strictly before it in (followed_at, user) descending order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FollowKey {
    /// When the edge was made.
    pub followed_at: DateTime<Utc>,
    /// The user at the other end (the follower when listing followers, the creator when
    /// listing following).
    pub user: UserId,
}

/// A user's maintained counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowCounts {
    /// The user.
    pub user: UserId,
    /// How many follow them.
    pub followers: u64,
    /// How many they follow.
    pub following: u64,
}

impl FollowCounts {
    /// The counts of a user nobody follows and who follows nobody.
    pub fn zero(user: UserId) -> Self {
        Self { user, followers: 0, following: 0 }
    }
}

/// Whether one follower follows one creator, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowCheck {
    /// The creator asked about.
    pub creator: UserId,
    /// Since when the follower follows them; `None` when they do not.
    pub followed_at: Option<DateTime<Utc>>,
}
