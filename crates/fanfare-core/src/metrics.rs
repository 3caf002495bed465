//! The Prometheus endpoint every service serves on its own port, and the metrics every
//! process exports whatever it serves: the gRPC layers', the build's, and the process's own
//! ([`process`]).

pub mod process;

use std::net::SocketAddr;

use anyhow::Context as _;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::layers::metrics::{REQUEST_DURATION_SECONDS, REQUESTS_TOTAL};
use crate::rate_limit::{RATE_LIMIT_FALLBACKS_TOTAL, RATE_LIMITED_TOTAL};

/// Always 1, labelled `version` (the workspace's version): which release each pod runs.
pub const BUILD_INFO: &str = "fanfare_build_info";

/// Histogram buckets of every `_seconds` metric: 0.5 ms to 10 s.
pub const SECONDS_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Histogram buckets of every `_batch_size` metric: powers of two from 1 to 1,024 (the
/// messages commit batch is at most `FANFARE_MESSAGES_COMMIT_BATCH_MAX`, 256 by default).
/// Buckets, not a summary, so that batch sizes aggregate across pods.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Installs the global metrics recorder and serves it for Prometheus at
/// `http://{addr}/metrics`, with the build's and the process's own metrics. Call once per
/// process, inside the Tokio runtime that should serve it (the process metrics are read
/// again on it every [`process::REFRESH_INTERVAL`]); a second call fails.
pub fn install_metrics_exporter(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
        .context("invalid histogram buckets")?
        .set_buckets_for_metric(Matcher::Suffix("_batch_size".to_owned()), BATCH_SIZE_BUCKETS)
        .context("invalid batch-size buckets")?
        .install()
        .with_context(|| format!("cannot serve prometheus metrics on {addr}"))?;
    describe_grpc_metrics();
    describe_gauge!(BUILD_INFO, Unit::Count, "Always 1: the version of the fanfare binary this process runs.");
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    process::describe();
    tokio::spawn(process::refresh_forever());
    tracing::info!(%addr, "serving prometheus metrics");
    Ok(())
}

/// Describes the metrics of the gRPC server layers (help text and units). Call after the
/// recorder is installed; [`install_metrics_exporter`] does.
pub fn describe_grpc_metrics() {
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "gRPC calls answered, by service, method, caller and gRPC status code."
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from receiving a gRPC call to sending its response headers, by service and method."
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        Unit::Count,
        "Calls refused by a per-user rate limit, by action and by the count that refused (pod or shared)."
    );
    describe_counter!(
        RATE_LIMIT_FALLBACKS_TOTAL,
        Unit::Count,
        "Rate-limit checks the shared store (Redis) did not answer in time, decided by the pod's own count, by action."
    );
}
