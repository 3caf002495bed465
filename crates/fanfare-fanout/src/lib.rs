//! The fanout service, over gRPC (`fanfare.fanout.v1.FanoutService`): three parts side by
//! side, each with its own domain, storage and orchestration —
//!
//! - [`follows`]: the creator-follower graph ([`follows::FollowService`]);
//! - [`live`]: live delivery of every group update to online users (the `Subscribe`
//!   stream, [`live::Live`]);
//! - [`jobs`]: creator-to-follower fan-out jobs ([`jobs::JobService`], [`jobs::JobWorkers`]).
//!
//! Around them, shared by the three: [`grpc`] (the transport adapter and request parsing),
//! [`error`] (the one mapping to gRPC status codes), [`metrics`], [`config`] and
//! [`backends`] (the stores, bus and push stream the service runs on).

pub mod backends;
pub mod config;
pub mod error;
pub mod follows;
pub mod grpc;
pub mod jobs;
pub mod live;
pub mod metrics;

use std::sync::Arc;

use anyhow::Context;
use fanfare_bus::BusProbe;
use fanfare_core::server::{DependencyProbe, GrpcServer};
use fanfare_core::tls::ClientTls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use backends::FanoutBackends;
pub use config::FanoutConfig;

use crate::follows::{FollowService, FollowStore, PostgresFollowStore};
use crate::grpc::FanoutGrpc;
use crate::jobs::{JobService, JobWorkers};
use crate::live::Live;

/// The fully-qualified gRPC name of this service.
pub const SERVICE_NAME: &str = "fanfare.fanout.v1.FanoutService";

/// The path of the streaming method, exempt from the unary call timeout.
pub const SUBSCRIBE_PATH: &str = "/fanfare.fanout.v1.FanoutService/Subscribe";

/// Applies the fanout schema migrations to the database at `database_url`; safe to run
/// from several processes at once.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let store = PostgresFollowStore::connect(database_url, 2)
        .await
        .context("connecting to postgres to migrate the fanout schema")?;
    PostgresFollowStore::migrate(store.pool()).await.context("migrating the fanout schema")
}

/// Runs the fanout service on `listener` until `shutdown` is cancelled, on the backends its
/// configuration names.
pub async fn run(config: FanoutConfig, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let bus = fanfare_bus::open_configured_bus(&config.dependencies).await.context("opening the bus")?;
    let backends = FanoutBackends::open(&config, bus).await?;
    serve(config, backends, listener, shutdown).await
}

/// Serves the fanout service over already-opened backends (tests and `fanfare dev` pass
/// their own) until `shutdown` is cancelled: open streams end with a reconnect frame, job
/// workers stop at their next checkpoint.
pub async fn serve(
    config: FanoutConfig,
    backends: FanoutBackends,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.check().map_err(anyhow::Error::msg).context("invalid fanout configuration")?;
    metrics::describe();
    let token = config.server.service_token.as_deref();
    let client_tls = ClientTls::load(&config.server.tls.client).context("loading the TLS settings of clients")?;
    let live = Live::start(&config.live, token, &client_tls, Arc::clone(&backends.bus), shutdown.clone())
        .await
        .context("starting live delivery")?;
    let shared_limits = backends.bus.shared_limits();
    let follows =
        Arc::new(FollowService::new(Arc::clone(&backends.follows), config.limits.clone(), shared_limits.clone()));
    let workers = JobWorkers::spawn(&config.jobs, &backends, shutdown.clone());
    let jobs = Arc::new(JobService::new(
        Arc::clone(&backends.jobs),
        Arc::clone(&backends.follows),
        config.jobs.clone(),
        workers.on_start(),
        shared_limits,
    ));

    let store_probe: Arc<dyn DependencyProbe> = Arc::new(StoreProbe(Arc::clone(&backends.follows)));
    let bus_probe: Arc<dyn DependencyProbe> = Arc::new(BusProbe(Arc::clone(&backends.bus)));
    let served = GrpcServer::new(SERVICE_NAME, config.server.clone())
        .add_service(FanoutGrpc::new(follows, jobs, Arc::clone(&live)).into_server())
        .streaming_method(SUBSCRIBE_PATH)
        .probe(store_probe)
        .probe(bus_probe)
        .serve(listener, shutdown)
        .await;
    workers.join().await;
    served
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
