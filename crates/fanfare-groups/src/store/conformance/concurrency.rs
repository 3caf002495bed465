//! Concurrency: limits, joins and invite uses stay exact when calls race, and the store
//! answers `ping`.

use std::collections::HashSet;

use fanfare_core::paging::PageSize;
use futures::future::join_all;

use super::helpers::{CHAT_MEMBER_LIMIT, at, changes, create, invite, joins, limits, member_count, user};
use crate::domain::{GroupKind, JoinMethod, MembershipLimits};
use crate::store::{GroupStore, Redemption, StoreError};

/// 50 users joining a CHAT group at once: the owner and 31 of them make the limit of 32
/// exactly; the other 19 are told the group is full.
pub async fn concurrent_adds_never_exceed_the_member_limit(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Chat, user(1)).await;
    let (group_id, kind) = (group.id, group.kind);
    let attempts = (100..150).map(|joiner| async move {
        store.add_members(group_id, &[user(joiner)], JoinMethod::Invite, limits(kind), user(joiner), at(1)).await
    });
    let outcomes = join_all(attempts).await;
    let joined = outcomes.iter().filter(|outcome| matches!(outcome, Ok(added) if added.added.len() == 1)).count();
    let full = outcomes.iter().filter(|outcome| matches!(outcome, Err(StoreError::GroupFull { .. }))).count();
    assert_eq!((joined, full), (31, 19), "{outcomes:?}");
    assert_eq!(member_count(store, group.id).await, CHAT_MEMBER_LIMIT);
    let members = store.list_members(group.id, None, None, PageSize::new(100)).await.unwrap();
    assert_eq!(members.len() as u64, CHAT_MEMBER_LIMIT);
    assert_eq!(joins(&changes(store, group.id).await).len(), 32);
}

/// 20 simultaneous joins of one user make one membership and one `Joined` change; the
/// others report the user as already a member.
pub async fn concurrent_joins_of_one_user_make_one_membership(store: &dyn GroupStore) {
    for kind in [GroupKind::Chat, GroupKind::Broadcast] {
        let group = create(store, kind, user(1)).await;
        let joiner = user(7);
        let group_id = group.id;
        let attempts = (0..20).map(|_| async move {
            store.add_members(group_id, &[joiner], JoinMethod::Direct, limits(kind), joiner, at(1)).await
        });
        let outcomes = join_all(attempts).await;
        let mut added = 0;
        for outcome in outcomes {
            let outcome = outcome.expect("a duplicate join is not an error");
            added += outcome.added.len();
            assert_eq!(outcome.added.len() + outcome.already_members.len(), 1);
        }
        assert_eq!(added, 1, "{kind:?}");
        assert_eq!(member_count(store, group.id).await, 2, "{kind:?}");
        let joined: Vec<i64> = joins(&changes(store, group.id).await).into_iter().map(|(id, _)| id).collect();
        assert_eq!(joined, [1, 7], "{kind:?}");
    }
    // The user was counted once per group toward their limit.
    let tight = MembershipLimits { group_member_limit: None, user_group_limit: 3 };
    let third = create(store, GroupKind::Broadcast, user(2)).await;
    store
        .add_members(third.id, &[user(7)], JoinMethod::Direct, tight, user(7), at(2))
        .await
        .expect("a third group fits");
}

/// One user joining ten groups at once with room for three more groups: exactly three
/// joins succeed, the other seven are told the user is at their limit, and nothing of the
/// refused joins is left behind.
pub async fn concurrent_joins_never_exceed_the_user_group_limit(store: &dyn GroupStore) {
    let joiner = user(7);
    let mut groups = Vec::new();
    for owner in 11..=20 {
        let kind = if owner % 2 == 0 { GroupKind::Broadcast } else { GroupKind::Community };
        groups.push(create(store, kind, user(owner)).await);
    }
    let three = MembershipLimits { group_member_limit: None, user_group_limit: 3 };
    let attempts = groups.iter().map(|group| {
        let group_id = group.id;
        async move { store.add_members(group_id, &[joiner], JoinMethod::Direct, three, joiner, at(1)).await }
    });
    let outcomes = join_all(attempts).await;
    let joined = outcomes.iter().filter(|outcome| matches!(outcome, Ok(added) if added.added.len() == 1)).count();
    let refused = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Err(StoreError::UserGroupLimit { user: who, limit: 3 }) if *who == joiner))
        .count();
    assert_eq!((joined, refused), (3, 7), "{outcomes:?}");
    let joiner_groups = store.list_user_groups(joiner, None, PageSize::new(100)).await.unwrap();
    assert_eq!(joiner_groups.len(), 3);
    let mut members = 0;
    let mut joiner_joins = 0;
    for group in &groups {
        members += member_count(store, group.id).await;
        joiner_joins += joins(&changes(store, group.id).await).iter().filter(|(id, _)| *id == joiner.get()).count();
    }
    assert_eq!((members, joiner_joins), (10 + 3, 3));
    let another = create(store, GroupKind::Community, user(21)).await;
    let refused_again = store.add_members(another.id, &[joiner], JoinMethod::Direct, three, joiner, at(2)).await;
    assert!(matches!(refused_again, Err(StoreError::UserGroupLimit { .. })), "{refused_again:?}");
}

/// Simultaneous redemptions of an invite never exceed its `max_uses`.
pub async fn concurrent_redemptions_respect_max_uses(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Community, user(1)).await;
    let five = store.create_invite(invite(&group, 5, at(1_000))).await.unwrap();
    let attempts = (10..30).map(|joiner| store.redeem_invite(&five.code, user(joiner), limits(group.kind), at(1)));
    let outcomes = join_all(attempts).await;
    let joined = outcomes.iter().filter(|outcome| matches!(outcome, Ok(Redemption::Joined(_)))).count();
    let exhausted = outcomes.iter().filter(|outcome| matches!(outcome, Err(StoreError::InviteExhausted(5)))).count();
    assert_eq!((joined, exhausted), (5, 15), "{outcomes:?}");
    assert_eq!(store.get_invite(&five.code).await.unwrap().map(|i| i.use_count), Some(5));
    assert_eq!(member_count(store, group.id).await, 6);
    let distinct: HashSet<i64> = joins(&changes(store, group.id).await).into_iter().map(|(id, _)| id).collect();
    assert_eq!(distinct.len(), 6);
}

/// A reachable store answers `ping`.
pub async fn ping_succeeds(store: &dyn GroupStore) {
    store.ping().await.expect("ping");
}
