//! Where groups live: the [`GroupStore`] trait, with a PostgreSQL implementation for
//! production and an in-memory one for `fanfare dev` and fast tests. One conformance suite
//! (`conformance`, behind the `testing` feature) runs against both so they cannot drift.
//!
//! Store methods are atomic: each either commits the whole change, including its outbox
//! row(s), or changes nothing. They enforce the invariants that must hold under concurrency
//! (capacity, bans, uniqueness, archived groups, invite use counts); permissions are the
//! service's business and are checked before the store is called.

#[cfg(feature = "testing")]
pub mod conformance;
pub mod memory;
pub mod postgres;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::PageSize;

use crate::domain::{
    Ban, BanReason, Group, Invite, InviteCode, JoinMethod, JoinRequest, Membership, MembershipLimits, NewGroup,
    OutboxEntry, Role, SettingsUpdate,
};

pub use memory::MemoryGroupStore;
pub use postgres::PostgresGroupStore;

/// Why a store call did not change anything.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No group has this id.
    #[error("group {0} does not exist")]
    GroupNotFound(GroupId),
    /// The user is not a member of the group.
    #[error("user {user} is not a member of group {group}")]
    NotMember {
        /// The group.
        group: GroupId,
        /// The user.
        user: UserId,
    },
    /// The group is archived and accepts no changes.
    #[error("group {0} is archived")]
    Archived(GroupId),
    /// Adding would exceed the group's member limit.
    #[error("group {group} is full ({limit} members)")]
    GroupFull {
        /// The group.
        group: GroupId,
        /// The limit reached.
        limit: u64,
    },
    /// Adding would exceed a user's group limit.
    #[error("user {user} already belongs to {limit} groups")]
    UserGroupLimit {
        /// The user.
        user: UserId,
        /// The limit reached.
        limit: u64,
    },
    /// The user is banned from the group.
    #[error("user {user} is banned from group {group}")]
    Banned {
        /// The group.
        group: GroupId,
        /// The user.
        user: UserId,
    },
    /// There is no active ban to lift.
    #[error("user {user} is not banned from group {group}")]
    NotBanned {
        /// The group.
        group: GroupId,
        /// The user.
        user: UserId,
    },
    /// There is no pending join request from the user.
    #[error("user {user} has no pending join request for group {group}")]
    JoinRequestNotFound {
        /// The group.
        group: GroupId,
        /// The user.
        user: UserId,
    },
    /// No invite has this code.
    #[error("invite code does not exist")]
    InviteNotFound,
    /// The invite has expired.
    #[error("invite code expired at {0}")]
    InviteExpired(DateTime<Utc>),
    /// The invite was revoked.
    #[error("invite code was revoked")]
    InviteRevoked,
    /// The invite has served all the joins it allows.
    #[error("invite code has been used its maximum of {0} times")]
    InviteExhausted(u32),
    /// The owner's membership cannot be removed or demoted this way.
    #[error("the owner of group {0} cannot be removed or demoted; transfer ownership first")]
    OwnerImmovable(GroupId),
    /// The database could not be reached or failed the transaction.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: a bug or corrupt data.
    #[error("store failure")]
    Internal(#[source] anyhow::Error),
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// How far ahead of the oldest unpublished outbox entry a claim of `limit` entries looks:
/// this many times `limit` entries.
pub const CLAIM_WINDOW_FACTOR: u32 = 4;

/// The claimable outbox entries a claim of `limit` looks at.
fn claim_window(limit: u32) -> u32 {
    limit.saturating_mul(CLAIM_WINDOW_FACTOR)
}

/// When an outbox claim taken at `now` for `lease` expires.
fn claim_expiry(now: DateTime<Utc>, lease: Duration) -> StoreResult<DateTime<Utc>> {
    chrono::Duration::from_std(lease).ok().and_then(|lease| now.checked_add_signed(lease)).ok_or_else(|| {
        StoreError::Internal(
            anyhow::Error::msg(format!("lease {lease:?} is out of range")).context("claiming the outbox"),
        )
    })
}

/// Result of adding users to a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddedMembers {
    /// Memberships created, in the order the users were given.
    pub added: Vec<Membership>,
    /// Users who were already members (nothing was changed for them).
    pub already_members: Vec<Membership>,
}

/// What deciding a join needs, read at once by [`GroupStore::join_context`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinContext {
    /// The group, archived or not; `None` when no group has the id (and then the other
    /// fields are `None` too).
    pub group: Option<Group>,
    /// The user's membership of it.
    pub membership: Option<Membership>,
    /// The user's ban from it in force at the time asked about.
    pub active_ban: Option<Ban>,
}

/// Why a member stopped being one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// They left.
    Left,
    /// A moderator removed them.
    Removed,
}

/// Result of redeeming an invite code.
#[derive(Debug, Clone, PartialEq)]
pub enum Redemption {
    /// The user joined; the invite's use count went up by one.
    Joined(Membership),
    /// The user was already a member; the invite was not used.
    AlreadyMember(Membership),
}

/// Storage of groups, memberships, bans, join requests, invites and the groups outbox.
///
/// Every method that changes membership or settings appends the matching
/// [`crate::domain::GroupChange`] to the outbox in the same transaction (`actor` is who acted).
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Creates a group and the owner's membership (counts toward the owner's group limit).
    /// Outbox: `Created`, then `Joined { method: Creator, role: Owner }`.
    async fn create_group(&self, group: NewGroup, user_group_limit: u64, now: DateTime<Utc>) -> StoreResult<Group>;

    /// Reads one group, archived or not.
    async fn get_group(&self, group: GroupId) -> StoreResult<Option<Group>>;

    /// Reads several groups; unknown ids are left out; order follows `groups`.
    async fn get_groups(&self, groups: &[GroupId]) -> StoreResult<Vec<Group>>;

    /// Applies a settings update. Errors: `GroupNotFound`, `Archived`.
    /// Outbox: `SettingsChanged` with the group after the change.
    async fn update_settings(
        &self,
        group: GroupId,
        update: &SettingsUpdate,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Group>;

    /// Archives a group. Errors: `GroupNotFound`, `Archived` (already). Outbox: `Archived`.
    async fn archive_group(&self, group: GroupId, actor: UserId, now: DateTime<Utc>) -> StoreResult<Group>;

    /// Reads one membership.
    async fn get_membership(&self, group: GroupId, user: UserId) -> StoreResult<Option<Membership>>;

    /// Reads, as of one moment, the group (as `get_group`), the user's membership (as
    /// `get_membership`) and their ban in force at `now` (as `get_active_ban`): everything
    /// `JoinGroup` decides on before it writes. Advisory, like any read: the write
    /// (`add_members`, `create_join_request`) checks again what it enforces.
    async fn join_context(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> StoreResult<JoinContext>;

    /// Adds users as plain members, all or none: fails on the first user who is banned
    /// (`Banned`) or at their group limit (`UserGroupLimit`), or when the new members would
    /// not fit (`GroupFull`); users already members are reported, not changed. Any pending
    /// join requests of the added users are deleted. Errors also: `GroupNotFound`, `Archived`.
    /// Outbox: one `Joined { method, role: Member }` per added user.
    async fn add_members(
        &self,
        group: GroupId,
        users: &[UserId],
        method: JoinMethod,
        limits: MembershipLimits,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<AddedMembers>;

    /// Ends a membership. Errors: `GroupNotFound`, `Archived`, `NotMember`,
    /// `OwnerImmovable` (the owner's membership). Outbox: `Left` or `Removed`.
    async fn remove_member(
        &self,
        group: GroupId,
        user: UserId,
        departure: Departure,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Sets a member's role to `Admin` or `Member` (never `Owner`, debug-asserted). Errors:
    /// `GroupNotFound`, `Archived`, `NotMember`, `OwnerImmovable`. Outbox: `RoleChanged`
    /// (only when the role actually changes).
    async fn set_role(
        &self,
        group: GroupId,
        user: UserId,
        role: Role,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Membership>;

    /// Makes `new_owner` (a member) the owner and the current owner an admin. Errors:
    /// `GroupNotFound`, `Archived`, `NotMember` (new owner). Outbox: `OwnershipTransferred`.
    async fn transfer_ownership(
        &self,
        group: GroupId,
        new_owner: UserId,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Group>;

    /// Lists members by ascending user id after `after`, at most `limit + 1` rows (the
    /// extra row tells the caller there is more), optionally of one role.
    async fn list_members(
        &self,
        group: GroupId,
        role: Option<Role>,
        after: Option<UserId>,
        limit: PageSize,
    ) -> StoreResult<Vec<Membership>>;

    /// Lists a user's groups by descending (joined_at, group id) strictly before `before`,
    /// at most `limit + 1` rows.
    async fn list_user_groups(
        &self,
        user: UserId,
        before: Option<(DateTime<Utc>, GroupId)>,
        limit: PageSize,
    ) -> StoreResult<Vec<(Group, Membership)>>;

    /// Bans a user (replacing any earlier ban), removing their membership if they are a
    /// member and deleting any pending join request. Errors: `GroupNotFound`, `Archived`,
    /// `OwnerImmovable`. Outbox: `Banned { was_member }`.
    async fn ban(
        &self,
        group: GroupId,
        user: UserId,
        reason: BanReason,
        until: Option<DateTime<Utc>>,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Ban>;

    /// Lifts the ban in force at `now`. Errors: `GroupNotFound`, `Archived`, `NotBanned`.
    /// Outbox: `Unbanned`.
    async fn unban(&self, group: GroupId, user: UserId, actor: UserId, now: DateTime<Utc>) -> StoreResult<()>;

    /// The ban in force at `now`, if any.
    async fn get_active_ban(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> StoreResult<Option<Ban>>;

    /// Lists bans in force at `now` by ascending user id after `after`, at most `limit + 1`.
    async fn list_bans(
        &self,
        group: GroupId,
        after: Option<UserId>,
        limit: PageSize,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Ban>>;

    /// Sets (`Some`) or clears (`None`) a member's mute. Errors: `GroupNotFound`,
    /// `Archived`, `NotMember`. Outbox: `Muted` or `Unmuted`.
    async fn set_mute(
        &self,
        group: GroupId,
        user: UserId,
        until: Option<DateTime<Utc>>,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Membership>;

    /// Files a join request, or returns the pending one (idempotent). Errors:
    /// `GroupNotFound`, `Archived`, `Banned`. No outbox row (not part of the timeline).
    async fn create_join_request(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> StoreResult<JoinRequest>;

    /// Lists pending requests by ascending (requested_at, user id) after `after`, at most
    /// `limit + 1`.
    async fn list_join_requests(
        &self,
        group: GroupId,
        after: Option<(DateTime<Utc>, UserId)>,
        limit: PageSize,
    ) -> StoreResult<Vec<JoinRequest>>;

    /// Deletes a pending request and adds the user as a member, atomically. Errors:
    /// `JoinRequestNotFound`, and those of `add_members`. Outbox: `Joined { method: Approved }`.
    async fn approve_join_request(
        &self,
        group: GroupId,
        user: UserId,
        limits: MembershipLimits,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Membership>;

    /// Deletes a pending request. Errors: `GroupNotFound`, `JoinRequestNotFound`.
    async fn reject_join_request(&self, group: GroupId, user: UserId) -> StoreResult<()>;

    /// Stores a new invite. Errors: `GroupNotFound`, `Archived`.
    async fn create_invite(&self, invite: Invite) -> StoreResult<Invite>;

    /// Reads an invite by code, whatever its state.
    async fn get_invite(&self, code: &InviteCode) -> StoreResult<Option<Invite>>;

    /// Revokes an invite (idempotent). Errors: `InviteNotFound`.
    async fn revoke_invite(&self, code: &InviteCode, now: DateTime<Utc>) -> StoreResult<Invite>;

    /// Joins `user` through an invite, atomically checking and bumping its use count.
    /// Errors: `InviteNotFound`, `InviteRevoked`, `InviteExpired`, `InviteExhausted`, and
    /// those of `add_members`. Outbox: `Joined { method: Invite }` when joined.
    async fn redeem_invite(
        &self,
        code: &InviteCode,
        user: UserId,
        limits: MembershipLimits,
        now: DateTime<Utc>,
    ) -> StoreResult<Redemption>;

    /// Claims up to `limit` unpublished outbox entries for `lease` from `now`, oldest id
    /// first, for the relay. An entry is claimable when it is unpublished and unclaimed, or
    /// its claim expired before `now`. A group with an unpublished entry under a live claim
    /// (another relay is delivering it, or a failed delivery waits out its lease) is skipped
    /// entirely, so that a group's entries never overtake each other. Concurrent claimers
    /// never receive the same entry while its claim is live. To bound the work while many
    /// groups are skipped, a claim looks no further than the oldest `limit ×`
    /// [`CLAIM_WINDOW_FACTOR`] claimable entries.
    async fn claim_outbox(&self, limit: u32, lease: Duration, now: DateTime<Utc>) -> StoreResult<Vec<OutboxEntry>>;

    /// Marks outbox entries as published at `now`: they are never claimed again. Unknown
    /// and already published ids are ignored.
    async fn mark_published(&self, ids: &[i64], now: DateTime<Utc>) -> StoreResult<()>;

    /// When the oldest unpublished outbox entry was written, if any (the relay's lag).
    async fn oldest_unpublished(&self) -> StoreResult<Option<DateTime<Utc>>>;

    /// Reads outbox entries with id greater than `after_id`, in id order, at most `limit`,
    /// published or not. For inspection (tests, tools) only: a reader that pages with it can
    /// skip an entry whose transaction commits after a later id became visible, so the
    /// relay uses [`claim_outbox`](Self::claim_outbox) instead.
    async fn read_outbox(&self, after_id: i64, limit: u32) -> StoreResult<Vec<OutboxEntry>>;

    /// Reports whether the store is reachable (for health).
    async fn ping(&self) -> StoreResult<()>;
}
