//! The senders. Two shapes, each a warm-up (its own window, excluded) then a measured
//! window, with the CPU counters read at the boundary:
//!
//! - [`open_loop`] (WORKLOADS.md): sender j's k-th message is due at t0 + phase_j + k ×
//!   period; a late sender does not skip messages, it sends them back to back. Each sender
//!   has one message in flight, so its messages are committed in the order it sent them.
//! - [`closed_loop`] (saturation): each of a few slots sends its next message as soon as
//!   its previous one has reached every receiver: as fast as the whole path delivers,
//!   without ever queueing more than `slots` messages per stream.
//!
//! Then [`drain`] waits for the last deliveries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::payload::Tag;
use super::probe::{Snapshot, Watched};
use super::tally::Board;

/// How long a closed-loop slot waits for its message to reach every receiver before it
/// gives up on it (and counts it) and sends the next.
const DELIVERY_WAIT: Duration = Duration::from_secs(5);

/// Sends one benchmark message.
#[async_trait]
pub(super) trait Publisher: Send + Sync + 'static {
    /// Sends `text` as logical sender `sender`, its message number `seq`.
    async fn publish(&self, sender: u32, seq: u64, text: String) -> anyhow::Result<()>;
}

/// The two windows of a load and how long each lasts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Windows {
    /// Window id of the warm-up's messages.
    pub warm_up_id: u32,
    /// Window id of the measured messages.
    pub measured_id: u32,
    /// Warm-up length.
    pub warm_up: Duration,
    /// Measured length.
    pub measured: Duration,
}

/// What the senders did.
#[derive(Debug, Default)]
pub(super) struct Sent {
    /// Messages of the measured window sent successfully.
    pub measured: u64,
    /// Sends that failed.
    pub failed: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Open loop: the latest a measured message was sent after it was due.
    pub max_late: Duration,
    /// Closed loop: messages that had not reached every receiver after [`DELIVERY_WAIT`].
    pub stalled: u64,
}

#[derive(Default)]
struct Counters {
    measured: AtomicU64,
    failed: AtomicU64,
    max_late_us: AtomicU64,
    stalled: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn sent(&self, measured: bool, result: anyhow::Result<()>) -> bool {
        match result {
            Ok(()) => {
                if measured {
                    self.measured.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                first.get_or_insert_with(|| format!("{error:#}"));
                return false;
            }
        }
        true
    }

    fn into_sent(self) -> Sent {
        Sent {
            measured: self.measured.into_inner(),
            failed: self.failed.into_inner(),
            first_error: self.first_error.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
            max_late: Duration::from_micros(self.max_late_us.into_inner()),
            stalled: self.stalled.into_inner(),
        }
    }
}

/// `senders` senders, each sending one message every `period`, phases spread evenly over
/// the period. Returns what was sent and the CPU counters at the start of the measured window.
pub(super) async fn open_loop(
    senders: u32,
    period: Duration,
    windows: Windows,
    publisher: Arc<dyn Publisher>,
    board: &Arc<Board>,
    watched: &Watched,
) -> anyhow::Result<(Sent, Snapshot)> {
    let counters = Arc::new(Counters::default());
    let t0 = Instant::now() + Duration::from_millis(100);
    let measured_from = t0 + windows.warm_up;
    let end = measured_from + windows.measured;
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..senders {
        let (counters, publisher, board) = (Arc::clone(&counters), Arc::clone(&publisher), Arc::clone(board));
        let phase = period.mul_f64(f64::from(sender) / f64::from(senders.max(1)));
        tasks.spawn(async move {
            for k in 0u32.. {
                let due = t0 + phase + period * k;
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let measured = due >= measured_from;
                if measured {
                    let late = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                    counters.max_late_us.fetch_max(late, Ordering::Relaxed);
                }
                let window = if measured { windows.measured_id } else { windows.warm_up_id };
                let id = board.next_message();
                let text = Tag::stamp(window, sender, u64::from(id), id);
                counters.sent(measured, publisher.publish(sender, u64::from(id), text).await);
            }
        });
    }
    tokio::time::sleep_until(measured_from.into()).await;
    let start = watched.snapshot();
    while let Some(joined) = tasks.join_next().await {
        joined?;
    }
    let counters = Arc::into_inner(counters).unwrap_or_default();
    Ok((counters.into_sent(), start))
}

/// `slots` slots, each sending its next message once the previous one reached every
/// receiver (see [`Board::set_receivers`]).
pub(super) async fn closed_loop(
    slots: u32,
    windows: Windows,
    publisher: Arc<dyn Publisher>,
    board: &Arc<Board>,
    watched: &Watched,
) -> anyhow::Result<(Sent, Snapshot)> {
    let counters = Arc::new(Counters::default());
    let t0 = Instant::now();
    let measured_from = t0 + windows.warm_up;
    let end = measured_from + windows.measured;
    let mut tasks = tokio::task::JoinSet::new();
    for slot in 0..slots {
        let (counters, publisher, board) = (Arc::clone(&counters), Arc::clone(&publisher), Arc::clone(board));
        tasks.spawn(async move {
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let measured = now >= measured_from;
                let window = if measured { windows.measured_id } else { windows.warm_up_id };
                let id = board.next_message();
                let text = Tag::stamp(window, slot, u64::from(id), id);
                if !counters.sent(measured, publisher.publish(slot, u64::from(id), text).await) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                if tokio::time::timeout(DELIVERY_WAIT, board.wait_delivered(slot, id)).await.is_err() {
                    counters.stalled.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    tokio::time::sleep_until(measured_from.into()).await;
    let start = watched.snapshot();
    while let Some(joined) = tasks.join_next().await {
        joined?;
    }
    let counters = Arc::into_inner(counters).unwrap_or_default();
    Ok((counters.into_sent(), start))
}

/// Waits until `window` has `expected` deliveries, or until none arrived for `quiet`.
/// Returns whether every one arrived.
pub(super) async fn drain(board: &Board, window: u32, expected: u64, quiet: Duration) -> bool {
    let mut last = board.delivered(window);
    let mut last_change = Instant::now();
    loop {
        let now = board.delivered(window);
        if now >= expected {
            return true;
        }
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= quiet {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
