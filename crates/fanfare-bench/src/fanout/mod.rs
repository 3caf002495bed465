//! The fanout benchmark (WORKLOADS.md W1, W2, W3) and its baselines, with every service a
//! separate process of the release `fanfare` binary so that each one's CPU time and memory
//! can be read from `/proc`:
//!
//! 1. W1, creator broadcast: one BROADCAST group, N member `Subscribe` streams, the owner
//!    sending at a fixed rate (20,000 deliveries/s offered), then at saturation; beside
//!    it, in the same run, raw Redis pub/sub with N subscriber connections and a minimal
//!    tonic streaming server with N streams, fed the same updates at the same rates;
//! 2. W2, many small groups: 500 CHAT groups × 8 member streams, every member sending one
//!    message a second, for 60 s, the messages outbox sampled meanwhile; then the highest
//!    W2-shaped rate the machine sustains (more groups, shorter windows); all of it with one
//!    messages process and again with two;
//! 3. W3, a fan-out job over a million followers, at the highest rate the server allows.
//!
//! Streams connect to the fanout processes in turn (stream g to process g mod 2), so every
//! group has listeners on both and every update reaches the second only through Redis.
//!
//! [`cluster`] runs the processes, [`probe`] reads their CPU time and memory, [`backlog`]
//! the messages outbox; [`fanfare`] and [`baseline`] are the clients of the systems
//! compared, [`load`] the senders, [`tally`] what the receivers saw; [`broadcast`] (W1), [`chats`] (W2) and [`jobs`] (W3) run the
//! workloads, and [`results`] turns the figures into the report section.

mod backlog;
mod baseline;
mod broadcast;
mod chats;
mod cluster;
mod fanfare;
mod jobs;
mod load;
pub(crate) mod minimal;
mod payload;
mod probe;
mod results;
mod tally;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fanfare_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_testkit::TestDatabase;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tonic::transport::Channel;

use crate::report::Section;
use cluster::{Cluster, ClusterConfig};
use load::{Publisher, Windows};
use probe::Watched;
use results::{Load, Measurement, Results, System};
use tally::Board;

/// How long the receivers may go without a new delivery before a window's missing
/// deliveries are declared lost.
const DRAIN_QUIET: Duration = Duration::from_secs(5);
/// Time for the streams to settle after opening, before memory is read.
const SETTLE_PAUSE: Duration = Duration::from_secs(1);
/// First user id of W1's N-th configuration's users (owner, then members).
const W1_USERS: i64 = 10_000_000;
/// First user id of W2's users.
const W2_USERS: i64 = 500_000_000;

/// Options of the fanout benchmark.
#[derive(Debug, Clone, Args)]
pub(crate) struct FanoutArgs {
    /// W1: member streams of the broadcast group, one configuration each (0 skips W1).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 5_000, 10_000])]
    pub w1_streams: Vec<usize>,

    /// W1: deliveries per second offered at the fixed rate (the owner sends this ÷ N msgs/s).
    #[arg(long, default_value_t = 20_000)]
    pub w1_deliveries_per_second: u64,

    /// W1: measured seconds of each window (WORKLOADS.md: M = 10 × R messages, 10 s).
    #[arg(long, default_value_t = 10.0)]
    pub w1_seconds: f64,

    /// W1 saturation: messages in flight end to end (each slot sends its next message once
    /// its previous one reached every stream); 0 skips the saturation windows.
    #[arg(long, default_value_t = 8)]
    pub saturation_slots: u32,

    /// W2: CHAT groups.
    #[arg(long, default_value_t = 500)]
    pub w2_groups: usize,

    /// W2: members (and streams) per group.
    #[arg(long, default_value_t = 8)]
    pub w2_members: usize,

    /// W2: measured seconds of the main window; 0 skips W2.
    #[arg(long, default_value_t = 60.0)]
    pub w2_seconds: f64,

    /// W2: numbers of messages processes, each running the main window and the
    /// sustained-rate series (sender j sends through process j mod their number).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2])]
    pub w2_messages_processes: Vec<usize>,

    /// W2 sustained rate: group counts (same members, 1 msg/s each) stepped through in
    /// order after the main window, stopping at the first whose p99 send → receive reached
    /// 50 ms or that lost a delivery; 0 skips the series.
    #[arg(long, value_delimiter = ',', default_values_t = [500, 750, 1_000, 1_500])]
    pub w2_sustain_groups: Vec<usize>,

    /// W2 sustained rate: measured seconds of each step.
    #[arg(long, default_value_t = 20.0)]
    pub w2_sustain_seconds: f64,

    /// W2: milliseconds between two readings of the messages outbox during a window.
    #[arg(long, default_value_t = 500)]
    pub w2_sample_ms: u64,

    /// W3: followers of the creator; 0 skips W3.
    #[arg(long, default_value_t = 1_000_000)]
    pub w3_followers: u64,

    /// W3: the job's rate_limit_per_second (the server's default maximum).
    #[arg(long, default_value_t = 200_000)]
    pub w3_rate: i32,

    /// W3: skip reading the push stream back to check every follower is in it once.
    #[arg(long)]
    pub w3_skip_read_back: bool,

    /// Warm-up seconds before each measured window (excluded from the figures).
    #[arg(long, default_value_t = 3.0)]
    pub fanout_warm_up_seconds: f64,

    /// Fanout processes; stream g connects to process g mod this.
    #[arg(long, default_value_t = 2)]
    pub fanout_processes: usize,

    /// Streams sharing one HTTP/2 connection (fanout and minimal server alike).
    #[arg(long, default_value_t = 100)]
    pub streams_per_connection: usize,

    /// HTTP/2 connections the senders spread SendMessage over.
    #[arg(long, default_value_t = 16)]
    pub fanout_send_channels: usize,

    /// Skip the raw Redis and minimal tonic baselines.
    #[arg(long)]
    pub skip_baselines: bool,

    /// The Redis every process uses.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub fanout_redis_url: String,

    /// The release `fanfare` binary (default: next to this one, or target/release/fanfare).
    #[arg(long)]
    pub fanfare_binary: Option<PathBuf>,
}

impl FanoutArgs {
    fn warm_up(&self) -> Duration {
        Duration::from_secs_f64(self.fanout_warm_up_seconds.max(0.0))
    }
}

/// Runs the fanout benchmark and returns its report section.
pub(crate) async fn run(args: &FanoutArgs) -> anyhow::Result<Section> {
    // More than the server allows on a connection would leave the extra streams waiting in
    // the client for a free slot.
    let most_streams = fanfare_core::config::DEFAULT_MAX_CONCURRENT_STREAMS as usize;
    anyhow::ensure!(
        (1..=most_streams).contains(&args.streams_per_connection),
        "--streams-per-connection must be 1 to {most_streams} (the services' FANFARE_MAX_CONCURRENT_STREAMS)"
    );
    anyhow::ensure!((args.saturation_slots as usize) < tally::MAX_SLOTS, "--saturation-slots must be below 256");
    anyhow::ensure!(
        !args.w2_messages_processes.is_empty()
            && args.w2_messages_processes.iter().all(|count| (1..=8).contains(count)),
        "--w2-messages-processes takes 1 to 8 processes per entry"
    );
    anyhow::ensure!(args.w2_sample_ms > 0, "--w2-sample-ms must be at least 1");
    let binary = cluster::fanfare_binary(args.fanfare_binary.as_deref())?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let namespace = format!("bench-{run_id}");
    // The push stream's name, and its key as the fanout service namespaces it.
    let push_stream_name = format!("fanfare-bench-{run_id}:push");
    let push_stream = fanfare_fanout::jobs::sink::push_stream_key(&namespace, &push_stream_name);
    let logs = std::env::temp_dir().join(format!("fanfare-bench-{run_id}"));
    let redis = redis::Client::open(args.fanout_redis_url.as_str()).context("parsing the Redis URL")?;
    let mut redis_connection = redis.get_multiplexed_async_connection().await.context("connecting to Redis")?;
    let redis_pid = redis_server_pid(&mut redis_connection).await;

    let database = TestDatabase::create().await?;
    let admin = PgPoolOptions::new().max_connections(4).connect_with(database.options()).await?;
    eprintln!("fanout: starting the services (logs in {})", logs.display());
    let cluster = Cluster::start(ClusterConfig {
        binary,
        logs: logs.clone(),
        database_url: database.url(),
        redis_url: &args.fanout_redis_url,
        namespace: &namespace,
        push_stream: &push_stream_name,
        fanouts: args.fanout_processes,
    })
    .await?;
    let groups = GroupServiceClient::new(fanfare::connect(&cluster.groups.url()).await?);
    let mut bench =
        Bench { args, cluster, admin, redis, redis_pid, groups, logs, windows: 0, fresh: true, w2_users_taken: 0 };
    let mut results = Results::new(args.clone(), redis_pid.is_some());

    let outcome = bench.scenarios(&mut results, &mut redis_connection, &push_stream).await;
    results.problems = bench.cluster.logged_problems();
    bench.cluster.stop().await;
    if let Err(error) = jobs::delete_push_stream(&mut redis_connection, &push_stream).await {
        eprintln!("fanout: could not delete the push stream {push_stream}: {error:#}");
    }
    bench.admin.close().await;
    drop(database);
    outcome?;
    Ok(results.section())
}

/// The run's services and clients.
struct Bench<'a> {
    args: &'a FanoutArgs,
    cluster: Cluster,
    admin: PgPool,
    redis: redis::Client,
    redis_pid: Option<u32>,
    groups: GroupServiceClient<Channel>,
    logs: PathBuf,
    /// Window ids handed out so far.
    windows: u32,
    /// Whether the fanout processes have served no stream yet.
    fresh: bool,
    /// W2 user ids handed out so far (from [`W2_USERS`] on).
    w2_users_taken: i64,
}

impl Bench<'_> {
    async fn scenarios(
        &mut self,
        results: &mut Results,
        redis: &mut redis::aio::MultiplexedConnection,
        push_stream: &str,
    ) -> anyhow::Result<()> {
        let sizes = self.args.w1_streams.iter().copied().filter(|streams| *streams > 0);
        for (index, streams) in sizes.enumerate() {
            let size = self.w1(index, streams).await.with_context(|| format!("W1 with {streams} streams"))?;
            results.w1.push(size);
        }
        if self.args.w2_seconds > 0.0 && self.args.w2_groups > 0 && self.args.w2_members > 1 {
            results.w2 = self.w2().await.context("W2")?;
        }
        if self.args.w3_followers > 0 {
            results.w3 = Some(self.w3(redis, push_stream).await.context("W3")?);
        }
        Ok(())
    }

    fn watched(&self) -> Watched {
        self.cluster.watched(self.redis_pid)
    }

    fn windows(&mut self, measured: Duration) -> Windows {
        self.windows += 2;
        Windows { warm_up_id: self.windows - 1, measured_id: self.windows, warm_up: self.args.warm_up(), measured }
    }

    /// Fresh fanout processes, unless the current ones have not served yet.
    async fn fresh_fanouts(&mut self) -> anyhow::Result<()> {
        if !self.fresh {
            self.cluster.restart_fanouts().await?;
        }
        self.fresh = false;
        Ok(())
    }

    /// One warm-up and measured window of `load`, then the drain.
    #[allow(clippy::too_many_arguments, reason = "one window's every input, named at the call")]
    async fn measure(
        &mut self,
        system: System,
        streams: usize,
        load: Load,
        board: &Arc<Board>,
        publisher: Arc<dyn Publisher>,
        watched: &Watched,
        measured: Duration,
    ) -> anyhow::Result<Measurement> {
        let windows = self.windows(measured);
        let before = board.health();
        let (sent, start) = match load {
            Load::Fixed { senders, period } => {
                load::open_loop(senders, period, windows, publisher, board, watched).await?
            }
            Load::Saturation { slots } => load::closed_loop(slots, windows, publisher, board, watched).await?,
        };
        // W1 and its baselines: every message reaches every receiver.
        let expected = sent.measured * streams as u64;
        let complete = load::drain(board, windows.measured_id, expected, DRAIN_QUIET).await;
        let spent = start.until(&watched.snapshot());
        let received = board.collect(windows.measured_id);
        let health = received.health.minus(&before);
        Ok(Measurement { system, streams, load, measured, sent, expected, complete, received, health, spent })
    }

    /// W3: the fan-out job.
    async fn w3(
        &mut self,
        redis: &mut redis::aio::MultiplexedConnection,
        push_stream: &str,
    ) -> anyhow::Result<jobs::JobRun> {
        let followers = self.args.w3_followers;
        eprintln!("fanout: W3: writing {followers} follow edges");
        let insert = jobs::insert_followers(&self.admin, followers).await?;
        let mut client = FanoutServiceClient::new(fanfare::connect(&self.cluster.fanouts[0].url()).await?);
        let counted = jobs::follower_count(&mut client).await?;
        eprintln!("fanout: W3: {followers} followers written in {insert:.1?}; GetFollowCounts reads {counted}");
        let expected_seconds = followers as f64 / f64::from(self.args.w3_rate.max(1));
        let timeout = Duration::from_secs_f64((expected_seconds * 20.0).clamp(120.0, 900.0));
        let watched = self.watched();
        let outcome = match jobs::run_job(&mut client, self.args.w3_rate, timeout, &watched).await? {
            Ok((job, observed, spent)) => {
                let read_back = !self.args.w3_skip_read_back;
                let figures = jobs::figures(&job, observed, spent, redis, push_stream, followers, read_back).await?;
                eprintln!(
                    "fanout: W3: job {} with {} of {} followers, {:.0} followers/s, XLEN {}",
                    figures.state,
                    figures.done,
                    figures.total,
                    figures.rate(),
                    figures.stream_len
                );
                Ok(figures)
            }
            Err(unavailable) => {
                eprintln!("fanout: W3: {unavailable}");
                Err(unavailable)
            }
        };
        Ok(jobs::JobRun { followers, insert, counted, outcome })
    }
}

/// redis-server's pid, when its `/proc` entry is visible from here.
async fn redis_server_pid(connection: &mut redis::aio::MultiplexedConnection) -> Option<u32> {
    let info: String = redis::cmd("INFO").arg("server").query_async(connection).await.ok()?;
    let pid: u32 = info.lines().find_map(|line| line.strip_prefix("process_id:"))?.trim().parse().ok()?;
    std::path::Path::new(&format!("/proc/{pid}/stat")).exists().then_some(pid)
}
