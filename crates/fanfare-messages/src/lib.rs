//! The messages service: every group's timeline and update log, over gRPC
//! (`fanfare.messages.v1.MessageService`). Writes go through the group committer, which
//! publishes what it committed right after the commit; outbox recovery republishes what a
//! pod committed but never published.

pub mod coalescer;
pub mod committer;
pub mod config;
pub mod directory;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod invalidation;
pub mod metrics;
pub mod publisher;
pub mod recovery;
pub mod service;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use fanfare_bus::UpdateBus;
use fanfare_core::server::{DependencyProbe, GrpcServer};
use fanfare_core::tls::ClientTls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::MessagesConfig;

use crate::coalescer::ReactionCoalescer;
use crate::committer::Committer;
use crate::directory::{Directory, GrpcDirectory};
use crate::grpc::MessagesGrpc;
use crate::publisher::Publisher;
use crate::recovery::Recovery;
use crate::service::MessagesService;
use crate::store::{MemoryMessageStore, MessageStore, PostgresMessageStore};

/// The fully-qualified gRPC name of this service.
pub const SERVICE_NAME: &str = "fanfare.messages.v1.MessageService";

/// Opens the store `config` names: Postgres when `DATABASE_URL` is set (migrating first when
/// asked), in memory otherwise.
pub async fn open_store(config: &MessagesConfig) -> anyhow::Result<Arc<dyn MessageStore>> {
    let dependencies = &config.dependencies;
    let Some(url) = &dependencies.database_url else {
        tracing::info!("messages store: in memory (no DATABASE_URL)");
        return Ok(Arc::new(MemoryMessageStore::new()));
    };
    let store = PostgresMessageStore::connect(url, dependencies.database_max_connections)
        .await
        .context("connecting the messages store to postgres")?;
    if dependencies.migrate_on_start {
        PostgresMessageStore::migrate(store.pool()).await.context("migrating the messages schema")?;
    }
    tracing::info!("messages store: postgres");
    Ok(Arc::new(store))
}

/// Applies the messages schema migrations; safe from several processes at once.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let store = PostgresMessageStore::connect(database_url, 2)
        .await
        .context("connecting to postgres to migrate the messages schema")?;
    PostgresMessageStore::migrate(store.pool()).await.context("migrating the messages schema")
}

/// Runs the messages service on `listener` until `shutdown`, on the store and bus `config`
/// names.
pub async fn run(config: MessagesConfig, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let bus = fanfare_bus::open_configured_bus(&config.dependencies).await.context("opening the bus")?;
    serve(config, store, bus, listener, shutdown).await
}

/// Serves the messages service over an opened store and bus (tests and `fanfare dev` pass
/// their own).
pub async fn serve(
    config: MessagesConfig,
    store: Arc<dyn MessageStore>,
    bus: Arc<dyn UpdateBus>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    metrics::describe();
    let client_tls = ClientTls::load(&config.server.tls.client).context("loading the TLS settings of clients")?;
    let directory: Arc<dyn Directory> = GrpcDirectory::new(
        &config.groups_url,
        config.server.service_token.as_deref(),
        &client_tls,
        config.membership_cache_ttl(),
    )
    .context("configuring the groups client")?;
    // Background work stops with the server, but after it: the committer drains accepted writes.
    let background = CancellationToken::new();
    let publisher =
        Publisher::start(Arc::clone(&store), Arc::clone(&bus), config.commit.commit_workers, background.clone());
    let committer = Committer::start(Arc::clone(&store), &config.commit, publisher, background.clone());
    let coalescer = ReactionCoalescer::new();
    tokio::spawn(Arc::clone(&coalescer).run(
        committer.clone(),
        config.limits.reaction_coalesce_window(),
        background.clone(),
    ));
    let recovery = Recovery::new(Arc::clone(&store), Arc::clone(&bus), config.commit.outbox_recovery_grace());
    tokio::spawn(recovery.run(background.clone()));
    tokio::spawn(invalidation::listen(Arc::clone(&bus), Arc::clone(&directory), background.clone()));
    tokio::spawn(prune_periodically(Arc::clone(&store), config.limits.update_retention(), background.clone()));

    // Readiness follows the store alone: while Redis is away sends still commit (their
    // updates wait in the outbox and go out in order when it is back), so a pod that
    // cannot reach Redis still does its work.
    let probes: [Arc<dyn DependencyProbe>; 1] = [Arc::new(StoreProbe(Arc::clone(&store)))];
    let service = Arc::new(MessagesService::new(store, committer, directory, coalescer, bus, config.limits.clone()));
    let mut server =
        GrpcServer::new(SERVICE_NAME, config.server.clone()).add_service(MessagesGrpc::new(service).into_server());
    for probe in probes {
        server = server.probe(probe);
    }
    let served = server.serve(listener, shutdown).await;
    background.cancel();
    served
}

/// How often log entries past retention are dropped.
const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Drops log entries older than `retention` every ten minutes until `shutdown`. Safe on
/// every pod at once: pruning the same prefix twice drops nothing the second time.
async fn prune_periodically(store: Arc<dyn MessageStore>, retention: std::time::Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(PRUNE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Ok(retention) = chrono::TimeDelta::from_std(retention) else { continue };
        let Some(before) = chrono::Utc::now().checked_sub_signed(retention) else { continue };
        match store.prune_updates(before).await {
            Ok(0) => {}
            Ok(dropped) => tracing::info!(dropped, "pruned update log entries past retention"),
            Err(error) => tracing::warn!(error = ?error, "pruning the update log failed; will retry"),
        }
    }
}

/// Health follows the store's reachability.
struct StoreProbe(Arc<dyn MessageStore>);

#[async_trait::async_trait]
impl DependencyProbe for StoreProbe {
    fn name(&self) -> &'static str {
        "messages store"
    }

    async fn check(&self) -> anyhow::Result<()> {
        self.0.ping().await.context("pinging the messages store")
    }
}
