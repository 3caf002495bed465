//! Groups themselves: creating them, reading them, settings and archiving.

use fanfare_core::ids::GroupId;
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::group_event::Change;

use super::helpers::{
    USER_GROUP_LIMIT, add, all_events, at, changes, create, invite, limits, member_count, names, new_group, user,
};
use crate::domain::rules::default_settings;
use crate::domain::{BanReason, GroupKind, JoinMethod, JoinPolicy, MembershipLimits, Role, SettingsUpdate, Title};
use crate::store::{Departure, GroupStore, StoreError};

/// A new group has its owner as its only member, and `Created` then `Joined` in the outbox.
pub async fn create_group_makes_the_owner_a_member(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Chat, owner).await;
    assert_eq!(group.owner, owner);
    assert_eq!(group.kind, GroupKind::Chat);
    assert_eq!(group.member_count, 1);
    assert_eq!(group.created_at, at(0));
    assert_eq!(group.settings, default_settings(GroupKind::Chat));
    assert!(!group.is_archived());
    assert_eq!(store.get_group(group.id).await.unwrap(), Some(group.clone()));

    let membership = store.get_membership(group.id, owner).await.unwrap().expect("the owner is a member");
    assert_eq!(membership.role, Role::Owner);
    assert_eq!(membership.joined_at, at(0));
    assert_eq!(membership.muted_until, None);
    assert_eq!(store.get_membership(group.id, user(2)).await.unwrap(), None);

    let events: Vec<_> = all_events(store).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|event| event.actor_user_id == owner.get()));
    let group_changes = changes(store, group.id).await;
    assert_eq!(names(&group_changes), ["created", "joined"]);
    let Change::MemberJoined(joined) = &group_changes[1] else { unreachable!("checked above") };
    assert_eq!((joined.user_id, joined.method(), joined.role()), (1, common::JoinMethod::Creator, common::Role::Owner));

    let second = create(store, GroupKind::Broadcast, owner).await;
    assert_ne!(second.id, group.id);
    assert_eq!(store.get_group(GroupId::from_trusted(i64::MAX)).await.unwrap(), None);
}

/// Owning a group counts toward the owner's group limit, like any membership.
pub async fn create_group_counts_toward_the_owner_group_limit(store: &dyn GroupStore) {
    let other_group = create(store, GroupKind::Community, user(1)).await;
    let joiner = user(2);
    let limit = 2;
    let tight = MembershipLimits { group_member_limit: None, user_group_limit: limit };
    store.add_members(other_group.id, &[joiner], JoinMethod::Direct, tight, joiner, at(1)).await.unwrap();
    store.create_group(new_group(GroupKind::Chat, joiner), limit, at(2)).await.unwrap();

    let refused = store.create_group(new_group(GroupKind::Chat, joiner), limit, at(3)).await;
    assert!(matches!(refused, Err(StoreError::UserGroupLimit { user: who, limit: 2 }) if who == joiner), "{refused:?}");

    store.remove_member(other_group.id, joiner, Departure::Left, joiner, at(4)).await.unwrap();
    store.create_group(new_group(GroupKind::Chat, joiner), limit, at(5)).await.expect("a slot was freed");
    let none_allowed = store.create_group(new_group(GroupKind::Chat, user(3)), 0, at(6)).await;
    assert!(matches!(none_allowed, Err(StoreError::UserGroupLimit { limit: 0, .. })), "{none_allowed:?}");
}

/// `get_groups` follows the order asked for and leaves unknown ids out.
pub async fn get_groups_keeps_the_requested_order_and_skips_unknown_ids(store: &dyn GroupStore) {
    let first = create(store, GroupKind::Chat, user(1)).await;
    let second = create(store, GroupKind::Community, user(2)).await;
    let unknown = GroupId::from_trusted(i64::MAX);
    let found = store.get_groups(&[second.id, unknown, first.id]).await.unwrap();
    assert_eq!(found, vec![second, first]);
    assert_eq!(store.get_groups(&[]).await.unwrap(), vec![]);
}

/// A settings update changes the given fields, keeps the rest, and is published whole.
pub async fn update_settings_changes_only_the_given_fields(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Community, user(1)).await;
    let update = SettingsUpdate {
        title: Some(Title::from_trusted("Renamed".to_owned())),
        slow_mode_seconds: Some(30),
        join_policy: Some(JoinPolicy::Approval),
        ..SettingsUpdate::default()
    };
    let updated = store.update_settings(group.id, &update, user(1), at(5)).await.unwrap();
    assert_eq!(updated.title.as_str(), "Renamed");
    assert_eq!(updated.description, group.description);
    assert_eq!(updated.settings, update.apply_to(group.settings));
    assert_eq!(updated.member_count, 1);
    assert_eq!(store.get_group(group.id).await.unwrap(), Some(updated));

    let group_changes = changes(store, group.id).await;
    assert_eq!(names(&group_changes), ["created", "joined", "settings_changed"]);
    let Change::GroupSettingsChanged(settings) = &group_changes[2] else { unreachable!("checked above") };
    assert_eq!(settings.title, "Renamed");
    assert_eq!(settings.slow_mode_seconds, 30);
    assert_eq!(settings.join_policy(), common::JoinPolicy::Approval);

    let unknown = store.update_settings(GroupId::from_trusted(i64::MAX), &update, user(1), at(6)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// A FOLLOWERS_ONLY group keeps its minimum follow age from creation and through updates
/// that do not touch it; a policy other than FOLLOWERS_ONLY resets it to 0, as
/// [`SettingsUpdate::apply_to`] says. Each change is published whole.
pub async fn min_follow_age_is_stored_and_reset_by_leaving_followers_only(store: &dyn GroupStore) {
    let mut new = new_group(GroupKind::Broadcast, user(1));
    new.settings.join_policy = JoinPolicy::FollowersOnly;
    new.settings.min_follow_age_seconds = 86_400;
    let group = store.create_group(new, USER_GROUP_LIMIT, at(0)).await.expect("create a group");
    assert_eq!(group.settings.min_follow_age_seconds, 86_400);
    assert_eq!(store.get_group(group.id).await.unwrap(), Some(group.clone()));
    let context = store.join_context(group.id, user(2), at(1)).await.unwrap();
    assert_eq!(context.group.map(|read| read.settings.min_follow_age_seconds), Some(86_400));

    let retitle =
        SettingsUpdate { title: Some(Title::from_trusted("Renamed".to_owned())), ..SettingsUpdate::default() };
    let kept = store.update_settings(group.id, &retitle, user(1), at(2)).await.unwrap();
    assert_eq!(kept.settings.min_follow_age_seconds, 86_400, "an update that does not touch it keeps it");

    let shorter = SettingsUpdate { min_follow_age_seconds: Some(3_600), ..SettingsUpdate::default() };
    let changed = store.update_settings(group.id, &shorter, user(1), at(3)).await.unwrap();
    assert_eq!(changed.settings.min_follow_age_seconds, 3_600);
    assert_eq!(changed.settings, shorter.apply_to(kept.settings));

    let open = SettingsUpdate { join_policy: Some(JoinPolicy::Open), ..SettingsUpdate::default() };
    let opened = store.update_settings(group.id, &open, user(1), at(4)).await.unwrap();
    assert_eq!((opened.settings.join_policy, opened.settings.min_follow_age_seconds), (JoinPolicy::Open, 0));
    assert_eq!(opened.settings, open.apply_to(changed.settings));
    assert_eq!(store.get_group(group.id).await.unwrap(), Some(opened.clone()));

    let back = SettingsUpdate { join_policy: Some(JoinPolicy::FollowersOnly), ..SettingsUpdate::default() };
    let followers_again = store.update_settings(group.id, &back, user(1), at(5)).await.unwrap();
    assert_eq!(followers_again.settings.min_follow_age_seconds, 0, "a reset value does not come back");

    let published: Vec<i32> = changes(store, group.id)
        .await
        .into_iter()
        .filter_map(|change| match change {
            Change::GroupSettingsChanged(settings) => Some(settings.min_follow_age_seconds),
            _ => None,
        })
        .collect();
    assert_eq!(published, [86_400, 3_600, 0, 0]);
}

/// An archived group can still be read, but every change is refused with `Archived`.
pub async fn archived_groups_refuse_every_change(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    add(store, &group, &[2, 3], at(1)).await;
    store.ban(group.id, user(5), BanReason::from_trusted(String::new()), None, owner, at(1)).await.unwrap();
    store.create_join_request(group.id, user(4), at(1)).await.unwrap();
    let code = store.create_invite(invite(&group, 0, at(1_000))).await.unwrap().code;

    let archived = store.archive_group(group.id, owner, at(2)).await.unwrap();
    assert_eq!(archived.archived_at, Some(at(2)));
    assert_eq!(store.get_group(group.id).await.unwrap(), Some(archived));
    assert_eq!(names(&changes(store, group.id).await).last(), Some(&"archived"));
    let events_before = all_events(store).await.len();

    let is_archived =
        |result: Result<(), StoreError>| matches!(result, Err(StoreError::Archived(id)) if id == group.id);
    let (id, now, reason) = (group.id, at(3), BanReason::from_trusted(String::new()));
    let update = SettingsUpdate { slow_mode_seconds: Some(5), ..SettingsUpdate::default() };
    let outcomes = [
        store.update_settings(id, &update, owner, now).await.map(drop),
        store.archive_group(id, owner, now).await.map(drop),
        store.add_members(id, &[user(6)], JoinMethod::Direct, limits(group.kind), user(6), now).await.map(drop),
        store.remove_member(id, user(2), Departure::Left, user(2), now).await,
        store.set_role(id, user(2), Role::Admin, owner, now).await.map(drop),
        store.transfer_ownership(id, user(2), owner, now).await.map(drop),
        store.ban(id, user(3), reason, None, owner, now).await.map(drop),
        store.unban(id, user(5), owner, now).await,
        store.set_mute(id, user(2), Some(at(100)), owner, now).await.map(drop),
        store.create_join_request(id, user(7), now).await.map(drop),
        store.approve_join_request(id, user(4), limits(group.kind), owner, now).await.map(drop),
        store.create_invite(invite(&group, 0, at(1_000))).await.map(drop),
        store.redeem_invite(&code, user(8), limits(group.kind), now).await.map(drop),
    ];
    for (index, outcome) in outcomes.into_iter().enumerate() {
        assert!(is_archived(outcome), "change #{index} was not refused as archived");
    }
    assert_eq!(all_events(store).await.len(), events_before, "refused changes write nothing");
    assert_eq!(member_count(store, group.id).await, 3);
}
