//! `apply`: one transaction per batch, built for throughput.
//!
//! 1. One statement locks the batch's existing group log rows (`FOR UPDATE`, ascending)
//!    and then creates the missing ones (`INSERT … ON CONFLICT DO NOTHING`, ascending): one
//!    lock per group per batch, always in the same order, and no other wait on a log row
//!    after it, so two batches never wait on each other in a cycle. (A group created by
//!    another batch meanwhile is neither locked nor created: the attempt starts over
//!    rather than lock it out of order.) Everything read after this sees every earlier
//!    commit of these groups, and nothing can change under the batch.
//! 2. What posts and system events need is read in bulk up front: their senders' last post
//!    times (only for posts under slow mode) and the system events already appended.
//! 3. The writes are applied in order against an in-memory view of the batch (counters,
//!    idempotency keys, post times). Posts and system events only touch that view and
//!    queue rows; other kinds read the messages table, so the queue is flushed before each
//!    of them (see [`super::timeline`]). A refused write changes nothing and takes no seq.
//! 4. The queue is written by one statement ([`super::queue`]): an `INSERT … SELECT FROM
//!    unnest(…)` per table and the new counters, as data-modifying CTEs. Then the
//!    transaction commits. Any database failure rolls all of it back: no seq is ever
//!    skipped or reused. A hot batch of posts is four round trips: BEGIN, lock, write,
//!    COMMIT.
//!
//! Idempotency keys are checked by the unique index itself, not by a lookup before the
//! insert: messages are inserted `ON CONFLICT (group_id, sender_id, client_message_id)`,
//! which returns the original row of a key already taken. That batch (one holding a retry:
//! rare) is then rolled back and applied again knowing the key, so the retry is answered
//! with the original. A lookup would cost a round trip on every batch, and its plan would
//! be at the mercy of statistics: a plan cached while a hot group's partition was still
//! empty scans the whole group for every key. Only posts refused by a rule (slow mode, a
//! missing reply target) are looked up, since a retry must be answered as one: refusals
//! and retries both write nothing, so the answer is simply corrected.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use fanfare_proto::common::v1 as common;
use sqlx::PgConnection;
use uuid::Uuid;

use super::queue::{CounterRow, KeyOf, Queue, TakenKey};
use super::rows::{During as _, content_digest, corrupt};
use super::timeline::{self, BatchLog};
use crate::domain::rules::{joined_member, slow_mode_wait, stored_time};
use crate::domain::updates::{EntryLink, TimelineChange};
use crate::domain::{Message, NewMessage};
use crate::store::{Applied, Committed, LogWrite, StoreError, StoreResult, WriteError, system_event_digest};

/// Applies a batch of writes in one transaction (see the module docs).
pub(super) async fn apply(
    pool: &fanfare_postgres::Pool,
    writes: Vec<LogWrite>,
    now: DateTime<Utc>,
) -> StoreResult<Committed> {
    if writes.is_empty() {
        return Ok(Committed::default());
    }
    let now = stored_time(now);
    let mut known_keys = HashMap::new();
    // Each attempt that starts over knows one more taken key, or finds one more group
    // created meanwhile: attempts are bounded by the batch's size.
    for _ in 0..=2 * writes.len() {
        match attempt(pool, &writes, now, &known_keys).await? {
            Attempt::Committed(outcomes) => return Ok(outcomes),
            Attempt::KeysTaken(taken) => known_keys.extend(taken),
            Attempt::GroupCreatedMeanwhile => {}
        }
    }
    Err(StoreError::Unavailable(anyhow::Error::msg("a batch started over too often").context("applying a batch")))
}

/// How one attempt at a batch ended.
enum Attempt {
    /// Committed, with one outcome per write and the entries appended.
    Committed(Committed),
    /// Rolled back: these idempotency keys were found taken.
    KeysTaken(Vec<(KeyOf, TakenKey)>),
    /// Rolled back: another batch created one of the groups' logs meanwhile.
    GroupCreatedMeanwhile,
}

async fn attempt(
    pool: &fanfare_postgres::Pool,
    writes: &[LogWrite],
    now: DateTime<Utc>,
    known_keys: &HashMap<KeyOf, TakenKey>,
) -> StoreResult<Attempt> {
    let mut tx = pool.begin().await.during("starting a batch")?;
    let Some(logs) = lock_logs(&mut tx, writes).await? else {
        tx.rollback().await.during("rolling back a batch")?;
        return Ok(Attempt::GroupCreatedMeanwhile);
    };
    let mut batch = Batch::start(&mut tx, logs, writes, now, known_keys.clone()).await?;
    for write in writes {
        match write {
            LogWrite::Post { message, slow_mode } => batch.post(message.clone(), *slow_mode)?,
            LogWrite::System { source, outbox_id, event } => batch.system(source, *outbox_id, event)?,
            other => {
                // Edits, deletes, purges, reactions and pins read the messages table: what
                // the batch queued before them must be in it.
                if let Some(taken) = batch.flush(&mut tx).await? {
                    tx.rollback().await.during("rolling back a batch")?;
                    return Ok(Attempt::KeysTaken(taken));
                }
                let outcome = timeline::apply(&mut tx, &mut batch, other.clone()).await?;
                batch.results.push(Some(outcome));
            }
        }
    }
    if let Some(taken) = batch.flush(&mut tx).await? {
        tx.rollback().await.during("rolling back a batch")?;
        return Ok(Attempt::KeysTaken(taken));
    }
    tx.commit().await.during("committing a batch")?;
    Ok(Attempt::Committed(batch.into_committed()?))
}

/// Locks the log rows of the batch's groups, creating those that have none (see the
/// module docs); `None` when another batch created one meanwhile.
async fn lock_logs(
    connection: &mut PgConnection,
    writes: &[LogWrite],
) -> StoreResult<Option<BTreeMap<GroupId, Counters>>> {
    let groups: BTreeSet<i64> = writes.iter().map(|write| write.group().get()).collect();
    let groups: Vec<i64> = groups.into_iter().collect();
    // UNION ALL runs its branches in order: the existing rows are locked before the
    // missing ones are created (and thereby held).
    let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "WITH created AS ( \
           INSERT INTO messages.group_logs (group_id) \
           SELECT group_id FROM unnest($1::bigint[]) AS group_id ORDER BY group_id \
           ON CONFLICT (group_id) DO NOTHING \
           RETURNING group_id, last_event_seq, last_message_seq, last_entry_token) \
         SELECT * FROM ( \
           SELECT group_id, last_event_seq, last_message_seq, last_entry_token FROM messages.group_logs \
           WHERE group_id = ANY($1) ORDER BY group_id FOR UPDATE) AS locked \
         UNION ALL SELECT * FROM created",
    )
    .bind(&groups)
    .fetch_all(&mut *connection)
    .await
    .during("locking group logs")?;
    let logs: BTreeMap<GroupId, Counters> = rows
        .into_iter()
        .map(|(group, last_event_seq, last_message_seq, last_entry_token)| {
            // Stored as bigint: the same 64 bits.
            let last_entry_token = last_entry_token as u64;
            (
                GroupId::from_trusted(group),
                Counters {
                    last_event_seq: EventSeq::from_trusted(last_event_seq),
                    last_message_seq: MessageSeq::from_trusted(last_message_seq),
                    last_entry_token,
                    changed: false,
                },
            )
        })
        .collect();
    Ok((logs.len() == groups.len()).then_some(logs))
}

/// A group's log counters as the batch has moved them.
struct Counters {
    last_event_seq: EventSeq,
    last_message_seq: MessageSeq,
    /// The token of the latest entry, which the next one links to.
    last_entry_token: u64,
    changed: bool,
}

/// Relayed events by (source, outbox id): their event_seq and content digest (`None` for rows
/// recorded before digests were kept).
type AppendedSystemEvents = HashMap<(String, i64), (EventSeq, Option<Vec<u8>>)>;

/// The state of one batch inside its transaction.
pub(super) struct Batch {
    now: DateTime<Utc>,
    logs: BTreeMap<GroupId, Counters>,
    keys: HashMap<KeyOf, TakenKey>,
    last_posted: HashMap<(GroupId, UserId), DateTime<Utc>>,
    /// Relayed events appended before or in this batch.
    system_events: AppendedSystemEvents,
    /// What the batch accepted and has not written yet.
    queue: Queue,
    /// Retried posts, answered at the next flush with the message as it then stands:
    /// (index of the result, group, message_seq).
    duplicates: Vec<(usize, GroupId, MessageSeq)>,
    /// Posts refused by a rule, whose keys are looked up at the next flush in case they
    /// are retries: (index of the result, key, content digest).
    refused_posts: Vec<(usize, KeyOf, Vec<u8>)>,
    /// One per write so far; `None` while a duplicate awaits its message.
    results: Vec<Option<Result<Applied, WriteError>>>,
}

impl Batch {
    /// Reads what the batch's posts and system events need, once its logs are locked;
    /// `known_keys` are idempotency keys an earlier attempt found taken.
    async fn start(
        connection: &mut PgConnection,
        logs: BTreeMap<GroupId, Counters>,
        writes: &[LogWrite],
        now: DateTime<Utc>,
        known_keys: HashMap<KeyOf, TakenKey>,
    ) -> StoreResult<Self> {
        Ok(Self {
            now,
            logs,
            keys: known_keys,
            last_posted: last_posts(connection, writes).await?,
            system_events: appended_system_events(connection, writes).await?,
            queue: Queue::default(),
            duplicates: Vec::new(),
            refused_posts: Vec::new(),
            results: Vec::with_capacity(writes.len()),
        })
    }
}

impl BatchLog for Batch {
    fn now(&self) -> DateTime<Utc> {
        self.now
    }

    fn append(&mut self, group: GroupId, change: &TimelineChange<'_>) -> StoreResult<EventSeq> {
        let counters = self.counters(group)?;
        counters.last_event_seq = counters.last_event_seq.next();
        counters.changed = true;
        let event_seq = counters.last_event_seq;
        let link = EntryLink::after(counters.last_entry_token);
        counters.last_entry_token = link.token;
        self.queue.push_update(change.to_stored(group, event_seq, self.now, link));
        Ok(event_seq)
    }
}

impl Batch {
    fn counters(&mut self, group: GroupId) -> StoreResult<&mut Counters> {
        self.logs.get_mut(&group).ok_or_else(|| corrupt(format!("group {group} was not locked by its batch")))
    }

    fn post(&mut self, new: NewMessage, slow_mode: Option<Duration>) -> StoreResult<()> {
        let outcome = self.try_post(new, slow_mode)?;
        self.results.push(outcome);
        Ok(())
    }

    /// `None` for a retry, answered at the next flush.
    fn try_post(
        &mut self,
        new: NewMessage,
        slow_mode: Option<Duration>,
    ) -> StoreResult<Option<Result<Applied, WriteError>>> {
        let group = new.group_id;
        let digest = content_digest(&new.content);
        let key = (group, new.sender, new.client_message_id.as_str().to_owned());
        // A retry is answered before any other rule: slow mode must not refuse it.
        if let Some(taken) = self.keys.get(&key) {
            if taken.digest != digest {
                let conflict = WriteError::IdempotencyConflict { key: key.2, original_seq: taken.message_seq };
                return Ok(Some(Err(conflict)));
            }
            self.duplicates.push((self.results.len(), group, taken.message_seq));
            return Ok(None);
        }
        let last_posted = self.last_posted.get(&(group, new.sender)).copied();
        if let Some(retry_after) = slow_mode_wait(last_posted, slow_mode, self.now) {
            self.refused_posts.push((self.results.len(), key, digest));
            return Ok(Some(Err(WriteError::SlowMode { group, retry_after })));
        }
        let now = self.now;
        let counters = self.counters(group)?;
        // Messages are never removed, so every seq up to the latest names one.
        if let Some(target) = new.content.reply_to_message_seq
            && !(MessageSeq::ZERO.next()..=counters.last_message_seq).contains(&target)
        {
            self.refused_posts.push((self.results.len(), key, digest));
            return Ok(Some(Err(WriteError::ReplyTargetNotFound(target))));
        }
        counters.last_message_seq = counters.last_message_seq.next();
        let message = Message {
            id: Uuid::now_v7(),
            group_id: group,
            message_seq: counters.last_message_seq,
            event_seq: counters.last_event_seq.next(),
            sender: new.sender,
            client_message_id: new.client_message_id,
            content: new.content,
            created_at: now,
            edited_at: None,
            version: 1,
            deleted_at: None,
            reactions: Vec::new(),
            pinned: false,
        };
        let event_seq = self.append(group, &TimelineChange::Posted(&message))?;
        debug_assert_eq!(event_seq, message.event_seq);
        self.keys.insert(key, TakenKey { message_seq: message.message_seq, digest: digest.clone() });
        self.last_posted.insert((group, message.sender), now);
        self.queue.push_message(message.clone(), digest);
        Ok(Some(Ok(Applied::Posted { message, duplicate: false })))
    }

    fn system(&mut self, source: &str, outbox_id: i64, event: &common::GroupEvent) -> StoreResult<()> {
        let digest = system_event_digest(event);
        let key = (source.to_owned(), outbox_id);
        if let Some((event_seq, original)) = self.system_events.get(&key) {
            let answer = if original.as_ref().is_some_and(|original| *original != digest) {
                Err(WriteError::SystemEventConflict { origin: key.0, outbox_id, original_seq: *event_seq })
            } else {
                Ok(Applied::SystemAppended { event_seq: *event_seq, duplicate: true })
            };
            self.results.push(Some(answer));
            return Ok(());
        }
        let group = GroupId::from_trusted(event.group_id);
        let event_seq = self.append(group, &TimelineChange::System(event))?;
        self.system_events.insert(key, (event_seq, Some(digest.clone())));
        self.queue.push_system_event(source, outbox_id, group, event_seq, digest);
        if let Some(joined) = joined_member(event) {
            let last_message_seq = self.counters(group)?.last_message_seq;
            self.queue.push_joined_marker(group, joined, last_message_seq);
        }
        self.results.push(Some(Ok(Applied::SystemAppended { event_seq, duplicate: false })));
        Ok(())
    }

    /// Writes everything queued with the counters so far, then answers the retries queued
    /// so far. `Some` when idempotency keys the batch took as new were taken already: the
    /// batch must be rolled back and applied again knowing them.
    async fn flush(&mut self, connection: &mut PgConnection) -> StoreResult<Option<Vec<(KeyOf, TakenKey)>>> {
        self.recheck_refused_posts(connection).await?;
        if !self.queue.is_empty() {
            let counters = self
                .logs
                .iter()
                .filter(|(_, counters)| counters.changed)
                .map(|(group, counters)| CounterRow {
                    group: group.get(),
                    last_event_seq: counters.last_event_seq,
                    last_message_seq: counters.last_message_seq,
                    last_entry_token: counters.last_entry_token,
                })
                .collect();
            let taken = self.queue.write(connection, self.now, counters).await?;
            if !taken.is_empty() {
                return Ok(Some(taken));
            }
        }
        if self.duplicates.is_empty() {
            return Ok(None);
        }
        let duplicates = std::mem::take(&mut self.duplicates);
        let keys: Vec<(GroupId, MessageSeq)> = duplicates.iter().map(|(_, group, seq)| (*group, *seq)).collect();
        let found = super::rows::messages_by_key(connection, &keys).await?;
        for (index, group, message_seq) in duplicates {
            let message = found.get(&(group, message_seq)).cloned().ok_or_else(|| {
                corrupt(format!("idempotency key of group {group} names missing message {message_seq}"))
            })?;
            let slot = self.results.get_mut(index).ok_or_else(|| corrupt(format!("no result slot {index}")))?;
            *slot = Some(Ok(Applied::Posted { message, duplicate: true }));
        }
        Ok(None)
    }

    /// Answers refused posts whose key turns out taken as retries (or conflicts).
    async fn recheck_refused_posts(&mut self, connection: &mut PgConnection) -> StoreResult<()> {
        if self.refused_posts.is_empty() {
            return Ok(());
        }
        let refused = std::mem::take(&mut self.refused_posts);
        let keys: Vec<&KeyOf> = refused.iter().map(|(_, key, _)| key).collect();
        let taken = taken_keys(connection, &keys).await?;
        for (index, key, digest) in refused {
            let Some(original) = taken.get(&key) else { continue };
            if original.digest == digest {
                self.duplicates.push((index, key.0, original.message_seq));
            } else {
                let conflict =
                    WriteError::IdempotencyConflict { key: key.2.clone(), original_seq: original.message_seq };
                let slot = self.results.get_mut(index).ok_or_else(|| corrupt(format!("no result slot {index}")))?;
                *slot = Some(Err(conflict));
            }
        }
        Ok(())
    }

    fn into_committed(mut self) -> StoreResult<Committed> {
        let appended = self.queue.take_written();
        let outcomes = self
            .results
            .into_iter()
            .map(|outcome| outcome.ok_or_else(|| corrupt("a retried post was never answered".to_owned())))
            .collect::<StoreResult<_>>()?;
        Ok(Committed { outcomes, appended })
    }
}

// ---------------------------------------------------------------------------------------
// Bulk reads

/// Which of these idempotency keys are taken, and by what (for refused posts only: see
/// the module docs).
///
/// Bulk lookups by key are written `unnest(…) CROSS JOIN LATERAL (… OFFSET 0)`: the
/// OFFSET keeps the planner from turning them into a hash join over whole tables, so each
/// key is a probe into the one partition of its group.
async fn taken_keys(connection: &mut PgConnection, keys: &[&KeyOf]) -> StoreResult<HashMap<KeyOf, TakenKey>> {
    let group_ids: Vec<i64> = keys.iter().map(|(group, _, _)| group.get()).collect();
    let sender_ids: Vec<i64> = keys.iter().map(|(_, sender, _)| sender.get()).collect();
    let client_message_ids: Vec<&str> = keys.iter().map(|(_, _, key)| key.as_str()).collect();
    let rows: Vec<(i64, i64, String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT m.group_id, m.sender_id, m.client_message_id, m.message_seq, m.content_digest \
         FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS k (group_id, sender_id, client_message_id) \
         CROSS JOIN LATERAL ( \
           SELECT * FROM messages.messages m WHERE m.group_id = k.group_id AND m.sender_id = k.sender_id \
           AND m.client_message_id = k.client_message_id OFFSET 0) AS m",
    )
    .bind(&group_ids)
    .bind(&sender_ids)
    .bind(&client_message_ids)
    .fetch_all(&mut *connection)
    .await
    .during("reading idempotency keys")?;
    Ok(rows
        .into_iter()
        .map(|(group, sender, key, message_seq, digest)| {
            let taken = TakenKey { message_seq: MessageSeq::from_trusted(message_seq), digest };
            ((GroupId::from_trusted(group), UserId::from_trusted(sender), key), taken)
        })
        .collect())
}

/// When the senders of posts under slow mode last posted in their groups (a table keyed
/// by exactly this, so the lookup has one possible plan).
async fn last_posts(
    connection: &mut PgConnection,
    writes: &[LogWrite],
) -> StoreResult<HashMap<(GroupId, UserId), DateTime<Utc>>> {
    let slowed: BTreeSet<(i64, i64)> = writes
        .iter()
        .filter_map(|write| match write {
            LogWrite::Post { message, slow_mode: Some(interval) } if !interval.is_zero() => {
                Some((message.group_id.get(), message.sender.get()))
            }
            _ => None,
        })
        .collect();
    if slowed.is_empty() {
        return Ok(HashMap::new());
    }
    let (group_ids, sender_ids): (Vec<i64>, Vec<i64>) = slowed.into_iter().unzip();
    let rows: Vec<(i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT s.group_id, s.user_id, s.last_posted_at \
         FROM unnest($1::bigint[], $2::bigint[]) AS p (group_id, user_id) \
         CROSS JOIN LATERAL ( \
           SELECT * FROM messages.sender_state s \
           WHERE s.group_id = p.group_id AND s.user_id = p.user_id OFFSET 0) AS s",
    )
    .bind(group_ids)
    .bind(sender_ids)
    .fetch_all(&mut *connection)
    .await
    .during("reading senders' last posts")?;
    Ok(rows
        .into_iter()
        .map(|(group, sender, at)| ((GroupId::from_trusted(group), UserId::from_trusted(sender)), at))
        .collect())
}

/// The batch's system events that were appended before: (source, outbox id) → (event_seq,
/// content digest).
async fn appended_system_events(
    connection: &mut PgConnection,
    writes: &[LogWrite],
) -> StoreResult<AppendedSystemEvents> {
    let (sources, outbox_ids): (Vec<&str>, Vec<i64>) = writes
        .iter()
        .filter_map(|write| match write {
            LogWrite::System { source, outbox_id, .. } => Some((source.as_str(), *outbox_id)),
            _ => None,
        })
        .unzip();
    if outbox_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64, i64, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT e.source, e.outbox_id, e.event_seq, e.content_digest FROM messages.system_events e \
         JOIN unnest($1::text[], $2::bigint[]) AS k (source, outbox_id) USING (source, outbox_id)",
    )
    .bind(sources)
    .bind(outbox_ids)
    .fetch_all(&mut *connection)
    .await
    .during("reading appended system events")?;
    Ok(rows
        .into_iter()
        .map(|(source, outbox_id, event_seq, digest)| {
            ((source, outbox_id), (EventSeq::from_trusted(event_seq), digest))
        })
        .collect())
}
