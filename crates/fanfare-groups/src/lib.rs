//! The groups service: groups, members, roles, invites, bans, mutes, join requests and
//! settings, over gRPC (`fanfare.groups.v1.GroupService`). Its outbox reaches the groups'
//! update logs in the messages service through the [`relay`]; FOLLOWERS_ONLY joins ask the
//! fanout service's follow graph through [`follows`].

pub mod config;
pub mod domain;
pub mod error;
pub mod follows;
pub mod grpc;
pub mod metrics;
pub mod relay;
pub mod service;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use fanfare_core::server::{DependencyProbe, GrpcServer};
use fanfare_core::tls::ClientTls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::GroupsConfig;

use crate::follows::{FanoutFollowGraph, FollowGraph};
use crate::grpc::GroupsGrpc;
use crate::relay::OutboxRelay;
use crate::service::GroupsService;
use crate::store::{GroupStore, MemoryGroupStore, PostgresGroupStore};

/// The fully-qualified gRPC name of this service.
pub const SERVICE_NAME: &str = "fanfare.groups.v1.GroupService";

/// Opens the store `config` names: Postgres when `DATABASE_URL` is set (migrating first
/// when asked), in memory otherwise.
pub async fn open_store(config: &GroupsConfig) -> anyhow::Result<Arc<dyn GroupStore>> {
    let dependencies = &config.dependencies;
    let Some(url) = &dependencies.database_url else {
        tracing::info!("groups store: in memory (no DATABASE_URL)");
        return Ok(Arc::new(MemoryGroupStore::new()));
    };
    let store = PostgresGroupStore::connect(url, dependencies.database_max_connections)
        .await
        .context("connecting the groups store to postgres")?;
    if dependencies.migrate_on_start {
        PostgresGroupStore::migrate(store.pool()).await.context("migrating the groups schema")?;
    }
    tracing::info!("groups store: postgres");
    Ok(Arc::new(store))
}

/// Runs the groups service on `listener` until `shutdown` is cancelled.
pub async fn run(config: GroupsConfig, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    serve(config, store, listener, shutdown).await
}

/// Serves the groups service over an already-opened store (tests pass their own), with the
/// outbox relay to the messages service when `config.messages_url` is set, and follow checks
/// against the fanout service when `config.fanout_url` is.
pub async fn serve(
    config: GroupsConfig,
    store: Arc<dyn GroupStore>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    crate::metrics::describe();
    // Not a dependency of health: only FOLLOWERS_ONLY joins need it, and they answer
    // UNAVAILABLE on their own while it is down.
    let client_tls = ClientTls::load(&config.server.tls.client).context("loading the TLS settings of clients")?;
    let follow_graph = follow_graph(&config, &client_tls)?;

    // The relay stops after the server, so it keeps relaying while calls drain; what is left
    // in a Postgres outbox is relayed by the other pods or the next start.
    let relay_shutdown = CancellationToken::new();
    let relay = match &config.messages_url {
        Some(messages_url) => {
            let relay = OutboxRelay::connect(
                Arc::clone(&store),
                messages_url,
                config.server.service_token.as_deref(),
                &client_tls,
            )
            .with_context(|| format!("configuring the outbox relay to the messages service at {messages_url}"))?;
            tracing::info!(%messages_url, "relaying the groups outbox to the messages service");
            Some(tokio::spawn(relay.run(relay_shutdown.clone())))
        }
        None => {
            tracing::warn!(
                "no messages service configured (FANFARE_MESSAGES_URL): membership and settings changes stay in \
                 the outbox and will not reach the groups' update logs"
            );
            None
        }
    };

    let probe: Arc<dyn DependencyProbe> = Arc::new(StoreProbe(Arc::clone(&store)));
    let mut service = GroupsService::new(store, config.limits.clone());
    if let Some(follow_graph) = follow_graph {
        service = service.with_follow_graph(follow_graph);
    }
    // Groups keeps nothing on Redis; with REDIS_URL set, each user's changes are counted there
    // across pods (docs/runtime.md, "Rate limits"). Not a dependency of health: the pod's own
    // count decides while Redis is away.
    if config.dependencies.redis_url.is_some() {
        let bus = fanfare_bus::open_configured_bus(&config.dependencies)
            .await
            .context("opening Redis for the shared rate limits")?;
        if let Some(shared) = bus.shared_limits() {
            service = service.with_shared_limits(shared);
        }
    }
    let service = Arc::new(service);
    let served = GrpcServer::new(SERVICE_NAME, config.server.clone())
        .add_service(GroupsGrpc::new(service).into_server())
        .probe(probe)
        .serve(listener, shutdown)
        .await;

    relay_shutdown.cancel();
    if let Some(relay) = relay
        && let Err(error) = relay.await
    {
        tracing::error!(error = %error, "the outbox relay task failed");
    }
    served
}

/// The fanout service's follow graph when `config.fanout_url` names it (connected lazily: a
/// fanout service that is down does not keep groups from starting).
fn follow_graph(config: &GroupsConfig, tls: &ClientTls) -> anyhow::Result<Option<Arc<dyn FollowGraph>>> {
    let Some(fanout_url) = &config.fanout_url else {
        tracing::warn!(
            "no fanout service configured (FANFARE_FANOUT_URL): JoinGroup refuses FOLLOWERS_ONLY groups with \
             FAILED_PRECONDITION; they can be joined with invite codes only"
        );
        return Ok(None);
    };
    let graph = FanoutFollowGraph::connect(fanout_url, config.server.service_token.as_deref(), tls)
        .with_context(|| format!("configuring follow checks against the fanout service at {fanout_url}"))?;
    tracing::info!(%fanout_url, "checking FOLLOWERS_ONLY joins against the fanout service");
    Ok(Some(Arc::new(graph)))
}

/// Health follows the store's reachability.
struct StoreProbe(Arc<dyn GroupStore>);

#[async_trait::async_trait]
impl DependencyProbe for StoreProbe {
    fn name(&self) -> &'static str {
        "groups store"
    }

    async fn check(&self) -> anyhow::Result<()> {
        self.0.ping().await.context("pinging the groups store")
    }
}

/// Applies the groups schema migrations to the database at `database_url`; safe to run
/// from several processes at once.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let store = PostgresGroupStore::connect(database_url, 2)
        .await
        .context("connecting to postgres to migrate the groups schema")?;
    PostgresGroupStore::migrate(store.pool()).await.context("migrating the groups schema")
}
