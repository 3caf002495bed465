//! From commit to the bus: the pod that commits an update publishes it, right after the
//! commit, per group in commit order.
//!
//! The committer routes every group to one of its lanes (one worker each), so a group's
//! batches commit one after another on one worker; each lane has one publisher task here,
//! which publishes the lane's batches in the order they committed. What went out is
//! acknowledged (its outbox row deleted) by the `Acker` in batches.
//!
//! When a lane cannot publish (the bus is down, or the lane's queue is full because the
//! bus is slow) it **spills**: the committer stops handing it batches, whose updates wait
//! in the outbox instead, and the lane publishes from the outbox, oldest first, until it
//! has caught up; then it takes batches from the committer again. Memory stays bounded
//! however long the bus is away, and a group's updates never overtake each other on this
//! pod. Updates a pod committed and never published (it crashed, or lost the bus for good)
//! are republished by [`crate::recovery`] on any pod.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use fanfare_bus::{UpdateBus, group_channel, user_channel};
use fanfare_core::ids::{EventSeq, GroupId};
use fanfare_proto::common::v1 as common;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::{OUTBOX_LANES, StoredUpdate};
use crate::store::{MessageStore, OutboxCursor};

/// Committed batches one lane holds before it spills to the outbox.
const LANE_QUEUE_BATCHES: usize = 1_024;
/// Unpublished updates read from the outbox at once.
const OUTBOX_PAGE: u32 = 1_000;
/// How long to wait after the bus or the store failed.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Shortest time between two acknowledgement statements: under light load each publish
/// would otherwise cost a statement of its own; an acknowledgement is never urgent (an
/// unacknowledged update is republished only after the recovery grace, seconds later).
const ACK_INTERVAL: Duration = Duration::from_millis(20);
/// Acknowledgements kept for a retry while the store refuses them; beyond this the oldest
/// are dropped (recovery then publishes those updates once more, harmlessly).
const MAX_PENDING_ACKS: usize = 200_000;

/// The committer's side of publishing: one lane per committer worker.
pub struct Publisher {
    lanes: Vec<LaneHandle>,
}

struct LaneHandle {
    batches: mpsc::Sender<Vec<StoredUpdate>>,
    spilled: Arc<AtomicBool>,
}

impl Publisher {
    /// Starts `lanes` lane publishers and the acker. Each lane runs until the committer
    /// that feeds it is gone (so writes accepted before shutdown are still published),
    /// or, while it catches up from the outbox, until `shutdown`.
    pub fn start(
        store: Arc<dyn MessageStore>,
        bus: Arc<dyn UpdateBus>,
        lanes: usize,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        // A lane owns whole outbox lanes: more lanes than those would stay idle.
        let lanes = lanes.clamp(1, usize::try_from(OUTBOX_LANES).unwrap_or(1));
        let acks = Acker::start(Arc::clone(&store));
        let handles = (0..lanes)
            .map(|lane| {
                let (batches, receiver) = mpsc::channel(LANE_QUEUE_BATCHES);
                let spilled = Arc::new(AtomicBool::new(false));
                let task = LanePublisher {
                    lane,
                    outbox_lanes: outbox_lanes_of(lane, lanes),
                    store: Arc::clone(&store),
                    bus: Arc::clone(&bus),
                    receiver,
                    spilled: Arc::clone(&spilled),
                    acks: acks.clone(),
                };
                tokio::spawn(task.run(shutdown.clone()));
                LaneHandle { batches, spilled }
            })
            .collect();
        Arc::new(Self { lanes: handles })
    }

    /// How many lanes there are.
    pub fn lane_count(&self) -> usize {
        self.lanes.len()
    }

    /// The lane that publishes `group`'s updates (and whose committer worker commits them).
    pub fn lane_of(&self, group: GroupId) -> usize {
        lane_of(group, self.lanes.len())
    }

    /// Hands `lane` the updates one of its batches appended, in commit order. Never waits:
    /// a lane that is spilled or full leaves them in the outbox, where it will find them.
    pub fn committed(&self, lane: usize, updates: Vec<StoredUpdate>) {
        let Some(handle) = self.lanes.get(lane) else {
            debug_assert!(false, "lane {lane} out of range");
            return;
        };
        if updates.is_empty() {
            return;
        }
        let count = updates.len() as u64;
        if handle.spilled.load(Ordering::SeqCst) {
            metrics::counter!(crate::metrics::PUBLISH_DEFERRED_TOTAL).increment(count);
            return;
        }
        match handle.batches.try_send(updates) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                handle.spilled.store(true, Ordering::SeqCst);
                metrics::counter!(crate::metrics::PUBLISH_DEFERRED_TOTAL).increment(count);
                tracing::warn!(lane, "publishing fell behind; the lane catches up from the outbox");
            }
            // The lane stopped (shutdown): the outbox keeps the updates for recovery.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The committer lane (of `lanes`) that owns `group`: a whole outbox lane maps to one
/// committer lane, so a lane publisher can catch up from exactly its outbox lanes.
pub fn lane_of(group: GroupId, lanes: usize) -> usize {
    usize::try_from(crate::domain::outbox_lane(group)).unwrap_or_default() % lanes.max(1)
}

/// The outbox lanes whose groups committer lane `lane` (of `lanes`) owns.
fn outbox_lanes_of(lane: usize, lanes: usize) -> Vec<i16> {
    (0..OUTBOX_LANES).filter(|outbox_lane| usize::try_from(*outbox_lane).unwrap_or_default() % lanes == lane).collect()
}

/// One lane's publisher task.
struct LanePublisher {
    lane: usize,
    outbox_lanes: Vec<i16>,
    store: Arc<dyn MessageStore>,
    bus: Arc<dyn UpdateBus>,
    receiver: mpsc::Receiver<Vec<StoredUpdate>>,
    spilled: Arc<AtomicBool>,
    acks: AckSender,
}

impl LanePublisher {
    async fn run(mut self, shutdown: CancellationToken) {
        loop {
            if self.spilled.load(Ordering::SeqCst) {
                if !self.catch_up(&shutdown).await {
                    return;
                }
                continue;
            }
            let Some(batch) = self.receiver.recv().await else {
                tracing::debug!(lane = self.lane, "publisher stopped");
                return;
            };
            if publish_in_order(self.bus.as_ref(), &batch).await {
                self.acks.send(&batch);
            } else {
                tracing::warn!(lane = self.lane, "publish failed; the lane catches up from the outbox");
                self.spilled.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Publishes the lane's outbox until it is empty, then resumes taking batches. Returns
    /// false when `shutdown` came first.
    async fn catch_up(&mut self, shutdown: &CancellationToken) -> bool {
        // Whatever was handed over is in the outbox too, and goes out from there in order.
        while self.receiver.try_recv().is_ok() {}
        loop {
            // Back off before every pass, the first too: what made the lane spill (a bus
            // that refused or timed out) rarely recovers within microseconds, and a bus
            // coming back gives its subscribers a moment to resubscribe first.
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(RETRY_DELAY) => {}
            }
            // A stopped pod publishes nothing more from the outbox (a pass may wait long on
            // an unreachable bus): what is left there is recovery's, on another pod.
            let first = tokio::select! {
                () = shutdown.cancelled() => return false,
                passed = self.outbox_pass() => passed,
            };
            if first.is_ok() {
                // Commits that still saw the lane spilled left their updates in the outbox
                // only: one more pass, begun after the flag dropped, publishes them. Later
                // commits come as batches (published again if this pass took them too:
                // subscribers recognise a repeat by its event_seq).
                self.spilled.store(false, Ordering::SeqCst);
                let second = tokio::select! {
                    () = shutdown.cancelled() => return false,
                    passed = self.outbox_pass() => passed,
                };
                if second.is_ok() {
                    tracing::info!(lane = self.lane, "publisher caught up");
                    return true;
                }
                self.spilled.store(true, Ordering::SeqCst);
            }
        }
    }

    /// One pass over everything the lane's outbox held when it began.
    async fn outbox_pass(&self) -> Result<(), ()> {
        let published = drain(self.store.as_ref(), self.bus.as_ref(), &self.outbox_lanes, Utc::now()).await?;
        if published > 0 {
            tracing::info!(lane = self.lane, published, "published from the outbox");
        }
        Ok(())
    }
}

/// Publishes and acknowledges, page by page, every unpublished update of `outbox_lanes`
/// that committed before `committed_before`, each group's in order; stops at the first
/// failure. Returns how many went out.
pub(crate) async fn drain(
    store: &dyn MessageStore,
    bus: &dyn UpdateBus,
    outbox_lanes: &[i16],
    committed_before: chrono::DateTime<Utc>,
) -> Result<usize, ()> {
    let mut after: OutboxCursor = None;
    let mut total = 0;
    loop {
        let page = match store.unpublished(outbox_lanes, committed_before, after, OUTBOX_PAGE).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(error = ?error, "reading the outbox failed; will retry");
                return Err(());
            }
        };
        let Some(last) = page.last() else { return Ok(total) };
        after = Some(last.key());
        if !publish_in_order(bus, &page).await {
            return Err(());
        }
        let keys: Vec<(GroupId, EventSeq)> = page.iter().map(StoredUpdate::key).collect();
        if let Err(error) = store.ack_outbox(&keys).await {
            // Left in the outbox: published once more later, recognised by event_seq.
            tracing::warn!(error = ?error, "outbox ack failed");
        }
        total += page.len();
    }
}

/// Publishes `updates` in order in one pipelined batch; answers whether all of them went
/// out. On `false` some may have reached the bus: the caller publishes them all again, and
/// subscribers recognise the repeats by event_seq.
pub(crate) async fn publish_in_order(bus: &dyn UpdateBus, updates: &[StoredUpdate]) -> bool {
    let messages: Vec<(String, bytes::Bytes)> = updates
        .iter()
        .flat_map(|update| channels_of(update).into_iter().map(|channel| (channel, update.payload.clone())))
        .collect();
    match bus.publish_all(&messages).await {
        Ok(()) => {
            metrics::counter!(crate::metrics::PUBLISHED_TOTAL).increment(updates.len() as u64);
            true
        }
        Err(error) => {
            let first = updates.first().map(StoredUpdate::key);
            tracing::warn!(error = ?error, updates = updates.len(), first = ?first, "publish failed");
            false
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
/// Only group events are decoded: the publisher sees every update of every group.
fn joined_user(update: &StoredUpdate) -> Option<i64> {
    let payload = update.payload.as_ref();
    let decoded = match fanfare_proto::events::is_encoded_group_event(payload) {
        Ok(false) => return None,
        Ok(true) => common::Update::decode(payload),
        Err(error) => Err(error),
    };
    match decoded {
        Ok(decoded) => fanfare_proto::events::joined_user(&decoded),
        Err(error) => {
            // Every entry is built by this service; the group's subscribers still get it.
            tracing::warn!(
                error = %error,
                group_id = %update.group_id,
                event_seq = update.event_seq.get(),
                "undecodable log entry; published to its group only"
            );
            None
        }
    }
}

/// Where publishers send what they published, for the [`Acker`] to delete from the outbox.
#[derive(Clone)]
pub(crate) struct AckSender(mpsc::UnboundedSender<Vec<(GroupId, EventSeq)>>);

impl AckSender {
    /// Queues the acknowledgement of published updates.
    pub(crate) fn send(&self, published: &[StoredUpdate]) {
        if published.is_empty() {
            return;
        }
        let keys = published.iter().map(StoredUpdate::key).collect();
        // A stopped acker leaves the rows for recovery.
        let _ = self.0.send(keys);
    }
}

/// Deletes published updates from the outbox, as many per statement as arrived since the
/// previous one (at most one statement per [`ACK_INTERVAL`]): one round trip per batch of
/// acknowledgements, not per update.
struct Acker {
    store: Arc<dyn MessageStore>,
    receiver: mpsc::UnboundedReceiver<Vec<(GroupId, EventSeq)>>,
}

impl Acker {
    /// Starts the acker; it stops once every [`AckSender`] is gone and all is deleted.
    fn start(store: Arc<dyn MessageStore>) -> AckSender {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(Self { store, receiver }.run());
        AckSender(sender)
    }

    async fn run(mut self) {
        let mut pending: Vec<(GroupId, EventSeq)> = Vec::new();
        loop {
            if pending.is_empty() {
                match self.receiver.recv().await {
                    Some(keys) => pending.extend(keys),
                    None => return,
                }
            }
            while let Ok(keys) = self.receiver.try_recv() {
                pending.extend(keys);
            }
            match self.store.ack_outbox(&pending).await {
                Ok(()) => {
                    metrics::counter!(crate::metrics::OUTBOX_ACKED_TOTAL).increment(pending.len() as u64);
                    pending.clear();
                    // Let the next batch gather; the channel keeps what arrives meanwhile.
                    tokio::time::sleep(ACK_INTERVAL).await;
                }
                Err(error) => {
                    tracing::warn!(error = ?error, pending = pending.len(), "outbox ack failed; will retry");
                    if pending.len() > MAX_PENDING_ACKS {
                        let excess = pending.len() - MAX_PENDING_ACKS;
                        pending.drain(..excess);
                    }
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use fanfare_core::ids::{MessageSeq, UserId};
    use fanfare_proto::common::v1::group_event::Change as GroupChange;

    use super::*;
    use crate::domain::outbox_lane;
    use crate::domain::updates::{EntryLink, TimelineChange};

    fn relayed(change: GroupChange) -> StoredUpdate {
        let event = common::GroupEvent { group_id: 4, change: Some(change), ..Default::default() };
        let at = EventSeq::from_trusted(3);
        TimelineChange::System(&event).to_stored(GroupId::from_trusted(4), at, Utc::now(), EntryLink::after(0))
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
        let pin = TimelineChange::Pinned { message_seq: MessageSeq::from_trusted(1), by: UserId::from_trusted(2) };
        let pinned =
            pin.to_stored(GroupId::from_trusted(4), EventSeq::from_trusted(5), Utc::now(), EntryLink::after(0));
        assert_eq!(channels_of(&pinned), vec![group_channel(4)]);
        // A truncated varint.
        let garbage = StoredUpdate {
            group_id: GroupId::from_trusted(4),
            event_seq: EventSeq::from_trusted(6),
            payload: bytes::Bytes::from_static(&[0xff]),
        };
        assert_eq!(channels_of(&garbage), vec![group_channel(4)]);
    }

    #[test]
    fn every_outbox_lane_belongs_to_exactly_the_committer_lane_of_its_groups() {
        for lanes in [1, 3, 4, 7, 64, 100] {
            let mut owned: Vec<i16> = (0..lanes).flat_map(|lane| outbox_lanes_of(lane, lanes)).collect();
            owned.sort_unstable();
            assert_eq!(owned, (0..OUTBOX_LANES).collect::<Vec<_>>(), "{lanes} lanes split the outbox lanes");
            for id in 1..=300 {
                let group = GroupId::from_trusted(id);
                assert!(outbox_lanes_of(lane_of(group, lanes), lanes).contains(&outbox_lane(group)));
            }
        }
    }
}
