//! What every benchmark message carries: a 128-byte ASCII text naming its window, its
//! sender, the sender's sequence number, its number in the run and its send time
//! (CLOCK_MONOTONIC µs, same host), so a receiver alone can tell latency, loss and order.
//! Also the update the baselines send: the shape of what the messages service publishes.

use chrono::Utc;
use fanfare_proto::common::v1::{Message, MessagePosted, Update, update};

/// Length of every message's text, in bytes (all ASCII).
pub(super) const PAYLOAD_BYTES: usize = 128;

/// Marks a text as a benchmark message.
const MAGIC: &str = "fb";

/// What a message's text says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tag {
    /// The window that sent it (warm-up and measured windows have their own).
    pub window: u32,
    /// The logical sender: a user in W2, a sender slot in W1.
    pub sender: u32,
    /// The sender's sequence number (per sender, over the run).
    pub seq: u64,
    /// The message's number in the run, indexing the completion counters.
    pub id: u32,
    /// When it was sent, CLOCK_MONOTONIC microseconds.
    pub sent_us: u64,
}

impl Tag {
    /// The 128-byte text carrying this tag, stamped with the time now.
    pub(super) fn stamp(window: u32, sender: u32, seq: u64, id: u32) -> String {
        let mut text = format!("{MAGIC} w={window} s={sender} q={seq} i={id} t={} ", now_micros());
        while text.len() < PAYLOAD_BYTES {
            text.push_str("fanfare-bench ");
        }
        text.truncate(PAYLOAD_BYTES);
        text
    }

    /// The tag of a benchmark text; `None` for any other text.
    pub(super) fn parse(text: &str) -> Option<Self> {
        let mut fields = text.strip_prefix(MAGIC)?.split_ascii_whitespace();
        let mut field = |name: &str| -> Option<u64> { fields.next()?.strip_prefix(name)?.parse().ok() };
        Some(Self {
            window: u32::try_from(field("w=")?).ok()?,
            sender: u32::try_from(field("s=")?).ok()?,
            seq: field("q=")?,
            id: u32::try_from(field("i=")?).ok()?,
            sent_us: field("t=")?,
        })
    }

    /// The tag of an update, if it posts a benchmark message.
    pub(super) fn of_update(update: &Update) -> Option<Self> {
        match &update.change {
            Some(update::Change::MessagePosted(MessagePosted { message: Some(message) })) => Self::parse(&message.text),
            _ => None,
        }
    }
}

/// CLOCK_MONOTONIC now, in microseconds.
pub(super) fn now_micros() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000
}

/// The update a baseline sends for `text`: a posted message with the fields the messages
/// service fills in, so its encoding is the size of a real one (event_seq is set by whoever
/// orders the updates).
pub(super) fn baseline_update(sender_user: i64, seq: u64, text: String) -> Update {
    let now = fanfare_core::time::to_timestamp(Utc::now());
    let message = Message {
        message_id: uuid::Uuid::now_v7().to_string(),
        group_id: 1,
        message_seq: i64::try_from(seq).unwrap_or(i64::MAX),
        event_seq: 0,
        sender_user_id: sender_user,
        client_message_id: client_message_id(seq),
        text,
        created_at: Some(now),
        version: 1,
        ..Default::default()
    };
    Update {
        group_id: 1,
        event_seq: 0,
        occurred_at: Some(now),
        // Non-zero, so the baselines' updates are as long as the ones Fanfare's log writes.
        entry_token: 0x9e37_79b9_7f4a_7c15,
        previous_entry_token: 0x6a09_e667_f3bc_c908,
        change: Some(update::Change::MessagePosted(MessagePosted { message: Some(message) })),
    }
}

/// The idempotency key of a sender's message `seq`.
pub(super) fn client_message_id(seq: u64) -> String {
    format!("bench-{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_in_128_ascii_bytes() {
        let text = Tag::stamp(3, 4_000, 123_456, 99_999);
        assert_eq!(text.len(), PAYLOAD_BYTES);
        assert!(text.is_ascii());
        let tag = Tag::parse(&text).expect("a benchmark text");
        assert_eq!((tag.window, tag.sender, tag.seq, tag.id), (3, 4_000, 123_456, 99_999));
        assert!(tag.sent_us > 0);
        assert_eq!(Tag::parse("hello"), None);
    }

    #[test]
    fn baseline_updates_carry_the_tag() {
        let update = baseline_update(1, 7, Tag::stamp(1, 2, 7, 8));
        assert_eq!(Tag::of_update(&update).map(|tag| tag.id), Some(8));
    }
}
