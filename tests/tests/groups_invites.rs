//! Invite codes and the approval flow (docs/groups.md, "Joining"): who may create and
//! revoke invites, what each invite state answers, and filing, approving and rejecting
//! join requests.

use chrono::{Duration, SubsecRound, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::status::ErrorReason;
use fanfare_groups::domain::{BanReason, Invite, InviteCode};
use fanfare_proto::common::v1::group_event::Change;
use fanfare_proto::common::v1::{GroupKind, JoinMethod, JoinPolicy, Role};
use fanfare_proto::groups::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{
    Client, add, create, create_with_policy, events, expect_precondition, invite, membership, outbox_len, set_role,
    start,
};
use fanfare_tests::{expect_code, expect_reason, on_every_storage};
use tonic::{Code, Status};

on_every_storage!(
    an_invite_joins_whatever_the_join_policy,
    invites_last_seven_days_by_default_and_as_long_as_asked,
    members_redeeming_do_not_use_up_an_invite,
    revoked_unknown_and_malformed_codes_are_refused,
    who_may_create_and_revoke_invites,
    invites_do_not_pass_a_ban_and_write_no_events,
    join_requests_are_approved_or_rejected_by_moderators,
    expired_invites_and_ended_bans_answer_as_documented,
);

/// A well-formed code no invite has.
const UNKNOWN_CODE: &str = "abcdefghjkmnpqrs";

async fn redeem(client: &mut Client, user: i64, code: &str) -> Result<pb::JoinWithInviteResponse, Status> {
    let request = pb::JoinWithInviteRequest { code: code.to_owned() };
    let response = client.join_with_invite(as_user(user, request)).await;
    response.map(tonic::Response::into_inner)
}

async fn revoke(client: &mut Client, user: i64, code: &str) -> Result<(), Status> {
    let request = pb::RevokeInviteRequest { code: code.to_owned() };
    client.revoke_invite(as_user(user, request)).await.map(drop)
}

async fn an_invite_joins_whatever_the_join_policy(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let groups = [
        create_with_policy(&mut client, 1, GroupKind::Community, JoinPolicy::InviteOnly).await,
        create_with_policy(&mut client, 1, GroupKind::Community, JoinPolicy::FollowersOnly).await,
        create_with_policy(&mut client, 1, GroupKind::Community, JoinPolicy::Approval).await,
        create_with_policy(&mut client, 1, GroupKind::Broadcast, JoinPolicy::FollowersOnly).await,
        create_with_policy(&mut client, 1, GroupKind::Broadcast, JoinPolicy::InviteOnly).await,
        create(&mut client, 1, GroupKind::Chat).await,
    ];
    for group in groups {
        let code = invite(&mut client, 1, group.group_id, 0).await.code;
        let joined = redeem(&mut client, 2, &code).await.expect("joined by invite");
        assert_eq!(joined.outcome, pb::JoinOutcome::Joined as i32);
        let member = joined.membership.expect("a membership");
        assert_eq!((member.group_id, member.user_id), (group.group_id, 2));
        assert_eq!(member.role, Role::Member as i32);
        let last = events(&service).await.pop().and_then(|event| event.change);
        let Some(Change::MemberJoined(joined)) = last else {
            panic!("expected a join event, got {last:?}");
        };
        assert_eq!((joined.user_id, joined.method), (2, JoinMethod::Invite as i32));
    }
}

async fn invites_last_seven_days_by_default_and_as_long_as_asked(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    let cases = [(0, 7 * 86_400, 0), (60, 60, 1), (2_592_000, 2_592_000, 100_000)];
    for (ttl_seconds, lifetime, max_uses) in cases {
        let request = pb::CreateInviteRequest { group_id, ttl_seconds, max_uses };
        let created = client.create_invite(as_user(1, request)).await.expect("created");
        let invite = created.into_inner().invite.expect("an invite");
        assert_eq!(invite.code.len(), 16);
        assert_eq!((invite.group_id, invite.created_by_user_id), (group_id, 1));
        assert_eq!((invite.max_uses, invite.use_count), (max_uses, 0));
        let created_at = invite.created_at.expect("a creation time");
        let expires_at = invite.expires_at.expect("an expiry");
        assert_eq!(expires_at.seconds - created_at.seconds, lifetime, "ttl {ttl_seconds}");
        assert_eq!(expires_at.nanos, created_at.nanos);
    }
}

async fn members_redeeming_do_not_use_up_an_invite(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create_with_policy(&mut client, 1, GroupKind::Community, JoinPolicy::InviteOnly).await.group_id;
    add(&mut client, 1, group_id, &[2]).await;
    let code = invite(&mut client, 1, group_id, 1).await.code;
    let rows = outbox_len(&service).await;

    for member in [2, 1] {
        let again = redeem(&mut client, member, &code).await.expect("a member redeems");
        assert_eq!(again.outcome, pb::JoinOutcome::AlreadyMember as i32);
        assert_eq!(again.membership.expect("their membership").user_id, member);
    }
    assert_eq!(outbox_len(&service).await, rows, "nothing changed");

    let joined = redeem(&mut client, 3, &code).await.expect("the one use is still there");
    assert_eq!(joined.outcome, pb::JoinOutcome::Joined as i32);
    let rows = outbox_len(&service).await;
    expect_precondition(redeem(&mut client, 4, &code).await, "INVITE_EXHAUSTED");
    assert_eq!(membership(&mut client, group_id, 4).await, None);
    assert_eq!(outbox_len(&service).await, rows);

    let unlimited = invite(&mut client, 1, group_id, 0).await.code;
    for user in 10..15 {
        redeem(&mut client, user, &unlimited).await.expect("0 means unlimited");
    }
}

async fn revoked_unknown_and_malformed_codes_are_refused(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    let code = invite(&mut client, 1, group_id, 0).await.code;

    revoke(&mut client, 1, &code).await.expect("revoked");
    expect_precondition(redeem(&mut client, 2, &code).await, "INVITE_REVOKED");
    assert_eq!(membership(&mut client, group_id, 2).await, None);
    revoke(&mut client, 1, &code).await.expect("revoking twice is harmless");

    expect_reason(redeem(&mut client, 2, UNKNOWN_CODE).await, Code::NotFound, ErrorReason::InviteNotFound);
    expect_reason(revoke(&mut client, 1, UNKNOWN_CODE).await, Code::NotFound, ErrorReason::InviteNotFound);
    for malformed in ["", "not-a-code", "0OIl0OIl0OIl0OIl", &code[..15]] {
        fanfare_tests::expect_field_violation(redeem(&mut client, 2, malformed).await, "code");
        fanfare_tests::expect_field_violation(revoke(&mut client, 1, malformed).await, "code");
    }
}

async fn who_may_create_and_revoke_invites(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let chat = create(&mut client, 1, GroupKind::Chat).await.group_id;
    add(&mut client, 1, chat, &[2, 3]).await;
    let by_member = invite(&mut client, 2, chat, 0).await;
    assert_eq!(by_member.created_by_user_id, 2, "any chat member invites");
    expect_code(revoke(&mut client, 3, &by_member.code).await, Code::PermissionDenied);
    expect_code(revoke(&mut client, 9, &by_member.code).await, Code::PermissionDenied);
    revoke(&mut client, 2, &by_member.code).await.expect("its creator revokes");
    let another = invite(&mut client, 3, chat, 0).await;
    revoke(&mut client, 1, &another.code).await.expect("the owner revokes");
    let outsider = pb::CreateInviteRequest { group_id: chat, ..Default::default() };
    expect_code(client.create_invite(as_user(9, outsider)).await, Code::PermissionDenied);

    for kind in [GroupKind::Community, GroupKind::Broadcast] {
        let group_id = create(&mut client, 1, kind).await.group_id;
        add(&mut client, 1, group_id, &[2, 3]).await;
        set_role(&mut client, 1, group_id, 2, Role::Admin).await;
        for refused in [3, 9] {
            let request = pb::CreateInviteRequest { group_id, ..Default::default() };
            expect_code(client.create_invite(as_user(refused, request)).await, Code::PermissionDenied);
        }
        let by_admin = invite(&mut client, 2, group_id, 0).await;
        let by_owner = invite(&mut client, 1, group_id, 0).await;
        expect_code(revoke(&mut client, 3, &by_owner.code).await, Code::PermissionDenied);
        revoke(&mut client, 2, &by_owner.code).await.expect("an admin revokes the owner's");
        revoke(&mut client, 1, &by_admin.code).await.expect("the owner revokes an admin's");
        expect_precondition(redeem(&mut client, 4, &by_admin.code).await, "INVITE_REVOKED");
    }
}

async fn invites_do_not_pass_a_ban_and_write_no_events(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create_with_policy(&mut client, 1, GroupKind::Community, JoinPolicy::InviteOnly).await.group_id;
    let ban = pb::BanMemberRequest { group_id, user_id: 5, ..Default::default() };
    client.ban_member(as_user(1, ban)).await.expect("banned");
    let rows = outbox_len(&service).await;

    let code = invite(&mut client, 1, group_id, 1).await.code;
    expect_reason(redeem(&mut client, 5, &code).await, Code::PermissionDenied, ErrorReason::Banned);
    assert_eq!(membership(&mut client, group_id, 5).await, None);
    revoke(&mut client, 1, &code).await.expect("revoked");
    assert_eq!(outbox_len(&service).await, rows, "invites are not part of the timeline");

    let fresh = invite(&mut client, 1, group_id, 1).await.code;
    redeem(&mut client, 6, &fresh).await.expect("the ban did not use up the invite");
}

async fn pending(client: &mut Client, moderator: i64, group_id: i64, page_size: i32) -> Vec<pb::JoinRequest> {
    let mut found = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListJoinRequestsRequest { group_id, page_size, page_token };
        let page = client.list_join_requests(as_user(moderator, request)).await.expect("listed");
        let page = page.into_inner();
        if page_size > 0 {
            assert!(page.join_requests.len() <= page_size as usize, "a page holds at most page_size");
        }
        found.extend(page.join_requests);
        if page.next_page_token.is_empty() {
            return found;
        }
        page_token = page.next_page_token;
    }
}

async fn join_requests_are_approved_or_rejected_by_moderators(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create_with_policy(&mut client, 1, GroupKind::Community, JoinPolicy::Approval).await.group_id;
    add(&mut client, 1, group_id, &[2]).await;
    set_role(&mut client, 1, group_id, 2, Role::Admin).await;
    let rows = outbox_len(&service).await;
    for user in [13, 10, 12, 11] {
        client.join_group(as_user(user, pb::JoinGroupRequest { group_id })).await.expect("pending");
    }
    assert_eq!(outbox_len(&service).await, rows, "join requests write no events");

    let listed = pending(&mut client, 2, group_id, 0).await;
    let users: Vec<i64> = listed.iter().map(|request| request.user_id).collect();
    assert_eq!(users, vec![13, 10, 12, 11], "oldest first");
    assert!(listed.iter().all(|request| request.group_id == group_id && request.requested_at.is_some()));
    assert_eq!(pending(&mut client, 1, group_id, 1).await, listed, "paged one at a time");

    let approve = pb::ApproveJoinRequestRequest { group_id, user_id: 10 };
    let approved = client.approve_join_request(as_user(2, approve)).await.expect("approved");
    let approved = approved.into_inner().membership.expect("a membership");
    assert_eq!((approved.user_id, approved.role), (10, Role::Member as i32));
    let last = events(&service).await.pop().expect("an event");
    assert_eq!(last.actor_user_id, 2);
    let Some(Change::MemberJoined(joined)) = last.change else {
        panic!("expected a join, got {last:?}");
    };
    assert_eq!((joined.user_id, joined.method), (10, JoinMethod::Approved as i32));

    let reject = pb::RejectJoinRequestRequest { group_id, user_id: 12 };
    let rows = outbox_len(&service).await;
    client.reject_join_request(as_user(1, reject)).await.expect("rejected");
    assert_eq!(outbox_len(&service).await, rows, "a rejection writes no event");
    assert_eq!(membership(&mut client, group_id, 12).await, None);
    let users: Vec<i64> = pending(&mut client, 1, group_id, 2).await.iter().map(|request| request.user_id).collect();
    assert_eq!(users, vec![13, 11]);

    let approved_again = client.approve_join_request(as_user(1, approve)).await;
    expect_reason(approved_again, Code::NotFound, ErrorReason::JoinRequestNotFound);
    expect_code(client.reject_join_request(as_user(1, reject)).await, Code::NotFound);
    let rejected_again = client.join_group(as_user(12, pb::JoinGroupRequest { group_id })).await;
    assert_eq!(rejected_again.expect("may ask again").into_inner().outcome, pb::JoinOutcome::PendingApproval as i32);

    add(&mut client, 1, group_id, &[13]).await;
    let users: Vec<i64> = pending(&mut client, 1, group_id, 0).await.iter().map(|request| request.user_id).collect();
    assert_eq!(users, vec![11, 12], "being added settles the request");
}

/// Expiry and ended bans need time to pass, which the API cannot fast-forward: the
/// expired invite and the ended ban are seeded through the store, and everything else
/// goes through the API.
async fn expired_invites_and_ended_bans_answer_as_documented(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let group_id = create_with_policy(&mut client, 1, GroupKind::Community, JoinPolicy::InviteOnly).await.group_id;
    let now = Utc::now().trunc_subsecs(6);
    let expired = Invite {
        code: InviteCode::generate(),
        group_id: GroupId::from_trusted(group_id),
        created_by: UserId::from_trusted(1),
        created_at: now - Duration::days(8),
        expires_at: now - Duration::days(1),
        max_uses: 0,
        use_count: 0,
        revoked_at: None,
    };
    let code = service.store.create_invite(expired).await.expect("seeded").code;
    let rows = outbox_len(&service).await;
    expect_precondition(redeem(&mut client, 2, code.as_str()).await, "INVITE_EXPIRED");
    assert_eq!(membership(&mut client, group_id, 2).await, None);
    assert_eq!(outbox_len(&service).await, rows);

    let reason = BanReason::parse("reason", "served").expect("a reason");
    let (group, user, moderator) = (GroupId::from_trusted(group_id), UserId::from_trusted(3), UserId::from_trusted(1));
    let ended = Some(now - Duration::minutes(1));
    service.store.ban(group, user, reason, ended, moderator, now - Duration::hours(1)).await.expect("seeded");
    let listed = client.list_bans(as_user(1, pb::ListBansRequest { group_id, ..Default::default() })).await;
    assert!(listed.expect("listed").into_inner().bans.is_empty(), "an ended ban is not in force");
    let fresh = invite(&mut client, 1, group_id, 0).await.code;
    let joined = redeem(&mut client, 3, &fresh).await.expect("an ended ban does not stop a join");
    assert_eq!(joined.outcome, pb::JoinOutcome::Joined as i32);
}
