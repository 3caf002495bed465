//! Adding members: the join's context, all-or-nothing adds, member limits and counts.

use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::PageSize;
use fanfare_proto::common::v1 as common;

use super::helpers::{
    CHAT_MEMBER_LIMIT, USER_GROUP_LIMIT, add, all_events, at, changes, create, joins, limits, member_count, user,
    user_ids,
};
use crate::domain::{BanReason, GroupKind, JoinMethod, MembershipLimits, Role};
use crate::store::{AddedMembers, Departure, GroupStore, JoinContext, StoreError};

/// `join_context` answers what `get_group`, `get_membership` and `get_active_ban` would.
pub async fn join_context_reads_the_group_membership_and_ban_together(store: &dyn GroupStore) {
    let owner = user(1);
    // BROADCAST: the member count is summed over shards.
    let group = create(store, GroupKind::Broadcast, owner).await;
    add(store, &group, &[2, 3, 4], at(1)).await;

    let unknown = store.join_context(GroupId::from_trusted(i64::MAX), user(2), at(2)).await.unwrap();
    assert_eq!(unknown, JoinContext::default());

    let member = store.join_context(group.id, user(2), at(2)).await.unwrap();
    assert_eq!(member.group, store.get_group(group.id).await.unwrap());
    assert_eq!(member.group.as_ref().map(|group| group.member_count), Some(4));
    assert_eq!(member.membership, store.get_membership(group.id, user(2)).await.unwrap());
    assert_eq!(
        member.membership.as_ref().map(|membership| (membership.role, membership.joined_at)),
        Some((Role::Member, at(1)))
    );
    assert_eq!(member.active_ban, None);
    let the_owner = store.join_context(group.id, owner, at(2)).await.unwrap();
    assert_eq!(the_owner.membership.map(|membership| membership.role), Some(Role::Owner));

    let stranger = store.join_context(group.id, user(9), at(2)).await.unwrap();
    assert_eq!((stranger.group.is_some(), stranger.membership, stranger.active_ban), (true, None, None));

    let reason = BanReason::from_trusted("spam".to_owned());
    let ban = store.ban(group.id, user(3), reason, Some(at(10)), owner, at(3)).await.unwrap();
    let banned = store.join_context(group.id, user(3), at(5)).await.unwrap();
    assert_eq!(banned.membership, None, "the ban ended the membership");
    assert_eq!(banned.active_ban, Some(ban.clone()));
    assert_eq!(banned.active_ban, store.get_active_ban(group.id, user(3), at(5)).await.unwrap());
    assert_eq!(banned.group.map(|group| group.member_count), Some(3));
    let ended = store.join_context(group.id, user(3), at(10)).await.unwrap();
    assert_eq!(ended.active_ban, None, "a ban stops counting at its end");

    store.set_mute(group.id, user(4), Some(at(50)), owner, at(4)).await.unwrap();
    let archived = store.archive_group(group.id, owner, at(6)).await.unwrap();
    let read = store.join_context(group.id, user(4), at(7)).await.unwrap();
    assert_eq!(read.group, Some(archived), "an archived group is read like any other");
    assert_eq!(read.membership.and_then(|membership| membership.muted_until), Some(at(50)));
}

/// New members are reported in the order given; existing ones are reported, not changed.
pub async fn add_members_reports_existing_members_and_writes_one_join_each(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Chat, user(1)).await;
    let added = add(store, &group, &[3, 2, 3, 1], at(1)).await;
    assert_eq!(user_ids(&added.added), [3, 2]);
    assert!(added.added.iter().all(|membership| membership.role == Role::Member && membership.joined_at == at(1)));
    assert_eq!(user_ids(&added.already_members), [1]);
    assert_eq!(added.already_members[0].role, Role::Owner);

    let again = add(store, &group, &[2, 4], at(2)).await;
    assert_eq!(user_ids(&again.added), [4]);
    assert_eq!(again.already_members[0].joined_at, at(1), "an existing membership is left as it was");
    assert_eq!(member_count(store, group.id).await, 4);
    assert_eq!(store.get_membership(group.id, user(4)).await.unwrap(), Some(again.added[0].clone()));

    let group_changes = changes(store, group.id).await;
    let expected = [(3, common::JoinMethod::Added), (2, common::JoinMethod::Added), (4, common::JoinMethod::Added)];
    assert_eq!(joins(&group_changes)[1..], expected);
    let nothing = add(store, &group, &[], at(3)).await;
    assert_eq!(nothing, AddedMembers::default());

    let unknown = store
        .add_members(
            GroupId::from_trusted(i64::MAX),
            &[user(2)],
            JoinMethod::Added,
            limits(GroupKind::Chat),
            user(1),
            at(4),
        )
        .await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// One banned user, or one user at their group limit, keeps the whole batch out.
pub async fn add_members_is_all_or_nothing(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    store.ban(group.id, user(5), BanReason::from_trusted("spam".to_owned()), None, owner, at(1)).await.unwrap();
    let events_before = all_events(store).await.len();

    let batch = [user(2), user(3), user(5), user(4)];
    let banned = store.add_members(group.id, &batch, JoinMethod::Added, limits(group.kind), owner, at(2)).await;
    assert!(matches!(banned, Err(StoreError::Banned { user: who, .. }) if who == user(5)), "{banned:?}");

    let elsewhere = create(store, GroupKind::Chat, user(9)).await;
    add(store, &elsewhere, &[6], at(2)).await;
    let one_group_each = MembershipLimits { group_member_limit: None, user_group_limit: 1 };
    let batch = [user(7), user(6), user(8)];
    let at_limit = store.add_members(group.id, &batch, JoinMethod::Added, one_group_each, owner, at(3)).await;
    assert!(
        matches!(at_limit, Err(StoreError::UserGroupLimit { user: who, limit: 1 }) if who == user(6)),
        "{at_limit:?}"
    );

    let two_slots = MembershipLimits { group_member_limit: Some(3), user_group_limit: USER_GROUP_LIMIT };
    let too_many = store.add_members(group.id, &batch, JoinMethod::Added, two_slots, owner, at(4)).await;
    assert!(matches!(too_many, Err(StoreError::GroupFull { limit: 3, .. })), "{too_many:?}");

    for candidate in [2, 3, 4, 6, 7, 8] {
        assert_eq!(store.get_membership(group.id, user(candidate)).await.unwrap(), None, "user {candidate}");
    }
    assert_eq!(member_count(store, group.id).await, 1);
    let events_after: Vec<_> = all_events(store).await;
    assert_eq!(events_after.len(), events_before + 3, "only the other group's creation and join were written");
    // User 7 was not counted toward its group limit by the failed batches.
    let single = MembershipLimits { group_member_limit: None, user_group_limit: 1 };
    store.add_members(group.id, &[user(7)], JoinMethod::Added, single, owner, at(5)).await.expect("user 7 has room");
}

/// A limited group takes members up to its limit exactly, then refuses with `GroupFull`.
pub async fn add_members_fills_a_group_exactly_then_reports_full(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Chat, user(1)).await;
    let thirty: Vec<i64> = (2..=31).collect();
    add(store, &group, &thirty, at(1)).await;
    assert_eq!(member_count(store, group.id).await, 31);

    let two = [user(100), user(101)];
    let full = store.add_members(group.id, &two, JoinMethod::Added, limits(group.kind), user(1), at(2)).await;
    assert!(matches!(full, Err(StoreError::GroupFull { limit: CHAT_MEMBER_LIMIT, .. })), "{full:?}");
    assert_eq!(member_count(store, group.id).await, 31, "all or nothing");

    add(store, &group, &[100], at(3)).await;
    assert_eq!(member_count(store, group.id).await, CHAT_MEMBER_LIMIT);
    let one_more =
        store.add_members(group.id, &[user(101)], JoinMethod::Added, limits(group.kind), user(1), at(4)).await;
    assert!(matches!(one_more, Err(StoreError::GroupFull { .. })), "{one_more:?}");
    let existing = add(store, &group, &[100], at(5)).await;
    assert_eq!(user_ids(&existing.already_members), [100], "re-adding a member of a full group is no error");
}

/// Member counts are exact after joins, leaves, removals and bans, for limited groups and
/// for sharded (BROADCAST) ones alike.
pub async fn member_counts_follow_joins_and_leaves(store: &dyn GroupStore) {
    for kind in [GroupKind::Community, GroupKind::Broadcast, GroupKind::Chat] {
        let owner = user(1);
        let group = create(store, kind, owner).await;
        let joiners: Vec<i64> = (2..=31).collect();
        add(store, &group, &joiners[..20], at(1)).await;
        for joiner in &joiners[20..] {
            add(store, &group, &[*joiner], at(2)).await;
        }
        assert_eq!(member_count(store, group.id).await, 31, "{kind:?}");
        for leaver in 2..=8 {
            store.remove_member(group.id, user(leaver), Departure::Left, user(leaver), at(3)).await.unwrap();
        }
        store.remove_member(group.id, user(9), Departure::Removed, owner, at(3)).await.unwrap();
        for banned in [10, 11, 999] {
            store
                .ban(group.id, user(banned), BanReason::from_trusted(String::new()), None, owner, at(3))
                .await
                .unwrap();
        }
        let expected = 31 - 7 - 1 - 2;
        assert_eq!(member_count(store, group.id).await, expected, "{kind:?}");
        let page = store.list_members(group.id, None, None, PageSize::new(100)).await.unwrap();
        assert_eq!(page.len() as u64, expected, "{kind:?}");
        let (listed, _) = store.list_user_groups(owner, None, PageSize::new(10)).await.unwrap().remove(0);
        assert_eq!(listed.member_count, expected, "{kind:?}");
    }
}

/// A BROADCAST group given a member limit (a configuration choice) still fills exactly.
pub async fn a_broadcast_group_with_a_configured_limit_fills_exactly(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Broadcast, user(1)).await;
    let five = MembershipLimits { group_member_limit: Some(5), user_group_limit: USER_GROUP_LIMIT };
    let batch: Vec<UserId> = (2..=4).map(user).collect();
    store.add_members(group.id, &batch, JoinMethod::Direct, five, user(1), at(1)).await.unwrap();
    let over = [user(5), user(6)];
    let full = store.add_members(group.id, &over, JoinMethod::Direct, five, user(1), at(2)).await;
    assert!(matches!(full, Err(StoreError::GroupFull { limit: 5, .. })), "{full:?}");
    store.add_members(group.id, &over[..1], JoinMethod::Direct, five, user(1), at(3)).await.unwrap();
    assert_eq!(member_count(store, group.id).await, 5);
}
