//! Bans and mutes.

use fanfare_core::ids::GroupId;
use fanfare_core::paging::PageSize;
use fanfare_proto::common::v1::group_event::Change;

use super::helpers::{add, at, changes, create, invite, limits, member_count, names, user, user_ids};
use crate::domain::{BanReason, GroupKind, JoinMethod};
use crate::store::{GroupStore, StoreError};

/// A ban ends a membership and a pending request, and keeps the user out every way.
pub async fn ban_removes_membership_and_pending_request(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    add(store, &group, &[2], at(1)).await;
    store.create_join_request(group.id, user(3), at(1)).await.unwrap();
    let reason = BanReason::from_trusted("spam".to_owned());

    let ban = store.ban(group.id, user(2), reason.clone(), Some(at(1_000)), owner, at(2)).await.unwrap();
    assert_eq!((ban.user_id, ban.banned_by, ban.banned_at, ban.until), (user(2), owner, at(2), Some(at(1_000))));
    assert_eq!(ban.reason, reason);
    assert_eq!(store.get_active_ban(group.id, user(2), at(3)).await.unwrap(), Some(ban));
    store.ban(group.id, user(3), reason.clone(), None, owner, at(2)).await.unwrap();
    assert_eq!(store.get_membership(group.id, user(2)).await.unwrap(), None);
    assert!(store.list_join_requests(group.id, None, PageSize::new(10)).await.unwrap().is_empty());
    assert_eq!(member_count(store, group.id).await, 1);

    let group_changes = changes(store, group.id).await;
    let was_member: Vec<bool> = group_changes
        .iter()
        .filter_map(|change| match change {
            Change::MemberBanned(banned) => Some(banned.was_member),
            _ => None,
        })
        .collect();
    assert_eq!(was_member, [true, false]);

    let the_owner = store.ban(group.id, owner, reason, None, owner, at(3)).await;
    assert!(matches!(the_owner, Err(StoreError::OwnerImmovable(_))), "{the_owner:?}");
    let joining = store.add_members(group.id, &[user(2)], JoinMethod::Direct, limits(group.kind), user(2), at(4)).await;
    assert!(matches!(joining, Err(StoreError::Banned { .. })), "{joining:?}");
    let asking = store.create_join_request(group.id, user(3), at(4)).await;
    assert!(matches!(asking, Err(StoreError::Banned { .. })), "{asking:?}");
    let code = store.create_invite(invite(&group, 0, at(1_000))).await.unwrap().code;
    let redeeming = store.redeem_invite(&code, user(2), limits(group.kind), at(4)).await;
    assert!(matches!(redeeming, Err(StoreError::Banned { .. })), "{redeeming:?}");
    let unknown = store
        .ban(GroupId::from_trusted(i64::MAX), user(2), BanReason::from_trusted(String::new()), None, owner, at(4))
        .await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// A ban with an end stops counting at its end; a new ban replaces the old one.
pub async fn bans_expire_and_are_replaced(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    let reason = BanReason::from_trusted(String::new());
    store.ban(group.id, user(2), reason.clone(), Some(at(100)), owner, at(1)).await.unwrap();
    assert!(store.get_active_ban(group.id, user(2), at(99)).await.unwrap().is_some());
    assert_eq!(store.get_active_ban(group.id, user(2), at(100)).await.unwrap(), None, "ends at `until`");
    assert!(store.list_bans(group.id, None, PageSize::new(10), at(150)).await.unwrap().is_empty());
    let lifted = store.unban(group.id, user(2), owner, at(150)).await;
    assert!(matches!(lifted, Err(StoreError::NotBanned { .. })), "{lifted:?}");
    let added = store.add_members(group.id, &[user(2)], JoinMethod::Direct, limits(group.kind), user(2), at(150)).await;
    assert_eq!(user_ids(&added.expect("an expired ban no longer blocks").added), [2]);

    store.ban(group.id, user(3), reason.clone(), None, owner, at(200)).await.unwrap();
    let replaced = store.ban(group.id, user(3), reason, Some(at(300)), owner, at(250)).await.unwrap();
    assert_eq!(store.get_active_ban(group.id, user(3), at(260)).await.unwrap(), Some(replaced));
    assert_eq!(store.get_active_ban(group.id, user(3), at(300)).await.unwrap(), None);
}

/// Unbanning lifts the ban in force and lets the user back in.
pub async fn unban_lifts_the_ban(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    store.ban(group.id, user(2), BanReason::from_trusted(String::new()), None, owner, at(1)).await.unwrap();
    store.unban(group.id, user(2), owner, at(2)).await.unwrap();
    assert_eq!(store.get_active_ban(group.id, user(2), at(3)).await.unwrap(), None);
    assert_eq!(names(&changes(store, group.id).await).last(), Some(&"unbanned"));
    let again = store.unban(group.id, user(2), owner, at(3)).await;
    assert!(matches!(again, Err(StoreError::NotBanned { user: who, .. }) if who == user(2)), "{again:?}");
    add(store, &group, &[2], at(4)).await;
    let unknown = store.unban(GroupId::from_trusted(i64::MAX), user(2), owner, at(5)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// Bans in force list by ascending user id, page by page, without gaps or repeats.
pub async fn list_bans_pages_by_user_id(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    let other = create(store, GroupKind::Community, owner).await;
    let reason = BanReason::from_trusted(String::new());
    for banned in [17, 4, 9, 30, 2, 11, 25] {
        store.ban(group.id, user(banned), reason.clone(), None, owner, at(1)).await.unwrap();
    }
    store.ban(group.id, user(6), reason.clone(), Some(at(5)), owner, at(1)).await.unwrap();
    store.ban(other.id, user(3), reason, None, owner, at(1)).await.unwrap();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_bans(group.id, after, PageSize::new(3), at(10)).await.unwrap();
        assert!(page.len() <= 4, "at most limit + 1");
        let more = page.len() > 3;
        seen.extend(page.iter().take(3).map(|ban| ban.user_id.get()));
        if !more {
            break;
        }
        after = page.get(2).map(|ban| ban.user_id);
    }
    assert_eq!(seen, [2, 4, 9, 11, 17, 25, 30], "ascending, the expired ban and other groups left out");
}

/// Mutes are set and lifted, each with its outbox change.
pub async fn set_mute_mutes_and_unmutes(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    add(store, &group, &[2], at(1)).await;
    let muted = store.set_mute(group.id, user(2), Some(at(600)), owner, at(2)).await.unwrap();
    assert_eq!(muted.muted_until, Some(at(600)));
    assert_eq!(store.get_membership(group.id, user(2)).await.unwrap(), Some(muted));
    let unmuted = store.set_mute(group.id, user(2), None, owner, at(3)).await.unwrap();
    assert_eq!(unmuted.muted_until, None);
    let group_changes = changes(store, group.id).await;
    assert_eq!(names(&group_changes)[3..], ["muted", "unmuted"]);
    let Change::MemberMuted(mute) = &group_changes[3] else { unreachable!("checked above") };
    assert_eq!(mute.until.as_ref().map(|until| until.seconds), Some(at(600).timestamp()));

    let stranger = store.set_mute(group.id, user(9), Some(at(600)), owner, at(4)).await;
    assert!(matches!(stranger, Err(StoreError::NotMember { .. })), "{stranger:?}");
    let unknown = store.set_mute(GroupId::from_trusted(i64::MAX), user(2), None, owner, at(4)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}
