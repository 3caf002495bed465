//! The messages outbox over a W2 window, sampled from the admin pool: how many committed
//! updates were not yet acknowledged (published and deleted by the committing pod), and
//! how old the oldest of them was. A pod publishes and deletes its own rows within
//! milliseconds of the commit, so a backlog that grows, or whose oldest row ages towards
//! the recovery grace, is a publisher falling behind.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One reading of the outbox.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct BacklogSample {
    /// Rows in the outbox.
    pub rows: i64,
    /// Age of the oldest row (`now() - committed_at`), if there was one.
    pub oldest: Option<Duration>,
}

/// What the samples of a window say.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Backlog {
    /// Readings taken.
    pub samples: usize,
    /// Readings that failed (skipped).
    pub failed: usize,
    /// The most rows at any reading.
    pub max_rows: i64,
    /// The oldest row at any reading.
    pub max_age: Duration,
    /// Rows when the last message had been sent.
    pub at_end: i64,
}

impl Backlog {
    /// The summary of `samples` (in any order), with `at_end` read after the last send.
    pub(super) fn summarize(samples: &[BacklogSample], failed: usize, at_end: i64) -> Self {
        Self {
            samples: samples.len(),
            failed,
            max_rows: samples.iter().map(|sample| sample.rows).max().unwrap_or(0).max(at_end),
            max_age: samples.iter().filter_map(|sample| sample.oldest).max().unwrap_or_default(),
            at_end,
        }
    }

    /// Whether the oldest row stayed younger than `limit` at every reading.
    pub(super) fn bounded_by(&self, limit: Duration) -> bool {
        self.max_age < limit
    }
}

/// Reads the outbox once.
pub(super) async fn sample(admin: &PgPool) -> anyhow::Result<BacklogSample> {
    let (rows, oldest_seconds): (i64, Option<f64>) =
        sqlx::query_as("SELECT count(*), EXTRACT(EPOCH FROM now() - min(committed_at))::float8 FROM messages.outbox")
            .fetch_one(admin)
            .await
            .context("sampling the messages outbox")?;
    let oldest = oldest_seconds.map(|seconds| Duration::from_secs_f64(seconds.max(0.0)));
    Ok(BacklogSample { rows, oldest })
}

/// Samples the outbox every `period` from `from` until stopped, or for `limit` at most.
pub(super) struct Sampler {
    stop: CancellationToken,
    task: JoinHandle<(Vec<BacklogSample>, usize)>,
}

impl Sampler {
    /// Starts sampling in the background.
    pub(super) fn start(admin: PgPool, from: Instant, period: Duration, limit: Duration) -> Self {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let (mut samples, mut failed) = (Vec::new(), 0);
            let end = from + limit;
            let mut next = from;
            while next < end {
                tokio::select! {
                    () = stopped.cancelled() => break,
                    () = tokio::time::sleep_until(next.into()) => {}
                }
                match sample(&admin).await {
                    Ok(reading) => samples.push(reading),
                    Err(_) => failed += 1,
                }
                next += period.max(Duration::from_millis(10));
            }
            (samples, failed)
        });
        Self { stop, task }
    }

    /// Stops sampling and summarizes, with a last reading now as the count at the end.
    pub(super) async fn finish(self, admin: &PgPool) -> anyhow::Result<Backlog> {
        self.stop.cancel();
        let (mut samples, failed) = self.task.await.context("the outbox sampler panicked")?;
        let last = sample(admin).await?;
        samples.push(last);
        Ok(Backlog::summarize(&samples, failed, last.rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(rows: i64, oldest_ms: Option<u64>) -> BacklogSample {
        BacklogSample { rows, oldest: oldest_ms.map(Duration::from_millis) }
    }

    #[test]
    fn the_summary_keeps_the_largest_backlog_and_the_oldest_row() {
        let samples = [reading(0, None), reading(120, Some(40)), reading(80, Some(900)), reading(3, Some(2))];
        let backlog = Backlog::summarize(&samples, 1, 3);
        assert_eq!(backlog.samples, 4);
        assert_eq!(backlog.failed, 1);
        assert_eq!(backlog.max_rows, 120);
        assert_eq!(backlog.max_age, Duration::from_millis(900));
        assert_eq!(backlog.at_end, 3);
        assert!(backlog.bounded_by(Duration::from_secs(5)));
        assert!(!backlog.bounded_by(Duration::from_millis(900)));
    }

    #[test]
    fn an_empty_outbox_summarizes_to_nothing() {
        let backlog = Backlog::summarize(&[reading(0, None)], 0, 0);
        assert_eq!((backlog.max_rows, backlog.max_age, backlog.at_end), (0, Duration::ZERO, 0));
        assert_eq!(Backlog::summarize(&[], 0, 7).max_rows, 7);
    }
}
