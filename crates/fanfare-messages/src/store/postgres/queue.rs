//! The rows a batch has accepted but not written yet, and the one statement that writes
//! them all: one round trip per flush, whatever the batch holds.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use sqlx::PgConnection;
use uuid::Uuid;

use super::rows::{During as _, encode_attachments, mention_rows, mentions_literal};
use crate::domain::{Message, StoredUpdate};
use crate::store::StoreResult;

/// The (group, sender, client_message_id) of a post.
pub(super) type KeyOf = (GroupId, UserId, String);

/// What an idempotency key is taken by.
#[derive(Debug, Clone)]
pub(super) struct TakenKey {
    /// The message posted under it.
    pub(super) message_seq: MessageSeq,
    /// The digest of that message's original content.
    pub(super) digest: Vec<u8>,
}

/// A group log's counters to store.
pub(super) struct CounterRow {
    pub(super) group: i64,
    pub(super) last_event_seq: EventSeq,
    pub(super) last_message_seq: MessageSeq,
    pub(super) last_entry_token: u64,
}

/// Rows accepted by a batch, in batch order.
#[derive(Default)]
pub(super) struct Queue {
    /// New messages with their content digests.
    messages: Vec<(Message, Vec<u8>)>,
    /// New system events.
    system_events: Vec<SystemEventRow>,
    /// Read markers of members who just joined: they start at the group's latest message.
    joined_markers: Vec<(GroupId, UserId, MessageSeq)>,
    /// New log entries; every queued row comes with one.
    updates: Vec<StoredUpdate>,
    /// Log entries already written by this transaction, in order: what the batch appended.
    written: Vec<StoredUpdate>,
}

/// The record of one appended relayed event.
struct SystemEventRow {
    source: String,
    outbox_id: i64,
    group: GroupId,
    event_seq: EventSeq,
    digest: Vec<u8>,
}

/// Every statement a flush makes, as one: each table's rows arrive as parallel arrays and
/// are written by their own data-modifying CTE. The main statement inserts the messages;
/// one whose idempotency key is already taken updates nothing (`version = version`) but
/// returns the original row, which DO NOTHING would not.
const WRITE_QUEUE: &str = "\
WITH mentioned AS (
  INSERT INTO messages.message_mentions (group_id, user_id, message_seq)
  SELECT * FROM unnest($14::bigint[], $15::bigint[], $16::bigint[])),
posted AS (
  INSERT INTO messages.sender_state AS s (group_id, user_id, last_posted_at)
  SELECT group_id, user_id, $13 FROM unnest($29::bigint[], $30::bigint[]) AS p (group_id, user_id)
  ON CONFLICT (group_id, user_id) DO UPDATE SET last_posted_at = EXCLUDED.last_posted_at),
marked AS (
  INSERT INTO messages.read_markers AS r (group_id, user_id, read_message_seq)
  SELECT * FROM unnest($17::bigint[], $18::bigint[], $19::bigint[])
  ON CONFLICT (group_id, user_id)
  DO UPDATE SET read_message_seq = GREATEST(r.read_message_seq, EXCLUDED.read_message_seq)),
appended AS (
  INSERT INTO messages.updates (group_id, event_seq, payload, created_at)
  SELECT group_id, event_seq, payload, $13
  FROM unnest($20::bigint[], $21::bigint[], $22::bytea[]) AS u (group_id, event_seq, payload)),
unpublished AS (
  INSERT INTO messages.outbox (group_id, event_seq, committed_at)
  SELECT group_id, event_seq, $13 FROM unnest($20::bigint[], $21::bigint[]) AS u (group_id, event_seq)),
relayed AS (
  INSERT INTO messages.system_events (source, outbox_id, group_id, event_seq, content_digest)
  SELECT * FROM unnest($31::text[], $23::bigint[], $24::bigint[], $25::bigint[], $32::bytea[])),
advanced AS (
  UPDATE messages.group_logs
  SET last_event_seq = ($27::bigint[])[array_position($26::bigint[], group_id)],
      last_message_seq = ($28::bigint[])[array_position($26::bigint[], group_id)],
      last_entry_token = ($33::bigint[])[array_position($26::bigint[], group_id)]
  WHERE group_id = ANY($26))
INSERT INTO messages.messages (group_id, message_seq, message_id, event_seq, sender_id, client_message_id,
  content_digest, text, attachments, reply_to_message_seq, mentions, mentions_all, created_at, version)
SELECT group_id, message_seq, message_id, event_seq, sender_id, client_message_id, content_digest,
  text, attachments, reply_to_message_seq, mentions::bigint[], mentions_all, $13, 1
FROM unnest($1::bigint[], $2::bigint[], $3::uuid[], $4::bigint[], $5::bigint[], $6::text[],
  $7::bytea[], $8::text[], $9::bytea[], $10::bigint[], $11::text[], $12::boolean[])
  AS new (group_id, message_seq, message_id, event_seq, sender_id, client_message_id,
  content_digest, text, attachments, reply_to_message_seq, mentions, mentions_all)
ON CONFLICT (group_id, sender_id, client_message_id) DO UPDATE SET version = messages.messages.version
RETURNING message_id, group_id, sender_id, client_message_id, message_seq, content_digest";

impl Queue {
    /// The log entries written so far, in order (taken once the transaction commits).
    pub(super) fn take_written(&mut self) -> Vec<StoredUpdate> {
        std::mem::take(&mut self.written)
    }

    /// Whether nothing waits to be written (every queued row comes with a log entry).
    pub(super) fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// Queues a log entry.
    pub(super) fn push_update(&mut self, update: StoredUpdate) {
        self.updates.push(update);
    }

    /// Queues a new message (its log entry is queued separately).
    pub(super) fn push_message(&mut self, message: Message, digest: Vec<u8>) {
        self.messages.push((message, digest));
    }

    /// Queues the read marker of a member who just joined: what came before is not unread.
    pub(super) fn push_joined_marker(&mut self, group: GroupId, user: UserId, last_message_seq: MessageSeq) {
        self.joined_markers.push((group, user, last_message_seq));
    }

    /// Queues the record of an appended system event.
    pub(super) fn push_system_event(
        &mut self,
        source: &str,
        outbox_id: i64,
        group: GroupId,
        event_seq: EventSeq,
        digest: Vec<u8>,
    ) {
        self.system_events.push(SystemEventRow { source: source.to_owned(), outbox_id, group, event_seq, digest });
    }

    /// Writes and empties the queue, storing `counters` with it. Returns the idempotency
    /// keys found taken: when there are any, the statement wrote rows that must not be
    /// kept, and the caller rolls the transaction back.
    pub(super) async fn write(
        &mut self,
        connection: &mut PgConnection,
        now: DateTime<Utc>,
        counters: Vec<CounterRow>,
    ) -> StoreResult<Vec<(KeyOf, TakenKey)>> {
        let messages = std::mem::take(&mut self.messages);
        let system_events = std::mem::take(&mut self.system_events);
        let joined_markers = std::mem::take(&mut self.joined_markers);
        let updates = std::mem::take(&mut self.updates);

        let mut columns = MessageColumns::with_capacity(messages.len());
        // Sorted and without repeats: ON CONFLICT may touch a row once per statement.
        let mut mentions: BTreeSet<(i64, i64, i64)> = BTreeSet::new();
        let mut senders: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        for (message, digest) in messages {
            let (group, seq) = (message.group_id.get(), message.message_seq.get());
            mentions.extend(mention_rows(&message.content).into_iter().map(|user| (group, user, seq)));
            // One's own message is not unread: the sender's marker moves to it.
            let marker = senders.entry((group, message.sender.get())).or_default();
            *marker = (*marker).max(seq);
            columns.push(message, digest);
        }
        let new_ids: HashSet<Uuid> = columns.message_ids.iter().copied().collect();
        let (mention_groups, mention_users, mention_seqs) = unzip3(mentions);
        let (sender_groups, sender_ids): (Vec<i64>, Vec<i64>) = senders.keys().copied().unzip();
        // Senders' markers and joiners' markers, one per (group, user): the higher wins.
        let mut markers = senders;
        for (group, user, seq) in joined_markers {
            let marker = markers.entry((group.get(), user.get())).or_default();
            *marker = (*marker).max(seq.get());
        }
        let (marker_groups, marker_users, marker_seqs) =
            unzip3(markers.into_iter().map(|((group, user), seq)| (group, user, seq)));
        let update_groups: Vec<i64> = updates.iter().map(|update| update.group_id.get()).collect();
        let update_seqs: Vec<i64> = updates.iter().map(|update| update.event_seq.get()).collect();
        let payloads: Vec<&[u8]> = updates.iter().map(|update| update.payload.as_ref()).collect();
        let system_sources: Vec<&str> = system_events.iter().map(|row| row.source.as_str()).collect();
        let system_digests: Vec<&[u8]> = system_events.iter().map(|row| row.digest.as_slice()).collect();
        let (outbox_ids, system_groups, system_seqs) =
            unzip3(system_events.iter().map(|row| (row.outbox_id, row.group.get(), row.event_seq.get())));
        let counter_groups: Vec<i64> = counters.iter().map(|row| row.group).collect();
        let last_event_seqs: Vec<i64> = counters.iter().map(|row| row.last_event_seq.get()).collect();
        let last_message_seqs: Vec<i64> = counters.iter().map(|row| row.last_message_seq.get()).collect();
        // Stored as bigint: the same 64 bits.
        let last_entry_tokens: Vec<i64> = counters.iter().map(|row| row.last_entry_token as i64).collect();

        let written: Vec<(Uuid, i64, i64, String, i64, Vec<u8>)> = sqlx::query_as(WRITE_QUEUE)
            .bind(columns.group_ids)
            .bind(columns.message_seqs)
            .bind(columns.message_ids)
            .bind(columns.event_seqs)
            .bind(columns.sender_ids)
            .bind(columns.client_message_ids)
            .bind(columns.digests)
            .bind(columns.texts)
            .bind(columns.attachments)
            .bind(columns.reply_tos)
            .bind(columns.mentions)
            .bind(columns.mentions_all)
            .bind(now)
            .bind(mention_groups)
            .bind(mention_users)
            .bind(mention_seqs)
            .bind(marker_groups)
            .bind(marker_users)
            .bind(marker_seqs)
            .bind(update_groups)
            .bind(update_seqs)
            .bind(payloads)
            .bind(outbox_ids)
            .bind(system_groups)
            .bind(system_seqs)
            .bind(counter_groups)
            .bind(last_event_seqs)
            .bind(last_message_seqs)
            .bind(sender_groups)
            .bind(sender_ids)
            .bind(system_sources)
            .bind(system_digests)
            .bind(last_entry_tokens)
            .fetch_all(&mut *connection)
            .await
            .during("writing a batch")?;
        self.written.extend(updates);
        Ok(written
            .into_iter()
            .filter(|(message_id, ..)| !new_ids.contains(message_id))
            .map(|(_, group, sender, key, message_seq, digest)| {
                let taken = TakenKey { message_seq: MessageSeq::from_trusted(message_seq), digest };
                ((GroupId::from_trusted(group), UserId::from_trusted(sender), key), taken)
            })
            .collect())
    }
}

/// The columns of new messages, one array each, for `unnest`.
struct MessageColumns {
    group_ids: Vec<i64>,
    message_seqs: Vec<i64>,
    message_ids: Vec<Uuid>,
    event_seqs: Vec<i64>,
    sender_ids: Vec<i64>,
    client_message_ids: Vec<String>,
    digests: Vec<Vec<u8>>,
    texts: Vec<String>,
    attachments: Vec<Vec<u8>>,
    reply_tos: Vec<Option<i64>>,
    /// Array literals: `unnest` cannot take an array of arrays.
    mentions: Vec<String>,
    mentions_all: Vec<bool>,
}

impl MessageColumns {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            group_ids: Vec::with_capacity(capacity),
            message_seqs: Vec::with_capacity(capacity),
            message_ids: Vec::with_capacity(capacity),
            event_seqs: Vec::with_capacity(capacity),
            sender_ids: Vec::with_capacity(capacity),
            client_message_ids: Vec::with_capacity(capacity),
            digests: Vec::with_capacity(capacity),
            texts: Vec::with_capacity(capacity),
            attachments: Vec::with_capacity(capacity),
            reply_tos: Vec::with_capacity(capacity),
            mentions: Vec::with_capacity(capacity),
            mentions_all: Vec::with_capacity(capacity),
        }
    }

    fn push(&mut self, message: Message, digest: Vec<u8>) {
        self.group_ids.push(message.group_id.get());
        self.message_seqs.push(message.message_seq.get());
        self.message_ids.push(message.id);
        self.event_seqs.push(message.event_seq.get());
        self.sender_ids.push(message.sender.get());
        self.client_message_ids.push(message.client_message_id.as_str().to_owned());
        self.digests.push(digest);
        self.attachments.push(encode_attachments(&message.content.attachments));
        self.reply_tos.push(message.content.reply_to_message_seq.map(MessageSeq::get));
        self.mentions.push(mentions_literal(&message.content.mentions));
        self.mentions_all.push(message.content.mentions_all);
        self.texts.push(message.content.text.as_str().to_owned());
    }
}

/// Three parallel arrays from triples.
fn unzip3<A, B, C>(triples: impl IntoIterator<Item = (A, B, C)>) -> (Vec<A>, Vec<B>, Vec<C>) {
    let mut first = Vec::new();
    let mut second = Vec::new();
    let mut third = Vec::new();
    for (a, b, c) in triples {
        first.push(a);
        second.push(b);
        third.push(c);
    }
    (first, second, third)
}
