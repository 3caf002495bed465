//! The in-memory [`GroupStore`], for `fanfare dev` and fast tests: plain maps behind one
//! mutex, with the same semantics as PostgreSQL, outbox included.
//!
//! Every method takes the lock once, checks everything a change needs, and only then
//! changes anything, which makes each call atomic. The lock is never held across an await.
//! Times are kept at microsecond precision, as PostgreSQL keeps them, so both stores return
//! equal values.

use fanfare_core::time::stored_time;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::PageSize;

use super::{
    AddedMembers, Departure, GroupStore, JoinContext, Redemption, StoreError, StoreResult, claim_expiry, claim_window,
};
use crate::domain::{
    Ban, BanReason, Group, GroupChange, Invite, InviteCode, JoinMethod, JoinRequest, Membership, MembershipLimits,
    NewGroup, OutboxEntry, Role, SettingsUpdate,
};

/// A [`GroupStore`] in memory; clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryGroupStore {
    state: Arc<Mutex<State>>,
}

impl MemoryGroupStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> StoreResult<MutexGuard<'_, State>> {
        // A panic while holding the lock may have left a change half-applied.
        self.state
            .lock()
            .map_err(|_| StoreError::Internal(anyhow::Error::msg("a panic poisoned the lock").context("memory store")))
    }
}

#[derive(Debug, Default)]
struct State {
    last_group_id: i64,
    groups: BTreeMap<GroupId, Group>,
    members: BTreeMap<MemberKey, Membership>,
    /// Memberships by user, for `list_user_groups`: (user, joined_at, group).
    memberships_by_user: BTreeSet<(UserId, DateTime<Utc>, GroupId)>,
    user_group_counts: HashMap<UserId, u64>,
    /// One ban per (group, user); expired ones stay until replaced, as in PostgreSQL.
    bans: BTreeMap<MemberKey, Ban>,
    join_requests: BTreeMap<MemberKey, JoinRequest>,
    invites: HashMap<InviteCode, Invite>,
    /// Every outbox row, published or not; the row with id `n` is at index `n - 1`.
    outbox: Vec<OutboxRow>,
    /// Ids of the rows not yet published (the others are), for the relay's claims.
    unpublished: BTreeSet<i64>,
}

/// An outbox entry with the relay's bookkeeping, as in the `groups.outbox` table.
#[derive(Debug)]
struct OutboxRow {
    entry: OutboxEntry,
    created_at: DateTime<Utc>,
    claimed_until: Option<DateTime<Utc>>,
}

/// Where the row with outbox id `id` sits in `State::outbox`.
fn outbox_index(id: i64) -> Option<usize> {
    usize::try_from(id).ok()?.checked_sub(1)
}

/// Users without repeats, first occurrence first.
fn distinct_in_order(users: &[UserId]) -> Vec<UserId> {
    let mut seen = HashSet::with_capacity(users.len());
    users.iter().copied().filter(|user| seen.insert(*user)).collect()
}

/// The key of the per-(group, user) maps.
type MemberKey = (GroupId, UserId);

/// The (group, user) keys of one group after `after` (all of them for `None`), for
/// ranges over the member, ban and join request maps.
fn keys_of(group: GroupId, after: Option<UserId>) -> (Bound<MemberKey>, Bound<MemberKey>) {
    let start = match after {
        Some(after) => Bound::Excluded((group, after)),
        None => Bound::Included((group, UserId::from_trusted(1))),
    };
    (start, Bound::Included((group, UserId::from_trusted(i64::MAX))))
}

impl State {
    fn group(&self, group: GroupId) -> StoreResult<&Group> {
        self.groups.get(&group).ok_or(StoreError::GroupNotFound(group))
    }

    /// The group, if it exists and still accepts changes.
    fn active_group(&self, group: GroupId) -> StoreResult<&Group> {
        let found = self.group(group)?;
        if found.is_archived() { Err(StoreError::Archived(group)) } else { Ok(found) }
    }

    fn group_mut(&mut self, group: GroupId) -> StoreResult<&mut Group> {
        self.groups.get_mut(&group).ok_or(StoreError::GroupNotFound(group))
    }

    fn active_ban(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> Option<&Ban> {
        self.bans.get(&(group, user)).filter(|ban| ban.is_active(now))
    }

    fn append(&mut self, group: GroupId, change: GroupChange, actor: UserId, now: DateTime<Utc>) {
        let id = self.outbox.len() as i64 + 1;
        let entry = OutboxEntry { id, group_id: group, payload: change.encode(group, Some(actor), now) };
        self.outbox.push(OutboxRow { entry, created_at: now, claimed_until: None });
        self.unpublished.insert(id);
    }

    /// Stores a new membership and counts it; the caller checked every limit.
    fn insert_membership(&mut self, membership: Membership) -> StoreResult<()> {
        let (group, user) = (membership.group_id, membership.user_id);
        self.group_mut(group)?.member_count += 1;
        *self.user_group_counts.entry(user).or_default() += 1;
        self.memberships_by_user.insert((user, membership.joined_at, group));
        self.members.insert((group, user), membership);
        Ok(())
    }

    /// Deletes a membership and uncounts it; `None` when there was none.
    fn delete_membership(&mut self, group: GroupId, user: UserId) -> StoreResult<Option<Membership>> {
        let Some(membership) = self.members.remove(&(group, user)) else {
            return Ok(None);
        };
        self.memberships_by_user.remove(&(user, membership.joined_at, group));
        if let Some(count) = self.user_group_counts.get_mut(&user) {
            *count = count.saturating_sub(1);
        }
        let counted = self.group_mut(group)?;
        counted.member_count = counted.member_count.saturating_sub(1);
        Ok(Some(membership))
    }

    /// The body of `add_members` once the group is known to be active.
    fn add_members(
        &mut self,
        group: GroupId,
        users: &[UserId],
        method: JoinMethod,
        limits: MembershipLimits,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<AddedMembers> {
        let users = distinct_in_order(users);
        if let Some(user) = users.iter().find(|user| self.active_ban(group, **user, now).is_some()) {
            return Err(StoreError::Banned { group, user: *user });
        }
        let (existing, added): (Vec<UserId>, Vec<UserId>) =
            users.iter().partition(|user| self.members.contains_key(&(group, **user)));
        let user_limit = limits.user_group_limit;
        let at_limit = |user: &&UserId| self.user_group_counts.get(*user).copied().unwrap_or(0) >= user_limit;
        if let Some(user) = added.iter().find(at_limit) {
            return Err(StoreError::UserGroupLimit { user: *user, limit: user_limit });
        }
        if let Some(limit) = limits.group_member_limit {
            let member_count = self.group(group)?.member_count;
            if member_count.saturating_add(added.len() as u64) > limit {
                return Err(StoreError::GroupFull { group, limit });
            }
        }

        let mut added_members = Vec::with_capacity(added.len());
        for user in added {
            let membership =
                Membership { group_id: group, user_id: user, role: Role::Member, joined_at: now, muted_until: None };
            self.insert_membership(membership.clone())?;
            self.join_requests.remove(&(group, user));
            self.append(group, GroupChange::Joined { user, method, role: Role::Member }, actor, now);
            added_members.push(membership);
        }
        let already_members = existing.iter().filter_map(|user| self.members.get(&(group, *user)).cloned()).collect();
        Ok(AddedMembers { added: added_members, already_members })
    }

    /// The one membership a single-user join ended with, and whether it is new.
    fn single_membership(added: AddedMembers) -> StoreResult<(Membership, bool)> {
        if let Some(membership) = added.added.into_iter().next() {
            return Ok((membership, true));
        }
        added.already_members.into_iter().next().map(|membership| (membership, false)).ok_or_else(|| {
            StoreError::Internal(anyhow::Error::msg("a single-user join reported nobody").context("joining a group"))
        })
    }
}

#[async_trait]
impl GroupStore for MemoryGroupStore {
    async fn create_group(&self, group: NewGroup, user_group_limit: u64, now: DateTime<Utc>) -> StoreResult<Group> {
        let now = stored_time(now);
        let mut state = self.lock()?;
        let owner_groups = state.user_group_counts.get(&group.owner).copied().unwrap_or(0);
        if owner_groups >= user_group_limit {
            return Err(StoreError::UserGroupLimit { user: group.owner, limit: user_group_limit });
        }
        state.last_group_id += 1;
        let id = GroupId::from_trusted(state.last_group_id);
        let created = Group {
            id,
            kind: group.kind,
            title: group.title,
            description: group.description,
            avatar_ref: group.avatar_ref,
            owner: group.owner,
            settings: group.settings,
            member_count: 0,
            created_at: now,
            archived_at: None,
        };
        state.groups.insert(id, created);
        let owner =
            Membership { group_id: id, user_id: group.owner, role: Role::Owner, joined_at: now, muted_until: None };
        state.insert_membership(owner)?;
        let title = state.group(id)?.title.as_str().to_owned();
        state.append(id, GroupChange::Created { kind: group.kind, title }, group.owner, now);
        let joined = GroupChange::Joined { user: group.owner, method: JoinMethod::Creator, role: Role::Owner };
        state.append(id, joined, group.owner, now);
        state.group(id).cloned()
    }

    async fn get_group(&self, group: GroupId) -> StoreResult<Option<Group>> {
        Ok(self.lock()?.groups.get(&group).cloned())
    }

    async fn get_groups(&self, groups: &[GroupId]) -> StoreResult<Vec<Group>> {
        let state = self.lock()?;
        Ok(groups.iter().filter_map(|group| state.groups.get(group).cloned()).collect())
    }

    async fn update_settings(
        &self,
        group: GroupId,
        update: &SettingsUpdate,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Group> {
        let now = stored_time(now);
        let mut state = self.lock()?;
        state.active_group(group)?;
        let updated = state.group_mut(group)?;
        if let Some(title) = &update.title {
            updated.title = title.clone();
        }
        if let Some(description) = &update.description {
            updated.description = description.clone();
        }
        if let Some(avatar_ref) = &update.avatar_ref {
            updated.avatar_ref = avatar_ref.clone();
        }
        updated.settings = update.apply_to(updated.settings);
        let updated = updated.clone();
        state.append(group, GroupChange::SettingsChanged(Box::new(updated.clone())), actor, now);
        Ok(updated)
    }

    async fn archive_group(&self, group: GroupId, actor: UserId, now: DateTime<Utc>) -> StoreResult<Group> {
        let now = stored_time(now);
        let mut state = self.lock()?;
        state.active_group(group)?;
        let archived = state.group_mut(group)?;
        archived.archived_at = Some(now);
        let archived = archived.clone();
        state.append(group, GroupChange::Archived, actor, now);
        Ok(archived)
    }

    async fn get_membership(&self, group: GroupId, user: UserId) -> StoreResult<Option<Membership>> {
        Ok(self.lock()?.members.get(&(group, user)).cloned())
    }

    async fn join_context(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> StoreResult<JoinContext> {
        let state = self.lock()?;
        let Some(found) = state.groups.get(&group) else {
            return Ok(JoinContext::default());
        };
        Ok(JoinContext {
            group: Some(found.clone()),
            membership: state.members.get(&(group, user)).cloned(),
            active_ban: state.active_ban(group, user, now).cloned(),
        })
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
        let mut state = self.lock()?;
        state.active_group(group)?;
        state.add_members(group, users, method, limits, actor, now)
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
        let mut state = self.lock()?;
        if state.active_group(group)?.owner == user {
            return Err(StoreError::OwnerImmovable(group));
        }
        if state.delete_membership(group, user)?.is_none() {
            return Err(StoreError::NotMember { group, user });
        }
        let change = match departure {
            Departure::Left => GroupChange::Left { user },
            Departure::Removed => GroupChange::Removed { user },
        };
        state.append(group, change, actor, now);
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
        let mut state = self.lock()?;
        state.active_group(group)?;
        let membership = state.members.get_mut(&(group, user)).ok_or(StoreError::NotMember { group, user })?;
        if membership.role == Role::Owner {
            return Err(StoreError::OwnerImmovable(group));
        }
        if membership.role == role {
            return Ok(membership.clone());
        }
        membership.role = role;
        let changed = membership.clone();
        state.append(group, GroupChange::RoleChanged { user, role }, actor, now);
        Ok(changed)
    }

    async fn transfer_ownership(
        &self,
        group: GroupId,
        new_owner: UserId,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Group> {
        let now = stored_time(now);
        let mut state = self.lock()?;
        let previous_owner = state.active_group(group)?.owner;
        if new_owner == previous_owner {
            return state.group(group).cloned();
        }
        if !state.members.contains_key(&(group, new_owner)) {
            return Err(StoreError::NotMember { group, user: new_owner });
        }
        for (user, role) in [(previous_owner, Role::Admin), (new_owner, Role::Owner)] {
            if let Some(membership) = state.members.get_mut(&(group, user)) {
                membership.role = role;
            }
        }
        state.group_mut(group)?.owner = new_owner;
        state.append(group, GroupChange::OwnershipTransferred { previous_owner, new_owner }, actor, now);
        state.group(group).cloned()
    }

    async fn list_members(
        &self,
        group: GroupId,
        role: Option<Role>,
        after: Option<UserId>,
        limit: PageSize,
    ) -> StoreResult<Vec<Membership>> {
        let state = self.lock()?;
        let members = state
            .members
            .range(keys_of(group, after))
            .map(|(_, membership)| membership)
            .filter(|membership| role.is_none_or(|role| membership.role == role))
            .take(limit.get() as usize + 1)
            .cloned()
            .collect();
        Ok(members)
    }

    async fn list_user_groups(
        &self,
        user: UserId,
        before: Option<(DateTime<Utc>, GroupId)>,
        limit: PageSize,
    ) -> StoreResult<Vec<(Group, Membership)>> {
        let state = self.lock()?;
        let lowest = (user, DateTime::<Utc>::MIN_UTC, GroupId::from_trusted(1));
        let keys: Vec<(UserId, DateTime<Utc>, GroupId)> = match before {
            Some((joined_at, group)) => state.memberships_by_user.range(lowest..(user, joined_at, group)).rev(),
            None => {
                let highest = (user, DateTime::<Utc>::MAX_UTC, GroupId::from_trusted(i64::MAX));
                state.memberships_by_user.range(lowest..=highest).rev()
            }
        }
        .take(limit.get() as usize + 1)
        .copied()
        .collect();
        keys.into_iter()
            .map(|(_, _, group)| {
                let membership = state.members.get(&(group, user)).cloned();
                let membership = membership.ok_or_else(|| {
                    let problem = format!("the user index names a missing membership in group {group}");
                    StoreError::Internal(anyhow::Error::msg(problem).context("listing a user's groups"))
                })?;
                Ok((state.group(group)?.clone(), membership))
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
        let mut state = self.lock()?;
        if state.active_group(group)?.owner == user {
            return Err(StoreError::OwnerImmovable(group));
        }
        let ban = Ban { group_id: group, user_id: user, banned_by: actor, reason, banned_at: now, until };
        state.bans.insert((group, user), ban.clone());
        let was_member = state.delete_membership(group, user)?.is_some();
        state.join_requests.remove(&(group, user));
        state.append(group, GroupChange::Banned { user, until, was_member }, actor, now);
        Ok(ban)
    }

    async fn unban(&self, group: GroupId, user: UserId, actor: UserId, now: DateTime<Utc>) -> StoreResult<()> {
        let now = stored_time(now);
        let mut state = self.lock()?;
        state.active_group(group)?;
        if state.active_ban(group, user, now).is_none() {
            return Err(StoreError::NotBanned { group, user });
        }
        state.bans.remove(&(group, user));
        state.append(group, GroupChange::Unbanned { user }, actor, now);
        Ok(())
    }

    async fn get_active_ban(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> StoreResult<Option<Ban>> {
        Ok(self.lock()?.active_ban(group, user, now).cloned())
    }

    async fn list_bans(
        &self,
        group: GroupId,
        after: Option<UserId>,
        limit: PageSize,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Ban>> {
        let state = self.lock()?;
        let bans = state
            .bans
            .range(keys_of(group, after))
            .map(|(_, ban)| ban)
            .filter(|ban| ban.is_active(now))
            .take(limit.get() as usize + 1)
            .cloned()
            .collect();
        Ok(bans)
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
        let mut state = self.lock()?;
        state.active_group(group)?;
        let membership = state.members.get_mut(&(group, user)).ok_or(StoreError::NotMember { group, user })?;
        membership.muted_until = until;
        let muted = membership.clone();
        let change = match until {
            Some(until) => GroupChange::Muted { user, until },
            None => GroupChange::Unmuted { user },
        };
        state.append(group, change, actor, now);
        Ok(muted)
    }

    async fn create_join_request(&self, group: GroupId, user: UserId, now: DateTime<Utc>) -> StoreResult<JoinRequest> {
        let now = stored_time(now);
        let mut state = self.lock()?;
        state.active_group(group)?;
        if state.active_ban(group, user, now).is_some() {
            return Err(StoreError::Banned { group, user });
        }
        let request = state.join_requests.entry((group, user)).or_insert(JoinRequest {
            group_id: group,
            user_id: user,
            requested_at: now,
        });
        Ok(request.clone())
    }

    async fn list_join_requests(
        &self,
        group: GroupId,
        after: Option<(DateTime<Utc>, UserId)>,
        limit: PageSize,
    ) -> StoreResult<Vec<JoinRequest>> {
        let state = self.lock()?;
        let mut requests: Vec<&JoinRequest> = state
            .join_requests
            .range(keys_of(group, None))
            .map(|(_, request)| request)
            .filter(|request| after.is_none_or(|after| (request.requested_at, request.user_id) > after))
            .collect();
        requests.sort_by_key(|request| (request.requested_at, request.user_id));
        Ok(requests.into_iter().take(limit.get() as usize + 1).cloned().collect())
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
        let mut state = self.lock()?;
        state.active_group(group)?;
        if !state.join_requests.contains_key(&(group, user)) {
            return Err(StoreError::JoinRequestNotFound { group, user });
        }
        // add_members changes nothing when it fails, and deletes the request when it adds.
        let added = state.add_members(group, &[user], JoinMethod::Approved, limits, actor, now)?;
        state.join_requests.remove(&(group, user));
        let (membership, _) = State::single_membership(added)?;
        Ok(membership)
    }

    async fn reject_join_request(&self, group: GroupId, user: UserId) -> StoreResult<()> {
        let mut state = self.lock()?;
        state.group(group)?;
        match state.join_requests.remove(&(group, user)) {
            Some(_) => Ok(()),
            None => Err(StoreError::JoinRequestNotFound { group, user }),
        }
    }

    async fn create_invite(&self, invite: Invite) -> StoreResult<Invite> {
        let invite = Invite {
            created_at: stored_time(invite.created_at),
            expires_at: stored_time(invite.expires_at),
            revoked_at: invite.revoked_at.map(stored_time),
            ..invite
        };
        let mut state = self.lock()?;
        state.active_group(invite.group_id)?;
        if state.invites.contains_key(&invite.code) {
            return Err(StoreError::Internal(anyhow::Error::msg("invite code collision").context("storing an invite")));
        }
        state.invites.insert(invite.code.clone(), invite.clone());
        Ok(invite)
    }

    async fn get_invite(&self, code: &InviteCode) -> StoreResult<Option<Invite>> {
        Ok(self.lock()?.invites.get(code).cloned())
    }

    async fn revoke_invite(&self, code: &InviteCode, now: DateTime<Utc>) -> StoreResult<Invite> {
        let mut state = self.lock()?;
        let invite = state.invites.get_mut(code).ok_or(StoreError::InviteNotFound)?;
        invite.revoked_at = invite.revoked_at.or(Some(stored_time(now)));
        Ok(invite.clone())
    }

    async fn redeem_invite(
        &self,
        code: &InviteCode,
        user: UserId,
        limits: MembershipLimits,
        now: DateTime<Utc>,
    ) -> StoreResult<Redemption> {
        let now = stored_time(now);
        let mut state = self.lock()?;
        let invite = state.invites.get(code).ok_or(StoreError::InviteNotFound)?;
        if invite.revoked_at.is_some() {
            return Err(StoreError::InviteRevoked);
        }
        if invite.expires_at <= now {
            return Err(StoreError::InviteExpired(invite.expires_at));
        }
        if invite.max_uses > 0 && invite.use_count >= invite.max_uses {
            return Err(StoreError::InviteExhausted(invite.max_uses));
        }
        let group = invite.group_id;
        state.active_group(group)?;
        let added = state.add_members(group, &[user], JoinMethod::Invite, limits, user, now)?;
        let (membership, joined) = State::single_membership(added)?;
        if !joined {
            return Ok(Redemption::AlreadyMember(membership));
        }
        if let Some(invite) = state.invites.get_mut(code) {
            invite.use_count += 1;
        }
        Ok(Redemption::Joined(membership))
    }

    async fn claim_outbox(&self, limit: u32, lease: Duration, now: DateTime<Utc>) -> StoreResult<Vec<OutboxEntry>> {
        let now = stored_time(now);
        let claimed_until = stored_time(claim_expiry(now, lease)?);
        let mut state = self.lock()?;
        let State { outbox, unpublished, .. } = &mut *state;
        let row_of = |id: &i64| outbox_index(*id).and_then(|index| outbox.get(index));
        let live = |row: &&OutboxRow| row.claimed_until.is_some_and(|until| until >= now);
        // Groups with a row under a live claim: their rows must wait for it.
        let blocked_groups: HashSet<GroupId> =
            unpublished.iter().filter_map(row_of).filter(live).map(|row| row.entry.group_id).collect();
        let window: Vec<i64> = unpublished
            .iter()
            .filter(|id| row_of(id).is_some_and(|row| !live(&row)))
            .take(claim_window(limit) as usize)
            .copied()
            .collect();
        let mut claimed = Vec::new();
        for id in window {
            if claimed.len() >= limit as usize {
                break;
            }
            let Some(row) = outbox_index(id).and_then(|index| outbox.get_mut(index)) else {
                continue;
            };
            if blocked_groups.contains(&row.entry.group_id) {
                continue;
            }
            row.claimed_until = Some(claimed_until);
            claimed.push(row.entry.clone());
        }
        Ok(claimed)
    }

    async fn mark_published(&self, ids: &[i64], _now: DateTime<Utc>) -> StoreResult<()> {
        // Nothing here reads when a row was published, only whether it was.
        let mut state = self.lock()?;
        for id in ids {
            state.unpublished.remove(id);
        }
        Ok(())
    }

    async fn oldest_unpublished(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let state = self.lock()?;
        let oldest =
            state.unpublished.first().and_then(|id| outbox_index(*id)).and_then(|index| state.outbox.get(index));
        Ok(oldest.map(|row| row.created_at))
    }

    async fn read_outbox(&self, after_id: i64, limit: u32) -> StoreResult<Vec<OutboxEntry>> {
        let state = self.lock()?;
        // Ids increase along the vector, so a binary search finds the first one after `after_id`.
        let start = state.outbox.partition_point(|row| row.entry.id <= after_id);
        Ok(state.outbox[start..].iter().take(limit as usize).map(|row| row.entry.clone()).collect())
    }

    async fn ping(&self) -> StoreResult<()> {
        self.lock().map(drop)
    }
}
