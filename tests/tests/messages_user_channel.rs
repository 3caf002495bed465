//! The user channel (docs/messages.md "From commit to the bus"): a member joining is
//! published to the group's channel and then to the new member's user channel, where fanout
//! streams of that user learn of the group; nothing else goes to the user channel.

use std::collections::HashSet;

use fanfare_bus::{BusEvent, Subscriber, group_channel, user_channel};
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::group_event::Change as GroupChange;
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_proto::prost::Message as _;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::messages::{
    EVENTUALLY, Fixture, is_group_event, kind, latest_event_seq, send_ok, start, wait_for_update,
};
use fanfare_tests::on_every_storage;

on_every_storage!(
    a_member_joining_is_published_to_their_user_channel_after_the_group_channel,
    messages_and_other_membership_changes_stay_off_the_user_channel,
);

/// The owner of every group in these tests.
const OWNER: i64 = 1;
/// The user whose channel is watched.
const JOINER: i64 = 2;

async fn a_member_joining_is_published_to_their_user_channel_after_the_group_channel(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(common::GroupKind::Community, OWNER, &[]).await;
    let mut bus = BusWatch::open(&mut fixture, group_id).await;

    fanfare_tests::groups::add(&mut fixture.groups, OWNER, group_id, &[JOINER]).await;

    let is_the_join = |update: &common::Update| {
        is_group_event(update, |change| matches!(change, GroupChange::MemberJoined(joined) if joined.user_id == JOINER))
    };
    let logged = wait_for_update(&mut fixture.messages, OWNER, group_id, is_the_join).await;
    let (first_channel, group_copy) = bus.next().await;
    assert_eq!(first_channel, group_channel(group_id), "the group's channel first");
    assert_eq!(group_copy, logged);
    let (second_channel, user_copy) = bus.next().await;
    assert_eq!(second_channel, user_channel(JOINER), "then the new member's");
    assert_eq!(user_copy, logged, "the same update, with the event_seq it has in the log");
    assert_eq!(user_copy.event_seq, bus.after + 1);
}

async fn messages_and_other_membership_changes_stay_off_the_user_channel(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(common::GroupKind::Community, OWNER, &[JOINER]).await;
    let mut bus = BusWatch::open(&mut fixture, group_id).await;

    send_ok(&mut fixture.messages, JOINER, group_id, "k1", "hello").await;
    let removal = groups_pb::RemoveMemberRequest { group_id, user_id: JOINER };
    fixture.groups.remove_member(as_user(OWNER, removal)).await.expect("RemoveMember succeeds");
    // Joining again is the marker: had the message or the removal gone to the user
    // channel, it would arrive before this join (the relay publishes in event_seq order).
    fanfare_tests::groups::add(&mut fixture.groups, OWNER, group_id, &[JOINER]).await;

    let mut received = Vec::new();
    for _ in 0..4 {
        let (channel, update) = bus.next().await;
        received.push((channel, kind(&update), update.event_seq));
    }
    let first = bus.after + 1;
    let group = group_channel(group_id);
    let user = user_channel(JOINER);
    let expected = vec![
        (group.clone(), "posted", first),
        (group.clone(), "group_event", first + 1),
        (group, "group_event", first + 2),
        (user, "group_event", first + 2),
    ];
    assert_eq!(received, expected);
}

/// A bus subscriber of one group's channel and the joiner's user channel that hands out the
/// updates of that group committed after it was opened, each once.
struct BusWatch {
    subscriber: Subscriber,
    group_id: i64,
    /// The log's latest event_seq when the watch opened: the relay may still publish those.
    after: i64,
    seen: HashSet<(String, i64)>,
}

impl BusWatch {
    async fn open(fixture: &mut Fixture, group_id: i64) -> Self {
        let subscriber = fixture.stack.bus.subscriber().await.expect("a bus subscriber");
        let channels = [group_channel(group_id), user_channel(JOINER)];
        subscriber.subscribe_many(channels.iter().map(String::as_str)).await.expect("subscribe");
        let after = latest_event_seq(&mut fixture.messages, OWNER, group_id).await;
        Self { subscriber, group_id, after, seen: HashSet::new() }
    }

    /// The next new update of the group and the channel it came on.
    async fn next(&mut self) -> (String, common::Update) {
        loop {
            let event = match tokio::time::timeout(EVENTUALLY, self.subscriber.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => panic!("the subscriber ended"),
                Err(_elapsed) => panic!("no bus message within {EVENTUALLY:?}"),
            };
            let BusEvent::Message { channel, payload } = event else {
                panic!("the bus lost messages: {event:?}");
            };
            let update = common::Update::decode(payload).expect("an Update on the bus");
            let is_new = update.group_id == self.group_id && update.event_seq > self.after;
            // A publish repeated after a failed pass is recognised by its event_seq.
            if is_new && self.seen.insert((channel.clone(), update.event_seq)) {
                return (channel, update);
            }
        }
    }
}
