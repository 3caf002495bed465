//! How each change becomes an entry of the group's update log (`fanfare.common.v1.Update`),
//! built in one place for every store, and the wire form of a message.

use chrono::{DateTime, Utc};
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use fanfare_core::time::{to_optional_timestamp, to_timestamp};
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::update::Change;
use prost::Message as _;

use super::{Message, PinChange, ReactionCount, StoredUpdate};

/// The wire form of a message.
pub fn message_to_proto(message: &Message) -> common::Message {
    common::Message {
        message_id: message.id.to_string(),
        group_id: message.group_id.get(),
        message_seq: message.message_seq.get(),
        event_seq: message.event_seq.get(),
        sender_user_id: message.sender.get(),
        client_message_id: message.client_message_id.as_str().to_owned(),
        text: message.content.text.as_str().to_owned(),
        attachments: message.content.attachments.iter().map(|attachment| attachment.to_proto()).collect(),
        reply_to_message_seq: message.content.reply_to_message_seq.map_or(0, MessageSeq::get),
        mentioned_user_ids: message.content.mentions.iter().map(|user| user.get()).collect(),
        mentions_all: message.content.mentions_all,
        created_at: Some(to_timestamp(message.created_at)),
        edited_at: to_optional_timestamp(message.edited_at),
        version: message.version,
        deleted_at: to_optional_timestamp(message.deleted_at),
        reactions: reactions_to_proto(&message.reactions),
        pinned: message.pinned,
    }
}

/// The wire form of reaction totals.
pub fn reactions_to_proto(reactions: &[ReactionCount]) -> Vec<common::ReactionCount> {
    reactions
        .iter()
        .map(|reaction| common::ReactionCount { emoji: reaction.emoji.as_str().to_owned(), count: reaction.count })
        .collect()
}

/// A change of a group's timeline, before it has a position in the log.
#[derive(Debug, Clone, PartialEq)]
pub enum TimelineChange<'a> {
    /// A message was posted.
    Posted(&'a Message),
    /// A message was edited (carries it after the edit).
    Edited(&'a Message),
    /// A message was deleted.
    Deleted {
        /// The tombstone.
        message: &'a Message,
        /// Who deleted it.
        by: UserId,
    },
    /// A user's messages were deleted at once.
    Purged {
        /// Whose messages.
        user: UserId,
        /// The messages now tombstones (at most [`MAX_PURGED_PER_UPDATE`](super::MAX_PURGED_PER_UPDATE)).
        message_seqs: &'a [MessageSeq],
        /// Who purged them.
        by: UserId,
    },
    /// A message's reaction totals changed.
    ReactionsChanged {
        /// The message.
        message_seq: MessageSeq,
        /// Its totals after the change.
        totals: &'a [ReactionCount],
    },
    /// A message was pinned.
    Pinned {
        /// The message.
        message_seq: MessageSeq,
        /// Who pinned it.
        by: UserId,
    },
    /// A message was unpinned.
    Unpinned {
        /// The message.
        message_seq: MessageSeq,
        /// Who unpinned it.
        by: UserId,
    },
    /// A membership or settings change relayed from the groups service.
    System(&'a common::GroupEvent),
}

impl TimelineChange<'_> {
    /// The change a pin or unpin of `message_seq` by `by` logs.
    pub fn pin(change: PinChange, message_seq: MessageSeq, by: UserId) -> Self {
        match change {
            PinChange::Pin => Self::Pinned { message_seq, by },
            PinChange::Unpin => Self::Unpinned { message_seq, by },
        }
    }

    /// The log entry for this change at `event_seq`, linked to its predecessor by `link`.
    pub fn to_update(&self, group: GroupId, event_seq: EventSeq, at: DateTime<Utc>, link: EntryLink) -> common::Update {
        let change = match self {
            Self::Posted(message) => {
                Change::MessagePosted(common::MessagePosted { message: Some(message_to_proto(message)) })
            }
            Self::Edited(message) => {
                Change::MessageEdited(common::MessageEdited { message: Some(message_to_proto(message)) })
            }
            Self::Deleted { message, by } => Change::MessageDeleted(common::MessageDeleted {
                message_seq: message.message_seq.get(),
                message_id: message.id.to_string(),
                deleted_by_user_id: by.get(),
            }),
            Self::Purged { user, message_seqs, by } => Change::MessagesPurged(common::MessagesPurged {
                user_id: user.get(),
                message_seqs: message_seqs.iter().map(|seq| seq.get()).collect(),
                purged_by_user_id: by.get(),
            }),
            Self::ReactionsChanged { message_seq, totals } => Change::ReactionsChanged(common::ReactionsChanged {
                message_seq: message_seq.get(),
                reactions: reactions_to_proto(totals),
            }),
            Self::Pinned { message_seq, by } => Change::MessagePinned(common::MessagePinned {
                message_seq: message_seq.get(),
                pinned_by_user_id: by.get(),
            }),
            Self::Unpinned { message_seq, by } => Change::MessageUnpinned(common::MessageUnpinned {
                message_seq: message_seq.get(),
                unpinned_by_user_id: by.get(),
            }),
            Self::System(event) => Change::GroupEvent((*event).clone()),
        };
        common::Update {
            group_id: group.get(),
            event_seq: event_seq.get(),
            occurred_at: Some(to_timestamp(at)),
            entry_token: link.token,
            previous_entry_token: link.previous,
            change: Some(change),
        }
    }

    /// The stored form of this change at `event_seq`, linked to its predecessor by `link`.
    pub fn to_stored(&self, group: GroupId, event_seq: EventSeq, at: DateTime<Utc>, link: EntryLink) -> StoredUpdate {
        let payload = self.to_update(group, event_seq, at, link).encode_to_vec();
        StoredUpdate { group_id: group, event_seq, payload: payload.into() }
    }
}

/// How a log entry names itself and its predecessor, so that a reader can tell a log that
/// went back and issued a position again (a restore, an asynchronous failover) from the one
/// it read: each entry carries a random token and the token of the entry before it.
///
/// A log counts on the token of its latest entry (kept with its counters); appending moves
/// it on: `let link = EntryLink::after(last); last = link.token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryLink {
    /// This entry's token: random, never 0.
    pub token: u64,
    /// The token of the entry before it (0 when there is none, or it has none).
    pub previous: u64,
}

impl EntryLink {
    /// The link of a new entry that follows an entry with token `previous`.
    pub fn after(previous: u64) -> Self {
        // 0 means "no token"; one in 2^64 draws is redrawn.
        let token = std::iter::repeat_with(rand::random::<u64>).find(|token| *token != 0).unwrap_or(1);
        Self { token, previous }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientMessageId, Content};

    #[test]
    fn a_posted_message_round_trips_through_the_log_entry() {
        let message = Message {
            id: uuid::Uuid::now_v7(),
            group_id: GroupId::from_trusted(4),
            message_seq: MessageSeq::from_trusted(2),
            event_seq: EventSeq::from_trusted(9),
            sender: UserId::from_trusted(7),
            client_message_id: ClientMessageId::from_trusted("k1".into()),
            content: Content::default(),
            created_at: Utc::now(),
            edited_at: None,
            version: 1,
            deleted_at: None,
            reactions: Vec::new(),
            pinned: false,
        };
        let link = EntryLink::after(77);
        let stored =
            TimelineChange::Posted(&message).to_stored(message.group_id, message.event_seq, message.created_at, link);
        let update = common::Update::decode(stored.payload.as_ref()).unwrap();
        assert_eq!(update.event_seq, 9);
        assert_eq!((update.entry_token, update.previous_entry_token), (link.token, 77));
        assert_ne!(link.token, 0);
        assert_ne!(EntryLink::after(77).token, link.token, "tokens are drawn at random");
        let Some(Change::MessagePosted(posted)) = update.change else { panic!("expected a post") };
        assert_eq!(posted.message.unwrap().message_seq, 2);
    }
}
