//! The outbox relay: publishes each committed update to its group's bus channel, then
//! acknowledges it. Woken after every commit, and polling as a fallback, so an update whose
//! publish was interrupted (a crash between commit and publish, Redis down) goes out when
//! the relay next runs — on this pod or, once the claim's lease expires, another.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
/// Held updates are given up this long before their claim ends, so they are claimed again
/// (in order, with whatever came after them) rather than published under an expired lease.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// What one relay pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Nothing was waiting.
    Idle,
    /// This many updates were published and acknowledged.
    Published(usize),
    /// Publishing failed; what was not published is retried first by the next pass (or,
    /// once its claim has run out, claimed again).
    Failed,
}

/// Claimed updates whose publish failed, still under this relay's claim until `until`.
struct Held {
    items: Vec<OutboxItem>,
    until: Instant,
}

/// Publishes committed updates from the outbox to the bus.
pub struct Relay {
    store: Arc<dyn MessageStore>,
    bus: Arc<dyn UpdateBus>,
    /// What a failed pass could not publish. The next pass retries it before claiming
    /// anything new: a newer claim would hand out later updates of the same groups while
    /// these stay claimed, and publish them first.
    held: Mutex<Option<Held>>,
}

impl Relay {
    /// A relay from `store`'s outbox to `bus`.
    pub fn new(store: Arc<dyn MessageStore>, bus: Arc<dyn UpdateBus>) -> Self {
        Self { store, bus, held: Mutex::new(None) }
    }

    /// The held updates, unless their claim is about to end.
    fn take_held(&self) -> Option<Held> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner).take()?;
        (Instant::now() + LEASE_MARGIN < held.until).then_some(held)
    }

    /// One pass: retry what a failed pass held, or claim a batch; publish it in order,
    /// acknowledge what went out.
    pub async fn run_once(&self) -> RelayOutcome {
        let Held { items: claimed, until } = match self.take_held() {
            Some(held) => held,
            None => {
                let until = Instant::now() + CLAIM_LEASE;
                match self.store.claim_outbox(CLAIM_BATCH, CLAIM_LEASE, Utc::now()).await {
                    Ok(items) => Held { items, until },
                    Err(error) => {
                        tracing::warn!(error = ?error, "outbox claim failed");
                        return RelayOutcome::Failed;
                    }
                }
            }
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
            let rest = claimed[count..].to_vec();
            *self.held.lock().unwrap_or_else(PoisonError::into_inner) = Some(Held { items: rest, until });
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
