//! The processes under test, each a child of this one so its CPU time and memory can be read
//! from `/proc`: the release `fanfare` binary serving groups, one or more messages processes
//! and one or more fanout processes on one fresh database and one Redis namespace, and the
//! minimal tonic streaming server (this binary's hidden `minimal-stream-server` subcommand).
//!
//! Each logs (JSON, warnings and errors only) to its own file; the fanout processes'
//! Prometheus counters are read over HTTP after each scenario.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::probe::{Role, Watched};

/// Warnings every service logs at start with this benchmark's configuration (no service
/// token, no fanout URL for groups): not worth reporting.
const EXPECTED_WARNINGS: [&str; 2] = ["accepting unauthenticated calls", "no fanout service configured"];

/// How long a service may take to report SERVING.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped service may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the `fanfare` binary is: `explicit`, else next to this binary (both built by
/// `cargo build --release`), else the workspace's `target/release`.
pub(super) fn fanfare_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(path.is_file(), "--fanfare-binary {} does not exist", path.display());
        return Ok(path.to_owned());
    }
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("fanfare")));
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/fanfare");
    beside.into_iter().chain([workspace]).find(|path| path.is_file()).context(
        "the fanout benchmark runs the release `fanfare` binary: build it first with \
         `cargo build --release -p fanfare` (`make bench` does), or pass --fanfare-binary",
    )
}

/// One running child process.
pub(super) struct Process {
    /// Its name in logs and errors.
    pub name: String,
    /// Whose CPU it counts as.
    pub role: Role,
    /// Where it serves gRPC.
    pub addr: SocketAddr,
    /// Where it serves Prometheus metrics, if it does.
    pub metrics_addr: Option<SocketAddr>,
    /// Its pid.
    pub pid: u32,
    /// Its log file.
    pub log: PathBuf,
    child: Child,
}

impl Process {
    /// `http://127.0.0.1:port`.
    pub(super) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Asks the process to stop (SIGTERM), killing it if it has not exited in time.
    pub(super) async fn stop(mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await.is_err() {
            eprintln!("fanout: {} did not exit within {STOP_TIMEOUT:?}; killing it", self.name);
            let _ = self.child.kill().await;
        }
    }

    /// Fails with the end of its log if the process has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            anyhow::bail!("{} exited ({status}); the end of {}:\n{}", self.name, self.log.display(), tail(&self.log));
        }
        Ok(())
    }
}

/// The services of one benchmark run.
pub(super) struct Cluster {
    binary: PathBuf,
    logs: PathBuf,
    /// Environment every service gets.
    common: Vec<(String, String)>,
    /// The groups service.
    pub groups: Process,
    /// The messages processes (at least one; groups and fanout call the first).
    pub messages: Vec<Process>,
    messages_starts: usize,
    messages_env: Vec<(String, String)>,
    /// The fanout processes (stream g connects to process g mod their number).
    pub fanouts: Vec<Process>,
    fanout_starts: usize,
    fanout_env: Vec<(String, String)>,
}

/// What the services run on.
pub(super) struct ClusterConfig<'a> {
    /// The `fanfare` binary.
    pub binary: PathBuf,
    /// Where the processes write their logs.
    pub logs: PathBuf,
    /// The fresh database.
    pub database_url: String,
    /// The Redis every process uses.
    pub redis_url: &'a str,
    /// The run's Redis namespace (channels).
    pub namespace: &'a str,
    /// The run's push stream (fan-out jobs), before the service puts the namespace in front.
    pub push_stream: &'a str,
    /// How many fanout processes.
    pub fanouts: usize,
}

impl Cluster {
    /// Migrates the database, then starts groups, messages and the fanout processes and
    /// waits until each reports SERVING.
    pub(super) async fn start(config: ClusterConfig<'_>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.logs).with_context(|| format!("creating {}", config.logs.display()))?;
        let common: Vec<(String, String)> = [
            ("DATABASE_URL", config.database_url.as_str()),
            ("REDIS_URL", config.redis_url),
            ("FANFARE_REDIS_NAMESPACE", config.namespace),
            ("FANFARE_ALLOW_UNAUTHENTICATED", "true"),
            ("FANFARE_LOG_FORMAT", "json"),
            ("RUST_LOG", "warn"),
            ("FANFARE_SHUTDOWN_GRACE_MS", "2000"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        migrate(&config.binary, &common, &config.logs).await?;

        let groups_addr = free_port().await?;
        let messages_addr = free_port().await?;
        let groups = spawn_service(
            &config.binary,
            &config.logs,
            "groups",
            Role::Groups,
            groups_addr,
            &common,
            &[
                ("FANFARE_MESSAGES_URL".into(), format!("http://{messages_addr}")),
                ("FANFARE_GROUPS_USER_CHANGES_PER_SECOND".into(), "0".into()),
            ],
        )
        .await?;
        let messages_env = vec![
            ("FANFARE_GROUPS_URL".to_owned(), format!("http://{groups_addr}")),
            ("FANFARE_MESSAGES_USER_SENDS_PER_SECOND".to_owned(), "0".to_owned()),
            // W2 keeps up to one send per sender in flight: 4,000 at once when the machine
            // falls behind. Shedding them would measure the shedding, not the fan-out.
            ("FANFARE_MAX_CONCURRENT_REQUESTS".to_owned(), "16384".to_owned()),
        ];
        let messages = spawn_service(
            &config.binary,
            &config.logs,
            "messages-0",
            Role::Messages,
            messages_addr,
            &common,
            &messages_env,
        )
        .await?;
        let fanout_env = vec![
            ("FANFARE_GROUPS_URL".to_owned(), format!("http://{groups_addr}")),
            ("FANFARE_MESSAGES_URL".to_owned(), format!("http://{messages_addr}")),
            ("FANFARE_FANOUT_PUSH_STREAM".to_owned(), config.push_stream.to_owned()),
            ("FANFARE_FANOUT_USER_CHANGES_PER_SECOND".to_owned(), "0".to_owned()),
        ];
        let mut cluster = Self {
            binary: config.binary,
            logs: config.logs,
            common,
            groups,
            messages: vec![messages],
            messages_starts: 1,
            messages_env,
            fanouts: Vec::new(),
            fanout_starts: 0,
            fanout_env,
        };
        for process in [&cluster.groups].into_iter().chain(&cluster.messages) {
            wait_serving(process).await?;
        }
        cluster.start_fanouts(config.fanouts).await?;
        Ok(cluster)
    }

    async fn start_fanouts(&mut self, count: usize) -> anyhow::Result<()> {
        for index in 0..count.max(1) {
            self.fanout_starts += 1;
            let name = format!("fanout-{index}-start{}", self.fanout_starts);
            let addr = free_port().await?;
            let process =
                spawn_service(&self.binary, &self.logs, &name, Role::Fanout, addr, &self.common, &self.fanout_env)
                    .await?;
            self.fanouts.push(process);
        }
        for process in &self.fanouts {
            wait_serving(process).await?;
        }
        Ok(())
    }

    /// Replaces the fanout processes with fresh ones (each scenario starts from an idle
    /// process, so its memory before and after opening streams compares).
    pub(super) async fn restart_fanouts(&mut self) -> anyhow::Result<()> {
        let count = self.fanouts.len();
        for process in self.fanouts.drain(..) {
            process.stop().await;
        }
        self.start_fanouts(count).await
    }

    /// Runs `count` messages processes (at least one) on the same database and Redis
    /// namespace: starts the missing ones, stops the last ones beyond it.
    pub(super) async fn set_messages_processes(&mut self, count: usize) -> anyhow::Result<()> {
        let count = count.max(1);
        while self.messages.len() > count {
            if let Some(process) = self.messages.pop() {
                process.stop().await;
            }
        }
        while self.messages.len() < count {
            let name = format!("messages-{}-start{}", self.messages.len(), self.messages_starts);
            self.messages_starts += 1;
            let addr = free_port().await?;
            let process =
                spawn_service(&self.binary, &self.logs, &name, Role::Messages, addr, &self.common, &self.messages_env)
                    .await?;
            wait_serving(&process).await?;
            self.messages.push(process);
        }
        Ok(())
    }

    /// The messages processes' URLs: sender j of W2 sends to process j mod their number.
    pub(super) fn messages_urls(&self) -> Vec<String> {
        self.messages.iter().map(Process::url).collect()
    }

    /// The fanout processes' URLs, in stream order.
    pub(super) fn fanout_urls(&self) -> Vec<String> {
        self.fanouts.iter().map(Process::url).collect()
    }

    /// The service processes to watch.
    pub(super) fn watched(&self, redis: Option<u32>) -> Watched {
        let processes = [&self.groups]
            .into_iter()
            .chain(&self.messages)
            .chain(&self.fanouts)
            .map(|process| (process.role, process.pid))
            .collect();
        Watched { processes, redis }
    }

    /// Fails if a service has exited.
    pub(super) fn check_alive(&mut self) -> anyhow::Result<()> {
        self.groups.check_alive()?;
        self.messages.iter_mut().try_for_each(Process::check_alive)?;
        self.fanouts.iter_mut().try_for_each(Process::check_alive)
    }

    /// The fanout processes' counters, summed over processes and labels; the gap repairs
    /// also by reason (`fanfare_fanout_gap_repairs_total{reason}`).
    pub(super) async fn fanout_counters(&self) -> BTreeMap<String, f64> {
        let mut totals = BTreeMap::new();
        for process in &self.fanouts {
            let Some(addr) = process.metrics_addr else { continue };
            let Ok(text) = scrape(addr).await else { continue };
            for (name, value) in parse_counters(&text) {
                *totals.entry(name).or_insert(0.0) += value;
            }
        }
        totals
    }

    /// Warning and error lines the services logged, by message, most frequent first.
    pub(super) fn logged_problems(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.logs) else { return Vec::new() };
        for entry in entries.filter_map(Result::ok) {
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            let service = entry.file_name().to_string_lossy().trim_end_matches(".log").to_owned();
            for line in text.lines().filter(|line| line.contains("\"WARN\"") || line.contains("\"ERROR\"")) {
                let message = json_field(line, "message").unwrap_or_else(|| line.chars().take(120).collect());
                if EXPECTED_WARNINGS.iter().any(|expected| message.starts_with(expected)) {
                    continue;
                }
                let service = service.split("-start").next().unwrap_or(&service).to_owned();
                *counts.entry(format!("{service}: {message}")).or_insert(0) += 1;
            }
        }
        let mut sorted: Vec<(String, usize)> = counts.into_iter().collect();
        sorted.sort_by_key(|(_, times)| std::cmp::Reverse(*times));
        sorted
    }

    /// Stops every service.
    pub(super) async fn stop(self) {
        for process in self.fanouts {
            process.stop().await;
        }
        for process in self.messages {
            process.stop().await;
        }
        self.groups.stop().await;
    }
}

/// Runs `fanfare migrate` on the database.
async fn migrate(binary: &Path, common: &[(String, String)], logs: &Path) -> anyhow::Result<()> {
    let log = logs.join("migrate.log");
    let output = Command::new(binary)
        .arg("migrate")
        .env_clear()
        .envs(common.iter().cloned())
        .stdout(log_file(&log)?)
        .stderr(log_file(&log)?)
        .status()
        .await
        .context("running fanfare migrate")?;
    anyhow::ensure!(output.success(), "fanfare migrate failed ({output}):\n{}", tail(&log));
    Ok(())
}

/// Starts `fanfare serve <service>` on `addr`.
async fn spawn_service(
    binary: &Path,
    logs: &Path,
    name: &str,
    role: Role,
    addr: SocketAddr,
    common: &[(String, String)],
    extra: &[(String, String)],
) -> anyhow::Result<Process> {
    let service = match role {
        Role::Groups => "groups",
        Role::Messages => "messages",
        _ => "fanout",
    };
    let metrics_addr = free_port().await?;
    let log = logs.join(format!("{name}.log"));
    let child = Command::new(binary)
        .args(["serve", service])
        .env_clear()
        .envs(common.iter().cloned())
        .envs(extra.iter().cloned())
        .env("FANFARE_LISTEN_ADDR", addr.to_string())
        .env("FANFARE_METRICS_ADDR", metrics_addr.to_string())
        .stdout(log_file(&log)?)
        .stderr(log_file(&log)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} serve {service}", binary.display()))?;
    let pid = child.id().context("the service exited at once")?;
    Ok(Process { name: name.to_owned(), role, addr, metrics_addr: Some(metrics_addr), pid, log, child })
}

/// Starts this binary's minimal streaming server on a free port and waits until it accepts
/// connections.
pub(super) async fn spawn_minimal(logs: &Path) -> anyhow::Result<Process> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let addr = free_port().await?;
    let log = logs.join("minimal.log");
    let child = Command::new(exe)
        .args(["minimal-stream-server", "--listen", &addr.to_string()])
        .stdout(log_file(&log)?)
        .stderr(log_file(&log)?)
        .kill_on_drop(true)
        .spawn()
        .context("starting the minimal streaming server")?;
    let pid = child.id().context("the minimal server exited at once")?;
    let mut process =
        Process { name: "minimal".into(), role: Role::Minimal, addr, metrics_addr: None, pid, log, child };
    let started = Instant::now();
    while TcpStream::connect(addr).await.is_err() {
        process.check_alive()?;
        anyhow::ensure!(started.elapsed() < START_TIMEOUT, "the minimal server did not listen on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(process)
}

fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// An address on 127.0.0.1 nobody listens on (bound, then released for the child).
async fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("finding a free port")?;
    listener.local_addr().context("reading a free port")
}

/// Waits until `process` answers its health check with SERVING.
async fn wait_serving(process: &Process) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let answer = async {
            let channel = Channel::from_shared(process.url())?.connect().await?;
            let response = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await?;
            anyhow::Ok(response.into_inner().status == ServingStatus::Serving as i32)
        };
        if let Ok(true) = answer.await {
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            anyhow::bail!("{} did not report SERVING within {START_TIMEOUT:?}:\n{}", process.name, tail(&process.log));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last lines of a log.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A string field of a JSON log line, without a JSON parser: the services' lines are flat
/// enough (`"message":"…"` under `fields`).
fn json_field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_owned())
}

/// `GET /metrics` over plain HTTP/1.1.
async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await??;
    Ok(response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

/// Counter samples of a Prometheus text page, each under its name and, for labelled ones,
/// also under `name{labels}`.
fn parse_counters(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|line| line.starts_with("fanfare_fanout_")) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let name = series.split('{').next().unwrap_or(series);
        samples.push((name.to_owned(), value));
        if series.contains('{') {
            samples.push((series.to_owned(), value));
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_by_name_and_kept_by_label() {
        let page = "# HELP x\nfanfare_fanout_gap_repairs_total{reason=\"jump\"} 2\n\
                    fanfare_fanout_gap_repairs_total{reason=\"bus\"} 3\nfanfare_fanout_streams_open 7\nother 1\n";
        let samples = parse_counters(page);
        let total: f64 =
            samples.iter().filter(|(name, _)| name == "fanfare_fanout_gap_repairs_total").map(|(_, v)| v).sum();
        assert_eq!(total, 5.0);
        assert!(samples.contains(&("fanfare_fanout_gap_repairs_total{reason=\"jump\"}".to_owned(), 2.0)));
        assert!(samples.contains(&("fanfare_fanout_streams_open".to_owned(), 7.0)));
    }

    #[test]
    fn messages_are_read_from_json_lines() {
        let line = r#"{"level":"WARN","fields":{"message":"publish failed; will retry","x":1}}"#;
        assert_eq!(json_field(line, "message").as_deref(), Some("publish failed; will retry"));
    }
}
