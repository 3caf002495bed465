//! Join requests: filed by users, approved (a join) or rejected by moderators.

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::PageSize;
use fanfare_core::time::stored_time;
use fanfare_postgres::Pool;

use super::joins::{add_members_to_locked, single_membership};
use super::locking::{GroupLock, lock_group};
use super::moderation::active_ban;
use super::rows::{During as _, JoinRequestRow, connection};
use crate::domain::{JoinMethod, JoinRequest, Membership, MembershipLimits};
use crate::store::{StoreError, StoreResult};

pub(super) async fn create_join_request(
    pool: &Pool,
    group: GroupId,
    user: UserId,
    now: DateTime<Utc>,
) -> StoreResult<JoinRequest> {
    let now = stored_time(now);
    let mut tx = pool.begin().await.during("starting a transaction")?;
    lock_group(&mut tx, group, GroupLock::Share).await?.ensure_active()?;
    if active_ban(&mut tx, group, user, now).await?.is_some() {
        return Err(StoreError::Banned { group, user });
    }
    sqlx::query(
        "INSERT INTO groups.join_requests (group_id, user_id, requested_at) VALUES ($1, $2, $3) \
         ON CONFLICT (group_id, user_id) DO NOTHING",
    )
    .bind(group.get())
    .bind(user.get())
    .bind(now)
    .execute(&mut *tx)
    .await
    .during("filing a join request")?;
    let row: JoinRequestRow = sqlx::query_as(
        "SELECT group_id, user_id, requested_at FROM groups.join_requests WHERE group_id = $1 AND user_id = $2",
    )
    .bind(group.get())
    .bind(user.get())
    .fetch_one(&mut *tx)
    .await
    .during("reading a join request")?;
    tx.commit().await.during("committing a join request")?;
    Ok(row.into_request())
}

pub(super) async fn list_join_requests(
    pool: &Pool,
    group: GroupId,
    after: Option<(DateTime<Utc>, UserId)>,
    limit: PageSize,
) -> StoreResult<Vec<JoinRequest>> {
    let rows: Vec<JoinRequestRow> = sqlx::query_as(
        "SELECT group_id, user_id, requested_at FROM groups.join_requests \
         WHERE group_id = $1 AND (requested_at, user_id) > (COALESCE($2, '-infinity'::timestamptz), COALESCE($3, 0)) \
         ORDER BY requested_at, user_id LIMIT $4",
    )
    .bind(group.get())
    .bind(after.map(|(requested_at, _)| requested_at))
    .bind(after.map(|(_, user)| user.get()))
    .bind(limit.as_limit() + 1)
    .fetch_all(&mut *connection(pool).await?)
    .await
    .during("listing join requests")?;
    Ok(rows.into_iter().map(JoinRequestRow::into_request).collect())
}

pub(super) async fn approve_join_request(
    pool: &Pool,
    group: GroupId,
    user: UserId,
    limits: MembershipLimits,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<Membership> {
    let now = stored_time(now);
    let mut tx = pool.begin().await.during("starting a transaction")?;
    let locked = lock_group(&mut tx, group, GroupLock::Share).await?;
    locked.ensure_active()?;
    let deleted = sqlx::query("DELETE FROM groups.join_requests WHERE group_id = $1 AND user_id = $2")
        .bind(group.get())
        .bind(user.get())
        .execute(&mut *tx)
        .await
        .during("taking a join request")?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::JoinRequestNotFound { group, user });
    }
    let added = add_members_to_locked(&mut tx, &locked, &[user], JoinMethod::Approved, limits, actor, now).await?;
    let (membership, _) = single_membership(added)?;
    tx.commit().await.during("committing an approval")?;
    Ok(membership)
}

pub(super) async fn reject_join_request(pool: &Pool, group: GroupId, user: UserId) -> StoreResult<()> {
    let deleted = sqlx::query("DELETE FROM groups.join_requests WHERE group_id = $1 AND user_id = $2")
        .bind(group.get())
        .bind(user.get())
        .execute(&mut *connection(pool).await?)
        .await
        .during("rejecting a join request")?;
    if deleted.rows_affected() > 0 {
        return Ok(());
    }
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM groups.groups WHERE id = $1")
        .bind(group.get())
        .fetch_optional(&mut *connection(pool).await?)
        .await
        .during("reading a group")?;
    match exists {
        Some(_) => Err(StoreError::JoinRequestNotFound { group, user }),
        None => Err(StoreError::GroupNotFound(group)),
    }
}
