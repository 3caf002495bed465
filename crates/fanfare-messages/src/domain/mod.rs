//! The messages domain: validated values, the records a timeline is made of, and how each
//! change becomes an entry of the group's update log.

pub mod rules;
pub mod updates;
pub mod values;
pub mod visibility;

pub use values::*;

use chrono::{DateTime, Utc};
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use uuid::Uuid;

/// A message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Time-ordered id (UUID v7).
    pub id: Uuid,
    /// The group.
    pub group_id: GroupId,
    /// Gapless position among the group's messages.
    pub message_seq: MessageSeq,
    /// The log entry that posted it.
    pub event_seq: EventSeq,
    /// The sender.
    pub sender: UserId,
    /// The sender's idempotency key.
    pub client_message_id: ClientMessageId,
    /// The content (empty once deleted).
    pub content: Content,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// When it was last edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// 1, bumped by each edit.
    pub version: i32,
    /// When it was deleted (a tombstone).
    pub deleted_at: Option<DateTime<Utc>>,
    /// Reaction totals, by emoji.
    pub reactions: Vec<ReactionCount>,
    /// Whether it is pinned.
    pub pinned: bool,
}

/// Whether the actor of a write moderates the group (its owner or an admin), which lets
/// them change other members' messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorRole {
    /// A plain member: acts on their own messages only.
    Member,
    /// The group's owner or an admin.
    Moderator,
}

/// Which way a reaction changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionChange {
    /// Adds the user's reaction.
    Add,
    /// Removes the user's reaction.
    Remove,
}

/// When a reaction's `ReactionsChanged` update is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionUpdate {
    /// With the reaction (small groups).
    Append,
    /// Not with the reaction: the coalescer appends the totals later (large groups).
    Coalesce,
}

/// Which way a pin changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinChange {
    /// Pins the message.
    Pin,
    /// Unpins the message.
    Unpin,
}

/// What a message says: the part an idempotent retry must repeat exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Content {
    /// Text (may be empty when there are attachments).
    pub text: MessageText,
    /// Media references.
    pub attachments: Vec<Attachment>,
    /// The message replied to.
    pub reply_to_message_seq: Option<MessageSeq>,
    /// Users mentioned (no repeats, in request order).
    pub mentions: Vec<UserId>,
    /// Whether everyone is mentioned.
    pub mentions_all: bool,
}

impl Default for MessageText {
    fn default() -> Self {
        Self::from_trusted(String::new())
    }
}

impl Content {
    /// Whether the content mentions `user` (directly or through @all).
    pub fn mentions(&self, user: UserId) -> bool {
        self.mentions_all || self.mentions.contains(&user)
    }
}

/// One emoji's total on a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionCount {
    /// The emoji.
    pub emoji: Emoji,
    /// Users who reacted with it.
    pub count: i64,
}

/// A message about to be posted; the store assigns seqs, id and time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// The group.
    pub group_id: GroupId,
    /// The sender.
    pub sender: UserId,
    /// The idempotency key.
    pub client_message_id: ClientMessageId,
    /// What it says.
    pub content: Content,
}

/// An entry of a group's update log as stored: the encoded `fanfare.common.v1.Update`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUpdate {
    /// The group.
    pub group_id: GroupId,
    /// Its position.
    pub event_seq: EventSeq,
    /// The encoded `Update`.
    pub payload: bytes::Bytes,
}

impl StoredUpdate {
    /// What names this entry in the outbox: its group and position.
    pub fn key(&self) -> (GroupId, EventSeq) {
        (self.group_id, self.event_seq)
    }

    /// The token of the entry before this one, as this entry records it (0 when none or not
    /// decodable: then nothing can be compared).
    pub fn previous_entry_token(&self) -> u64 {
        use prost::Message as _;
        fanfare_proto::common::v1::Update::decode(self.payload.as_ref()).map_or(0, |update| update.previous_entry_token)
    }
}

/// Where a reader stands in a group's log: the last entry it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogCursor {
    /// The event_seq of that entry (0: the reader holds nothing yet).
    pub event_seq: EventSeq,
    /// That entry's token as the reader received it (0 when unknown: not compared).
    pub entry_token: u64,
}

/// Why a reader must reload a group's history instead of reading on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// What follows the reader's position was pruned.
    PastRetention,
    /// The reader's position is past the end of the log: the log went back.
    LogWentBack,
    /// The log holds another entry at the reader's position: it went back and issued the
    /// position again.
    LogReissued,
}

/// Where a group's log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// The group.
    pub group_id: GroupId,
    /// The latest event_seq (0 when the log is empty).
    pub last_event_seq: EventSeq,
    /// The latest message_seq (0 when there is no message).
    pub last_message_seq: MessageSeq,
    /// The oldest event_seq still retained (1 until pruning starts).
    pub oldest_retained_event_seq: EventSeq,
    /// The entry token of the entry at `last_event_seq` (0 when the log is empty or that
    /// entry has none).
    pub last_entry_token: u64,
}

impl LogPosition {
    /// The position of a group that has no log yet.
    pub fn empty(group_id: GroupId) -> Self {
        Self {
            group_id,
            last_event_seq: EventSeq::ZERO,
            last_message_seq: MessageSeq::ZERO,
            oldest_retained_event_seq: EventSeq::ZERO.next(),
            last_entry_token: 0,
        }
    }
}

/// One user's unread state in one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unread {
    /// The group.
    pub group_id: GroupId,
    /// Messages after the read marker (tombstones included: they were delivered).
    pub unread_messages: i64,
    /// Messages after the read marker that mention the user or everyone.
    pub unread_mentions: i64,
    /// The group's latest message_seq.
    pub last_message_seq: MessageSeq,
    /// The user's read marker.
    pub read_message_seq: MessageSeq,
}

/// How many recovery lanes the outbox is split into. A group's unpublished updates all sit
/// in one lane ([`outbox_lane`]); each lane is drained by one pod at a time, so recovery
/// scales with pods while each group's updates still go out in order. The migration that
/// creates `messages.outbox` computes the same lane (`group_id % 64`); change both together.
pub const OUTBOX_LANES: i16 = 64;

/// Most message_seqs one `MessagesPurged` update lists: a larger purge appends one update per
/// this many messages, in the same commit, so no log entry grows with the purge (a page of
/// updates stays small, and every subscriber can be caught up).
pub const MAX_PURGED_PER_UPDATE: usize = 1_000;

/// The outbox recovery lane a group's updates wait in (see [`OUTBOX_LANES`]).
pub fn outbox_lane(group: GroupId) -> i16 {
    // Group ids are positive, so the remainder fits the lane's type.
    i16::try_from(group.get().rem_euclid(i64::from(OUTBOX_LANES))).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_spread_groups_and_stay_in_range() {
        assert_eq!(outbox_lane(GroupId::from_trusted(1)), 1);
        assert_eq!(outbox_lane(GroupId::from_trusted(64)), 0);
        assert_eq!(outbox_lane(GroupId::from_trusted(i64::MAX)), i16::try_from(i64::MAX % 64).unwrap());
        let lanes: std::collections::BTreeSet<i16> =
            (1..=640).map(|id| outbox_lane(GroupId::from_trusted(id))).collect();
        assert_eq!(lanes.len(), usize::try_from(OUTBOX_LANES).unwrap());
    }
}
