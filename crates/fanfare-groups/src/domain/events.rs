//! The changes the groups service writes to its outbox, and their wire form
//! (`fanfare.common.v1.GroupEvent`), built in one place for every store.

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::time::{to_optional_timestamp, to_timestamp};
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::group_event::Change;
use prost::Message;

use super::{Group, GroupKind, Role};

/// How a member came to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinMethod {
    /// Created the group.
    Creator,
    /// Joined directly under the group's policy.
    Direct,
    /// Added by a member.
    Added,
    /// Redeemed an invite code.
    Invite,
    /// A join request was approved.
    Approved,
}

impl JoinMethod {
    fn to_proto(self) -> common::JoinMethod {
        match self {
            Self::Creator => common::JoinMethod::Creator,
            Self::Direct => common::JoinMethod::Direct,
            Self::Added => common::JoinMethod::Added,
            Self::Invite => common::JoinMethod::Invite,
            Self::Approved => common::JoinMethod::Approved,
        }
    }
}

/// One membership or settings change of a group.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupChange {
    /// The group was created.
    Created {
        /// The group's kind.
        kind: GroupKind,
        /// Its title at creation.
        title: String,
    },
    /// A user became a member.
    Joined {
        /// The new member.
        user: UserId,
        /// How they came in.
        method: JoinMethod,
        /// The role they came in with.
        role: Role,
    },
    /// A member left.
    Left {
        /// The member who left.
        user: UserId,
    },
    /// A member was removed.
    Removed {
        /// The member removed.
        user: UserId,
    },
    /// A user was banned.
    Banned {
        /// The user banned.
        user: UserId,
        /// When the ban ends (`None`: until lifted).
        until: Option<DateTime<Utc>>,
        /// Whether the ban also removed them as a member.
        was_member: bool,
    },
    /// A ban was lifted.
    Unbanned {
        /// The user no longer banned.
        user: UserId,
    },
    /// A member was muted.
    Muted {
        /// The member muted.
        user: UserId,
        /// When the mute ends.
        until: DateTime<Utc>,
    },
    /// A mute was lifted.
    Unmuted {
        /// The member no longer muted.
        user: UserId,
    },
    /// A member's role changed.
    RoleChanged {
        /// The member.
        user: UserId,
        /// Their role now.
        role: Role,
    },
    /// Ownership moved.
    OwnershipTransferred {
        /// The owner before (an admin now).
        previous_owner: UserId,
        /// The owner now.
        new_owner: UserId,
    },
    /// Settings or descriptive fields changed; carries the state after the change.
    SettingsChanged(Box<Group>),
    /// The group was archived.
    Archived,
}

impl GroupChange {
    /// The wire event for this change.
    pub fn to_event(&self, group_id: GroupId, actor: Option<UserId>, at: DateTime<Utc>) -> common::GroupEvent {
        let change = match self {
            Self::Created { kind, title } => {
                Change::GroupCreated(common::GroupCreated { kind: kind.to_proto() as i32, title: title.clone() })
            }
            Self::Joined { user, method, role } => Change::MemberJoined(common::MemberJoined {
                user_id: user.get(),
                method: method.to_proto() as i32,
                role: role.to_proto() as i32,
            }),
            Self::Left { user } => Change::MemberLeft(common::MemberLeft { user_id: user.get() }),
            Self::Removed { user } => Change::MemberRemoved(common::MemberRemoved { user_id: user.get() }),
            Self::Banned { user, until, was_member } => Change::MemberBanned(common::MemberBanned {
                user_id: user.get(),
                until: to_optional_timestamp(*until),
                was_member: *was_member,
            }),
            Self::Unbanned { user } => Change::MemberUnbanned(common::MemberUnbanned { user_id: user.get() }),
            Self::Muted { user, until } => {
                Change::MemberMuted(common::MemberMuted { user_id: user.get(), until: Some(to_timestamp(*until)) })
            }
            Self::Unmuted { user } => Change::MemberUnmuted(common::MemberUnmuted { user_id: user.get() }),
            Self::RoleChanged { user, role } => Change::MemberRoleChanged(common::MemberRoleChanged {
                user_id: user.get(),
                role: role.to_proto() as i32,
            }),
            Self::OwnershipTransferred { previous_owner, new_owner } => {
                Change::OwnershipTransferred(common::OwnershipTransferred {
                    previous_owner_user_id: previous_owner.get(),
                    new_owner_user_id: new_owner.get(),
                })
            }
            Self::SettingsChanged(group) => Change::GroupSettingsChanged(common::GroupSettingsChanged {
                title: group.title.as_str().to_owned(),
                description: group.description.as_str().to_owned(),
                avatar_ref: group.avatar_ref.as_str().to_owned(),
                join_policy: group.settings.join_policy.to_proto() as i32,
                slow_mode_seconds: i32::try_from(group.settings.slow_mode_seconds).unwrap_or(i32::MAX),
                history_visible_to_new_members: group.settings.history_visible_to_new_members,
                post_policy: group.settings.post_policy.to_proto() as i32,
                min_follow_age_seconds: i32::try_from(group.settings.min_follow_age_seconds).unwrap_or(i32::MAX),
            }),
            Self::Archived => Change::GroupArchived(common::GroupArchived {}),
        };
        common::GroupEvent {
            group_id: group_id.get(),
            actor_user_id: actor.map_or(0, UserId::get),
            occurred_at: Some(to_timestamp(at)),
            change: Some(change),
        }
    }

    /// The encoded wire event, as the outbox stores it.
    pub fn encode(&self, group_id: GroupId, actor: Option<UserId>, at: DateTime<Utc>) -> Vec<u8> {
        self.to_event(group_id, actor, at).encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_join_that_decodes_back() {
        let group = GroupId::from_trusted(3);
        let user = UserId::from_trusted(7);
        let change = GroupChange::Joined { user, method: JoinMethod::Invite, role: Role::Member };
        let bytes = change.encode(group, Some(user), Utc::now());
        let event = common::GroupEvent::decode(bytes.as_slice()).unwrap();
        assert_eq!(event.group_id, 3);
        let Some(Change::MemberJoined(joined)) = event.change else {
            panic!("expected a join, got {:?}", event.change);
        };
        assert_eq!(joined.user_id, 7);
        assert_eq!(joined.method, common::JoinMethod::Invite as i32);
    }
}
