//! The fanout service, over gRPC (`fanfare.fanout.v1.FanoutService`): today the
//! creator-follower graph (follow, unfollow, follower and following pages, counters, batch
//! checks). Live delivery (`Subscribe`) and creator-to-follower fan-out jobs join it later,
//! beside [`service::FanoutService`]'s follow-graph methods.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod service;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use fanfare_core::server::{DependencyProbe, GrpcServer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::FanoutConfig;

use crate::grpc::FanoutGrpc;
use crate::service::FanoutService;
use crate::store::{FollowStore, MemoryFollowStore, PostgresFollowStore};

/// The fully-qualified gRPC name of this service.
pub const SERVICE_NAME: &str = "fanfare.fanout.v1.FanoutService";

/// Opens the store `config` names: Postgres when `DATABASE_URL` is set (migrating first
/// when asked), in memory otherwise.
pub async fn open_store(config: &FanoutConfig) -> anyhow::Result<Arc<dyn FollowStore>> {
    let dependencies = &config.dependencies;
    let Some(url) = &dependencies.database_url else {
        tracing::info!("fanout store: in memory (no DATABASE_URL)");
        return Ok(Arc::new(MemoryFollowStore::new()));
    };
    let store = PostgresFollowStore::connect(url, dependencies.database_max_connections)
        .await
        .context("connecting the fanout store to postgres")?;
    if dependencies.migrate_on_start {
        PostgresFollowStore::migrate(store.pool()).await.context("migrating the fanout schema")?;
    }
    tracing::info!("fanout store: postgres");
    Ok(Arc::new(store))
}

/// Applies the fanout schema migrations to the database at `database_url`; safe to run
/// from several processes at once.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let store = PostgresFollowStore::connect(database_url, 2)
        .await
        .context("connecting to postgres to migrate the fanout schema")?;
    PostgresFollowStore::migrate(store.pool()).await.context("migrating the fanout schema")
}

/// Runs the fanout service on `listener` until `shutdown` is cancelled.
pub async fn run(config: FanoutConfig, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    serve(config, store, listener, shutdown).await
}

/// Serves the fanout service over an already-opened store (tests and `fanfare dev` pass
/// their own).
pub async fn serve(
    config: FanoutConfig,
    store: Arc<dyn FollowStore>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let probe: Arc<dyn DependencyProbe> = Arc::new(StoreProbe(Arc::clone(&store)));
    let service = Arc::new(FanoutService::new(store, config.limits.clone()));
    GrpcServer::new(SERVICE_NAME, config.server.clone())
        .add_service(FanoutGrpc::new(service).into_server())
        .probe(probe)
        .serve(listener, shutdown)
        .await
}

/// Health follows the store's reachability.
struct StoreProbe(Arc<dyn FollowStore>);

#[async_trait::async_trait]
impl DependencyProbe for StoreProbe {
    fn name(&self) -> &'static str {
        "fanout store"
    }

    async fn check(&self) -> anyhow::Result<()> {
        self.0.ping().await.context("pinging the fanout store")
    }
}
