//! gRPC health (`grpc.health.v1`): dependency probes, the loop that re-checks them and
//! reports SERVING or NOT_SERVING, and a health service whose `Watch` streams end when the
//! server shuts down, so they never hold a draining server open.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

/// A dependency whose reachability decides health (Postgres, Redis).
#[async_trait::async_trait]
pub trait DependencyProbe: Send + Sync {
    /// A short name for logs, e.g. `postgres`.
    fn name(&self) -> &'static str;

    /// Succeeds when the dependency answers. Should be cheap (a `SELECT 1`, a `PING`).
    async fn check(&self) -> anyhow::Result<()>;
}

/// Shortest time a probe gets before it counts as failed.
const MIN_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The health statuses one server reports, under the names it reports them for.
#[derive(Clone)]
pub(crate) struct HealthState {
    reporter: HealthReporter,
    service_names: Vec<String>,
    /// Serialises updates, so a probe result can never land after shutdown's NOT_SERVING.
    updates: Arc<tokio::sync::Mutex<()>>,
}

impl HealthState {
    /// A reporter for `""` and `service_name`. `""` says whether the process is up and
    /// accepting calls (liveness: SERVING until shutdown, whatever the dependencies do — a
    /// database outage must not make Kubernetes restart every pod); `service_name` says
    /// whether the service can do its work (readiness: it follows the dependency probes),
    /// starting at `initial`.
    pub(crate) async fn new(service_name: &str, initial: ServingStatus) -> Self {
        let state = Self {
            reporter: HealthReporter::new(),
            service_names: vec![String::new(), service_name.to_owned()],
            updates: Arc::default(),
        };
        state.reporter.set_service_status("", ServingStatus::Serving).await;
        state.reporter.set_service_status(service_name, initial).await;
        state
    }

    /// Reports `status` for every name, `""` included (shutdown).
    pub(crate) async fn set(&self, status: ServingStatus) {
        let _serialised = self.updates.lock().await;
        self.set_each(status).await;
    }

    /// Reports a probe result for the service (not `""`) unless shutdown has begun; false
    /// when it has.
    async fn set_unless_shut_down(&self, status: ServingStatus, shutdown: &CancellationToken) -> bool {
        let _serialised = self.updates.lock().await;
        if shutdown.is_cancelled() {
            return false;
        }
        for name in self.service_names.iter().filter(|name| !name.is_empty()) {
            self.reporter.set_service_status(name, status).await;
        }
        true
    }

    async fn set_each(&self, status: ServingStatus) {
        for name in &self.service_names {
            self.reporter.set_service_status(name, status).await;
        }
    }

    /// The `grpc.health.v1.Health` service; its `Watch` streams end once `shutdown` is
    /// cancelled, after a last NOT_SERVING.
    pub(crate) fn service(&self, shutdown: CancellationToken) -> HealthServer<DrainingHealth> {
        HealthServer::new(DrainingHealth {
            inner: HealthService::from_health_reporter(self.reporter.clone()),
            shutdown,
        })
    }
}

/// Re-checks `probes` every `interval` and reports the result until `shutdown` is
/// cancelled. Logs each change (of a probe and of the overall status) once.
pub(crate) async fn run_probe_loop(
    state: HealthState,
    probes: Vec<Arc<dyn DependencyProbe>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let probe_timeout = interval.max(MIN_PROBE_TIMEOUT);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_results: Vec<Option<bool>> = vec![None; probes.len()];
    let mut last_serving: Option<bool> = None;

    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let results = futures::future::join_all(probes.iter().map(|probe| check(probe, probe_timeout))).await;
        for ((probe, result), last) in probes.iter().zip(&results).zip(&mut last_results) {
            let passed = result.is_ok();
            if *last != Some(passed) {
                match result {
                    Ok(()) => tracing::info!(probe = probe.name(), "dependency is reachable"),
                    Err(error) => {
                        tracing::warn!(probe = probe.name(), error = %format!("{error:#}"), "dependency is unreachable")
                    }
                }
                *last = Some(passed);
            }
        }
        let serving = results.iter().all(Result::is_ok);
        if last_serving == Some(serving) {
            continue;
        }
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        // Shutdown may have begun while the probes ran: its NOT_SERVING stands.
        if !state.set_unless_shut_down(status, &shutdown).await {
            return;
        }
        if serving {
            tracing::info!("health is serving");
        } else {
            tracing::warn!("health is not serving: a dependency is unreachable");
        }
        last_serving = Some(serving);
    }
}

/// Runs one probe, failing it if it takes longer than `timeout`.
async fn check(probe: &Arc<dyn DependencyProbe>, timeout: Duration) -> anyhow::Result<()> {
    match tokio::time::timeout(timeout, probe.check()).await {
        Ok(result) => result,
        Err(_elapsed) => Err(anyhow::anyhow!("no answer within {} ms", timeout.as_millis())),
    }
}

/// tonic-health's service, with `Watch` streams that end on shutdown: a last NOT_SERVING,
/// then UNAVAILABLE so the watcher reconnects to another instance.
pub(crate) struct DrainingHealth {
    inner: HealthService,
    shutdown: CancellationToken,
}

/// The stream of statuses one `Watch` call receives.
type WatchUpdates = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchUpdates;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let updates = self.inner.watch(request).await?.into_inner();
        let farewell = [
            Ok(HealthCheckResponse { status: WireStatus::NotServing as i32 }),
            Err(crate::shutdown::shutdown_status()),
        ];
        let stream = updates.take_until(self.shutdown.clone().cancelled_owned()).chain(futures::stream::iter(farewell));
        Ok(Response::new(Box::pin(stream)))
    }
}
