//! The machine and Postgres server the figures were taken on, for the report header.

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

/// Postgres settings that decide the figures, shown in the header.
const REPORTED_SETTINGS: &[&str] =
    &["synchronous_commit", "fsync", "wal_sync_method", "shared_buffers", "max_connections"];

/// What the header says about where the run happened.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    /// Logical CPUs this process may use.
    pub cores: usize,
    /// Total memory in bytes, from `/proc/meminfo`.
    pub memory_bytes: Option<u64>,
    /// CPU model, from `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// `SELECT version()`.
    pub postgres_version: String,
    /// `(name, value)` of [`REPORTED_SETTINGS`].
    pub postgres_settings: Vec<(String, String)>,
}

impl Machine {
    /// Probes this machine and the Postgres server `postgres` points at.
    pub(crate) async fn probe(postgres: &PgConnectOptions) -> anyhow::Result<Self> {
        let mut connection = postgres.connect().await.context("connecting to postgres to read its version")?;
        let postgres_version: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(&mut connection)
            .await
            .context("reading the postgres version")?;
        let mut postgres_settings = Vec::with_capacity(REPORTED_SETTINGS.len());
        for name in REPORTED_SETTINGS {
            let value: String = sqlx::query_scalar("SELECT current_setting($1)")
                .bind(name)
                .fetch_one(&mut connection)
                .await
                .with_context(|| format!("reading postgres setting {name}"))?;
            postgres_settings.push(((*name).to_owned(), value));
        }
        connection.close().await.ok();
        Ok(Self {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_bytes: memory_bytes(),
            cpu_model: cpu_model(),
            postgres_version,
            postgres_settings,
        })
    }

    /// `2 cores (model), 23.4 GiB memory`.
    pub(crate) fn describe(&self) -> String {
        let model = self.cpu_model.as_deref().map(|model| format!(" ({model})")).unwrap_or_default();
        let memory = self
            .memory_bytes
            .map(|bytes| format!(", {:.1} GiB memory", bytes as f64 / (1u64 << 30) as f64))
            .unwrap_or_default();
        format!("{} cores{model}{memory}", self.cores)
    }

    /// Load averages at the start and end of a stretch, and what they mean on this many cores.
    pub(crate) fn load_note(&self, start: Option<f64>, end: Option<f64>) -> String {
        let show = |load: Option<f64>| load.map_or("?".to_owned(), |load| format!("{load:.2}"));
        format!("{} at start, {} at end (1-minute; {} cores)", show(start), show(end), self.cores)
    }

    /// `synchronous_commit=on, fsync=on, …`.
    pub(crate) fn settings_line(&self) -> String {
        self.postgres_settings.iter().map(|(name, value)| format!("`{name}={value}`")).collect::<Vec<_>>().join(", ")
    }
}

fn memory_bytes() -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal:")
}

/// The `field` line of a `/proc` file that counts in kB (`MemTotal:   123 kB`), in bytes.
pub(crate) fn kib_field(text: &str, field: &str) -> Option<u64> {
    let kib: u64 =
        text.lines().find_map(|line| line.strip_prefix(field))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// The 1-minute load average now.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}
