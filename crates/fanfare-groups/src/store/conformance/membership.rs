//! Memberships once made: leaving, roles, ownership and the two listings.

use fanfare_core::ids::GroupId;
use fanfare_core::paging::PageSize;
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::group_event::Change;

use super::helpers::{add, at, changes, create, member_count, names, user, user_ids};
use crate::domain::{GroupKind, Role};
use crate::store::{Departure, GroupStore, StoreError};

/// Leaving and removal end a membership with the matching outbox change; the owner stays.
pub async fn remove_member_writes_left_or_removed(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Chat, owner).await;
    add(store, &group, &[2, 3], at(1)).await;
    store.remove_member(group.id, user(2), Departure::Left, user(2), at(2)).await.unwrap();
    store.remove_member(group.id, user(3), Departure::Removed, owner, at(3)).await.unwrap();
    assert_eq!(store.get_membership(group.id, user(2)).await.unwrap(), None);
    assert_eq!(member_count(store, group.id).await, 1);
    let group_changes = changes(store, group.id).await;
    assert_eq!(names(&group_changes)[4..], ["left", "removed"]);

    let again = store.remove_member(group.id, user(2), Departure::Left, user(2), at(4)).await;
    assert!(matches!(again, Err(StoreError::NotMember { user: who, .. }) if who == user(2)), "{again:?}");
    let the_owner = store.remove_member(group.id, owner, Departure::Left, owner, at(4)).await;
    assert!(matches!(the_owner, Err(StoreError::OwnerImmovable(id)) if id == group.id), "{the_owner:?}");
    let unknown = store.remove_member(GroupId::from_trusted(i64::MAX), user(2), Departure::Left, user(2), at(4)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
    add(store, &group, &[2], at(5)).await;
    assert_eq!(member_count(store, group.id).await, 2, "a former member can come back");
}

/// Roles change between admin and member, with an outbox row only for a real change.
pub async fn set_role_changes_roles_but_never_the_owner(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    add(store, &group, &[2], at(1)).await;
    let promoted = store.set_role(group.id, user(2), Role::Admin, owner, at(2)).await.unwrap();
    assert_eq!(promoted.role, Role::Admin);
    assert_eq!(promoted.joined_at, at(1));
    let unchanged = store.set_role(group.id, user(2), Role::Admin, owner, at(3)).await.unwrap();
    assert_eq!(unchanged, promoted);
    assert_eq!(store.get_membership(group.id, user(2)).await.unwrap(), Some(promoted));
    store.set_role(group.id, user(2), Role::Member, owner, at(4)).await.unwrap();
    let group_changes = changes(store, group.id).await;
    assert_eq!(names(&group_changes)[3..], ["role_changed", "role_changed"]);
    let Change::MemberRoleChanged(first) = &group_changes[3] else { unreachable!("checked above") };
    assert_eq!((first.user_id, first.role()), (2, common::Role::Admin));

    let the_owner = store.set_role(group.id, owner, Role::Admin, owner, at(5)).await;
    assert!(matches!(the_owner, Err(StoreError::OwnerImmovable(_))), "{the_owner:?}");
    let stranger = store.set_role(group.id, user(9), Role::Admin, owner, at(5)).await;
    assert!(matches!(stranger, Err(StoreError::NotMember { .. })), "{stranger:?}");
    let unknown = store.set_role(GroupId::from_trusted(i64::MAX), user(2), Role::Admin, owner, at(5)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// A transfer makes the new owner `Owner` and the previous one `Admin`.
pub async fn transfer_ownership_swaps_roles(store: &dyn GroupStore) {
    let (previous, next) = (user(1), user(2));
    let group = create(store, GroupKind::Community, previous).await;
    add(store, &group, &[2], at(1)).await;
    let stranger = store.transfer_ownership(group.id, user(9), previous, at(2)).await;
    assert!(matches!(stranger, Err(StoreError::NotMember { user: who, .. }) if who == user(9)), "{stranger:?}");

    let transferred = store.transfer_ownership(group.id, next, previous, at(3)).await.unwrap();
    assert_eq!(transferred.owner, next);
    assert_eq!(store.get_group(group.id).await.unwrap(), Some(transferred));
    assert_eq!(store.get_membership(group.id, next).await.unwrap().map(|m| m.role), Some(Role::Owner));
    assert_eq!(store.get_membership(group.id, previous).await.unwrap().map(|m| m.role), Some(Role::Admin));
    let group_changes = changes(store, group.id).await;
    let Some(Change::OwnershipTransferred(change)) = group_changes.last() else {
        panic!("expected a transfer last, got {:?}", names(&group_changes));
    };
    assert_eq!((change.previous_owner_user_id, change.new_owner_user_id), (1, 2));

    let owners = store.list_members(group.id, Some(Role::Owner), None, PageSize::new(10)).await.unwrap();
    assert_eq!(user_ids(&owners), [2]);
    store.remove_member(group.id, previous, Departure::Left, previous, at(4)).await.expect("no longer the owner");
    let new_owner_leaves = store.remove_member(group.id, next, Departure::Left, next, at(4)).await;
    assert!(matches!(new_owner_leaves, Err(StoreError::OwnerImmovable(_))), "{new_owner_leaves:?}");
    let unknown = store.transfer_ownership(GroupId::from_trusted(i64::MAX), next, next, at(5)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// Members list by ascending user id, page by page, with or without a role filter.
pub async fn list_members_pages_in_user_id_order(store: &dyn GroupStore) {
    let owner = user(50);
    let group = create(store, GroupKind::Broadcast, owner).await;
    let other = create(store, GroupKind::Broadcast, owner).await;
    let joiners = [17, 3, 44, 8, 21, 2, 39, 12, 30, 5, 26, 48, 9, 33, 14];
    add(store, &group, &joiners, at(1)).await;
    add(store, &other, &[1, 4, 99], at(1)).await;
    for admin in [8, 30, 48] {
        store.set_role(group.id, user(admin), Role::Admin, owner, at(2)).await.unwrap();
    }

    for (role, page_size) in [(None, 4), (None, 1), (Some(Role::Admin), 2), (Some(Role::Member), 5)] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.list_members(group.id, role, after, PageSize::new(page_size)).await.unwrap();
            assert!(page.len() <= page_size as usize + 1);
            let more = page.len() > page_size as usize;
            let kept: Vec<_> = page.into_iter().take(page_size as usize).collect();
            assert!(kept.iter().all(|membership| role.is_none_or(|role| membership.role == role)));
            seen.extend(user_ids(&kept));
            if !more {
                break;
            }
            after = kept.last().map(|membership| membership.user_id);
        }
        let mut expected: Vec<i64> = match role {
            None => joiners.iter().copied().chain([50]).collect(),
            Some(Role::Admin) => vec![8, 30, 48],
            Some(_) => joiners.iter().copied().filter(|id| ![8, 30, 48].contains(id)).collect(),
        };
        expected.sort_unstable();
        assert_eq!(seen, expected, "role {role:?}, page size {page_size}");
    }
}

/// A user's groups list newest membership first (ties by group id, descending).
pub async fn list_user_groups_pages_newest_first(store: &dyn GroupStore) {
    let member = user(9);
    let mut expected = Vec::new();
    for (index, joined_seconds) in [40, 10, 30, 30, 20, 50, 30].into_iter().enumerate() {
        let kind = [GroupKind::Chat, GroupKind::Community, GroupKind::Broadcast][index % 3];
        let group = create(store, kind, user(100 + index as i64)).await;
        add(store, &group, &[9], at(joined_seconds)).await;
        expected.push((at(joined_seconds), group.id));
    }
    let owned = create(store, GroupKind::Chat, member).await;
    expected.push((at(0), owned.id));
    expected.sort_by(|left, right| right.cmp(left));

    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_user_groups(member, before, PageSize::new(3)).await.unwrap();
        let more = page.len() > 3;
        for (group, membership) in page.iter().take(3) {
            assert_eq!(membership.group_id, group.id);
            assert_eq!(membership.user_id, member);
            let role = if group.id == owned.id { Role::Owner } else { Role::Member };
            assert_eq!(membership.role, role);
            assert_eq!(Some(group), store.get_group(group.id).await.unwrap().as_ref());
            seen.push((membership.joined_at, group.id));
        }
        if !more {
            break;
        }
        before = seen.last().copied();
    }
    assert_eq!(seen, expected);
    assert!(store.list_user_groups(user(12345), None, PageSize::new(3)).await.unwrap().is_empty());
}
