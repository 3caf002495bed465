//! Invites: stored, revoked, read and redeemed.

use fanfare_core::ids::GroupId;
use fanfare_proto::common::v1 as common;

use super::helpers::{all_events, at, changes, create, invite, joins, limits, member_count, user};
use crate::domain::{GroupKind, InviteCode, Role};
use crate::store::{GroupStore, Redemption, StoreError};

/// Invites are stored as given, read back in any state, and revoked idempotently.
pub async fn invites_are_stored_revoked_and_read(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Chat, user(1)).await;
    let stored = store.create_invite(invite(&group, 3, at(1_000))).await.unwrap();
    assert_eq!(store.get_invite(&stored.code).await.unwrap(), Some(stored.clone()));
    let revoked = store.revoke_invite(&stored.code, at(5)).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(at(5)));
    let again = store.revoke_invite(&stored.code, at(6)).await.unwrap();
    assert_eq!(again.revoked_at, Some(at(5)), "revoking twice keeps the first time");
    assert_eq!(store.get_invite(&stored.code).await.unwrap(), Some(again));

    let unknown_code = InviteCode::generate();
    assert_eq!(store.get_invite(&unknown_code).await.unwrap(), None);
    let revoke_unknown = store.revoke_invite(&unknown_code, at(7)).await;
    assert!(matches!(revoke_unknown, Err(StoreError::InviteNotFound)), "{revoke_unknown:?}");
    let mut orphan = invite(&group, 0, at(1_000));
    orphan.group_id = GroupId::from_trusted(i64::MAX);
    let no_group = store.create_invite(orphan).await;
    assert!(matches!(no_group, Err(StoreError::GroupNotFound(_))), "{no_group:?}");
}

/// Redemption joins and counts a use; members, expiry, revocation and exhaustion are
/// reported; `max_uses` 0 is unlimited.
pub async fn redeeming_an_invite_joins_and_counts_uses(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Chat, owner).await;
    let chat = limits(group.kind);
    let twice = store.create_invite(invite(&group, 2, at(1_000))).await.unwrap();

    let joined = store.redeem_invite(&twice.code, user(2), chat, at(1)).await.unwrap();
    assert!(matches!(&joined, Redemption::Joined(m) if m.user_id == user(2) && m.role == Role::Member), "{joined:?}");
    let member = store.redeem_invite(&twice.code, user(2), chat, at(2)).await.unwrap();
    assert!(matches!(member, Redemption::AlreadyMember(_)), "{member:?}");
    let the_owner = store.redeem_invite(&twice.code, owner, chat, at(2)).await.unwrap();
    assert!(matches!(&the_owner, Redemption::AlreadyMember(m) if m.role == Role::Owner), "{the_owner:?}");
    assert_eq!(store.get_invite(&twice.code).await.unwrap().map(|i| i.use_count), Some(1), "members use nothing");
    store.redeem_invite(&twice.code, user(3), chat, at(3)).await.unwrap();
    let exhausted = store.redeem_invite(&twice.code, user(4), chat, at(4)).await;
    assert!(matches!(exhausted, Err(StoreError::InviteExhausted(2))), "{exhausted:?}");
    let group_changes = changes(store, group.id).await;
    assert_eq!(joins(&group_changes)[1..], [(2, common::JoinMethod::Invite), (3, common::JoinMethod::Invite)]);
    let redeemer = all_events(store).await.last().map(|event| event.actor_user_id);
    assert_eq!(redeemer, Some(3), "the redeeming user is the actor");

    let unlimited = store.create_invite(invite(&group, 0, at(1_000))).await.unwrap();
    for joiner in 10..16 {
        let outcome = store.redeem_invite(&unlimited.code, user(joiner), chat, at(5)).await.unwrap();
        assert!(matches!(outcome, Redemption::Joined(_)), "{outcome:?}");
    }
    assert_eq!(store.get_invite(&unlimited.code).await.unwrap().map(|i| i.use_count), Some(6));

    let expiring = store.create_invite(invite(&group, 0, at(100))).await.unwrap();
    let expired = store.redeem_invite(&expiring.code, user(20), chat, at(100)).await;
    assert!(matches!(expired, Err(StoreError::InviteExpired(when)) if when == at(100)), "{expired:?}");
    store.revoke_invite(&unlimited.code, at(6)).await.unwrap();
    let revoked = store.redeem_invite(&unlimited.code, user(21), chat, at(7)).await;
    assert!(matches!(revoked, Err(StoreError::InviteRevoked)), "{revoked:?}");
    let unknown = store.redeem_invite(&InviteCode::generate(), user(22), chat, at(7)).await;
    assert!(matches!(unknown, Err(StoreError::InviteNotFound)), "{unknown:?}");
    assert_eq!(member_count(store, group.id).await, 9);
}
