//! The production [`GroupStore`]: PostgreSQL through sqlx, in schema `groups`.
//!
//! Every name in the SQL is schema-qualified (`groups.members`), so the store works on any
//! pool whatever its `search_path`. Queries are checked at run time (`sqlx::query*` with
//! binds), so building needs no database. Each mutating method is one transaction that
//! includes its outbox rows; adding a single user is one statement (see `JOIN_ONE` in
//! `joins.rs`). This file holds the store; each trait method calls the function of the
//! same name in the file of its area: `groups`, `membership`, `joins`, `moderation`,
//! `join_requests`, `invites` or `outbox`. `rows` maps rows to the domain and `locking`
//! takes the group row.
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

mod groups;
mod invites;
mod join_requests;
mod joins;
mod locking;
mod membership;
mod moderation;
mod outbox;
mod rows;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::PageSize;
use sqlx::PgPool;

use self::rows::During as _;
use super::{AddedMembers, Departure, GroupStore, JoinContext, Redemption, StoreResult};
use crate::domain::{
    Ban, BanReason, Group, Invite, InviteCode, JoinMethod, JoinRequest, Membership, MembershipLimits, NewGroup,
    OutboxEntry, Role, SettingsUpdate,
};

/// The schema the groups service owns; its migrations table lives there too.
pub const SCHEMA: &str = "groups";

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

    /// Creates schema `groups` and applies pending migrations, recording them in
    /// `groups._sqlx_migrations` so other services' migrations in the same database stay
    /// separate. Safe to run from several pods at once: sqlx holds a session advisory
    /// lock from before the schema is created until the last migration is applied.
    pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
        fanfare_postgres::migrate(pool, sqlx::migrate!("./migrations"), SCHEMA).await
    }
}

#[async_trait]
impl GroupStore for PostgresGroupStore {
    async fn create_group(&self, group: NewGroup, user_group_limit: u64, now: DateTime<Utc>) -> StoreResult<Group> {
        groups::create_group(&self.pool, group, user_group_limit, now).await
    }

    async fn get_group(&self, group: GroupId) -> StoreResult<Option<Group>> {
        groups::get_group(&self.pool, group).await
    }

    async fn get_groups(&self, groups: &[GroupId]) -> StoreResult<Vec<Group>> {
        groups::get_groups(&self.pool, groups).await
    }

    async fn update_settings(
        &self,
        group: GroupId,
        update: &SettingsUpdate,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Group> {
        groups::update_settings(&self.pool, group, update, actor, now).await
    }

    async fn archive_group(&self, group: GroupId, actor: UserId, now: DateTime<Utc>) -> StoreResult<Group> {
        groups::archive_group(&self.pool, group, actor, now).await
    }

    async fn get_membership(&self, group: GroupId, user: UserId) -> StoreResult<Option<Membership>> {
        membership::get_membership(&self.pool, group, user).await
    }

    async fn join_context(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> StoreResult<JoinContext> {
        membership::join_context(&self.pool, group, user, now).await
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
        joins::add_members(&self.pool, group, users, method, limits, actor, now).await
    }

    async fn remove_member(
        &self,
        group: GroupId,
        user: UserId,
        departure: Departure,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        membership::remove_member(&self.pool, group, user, departure, actor, now).await
    }

    async fn set_role(
        &self,
        group: GroupId,
        user: UserId,
        role: Role,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Membership> {
        membership::set_role(&self.pool, group, user, role, actor, now).await
    }

    async fn transfer_ownership(
        &self,
        group: GroupId,
        new_owner: UserId,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Group> {
        groups::transfer_ownership(&self.pool, group, new_owner, actor, now).await
    }

    async fn list_members(
        &self,
        group: GroupId,
        role: Option<Role>,
        after: Option<UserId>,
        limit: PageSize,
    ) -> StoreResult<Vec<Membership>> {
        membership::list_members(&self.pool, group, role, after, limit).await
    }

    async fn list_user_groups(
        &self,
        user: UserId,
        before: Option<(DateTime<Utc>, GroupId)>,
        limit: PageSize,
    ) -> StoreResult<Vec<(Group, Membership)>> {
        membership::list_user_groups(&self.pool, user, before, limit).await
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
        moderation::ban(&self.pool, group, user, reason, until, actor, now).await
    }

    async fn unban(&self, group: GroupId, user: UserId, actor: UserId, now: DateTime<Utc>) -> StoreResult<()> {
        moderation::unban(&self.pool, group, user, actor, now).await
    }

    async fn get_active_ban(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> StoreResult<Option<Ban>> {
        moderation::get_active_ban(&self.pool, group, user, now).await
    }

    async fn list_bans(
        &self,
        group: GroupId,
        after: Option<UserId>,
        limit: PageSize,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Ban>> {
        moderation::list_bans(&self.pool, group, after, limit, now).await
    }

    async fn set_mute(
        &self,
        group: GroupId,
        user: UserId,
        until: Option<DateTime<Utc>>,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Membership> {
        moderation::set_mute(&self.pool, group, user, until, actor, now).await
    }

    async fn create_join_request(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> StoreResult<JoinRequest> {
        join_requests::create_join_request(&self.pool, group, user, now).await
    }

    async fn list_join_requests(
        &self,
        group: GroupId,
        after: Option<(DateTime<Utc>, UserId)>,
        limit: PageSize,
    ) -> StoreResult<Vec<JoinRequest>> {
        join_requests::list_join_requests(&self.pool, group, after, limit).await
    }

    async fn approve_join_request(
        &self,
        group: GroupId,
        user: UserId,
        limits: MembershipLimits,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Membership> {
        join_requests::approve_join_request(&self.pool, group, user, limits, actor, now).await
    }

    async fn reject_join_request(&self, group: GroupId, user: UserId) -> StoreResult<()> {
        join_requests::reject_join_request(&self.pool, group, user).await
    }

    async fn create_invite(&self, invite: Invite) -> StoreResult<Invite> {
        invites::create_invite(&self.pool, invite).await
    }

    async fn get_invite(&self, code: &InviteCode) -> StoreResult<Option<Invite>> {
        invites::get_invite(&self.pool, code).await
    }

    async fn revoke_invite(&self, code: &InviteCode, now: DateTime<Utc>) -> StoreResult<Invite> {
        invites::revoke_invite(&self.pool, code, now).await
    }

    async fn redeem_invite(
        &self,
        code: &InviteCode,
        user: UserId,
        limits: MembershipLimits,
        now: DateTime<Utc>,
    ) -> StoreResult<Redemption> {
        invites::redeem_invite(&self.pool, code, user, limits, now).await
    }

    async fn claim_outbox(&self, limit: u32, lease: Duration, now: DateTime<Utc>) -> StoreResult<Vec<OutboxEntry>> {
        outbox::claim_outbox(&self.pool, limit, lease, now).await
    }

    async fn mark_published(&self, ids: &[i64], now: DateTime<Utc>) -> StoreResult<()> {
        outbox::mark_published(&self.pool, ids, now).await
    }

    async fn oldest_unpublished(&self) -> StoreResult<Option<DateTime<Utc>>> {
        outbox::oldest_unpublished(&self.pool).await
    }

    async fn read_outbox(&self, after_id: i64, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        outbox::read_outbox(&self.pool, after_id, limit).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.pool.ping().await.during("pinging the database")?;
        Ok(())
    }
}
