//! Outages (docs/messages.md "No hole, ever" and "From commit to the bus"): an unreachable
//! database answers UNAVAILABLE with nothing half-written; sends commit while Redis is down
//! and every update reaches a subscriber once, in event_seq order, when it is back; and
//! updates committed by a service that stopped before publishing them are published by the
//! next one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fanfare_bus::{BusEvent, Subscriber, UpdateBus, group_channel};
use fanfare_groups::store::{GroupStore, MemoryGroupStore};
use fanfare_messages::store::{MemoryMessageStore, MessageStore};
use fanfare_proto::common::v1 as common;
use fanfare_proto::prost::Message as _;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::expect_code;
use fanfare_tests::messages::{all_updates, eventually, history, send, send_ok, settle, text};
use fanfare_tests::outage::{
    CuttableProxy, RedisServer, Services, database_address, postgres_messages_store, postgres_messages_store_with,
    postgres_stores, wait_until_not_serving,
};
use tonic::Code;

/// How long the relay may take to publish after an outage: a failed publish leaves its
/// updates claimed for the 10-second lease.
const REPUBLISH_WITHIN: Duration = Duration::from_secs(30);

async fn create_group(services: &Services) -> i64 {
    let mut groups = services.groups().await;
    let group_id = fanfare_tests::groups::create(&mut groups, 1, common::GroupKind::Community).await.group_id;
    fanfare_tests::groups::add(&mut groups, 1, group_id, &[2]).await;
    settle(services.groups_store.as_ref()).await;
    group_id
}

#[tokio::test]
async fn an_unreachable_database_answers_unavailable() {
    let groups_store: Arc<dyn GroupStore> = Arc::new(MemoryGroupStore::new());
    let dead: Arc<dyn MessageStore> = Arc::new(postgres_messages_store("postgres://postgres@127.0.0.1:1/nowhere"));
    let services =
        Services::start(groups_store, dead, fanfare_bus::open_bus(None, "").await.expect("a bus"), |_| {}).await;
    let mut groups = services.groups().await;
    let group_id = fanfare_tests::groups::create(&mut groups, 1, common::GroupKind::Community).await.group_id;
    let mut client = services.messages().await;

    let refused = expect_code(send(&mut client, 1, group_id, "k", "hello").await, Code::Unavailable);
    assert!(refused.message().contains("nothing was changed"), "{}", refused.message());
    let list = fanfare_proto::messages::v1::ListMessagesRequest {
        group_id,
        direction: fanfare_proto::messages::v1::Direction::Forward as i32,
        ..Default::default()
    };
    expect_code(client.list_messages(as_user(1, list)).await, Code::Unavailable);
}

#[tokio::test]
async fn a_database_outage_writes_nothing_and_the_retry_posts_once() {
    let (database, groups_store, _) = postgres_stores().await;
    let options = database.options();
    let proxy = CuttableProxy::start(database_address(&options)).await;
    let proxied = options.host("127.0.0.1").port(proxy.address().port());
    let store: Arc<dyn MessageStore> = Arc::new(postgres_messages_store_with(proxied));
    let bus = fanfare_bus::open_bus(None, "").await.expect("a bus");
    let services = Services::start(groups_store, store, bus, |_| {}).await;
    let group_id = create_group(&services).await;
    let mut client = services.messages().await;
    let first = send_ok(&mut client, 2, group_id, "k-1", "before").await;

    proxy.cut();
    let refused = expect_code(send(&mut client, 2, group_id, "k-2", "during").await, Code::Unavailable);
    assert!(refused.message().contains("retry"), "{}", refused.message());
    let updates = fanfare_proto::messages::v1::GetUpdatesRequest { group_id, ..Default::default() };
    expect_code(client.get_updates(as_user(2, updates)).await, Code::Unavailable);

    proxy.restore();
    let retried = loop {
        match send(&mut client, 2, group_id, "k-2", "during").await {
            Ok(response) => break response,
            Err(status) if status.code() == Code::Unavailable => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(status) => panic!("the retry after the outage failed: {status:?}"),
        }
    };
    assert!(!retried.duplicate, "the refused send had written nothing, so the retry is new");
    let second = retried.message.expect("the message");
    assert_eq!(second.message_seq, first.message_seq + 1, "no message_seq was consumed");
    assert_eq!(history(&mut client, 2, group_id).await, vec![first, second]);
    let event_seqs: Vec<i64> = all_updates(&mut client, 1, group_id).await.iter().map(|u| u.event_seq).collect();
    assert_eq!(event_seqs, (1..=event_seqs.len() as i64).collect::<Vec<i64>>(), "no hole in the log");
}

/// A database known to be away (readiness already NOT_SERVING) costs a caller no wait: a
/// send with a 1 s deadline is refused UNAVAILABLE, not left to run into its deadline while
/// the pool waits for a connection; once the database answers again, sends succeed.
#[tokio::test]
async fn a_database_known_to_be_down_fails_fast_and_recovers() {
    let (database, groups_store, _) = postgres_stores().await;
    let options = database.options();
    let proxy = CuttableProxy::start(database_address(&options)).await;
    let proxied = options.host("127.0.0.1").port(proxy.address().port());
    let store: Arc<dyn MessageStore> = Arc::new(postgres_messages_store_with(proxied));
    let bus = fanfare_bus::open_bus(None, "").await.expect("a bus");
    let services = Services::start(groups_store, store, bus, |_| {}).await;
    let group_id = create_group(&services).await;
    let mut client = services.messages().await;
    send_ok(&mut client, 2, group_id, "k-1", "before").await;

    // A host that stopped answering: connections open, nothing comes back.
    proxy.stall();
    wait_until_not_serving(services.messages_addr, fanfare_messages::SERVICE_NAME).await;
    let mut request = as_user(2, text(group_id, "k-2", "during"));
    request.set_timeout(Duration::from_secs(1));
    let refused = expect_code(client.send_message(request).await, Code::Unavailable);
    assert!(refused.message().contains("retry"), "{}", refused.message());

    proxy.restore();
    eventually("sends succeed again", || {
        let mut client = client.clone();
        async move { send(&mut client, 2, group_id, "k-2", "during").await.is_ok() }
    })
    .await;
}

/// What a subscriber of one group's channel received.
struct Received {
    subscriber: Subscriber,
    /// Each event_seq's payload; a repeat must be an exact copy (recognisable).
    payloads: BTreeMap<i64, Vec<u8>>,
    /// The event_seqs in arrival order, repeats included.
    arrivals: Vec<i64>,
    /// Whether the subscription came back after a Redis outage.
    resumed: bool,
}

impl Received {
    fn new(subscriber: Subscriber) -> Self {
        Self { subscriber, payloads: BTreeMap::new(), arrivals: Vec::new(), resumed: false }
    }

    /// Receives until `done` holds, failing after [`REPUBLISH_WITHIN`].
    async fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + REPUBLISH_WITHIN;
        while !done(self) {
            let event = tokio::time::timeout_at(deadline, self.subscriber.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting until {what}; arrivals {:?}", self.arrivals))
                .expect("the subscriber lives");
            match event {
                BusEvent::Message { payload, .. } => {
                    let update = common::Update::decode(payload.as_ref()).expect("an encoded Update");
                    if let Some(earlier) = self.payloads.insert(update.event_seq, payload.to_vec()) {
                        assert_eq!(earlier, payload.to_vec(), "a repeat of {} is an exact copy", update.event_seq);
                    }
                    self.arrivals.push(update.event_seq);
                }
                BusEvent::Resumed => self.resumed = true,
                BusEvent::Gap { .. } => self.resumed = false,
            }
        }
    }

    /// Receives until `last_event_seq` has arrived.
    async fn up_to(&mut self, last_event_seq: i64) {
        let what = format!("update {last_event_seq} arrives");
        self.until(&what, |received| received.payloads.contains_key(&last_event_seq)).await;
    }
}

/// Asserts that, once repeats are dropped, `arrivals` is `first..=last` in order.
#[track_caller]
fn assert_in_order_once(arrivals: &[i64], first: i64, last: i64) {
    let mut seen = Vec::new();
    for event_seq in arrivals.iter().copied().filter(|event_seq| *event_seq >= first) {
        if !seen.contains(&event_seq) {
            seen.push(event_seq);
        }
    }
    assert_eq!(seen, (first..=last).collect::<Vec<i64>>(), "in event_seq order, no hole (arrivals {arrivals:?})");
}

/// Subscribes to the group's channel and returns the event_seq of a post seen live, from
/// which on every update must arrive.
async fn subscribe_live(bus: &dyn UpdateBus, services: &Services, group_id: i64) -> (Received, i64) {
    let subscriber = bus.subscriber().await.expect("a subscriber");
    subscriber.subscribe(&group_channel(group_id)).await.expect("subscribed");
    let mut received = Received::new(subscriber);
    let mut client = services.messages().await;
    let marker = send_ok(&mut client, 1, group_id, "live", "is anyone there").await;
    received.up_to(marker.event_seq).await;
    received.arrivals.clear();
    (received, marker.event_seq)
}

async fn redis_stopped_and_restarted_during_sends(storage: Storage) {
    let mut redis = RedisServer::start().await;
    let (database, groups_store, messages_store): (_, Arc<dyn GroupStore>, Arc<dyn MessageStore>) = match storage {
        Storage::Memory => (None, Arc::new(MemoryGroupStore::new()), Arc::new(MemoryMessageStore::new())),
        Storage::Postgres => {
            let (database, groups_store, messages_store) = postgres_stores().await;
            (Some(database), groups_store, messages_store)
        }
    };
    let services = Services::start(groups_store, messages_store, redis.bus().await, |config| {
        config.limits.user_sends_per_second = 0;
    })
    .await;
    let group_id = create_group(&services).await;
    let listening_bus = redis.bus().await;
    let (mut received, first) = subscribe_live(listening_bus.as_ref(), &services, group_id).await;
    let mut client = services.messages().await;

    send_ok(&mut client, 2, group_id, "before-1", "redis is up").await;
    redis.kill().await;
    for index in 0..3 {
        send_ok(&mut client, 2, group_id, &format!("down-{index}"), "redis is down: still committed").await;
    }
    redis.start_again().await;
    let mut last = 0;
    for index in 0..3 {
        last = send_ok(&mut client, 2, group_id, &format!("back-{index}"), "redis is back").await.event_seq;
    }

    received.up_to(last).await;
    assert_in_order_once(&received.arrivals, first + 1, last);
    assert_eq!(history(&mut client, 1, group_id).await.len(), 8, "every send was committed");
    drop(database);
}

/// Redis away does not take the messages service out of service: it stays ready, sends
/// commit, and what they appended waits in the outbox (metered) until Redis is back.
#[tokio::test]
async fn redis_away_keeps_messages_ready_and_committing() {
    let mut redis = RedisServer::start().await;
    let (_database, groups_store, messages_store) = postgres_stores().await;
    let services = Services::start(groups_store, Arc::clone(&messages_store), redis.bus().await, |config| {
        config.limits.user_sends_per_second = 0;
    })
    .await;
    let group_id = create_group(&services).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", services.messages_addr))
        .expect("a valid address")
        .connect()
        .await
        .expect("connect to messages");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let ready = || tonic_health::pb::HealthCheckRequest { service: fanfare_messages::SERVICE_NAME.to_owned() };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    eventually("messages is ready", || {
        let mut health = health.clone();
        async move { health.check(ready()).await.is_ok_and(|answer| answer.into_inner().status == serving) }
    })
    .await;

    redis.kill().await;
    let mut client = services.messages().await;
    let mut last = 0;
    for index in 0..3 {
        last = send_ok(&mut client, 2, group_id, &format!("away-{index}"), "redis is away").await.event_seq;
    }
    // Several readiness checks (every 200 ms in tests) later, still ready.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answer = health.check(ready()).await.expect("health answers").into_inner();
    assert_eq!(answer.status, serving, "readiness does not follow Redis");
    let waiting = messages_store
        .unpublished(&(0..fanfare_messages::domain::OUTBOX_LANES).collect::<Vec<_>>(), chrono::Utc::now(), None, 100)
        .await
        .expect("read the outbox");
    assert!(waiting.iter().any(|update| update.event_seq.get() == last), "the sends wait in the outbox: {waiting:?}");
    drop(redis);
}

#[tokio::test]
async fn redis_stopped_and_restarted_during_sends_on_memory() {
    redis_stopped_and_restarted_during_sends(Storage::Memory).await;
}

#[tokio::test]
async fn redis_stopped_and_restarted_during_sends_on_postgres() {
    redis_stopped_and_restarted_during_sends(Storage::Postgres).await;
}

#[tokio::test]
async fn updates_a_stopped_service_could_not_publish_are_published_once_by_the_next() {
    crash_between_commit_and_publish(false).await;
}

#[tokio::test]
async fn updates_a_stopped_service_could_not_publish_are_published_in_order_by_the_next() {
    crash_between_commit_and_publish(true).await;
}

/// Sends while Redis is down (committed, not published), stops the service, and starts a
/// new one on the same database with Redis back: every committed update goes out once.
async fn crash_between_commit_and_publish(check_order: bool) {
    let mut redis = RedisServer::start().await;
    let (database, groups_store, messages_store) = postgres_stores().await;
    let mut services = Services::start(groups_store, messages_store, redis.bus().await, |_| {}).await;
    let group_id = create_group(&services).await;
    let listening_bus = redis.bus().await;
    let (mut received, first) = subscribe_live(listening_bus.as_ref(), &services, group_id).await;

    redis.kill().await;
    let mut client = services.messages().await;
    let mut last = 0;
    for index in 0..3 {
        last = send_ok(&mut client, 2, group_id, &format!("k-{index}"), "committed, not published").await.event_seq;
    }
    services.stop_messages().await;
    redis.start_again().await;
    // Resubscribed before the new service starts, so nothing it publishes can be missed.
    received.until("the subscription is back", |received| received.resumed).await;

    let store: Arc<dyn MessageStore> = Arc::new(postgres_messages_store_with(database.options()));
    services.start_messages(store, redis.bus().await).await;
    let expected: Vec<i64> = (first + 1..=last).collect();
    received
        .until("every committed update arrives", |received| {
            expected.iter().all(|event_seq| received.payloads.contains_key(event_seq))
        })
        .await;
    let mut arrived = received.arrivals.clone();
    if check_order {
        assert_eq!(arrived, expected, "each committed update exactly once, in order");
    }
    arrived.sort_unstable();
    assert_eq!(arrived, expected, "each committed update exactly once");
    let mut client = services.messages().await;
    assert_eq!(history(&mut client, 2, group_id).await.len(), 4, "the new service serves what the old committed");
}
