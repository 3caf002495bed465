//! Groups through their life: each kind's defaults and allowed settings, settings changes
//! and who may make them, who may see which group, and archiving (docs/groups.md, "Kinds,
//! defaults and allowed settings", "Visibility" and "Limits and errors").

use fanfare_proto::common::v1::{GroupKind, JoinPolicy, PostPolicy, Role};
use fanfare_proto::groups::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{
    add, create, create_with_policy, events, expect_precondition, get, invite, outbox_len, role_of, set_role, settings,
    start,
};
use fanfare_tests::{expect_code, expect_field_violation, on_every_storage};
use tonic::Code;

on_every_storage!(
    creates_each_kind_with_its_defaults,
    create_accepts_the_settings_each_kind_allows,
    create_refuses_settings_the_kind_does_not_allow,
    update_changes_only_the_given_fields,
    update_refuses_settings_the_kind_does_not_allow,
    only_owners_and_admins_update_settings,
    only_the_owner_archives,
    chat_groups_are_private_to_their_members,
    community_and_broadcast_groups_are_discoverable,
    batch_get_keeps_the_order_asked_and_reports_missing_ids,
    an_archived_group_refuses_every_change,
);

async fn creates_each_kind_with_its_defaults(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let expectations = [
        (GroupKind::Chat, JoinPolicy::InviteOnly, PostPolicy::AllMembers, 32),
        (GroupKind::Community, JoinPolicy::Open, PostPolicy::AllMembers, 1_000),
        (GroupKind::Broadcast, JoinPolicy::Open, PostPolicy::AdminsOnly, 0),
    ];
    for (kind, join_policy, post_policy, member_limit) in expectations {
        let request = pb::CreateGroupRequest {
            kind: kind as i32,
            title: "Weekend plans ✨".to_owned(),
            description: "line one\nline\ttwo".to_owned(),
            avatar_ref: "media/avatars/1.png".to_owned(),
            settings: None,
        };
        let response = client.create_group(as_user(7, request)).await;
        let group = response.expect("created").into_inner().group.expect("a group");
        assert!(group.group_id > 0);
        assert_eq!(group.kind, kind as i32);
        assert_eq!(group.title, "Weekend plans ✨");
        assert_eq!(group.description, "line one\nline\ttwo");
        assert_eq!(group.avatar_ref, "media/avatars/1.png");
        assert_eq!(group.owner_user_id, 7);
        assert_eq!(group.member_count, 1, "the creator is the first member");
        assert_eq!(group.member_limit, member_limit, "{kind:?}");
        assert!(group.created_at.is_some());
        assert_eq!(group.archived_at, None);
        let defaults = group.settings.expect("settings");
        assert_eq!(defaults.join_policy, join_policy as i32, "{kind:?}");
        assert_eq!(defaults.post_policy, post_policy as i32, "{kind:?}");
        assert_eq!(defaults.slow_mode_seconds, 0);
        assert_eq!(role_of(&mut client, group.group_id, 7).await, Some(Role::Owner));
        assert_eq!(get(&mut client, 7, group.group_id).await, group, "reads back unchanged");
    }
    assert_eq!(outbox_len(&service).await, 6, "created + creator joined, per group");
}

async fn create_accepts_the_settings_each_kind_allows(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let allowed = [
        (GroupKind::Chat, JoinPolicy::InviteOnly, PostPolicy::AllMembers),
        (GroupKind::Chat, JoinPolicy::InviteOnly, PostPolicy::AdminsOnly),
        (GroupKind::Community, JoinPolicy::Open, PostPolicy::AllMembers),
        (GroupKind::Community, JoinPolicy::FollowersOnly, PostPolicy::AllMembers),
        (GroupKind::Community, JoinPolicy::InviteOnly, PostPolicy::AdminsOnly),
        (GroupKind::Community, JoinPolicy::Approval, PostPolicy::AllMembers),
        (GroupKind::Broadcast, JoinPolicy::Open, PostPolicy::AdminsOnly),
        (GroupKind::Broadcast, JoinPolicy::FollowersOnly, PostPolicy::AdminsOnly),
        (GroupKind::Broadcast, JoinPolicy::InviteOnly, PostPolicy::AdminsOnly),
    ];
    for (kind, join_policy, post_policy) in allowed {
        let wanted = pb::GroupSettings {
            join_policy: join_policy as i32,
            slow_mode_seconds: 30,
            history_visible_to_new_members: false,
            post_policy: post_policy as i32,
            min_follow_age_seconds: 0,
        };
        let request = pb::CreateGroupRequest {
            kind: kind as i32,
            title: "t".to_owned(),
            settings: Some(wanted),
            ..Default::default()
        };
        let response = client.create_group(as_user(1, request)).await;
        let group = response.unwrap_or_else(|status| panic!("{kind:?} {join_policy:?}: {status:?}"));
        assert_eq!(group.into_inner().group.expect("a group").settings, Some(wanted));
    }
}

async fn create_refuses_settings_the_kind_does_not_allow(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let refused = [
        (GroupKind::Chat, JoinPolicy::Open, PostPolicy::AllMembers, "settings.join_policy"),
        (GroupKind::Chat, JoinPolicy::FollowersOnly, PostPolicy::AllMembers, "settings.join_policy"),
        (GroupKind::Chat, JoinPolicy::Approval, PostPolicy::AllMembers, "settings.join_policy"),
        (GroupKind::Broadcast, JoinPolicy::Approval, PostPolicy::AdminsOnly, "settings.join_policy"),
        (GroupKind::Broadcast, JoinPolicy::Open, PostPolicy::AllMembers, "settings.post_policy"),
    ];
    for (kind, join_policy, post_policy, field) in refused {
        let request = pb::CreateGroupRequest {
            kind: kind as i32,
            title: "t".to_owned(),
            settings: Some(settings(join_policy, post_policy)),
            ..Default::default()
        };
        expect_field_violation(client.create_group(as_user(1, request)).await, field);
    }
    assert_eq!(outbox_len(&service).await, 0, "refused creations leave no outbox rows");
    let listed =
        client.list_user_groups(as_user(1, pb::ListUserGroupsRequest::default())).await.expect("listed").into_inner();
    assert!(listed.groups.is_empty(), "refused creations leave no groups");
}

async fn update_changes_only_the_given_fields(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group = create(&mut client, 1, GroupKind::Community).await;
    let group_id = group.group_id;

    let retitle = pb::UpdateGroupSettingsRequest { group_id, title: Some("Renamed".to_owned()), ..Default::default() };
    let renamed = client.update_group_settings(as_user(1, retitle)).await.expect("updated");
    let renamed = renamed.into_inner().group.expect("a group");
    assert_eq!(renamed.title, "Renamed");
    assert_eq!(renamed.description, group.description);
    assert_eq!(renamed.settings, group.settings, "unset fields stay as they are");

    let everything = pb::UpdateGroupSettingsRequest {
        group_id,
        title: None,
        description: Some("About us".to_owned()),
        avatar_ref: Some("media/a.png".to_owned()),
        join_policy: Some(JoinPolicy::Approval as i32),
        slow_mode_seconds: Some(60),
        history_visible_to_new_members: Some(false),
        post_policy: Some(PostPolicy::AdminsOnly as i32),
        min_follow_age_seconds: None,
    };
    let changed = client.update_group_settings(as_user(1, everything)).await.expect("updated");
    let changed = changed.into_inner().group.expect("a group");
    let expected_settings = pb::GroupSettings {
        join_policy: JoinPolicy::Approval as i32,
        slow_mode_seconds: 60,
        history_visible_to_new_members: false,
        post_policy: PostPolicy::AdminsOnly as i32,
        min_follow_age_seconds: 0,
    };
    assert_eq!(changed.title, "Renamed");
    assert_eq!(changed.description, "About us");
    assert_eq!(changed.avatar_ref, "media/a.png");
    assert_eq!(changed.settings, Some(expected_settings));
    assert_eq!(get(&mut client, 1, group_id).await, changed, "the change is stored");

    let rows_before = outbox_len(&service).await;
    let nothing = pb::UpdateGroupSettingsRequest { group_id, ..Default::default() };
    let unchanged = client.update_group_settings(as_user(1, nothing)).await.expect("accepted");
    assert_eq!(unchanged.into_inner().group, Some(changed));
    assert_eq!(outbox_len(&service).await, rows_before, "an empty update changes nothing");
}

async fn update_refuses_settings_the_kind_does_not_allow(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let chat = create(&mut client, 1, GroupKind::Chat).await;
    let broadcast = create(&mut client, 1, GroupKind::Broadcast).await;
    let rows_before = outbox_len(&service).await;
    let refused = [
        (chat.group_id, Some(JoinPolicy::Open), None, "join_policy"),
        (chat.group_id, Some(JoinPolicy::Approval), None, "join_policy"),
        (broadcast.group_id, Some(JoinPolicy::Approval), None, "join_policy"),
        (broadcast.group_id, None, Some(PostPolicy::AllMembers), "post_policy"),
    ];
    for (group_id, join_policy, post_policy, field) in refused {
        let request = pb::UpdateGroupSettingsRequest {
            group_id,
            join_policy: join_policy.map(|policy| policy as i32),
            post_policy: post_policy.map(|policy| policy as i32),
            ..Default::default()
        };
        expect_field_violation(client.update_group_settings(as_user(1, request)).await, field);
    }
    assert_eq!(get(&mut client, 1, chat.group_id).await, chat);
    assert_eq!(get(&mut client, 1, broadcast.group_id).await, broadcast);
    assert_eq!(outbox_len(&service).await, rows_before);

    let admins_only = pb::UpdateGroupSettingsRequest {
        group_id: chat.group_id,
        post_policy: Some(PostPolicy::AdminsOnly as i32),
        ..Default::default()
    };
    client.update_group_settings(as_user(1, admins_only)).await.expect("a chat may be set to admins only");
}

async fn only_owners_and_admins_update_settings(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let group = create(&mut client, 1, GroupKind::Community).await;
    add(&mut client, 1, group.group_id, &[2, 3]).await;
    set_role(&mut client, 1, group.group_id, 2, Role::Admin).await;
    let retitle = |title: &str| pb::UpdateGroupSettingsRequest {
        group_id: group.group_id,
        title: Some(title.to_owned()),
        ..Default::default()
    };

    for outsider in [3, 9] {
        let refused = client.update_group_settings(as_user(outsider, retitle("mine"))).await;
        expect_code(refused, Code::PermissionDenied);
    }
    assert_eq!(get(&mut client, 1, group.group_id).await.title, group.title);
    client.update_group_settings(as_user(2, retitle("by admin"))).await.expect("admin");
    client.update_group_settings(as_user(1, retitle("by owner"))).await.expect("owner");
    assert_eq!(get(&mut client, 1, group.group_id).await.title, "by owner");
}

async fn only_the_owner_archives(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group = create(&mut client, 1, GroupKind::Community).await;
    let group_id = group.group_id;
    add(&mut client, 1, group_id, &[2, 3]).await;
    set_role(&mut client, 1, group_id, 2, Role::Admin).await;

    for not_owner in [2, 3, 9] {
        let refused = client.archive_group(as_user(not_owner, pb::ArchiveGroupRequest { group_id })).await;
        expect_code(refused, Code::PermissionDenied);
    }
    assert_eq!(get(&mut client, 1, group_id).await.archived_at, None);

    let archived = client.archive_group(as_user(1, pb::ArchiveGroupRequest { group_id })).await;
    let archived = archived.expect("archived").into_inner().group.expect("a group");
    assert!(archived.archived_at.is_some());
    assert_eq!(get(&mut client, 9, group_id).await.archived_at, archived.archived_at);
    let last = events(&service).await.pop().expect("an event");
    assert_eq!(fanfare_tests::groups::change_name(&last), "archived");
}

async fn chat_groups_are_private_to_their_members(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let chat = create(&mut client, 1, GroupKind::Chat).await;
    let community = create(&mut client, 1, GroupKind::Community).await;
    add(&mut client, 1, chat.group_id, &[2]).await;

    assert_eq!(get(&mut client, 2, chat.group_id).await, get(&mut client, 1, chat.group_id).await);
    let outsider = client.get_group(as_user(3, pb::GetGroupRequest { group_id: chat.group_id })).await;
    let hidden = expect_code(outsider, Code::NotFound);
    let unknown = client.get_group(as_user(3, pb::GetGroupRequest { group_id: 1 << 40 })).await;
    let absent = expect_code(unknown, Code::NotFound);
    assert_eq!(
        hidden.message().replace(&chat.group_id.to_string(), "N"),
        absent.message().replace(&(1_i64 << 40).to_string(), "N"),
        "a private group reads exactly as one that does not exist"
    );

    let batch = pb::BatchGetGroupsRequest { group_ids: vec![chat.group_id, community.group_id] };
    let seen_by_outsider = client.batch_get_groups(as_user(3, batch.clone())).await.expect("read");
    let seen_by_outsider = seen_by_outsider.into_inner();
    let visible: Vec<i64> = seen_by_outsider.groups.iter().map(|group| group.group_id).collect();
    assert_eq!(visible, vec![community.group_id]);
    assert_eq!(seen_by_outsider.missing_group_ids, vec![chat.group_id]);
    let seen_by_member = client.batch_get_groups(as_user(2, batch)).await.expect("read").into_inner();
    assert_eq!(seen_by_member.groups.len(), 2);
    assert!(seen_by_member.missing_group_ids.is_empty());

    let removal = pb::RemoveMemberRequest { group_id: chat.group_id, user_id: 2 };
    client.remove_member(as_user(1, removal)).await.expect("removed");
    let former = client.get_group(as_user(2, pb::GetGroupRequest { group_id: chat.group_id })).await;
    expect_code(former, Code::NotFound);
}

async fn community_and_broadcast_groups_are_discoverable(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    for kind in [GroupKind::Community, GroupKind::Broadcast] {
        let group = create_with_policy(&mut client, 1, kind, JoinPolicy::InviteOnly).await;
        assert_eq!(get(&mut client, 9, group.group_id).await, group, "{kind:?}");
        let batch = pb::BatchGetGroupsRequest { group_ids: vec![group.group_id] };
        let read = client.batch_get_groups(as_user(9, batch)).await.expect("read").into_inner();
        assert_eq!(read.groups, vec![group]);
        assert!(read.missing_group_ids.is_empty());
    }
}

async fn batch_get_keeps_the_order_asked_and_reports_missing_ids(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let first = create(&mut client, 1, GroupKind::Community).await;
    let second = create(&mut client, 1, GroupKind::Broadcast).await;
    let unknown = second.group_id + 1_000;
    let batch =
        pb::BatchGetGroupsRequest { group_ids: vec![second.group_id, unknown, first.group_id, second.group_id] };
    let read = client.batch_get_groups(as_user(5, batch)).await.expect("read").into_inner();
    assert_eq!(read.groups, vec![second, first], "in the order asked, repeats read once");
    assert_eq!(read.missing_group_ids, vec![unknown]);
}

async fn an_archived_group_refuses_every_change(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group = create(&mut client, 1, GroupKind::Community).await;
    let group_id = group.group_id;
    add(&mut client, 1, group_id, &[2, 3, 4]).await;
    set_role(&mut client, 1, group_id, 2, Role::Admin).await;
    let mute =
        pb::MuteMemberRequest { group_id, user_id: 4, until: Some(fanfare_tests::groups::seconds_from_now(3_600)) };
    client.mute_member(as_user(1, mute)).await.expect("muted");
    let ban = pb::BanMemberRequest { group_id, user_id: 5, ..Default::default() };
    client.ban_member(as_user(1, ban)).await.expect("banned");
    let code = invite(&mut client, 1, group_id, 0).await.code;
    let approval = pb::UpdateGroupSettingsRequest {
        group_id,
        join_policy: Some(JoinPolicy::Approval as i32),
        ..Default::default()
    };
    client.update_group_settings(as_user(1, approval.clone())).await.expect("updated");
    client.join_group(as_user(6, pb::JoinGroupRequest { group_id })).await.expect("pending");
    client.archive_group(as_user(1, pb::ArchiveGroupRequest { group_id })).await.expect("archived");
    let before = get(&mut client, 1, group_id).await;
    let rows_before = outbox_len(&service).await;

    expect_precondition(client.update_group_settings(as_user(1, approval)).await, "ARCHIVED");
    expect_precondition(client.archive_group(as_user(1, pb::ArchiveGroupRequest { group_id })).await, "ARCHIVED");
    expect_precondition(client.join_group(as_user(7, pb::JoinGroupRequest { group_id })).await, "ARCHIVED");
    expect_precondition(client.leave_group(as_user(3, pb::LeaveGroupRequest { group_id })).await, "ARCHIVED");
    let more = pb::AddMembersRequest { group_id, user_ids: vec![8] };
    expect_precondition(client.add_members(as_user(1, more)).await, "ARCHIVED");
    let remove = pb::RemoveMemberRequest { group_id, user_id: 3 };
    expect_precondition(client.remove_member(as_user(1, remove)).await, "ARCHIVED");
    let promote = pb::SetMemberRoleRequest { group_id, user_id: 3, role: Role::Admin as i32 };
    expect_precondition(client.set_member_role(as_user(1, promote)).await, "ARCHIVED");
    let transfer = pb::TransferOwnershipRequest { group_id, new_owner_user_id: 2 };
    expect_precondition(client.transfer_ownership(as_user(1, transfer)).await, "ARCHIVED");
    let ban_three = pb::BanMemberRequest { group_id, user_id: 3, ..Default::default() };
    expect_precondition(client.ban_member(as_user(1, ban_three)).await, "ARCHIVED");
    let unban = pb::UnbanMemberRequest { group_id, user_id: 5 };
    expect_precondition(client.unban_member(as_user(1, unban)).await, "ARCHIVED");
    let mute_three = pb::MuteMemberRequest { user_id: 3, ..mute };
    expect_precondition(client.mute_member(as_user(1, mute_three)).await, "ARCHIVED");
    let unmute = pb::UnmuteMemberRequest { group_id, user_id: 4 };
    expect_precondition(client.unmute_member(as_user(1, unmute)).await, "ARCHIVED");
    let approve = pb::ApproveJoinRequestRequest { group_id, user_id: 6 };
    expect_precondition(client.approve_join_request(as_user(1, approve)).await, "ARCHIVED");
    let reject = pb::RejectJoinRequestRequest { group_id, user_id: 6 };
    expect_precondition(client.reject_join_request(as_user(1, reject)).await, "ARCHIVED");
    let new_invite = pb::CreateInviteRequest { group_id, ..Default::default() };
    expect_precondition(client.create_invite(as_user(1, new_invite)).await, "ARCHIVED");
    let redeem = pb::JoinWithInviteRequest { code: code.clone() };
    expect_precondition(client.join_with_invite(as_user(9, redeem)).await, "ARCHIVED");
    expect_precondition(client.revoke_invite(as_user(1, pb::RevokeInviteRequest { code })).await, "ARCHIVED");

    assert_eq!(get(&mut client, 1, group_id).await, before, "nothing changed");
    assert_eq!(outbox_len(&service).await, rows_before, "no outbox rows after archiving");
    let requests = pb::ListJoinRequestsRequest { group_id, ..Default::default() };
    let pending = client.list_join_requests(as_user(2, requests)).await.expect("reads still work");
    assert_eq!(pending.into_inner().join_requests.len(), 1, "the request is still there");
    let rejoin = client.join_group(as_user(3, pb::JoinGroupRequest { group_id })).await;
    let rejoin = rejoin.expect("a member's join changes nothing").into_inner();
    assert_eq!(rejoin.outcome, pb::JoinOutcome::AlreadyMember as i32);
}
