//! The closed-loop load generator: `concurrency` workers share a range of call numbers,
//! each sending its next call as soon as the previous one answers, until the range is used
//! up or a deadline passes ([`run`]); or each worker is one sender making its own calls for
//! a bounded time ([`run_senders`]). Every call's latency is kept, so percentiles are exact.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cpu::{CpuSnapshot, CpuUsage};

/// What a window of calls did.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Calls that succeeded.
    pub succeeded: u64,
    /// Calls that failed.
    pub failed: u64,
    /// The first failure, for the log.
    pub first_error: Option<String>,
    /// From the first call sent to the last answer.
    pub elapsed: Duration,
    /// Every call's latency (failures included), sorted.
    pub latencies: Latencies,
    /// Where the CPU went meanwhile, where `/proc` says.
    pub cpu: Option<CpuUsage>,
    /// Whether the deadline cut the window short.
    pub cut_short: bool,
}

impl Outcome {
    /// Successful calls per second.
    pub(crate) fn rate(&self) -> f64 {
        self.succeeded as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Fails unless every call succeeded.
    pub(crate) fn ensure_no_failures(&self, what: &str) -> anyhow::Result<()> {
        match &self.first_error {
            None => Ok(()),
            Some(error) => anyhow::bail!("{} of {what} failed; the first: {error}", self.failed),
        }
    }
}

/// Sorted per-call latencies.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latencies(Vec<Duration>);

impl Latencies {
    /// The nearest-rank percentile `percent` (0–100]; zero when there were no calls.
    pub(crate) fn percentile(&self, percent: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = (percent / 100.0 * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    /// The median.
    pub(crate) fn p50(&self) -> Duration {
        self.percentile(50.0)
    }

    /// The 99th percentile.
    pub(crate) fn p99(&self) -> Duration {
        self.percentile(99.0)
    }

    /// The slowest call.
    pub(crate) fn max(&self) -> Duration {
        self.0.last().copied().unwrap_or_default()
    }
}

/// Runs `call(n)` for every `n` in `calls` with `concurrency` calls in flight, stopping
/// early (between calls) at `deadline`.
pub(crate) async fn run<Call, Fut>(
    concurrency: usize,
    calls: Range<u64>,
    deadline: Instant,
    call: Call,
) -> anyhow::Result<Outcome>
where
    Call: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    debug_assert!(concurrency > 0, "at least one worker");
    let next = Arc::new(AtomicU64::new(calls.start));
    let end = calls.end;
    let cpu_before = CpuSnapshot::take();
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let next = Arc::clone(&next);
        let call = call.clone();
        workers.spawn(async move {
            let mut report = WorkerReport::default();
            loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                if number >= end {
                    break;
                }
                if Instant::now() >= deadline {
                    report.cut_short = true;
                    break;
                }
                let sent = Instant::now();
                let result = call(number).await;
                report.latencies.push(sent.elapsed());
                match result {
                    Ok(()) => report.succeeded += 1,
                    Err(error) => {
                        report.failed += 1;
                        report.first_error.get_or_insert_with(|| format!("{error:#}"));
                    }
                }
            }
            report
        });
    }
    collect(workers, cpu_before, started, usize::try_from(end - calls.start).unwrap_or(0)).await
}

/// How long each sender of [`run_senders`] keeps calling.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SenderBounds {
    /// A sender starts no call after this long…
    pub duration: Duration,
    /// …once it has made at least this many calls (a warm-up that must touch every group a
    /// sender sends to sets it; 0 otherwise)…
    pub min_calls: u64,
    /// …and none after this long in any case.
    pub hard_limit: Duration,
}

impl SenderBounds {
    /// Exactly `duration`.
    pub(crate) fn time(duration: Duration) -> Self {
        Self { duration, min_calls: 0, hard_limit: duration }
    }
}

/// Runs `senders` workers, worker `w` calling `call(w)` again as soon as its previous call
/// answers, each until `bounds` says stop. The window's latency percentiles, CPU and
/// elapsed time cover exactly these calls.
pub(crate) async fn run_senders<Call, Fut>(senders: usize, bounds: SenderBounds, call: Call) -> anyhow::Result<Outcome>
where
    Call: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    debug_assert!(senders > 0, "at least one sender");
    let cpu_before = CpuSnapshot::take();
    let started = Instant::now();
    let soft_end = started + bounds.duration;
    let hard_end = started + bounds.hard_limit.max(bounds.duration);
    let mut workers = tokio::task::JoinSet::new();
    for sender in 0..senders {
        let call = call.clone();
        workers.spawn(async move {
            let mut report = WorkerReport::default();
            let mut calls = 0u64;
            loop {
                let now = Instant::now();
                if now >= hard_end {
                    report.cut_short = calls < bounds.min_calls;
                    break;
                }
                if now >= soft_end && calls >= bounds.min_calls {
                    break;
                }
                calls += 1;
                let result = call(sender).await;
                report.latencies.push(now.elapsed());
                match result {
                    Ok(()) => report.succeeded += 1,
                    Err(error) => {
                        report.failed += 1;
                        report.first_error.get_or_insert_with(|| format!("{error:#}"));
                    }
                }
            }
            report
        });
    }
    collect(workers, cpu_before, started, 0).await
}

/// Waits for the workers and sums their reports into one [`Outcome`].
async fn collect(
    mut workers: tokio::task::JoinSet<WorkerReport>,
    cpu_before: Option<CpuSnapshot>,
    started: Instant,
    expected_calls: usize,
) -> anyhow::Result<Outcome> {
    let mut latencies = Vec::with_capacity(expected_calls);
    let mut total = WorkerReport::default();
    while let Some(joined) = workers.join_next().await {
        let report = joined.context("a load worker panicked")?;
        latencies.extend(report.latencies);
        total.succeeded += report.succeeded;
        total.failed += report.failed;
        total.cut_short |= report.cut_short;
        if total.first_error.is_none() {
            total.first_error = report.first_error;
        }
    }
    let elapsed = started.elapsed();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu = cpu_before.zip(CpuSnapshot::take()).map(|(before, after)| before.until(&after, cores));
    latencies.sort_unstable();
    Ok(Outcome {
        succeeded: total.succeeded,
        failed: total.failed,
        first_error: total.first_error,
        elapsed,
        latencies: Latencies(latencies),
        cpu,
        cut_short: total.cut_short,
    })
}

#[derive(Debug, Default)]
struct WorkerReport {
    latencies: Vec<Duration>,
    succeeded: u64,
    failed: u64,
    first_error: Option<String>,
    cut_short: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let latencies = Latencies((1..=100).map(Duration::from_millis).collect());
        assert_eq!(latencies.p50(), Duration::from_millis(50));
        assert_eq!(latencies.p99(), Duration::from_millis(99));
        assert_eq!(latencies.max(), Duration::from_millis(100));
        assert_eq!(Latencies::default().p99(), Duration::ZERO);
    }

    #[tokio::test]
    async fn runs_every_call_once() {
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        let deadline = Instant::now() + Duration::from_secs(60);
        let outcome = run(4, 10..110, deadline, move |number| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(number, Ordering::Relaxed);
                Ok(())
            }
        })
        .await
        .unwrap();
        assert_eq!(outcome.succeeded, 100);
        assert_eq!(seen.load(Ordering::Relaxed), (10..110).sum::<u64>());
        assert!(!outcome.cut_short);
    }

    #[tokio::test]
    async fn senders_make_their_minimum_calls() {
        let calls = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
        let counters = Arc::clone(&calls);
        let bounds = SenderBounds { duration: Duration::ZERO, min_calls: 5, hard_limit: Duration::from_secs(60) };
        let outcome = run_senders(3, bounds, move |sender| {
            let counters = Arc::clone(&counters);
            async move {
                counters[sender].fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        })
        .await
        .unwrap();
        assert_eq!(outcome.succeeded, 15);
        assert!(calls.iter().all(|count| count.load(Ordering::Relaxed) == 5));
        assert!(!outcome.cut_short);
    }
}
