//! The groups outbox: rows appended inside each change's transaction, then claimed by the
//! relay and marked published.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::time::stored_time;
use fanfare_postgres::Pool;
use sqlx::PgConnection;

use super::rows::{During as _, connection};
use crate::domain::{GroupChange, OutboxEntry};
use crate::store::{StoreResult, claim_expiry, claim_window};

/// The transaction-scoped advisory lock outbox claims take turns on, so that each claim
/// sees every claim committed before it (see `claim_outbox`).
const OUTBOX_CLAIM_LOCK: i64 = i64::from_be_bytes(*b"grpoutbx");

/// Appends changes of one group to the outbox, in the given order.
pub(super) async fn append_outbox(
    connection: &mut PgConnection,
    group: GroupId,
    changes: &[GroupChange],
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let payloads: Vec<Vec<u8>> = changes.iter().map(|change| change.encode(group, Some(actor), now)).collect();
    // ORDER BY the array position so identity ids follow the order of the changes.
    sqlx::query(
        "INSERT INTO groups.outbox (group_id, payload, created_at) \
         SELECT $1, payload, $3 FROM unnest($2::bytea[]) WITH ORDINALITY AS change(payload, position) \
         ORDER BY position",
    )
    .bind(group.get())
    .bind(payloads)
    .bind(now)
    .execute(&mut *connection)
    .await
    .during("appending to the outbox")?;
    Ok(())
}

pub(super) async fn claim_outbox(
    pool: &Pool,
    limit: u32,
    lease: Duration,
    now: DateTime<Utc>,
) -> StoreResult<Vec<OutboxEntry>> {
    let now = stored_time(now);
    let claimed_until = claim_expiry(now, lease)?;
    let mut tx = pool.begin().await.during("beginning an outbox claim")?;
    // Claims take turns. Without this, a claim running beside another would not see its
    // uncommitted claim on a group's row, skip that locked row, and take the group's next
    // one: two relays would then deliver one group's rows concurrently, in either order.
    // The turn lasts one short statement.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(OUTBOX_CLAIM_LOCK)
        .execute(&mut *tx)
        .await
        .during("waiting for the outbox claim lock")?;
    // A fresh statement, so a fresh snapshot: it sees every claim committed before ours.
    // Candidates: the oldest `window` claimable rows, but none of a group with a live
    // claim (a hashed set of the few claimed groups). SKIP LOCKED passes over rows
    // another relay is marking published right now.
    let mut rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
        "WITH claimable AS ( \
             SELECT candidate.id FROM groups.outbox candidate \
             WHERE candidate.published_at IS NULL \
               AND candidate.id <= ( \
                   SELECT max(scan_window.id) FROM ( \
                       SELECT id FROM groups.outbox \
                       WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < $1) \
                       ORDER BY id LIMIT $4 \
                   ) AS scan_window) \
               AND (candidate.claimed_until IS NULL OR candidate.claimed_until < $1) \
               AND candidate.group_id NOT IN ( \
                   SELECT live.group_id FROM groups.outbox live \
                   WHERE live.published_at IS NULL AND live.claimed_until >= $1) \
             ORDER BY candidate.id \
             LIMIT $2 \
             FOR UPDATE SKIP LOCKED) \
         UPDATE groups.outbox claimed SET claimed_until = $3 \
         FROM claimable WHERE claimed.id = claimable.id \
         RETURNING claimed.id, claimed.group_id, claimed.payload",
    )
    .bind(now)
    .bind(i64::from(limit))
    .bind(claimed_until)
    .bind(i64::from(claim_window(limit)))
    .fetch_all(&mut *tx)
    .await
    .during("claiming outbox rows")?;
    tx.commit().await.during("committing an outbox claim")?;
    // RETURNING follows no particular order.
    rows.sort_unstable_by_key(|(id, _, _)| *id);
    Ok(rows
        .into_iter()
        .map(|(id, group_id, payload)| OutboxEntry { id, group_id: GroupId::from_trusted(group_id), payload })
        .collect())
}

pub(super) async fn mark_published(pool: &Pool, ids: &[i64], now: DateTime<Utc>) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("UPDATE groups.outbox SET published_at = $2 WHERE id = ANY($1) AND published_at IS NULL")
        .bind(ids)
        .bind(stored_time(now))
        .execute(&mut *connection(pool).await?)
        .await
        .during("marking outbox rows published")?;
    Ok(())
}

pub(super) async fn oldest_unpublished(pool: &Pool) -> StoreResult<Option<DateTime<Utc>>> {
    // By id rather than by time, so the partial index answers with one probe.
    sqlx::query_scalar("SELECT created_at FROM groups.outbox WHERE published_at IS NULL ORDER BY id LIMIT 1")
        .fetch_optional(&mut *connection(pool).await?)
        .await
        .during("reading the outbox lag")
        .map_err(Into::into)
}

pub(super) async fn read_outbox(pool: &Pool, after_id: i64, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
    let rows: Vec<(i64, i64, Vec<u8>)> =
        sqlx::query_as("SELECT id, group_id, payload FROM groups.outbox WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&mut *connection(pool).await?)
            .await
            .during("reading the outbox")?;
    Ok(rows
        .into_iter()
        .map(|(id, group_id, payload)| OutboxEntry { id, group_id: GroupId::from_trusted(group_id), payload })
        .collect())
}
