//! Groups themselves: creating them, reading them, settings, archiving and ownership.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::time::stored_time;
use fanfare_postgres::Pool;
use sqlx::PgConnection;

use super::locking::{GroupLock, lock_group};
use super::membership::{BROADCAST_COUNTER_SHARDS, counter_shard};
use super::outbox::append_outbox;
use super::rows::{During as _, GroupRow, connection, select_group, sql_limit};
use crate::domain::{
    AvatarRef, Description, Group, GroupChange, GroupKind, JoinMethod, JoinPolicy, NewGroup, PostPolicy, Role,
    SettingsUpdate, Title,
};
use crate::store::{StoreError, StoreResult};

pub(super) async fn create_group(
    pool: &Pool,
    group: NewGroup,
    user_group_limit: u64,
    now: DateTime<Utc>,
) -> StoreResult<Group> {
    let now = stored_time(now);
    let mut tx = pool.begin().await.during("starting a transaction")?;
    let counted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO groups.user_group_counts AS counts (user_id, count) SELECT $1, 1 WHERE $2 >= 1 \
         ON CONFLICT (user_id) DO UPDATE SET count = counts.count + 1 WHERE counts.count + 1 <= $2 \
         RETURNING user_id",
    )
    .bind(group.owner.get())
    .bind(sql_limit(user_group_limit))
    .fetch_optional(&mut *tx)
    .await
    .during("counting the owner's groups")?;
    if counted.is_none() {
        return Err(StoreError::UserGroupLimit { user: group.owner, limit: user_group_limit });
    }
    let slow_mode = i32::try_from(group.settings.slow_mode_seconds).unwrap_or(i32::MAX);
    let min_follow_age = i32::try_from(group.settings.min_follow_age_seconds).unwrap_or(i32::MAX);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO groups.groups (kind, title, description, avatar_ref, owner_id, join_policy, \
         slow_mode_seconds, history_visible, post_policy, min_follow_age_seconds, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $10, $10) RETURNING id",
    )
    .bind(group.kind.code())
    .bind(group.title.as_str())
    .bind(group.description.as_str())
    .bind(group.avatar_ref.as_str())
    .bind(group.owner.get())
    .bind(group.settings.join_policy.code())
    .bind(slow_mode)
    .bind(group.settings.history_visible_to_new_members)
    .bind(group.settings.post_policy.code())
    .bind(now)
    .bind(min_follow_age)
    .fetch_one(&mut *tx)
    .await
    .during("inserting a group")?;
    let group_id = GroupId::from_trusted(id);
    let shards = if group.kind == GroupKind::Broadcast { BROADCAST_COUNTER_SHARDS } else { 1 };
    sqlx::query(
        "INSERT INTO groups.member_counts (group_id, shard, count) \
         SELECT $1, shard, CASE WHEN shard = $3 THEN 1 ELSE 0 END \
         FROM generate_series(0, $2::integer - 1) AS shard",
    )
    .bind(id)
    .bind(i32::from(shards))
    .bind(i32::from(counter_shard(group.kind, group.owner)))
    .execute(&mut *tx)
    .await
    .during("inserting member counts")?;
    sqlx::query("INSERT INTO groups.members (group_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(group.owner.get())
        .bind(Role::Owner.code())
        .bind(now)
        .execute(&mut *tx)
        .await
        .during("inserting the owner's membership")?;
    let changes = [
        GroupChange::Created { kind: group.kind, title: group.title.as_str().to_owned() },
        GroupChange::Joined { user: group.owner, method: JoinMethod::Creator, role: Role::Owner },
    ];
    append_outbox(&mut tx, group_id, &changes, group.owner, now).await?;
    tx.commit().await.during("committing a new group")?;
    Ok(Group {
        id: group_id,
        kind: group.kind,
        title: group.title,
        description: group.description,
        avatar_ref: group.avatar_ref,
        owner: group.owner,
        settings: group.settings,
        member_count: 1,
        created_at: now,
        archived_at: None,
    })
}

pub(super) async fn get_group(pool: &Pool, group: GroupId) -> StoreResult<Option<Group>> {
    let row: Option<GroupRow> = sqlx::query_as(select_group!("WHERE g.id = $1"))
        .bind(group.get())
        .fetch_optional(&mut *connection(pool).await?)
        .await
        .during("reading a group")?;
    row.map(GroupRow::into_group).transpose()
}

pub(super) async fn get_groups(pool: &Pool, groups: &[GroupId]) -> StoreResult<Vec<Group>> {
    let ids: Vec<i64> = groups.iter().map(|group| group.get()).collect();
    let rows: Vec<GroupRow> = sqlx::query_as(select_group!("WHERE g.id = ANY($1)"))
        .bind(&ids)
        .fetch_all(&mut *connection(pool).await?)
        .await
        .during("reading groups")?;
    let found: BTreeMap<GroupId, Group> =
        rows.into_iter().map(|row| row.into_group().map(|group| (group.id, group))).collect::<StoreResult<_>>()?;
    Ok(groups.iter().filter_map(|id| found.get(id).cloned()).collect())
}

pub(super) async fn update_settings(
    pool: &Pool,
    group: GroupId,
    update: &SettingsUpdate,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<Group> {
    let now = stored_time(now);
    let mut tx = pool.begin().await.during("starting a transaction")?;
    lock_group(&mut tx, group, GroupLock::Exclusive).await?.ensure_active()?;
    let slow_mode = update.slow_mode_seconds.map(|seconds| i32::try_from(seconds).unwrap_or(i32::MAX));
    let min_follow_age = update.min_follow_age_seconds.map(|seconds| i32::try_from(seconds).unwrap_or(i32::MAX));
    // As `SettingsUpdate::apply_to`: a policy other than FOLLOWERS_ONLY resets the minimum
    // follow age. (On the right of SET, columns hold the row's values before the update.)
    sqlx::query(
        "UPDATE groups.groups SET title = COALESCE($2, title), description = COALESCE($3, description), \
         avatar_ref = COALESCE($4, avatar_ref), join_policy = COALESCE($5, join_policy), \
         slow_mode_seconds = COALESCE($6, slow_mode_seconds), history_visible = COALESCE($7, history_visible), \
         post_policy = COALESCE($8, post_policy), \
         min_follow_age_seconds = CASE WHEN COALESCE($5, join_policy) = $11 \
             THEN COALESCE($10, min_follow_age_seconds) ELSE 0 END, \
         updated_at = $9 WHERE id = $1",
    )
    .bind(group.get())
    .bind(update.title.as_ref().map(Title::as_str))
    .bind(update.description.as_ref().map(Description::as_str))
    .bind(update.avatar_ref.as_ref().map(AvatarRef::as_str))
    .bind(update.join_policy.map(JoinPolicy::code))
    .bind(slow_mode)
    .bind(update.history_visible_to_new_members)
    .bind(update.post_policy.map(PostPolicy::code))
    .bind(now)
    .bind(min_follow_age)
    .bind(JoinPolicy::FollowersOnly.code())
    .execute(&mut *tx)
    .await
    .during("updating group settings")?;
    let updated = fetch_group(&mut tx, group).await?;
    append_outbox(&mut tx, group, &[GroupChange::SettingsChanged(Box::new(updated.clone()))], actor, now).await?;
    tx.commit().await.during("committing a settings change")?;
    Ok(updated)
}

pub(super) async fn archive_group(
    pool: &Pool,
    group: GroupId,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<Group> {
    let now = stored_time(now);
    let mut tx = pool.begin().await.during("starting a transaction")?;
    lock_group(&mut tx, group, GroupLock::Exclusive).await?.ensure_active()?;
    sqlx::query("UPDATE groups.groups SET archived_at = $2, updated_at = $2 WHERE id = $1")
        .bind(group.get())
        .bind(now)
        .execute(&mut *tx)
        .await
        .during("archiving a group")?;
    let archived = fetch_group(&mut tx, group).await?;
    append_outbox(&mut tx, group, &[GroupChange::Archived], actor, now).await?;
    tx.commit().await.during("committing an archive")?;
    Ok(archived)
}

pub(super) async fn transfer_ownership(
    pool: &Pool,
    group: GroupId,
    new_owner: UserId,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<Group> {
    let now = stored_time(now);
    let mut tx = pool.begin().await.during("starting a transaction")?;
    let locked = lock_group(&mut tx, group, GroupLock::Exclusive).await?;
    locked.ensure_active()?;
    let previous_owner = locked.owner;
    if new_owner == previous_owner {
        return fetch_group(&mut tx, group).await;
    }
    let locked_members: Vec<i64> = sqlx::query_scalar(
        "SELECT user_id FROM groups.members WHERE group_id = $1 AND user_id IN ($2, $3) \
         ORDER BY user_id FOR UPDATE",
    )
    .bind(group.get())
    .bind(previous_owner.get())
    .bind(new_owner.get())
    .fetch_all(&mut *tx)
    .await
    .during("locking the two memberships")?;
    if !locked_members.contains(&new_owner.get()) {
        return Err(StoreError::NotMember { group, user: new_owner });
    }
    // Demote first: the one-owner index is checked row by row.
    for (user, role) in [(previous_owner, Role::Admin), (new_owner, Role::Owner)] {
        sqlx::query("UPDATE groups.members SET role = $3 WHERE group_id = $1 AND user_id = $2")
            .bind(group.get())
            .bind(user.get())
            .bind(role.code())
            .execute(&mut *tx)
            .await
            .during("swapping owner roles")?;
    }
    sqlx::query("UPDATE groups.groups SET owner_id = $2, updated_at = $3 WHERE id = $1")
        .bind(group.get())
        .bind(new_owner.get())
        .bind(now)
        .execute(&mut *tx)
        .await
        .during("changing the owner")?;
    let change = GroupChange::OwnershipTransferred { previous_owner, new_owner };
    append_outbox(&mut tx, group, &[change], actor, now).await?;
    let transferred = fetch_group(&mut tx, group).await?;
    tx.commit().await.during("committing an ownership transfer")?;
    Ok(transferred)
}

/// Reads a group inside a transaction; `GroupNotFound` when there is none.
async fn fetch_group(connection: &mut PgConnection, group: GroupId) -> StoreResult<Group> {
    let row: Option<GroupRow> = sqlx::query_as(select_group!("WHERE g.id = $1"))
        .bind(group.get())
        .fetch_optional(&mut *connection)
        .await
        .during("reading a group")?;
    row.ok_or(StoreError::GroupNotFound(group))?.into_group()
}
