//! What the service runs on: the follow store, the job store, the update bus and the push
//! stream, opened as the configuration names them or handed in by tests and `fanfare dev`.

use std::sync::Arc;

use anyhow::Context;
use fanfare_bus::UpdateBus;

use crate::config::FanoutConfig;
use crate::follows::store::{FollowStore, MemoryFollowStore, PostgresFollowStore};
use crate::jobs::sink::{MemoryNotificationSink, NotificationSink, RedisStreamSink, push_stream_key};
use crate::jobs::store::{JobStore, MemoryJobStore, PostgresJobStore};

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
                    &push_stream_key(&dependencies.redis_namespace, &config.jobs.push_stream),
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
