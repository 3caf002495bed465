//! Where timelines live: the [`MessageStore`] trait, with a PostgreSQL implementation for
//! production and an in-memory one for `fanfare dev` and fast tests, and one conformance
//! suite (`conformance`, behind the `testing` feature) for both.
//!
//! Every change of a group's timeline is a [`LogWrite`]. [`MessageStore::apply`] takes a
//! batch of them — the group commit: concurrent sends are gathered by the service's
//! committer and written together — and, in ONE transaction:
//! 1. locks the log row of each group in the batch once, in ascending group order (one lock
//!    per group per batch, not per update — what lets one hot group pass 10,000 updates/s);
//! 2. applies the writes in order, each checked against the state left by those before it;
//!    a write refused by a rule ([`WriteError`]) changes nothing and does not affect the others;
//! 3. gives each accepted change the group's next gapless `event_seq` (and posts the next
//!    `message_seq`), appends the encoded update to the log and an outbox row, and returns
//!    the appended entries ([`Committed::appended`]) so the committer publishes them itself.
//!
//! The outbox is for recovery only: the committer publishes right after its commit and
//! acknowledges (removes) what it published in batches; what a crashed or cut-off pod
//! committed but never published stays, and is republished lane by lane
//! ([`MessageStore::claim_lane`], [`MessageStore::unpublished`]).
//!
//! A failure of the database itself fails the whole batch ([`StoreError`]) with nothing
//! written: no sequence number is ever skipped.

#[cfg(feature = "testing")]
pub mod conformance;
pub mod memory;
pub mod postgres;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use fanfare_core::paging::PageSize;
use fanfare_proto::common::v1 as common;
use uuid::Uuid;

use crate::domain::{
    ActorRole, Emoji, LogPosition, Message, MessageText, NewMessage, PinChange, ReactionChange, ReactionCount,
    ReactionUpdate, StoredUpdate, Unread,
};

pub use memory::MemoryMessageStore;
pub use postgres::PostgresMessageStore;

/// Why a whole store call failed; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or failed the transaction (retry).
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: a bug or corrupt data.
    #[error("store failure")]
    Internal(#[source] anyhow::Error),
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// One change of a group's timeline.
#[derive(Debug, Clone, PartialEq)]
pub enum LogWrite {
    /// Posts a message. Idempotent on (group, sender, client_message_id): the same key with
    /// the same content returns the original (`duplicate: true`, nothing written); with
    /// other content, [`WriteError::IdempotencyConflict`]. Refused with `SlowMode` when the
    /// sender posted in this group less than `slow_mode` ago, and `ReplyTargetNotFound`
    /// when the reply target does not exist. Also moves the sender's read marker to the
    /// new message (one's own message is not unread).
    Post {
        /// The message.
        message: NewMessage,
        /// The group's slow mode interval, if on.
        slow_mode: Option<Duration>,
    },
    /// Replaces a message's text and bumps its version. Refused unless `editor` sent it
    /// (`NotSender`), it is not deleted (`Deleted`), and it is younger than `edit_window`
    /// (`EditWindowClosed`).
    Edit {
        /// The group.
        group: GroupId,
        /// The message.
        message_seq: MessageSeq,
        /// Who edits.
        editor: UserId,
        /// The new text.
        text: MessageText,
        /// How long after sending a message may be edited.
        edit_window: Duration,
    },
    /// Turns a message into a tombstone (content cleared). Refused with `NotSender` when
    /// `actor` is not the sender and only a [`ActorRole::Member`]. Deleting a tombstone again
    /// answers the tombstone and writes nothing.
    Delete {
        /// The group.
        group: GroupId,
        /// The message.
        message_seq: MessageSeq,
        /// Who deletes.
        actor: UserId,
        /// Whether the actor moderates the group.
        actor_role: ActorRole,
    },
    /// Turns every live message of `user` (sent at or after `since`) into a tombstone, as
    /// one update; none to purge writes nothing.
    Purge {
        /// The group.
        group: GroupId,
        /// Whose messages.
        user: UserId,
        /// Only messages sent at or after this time.
        since: Option<DateTime<Utc>>,
        /// Who purges.
        actor: UserId,
    },
    /// Adds or removes one user's reaction. Adding an emoji the user already added, or
    /// removing one they did not, changes nothing (`changed: false`). Refused when the
    /// message is deleted, or adding would give it more than `max_distinct_emojis`
    /// different emojis (`TooManyEmojis`). Appends `ReactionsChanged` only with
    /// [`ReactionUpdate::Append`] (small groups); large groups coalesce with
    /// `EmitReactionTotals`.
    React {
        /// The group.
        group: GroupId,
        /// The message.
        message_seq: MessageSeq,
        /// Who reacts.
        user: UserId,
        /// The emoji.
        emoji: Emoji,
        /// Add or remove.
        change: ReactionChange,
        /// Most distinct emojis one message may carry.
        max_distinct_emojis: usize,
        /// Whether to append a `ReactionsChanged` update now.
        update: ReactionUpdate,
    },
    /// Appends one `ReactionsChanged` update carrying a message's current totals (the
    /// coalescer's flush); a tombstone's totals are empty.
    EmitReactionTotals {
        /// The group.
        group: GroupId,
        /// The message.
        message_seq: MessageSeq,
    },
    /// Pins or unpins a message. Pinning a pinned message or unpinning an unpinned one
    /// changes nothing. Refused when the message is deleted, or pinning would exceed
    /// `max_pins` (`PinLimit`).
    Pin {
        /// The group.
        group: GroupId,
        /// The message.
        message_seq: MessageSeq,
        /// Who pins.
        actor: UserId,
        /// Pin or unpin.
        change: PinChange,
        /// Most pinned messages per group.
        max_pins: usize,
    },
    /// Appends a membership or settings change relayed from the groups outbox. Idempotent on
    /// (`source`, `outbox_id`): a repeat with the same content answers the original event_seq
    /// (`duplicate: true`), one with other content is refused (`SystemEventConflict`).
    System {
        /// Who relayed it (the caller's name): outbox ids are unique per source only.
        source: String,
        /// The source's outbox row id.
        outbox_id: i64,
        /// The change (its `group_id` names the group).
        event: common::GroupEvent,
    },
}

impl LogWrite {
    /// The group whose log this write appends to.
    pub fn group(&self) -> GroupId {
        match self {
            Self::Post { message, .. } => message.group_id,
            Self::Edit { group, .. }
            | Self::Delete { group, .. }
            | Self::Purge { group, .. }
            | Self::React { group, .. }
            | Self::EmitReactionTotals { group, .. }
            | Self::Pin { group, .. } => *group,
            // Relayed events carry a validated positive group id (checked when parsed).
            Self::System { event, .. } => GroupId::from_trusted(event.group_id),
        }
    }
}

/// What an accepted write did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Posted (or, when `duplicate`, found the original — as it stands now, edited or a
    /// tombstone).
    Posted {
        /// The message as stored.
        message: Message,
        /// Whether this was a retry answered with the original.
        duplicate: bool,
    },
    /// Edited: the message after the edit.
    Edited(Message),
    /// Deleted: the tombstone.
    Deleted(Message),
    /// Purged these messages, listed by one update per [`MAX_PURGED_PER_UPDATE`] of them
    /// (none when there was nothing to purge).
    ///
    /// [`MAX_PURGED_PER_UPDATE`]: crate::domain::MAX_PURGED_PER_UPDATE
    Purged {
        /// The messages now tombstones.
        message_seqs: Vec<MessageSeq>,
        /// The last update appended, if any.
        event_seq: Option<EventSeq>,
    },
    /// Reacted.
    Reacted {
        /// Totals after the change.
        totals: Vec<ReactionCount>,
        /// Whether anything changed.
        changed: bool,
        /// The update, if one was appended.
        event_seq: Option<EventSeq>,
    },
    /// The coalesced totals update was appended.
    ReactionTotalsEmitted {
        /// The update.
        event_seq: EventSeq,
    },
    /// Pinned or unpinned (`None` when it already was).
    Pinned {
        /// The update, if one was appended.
        event_seq: Option<EventSeq>,
    },
    /// The relayed event is in the log.
    SystemAppended {
        /// Its position (the original one on a repeat).
        event_seq: EventSeq,
        /// Whether it had been appended before.
        duplicate: bool,
    },
}

/// Why one write of a batch was refused; nothing was written for it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    /// No message has this message_seq in the group.
    #[error("group {group} has no message {message_seq}")]
    MessageNotFound {
        /// The group.
        group: GroupId,
        /// The message_seq asked for.
        message_seq: MessageSeq,
    },
    /// The idempotency key was used before with other content.
    #[error(
        "client_message_id {key:?} was already used for message {original_seq} with different content; use a new key for a new message"
    )]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The original message's seq.
        original_seq: MessageSeq,
    },
    /// A relayed event reused a (source, outbox id) already appended with other content.
    #[error(
        "outbox id {outbox_id} of {origin:?} was already appended (event_seq {original_seq}) with different content; outbox ids must not be reused"
    )]
    SystemEventConflict {
        /// Who relayed it (the source).
        origin: String,
        /// The reused outbox id.
        outbox_id: i64,
        /// Where the original event is in its group's log.
        original_seq: EventSeq,
    },
    /// The sender posted too recently for the group's slow mode.
    #[error("slow mode: wait {retry_after:?} before posting again in group {group}")]
    SlowMode {
        /// The group.
        group: GroupId,
        /// How long until the next post is allowed.
        retry_after: Duration,
    },
    /// The message replied to does not exist.
    #[error("reply_to_message_seq {0} is not a message of this group")]
    ReplyTargetNotFound(MessageSeq),
    /// Only the sender may do this.
    #[error("only the sender of message {0} may do this")]
    NotSender(MessageSeq),
    /// The edit window has passed.
    #[error("message {message_seq} can no longer be edited: the {window:?} edit window has passed")]
    EditWindowClosed {
        /// The message.
        message_seq: MessageSeq,
        /// The configured window.
        window: Duration,
    },
    /// The message is deleted.
    #[error("message {0} is deleted")]
    Deleted(MessageSeq),
    /// Adding the emoji would exceed the distinct emoji limit.
    #[error("message {message_seq} already carries the maximum of {limit} different emojis")]
    TooManyEmojis {
        /// The message.
        message_seq: MessageSeq,
        /// The limit.
        limit: usize,
    },
    /// Pinning would exceed the pin limit.
    #[error("group {group} already has the maximum of {limit} pinned messages")]
    PinLimit {
        /// The group.
        group: GroupId,
        /// The limit.
        limit: usize,
    },
}

/// Which way a history listing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Ascending message_seq.
    Forward,
    /// Descending message_seq.
    Backward,
}

/// What one committed batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Committed {
    /// One outcome per write, in the order of the writes.
    pub outcomes: Vec<Result<Applied, WriteError>>,
    /// The log entries the batch appended, in commit order (ascending event_seq within each
    /// group): what the committer publishes, each still waiting in the outbox until
    /// acknowledged.
    pub appended: Vec<StoredUpdate>,
}

/// Where a read of unpublished updates starts: strictly after this (group, event_seq) in
/// (lane, group, event_seq) order; `None` from the start.
pub type OutboxCursor = Option<(GroupId, EventSeq)>;

/// A page of a group's log.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdatesRead {
    /// Updates after the requested position, in event_seq order (at most the limit).
    pub updates: Vec<StoredUpdate>,
    /// Where the log stands.
    pub position: LogPosition,
}

/// Storage of timelines, update logs, reactions, pins, read markers and the outbox.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Applies a batch of writes in one transaction (see the module docs); one outcome per
    /// write, in order, and the log entries appended. `now` is the commit time every change
    /// of the batch records (its outbox rows too).
    async fn apply(&self, writes: Vec<LogWrite>, now: DateTime<Utc>) -> StoreResult<Committed>;

    /// Reads messages of a group by message_seq (unknown ones left out), ascending.
    async fn get_messages(&self, group: GroupId, message_seqs: &[MessageSeq]) -> StoreResult<Vec<Message>>;

    /// Reads messages of a group by id (unknown ones left out), ascending by message_seq.
    async fn get_messages_by_id(&self, group: GroupId, ids: &[Uuid]) -> StoreResult<Vec<Message>>;

    /// Lists messages strictly after (`Forward`, ascending) or before (`Backward`,
    /// descending) `anchor` (None: from the first or the latest), skipping those created
    /// before `not_before`, at most `limit + 1` (the extra row proves there is more).
    async fn list_messages(
        &self,
        group: GroupId,
        direction: Direction,
        anchor: Option<MessageSeq>,
        not_before: Option<DateTime<Utc>>,
        limit: PageSize,
    ) -> StoreResult<Vec<Message>>;

    /// Reads up to `limit` updates with event_seq greater than `after`, and the log position.
    async fn get_updates(&self, group: GroupId, after: EventSeq, limit: PageSize) -> StoreResult<UpdatesRead>;

    /// Where each group's log stands (groups without a log get [`LogPosition::empty`]), in
    /// the order asked.
    async fn log_positions(&self, groups: &[GroupId]) -> StoreResult<Vec<LogPosition>>;

    /// Moves a user's read marker forward to `message_seq` (clamped to the group's latest
    /// message; never backwards) and returns the marker after the call.
    async fn mark_read(&self, group: GroupId, user: UserId, message_seq: MessageSeq) -> StoreResult<MessageSeq>;

    /// Unread state of `user` in each group, in the order asked.
    async fn unread_counts(&self, user: UserId, groups: &[GroupId]) -> StoreResult<Vec<Unread>>;

    /// Up to `limit` unpublished updates of the outbox `lanes` that committed before
    /// `committed_before`, after `after`, in (lane, group, event_seq) order: each group's in
    /// log order.
    async fn unpublished(
        &self,
        lanes: &[i16],
        committed_before: DateTime<Utc>,
        after: OutboxCursor,
        limit: u32,
    ) -> StoreResult<Vec<StoredUpdate>>;

    /// Removes published updates, named by (group, event_seq), from the outbox; unknown
    /// ones are ignored.
    async fn ack_outbox(&self, published: &[(GroupId, EventSeq)]) -> StoreResult<()>;

    /// The outbox lanes holding updates that committed before `committed_before` and are
    /// still unpublished, ascending.
    async fn orphaned_lanes(&self, committed_before: DateTime<Utc>) -> StoreResult<Vec<i16>>;

    /// Takes the recovery lease of `lane` for `owner` until `now + lease` when it is free,
    /// expired or already `owner`'s; answers whether `owner` holds it.
    async fn claim_lane(&self, lane: i16, owner: Uuid, lease: Duration, now: DateTime<Utc>) -> StoreResult<bool>;

    /// Gives up `owner`'s lease of `lane` (nothing when another owner holds it).
    async fn release_lane(&self, lane: i16, owner: Uuid) -> StoreResult<()>;

    /// Drops log entries that committed before `before` — a contiguous prefix of each
    /// group's log, never an entry still waiting in the outbox — and records, per group, the
    /// oldest event_seq still retained (the position itself is kept); returns how many were
    /// dropped. A read from before the oldest retained entry must then be answered with
    /// "resync required" by the service.
    async fn prune_updates(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    /// Reports whether the store is reachable (for health).
    async fn ping(&self) -> StoreResult<()>;
}

/// The content digest a relayed event is compared by when its (source, outbox id) repeats:
/// SHA-256 of its protobuf encoding.
pub fn system_event_digest(event: &common::GroupEvent) -> Vec<u8> {
    use prost::Message as _;
    use sha2::Digest as _;
    sha2::Sha256::digest(event.encode_to_vec()).to_vec()
}
