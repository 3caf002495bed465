//! Helpers for the fanout service tests: the service spawned on port 0 over memory or a
//! fresh database (through `fanfare_fanout::serve`, as production runs it), a client, and
//! common calls. (The testkit will take the spawning over when the binary wires fanout in.)

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use fanfare_core::config::DependencyConfig;
use fanfare_fanout::follows::store::{FollowStore, PostgresFollowStore};
use fanfare_fanout::{FanoutBackends, FanoutConfig};
use fanfare_proto::fanout::v1 as pb;
use fanfare_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use fanfare_testkit::{Storage, TestDatabase, as_user};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// A URL nothing answers on (port 1 refuses at once), for services a test does not run.
pub const NOBODY_URL: &str = "http://127.0.0.1:1";

/// The dev configuration of a fanout service reading from the given groups and messages.
pub fn dev_config(groups_url: &str, messages_url: &str) -> FanoutConfig {
    FanoutConfig::for_dev(DependencyConfig::default(), groups_url.to_owned(), messages_url.to_owned())
}

/// A connected fanout client.
pub type Client = FanoutServiceClient<Channel>;

/// A running fanout service; shut down and its database dropped on drop.
pub struct TestFanout {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The store it runs on, for assertions below the API.
    pub store: Arc<dyn FollowStore>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _database: Option<TestDatabase>,
}

impl TestFanout {
    /// Spawns the service alone (no groups or messages service behind it: `Subscribe` is
    /// not usable) after `adjust` has changed its dev configuration.
    pub async fn spawn_with(storage: Storage, adjust: impl FnOnce(&mut FanoutConfig)) -> anyhow::Result<Self> {
        let mut config = dev_config(NOBODY_URL, NOBODY_URL);
        adjust(&mut config);
        let bus = fanfare_bus::open_bus(None, "").await?;
        let (backends, database) = match storage {
            Storage::Memory => (FanoutBackends::in_memory(bus), None),
            Storage::Postgres => {
                let database = TestDatabase::create().await?;
                let store = PostgresFollowStore::connect(&database.url(), 8).await?;
                PostgresFollowStore::migrate(store.pool()).await?;
                let mut backends = FanoutBackends::in_memory(bus);
                backends.jobs = Arc::new(fanfare_fanout::jobs::PostgresJobStore::from_pool(store.pool().clone()));
                backends.follows = Arc::new(store);
                (backends, Some(database))
            }
        };
        Self::serve(config, backends, database).await
    }

    /// Serves `backends` (which `database`, if any, must outlive) with `config` on port 0.
    pub async fn serve(
        config: FanoutConfig,
        backends: FanoutBackends,
        database: Option<TestDatabase>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding port 0")?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let store = Arc::clone(&backends.follows);
        let task = tokio::spawn(fanfare_fanout::serve(config, backends, listener, shutdown.clone()));
        Ok(Self { addr, store, shutdown, task: Some(task), _database: database })
    }

    /// The `http://` endpoint of the service.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connected channel.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Channel::from_shared(self.endpoint())?.connect().await.context("connecting to the test fanout service")
    }

    /// A connected client.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(FanoutServiceClient::new(self.channel().await?))
    }

    /// Shuts the service down and waits for it to finish serving.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.context("the fanout service task panicked")??;
        }
        Ok(())
    }
}

impl Drop for TestFanout {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the fanout service with the dev configuration and connects to it.
pub async fn start(storage: Storage) -> (TestFanout, Client) {
    start_with(storage, |_| {}).await
}

/// Starts the fanout service after `adjust` has changed its configuration.
pub async fn start_with(storage: Storage, adjust: impl FnOnce(&mut FanoutConfig)) -> (TestFanout, Client) {
    let service = TestFanout::spawn_with(storage, adjust).await.expect("the fanout service starts");
    let client = service.client().await.expect("a client connects");
    (service, client)
}

/// Starts the fanout service without the per-user rate limit, for tests where one user
/// makes many changes.
pub async fn start_unthrottled(storage: Storage) -> (TestFanout, Client) {
    start_with(storage, |config| config.limits.user_changes_per_second = 0).await
}

/// `follower` follows `creator`, expecting success.
pub async fn follow(client: &mut Client, follower: i64, creator: i64) -> pb::FollowResponse {
    let request = pb::FollowRequest { creator_user_id: creator };
    client.follow(as_user(follower, request)).await.expect("Follow succeeds").into_inner()
}

/// `follower` unfollows `creator`, expecting success; whether an edge was removed.
pub async fn unfollow(client: &mut Client, follower: i64, creator: i64) -> bool {
    let request = pb::UnfollowRequest { creator_user_id: creator };
    client.unfollow(as_user(follower, request)).await.expect("Unfollow succeeds").into_inner().removed
}

/// (followers, following) of `user`, read by `user`.
pub async fn counts(client: &mut Client, user: i64) -> (i64, i64) {
    let request = pb::GetFollowCountsRequest { user_ids: vec![user] };
    let response = client.get_follow_counts(as_user(user, request)).await.expect("GetFollowCounts succeeds");
    let counts = response.into_inner().counts;
    assert_eq!(counts.len(), 1, "one entry per user");
    assert_eq!(counts[0].user_id, user);
    (counts[0].followers, counts[0].following)
}

/// Which listing to walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// ListFollowers.
    Followers,
    /// ListFollowing.
    Following,
}

/// One page of a listing of `user_id`'s edges (0 = the caller), as `actor`.
pub async fn page(
    client: &mut Client,
    listing: Listing,
    actor: i64,
    user_id: i64,
    page_size: i32,
    page_token: String,
) -> Result<(Vec<pb::Follow>, String), tonic::Status> {
    match listing {
        Listing::Followers => {
            let request = pb::ListFollowersRequest { user_id, page_size, page_token };
            let page = client.list_followers(as_user(actor, request)).await?.into_inner();
            Ok((page.follows, page.next_page_token))
        }
        Listing::Following => {
            let request = pb::ListFollowingRequest { user_id, page_size, page_token };
            let page = client.list_following(as_user(actor, request)).await?.into_inner();
            Ok((page.follows, page.next_page_token))
        }
    }
}

/// Every page of a listing, following `next_page_token` until it is empty.
pub async fn walk(
    client: &mut Client,
    listing: Listing,
    actor: i64,
    user_id: i64,
    page_size: i32,
) -> Vec<Vec<pb::Follow>> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let (follows, next) = page(client, listing, actor, user_id, page_size, page_token).await.expect("a page");
        pages.push(follows);
        if next.is_empty() {
            return pages;
        }
        page_token = next;
        assert!(pages.len() <= 1_000, "the walk ends");
    }
}
