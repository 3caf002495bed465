//! A subscriber's event queue: bounded in messages, never blocking the side that fills it.
//!
//! Publishers (the memory bus) and the Redis listener task push without waiting: when the
//! queue already holds its capacity of messages, the new message is dropped and a
//! `Gap { Lagged }` takes its place in the order, so the subscriber learns exactly where loss
//! began. Gap and `Resumed` markers are coalesced (no two gaps in a row, a disconnect that
//! reopens before its `Resumed` was read swallows that `Resumed`), so markers stay bounded too.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::{BusEvent, GapReason};

/// The queue between whatever produces a subscriber's events and the subscriber.
#[derive(Debug)]
pub(crate) struct EventQueue {
    state: Mutex<QueueState>,
    /// Woken on every push; the single reader waits on it when the queue is empty.
    readable: Notify,
    message_capacity: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    events: VecDeque<BusEvent>,
    /// How many of `events` are messages (the bounded part).
    queued_messages: usize,
    /// Messages dropped because the queue was full, since the queue was created.
    dropped_messages: u64,
    /// No producer is left: once drained, the reader gets `None`.
    closed: bool,
}

impl EventQueue {
    /// A queue holding at most `message_capacity` messages (at least one).
    pub(crate) fn new(message_capacity: usize) -> Self {
        Self { state: Mutex::default(), readable: Notify::new(), message_capacity: message_capacity.max(1) }
    }

    /// Queues a message, or drops it and reports a lag gap when the queue is full.
    pub(crate) fn push_message(&self, channel: &str, payload: Bytes) {
        let mut state = self.lock();
        if state.queued_messages >= self.message_capacity {
            state.dropped_messages += 1;
            if state.push_gap(GapReason::Lagged) {
                tracing::warn!(
                    capacity = self.message_capacity,
                    "update bus subscriber fell behind; dropping messages until it catches up"
                );
            }
        } else {
            state.queued_messages += 1;
            state.events.push_back(BusEvent::Message { channel: channel.to_owned(), payload });
        }
        drop(state);
        self.readable.notify_one();
    }

    /// Reports that messages may have been lost from here on.
    pub(crate) fn push_gap(&self, reason: GapReason) {
        self.lock().push_gap(reason);
        self.readable.notify_one();
    }

    /// Reports that the subscription is live again after a disconnect gap.
    pub(crate) fn push_resumed(&self) {
        let mut state = self.lock();
        if state.events.back() != Some(&BusEvent::Resumed) {
            state.events.push_back(BusEvent::Resumed);
        }
        drop(state);
        self.readable.notify_one();
    }

    /// Removes queued messages of channels that were just unsubscribed, so that none is
    /// received after the unsubscribe returns.
    pub(crate) fn discard_channels(&self, channels: &HashSet<String>) {
        if channels.is_empty() {
            return;
        }
        let mut state = self.lock();
        state.events.retain(|event| match event {
            BusEvent::Message { channel, .. } => !channels.contains(channel),
            BusEvent::Gap { .. } | BusEvent::Resumed => true,
        });
        state.queued_messages = state.events.iter().filter(|event| matches!(event, BusEvent::Message { .. })).count();
    }

    /// Marks that no more events will come; the reader drains what is queued, then ends.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.readable.notify_one();
    }

    /// The next event, waiting for one; `None` once the queue is closed and drained.
    pub(crate) async fn recv(&self) -> Option<BusEvent> {
        loop {
            {
                let mut state = self.lock();
                if let Some(event) = state.pop() {
                    return Some(event);
                }
                if state.closed {
                    return None;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the check
            // above and this wait is not missed.
            self.readable.notified().await;
        }
    }

    /// The next event if one is queued.
    pub(crate) fn try_recv(&self) -> Option<BusEvent> {
        self.lock().pop()
    }

    /// How many messages are queued and not yet received.
    pub(crate) fn queued_messages(&self) -> usize {
        self.lock().queued_messages
    }

    /// How many messages were dropped because the queue was full.
    pub(crate) fn dropped_messages(&self) -> u64 {
        self.lock().dropped_messages
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // The state stays consistent at every await-free step, so a panic elsewhere while
        // holding the lock leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl QueueState {
    fn pop(&mut self) -> Option<BusEvent> {
        let event = self.events.pop_front()?;
        if matches!(event, BusEvent::Message { .. }) {
            self.queued_messages -= 1;
        }
        Some(event)
    }

    /// Appends a gap unless the tail already reports one; returns whether a new gap began.
    fn push_gap(&mut self, reason: GapReason) -> bool {
        let len = self.events.len();
        let resumed_right_after_a_gap = len >= 2
            && self.events[len - 1] == BusEvent::Resumed
            && matches!(self.events[len - 2], BusEvent::Gap { .. });
        match self.events.back_mut() {
            // A gap not yet followed by anything covers this loss too; a disconnect
            // outranks a lag, since only it is followed by `Resumed`.
            Some(BusEvent::Gap { reason: pending }) => {
                if reason == GapReason::Disconnected {
                    *pending = GapReason::Disconnected;
                }
                false
            }
            // Disconnected again before the reader saw it had resumed: it never needs to
            // know it briefly had.
            Some(BusEvent::Resumed) if reason == GapReason::Disconnected && resumed_right_after_a_gap => {
                self.events.pop_back();
                false
            }
            _ => {
                self.events.push_back(BusEvent::Gap { reason });
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(channel: &str, payload: &'static str) -> BusEvent {
        BusEvent::Message { channel: channel.to_owned(), payload: Bytes::from_static(payload.as_bytes()) }
    }

    fn drain(queue: &EventQueue) -> Vec<BusEvent> {
        std::iter::from_fn(|| queue.try_recv()).collect()
    }

    #[test]
    fn a_full_queue_drops_messages_behind_one_lag_gap() {
        let queue = EventQueue::new(2);
        for payload in ["1", "2", "3", "4"] {
            queue.push_message("a", Bytes::from_static(payload.as_bytes()));
        }
        assert_eq!(queue.dropped_messages(), 2);
        let lagged = BusEvent::Gap { reason: GapReason::Lagged };
        assert_eq!(drain(&queue), vec![message("a", "1"), message("a", "2"), lagged]);
        queue.push_message("a", Bytes::from_static(b"5"));
        assert_eq!(drain(&queue), vec![message("a", "5")]);
    }

    #[test]
    fn repeated_disconnects_coalesce_into_one_gap_and_one_resumed() {
        let queue = EventQueue::new(4);
        let disconnected = BusEvent::Gap { reason: GapReason::Disconnected };
        queue.push_gap(GapReason::Lagged);
        queue.push_gap(GapReason::Disconnected);
        queue.push_resumed();
        queue.push_gap(GapReason::Disconnected);
        queue.push_resumed();
        queue.push_resumed();
        assert_eq!(drain(&queue), vec![disconnected, BusEvent::Resumed]);
    }

    #[test]
    fn a_lag_after_resuming_keeps_the_resumed() {
        let queue = EventQueue::new(1);
        queue.push_gap(GapReason::Disconnected);
        queue.push_resumed();
        queue.push_message("a", Bytes::from_static(b"1"));
        queue.push_message("a", Bytes::from_static(b"2"));
        let events = drain(&queue);
        assert_eq!(events.len(), 4);
        assert_eq!(events[1], BusEvent::Resumed);
        assert_eq!(events[3], BusEvent::Gap { reason: GapReason::Lagged });
    }

    #[test]
    fn discarding_a_channel_frees_its_capacity() {
        let queue = EventQueue::new(2);
        queue.push_message("a", Bytes::from_static(b"1"));
        queue.push_message("b", Bytes::from_static(b"2"));
        queue.discard_channels(&HashSet::from(["a".to_owned()]));
        assert_eq!(queue.queued_messages(), 1);
        queue.push_message("b", Bytes::from_static(b"3"));
        assert_eq!(drain(&queue), vec![message("b", "2"), message("b", "3")]);
    }

    #[tokio::test]
    async fn a_closed_queue_is_drained_then_ends() {
        let queue = EventQueue::new(2);
        queue.push_message("a", Bytes::from_static(b"1"));
        queue.close();
        assert_eq!(queue.recv().await, Some(message("a", "1")));
        assert_eq!(queue.recv().await, None);
    }
}
