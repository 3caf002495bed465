//! Memberships: reading them, ending them, roles, and the member counts they keep.

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::PageSize;
use fanfare_core::time::stored_time;
use fanfare_postgres::Pool;
use sqlx::PgConnection;

use super::locking::{GroupLock, LockedGroup, lock_group};
use super::outbox::append_outbox;
use super::rows::{
    During as _, JoinContextRow, MEMBER_COLUMNS_BY_KEY, MemberRow, UserGroupRow, connection, stored_code,
};
use crate::domain::{Group, GroupChange, GroupKind, Membership, Role};
use crate::store::{Departure, JoinContext, StoreError, StoreResult};

/// Member-count rows of a BROADCAST group: joins into one huge channel spread their
/// counter updates over this many rows instead of queueing on one.
pub(super) const BROADCAST_COUNTER_SHARDS: i16 = 16;

/// The member-count shard a user's membership is counted in.
pub(super) fn counter_shard(kind: GroupKind, user: UserId) -> i16 {
    match kind {
        GroupKind::Broadcast => (user.get().rem_euclid(i64::from(BROADCAST_COUNTER_SHARDS))) as i16,
        GroupKind::Chat | GroupKind::Community => 0,
    }
}

/// Reads one membership on a connection the caller holds.
async fn fetch_membership(
    connection: &mut PgConnection,
    group: GroupId,
    user: UserId,
) -> StoreResult<Option<Membership>> {
    let row: Option<MemberRow> = sqlx::query_as(MEMBER_COLUMNS_BY_KEY)
        .bind(group.get())
        .bind(user.get())
        .fetch_optional(&mut *connection)
        .await
        .during("reading a membership")?;
    row.map(MemberRow::into_membership).transpose()
}

/// Removes a membership and its counts; reports whether there was one.
pub(super) async fn delete_membership(
    connection: &mut PgConnection,
    group: &LockedGroup,
    user: UserId,
) -> StoreResult<bool> {
    let deleted = sqlx::query("DELETE FROM groups.members WHERE group_id = $1 AND user_id = $2")
        .bind(group.id.get())
        .bind(user.get())
        .execute(&mut *connection)
        .await
        .during("deleting a membership")?;
    if deleted.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("UPDATE groups.user_group_counts SET count = count - 1 WHERE user_id = $1")
        .bind(user.get())
        .execute(&mut *connection)
        .await
        .during("decrementing a user's group count")?;
    sqlx::query("UPDATE groups.member_counts SET count = count - 1 WHERE group_id = $1 AND shard = $2")
        .bind(group.id.get())
        .bind(counter_shard(group.kind, user))
        .execute(&mut *connection)
        .await
        .during("decrementing a member count")?;
    Ok(true)
}

pub(super) async fn get_membership(pool: &Pool, group: GroupId, user: UserId) -> StoreResult<Option<Membership>> {
    let mut connection = pool.acquire().await.during("acquiring a connection")?;
    fetch_membership(&mut connection, group, user).await
}

pub(super) async fn join_context(
    pool: &Pool,
    group: GroupId,
    user: UserId,
    now: DateTime<Utc>,
) -> StoreResult<JoinContext> {
    let row: Option<JoinContextRow> = sqlx::query_as(
        "SELECT g.id, g.kind, g.title, g.description, g.avatar_ref, g.owner_id, g.join_policy, \
         g.slow_mode_seconds, g.history_visible, g.post_policy, g.min_follow_age_seconds, g.created_at, \
         g.archived_at, \
         (SELECT COALESCE(SUM(c.count), 0)::bigint FROM groups.member_counts c \
          WHERE c.group_id = g.id) AS member_count, \
         m.role AS member_role, m.joined_at AS member_joined_at, m.muted_until AS member_muted_until, \
         b.banned_by AS ban_banned_by, b.reason AS ban_reason, b.banned_at AS ban_banned_at, \
         b.until AS ban_until \
         FROM groups.groups g \
         LEFT JOIN groups.members m ON m.group_id = g.id AND m.user_id = $2 \
         LEFT JOIN groups.bans b ON b.group_id = g.id AND b.user_id = $2 AND (b.until IS NULL OR b.until > $3) \
         WHERE g.id = $1",
    )
    .bind(group.get())
    .bind(user.get())
    .bind(now)
    .fetch_optional(&mut *connection(pool).await?)
    .await
    .during("reading a join's context")?;
    match row {
        Some(row) => row.into_context(user),
        None => Ok(JoinContext::default()),
    }
}

pub(super) async fn remove_member(
    pool: &Pool,
    group: GroupId,
    user: UserId,
    departure: Departure,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let now = stored_time(now);
    let mut tx = pool.begin().await.during("starting a transaction")?;
    let locked = lock_group(&mut tx, group, GroupLock::Share).await?;
    locked.ensure_active()?;
    if locked.owner == user {
        return Err(StoreError::OwnerImmovable(group));
    }
    if !delete_membership(&mut tx, &locked, user).await? {
        return Err(StoreError::NotMember { group, user });
    }
    let change = match departure {
        Departure::Left => GroupChange::Left { user },
        Departure::Removed => GroupChange::Removed { user },
    };
    append_outbox(&mut tx, group, &[change], actor, now).await?;
    tx.commit().await.during("committing a departure")?;
    Ok(())
}

pub(super) async fn set_role(
    pool: &Pool,
    group: GroupId,
    user: UserId,
    role: Role,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<Membership> {
    debug_assert!(role != Role::Owner, "ownership moves only by transfer_ownership");
    if role == Role::Owner {
        return Err(StoreError::Internal(
            anyhow::Error::msg("set_role cannot make an owner").context("setting a role"),
        ));
    }
    let now = stored_time(now);
    let mut tx = pool.begin().await.during("starting a transaction")?;
    let locked = lock_group(&mut tx, group, GroupLock::Share).await?;
    locked.ensure_active()?;
    let row: Option<MemberRow> = sqlx::query_as(
        "SELECT group_id, user_id, role, joined_at, muted_until FROM groups.members \
         WHERE group_id = $1 AND user_id = $2 FOR UPDATE",
    )
    .bind(group.get())
    .bind(user.get())
    .fetch_optional(&mut *tx)
    .await
    .during("locking a membership")?;
    let current = row.ok_or(StoreError::NotMember { group, user })?.into_membership()?;
    if current.role == Role::Owner {
        return Err(StoreError::OwnerImmovable(group));
    }
    if current.role == role {
        return Ok(current);
    }
    sqlx::query("UPDATE groups.members SET role = $3 WHERE group_id = $1 AND user_id = $2")
        .bind(group.get())
        .bind(user.get())
        .bind(role.code())
        .execute(&mut *tx)
        .await
        .during("changing a role")?;
    append_outbox(&mut tx, group, &[GroupChange::RoleChanged { user, role }], actor, now).await?;
    tx.commit().await.during("committing a role change")?;
    Ok(Membership { role, ..current })
}

pub(super) async fn list_members(
    pool: &Pool,
    group: GroupId,
    role: Option<Role>,
    after: Option<UserId>,
    limit: PageSize,
) -> StoreResult<Vec<Membership>> {
    // Two statements rather than `$2 IS NULL OR role = $2`, which a generic plan could
    // not serve from the role index.
    let after_id = after.map_or(0, UserId::get);
    let fetch_limit = limit.as_limit() + 1;
    let rows: Vec<MemberRow> = match role {
        None => sqlx::query_as(
            "SELECT group_id, user_id, role, joined_at, muted_until FROM groups.members \
             WHERE group_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3",
        )
        .bind(group.get())
        .bind(after_id)
        .bind(fetch_limit)
        .fetch_all(&mut *connection(pool).await?)
        .await
        .during("listing members")?,
        Some(role) => sqlx::query_as(
            "SELECT group_id, user_id, role, joined_at, muted_until FROM groups.members \
             WHERE group_id = $1 AND role = $2 AND user_id > $3 ORDER BY user_id LIMIT $4",
        )
        .bind(group.get())
        .bind(role.code())
        .bind(after_id)
        .bind(fetch_limit)
        .fetch_all(&mut *connection(pool).await?)
        .await
        .during("listing members by role")?,
    };
    rows.into_iter().map(MemberRow::into_membership).collect()
}

pub(super) async fn list_user_groups(
    pool: &Pool,
    user: UserId,
    before: Option<(DateTime<Utc>, GroupId)>,
    limit: PageSize,
) -> StoreResult<Vec<(Group, Membership)>> {
    let rows: Vec<UserGroupRow> = sqlx::query_as(
        "SELECT g.id, g.kind, g.title, g.description, g.avatar_ref, g.owner_id, g.join_policy, \
         g.slow_mode_seconds, g.history_visible, g.post_policy, g.min_follow_age_seconds, g.created_at, \
         g.archived_at, \
         (SELECT COALESCE(SUM(c.count), 0)::bigint FROM groups.member_counts c \
          WHERE c.group_id = g.id) AS member_count, \
         m.role AS member_role, m.joined_at AS member_joined_at, m.muted_until AS member_muted_until \
         FROM groups.members m JOIN groups.groups g ON g.id = m.group_id \
         WHERE m.user_id = $1 \
         AND (m.joined_at, m.group_id) < (COALESCE($2, 'infinity'::timestamptz), COALESCE($3, 9223372036854775807)) \
         ORDER BY m.joined_at DESC, m.group_id DESC LIMIT $4",
    )
    .bind(user.get())
    .bind(before.map(|(joined_at, _)| joined_at))
    .bind(before.map(|(_, group)| group.get()))
    .bind(limit.as_limit() + 1)
    .fetch_all(&mut *connection(pool).await?)
    .await
    .during("listing a user's groups")?;
    rows.into_iter()
        .map(|row| {
            let membership = Membership {
                group_id: GroupId::from_trusted(row.group.id),
                user_id: user,
                role: stored_code(Role::from_code(row.member_role), "role", row.member_role)?,
                joined_at: row.member_joined_at,
                muted_until: row.member_muted_until,
            };
            Ok((row.group.into_group()?, membership))
        })
        .collect()
}
