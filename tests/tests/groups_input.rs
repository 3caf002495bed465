//! Bad input, field by field (docs/groups.md, "Who is acting" and "Limits and errors"):
//! each refusal is INVALID_ARGUMENT naming the field (or UNAUTHENTICATED for a missing
//! user), and a refused call leaves nothing behind.

use fanfare_core::identity::USER_ID_HEADER;
use fanfare_proto::common::v1::{GroupKind, JoinPolicy, PostPolicy, Role};
use fanfare_proto::groups::v1 as pb;
use fanfare_proto::prost_types::Timestamp;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{Client, add, create, expect_exact_violations, get, outbox_len, seconds_from_now, start};
use fanfare_tests::{expect_code, expect_field_violation, on_every_storage};
use tonic::{Code, Status};

on_every_storage!(
    every_rpc_needs_a_well_formed_acting_user,
    create_group_names_each_bad_field,
    update_settings_names_each_bad_field,
    group_ids_must_be_positive_on_every_rpc,
    user_ids_must_be_positive,
    id_batches_hold_one_to_one_hundred_positive_ids,
    enums_must_be_known_and_specified,
    page_sizes_and_tokens_are_checked_on_every_list,
    times_must_be_in_the_future_and_reasons_bounded,
    invite_lifetimes_uses_and_codes_are_checked,
);

/// A well-formed invite code (no invite has it).
const SOME_CODE: &str = "abcdefghjkmnpqrs";

/// A request whose `x-fanfare-user-id` is `user` verbatim, or absent.
fn request<T>(user: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = user {
        let value = value.parse().expect("valid ASCII metadata");
        request.metadata_mut().insert(USER_ID_HEADER, value);
    }
    request
}

/// Calls all 25 RPCs with well-formed messages about `group_id`, returning each outcome.
async fn call_every_rpc(
    client: &mut Client,
    user: Option<&str>,
    group_id: i64,
) -> Vec<(&'static str, Result<(), Status>)> {
    let mut outcomes = Vec::new();
    macro_rules! call {
        ($method:ident, $message:expr) => {
            let outcome = client.$method(request(user, $message)).await.map(drop);
            outcomes.push((stringify!($method), outcome));
        };
    }
    let until = Some(seconds_from_now(3_600));
    let code = SOME_CODE.to_owned();
    let kind = GroupKind::Community as i32;
    call!(create_group, pb::CreateGroupRequest { kind, title: "t".to_owned(), ..Default::default() });
    call!(get_group, pb::GetGroupRequest { group_id });
    call!(batch_get_groups, pb::BatchGetGroupsRequest { group_ids: vec![group_id] });
    call!(update_group_settings, pb::UpdateGroupSettingsRequest { group_id, ..Default::default() });
    call!(join_group, pb::JoinGroupRequest { group_id });
    call!(leave_group, pb::LeaveGroupRequest { group_id });
    call!(add_members, pb::AddMembersRequest { group_id, user_ids: vec![2] });
    call!(remove_member, pb::RemoveMemberRequest { group_id, user_id: 2 });
    call!(list_members, pb::ListMembersRequest { group_id, ..Default::default() });
    call!(get_membership, pb::GetMembershipRequest { group_id, user_id: 0 });
    call!(list_user_groups, pb::ListUserGroupsRequest::default());
    call!(set_member_role, pb::SetMemberRoleRequest { group_id, user_id: 2, role: Role::Admin as i32 });
    call!(transfer_ownership, pb::TransferOwnershipRequest { group_id, new_owner_user_id: 2 });
    call!(ban_member, pb::BanMemberRequest { group_id, user_id: 3, reason: String::new(), until });
    call!(unban_member, pb::UnbanMemberRequest { group_id, user_id: 3 });
    call!(list_bans, pb::ListBansRequest { group_id, ..Default::default() });
    call!(mute_member, pb::MuteMemberRequest { group_id, user_id: 2, until });
    call!(unmute_member, pb::UnmuteMemberRequest { group_id, user_id: 2 });
    call!(list_join_requests, pb::ListJoinRequestsRequest { group_id, ..Default::default() });
    call!(approve_join_request, pb::ApproveJoinRequestRequest { group_id, user_id: 4 });
    call!(reject_join_request, pb::RejectJoinRequestRequest { group_id, user_id: 4 });
    call!(create_invite, pb::CreateInviteRequest { group_id, ..Default::default() });
    call!(revoke_invite, pb::RevokeInviteRequest { code: code.clone() });
    call!(join_with_invite, pb::JoinWithInviteRequest { code });
    // Last, so that with a good user every call above still finds the group open.
    call!(archive_group, pb::ArchiveGroupRequest { group_id });
    outcomes
}

async fn every_rpc_needs_a_well_formed_acting_user(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2]).await;
    let rows = outbox_len(&service).await;
    let before = get(&mut client, 1, group_id).await;

    let missing = call_every_rpc(&mut client, None, group_id).await;
    assert_eq!(missing.len(), 25, "every RPC of the service");
    for (method, outcome) in missing {
        let status = outcome.expect_err(method);
        assert_eq!(status.code(), Code::Unauthenticated, "{method}: {status:?}");
    }
    for malformed in ["", "abc", "0", "-5", "1.5", "0x10", "99999999999999999999"] {
        for (method, outcome) in call_every_rpc(&mut client, Some(malformed), group_id).await {
            let status = outcome.expect_err(method);
            assert_eq!(status.code(), Code::InvalidArgument, "{method} with {malformed:?}: {status:?}");
        }
    }
    assert_eq!(outbox_len(&service).await, rows, "refused calls change nothing");
    assert_eq!(get(&mut client, 1, group_id).await, before);

    // The same messages with a good user get past identity: none is refused for it.
    for (method, outcome) in call_every_rpc(&mut client, Some("1"), group_id).await {
        if let Err(status) = outcome {
            let code = status.code();
            assert!(!matches!(code, Code::Unauthenticated | Code::InvalidArgument), "{method}: {status:?}");
        }
    }
}

fn create_request(kind: GroupKind, title: &str) -> pb::CreateGroupRequest {
    pb::CreateGroupRequest { kind: kind as i32, title: title.to_owned(), ..Default::default() }
}

async fn create_group_names_each_bad_field(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let good = create_request(GroupKind::Community, "ok");
    let with_settings = |join_policy: i32, slow_mode_seconds: i32, post_policy: i32| pb::CreateGroupRequest {
        settings: Some(pb::GroupSettings {
            join_policy,
            slow_mode_seconds,
            history_visible_to_new_members: true,
            post_policy,
            min_follow_age_seconds: 0,
        }),
        ..good.clone()
    };
    let open = JoinPolicy::Open as i32;
    let all = PostPolicy::AllMembers as i32;
    let cases: Vec<(pb::CreateGroupRequest, &str)> = vec![
        (pb::CreateGroupRequest { kind: 0, ..good.clone() }, "kind"),
        (pb::CreateGroupRequest { kind: 99, ..good.clone() }, "kind"),
        (pb::CreateGroupRequest { kind: -1, ..good.clone() }, "kind"),
        (create_request(GroupKind::Chat, ""), "title"),
        (create_request(GroupKind::Chat, "   "), "title"),
        (create_request(GroupKind::Chat, "\t\n "), "title"),
        (create_request(GroupKind::Chat, &"x".repeat(129)), "title"),
        (create_request(GroupKind::Chat, "bell\u{7}"), "title"),
        (create_request(GroupKind::Chat, "nul\u{0}"), "title"),
        (pb::CreateGroupRequest { description: "d".repeat(2_049), ..good.clone() }, "description"),
        (pb::CreateGroupRequest { description: "esc\u{1b}[0m".to_owned(), ..good.clone() }, "description"),
        (pb::CreateGroupRequest { avatar_ref: "a".repeat(513), ..good.clone() }, "avatar_ref"),
        (with_settings(0, 0, all), "settings.join_policy"),
        (with_settings(99, 0, all), "settings.join_policy"),
        (with_settings(open, 0, 0), "settings.post_policy"),
        (with_settings(open, 0, 3), "settings.post_policy"),
        (with_settings(open, -1, all), "settings.slow_mode_seconds"),
        (with_settings(open, 86_401, all), "settings.slow_mode_seconds"),
    ];
    for (bad, field) in cases {
        let status = expect_exact_violations(client.create_group(as_user(1, bad.clone())).await, &[field]);
        assert!(status.message().contains(field), "the message names {field}: {status:?}");
    }
    let everything_wrong = pb::CreateGroupRequest {
        kind: 0,
        title: String::new(),
        description: "d".repeat(2_049),
        avatar_ref: "a".repeat(513),
        settings: Some(pb::GroupSettings {
            join_policy: 0,
            slow_mode_seconds: -1,
            history_visible_to_new_members: false,
            post_policy: 0,
            min_follow_age_seconds: 0,
        }),
    };
    let refused = client.create_group(as_user(1, everything_wrong)).await;
    let every_field = [
        "kind",
        "title",
        "description",
        "avatar_ref",
        "settings.join_policy",
        "settings.slow_mode_seconds",
        "settings.post_policy",
    ];
    expect_exact_violations(refused, &every_field);
    assert_eq!(outbox_len(&service).await, 0, "no refused creation left a row");

    let at_the_limits = pb::CreateGroupRequest {
        kind: GroupKind::Community as i32,
        title: "é".repeat(128),
        description: "d\n\t".repeat(682) + "dd",
        avatar_ref: "a".repeat(512),
        settings: Some(pb::GroupSettings {
            join_policy: open,
            slow_mode_seconds: 86_400,
            history_visible_to_new_members: true,
            post_policy: all,
            min_follow_age_seconds: 0,
        }),
    };
    client.create_group(as_user(1, at_the_limits)).await.expect("limits are inclusive, in characters");
}

async fn update_settings_names_each_bad_field(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group = create(&mut client, 1, GroupKind::Community).await;
    let group_id = group.group_id;
    let rows = outbox_len(&service).await;
    let update = pb::UpdateGroupSettingsRequest { group_id, ..Default::default() };
    let cases: Vec<(pb::UpdateGroupSettingsRequest, &str)> = vec![
        (pb::UpdateGroupSettingsRequest { title: Some(String::new()), ..update.clone() }, "title"),
        (pb::UpdateGroupSettingsRequest { title: Some("  \t".to_owned()), ..update.clone() }, "title"),
        (pb::UpdateGroupSettingsRequest { title: Some("y".repeat(129)), ..update.clone() }, "title"),
        (pb::UpdateGroupSettingsRequest { description: Some("d".repeat(2_049)), ..update.clone() }, "description"),
        (pb::UpdateGroupSettingsRequest { avatar_ref: Some("a".repeat(513)), ..update.clone() }, "avatar_ref"),
        (pb::UpdateGroupSettingsRequest { join_policy: Some(0), ..update.clone() }, "join_policy"),
        (pb::UpdateGroupSettingsRequest { join_policy: Some(99), ..update.clone() }, "join_policy"),
        (pb::UpdateGroupSettingsRequest { post_policy: Some(0), ..update.clone() }, "post_policy"),
        (pb::UpdateGroupSettingsRequest { post_policy: Some(-4), ..update.clone() }, "post_policy"),
        (pb::UpdateGroupSettingsRequest { slow_mode_seconds: Some(-1), ..update.clone() }, "slow_mode_seconds"),
        (pb::UpdateGroupSettingsRequest { slow_mode_seconds: Some(86_401), ..update.clone() }, "slow_mode_seconds"),
    ];
    for (bad, field) in cases {
        expect_exact_violations(client.update_group_settings(as_user(1, bad)).await, &[field]);
    }
    let several = pb::UpdateGroupSettingsRequest {
        group_id: 0,
        title: Some(String::new()),
        slow_mode_seconds: Some(-1),
        ..Default::default()
    };
    let refused = client.update_group_settings(as_user(1, several)).await;
    expect_exact_violations(refused, &["group_id", "title", "slow_mode_seconds"]);
    let half_good = pb::UpdateGroupSettingsRequest { title: Some("fine".to_owned()), post_policy: Some(7), ..update };
    expect_field_violation(client.update_group_settings(as_user(1, half_good)).await, "post_policy");
    assert_eq!(get(&mut client, 1, group_id).await, group, "no part of a refused update applied");
    assert_eq!(outbox_len(&service).await, rows);
}

async fn group_ids_must_be_positive_on_every_rpc(storage: Storage) {
    let (service, mut client) = start(storage).await;
    create(&mut client, 1, GroupKind::Community).await;
    let rows = outbox_len(&service).await;
    for bad in [0, -1, i64::MIN] {
        for (method, outcome) in call_every_rpc(&mut client, Some("1"), bad).await {
            match method {
                "create_group" | "list_user_groups" | "revoke_invite" | "join_with_invite" => {}
                "batch_get_groups" => {
                    expect_field_violation(outcome, "group_ids[0]");
                }
                _ => {
                    let status = expect_field_violation(outcome, "group_id");
                    assert!(status.message().contains("group_id"), "{method}: {status:?}");
                }
            }
        }
    }
    // Only the one creation per pass (`create_group` takes no group id) changed anything.
    assert_eq!(outbox_len(&service).await, rows + 3 * 2);
}

async fn user_ids_must_be_positive(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2]).await;
    let rows = outbox_len(&service).await;
    for user_id in [0, -7] {
        let until = Some(seconds_from_now(600));
        let role = Role::Admin as i32;
        let remove = client.remove_member(as_user(1, pb::RemoveMemberRequest { group_id, user_id })).await;
        expect_exact_violations(remove, &["user_id"]);
        let set_role = client.set_member_role(as_user(1, pb::SetMemberRoleRequest { group_id, user_id, role })).await;
        expect_exact_violations(set_role, &["user_id"]);
        let ban = pb::BanMemberRequest { group_id, user_id, ..Default::default() };
        expect_exact_violations(client.ban_member(as_user(1, ban)).await, &["user_id"]);
        let unban = client.unban_member(as_user(1, pb::UnbanMemberRequest { group_id, user_id })).await;
        expect_exact_violations(unban, &["user_id"]);
        let mute = client.mute_member(as_user(1, pb::MuteMemberRequest { group_id, user_id, until })).await;
        expect_exact_violations(mute, &["user_id"]);
        let unmute = client.unmute_member(as_user(1, pb::UnmuteMemberRequest { group_id, user_id })).await;
        expect_exact_violations(unmute, &["user_id"]);
        let approve = pb::ApproveJoinRequestRequest { group_id, user_id };
        expect_exact_violations(client.approve_join_request(as_user(1, approve)).await, &["user_id"]);
        let reject = pb::RejectJoinRequestRequest { group_id, user_id };
        expect_exact_violations(client.reject_join_request(as_user(1, reject)).await, &["user_id"]);
        let transfer = pb::TransferOwnershipRequest { group_id, new_owner_user_id: user_id };
        expect_exact_violations(client.transfer_ownership(as_user(1, transfer)).await, &["new_owner_user_id"]);
    }
    let negative = pb::GetMembershipRequest { group_id, user_id: -2 };
    expect_exact_violations(client.get_membership(as_user(1, negative)).await, &["user_id"]);
    let both = pb::RemoveMemberRequest { group_id: -1, user_id: 0 };
    expect_exact_violations(client.remove_member(as_user(1, both)).await, &["group_id", "user_id"]);
    assert_eq!(outbox_len(&service).await, rows);
    assert_eq!(get(&mut client, 1, group_id).await.member_count, 2);
}

async fn id_batches_hold_one_to_one_hundred_positive_ids(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    let rows = outbox_len(&service).await;
    let add_request = |user_ids: Vec<i64>| pb::AddMembersRequest { group_id, user_ids };
    let hundred_and_one: Vec<i64> = (2..=102).collect();

    expect_exact_violations(client.add_members(as_user(1, add_request(vec![]))).await, &["user_ids"]);
    let too_many = client.add_members(as_user(1, add_request(hundred_and_one.clone()))).await;
    expect_exact_violations(too_many, &["user_ids"]);
    let bad_entries = client.add_members(as_user(1, add_request(vec![2, 0, -3]))).await;
    expect_exact_violations(bad_entries, &["user_ids[1]", "user_ids[2]"]);
    assert_eq!(outbox_len(&service).await, rows, "nobody was added");
    assert_eq!(get(&mut client, 1, group_id).await.member_count, 1);

    let hundred = client.add_members(as_user(1, add_request((2..=101).collect()))).await;
    assert_eq!(hundred.expect("100 ids are allowed").into_inner().added.len(), 100);

    let batch = |group_ids: Vec<i64>| pb::BatchGetGroupsRequest { group_ids };
    expect_exact_violations(client.batch_get_groups(as_user(1, batch(vec![]))).await, &["group_ids"]);
    expect_exact_violations(client.batch_get_groups(as_user(1, batch(hundred_and_one))).await, &["group_ids"]);
    let bad_entries = client.batch_get_groups(as_user(1, batch(vec![group_id, -1]))).await;
    expect_exact_violations(bad_entries, &["group_ids[1]"]);
    let hundred_unknown: Vec<i64> = (group_id + 1..=group_id + 100).collect();
    let read = client.batch_get_groups(as_user(1, batch(hundred_unknown))).await.expect("100 ids are allowed");
    assert_eq!(read.into_inner().missing_group_ids.len(), 100);
}

async fn enums_must_be_known_and_specified(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2]).await;
    let rows = outbox_len(&service).await;
    for role in [0, 99, -1] {
        let request = pb::SetMemberRoleRequest { group_id, user_id: 2, role };
        expect_exact_violations(client.set_member_role(as_user(1, request)).await, &["role"]);
    }
    let as_owner = pb::SetMemberRoleRequest { group_id, user_id: 2, role: Role::Owner as i32 };
    let status = expect_exact_violations(client.set_member_role(as_user(1, as_owner)).await, &["role"]);
    assert!(status.message().contains("TransferOwnership"), "{status:?}");
    for role in [99, 4] {
        let request = pb::ListMembersRequest { group_id, role, ..Default::default() };
        expect_exact_violations(client.list_members(as_user(1, request)).await, &["role"]);
    }
    assert_eq!(outbox_len(&service).await, rows);
    assert_eq!(fanfare_tests::groups::role_of(&mut client, group_id, 2).await, Some(Role::Member));
}

async fn page_sizes_and_tokens_are_checked_on_every_list(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    create(&mut client, 1, GroupKind::Community).await;
    add(&mut client, 1, group_id, &[2, 3]).await;
    let user_groups_page = pb::ListUserGroupsRequest { page_size: 1, page_token: String::new() };
    let two_part_token = client.list_user_groups(as_user(1, user_groups_page)).await.expect("a page");
    let two_part_token = two_part_token.into_inner().next_page_token;
    let members_page = pb::ListMembersRequest { group_id, page_size: 1, ..Default::default() };
    let one_part_token = client.list_members(as_user(1, members_page)).await.expect("a page");
    let one_part_token = one_part_token.into_inner().next_page_token;
    assert!(!two_part_token.is_empty() && !one_part_token.is_empty());

    for page_size in [-1, 1_001, i32::MIN, i32::MAX] {
        let results = list_everything(&mut client, group_id, page_size, "").await;
        for (method, outcome) in results {
            let status = expect_exact_violations(outcome, &["page_size"]);
            assert!(status.message().contains("1000"), "{method} names the bounds: {status:?}");
        }
    }
    for page_size in [0, 1, 1_000] {
        for (method, outcome) in list_everything(&mut client, group_id, page_size, "").await {
            outcome.unwrap_or_else(|status| panic!("{method} page_size {page_size}: {status:?}"));
        }
    }
    let zero_user_token = format!("1{:016x}", 0);
    let foreign_tokens = ["garbage", "1", "2", "1zzzzzzzzzzzzzzzz", "é", &zero_user_token];
    for token in foreign_tokens {
        for (method, outcome) in list_everything(&mut client, group_id, 0, token).await {
            let status = expect_exact_violations(outcome, &["page_token"]);
            assert!(!status.message().is_empty(), "{method}");
        }
    }
    // A token of one method is refused by a method keyed differently.
    let members = pb::ListMembersRequest { group_id, page_token: two_part_token.clone(), ..Default::default() };
    expect_exact_violations(client.list_members(as_user(1, members)).await, &["page_token"]);
    let user_groups = pb::ListUserGroupsRequest { page_size: 0, page_token: one_part_token.clone() };
    expect_exact_violations(client.list_user_groups(as_user(1, user_groups)).await, &["page_token"]);
    let requests = pb::ListJoinRequestsRequest { group_id, page_size: 0, page_token: one_part_token };
    expect_exact_violations(client.list_join_requests(as_user(1, requests)).await, &["page_token"]);
    let both = pb::ListBansRequest { group_id, page_size: -1, page_token: two_part_token };
    expect_exact_violations(client.list_bans(as_user(1, both)).await, &["page_size", "page_token"]);
}

/// Calls the four paged listings as the owner of `group_id`.
async fn list_everything(
    client: &mut Client,
    group_id: i64,
    page_size: i32,
    token: &str,
) -> Vec<(&'static str, Result<(), Status>)> {
    let page_token = token.to_owned();
    let members = pb::ListMembersRequest { group_id, page_size, page_token: page_token.clone(), role: 0 };
    let user_groups = pb::ListUserGroupsRequest { page_size, page_token: page_token.clone() };
    let bans = pb::ListBansRequest { group_id, page_size, page_token: page_token.clone() };
    let requests = pb::ListJoinRequestsRequest { group_id, page_size, page_token };
    vec![
        ("list_members", client.list_members(as_user(1, members)).await.map(drop)),
        ("list_user_groups", client.list_user_groups(as_user(1, user_groups)).await.map(drop)),
        ("list_bans", client.list_bans(as_user(1, bans)).await.map(drop)),
        ("list_join_requests", client.list_join_requests(as_user(1, requests)).await.map(drop)),
    ]
}

async fn times_must_be_in_the_future_and_reasons_bounded(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2]).await;
    let rows = outbox_len(&service).await;
    let past = Some(seconds_from_now(-60));
    let broken = Some(Timestamp { seconds: seconds_from_now(60).seconds, nanos: -1 });

    for (until, reason, fields) in [
        (past, String::new(), vec!["until"]),
        (broken, String::new(), vec!["until"]),
        (None, "r".repeat(513), vec!["reason"]),
        (None, "bell\u{7}".to_owned(), vec!["reason"]),
        (past, "r".repeat(513), vec!["reason", "until"]),
    ] {
        let ban = pb::BanMemberRequest { group_id, user_id: 2, reason, until };
        expect_exact_violations(client.ban_member(as_user(1, ban)).await, &fields);
    }
    for until in [None, past, broken] {
        let mute = pb::MuteMemberRequest { group_id, user_id: 2, until };
        expect_exact_violations(client.mute_member(as_user(1, mute)).await, &["until"]);
    }
    let member = fanfare_tests::groups::membership(&mut client, group_id, 2).await.expect("still a member");
    assert_eq!(member.muted_until, None);
    let listed = client.list_bans(as_user(1, pb::ListBansRequest { group_id, ..Default::default() })).await;
    assert!(listed.expect("listed").into_inner().bans.is_empty());
    assert_eq!(outbox_len(&service).await, rows);

    let longest_reason = pb::BanMemberRequest { group_id, user_id: 2, reason: "r".repeat(512), until: None };
    client.ban_member(as_user(1, longest_reason)).await.expect("512 characters are allowed");
}

async fn invite_lifetimes_uses_and_codes_are_checked(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    let rows = outbox_len(&service).await;
    let cases: [(i64, i32, &[&str]); 7] = [
        (59, 0, &["ttl_seconds"]),
        (-1, 0, &["ttl_seconds"]),
        (2_592_001, 0, &["ttl_seconds"]),
        (i64::MAX, 0, &["ttl_seconds"]),
        (0, -1, &["max_uses"]),
        (0, 100_001, &["max_uses"]),
        (1, i32::MIN, &["ttl_seconds", "max_uses"]),
    ];
    for (ttl_seconds, max_uses, fields) in cases {
        let request = pb::CreateInviteRequest { group_id, ttl_seconds, max_uses };
        expect_exact_violations(client.create_invite(as_user(1, request)).await, fields);
    }
    let no_group = pb::CreateInviteRequest { group_id: 0, ttl_seconds: 0, max_uses: 0 };
    expect_exact_violations(client.create_invite(as_user(1, no_group)).await, &["group_id"]);

    let seventeen = format!("{SOME_CODE}2");
    for code in
        ["", "short", &seventeen, "0000000000000000", "abcdefghjkmnpq s", "abcdefghjkmnpqr!", "ABCDEFGHJKLMNPQé"]
    {
        let redeem = pb::JoinWithInviteRequest { code: code.to_owned() };
        expect_exact_violations(client.join_with_invite(as_user(2, redeem)).await, &["code"]);
        let revoke = pb::RevokeInviteRequest { code: code.to_owned() };
        expect_exact_violations(client.revoke_invite(as_user(1, revoke)).await, &["code"]);
    }
    assert_eq!(outbox_len(&service).await, rows);
    assert_eq!(fanfare_tests::groups::membership(&mut client, group_id, 2).await, None);
    let unknown = client.join_with_invite(as_user(2, pb::JoinWithInviteRequest { code: SOME_CODE.to_owned() })).await;
    expect_code(unknown, Code::NotFound);
}
