//! `fanfare dev`: every service in one process, each on its own default port and talking
//! gRPC like in production, on in-memory storage unless DATABASE_URL / REDIS_URL are set.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Args;
use fanfare_core::config::{DependencyConfig, LogFormat, TelemetryConfig};
use fanfare_core::{metrics, shutdown, telemetry};
use tokio::net::TcpListener;

use crate::{GROUPS_METRICS_PORT, GROUPS_PORT};

/// Options of `fanfare dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address every service binds to.
    #[arg(long, env = "FANFARE_DEV_HOST", default_value = "127.0.0.1")]
    host: IpAddr,

    /// Port of the groups service.
    #[arg(long, env = "FANFARE_DEV_GROUPS_PORT", default_value_t = GROUPS_PORT)]
    groups_port: u16,

    /// Port of the Prometheus metrics of the whole process (0 turns it off).
    #[arg(long, env = "FANFARE_DEV_METRICS_PORT", default_value_t = GROUPS_METRICS_PORT)]
    metrics_port: u16,

    /// Postgres and Redis; unset for in-memory storage and bus.
    #[command(flatten)]
    dependencies: DependencyConfig,

    /// Log filter in `RUST_LOG` syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_filter: String,
}

/// Runs every service until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    telemetry::init_tracing(&TelemetryConfig {
        log_format: LogFormat::Pretty,
        log_filter: args.log_filter.clone(),
        metrics_addr: None,
    });
    if args.metrics_port != 0 {
        metrics::install_metrics_exporter(SocketAddr::new(args.host, args.metrics_port))?;
    }
    let mut dependencies = args.dependencies.clone();
    dependencies.migrate_on_start = true;
    let storage = match &dependencies.database_url {
        Some(_) => "postgres (DATABASE_URL)",
        None => "in memory",
    };

    let groups_addr = SocketAddr::new(args.host, args.groups_port);
    let groups_listener = TcpListener::bind(groups_addr)
        .await
        .with_context(|| format!("binding the groups service to {groups_addr} (is another `fanfare dev` running?)"))?;

    let shutdown = shutdown::shutdown_on_signals();
    let groups = tokio::spawn(fanfare_groups::run(
        fanfare_groups::GroupsConfig::for_dev(dependencies.clone()),
        groups_listener,
        shutdown.clone(),
    ));

    println!("fanfare dev: storage {storage}, no service token required");
    println!("  groups    {groups_addr}  (fanfare.groups.v1.GroupService)");
    if args.metrics_port != 0 {
        println!("  metrics   http://{}/metrics", SocketAddr::new(args.host, args.metrics_port));
    }
    println!("try:");
    println!("  grpcurl -plaintext {groups_addr} list");
    println!(
        "  grpcurl -plaintext -H 'x-fanfare-user-id: 1' -d '{{\"kind\":\"GROUP_KIND_CHAT\",\"title\":\"Friends\"}}' {groups_addr} fanfare.groups.v1.GroupService/CreateGroup"
    );

    groups.await.context("the groups service task panicked")??;
    Ok(())
}
