//! Configuration every service shares: where it listens, how it authenticates callers,
//! its request limits and where its dependencies are. Typed, with named defaults, and
//! overridable by flags or environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::tls::TlsConfig;

/// Default request timeout, in milliseconds.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Default limit on requests served at once before new ones are shed.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1_024;
/// Default time unary calls get to finish after shutdown begins, in milliseconds.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Default interval between dependency health checks, in milliseconds.
pub const DEFAULT_HEALTH_CHECK_INTERVAL_MS: u64 = 2_000;
/// Default age after which a connection is asked to go away, in milliseconds (5 minutes).
pub const DEFAULT_MAX_CONNECTION_AGE_MS: u64 = 300_000;
/// Shortest non-zero connection age accepted: anything shorter has callers reconnecting
/// all the time.
pub const MIN_MAX_CONNECTION_AGE_MS: u64 = 1_000;
/// Default limit on concurrent streams (calls) per HTTP/2 connection.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1_024;
/// Longest Redis namespace accepted (the bus enforces the same limit).
pub const MAX_REDIS_NAMESPACE_LEN: usize = 64;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for production log pipelines.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// Settings of the gRPC server every service runs.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// The token this service sends (`authorization: Bearer <token>`) when it calls the other
    /// services. Without a callers file it is also the one token this server accepts, from
    /// a single caller named `shared` that may call everything.
    #[arg(long, env = "FANFARE_SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<String>,

    /// A TOML file naming each caller, the digests of its tokens and the methods it may call
    /// (see docs/security.md). When set, it alone decides who may call this server.
    #[arg(long, env = "FANFARE_CALLERS_FILE")]
    pub callers_file: Option<PathBuf>,

    /// Accept calls without a service token. For local development only; logged as a warning.
    #[arg(long, env = "FANFARE_ALLOW_UNAUTHENTICATED", default_value_t = false)]
    pub allow_unauthenticated: bool,

    /// How long one unary call may take before it fails with DEADLINE_EXCEEDED.
    #[arg(long, env = "FANFARE_REQUEST_TIMEOUT_MS", default_value_t = DEFAULT_REQUEST_TIMEOUT_MS)]
    pub request_timeout_ms: u64,

    /// Requests served at once; beyond it new requests are shed with RESOURCE_EXHAUSTED.
    #[arg(long, env = "FANFARE_MAX_CONCURRENT_REQUESTS", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,

    /// How long unary calls get to finish once shutdown begins.
    #[arg(long, env = "FANFARE_SHUTDOWN_GRACE_MS", default_value_t = DEFAULT_SHUTDOWN_GRACE_MS)]
    pub shutdown_grace_ms: u64,

    /// How often Postgres and Redis reachability is checked for gRPC health.
    #[arg(long, env = "FANFARE_HEALTH_CHECK_INTERVAL_MS", default_value_t = DEFAULT_HEALTH_CHECK_INTERVAL_MS)]
    pub health_check_interval_ms: u64,

    /// Age after which a connection is told to go away (HTTP/2 GOAWAY), so callers reconnect
    /// and spread over new pods; its open calls and streams still finish. 0 for no limit.
    #[arg(long, env = "FANFARE_MAX_CONNECTION_AGE_MS", default_value_t = DEFAULT_MAX_CONNECTION_AGE_MS)]
    pub max_connection_age_ms: u64,

    /// Calls (streams) one caller connection may have open at once; further calls wait in the
    /// caller until one ends.
    #[arg(long, env = "FANFARE_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS)]
    pub max_concurrent_streams: u32,

    /// TLS of the server and of this service's calls to the others (`crate::tls`).
    #[command(flatten)]
    pub tls: TlsConfig,
}

impl ServerConfig {
    /// Settings for tests and the one-process dev mode: no token required.
    pub fn for_dev() -> Self {
        Self {
            service_token: None,
            callers_file: None,
            allow_unauthenticated: true,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            health_check_interval_ms: 200,
            max_connection_age_ms: DEFAULT_MAX_CONNECTION_AGE_MS,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            tls: TlsConfig::default(),
        }
    }

    /// The unary request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The drain period after shutdown begins.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// The dependency health check interval.
    pub fn health_check_interval(&self) -> Duration {
        Duration::from_millis(self.health_check_interval_ms)
    }

    /// How long a connection may live before it is told to go away; `None` for no limit.
    pub fn max_connection_age(&self) -> Option<Duration> {
        (self.max_connection_age_ms != 0).then(|| Duration::from_millis(self.max_connection_age_ms))
    }

    /// Refuses a configuration that could not serve, or would run with no authentication by
    /// accident.
    pub fn check(&self) -> Result<(), String> {
        if self.max_concurrent_requests == 0 {
            return Err("FANFARE_MAX_CONCURRENT_REQUESTS must be at least 1".to_owned());
        }
        if self.request_timeout_ms == 0 || self.health_check_interval_ms == 0 {
            return Err("FANFARE_REQUEST_TIMEOUT_MS and FANFARE_HEALTH_CHECK_INTERVAL_MS must be at least 1".to_owned());
        }
        if self.max_concurrent_streams == 0 {
            return Err("FANFARE_MAX_CONCURRENT_STREAMS must be at least 1".to_owned());
        }
        if self.max_connection_age_ms != 0 && self.max_connection_age_ms < MIN_MAX_CONNECTION_AGE_MS {
            return Err(format!(
                "FANFARE_MAX_CONNECTION_AGE_MS must be 0 (no limit) or at least {MIN_MAX_CONNECTION_AGE_MS}"
            ));
        }
        self.tls.check()?;
        match (&self.service_token, &self.callers_file, self.allow_unauthenticated) {
            (Some(token), _, _) if token.trim().is_empty() => Err("FANFARE_SERVICE_TOKEN is set but empty".to_owned()),
            (None, None, false) => Err(
                "no callers: set FANFARE_CALLERS_FILE or FANFARE_SERVICE_TOKEN, or FANFARE_ALLOW_UNAUTHENTICATED=true for local development"
                    .to_owned(),
            ),
            _ => Ok(()),
        }
    }
}

/// Settings of process-wide telemetry.
#[derive(Debug, Clone, Args)]
pub struct TelemetryConfig {
    /// Log format: json in production, pretty in a terminal.
    #[arg(long, env = "FANFARE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter in `RUST_LOG` syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    /// Address of the Prometheus metrics endpoint; unset to turn it off.
    #[arg(long, env = "FANFARE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// Where the shared dependencies are. Unset means in-memory storage and bus.
#[derive(Debug, Clone, Default, Args)]
pub struct DependencyConfig {
    /// PostgreSQL URL; unset for in-memory storage.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Redis URL; unset for the in-process bus.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// PEM CA certificates trusted for a `rediss://` REDIS_URL; unset, the system's roots.
    #[arg(long, env = "FANFARE_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Prefix of every Redis channel and key this deployment uses, so several deployments or
    /// test runs can share one Redis. Empty for none; otherwise letters, digits, `_`, `.` and
    /// `-`, at most 64 of them.
    #[arg(long, env = "FANFARE_REDIS_NAMESPACE", default_value = "")]
    pub redis_namespace: String,

    /// Postgres connections per service.
    #[arg(long, env = "FANFARE_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,

    /// Run this service's migrations at start. Production runs `fanfare migrate` as a Job
    /// instead; `fanfare dev` turns this on.
    #[arg(long, env = "FANFARE_MIGRATE_ON_START", default_value_t = false)]
    pub migrate_on_start: bool,
}

impl DependencyConfig {
    /// Refuses settings that cannot work.
    pub fn check(&self) -> Result<(), String> {
        let namespace = &self.redis_namespace;
        if namespace.len() > MAX_REDIS_NAMESPACE_LEN {
            return Err(format!("FANFARE_REDIS_NAMESPACE is longer than {MAX_REDIS_NAMESPACE_LEN} characters"));
        }
        // No `:` in particular: it separates the namespace from the channel or key behind it.
        let allowed = |character: char| character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | '-');
        if let Some(refused) = namespace.chars().find(|character| !allowed(*character)) {
            return Err(format!(
                "FANFARE_REDIS_NAMESPACE may hold only letters, digits, `_`, `.` and `-`, not {refused:?}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_run_unauthenticated_by_accident() {
        let mut config = ServerConfig::for_dev();
        assert!(config.check().is_ok());
        config.allow_unauthenticated = false;
        assert!(config.check().is_err());
        config.service_token = Some("  ".to_owned());
        assert!(config.check().is_err());
        config.service_token = Some("secret".to_owned());
        assert!(config.check().is_ok());
        config.max_concurrent_requests = 0;
        assert!(config.check().is_err());
    }

    #[test]
    fn connection_limits_are_checked() {
        let mut config = ServerConfig::for_dev();
        config.max_concurrent_streams = 0;
        assert!(config.check().is_err(), "no stream at all cannot serve");
        config.max_concurrent_streams = 1;
        assert!(config.check().is_ok());

        config.max_connection_age_ms = 0;
        assert!(config.check().is_ok(), "0 is no limit");
        assert_eq!(config.max_connection_age(), None);
        config.max_connection_age_ms = MIN_MAX_CONNECTION_AGE_MS - 1;
        assert!(config.check().is_err(), "too short");
        config.max_connection_age_ms = MIN_MAX_CONNECTION_AGE_MS;
        assert!(config.check().is_ok());
        assert_eq!(config.max_connection_age(), Some(Duration::from_millis(MIN_MAX_CONNECTION_AGE_MS)));
    }

    #[test]
    fn the_redis_namespace_is_short_and_made_of_safe_characters() {
        let mut config = DependencyConfig::default();
        assert!(config.check().is_ok(), "no namespace");
        for accepted in ["staging", "test-fanfare_test_0a.B", &"n".repeat(MAX_REDIS_NAMESPACE_LEN)] {
            config.redis_namespace = accepted.to_owned();
            assert!(config.check().is_ok(), "{accepted:?}");
        }
        for refused in ["a:b", "a b", "a*", "é", &"n".repeat(MAX_REDIS_NAMESPACE_LEN + 1)] {
            config.redis_namespace = refused.to_owned();
            assert!(config.check().is_err(), "{refused:?}");
        }
    }
}
