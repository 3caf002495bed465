//! Reaction coalescing for large groups: a reaction there changes the totals at once but
//! appends no update; the message is marked, and once per window one `ReactionsChanged`
//! update carrying the totals is appended for every marked message. A viral post's
//! thousands of taps cost one update per window instead of one each.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fanfare_core::ids::{GroupId, MessageSeq};
use tokio_util::sync::CancellationToken;

use crate::committer::Committer;
use crate::store::LogWrite;

/// Messages whose totals changed since the last flush.
#[derive(Default)]
pub struct ReactionCoalescer {
    pending: Mutex<BTreeSet<(GroupId, MessageSeq)>>,
}

impl ReactionCoalescer {
    /// A coalescer with nothing pending.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Marks a message whose totals changed.
    pub fn mark(&self, group: GroupId, message_seq: MessageSeq) {
        self.lock().insert((group, message_seq));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(GroupId, MessageSeq)>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one totals update per marked message; returns how many.
    pub async fn flush(&self, committer: &Committer) -> usize {
        let marked = std::mem::take(&mut *self.lock());
        let writes: Vec<LogWrite> = marked
            .into_iter()
            .map(|(group, message_seq)| LogWrite::EmitReactionTotals { group, message_seq })
            .collect();
        let count = writes.len();
        for result in committer.submit_all(writes).await {
            if let Err(error) = result {
                // The totals are stored; only this update is lost, and the next change of
                // the message (or a history read) carries them.
                tracing::warn!(error = ?error, "coalesced reaction update failed");
            }
        }
        count
    }

    /// Flushes every `window` until `shutdown`, then once more.
    pub async fn run(self: Arc<Self>, committer: Committer, window: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(window);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => { self.flush(&committer).await; }
                () = shutdown.cancelled() => {
                    self.flush(&committer).await;
                    return;
                }
            }
        }
    }
}
