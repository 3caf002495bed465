//! `fanfare dev`: every service in one process, each on its own default port and talking
//! gRPC to the others like in production, on in-memory storage and an in-process bus
//! unless DATABASE_URL / REDIS_URL are set.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Args;
use fanfare_core::config::{DependencyConfig, LogFormat, TelemetryConfig};
use fanfare_core::{metrics, shutdown, telemetry};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::{FANOUT_PORT, GROUPS_METRICS_PORT, GROUPS_PORT, MESSAGES_PORT};

/// Options of `fanfare dev`.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Address every service binds to.
    #[arg(long, env = "FANFARE_DEV_HOST", default_value = "127.0.0.1")]
    host: IpAddr,

    /// Port of the groups service (0 for any free port; the bound address is printed).
    #[arg(long, env = "FANFARE_DEV_GROUPS_PORT", default_value_t = GROUPS_PORT)]
    groups_port: u16,

    /// Port of the messages service (0 for any free port; the bound address is printed).
    #[arg(long, env = "FANFARE_DEV_MESSAGES_PORT", default_value_t = MESSAGES_PORT)]
    messages_port: u16,

    /// Port of the fanout service (0 for any free port; the bound address is printed).
    #[arg(long, env = "FANFARE_DEV_FANOUT_PORT", default_value_t = FANOUT_PORT)]
    fanout_port: u16,

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

async fn bind(name: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {name} service to {addr} (is another `fanfare dev` running?)"))
}

/// Runs every service until Ctrl-C, or until one of them fails (then the others stop too).
pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
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
    let bus_kind = match &dependencies.redis_url {
        Some(_) => "redis (REDIS_URL)",
        None => "in process",
    };

    // Port 0 binds a free port; the addresses printed below are the bound ones.
    let groups_listener = bind("groups", SocketAddr::new(args.host, args.groups_port)).await?;
    let messages_listener = bind("messages", SocketAddr::new(args.host, args.messages_port)).await?;
    let fanout_listener = bind("fanout", SocketAddr::new(args.host, args.fanout_port)).await?;
    let groups_addr = groups_listener.local_addr().context("reading the groups address")?;
    let messages_addr = messages_listener.local_addr().context("reading the messages address")?;
    let fanout_addr = fanout_listener.local_addr().context("reading the fanout address")?;
    // One bus for the whole process: with no REDIS_URL it is in process, shared by every service.
    let bus = fanfare_bus::open_configured_bus(&dependencies).await.context("opening the bus")?;

    let mut groups_config = fanfare_groups::GroupsConfig::for_dev(dependencies.clone());
    groups_config.messages_url = Some(format!("http://{messages_addr}"));
    groups_config.fanout_url = Some(format!("http://{fanout_addr}"));
    let messages_config =
        fanfare_messages::MessagesConfig::for_dev(dependencies.clone(), format!("http://{groups_addr}"));
    let messages_store = fanfare_messages::open_store(&messages_config).await?;

    let shutdown = shutdown::shutdown_on_signals();
    let mut services = JoinSet::new();
    services.spawn(fanfare_groups::run(groups_config, groups_listener, shutdown.clone()));
    services.spawn(fanfare_messages::serve(
        messages_config,
        messages_store,
        std::sync::Arc::clone(&bus),
        messages_listener,
        shutdown.clone(),
    ));
    let fanout_config = fanfare_fanout::FanoutConfig::for_dev(
        dependencies.clone(),
        format!("http://{groups_addr}"),
        format!("http://{messages_addr}"),
    );
    let fanout_backends = fanfare_fanout::FanoutBackends::open(&fanout_config, std::sync::Arc::clone(&bus)).await?;
    services.spawn(fanfare_fanout::serve(fanout_config, fanout_backends, fanout_listener, shutdown.clone()));

    println!("fanfare dev: storage {storage}, bus {bus_kind}, no service token required");
    println!("  groups    {groups_addr}  (fanfare.groups.v1.GroupService)");
    println!("  messages  {messages_addr}  (fanfare.messages.v1.MessageService)");
    println!("  fanout    {fanout_addr}  (fanfare.fanout.v1.FanoutService: follows, Subscribe, fan-out jobs)");
    if args.metrics_port != 0 {
        println!("  metrics   http://{}/metrics", SocketAddr::new(args.host, args.metrics_port));
    }
    println!("try:");
    println!("  grpcurl -plaintext {groups_addr} list");
    println!(
        "  grpcurl -plaintext -H 'x-fanfare-user-id: 1' -d '{{\"kind\":\"GROUP_KIND_CHAT\",\"title\":\"Friends\"}}' {groups_addr} fanfare.groups.v1.GroupService/CreateGroup"
    );

    let mut outcome = Ok(());
    while let Some(finished) = services.join_next().await {
        let result = finished.context("a service task panicked").and_then(|served| served);
        if let Err(error) = result {
            tracing::error!(error = ?error, "a service stopped; stopping the others");
            shutdown.cancel();
            if outcome.is_ok() {
                outcome = Err(error);
            }
        }
    }
    outcome
}
