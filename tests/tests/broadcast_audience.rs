//! A BROADCAST group's audience is private (docs/groups.md, "Visibility"), and the update log
//! keeps it so (docs/messages.md, docs/fanout.md): a plain member reading `GetUpdates` or a
//! `Subscribe` stream (catch-up and live) gets membership events about other users in their
//! place without those users; their own stay whole, so a ban still ends their stream.
//! Moderators see everything, and CHAT and COMMUNITY groups are unchanged.

use std::collections::{BTreeMap, BTreeSet};

use fanfare_proto::common::v1::group_event::Change as Event;
use fanfare_proto::common::v1::{GroupKind, Role, Update, update};
use fanfare_proto::fanout::v1 as pb;
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{add, set_role};
use fanfare_tests::live::{LiveFixture, Received, Subscription, subscribe_fresh};
use fanfare_tests::messages::all_updates;
use fanfare_tests::on_every_storage;

on_every_storage!(
    get_updates_hides_other_members_of_a_broadcast_from_plain_members,
    subscribe_hides_other_members_of_a_broadcast_live_and_on_catch_up,
    chat_and_community_members_still_see_each_other,
);

/// The owner, a plain member (the viewer), another plain member, and an admin.
const OWNER: i64 = 1;
const VIEWER: i64 = 2;
const LEAVER: i64 = 3;
const ADMIN: i64 = 4;
/// Users who join, get banned, get removed after the viewer is watching.
const JOINER: i64 = 5;
const BANNED: i64 = 6;

/// Every user id a membership event names (its subject and who acted), or none for other
/// updates.
fn named_users(update: &Update) -> Vec<i64> {
    let Some(update::Change::GroupEvent(event)) = &update.change else { return Vec::new() };
    let subject = match event.change.as_ref() {
        Some(Event::MemberJoined(joined)) => joined.user_id,
        Some(Event::MemberLeft(left)) => left.user_id,
        Some(Event::MemberRemoved(removed)) => removed.user_id,
        Some(Event::MemberBanned(banned)) => banned.user_id,
        Some(Event::MemberUnbanned(unbanned)) => unbanned.user_id,
        Some(Event::MemberMuted(muted)) => muted.user_id,
        Some(Event::MemberUnmuted(unmuted)) => unmuted.user_id,
        Some(Event::MemberRoleChanged(changed)) => changed.user_id,
        _ => return Vec::new(),
    };
    vec![subject, event.actor_user_id]
}

/// The user ids (not 0) the membership events of `updates` name.
fn users_named(updates: &[Update]) -> BTreeSet<i64> {
    updates.iter().flat_map(named_users).filter(|user| *user != 0).collect()
}

/// Whether `updates` holds a membership event of the kind `wanted` says, about `user`.
fn has_event(updates: &[Update], wanted: impl Fn(&Event) -> Option<i64>, user: i64) -> bool {
    updates.iter().any(|update| match &update.change {
        Some(update::Change::GroupEvent(event)) => event.change.as_ref().and_then(&wanted) == Some(user),
        _ => false,
    })
}

fn joined(event: &Event) -> Option<i64> {
    match event {
        Event::MemberJoined(joined) => Some(joined.user_id),
        _ => None,
    }
}

fn banned(event: &Event) -> Option<i64> {
    match event {
        Event::MemberBanned(banned) => Some(banned.user_id),
        _ => None,
    }
}

/// Event seqs 1, 2, 3, … with no hole.
#[track_caller]
fn assert_gapless_from(updates: &[Update], first: i64) {
    let seqs: Vec<i64> = updates.iter().map(|update| update.event_seq).collect();
    let expected: Vec<i64> = (first..first + seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "every entry keeps its place");
}

/// A group of `kind` owned by [`OWNER`] with the viewer, the leaver and an admin.
async fn group_of(live: &mut LiveFixture, kind: GroupKind) -> i64 {
    let group = live.fixture.group(kind, OWNER, &[VIEWER, LEAVER, ADMIN]).await;
    set_role(&mut live.fixture.groups, OWNER, group, ADMIN, Role::Admin).await;
    live.fixture.settle().await;
    group
}

/// Membership changes about others: a join, a leave, an add and a ban, a removal.
async fn audience_changes(live: &mut LiveFixture, group_id: i64) {
    let groups = &mut live.fixture.groups;
    let join = groups_pb::JoinGroupRequest { group_id };
    groups.join_group(as_user(JOINER, join)).await.expect("JoinGroup succeeds");
    let leave = groups_pb::LeaveGroupRequest { group_id };
    groups.leave_group(as_user(LEAVER, leave)).await.expect("LeaveGroup succeeds");
    add(groups, OWNER, group_id, &[BANNED]).await;
    ban(live, group_id, BANNED).await;
    let remove = groups_pb::RemoveMemberRequest { group_id, user_id: JOINER };
    live.fixture.groups.remove_member(as_user(OWNER, remove)).await.expect("RemoveMember succeeds");
    live.fixture.settle().await;
}

async fn ban(live: &mut LiveFixture, group_id: i64, user_id: i64) {
    let request = groups_pb::BanMemberRequest { group_id, user_id, ..Default::default() };
    live.fixture.groups.ban_member(as_user(OWNER, request)).await.expect("BanMember succeeds");
}

async fn get_updates_hides_other_members_of_a_broadcast_from_plain_members(storage: Storage) {
    let mut live = LiveFixture::start(storage, 0).await;
    let group = group_of(&mut live, GroupKind::Broadcast).await;
    audience_changes(&mut live, group).await;

    let seen_by_admin = all_updates(&mut live.fixture.messages, ADMIN, group).await;
    let seen_by_viewer = all_updates(&mut live.fixture.messages, VIEWER, group).await;
    assert_eq!(
        users_named(&seen_by_admin),
        BTreeSet::from([OWNER, VIEWER, LEAVER, ADMIN, JOINER, BANNED]),
        "a moderator sees every member"
    );
    assert_eq!(
        users_named(&seen_by_viewer),
        BTreeSet::from([VIEWER, OWNER]),
        "a plain member sees only themselves (and the owner, who added them)"
    );
    assert_gapless_from(&seen_by_viewer, 1);
    assert_eq!(seen_by_viewer.len(), seen_by_admin.len(), "nothing is left out, only cleared");
    assert!(has_event(&seen_by_viewer, joined, VIEWER), "their own join stays whole");
    // The redacted entries still say what happened.
    let kinds = |updates: &[Update]| -> Vec<String> {
        updates
            .iter()
            .map(|update| match &update.change {
                Some(update::Change::GroupEvent(event)) => format!("{:?}", std::mem::discriminant(&event.change)),
                other => format!("{:?}", other.as_ref().map(std::mem::discriminant)),
            })
            .collect()
    };
    assert_eq!(kinds(&seen_by_viewer), kinds(&seen_by_admin), "the same events, in the same places");

    // Moderation of the viewer themselves reaches them whole (a ban too: the stream test
    // shows it ending their stream).
    let until = fanfare_core::time::to_timestamp(chrono::Utc::now() + chrono::TimeDelta::hours(1));
    let mute = groups_pb::MuteMemberRequest { group_id: group, user_id: VIEWER, until: Some(until) };
    live.fixture.groups.mute_member(as_user(ADMIN, mute)).await.expect("MuteMember succeeds");
    live.fixture.settle().await;
    let seen_by_viewer = all_updates(&mut live.fixture.messages, VIEWER, group).await;
    let muted = |event: &Event| match event {
        Event::MemberMuted(muted) => Some(muted.user_id),
        _ => None,
    };
    assert!(has_event(&seen_by_viewer, muted, VIEWER), "their own mute stays whole");
    assert_eq!(users_named(&seen_by_viewer), BTreeSet::from([VIEWER, OWNER, ADMIN]), "with whoever acted on them");
}

async fn subscribe_hides_other_members_of_a_broadcast_live_and_on_catch_up(storage: Storage) {
    let mut live = LiveFixture::start(storage, 1).await;
    let group = group_of(&mut live, GroupKind::Broadcast).await;
    let mut client = live.client(0).await;
    let (mut viewer, viewer_starts) = subscribe_fresh(&mut client, VIEWER).await;
    let (mut admin, _) = subscribe_fresh(&mut client, ADMIN).await;
    let start = viewer_starts[&group];

    audience_changes(&mut live, group).await;
    live.send(OWNER, group, "after-the-changes").await;
    viewer.until_message(group, "after-the-changes").await;
    admin.until_message(group, "after-the-changes").await;

    // Live delivery.
    let live_to_viewer = viewer.updates[&group].clone();
    assert!(users_named(&admin.updates[&group]).is_superset(&BTreeSet::from([LEAVER, JOINER, BANNED])));
    assert_eq!(users_named(&live_to_viewer), BTreeSet::new(), "no other member reaches a plain member live");
    viewer.assert_gapless(&viewer_starts);
    let logged: Vec<Update> = all_updates(&mut live.fixture.messages, VIEWER, group)
        .await
        .into_iter()
        .filter(|update| update.event_seq > start)
        .collect();
    assert_eq!(live_to_viewer, logged, "live and GetUpdates agree on what the plain member sees");

    // Catch-up: a stream resumed from before the changes replays them from the log.
    let resume = pb::SubscribeRequest {
        positions: vec![pb::GroupPosition { group_id: group, event_seq: start, entry_token: 0 }],
        ..Default::default()
    };
    let mut resumed = Subscription::open(&mut client, VIEWER, resume).await.expect("Subscribe opens");
    resumed.until_message(group, "after-the-changes").await;
    resumed.assert_gapless(&BTreeMap::from([(group, start)]));
    assert_eq!(resumed.updates[&group], live_to_viewer, "catch-up shows the same as live delivery");

    // Their own ban reaches them whole and ends the group on their stream.
    ban(&mut live, group, VIEWER).await;
    live.fixture.settle().await;
    let frames = viewer.until(|stream| has_event(&stream.updates[&group], banned, VIEWER)).await;
    let stopped = match viewer.next().await {
        Some(Received::Membership(change)) => change,
        other => panic!("the ban is followed by STOPPED, got {other:?} after {frames:?}"),
    };
    assert_eq!((stopped.group_id, stopped.kind()), (group, pb::MembershipChangeKind::Stopped));
}

async fn chat_and_community_members_still_see_each_other(storage: Storage) {
    for kind in [GroupKind::Chat, GroupKind::Community] {
        let mut live = LiveFixture::start(storage, 1).await;
        let group = live.fixture.group(kind, OWNER, &[VIEWER, LEAVER]).await;
        let mut client = live.client(0).await;
        let (mut viewer, _) = subscribe_fresh(&mut client, VIEWER).await;
        add(&mut live.fixture.groups, OWNER, group, &[JOINER]).await;
        let leave = groups_pb::LeaveGroupRequest { group_id: group };
        live.fixture.groups.leave_group(as_user(LEAVER, leave)).await.expect("LeaveGroup succeeds");
        live.fixture.settle().await;
        live.send(OWNER, group, "after-the-changes").await;
        viewer.until_message(group, "after-the-changes").await;

        let expected = BTreeSet::from([OWNER, LEAVER, JOINER]);
        assert_eq!(users_named(&viewer.updates[&group]), expected, "{kind:?}: live shows who joined and left");
        let logged = all_updates(&mut live.fixture.messages, VIEWER, group).await;
        assert!(users_named(&logged).is_superset(&expected), "{kind:?}: so does GetUpdates");
    }
}
