//! FOLLOWERS_ONLY groups through the fanout service's follow graph (docs/groups.md,
//! "Joining"): followers of the owner join, others are refused with the owner to follow, a
//! minimum follow age holds fresh followers back until a stated time, a fanout service that
//! is down lets nobody in, and the minimum follow age setting is validated.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use fanfare_core::ids::UserId;
use fanfare_proto::common::v1::group_event::Change;
use fanfare_proto::common::v1::{GroupKind, JoinMethod, JoinPolicy, PostPolicy};
use fanfare_proto::groups::v1 as pb;
use fanfare_testkit::{Storage, TestGroups, as_user};
use fanfare_tests::fanout::{self, NOBODY_URL, TestFanout};
use fanfare_tests::groups::{
    Client, create, create_with_policy, events, expect_exact_violations, expect_precondition, get, invite, membership,
    settings, start_with,
};
use fanfare_tests::{expect_code, on_every_storage};
use tonic::{Code, Status};
use tonic_types::StatusExt;

on_every_storage!(
    followers_of_the_owner_join_and_others_are_refused,
    the_current_owner_is_the_one_to_follow,
    a_minimum_follow_age_holds_fresh_followers_back,
    a_fanout_service_that_is_down_lets_nobody_in,
    the_minimum_follow_age_is_validated,
);

/// A day, in seconds.
const DAY: i32 = 86_400;

/// A fanout service and a groups service that checks follows against it.
async fn start_pair(storage: Storage) -> (TestFanout, fanout::Client, TestGroups, Client) {
    let (fanout, fanout_client) = fanout::start(storage).await;
    let fanout_url = fanout.endpoint();
    let (groups, groups_client) = start_with(storage, |config| config.fanout_url = Some(fanout_url)).await;
    (fanout, fanout_client, groups, groups_client)
}

async fn join(client: &mut Client, user: i64, group_id: i64) -> Result<pb::JoinGroupResponse, Status> {
    let response = client.join_group(as_user(user, pb::JoinGroupRequest { group_id })).await;
    response.map(tonic::Response::into_inner)
}

/// A FOLLOWERS_ONLY group of `kind` owned by `owner`, with `min_follow_age_seconds`.
async fn followers_only(client: &mut Client, owner: i64, kind: GroupKind, min_follow_age_seconds: i32) -> i64 {
    let post_policy = match kind {
        GroupKind::Broadcast => PostPolicy::AdminsOnly,
        _ => PostPolicy::AllMembers,
    };
    let request = pb::CreateGroupRequest {
        kind: kind as i32,
        title: format!("followers of {owner}"),
        settings: Some(pb::GroupSettings {
            min_follow_age_seconds,
            ..settings(JoinPolicy::FollowersOnly, post_policy)
        }),
        ..Default::default()
    };
    let created = client.create_group(as_user(owner, request)).await.expect("CreateGroup succeeds").into_inner();
    let group = created.group.expect("the new group is returned");
    assert_eq!(group.settings.map(|settings| settings.min_follow_age_seconds), Some(min_follow_age_seconds));
    group.group_id
}

/// The one precondition violation of a refusal: (type, subject).
fn violation(status: &Status) -> (String, String) {
    let details = status.get_error_details();
    let failure = details.precondition_failure().expect("a PreconditionFailure detail");
    assert_eq!(failure.violations.len(), 1, "{status:?}");
    (failure.violations[0].r#type.clone(), failure.violations[0].subject.clone())
}

/// Makes `follower` follow `creator` since `followed_at`, below the fanout API (which
/// always follows "now").
async fn follow_since(fanout: &TestFanout, follower: i64, creator: i64, followed_at: DateTime<Utc>) {
    let (follower, creator) = (UserId::from_trusted(follower), UserId::from_trusted(creator));
    fanout.store.follow(follower, creator, None, followed_at).await.expect("the follow is stored");
}

async fn followers_of_the_owner_join_and_others_are_refused(storage: Storage) {
    let (_fanout, mut follows, groups, mut client) = start_pair(storage).await;
    let channel = followers_only(&mut client, 1, GroupKind::Broadcast, 0).await;
    let community = followers_only(&mut client, 1, GroupKind::Community, 0).await;

    fanout::follow(&mut follows, 2, 1).await;
    for group_id in [channel, community] {
        let joined = join(&mut client, 2, group_id).await.expect("a follower joins");
        assert_eq!(joined.outcome, pb::JoinOutcome::Joined as i32);
        assert_eq!(joined.membership.map(|member| (member.group_id, member.user_id)), Some((group_id, 2)));
        let last = events(&groups).await.pop().and_then(|event| event.change);
        let Some(Change::MemberJoined(joined)) = last else { panic!("expected a join event, got {last:?}") };
        assert_eq!((joined.user_id, joined.method), (2, JoinMethod::Direct as i32));
    }

    // Following someone else is not following the owner.
    fanout::follow(&mut follows, 3, 2).await;
    let refused = expect_precondition(join(&mut client, 3, channel).await, "NOT_A_FOLLOWER");
    assert_eq!(violation(&refused), ("NOT_A_FOLLOWER".to_owned(), "user:1".to_owned()));
    assert!(refused.message().contains("follow user 1"), "says whom to follow: {refused:?}");
    assert_eq!(membership(&mut client, channel, 3).await, None);
    assert_eq!(get(&mut client, 1, channel).await.member_count, 2, "owner and the follower");

    fanout::follow(&mut follows, 3, 1).await;
    let joined = join(&mut client, 3, channel).await.expect("joins once following");
    assert_eq!(joined.outcome, pb::JoinOutcome::Joined as i32);

    // Membership, once had, does not hang on the follow: a member who unfollows stays, and
    // joining again is answered as for any member.
    assert!(fanout::unfollow(&mut follows, 3, 1).await);
    let again = join(&mut client, 3, channel).await.expect("still a member");
    assert_eq!(again.outcome, pb::JoinOutcome::AlreadyMember as i32);

    // A ban is checked before the follow graph is asked.
    let ban = pb::BanMemberRequest { group_id: community, user_id: 2, ..Default::default() };
    client.ban_member(as_user(1, ban)).await.expect("banned");
    expect_code(join(&mut client, 2, community).await, Code::PermissionDenied);
}

async fn the_current_owner_is_the_one_to_follow(storage: Storage) {
    let (_fanout, mut follows, _groups, mut client) = start_pair(storage).await;
    let channel = followers_only(&mut client, 1, GroupKind::Broadcast, 0).await;
    let add = pb::AddMembersRequest { group_id: channel, user_ids: vec![5] };
    client.add_members(as_user(1, add)).await.expect("added");
    let transfer = pb::TransferOwnershipRequest { group_id: channel, new_owner_user_id: 5 };
    client.transfer_ownership(as_user(1, transfer)).await.expect("transferred");

    fanout::follow(&mut follows, 2, 1).await;
    let refused = expect_precondition(join(&mut client, 2, channel).await, "NOT_A_FOLLOWER");
    assert_eq!(violation(&refused).1, "user:5", "the new owner is the one to follow");
    fanout::follow(&mut follows, 3, 5).await;
    let joined = join(&mut client, 3, channel).await.expect("a follower of the new owner joins");
    assert_eq!(joined.outcome, pb::JoinOutcome::Joined as i32);
}

async fn a_minimum_follow_age_holds_fresh_followers_back(storage: Storage) {
    let (fanout, mut follows, _groups, mut client) = start_pair(storage).await;
    let channel = followers_only(&mut client, 1, GroupKind::Broadcast, DAY).await;

    let fresh = fanout::follow(&mut follows, 2, 1).await.follow.expect("the edge");
    let followed = fresh.followed_at.expect("a follow time");
    let followed_at = DateTime::from_timestamp(followed.seconds, u32::try_from(followed.nanos).expect("nanos"));
    let followed_at = followed_at.expect("a valid follow time");
    let refused = expect_precondition(join(&mut client, 2, channel).await, "FOLLOW_TOO_RECENT");
    assert_eq!(violation(&refused).1, "user:1");
    // A day after the follow, rounded up to the second.
    let rounded_up = followed_at.timestamp() + i64::from(followed_at.timestamp_subsec_nanos() > 0);
    let joinable_at = DateTime::from_timestamp(rounded_up, 0).expect("a time") + Duration::days(1);
    let stated = joinable_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    assert!(refused.message().contains(&stated), "says when ({stated}): {refused:?}");
    assert_eq!(membership(&mut client, channel, 2).await, None);

    // Old enough exactly at followed_at + the minimum, not at the next whole second: a
    // follow a day before a moment just past this second's start qualifies now, although
    // rounding up would hold it back until the next second.
    let now = Utc::now();
    let this_second = DateTime::from_timestamp(now.timestamp(), 0).expect("a time");
    if now - this_second > Duration::milliseconds(500) {
        // Late in the second: the join below could cross into the next one and pass anyway.
        tokio::time::sleep((this_second + Duration::seconds(1) - now).to_std().expect("positive")).await;
    }
    let just_past_a_second = DateTime::from_timestamp(Utc::now().timestamp(), 1_000).expect("a time");
    follow_since(&fanout, 5, 1, just_past_a_second - Duration::days(1)).await;
    let joined = join(&mut client, 5, channel).await.expect("a follower exactly old enough joins");
    assert_eq!(joined.outcome, pb::JoinOutcome::Joined as i32);

    // Followed for a day and a minute: old enough.
    follow_since(&fanout, 3, 1, Utc::now() - Duration::days(1) - Duration::minutes(1)).await;
    let joined = join(&mut client, 3, channel).await.expect("an old enough follower joins");
    assert_eq!(joined.outcome, pb::JoinOutcome::Joined as i32);

    // Raising the minimum holds back the same follow age.
    follow_since(&fanout, 4, 1, Utc::now() - Duration::days(1) - Duration::minutes(1)).await;
    let raise = pb::UpdateGroupSettingsRequest {
        group_id: channel,
        min_follow_age_seconds: Some(7 * DAY),
        ..Default::default()
    };
    let raised = client.update_group_settings(as_user(1, raise)).await.expect("updated").into_inner();
    assert_eq!(
        raised.group.and_then(|group| group.settings).map(|settings| settings.min_follow_age_seconds),
        Some(7 * DAY)
    );
    expect_precondition(join(&mut client, 4, channel).await, "FOLLOW_TOO_RECENT");

    // An invite is the permission: it skips the follow check altogether.
    let code = invite(&mut client, 1, channel, 0).await.code;
    let redeemed = client.join_with_invite(as_user(2, pb::JoinWithInviteRequest { code })).await;
    assert_eq!(redeemed.expect("joined by invite").into_inner().outcome, pb::JoinOutcome::Joined as i32);
}

async fn a_fanout_service_that_is_down_lets_nobody_in(storage: Storage) {
    let (_groups, mut client) = start_with(storage, |config| config.fanout_url = Some(NOBODY_URL.to_owned())).await;
    let channel = followers_only(&mut client, 1, GroupKind::Broadcast, 0).await;

    let refused = expect_code(join(&mut client, 2, channel).await, Code::Unavailable);
    let details = refused.get_error_details();
    assert!(details.retry_info().and_then(|retry| retry.retry_delay).is_some(), "a retry delay: {refused:?}");
    assert!(refused.message().contains("fanout"), "names what is down: {refused:?}");
    assert!(!refused.message().contains("127.0.0.1"), "the cause stays in the log: {refused:?}");
    assert_eq!(membership(&mut client, channel, 2).await, None, "nobody gets in on a failure");
    assert_eq!(get(&mut client, 1, channel).await.member_count, 1);

    // Only FOLLOWERS_ONLY joins ask the fanout service.
    let open = create(&mut client, 1, GroupKind::Community).await.group_id;
    let joined = join(&mut client, 2, open).await.expect("an open group does not need fanout");
    assert_eq!(joined.outcome, pb::JoinOutcome::Joined as i32);
    let approval = create_with_policy(&mut client, 1, GroupKind::Community, JoinPolicy::Approval).await.group_id;
    let pending = join(&mut client, 2, approval).await.expect("an approval group does not need fanout");
    assert_eq!(pending.outcome, pb::JoinOutcome::PendingApproval as i32);
}

async fn the_minimum_follow_age_is_validated(storage: Storage) {
    let (_groups, mut client) = start_with(storage, |_| {}).await;
    let create_with = |kind: GroupKind, join_policy: JoinPolicy, min_follow_age_seconds: i32| pb::CreateGroupRequest {
        kind: kind as i32,
        title: "t".to_owned(),
        settings: Some(pb::GroupSettings { min_follow_age_seconds, ..settings(join_policy, PostPolicy::AllMembers) }),
        ..Default::default()
    };
    let field = "settings.min_follow_age_seconds";
    let bad = [
        create_with(GroupKind::Community, JoinPolicy::FollowersOnly, -1),
        create_with(GroupKind::Community, JoinPolicy::FollowersOnly, 365 * DAY + 1),
        create_with(GroupKind::Community, JoinPolicy::FollowersOnly, i32::MIN),
        create_with(GroupKind::Community, JoinPolicy::Open, 60),
        create_with(GroupKind::Community, JoinPolicy::Approval, 60),
    ];
    for request in bad {
        let status = expect_exact_violations(client.create_group(as_user(1, request)).await, &[field]);
        assert!(status.message().contains(field), "the message names the field: {status:?}");
    }
    let longest = create_with(GroupKind::Community, JoinPolicy::FollowersOnly, 365 * DAY);
    client.create_group(as_user(1, longest)).await.expect("365 days is the inclusive limit");

    let group_id = create(&mut client, 1, GroupKind::Community).await.group_id;
    let update = pb::UpdateGroupSettingsRequest { group_id, ..Default::default() };
    let with_age = |age: i32, join_policy: Option<JoinPolicy>| pb::UpdateGroupSettingsRequest {
        min_follow_age_seconds: Some(age),
        join_policy: join_policy.map(|policy| policy as i32),
        ..update.clone()
    };
    let followers = Some(JoinPolicy::FollowersOnly);
    for (request, why) in [
        (with_age(-1, followers), "negative"),
        (with_age(365 * DAY + 1, followers), "over 365 days"),
        (with_age(60, None), "on an OPEN group"),
        (with_age(60, Some(JoinPolicy::InviteOnly)), "with another policy"),
    ] {
        let refused = client.update_group_settings(as_user(1, request)).await;
        let status = expect_exact_violations(refused, &["min_follow_age_seconds"]);
        assert!(status.message().contains("min_follow_age_seconds"), "{why}: {status:?}");
    }
    assert_eq!(get(&mut client, 1, group_id).await.settings.map(|settings| settings.min_follow_age_seconds), Some(0));

    let min_age = |group: &pb::Group| group.settings.as_ref().map(|settings| settings.min_follow_age_seconds);
    let set = client.update_group_settings(as_user(1, with_age(DAY, followers))).await.expect("accepted");
    assert_eq!(min_age(&set.into_inner().group.expect("a group")), Some(DAY));
    let zero = client.update_group_settings(as_user(1, with_age(0, None))).await.expect("0 fits any policy");
    assert_eq!(min_age(&zero.into_inner().group.expect("a group")), Some(0));
    client.update_group_settings(as_user(1, with_age(DAY, None))).await.expect("FOLLOWERS_ONLY already");
    let open = pb::UpdateGroupSettingsRequest { join_policy: Some(JoinPolicy::Open as i32), ..update.clone() };
    let opened = client.update_group_settings(as_user(1, open)).await.expect("leaving FOLLOWERS_ONLY");
    assert_eq!(min_age(&opened.into_inner().group.expect("a group")), Some(0), "reset with the policy");
}
