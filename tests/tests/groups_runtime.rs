//! The service around the rules: the service token and health, the per-user rate limit,
//! and the outbox event written for every change (docs/groups.md, "Who is acting",
//! "Limits and errors" and "The outbox").

use std::time::Duration;

use fanfare_core::identity::USER_ID_HEADER;
use fanfare_core::status::ErrorReason;
use fanfare_proto::common::v1::group_event::Change;
use fanfare_proto::common::v1::{GroupKind, JoinMethod, JoinPolicy, PostPolicy, Role};
use fanfare_proto::groups::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{add, change_names, create, events, get, invite, seconds_from_now, start, start_with};
use fanfare_tests::{error_metadata, expect_code, expect_reason, on_every_storage};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

on_every_storage!(
    the_service_token_is_required_on_every_call_but_health,
    changes_beyond_the_rate_limit_are_refused_with_a_retry_delay,
    every_change_writes_its_outbox_event_in_order,
);

/// A CreateGroup request acting as user 1, with `authorization` set when given.
fn create_request(authorization: Option<&str>) -> tonic::Request<pb::CreateGroupRequest> {
    let message =
        pb::CreateGroupRequest { kind: GroupKind::Community as i32, title: "guarded".to_owned(), ..Default::default() };
    let mut request = as_user(1, message);
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", value.parse().expect("valid metadata"));
    }
    request
}

async fn the_service_token_is_required_on_every_call_but_health(storage: Storage) {
    let (service, mut client) = start_with(storage, |config| {
        config.server.service_token = Some("s3cret".to_owned());
        config.server.allow_unauthenticated = false;
    })
    .await;

    for authorization in [None, Some("Bearer wrong"), Some("Bearer s3cre"), Some("Basic s3cret"), Some("s3cret")] {
        let refused = client.create_group(create_request(authorization)).await;
        let refused = expect_reason(refused, Code::Unauthenticated, ErrorReason::Unauthenticated);
        assert_eq!(error_metadata(&refused, "header"), "authorization");
    }
    let mut no_user = tonic::Request::new(pb::GetGroupRequest { group_id: 1 });
    no_user.metadata_mut().insert("authorization", "Bearer s3cret".parse().expect("valid metadata"));
    assert!(no_user.metadata().get(USER_ID_HEADER).is_none());
    expect_code(client.get_group(no_user).await, Code::Unauthenticated);
    assert!(events(&service).await.is_empty(), "refused calls changed nothing");

    let created = client.create_group(create_request(Some("Bearer s3cret"))).await;
    let group = created.expect("the right token is accepted").into_inner().group.expect("a group");
    assert_eq!(group.owner_user_id, 1);

    // Health needs no token; it turns SERVING once the store has answered a probe, so
    // watch for it (the timeout only bounds a failure, it does not decide the outcome).
    let channel = tonic::transport::Channel::from_shared(service.endpoint())
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("connected");
    let mut health = HealthClient::new(channel);
    for name in ["fanfare.groups.v1.GroupService", ""] {
        let request = HealthCheckRequest { service: name.to_owned() };
        let mut statuses = health.watch(request).await.expect("health answers without a token").into_inner();
        let serving = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(reply) = statuses.message().await.expect("a health reply") {
                if reply.status == ServingStatus::Serving as i32 {
                    return true;
                }
            }
            false
        })
        .await
        .expect("health reports within the bound");
        assert!(serving, "{name:?} reports SERVING");
        let checked = health.check(HealthCheckRequest { service: name.to_owned() }).await;
        assert_eq!(checked.expect("check answers").into_inner().status, ServingStatus::Serving as i32);
    }
}

async fn changes_beyond_the_rate_limit_are_refused_with_a_retry_delay(storage: Storage) {
    let (service, mut client) = start_with(storage, |config| {
        config.limits.user_changes_per_second = 1;
        config.limits.user_changes_burst = 2;
    })
    .await;
    let group = create(&mut client, 1, GroupKind::Community).await;
    let group_id = group.group_id;

    // The burst allows two changes; keep changing until refused. A refill of one change a
    // second cannot keep up with back-to-back calls, so a refusal comes within a few.
    let mut accepted_titles = vec![group.title.clone()];
    let mut refusal = None;
    for attempt in 0..50 {
        let title = format!("title {attempt}");
        let update = pb::UpdateGroupSettingsRequest { group_id, title: Some(title.clone()), ..Default::default() };
        match client.update_group_settings(as_user(1, update)).await {
            Ok(_) => accepted_titles.push(title),
            Err(status) => {
                refusal = Some(status);
                break;
            }
        }
    }
    let status = refusal.expect("back-to-back changes are refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let delay = status.get_error_details().retry_info().and_then(|retry| retry.retry_delay);
    let delay = delay.expect("a RetryInfo delay");
    assert!(delay > Duration::ZERO && delay <= Duration::from_secs(1), "{delay:?}");

    let last_title = accepted_titles.last().expect("the creation's title").clone();
    assert_eq!(get(&mut client, 1, group_id).await.title, last_title, "the refused change did nothing");
    assert_eq!(events(&service).await.len(), 2 + accepted_titles.len() - 1, "no row for the refusal");

    for _ in 0..20 {
        get(&mut client, 1, group_id).await;
    }
    let read = client.list_members(as_user(1, pb::ListMembersRequest { group_id, ..Default::default() })).await;
    read.expect("reads are not rate-limited");
    let other = client.join_group(as_user(2, pb::JoinGroupRequest { group_id })).await;
    other.expect("other users have their own budget");
}

async fn every_change_writes_its_outbox_event_in_order(storage: Storage) {
    let (service, mut client) = start(storage).await;
    let created = create(&mut client, 1, GroupKind::Community).await;
    let group_id = created.group_id;
    client.join_group(as_user(2, pb::JoinGroupRequest { group_id })).await.expect("joined");
    add(&mut client, 1, group_id, &[3]).await;
    let admin = pb::SetMemberRoleRequest { group_id, user_id: 3, role: Role::Admin as i32 };
    client.set_member_role(as_user(1, admin)).await.expect("promoted");
    let mute_until = seconds_from_now(600);
    let mute = pb::MuteMemberRequest { group_id, user_id: 2, until: Some(mute_until) };
    client.mute_member(as_user(3, mute)).await.expect("muted");
    client.unmute_member(as_user(3, pb::UnmuteMemberRequest { group_id, user_id: 2 })).await.expect("unmuted");
    let update = pb::UpdateGroupSettingsRequest {
        group_id,
        title: Some("Makers & friends".to_owned()),
        join_policy: Some(JoinPolicy::Approval as i32),
        slow_mode_seconds: Some(15),
        ..Default::default()
    };
    let updated = client.update_group_settings(as_user(1, update)).await.expect("updated");
    let updated = updated.into_inner().group.expect("a group");
    let ban_until = seconds_from_now(3_600);
    let ban = pb::BanMemberRequest { group_id, user_id: 2, reason: "spam".to_owned(), until: Some(ban_until) };
    client.ban_member(as_user(3, ban)).await.expect("banned");
    client.unban_member(as_user(3, pb::UnbanMemberRequest { group_id, user_id: 2 })).await.expect("unbanned");
    let code = invite(&mut client, 1, group_id, 0).await.code;
    client.join_with_invite(as_user(4, pb::JoinWithInviteRequest { code })).await.expect("joined");
    client.leave_group(as_user(4, pb::LeaveGroupRequest { group_id })).await.expect("left");
    client.join_group(as_user(5, pb::JoinGroupRequest { group_id })).await.expect("pending");
    let approve = pb::ApproveJoinRequestRequest { group_id, user_id: 5 };
    client.approve_join_request(as_user(3, approve)).await.expect("approved");
    client.remove_member(as_user(1, pb::RemoveMemberRequest { group_id, user_id: 5 })).await.expect("removed");
    let transfer = pb::TransferOwnershipRequest { group_id, new_owner_user_id: 3 };
    client.transfer_ownership(as_user(1, transfer)).await.expect("transferred");
    client.archive_group(as_user(3, pb::ArchiveGroupRequest { group_id })).await.expect("archived");

    let written = events(&service).await;
    assert_eq!(
        change_names(&written),
        [
            "created",
            "joined",
            "joined",
            "joined",
            "role_changed",
            "muted",
            "unmuted",
            "settings_changed",
            "banned",
            "unbanned",
            "joined",
            "left",
            "joined",
            "removed",
            "ownership_transferred",
            "archived",
        ]
    );
    let actors: Vec<i64> = written.iter().map(|event| event.actor_user_id).collect();
    assert_eq!(actors, [1, 1, 2, 1, 1, 3, 3, 1, 3, 3, 4, 4, 3, 1, 1, 3]);
    assert!(written.iter().all(|event| event.group_id == group_id));
    let times: Vec<_> = written.iter().map(|event| event.occurred_at.expect("a time")).collect();
    assert!(times.windows(2).all(|pair| (pair[0].seconds, pair[0].nanos) <= (pair[1].seconds, pair[1].nanos)));

    let changes: Vec<Change> = written.into_iter().map(|event| event.change.expect("a change")).collect();
    let Change::GroupCreated(group_created) = &changes[0] else { unreachable!() };
    assert_eq!(
        (group_created.kind, group_created.title.as_str()),
        (GroupKind::Community as i32, created.title.as_str())
    );
    let joins: Vec<(i64, i32, i32)> = changes
        .iter()
        .filter_map(|change| match change {
            Change::MemberJoined(joined) => Some((joined.user_id, joined.method, joined.role)),
            _ => None,
        })
        .collect();
    let (member, owner) = (Role::Member as i32, Role::Owner as i32);
    assert_eq!(
        joins,
        [
            (1, JoinMethod::Creator as i32, owner),
            (2, JoinMethod::Direct as i32, member),
            (3, JoinMethod::Added as i32, member),
            (4, JoinMethod::Invite as i32, member),
            (5, JoinMethod::Approved as i32, member),
        ]
    );
    let Change::MemberRoleChanged(role) = &changes[4] else { unreachable!() };
    assert_eq!((role.user_id, role.role), (3, Role::Admin as i32));
    let Change::MemberMuted(muted) = &changes[5] else { unreachable!() };
    assert_eq!((muted.user_id, muted.until.map(|until| until.seconds)), (2, Some(mute_until.seconds)));
    let Change::MemberUnmuted(unmuted) = &changes[6] else { unreachable!() };
    assert_eq!(unmuted.user_id, 2);
    let Change::GroupSettingsChanged(settings) = &changes[7] else { unreachable!() };
    let after = updated.settings.expect("settings");
    assert_eq!(settings.title, "Makers & friends");
    assert_eq!((settings.description.as_str(), settings.avatar_ref.as_str()), ("", ""));
    assert_eq!(settings.join_policy, JoinPolicy::Approval as i32);
    assert_eq!(settings.slow_mode_seconds, 15);
    assert_eq!(settings.history_visible_to_new_members, after.history_visible_to_new_members);
    assert_eq!(settings.post_policy, PostPolicy::AllMembers as i32);
    let Change::MemberBanned(banned) = &changes[8] else { unreachable!() };
    assert_eq!((banned.user_id, banned.was_member), (2, true));
    assert_eq!(banned.until.map(|until| until.seconds), Some(ban_until.seconds));
    let Change::MemberUnbanned(unbanned) = &changes[9] else { unreachable!() };
    assert_eq!(unbanned.user_id, 2);
    let Change::MemberLeft(left) = &changes[11] else { unreachable!() };
    assert_eq!(left.user_id, 4);
    let Change::MemberRemoved(removed) = &changes[13] else { unreachable!() };
    assert_eq!(removed.user_id, 5);
    let Change::OwnershipTransferred(moved) = &changes[14] else { unreachable!() };
    assert_eq!((moved.previous_owner_user_id, moved.new_owner_user_id), (1, 3));
}

/// With REDIS_URL set, a user's changes are counted once for every groups pod: creating
/// groups alternately on two pods spends one burst.
#[tokio::test]
async fn with_redis_the_change_limit_holds_across_pods() {
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| fanfare_testkit::stack::DEFAULT_REDIS_URL.to_owned());
    let namespace = format!("groups-limits-{}", uuid::Uuid::new_v4().simple());
    let configure = |config: &mut fanfare_groups::GroupsConfig| {
        config.limits.user_changes_per_second = 1;
        config.limits.user_changes_burst = 3;
        config.dependencies.redis_url = Some(redis_url.clone());
        config.dependencies.redis_namespace = namespace.clone();
    };
    let (_one, mut first) = start_with(Storage::Memory, configure).await;
    let (_other, mut second) = start_with(Storage::Memory, configure).await;
    let mut created = 0;
    let mut refused = None;
    for attempt in 0..6 {
        let client = if attempt % 2 == 0 { &mut first } else { &mut second };
        match client.create_group(create_request(None)).await {
            Ok(_) => created += 1,
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    assert_eq!(created, 3, "one burst of 3 for both pods");
    let status = refused.expect("the fourth is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}
