//! The system under test: the groups and messages services on port 0 over one fresh,
//! migrated Postgres database, the groups every window sends to (created and filled through
//! the groups API), HTTP/2 connections to messages, and what the direct windows need: the
//! counted store, raw sqlx pools and groups outside the service's range for the baselines.
//!
//! The messages service can be stopped and started again with other commit settings (a
//! fresh committer, publisher and membership cache each time); the store, bus and database
//! stay. The service, its store and its bus run on a runtime of their own
//! ([`ServiceRuntime`]), so its CPU time is read apart from the load generator's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{SubsecRound as _, Utc};
use fanfare_bus::{MemoryBus, UpdateBus};
use fanfare_core::config::DependencyConfig;
use fanfare_core::ids::{GroupId, UserId};
use fanfare_groups::GroupsConfig;
use fanfare_groups::store::PostgresGroupStore;
use fanfare_messages::MessagesConfig;
use fanfare_messages::committer::Committer;
use fanfare_messages::domain::{ClientMessageId, Content, MessageText, NewMessage};
use fanfare_messages::publisher::Publisher;
use fanfare_messages::store::{Applied, LogWrite, MessageStore, PostgresMessageStore};
use fanfare_proto::common::v1::{GroupKind, JoinPolicy, PostPolicy};
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_proto::messages::v1 as messages_pb;
use fanfare_proto::messages::v1::message_service_client::MessageServiceClient;
use fanfare_testkit::{TestDatabase, as_user};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::CommitSetting;
use super::counting::{BatchCounter, CountingStore};
use super::runtime::ServiceRuntime;
use crate::driver;

/// The user who creates every group (never a sender).
pub(super) const OWNER: i64 = 1_000_000_000;

/// Baseline rows go to group ids from here on: far above any id the groups service hands
/// out (an identity from 1), so they share the real tables, partitions and indexes with the
/// service's rows without ever meeting them.
const RAW_GROUP_BASE: i64 = 1_000_000_000_000;

/// The group the naive per-message counter writes to (above the raw baseline's groups).
pub(super) const NAIVE_GROUP: i64 = 2_000_000_000_000;

/// Largest batch AddMembers takes (the groups service's default limit).
const ADD_MEMBERS_BATCH: usize = 100;

/// The single-row INSERT of a message row, the raw baseline: every column the service
/// writes, one row per (autocommit, durable) transaction.
const RAW_INSERT: &str = "INSERT INTO messages.messages (group_id, message_seq, message_id, event_seq, sender_id, \
     client_message_id, content_digest, text, attachments, reply_to_message_seq, mentions, mentions_all, created_at, \
     version) VALUES ($1, $2, $3, $2, $4, $5, $6, $7, '\\x'::bytea, NULL, '{}'::bigint[], false, $8, 1)";

/// The naive counter: the group's counter row bumped per message, holding its lock until
/// the commit.
const NAIVE_BUMP: &str = "UPDATE messages.group_logs SET last_event_seq = last_event_seq + 1, \
     last_message_seq = last_message_seq + 1 WHERE group_id = $1 RETURNING last_message_seq";

/// How the target is sized.
#[derive(Debug, Clone, Copy)]
pub(super) struct TargetSize {
    /// Users who send: 1..=senders, members of every group but the hot one.
    pub senders: usize,
    /// Users who send into the hot group: 1..=hot_senders.
    pub hot_senders: usize,
    /// Groups of the spread configuration.
    pub spread_groups: usize,
    /// HTTP/2 connections to the messages service.
    pub channels: usize,
    /// Connections of the messages store's pool.
    pub pool_size: u32,
    /// Most connections of a raw baseline pool.
    pub raw_max_connections: u32,
}

/// Which groups a window sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spread {
    /// All senders into one COMMUNITY group.
    One,
    /// Each sender round-robin over its own share of the spread groups: with S senders,
    /// sender w takes the groups whose index is w modulo S, so every group has one sender
    /// and every sender's groups are touched in turn.
    Many,
    /// The hot group.
    Hot,
}

/// Where the committer of a direct window publishes what it committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommitterBus {
    /// The bus the service publishes to (in-process, or Redis with `--redis-url`).
    Service,
    /// An in-process bus nobody listens on: committing and acknowledging, without Redis.
    InProcess,
}

/// The messages service while it runs.
struct RunningMessages {
    clients: Vec<MessageServiceClient<Channel>>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Both services, their groups, the store and the baseline pools.
pub(super) struct Target {
    size: TargetSize,
    /// The single group of the 1-group windows.
    pub one: i64,
    /// The spread groups.
    pub many: Vec<i64>,
    /// The hot group.
    pub hot: i64,
    /// The messages store the service runs on, counting its batches.
    pub store: Arc<CountingStore>,
    /// The pool of the Postgres store under `store`, closed when the target stops.
    messages_pool: PgPool,
    bus: Arc<dyn UpdateBus>,
    groups_addr: SocketAddr,
    groups_shutdown: CancellationToken,
    groups_task: JoinHandle<anyhow::Result<()>>,
    messages: Option<RunningMessages>,
    /// Where the messages service, its store's pool and its bus run.
    runtime: ServiceRuntime,
    /// Next message_seq of each raw baseline group (index 0..spread_groups: spread, then
    /// one more for the single group).
    raw_seqs: Vec<AtomicI64>,
    /// Each user's next per-sender sequence number (index = user id), shared by every
    /// window so idempotency keys never repeat.
    sequences: Vec<AtomicU64>,
    admin: PgPool,
    // Dropped last: dropping it drops the database.
    database: TestDatabase,
}

impl Target {
    /// Creates and migrates the database, starts groups (per-user change limit off, no
    /// messages_url), creates the groups and adds the senders, and prepares the baselines.
    /// The messages service is started by [`Target::start_messages`].
    pub(super) async fn start(size: TargetSize, redis_url: Option<&str>) -> anyhow::Result<Self> {
        let database = TestDatabase::create().await?;
        let groups_store = PostgresGroupStore::connect(&database.url(), 8).await?;
        PostgresGroupStore::migrate(groups_store.pool()).await?;
        // The store's connections and the bus's are opened on the service's runtime, so
        // their I/O is driven (and counted) there.
        let runtime = ServiceRuntime::start()?;
        let (url, redis_url) = (database.url(), redis_url.map(str::to_owned));
        let (messages_store, bus) = runtime
            .spawn(async move {
                let store = PostgresMessageStore::connect(&url, size.pool_size).await?;
                PostgresMessageStore::migrate(store.pool()).await?;
                let bus = fanfare_bus::open_bus(redis_url.as_deref(), "").await.context("opening the bus")?;
                anyhow::Ok((store, bus))
            })
            .await
            .context("the messages store's setup panicked")??;
        let messages_pool = messages_store.pool().clone();
        let store = Arc::new(CountingStore::new(Arc::new(messages_store), BatchCounter::default()));

        let mut config = GroupsConfig::for_dev(DependencyConfig::default());
        // The owner creates a thousand groups in a few seconds; the limit is not measured.
        config.limits.user_changes_per_second = 0;
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the groups service to 127.0.0.1:0")?;
        let groups_addr = listener.local_addr().context("reading the bound address")?;
        let groups_shutdown = CancellationToken::new();
        let groups_task =
            tokio::spawn(fanfare_groups::serve(config, Arc::new(groups_store), listener, groups_shutdown.clone()));

        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(database.options())
            .await
            .context("connecting the admin pool")?;
        // The naive counter's row, beside the service's log rows.
        sqlx::query("INSERT INTO messages.group_logs (group_id) VALUES ($1)")
            .bind(NAIVE_GROUP)
            .execute(&admin)
            .await
            .context("creating the naive counter's row")?;

        let users = size.senders.max(size.hot_senders);
        let mut target = Self {
            size,
            one: 0,
            many: Vec::new(),
            hot: 0,
            store,
            messages_pool,
            bus,
            groups_addr,
            groups_shutdown,
            groups_task,
            messages: None,
            runtime,
            raw_seqs: (0..=size.spread_groups).map(|_| AtomicI64::new(0)).collect(),
            sequences: (0..=users).map(|_| AtomicU64::new(0)).collect(),
            admin,
            database,
        };
        target.create_groups().await?;
        Ok(target)
    }

    /// Creates the single, spread and hot groups (COMMUNITY, open, every member may post,
    /// no slow mode) and adds their senders with AddMembers.
    async fn create_groups(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let client = groups_client(self.groups_addr).await?;
        let count = self.size.spread_groups + 2;
        let created = Arc::new(Mutex::new(vec![0i64; count]));
        let senders: Vec<i64> = (1..=i64::try_from(self.size.senders)?).collect();
        let hot_senders: Vec<i64> = (1..=i64::try_from(self.size.hot_senders)?).collect();
        let no_deadline = Instant::now() + Duration::from_secs(3_600);
        let (call_client, call_created) = (client.clone(), Arc::clone(&created));
        let outcome = driver::run(8, 0..count as u64, no_deadline, move |index| {
            let mut client = call_client.clone();
            let created = Arc::clone(&call_created);
            let senders = senders.clone();
            let hot_senders = hot_senders.clone();
            async move {
                let index = usize::try_from(index)?;
                let hot = index == count - 1;
                let group = create_community(&mut client, &format!("bench {index}")).await?;
                let members = if hot { &hot_senders } else { &senders };
                for chunk in members.chunks(ADD_MEMBERS_BATCH) {
                    let request = groups_pb::AddMembersRequest { group_id: group, user_ids: chunk.to_vec() };
                    client
                        .add_members(as_user(OWNER, request))
                        .await
                        .with_context(|| format!("adding {} members to group {group}", chunk.len()))?;
                }
                created.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[index] = group;
                Ok(())
            }
        })
        .await?;
        outcome.ensure_no_failures("creating the groups")?;
        let created = std::mem::take(&mut *created.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        self.many = created[..self.size.spread_groups].to_vec();
        self.one = created[self.size.spread_groups];
        self.hot = created[self.size.spread_groups + 1];
        eprintln!(
            "messages: created {count} groups and added their senders in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Starts the messages service with `commit` (membership from groups, in-process bus
    /// or Redis, per-user send limit off), or restarts it when it runs.
    pub(super) async fn start_messages(&mut self, commit: CommitSetting) -> anyhow::Result<()> {
        self.stop_messages().await?;
        let mut config = MessagesConfig::for_dev(DependencyConfig::default(), format!("http://{}", self.groups_addr));
        config.limits.user_sends_per_second = 0;
        config.commit = commit.config();
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding the messages service to 127.0.0.1:0")?;
        listener.set_nonblocking(true).context("making the messages listener non-blocking")?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let shutdown = CancellationToken::new();
        let store: Arc<dyn MessageStore> = Arc::clone(&self.store) as Arc<dyn MessageStore>;
        let (bus, serving) = (Arc::clone(&self.bus), shutdown.clone());
        let task = self.runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).context("registering the messages listener")?;
            fanfare_messages::serve(config, store, bus, listener, serving).await
        });
        let mut clients = Vec::with_capacity(self.size.channels);
        for _ in 0..self.size.channels.max(1) {
            let channel = Channel::from_shared(format!("http://{addr}"))
                .context("building the messages endpoint")?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to the messages service at {addr}"))?;
            clients.push(MessageServiceClient::new(channel));
        }
        self.messages = Some(RunningMessages { clients, shutdown, task });
        Ok(())
    }

    /// Stops the messages service if it runs (its committer drains what it accepted).
    pub(super) async fn stop_messages(&mut self) -> anyhow::Result<()> {
        if let Some(running) = self.messages.take() {
            drop(running.clients);
            running.shutdown.cancel();
            running.task.await.context("the messages service task panicked")?.context("the messages service failed")?;
        }
        Ok(())
    }

    /// The group sender `sender` (0-based, of `senders`) sends its message number `seq` to,
    /// as an index into the spread groups (or `None` for the single group).
    fn group_index(&self, spread: Spread, sender: usize, senders: usize, seq: u64) -> Option<usize> {
        match spread {
            Spread::One | Spread::Hot => None,
            Spread::Many => Some(spread_index(self.size.spread_groups, sender, senders, seq)),
        }
    }

    /// How many groups each sender of `senders` sends to (its warm-up touches each once).
    pub(super) fn groups_per_sender(&self, spread: Spread, senders: usize) -> u64 {
        match spread {
            Spread::One | Spread::Hot => 1,
            Spread::Many => self.size.spread_groups.div_ceil(senders.max(1)) as u64,
        }
    }

    fn service_group(&self, spread: Spread, index: Option<usize>) -> i64 {
        match (spread, index) {
            (Spread::Hot, _) => self.hot,
            (_, Some(index)) => self.many[index],
            (_, None) => self.one,
        }
    }

    /// The next sequence number of user `user`.
    fn next_seq(&self, user: i64) -> u64 {
        self.sequences[usize::try_from(user).unwrap_or(0)].fetch_add(1, Ordering::Relaxed)
    }

    /// One `SendMessage` by sender `sender` (0-based; user id sender + 1) of `senders`.
    pub(super) async fn send(&self, spread: Spread, sender: usize, senders: usize) -> anyhow::Result<()> {
        let user = i64::try_from(sender + 1)?;
        let seq = self.next_seq(user);
        let group = self.service_group(spread, self.group_index(spread, sender, senders, seq));
        let running = self.messages.as_ref().context("the messages service is not running")?;
        let mut client = running.clients[sender % running.clients.len()].clone();
        let request = messages_pb::SendMessageRequest {
            group_id: group,
            client_message_id: client_message_id(seq),
            text: payload(user, seq),
            ..Default::default()
        };
        let response = client
            .send_message(as_user(user, request))
            .await
            .with_context(|| format!("SendMessage by user {user} to group {group}"))?
            .into_inner();
        anyhow::ensure!(!response.duplicate, "SendMessage by user {user} was answered as a retry");
        Ok(())
    }

    /// One post straight to `committer` (no gRPC, no permission check), as the service
    /// would submit it.
    pub(super) async fn submit(&self, committer: &Committer, sender: usize) -> anyhow::Result<()> {
        let user = i64::try_from(sender + 1)?;
        let seq = self.next_seq(user);
        let message = NewMessage {
            group_id: GroupId::from_trusted(self.hot),
            sender: UserId::from_trusted(user),
            client_message_id: ClientMessageId::from_trusted(client_message_id(seq)),
            content: Content { text: MessageText::from_trusted(payload(user, seq)), ..Default::default() },
        };
        match committer.submit(LogWrite::Post { message, slow_mode: None }).await {
            Ok(Applied::Posted { duplicate: false, .. }) => Ok(()),
            Ok(other) => anyhow::bail!("the committer answered {other:?} to a new post"),
            Err(error) => Err(anyhow::Error::new(error).context(format!("committing a post by user {user}"))),
        }
    }

    /// A committer on the service's store and its publisher, publishing to `bus`, as `serve`
    /// starts them (on the service's runtime); stopped by cancelling the token (the
    /// committer drains first).
    pub(super) fn start_committer(&self, commit: CommitSetting, bus: CommitterBus) -> (Committer, CancellationToken) {
        let shutdown = CancellationToken::new();
        let store: Arc<dyn MessageStore> = Arc::clone(&self.store) as Arc<dyn MessageStore>;
        let bus: Arc<dyn UpdateBus> = match bus {
            CommitterBus::Service => Arc::clone(&self.bus),
            // Without Redis: the committer's lanes publish to an in-process bus nobody
            // listens on, so the window measures committing and acknowledging alone.
            CommitterBus::InProcess => Arc::new(MemoryBus::new()),
        };
        let config = commit.config();
        let _on_service_runtime = self.runtime.enter();
        let publisher = Publisher::start(Arc::clone(&store), bus, config.commit_workers, shutdown.clone());
        let committer = Committer::start(store, &config, publisher, shutdown.clone());
        (committer, shutdown)
    }

    /// Empties the outbox (nobody subscribes, so nothing is lost): a window starts without
    /// rows an earlier one left unacknowledged, so its count at the end is its own.
    pub(super) async fn clear_outbox(&self) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM messages.outbox").execute(&self.admin).await.context("emptying the outbox")?;
        Ok(())
    }

    /// A pool for a raw window of `in_flight` calls: one connection per call up to the cap.
    pub(super) async fn raw_pool(&self, in_flight: usize) -> anyhow::Result<PgPool> {
        let connections = u32::try_from(in_flight).unwrap_or(u32::MAX).clamp(1, self.size.raw_max_connections.max(1));
        PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(self.database.options())
            .await
            .context("connecting a baseline pool")
    }

    /// Connections a raw window of `in_flight` calls gets.
    pub(super) fn raw_connections(&self, in_flight: usize) -> usize {
        in_flight.clamp(1, self.size.raw_max_connections.max(1) as usize)
    }

    /// Baseline of a send: the message row alone, one INSERT per transaction, into the
    /// baseline group matching the one the service window would have used.
    pub(super) async fn raw_insert(
        &self,
        pool: &PgPool,
        spread: Spread,
        sender: usize,
        senders: usize,
    ) -> anyhow::Result<()> {
        let user = i64::try_from(sender + 1)?;
        let seq = self.next_seq(user);
        let index = self.group_index(spread, sender, senders, seq).unwrap_or(self.size.spread_groups);
        let group = RAW_GROUP_BASE + i64::try_from(index)?;
        let message_seq = self.raw_seqs[index].fetch_add(1, Ordering::Relaxed) + 1;
        insert_row(pool, group, message_seq, user, seq).await.with_context(|| format!("raw insert into group {group}"))
    }

    /// The naive per-message counter: BEGIN; bump the group's counter row; INSERT the
    /// message with that seq; COMMIT.
    pub(super) async fn naive_send(&self, pool: &PgPool, sender: usize) -> anyhow::Result<()> {
        let user = i64::try_from(sender + 1)?;
        let seq = self.next_seq(user);
        let mut tx = pool.begin().await.context("beginning a naive send")?;
        let message_seq: i64 = sqlx::query_scalar(NAIVE_BUMP)
            .bind(NAIVE_GROUP)
            .fetch_one(&mut *tx)
            .await
            .context("bumping the counter")?;
        insert_row(&mut *tx, NAIVE_GROUP, message_seq, user, seq).await.context("inserting a naive send")?;
        tx.commit().await.context("committing a naive send")?;
        Ok(())
    }

    /// Rows in the messages outbox: updates committed and not yet acknowledged (published
    /// and deleted) by the committer's publisher.
    pub(super) async fn outbox_backlog(&self) -> anyhow::Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM messages.outbox")
            .fetch_one(&self.admin)
            .await
            .context("counting the outbox backlog")
    }

    /// The messages of `group`: how many, and the lowest and highest message_seq. Gapless
    /// when the count spans the range exactly.
    pub(super) async fn message_seqs(&self, group: i64) -> anyhow::Result<SeqSpan> {
        let (messages, lowest, highest): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT count(*), min(message_seq), max(message_seq) FROM messages.messages WHERE group_id = $1",
        )
        .bind(group)
        .fetch_one(&self.admin)
        .await
        .context("reading a group's message_seqs")?;
        Ok(SeqSpan { messages, lowest: lowest.unwrap_or(0), highest: highest.unwrap_or(0) })
    }

    /// Rows in messages.messages, and its total size in bytes.
    pub(super) async fn storage(&self) -> anyhow::Result<(i64, i64)> {
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM messages.messages), \
             (SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_inherits i \
              JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'messages.messages'::regclass)",
        )
        .fetch_one(&self.admin)
        .await
        .context("reading the messages table's size")
    }

    /// Stops both services, closes the pools and drops the database.
    pub(super) async fn stop(mut self) -> anyhow::Result<()> {
        self.stop_messages().await?;
        self.admin.close().await;
        self.groups_shutdown.cancel();
        self.groups_task.await.context("the groups service task panicked")?.context("the groups service failed")?;
        self.messages_pool.close().await;
        drop(self.database);
        Ok(())
    }
}

/// A group's messages: their count and the range of their message_seqs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SeqSpan {
    /// Messages stored.
    pub messages: i64,
    /// The lowest message_seq (0 when there is none).
    pub lowest: i64,
    /// The highest message_seq (0 when there is none).
    pub highest: i64,
}

impl SeqSpan {
    /// Whether every message_seq from the lowest to the highest is there, once.
    pub(super) fn gapless(&self) -> bool {
        match self.messages {
            0 => true,
            messages => self.highest - self.lowest + 1 == messages,
        }
    }
}

/// Sender `sender`'s (0-based, of `senders`) group for its message `seq` among `groups`:
/// sender w's groups are w, w + S, w + 2S, … below `groups`, taken in turn.
fn spread_index(groups: usize, sender: usize, senders: usize, seq: u64) -> usize {
    let senders = senders.clamp(1, groups.max(1));
    let sender = sender % senders;
    let share = (groups.max(1) - sender).div_ceil(senders);
    let turn = usize::try_from(seq % share as u64).unwrap_or(0);
    sender + turn * senders
}

async fn groups_client(addr: SocketAddr) -> anyhow::Result<GroupServiceClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .context("building the groups endpoint")?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to the groups service at {addr}"))?;
    Ok(GroupServiceClient::new(channel))
}

async fn create_community(client: &mut GroupServiceClient<Channel>, title: &str) -> anyhow::Result<i64> {
    let request = groups_pb::CreateGroupRequest {
        kind: GroupKind::Community as i32,
        title: title.to_owned(),
        settings: Some(groups_pb::GroupSettings {
            join_policy: JoinPolicy::Open as i32,
            slow_mode_seconds: 0,
            history_visible_to_new_members: true,
            post_policy: PostPolicy::AllMembers as i32,
            min_follow_age_seconds: 0,
        }),
        ..Default::default()
    };
    let response =
        client.create_group(as_user(OWNER, request)).await.with_context(|| format!("creating group {title}"))?;
    response.into_inner().group.map(|group| group.group_id).context("CreateGroup answered without a group")
}

/// The idempotency key of a user's message `seq` (unique per sender over the whole run).
fn client_message_id(seq: u64) -> String {
    format!("bench-{seq}")
}

/// Length of every message's text, in bytes (all ASCII).
pub(super) const PAYLOAD_BYTES: usize = 128;

/// The 128-byte ASCII text of user `user`'s message `seq`: sender id, per-sender sequence
/// and send time (CLOCK_MONOTONIC microseconds), padded.
pub(super) fn payload(user: i64, seq: u64) -> String {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let micros = now.tv_sec * 1_000_000 + now.tv_nsec / 1_000;
    let mut text = format!("sender={user} seq={seq} sent_us={micros} ");
    while text.len() < PAYLOAD_BYTES {
        text.push_str("fanfare-bench ");
    }
    text.truncate(PAYLOAD_BYTES);
    text
}

/// Inserts one message row the way the raw baseline and the naive counter do.
async fn insert_row<'e, E>(executor: E, group: i64, message_seq: i64, user: i64, seq: u64) -> anyhow::Result<()>
where
    E: sqlx::PgExecutor<'e>,
{
    let id = uuid::Uuid::now_v7();
    // 32 bytes where the service stores a SHA-256 of the content.
    let digest: Vec<u8> = id.as_bytes().iter().chain(id.as_bytes()).copied().collect();
    sqlx::query(RAW_INSERT)
        .bind(group)
        .bind(message_seq)
        .bind(id)
        .bind(user)
        .bind(client_message_id(seq))
        .bind(digest)
        .bind(payload(user, seq))
        .bind(Utc::now().trunc_subsecs(6))
        .execute(executor)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_senders_share_the_groups_out() {
        for senders in [1, 8, 64] {
            let mut seen = vec![0u32; 1_000];
            for sender in 0..senders {
                let share = 1_000usize.div_ceil(senders) as u64;
                for seq in 0..share * 2 {
                    seen[spread_index(1_000, sender, senders, seq)] += 1;
                }
            }
            // Every group is some sender's, and only one sender's.
            assert!(seen.iter().all(|count| *count >= 2), "{senders} senders leave a group out");
            for sender in 0..senders {
                let index = spread_index(1_000, sender, senders, 7);
                assert_eq!(index % senders, sender);
            }
        }
    }

    #[test]
    fn a_span_is_gapless_when_its_count_fills_it() {
        assert!(SeqSpan { messages: 0, lowest: 0, highest: 0 }.gapless());
        assert!(SeqSpan { messages: 10, lowest: 1, highest: 10 }.gapless());
        assert!(!SeqSpan { messages: 9, lowest: 1, highest: 10 }.gapless());
    }

    #[test]
    fn payloads_are_128_ascii_bytes() {
        let text = payload(64, 123_456_789);
        assert_eq!(text.len(), PAYLOAD_BYTES);
        assert!(text.is_ascii());
        assert!(text.starts_with("sender=64 seq=123456789 sent_us="));
    }
}
