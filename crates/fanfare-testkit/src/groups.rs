//! The groups service spawned on port 0 for a test, over memory or a fresh database.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use fanfare_core::config::DependencyConfig;
use fanfare_groups::GroupsConfig;
use fanfare_groups::store::{GroupStore, MemoryGroupStore, PostgresGroupStore};
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use fanfare_testdb::TestDatabase;

/// Which storage a spawned service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// The in-memory store.
    Memory,
    /// A fresh Postgres database, migrated.
    Postgres,
}

/// A running groups service; shut down and its database dropped on drop.
pub struct TestGroups {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The store it runs on, for assertions below the API (e.g. the outbox).
    pub store: Arc<dyn GroupStore>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _database: Option<TestDatabase>,
}

impl TestGroups {
    /// Spawns the service with the dev configuration (no token) on `storage`.
    pub async fn spawn(storage: Storage) -> anyhow::Result<Self> {
        Self::spawn_with(storage, |_| {}).await
    }

    /// Spawns the service after `adjust` has changed its configuration.
    pub async fn spawn_with(storage: Storage, adjust: impl FnOnce(&mut GroupsConfig)) -> anyhow::Result<Self> {
        let mut config = GroupsConfig::for_dev(DependencyConfig::default());
        adjust(&mut config);
        let (store, database): (Arc<dyn GroupStore>, Option<TestDatabase>) = match storage {
            Storage::Memory => (Arc::new(MemoryGroupStore::new()), None),
            Storage::Postgres => {
                let database = TestDatabase::create().await?;
                let store = PostgresGroupStore::connect(&database.url(), 8).await?;
                PostgresGroupStore::migrate(store.pool()).await?;
                (Arc::new(store), Some(database))
            }
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding port 0")?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(fanfare_groups::serve(config, Arc::clone(&store), listener, shutdown.clone()));
        Ok(Self { addr, store, shutdown, task: Some(task), _database: database })
    }

    /// The `http://` endpoint of the service.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connected client.
    pub async fn client(&self) -> anyhow::Result<GroupServiceClient<Channel>> {
        let channel =
            Channel::from_shared(self.endpoint())?.connect().await.context("connecting to the test groups service")?;
        Ok(GroupServiceClient::new(channel))
    }

    /// Shuts the service down and waits for it to finish serving.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.context("the groups service task panicked")??;
        }
        Ok(())
    }
}

impl Drop for TestGroups {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
