//! The production [`GroupStore`]: PostgreSQL through sqlx, in schema `groups`.
//!
//! Every name in the SQL is schema-qualified (`groups.members`), so the store works on any
//! pool whatever its `search_path`. Queries are checked at run time (`sqlx::query*` with
//! binds), so building needs no database. Each mutating method is one transaction that
//! includes its outbox rows; adding a single user is one statement (see [`JOIN_ONE`]).
//!
//! Locking, always in this order so that no two transactions wait on each other in a
//! cycle: the group row (`FOR SHARE` for joins, leaves, roles, mutes and invites, so
//! concurrent joins do not serialise on it; `FOR NO KEY UPDATE` for settings, archiving,
//! bans and transfers, which thereby wait for joins in flight), then the invite row of a
//! redemption, then member rows (ascending user id), then per-user counters (ascending user
//! id), then the group's member-count shards (ascending shard).
//!
//! Every change that takes the group row `FOR NO KEY UPDATE` also writes a new version of
//! it (settings, archiving and transfers change it; a ban rewrites it unchanged): the
//! single-statement join relies on that to notice such a change committed while it waited
//! for the row, after its snapshot was taken.

use fanfare_core::time::stored_time;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::PageSize;
use fanfare_postgres::During as _;
use sqlx::{PgConnection, PgPool};

use super::{
    AddedMembers, Departure, GroupStore, JoinContext, Redemption, StoreError, StoreResult, claim_expiry, claim_window,
};
use crate::domain::{
    AvatarRef, Ban, BanReason, Description, Group, GroupChange, GroupKind, Invite, InviteCode, JoinMethod, JoinPolicy,
    JoinRequest, Membership, MembershipLimits, NewGroup, OutboxEntry, PostPolicy, Role, Settings, SettingsUpdate,
    Title,
};

/// The schema the groups service owns; its migrations table lives there too.
pub const SCHEMA: &str = "groups";

/// The transaction-scoped advisory lock outbox claims take turns on, so that each claim
/// sees every claim committed before it (see `claim_outbox`).
const OUTBOX_CLAIM_LOCK: i64 = i64::from_be_bytes(*b"grpoutbx");

/// Member-count rows of a BROADCAST group: joins into one huge channel spread their
/// counter updates over this many rows instead of queueing on one.
const BROADCAST_COUNTER_SHARDS: i16 = 16;

/// A [`GroupStore`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresGroupStore {
    pool: fanfare_postgres::Pool,
}

impl PostgresGroupStore {
    /// Opens a pool of at most `max_connections` connections to `database_url`.
    pub async fn connect(database_url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = fanfare_postgres::connect(database_url, max_connections, "fanfare-groups").await?;
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

    /// Creates schema `groups` and applies pending migrations, recording them in
    /// `groups._sqlx_migrations` so other services' migrations in the same database stay
    /// separate. Safe to run from several pods at once: sqlx holds a session advisory
    /// lock from before the schema is created until the last migration is applied.
    pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
        fanfare_postgres::migrate(pool, sqlx::migrate!("./migrations"), SCHEMA).await
    }
}

/// The member-count shard a user's membership is counted in.
fn counter_shard(kind: GroupKind, user: UserId) -> i16 {
    match kind {
        GroupKind::Broadcast => (user.get().rem_euclid(i64::from(BROADCAST_COUNTER_SHARDS))) as i16,
        GroupKind::Chat | GroupKind::Community => 0,
    }
}

/// A limit as SQL compares it.
fn sql_limit(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Users without repeats, first occurrence first.
fn distinct_in_order(users: &[UserId]) -> Vec<UserId> {
    let mut seen = HashSet::with_capacity(users.len());
    users.iter().copied().filter(|user| seen.insert(*user)).collect()
}

// ---------------------------------------------------------------------------------------
// Errors

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
fn corrupt(what: String) -> StoreError {
    StoreError::Internal(anyhow::Error::msg(what).context("reading a groups row"))
}

fn stored_code<T>(parsed: Option<T>, column: &str, code: i16) -> StoreResult<T> {
    parsed.ok_or_else(|| corrupt(format!("unknown {column} code {code}")))
}

fn stored_number<Target: TryFrom<Source>, Source: Copy + std::fmt::Display>(
    value: Source,
    column: &str,
) -> StoreResult<Target> {
    Target::try_from(value).map_err(|_| corrupt(format!("{column} out of range: {value}")))
}

// ---------------------------------------------------------------------------------------
// Rows

macro_rules! select_group {
    ($tail:literal) => {
        concat!(
            "SELECT g.id, g.kind, g.title, g.description, g.avatar_ref, g.owner_id, g.join_policy, \
             g.slow_mode_seconds, g.history_visible, g.post_policy, g.min_follow_age_seconds, g.created_at, \
             g.archived_at, \
             (SELECT COALESCE(SUM(c.count), 0)::bigint FROM groups.member_counts c \
              WHERE c.group_id = g.id) AS member_count \
             FROM groups.groups g ",
            $tail
        )
    };
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    id: i64,
    kind: i16,
    title: String,
    description: String,
    avatar_ref: String,
    owner_id: i64,
    join_policy: i16,
    slow_mode_seconds: i32,
    history_visible: bool,
    post_policy: i16,
    min_follow_age_seconds: i32,
    created_at: DateTime<Utc>,
    archived_at: Option<DateTime<Utc>>,
    /// The SUM of the group's member-count shards.
    member_count: i64,
}

impl GroupRow {
    fn into_group(self) -> StoreResult<Group> {
        Ok(Group {
            id: GroupId::from_trusted(self.id),
            kind: stored_code(GroupKind::from_code(self.kind), "kind", self.kind)?,
            title: Title::from_trusted(self.title),
            description: Description::from_trusted(self.description),
            avatar_ref: AvatarRef::from_trusted(self.avatar_ref),
            owner: UserId::from_trusted(self.owner_id),
            settings: Settings {
                join_policy: stored_code(JoinPolicy::from_code(self.join_policy), "join_policy", self.join_policy)?,
                slow_mode_seconds: stored_number(self.slow_mode_seconds, "slow_mode_seconds")?,
                history_visible_to_new_members: self.history_visible,
                post_policy: stored_code(PostPolicy::from_code(self.post_policy), "post_policy", self.post_policy)?,
                min_follow_age_seconds: stored_number(self.min_follow_age_seconds, "min_follow_age_seconds")?,
            },
            member_count: stored_number(self.member_count, "member_count")?,
            created_at: self.created_at,
            archived_at: self.archived_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    group_id: i64,
    user_id: i64,
    role: i16,
    joined_at: DateTime<Utc>,
    muted_until: Option<DateTime<Utc>>,
}

impl MemberRow {
    fn into_membership(self) -> StoreResult<Membership> {
        Ok(Membership {
            group_id: GroupId::from_trusted(self.group_id),
            user_id: UserId::from_trusted(self.user_id),
            role: stored_code(Role::from_code(self.role), "role", self.role)?,
            joined_at: self.joined_at,
            muted_until: self.muted_until,
        })
    }
}

/// A group with the caller's membership, for `list_user_groups`.
#[derive(sqlx::FromRow)]
struct UserGroupRow {
    #[sqlx(flatten)]
    group: GroupRow,
    member_role: i16,
    member_joined_at: DateTime<Utc>,
    member_muted_until: Option<DateTime<Utc>>,
}

/// A group with one user's membership and ban in force, for `join_context`; the member
/// and ban columns are NULL when there is none.
#[derive(sqlx::FromRow)]
struct JoinContextRow {
    #[sqlx(flatten)]
    group: GroupRow,
    member_role: Option<i16>,
    member_joined_at: Option<DateTime<Utc>>,
    member_muted_until: Option<DateTime<Utc>>,
    ban_banned_by: Option<i64>,
    ban_reason: Option<String>,
    ban_banned_at: Option<DateTime<Utc>>,
    ban_until: Option<DateTime<Utc>>,
}

impl JoinContextRow {
    fn into_context(self, user: UserId) -> StoreResult<JoinContext> {
        let group_id = GroupId::from_trusted(self.group.id);
        let membership = match (self.member_role, self.member_joined_at) {
            (Some(role), Some(joined_at)) => Some(Membership {
                group_id,
                user_id: user,
                role: stored_code(Role::from_code(role), "role", role)?,
                joined_at,
                muted_until: self.member_muted_until,
            }),
            _ => None,
        };
        let active_ban = match (self.ban_banned_by, self.ban_reason, self.ban_banned_at) {
            (Some(banned_by), Some(reason), Some(banned_at)) => Some(Ban {
                group_id,
                user_id: user,
                banned_by: UserId::from_trusted(banned_by),
                reason: BanReason::from_trusted(reason),
                banned_at,
                until: self.ban_until,
            }),
            _ => None,
        };
        Ok(JoinContext { group: Some(self.group.into_group()?), membership, active_ban })
    }
}

#[derive(sqlx::FromRow)]
struct BanRow {
    group_id: i64,
    user_id: i64,
    banned_by: i64,
    reason: String,
    banned_at: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
}

impl BanRow {
    fn into_ban(self) -> Ban {
        Ban {
            group_id: GroupId::from_trusted(self.group_id),
            user_id: UserId::from_trusted(self.user_id),
            banned_by: UserId::from_trusted(self.banned_by),
            reason: BanReason::from_trusted(self.reason),
            banned_at: self.banned_at,
            until: self.until,
        }
    }
}

#[derive(sqlx::FromRow)]
struct JoinRequestRow {
    group_id: i64,
    user_id: i64,
    requested_at: DateTime<Utc>,
}

impl JoinRequestRow {
    fn into_request(self) -> JoinRequest {
        JoinRequest {
            group_id: GroupId::from_trusted(self.group_id),
            user_id: UserId::from_trusted(self.user_id),
            requested_at: self.requested_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct InviteRow {
    code: String,
    group_id: i64,
    created_by: i64,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    max_uses: i32,
    use_count: i32,
    revoked_at: Option<DateTime<Utc>>,
}

impl InviteRow {
    fn into_invite(self) -> StoreResult<Invite> {
        Ok(Invite {
            code: InviteCode::from_trusted(self.code),
            group_id: GroupId::from_trusted(self.group_id),
            created_by: UserId::from_trusted(self.created_by),
            created_at: self.created_at,
            expires_at: self.expires_at,
            max_uses: stored_number(self.max_uses, "max_uses")?,
            use_count: stored_number(self.use_count, "use_count")?,
            revoked_at: self.revoked_at,
        })
    }
}

const MEMBER_COLUMNS_BY_KEY: &str =
    "SELECT group_id, user_id, role, joined_at, muted_until FROM groups.members WHERE group_id = $1 AND user_id = $2";
macro_rules! select_invite {
    ($tail:literal) => {
        concat!(
            "SELECT code, group_id, created_by, created_at, expires_at, max_uses, use_count, revoked_at \
             FROM groups.invites ",
            $tail
        )
    };
}

// ---------------------------------------------------------------------------------------
// Transaction steps shared by several methods

/// How a transaction holds the group row.
#[derive(Clone, Copy)]
enum GroupLock {
    /// Membership changes: many may proceed at once; blocks settings changes, archiving,
    /// bans and transfers until they commit.
    Share,
    /// Settings, archiving and ownership: one at a time, after in-flight joins. Each of
    /// them then updates the group row.
    Exclusive,
    /// Bans: as `Exclusive`, and the lock itself writes a new version of the row (an
    /// update that changes nothing), since a ban changes no column of it. A
    /// single-statement join that waited for the ban then sees a newer row than its
    /// snapshot, whose bans table does not hold the ban yet, and starts again.
    ExclusiveNewVersion,
}

/// The columns of a locked group row the checks need.
#[derive(sqlx::FromRow)]
struct LockedGroupRow {
    id: i64,
    kind: i16,
    owner_id: i64,
    archived_at: Option<DateTime<Utc>>,
}

struct LockedGroup {
    id: GroupId,
    kind: GroupKind,
    owner: UserId,
    archived: bool,
}

impl LockedGroup {
    fn ensure_active(&self) -> StoreResult<()> {
        if self.archived { Err(StoreError::Archived(self.id)) } else { Ok(()) }
    }
}

async fn lock_group(connection: &mut PgConnection, group: GroupId, lock: GroupLock) -> StoreResult<LockedGroup> {
    let sql = match lock {
        GroupLock::Share => "SELECT id, kind, owner_id, archived_at FROM groups.groups WHERE id = $1 FOR SHARE",
        GroupLock::Exclusive => {
            "SELECT id, kind, owner_id, archived_at FROM groups.groups WHERE id = $1 FOR NO KEY UPDATE"
        }
        // An UPDATE of non-key columns takes the same FOR NO KEY UPDATE lock.
        GroupLock::ExclusiveNewVersion => {
            "UPDATE groups.groups SET updated_at = updated_at WHERE id = $1 RETURNING id, kind, owner_id, archived_at"
        }
    };
    let row: Option<LockedGroupRow> =
        sqlx::query_as(sql).bind(group.get()).fetch_optional(&mut *connection).await.during("locking a group")?;
    let row = row.ok_or(StoreError::GroupNotFound(group))?;
    Ok(LockedGroup {
        id: GroupId::from_trusted(row.id),
        kind: stored_code(GroupKind::from_code(row.kind), "kind", row.kind)?,
        owner: UserId::from_trusted(row.owner_id),
        archived: row.archived_at.is_some(),
    })
}

async fn fetch_group(connection: &mut PgConnection, group: GroupId) -> StoreResult<Group> {
    let row: Option<GroupRow> = sqlx::query_as(select_group!("WHERE g.id = $1"))
        .bind(group.get())
        .fetch_optional(&mut *connection)
        .await
        .during("reading a group")?;
    row.ok_or(StoreError::GroupNotFound(group))?.into_group()
}

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

async fn active_ban(
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

/// Appends changes of one group to the outbox, in the given order.
async fn append_outbox(
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

/// Removes a membership and its counts; reports whether there was one.
async fn delete_membership(connection: &mut PgConnection, group: &LockedGroup, user: UserId) -> StoreResult<bool> {
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

/// Counts `added` new members of `group` into its member-count shards, enforcing the
/// member limit.
async fn count_new_members(
    connection: &mut PgConnection,
    group: &LockedGroup,
    added: &[UserId],
    member_limit: Option<u64>,
) -> StoreResult<()> {
    let full = |limit: u64| StoreError::GroupFull { group: group.id, limit };
    let added_count = i64::try_from(added.len()).unwrap_or(i64::MAX);
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
async fn add_members_to_locked(
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
fn single_membership(added: AddedMembers) -> StoreResult<(Membership, bool)> {
    if let Some(membership) = added.added.into_iter().next() {
        return Ok((membership, true));
    }
    // Nobody: the user was a member when the insert ran and left before the read. The
    // transaction changed nothing that matters; the caller may retry.
    added.already_members.into_iter().next().map(|membership| (membership, false)).ok_or_else(|| {
        StoreError::Unavailable(anyhow::Error::msg("the membership changed concurrently").context("joining a group"))
    })
}

// ---------------------------------------------------------------------------------------
// Adding one user in one statement

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
/// Step by step, taking locks in the module's order:
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

impl PostgresGroupStore {
    /// `add_members` of one user, in one statement (see [`JOIN_ONE`]).
    async fn add_one_member(
        &self,
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
            .fetch_optional(&mut *self.connection().await?)
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
                let existing = self.get_membership(group, user).await?;
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
            "stale" => self.add_members_in_transaction(group, &[user], method, limits, actor, now).await,
            unknown => Err(corrupt(format!("unknown join outcome {unknown:?}"))),
        }
    }

    /// `add_members` as one transaction: the group row locked first, then each step.
    async fn add_members_in_transaction(
        &self,
        group: GroupId,
        users: &[UserId],
        method: JoinMethod,
        limits: MembershipLimits,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<AddedMembers> {
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
        let locked = lock_group(&mut tx, group, GroupLock::Share).await?;
        locked.ensure_active()?;
        let added = add_members_to_locked(&mut tx, &locked, users, method, limits, actor, now).await?;
        tx.commit().await.during("committing new members")?;
        Ok(added)
    }
}

// ---------------------------------------------------------------------------------------
// The trait

#[async_trait]
impl GroupStore for PostgresGroupStore {
    async fn create_group(&self, group: NewGroup, user_group_limit: u64, now: DateTime<Utc>) -> StoreResult<Group> {
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
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

    async fn get_group(&self, group: GroupId) -> StoreResult<Option<Group>> {
        let row: Option<GroupRow> = sqlx::query_as(select_group!("WHERE g.id = $1"))
            .bind(group.get())
            .fetch_optional(&mut *self.connection().await?)
            .await
            .during("reading a group")?;
        row.map(GroupRow::into_group).transpose()
    }

    async fn get_groups(&self, groups: &[GroupId]) -> StoreResult<Vec<Group>> {
        let ids: Vec<i64> = groups.iter().map(|group| group.get()).collect();
        let rows: Vec<GroupRow> = sqlx::query_as(select_group!("WHERE g.id = ANY($1)"))
            .bind(&ids)
            .fetch_all(&mut *self.connection().await?)
            .await
            .during("reading groups")?;
        let found: BTreeMap<GroupId, Group> =
            rows.into_iter().map(|row| row.into_group().map(|group| (group.id, group))).collect::<StoreResult<_>>()?;
        Ok(groups.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    async fn update_settings(
        &self,
        group: GroupId,
        update: &SettingsUpdate,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Group> {
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
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

    async fn archive_group(&self, group: GroupId, actor: UserId, now: DateTime<Utc>) -> StoreResult<Group> {
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
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

    async fn get_membership(&self, group: GroupId, user: UserId) -> StoreResult<Option<Membership>> {
        let mut connection = self.pool.acquire().await.during("acquiring a connection")?;
        fetch_membership(&mut connection, group, user).await
    }

    async fn join_context(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> StoreResult<JoinContext> {
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
        .fetch_optional(&mut *self.connection().await?)
        .await
        .during("reading a join's context")?;
        match row {
            Some(row) => row.into_context(user),
            None => Ok(JoinContext::default()),
        }
    }

    async fn add_members(
        &self,
        group: GroupId,
        users: &[UserId],
        method: JoinMethod,
        limits: MembershipLimits,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<AddedMembers> {
        let now = stored_time(now);
        match distinct_in_order(users).as_slice() {
            [user] => self.add_one_member(group, *user, method, limits, actor, now).await,
            _ => self.add_members_in_transaction(group, users, method, limits, actor, now).await,
        }
    }

    async fn remove_member(
        &self,
        group: GroupId,
        user: UserId,
        departure: Departure,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
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

    async fn set_role(
        &self,
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
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
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

    async fn transfer_ownership(
        &self,
        group: GroupId,
        new_owner: UserId,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Group> {
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
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

    async fn list_members(
        &self,
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
            .fetch_all(&mut *self.connection().await?)
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
            .fetch_all(&mut *self.connection().await?)
            .await
            .during("listing members by role")?,
        };
        rows.into_iter().map(MemberRow::into_membership).collect()
    }

    async fn list_user_groups(
        &self,
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
        .fetch_all(&mut *self.connection().await?)
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

    async fn ban(
        &self,
        group: GroupId,
        user: UserId,
        reason: BanReason,
        until: Option<DateTime<Utc>>,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Ban> {
        let now = stored_time(now);
        let until = until.map(stored_time);
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
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

    async fn unban(&self, group: GroupId, user: UserId, actor: UserId, now: DateTime<Utc>) -> StoreResult<()> {
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
        lock_group(&mut tx, group, GroupLock::Share).await?.ensure_active()?;
        let lifted = sqlx::query(
            "DELETE FROM groups.bans WHERE group_id = $1 AND user_id = $2 AND (until IS NULL OR until > $3)",
        )
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

    async fn get_active_ban(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> StoreResult<Option<Ban>> {
        let mut connection = self.pool.acquire().await.during("acquiring a connection")?;
        active_ban(&mut connection, group, user, now).await
    }

    async fn list_bans(
        &self,
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
        .fetch_all(&mut *self.connection().await?)
        .await
        .during("listing bans")?;
        Ok(rows.into_iter().map(BanRow::into_ban).collect())
    }

    async fn set_mute(
        &self,
        group: GroupId,
        user: UserId,
        until: Option<DateTime<Utc>>,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Membership> {
        let now = stored_time(now);
        let until = until.map(stored_time);
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
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

    async fn create_join_request(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> StoreResult<JoinRequest> {
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
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

    async fn list_join_requests(
        &self,
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
        .fetch_all(&mut *self.connection().await?)
        .await
        .during("listing join requests")?;
        Ok(rows.into_iter().map(JoinRequestRow::into_request).collect())
    }

    async fn approve_join_request(
        &self,
        group: GroupId,
        user: UserId,
        limits: MembershipLimits,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Membership> {
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
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

    async fn reject_join_request(&self, group: GroupId, user: UserId) -> StoreResult<()> {
        let deleted = sqlx::query("DELETE FROM groups.join_requests WHERE group_id = $1 AND user_id = $2")
            .bind(group.get())
            .bind(user.get())
            .execute(&mut *self.connection().await?)
            .await
            .during("rejecting a join request")?;
        if deleted.rows_affected() > 0 {
            return Ok(());
        }
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM groups.groups WHERE id = $1")
            .bind(group.get())
            .fetch_optional(&mut *self.connection().await?)
            .await
            .during("reading a group")?;
        match exists {
            Some(_) => Err(StoreError::JoinRequestNotFound { group, user }),
            None => Err(StoreError::GroupNotFound(group)),
        }
    }

    async fn create_invite(&self, invite: Invite) -> StoreResult<Invite> {
        let invite = Invite {
            created_at: stored_time(invite.created_at),
            expires_at: stored_time(invite.expires_at),
            revoked_at: invite.revoked_at.map(stored_time),
            ..invite
        };
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
        lock_group(&mut tx, invite.group_id, GroupLock::Share).await?.ensure_active()?;
        sqlx::query(
            "INSERT INTO groups.invites (code, group_id, created_by, created_at, expires_at, max_uses, \
             use_count, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(invite.code.as_str())
        .bind(invite.group_id.get())
        .bind(invite.created_by.get())
        .bind(invite.created_at)
        .bind(invite.expires_at)
        .bind(i32::try_from(invite.max_uses).unwrap_or(i32::MAX))
        .bind(i32::try_from(invite.use_count).unwrap_or(i32::MAX))
        .bind(invite.revoked_at)
        .execute(&mut *tx)
        .await
        .during("storing an invite")?;
        tx.commit().await.during("committing an invite")?;
        Ok(invite)
    }

    async fn get_invite(&self, code: &InviteCode) -> StoreResult<Option<Invite>> {
        let row: Option<InviteRow> = sqlx::query_as(select_invite!("WHERE code = $1"))
            .bind(code.as_str())
            .fetch_optional(&mut *self.connection().await?)
            .await
            .during("reading an invite")?;
        row.map(InviteRow::into_invite).transpose()
    }

    async fn revoke_invite(&self, code: &InviteCode, now: DateTime<Utc>) -> StoreResult<Invite> {
        let row: Option<InviteRow> = sqlx::query_as(
            "UPDATE groups.invites SET revoked_at = COALESCE(revoked_at, $2) WHERE code = $1 \
             RETURNING code, group_id, created_by, created_at, expires_at, max_uses, use_count, revoked_at",
        )
        .bind(code.as_str())
        .bind(stored_time(now))
        .fetch_optional(&mut *self.connection().await?)
        .await
        .during("revoking an invite")?;
        row.ok_or(StoreError::InviteNotFound)?.into_invite()
    }

    async fn redeem_invite(
        &self,
        code: &InviteCode,
        user: UserId,
        limits: MembershipLimits,
        now: DateTime<Utc>,
    ) -> StoreResult<Redemption> {
        let now = stored_time(now);
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
        // The group row is locked before the invite row (see the module docs), so first
        // find out which group the code opens.
        let group_id: Option<i64> = sqlx::query_scalar("SELECT group_id FROM groups.invites WHERE code = $1")
            .bind(code.as_str())
            .fetch_optional(&mut *tx)
            .await
            .during("reading an invite")?;
        let group = GroupId::from_trusted(group_id.ok_or(StoreError::InviteNotFound)?);
        let locked = lock_group(&mut tx, group, GroupLock::Share).await?;
        let row: InviteRow = sqlx::query_as(select_invite!("WHERE code = $1 FOR UPDATE"))
            .bind(code.as_str())
            .fetch_one(&mut *tx)
            .await
            .during("locking an invite")?;
        let invite = row.into_invite()?;
        if invite.revoked_at.is_some() {
            return Err(StoreError::InviteRevoked);
        }
        if invite.expires_at <= now {
            return Err(StoreError::InviteExpired(invite.expires_at));
        }
        if invite.max_uses > 0 && invite.use_count >= invite.max_uses {
            return Err(StoreError::InviteExhausted(invite.max_uses));
        }
        locked.ensure_active()?;
        let added = add_members_to_locked(&mut tx, &locked, &[user], JoinMethod::Invite, limits, user, now).await?;
        let (membership, joined) = single_membership(added)?;
        if !joined {
            return Ok(Redemption::AlreadyMember(membership));
        }
        sqlx::query("UPDATE groups.invites SET use_count = use_count + 1 WHERE code = $1")
            .bind(code.as_str())
            .execute(&mut *tx)
            .await
            .during("using an invite")?;
        tx.commit().await.during("committing a redemption")?;
        Ok(Redemption::Joined(membership))
    }

    async fn claim_outbox(&self, limit: u32, lease: Duration, now: DateTime<Utc>) -> StoreResult<Vec<OutboxEntry>> {
        let now = stored_time(now);
        let claimed_until = claim_expiry(now, lease)?;
        let mut tx = self.pool.begin().await.during("beginning an outbox claim")?;
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

    async fn mark_published(&self, ids: &[i64], now: DateTime<Utc>) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("UPDATE groups.outbox SET published_at = $2 WHERE id = ANY($1) AND published_at IS NULL")
            .bind(ids)
            .bind(stored_time(now))
            .execute(&mut *self.connection().await?)
            .await
            .during("marking outbox rows published")?;
        Ok(())
    }

    async fn oldest_unpublished(&self) -> StoreResult<Option<DateTime<Utc>>> {
        // By id rather than by time, so the partial index answers with one probe.
        sqlx::query_scalar("SELECT created_at FROM groups.outbox WHERE published_at IS NULL ORDER BY id LIMIT 1")
            .fetch_optional(&mut *self.connection().await?)
            .await
            .during("reading the outbox lag")
            .map_err(Into::into)
    }

    async fn read_outbox(&self, after_id: i64, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        let rows: Vec<(i64, i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, group_id, payload FROM groups.outbox WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after_id)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.connection().await?)
                .await
                .during("reading the outbox")?;
        Ok(rows
            .into_iter()
            .map(|(id, group_id, payload)| OutboxEntry { id, group_id: GroupId::from_trusted(group_id), payload })
            .collect())
    }

    async fn ping(&self) -> StoreResult<()> {
        self.pool.ping().await.during("pinging the database")?;
        Ok(())
    }
}
