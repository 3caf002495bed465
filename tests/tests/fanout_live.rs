//! Live delivery (`Subscribe`) end to end: groups, messages and fanout pods on one bus,
//! on memory and on Postgres + Redis.

use std::collections::BTreeMap;

use fanfare_proto::common::v1::group_event::Change;
use fanfare_proto::common::v1::{GroupKind, Message, Role, Update, update};
use fanfare_proto::fanout::v1 as pb;
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_proto::messages::v1 as messages_pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{add, set_role};
use fanfare_tests::live::{LiveFixture, Received, Subscription, subscribe_fresh};
use fanfare_tests::messages::{all_updates, is_group_event, log_snapshot, restore_log};
use fanfare_tests::proxy::Proxy;
use fanfare_tests::{expect_code, expect_field_violation, on_every_storage};
use tonic::Code;

on_every_storage!(
    a_stream_carries_every_group_in_order,
    a_resumed_stream_replays_what_it_missed_then_goes_live,
    streams_on_two_pods_both_receive_an_update,
    a_stalled_consumer_catches_up_without_holding_up_others,
    a_removed_member_gets_nothing_after_the_removal,
    a_joined_group_starts_without_reconnecting,
    shutdown_ends_streams_with_the_reconnect_signal,
    heartbeats_keep_coming_with_the_delivered_positions,
    a_stream_that_cannot_catch_up_asks_to_reconnect_from_what_it_delivered,
    live_edits_of_history_hidden_from_a_newcomer_carry_no_content,
    two_messages_pods_sending_to_the_same_groups_deliver_each_group_in_order,
    streams_per_user_are_capped_per_pod,
    a_stream_that_keeps_falling_behind_is_asked_to_reconnect,
    a_resume_position_the_log_never_reached_is_answered_with_resync,
    subscribe_calls_are_rate_limited_per_user,
);

async fn a_stream_carries_every_group_in_order(storage: Storage) {
    let mut live = LiveFixture::start(storage, 1).await;
    let first = live.chat(1, &[2]).await;
    let second = live.chat(3, &[2]).await;
    let elsewhere = live.chat(4, &[5]).await;
    let mut client = live.client(0).await;
    let (mut stream, starts) = subscribe_fresh(&mut client, 2).await;
    assert_eq!(starts.keys().copied().collect::<Vec<_>>(), [first, second], "the stream carries the user's groups");

    for round in 0..5 {
        live.send(1, first, &format!("first-{round}")).await;
        live.send(3, second, &format!("second-{round}")).await;
        live.send(4, elsewhere, &format!("elsewhere-{round}")).await;
    }
    stream.until_message(first, "first-4").await;
    stream.until_message(second, "second-4").await;
    stream.assert_gapless(&starts);
    let keys: Vec<String> = stream.messages(first).iter().map(|message| message.client_message_id.clone()).collect();
    assert_eq!(keys, ["first-0", "first-1", "first-2", "first-3", "first-4"]);
    assert_eq!(stream.messages(second).len(), 5);
    assert!(!stream.updates.contains_key(&elsewhere), "nothing of a group the user is not in");
}

/// Each messages pod publishes what it commits itself, so two pods committing turns of the
/// same groups publish them independently: a stream still gets every group's updates once,
/// in order, with no hole (a jump is repaired from the log, a late repeat recognised).
async fn two_messages_pods_sending_to_the_same_groups_deliver_each_group_in_order(storage: Storage) {
    let mut live = LiveFixture::start(storage, 2).await;
    let groups = [live.chat(1, &[2, 3]).await, live.chat(1, &[2, 3]).await, live.chat(1, &[2, 3]).await];
    let mut other_pod = live.add_messages_pod().await;
    let mut first_pod = live.fixture.messages.clone();
    let mut on_first = live.client(0).await;
    let mut on_second = live.client(1).await;
    let (mut two, starts_two) = subscribe_fresh(&mut on_first, 2).await;
    let (mut three, starts_three) = subscribe_fresh(&mut on_second, 3).await;

    const ROUNDS: usize = 30;
    // Both pods at once, each sending every group's turns: their commits of one group
    // interleave, and so do their publishes.
    let sends = |client: &mut fanfare_tests::messages::Client, pod: &'static str| {
        let mut client = client.clone();
        async move {
            for round in 0..ROUNDS {
                for group_id in groups {
                    let key = format!("{pod}-{group_id}-{round}");
                    fanfare_tests::messages::send_ok(&mut client, 1, group_id, &key, &key).await;
                }
            }
        }
    };
    tokio::join!(sends(&mut first_pod, "first"), sends(&mut other_pod, "second"));

    for group_id in groups {
        let last = all_updates(&mut first_pod, 1, group_id).await.last().expect("the group has a log").event_seq;
        two.until_seq(group_id, last).await;
        three.until_seq(group_id, last).await;
        for stream in [&two, &three] {
            assert_eq!(stream.messages(group_id).len(), 2 * ROUNDS, "every message of group {group_id} once");
        }
    }
    two.assert_gapless(&starts_two);
    three.assert_gapless(&starts_three);
}

async fn a_resumed_stream_replays_what_it_missed_then_goes_live(storage: Storage) {
    let mut live = LiveFixture::start(storage, 1).await;
    let group = live.chat(1, &[2]).await;
    let other = live.chat(1, &[2]).await;
    let mut client = live.client(0).await;
    let (mut stream, starts) = subscribe_fresh(&mut client, 2).await;
    live.send(1, group, "before-0").await;
    live.send(1, group, "before-1").await;
    stream.until_message(group, "before-1").await;
    let last_seen = stream.last_seq(group);
    drop(stream);

    // Missed while disconnected.
    for index in 0..3 {
        live.send(1, group, &format!("missed-{index}")).await;
    }
    live.send(1, other, "missed-other").await;

    // Resume with an explicit position for one group and nothing for the other: the
    // named group replays, the other starts at its latest.
    let request = pb::SubscribeRequest {
        positions: vec![pb::GroupPosition { group_id: group, event_seq: last_seen, entry_token: 0 }],
        cursor: String::new(),
    };
    let mut resumed = Subscription::open(&mut client, 2, request).await.expect("Subscribe resumes");
    live.send(1, group, "after").await;
    resumed.until_message(group, "after").await;
    let keys: Vec<String> = resumed.messages(group).iter().map(|message| message.client_message_id.clone()).collect();
    assert_eq!(keys, ["missed-0", "missed-1", "missed-2", "after"], "the missed ones first, then live");
    resumed.assert_gapless(&BTreeMap::from([(group, last_seen)]));
    assert!(resumed.messages(other).is_empty(), "a group without a position starts at its latest");

    // The cursor of a heartbeat resumes every group at once.
    drop(resumed);
    let (probe, _) = subscribe_fresh(&mut client, 2).await;
    let cursor = probe.cursor.clone();
    drop(probe);
    live.send(1, group, "via-cursor").await;
    live.send(1, other, "via-cursor-other").await;
    let request = pb::SubscribeRequest { positions: Vec::new(), cursor };
    let mut from_cursor = Subscription::open(&mut client, 2, request).await.expect("Subscribe resumes from a cursor");
    from_cursor.until_message(group, "via-cursor").await;
    from_cursor.until_message(other, "via-cursor-other").await;
    assert_eq!(from_cursor.messages(group).len(), 1, "exactly what followed the cursor");
    assert_eq!(from_cursor.messages(other).len(), 1, "exactly what followed the cursor");
    let _ = starts;
}

async fn streams_on_two_pods_both_receive_an_update(storage: Storage) {
    let mut live = LiveFixture::start(storage, 2).await;
    let group = live.chat(1, &[2, 3]).await;
    let mut on_first = live.client(0).await;
    let mut on_second = live.client(1).await;
    let (mut two, starts_two) = subscribe_fresh(&mut on_first, 2).await;
    let (mut three, starts_three) = subscribe_fresh(&mut on_second, 3).await;
    // The same user on both pods, too.
    let (mut two_again, _) = subscribe_fresh(&mut on_second, 2).await;
    for index in 0..3 {
        live.send(1, group, &format!("hello-{index}")).await;
    }
    two.until_message(group, "hello-2").await;
    three.until_message(group, "hello-2").await;
    two_again.until_message(group, "hello-2").await;
    two.assert_gapless(&starts_two);
    three.assert_gapless(&starts_three);
    assert_eq!(two.messages(group).len(), 3);
    assert_eq!(three.messages(group).len(), 3);
}

async fn a_stalled_consumer_catches_up_without_holding_up_others(storage: Storage) {
    let mut live = LiveFixture::start_with(storage, 1, |config| config.live.stream_queue_capacity = 4).await;
    let group = live.chat(1, &[2, 3]).await;
    let mut client = live.client(0).await;
    let (mut stalled, stalled_starts) = subscribe_fresh(&mut client, 2).await;
    let (mut reader, reader_starts) = subscribe_fresh(&mut client, 3).await;
    // 2.8 MB of messages: more than the client's HTTP/2 stream window (2 MiB), so the server
    // cannot write to the stalled stream, its inbox overflows (a run counted 184 overflowed
    // updates) and it must catch up from the log once it reads again.
    let body = "x".repeat(4_000);
    for index in 0..700 {
        let request = fanfare_tests::messages::text(group, &format!("m-{index}"), &body);
        live.fixture.messages.send_message(as_user(1, request)).await.expect("SendMessage succeeds");
        if index % 10 == 9 {
            // The reader keeps up while the other stream reads nothing.
            reader.until_message(group, &format!("m-{index}")).await;
        }
    }
    reader.assert_gapless(&reader_starts);
    assert_eq!(reader.messages(group).len(), 700);

    stalled.until_message(group, "m-699").await;
    stalled.assert_gapless(&stalled_starts);
    let keys: Vec<String> = stalled.messages(group).iter().map(|message| message.client_message_id.clone()).collect();
    let expected: Vec<String> = (0..700).map(|index| format!("m-{index}")).collect();
    assert_eq!(keys, expected, "nothing lost, nothing twice, in order");
}

async fn a_removed_member_gets_nothing_after_the_removal(storage: Storage) {
    let mut live = LiveFixture::start(storage, 1).await;
    let group = live.chat(1, &[2, 3]).await;
    let mut client = live.client(0).await;
    let (mut stream, starts) = subscribe_fresh(&mut client, 2).await;
    live.send(1, group, "before").await;
    let request = groups_pb::RemoveMemberRequest { group_id: group, user_id: 2 };
    live.fixture.groups.remove_member(as_user(1, request)).await.expect("RemoveMember succeeds");
    let frames = stream
        .until(|sub| sub.updates.get(&group).is_some_and(|updates| updates.iter().any(|u| is_removal_of(u, 2))))
        .await;
    let removal_seq = stream.last_seq(group);
    // The removal update is the last of the group; the stream says it stopped carrying it.
    let mut stopped = frames.iter().any(|frame| stopped_at(frame, group, removal_seq));
    while !stopped {
        let frame = stream.next().await.expect("the stream stays open");
        stopped = stopped_at(&frame, group, removal_seq);
    }
    live.send(1, group, "after").await;
    live.send(3, group, "after-too").await;
    let other = live.chat(5, &[2]).await;
    // Something else arrives on the stream (the join to another group) before we look.
    stream.until(|sub| sub.updates.contains_key(&other)).await;
    assert_eq!(stream.last_seq(group), removal_seq, "nothing of the group after the removal");
    assert!(stream.messages(group).iter().all(|message| message.client_message_id == "before"));
    stream.assert_gapless(&starts);
}

async fn a_joined_group_starts_without_reconnecting(storage: Storage) {
    let mut live = LiveFixture::start(storage, 1).await;
    let first = live.chat(1, &[2]).await;
    let mut client = live.client(0).await;
    let (mut stream, _) = subscribe_fresh(&mut client, 2).await;
    let later = live.chat(3, &[]).await;
    let added = groups_pb::AddMembersRequest { group_id: later, user_ids: vec![2] };
    live.fixture.groups.add_members(as_user(3, added)).await.expect("AddMembers succeeds");
    live.fixture.settle().await;
    let mut started_after = None;
    while started_after.is_none() {
        if let Received::Membership(change) = stream.next().await.expect("the stream stays open")
            && change.group_id == later
        {
            assert_eq!(change.kind(), pb::MembershipChangeKind::Started);
            started_after = Some(change.event_seq);
        }
    }
    live.send(3, later, "welcome").await;
    live.send(1, first, "still-here").await;
    stream.until_message(later, "welcome").await;
    stream.until_message(first, "still-here").await;
    let start = started_after.expect("started");
    stream.assert_gapless(&BTreeMap::from([(later, start)]));
    assert!(
        stream.updates[&later].iter().any(|update| is_group_event(update, |change| matches!(
            change, Change::MemberJoined(joined) if joined.user_id == 2
        ))),
        "the join itself is delivered"
    );
}

async fn shutdown_ends_streams_with_the_reconnect_signal(storage: Storage) {
    let mut live = LiveFixture::start(storage, 1).await;
    let group = live.chat(1, &[2]).await;
    let mut client = live.client(0).await;
    let (mut stream, _) = subscribe_fresh(&mut client, 2).await;
    live.send(1, group, "before").await;
    stream.until_message(group, "before").await;
    let pod = live.pods.pop().expect("one pod");
    let stopping = tokio::spawn(pod.stop());
    let mut reconnect = None;
    while let Some(frame) = stream.next().await {
        if let Received::Reconnect(signal) = frame {
            reconnect = Some(signal);
        }
    }
    let reconnect = reconnect.expect("a reconnect frame before the end");
    assert!(reconnect.reason.contains("shutting down"), "{}", reconnect.reason);
    assert!(reconnect.retry_after_ms > 0);
    assert_eq!(stream.cursor, reconnect.cursor);
    stopping.await.expect("the pod task").expect("the pod stops cleanly");
}

#[tokio::test]
async fn bad_resume_positions_are_refused() {
    let live = LiveFixture::start(Storage::Memory, 1).await;
    let mut client = live.client(0).await;
    let bad_cursor = pb::SubscribeRequest { positions: Vec::new(), cursor: "not-a-cursor".into() };
    expect_field_violation(client.subscribe(as_user(2, bad_cursor)).await.map(|_| ()), "cursor");
    let negative = pb::SubscribeRequest {
        positions: vec![
            pb::GroupPosition { group_id: 0, event_seq: 1, entry_token: 0 },
            pb::GroupPosition { group_id: 3, event_seq: -1, entry_token: 0 },
        ],
        cursor: String::new(),
    };
    let status = expect_field_violation(
        client.subscribe(as_user(2, negative.clone())).await.map(|_| ()),
        "positions[0].group_id",
    );
    assert!(status.message().contains("positions[1].event_seq") || !status.message().is_empty());
    let anonymous = client.subscribe(tonic::Request::new(pb::SubscribeRequest::default())).await.map(|_| ());
    expect_code(anonymous, Code::Unauthenticated);
}

#[tokio::test]
async fn an_unreachable_groups_service_refuses_the_stream_with_unavailable() {
    let (_pod, mut client) = fanfare_tests::fanout::start(Storage::Memory).await;
    let status =
        expect_code(client.subscribe(as_user(2, pb::SubscribeRequest::default())).await.map(|_| ()), Code::Unavailable);
    assert!(!status.message().is_empty());
}

fn is_removal_of(update: &fanfare_proto::common::v1::Update, user: i64) -> bool {
    fanfare_tests::messages::is_group_event(
        update,
        |change| matches!(change, fanfare_proto::common::v1::group_event::Change::MemberRemoved(removed) if removed.user_id == user),
    )
}

fn stopped_at(frame: &Received, group: i64, seq: i64) -> bool {
    matches!(frame, Received::Membership(change)
        if change.group_id == group && change.kind() == pb::MembershipChangeKind::Stopped && change.event_seq == seq)
}

#[tokio::test]
async fn list_streams_shows_what_each_open_stream_delivered_on_that_pod() {
    let mut live = LiveFixture::start(Storage::Memory, 2).await;
    let group = live.chat(1, &[2]).await;
    let mut on_first = live.client(0).await;
    let mut on_second = live.client(1).await;
    let (mut stream, _) = subscribe_fresh(&mut on_first, 2).await;
    live.send(1, group, "seen").await;
    stream.until_message(group, "seen").await;
    let delivered = stream.last_seq(group);

    let listed = on_first.list_streams(as_user(2, pb::ListStreamsRequest {})).await.expect("ListStreams answers");
    let listed = listed.into_inner();
    assert!(!listed.pod.is_empty());
    assert_eq!(listed.streams.len(), 1, "{listed:?}");
    let positions = &listed.streams[0].positions;
    assert_eq!(positions, &[stream.last_position(group)], "at {delivered}, with the entry token delivered");
    assert_ne!(positions[0].entry_token, 0);
    assert!(listed.streams[0].opened_at.is_some());

    // A group joined mid-stream appears with what was delivered of it; a group left goes.
    let second = live.chat(3, &[]).await;
    add(&mut live.fixture.groups, 3, second, &[2]).await;
    live.fixture.settle().await;
    live.send(3, second, "in-second").await;
    stream.until_message(second, "in-second").await;
    let leave = groups_pb::LeaveGroupRequest { group_id: group };
    live.fixture.groups.leave_group(as_user(2, leave)).await.expect("LeaveGroup succeeds");
    stream.until(|stream| stream.last_seq(group) > delivered).await;
    // The STOPPED frame follows the leave update in the same batch of frames.
    let positions = on_first.list_streams(as_user(2, pb::ListStreamsRequest {})).await.expect("answers");
    let positions = positions.into_inner().streams[0].positions.clone();
    assert_eq!(positions, [stream.last_position(second)]);

    let elsewhere = on_second.list_streams(as_user(2, pb::ListStreamsRequest {})).await.expect("answers");
    assert!(elsewhere.into_inner().streams.is_empty(), "the stream is on the first pod only");
    let others = on_first.list_streams(as_user(3, pb::ListStreamsRequest {})).await.expect("answers");
    assert!(others.into_inner().streams.is_empty(), "only the caller's streams");
    drop(stream);
    fanfare_tests::messages::eventually("the closed stream is forgotten", || {
        let mut client = on_first.clone();
        async move {
            client
                .list_streams(as_user(2, pb::ListStreamsRequest {}))
                .await
                .expect("answers")
                .into_inner()
                .streams
                .is_empty()
        }
    })
    .await;
}

#[tokio::test]
async fn a_follower_with_a_stream_open_gets_the_job_notification_live() {
    let live = LiveFixture::start(Storage::Memory, 2).await;
    let mut on_first = live.client(0).await;
    let mut on_second = live.client(1).await;
    for follower in [2, 3] {
        let request = pb::FollowRequest { creator_user_id: 9 };
        on_first.follow(as_user(follower, request)).await.expect("Follow succeeds");
    }
    // Follower 2's stream is on the first pod, follower 3's on the second.
    let (mut two, _) = subscribe_fresh(&mut on_first, 2).await;
    let (mut three, _) = subscribe_fresh(&mut on_second, 3).await;
    let start = pb::StartFanoutJobRequest {
        kind: pb::FanoutJobKind::NewGroupInvitation.into(),
        payload_ref: "group:77".into(),
        idempotency_key: "launch".into(),
        rate_limit_per_second: 0,
    };
    let job = on_first.start_fanout_job(as_user(9, start)).await.expect("StartFanoutJob succeeds").into_inner();
    let job_id = job.job.expect("the job").job_id;
    for (stream, follower) in [(&mut two, 2), (&mut three, 3)] {
        let notification = loop {
            if let Received::Notification(notification) = stream.next().await.expect("the stream stays open") {
                break notification;
            }
        };
        assert_eq!(notification.job_id, job_id);
        assert_eq!(notification.creator_user_id, 9);
        assert_eq!(notification.kind(), pb::FanoutJobKind::NewGroupInvitation);
        assert_eq!(notification.payload_ref, "group:77");
        assert_eq!(notification.key, format!("{job_id}:{follower}"));
    }
}

async fn heartbeats_keep_coming_with_the_delivered_positions(storage: Storage) {
    // A short period so the test sees several; the pod's ticker asks each stream in turn.
    let mut live = LiveFixture::start_with(storage, 1, |config| config.live.heartbeat_ms = 160).await;
    let group = live.chat(1, &[2]).await;
    let mut client = live.client(0).await;
    let (mut stream, starts) = subscribe_fresh(&mut client, 2).await;
    let (mut idle, _) = subscribe_fresh(&mut client, 3).await;
    live.send(1, group, "counted").await;
    stream.until_message(group, "counted").await;

    // Every stream hears a heartbeat within a period or so, carrying what it delivered.
    let mut heartbeats = Vec::new();
    while heartbeats.len() < 3 {
        match tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await {
            Ok(Some(Received::Heartbeat(heartbeat))) => heartbeats.push(heartbeat),
            Ok(Some(other)) => panic!("only heartbeats on a quiet stream, got {other:?}"),
            Ok(None) => panic!("the stream ended"),
            Err(_) => panic!("no heartbeat within 5 s at a 160 ms period ({} so far)", heartbeats.len()),
        }
    }
    let delivered = stream.last_seq(group);
    assert!(delivered > starts[&group], "the message was delivered before the heartbeats");
    for heartbeat in &heartbeats {
        assert_eq!(fanfare_tests::live::positions(heartbeat), BTreeMap::from([(group, delivered)]));
        assert_eq!(heartbeat.cursor, stream.cursor, "the cursor is kept from the latest heartbeat");
    }
    let other = tokio::time::timeout(std::time::Duration::from_secs(5), idle.next()).await;
    assert!(matches!(other, Ok(Some(Received::Heartbeat(_)))), "a stream of a user in no group too: {other:?}");
}

async fn a_stream_that_cannot_catch_up_asks_to_reconnect_from_what_it_delivered(storage: Storage) {
    // One pod reads the update log through a proxy the test cuts; a second reads it directly.
    let mut live = LiveFixture::start(storage, 1).await;
    let proxy = Proxy::start(live.fixture.stack.messages_addr).await;
    let through_proxy = format!("http://{}", proxy.addr);
    let cut_off = live.add_pod(&|config| config.live.messages_url.clone_from(&through_proxy)).await;
    let group = live.chat(1, &[2]).await;
    let mut client = live.client(cut_off).await;
    let (mut stream, _) = subscribe_fresh(&mut client, 2).await;
    live.send(1, group, "before").await;
    stream.until_message(group, "before").await;
    let delivered = stream.last_seq(group);

    // The messages service is unreachable from that pod, and an update skips ahead of the
    // stream's position: the stream must read the log before delivering anything more.
    proxy.cut();
    let ahead = fanfare_proto::common::v1::Update { group_id: group, event_seq: delivered + 2, ..Default::default() };
    live.fixture
        .stack
        .bus
        .publish(&fanfare_bus::group_channel(group), prost::Message::encode_to_vec(&ahead).into())
        .await
        .expect("publish on the bus");

    let reconnect = loop {
        match stream.next().await.expect("the stream ends with a reconnect frame, not silently") {
            Received::Reconnect(reconnect) => break reconnect,
            Received::Heartbeat(_) => {}
            other => panic!("nothing is delivered past the hole, got {other:?}"),
        }
    };
    assert!(reconnect.reason.contains("catching up failed"), "{}", reconnect.reason);
    assert!(reconnect.retry_after_ms > 0);
    assert!(stream.next().await.is_none(), "the reconnect frame is the last");
    assert_eq!(stream.messages(group).len(), 1);

    // Its cursor is exactly what was delivered: resumed on the other pod, the stream gets the
    // next message and nothing before it again.
    let mut other = live.client(0).await;
    let request = pb::SubscribeRequest { positions: Vec::new(), cursor: reconnect.cursor };
    let mut resumed = Subscription::open(&mut other, 2, request).await.expect("Subscribe resumes from the cursor");
    live.send(1, group, "after").await;
    resumed.until_message(group, "after").await;
    let keys: Vec<String> = resumed.messages(group).iter().map(|message| message.client_message_id.clone()).collect();
    assert_eq!(keys, ["after"]);
    resumed.assert_gapless(&BTreeMap::from([(group, delivered)]));
}

async fn live_edits_of_history_hidden_from_a_newcomer_carry_no_content(storage: Storage) {
    let mut live = LiveFixture::start(storage, 1).await;
    let group = live.fixture.group(GroupKind::Community, 1, &[2]).await;
    let hide = groups_pb::UpdateGroupSettingsRequest {
        group_id: group,
        history_visible_to_new_members: Some(false),
        ..Default::default()
    };
    live.fixture.update_settings(1, hide).await;
    let old = live.send(1, group, "old").await;
    add(&mut live.fixture.groups, 1, group, &[7]).await;
    live.fixture.settle().await;
    let mut client = live.client(0).await;
    let (mut newcomer, starts) = subscribe_fresh(&mut client, 7).await;
    let (mut early, _) = subscribe_fresh(&mut client, 2).await;

    // The owner edits the message from before the newcomer joined, then posts a new one.
    edit(&mut live, group, old.message_seq, "old, edited").await;
    live.send(1, group, "new").await;
    newcomer.until_message(group, "new").await;
    early.until_message(group, "new").await;
    let hidden = edited(&newcomer, group);
    assert_eq!(hidden.len(), 1);
    assert_eq!((hidden[0].message_seq, hidden[0].text.as_str()), (old.message_seq, ""), "its place, not its content");
    assert_eq!(edited(&early, group)[0].text, "old, edited", "a member from before sees it");
    assert_eq!(newcomer.messages(group)[0].text, "new", "what came after the join is whole");
    // Exactly what the update log shows the newcomer.
    let logged: Vec<Update> = all_updates(&mut live.fixture.messages, 7, group)
        .await
        .into_iter()
        .filter(|update| update.event_seq > starts[&group])
        .collect();
    assert_eq!(newcomer.updates[&group], logged, "live and GetUpdates agree on what the newcomer sees");

    // Promoted to admin, the newcomer moderates and sees all history: the stream follows the
    // role change as the log delivers it.
    set_role(&mut live.fixture.groups, 1, group, 7, Role::Admin).await;
    live.fixture.settle().await;
    edit(&mut live, group, old.message_seq, "old, edited again").await;
    live.send(1, group, "after-promotion").await;
    newcomer.until_message(group, "after-promotion").await;
    assert_eq!(edited(&newcomer, group).last().map(|message| message.text.as_str()), Some("old, edited again"));
    newcomer.assert_gapless(&starts);
}

async fn edit(live: &mut LiveFixture, group_id: i64, message_seq: i64, text: &str) {
    let request = messages_pb::EditMessageRequest { group_id, message_seq, text: text.to_owned() };
    live.fixture.messages.edit_message(as_user(1, request)).await.expect("EditMessage succeeds");
}

/// The edited messages a stream received in `group`.
fn edited(stream: &Subscription, group: i64) -> Vec<Message> {
    stream.updates[&group]
        .iter()
        .filter_map(|update| match &update.change {
            Some(update::Change::MessageEdited(edited)) => edited.message.clone(),
            _ => None,
        })
        .collect()
}

/// A user holds at most FANFARE_FANOUT_MAX_STREAMS_PER_USER streams on a pod (a closed one
/// frees its place); the refusal is RESOURCE_EXHAUSTED.
async fn streams_per_user_are_capped_per_pod(storage: Storage) {
    let mut live = LiveFixture::start_with(storage, 1, |config| {
        config.live.max_streams_per_user = 2;
        config.live.user_subscribes_per_minute = 0;
    })
    .await;
    live.chat(1, &[2]).await;
    let mut client = live.client(0).await;
    let (first, _) = subscribe_fresh(&mut client, 2).await;
    let (_second, _) = subscribe_fresh(&mut client, 2).await;
    let refused = Subscription::open(&mut client, 2, pb::SubscribeRequest::default()).await.err().expect("refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("2 streams"), "{refused:?}");
    let (_theirs, _) = subscribe_fresh(&mut client, 1).await;

    // Closing one frees its place (the pod forgets a stream once its response is dropped).
    drop(first);
    let mut reopened = None;
    for _ in 0..250 {
        match Subscription::open(&mut client, 2, pb::SubscribeRequest::default()).await {
            Ok(subscription) => {
                reopened = Some(subscription);
                break;
            }
            Err(status) if status.message().contains("streams on this pod") => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(status) => panic!("only the stream cap may refuse here: {status:?}"),
        }
    }
    let mut reopened = reopened.expect("a closed stream frees its place");
    assert!(matches!(reopened.next().await, Some(Received::Heartbeat(_))));
}

/// Subscribe calls, each of which catches up from the log, are rate-limited per user: on
/// Redis (Postgres runs) the burst is one for all pods; in process each pod counts alone.
async fn subscribe_calls_are_rate_limited_per_user(storage: Storage) {
    let mut live = LiveFixture::start_with(storage, 2, |config| {
        config.live.user_subscribes_per_minute = 1;
        config.live.user_subscribes_burst = 2;
    })
    .await;
    live.chat(1, &[2]).await;
    let mut one = live.client(0).await;
    let mut other = live.client(1).await;
    let (_first, _) = subscribe_fresh(&mut one, 2).await;
    let (_second, _) = subscribe_fresh(&mut one, 2).await;
    let refused = Subscription::open(&mut one, 2, pb::SubscribeRequest::default()).await.err().expect("refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("subscribes too often"), "{refused:?}");
    let elsewhere = Subscription::open(&mut other, 2, pb::SubscribeRequest::default()).await;
    match storage {
        Storage::Postgres => {
            let status = elsewhere.err().expect("the burst is spent for every pod");
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        }
        Storage::Memory => assert!(elsewhere.is_ok(), "without Redis the other pod counts alone"),
    }
    let (_theirs, _) = subscribe_fresh(&mut one, 1).await;
}

/// A resume position past the end of a group's log was never handed out by that log: it went
/// backwards (a restore, an asynchronous failover). The stream says `resync` for the group
/// instead of skipping the re-issued seqs as duplicates, then goes on live from the log's end.
async fn a_resume_position_the_log_never_reached_is_answered_with_resync(storage: Storage) {
    let mut live = LiveFixture::start(storage, 1).await;
    let group = live.chat(1, &[2]).await;
    let latest = live.send(1, group, "before").await.event_seq;
    let mut client = live.client(0).await;
    let request = pb::SubscribeRequest {
        positions: vec![pb::GroupPosition { group_id: group, event_seq: latest + 100, entry_token: 0 }],
        cursor: String::new(),
    };
    let mut stream = Subscription::open(&mut client, 2, request).await.expect("Subscribe opens");
    let mut resync = None;
    for _ in 0..4 {
        match stream.next().await.expect("a frame") {
            Received::Resync(frame) => {
                resync = Some(frame);
                break;
            }
            Received::Heartbeat(_) => {}
            other => panic!("a resync before anything of the group: {other:?}"),
        }
    }
    let resync = resync.expect("a resync frame");
    assert_eq!((resync.group_id, resync.latest_event_seq), (group, latest));
    live.send(1, group, "after").await;
    stream.until_message(group, "after").await;
    let keys: Vec<String> = stream.messages(group).iter().map(|message| message.client_message_id.clone()).collect();
    assert_eq!(keys, ["after"], "live from the log's end, nothing skipped");
}

/// A restore is a database operation: Postgres only.
#[tokio::test]
async fn a_stream_open_while_its_log_goes_back_gets_a_resync_not_a_second_history() {
    a_stream_open_while_its_log_goes_back_gets_a_resync_not_a_second_history_on(Storage::Postgres).await;
}

/// The messages database is restored to a point before what a stream delivered, and the log
/// issues the same seqs again for other messages. The stream sees the re-issued entries
/// contradict the entry token it holds: it sends a resync (LOG_REISSUED) for the group and
/// goes on after the new history's latest entry, never passing a re-issued seq off as the
/// continuation of what it delivered. A client resuming from the old position later gets the
/// same resync.
async fn a_stream_open_while_its_log_goes_back_gets_a_resync_not_a_second_history_on(storage: Storage) {
    let mut live = LiveFixture::start(storage, 1).await;
    let group = live.chat(1, &[2]).await;
    let database = live.fixture.stack.database().expect("a Postgres stack").url();
    live.send(1, group, "kept").await;
    let backup = log_snapshot(&database, group).await;
    let mut client = live.client(0).await;
    let (mut stream, _) = subscribe_fresh(&mut client, 2).await;
    live.send(1, group, "lost-1").await;
    live.send(1, group, "lost-2").await;
    stream.until_message(group, "lost-2").await;
    let held = stream.last_position(group);
    assert_ne!(held.entry_token, 0, "updates carry entry tokens");

    restore_log(&database, &backup).await;
    for key in ["new-1", "new-2", "new-3"] {
        live.send(1, group, key).await;
    }
    let resync = loop {
        match stream.next().await.expect("the stream stays open") {
            Received::Resync(frame) => break frame,
            Received::Updates(updates) => {
                assert!(updates.iter().all(|update| update.group_id != group), "nothing re-issued first: {updates:?}");
            }
            _ => {}
        }
    };
    assert_eq!(resync.group_id, group);
    assert_eq!(resync.reason(), fanfare_proto::common::v1::ResyncReason::LogReissued, "{resync:?}");
    assert!(resync.latest_event_seq >= held.event_seq, "{resync:?}");
    assert!(resync.instructions.contains("went back"), "{resync:?}");
    let delivered_before = stream.updates[&group].len();
    live.send(1, group, "after").await;
    stream.until_message(group, "after").await;
    let since: Vec<i64> = stream.updates[&group][delivered_before..].iter().map(|update| update.event_seq).collect();
    let expected: Vec<i64> = (resync.latest_event_seq + 1..=stream.last_seq(group)).collect();
    assert_eq!(since, expected, "after the resync: the new history from its latest entry on, gapless");

    let request = pb::SubscribeRequest { positions: vec![held], cursor: String::new() };
    let mut resumed = Subscription::open(&mut client, 2, request).await.expect("Subscribe opens");
    let resync = loop {
        match resumed.next().await.expect("a frame") {
            Received::Resync(frame) => break frame,
            Received::Heartbeat(_) => {}
            other => panic!("a resync before anything of the group: {other:?}"),
        }
    };
    assert_eq!(resync.reason(), fanfare_proto::common::v1::ResyncReason::LogReissued, "{resync:?}");
    assert_eq!(resync.latest_event_seq, stream.last_seq(group));
}

/// A consumer that keeps falling behind makes its stream catch up from the log again and
/// again; past FANFARE_FANOUT_STREAM_CATCH_UP_* rounds the stream asks it to reconnect, and
/// nothing it was sent before is lost or out of order.
async fn a_stream_that_keeps_falling_behind_is_asked_to_reconnect(storage: Storage) {
    let mut live = LiveFixture::start_with(storage, 1, |config| {
        config.live.stream_queue_capacity = 4;
        config.live.stream_catch_ups_per_minute = 1;
        config.live.stream_catch_up_burst = 1;
    })
    .await;
    let group = live.chat(1, &[2]).await;
    let mut client = live.client(0).await;
    let (mut stalled, starts) = subscribe_fresh(&mut client, 2).await;
    // As in a_stalled_consumer_catches_up_without_holding_up_others: more than the client's
    // HTTP/2 window, so the stream's inbox overflows while the client reads nothing.
    let body = "x".repeat(4_000);
    let stall = |round: usize| -> Vec<_> {
        (0..700).map(|index| fanfare_tests::messages::text(group, &format!("r{round}-{index}"), &body)).collect()
    };
    for request in stall(1) {
        live.fixture.messages.send_message(as_user(1, request)).await.expect("SendMessage succeeds");
    }
    stalled.until_message(group, "r1-699").await;
    for request in stall(2) {
        live.fixture.messages.send_message(as_user(1, request)).await.expect("SendMessage succeeds");
    }
    let mut reconnect = None;
    while let Some(frame) = stalled.next().await {
        if let Received::Reconnect(frame) = frame {
            reconnect = Some(frame);
            break;
        }
    }
    let reconnect = reconnect.expect("the second catch-up is refused with a reconnect frame");
    assert!(reconnect.reason.contains("falling behind"), "{reconnect:?}");
    stalled.assert_gapless(&starts);
}
