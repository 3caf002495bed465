//! The groups service's orchestration: who may do what (through `domain::rules`), which
//! limits apply, then one atomic store call. Takes only validated values; the gRPC adapter
//! parses requests and maps results.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::{Cursor, Page, PageSize};
use fanfare_core::rate_limit::{SharedLimits, UserLimit};
use fanfare_core::status::ErrorReason;
use fanfare_core::time::now;
use fanfare_core::validation::FieldViolation;

use crate::config::GroupLimits;
use crate::domain::rules::{self, is_moderator, may_invite, outranks};
use crate::domain::{
    AvatarRef, Ban, BanReason, Description, Group, GroupKind, Invite, InviteCode, JoinMethod, JoinPolicy, JoinRequest,
    Membership, MembershipLimits, NewGroup, Role, Settings, SettingsUpdate, Title,
};
use crate::error::{GroupsError, GroupsResult};
use crate::follows::FollowGraph;
use crate::store::{AddedMembers, Departure, GroupStore, JoinContext, Redemption, StoreError};

/// A validated CreateGroup request.
#[derive(Debug, Clone)]
pub struct CreateGroup {
    /// The kind.
    pub kind: GroupKind,
    /// Title.
    pub title: Title,
    /// Description.
    pub description: Description,
    /// Avatar reference.
    pub avatar_ref: AvatarRef,
    /// Settings, or `None` for the kind's defaults.
    pub settings: Option<Settings>,
}

/// The position after the last row of a ListUserGroups page: (joined_at, group id).
pub type UserGroupsKey = (DateTime<Utc>, GroupId);

/// The position after the last row of a ListJoinRequests page: (requested_at, user id).
pub type JoinRequestKey = (DateTime<Utc>, UserId);

/// What a ban says beyond whom it bans.
#[derive(Debug, Clone)]
pub struct BanTerms {
    /// Why.
    pub reason: BanReason,
    /// When it ends; `None` is permanent.
    pub until: Option<DateTime<Utc>>,
}

/// What a join did.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinResult {
    /// The caller is now a member.
    Joined(Membership),
    /// The caller already was a member.
    AlreadyMember(Membership),
    /// A join request is pending approval.
    PendingApproval(JoinRequest),
}

/// The groups service.
pub struct GroupsService {
    store: Arc<dyn GroupStore>,
    limits: GroupLimits,
    change_limit: Option<UserLimit>,
    /// Who follows whom, for FOLLOWERS_ONLY joins; `None` when no fanout service is
    /// configured, and then such joins are refused.
    follow_graph: Option<Arc<dyn FollowGraph>>,
}

impl GroupsService {
    /// A service over `store` enforcing `limits`, each pod counting its own calls.
    pub fn new(store: Arc<dyn GroupStore>, limits: GroupLimits) -> Self {
        let change_limit =
            UserLimit::new("group-changes", limits.user_changes_per_second, limits.user_changes_burst, None);
        Self { store, limits, change_limit, follow_graph: None }
    }

    /// The same service, counting each user's changes across pods in `shared` (Redis).
    pub fn with_shared_limits(self, shared: Arc<dyn SharedLimits>) -> Self {
        let change_limit = UserLimit::new(
            "group-changes",
            self.limits.user_changes_per_second,
            self.limits.user_changes_burst,
            Some(shared),
        );
        Self { change_limit, ..self }
    }

    /// The same service, admitting users to FOLLOWERS_ONLY groups when `follow_graph` says
    /// they follow the owner.
    pub fn with_follow_graph(self, follow_graph: Arc<dyn FollowGraph>) -> Self {
        Self { follow_graph: Some(follow_graph), ..self }
    }

    /// The member limit of a group of `kind`; `None` is unlimited.
    pub fn member_limit(&self, kind: GroupKind) -> Option<u64> {
        rules::member_limit(
            kind,
            self.limits.chat_max_members,
            self.limits.community_max_members,
            self.limits.broadcast_max_members,
        )
    }

    /// The largest batch of ids one call may carry.
    pub fn max_batch_size(&self) -> usize {
        self.limits.max_batch_size
    }

    fn membership_limits(&self, kind: GroupKind) -> MembershipLimits {
        MembershipLimits {
            group_member_limit: self.member_limit(kind),
            user_group_limit: self.limits.max_groups_per_user,
        }
    }

    /// Counts one change against the caller's rate limit.
    async fn take_change_budget(&self, actor: UserId) -> GroupsResult<()> {
        match &self.change_limit {
            Some(limit) => {
                limit.check(actor).await.map_err(|retry_after| GroupsError::RateLimited { user: actor, retry_after })
            }
            None => Ok(()),
        }
    }

    /// Reads a group, or `GroupNotFound`.
    async fn group(&self, group_id: GroupId) -> GroupsResult<Group> {
        self.store.get_group(group_id).await?.ok_or_else(|| StoreError::GroupNotFound(group_id).into())
    }

    /// Reads a group that must accept changes.
    async fn open_group(&self, group_id: GroupId) -> GroupsResult<Group> {
        let group = self.group(group_id).await?;
        if group.is_archived() {
            return Err(StoreError::Archived(group_id).into());
        }
        Ok(group)
    }

    /// The actor's membership, or `NotAMember`.
    async fn actor_membership(&self, group: &Group, actor: UserId) -> GroupsResult<Membership> {
        self.store
            .get_membership(group.id, actor)
            .await?
            .ok_or(GroupsError::NotAMember { group: group.id, user: actor })
    }

    /// The actor's membership, which must be an owner's or admin's.
    async fn moderator(&self, group: &Group, actor: UserId) -> GroupsResult<Membership> {
        let membership = self.actor_membership(group, actor).await?;
        if !is_moderator(membership.role) {
            return Err(GroupsError::PermissionDenied(format!(
                "only the owner or an admin of group {} may do this",
                group.id
            )));
        }
        Ok(membership)
    }

    /// The actor's membership, which must be the owner's.
    async fn owner(&self, group: &Group, actor: UserId) -> GroupsResult<Membership> {
        let membership = self.actor_membership(group, actor).await?;
        if membership.role != Role::Owner {
            return Err(GroupsError::PermissionDenied(format!("only the owner of group {} may do this", group.id)));
        }
        Ok(membership)
    }

    /// Whether `actor` may see a group at all: CHAT groups are private to their members,
    /// COMMUNITY and BROADCAST groups are discoverable by anyone.
    async fn may_see(&self, group: &Group, actor: UserId) -> GroupsResult<bool> {
        if group.kind != GroupKind::Chat {
            return Ok(true);
        }
        let is_member = self.store.get_membership(group.id, actor).await?.is_some();
        Ok(visible(group.kind, is_member))
    }

    /// A group the actor may see; a private group they may not see reads as not found.
    async fn visible_group(&self, group_id: GroupId, actor: UserId) -> GroupsResult<Group> {
        let group = self.group(group_id).await?;
        if !self.may_see(&group, actor).await? {
            return Err(StoreError::GroupNotFound(group_id).into());
        }
        Ok(group)
    }

    /// Whether the actor may list or look up other members: any member of a CHAT or
    /// COMMUNITY group; only moderators of a BROADCAST group (its audience is private).
    async fn member_viewer(&self, group: &Group, actor: UserId) -> GroupsResult<Membership> {
        let membership = self.actor_membership(group, actor).await?;
        if group.kind == GroupKind::Broadcast && !is_moderator(membership.role) {
            return Err(GroupsError::PermissionDenied(format!(
                "only the owner or an admin may see the members of broadcast group {}",
                group.id
            )));
        }
        Ok(membership)
    }

    /// Creates a group owned by the actor.
    pub async fn create_group(&self, actor: UserId, request: CreateGroup) -> GroupsResult<Group> {
        self.take_change_budget(actor).await?;
        let settings = request.settings.unwrap_or_else(|| rules::default_settings(request.kind));
        if let Err((field, description)) = rules::check_settings(request.kind, &settings) {
            let violation = FieldViolation::new(format!("settings.{field}"), description);
            return Err(GroupsError::InvalidRequest(violation.into()));
        }
        let new_group = NewGroup {
            kind: request.kind,
            title: request.title,
            description: request.description,
            avatar_ref: request.avatar_ref,
            owner: actor,
            settings,
        };
        let group = self.store.create_group(new_group, self.limits.max_groups_per_user, now()).await?;
        tracing::info!(group_id = %group.id, kind = ?group.kind, "group created");
        Ok(group)
    }

    /// Reads one group the actor may see.
    pub async fn get_group(&self, actor: UserId, group_id: GroupId) -> GroupsResult<Group> {
        self.visible_group(group_id, actor).await
    }

    /// Reads several groups; those missing or private to others are reported missing.
    pub async fn batch_get_groups(
        &self,
        actor: UserId,
        group_ids: &[GroupId],
    ) -> GroupsResult<(Vec<Group>, Vec<GroupId>)> {
        let found = self.store.get_groups(group_ids).await?;
        let mut visible = Vec::with_capacity(found.len());
        for group in found {
            if self.may_see(&group, actor).await? {
                visible.push(group);
            }
        }
        let missing = group_ids.iter().copied().filter(|id| !visible.iter().any(|group| group.id == *id)).collect();
        Ok((visible, missing))
    }

    /// Changes settings (owner or admin).
    pub async fn update_settings(
        &self,
        actor: UserId,
        group_id: GroupId,
        update: SettingsUpdate,
    ) -> GroupsResult<Group> {
        self.take_change_budget(actor).await?;
        let group = self.open_group(group_id).await?;
        self.moderator(&group, actor).await?;
        if update.is_empty() {
            return Ok(group);
        }
        let settings = update.apply_to(group.settings);
        // `apply_to` resets the minimum follow age under other policies; one the caller asks
        // for is checked as asked, so that setting it on the wrong policy is refused.
        let requested = Settings {
            min_follow_age_seconds: update.min_follow_age_seconds.unwrap_or(settings.min_follow_age_seconds),
            ..settings
        };
        if let Err((field, description)) = rules::check_settings(group.kind, &requested) {
            let violation = FieldViolation::new(field, description);
            return Err(GroupsError::InvalidRequest(violation.into()));
        }
        Ok(self.store.update_settings(group_id, &update, actor, now()).await?)
    }

    /// Archives a group (owner only).
    pub async fn archive_group(&self, actor: UserId, group_id: GroupId) -> GroupsResult<Group> {
        self.take_change_budget(actor).await?;
        let group = self.open_group(group_id).await?;
        self.owner(&group, actor).await?;
        Ok(self.store.archive_group(group_id, actor, now()).await?)
    }

    /// Joins a group as the actor under its join policy.
    ///
    /// One read decides (the group, the actor's membership and ban, as `visible_group`,
    /// `get_membership` and `get_active_ban` would), then one store call writes; the store
    /// checks again, under the group's lock, what it enforces. A FOLLOWERS_ONLY group adds
    /// one call to the fanout service in between; the policy itself is advisory like the
    /// rest of the read (a policy changed during the join applies to the next one).
    pub async fn join_group(&self, actor: UserId, group_id: GroupId) -> GroupsResult<JoinResult> {
        self.take_change_budget(actor).await?;
        let JoinContext { group, membership, active_ban } = self.store.join_context(group_id, actor, now()).await?;
        let group = group.ok_or(StoreError::GroupNotFound(group_id))?;
        // As `visible_group`: a private group reads as missing to a non-member.
        if !visible(group.kind, membership.is_some()) {
            return Err(StoreError::GroupNotFound(group_id).into());
        }
        if let Some(membership) = membership {
            return Ok(JoinResult::AlreadyMember(membership));
        }
        if group.is_archived() {
            return Err(StoreError::Archived(group_id).into());
        }
        if active_ban.is_some() {
            return Err(StoreError::Banned { group: group_id, user: actor }.into());
        }
        match group.settings.join_policy {
            JoinPolicy::Open => self.add_joining_user(&group, actor, JoinMethod::Direct).await,
            JoinPolicy::FollowersOnly => {
                self.require_follower(&group, actor).await?;
                self.add_joining_user(&group, actor, JoinMethod::Direct).await
            }
            JoinPolicy::InviteOnly => Err(GroupsError::InviteOnly(group_id)),
            JoinPolicy::Approval => {
                let request = self.store.create_join_request(group_id, actor, now()).await?;
                Ok(JoinResult::PendingApproval(request))
            }
        }
    }

    /// Admits `user` to a FOLLOWERS_ONLY group only if they follow its owner, and have for
    /// at least the group's minimum follow age. The owner is whoever owns the group now: the
    /// group record keeps no other "creator", and a channel handed over by
    /// `TransferOwnership` admits its new owner's audience.
    async fn require_follower(&self, group: &Group, user: UserId) -> GroupsResult<()> {
        let Some(follow_graph) = &self.follow_graph else {
            return Err(GroupsError::FailedPrecondition {
                reason: ErrorReason::FollowersOnlyUnsupported,
                kind: "FOLLOWERS_ONLY_UNAVAILABLE",
                message: format!(
                    "group {} is JOIN_POLICY_FOLLOWERS_ONLY, which needs the fanout service's follow graph; this \
                     deployment has no fanout service configured, so such groups are joined with an invite code",
                    group.id
                ),
            });
        };
        let owner = group.owner;
        let Some(followed_at) = follow_graph.followed_since(user, owner).await? else {
            return Err(GroupsError::NotAFollower { group: group.id, owner });
        };
        let min_follow_age_seconds = group.settings.min_follow_age_seconds;
        if !rules::follow_old_enough(followed_at, min_follow_age_seconds, now()) {
            let joinable_at = rules::joinable_from(followed_at, min_follow_age_seconds);
            return Err(GroupsError::FollowTooRecent { group: group.id, owner, min_follow_age_seconds, joinable_at });
        }
        Ok(())
    }

    async fn add_joining_user(&self, group: &Group, user: UserId, method: JoinMethod) -> GroupsResult<JoinResult> {
        let limits = self.membership_limits(group.kind);
        let outcome = self.store.add_members(group.id, &[user], method, limits, user, now()).await?;
        single_join_result(outcome)
    }

    /// Leaves a group; the owner must transfer ownership first.
    pub async fn leave_group(&self, actor: UserId, group_id: GroupId) -> GroupsResult<()> {
        self.take_change_budget(actor).await?;
        let group = self.open_group(group_id).await?;
        let membership = self.actor_membership(&group, actor).await?;
        if membership.role == Role::Owner {
            return Err(GroupsError::FailedPrecondition {
                reason: ErrorReason::OwnerImmovable,
                kind: "OWNER",
                message: format!(
                    "the owner cannot leave group {}: transfer ownership to another member first",
                    group.id
                ),
            });
        }
        Ok(self.store.remove_member(group_id, actor, Departure::Left, actor, now()).await?)
    }

    /// Adds users (any member of a CHAT group; owner or admin elsewhere), all or none.
    pub async fn add_members(&self, actor: UserId, group_id: GroupId, users: &[UserId]) -> GroupsResult<AddedMembers> {
        self.take_change_budget(actor).await?;
        let group = self.open_group(group_id).await?;
        let membership = self.actor_membership(&group, actor).await?;
        if !may_invite(group.kind, membership.role) {
            return Err(GroupsError::PermissionDenied(format!(
                "only the owner or an admin may add members to group {group_id}"
            )));
        }
        let limits = self.membership_limits(group.kind);
        Ok(self.store.add_members(group_id, users, JoinMethod::Added, limits, actor, now()).await?)
    }

    /// Removes a member the actor outranks (owner or admin).
    pub async fn remove_member(&self, actor: UserId, group_id: GroupId, user: UserId) -> GroupsResult<()> {
        self.take_change_budget(actor).await?;
        let group = self.open_group(group_id).await?;
        let moderator = self.moderator(&group, actor).await?;
        let target = self
            .store
            .get_membership(group_id, user)
            .await?
            .ok_or(GroupsError::MembershipNotFound { group: group_id, user })?;
        require_outranks(&moderator, &target)?;
        Ok(self.store.remove_member(group_id, user, Departure::Removed, actor, now()).await?)
    }

    /// Lists members by user id (see [`Self::member_viewer`] for who may).
    pub async fn list_members(
        &self,
        actor: UserId,
        group_id: GroupId,
        role: Option<Role>,
        size: PageSize,
        after: Option<UserId>,
    ) -> GroupsResult<Page<Membership>> {
        let group = self.visible_group(group_id, actor).await?;
        self.member_viewer(&group, actor).await?;
        let rows = self.store.list_members(group_id, role, after, size).await?;
        Ok(Page::from_overfetch(rows, size, |membership| Cursor(vec![membership.user_id.get()])))
    }

    /// Reads one membership: one's own always; another's as for listing members.
    pub async fn get_membership(
        &self,
        actor: UserId,
        group_id: GroupId,
        user: Option<UserId>,
    ) -> GroupsResult<Membership> {
        let user = user.unwrap_or(actor);
        if user != actor {
            let group = self.visible_group(group_id, actor).await?;
            self.member_viewer(&group, actor).await?;
        }
        self.store
            .get_membership(group_id, user)
            .await?
            .ok_or(GroupsError::MembershipNotFound { group: group_id, user })
    }

    /// Lists the actor's groups, most recently joined first.
    pub async fn list_user_groups(
        &self,
        actor: UserId,
        size: PageSize,
        before: Option<UserGroupsKey>,
    ) -> GroupsResult<Page<(Group, Membership)>> {
        let rows = self.store.list_user_groups(actor, before, size).await?;
        Ok(Page::from_overfetch(rows, size, |(group, membership)| {
            Cursor(vec![membership.joined_at.timestamp_micros(), group.id.get()])
        }))
    }

    /// Makes a member an admin or a plain member (owner only).
    pub async fn set_member_role(
        &self,
        actor: UserId,
        group_id: GroupId,
        user: UserId,
        role: Role,
    ) -> GroupsResult<Membership> {
        self.take_change_budget(actor).await?;
        if role == Role::Owner {
            return Err(GroupsError::InvalidRequest(
                FieldViolation::new(
                    "role",
                    "must be ROLE_ADMIN or ROLE_MEMBER; use TransferOwnership to change the owner",
                )
                .into(),
            ));
        }
        let group = self.open_group(group_id).await?;
        self.owner(&group, actor).await?;
        Ok(self.store.set_role(group_id, user, role, actor, now()).await?)
    }

    /// Hands ownership to another member (owner only).
    pub async fn transfer_ownership(&self, actor: UserId, group_id: GroupId, new_owner: UserId) -> GroupsResult<Group> {
        self.take_change_budget(actor).await?;
        let group = self.open_group(group_id).await?;
        self.owner(&group, actor).await?;
        if new_owner == actor {
            return Err(GroupsError::FailedPrecondition {
                reason: ErrorReason::OwnerImmovable,
                kind: "OWNER",
                message: format!("user {actor} already owns group {group_id}"),
            });
        }
        Ok(self.store.transfer_ownership(group_id, new_owner, actor, now()).await?)
    }

    /// Bans a user the actor outranks (owner or admin).
    pub async fn ban_member(
        &self,
        actor: UserId,
        group_id: GroupId,
        user: UserId,
        terms: BanTerms,
    ) -> GroupsResult<Ban> {
        self.take_change_budget(actor).await?;
        let group = self.open_group(group_id).await?;
        let moderator = self.moderator(&group, actor).await?;
        if let Some(target) = self.store.get_membership(group_id, user).await? {
            require_outranks(&moderator, &target)?;
        }
        Ok(self.store.ban(group_id, user, terms.reason, terms.until, actor, now()).await?)
    }

    /// Lifts a ban (owner or admin).
    pub async fn unban_member(&self, actor: UserId, group_id: GroupId, user: UserId) -> GroupsResult<()> {
        self.take_change_budget(actor).await?;
        let group = self.open_group(group_id).await?;
        self.moderator(&group, actor).await?;
        Ok(self.store.unban(group_id, user, actor, now()).await?)
    }

    /// Lists bans in force (owner or admin).
    pub async fn list_bans(
        &self,
        actor: UserId,
        group_id: GroupId,
        size: PageSize,
        after: Option<UserId>,
    ) -> GroupsResult<Page<Ban>> {
        let group = self.visible_group(group_id, actor).await?;
        self.moderator(&group, actor).await?;
        let rows = self.store.list_bans(group_id, after, size, now()).await?;
        Ok(Page::from_overfetch(rows, size, |ban| Cursor(vec![ban.user_id.get()])))
    }

    /// Mutes a member the actor outranks until `until` (owner or admin).
    pub async fn mute_member(
        &self,
        actor: UserId,
        group_id: GroupId,
        user: UserId,
        until: DateTime<Utc>,
    ) -> GroupsResult<Membership> {
        self.change_mute(actor, group_id, user, Some(until)).await
    }

    /// Lifts a member's mute (owner or admin).
    pub async fn unmute_member(&self, actor: UserId, group_id: GroupId, user: UserId) -> GroupsResult<Membership> {
        self.change_mute(actor, group_id, user, None).await
    }

    async fn change_mute(
        &self,
        actor: UserId,
        group_id: GroupId,
        user: UserId,
        until: Option<DateTime<Utc>>,
    ) -> GroupsResult<Membership> {
        self.take_change_budget(actor).await?;
        let group = self.open_group(group_id).await?;
        let moderator = self.moderator(&group, actor).await?;
        let target = self
            .store
            .get_membership(group_id, user)
            .await?
            .ok_or(GroupsError::MembershipNotFound { group: group_id, user })?;
        require_outranks(&moderator, &target)?;
        Ok(self.store.set_mute(group_id, user, until, actor, now()).await?)
    }

    /// Lists pending join requests, oldest first (owner or admin).
    pub async fn list_join_requests(
        &self,
        actor: UserId,
        group_id: GroupId,
        size: PageSize,
        after: Option<JoinRequestKey>,
    ) -> GroupsResult<Page<JoinRequest>> {
        let group = self.visible_group(group_id, actor).await?;
        self.moderator(&group, actor).await?;
        let rows = self.store.list_join_requests(group_id, after, size).await?;
        Ok(Page::from_overfetch(rows, size, |request| {
            Cursor(vec![request.requested_at.timestamp_micros(), request.user_id.get()])
        }))
    }

    /// Approves a join request (owner or admin).
    pub async fn approve_join_request(
        &self,
        actor: UserId,
        group_id: GroupId,
        user: UserId,
    ) -> GroupsResult<Membership> {
        self.take_change_budget(actor).await?;
        let group = self.open_group(group_id).await?;
        self.moderator(&group, actor).await?;
        let limits = self.membership_limits(group.kind);
        Ok(self.store.approve_join_request(group_id, user, limits, actor, now()).await?)
    }

    /// Rejects a join request (owner or admin).
    pub async fn reject_join_request(&self, actor: UserId, group_id: GroupId, user: UserId) -> GroupsResult<()> {
        self.take_change_budget(actor).await?;
        let group = self.open_group(group_id).await?;
        self.moderator(&group, actor).await?;
        Ok(self.store.reject_join_request(group_id, user).await?)
    }

    /// Creates an invite (any member of a CHAT group; owner or admin elsewhere).
    pub async fn create_invite(
        &self,
        actor: UserId,
        group_id: GroupId,
        ttl: chrono::Duration,
        max_uses: u32,
    ) -> GroupsResult<Invite> {
        self.take_change_budget(actor).await?;
        let group = self.open_group(group_id).await?;
        let membership = self.actor_membership(&group, actor).await?;
        if !may_invite(group.kind, membership.role) {
            return Err(GroupsError::PermissionDenied(format!(
                "only the owner or an admin may create invites to group {group_id}"
            )));
        }
        let created_at = now();
        let invite = Invite {
            code: InviteCode::generate(),
            group_id,
            created_by: actor,
            created_at,
            expires_at: created_at + ttl,
            max_uses,
            use_count: 0,
            revoked_at: None,
        };
        Ok(self.store.create_invite(invite).await?)
    }

    /// Revokes an invite (its creator, or an owner or admin of its group).
    pub async fn revoke_invite(&self, actor: UserId, code: &InviteCode) -> GroupsResult<()> {
        self.take_change_budget(actor).await?;
        let invite = self.store.get_invite(code).await?.ok_or(StoreError::InviteNotFound)?;
        // An archived group refuses every change, revoking its invites included.
        let group = self.open_group(invite.group_id).await?;
        if invite.created_by != actor {
            self.moderator(&group, actor).await?;
        }
        self.store.revoke_invite(code, now()).await?;
        Ok(())
    }

    /// Joins through an invite code, whatever the group's join policy.
    pub async fn join_with_invite(&self, actor: UserId, code: &InviteCode) -> GroupsResult<Redemption> {
        self.take_change_budget(actor).await?;
        let invite = self.store.get_invite(code).await?.ok_or(StoreError::InviteNotFound)?;
        let group = self.group(invite.group_id).await?;
        let limits = self.membership_limits(group.kind);
        Ok(self.store.redeem_invite(code, actor, limits, now()).await?)
    }
}

/// Whether a group of `kind` is visible to a user who is or is not a member: CHAT groups are
/// private to their members, COMMUNITY and BROADCAST groups are discoverable by anyone.
fn visible(kind: GroupKind, is_member: bool) -> bool {
    kind != GroupKind::Chat || is_member
}

/// Acting on another member needs a higher role (an admin cannot act on an admin).
fn require_outranks(actor: &Membership, target: &Membership) -> GroupsResult<()> {
    if target.role == Role::Owner {
        return Err(StoreError::OwnerImmovable(target.group_id).into());
    }
    if !outranks(actor.role, target.role) {
        return Err(GroupsError::PermissionDenied(format!(
            "user {} may not act on user {}: only the owner may act on admins",
            actor.user_id, target.user_id
        )));
    }
    Ok(())
}

/// The result of adding exactly one user.
fn single_join_result(outcome: AddedMembers) -> GroupsResult<JoinResult> {
    if let Some(membership) = outcome.added.into_iter().next() {
        return Ok(JoinResult::Joined(membership));
    }
    match outcome.already_members.into_iter().next() {
        Some(membership) => Ok(JoinResult::AlreadyMember(membership)),
        None => Err(StoreError::Internal(anyhow::anyhow!(
            "add_members of one user reported neither added nor already a member"
        ))
        .into()),
    }
}
