//! Joining, leaving, adding and removing members, the member and user-group limits, and
//! who may read whose membership (docs/groups.md, "Joining", "Visibility", "Limits").

use fanfare_core::status::{ErrorReason, reason_of};
use fanfare_proto::common::v1::{GroupKind, JoinPolicy, Role};
use fanfare_proto::groups::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{
    Client, add, change_names, create, create_with_policy, events, expect_precondition, expect_quota_failure, get,
    invite, membership, outbox_len, role_of, set_role, start, start_with,
};
use fanfare_tests::{error_metadata, expect_code, expect_reason, on_every_storage};
use tonic::Code;

on_every_storage!(
    join_outcomes_follow_the_join_policy,
    banned_users_cannot_join,
    members_leave_and_may_rejoin,
    the_owner_leaves_only_after_transferring,
    add_members_reports_existing_members_and_counts_repeats_once,
    who_may_add_members,
    add_members_adds_nobody_when_one_user_is_banned,
    the_member_limit_is_resource_exhausted_and_all_or_none,
    the_user_group_limit_is_resource_exhausted,
    removed_members_may_rejoin,
    who_may_read_members_and_memberships,
    member_counts_stay_exact_for_every_kind,
);

async fn join(client: &mut Client, user: i64, group_id: i64) -> Result<pb::JoinGroupResponse, tonic::Status> {
    let response = client.join_group(as_user(user, pb::JoinGroupRequest { group_id })).await;
    response.map(tonic::Response::into_inner)
}

async fn pending_requests(client: &mut Client, moderator: i64, group_id: i64) -> Vec<i64> {
    let request = pb::ListJoinRequestsRequest { group_id, ..Default::default() };
    let listed = client.list_join_requests(as_user(moderator, request)).await.expect("listed");
    listed.into_inner().join_requests.iter().map(|pending| pending.user_id).collect()
}

async fn join_outcomes_follow_the_join_policy(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let open = create(&mut client, 1, GroupKind::Community).await.group_id;

    let joined = join(&mut client, 2, open).await.expect("joined");
    assert_eq!(joined.outcome, pb::JoinOutcome::Joined as i32);
    let first = joined.membership.expect("the new membership");
    assert_eq!((first.group_id, first.user_id, first.role), (open, 2, Role::Member as i32));
    let rows_after_join = outbox_len(&service).await;
    let again = join(&mut client, 2, open).await.expect("idempotent");
    assert_eq!(again.outcome, pb::JoinOutcome::AlreadyMember as i32);
    assert_eq!(again.membership, Some(first));
    assert_eq!(outbox_len(&service).await, rows_after_join, "joining twice changes nothing");
    let owner = join(&mut client, 1, open).await.expect("the owner is a member");
    assert_eq!(owner.outcome, pb::JoinOutcome::AlreadyMember as i32);
    assert_eq!(owner.membership.expect("a membership").role, Role::Owner as i32);
    assert_eq!(get(&mut client, 1, open).await.member_count, 2);

    let community = GroupKind::Community;
    let invite_only = create_with_policy(&mut client, 1, community, JoinPolicy::InviteOnly).await.group_id;
    expect_reason(join(&mut client, 2, invite_only).await, Code::PermissionDenied, ErrorReason::InviteRequired);
    assert_eq!(membership(&mut client, invite_only, 2).await, None);

    let approval = create_with_policy(&mut client, 1, community, JoinPolicy::Approval).await.group_id;
    for _ in 0..2 {
        let pending = join(&mut client, 2, approval).await.expect("a request is filed");
        assert_eq!(pending.outcome, pb::JoinOutcome::PendingApproval as i32);
        assert_eq!(pending.membership, None);
    }
    assert_eq!(pending_requests(&mut client, 1, approval).await, vec![2], "filed once");
    assert_eq!(membership(&mut client, approval, 2).await, None);

    let followers = create_with_policy(&mut client, 1, community, JoinPolicy::FollowersOnly).await.group_id;
    let refused = join(&mut client, 2, followers).await;
    let status = expect_precondition(refused, "FOLLOWERS_ONLY_UNAVAILABLE");
    assert!(status.message().contains("invite"), "says how to join meanwhile: {status:?}");
    assert_eq!(membership(&mut client, followers, 2).await, None);

    let broadcast = GroupKind::Broadcast;
    let channel = create(&mut client, 1, broadcast).await.group_id;
    let joined = join(&mut client, 2, channel).await.expect("open broadcast");
    assert_eq!(joined.outcome, pb::JoinOutcome::Joined as i32);
    let followers_channel = create_with_policy(&mut client, 1, broadcast, JoinPolicy::FollowersOnly).await;
    let refused = join(&mut client, 2, followers_channel.group_id).await;
    expect_precondition(refused, "FOLLOWERS_ONLY_UNAVAILABLE");
    let invite_channel = create_with_policy(&mut client, 1, broadcast, JoinPolicy::InviteOnly).await;
    expect_code(join(&mut client, 2, invite_channel.group_id).await, Code::PermissionDenied);

    let chat = create(&mut client, 1, GroupKind::Chat).await.group_id;
    let hidden = join(&mut client, 2, chat).await;
    expect_reason(hidden, Code::NotFound, ErrorReason::GroupNotFound);
    let unknown = join(&mut client, 2, chat + 1_000).await;
    expect_reason(unknown, Code::NotFound, ErrorReason::GroupNotFound);
}

async fn banned_users_cannot_join(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let open = create(&mut client, 1, GroupKind::Community).await.group_id;
    let forever = pb::BanMemberRequest { group_id: open, user_id: 2, ..Default::default() };
    client.ban_member(as_user(1, forever)).await.expect("banned");
    let for_an_hour = pb::BanMemberRequest {
        group_id: open,
        user_id: 3,
        reason: "cool off".to_owned(),
        until: Some(fanfare_tests::groups::seconds_from_now(3_600)),
    };
    client.ban_member(as_user(1, for_an_hour)).await.expect("banned");

    let banned = expect_reason(join(&mut client, 2, open).await, Code::PermissionDenied, ErrorReason::Banned);
    assert_eq!(error_metadata(&banned, "group_id"), open.to_string());
    expect_reason(join(&mut client, 3, open).await, Code::PermissionDenied, ErrorReason::Banned);
    assert_eq!(get(&mut client, 1, open).await.member_count, 1);

    let unban = pb::UnbanMemberRequest { group_id: open, user_id: 2 };
    client.unban_member(as_user(1, unban)).await.expect("unbanned");
    let joined = join(&mut client, 2, open).await.expect("joins once unbanned");
    assert_eq!(joined.outcome, pb::JoinOutcome::Joined as i32);

    let approval = create_with_policy(&mut client, 1, GroupKind::Community, JoinPolicy::Approval).await;
    let ban = pb::BanMemberRequest { group_id: approval.group_id, user_id: 4, ..Default::default() };
    client.ban_member(as_user(1, ban)).await.expect("banned");
    expect_code(join(&mut client, 4, approval.group_id).await, Code::PermissionDenied);
    assert!(pending_requests(&mut client, 1, approval.group_id).await.is_empty());
}

async fn members_leave_and_may_rejoin(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    join(&mut client, 2, group_id).await.expect("joined");
    assert_eq!(get(&mut client, 1, group_id).await.member_count, 2);

    client.leave_group(as_user(2, pb::LeaveGroupRequest { group_id })).await.expect("left");
    assert_eq!(membership(&mut client, group_id, 2).await, None);
    assert_eq!(get(&mut client, 1, group_id).await.member_count, 1);
    assert_eq!(change_names(&events(&service).await).last(), Some(&"left"));

    let rows = outbox_len(&service).await;
    let again = client.leave_group(as_user(2, pb::LeaveGroupRequest { group_id })).await;
    expect_code(again, Code::PermissionDenied);
    assert_eq!(outbox_len(&service).await, rows);

    let rejoined = join(&mut client, 2, group_id).await.expect("rejoined");
    assert_eq!(rejoined.outcome, pb::JoinOutcome::Joined as i32);
}

async fn the_owner_leaves_only_after_transferring(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2]).await;

    let refused = client.leave_group(as_user(1, pb::LeaveGroupRequest { group_id })).await;
    expect_reason(refused, Code::FailedPrecondition, ErrorReason::OwnerImmovable);
    assert_eq!(role_of(&mut client, group_id, 1).await, Some(Role::Owner));

    let transfer = pb::TransferOwnershipRequest { group_id, new_owner_user_id: 2 };
    let group = client.transfer_ownership(as_user(1, transfer)).await.expect("transferred");
    assert_eq!(group.into_inner().group.expect("a group").owner_user_id, 2);
    assert_eq!(role_of(&mut client, group_id, 1).await, Some(Role::Admin), "the old owner is an admin");
    assert_eq!(role_of(&mut client, group_id, 2).await, Some(Role::Owner));

    client.leave_group(as_user(1, pb::LeaveGroupRequest { group_id })).await.expect("left");
    assert_eq!(membership(&mut client, group_id, 1).await, None);
    let new_owner = client.leave_group(as_user(2, pb::LeaveGroupRequest { group_id })).await;
    expect_code(new_owner, Code::FailedPrecondition);
}

async fn add_members_reports_existing_members_and_counts_repeats_once(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;

    let first = add(&mut client, 1, group_id, &[2, 3, 2]).await;
    let added: Vec<(i64, i32)> = first.added.iter().map(|member| (member.user_id, member.role)).collect();
    let member = Role::Member as i32;
    assert_eq!(added, vec![(2, member), (3, member)]);
    assert!(first.already_member_user_ids.is_empty());

    let second = add(&mut client, 1, group_id, &[3, 4, 1]).await;
    let added: Vec<i64> = second.added.iter().map(|member| member.user_id).collect();
    assert_eq!(added, vec![4]);
    let mut already = second.already_member_user_ids.clone();
    already.sort_unstable();
    assert_eq!(already, vec![1, 3]);
    assert_eq!(get(&mut client, 1, group_id).await.member_count, 4);
    assert_eq!(
        change_names(&events(&service).await),
        ["created", "joined", "joined", "joined", "joined"],
        "one join per added user, none for existing members"
    );
}

async fn who_may_add_members(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let chat = create(&mut client, 1, GroupKind::Chat).await.group_id;
    add(&mut client, 1, chat, &[2]).await;
    add(&mut client, 2, chat, &[3]).await;
    assert!(membership(&mut client, chat, 3).await.is_some(), "any chat member adds");
    let outsider = pb::AddMembersRequest { group_id: chat, user_ids: vec![4] };
    expect_code(client.add_members(as_user(9, outsider)).await, Code::PermissionDenied);

    for kind in [GroupKind::Community, GroupKind::Broadcast] {
        let group_id = create(&mut client, 1, kind).await.group_id;
        add(&mut client, 1, group_id, &[2, 3]).await;
        set_role(&mut client, 1, group_id, 2, Role::Admin).await;
        for refused_actor in [3, 9] {
            let request = pb::AddMembersRequest { group_id, user_ids: vec![4] };
            let refused = client.add_members(as_user(refused_actor, request)).await;
            expect_code(refused, Code::PermissionDenied);
        }
        assert_eq!(membership(&mut client, group_id, 4).await, None, "{kind:?}");
        add(&mut client, 2, group_id, &[4]).await;
        assert!(membership(&mut client, group_id, 4).await.is_some(), "{kind:?}: admins add");
    }
}

async fn add_members_adds_nobody_when_one_user_is_banned(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    let ban = pb::BanMemberRequest { group_id, user_id: 5, ..Default::default() };
    client.ban_member(as_user(1, ban)).await.expect("banned");
    let rows = outbox_len(&service).await;

    let batch = pb::AddMembersRequest { group_id, user_ids: vec![2, 5, 3] };
    expect_code(client.add_members(as_user(1, batch)).await, Code::PermissionDenied);
    for user in [2, 3, 5] {
        assert_eq!(membership(&mut client, group_id, user).await, None, "user {user}");
    }
    assert_eq!(get(&mut client, 1, group_id).await.member_count, 1);
    assert_eq!(outbox_len(&service).await, rows);
}

async fn the_member_limit_is_resource_exhausted_and_all_or_none(storage: Storage) {
    let (service, mut client) = start_with(storage, |config| {
        config.limits.chat_max_members = 3;
        config.limits.community_max_members = 3;
    })
    .await;
    let chat = create(&mut client, 1, GroupKind::Chat).await.group_id;
    assert_eq!(get(&mut client, 1, chat).await.member_limit, 3);
    let code = invite(&mut client, 1, chat, 0).await.code;
    let rows = outbox_len(&service).await;

    let too_many = pb::AddMembersRequest { group_id: chat, user_ids: vec![2, 3, 4] };
    expect_quota_failure(client.add_members(as_user(1, too_many)).await);
    assert_eq!(get(&mut client, 1, chat).await.member_count, 1, "nobody was added");
    assert_eq!(membership(&mut client, chat, 2).await, None);
    assert_eq!(outbox_len(&service).await, rows);

    add(&mut client, 1, chat, &[2, 3]).await;
    let full = pb::AddMembersRequest { group_id: chat, user_ids: vec![4] };
    let no_room = expect_quota_failure(client.add_members(as_user(1, full)).await);
    assert_eq!(reason_of(&no_room), Some(ErrorReason::GroupFull));
    let existing = add(&mut client, 1, chat, &[2]).await;
    assert_eq!(existing.already_member_user_ids, vec![2], "existing members need no room");
    let redeem = pb::JoinWithInviteRequest { code };
    expect_quota_failure(client.join_with_invite(as_user(5, redeem)).await);
    assert_eq!(membership(&mut client, chat, 5).await, None);

    let open = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, open, &[2, 3]).await;
    expect_quota_failure(join(&mut client, 4, open).await);

    let approval = create_with_policy(&mut client, 1, GroupKind::Community, JoinPolicy::Approval).await;
    let approval = approval.group_id;
    add(&mut client, 1, approval, &[2, 3]).await;
    join(&mut client, 4, approval).await.expect("a request is filed");
    let approve = pb::ApproveJoinRequestRequest { group_id: approval, user_id: 4 };
    expect_quota_failure(client.approve_join_request(as_user(1, approve)).await);
    assert_eq!(membership(&mut client, approval, 4).await, None);
    assert_eq!(pending_requests(&mut client, 1, approval).await, vec![4], "still pending");
    assert_eq!(get(&mut client, 1, approval).await.member_count, 3);
}

async fn the_user_group_limit_is_resource_exhausted(storage: Storage) {
    let (_service, mut client) = start_with(storage, |config| {
        config.limits.max_groups_per_user = 2;
    })
    .await;
    let first = create(&mut client, 1, GroupKind::Community).await.group_id;
    let second = create(&mut client, 1, GroupKind::Community).await.group_id;
    let third = pb::CreateGroupRequest {
        kind: GroupKind::Community as i32,
        title: "one too many".to_owned(),
        ..Default::default()
    };
    let limited = expect_quota_failure(client.create_group(as_user(1, third)).await);
    assert_eq!(reason_of(&limited), Some(ErrorReason::UserGroupLimit));
    let listed = client.list_user_groups(as_user(1, pb::ListUserGroupsRequest::default())).await;
    assert_eq!(listed.expect("listed").into_inner().groups.len(), 2);

    create(&mut client, 2, GroupKind::Chat).await;
    join(&mut client, 2, first).await.expect("second group of user 2");
    expect_quota_failure(join(&mut client, 2, second).await);

    let batch = pb::AddMembersRequest { group_id: second, user_ids: vec![3, 2] };
    expect_quota_failure(client.add_members(as_user(1, batch)).await);
    assert_eq!(membership(&mut client, second, 3).await, None, "all or none");

    let code = invite(&mut client, 1, second, 0).await.code;
    expect_quota_failure(client.join_with_invite(as_user(2, pb::JoinWithInviteRequest { code })).await);
    assert_eq!(membership(&mut client, second, 2).await, None);
    assert_eq!(get(&mut client, 1, second).await.member_count, 1);
}

async fn removed_members_may_rejoin(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    join(&mut client, 2, group_id).await.expect("joined");

    client.remove_member(as_user(1, pb::RemoveMemberRequest { group_id, user_id: 2 })).await.expect("removed");
    assert_eq!(membership(&mut client, group_id, 2).await, None);
    assert_eq!(get(&mut client, 1, group_id).await.member_count, 1);
    assert_eq!(change_names(&events(&service).await).last(), Some(&"removed"));

    let nobody = client.remove_member(as_user(1, pb::RemoveMemberRequest { group_id, user_id: 9 })).await;
    expect_code(nobody, Code::NotFound);
    let rejoined = join(&mut client, 2, group_id).await.expect("rejoined");
    assert_eq!(rejoined.outcome, pb::JoinOutcome::Joined as i32);
}

async fn list_members_as(client: &mut Client, actor: i64, group_id: i64) -> Result<Vec<i64>, tonic::Status> {
    let request = pb::ListMembersRequest { group_id, ..Default::default() };
    let listed = client.list_members(as_user(actor, request)).await?.into_inner();
    Ok(listed.members.iter().map(|member| member.user_id).collect())
}

async fn membership_as(client: &mut Client, actor: i64, group_id: i64, user_id: i64) -> Result<i64, tonic::Status> {
    let request = pb::GetMembershipRequest { group_id, user_id };
    let found = client.get_membership(as_user(actor, request)).await?.into_inner();
    Ok(found.membership.expect("a membership").user_id)
}

async fn who_may_read_members_and_memberships(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let chat = create(&mut client, 1, GroupKind::Chat).await.group_id;
    let community = create(&mut client, 1, GroupKind::Community).await.group_id;
    let broadcast = create(&mut client, 1, GroupKind::Broadcast).await.group_id;
    add(&mut client, 1, chat, &[2]).await;
    add(&mut client, 1, community, &[2]).await;
    add(&mut client, 1, broadcast, &[2, 3]).await;
    set_role(&mut client, 1, broadcast, 3, Role::Admin).await;

    for group_id in [chat, community] {
        assert_eq!(list_members_as(&mut client, 2, group_id).await.expect("members list"), vec![1, 2]);
        assert_eq!(membership_as(&mut client, 2, group_id, 1).await.expect("members read others"), 1);
    }
    let role_too_low = list_members_as(&mut client, 2, broadcast).await;
    expect_reason(role_too_low, Code::PermissionDenied, ErrorReason::PermissionDenied);
    expect_code(membership_as(&mut client, 2, broadcast, 3).await, Code::PermissionDenied);
    for moderator in [1, 3] {
        let listed = list_members_as(&mut client, moderator, broadcast).await;
        assert_eq!(listed.expect("moderators list the audience"), vec![1, 2, 3]);
        assert_eq!(membership_as(&mut client, moderator, broadcast, 2).await.expect("read"), 2);
    }
    for own in [0, 2] {
        assert_eq!(membership_as(&mut client, 2, broadcast, own).await.expect("one's own"), 2);
    }

    // The same codes, told apart by their reasons: not a member of a group one may see, and
    // a group one may not see (or that does not exist).
    let outsider = expect_reason(
        list_members_as(&mut client, 9, community).await,
        Code::PermissionDenied,
        ErrorReason::NotAMember,
    );
    assert_eq!(error_metadata(&outsider, "user_id"), "9");
    expect_code(membership_as(&mut client, 9, community, 1).await, Code::PermissionDenied);
    expect_reason(list_members_as(&mut client, 9, chat).await, Code::NotFound, ErrorReason::GroupNotFound);
    expect_code(membership_as(&mut client, 9, chat, 1).await, Code::NotFound);
    let chat_bans = pb::ListBansRequest { group_id: chat, ..Default::default() };
    expect_code(client.list_bans(as_user(9, chat_bans)).await, Code::NotFound);
    let chat_requests = pb::ListJoinRequestsRequest { group_id: chat, ..Default::default() };
    expect_code(client.list_join_requests(as_user(9, chat_requests)).await, Code::NotFound);
    expect_code(membership_as(&mut client, 9, community, 0).await, Code::NotFound);
    expect_reason(membership_as(&mut client, 1, community, 9).await, Code::NotFound, ErrorReason::MemberNotFound);
}

async fn member_counts_stay_exact_for_every_kind(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    for kind in [GroupKind::Chat, GroupKind::Community, GroupKind::Broadcast] {
        let group_id = create(&mut client, 1, kind).await.group_id;
        add(&mut client, 1, group_id, &[2, 3, 4, 5, 6]).await;
        assert_eq!(get(&mut client, 1, group_id).await.member_count, 6, "{kind:?}");
        client.leave_group(as_user(2, pb::LeaveGroupRequest { group_id })).await.expect("left");
        let remove = pb::RemoveMemberRequest { group_id, user_id: 3 };
        client.remove_member(as_user(1, remove)).await.expect("removed");
        let ban = pb::BanMemberRequest { group_id, user_id: 4, ..Default::default() };
        client.ban_member(as_user(1, ban)).await.expect("banned");
        let ban_outsider = pb::BanMemberRequest { group_id, user_id: 40, ..Default::default() };
        client.ban_member(as_user(1, ban_outsider)).await.expect("banned");
        let group = get(&mut client, 1, group_id).await;
        assert_eq!(group.member_count, 3, "{kind:?}: a ban of a non-member counts nobody");
        assert_eq!(list_members_as(&mut client, 1, group_id).await.expect("listed"), vec![1, 5, 6]);
    }
}
