//! What the tests share: fixed times, users, the test limits, groups made to order and
//! the outbox read back as changes.

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::group_event::Change;
use prost::Message as _;

use crate::domain::rules::default_settings;
use crate::domain::{
    AvatarRef, Description, Group, GroupKind, Invite, InviteCode, JoinMethod, MembershipLimits, NewGroup, Title,
};
use crate::store::{AddedMembers, GroupStore};

/// The member limit of CHAT groups in these tests (the configured default).
pub const CHAT_MEMBER_LIMIT: u64 = 32;
/// The member limit of COMMUNITY groups in these tests.
pub const COMMUNITY_MEMBER_LIMIT: u64 = 1_000;
/// The per-user group limit in these tests.
pub const USER_GROUP_LIMIT: u64 = 5_000;

/// A fixed point in time plus `seconds`; tests never read the clock.
pub fn at(seconds: i64) -> DateTime<Utc> {
    // 2030-01-01T00:00:00Z
    let epoch = DateTime::from_timestamp(1_893_456_000, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    epoch + chrono::Duration::seconds(seconds)
}

/// A user id.
pub fn user(id: i64) -> UserId {
    UserId::from_trusted(id)
}

/// The test limits of a kind: CHAT 32, COMMUNITY 1,000, BROADCAST unlimited.
pub fn limits(kind: GroupKind) -> MembershipLimits {
    let group_member_limit = match kind {
        GroupKind::Chat => Some(CHAT_MEMBER_LIMIT),
        GroupKind::Community => Some(COMMUNITY_MEMBER_LIMIT),
        GroupKind::Broadcast => None,
    };
    MembershipLimits { group_member_limit, user_group_limit: USER_GROUP_LIMIT }
}

/// What a new group of `kind` owned by `owner` is made of.
pub fn new_group(kind: GroupKind, owner: UserId) -> NewGroup {
    NewGroup {
        kind,
        title: Title::from_trusted(format!("{kind:?} of {owner}")),
        description: Description::from_trusted(String::new()),
        avatar_ref: AvatarRef::from_trusted(String::new()),
        owner,
        settings: default_settings(kind),
    }
}

pub(super) async fn create(store: &dyn GroupStore, kind: GroupKind, owner: UserId) -> Group {
    store.create_group(new_group(kind, owner), USER_GROUP_LIMIT, at(0)).await.expect("create a group")
}

pub(super) async fn add(store: &dyn GroupStore, group: &Group, users: &[i64], now: DateTime<Utc>) -> AddedMembers {
    let users: Vec<UserId> = users.iter().copied().map(user).collect();
    store
        .add_members(group.id, &users, JoinMethod::Added, limits(group.kind), group.owner, now)
        .await
        .expect("add members")
}

pub(super) async fn member_count(store: &dyn GroupStore, group: GroupId) -> u64 {
    store.get_group(group).await.expect("read the group").expect("the group exists").member_count
}

pub(super) fn user_ids<'a>(memberships: impl IntoIterator<Item = &'a crate::domain::Membership>) -> Vec<i64> {
    memberships.into_iter().map(|membership| membership.user_id.get()).collect()
}

/// Every outbox event, decoded, in outbox order.
pub(super) async fn all_events(store: &dyn GroupStore) -> Vec<common::GroupEvent> {
    let mut events = Vec::new();
    let mut after_id = 0;
    loop {
        let page = store.read_outbox(after_id, 7).await.expect("read the outbox");
        let Some(last) = page.last() else {
            return events;
        };
        after_id = last.id;
        for entry in &page {
            let event = common::GroupEvent::decode(entry.payload.as_slice()).expect("decode an outbox payload");
            assert_eq!(event.group_id, entry.group_id.get(), "payload and row name the same group");
            events.push(event);
        }
    }
}

/// The changes of one group, in outbox order.
pub(super) async fn changes(store: &dyn GroupStore, group: GroupId) -> Vec<Change> {
    all_events(store)
        .await
        .into_iter()
        .filter(|event| event.group_id == group.get())
        .map(|event| event.change.expect("every event carries a change"))
        .collect()
}

/// Short names of changes, for readable assertions.
pub(super) fn names(changes: &[Change]) -> Vec<&'static str> {
    changes
        .iter()
        .map(|change| match change {
            Change::GroupCreated(_) => "created",
            Change::MemberJoined(_) => "joined",
            Change::MemberLeft(_) => "left",
            Change::MemberRemoved(_) => "removed",
            Change::MemberBanned(_) => "banned",
            Change::MemberUnbanned(_) => "unbanned",
            Change::MemberMuted(_) => "muted",
            Change::MemberUnmuted(_) => "unmuted",
            Change::MemberRoleChanged(_) => "role_changed",
            Change::OwnershipTransferred(_) => "ownership_transferred",
            Change::GroupSettingsChanged(_) => "settings_changed",
            Change::GroupArchived(_) => "archived",
        })
        .collect()
}

/// The (user, method) of every join among `changes`.
pub(super) fn joins(changes: &[Change]) -> Vec<(i64, common::JoinMethod)> {
    changes
        .iter()
        .filter_map(|change| match change {
            Change::MemberJoined(joined) => Some((joined.user_id, joined.method())),
            _ => None,
        })
        .collect()
}

pub(super) fn invite(group: &Group, max_uses: u32, expires_at: DateTime<Utc>) -> Invite {
    Invite {
        code: InviteCode::generate(),
        group_id: group.id,
        created_by: group.owner,
        created_at: at(0),
        expires_at,
        max_uses,
        use_count: 0,
        revoked_at: None,
    }
}
