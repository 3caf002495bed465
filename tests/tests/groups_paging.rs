//! Keyset paging walks with small pages (docs/groups.md, "Limits and errors" and
//! "Storage"): every item exactly once, in the method's order, the last page without a
//! token, and ListMembers' role filter.

use std::collections::HashSet;

use fanfare_proto::common::v1::{GroupKind, JoinPolicy, Role};
use fanfare_proto::groups::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{Client, add, create, create_with_policy, set_role, start};
use fanfare_tests::on_every_storage;

on_every_storage!(
    list_members_walks_every_page_in_user_id_order,
    list_members_filters_by_role,
    list_user_groups_walks_newest_first,
    list_bans_walks_every_page_in_user_id_order,
    list_join_requests_walks_oldest_first,
);

/// Users added out of order, so ascending order is the store's doing.
const SHUFFLED_USERS: [i64; 11] = [17, 3, 99, 42, 8, 61, 25, 4, 77, 12, 33];

/// Asserts a walk saw no item twice and every page but the last was full.
fn assert_walk<T>(pages: &[Vec<T>], page_size: usize, keys: &[i64]) {
    let distinct: HashSet<&i64> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "no duplicates: {keys:?}");
    let (last, full) = pages.split_last().expect("at least one page");
    assert!(full.iter().all(|page| page.len() == page_size), "only the last page is short");
    assert!(last.len() <= page_size && (!last.is_empty() || pages.len() == 1));
}

async fn member_pages(
    client: &mut Client,
    actor: i64,
    group_id: i64,
    role: Option<Role>,
    page_size: i32,
) -> Vec<Vec<pb::Membership>> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let request =
            pb::ListMembersRequest { group_id, page_size, page_token, role: role.map_or(0, |role| role as i32) };
        let page = client.list_members(as_user(actor, request)).await.expect("a page").into_inner();
        pages.push(page.members);
        if page.next_page_token.is_empty() {
            return pages;
        }
        page_token = page.next_page_token;
        assert!(pages.len() <= 100, "the walk ends");
    }
}

fn user_ids(pages: &[Vec<pb::Membership>]) -> Vec<i64> {
    pages.iter().flatten().map(|member| member.user_id).collect()
}

async fn list_members_walks_every_page_in_user_id_order(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let group_id = create(&mut client, 50, GroupKind::Community).await.group_id;
    add(&mut client, 50, group_id, &SHUFFLED_USERS).await;
    let mut expected: Vec<i64> = SHUFFLED_USERS.to_vec();
    expected.push(50);
    expected.sort_unstable();

    for page_size in [1, 3, 5, 12] {
        let pages = member_pages(&mut client, 17, group_id, None, page_size).await;
        let seen = user_ids(&pages);
        assert_eq!(seen, expected, "page size {page_size}");
        assert_walk(&pages, page_size as usize, &seen);
        assert!(pages.iter().flatten().all(|member| member.group_id == group_id));
    }
    let one_page = member_pages(&mut client, 17, group_id, None, 0).await;
    assert_eq!(one_page.len(), 1, "page_size 0 is the default of 100");
    assert_eq!(user_ids(&one_page), expected);
    let exact = member_pages(&mut client, 17, group_id, None, 4).await;
    assert_eq!(exact.len(), 3, "12 members in pages of 4 need no empty fourth page");
}

async fn list_members_filters_by_role(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let group_id = create(&mut client, 50, GroupKind::Community).await.group_id;
    add(&mut client, 50, group_id, &SHUFFLED_USERS).await;
    for admin in [61, 8, 42] {
        set_role(&mut client, 50, group_id, admin, Role::Admin).await;
    }

    let admins = member_pages(&mut client, 3, group_id, Some(Role::Admin), 2).await;
    assert_eq!(user_ids(&admins), vec![8, 42, 61]);
    assert!(admins.iter().flatten().all(|member| member.role == Role::Admin as i32));
    let owners = member_pages(&mut client, 3, group_id, Some(Role::Owner), 2).await;
    assert_eq!(user_ids(&owners), vec![50]);
    let members = member_pages(&mut client, 3, group_id, Some(Role::Member), 3).await;
    let mut expected: Vec<i64> = SHUFFLED_USERS.iter().copied().filter(|user| ![61, 8, 42].contains(user)).collect();
    expected.sort_unstable();
    let seen = user_ids(&members);
    assert_eq!(seen, expected);
    assert_walk(&members, 3, &seen);
    let everyone = member_pages(&mut client, 3, group_id, None, 0).await;
    assert_eq!(user_ids(&everyone).len(), 12, "ROLE_UNSPECIFIED lists every role");
}

async fn list_user_groups_walks_newest_first(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let mut joined_order = Vec::new();
    for owner in 1..=7 {
        let group_id = create(&mut client, owner, GroupKind::Community).await.group_id;
        client.join_group(as_user(100, pb::JoinGroupRequest { group_id })).await.expect("joined");
        joined_order.push(group_id);
    }
    let left = joined_order.remove(2);
    client.leave_group(as_user(100, pb::LeaveGroupRequest { group_id: left })).await.expect("left");
    let newest_first: Vec<i64> = joined_order.iter().rev().copied().collect();

    for page_size in [1, 2, 4, 6] {
        let mut pages: Vec<Vec<pb::UserGroup>> = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListUserGroupsRequest { page_size, page_token };
            let page = client.list_user_groups(as_user(100, request)).await.expect("a page").into_inner();
            pages.push(page.groups);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let seen: Vec<i64> =
            pages.iter().flatten().map(|entry| entry.group.as_ref().expect("a group").group_id).collect();
        assert_eq!(seen, newest_first, "page size {page_size}");
        assert_walk(&pages, page_size as usize, &seen);
        for entry in pages.iter().flatten() {
            let membership = entry.membership.as_ref().expect("the caller's membership");
            assert_eq!(membership.user_id, 100);
            assert_eq!(membership.group_id, entry.group.as_ref().expect("a group").group_id);
            assert_eq!(membership.role, Role::Member as i32);
        }
    }

    let nobody = client.list_user_groups(as_user(555, pb::ListUserGroupsRequest::default())).await;
    let nobody = nobody.expect("an empty list").into_inner();
    assert!(nobody.groups.is_empty() && nobody.next_page_token.is_empty());
}

async fn list_bans_walks_every_page_in_user_id_order(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2]).await;
    set_role(&mut client, 1, group_id, 2, Role::Admin).await;
    let banned = [31, 7, 19, 3, 25, 11, 40];
    for user_id in banned {
        let ban = pb::BanMemberRequest { group_id, user_id, ..Default::default() };
        client.ban_member(as_user(1, ban)).await.expect("banned");
    }
    let mut expected = banned.to_vec();
    expected.sort_unstable();

    for page_size in [1, 2, 7, 0] {
        let mut pages: Vec<Vec<pb::Ban>> = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListBansRequest { group_id, page_size, page_token };
            let page = client.list_bans(as_user(2, request)).await.expect("a page").into_inner();
            pages.push(page.bans);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let seen: Vec<i64> = pages.iter().flatten().map(|ban| ban.user_id).collect();
        assert_eq!(seen, expected, "page size {page_size}");
        let effective = if page_size == 0 { 100 } else { page_size as usize };
        assert_walk(&pages, effective, &seen);
    }
}

async fn list_join_requests_walks_oldest_first(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let group_id = create_with_policy(&mut client, 1, GroupKind::Community, JoinPolicy::Approval).await.group_id;
    let requesters = [44, 9, 71, 23, 5, 60, 38];
    for user in requesters {
        client.join_group(as_user(user, pb::JoinGroupRequest { group_id })).await.expect("pending");
    }
    for page_size in [1, 3, 7] {
        let mut pages: Vec<Vec<pb::JoinRequest>> = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListJoinRequestsRequest { group_id, page_size, page_token };
            let page = client.list_join_requests(as_user(1, request)).await.expect("a page").into_inner();
            pages.push(page.join_requests);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let seen: Vec<i64> = pages.iter().flatten().map(|request| request.user_id).collect();
        assert_eq!(seen, requesters, "page size {page_size}: in the order they asked");
        assert_walk(&pages, page_size as usize, &seen);
        let times: Vec<_> = pages.iter().flatten().map(|request| request.requested_at.expect("a time")).collect();
        assert!(times.windows(2).all(|pair| (pair[0].seconds, pair[0].nanos) <= (pair[1].seconds, pair[1].nanos)));
    }
}
