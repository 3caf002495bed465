//! Join requests: filed, approved, rejected and listed.

use fanfare_core::ids::GroupId;
use fanfare_core::paging::PageSize;
use fanfare_proto::common::v1 as common;

use super::helpers::{USER_GROUP_LIMIT, add, all_events, at, changes, create, joins, limits, user};
use crate::domain::{GroupKind, MembershipLimits, Role};
use crate::store::{GroupStore, StoreError};

/// Filing twice returns the first request; approval joins the user with `Approved`.
pub async fn join_requests_are_idempotent_and_approved(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    let events_before = all_events(store).await.len();
    let first = store.create_join_request(group.id, user(2), at(10)).await.unwrap();
    assert_eq!((first.user_id, first.requested_at), (user(2), at(10)));
    let second = store.create_join_request(group.id, user(2), at(20)).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(all_events(store).await.len(), events_before, "requests are not part of the timeline");

    let membership = store.approve_join_request(group.id, user(2), limits(group.kind), owner, at(30)).await.unwrap();
    assert_eq!((membership.role, membership.joined_at), (Role::Member, at(30)));
    assert_eq!(joins(&changes(store, group.id).await).last(), Some(&(2, common::JoinMethod::Approved)));
    assert!(store.list_join_requests(group.id, None, PageSize::new(10)).await.unwrap().is_empty());
    let again = store.approve_join_request(group.id, user(2), limits(group.kind), owner, at(31)).await;
    assert!(matches!(again, Err(StoreError::JoinRequestNotFound { .. })), "{again:?}");

    store.create_join_request(group.id, user(3), at(40)).await.unwrap();
    add(store, &group, &[3], at(41)).await;
    assert!(
        store.list_join_requests(group.id, None, PageSize::new(10)).await.unwrap().is_empty(),
        "joining by other means deletes the pending request"
    );
    let unknown = store.create_join_request(GroupId::from_trusted(i64::MAX), user(2), at(50)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// Rejection deletes a request; a failed approval keeps it.
pub async fn rejected_and_failed_approvals(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    store.create_join_request(group.id, user(2), at(1)).await.unwrap();
    store.reject_join_request(group.id, user(2)).await.unwrap();
    assert!(store.list_join_requests(group.id, None, PageSize::new(10)).await.unwrap().is_empty());
    let again = store.reject_join_request(group.id, user(2)).await;
    assert!(matches!(again, Err(StoreError::JoinRequestNotFound { .. })), "{again:?}");
    let unknown = store.reject_join_request(GroupId::from_trusted(i64::MAX), user(2)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");

    store.create_join_request(group.id, user(3), at(2)).await.unwrap();
    let full = MembershipLimits { group_member_limit: Some(1), user_group_limit: USER_GROUP_LIMIT };
    let refused = store.approve_join_request(group.id, user(3), full, owner, at(3)).await;
    assert!(matches!(refused, Err(StoreError::GroupFull { .. })), "{refused:?}");
    let pending = store.list_join_requests(group.id, None, PageSize::new(10)).await.unwrap();
    assert_eq!(pending.iter().map(|request| request.user_id.get()).collect::<Vec<_>>(), [3]);
    let unknown_approval =
        store.approve_join_request(GroupId::from_trusted(i64::MAX), user(3), full, owner, at(3)).await;
    assert!(matches!(unknown_approval, Err(StoreError::GroupNotFound(_))), "{unknown_approval:?}");
}

/// Pending requests list oldest first, ties by user id, page by page.
pub async fn list_join_requests_pages_in_request_order(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Community, user(1)).await;
    let filed = [(5, 30), (2, 10), (9, 10), (4, 20), (7, 10), (3, 40), (8, 20)];
    for (requester, seconds) in filed {
        store.create_join_request(group.id, user(requester), at(seconds)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_join_requests(group.id, after, PageSize::new(2)).await.unwrap();
        let more = page.len() > 2;
        seen.extend(page.iter().take(2).map(|request| request.user_id.get()));
        if !more {
            break;
        }
        after = page.get(1).map(|request| (request.requested_at, request.user_id));
    }
    assert_eq!(seen, [2, 7, 9, 4, 8, 5, 3]);
}
