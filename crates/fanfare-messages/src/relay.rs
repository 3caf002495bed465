//! The outbox relay: publishes each committed update to its group's bus channel, then
//! acknowledges it. Woken after every commit, and polling as a fallback, so an update whose
//! publish was interrupted (a crash between commit and publish, Redis down) goes out when
//! the relay next runs — on this pod or, once the claim's lease expires, another.
//!
//! A member joining is also published to the new member's user channel, after the group's:
//! fanout streams of that user listen there to start carrying the group at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use fanfare_bus::{BusError, UpdateBus, group_channel, user_channel};
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::group_event::Change as GroupChange;
use fanfare_proto::common::v1::update::Change;
use prost::Message as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::{OutboxItem, StoredUpdate};
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
            if let Err(error) = self.publish(&item.update).await {
                // Stop at the first failure so a group's updates never go out of order; the
                // rest are held and retried first by the next pass (which publishes this one
                // to every channel again: subscribers recognise a repeat by its event_seq).
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

    /// Publishes one update to each of its channels in turn, stopping at the first failure.
    async fn publish(&self, update: &StoredUpdate) -> Result<(), BusError> {
        for channel in channels_of(update) {
            self.bus.publish(&channel, update.payload.clone()).await?;
        }
        Ok(())
    }

    /// Runs until `shutdown`, woken by `committed` and polling every second.
    pub async fn run(self, committed: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            // A stopped relay starts no further pass (it would publish for a service that is
            // gone, racing the pod that replaces it).
            if shutdown.is_cancelled() {
                return;
            }
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

/// The channels an update is published to, in order: its group's, then, when it is a member
/// joining, that user's.
fn channels_of(update: &StoredUpdate) -> Vec<String> {
    let group = group_channel(update.group_id.get());
    match joined_user(update) {
        Some(user_id) => vec![group, user_channel(user_id)],
        None => vec![group],
    }
}

/// The user an update makes a member of its group, if it is a `MemberJoined` group event.
fn joined_user(update: &StoredUpdate) -> Option<i64> {
    let decoded = match common::Update::decode(update.payload.as_ref()) {
        Ok(decoded) => decoded,
        Err(error) => {
            // Every entry is built by this service; the group's subscribers still get it.
            tracing::warn!(
                error = %error,
                group_id = %update.group_id,
                event_seq = update.event_seq,
                "undecodable log entry; published to its group only"
            );
            return None;
        }
    };
    let Some(Change::GroupEvent(event)) = decoded.change else {
        return None;
    };
    let Some(GroupChange::MemberJoined(joined)) = event.change else {
        return None;
    };
    Some(joined.user_id)
}

#[cfg(test)]
mod tests {
    use fanfare_core::ids::{GroupId, UserId};

    use super::*;
    use crate::domain::updates::TimelineChange;

    fn relayed(change: GroupChange) -> StoredUpdate {
        let event = common::GroupEvent { group_id: 4, change: Some(change), ..Default::default() };
        TimelineChange::System(&event).to_stored(GroupId::from_trusted(4), 3, Utc::now())
    }

    #[test]
    fn a_join_goes_to_the_group_then_to_the_new_member() {
        let joined = relayed(GroupChange::MemberJoined(common::MemberJoined { user_id: 2, ..Default::default() }));
        assert_eq!(channels_of(&joined), vec![group_channel(4), user_channel(2)]);
    }

    #[test]
    fn other_updates_go_to_the_group_only() {
        let left = relayed(GroupChange::MemberLeft(common::MemberLeft { user_id: 2 }));
        assert_eq!(channels_of(&left), vec![group_channel(4)]);
        let pin = TimelineChange::Pinned { message_seq: 1, by: UserId::from_trusted(2) };
        let pinned = pin.to_stored(GroupId::from_trusted(4), 5, Utc::now());
        assert_eq!(channels_of(&pinned), vec![group_channel(4)]);
        // A truncated varint.
        let garbage = StoredUpdate {
            group_id: GroupId::from_trusted(4),
            event_seq: 6,
            payload: bytes::Bytes::from_static(&[0xff]),
        };
        assert_eq!(channels_of(&garbage), vec![group_channel(4)]);
    }
}
