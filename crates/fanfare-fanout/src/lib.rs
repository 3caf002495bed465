//! The fanout service, over gRPC (`fanfare.fanout.v1.FanoutService`): the creator-follower
//! graph ([`service::FanoutService`]), live delivery of every group update to online users
//! ([`live`], the `Subscribe` stream) and creator-to-follower fan-out jobs ([`jobs`]).

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod jobs;
pub mod live;
pub mod service;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use fanfare_bus::{BusProbe, UpdateBus};
use fanfare_core::server::{DependencyProbe, GrpcServer};
use fanfare_core::tls::ClientTls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::FanoutConfig;

use crate::grpc::FanoutGrpc;
use crate::jobs::{
    JobService, JobStore, JobWorkers, MemoryJobStore, MemoryNotificationSink, NotificationSink, PostgresJobStore,
    RedisStreamSink,
};
use crate::live::Live;
use crate::service::FanoutService;
use crate::store::{FollowStore, MemoryFollowStore, PostgresFollowStore};

/// The fully-qualified gRPC name of this service.
pub const SERVICE_NAME: &str = "fanfare.fanout.v1.FanoutService";

/// The path of the streaming method, exempt from the unary call timeout.
pub const SUBSCRIBE_PATH: &str = "/fanfare.fanout.v1.FanoutService/Subscribe";

/// What the service runs on: its stores, the update bus, and where job notifications go.
#[derive(Clone)]
pub struct FanoutBackends {
    /// The follow graph.
    pub follows: Arc<dyn FollowStore>,
    /// Fan-out jobs and their checkpoints.
    pub jobs: Arc<dyn JobStore>,
    /// The update bus live delivery listens on (shared with messages in `fanfare dev`).
    pub bus: Arc<dyn UpdateBus>,
    /// Where job notifications are appended for the push service.
    pub sink: Arc<dyn NotificationSink>,
}

impl FanoutBackends {
    /// In-memory stores and notification sink over `bus`.
    pub fn in_memory(bus: Arc<dyn UpdateBus>) -> Self {
        Self {
            follows: Arc::new(MemoryFollowStore::new()),
            jobs: Arc::new(MemoryJobStore::new()),
            bus,
            sink: Arc::new(MemoryNotificationSink::new()),
        }
    }

    /// The backends `config` names: Postgres when `DATABASE_URL` is set (migrating first
    /// when asked), in memory otherwise; the Redis push stream when `REDIS_URL` is set too.
    /// `bus` is the update bus to listen on.
    pub async fn open(config: &FanoutConfig, bus: Arc<dyn UpdateBus>) -> anyhow::Result<Self> {
        let dependencies = &config.dependencies;
        let Some(url) = &dependencies.database_url else {
            // In-memory jobs number themselves from 1 again at every start, so the push
            // stream's page markers (keyed by job id) must not outlive them: the sink is in
            // memory too, or a new job 1 would find the last run's markers and send nothing.
            tracing::info!("fanout store and push stream: in memory (no DATABASE_URL)");
            return Ok(Self::in_memory(bus));
        };
        let sink: Arc<dyn NotificationSink> = match &dependencies.redis_url {
            Some(url) => Arc::new(
                RedisStreamSink::open(
                    url,
                    dependencies.redis_ca_file.as_deref(),
                    &jobs::sink::push_stream_key(&dependencies.redis_namespace, &config.jobs.push_stream),
                    config.jobs.push_stream_max_len,
                )
                .context("opening the push stream")?,
            ),
            None => Arc::new(MemoryNotificationSink::new()),
        };
        let store = PostgresFollowStore::connect(url, dependencies.database_max_connections)
            .await
            .context("connecting the fanout store to postgres")?;
        if dependencies.migrate_on_start {
            PostgresFollowStore::migrate(store.pool()).await.context("migrating the fanout schema")?;
        }
        tracing::info!("fanout store: postgres");
        let jobs = Arc::new(PostgresJobStore::sharing(store.shared_pool().clone()));
        Ok(Self { follows: Arc::new(store), jobs, bus, sink })
    }
}

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
    let token = config.server.service_token.as_deref();
    let client_tls = ClientTls::load(&config.server.tls.client).context("loading the TLS settings of clients")?;
    let live = Live::start(&config.live, token, &client_tls, Arc::clone(&backends.bus), shutdown.clone())
        .await
        .context("starting live delivery")?;
    let shared_limits = backends.bus.shared_limits();
    let follows =
        Arc::new(FanoutService::new(Arc::clone(&backends.follows), config.limits.clone(), shared_limits.clone()));
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
