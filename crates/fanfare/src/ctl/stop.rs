//! When a follow-along command (`tail`, `jobs watch`) stops: Ctrl-C, `--timeout`, or
//! `--count` items seen.

use std::future::Future;
use std::time::Duration;

use clap::Args;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// `--count` and `--timeout` of a follow-along command.
#[derive(Debug, Clone, Copy, Args)]
pub(super) struct Limits {
    /// Stop after this many updates (`tail user`: frames carrying updates) and exit 0; with
    /// --timeout, fail if they do not come in time.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Stop after this many seconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
}

/// Why waiting ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stopped {
    /// Ctrl-C.
    Interrupted,
    /// `--timeout` ran out.
    TimedOut,
}

/// Races every wait of one command against Ctrl-C and its deadline.
pub(super) struct Stop {
    limits: Limits,
    interrupted: CancellationToken,
    deadline: Option<Instant>,
}

impl Stop {
    /// Starts listening for Ctrl-C and starts the `--timeout` clock.
    pub(super) fn new(limits: Limits) -> Self {
        let interrupted = CancellationToken::new();
        let on_signal = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        let deadline = limits.timeout.map(|seconds| Instant::now() + Duration::from_secs(seconds));
        Self { limits, interrupted, deadline }
    }

    /// `future`'s output, unless Ctrl-C or the deadline comes first.
    pub(super) async fn run<F: Future>(&self, future: F) -> Result<F::Output, Stopped> {
        let deadline = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            output = future => Ok(output),
            () = self.interrupted.cancelled() => Err(Stopped::Interrupted),
            () = deadline => Err(Stopped::TimedOut),
        }
    }

    /// Whether `seen` items reach `--count`.
    pub(super) fn enough(&self, seen: u64) -> bool {
        self.limits.count.is_some_and(|count| seen >= count)
    }

    /// Whether `--count` was given.
    pub(super) fn counting(&self) -> bool {
        self.limits.count.is_some()
    }

    /// The outcome of stopping early having seen `seen` items: Ctrl-C and a plain timeout
    /// are a normal end; a timeout before `--count` items is a failure (tests rely on it).
    pub(super) fn finish(&self, stopped: Stopped, seen: u64, what: &str) -> anyhow::Result<()> {
        match (stopped, self.limits.count, self.limits.timeout) {
            (Stopped::TimedOut, Some(count), Some(timeout)) => {
                anyhow::bail!("timed out after {timeout} s having seen {seen} of {count} {what}")
            }
            _ => Ok(()),
        }
    }
}
