//! Roles and moderation, row by row of docs/groups.md "Who may do what": setting roles,
//! transferring ownership, removing, banning, muting, and who outranks whom.

use fanfare_core::status::ErrorReason;
use fanfare_proto::common::v1::group_event::Change;
use fanfare_proto::common::v1::{GroupKind, JoinPolicy, Role};
use fanfare_proto::groups::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{
    Client, add, change_names, create, create_with_policy, events, get, membership, outbox_len, role_of,
    seconds_from_now, set_role, start,
};
use fanfare_tests::{expect_code, expect_field_violation, expect_reason, on_every_storage};
use tonic::{Code, Status};

on_every_storage!(
    only_the_owner_sets_roles,
    ownership_moves_only_from_the_owner_to_a_member,
    moderators_act_on_members_they_outrank,
    an_admin_cannot_act_on_another_admin,
    nobody_removes_bans_or_mutes_the_owner,
    members_and_outsiders_cannot_moderate,
    bans_remove_members_and_are_listed_until_lifted,
    mutes_are_shown_on_the_membership_until_lifted,
);

/// The moderation calls that target one user: remove, ban, mute, unmute.
#[derive(Debug, Clone, Copy)]
enum Action {
    Remove,
    Ban,
    Mute,
    Unmute,
}

const ACTIONS: [Action; 4] = [Action::Remove, Action::Ban, Action::Mute, Action::Unmute];

async fn act(client: &mut Client, action: Action, actor: i64, group_id: i64, user_id: i64) -> Result<(), Status> {
    match action {
        Action::Remove => {
            let request = pb::RemoveMemberRequest { group_id, user_id };
            client.remove_member(as_user(actor, request)).await.map(drop)
        }
        Action::Ban => {
            let request = pb::BanMemberRequest { group_id, user_id, ..Default::default() };
            client.ban_member(as_user(actor, request)).await.map(drop)
        }
        Action::Mute => {
            let until = Some(seconds_from_now(600));
            let request = pb::MuteMemberRequest { group_id, user_id, until };
            client.mute_member(as_user(actor, request)).await.map(drop)
        }
        Action::Unmute => {
            let request = pb::UnmuteMemberRequest { group_id, user_id };
            client.unmute_member(as_user(actor, request)).await.map(drop)
        }
    }
}

async fn bans(client: &mut Client, moderator: i64, group_id: i64) -> Vec<pb::Ban> {
    let request = pb::ListBansRequest { group_id, ..Default::default() };
    client.list_bans(as_user(moderator, request)).await.expect("listed").into_inner().bans
}

async fn only_the_owner_sets_roles(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2, 3]).await;
    let request = |user_id, role: Role| pb::SetMemberRoleRequest { group_id, user_id, role: role as i32 };

    let promoted = client.set_member_role(as_user(1, request(2, Role::Admin))).await.expect("promoted");
    let promoted = promoted.into_inner().membership.expect("a membership");
    assert_eq!((promoted.user_id, promoted.role), (2, Role::Admin as i32));

    let by_admin = client.set_member_role(as_user(2, request(3, Role::Admin))).await;
    expect_reason(by_admin, Code::PermissionDenied, ErrorReason::PermissionDenied);
    let by_member = client.set_member_role(as_user(3, request(2, Role::Member))).await;
    expect_code(by_member, Code::PermissionDenied);
    let to_owner = client.set_member_role(as_user(1, request(2, Role::Owner))).await;
    expect_field_violation(to_owner, "role");
    let stranger = client.set_member_role(as_user(1, request(9, Role::Admin))).await;
    expect_reason(stranger, Code::NotFound, ErrorReason::MemberNotFound);
    let own_role = client.set_member_role(as_user(1, request(1, Role::Admin))).await;
    expect_reason(own_role, Code::FailedPrecondition, ErrorReason::OwnerImmovable);
    assert_eq!(role_of(&mut client, group_id, 1).await, Some(Role::Owner));
    assert_eq!(role_of(&mut client, group_id, 2).await, Some(Role::Admin));
    assert_eq!(role_of(&mut client, group_id, 3).await, Some(Role::Member));

    client.set_member_role(as_user(1, request(2, Role::Member))).await.expect("demoted");
    assert_eq!(role_of(&mut client, group_id, 2).await, Some(Role::Member));

    let changes: Vec<(i64, i32)> = events(&service)
        .await
        .into_iter()
        .filter_map(|event| match event.change {
            Some(Change::MemberRoleChanged(changed)) => Some((changed.user_id, changed.role)),
            _ => None,
        })
        .collect();
    assert_eq!(changes, vec![(2, Role::Admin as i32), (2, Role::Member as i32)]);
}

async fn ownership_moves_only_from_the_owner_to_a_member(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2, 3]).await;
    set_role(&mut client, 1, group_id, 2, Role::Admin).await;
    let transfer = |new_owner_user_id| pb::TransferOwnershipRequest { group_id, new_owner_user_id };

    expect_code(client.transfer_ownership(as_user(2, transfer(2))).await, Code::PermissionDenied);
    expect_code(client.transfer_ownership(as_user(3, transfer(3))).await, Code::PermissionDenied);
    expect_code(client.transfer_ownership(as_user(1, transfer(1))).await, Code::FailedPrecondition);
    expect_code(client.transfer_ownership(as_user(1, transfer(9))).await, Code::NotFound);
    let rows = outbox_len(&service).await;
    assert_eq!(get(&mut client, 1, group_id).await.owner_user_id, 1);

    let group = client.transfer_ownership(as_user(1, transfer(3))).await.expect("transferred");
    assert_eq!(group.into_inner().group.expect("a group").owner_user_id, 3);
    assert_eq!(role_of(&mut client, group_id, 1).await, Some(Role::Admin));
    assert_eq!(role_of(&mut client, group_id, 3).await, Some(Role::Owner));
    let written = events(&service).await;
    assert_eq!(written.len(), rows + 1);
    let Some(Change::OwnershipTransferred(moved)) = &written[rows].change else {
        panic!("expected an ownership transfer, got {:?}", written[rows]);
    };
    assert_eq!((moved.previous_owner_user_id, moved.new_owner_user_id), (1, 3));

    let promote = pb::SetMemberRoleRequest { group_id, user_id: 2, role: Role::Member as i32 };
    expect_code(client.set_member_role(as_user(1, promote)).await, Code::PermissionDenied);
    client.set_member_role(as_user(3, promote)).await.expect("the new owner sets roles");
}

async fn moderators_act_on_members_they_outrank(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    for moderator in [1, 2] {
        let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
        add(&mut client, 1, group_id, &[2, 3, 4]).await;
        set_role(&mut client, 1, group_id, 2, Role::Admin).await;
        for action in [Action::Mute, Action::Unmute, Action::Remove] {
            act(&mut client, action, moderator, group_id, 3).await.expect("on a member");
        }
        assert_eq!(membership(&mut client, group_id, 3).await, None);
        act(&mut client, Action::Ban, moderator, group_id, 4).await.expect("ban a member");
        assert_eq!(membership(&mut client, group_id, 4).await, None);
        let unban = pb::UnbanMemberRequest { group_id, user_id: 4 };
        client.unban_member(as_user(moderator, unban)).await.expect("unban");
    }

    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2, 3]).await;
    set_role(&mut client, 1, group_id, 2, Role::Admin).await;
    set_role(&mut client, 1, group_id, 3, Role::Admin).await;
    for action in [Action::Mute, Action::Unmute, Action::Remove] {
        act(&mut client, action, 1, group_id, 2).await.expect("the owner acts on an admin");
    }
    act(&mut client, Action::Ban, 1, group_id, 3).await.expect("the owner bans an admin");
    assert_eq!(get(&mut client, 1, group_id).await.member_count, 1);
}

async fn an_admin_cannot_act_on_another_admin(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2, 3]).await;
    set_role(&mut client, 1, group_id, 2, Role::Admin).await;
    set_role(&mut client, 1, group_id, 3, Role::Admin).await;
    let rows = outbox_len(&service).await;

    for action in ACTIONS {
        let refused = act(&mut client, action, 2, group_id, 3).await;
        let status = expect_code(refused, Code::PermissionDenied);
        assert!(status.message().contains("admin"), "{action:?}: {status:?}");
    }
    let target = membership(&mut client, group_id, 3).await.expect("still a member");
    assert_eq!((target.role, target.muted_until), (Role::Admin as i32, None));
    assert!(bans(&mut client, 1, group_id).await.is_empty());
    assert_eq!(outbox_len(&service).await, rows);
}

async fn nobody_removes_bans_or_mutes_the_owner(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2]).await;
    set_role(&mut client, 1, group_id, 2, Role::Admin).await;
    let rows = outbox_len(&service).await;

    for actor in [2, 1] {
        for action in [Action::Remove, Action::Ban, Action::Mute] {
            let refused = act(&mut client, action, actor, group_id, 1).await;
            expect_reason(refused, Code::FailedPrecondition, ErrorReason::OwnerImmovable);
        }
    }
    let owner = membership(&mut client, group_id, 1).await.expect("still the owner");
    assert_eq!((owner.role, owner.muted_until), (Role::Owner as i32, None));
    assert!(bans(&mut client, 1, group_id).await.is_empty());
    assert_eq!(outbox_len(&service).await, rows);
}

async fn members_and_outsiders_cannot_moderate(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create_with_policy(&mut client, 1, GroupKind::Community, JoinPolicy::Approval).await.group_id;
    add(&mut client, 1, group_id, &[2, 3]).await;
    let ban = pb::BanMemberRequest { group_id, user_id: 8, ..Default::default() };
    client.ban_member(as_user(1, ban)).await.expect("banned");
    client.join_group(as_user(7, pb::JoinGroupRequest { group_id })).await.expect("pending");
    let rows = outbox_len(&service).await;

    // A member's role is too low; an outsider is no member at all.
    for (actor, reason) in [(2, ErrorReason::PermissionDenied), (9, ErrorReason::NotAMember)] {
        for action in ACTIONS {
            expect_reason(act(&mut client, action, actor, group_id, 3).await, Code::PermissionDenied, reason);
        }
        let unban = pb::UnbanMemberRequest { group_id, user_id: 8 };
        expect_reason(client.unban_member(as_user(actor, unban)).await, Code::PermissionDenied, reason);
        let list_bans = pb::ListBansRequest { group_id, ..Default::default() };
        expect_reason(client.list_bans(as_user(actor, list_bans)).await, Code::PermissionDenied, reason);
        let list_requests = pb::ListJoinRequestsRequest { group_id, ..Default::default() };
        let listed = client.list_join_requests(as_user(actor, list_requests)).await;
        expect_code(listed, Code::PermissionDenied);
        let approve = pb::ApproveJoinRequestRequest { group_id, user_id: 7 };
        expect_code(client.approve_join_request(as_user(actor, approve)).await, Code::PermissionDenied);
        let reject = pb::RejectJoinRequestRequest { group_id, user_id: 7 };
        expect_code(client.reject_join_request(as_user(actor, reject)).await, Code::PermissionDenied);
        let role = pb::SetMemberRoleRequest { group_id, user_id: 3, role: Role::Admin as i32 };
        expect_code(client.set_member_role(as_user(actor, role)).await, Code::PermissionDenied);
    }
    assert_eq!(outbox_len(&service).await, rows);
    assert_eq!(bans(&mut client, 1, group_id).await.len(), 1);
    let requests = pb::ListJoinRequestsRequest { group_id, ..Default::default() };
    let pending = client.list_join_requests(as_user(1, requests)).await.expect("listed");
    assert_eq!(pending.into_inner().join_requests.len(), 1);
}

async fn bans_remove_members_and_are_listed_until_lifted(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2]).await;

    let until = seconds_from_now(3_600);
    let request = pb::BanMemberRequest { group_id, user_id: 2, reason: "spam, again".to_owned(), until: Some(until) };
    let ban = client.ban_member(as_user(1, request)).await.expect("banned").into_inner().ban;
    let ban = ban.expect("the ban");
    assert_eq!((ban.group_id, ban.user_id, ban.banned_by_user_id), (group_id, 2, 1));
    assert_eq!(ban.reason, "spam, again");
    assert_eq!(ban.until.expect("an end").seconds, until.seconds);
    assert!(ban.banned_at.is_some());
    assert_eq!(membership(&mut client, group_id, 2).await, None, "the ban removed the member");
    assert_eq!(get(&mut client, 1, group_id).await.member_count, 1);

    let stranger = pb::BanMemberRequest { group_id, user_id: 9, ..Default::default() };
    let permanent = client.ban_member(as_user(1, stranger)).await.expect("banned").into_inner();
    assert_eq!(permanent.ban.expect("the ban").until, None);
    let banned: Vec<(i64, bool)> = events(&service)
        .await
        .into_iter()
        .filter_map(|event| match event.change {
            Some(Change::MemberBanned(banned)) => Some((banned.user_id, banned.was_member)),
            _ => None,
        })
        .collect();
    assert_eq!(banned, vec![(2, true), (9, false)]);

    let listed: Vec<i64> = bans(&mut client, 1, group_id).await.iter().map(|ban| ban.user_id).collect();
    assert_eq!(listed, vec![2, 9]);
    client.unban_member(as_user(1, pb::UnbanMemberRequest { group_id, user_id: 2 })).await.expect("unbanned");
    let listed: Vec<i64> = bans(&mut client, 1, group_id).await.iter().map(|ban| ban.user_id).collect();
    assert_eq!(listed, vec![9]);
    assert_eq!(change_names(&events(&service).await).last(), Some(&"unbanned"));
    let again = client.unban_member(as_user(1, pb::UnbanMemberRequest { group_id, user_id: 2 })).await;
    expect_reason(again, Code::NotFound, ErrorReason::BanNotFound);
    let joined = client.join_group(as_user(2, pb::JoinGroupRequest { group_id })).await.expect("joins");
    assert_eq!(joined.into_inner().outcome, pb::JoinOutcome::Joined as i32);

    let approval = pb::UpdateGroupSettingsRequest {
        group_id,
        join_policy: Some(JoinPolicy::Approval as i32),
        ..Default::default()
    };
    client.update_group_settings(as_user(1, approval)).await.expect("updated");
    client.join_group(as_user(4, pb::JoinGroupRequest { group_id })).await.expect("pending");
    act(&mut client, Action::Ban, 1, group_id, 4).await.expect("banned");
    let requests = pb::ListJoinRequestsRequest { group_id, ..Default::default() };
    let pending = client.list_join_requests(as_user(1, requests)).await.expect("listed");
    assert!(pending.into_inner().join_requests.is_empty(), "a ban drops the pending request");
}

async fn mutes_are_shown_on_the_membership_until_lifted(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    add(&mut client, 1, group_id, &[2]).await;

    let until = seconds_from_now(600);
    let request = pb::MuteMemberRequest { group_id, user_id: 2, until: Some(until) };
    let muted = client.mute_member(as_user(1, request)).await.expect("muted").into_inner();
    let muted = muted.membership.expect("a membership");
    assert_eq!(muted.muted_until.expect("muted").seconds, until.seconds);
    let read = membership(&mut client, group_id, 2).await.expect("a member");
    assert_eq!(read.muted_until.expect("still muted").seconds, until.seconds);
    let Some(Change::MemberMuted(event)) = events(&service).await.pop().and_then(|event| event.change) else {
        panic!("expected a mute event");
    };
    assert_eq!((event.user_id, event.until.expect("an end").seconds), (2, until.seconds));

    let request = pb::UnmuteMemberRequest { group_id, user_id: 2 };
    let unmuted = client.unmute_member(as_user(1, request)).await.expect("unmuted").into_inner();
    assert_eq!(unmuted.membership.expect("a membership").muted_until, None);
    assert_eq!(membership(&mut client, group_id, 2).await.expect("a member").muted_until, None);
    assert_eq!(change_names(&events(&service).await).last(), Some(&"unmuted"));

    expect_code(act(&mut client, Action::Mute, 1, group_id, 9).await, Code::NotFound);
    expect_code(act(&mut client, Action::Unmute, 1, group_id, 9).await, Code::NotFound);
}
