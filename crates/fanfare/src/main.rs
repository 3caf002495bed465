//! `fanfare`: the one binary. `fanfare serve <service>` runs one service (one per
//! Deployment), `fanfare migrate` applies every service's schema migrations, and
//! `fanfare dev` runs every service in one process for local development.

mod dev;

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fanfare_core::config::TelemetryConfig;
use fanfare_core::{metrics, shutdown, telemetry};
use tokio::net::TcpListener;

/// Default gRPC port of the groups service.
pub const GROUPS_PORT: u16 = 50051;
/// Default metrics port of the groups service.
pub const GROUPS_METRICS_PORT: u16 = 9091;

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
        service: ServeCommand,
    },
    /// Apply every service's schema migrations to DATABASE_URL (safe from several pods).
    Migrate {
        /// PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[command(flatten)]
        telemetry: TelemetryConfig,
    },
    /// Run every service in one process on the default ports, in memory unless
    /// DATABASE_URL / REDIS_URL are set.
    Dev(dev::DevArgs),
}

#[derive(Debug, Subcommand)]
enum ServeCommand {
    /// The groups service (`fanfare.groups.v1.GroupService`).
    Groups {
        /// Address to listen on for gRPC.
        #[arg(long, env = "FANFARE_LISTEN_ADDR", default_value_t = SocketAddr::from(([0, 0, 0, 0], GROUPS_PORT)))]
        listen_addr: SocketAddr,
        #[command(flatten)]
        telemetry: TelemetryConfig,
        #[command(flatten)]
        config: fanfare_groups::GroupsConfig,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { service: ServeCommand::Groups { listen_addr, telemetry: telemetry_config, config } } => {
            telemetry::init_tracing(&telemetry_config);
            let metrics_addr =
                telemetry_config.metrics_addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], GROUPS_METRICS_PORT)));
            metrics::install_metrics_exporter(metrics_addr)?;
            let listener = TcpListener::bind(listen_addr)
                .await
                .with_context(|| format!("binding the groups service to {listen_addr}"))?;
            tracing::info!(%listen_addr, %metrics_addr, "groups service listening");
            fanfare_groups::run(config, listener, shutdown::shutdown_on_signals()).await
        }
        Command::Migrate { database_url, telemetry: telemetry_config } => {
            telemetry::init_tracing(&telemetry_config);
            fanfare_groups::migrate(&database_url).await?;
            tracing::info!("migrations applied: groups");
            Ok(())
        }
        Command::Dev(args) => dev::run(args).await,
    }
}
