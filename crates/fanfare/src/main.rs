//! `fanfare`: the one binary. `fanfare serve <service>` runs one service (one per
//! Deployment), `fanfare migrate` applies every service's schema migrations, and
//! `fanfare dev` runs every service in one process for local development.

mod ctl;
mod dev;

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fanfare_core::config::TelemetryConfig;
use fanfare_core::{metrics, shutdown, telemetry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Default gRPC port of the groups service.
pub const GROUPS_PORT: u16 = 50051;
/// Default gRPC port of the messages service.
pub const MESSAGES_PORT: u16 = 50052;
/// Default gRPC port of the fanout service.
pub const FANOUT_PORT: u16 = 50053;
/// Default metrics port of the groups service.
pub const GROUPS_METRICS_PORT: u16 = 9091;
/// Default metrics port of the messages service.
pub const MESSAGES_METRICS_PORT: u16 = 9092;
/// Default metrics port of the fanout service.
pub const FANOUT_METRICS_PORT: u16 = 9093;

#[derive(Debug, Parser)]
#[command(name = "fanfare", version, about = "Fanfare group messaging: groups, messages and fanout services")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one service.
    Serve {
        #[command(subcommand)]
        service: Box<ServeCommand>,
    },
    /// Apply every service's schema migrations to DATABASE_URL (safe from several pods).
    Migrate {
        /// PostgreSQL URL, as the role that owns the schemas.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// The role the groups service runs as: granted rows of the groups schema, no DDL.
        #[arg(long, env = "FANFARE_MIGRATE_GROUPS_ROLE")]
        groups_role: Option<String>,
        /// The role the messages service runs as: granted rows of the messages schema, no DDL.
        #[arg(long, env = "FANFARE_MIGRATE_MESSAGES_ROLE")]
        messages_role: Option<String>,
        /// The role the fanout service runs as: granted rows of the fanout schema, no DDL.
        #[arg(long, env = "FANFARE_MIGRATE_FANOUT_ROLE")]
        fanout_role: Option<String>,
        #[command(flatten)]
        telemetry: TelemetryConfig,
    },
    /// Run every service in one process on the default ports, in memory unless
    /// DATABASE_URL / REDIS_URL are set.
    Dev(Box<dev::DevArgs>),
    /// Operator tooling: call the services as a given user, tail updates, explain deliveries.
    Ctl(Box<ctl::CtlArgs>),
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once at start; the configs differ in size by nature")]
enum ServeCommand {
    /// The groups service (`fanfare.groups.v1.GroupService`).
    Groups {
        /// Parse and check the configuration, then exit without serving (for deploy checks).
        #[arg(long)]
        check_config: bool,
        /// Address to listen on for gRPC.
        #[arg(long, env = "FANFARE_LISTEN_ADDR", default_value_t = SocketAddr::from(([0, 0, 0, 0], GROUPS_PORT)))]
        listen_addr: SocketAddr,
        #[command(flatten)]
        telemetry: TelemetryConfig,
        #[command(flatten)]
        config: fanfare_groups::GroupsConfig,
    },
    /// The messages service (`fanfare.messages.v1.MessageService`).
    Messages {
        /// Parse and check the configuration, then exit without serving (for deploy checks).
        #[arg(long)]
        check_config: bool,
        /// Address to listen on for gRPC.
        #[arg(long, env = "FANFARE_LISTEN_ADDR", default_value_t = SocketAddr::from(([0, 0, 0, 0], MESSAGES_PORT)))]
        listen_addr: SocketAddr,
        #[command(flatten)]
        telemetry: TelemetryConfig,
        #[command(flatten)]
        config: fanfare_messages::MessagesConfig,
    },
    /// The fanout service (`fanfare.fanout.v1.FanoutService`).
    Fanout {
        /// Parse and check the configuration, then exit without serving (for deploy checks).
        #[arg(long)]
        check_config: bool,
        /// Address to listen on for gRPC.
        #[arg(long, env = "FANFARE_LISTEN_ADDR", default_value_t = SocketAddr::from(([0, 0, 0, 0], FANOUT_PORT)))]
        listen_addr: SocketAddr,
        #[command(flatten)]
        telemetry: TelemetryConfig,
        #[command(flatten)]
        config: fanfare_fanout::FanoutConfig,
    },
}

/// Sets up telemetry and the listener of one service, then runs it until a signal.
async fn serve_one<F, Fut>(
    name: &str,
    listen_addr: SocketAddr,
    telemetry_config: &TelemetryConfig,
    default_metrics_port: u16,
    run: F,
) -> anyhow::Result<()>
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    telemetry::init_tracing(telemetry_config);
    if !LIFO_SLOT_DISABLED {
        tracing::warn!(
            "built without --cfg tokio_unstable: tokio's LIFO slot stays on, so live delivery writes each frame \
             on its own (about 14x the writev calls, 40% more CPU per delivery; docs/fanout.md)"
        );
    }
    let metrics_addr =
        telemetry_config.metrics_addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], default_metrics_port)));
    metrics::install_metrics_exporter(metrics_addr)?;
    let listener =
        TcpListener::bind(listen_addr).await.with_context(|| format!("binding the {name} service to {listen_addr}"))?;
    tracing::info!(service = name, %listen_addr, %metrics_addr, "listening");
    run(listener, shutdown::shutdown_on_signals()).await
}

fn main() -> anyhow::Result<()> {
    runtime().context("starting the tokio runtime")?.block_on(run_command())
}

/// tokio's multi-threaded runtime, without its LIFO slot when built with `--cfg
/// tokio_unstable` (`.cargo/config.toml` sets it). With the slot, a task woken by the
/// running task runs next: each fanout stream that hands its frame to HTTP/2 wakes the
/// connection's task, which then writes that one frame, so a message to 10,000 streams
/// became about 5,000 `writev` calls per pod. Without it, the woken connection task queues
/// behind the streams already woken and writes all their frames at once. (Oxide's runtime
/// guidance disables the slot too, for the latency spikes an unstealable slot causes.)
///
/// A build without the flag (a `RUSTFLAGS` that leaves it out, a downstream build) still works:
/// the slot stays on, and every service logs a warning at start.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder.build()
}

/// Whether [`runtime`] turned the LIFO slot off (the build had `--cfg tokio_unstable`).
const LIFO_SLOT_DISABLED: bool = cfg!(tokio_unstable);

async fn run_command() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { service } => serve(*service).await,
        Command::Migrate { database_url, groups_role, messages_role, fanout_role, telemetry: telemetry_config } => {
            telemetry::init_tracing(&telemetry_config);
            fanfare_groups::migrate(&database_url).await?;
            fanfare_messages::migrate(&database_url).await?;
            fanfare_fanout::migrate(&database_url).await?;
            tracing::info!("migrations applied: groups, messages, fanout");
            let grants = [("groups", groups_role), ("messages", messages_role), ("fanout", fanout_role)];
            if grants.iter().any(|(_, role)| role.is_some()) {
                let pool = fanfare_postgres::connect(&database_url, 1, "fanfare-migrate").await?;
                for (schema, role) in grants {
                    if let Some(role) = role {
                        fanfare_postgres::grant_runtime_role(&pool, schema, &role).await?;
                        tracing::info!(schema, role, "runtime role granted its schema's rows");
                    }
                }
            }
            Ok(())
        }
        Command::Dev(args) => dev::run(*args).await,
        Command::Ctl(args) => ctl::run(*args).await,
    }
}

/// Prints the outcome of `--check-config`; an invalid configuration fails the command.
fn report_check(service: &str, checked: Result<(), String>) -> anyhow::Result<()> {
    match checked {
        Ok(()) => {
            println!("{service}: configuration ok");
            Ok(())
        }
        Err(problem) => Err(anyhow::anyhow!("{service}: invalid configuration: {problem}")),
    }
}

/// Runs the one service named on the command line.
async fn serve(service: ServeCommand) -> anyhow::Result<()> {
    match service {
        ServeCommand::Groups { check_config: true, config, .. } => {
            report_check("groups", config.server.check().and_then(|()| config.dependencies.check()))
        }
        ServeCommand::Messages { check_config: true, config, .. } => {
            report_check("messages", config.server.check().and_then(|()| config.dependencies.check()))
        }
        ServeCommand::Fanout { check_config: true, config, .. } => report_check("fanout", config.check()),
        ServeCommand::Groups { listen_addr, telemetry, config, .. } => {
            serve_one("groups", listen_addr, &telemetry, GROUPS_METRICS_PORT, |listener, shutdown| {
                fanfare_groups::run(config, listener, shutdown)
            })
            .await
        }
        ServeCommand::Messages { listen_addr, telemetry, config, .. } => {
            serve_one("messages", listen_addr, &telemetry, MESSAGES_METRICS_PORT, |listener, shutdown| {
                fanfare_messages::run(config, listener, shutdown)
            })
            .await
        }
        ServeCommand::Fanout { listen_addr, telemetry, config, .. } => {
            serve_one("fanout", listen_addr, &telemetry, FANOUT_METRICS_PORT, |listener, shutdown| {
                fanfare_fanout::run(config, listener, shutdown)
            })
            .await
        }
    }
}
