//! Groups and messages spawned together on port 0, wired as in production: messages asks
//! groups who may post, groups relays its outbox to messages' log, and messages publishes
//! committed updates on a bus. Memory: in-memory stores and bus. Postgres: one fresh
//! database (a schema per service) and the Redis at `REDIS_URL` (default 127.0.0.1:6379),
//! in a namespace of the stack's own: every test database numbers its groups from 1, and
//! tests running at once must not hear each other's `fanfare:group:1`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use fanfare_bus::UpdateBus;
use fanfare_core::config::DependencyConfig;
use fanfare_groups::GroupsConfig;
use fanfare_groups::store::{GroupStore, MemoryGroupStore, PostgresGroupStore};
use fanfare_messages::MessagesConfig;
use fanfare_messages::store::{MemoryMessageStore, MessageStore, PostgresMessageStore};
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_proto::messages::v1::message_service_client::MessageServiceClient;
use fanfare_testdb::TestDatabase;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::groups::Storage;

/// Redis used by Postgres-backed stacks unless `REDIS_URL` says otherwise.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The stores and bus a stack runs on.
struct Backends {
    groups_store: Arc<dyn GroupStore>,
    messages_store: Arc<dyn MessageStore>,
    bus: Arc<dyn UpdateBus>,
    redis_namespace: String,
    database: Option<TestDatabase>,
}

impl Backends {
    async fn open(storage: Storage) -> anyhow::Result<Self> {
        match storage {
            Storage::Memory => Ok(Self {
                groups_store: Arc::new(MemoryGroupStore::new()),
                messages_store: Arc::new(MemoryMessageStore::new()),
                bus: fanfare_bus::open_bus(None, "").await?,
                redis_namespace: String::new(),
                database: None,
            }),
            Storage::Postgres => {
                let database = TestDatabase::create().await?;
                let groups_store = PostgresGroupStore::connect(&database.url(), 8).await?;
                PostgresGroupStore::migrate(groups_store.pool()).await?;
                let messages_store = PostgresMessageStore::connect(&database.url(), 8).await?;
                PostgresMessageStore::migrate(messages_store.pool()).await?;
                let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
                // The database's name is unique, and a valid namespace.
                let redis_namespace = database.name().to_owned();
                Ok(Self {
                    groups_store: Arc::new(groups_store),
                    messages_store: Arc::new(messages_store),
                    bus: fanfare_bus::open_bus(Some(&redis_url), &redis_namespace).await?,
                    redis_namespace,
                    database: Some(database),
                })
            }
        }
    }
}

/// Both services, running; stopped (and the database dropped) on drop.
pub struct TestStack {
    /// Where groups listens.
    pub groups_addr: SocketAddr,
    /// Where messages listens.
    pub messages_addr: SocketAddr,
    /// The groups store, for assertions below the API.
    pub groups_store: Arc<dyn GroupStore>,
    /// The messages store, for assertions below the API.
    pub messages_store: Arc<dyn MessageStore>,
    /// The bus messages publishes on.
    pub bus: Arc<dyn UpdateBus>,
    /// The Redis namespace of `bus` (empty for a memory stack): more processes on this stack's
    /// bus open theirs with `fanfare_bus::open_bus(redis_url, &stack.redis_namespace)`.
    pub redis_namespace: String,
    shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
    database: Option<TestDatabase>,
}

impl TestStack {
    /// Spawns both services with their dev configuration on `storage`.
    pub async fn spawn(storage: Storage) -> anyhow::Result<Self> {
        Self::spawn_with(storage, |_| {}, |_| {}).await
    }

    /// Spawns both services after `groups` and `messages` adjusted their configuration.
    pub async fn spawn_with(
        storage: Storage,
        groups: impl FnOnce(&mut GroupsConfig),
        messages: impl FnOnce(&mut MessagesConfig),
    ) -> anyhow::Result<Self> {
        let groups_listener = TcpListener::bind("127.0.0.1:0").await.context("binding port 0")?;
        let messages_listener = TcpListener::bind("127.0.0.1:0").await.context("binding port 0")?;
        let groups_addr = groups_listener.local_addr()?;
        let messages_addr = messages_listener.local_addr()?;

        let mut groups_config = GroupsConfig::for_dev(DependencyConfig::default());
        groups_config.messages_url = Some(format!("http://{messages_addr}"));
        groups(&mut groups_config);
        let mut messages_config = MessagesConfig::for_dev(DependencyConfig::default(), format!("http://{groups_addr}"));
        messages(&mut messages_config);

        let backends = Backends::open(storage).await?;
        let Backends { groups_store, messages_store, bus, redis_namespace, database } = backends;

        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(fanfare_groups::serve(groups_config, Arc::clone(&groups_store), groups_listener, shutdown.clone()));
        tasks.spawn(fanfare_messages::serve(
            messages_config,
            Arc::clone(&messages_store),
            Arc::clone(&bus),
            messages_listener,
            shutdown.clone(),
        ));
        Ok(Self {
            groups_addr,
            messages_addr,
            groups_store,
            messages_store,
            bus,
            redis_namespace,
            shutdown,
            tasks,
            database,
        })
    }

    /// The fresh database of a Postgres stack.
    pub fn database(&self) -> Option<&TestDatabase> {
        self.database.as_ref()
    }

    /// A connected groups client.
    pub async fn groups(&self) -> anyhow::Result<GroupServiceClient<Channel>> {
        let channel = Channel::from_shared(format!("http://{}", self.groups_addr))?.connect().await?;
        Ok(GroupServiceClient::new(channel))
    }

    /// A connected messages client.
    pub async fn messages(&self) -> anyhow::Result<MessageServiceClient<Channel>> {
        let channel = Channel::from_shared(format!("http://{}", self.messages_addr))?.connect().await?;
        Ok(MessageServiceClient::new(channel))
    }

    /// Stops both services and waits for them.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        while let Some(finished) = self.tasks.join_next().await {
            finished.context("a service task panicked")??;
        }
        Ok(())
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
