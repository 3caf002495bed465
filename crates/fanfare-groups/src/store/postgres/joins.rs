//! Adding members: one user in one statement ([`JOIN_ONE`]), several (or one whose group
//! changed under that statement) in a transaction that locks the group row first.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::time::stored_time;
use fanfare_postgres::Pool;
use sqlx::PgConnection;

use super::locking::{GroupLock, LockedGroup, lock_group};
use super::membership::{BROADCAST_COUNTER_SHARDS, counter_shard, get_membership};
use super::outbox::append_outbox;
use super::rows::{During as _, MemberRow, connection, corrupt, sql_limit, stored_code};
use crate::domain::{GroupChange, GroupKind, JoinMethod, Membership, MembershipLimits, Role};
use crate::store::{AddedMembers, StoreError, StoreResult};

/// `add_members`: one user in one statement ([`JOIN_ONE`]), several in one transaction.
pub(super) async fn add_members(
    pool: &Pool,
    group: GroupId,
    users: &[UserId],
    method: JoinMethod,
    limits: MembershipLimits,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<AddedMembers> {
    let now = stored_time(now);
    match distinct_in_order(users).as_slice() {
        [user] => add_one_member(pool, group, *user, method, limits, actor, now).await,
        _ => add_members_in_transaction(pool, group, users, method, limits, actor, now).await,
    }
}

/// Users without repeats, first occurrence first.
fn distinct_in_order(users: &[UserId]) -> Vec<UserId> {
    let mut seen = HashSet::with_capacity(users.len());
    users.iter().copied().filter(|user| seen.insert(*user)).collect()
}

/// Counts `added` new members of `group` into its member-count shards, enforcing the
/// member limit.
async fn count_new_members(
    connection: &mut PgConnection,
    group: &LockedGroup,
    added: &[UserId],
    member_limit: Option<u64>,
) -> StoreResult<()> {
    let full = |limit: u64| StoreError::GroupFull { group: group.id, limit };
    let added_count = fanfare_core::wire::int64(added.len());
    if group.kind != GroupKind::Broadcast {
        // One row: the conditional update is the capacity check, exact under concurrency
        // because a waiting UPDATE re-evaluates its WHERE on the row it waited for.
        let updated: Option<i64> = sqlx::query_scalar(
            "UPDATE groups.member_counts SET count = count + $2 \
             WHERE group_id = $1 AND shard = 0 AND count + $2 <= $3 RETURNING count",
        )
        .bind(group.id.get())
        .bind(added_count)
        .bind(member_limit.map_or(i64::MAX, sql_limit))
        .fetch_optional(&mut *connection)
        .await
        .during("counting new members")?;
        return match (updated, member_limit) {
            (Some(_), _) => Ok(()),
            (None, Some(limit)) => Err(full(limit)),
            (None, None) => Err(corrupt(format!("group {} has no member-count row", group.id))),
        };
    }
    if let Some(limit) = member_limit {
        // A BROADCAST group with a configured limit: lock every shard (in shard order) so
        // the sum is exact while this transaction adds to it.
        let shard_counts: Vec<i64> =
            sqlx::query_scalar("SELECT count FROM groups.member_counts WHERE group_id = $1 ORDER BY shard FOR UPDATE")
                .bind(group.id.get())
                .fetch_all(&mut *connection)
                .await
                .during("locking member counts")?;
        let current: i64 = shard_counts.iter().sum();
        if current.saturating_add(added_count) > sql_limit(limit) {
            return Err(full(limit));
        }
    }
    let mut per_shard: BTreeMap<i16, i64> = BTreeMap::new();
    for user in added {
        *per_shard.entry(counter_shard(group.kind, *user)).or_default() += 1;
    }
    for (shard, count) in per_shard {
        sqlx::query("UPDATE groups.member_counts SET count = count + $3 WHERE group_id = $1 AND shard = $2")
            .bind(group.id.get())
            .bind(shard)
            .bind(count)
            .execute(&mut *connection)
            .await
            .during("counting new members")?;
    }
    Ok(())
}

/// The body of `add_members` once the group row is locked and known to be active.
pub(super) async fn add_members_to_locked(
    connection: &mut PgConnection,
    group: &LockedGroup,
    users: &[UserId],
    method: JoinMethod,
    limits: MembershipLimits,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<AddedMembers> {
    let users = distinct_in_order(users);
    if users.is_empty() {
        return Ok(AddedMembers::default());
    }
    let mut sorted_ids: Vec<i64> = users.iter().map(|user| user.get()).collect();
    sorted_ids.sort_unstable();

    let banned: Vec<i64> = sqlx::query_scalar(
        "SELECT user_id FROM groups.bans \
         WHERE group_id = $1 AND user_id = ANY($2) AND (until IS NULL OR until > $3)",
    )
    .bind(group.id.get())
    .bind(&sorted_ids)
    .bind(now)
    .fetch_all(&mut *connection)
    .await
    .during("checking bans")?;
    if let Some(user) = users.iter().find(|user| banned.contains(&user.get())) {
        return Err(StoreError::Banned { group: group.id, user: *user });
    }

    // A concurrent join of the same user waits on the unique index and then does nothing:
    // that user is reported as already a member, never as an error.
    let inserted: HashSet<i64> = sqlx::query_scalar(
        "INSERT INTO groups.members (group_id, user_id, role, joined_at) \
         SELECT $1, new_member, $2, $3 FROM unnest($4::bigint[]) AS new_member ORDER BY new_member \
         ON CONFLICT (group_id, user_id) DO NOTHING RETURNING user_id",
    )
    .bind(group.id.get())
    .bind(Role::Member.code())
    .bind(now)
    .bind(&sorted_ids)
    .fetch_all(&mut *connection)
    .await
    .during("inserting members")?
    .into_iter()
    .collect();
    let (added, existing): (Vec<UserId>, Vec<UserId>) = users.iter().partition(|user| inserted.contains(&user.get()));

    if !added.is_empty() {
        let mut added_ids: Vec<i64> = added.iter().map(|user| user.get()).collect();
        added_ids.sort_unstable();
        let user_limit = sql_limit(limits.user_group_limit);
        let counted: HashSet<i64> = sqlx::query_scalar(
            "INSERT INTO groups.user_group_counts AS counts (user_id, count) \
             SELECT member, 1 FROM unnest($1::bigint[]) AS member WHERE $2 >= 1 ORDER BY member \
             ON CONFLICT (user_id) DO UPDATE SET count = counts.count + 1 WHERE counts.count + 1 <= $2 \
             RETURNING user_id",
        )
        .bind(&added_ids)
        .bind(user_limit)
        .fetch_all(&mut *connection)
        .await
        .during("counting users' groups")?
        .into_iter()
        .collect();
        if let Some(user) = added.iter().find(|user| !counted.contains(&user.get())) {
            return Err(StoreError::UserGroupLimit { user: *user, limit: limits.user_group_limit });
        }
        count_new_members(connection, group, &added, limits.group_member_limit).await?;
        sqlx::query("DELETE FROM groups.join_requests WHERE group_id = $1 AND user_id = ANY($2)")
            .bind(group.id.get())
            .bind(&added_ids)
            .execute(&mut *connection)
            .await
            .during("deleting join requests")?;
        let changes: Vec<GroupChange> =
            added.iter().map(|user| GroupChange::Joined { user: *user, method, role: Role::Member }).collect();
        append_outbox(connection, group.id, &changes, actor, now).await?;
    }

    let mut already_members = Vec::with_capacity(existing.len());
    if !existing.is_empty() {
        let existing_ids: Vec<i64> = existing.iter().map(|user| user.get()).collect();
        let rows: Vec<MemberRow> = sqlx::query_as(
            "SELECT group_id, user_id, role, joined_at, muted_until FROM groups.members \
             WHERE group_id = $1 AND user_id = ANY($2)",
        )
        .bind(group.id.get())
        .bind(&existing_ids)
        .fetch_all(&mut *connection)
        .await
        .during("reading existing memberships")?;
        let mut by_user: BTreeMap<i64, MemberRow> = rows.into_iter().map(|row| (row.user_id, row)).collect();
        // A member who left between the insert and this read is neither added nor a
        // member any more, and is left out.
        for user in existing {
            if let Some(row) = by_user.remove(&user.get()) {
                already_members.push(row.into_membership()?);
            }
        }
    }
    let added = added
        .into_iter()
        .map(|user| Membership {
            group_id: group.id,
            user_id: user,
            role: Role::Member,
            joined_at: now,
            muted_until: None,
        })
        .collect();
    Ok(AddedMembers { added, already_members })
}

/// The one membership a single-user join ended with, and whether it is new.
pub(super) fn single_membership(added: AddedMembers) -> StoreResult<(Membership, bool)> {
    if let Some(membership) = added.added.into_iter().next() {
        return Ok((membership, true));
    }
    // Nobody: the user was a member when the insert ran and left before the read. The
    // transaction changed nothing that matters; the caller may retry.
    added.already_members.into_iter().next().map(|membership| (membership, false)).ok_or_else(|| {
        StoreError::Unavailable(anyhow::Error::msg("the membership changed concurrently").context("joining a group"))
    })
}

/// SQLSTATE `groups.refuse_join` raises when the group filled up under the statement.
const REFUSED_GROUP_FULL: &str = "JR001";
/// SQLSTATE `groups.refuse_join` raises when the user reached their group limit under the
/// statement.
const REFUSED_USER_GROUP_LIMIT: &str = "JR002";

/// Adds one user as a plain member in a single statement, its own (autocommit)
/// transaction: everything `add_members` does for one user, in one round trip instead of a
/// dozen. Binds: `$1` group, `$2` user, `$3` the member role's code, `$4` now, `$5` the
/// user's group limit, `$6` the group's member limit (NULL: none), `$7` the BROADCAST kind
/// code, `$8` its shard count, `$9` the encoded `Joined` outbox payload.
///
/// Step by step, taking locks in the store's order (see [`super`]):
/// - `locked`: the group row `FOR SHARE`, as every join holds it.
/// - `verdict`: the checks, in `add_members`' order, against the statement's snapshot.
///   That snapshot was taken before the lock, so if a change that holds the row
///   exclusively (ban, archive, settings, transfer) committed while this statement waited,
///   the locked row is newer than the snapshot's (each of them writes a new version, see
///   [`GroupLock::ExclusiveNewVersion`]) and the answer is `stale`: nothing is written, and
///   the store does the join again as a transaction that locks the row before it reads.
///   Otherwise any such change the snapshot does not show commits after this statement
///   (it waits for the lock this statement holds), and undoes or refuses what follows as
///   for any join. The limits are checked here too, so that a refusal normally writes
///   nothing.
/// - `inserted`: the member row, `ON CONFLICT DO NOTHING`: a concurrent join of the same
///   user that committed after the snapshot (or is still running: the insert waits for it)
///   leaves nothing inserted and the outcome `join` without `joined`.
/// - `user_counted`, then `shards_locked` (a BROADCAST group with a member limit: all its
///   shards, in order, for an exact sum), then `group_counted`: the conditional counter
///   updates that enforce the limits exactly under concurrency, each only after the one
///   before succeeded.
/// - `requests_deleted`, `outboxed`: the rest of a join.
/// - The last step: a member row inserted but not counted (a concurrent join took the last
///   place after the snapshot) makes `groups.refuse_join` raise, which undoes the whole
///   statement; the store maps the SQLSTATE to `GroupFull` or `UserGroupLimit`.
const JOIN_ONE: &str = "\
WITH locked AS ( \
    SELECT kind, archived_at, xmin AS version FROM groups.groups WHERE id = $1 FOR SHARE \
), seen AS ( \
    SELECT xmin AS version FROM groups.groups WHERE id = $1 \
), existing AS ( \
    SELECT role, joined_at, muted_until FROM groups.members WHERE group_id = $1 AND user_id = $2 \
), verdict AS ( \
    SELECT locked.kind, CASE \
        WHEN locked.version IS DISTINCT FROM (SELECT seen.version FROM seen) THEN 'stale' \
        WHEN locked.archived_at IS NOT NULL THEN 'archived' \
        WHEN EXISTS (SELECT 1 FROM groups.bans b WHERE b.group_id = $1 AND b.user_id = $2 \
                     AND (b.until IS NULL OR b.until > $4)) THEN 'banned' \
        WHEN EXISTS (SELECT 1 FROM existing) THEN 'member' \
        WHEN COALESCE((SELECT u.count FROM groups.user_group_counts u WHERE u.user_id = $2), 0) >= $5 \
            THEN 'user_limit' \
        WHEN $6::bigint IS NOT NULL AND (SELECT COALESCE(sum(c.count), 0) FROM groups.member_counts c \
                                         WHERE c.group_id = $1) >= $6::bigint THEN 'full' \
        ELSE 'join' \
    END AS outcome \
    FROM locked \
), inserted AS ( \
    INSERT INTO groups.members (group_id, user_id, role, joined_at) \
    SELECT $1, $2, $3, $4 FROM verdict WHERE verdict.outcome = 'join' \
    ON CONFLICT (group_id, user_id) DO NOTHING \
    RETURNING user_id \
), user_counted AS ( \
    INSERT INTO groups.user_group_counts AS counts (user_id, count) \
    SELECT inserted.user_id, 1 FROM inserted \
    ON CONFLICT (user_id) DO UPDATE SET count = counts.count + 1 WHERE counts.count < $5 \
    RETURNING counts.user_id \
), shards_locked AS ( \
    SELECT c.count FROM groups.member_counts c \
    WHERE c.group_id = $1 AND $6::bigint IS NOT NULL \
      AND EXISTS (SELECT 1 FROM verdict WHERE verdict.kind = $7) \
      AND EXISTS (SELECT 1 FROM user_counted) \
    ORDER BY c.shard \
    FOR UPDATE OF c \
), group_counted AS ( \
    UPDATE groups.member_counts c SET count = c.count + 1 \
    FROM verdict \
    WHERE c.group_id = $1 \
      AND c.shard = CASE WHEN verdict.kind = $7 THEN mod($2, $8::bigint)::smallint ELSE 0::smallint END \
      AND EXISTS (SELECT 1 FROM user_counted) \
      AND CASE \
          WHEN $6::bigint IS NULL THEN true \
          WHEN verdict.kind = $7 THEN (SELECT sum(s.count) FROM shards_locked s) < $6::bigint \
          ELSE c.count < $6::bigint \
      END \
    RETURNING c.count \
), requests_deleted AS ( \
    DELETE FROM groups.join_requests r \
    WHERE r.group_id = $1 AND r.user_id = $2 AND EXISTS (SELECT 1 FROM group_counted) \
), outboxed AS ( \
    INSERT INTO groups.outbox (group_id, payload, created_at) \
    SELECT $1, $9, $4 FROM group_counted \
) \
SELECT verdict.outcome, \
    CASE \
        WHEN NOT EXISTS (SELECT 1 FROM inserted) THEN false \
        WHEN NOT EXISTS (SELECT 1 FROM user_counted) THEN groups.refuse_join('JR002', 'user group limit') \
        WHEN NOT EXISTS (SELECT 1 FROM group_counted) THEN groups.refuse_join('JR001', 'group full') \
        ELSE true \
    END AS joined, \
    existing.role AS member_role, existing.joined_at AS member_joined_at, \
    existing.muted_until AS member_muted_until \
FROM verdict LEFT JOIN existing ON true";

/// What [`JOIN_ONE`] found and did.
#[derive(sqlx::FromRow)]
struct JoinOneRow {
    /// `stale`, `archived`, `banned`, `member`, `user_limit`, `full` or `join`.
    outcome: String,
    /// Whether the user was inserted (and counted).
    joined: bool,
    /// The existing membership, for `member`.
    member_role: Option<i16>,
    member_joined_at: Option<DateTime<Utc>>,
    member_muted_until: Option<DateTime<Utc>>,
}

/// `add_members` of one user, in one statement (see [`JOIN_ONE`]).
async fn add_one_member(
    pool: &Pool,
    group: GroupId,
    user: UserId,
    method: JoinMethod,
    limits: MembershipLimits,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<AddedMembers> {
    let group_full = || match limits.group_member_limit {
        Some(limit) => StoreError::GroupFull { group, limit },
        None => corrupt(format!("group {group} reported full without a member limit")),
    };
    let user_limit = StoreError::UserGroupLimit { user, limit: limits.user_group_limit };
    let payload = GroupChange::Joined { user, method, role: Role::Member }.encode(group, Some(actor), now);
    let row: Option<JoinOneRow> = match sqlx::query_as(JOIN_ONE)
        .bind(group.get())
        .bind(user.get())
        .bind(Role::Member.code())
        .bind(now)
        .bind(sql_limit(limits.user_group_limit))
        .bind(limits.group_member_limit.map(sql_limit))
        .bind(GroupKind::Broadcast.code())
        .bind(BROADCAST_COUNTER_SHARDS)
        .bind(payload)
        .fetch_optional(&mut *connection(pool).await?)
        .await
    {
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some(REFUSED_GROUP_FULL) => {
            return Err(group_full());
        }
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some(REFUSED_USER_GROUP_LIMIT) => {
            return Err(user_limit);
        }
        other => other.during("adding a member")?,
    };
    let row = row.ok_or(StoreError::GroupNotFound(group))?;
    let membership = |role: Role, joined_at: DateTime<Utc>, muted_until: Option<DateTime<Utc>>| Membership {
        group_id: group,
        user_id: user,
        role,
        joined_at,
        muted_until,
    };
    match row.outcome.as_str() {
        "join" if row.joined => {
            Ok(AddedMembers { added: vec![membership(Role::Member, now, None)], already_members: Vec::new() })
        }
        // Another join of the same user committed after the snapshot: read it afresh.
        // A member who left since is neither added nor a member, as in `add_members`.
        "join" => {
            let existing = get_membership(pool, group, user).await?;
            Ok(AddedMembers { added: Vec::new(), already_members: existing.into_iter().collect() })
        }
        "member" => {
            let (Some(role), Some(joined_at)) = (row.member_role, row.member_joined_at) else {
                return Err(corrupt(format!("group {group} reported a membership of user {user} without it")));
            };
            let role = stored_code(Role::from_code(role), "role", role)?;
            let existing = membership(role, joined_at, row.member_muted_until);
            Ok(AddedMembers { added: Vec::new(), already_members: vec![existing] })
        }
        "archived" => Err(StoreError::Archived(group)),
        "banned" => Err(StoreError::Banned { group, user }),
        "user_limit" => Err(user_limit),
        "full" => Err(group_full()),
        // The group changed while the statement waited for it; a transaction that locks
        // the row before it reads sees the change.
        "stale" => add_members_in_transaction(pool, group, &[user], method, limits, actor, now).await,
        unknown => Err(corrupt(format!("unknown join outcome {unknown:?}"))),
    }
}

/// `add_members` as one transaction: the group row locked first, then each step.
async fn add_members_in_transaction(
    pool: &Pool,
    group: GroupId,
    users: &[UserId],
    method: JoinMethod,
    limits: MembershipLimits,
    actor: UserId,
    now: DateTime<Utc>,
) -> StoreResult<AddedMembers> {
    let mut tx = pool.begin().await.during("starting a transaction")?;
    let locked = lock_group(&mut tx, group, GroupLock::Share).await?;
    locked.ensure_active()?;
    let added = add_members_to_locked(&mut tx, &locked, users, method, limits, actor, now).await?;
    tx.commit().await.during("committing new members")?;
    Ok(added)
}
