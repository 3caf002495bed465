//! The outbox relay against a real gRPC server standing in for the messages service: a
//! recording `AppendSystemUpdates` that, like the real one, appends each outbox id once per
//! group log and answers a repeat with the original event_seq. Changes are made through the
//! store (in memory and on a fresh PostgreSQL database) and relayed by explicit passes, so
//! every test drains deterministically; times are fixed (`at`), never read from the clock.

#![allow(clippy::disallowed_methods, reason = "a test double of the messages service answers as it likes")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::config::DependencyConfig;
use fanfare_core::identity::USER_ID_HEADER;
use fanfare_core::tls::ClientTls;
use fanfare_groups::GroupsConfig;
use fanfare_groups::domain::{BanReason, GroupKind, JoinMethod, Role, SettingsUpdate, Title};
use fanfare_groups::metrics::{OUTBOX_CORRUPT_TOTAL, OUTBOX_LAG_SECONDS, OUTBOX_RELAYED_TOTAL};
use fanfare_groups::relay::{CLAIM_LEASE, OutboxRelay, RelayOutcome};
use fanfare_groups::store::conformance::{USER_GROUP_LIMIT, at, limits, new_group, user};
use fanfare_groups::store::{Departure, GroupStore, MemoryGroupStore, PostgresGroupStore};
use fanfare_proto::common::v1 as common;
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_proto::messages::v1 as pb;
use fanfare_proto::messages::v1::message_service_client::MessageServiceClient;
use fanfare_proto::messages::v1::message_service_server::{MessageService, MessageServiceServer};
use fanfare_testdb::TestDatabase;
use metrics::atomics::AtomicU64;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

// ---------------------------------------------------------------------------------------
// The messages service double

/// What the double has seen and appended.
#[derive(Debug, Clone, Default)]
struct Recorded {
    /// Every event received, repeats included, in arrival order: (outbox id, event).
    received: Vec<(i64, common::GroupEvent)>,
    /// The update log's view: each outbox id once, in the order first appended, with the
    /// event_seq it got in its group's log.
    appended: Vec<(i64, i64, common::GroupEvent)>,
    /// The `authorization` header of every call.
    authorizations: Vec<Option<String>>,
    /// Calls that carried an acting user (the relay calls as a service, never as a user).
    calls_with_a_user: usize,
}

impl Recorded {
    fn times_received(&self, outbox_id: i64) -> usize {
        self.received.iter().filter(|(id, _)| *id == outbox_id).count()
    }
}

#[derive(Clone, Default)]
struct Recorder {
    recorded: Arc<Mutex<Recorded>>,
}

impl Recorder {
    fn append(
        &self,
        request: Request<pb::AppendSystemUpdatesRequest>,
    ) -> Result<Response<pb::AppendSystemUpdatesResponse>, Status> {
        let authorization =
            request.metadata().get("authorization").and_then(|value| value.to_str().ok()).map(str::to_owned);
        let has_user = request.metadata().contains_key(USER_ID_HEADER);
        let events = request.into_inner().events;
        // The real service's validation: a batch it would refuse must never be sent.
        if events.is_empty() || events.len() > 500 {
            return Err(Status::invalid_argument(format!("1 to 500 events, got {}", events.len())));
        }
        let mut recorded = self.recorded.lock().expect("the recorder lock");
        recorded.authorizations.push(authorization);
        recorded.calls_with_a_user += usize::from(has_user);
        let mut appended = Vec::with_capacity(events.len());
        for system in events {
            let event = system.event.filter(|event| event.change.is_some() && event.group_id > 0);
            let event =
                event.ok_or_else(|| Status::invalid_argument(format!("event {} is invalid", system.outbox_id)))?;
            recorded.received.push((system.outbox_id, event.clone()));
            let original = recorded.appended.iter().find(|(id, _, _)| *id == system.outbox_id).map(|(_, seq, _)| *seq);
            let event_seq = match original {
                Some(event_seq) => event_seq,
                None => {
                    let group_log = recorded.appended.iter().filter(|(_, _, logged)| logged.group_id == event.group_id);
                    let event_seq = group_log.count() as i64 + 1;
                    recorded.appended.push((system.outbox_id, event_seq, event.clone()));
                    event_seq
                }
            };
            appended.push(pb::AppendedEvent { outbox_id: system.outbox_id, group_id: event.group_id, event_seq });
        }
        Ok(Response::new(pb::AppendSystemUpdatesResponse { appended }))
    }
}

/// Implements `MessageService` with the recording `AppendSystemUpdates` and every other
/// method answering UNIMPLEMENTED: this double stands in for a different service.
macro_rules! message_service_double {
    ($($method:ident: $request:ident => $response:ident),+ $(,)?) => {
        #[async_trait]
        impl MessageService for Recorder {
            async fn append_system_updates(
                &self,
                request: Request<pb::AppendSystemUpdatesRequest>,
            ) -> Result<Response<pb::AppendSystemUpdatesResponse>, Status> {
                self.append(request)
            }
            $(
                async fn $method(&self, _request: Request<pb::$request>) -> Result<Response<pb::$response>, Status> {
                    Err(Status::unimplemented(concat!(stringify!($method), " is not part of this test double")))
                }
            )+
        }
    };
}

message_service_double!(
    send_message: SendMessageRequest => SendMessageResponse,
    edit_message: EditMessageRequest => EditMessageResponse,
    delete_message: DeleteMessageRequest => DeleteMessageResponse,
    purge_user_messages: PurgeUserMessagesRequest => PurgeUserMessagesResponse,
    add_reaction: AddReactionRequest => AddReactionResponse,
    remove_reaction: RemoveReactionRequest => RemoveReactionResponse,
    pin_message: PinMessageRequest => PinMessageResponse,
    unpin_message: UnpinMessageRequest => UnpinMessageResponse,
    list_messages: ListMessagesRequest => ListMessagesResponse,
    get_messages: GetMessagesRequest => GetMessagesResponse,
    get_updates: GetUpdatesRequest => GetUpdatesResponse,
    mark_read: MarkReadRequest => MarkReadResponse,
    get_unread_counts: GetUnreadCountsRequest => GetUnreadCountsResponse,
);

/// The double, served over TCP until dropped.
struct MessagesDouble {
    address: SocketAddr,
    recorder: Recorder,
    shutdown: CancellationToken,
    _task: JoinHandle<()>,
}

impl MessagesDouble {
    /// Serves on a free port.
    async fn start() -> Self {
        Self::start_at("127.0.0.1:0".parse().expect("an address")).await
    }

    /// Serves on `address`.
    async fn start_at(address: SocketAddr) -> Self {
        let listener = TcpListener::bind(address).await.expect("bind the messages double");
        let address = listener.local_addr().expect("the bound address");
        let recorder = Recorder::default();
        let shutdown = CancellationToken::new();
        let server = Server::builder()
            .add_service(MessageServiceServer::new(recorder.clone()))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown.clone().cancelled_owned());
        let task = tokio::spawn(async move { server.await.expect("the messages double serves") });
        Self { address, recorder, shutdown, _task: task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn recorded(&self) -> Recorded {
        self.recorder.recorded.lock().expect("the recorder lock").clone()
    }
}

impl Drop for MessagesDouble {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An address nothing listens on (it was free a moment ago).
async fn free_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
    listener.local_addr().expect("the bound address")
}

// ---------------------------------------------------------------------------------------
// Stores, changes and assertions

/// A store under test, and whatever must live as long as it.
struct Stored {
    store: Arc<dyn GroupStore>,
    postgres: Option<PostgresGroupStore>,
    _database: Option<TestDatabase>,
}

impl Stored {
    fn memory() -> Self {
        Self { store: Arc::new(MemoryGroupStore::new()), postgres: None, _database: None }
    }

    async fn postgres() -> Self {
        let database = TestDatabase::create().await.expect("a fresh test database");
        let store = PostgresGroupStore::connect(&database.url(), 4).await.expect("connect to the test database");
        PostgresGroupStore::migrate(store.pool()).await.expect("migrate the test database");
        Self { store: Arc::new(store.clone()), postgres: Some(store), _database: Some(database) }
    }
}

/// Stamps out one test per store for an `async fn(Stored)` body.
macro_rules! on_both_stores {
    ($($test:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Stored::memory()).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Stored::postgres().await).await;
                }
            )+
        }
    };
}

on_both_stores!(
    changes_reach_the_log_in_order_exactly_once,
    a_down_messages_service_fails_the_pass_and_loses_nothing,
    rows_of_a_relay_that_died_are_delivered_again_and_appended_once,
);

/// A little of everything the outbox carries, across two groups, starting at `at(start)`.
async fn make_changes(store: &dyn GroupStore, start: i64) {
    let owner = user(1);
    let chat = store.create_group(new_group(GroupKind::Chat, owner), USER_GROUP_LIMIT, at(start)).await.unwrap();
    let community =
        store.create_group(new_group(GroupKind::Community, owner), USER_GROUP_LIMIT, at(start)).await.unwrap();
    let (chat_limits, community_limits) = (limits(GroupKind::Chat), limits(GroupKind::Community));
    let (chat_id, community_id) = (chat.id, community.id);
    let later = |seconds: i64| at(start + seconds);
    store.add_members(chat_id, &[user(2), user(3)], JoinMethod::Added, chat_limits, owner, later(1)).await.unwrap();
    store.add_members(community_id, &[user(2)], JoinMethod::Direct, community_limits, user(2), later(1)).await.unwrap();
    store.set_role(chat_id, user(2), Role::Admin, owner, later(2)).await.unwrap();
    store.set_mute(community_id, user(2), Some(later(100)), owner, later(2)).await.unwrap();
    store.remove_member(chat_id, user(3), Departure::Left, user(3), later(3)).await.unwrap();
    let reason = BanReason::from_trusted("spam".to_owned());
    store.ban(community_id, user(2), reason, None, owner, later(3)).await.unwrap();
    let retitle =
        SettingsUpdate { title: Some(Title::from_trusted("renamed".to_owned())), ..SettingsUpdate::default() };
    store.update_settings(chat_id, &retitle, owner, later(4)).await.unwrap();
    store.transfer_ownership(chat_id, user(2), owner, later(5)).await.unwrap();
    store.archive_group(community_id, owner, later(6)).await.unwrap();
}

/// Every outbox row with its decoded event, in id order.
async fn outbox(store: &dyn GroupStore) -> Vec<(i64, common::GroupEvent)> {
    let entries = store.read_outbox(0, 100_000).await.expect("read the outbox");
    entries
        .into_iter()
        .map(|entry| (entry.id, common::GroupEvent::decode(entry.payload.as_slice()).expect("a GroupEvent")))
        .collect()
}

/// Passes at `now` until one finds nothing to do; every pass must succeed.
async fn drain(relay: &OutboxRelay, now: DateTime<Utc>) -> Vec<RelayOutcome> {
    let mut outcomes = Vec::new();
    loop {
        let outcome = relay.run_once_at(now).await;
        outcomes.push(outcome);
        match outcome {
            RelayOutcome::Idle => return outcomes,
            RelayOutcome::Failed => panic!("a pass failed: {outcomes:?}"),
            RelayOutcome::Relayed(_) => assert!(outcomes.len() < 100, "the relay never goes idle"),
        }
    }
}

/// The double's log holds exactly the outbox rows of `expected`, each once, in outbox order,
/// with gapless event_seqs per group.
fn assert_log_is(recorded: &Recorded, expected: &[(i64, common::GroupEvent)]) {
    let appended: Vec<(i64, common::GroupEvent)> =
        recorded.appended.iter().map(|(id, _, event)| (*id, event.clone())).collect();
    assert_eq!(appended, expected, "the log holds every row once, in outbox order");
    let mut last_seq_of_group: HashMap<i64, i64> = HashMap::new();
    for (outbox_id, event_seq, event) in &recorded.appended {
        let last = last_seq_of_group.entry(event.group_id).or_default();
        assert_eq!(*event_seq, *last + 1, "row {outbox_id} follows its group's previous row");
        *last = *event_seq;
    }
}

// ---------------------------------------------------------------------------------------
// Tests on both stores

/// Changes made in several rounds, one of them larger than a batch, reach the log in outbox
/// order, each exactly once, sent as the service with its token.
async fn changes_reach_the_log_in_order_exactly_once(stored: Stored) {
    let store = stored.store.as_ref();
    let messages = MessagesDouble::start().await;
    let relay =
        OutboxRelay::connect(Arc::clone(&stored.store), &messages.url(), Some("relay-secret"), &ClientTls::default())
            .unwrap();
    assert_eq!(relay.run_once().await, RelayOutcome::Idle, "an empty outbox");

    make_changes(store, 0).await;
    let first_round = outbox(store).await;
    assert_eq!(drain(&relay, at(100)).await, [RelayOutcome::Relayed(first_round.len()), RelayOutcome::Idle]);

    // 1,203 rows: three batches of at most 500.
    make_changes(store, 200).await;
    let broadcast =
        store.create_group(new_group(GroupKind::Broadcast, user(9)), USER_GROUP_LIMIT, at(300)).await.unwrap();
    for round in 0..12 {
        let joiners: Vec<_> = (0..100).map(|index| user(1_000 + round * 100 + index)).collect();
        let (limits, owner) = (limits(GroupKind::Broadcast), broadcast.owner);
        store.add_members(broadcast.id, &joiners, JoinMethod::Invite, limits, owner, at(301)).await.unwrap();
    }
    let everything = outbox(store).await;
    let second_round = everything.len() - first_round.len();
    let outcomes = drain(&relay, at(400)).await;
    let relayed: usize = outcomes
        .iter()
        .map(|outcome| match outcome {
            RelayOutcome::Relayed(count) => *count,
            _ => 0,
        })
        .sum();
    assert_eq!(relayed, second_round);
    assert_eq!(outcomes[0], RelayOutcome::Relayed(500), "{outcomes:?}");

    let recorded = messages.recorded();
    assert_log_is(&recorded, &everything);
    assert_eq!(recorded.received.len(), everything.len(), "nothing was sent twice");
    assert!(recorded.authorizations.iter().all(|value| value.as_deref() == Some("Bearer relay-secret")));
    assert_eq!(recorded.calls_with_a_user, 0);
    assert_eq!(store.oldest_unpublished().await.unwrap(), None);
    assert_eq!(relay.run_once_at(at(10_000)).await, RelayOutcome::Idle, "published rows are never sent again");
}

/// With the messages service down a pass fails and publishes nothing; the claimed rows wait
/// out their lease, then go out once the service is back, each once.
async fn a_down_messages_service_fails_the_pass_and_loses_nothing(stored: Stored) {
    let store = stored.store.as_ref();
    let address = free_address().await;
    let relay =
        OutboxRelay::connect(Arc::clone(&stored.store), &format!("http://{address}"), None, &ClientTls::default())
            .unwrap();
    make_changes(store, 0).await;
    let expected = outbox(store).await;

    assert_eq!(relay.run_once_at(at(100)).await, RelayOutcome::Failed);
    assert_eq!(store.oldest_unpublished().await.unwrap(), Some(at(0)), "nothing was published");

    let messages = MessagesDouble::start_at(address).await;
    let lease = chrono::Duration::from_std(CLAIM_LEASE).unwrap();
    assert_eq!(relay.run_once_at(at(100) + lease).await, RelayOutcome::Idle, "the failed batch is still claimed");
    let after_the_lease = at(100) + lease + chrono::Duration::seconds(1);
    assert_eq!(drain(&relay, after_the_lease).await, [RelayOutcome::Relayed(expected.len()), RelayOutcome::Idle]);

    let recorded = messages.recorded();
    assert_log_is(&recorded, &expected);
    assert!(expected.iter().all(|(id, _)| recorded.times_received(*id) == 1), "each row was sent once");
    assert!(recorded.authorizations.iter().all(Option::is_none), "no token configured, none sent");
}

/// A relay that claimed a batch and died, after sending its first half but before marking
/// anything published: once its lease expires another relay sends the whole batch again,
/// and the log still holds each row once, with the event_seqs of the first delivery.
async fn rows_of_a_relay_that_died_are_delivered_again_and_appended_once(stored: Stored) {
    let store = stored.store.as_ref();
    let messages = MessagesDouble::start().await;
    make_changes(store, 0).await;
    let expected = outbox(store).await;

    // The relay that dies: claims everything, delivers the first half, never marks it.
    let claimed = store.claim_outbox(500, CLAIM_LEASE, at(100)).await.unwrap();
    assert_eq!(claimed.len(), expected.len());
    let delivered: Vec<pb::SystemEvent> = expected[..expected.len() / 2]
        .iter()
        .map(|(outbox_id, event)| pb::SystemEvent { outbox_id: *outbox_id, event: Some(event.clone()) })
        .collect();
    let mut client = MessageServiceClient::connect(messages.url()).await.unwrap();
    client.append_system_updates(pb::AppendSystemUpdatesRequest { events: delivered.clone() }).await.unwrap();
    drop(claimed);
    let first_seqs = messages.recorded().appended;

    let relay = OutboxRelay::connect(Arc::clone(&stored.store), &messages.url(), None, &ClientTls::default()).unwrap();
    assert_eq!(relay.run_once_at(at(105)).await, RelayOutcome::Idle, "the dead relay's lease still runs");
    assert_eq!(drain(&relay, at(111)).await, [RelayOutcome::Relayed(expected.len()), RelayOutcome::Idle]);

    let recorded = messages.recorded();
    assert_log_is(&recorded, &expected);
    assert_eq!(recorded.appended[..first_seqs.len()], first_seqs[..], "repeats keep their first event_seq");
    for (outbox_id, _) in &expected {
        let sent_before = delivered.iter().any(|event| event.outbox_id == *outbox_id);
        let times = if sent_before { 2 } else { 1 };
        assert_eq!(recorded.times_received(*outbox_id), times, "row {outbox_id}: a repeat, recognisable by id");
    }
}

// ---------------------------------------------------------------------------------------
// Corrupt rows and metrics (PostgreSQL only), and the relay inside the service

/// Counters and gauges by name, for one thread (installed with
/// `metrics::set_default_local_recorder`, so parallel tests do not mix their numbers).
#[derive(Default)]
struct TestRecorder {
    values: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl TestRecorder {
    fn value(&self, name: &str) -> Arc<AtomicU64> {
        let mut values = self.values.lock().expect("the metrics lock");
        Arc::clone(values.entry(name.to_owned()).or_default())
    }

    fn counter(&self, name: &str) -> u64 {
        self.value(name).load(Ordering::Acquire)
    }

    fn gauge(&self, name: &str) -> f64 {
        f64::from_bits(self.value(name).load(Ordering::Acquire))
    }
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.value(key.name()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.value(key.name()))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// A row whose payload is not an event is logged, counted, set aside (published without
/// being sent) and does not hold up the rows after it; the relayed count and the lag are
/// reported. One thread, so the thread-local metrics recorder sees every pass.
#[tokio::test(flavor = "current_thread")]
async fn a_corrupt_row_is_set_aside_and_does_not_block_its_group() {
    let metrics = TestRecorder::default();
    let _metrics = metrics::set_default_local_recorder(&metrics);
    let stored = Stored::postgres().await;
    let store = stored.store.as_ref();
    let pool = stored.postgres.as_ref().expect("a postgres store").pool().clone();
    let messages = MessagesDouble::start().await;
    let group = store.create_group(new_group(GroupKind::Chat, user(1)), USER_GROUP_LIMIT, at(0)).await.unwrap();
    for payload in [vec![0xde_u8, 0xad, 0xbe, 0xef], Vec::new()] {
        sqlx::query("INSERT INTO groups.outbox (group_id, payload, created_at) VALUES ($1, $2, $3)")
            .bind(group.id.get())
            .bind(payload)
            .bind(at(1))
            .execute(&pool)
            .await
            .expect("write a corrupt row");
    }
    store.add_members(group.id, &[user(2)], JoinMethod::Added, limits(group.kind), user(1), at(2)).await.unwrap();
    let rows = store.read_outbox(0, 100).await.unwrap();
    assert_eq!(rows.len(), 5);
    let valid: Vec<(i64, common::GroupEvent)> = [&rows[0], &rows[1], &rows[4]]
        .into_iter()
        .map(|entry| (entry.id, common::GroupEvent::decode(entry.payload.as_slice()).unwrap()))
        .collect();

    let relay = OutboxRelay::connect(Arc::clone(&stored.store), &messages.url(), None, &ClientTls::default()).unwrap();
    assert_eq!(relay.run_once_at(at(100)).await, RelayOutcome::Relayed(3));
    assert_eq!(metrics.gauge(OUTBOX_LAG_SECONDS), 100.0, "the oldest row was written at(0)");
    assert_eq!(metrics.counter(OUTBOX_RELAYED_TOTAL), 3);
    assert_eq!(metrics.counter(OUTBOX_CORRUPT_TOTAL), 2);
    assert_eq!(relay.run_once_at(at(101)).await, RelayOutcome::Idle);
    assert_eq!(metrics.gauge(OUTBOX_LAG_SECONDS), 0.0, "nothing waits");

    assert_log_is(&messages.recorded(), &valid);
    assert_eq!(store.oldest_unpublished().await.unwrap(), None, "the corrupt rows were set aside");
    assert!(store.claim_outbox(100, CLAIM_LEASE, at(10_000)).await.unwrap().is_empty());
}

/// `serve` with a messages URL runs the relay: a group created over gRPC reaches the log
/// without anyone calling the relay, and shutting the service down stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_relays_its_changes_when_given_a_messages_url() {
    let messages = MessagesDouble::start().await;
    let mut config = GroupsConfig::for_dev(DependencyConfig::default());
    assert_eq!(config.messages_url, None, "dev callers choose whether to relay");
    config.messages_url = Some(messages.url());
    let store: Arc<dyn GroupStore> = Arc::new(MemoryGroupStore::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(fanfare_groups::serve(config, Arc::clone(&store), listener, shutdown.clone()));

    let mut client = GroupServiceClient::connect(format!("http://{address}")).await.unwrap();
    let create = groups_pb::CreateGroupRequest {
        kind: common::GroupKind::Chat as i32,
        title: "relayed".to_owned(),
        ..Default::default()
    };
    let mut request = Request::new(create);
    request.metadata_mut().insert(USER_ID_HEADER, "5".parse().unwrap());
    client.create_group(request).await.expect("CreateGroup succeeds");

    let expected = outbox(store.as_ref()).await;
    assert_eq!(expected.len(), 2, "created, then the owner joined");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while messages.recorded().appended.len() < expected.len() {
        assert!(tokio::time::Instant::now() < deadline, "the relay did not deliver: {:?}", messages.recorded());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_log_is(&messages.recorded(), &expected);

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(15), service).await;
    stopped.expect("the service and its relay stop").expect("the service task").expect("the service ran");
}
