//! The groups domain: validated values, the records the store keeps, and pure rules.

pub mod events;
pub mod rules;
pub mod values;

pub use events::{GroupChange, JoinMethod};
pub use values::*;

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};

/// A group as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Its id.
    pub id: GroupId,
    /// Its kind, fixed at creation.
    pub kind: GroupKind,
    /// Display title.
    pub title: Title,
    /// Description (may be empty).
    pub description: Description,
    /// Avatar reference (may be empty).
    pub avatar_ref: AvatarRef,
    /// The current owner.
    pub owner: UserId,
    /// Settings owners and admins change.
    pub settings: Settings,
    /// Number of members.
    pub member_count: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was archived, if it was.
    pub archived_at: Option<DateTime<Utc>>,
}

impl Group {
    /// Whether the group still accepts changes.
    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }
}

/// Settings owners and admins change after creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How non-members may join.
    pub join_policy: JoinPolicy,
    /// Seconds between two posts of one member; 0 is off.
    pub slow_mode_seconds: u32,
    /// Whether new members see earlier history.
    pub history_visible_to_new_members: bool,
    /// Who may post.
    pub post_policy: PostPolicy,
    /// How long a user must have followed the owner to join a FOLLOWERS_ONLY group, in
    /// seconds; 0 admits every follower. Always 0 under other join policies.
    pub min_follow_age_seconds: u32,
}

/// What a new group is made of; the store assigns id and times.
#[derive(Debug, Clone, PartialEq)]
pub struct NewGroup {
    /// The kind.
    pub kind: GroupKind,
    /// Display title.
    pub title: Title,
    /// Description.
    pub description: Description,
    /// Avatar reference.
    pub avatar_ref: AvatarRef,
    /// The creator, who becomes owner.
    pub owner: UserId,
    /// Initial settings, already checked against the kind.
    pub settings: Settings,
}

/// A partial change of a group's descriptive fields and settings; `None` keeps a field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsUpdate {
    /// New title.
    pub title: Option<Title>,
    /// New description.
    pub description: Option<Description>,
    /// New avatar reference.
    pub avatar_ref: Option<AvatarRef>,
    /// New join policy.
    pub join_policy: Option<JoinPolicy>,
    /// New slow mode interval.
    pub slow_mode_seconds: Option<u32>,
    /// New history visibility.
    pub history_visible_to_new_members: Option<bool>,
    /// New post policy.
    pub post_policy: Option<PostPolicy>,
    /// New minimum follow age.
    pub min_follow_age_seconds: Option<u32>,
}

impl SettingsUpdate {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The settings after applying this update to `current`. A minimum follow age means
    /// something only to a FOLLOWERS_ONLY group, so a policy other than that one resets it to
    /// 0 (the service refuses an update that sets a non-zero one alongside such a policy).
    pub fn apply_to(&self, current: Settings) -> Settings {
        let join_policy = self.join_policy.unwrap_or(current.join_policy);
        let min_follow_age_seconds = match join_policy {
            JoinPolicy::FollowersOnly => self.min_follow_age_seconds.unwrap_or(current.min_follow_age_seconds),
            JoinPolicy::Open | JoinPolicy::InviteOnly | JoinPolicy::Approval => 0,
        };
        Settings {
            join_policy,
            slow_mode_seconds: self.slow_mode_seconds.unwrap_or(current.slow_mode_seconds),
            history_visible_to_new_members: self
                .history_visible_to_new_members
                .unwrap_or(current.history_visible_to_new_members),
            post_policy: self.post_policy.unwrap_or(current.post_policy),
            min_follow_age_seconds,
        }
    }
}

/// One user's membership of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    /// The group.
    pub group_id: GroupId,
    /// The member.
    pub user_id: UserId,
    /// Their role.
    pub role: Role,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
    /// When their mute ends, if one was set (it may lie in the past).
    pub muted_until: Option<DateTime<Utc>>,
}

impl Membership {
    /// The mute still in force at `now`, if any.
    pub fn active_mute(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.muted_until.filter(|until| *until > now)
    }
}

/// A ban of one user from one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Ban {
    /// The group.
    pub group_id: GroupId,
    /// The banned user.
    pub user_id: UserId,
    /// The moderator.
    pub banned_by: UserId,
    /// Why.
    pub reason: BanReason,
    /// When.
    pub banned_at: DateTime<Utc>,
    /// When it ends; `None` is permanent.
    pub until: Option<DateTime<Utc>>,
}

impl Ban {
    /// Whether the ban is in force at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

/// A pending request to join an APPROVAL group.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinRequest {
    /// The group.
    pub group_id: GroupId,
    /// Who asked.
    pub user_id: UserId,
    /// When.
    pub requested_at: DateTime<Utc>,
}

/// An invite code to a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite {
    /// The code.
    pub code: InviteCode,
    /// The group it opens.
    pub group_id: GroupId,
    /// Its creator.
    pub created_by: UserId,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Joins allowed; 0 is unlimited.
    pub max_uses: u32,
    /// Joins served.
    pub use_count: u32,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The limits a membership change must respect, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipLimits {
    /// Members the group may hold; `None` is unlimited.
    pub group_member_limit: Option<u64>,
    /// Groups one user may belong to.
    pub user_group_limit: u64,
}

/// A change appended to the groups outbox, read back (for the relay and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Position in the outbox (a database sequence: increasing, gaps possible).
    pub id: i64,
    /// The group.
    pub group_id: GroupId,
    /// The encoded `fanfare.common.v1.GroupEvent`.
    pub payload: Vec<u8>,
}
