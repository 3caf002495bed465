//! Bans and mutes.

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::PageSize;
use fanfare_core::time::stored_time;
use fanfare_postgres::Pool;
use sqlx::PgConnection;

use super::locking::{GroupLock, lock_group};
use super::membership::delete_membership;
use super::outbox::append_outbox;
use super::rows::{BanRow, During as _, MemberRow, connection};
use crate::domain::{Ban, BanReason, GroupChange, Membership};
use crate::store::{StoreError, StoreResult};

pub(super) async fn ban(
    pool: &Pool,
    group: GroupId,
    user: UserId,
    reason: BanReason,
    until: Option<DateTime<Utc>>,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<Ban> {
    let now = stored_time(now);
    let until = until.map(stored_time);
    let mut tx = pool.begin().await.during("starting a transaction")?;
    // Exclusive: a join in flight commits first and is then undone by this ban; a join
    // after it sees the ban (a single-statement join that waited for it sees the new row
    // version and starts again with a snapshot that holds the ban).
    let locked = lock_group(&mut tx, group, GroupLock::ExclusiveNewVersion).await?;
    locked.ensure_active()?;
    if locked.owner == user {
        return Err(StoreError::OwnerImmovable(group));
    }
    sqlx::query(
        "INSERT INTO groups.bans (group_id, user_id, banned_by, reason, banned_at, until) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (group_id, user_id) DO UPDATE SET \
         banned_by = EXCLUDED.banned_by, reason = EXCLUDED.reason, banned_at = EXCLUDED.banned_at, \
         until = EXCLUDED.until",
    )
    .bind(group.get())
    .bind(user.get())
    .bind(actor.get())
    .bind(reason.as_str())
    .bind(now)
    .bind(until)
    .execute(&mut *tx)
    .await
    .during("storing a ban")?;
    let was_member = delete_membership(&mut tx, &locked, user).await?;
    sqlx::query("DELETE FROM groups.join_requests WHERE group_id = $1 AND user_id = $2")
        .bind(group.get())
        .bind(user.get())
        .execute(&mut *tx)
        .await
        .during("deleting a join request")?;
    append_outbox(&mut tx, group, &[GroupChange::Banned { user, until, was_member }], actor, now).await?;
    tx.commit().await.during("committing a ban")?;
    Ok(Ban { group_id: group, user_id: user, banned_by: actor, reason, banned_at: now, until })
}

pub(super) async fn unban(
    pool: &Pool,
    group: GroupId,
    user: UserId,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let now = stored_time(now);
    let mut tx = pool.begin().await.during("starting a transaction")?;
    lock_group(&mut tx, group, GroupLock::Share).await?.ensure_active()?;
    let lifted =
        sqlx::query("DELETE FROM groups.bans WHERE group_id = $1 AND user_id = $2 AND (until IS NULL OR until > $3)")
            .bind(group.get())
            .bind(user.get())
            .bind(now)
            .execute(&mut *tx)
            .await
            .during("lifting a ban")?;
    if lifted.rows_affected() == 0 {
        return Err(StoreError::NotBanned { group, user });
    }
    append_outbox(&mut tx, group, &[GroupChange::Unbanned { user }], actor, now).await?;
    tx.commit().await.during("committing an unban")?;
    Ok(())
}

pub(super) async fn get_active_ban(
    pool: &Pool,
    group: GroupId,
    user: UserId,
    now: DateTime<Utc>,
) -> StoreResult<Option<Ban>> {
    let mut connection = pool.acquire().await.during("acquiring a connection")?;
    active_ban(&mut connection, group, user, now).await
}

pub(super) async fn list_bans(
    pool: &Pool,
    group: GroupId,
    after: Option<UserId>,
    limit: PageSize,
    now: DateTime<Utc>,
) -> StoreResult<Vec<Ban>> {
    let rows: Vec<BanRow> = sqlx::query_as(
        "SELECT group_id, user_id, banned_by, reason, banned_at, until FROM groups.bans \
         WHERE group_id = $1 AND user_id > $2 AND (until IS NULL OR until > $3) ORDER BY user_id LIMIT $4",
    )
    .bind(group.get())
    .bind(after.map_or(0, UserId::get))
    .bind(now)
    .bind(limit.as_limit() + 1)
    .fetch_all(&mut *connection(pool).await?)
    .await
    .during("listing bans")?;
    Ok(rows.into_iter().map(BanRow::into_ban).collect())
}

pub(super) async fn set_mute(
    pool: &Pool,
    group: GroupId,
    user: UserId,
    until: Option<DateTime<Utc>>,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<Membership> {
    let now = stored_time(now);
    let until = until.map(stored_time);
    let mut tx = pool.begin().await.during("starting a transaction")?;
    lock_group(&mut tx, group, GroupLock::Share).await?.ensure_active()?;
    let row: Option<MemberRow> = sqlx::query_as(
        "UPDATE groups.members SET muted_until = $3 WHERE group_id = $1 AND user_id = $2 \
         RETURNING group_id, user_id, role, joined_at, muted_until",
    )
    .bind(group.get())
    .bind(user.get())
    .bind(until)
    .fetch_optional(&mut *tx)
    .await
    .during("muting a member")?;
    let membership = row.ok_or(StoreError::NotMember { group, user })?.into_membership()?;
    let change = match until {
        Some(until) => GroupChange::Muted { user, until },
        None => GroupChange::Unmuted { user },
    };
    append_outbox(&mut tx, group, &[change], actor, now).await?;
    tx.commit().await.during("committing a mute")?;
    Ok(membership)
}

/// The ban of `user` from `group` in force at `now`, if any.
pub(super) async fn active_ban(
    connection: &mut PgConnection,
    group: GroupId,
    user: UserId,
    now: DateTime<Utc>,
) -> StoreResult<Option<Ban>> {
    let row: Option<BanRow> = sqlx::query_as(
        "SELECT group_id, user_id, banned_by, reason, banned_at, until FROM groups.bans \
         WHERE group_id = $1 AND user_id = $2 AND (until IS NULL OR until > $3)",
    )
    .bind(group.get())
    .bind(user.get())
    .bind(now)
    .fetch_optional(&mut *connection)
    .await
    .during("reading a ban")?;
    Ok(row.map(BanRow::into_ban))
}
