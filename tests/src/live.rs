//! Helpers for the live delivery tests: groups and messages (a [`Fixture`]) with one or
//! more fanout pods on the same bus, and a [`Subscription`] that reads a Subscribe stream
//! frame by frame.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fanfare_bus::UpdateBus;
use fanfare_fanout::follows::store::PostgresFollowStore;
use fanfare_fanout::{FanoutBackends, FanoutConfig};
use fanfare_proto::common::v1 as common;
use fanfare_proto::fanout::v1 as pb;
use fanfare_proto::frame::{Frame, SubscribeResponse};
use fanfare_testkit::{Storage, as_user};
use tonic::Streaming;

use crate::fanout::{Client, TestFanout, dev_config};
use crate::messages::{Fixture, start_with as start_fixture};

/// How long a test waits for a frame it expects.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

/// Groups, messages and fanout pods, all on one bus.
pub struct LiveFixture {
    /// Groups and messages with a client of each.
    pub fixture: Fixture,
    /// The fanout pods.
    pub pods: Vec<TestFanout>,
    storage: Storage,
}

impl LiveFixture {
    /// Starts groups, messages and `pods` fanout pods on `storage`.
    pub async fn start(storage: Storage, pods: usize) -> Self {
        Self::start_with(storage, pods, |_| {}).await
    }

    /// Starts them after `adjust` changed each fanout pod's configuration.
    pub async fn start_with(storage: Storage, pods: usize, adjust: impl Fn(&mut FanoutConfig)) -> Self {
        // Live tests send bursts from one user: no per-user send limit.
        let fixture = start_fixture(storage, |messages| messages.limits.user_sends_per_second = 0).await;
        let mut live = Self { fixture, pods: Vec::new(), storage };
        for _ in 0..pods {
            live.add_pod(&adjust).await;
        }
        live
    }

    /// Starts one more fanout pod (with its own bus connection on Postgres + Redis).
    pub async fn add_pod(&mut self, adjust: &impl Fn(&mut FanoutConfig)) -> usize {
        let stack = &self.fixture.stack;
        let mut config =
            dev_config(&format!("http://{}", stack.groups_addr), &format!("http://{}", stack.messages_addr));
        adjust(&mut config);
        let backends = match self.storage {
            Storage::Memory => FanoutBackends::in_memory(Arc::clone(&stack.bus)),
            Storage::Postgres => {
                let url = stack.database().expect("a Postgres stack has a database").url();
                let store = PostgresFollowStore::connect(&url, 4).await.expect("connect the fanout store");
                PostgresFollowStore::migrate(store.pool()).await.expect("migrate the fanout schema");
                let redis =
                    std::env::var("REDIS_URL").unwrap_or_else(|_| fanfare_testkit::stack::DEFAULT_REDIS_URL.into());
                let bus: Arc<dyn UpdateBus> =
                    fanfare_bus::open_bus(Some(&redis), &stack.redis_namespace).await.expect("open the bus");
                let mut backends = FanoutBackends::in_memory(bus);
                backends.jobs = Arc::new(fanfare_fanout::jobs::PostgresJobStore::from_pool(store.pool().clone()));
                backends.follows = Arc::new(store);
                backends
            }
        };
        let pod = TestFanout::serve(config, backends, None).await.expect("the fanout pod starts");
        self.pods.push(pod);
        self.pods.len() - 1
    }

    /// Starts one more messages pod on the same store (and, on Postgres + Redis, its own
    /// connection to the same Redis namespace), as a second replica of the Deployment;
    /// returns a client of it. It stops when the test's runtime ends.
    pub async fn add_messages_pod(&self) -> crate::messages::Client {
        let stack = &self.fixture.stack;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let address = listener.local_addr().expect("an address");
        let mut config = fanfare_messages::MessagesConfig::for_dev(
            fanfare_core::config::DependencyConfig::default(),
            format!("http://{}", stack.groups_addr),
        );
        config.limits.user_sends_per_second = 0;
        let bus: Arc<dyn UpdateBus> = match self.storage {
            Storage::Memory => Arc::clone(&stack.bus),
            Storage::Postgres => {
                let redis =
                    std::env::var("REDIS_URL").unwrap_or_else(|_| fanfare_testkit::stack::DEFAULT_REDIS_URL.into());
                fanfare_bus::open_bus(Some(&redis), &stack.redis_namespace).await.expect("open the bus")
            }
        };
        let store = Arc::clone(&stack.messages_store);
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(fanfare_messages::serve(config, store, bus, listener, shutdown));
        crate::messages::Client::connect(format!("http://{address}")).await.expect("connect to the other pod")
    }

    /// A client of pod `index`.
    pub async fn client(&self, index: usize) -> Client {
        self.pods[index].client().await.expect("a fanout client connects")
    }

    /// Creates a CHAT group owned by `owner` with `members`, settled in the log.
    pub async fn chat(&mut self, owner: i64, members: &[i64]) -> i64 {
        self.fixture.group(common::GroupKind::Chat, owner, members).await
    }

    /// Sends a text message, returning it.
    pub async fn send(&mut self, user: i64, group_id: i64, key: &str) -> common::Message {
        crate::messages::send_ok(&mut self.fixture.messages, user, group_id, key, key).await
    }
}

/// One open Subscribe stream, read frame by frame.
pub struct Subscription {
    frames: Streaming<SubscribeResponse>,
    /// Every update received so far, per group, in arrival order.
    pub updates: BTreeMap<i64, Vec<common::Update>>,
    /// The cursor of the last heartbeat or reconnect frame.
    pub cursor: String,
}

/// What one frame carried, decoded.
#[derive(Debug, Clone)]
pub enum Received {
    /// Updates.
    Updates(Vec<common::Update>),
    /// A heartbeat.
    Heartbeat(pb::Heartbeat),
    /// A membership change.
    Membership(pb::MembershipChange),
    /// A resync instruction.
    Resync(pb::GroupResync),
    /// A notification.
    Notification(pb::Notification),
    /// The reconnect signal.
    Reconnect(pb::Reconnect),
}

impl Subscription {
    /// Opens `user`'s stream on `client` with `request`.
    pub async fn open(client: &mut Client, user: i64, request: pb::SubscribeRequest) -> Result<Self, tonic::Status> {
        let frames = client.subscribe(as_user(user, request)).await?.into_inner();
        Ok(Self { frames, updates: BTreeMap::new(), cursor: String::new() })
    }

    /// The next frame, or `None` when the stream ended; panics after [`FRAME_WAIT`].
    pub async fn next(&mut self) -> Option<Received> {
        let frame = tokio::time::timeout(FRAME_WAIT, self.frames.message())
            .await
            .expect("a frame within the wait")
            .expect("the stream does not fail")?;
        let received = match frame.frame.expect("every frame carries something") {
            Frame::Updates(updates) => {
                let updates = updates.decode_all().expect("valid updates");
                for update in &updates {
                    self.updates.entry(update.group_id).or_default().push(update.clone());
                }
                Received::Updates(updates)
            }
            Frame::Heartbeat(heartbeat) => {
                self.cursor = heartbeat.cursor.clone();
                Received::Heartbeat(heartbeat)
            }
            Frame::MembershipChange(change) => Received::Membership(change),
            Frame::Resync(resync) => Received::Resync(resync),
            Frame::Notification(notification) => Received::Notification(notification),
            Frame::Reconnect(reconnect) => {
                self.cursor = reconnect.cursor.clone();
                Received::Reconnect(reconnect)
            }
        };
        Some(received)
    }

    /// Reads frames until `done` holds for what was received so far, returning every frame.
    pub async fn until(&mut self, mut done: impl FnMut(&Self) -> bool) -> Vec<Received> {
        let mut frames = Vec::new();
        while !done(self) {
            frames.push(self.next().await.expect("the stream stays open"));
        }
        frames
    }

    /// Reads until `group_id` has an update with `event_seq` at least `seq`.
    pub async fn until_seq(&mut self, group_id: i64, seq: i64) -> Vec<Received> {
        self.until(|sub| sub.last_seq(group_id) >= seq).await
    }

    /// Reads until a message with `client_message_id` arrived in `group_id`.
    pub async fn until_message(&mut self, group_id: i64, key: &str) -> Vec<Received> {
        self.until(|sub| sub.messages(group_id).iter().any(|message| message.client_message_id == key)).await
    }

    /// The last event_seq received of `group_id` (0 if none).
    pub fn last_seq(&self, group_id: i64) -> i64 {
        self.updates.get(&group_id).and_then(|updates| updates.last()).map_or(0, |update| update.event_seq)
    }

    /// The last update received of `group_id` as a stream position: its event_seq and entry
    /// token (0 and 0 if none).
    pub fn last_position(&self, group_id: i64) -> pb::GroupPosition {
        let last = self.updates.get(&group_id).and_then(|updates| updates.last());
        pb::GroupPosition {
            group_id,
            event_seq: last.map_or(0, |update| update.event_seq),
            entry_token: last.map_or(0, |update| update.entry_token),
        }
    }

    /// The messages posted in `group_id` received so far.
    pub fn messages(&self, group_id: i64) -> Vec<common::Message> {
        self.updates
            .get(&group_id)
            .into_iter()
            .flatten()
            .filter_map(|update| match &update.change {
                Some(common::update::Change::MessagePosted(posted)) => posted.message.clone(),
                _ => None,
            })
            .collect()
    }

    /// Asserts every group's updates are consecutive event_seqs (no hole, no duplicate),
    /// starting right after `starts[group]` (or wherever the first one is when not given).
    #[track_caller]
    pub fn assert_gapless(&self, starts: &BTreeMap<i64, i64>) {
        for (group, updates) in &self.updates {
            let seqs: Vec<i64> = updates.iter().map(|update| update.event_seq).collect();
            let first = starts.get(group).map_or(seqs[0], |start| start + 1);
            let expected: Vec<i64> = (first..first + seqs.len() as i64).collect();
            assert_eq!(seqs, expected, "group {group}: updates in order with no hole and no duplicate");
        }
    }
}

/// The positions in a heartbeat, as a map.
pub fn positions(heartbeat: &pb::Heartbeat) -> BTreeMap<i64, i64> {
    heartbeat.positions.iter().map(|position| (position.group_id, position.event_seq)).collect()
}

/// Opens `user`'s stream from the latest updates, returning it with the first heartbeat's
/// positions.
pub async fn subscribe_fresh(client: &mut Client, user: i64) -> (Subscription, BTreeMap<i64, i64>) {
    let mut subscription =
        Subscription::open(client, user, pb::SubscribeRequest::default()).await.expect("Subscribe opens");
    match subscription.next().await.expect("a first frame") {
        Received::Heartbeat(heartbeat) => {
            let starts = positions(&heartbeat);
            (subscription, starts)
        }
        other => panic!("the first frame is a heartbeat, got {other:?}"),
    }
}
