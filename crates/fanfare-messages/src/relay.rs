//! The outbox relay: publishes each committed update to its group's bus channel, then
//! acknowledges it. Woken after every commit, and polling as a fallback, so an update whose
//! publish was interrupted (a crash between commit and publish, Redis down) goes out when
//! the relay next runs — on this pod or, once the claim's lease expires, another.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use fanfare_bus::{UpdateBus, group_channel};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::OutboxItem;
use crate::store::MessageStore;

/// Most updates claimed at once.
const CLAIM_BATCH: u32 = 1_000;
/// How long a claim protects updates from other relays.
const CLAIM_LEASE: Duration = Duration::from_secs(10);
/// How often the relay looks for work it was not woken for (crash recovery, other pods).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long to wait after the bus or the store failed.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// What one relay pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Nothing was waiting.
    Idle,
    /// This many updates were published and acknowledged.
    Published(usize),
    /// Publishing failed; what was not published is retried first by the next pass.
    Failed,
}

/// Publishes committed updates from the outbox to the bus.
pub struct Relay {
    store: Arc<dyn MessageStore>,
    bus: Arc<dyn UpdateBus>,
    /// What a failed pass could not publish, in order. The next pass retries it before
    /// claiming anything new: a newer claim would hand out later updates of the same groups
    /// while these stay claimed, and publish them first. Kept past the claim's lease too: if
    /// another relay takes them over meanwhile, a repeat is recognisable by its event_seq,
    /// while giving them up would let later updates overtake them.
    held: Mutex<Vec<OutboxItem>>,
}

impl Relay {
    /// A relay from `store`'s outbox to `bus`.
    pub fn new(store: Arc<dyn MessageStore>, bus: Arc<dyn UpdateBus>) -> Self {
        Self { store, bus, held: Mutex::new(Vec::new()) }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Vec<OutboxItem>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One pass: retry what a failed pass held, or claim a batch; publish it in order,
    /// acknowledge what went out.
    pub async fn run_once(&self) -> RelayOutcome {
        let held = std::mem::take(&mut *self.held());
        let claimed = if held.is_empty() {
            match self.store.claim_outbox(CLAIM_BATCH, CLAIM_LEASE, Utc::now()).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(error = ?error, "outbox claim failed");
                    return RelayOutcome::Failed;
                }
            }
        } else {
            held
        };
        if claimed.is_empty() {
            return RelayOutcome::Idle;
        }
        let mut published = Vec::with_capacity(claimed.len());
        for item in &claimed {
            let channel = group_channel(item.update.group_id.get());
            if let Err(error) = self.bus.publish(&channel, item.update.payload.clone()).await {
                // Stop at the first failure so a group's updates never go out of order; the
                // rest are held and retried first by the next pass.
                tracing::warn!(error = ?error, group_id = %item.update.group_id, "publish failed; will retry");
                break;
            }
            published.push(item.id);
        }
        let count = published.len();
        if count < claimed.len() {
            *self.held() = claimed[count..].to_vec();
        }
        if let Err(error) = self.store.ack_outbox(&published).await {
            // Unacknowledged updates are published again later: subscribers recognise
            // them by event_seq.
            tracing::warn!(error = ?error, "outbox ack failed");
            return RelayOutcome::Failed;
        }
        metrics::counter!("fanfare_messages_published_total").increment(count as u64);
        if count < claimed.len() { RelayOutcome::Failed } else { RelayOutcome::Published(count) }
    }

    /// Runs until `shutdown`, woken by `committed` and polling every second.
    pub async fn run(self, committed: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            let outcome = self.run_once().await;
            let wait = match outcome {
                // More may be waiting: go again at once.
                RelayOutcome::Published(_) => continue,
                RelayOutcome::Idle => POLL_INTERVAL,
                RelayOutcome::Failed => RETRY_DELAY,
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = committed.notified(), if outcome == RelayOutcome::Idle => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
