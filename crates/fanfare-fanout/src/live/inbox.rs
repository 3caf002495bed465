//! The bounded queue between the hub and one stream.
//!
//! The hub never waits on a stream: when a stream's inbox is full, an update is not queued
//! but its group is marked dirty, and the stream catches that group up from the update log
//! before delivering anything else of it. A slow consumer costs itself a catch-up; it never
//! delays the hub or the other streams, and it never loses an update.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use bytes::Bytes;
use fanfare_core::ids::{EventSeq, GroupId, UserId};
use fanfare_proto::common::v1::Update;
use fanfare_proto::redact::{carried_message_mut, clear_content, clear_members};
use prost::Message;
use tokio::sync::Notify;

use super::notify::NotificationPage;

/// What the hub hands a stream.
#[derive(Debug, Clone)]
pub(crate) enum Delivery {
    /// An update of a group the stream carries, decoded once per pod.
    Update(Arc<Envelope>),
    /// The stream's user joined a group (from the user channel).
    Joined {
        /// The group.
        group_id: GroupId,
        /// The event_seq of the join update.
        event_seq: EventSeq,
    },
    /// A fan-out job page listing the stream's user.
    Notification(Arc<NotificationPage>),
}

/// One update as it came off the bus: its encoded bytes (shared by every stream) and the
/// facts streams need without decoding it again.
#[derive(Debug)]
pub(crate) struct Envelope {
    /// The group.
    pub(crate) group_id: GroupId,
    /// Its position in the group's log.
    pub(crate) event_seq: EventSeq,
    /// Its entry token, and the token of the entry before it (`fanfare.common.v1.Update`):
    /// a stream holding another token for either position holds a history the log went
    /// back on.
    pub(crate) entry_token: u64,
    pub(crate) previous_entry_token: u64,
    /// The encoded `fanfare.common.v1.Update`, as published.
    pub(crate) bytes: Bytes,
    /// The user whose membership this update ended (left, removed, banned), if any.
    pub(crate) ended_membership_of: Option<UserId>,
    /// When the message this update carries in full (posted or edited) was created, in µs
    /// since the epoch: a member who may not see history from before their join gets the
    /// update of an older message without its content.
    pub(crate) message_created_micros: Option<i64>,
    /// Whom this membership event is about, if it is one: a member from whom the group
    /// hides its audience gets it without its users unless it is about them.
    pub(crate) member_subject: Option<Subject>,
    /// How this update changes who sees history from before their join, if it does.
    pub(crate) access_change: Option<AccessChange>,
    /// `bytes` as a reader who may not see it whole gets it: made once per pod, by the first
    /// stream that needs it.
    pub(crate) redacted: OnceLock<Bytes>,
}

impl Envelope {
    /// The update with what may be hidden from a reader cleared (`fanfare_proto::redact`): a
    /// message's content, or a membership event's users. An update is at most one of the
    /// two, so one copy serves both kinds of reader.
    pub(crate) fn redacted(&self) -> &Bytes {
        self.redacted.get_or_init(|| {
            // The hub built this envelope from a decodable update; were it not, a contentless
            // update in the same place still keeps the stream gapless and leaks nothing.
            let mut update = Update::decode(self.bytes.as_ref()).unwrap_or_else(|_| Update {
                group_id: self.group_id.get(),
                event_seq: self.event_seq.get(),
                ..Update::default()
            });
            if let Some(message) = carried_message_mut(&mut update) {
                clear_content(message);
            }
            clear_members(&mut update);
            Bytes::from(update.encode_to_vec())
        })
    }
}

/// Whom a membership event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    /// The user it names.
    Named(UserId),
    /// No user (its id is 0, as in a redacted update): about someone else, for every reader.
    Unnamed,
}

impl Subject {
    /// The subject a raw user id names.
    pub(crate) fn from_raw(raw: i64) -> Self {
        named_user(raw).map_or(Self::Unnamed, Self::Named)
    }
}

/// The user a raw id of an update names; `None` for 0, which a redacted update carries in
/// place of its users.
pub(crate) fn named_user(raw: i64) -> Option<UserId> {
    (raw > 0).then(|| UserId::from_trusted(raw))
}

/// A change of who, in a group, sees history from before their join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessChange {
    /// The group's `history_visible_to_new_members` setting, after the change.
    HistoryVisible(bool),
    /// `user` now moderates the group (owner or admin: sees all history), or no longer does.
    Moderates {
        /// The user whose role changed.
        user: UserId,
        /// Whether they moderate the group now.
        moderates: bool,
    },
}

/// What a stream must do besides delivering what it took from its inbox.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    /// Groups whose updates overflowed: catch them up from the log.
    pub(crate) dirty: HashSet<GroupId>,
    /// The bus may have lost messages: catch every group up.
    pub(crate) repair_all: bool,
    /// A join signal may have been lost: list the user's groups again.
    pub(crate) relist: bool,
    /// Time for a heartbeat frame.
    pub(crate) heartbeat: bool,
    /// The pod is shutting down: end the stream with a reconnect frame.
    pub(crate) closing: bool,
}

impl Flags {
    /// Whether the stream must call another service before delivering (a catch-up or a
    /// re-listing).
    pub(crate) fn needs_upstream(&self) -> bool {
        !self.dirty.is_empty() || self.repair_all || self.relist
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Delivery>,
    flags: Flags,
}

/// One stream's inbox.
pub(crate) struct Inbox {
    state: Mutex<State>,
    wake: Notify,
    capacity: usize,
}

/// A queue that grew past this many slots is shrunk back once drained, so a burst does not
/// pin memory on an idle stream.
const RETAINED_SLOTS: usize = 16;

impl Inbox {
    /// An empty inbox holding at most `capacity` deliveries.
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State::default()), wake: Notify::new(), capacity })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update of the state is complete under the lock; a panic elsewhere leaves it valid.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `delivery`, or records what the stream must repair instead when full.
    /// Returns whether it was queued.
    pub(crate) fn push(&self, delivery: Delivery) -> bool {
        let queued = {
            let mut state = self.state();
            if state.queue.len() < self.capacity {
                state.queue.push_back(delivery);
                true
            } else {
                match delivery {
                    Delivery::Update(envelope) => {
                        state.flags.dirty.insert(envelope.group_id);
                    }
                    Delivery::Joined { .. } => state.flags.relist = true,
                    // Live notifications are best effort: the push stream has them.
                    Delivery::Notification(_) => {}
                }
                false
            }
        };
        self.wake.notify_one();
        queued
    }

    /// Asks the stream to repair every group (and re-list its groups): the bus may have lost
    /// messages.
    pub(crate) fn repair_all(&self) {
        self.flag(|flags| {
            flags.repair_all = true;
            flags.relist = true;
        });
    }

    /// Asks the stream for a heartbeat frame.
    pub(crate) fn heartbeat_due(&self) {
        self.flag(|flags| flags.heartbeat = true);
    }

    /// Asks the stream to end with a reconnect frame: the pod is shutting down.
    pub(crate) fn close(&self) {
        self.flag(|flags| flags.closing = true);
    }

    fn flag(&self, set: impl FnOnce(&mut Flags)) {
        set(&mut self.state().flags);
        self.wake.notify_one();
    }

    /// Moves up to `max` deliveries into `into` (in arrival order) and takes every pending
    /// flag. The caller passes the same buffer each time, so taking allocates nothing.
    pub(crate) fn take(&self, max: usize, into: &mut Vec<Delivery>) -> Flags {
        let mut state = self.state();
        let count = state.queue.len().min(max);
        into.extend(state.queue.drain(..count));
        if state.queue.is_empty() && state.queue.capacity() > RETAINED_SLOTS {
            state.queue.shrink_to(RETAINED_SLOTS);
        }
        std::mem::take(&mut state.flags)
    }

    /// Waits until something was pushed or flagged since the last `take` (or `wake`).
    pub(crate) async fn wait(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(group_id: i64, event_seq: i64) -> Delivery {
        Delivery::Update(Arc::new(Envelope {
            group_id: GroupId::from_trusted(group_id),
            event_seq: EventSeq::from_trusted(event_seq),
            entry_token: 0,
            previous_entry_token: 0,
            bytes: Bytes::new(),
            ended_membership_of: None,
            message_created_micros: None,
            member_subject: None,
            access_change: None,
            redacted: OnceLock::new(),
        }))
    }

    #[test]
    fn a_full_inbox_marks_groups_dirty_instead_of_queueing() {
        let inbox = Inbox::new(2);
        assert!(inbox.push(update(1, 1)));
        assert!(inbox.push(update(1, 2)));
        assert!(!inbox.push(update(1, 3)));
        assert!(!inbox.push(update(2, 1)));
        assert!(
            !inbox.push(Delivery::Joined { group_id: GroupId::from_trusted(3), event_seq: EventSeq::from_trusted(1) })
        );
        let mut taken = Vec::new();
        let flags = inbox.take(10, &mut taken);
        assert_eq!(taken.len(), 2);
        assert_eq!(flags.dirty, HashSet::from([GroupId::from_trusted(1), GroupId::from_trusted(2)]));
        assert!(flags.relist && !flags.repair_all && flags.needs_upstream());
        let again = inbox.take(10, &mut taken);
        assert!(!again.needs_upstream() && !again.heartbeat && !again.closing, "flags are taken once");
        assert_eq!(taken.len(), 2, "nothing more was queued");
    }

    #[test]
    fn take_respects_its_maximum_and_keeps_order() {
        let inbox = Inbox::new(8);
        for seq in 1..=5 {
            inbox.push(update(1, seq));
        }
        let mut taken = Vec::new();
        inbox.take(3, &mut taken);
        let first: Vec<i64> = taken
            .iter()
            .map(|delivery| match delivery {
                Delivery::Update(envelope) => envelope.event_seq.get(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(first, [1, 2, 3]);
        taken.clear();
        inbox.take(3, &mut taken);
        assert_eq!(taken.len(), 2);
    }

    #[tokio::test]
    async fn a_push_before_waiting_is_not_missed() {
        let inbox = Inbox::new(1);
        inbox.push(update(1, 1));
        tokio::time::timeout(std::time::Duration::from_secs(1), inbox.wait()).await.expect("the permit was stored");
        inbox.repair_all();
        let flags = inbox.take(1, &mut Vec::new());
        assert!(flags.repair_all && flags.relist);
    }

    #[tokio::test]
    async fn heartbeats_and_closing_wake_the_stream_and_are_taken_once() {
        let inbox = Inbox::new(1);
        inbox.heartbeat_due();
        tokio::time::timeout(std::time::Duration::from_secs(1), inbox.wait()).await.expect("woken");
        inbox.close();
        let flags = inbox.take(1, &mut Vec::new());
        assert!(flags.heartbeat && flags.closing && !flags.needs_upstream());
        let again = inbox.take(1, &mut Vec::new());
        assert!(!again.heartbeat && !again.closing);
    }
}
