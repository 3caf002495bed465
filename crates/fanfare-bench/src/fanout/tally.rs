//! What the receivers saw. Every stream (or raw subscriber) keeps its own [`StreamTally`]
//! behind its own lock; the [`Board`] they share holds the counters the senders watch: per
//! window, the deliveries so far, and per message, how many receivers have it (the
//! saturation load sends a slot's next message once every receiver has its previous one).
//!
//! Checked per receiver: each group's event_seq goes up by exactly one (a jump is a hole, a
//! step back a duplicate or a reorder), and each sender's sequence numbers only go up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fanfare_proto::common::v1::Update;
use tokio::sync::Notify;

use super::payload::Tag;

/// Most windows one board counts.
pub(super) const MAX_WINDOWS: usize = 64;
/// Most messages one board tracks completion of.
const MAX_MESSAGES: usize = 1 << 21;
/// Most sender slots of a closed loop.
pub(super) const MAX_SLOTS: usize = 256;

/// The counters every receiver of one system under test shares.
pub(super) struct Board {
    /// Deliveries per window (echoes to the sender's own stream excluded).
    windows: Vec<AtomicU64>,
    /// Receivers that got each message so far, by message number.
    receipts: Vec<AtomicU32>,
    /// How many receivers a message needs before its slot may send again.
    receivers: AtomicU32,
    /// Woken when a slot's message reached every receiver.
    slots: Vec<Notify>,
    next_message: AtomicU32,
    streams: Mutex<Vec<Arc<Mutex<StreamTally>>>>,
}

impl Board {
    /// An empty board.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            windows: (0..MAX_WINDOWS).map(|_| AtomicU64::new(0)).collect(),
            receipts: (0..MAX_MESSAGES).map(|_| AtomicU32::new(0)).collect(),
            receivers: AtomicU32::new(u32::MAX),
            slots: (0..MAX_SLOTS).map(|_| Notify::new()).collect(),
            next_message: AtomicU32::new(0),
            streams: Mutex::new(Vec::new()),
        })
    }

    /// A new receiver's tally; `user` is the stream's user (0 for raw subscribers), so the
    /// echo of its own messages is told apart.
    pub(super) fn receiver(&self, user: i64) -> Arc<Mutex<StreamTally>> {
        let tally = Arc::new(Mutex::new(StreamTally { user, ..StreamTally::default() }));
        lock(&self.streams).push(Arc::clone(&tally));
        tally
    }

    /// The number of the next message sent.
    pub(super) fn next_message(&self) -> u32 {
        self.next_message.fetch_add(1, Ordering::Relaxed)
    }

    /// Sets how many receivers each message has, for [`Board::wait_delivered`].
    pub(super) fn set_receivers(&self, receivers: u32) {
        self.receivers.store(receivers, Ordering::Relaxed);
    }

    /// Deliveries of `window` so far.
    pub(super) fn delivered(&self, window: u32) -> u64 {
        self.windows.get(window as usize).map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// Whether message `id` has reached every receiver.
    fn complete(&self, id: u32) -> bool {
        let receipts = self.receipts.get(id as usize).map_or(0, |count| count.load(Ordering::Acquire));
        receipts >= self.receivers.load(Ordering::Relaxed)
    }

    /// Waits until message `id`, sent by `slot`, has reached every receiver.
    pub(super) async fn wait_delivered(&self, slot: u32, id: u32) {
        let waker = &self.slots[slot as usize % MAX_SLOTS];
        loop {
            let notified = waker.notified();
            if self.complete(id) {
                return;
            }
            notified.await;
        }
    }

    /// Counts one delivery of `tag`.
    fn count(&self, tag: &Tag) {
        if let Some(window) = self.windows.get(tag.window as usize) {
            window.fetch_add(1, Ordering::Relaxed);
        }
        let Some(receipts) = self.receipts.get(tag.id as usize) else { return };
        let now = receipts.fetch_add(1, Ordering::AcqRel) + 1;
        if now == self.receivers.load(Ordering::Relaxed) {
            self.slots[tag.sender as usize % MAX_SLOTS].notify_waiters();
        }
    }

    /// What every receiver saw of `window`, merged, and the receivers' health so far.
    pub(super) fn collect(&self, window: u32) -> Received {
        let streams: Vec<Arc<Mutex<StreamTally>>> = lock(&self.streams).clone();
        let mut received = Received::default();
        for stream in &streams {
            let tally = lock(stream);
            received.health.add(&tally.health);
            if let Some(window) = tally.windows.get(&window) {
                received.deliveries += window.deliveries;
                received.echoes += window.echoes;
                received.latencies_us.extend_from_slice(&window.latencies_us);
                received.first_sent_us = match received.first_sent_us {
                    0 => window.first_sent_us,
                    first => first.min(window.first_sent_us),
                };
                received.last_received_us = received.last_received_us.max(window.last_received_us);
            }
        }
        received.latencies_us.sort_unstable();
        received
    }

    /// The receivers' health so far, over every window.
    pub(super) fn health(&self) -> Health {
        let streams: Vec<Arc<Mutex<StreamTally>>> = lock(&self.streams).clone();
        let mut health = Health::default();
        for stream in &streams {
            health.add(&lock(stream).health);
        }
        health
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under these locks is complete; a panicked receiver leaves them valid.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One receiver's record.
#[derive(Debug, Default)]
pub(super) struct StreamTally {
    user: i64,
    /// Per group, the last event_seq received.
    event_seqs: Vec<(i64, i64)>,
    /// Per sender, the last sequence number received.
    sender_seqs: HashMap<u32, u64>,
    windows: HashMap<u32, WindowTally>,
    health: Health,
}

/// One receiver's deliveries of one window.
#[derive(Debug, Default)]
struct WindowTally {
    deliveries: u64,
    echoes: u64,
    latencies_us: Vec<u32>,
    first_sent_us: u64,
    last_received_us: u64,
}

/// What went wrong on the receivers (all zero when all is well).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Health {
    /// Updates whose event_seq was not above the previous one of its group (duplicates or
    /// reordering), or whose sender's sequence number went back.
    pub out_of_order: u64,
    /// Jumps in a group's event_seq: updates missing on the stream.
    pub holes: u64,
    /// Resync frames (a resume point beyond the retained log).
    pub resyncs: u64,
    /// Reconnect frames (the server ended the stream on purpose).
    pub reconnects: u64,
    /// Streams that ended or failed.
    pub ended: u64,
    /// Encoded bytes of the benchmark updates received (for their mean size).
    pub update_bytes: u64,
    /// How many updates `update_bytes` covers.
    pub updates: u64,
}

impl Health {
    fn add(&mut self, other: &Health) {
        self.out_of_order += other.out_of_order;
        self.holes += other.holes;
        self.resyncs += other.resyncs;
        self.reconnects += other.reconnects;
        self.ended += other.ended;
        self.update_bytes += other.update_bytes;
        self.updates += other.updates;
    }

    /// What happened since `before`.
    pub(super) fn minus(&self, before: &Health) -> Health {
        Health {
            out_of_order: self.out_of_order.saturating_sub(before.out_of_order),
            holes: self.holes.saturating_sub(before.holes),
            resyncs: self.resyncs.saturating_sub(before.resyncs),
            reconnects: self.reconnects.saturating_sub(before.reconnects),
            ended: self.ended.saturating_sub(before.ended),
            update_bytes: self.update_bytes.saturating_sub(before.update_bytes),
            updates: self.updates.saturating_sub(before.updates),
        }
    }
}

impl StreamTally {
    /// Records one update of `encoded_len` bytes received at `received_us`.
    pub(super) fn record(&mut self, board: &Board, update: &Update, encoded_len: usize, received_us: u64) {
        self.check_event_seq(update.group_id, update.event_seq);
        let Some(tag) = Tag::of_update(update) else { return };
        self.health.update_bytes += encoded_len as u64;
        self.health.updates += 1;
        match self.sender_seqs.insert(tag.sender, tag.seq) {
            Some(previous) if previous >= tag.seq => self.health.out_of_order += 1,
            _ => {}
        }
        let echo = self.user != 0 && update_sender(update) == Some(self.user);
        let window = self.windows.entry(tag.window).or_default();
        if echo {
            window.echoes += 1;
            return;
        }
        window.deliveries += 1;
        let latency = received_us.saturating_sub(tag.sent_us);
        window.latencies_us.push(u32::try_from(latency).unwrap_or(u32::MAX));
        window.first_sent_us = match window.first_sent_us {
            0 => tag.sent_us,
            first => first.min(tag.sent_us),
        };
        window.last_received_us = window.last_received_us.max(received_us);
        board.count(&tag);
    }

    fn check_event_seq(&mut self, group: i64, event_seq: i64) {
        match self.event_seqs.iter_mut().find(|(known, _)| *known == group) {
            None => self.event_seqs.push((group, event_seq)),
            Some((_, last)) => {
                if event_seq <= *last {
                    self.health.out_of_order += 1;
                    return;
                }
                if event_seq > *last + 1 {
                    self.health.holes += 1;
                }
                *last = event_seq;
            }
        }
    }

    /// Counts a resync frame.
    pub(super) fn resync(&mut self) {
        self.health.resyncs += 1;
    }

    /// Counts a reconnect frame.
    pub(super) fn reconnect(&mut self) {
        self.health.reconnects += 1;
    }

    /// Counts the end of the stream (any end before the benchmark closes it).
    pub(super) fn ended(&mut self) {
        self.health.ended += 1;
    }
}

/// The user who sent the message an update posts.
fn update_sender(update: &Update) -> Option<i64> {
    use fanfare_proto::common::v1::{MessagePosted, update::Change};
    match &update.change {
        Some(Change::MessagePosted(MessagePosted { message: Some(message) })) => Some(message.sender_user_id),
        _ => None,
    }
}

/// Every receiver's deliveries of one window, merged.
#[derive(Debug, Default)]
pub(super) struct Received {
    /// Deliveries (echoes excluded).
    pub deliveries: u64,
    /// Echoes: a sender's own message on its own stream.
    pub echoes: u64,
    /// Every delivery's latency, sorted, in µs.
    pub latencies_us: Vec<u32>,
    /// The earliest send time of a delivered message (CLOCK_MONOTONIC µs).
    pub first_sent_us: u64,
    /// The last receive time (CLOCK_MONOTONIC µs).
    pub last_received_us: u64,
    /// What went wrong, over every window so far.
    pub health: Health,
}

impl Received {
    /// The nearest-rank percentile `percent` of the latencies, in ms.
    pub(super) fn percentile_ms(&self, percent: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = (percent / 100.0 * self.latencies_us.len() as f64).ceil() as usize;
        f64::from(self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1]) / 1_000.0
    }

    /// The slowest delivery, in ms.
    pub(super) fn max_ms(&self) -> f64 {
        self.latencies_us.last().map_or(0.0, |max| f64::from(*max) / 1_000.0)
    }

    /// Deliveries per second: deliveries ÷ (last receive − first send).
    pub(super) fn rate(&self) -> f64 {
        let span = self.last_received_us.saturating_sub(self.first_sent_us) as f64 / 1e6;
        if span <= 0.0 { 0.0 } else { self.deliveries as f64 / span }
    }
}

#[cfg(test)]
mod tests {
    use fanfare_proto::common::v1::{Message, MessagePosted, update::Change};

    use super::*;

    fn posted(event_seq: i64, sender: i64, tag: Tag) -> Update {
        let text = format!("fb w={} s={} q={} i={} t={} pad", tag.window, tag.sender, tag.seq, tag.id, tag.sent_us);
        let message = Message { sender_user_id: sender, text, ..Default::default() };
        Update {
            group_id: 9,
            event_seq,
            change: Some(Change::MessagePosted(MessagePosted { message: Some(message) })),
            ..Default::default()
        }
    }

    #[test]
    fn holes_reorders_and_echoes_are_told_apart() {
        let board = Board::new();
        board.set_receivers(1);
        let receiver = board.receiver(5);
        let tag = |seq: u64, id: u32| Tag { window: 1, sender: 2, seq, id, sent_us: 1_000 };
        let mut tally = receiver.lock().unwrap();
        tally.record(&board, &posted(10, 2, tag(1, 0)), 150, 3_000);
        tally.record(&board, &posted(12, 2, tag(2, 1)), 150, 4_000);
        tally.record(&board, &posted(11, 2, tag(3, 2)), 150, 5_000);
        tally.record(&board, &posted(13, 5, tag(4, 3)), 150, 6_000);
        drop(tally);
        let received = board.collect(1);
        assert_eq!((received.deliveries, received.echoes), (3, 1));
        assert_eq!((received.health.holes, received.health.out_of_order), (1, 1));
        assert_eq!(received.latencies_us, vec![2_000, 3_000, 4_000]);
        assert_eq!(board.delivered(1), 3);
        assert!(board.complete(0) && !board.complete(3));
    }
}
