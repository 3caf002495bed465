//! Rows of the `groups` schema and their mapping to the domain: error classification,
//! the stored encodings and the column lists the reads share.

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};

use crate::domain::{
    AvatarRef, Ban, BanReason, Description, Group, GroupKind, Invite, InviteCode, JoinPolicy, JoinRequest, Membership,
    PostPolicy, Role, Settings, Title,
};
use crate::store::{JoinContext, StoreError, StoreResult};

// ---------------------------------------------------------------------------------------
// Errors

/// Classifies sqlx results for this store's modules (the one rule every store shares).
pub(super) use fanfare_postgres::During;

/// sqlx failures as this store reports them, classified once for every store
/// (`fanfare_postgres::During`): an unreachable or overloaded database, or a transaction it
/// rolled back (deadlock, serialization failure), is `Unavailable` and may be retried;
/// anything else is `Internal`.
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
pub(super) fn corrupt(what: String) -> StoreError {
    StoreError::Internal(anyhow::Error::msg(what).context("reading a groups row"))
}

pub(super) fn stored_code<T>(parsed: Option<T>, column: &str, code: i16) -> StoreResult<T> {
    parsed.ok_or_else(|| corrupt(format!("unknown {column} code {code}")))
}

fn stored_number<Target: TryFrom<Source>, Source: Copy + std::fmt::Display>(
    value: Source,
    column: &str,
) -> StoreResult<Target> {
    Target::try_from(value).map_err(|_| corrupt(format!("{column} out of range: {value}")))
}

/// A connection for one statement: at once an unavailable error while the database is
/// known to be down (`fanfare_postgres::Pool`).
pub(super) async fn connection(
    pool: &fanfare_postgres::Pool,
) -> StoreResult<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    Ok(pool.acquire().await.during("acquiring a connection")?)
}

/// A limit as SQL compares it.
pub(super) fn sql_limit(limit: u64) -> i64 {
    fanfare_core::wire::int64(limit)
}

// ---------------------------------------------------------------------------------------
// Rows

/// A `SELECT` of whole group rows (with their member count) followed by `$tail`.
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
pub(super) use select_group;

#[derive(sqlx::FromRow)]
pub(super) struct GroupRow {
    pub(super) id: i64,
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
    pub(super) fn into_group(self) -> StoreResult<Group> {
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
pub(super) struct MemberRow {
    group_id: i64,
    pub(super) user_id: i64,
    role: i16,
    joined_at: DateTime<Utc>,
    muted_until: Option<DateTime<Utc>>,
}

impl MemberRow {
    pub(super) fn into_membership(self) -> StoreResult<Membership> {
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
pub(super) struct UserGroupRow {
    #[sqlx(flatten)]
    pub(super) group: GroupRow,
    pub(super) member_role: i16,
    pub(super) member_joined_at: DateTime<Utc>,
    pub(super) member_muted_until: Option<DateTime<Utc>>,
}

/// A group with one user's membership and ban in force, for `join_context`; the member
/// and ban columns are NULL when there is none.
#[derive(sqlx::FromRow)]
pub(super) struct JoinContextRow {
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
    pub(super) fn into_context(self, user: UserId) -> StoreResult<JoinContext> {
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
pub(super) struct BanRow {
    group_id: i64,
    user_id: i64,
    banned_by: i64,
    reason: String,
    banned_at: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
}

impl BanRow {
    pub(super) fn into_ban(self) -> Ban {
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
pub(super) struct JoinRequestRow {
    group_id: i64,
    user_id: i64,
    requested_at: DateTime<Utc>,
}

impl JoinRequestRow {
    pub(super) fn into_request(self) -> JoinRequest {
        JoinRequest {
            group_id: GroupId::from_trusted(self.group_id),
            user_id: UserId::from_trusted(self.user_id),
            requested_at: self.requested_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct InviteRow {
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
    pub(super) fn into_invite(self) -> StoreResult<Invite> {
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

/// One membership by (group, user).
pub(super) const MEMBER_COLUMNS_BY_KEY: &str =
    "SELECT group_id, user_id, role, joined_at, muted_until FROM groups.members WHERE group_id = $1 AND user_id = $2";

/// A `SELECT` of whole invite rows followed by `$tail`.
macro_rules! select_invite {
    ($tail:literal) => {
        concat!(
            "SELECT code, group_id, created_by, created_at, expires_at, max_uses, use_count, revoked_at \
             FROM groups.invites ",
            $tail
        )
    };
}
pub(super) use select_invite;
