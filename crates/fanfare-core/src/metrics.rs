//! The Prometheus endpoint every service serves on its own port, and the descriptions of
//! the metrics this crate records.

use std::net::SocketAddr;

use anyhow::Context as _;
use metrics::{Unit, describe_counter, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::layers::metrics::{REQUEST_DURATION_SECONDS, REQUESTS_TOTAL};
use crate::rate_limit::{RATE_LIMIT_FALLBACKS_TOTAL, RATE_LIMITED_TOTAL};

/// Histogram buckets of every `_seconds` metric: 0.5 ms to 10 s.
pub const SECONDS_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Installs the global metrics recorder and serves it for Prometheus at
/// `http://{addr}/metrics`. Call once per process, inside the Tokio runtime that should
/// serve it; a second call fails.
pub fn install_metrics_exporter(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
        .context("invalid histogram buckets")?
        .install()
        .with_context(|| format!("cannot serve prometheus metrics on {addr}"))?;
    describe_grpc_metrics();
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
