//! Rows of the `messages` schema and their mapping to the domain: error classification,
//! the stored encodings (attachments, content digests) and message reads.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use fanfare_proto::common::v1 as common;
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Attachment, ClientMessageId, Content, Emoji, Message, MessageText, ReactionCount};
use crate::store::{StoreError, StoreResult};

// ---------------------------------------------------------------------------------------
// Errors

/// Classifies sqlx results for this store's modules (the one rule every store shares).
pub(super) use fanfare_postgres::During;

/// sqlx failures as this store reports them, classified once for every store
/// (`fanfare_postgres::During`): an unreachable or overloaded database, or a transaction it
/// rolled back, is `Unavailable` and may be retried; anything else is `Internal`.
impl From<fanfare_postgres::Failure> for StoreError {
    fn from(failure: fanfare_postgres::Failure) -> Self {
        match failure {
            fanfare_postgres::Failure::Unavailable(cause) => Self::Unavailable(cause),
            fanfare_postgres::Failure::Internal(cause) => Self::Internal(cause),
        }
    }
}

/// A stored value that does not map back to the domain: corrupt data or a missing
/// migration in this binary.
pub(super) fn corrupt(what: String) -> StoreError {
    StoreError::Internal(anyhow::Error::msg(what).context("reading a messages row"))
}

// ---------------------------------------------------------------------------------------
// Stored encodings

/// The `attachments` column: a protobuf message with one repeated field, so the bytes are
/// those of `repeated fanfare.common.v1.Attachment attachments = 1`.
#[derive(Clone, PartialEq, prost::Message)]
struct StoredAttachments {
    #[prost(message, repeated, tag = "1")]
    attachments: Vec<common::Attachment>,
}

/// What a content digest covers, in a fixed protobuf layout so the digest is stable
/// across releases.
#[derive(Clone, PartialEq, prost::Message)]
struct DigestedContent {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(message, repeated, tag = "2")]
    attachments: Vec<common::Attachment>,
    #[prost(int64, optional, tag = "3")]
    reply_to_message_seq: Option<i64>,
    #[prost(int64, repeated, tag = "4")]
    mentions: Vec<i64>,
    #[prost(bool, tag = "5")]
    mentions_all: bool,
}

/// The `attachments` column of a message.
pub(super) fn encode_attachments(attachments: &[Attachment]) -> Vec<u8> {
    if attachments.is_empty() {
        return Vec::new();
    }
    StoredAttachments { attachments: attachments.iter().map(Attachment::to_proto).collect() }.encode_to_vec()
}

fn decode_attachments(bytes: &[u8]) -> StoreResult<Vec<Attachment>> {
    let stored =
        StoredAttachments::decode(bytes).map_err(|error| corrupt(format!("undecodable attachments: {error}")))?;
    Ok(stored
        .attachments
        .into_iter()
        .map(|attachment| Attachment {
            media_id: attachment.media_id,
            mime_type: attachment.mime_type,
            size_bytes: attachment.size_bytes,
            width: attachment.width,
            height: attachment.height,
            duration_ms: attachment.duration_ms,
        })
        .collect())
}

/// SHA-256 of the content: what an idempotent retry is compared against.
pub(super) fn content_digest(content: &Content) -> Vec<u8> {
    let digested = DigestedContent {
        text: content.text.as_str().to_owned(),
        attachments: content.attachments.iter().map(Attachment::to_proto).collect(),
        reply_to_message_seq: content.reply_to_message_seq.map(MessageSeq::get),
        mentions: content.mentions.iter().map(|user| user.get()).collect(),
        mentions_all: content.mentions_all,
    };
    Sha256::digest(digested.encode_to_vec()).to_vec()
}

/// The `mentions` column as a PostgreSQL array literal, for bulk inserts (`unnest` cannot
/// take an array of arrays, so each row's array travels as text and is cast back).
pub(super) fn mentions_literal(mentions: &[UserId]) -> String {
    let ids: Vec<String> = mentions.iter().map(|user| user.get().to_string()).collect();
    format!("{{{}}}", ids.join(","))
}

/// Reaction totals in the order both stores use: by emoji, bytewise.
pub(super) fn sorted_totals(mut totals: Vec<ReactionCount>) -> Vec<ReactionCount> {
    totals.sort_by(|left, right| left.emoji.cmp(&right.emoji));
    totals
}

/// Totals from parallel arrays of emojis and counts.
pub(super) fn totals_from(emojis: Vec<String>, counts: Vec<i64>) -> StoreResult<Vec<ReactionCount>> {
    if emojis.len() != counts.len() {
        return Err(corrupt(format!("{} reaction emojis but {} counts", emojis.len(), counts.len())));
    }
    let totals = emojis
        .into_iter()
        .zip(counts)
        .map(|(emoji, count)| ReactionCount { emoji: Emoji::from_trusted(emoji), count })
        .collect();
    Ok(sorted_totals(totals))
}

// ---------------------------------------------------------------------------------------
// Messages

/// `SELECT` of whole messages (alias `m`), reaction totals included, followed by `$tail`.
macro_rules! select_messages {
    ($tail:literal) => {
        concat!(
            "SELECT m.group_id, m.message_seq, m.message_id, m.event_seq, m.sender_id, m.client_message_id, \
             m.text, m.attachments, m.reply_to_message_seq, m.mentions, m.mentions_all, m.created_at, \
             m.edited_at, m.version, m.deleted_at, m.pinned_at, \
             COALESCE((SELECT array_agg(c.emoji ORDER BY c.emoji) FROM messages.reaction_counts c \
                       WHERE c.group_id = m.group_id AND c.message_seq = m.message_seq), '{}') AS reaction_emojis, \
             COALESCE((SELECT array_agg(c.count ORDER BY c.emoji) FROM messages.reaction_counts c \
                       WHERE c.group_id = m.group_id AND c.message_seq = m.message_seq), '{}') AS reaction_counts \
             FROM messages.messages m ",
            $tail
        )
    };
}
pub(super) use select_messages;

#[derive(sqlx::FromRow)]
pub(super) struct MessageRow {
    group_id: i64,
    message_seq: i64,
    message_id: Uuid,
    event_seq: i64,
    sender_id: i64,
    client_message_id: String,
    text: String,
    attachments: Vec<u8>,
    reply_to_message_seq: Option<i64>,
    mentions: Vec<i64>,
    mentions_all: bool,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
    version: i32,
    deleted_at: Option<DateTime<Utc>>,
    pinned_at: Option<DateTime<Utc>>,
    reaction_emojis: Vec<String>,
    reaction_counts: Vec<i64>,
}

impl MessageRow {
    pub(super) fn into_message(self) -> StoreResult<Message> {
        Ok(Message {
            id: self.message_id,
            group_id: GroupId::from_trusted(self.group_id),
            message_seq: MessageSeq::from_trusted(self.message_seq),
            event_seq: EventSeq::from_trusted(self.event_seq),
            sender: UserId::from_trusted(self.sender_id),
            client_message_id: ClientMessageId::from_trusted(self.client_message_id),
            content: Content {
                text: MessageText::from_trusted(self.text),
                attachments: decode_attachments(&self.attachments)?,
                reply_to_message_seq: self.reply_to_message_seq.map(MessageSeq::from_trusted),
                mentions: self.mentions.into_iter().map(UserId::from_trusted).collect(),
                mentions_all: self.mentions_all,
            },
            created_at: self.created_at,
            edited_at: self.edited_at,
            version: self.version,
            deleted_at: self.deleted_at,
            reactions: totals_from(self.reaction_emojis, self.reaction_counts)?,
            pinned: self.pinned_at.is_some(),
        })
    }
}

/// Messages of one group by message_seq, ascending (unknown ones left out).
pub(super) async fn messages_by_seq(
    connection: &mut PgConnection,
    group: GroupId,
    message_seqs: &[MessageSeq],
) -> StoreResult<Vec<Message>> {
    if message_seqs.is_empty() {
        return Ok(Vec::new());
    }
    let message_seqs: Vec<i64> = message_seqs.iter().map(|seq| seq.get()).collect();
    let rows: Vec<MessageRow> =
        sqlx::query_as(select_messages!("WHERE m.group_id = $1 AND m.message_seq = ANY($2) ORDER BY m.message_seq"))
            .bind(group.get())
            .bind(&message_seqs)
            .fetch_all(&mut *connection)
            .await
            .during("reading messages")?;
    rows.into_iter().map(MessageRow::into_message).collect()
}

/// One message, if it exists.
pub(super) async fn message(
    connection: &mut PgConnection,
    group: GroupId,
    message_seq: MessageSeq,
) -> StoreResult<Option<Message>> {
    Ok(messages_by_seq(connection, group, &[message_seq]).await?.into_iter().next())
}

/// Messages of several groups by (group, message_seq), keyed so.
pub(super) async fn messages_by_key(
    connection: &mut PgConnection,
    keys: &[(GroupId, MessageSeq)],
) -> StoreResult<HashMap<(GroupId, MessageSeq), Message>> {
    let mut by_group: HashMap<GroupId, Vec<MessageSeq>> = HashMap::new();
    for (group, message_seq) in keys {
        by_group.entry(*group).or_default().push(*message_seq);
    }
    let mut found = HashMap::with_capacity(keys.len());
    // One query per group: each names one partition.
    for (group, message_seqs) in by_group {
        for message in messages_by_seq(connection, group, &message_seqs).await? {
            found.insert((group, message.message_seq), message);
        }
    }
    Ok(found)
}

/// The `message_mentions.user_id` of an @all mention: one row instead of one per member.
pub(super) const EVERYONE: i64 = 0;

/// The `message_mentions` rows of a message's content: the users it mentions, or just
/// [`EVERYONE`].
pub(super) fn mention_rows(content: &Content) -> Vec<i64> {
    if content.mentions_all { vec![EVERYONE] } else { content.mentions.iter().map(|user| user.get()).collect() }
}
