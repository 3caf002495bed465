//! The production [`MessageStore`]: PostgreSQL through sqlx, in schema `messages`.
//!
//! Every name in the SQL is schema-qualified (`messages.updates`), so the store works on
//! any pool whatever its `search_path`. Queries are checked at run time (`sqlx::query*`
//! with binds), so building needs no database. Writes go through [`MessageStore::apply`]
//! (`batch`, `queue`, `timeline`); this file holds the reads, read markers, the outbox and
//! pruning.
//!
//! Locking, always in this order so that no two transactions wait on each other in a
//! cycle: group log rows (ascending group id; `apply` and pruning), then rows of the
//! tables those rows guard (messages, reactions, mentions, sender state, read markers).
//! `mark_read` touches one read marker and nothing else.

mod batch;
mod queue;
mod rows;
mod timeline;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use fanfare_core::paging::PageSize;
use sqlx::PgPool;
use uuid::Uuid;

use self::rows::{During as _, EVERYONE, MessageRow, select_messages};
use super::{Committed, Direction, LogWrite, MessageStore, OutboxCursor, StoreResult, UpdatesRead};
use crate::domain::rules::{lease_end, stored_time};
use crate::domain::{LogPosition, Message, StoredUpdate, Unread, outbox_lane};

/// The schema the messages service owns; its migrations table lives there too.
pub const SCHEMA: &str = "messages";

/// Groups whose logs one pruning transaction trims: enough to amortise the round trips,
/// few enough that posting to them waits only briefly on the pruner's locks.
const PRUNE_GROUPS_PER_TRANSACTION: usize = 100;

/// A [`MessageStore`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresMessageStore {
    pool: fanfare_postgres::Pool,
}

impl PostgresMessageStore {
    /// Opens a pool of at most `max_connections` connections to `database_url`.
    pub async fn connect(database_url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = fanfare_postgres::connect(database_url, max_connections, "fanfare-messages").await?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool: fanfare_postgres::Pool::new(pool) }
    }

    /// The pool, for health checks and tests.
    pub fn pool(&self) -> &PgPool {
        self.pool.inner()
    }

    /// A connection for one statement: at once an unavailable error while the database is
    /// known to be down (`fanfare_postgres::Pool`).
    async fn connection(&self) -> StoreResult<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        Ok(self.pool.acquire().await.during("acquiring a connection")?)
    }

    /// Creates schema `messages` and applies pending migrations, recording them in
    /// `messages._sqlx_migrations` so other services' migrations in the same database stay
    /// separate. Safe to run from several pods at once: sqlx holds a session advisory
    /// lock from before the schema is created until the last migration is applied.
    pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
        fanfare_postgres::migrate(pool, sqlx::migrate!("./migrations"), SCHEMA).await
    }

    async fn position(&self, group: GroupId) -> StoreResult<LogPosition> {
        Ok(self.log_positions(&[group]).await?.into_iter().next().unwrap_or_else(|| LogPosition::empty(group)))
    }

    /// Trims the logs of some groups, each up to its cutoff; returns the entries dropped.
    async fn prune_groups(&self, group_ids: &[i64], cutoffs: &[i64]) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.during("starting to prune")?;
        // The log rows first, in the order `apply` takes them: the position moves with
        // the entries, and no batch deadlocks with the pruner.
        sqlx::query("SELECT group_id FROM messages.group_logs WHERE group_id = ANY($1) ORDER BY group_id FOR UPDATE")
            .bind(group_ids)
            .execute(&mut *tx)
            .await
            .during("locking group logs to prune")?;
        let dropped = sqlx::query(
            "WITH cutoffs AS (SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS c (group_id, cutoff)), \
             raised AS ( \
               UPDATE messages.group_logs l \
               SET oldest_retained_event_seq = GREATEST(l.oldest_retained_event_seq, c.cutoff + 1) \
               FROM cutoffs c WHERE l.group_id = c.group_id) \
             DELETE FROM messages.updates u USING cutoffs c \
             WHERE u.group_id = c.group_id AND u.event_seq <= c.cutoff",
        )
        .bind(group_ids)
        .bind(cutoffs)
        .execute(&mut *tx)
        .await
        .during("pruning updates")?
        .rows_affected();
        tx.commit().await.during("committing a prune")?;
        Ok(dropped)
    }
}

fn message_rows(rows: Vec<MessageRow>) -> StoreResult<Vec<Message>> {
    rows.into_iter().map(MessageRow::into_message).collect()
}

#[async_trait]
impl MessageStore for PostgresMessageStore {
    async fn apply(&self, writes: Vec<LogWrite>, now: DateTime<Utc>) -> StoreResult<Committed> {
        batch::apply(&self.pool, writes, now).await
    }

    async fn get_messages(&self, group: GroupId, message_seqs: &[MessageSeq]) -> StoreResult<Vec<Message>> {
        let mut connection = self.pool.acquire().await.during("acquiring a connection")?;
        rows::messages_by_seq(&mut connection, group, message_seqs).await
    }

    async fn get_messages_by_id(&self, group: GroupId, ids: &[Uuid]) -> StoreResult<Vec<Message>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<MessageRow> =
            sqlx::query_as(select_messages!("WHERE m.group_id = $1 AND m.message_id = ANY($2) ORDER BY m.message_seq"))
                .bind(group.get())
                .bind(ids)
                .fetch_all(&mut *self.connection().await?)
                .await
                .during("reading messages by id")?;
        message_rows(rows)
    }

    async fn list_messages(
        &self,
        group: GroupId,
        direction: Direction,
        anchor: Option<MessageSeq>,
        not_before: Option<DateTime<Utc>>,
        limit: PageSize,
    ) -> StoreResult<Vec<Message>> {
        let anchor = anchor.map(MessageSeq::get);
        // Keyset paging on the primary key, in the direction of travel; the extra row
        // proves there is more.
        let (sql, anchor) = match direction {
            Direction::Forward => (
                select_messages!(
                    "WHERE m.group_id = $1 AND m.message_seq > $2 \
                     AND m.created_at >= COALESCE($3, '-infinity'::timestamptz) \
                     ORDER BY m.message_seq LIMIT $4"
                ),
                anchor.unwrap_or(0),
            ),
            Direction::Backward => (
                select_messages!(
                    "WHERE m.group_id = $1 AND m.message_seq < $2 \
                     AND m.created_at >= COALESCE($3, '-infinity'::timestamptz) \
                     ORDER BY m.message_seq DESC LIMIT $4"
                ),
                anchor.unwrap_or(i64::MAX),
            ),
        };
        let rows: Vec<MessageRow> = sqlx::query_as(sql)
            .bind(group.get())
            .bind(anchor)
            .bind(not_before)
            .bind(limit.as_limit() + 1)
            .fetch_all(&mut *self.connection().await?)
            .await
            .during("listing messages")?;
        message_rows(rows)
    }

    async fn get_updates(&self, group: GroupId, after: EventSeq, limit: PageSize) -> StoreResult<UpdatesRead> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT event_seq, payload FROM messages.updates \
             WHERE group_id = $1 AND event_seq > $2 ORDER BY event_seq LIMIT $3",
        )
        .bind(group.get())
        .bind(after.get())
        .bind(limit.as_limit())
        .fetch_all(&mut *self.connection().await?)
        .await
        .during("reading updates")?;
        // Read after the entries, so the position is never behind them.
        let position = self.position(group).await?;
        let updates = rows
            .into_iter()
            .map(|(event_seq, payload)| StoredUpdate {
                group_id: group,
                event_seq: EventSeq::from_trusted(event_seq),
                payload: payload.into(),
            })
            .collect();
        Ok(UpdatesRead { updates, position })
    }

    async fn log_positions(&self, groups: &[GroupId]) -> StoreResult<Vec<LogPosition>> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let group_ids: Vec<i64> = groups.iter().map(|group| group.get()).collect();
        let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT group_id, last_event_seq, last_message_seq, oldest_retained_event_seq, last_entry_token \
             FROM messages.group_logs WHERE group_id = ANY($1)",
        )
        .bind(&group_ids)
        .fetch_all(&mut *self.connection().await?)
        .await
        .during("reading log positions")?;
        let found: HashMap<i64, LogPosition> = rows
            .into_iter()
            .map(|(group, last_event_seq, last_message_seq, oldest_retained_event_seq, last_entry_token)| {
                let position = LogPosition {
                    group_id: GroupId::from_trusted(group),
                    last_event_seq: EventSeq::from_trusted(last_event_seq),
                    last_message_seq: MessageSeq::from_trusted(last_message_seq),
                    oldest_retained_event_seq: EventSeq::from_trusted(oldest_retained_event_seq),
                    // Stored as bigint: the same 64 bits.
                    last_entry_token: last_entry_token as u64,
                };
                (group, position)
            })
            .collect();
        Ok(groups
            .iter()
            .map(|group| found.get(&group.get()).copied().unwrap_or_else(|| LogPosition::empty(*group)))
            .collect())
    }

    async fn mark_read(&self, group: GroupId, user: UserId, message_seq: MessageSeq) -> StoreResult<MessageSeq> {
        let marker: i64 = sqlx::query_scalar(
            "INSERT INTO messages.read_markers AS r (group_id, user_id, read_message_seq) \
             SELECT $1, $2, GREATEST(0, LEAST($3, COALESCE( \
               (SELECT last_message_seq FROM messages.group_logs WHERE group_id = $1), 0))) \
             ON CONFLICT (group_id, user_id) \
             DO UPDATE SET read_message_seq = GREATEST(r.read_message_seq, EXCLUDED.read_message_seq) \
             RETURNING read_message_seq",
        )
        .bind(group.get())
        .bind(user.get())
        .bind(message_seq.get())
        .fetch_one(&mut *self.connection().await?)
        .await
        .during("marking messages read")?;
        Ok(MessageSeq::from_trusted(marker))
    }

    async fn unread_counts(&self, user: UserId, groups: &[GroupId]) -> StoreResult<Vec<Unread>> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let group_ids: Vec<i64> = groups.iter().map(|group| group.get()).collect();
        // Counted on read: the unread messages are a difference of seqs, the mentions one
        // index range per group (the user's own rows and the @all rows).
        // Correlated subqueries rather than joins with unnest, so every lookup stays an
        // index probe however large the tables grow.
        let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT s.group_id, s.last_message_seq, s.read_message_seq, \
               (SELECT count(*) FROM messages.message_mentions mm \
                WHERE mm.group_id = s.group_id AND mm.user_id IN ($1, $3) \
                AND mm.message_seq > s.read_message_seq) \
             FROM (SELECT g.group_id, \
                     COALESCE((SELECT l.last_message_seq FROM messages.group_logs l \
                               WHERE l.group_id = g.group_id), 0) AS last_message_seq, \
                     COALESCE((SELECT r.read_message_seq FROM messages.read_markers r \
                               WHERE r.group_id = g.group_id AND r.user_id = $1), 0) AS read_message_seq \
                   FROM (SELECT DISTINCT group_id FROM unnest($2::bigint[]) AS group_id) AS g \
                   OFFSET 0) AS s",
        )
        .bind(user.get())
        .bind(&group_ids)
        .bind(EVERYONE)
        .fetch_all(&mut *self.connection().await?)
        .await
        .during("counting unread messages")?;
        let found: HashMap<i64, Unread> = rows
            .into_iter()
            .map(|(group, last_message_seq, read_message_seq, unread_mentions)| {
                let unread = Unread {
                    group_id: GroupId::from_trusted(group),
                    unread_messages: (last_message_seq - read_message_seq).max(0),
                    unread_mentions,
                    last_message_seq: MessageSeq::from_trusted(last_message_seq),
                    read_message_seq: MessageSeq::from_trusted(read_message_seq),
                };
                (group, unread)
            })
            .collect();
        groups
            .iter()
            .map(|group| {
                found
                    .get(&group.get())
                    .copied()
                    .ok_or_else(|| rows::corrupt(format!("no unread state for group {group}")))
            })
            .collect()
    }

    async fn unpublished(
        &self,
        lanes: &[i16],
        committed_before: DateTime<Utc>,
        after: OutboxCursor,
        limit: u32,
    ) -> StoreResult<Vec<StoredUpdate>> {
        // The row comparison walks the outbox key (lane, group_id, event_seq) from the cursor.
        let (after_lane, after_group, after_seq) = match after {
            Some((group, event_seq)) => (outbox_lane(group), group.get(), event_seq.get()),
            None => (-1, 0, 0),
        };
        let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT o.group_id, o.event_seq, u.payload FROM messages.outbox o \
             CROSS JOIN LATERAL ( \
               SELECT payload FROM messages.updates u \
               WHERE u.group_id = o.group_id AND u.event_seq = o.event_seq OFFSET 0) AS u \
             WHERE o.lane = ANY($1) AND o.committed_at < $2 \
               AND (o.lane, o.group_id, o.event_seq) > ($3::smallint, $4, $5) \
             ORDER BY o.lane, o.group_id, o.event_seq LIMIT $6",
        )
        .bind(lanes)
        .bind(stored_time(committed_before))
        .bind(after_lane)
        .bind(after_group)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.connection().await?)
        .await
        .during("reading unpublished updates")?;
        Ok(rows
            .into_iter()
            .map(|(group, event_seq, payload)| StoredUpdate {
                group_id: GroupId::from_trusted(group),
                event_seq: EventSeq::from_trusted(event_seq),
                payload: payload.into(),
            })
            .collect())
    }

    async fn ack_outbox(&self, published: &[(GroupId, EventSeq)]) -> StoreResult<()> {
        if published.is_empty() {
            return Ok(());
        }
        let lanes: Vec<i16> = published.iter().map(|(group, _)| outbox_lane(*group)).collect();
        let groups: Vec<i64> = published.iter().map(|(group, _)| group.get()).collect();
        let seqs: Vec<i64> = published.iter().map(|(_, event_seq)| event_seq.get()).collect();
        // Not durable on purpose: an acknowledgement lost in a crash only makes recovery
        // publish the update again, which subscribers recognise by its event_seq; a durable
        // commit per acknowledgement batch would cost a WAL flush for nothing. One statement,
        // its own transaction: `set_config(.., true)` relaxes the commit of that transaction
        // alone, without the round trips of BEGIN, SET LOCAL and COMMIT.
        sqlx::query(
            "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)) \
             DELETE FROM messages.outbox o \
             USING unnest($1::smallint[], $2::bigint[], $3::bigint[]) AS k (lane, group_id, event_seq) \
             WHERE o.lane = k.lane AND o.group_id = k.group_id AND o.event_seq = k.event_seq \
               AND EXISTS (SELECT 1 FROM relaxed)",
        )
        .bind(lanes)
        .bind(groups)
        .bind(seqs)
        .execute(&mut *self.connection().await?)
        .await
        .during("acknowledging outbox entries")?;
        Ok(())
    }

    async fn orphaned_lanes(&self, committed_before: DateTime<Utc>) -> StoreResult<Vec<i16>> {
        // One probe of the outbox key per lane: the first row in key order that is old
        // enough. (An EXISTS is planned as a scan and aggregate of the whole table once the
        // outbox has grown — a Redis outage leaves it large, and every pod asks once a
        // second; without the ORDER BY the LIMIT is planned as a table scan per lane.)
        sqlx::query_scalar(
            "SELECT l.lane FROM messages.outbox_lanes l \
             CROSS JOIN LATERAL ( \
               SELECT 1 FROM messages.outbox o WHERE o.lane = l.lane AND o.committed_at < $1 \
               ORDER BY o.lane, o.group_id, o.event_seq LIMIT 1) AS old \
             ORDER BY l.lane",
        )
        .bind(stored_time(committed_before))
        .fetch_all(&mut *self.connection().await?)
        .await
        .during("finding orphaned outbox lanes")
        .map_err(Into::into)
    }

    async fn claim_lane(&self, lane: i16, owner: Uuid, lease: Duration, now: DateTime<Utc>) -> StoreResult<bool> {
        let now = stored_time(now);
        let claimed: Option<i16> = sqlx::query_scalar(
            "UPDATE messages.outbox_lanes SET owner = $2, leased_until = $3 \
             WHERE lane = $1 AND (owner IS NULL OR owner = $2 OR leased_until < $4) \
             RETURNING lane",
        )
        .bind(lane)
        .bind(owner)
        .bind(lease_end(now, lease))
        .bind(now)
        .fetch_optional(&mut *self.connection().await?)
        .await
        .during("claiming an outbox lane")?;
        Ok(claimed.is_some())
    }

    async fn release_lane(&self, lane: i16, owner: Uuid) -> StoreResult<()> {
        sqlx::query(
            "UPDATE messages.outbox_lanes SET owner = NULL, leased_until = NULL WHERE lane = $1 AND owner = $2",
        )
        .bind(lane)
        .bind(owner)
        .execute(&mut *self.connection().await?)
        .await
        .during("releasing an outbox lane")?;
        Ok(())
    }

    async fn prune_updates(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        // Per group, a prefix of the log: up to the last entry older than `before`, but
        // never an entry still waiting in the outbox (nor any after it).
        let cutoffs: Vec<(i64, i64)> = sqlx::query_as(
            "WITH old AS ( \
               SELECT group_id, max(event_seq) AS last_old FROM messages.updates \
               WHERE created_at < $1 GROUP BY group_id), \
             waiting AS ( \
               SELECT group_id, min(event_seq) AS first_waiting FROM messages.outbox GROUP BY group_id) \
             SELECT old.group_id, LEAST(old.last_old, COALESCE(waiting.first_waiting - 1, old.last_old)) \
             FROM old LEFT JOIN waiting ON waiting.group_id = old.group_id \
             ORDER BY old.group_id",
        )
        .bind(stored_time(before))
        .fetch_all(&mut *self.connection().await?)
        .await
        .during("finding updates to prune")?;
        let cutoffs: Vec<(i64, i64)> = cutoffs.into_iter().filter(|(_, cutoff)| *cutoff >= 1).collect();
        let mut dropped = 0;
        for chunk in cutoffs.chunks(PRUNE_GROUPS_PER_TRANSACTION) {
            let (group_ids, group_cutoffs): (Vec<i64>, Vec<i64>) = chunk.iter().copied().unzip();
            dropped += self.prune_groups(&group_ids, &group_cutoffs).await?;
        }
        Ok(dropped)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.pool.ping().await.during("pinging the database")?;
        Ok(())
    }
}
