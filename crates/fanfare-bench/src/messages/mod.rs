//! The messages benchmark (WORKLOADS.md W4, and the hot group of the group-commit issue):
//!
//! 1. `SendMessage` at 1, 8 and 64 concurrent senders (distinct users, each a member of the
//!    groups it sends to) into one COMMUNITY group and spread over 1,000 groups, each window
//!    beside the raw single-row INSERT of the same row shape at the same concurrency;
//! 2. one hot group at hundreds of sends in flight, through the service and straight
//!    through its committer on the store (no gRPC), with a few commit settings, checked
//!    gapless at the end;
//! 3. the naive per-message counter (bump the group's counter row, insert, commit) into one
//!    group, the design group commit replaces.
//!
//! Every window is closed-loop: each sender sends its next message when the previous one
//! answers, for a warm-up (excluded) and then a measured time. Every window is repeated
//! `--runs` times, each run on a freshly started messages service; the report gives the
//! median run and the range.
//!
//! The messages service runs on a tokio runtime of its own in this process
//! ([`runtime::ServiceRuntime`]), so each window also says what the service itself spent
//! per send, apart from the load generator and the groups service.

mod counting;
mod results;
mod runtime;
mod target;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fanfare_messages::config::CommitConfig;

use crate::driver::{self, Outcome, SenderBounds};
use crate::report::Section;
use results::{HotPath, Results, Sample};
use target::{CommitterBus, Spread, Target, TargetSize};

/// A warm-up that must touch every group of a sender stops after this long regardless.
const WARM_UP_HARD_LIMIT: Duration = Duration::from_secs(60);

/// Options of the messages benchmark.
#[derive(Debug, Clone, Args)]
pub(crate) struct MessagesArgs {
    /// Concurrent senders of the send windows (W4), each a distinct user.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 64])]
    pub senders: Vec<usize>,

    /// Groups the spread windows send over.
    #[arg(long, default_value_t = 1_000)]
    pub spread_groups: usize,

    /// Sends in flight in the hot group (each a distinct sender).
    #[arg(long, value_delimiter = ',', default_values_t = [256, 512])]
    pub hot_in_flight: Vec<usize>,

    /// Calls in flight of the naive per-message counter windows.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 64, 256])]
    pub naive_in_flight: Vec<usize>,

    /// Commit settings of the messages service in the send windows, as
    /// workers/batch_max/wait_us (the default is the service's default).
    #[arg(long, default_value = "1/256/0")]
    pub commit: CommitSetting,

    /// Commit settings the hot group is measured with, through the service and straight
    /// through the committer. When --commit is among them, the committer is also measured
    /// publishing to an in-process bus nobody listens on (committing and acknowledging,
    /// without Redis).
    #[arg(long, value_delimiter = ',', default_values = ["1/256/0", "2/256/0", "4/256/0", "8/256/0", "1/256/1000"])]
    pub hot_commit: Vec<CommitSetting>,

    /// Measured seconds of each window.
    #[arg(long, default_value_t = 5.0)]
    pub window_seconds: f64,

    /// Warm-up seconds before each window (excluded); in the spread windows each sender
    /// also sends at least once to each of its groups first.
    #[arg(long, default_value_t = 2.0)]
    pub warm_up_seconds: f64,

    /// How many times every window runs (each run on a freshly started messages service).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,

    /// HTTP/2 connections the load generator spreads its sends over.
    #[arg(long, default_value_t = 8)]
    pub message_channels: usize,

    /// Postgres connections of the messages service's pool (the production default).
    #[arg(long, default_value_t = 16)]
    pub messages_pool_size: u32,

    /// Most connections of a raw baseline's pool: a window gets one connection per call in
    /// flight up to this.
    #[arg(long, default_value_t = 64)]
    pub raw_max_connections: u32,

    /// Publish committed updates through this Redis (e.g. redis://127.0.0.1:6379) instead
    /// of an in-process bus nobody listens on.
    #[arg(long)]
    pub redis_url: Option<String>,
}

impl MessagesArgs {
    fn window(&self) -> Duration {
        Duration::from_secs_f64(self.window_seconds.max(0.1))
    }

    fn warm_up(&self) -> Duration {
        Duration::from_secs_f64(self.warm_up_seconds.max(0.0))
    }

    fn max_senders(&self) -> usize {
        self.senders.iter().copied().max().unwrap_or(1)
    }

    fn max_hot(&self) -> usize {
        self.hot_in_flight.iter().chain(&self.naive_in_flight).copied().max().unwrap_or(1)
    }
}

/// The committer's settings: workers, most writes per batch, and how long a batch waits
/// for company (`FANFARE_MESSAGES_COMMIT_WORKERS`, `…_BATCH_MAX`, `…_BATCH_WAIT_US`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommitSetting {
    /// Batches committed at once.
    pub workers: usize,
    /// Most writes per batch.
    pub batch_max: usize,
    /// Microseconds the first write of a batch waits.
    pub wait_us: u64,
}

impl CommitSetting {
    /// The service's configuration with these settings (the queue keeps its default).
    pub(crate) fn config(self) -> CommitConfig {
        CommitConfig {
            commit_workers: self.workers,
            commit_batch_max: self.batch_max,
            commit_batch_wait_us: self.wait_us,
            ..CommitConfig::default()
        }
    }

    /// Whether these are the service's defaults.
    pub(crate) fn is_default(self) -> bool {
        let default = CommitConfig::default();
        (self.workers, self.batch_max, self.wait_us)
            == (default.commit_workers, default.commit_batch_max, default.commit_batch_wait_us)
    }
}

impl FromStr for CommitSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('/').map(str::trim).collect();
        let [workers, batch_max, wait_us] = parts.as_slice() else {
            return Err(format!("expected workers/batch_max/wait_us, e.g. 4/256/1000, not {text:?}"));
        };
        let number = |what: &str, raw: &str| raw.parse::<u64>().map_err(|_| format!("{what} {raw:?} is not a number"));
        let setting = Self {
            workers: usize::try_from(number("workers", workers)?).map_err(|error| error.to_string())?,
            batch_max: usize::try_from(number("batch_max", batch_max)?).map_err(|error| error.to_string())?,
            wait_us: number("wait_us", wait_us)?,
        };
        if setting.workers == 0 || setting.batch_max == 0 {
            return Err(format!("workers and batch_max must be at least 1 in {text:?}"));
        }
        Ok(setting)
    }
}

impl fmt::Display for CommitSetting {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}/{}", self.workers, self.batch_max, self.wait_us)
    }
}

/// Runs the messages benchmark and returns its report section.
pub(crate) async fn run(args: &MessagesArgs) -> anyhow::Result<Section> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(
        args.senders.iter().chain(&args.hot_in_flight).chain(&args.naive_in_flight).all(|count| *count > 0),
        "every concurrency must be at least 1"
    );
    anyhow::ensure!(args.spread_groups > 0 && args.spread_groups < 4_900, "--spread-groups must be 1 to 4,899");
    // A COMMUNITY group holds 1,000 members by default: its owner and 999 senders.
    anyhow::ensure!(args.max_hot() < 1_000 && args.max_senders() < 1_000, "at most 999 senders per group");
    let size = TargetSize {
        senders: args.max_senders(),
        hot_senders: args.max_hot(),
        spread_groups: args.spread_groups,
        channels: args.message_channels,
        pool_size: args.messages_pool_size,
        raw_max_connections: args.raw_max_connections,
    };
    let mut target = Arc::new(Target::start(size, args.redis_url.as_deref()).await?);
    let mut results = Results::new(args.clone());

    for run in 1..=args.runs {
        eprintln!("messages: run {run} of {}", args.runs);
        restart(&mut target, args.commit).await?;
        for spread in [Spread::One, Spread::Many] {
            for &senders in &args.senders {
                let service = retry(|| send_window(&target, args, spread, senders)).await?;
                let raw = retry(|| raw_window(&target, args, spread, senders)).await?;
                let row = results.send_row(spread, senders);
                eprintln!("{}", row.log_line(&service, &raw));
                row.service.samples.push(service);
                row.raw.samples.push(raw);
            }
        }
        // The hot group with each commit setting: through the service, then straight
        // through a committer on the store, one right after the other.
        let most_in_flight = args.hot_in_flight.iter().copied().max().unwrap_or(1);
        for &setting in &args.hot_commit {
            restart(&mut target, setting).await?;
            for &in_flight in &args.hot_in_flight {
                let sample = retry(|| send_window(&target, args, Spread::Hot, in_flight)).await?;
                let row = results.hot_row(HotPath::Service, setting, in_flight);
                eprintln!("{}", row.log_line(&sample));
                row.series.samples.push(sample);
            }
            target_mut(&mut target)?.stop_messages().await?;
            for &in_flight in &args.hot_in_flight {
                let sample =
                    retry(|| committer_window(&target, args, setting, in_flight, CommitterBus::Service)).await?;
                let row = results.hot_row(HotPath::Committer, setting, in_flight);
                eprintln!("{}", row.log_line(&sample));
                row.series.samples.push(sample);
                // The service's settings once more, right after, publishing to an in-process
                // bus nobody listens on: committing and acknowledging without Redis.
                if setting == args.commit && in_flight == most_in_flight {
                    let sample =
                        retry(|| committer_window(&target, args, setting, in_flight, CommitterBus::InProcess)).await?;
                    let row = results.hot_row(HotPath::CommitterInProcessBus, setting, in_flight);
                    eprintln!("{}", row.log_line(&sample));
                    row.series.samples.push(sample);
                }
            }
        }
        for &in_flight in &args.naive_in_flight {
            let sample = retry(|| naive_window(&target, args, in_flight)).await?;
            let row = results.naive_row(in_flight, target.raw_connections(in_flight));
            eprintln!("{}", row.log_line(&sample));
            row.series.samples.push(sample);
        }
    }

    results.hot_seqs = Some(target.message_seqs(target.hot).await?);
    results.storage = Some(target.storage().await?);
    Arc::into_inner(target).context("a load worker still holds the target")?.stop().await?;
    Ok(results.section())
}

/// Runs a window, and once more if it failed (a shared Postgres can refuse a connection
/// when other work holds most of `max_connections`): a long run is not lost to one hiccup.
async fn retry<Window, Fut>(window: Window) -> anyhow::Result<Sample>
where
    Window: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Sample>>,
{
    match window().await {
        Ok(sample) => Ok(sample),
        Err(error) => {
            eprintln!("messages: a window failed, running it again: {error:#}");
            tokio::time::sleep(Duration::from_secs(2)).await;
            window().await
        }
    }
}

fn target_mut(target: &mut Arc<Target>) -> anyhow::Result<&mut Target> {
    Arc::get_mut(target).context("a load worker still holds the target")
}

async fn restart(target: &mut Arc<Target>, commit: CommitSetting) -> anyhow::Result<()> {
    target_mut(target)?.start_messages(commit).await
}

/// The warm-up of a window of `senders` over `spread`: the configured time, and in the
/// spread windows at least one message from each sender to each of its groups, so the
/// measured window finds the membership cache as a busy pod has it.
fn warm_up_bounds(target: &Target, args: &MessagesArgs, spread: Spread, senders: usize) -> SenderBounds {
    let min_calls = match spread {
        Spread::Many => target.groups_per_sender(spread, senders),
        Spread::One | Spread::Hot => 0,
    };
    SenderBounds { duration: args.warm_up(), min_calls, hard_limit: WARM_UP_HARD_LIMIT }
}

/// Warm-up, then the measured window, of `call`; `what` names it in errors.
async fn window<Call, Fut>(
    target: &Arc<Target>,
    senders: usize,
    warm_up: SenderBounds,
    window: Duration,
    what: &str,
    call: Call,
) -> anyhow::Result<Sample>
where
    Call: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    // Each window starts with an empty outbox: rows an earlier window left unacknowledged
    // (nobody subscribes, so nothing is lost) must not count as this one's.
    target.clear_outbox().await?;
    let warmed = driver::run_senders(senders, warm_up, call.clone()).await?;
    warmed.ensure_no_failures(&format!("the warm-up of {what}"))?;
    let backlog_at_start = target.outbox_backlog().await?;
    let mark = target.store.hook().mark();
    let outcome: Outcome = driver::run_senders(senders, SenderBounds::time(window), call).await?;
    let batches = target.store.hook().since(mark);
    outcome.ensure_no_failures(what)?;
    let backlog = target.outbox_backlog().await?;
    Ok(Sample { outcome, batches, backlog_at_start, backlog })
}

/// `SendMessage` by `senders` senders.
async fn send_window(
    target: &Arc<Target>,
    args: &MessagesArgs,
    spread: Spread,
    senders: usize,
) -> anyhow::Result<Sample> {
    let call_target = Arc::clone(target);
    let call = move |sender: usize| {
        let target = Arc::clone(&call_target);
        async move { target.send(spread, sender, senders).await }
    };
    let bounds = warm_up_bounds(target, args, spread, senders);
    window(target, senders, bounds, args.window(), &format!("SendMessage by {senders} senders"), call).await
}

/// The raw INSERT baseline at the same concurrency, on its own pool.
async fn raw_window(
    target: &Arc<Target>,
    args: &MessagesArgs,
    spread: Spread,
    senders: usize,
) -> anyhow::Result<Sample> {
    let pool = target.raw_pool(senders).await?;
    let (call_target, call_pool) = (Arc::clone(target), pool.clone());
    let call = move |sender: usize| {
        let target = Arc::clone(&call_target);
        let pool = call_pool.clone();
        async move { target.raw_insert(&pool, spread, sender, senders).await }
    };
    let bounds = warm_up_bounds(target, args, spread, senders);
    let sample =
        window(target, senders, bounds, args.window(), &format!("raw INSERT by {senders} senders"), call).await;
    pool.close().await;
    sample
}

/// Posts straight to a committer on the store, into the hot group, its publisher
/// publishing to `bus`.
async fn committer_window(
    target: &Arc<Target>,
    args: &MessagesArgs,
    setting: CommitSetting,
    in_flight: usize,
    bus: CommitterBus,
) -> anyhow::Result<Sample> {
    let (committer, shutdown) = target.start_committer(setting, bus);
    let call_target = Arc::clone(target);
    let call = move |sender: usize| {
        let target = Arc::clone(&call_target);
        let committer = committer.clone();
        async move { target.submit(&committer, sender).await }
    };
    let bounds = warm_up_bounds(target, args, Spread::Hot, in_flight);
    let what = format!("committer posts, {in_flight} in flight");
    let sample = window(target, in_flight, bounds, args.window(), &what, call).await;
    shutdown.cancel();
    sample
}

/// The naive per-message counter into one group.
async fn naive_window(target: &Arc<Target>, args: &MessagesArgs, in_flight: usize) -> anyhow::Result<Sample> {
    let pool = target.raw_pool(in_flight).await?;
    let (call_target, call_pool) = (Arc::clone(target), pool.clone());
    let call = move |sender: usize| {
        let target = Arc::clone(&call_target);
        let pool = call_pool.clone();
        async move { target.naive_send(&pool, sender).await }
    };
    let bounds = warm_up_bounds(target, args, Spread::Hot, in_flight);
    let what = format!("naive counter sends, {in_flight} in flight");
    let sample = window(target, in_flight, bounds, args.window(), &what, call).await;
    pool.close().await;
    sample
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commit_settings() {
        let setting: CommitSetting = "1/256/0".parse().unwrap();
        assert_eq!(setting, CommitSetting { workers: 1, batch_max: 256, wait_us: 0 });
        assert!(setting.is_default());
        assert_eq!(setting.to_string(), "1/256/0");
        let waiting: CommitSetting = "4/256/1000".parse().unwrap();
        assert!(!waiting.is_default());
        assert!("4/256".parse::<CommitSetting>().is_err());
        assert!("0/256/1000".parse::<CommitSetting>().is_err());
    }
}
