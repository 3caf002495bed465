//! Outbox recovery against the in-memory store and PostgreSQL: two pods recovering one
//! backlog at once publish every orphaned update exactly once, each group's in order, and
//! leave updates younger than the grace to the pod that committed them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fanfare_bus::{BusEvent, MemoryBus, Subscriber, UpdateBus, group_channel, group_id_from_channel};
use fanfare_messages::recovery::{Recovery, RecoveryOutcome};
use fanfare_messages::store::conformance::{group, post, text, user};
use fanfare_messages::store::{MemoryMessageStore, MessageStore, PostgresMessageStore};
use fanfare_proto::common::v1 as common;
use fanfare_proto::prost::Message as _;
use fanfare_testdb::TestDatabase;

/// Groups in the backlog: more than the 64 outbox lanes, so several groups share a lane.
const GROUPS: i64 = 80;
/// Updates per group.
const PER_GROUP: i64 = 5;
/// How old an update must be before recovery takes it.
const GRACE: Duration = Duration::from_secs(10);

/// Commits `PER_GROUP` posts to each of `GROUPS` groups at `when`.
async fn commit_backlog(store: &dyn MessageStore, when: DateTime<Utc>) {
    for round in 0..PER_GROUP {
        let writes = (1..=GROUPS).map(|id| post(group(id), user(1), &format!("k-{round}"), text("hello"))).collect();
        let committed = store.apply(writes, when).await.expect("the backlog commits");
        assert_eq!(committed.appended.len(), GROUPS as usize);
    }
}

async fn listen(bus: &dyn UpdateBus) -> Subscriber {
    let subscriber = bus.subscriber().await.expect("a subscriber");
    for id in 1..=GROUPS {
        subscriber.subscribe(&group_channel(id)).await.expect("subscribed");
    }
    subscriber
}

/// Every event_seq received per group, in arrival order, until `expected` arrived in all.
async fn receive(subscriber: &mut Subscriber, expected: usize) -> BTreeMap<i64, Vec<i64>> {
    let mut received: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut count = 0;
    while count < expected {
        let event = tokio::time::timeout(Duration::from_secs(10), subscriber.recv())
            .await
            .unwrap_or_else(|_| panic!("only {count} of {expected} updates arrived: {received:?}"))
            .expect("the subscriber lives");
        let BusEvent::Message { channel, payload } = event else { panic!("unexpected {event:?}") };
        let update = common::Update::decode(payload.as_ref()).expect("an encoded update");
        let group_id = group_id_from_channel(&channel).expect("a group channel");
        assert_eq!(update.group_id, group_id, "published to its own group's channel");
        received.entry(group_id).or_default().push(update.event_seq);
        count += 1;
    }
    received
}

async fn two_pods_recover_a_backlog_once_in_order(store: Arc<dyn MessageStore>) {
    let bus: Arc<dyn UpdateBus> = Arc::new(MemoryBus::new());
    let mut subscriber = listen(bus.as_ref()).await;
    commit_backlog(store.as_ref(), Utc::now() - chrono::Duration::seconds(60)).await;

    let first = Recovery::new(Arc::clone(&store), Arc::clone(&bus), GRACE);
    let second = Recovery::new(Arc::clone(&store), Arc::clone(&bus), GRACE);
    let (one, two) = tokio::join!(first.run_once(), second.run_once());
    let republished = [one, two]
        .into_iter()
        .map(|outcome| match outcome {
            RecoveryOutcome::Republished(count) => count,
            // The other pod drained every lane before this one looked.
            RecoveryOutcome::Idle => 0,
            RecoveryOutcome::Failed => panic!("a pass with a reachable bus and store does not fail"),
        })
        .sum::<usize>();
    assert_eq!(republished, (GROUPS * PER_GROUP) as usize, "every orphaned update once between the two");

    let received = receive(&mut subscriber, (GROUPS * PER_GROUP) as usize).await;
    for id in 1..=GROUPS {
        assert_eq!(received.get(&id).cloned().unwrap_or_default(), (1..=PER_GROUP).collect::<Vec<_>>(), "group {id}");
    }
    assert!(store.orphaned_lanes(Utc::now()).await.expect("read").is_empty(), "the outbox is empty");
    assert_eq!(first.run_once().await, RecoveryOutcome::Idle, "nothing left to recover");
}

async fn young_updates_are_left_to_their_pod(store: Arc<dyn MessageStore>) {
    let bus: Arc<dyn UpdateBus> = Arc::new(MemoryBus::new());
    commit_backlog(store.as_ref(), Utc::now()).await;
    let recovery = Recovery::new(Arc::clone(&store), bus, GRACE);
    assert_eq!(recovery.run_once().await, RecoveryOutcome::Idle);
    let waiting = store.orphaned_lanes(Utc::now() + chrono::Duration::seconds(1)).await.expect("read");
    assert_eq!(waiting.len(), 64, "every lane still holds its young updates");
}

async fn postgres_store() -> (TestDatabase, Arc<dyn MessageStore>) {
    let database = TestDatabase::create().await.expect("a fresh test database");
    let store = PostgresMessageStore::connect(&database.url(), 8).await.expect("connect");
    PostgresMessageStore::migrate(store.pool()).await.expect("migrate");
    (database, Arc::new(store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_recover_a_backlog_once_in_order_on_memory() {
    two_pods_recover_a_backlog_once_in_order(Arc::new(MemoryMessageStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_recover_a_backlog_once_in_order_on_postgres() {
    let (_database, store) = postgres_store().await;
    two_pods_recover_a_backlog_once_in_order(store).await;
}

#[tokio::test]
async fn young_updates_are_left_to_their_pod_on_memory() {
    young_updates_are_left_to_their_pod(Arc::new(MemoryMessageStore::new())).await;
}

#[tokio::test]
async fn young_updates_are_left_to_their_pod_on_postgres() {
    let (_database, store) = postgres_store().await;
    young_updates_are_left_to_their_pod(store).await;
}
