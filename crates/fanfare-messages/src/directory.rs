//! Who may do what in a group, as the groups service says: group settings and the acting
//! user's membership, fetched over gRPC and cached. Cache entries expire after a TTL and
//! are dropped early by the membership and settings updates that pass through this
//! service's log (see `invalidate_*`), so a removed or banned user is refused from the
//! update that removed them on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::client::{MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, ServiceTokenInterceptor, lazy_channel};
use fanfare_core::identity::set_acting_user;
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::time::parse_timestamp;
use fanfare_core::tls::ClientTls;
use fanfare_proto::common::v1 as common;
use fanfare_proto::groups::v1 as groups;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Most groups read per ListUserGroups page.
const USER_GROUPS_PAGE: i32 = 1_000;
/// How long one call to the groups service may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A group's settings that decide who may post and read.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    /// The group.
    pub id: GroupId,
    /// Its kind.
    pub kind: common::GroupKind,
    /// Who may post.
    pub post_policy: common::PostPolicy,
    /// Slow mode interval; zero when off.
    pub slow_mode: Duration,
    /// Whether new members see earlier history.
    pub history_visible_to_new_members: bool,
    /// Whether the group is archived.
    pub archived: bool,
    /// Number of members.
    pub member_count: i64,
}

/// A user's membership as far as messages care.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberInfo {
    /// Their role.
    pub role: common::Role,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
    /// When their mute ends, if muted.
    pub muted_until: Option<DateTime<Utc>>,
}

impl MemberInfo {
    /// Whether the member is the owner or an admin.
    pub fn moderates(&self) -> bool {
        fanfare_proto::visibility::moderates(self.role)
    }

    /// Whether this member may moderate what `other` wrote: the owner outranks everyone
    /// else, an admin outranks plain members and former members (`None`), nobody outranks
    /// their own rank.
    pub fn outranks(&self, other: Option<&MemberInfo>) -> bool {
        let rank = |role: common::Role| match role {
            common::Role::Owner => 3,
            common::Role::Admin => 2,
            common::Role::Member | common::Role::Unspecified => 1,
        };
        let theirs = other.map_or(1, |member| rank(member.role));
        self.moderates() && rank(self.role) > theirs
    }
}

/// A user's standing in a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    /// The group.
    pub group: GroupInfo,
    /// The user's membership; `None` when not a member.
    pub membership: Option<MemberInfo>,
}

/// Why the directory could not answer.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The group does not exist (or is private to others).
    #[error("group {0} does not exist")]
    GroupNotFound(GroupId),
    /// The groups service did not answer usefully.
    #[error("groups service unavailable: {0}")]
    Unavailable(String),
}

/// Reads group settings and memberships.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// The user's standing in the group.
    async fn access(&self, group: GroupId, user: UserId) -> Result<Access, DirectoryError>;
    /// Every group the user belongs to.
    async fn user_groups(&self, user: UserId) -> Result<Vec<GroupId>, DirectoryError>;
    /// Forgets one user's cached membership of a group.
    fn invalidate_member(&self, group: GroupId, user: UserId);
    /// Forgets a group's cached settings and every cached membership of it.
    fn invalidate_group(&self, group: GroupId);
    /// Forgets everything (after possibly missing invalidations).
    fn clear(&self);
}

type GroupsClient = GroupServiceClient<InterceptedService<Channel, ServiceTokenInterceptor>>;

/// Most group settings one pod caches.
const MAX_CACHED_GROUPS: usize = 50_000;
/// Most memberships one pod caches (about 100 bytes each).
const MAX_CACHED_MEMBERS: usize = 500_000;

/// Group settings and memberships read from the groups service, each trusted for the TTL.
/// Memberships are indexed by group, so dropping a group's is one removal, and both maps
/// are bounded: a full map first drops what has expired, and if that is not enough, starts
/// over empty (a cache miss costs one call to groups; unbounded growth costs the pod).
struct Cache {
    groups: HashMap<GroupId, (GroupInfo, Instant)>,
    members: HashMap<GroupId, HashMap<UserId, (Option<MemberInfo>, Instant)>>,
    /// Memberships held, over every group.
    member_count: usize,
    max_groups: usize,
    max_members: usize,
}

impl Default for Cache {
    fn default() -> Self {
        Self::bounded(MAX_CACHED_GROUPS, MAX_CACHED_MEMBERS)
    }
}

impl Cache {
    fn bounded(max_groups: usize, max_members: usize) -> Self {
        Self { groups: HashMap::new(), members: HashMap::new(), member_count: 0, max_groups, max_members }
    }

    fn group(&self, group: GroupId, ttl: Duration) -> Option<GroupInfo> {
        self.groups.get(&group).filter(|(_, at)| at.elapsed() < ttl).map(|(info, _)| info.clone())
    }

    fn member(&self, group: GroupId, user: UserId, ttl: Duration) -> Option<Option<MemberInfo>> {
        let (member, at) = self.members.get(&group)?.get(&user)?;
        (at.elapsed() < ttl).then(|| member.clone())
    }

    fn put_group(&mut self, info: GroupInfo, ttl: Duration) {
        if self.groups.len() >= self.max_groups && !self.groups.contains_key(&info.id) {
            self.groups.retain(|_, (_, at)| at.elapsed() < ttl);
            if self.groups.len() >= self.max_groups {
                self.groups.clear();
            }
        }
        self.groups.insert(info.id, (info, Instant::now()));
    }

    fn put_member(&mut self, group: GroupId, user: UserId, member: Option<MemberInfo>, ttl: Duration) {
        if self.member_count >= self.max_members {
            for members in self.members.values_mut() {
                members.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            self.members.retain(|_, members| !members.is_empty());
            self.member_count = self.members.values().map(HashMap::len).sum();
            if self.member_count >= self.max_members {
                self.members.clear();
                self.member_count = 0;
            }
        }
        if self.members.entry(group).or_default().insert(user, (member, Instant::now())).is_none() {
            self.member_count += 1;
        }
    }

    fn forget_member(&mut self, group: GroupId, user: UserId) {
        let Some(members) = self.members.get_mut(&group) else { return };
        if members.remove(&user).is_some() {
            self.member_count -= 1;
        }
        if members.is_empty() {
            self.members.remove(&group);
        }
    }

    fn forget_group(&mut self, group: GroupId) {
        self.groups.remove(&group);
        if let Some(members) = self.members.remove(&group) {
            self.member_count -= members.len();
        }
    }

    fn clear(&mut self) {
        self.groups.clear();
        self.members.clear();
        self.member_count = 0;
    }
}

/// The directory over the groups service's gRPC API, with a TTL cache.
pub struct GrpcDirectory {
    client: GroupsClient,
    ttl: Duration,
    cache: Mutex<Cache>,
}

impl GrpcDirectory {
    /// A directory calling the groups service at `url` (connected lazily, reconnecting as
    /// needed, balanced over every groups pod, over `tls` for an `https://` URL) with
    /// `service_token`, trusting answers for `ttl`.
    pub fn new(url: &str, service_token: Option<&str>, tls: &ClientTls, ttl: Duration) -> anyhow::Result<Arc<Self>> {
        let channel = lazy_channel(url, Some(CALL_TIMEOUT), tls)?;
        let client = GroupServiceClient::with_interceptor(channel, ServiceTokenInterceptor::new(service_token)?)
            .max_decoding_message_size(MAX_RESPONSE_SIZE)
            .max_encoding_message_size(MAX_REQUEST_SIZE);
        Ok(Arc::new(Self { client, ttl, cache: Mutex::new(Cache::default()) }))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A poisoned cache is still a valid cache: entries are replaced whole.
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached_group(&self, group: GroupId) -> Option<GroupInfo> {
        self.cache().group(group, self.ttl)
    }

    fn cached_member(&self, group: GroupId, user: UserId) -> Option<Option<MemberInfo>> {
        self.cache().member(group, user, self.ttl)
    }

    async fn fetch_group(&self, group: GroupId, user: UserId) -> Result<GroupInfo, DirectoryError> {
        let mut request = tonic::Request::new(groups::GetGroupRequest { group_id: group.get() });
        set_acting_user(request.metadata_mut(), user);
        let response = self.client.clone().get_group(request).await.map_err(|status| match status.code() {
            Code::NotFound => DirectoryError::GroupNotFound(group),
            _ => unavailable(&status),
        })?;
        let info = response
            .into_inner()
            .group
            .map(group_info)
            .ok_or_else(|| DirectoryError::Unavailable("GetGroup answered without a group".to_owned()))??;
        self.cache().put_group(info.clone(), self.ttl);
        Ok(info)
    }

    async fn fetch_member(&self, group: GroupId, user: UserId) -> Result<Option<MemberInfo>, DirectoryError> {
        let mut request = tonic::Request::new(groups::GetMembershipRequest { group_id: group.get(), user_id: 0 });
        set_acting_user(request.metadata_mut(), user);
        let member = match self.client.clone().get_membership(request).await {
            Ok(response) => response.into_inner().membership.map(member_info).transpose()?,
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(unavailable(&status)),
        };
        self.cache().put_member(group, user, member.clone(), self.ttl);
        Ok(member)
    }
}

fn unavailable(status: &tonic::Status) -> DirectoryError {
    DirectoryError::Unavailable(format!("{:?}: {}", status.code(), status.message()))
}

fn group_info(group: groups::Group) -> Result<GroupInfo, DirectoryError> {
    let settings = group.settings.unwrap_or_default();
    Ok(GroupInfo {
        id: GroupId::parse("group_id", group.group_id)
            .map_err(|error| DirectoryError::Unavailable(error.to_string()))?,
        kind: common::GroupKind::try_from(group.kind).unwrap_or(common::GroupKind::Unspecified),
        post_policy: common::PostPolicy::try_from(settings.post_policy).unwrap_or(common::PostPolicy::AdminsOnly),
        slow_mode: Duration::from_secs(u64::try_from(settings.slow_mode_seconds).unwrap_or(0)),
        history_visible_to_new_members: settings.history_visible_to_new_members,
        archived: group.archived_at.is_some(),
        member_count: group.member_count,
    })
}

fn member_info(membership: groups::Membership) -> Result<MemberInfo, DirectoryError> {
    let bad = |error: fanfare_core::validation::FieldViolation| DirectoryError::Unavailable(error.to_string());
    let joined_at = membership
        .joined_at
        .as_ref()
        .map(|timestamp| parse_timestamp("joined_at", timestamp))
        .transpose()
        .map_err(bad)?
        .unwrap_or_default();
    let muted_until = membership
        .muted_until
        .as_ref()
        .map(|timestamp| parse_timestamp("muted_until", timestamp))
        .transpose()
        .map_err(bad)?;
    Ok(MemberInfo {
        role: common::Role::try_from(membership.role).unwrap_or(common::Role::Member),
        joined_at,
        muted_until,
    })
}

#[async_trait]
impl Directory for GrpcDirectory {
    async fn access(&self, group: GroupId, user: UserId) -> Result<Access, DirectoryError> {
        // The group first: a group that does not exist (or a chat hidden from this user)
        // leaves nothing cached about a membership of it.
        let info = match self.cached_group(group) {
            Some(info) => info,
            None => self.fetch_group(group, user).await?,
        };
        let membership = match self.cached_member(group, user) {
            Some(member) => member,
            None => self.fetch_member(group, user).await?,
        };
        Ok(Access { group: info, membership })
    }

    async fn user_groups(&self, user: UserId) -> Result<Vec<GroupId>, DirectoryError> {
        let mut groups_found = Vec::new();
        let mut page_token = String::new();
        loop {
            let mut request =
                tonic::Request::new(groups::ListUserGroupsRequest { page_size: USER_GROUPS_PAGE, page_token });
            set_acting_user(request.metadata_mut(), user);
            let page = self.client.clone().list_user_groups(request).await.map_err(|status| unavailable(&status))?;
            let page = page.into_inner();
            for entry in page.groups {
                if let Some(group) = entry.group {
                    groups_found.push(GroupId::from_trusted(group.group_id));
                }
            }
            if page.next_page_token.is_empty() {
                return Ok(groups_found);
            }
            page_token = page.next_page_token;
        }
    }

    fn invalidate_member(&self, group: GroupId, user: UserId) {
        self.cache().forget_member(group, user);
    }

    fn invalidate_group(&self, group: GroupId) {
        self.cache().forget_group(group);
    }

    fn clear(&self) {
        self.cache().clear();
    }
}

/// What a relayed groups event makes stale: one member, or the whole group.
pub fn invalidate_for(directory: &dyn Directory, event: &common::GroupEvent) {
    use fanfare_proto::common::v1::group_event::Change;
    let Ok(group) = GroupId::parse("group_id", event.group_id) else { return };
    let member = |user_id: i64| UserId::parse("user_id", user_id).ok();
    let user = match &event.change {
        Some(Change::MemberJoined(joined)) => member(joined.user_id),
        Some(Change::MemberLeft(left)) => member(left.user_id),
        Some(Change::MemberRemoved(removed)) => member(removed.user_id),
        Some(Change::MemberBanned(banned)) => member(banned.user_id),
        Some(Change::MemberUnbanned(unbanned)) => member(unbanned.user_id),
        Some(Change::MemberMuted(muted)) => member(muted.user_id),
        Some(Change::MemberUnmuted(unmuted)) => member(unmuted.user_id),
        Some(Change::MemberRoleChanged(changed)) => member(changed.user_id),
        Some(
            Change::GroupCreated(_)
            | Change::OwnershipTransferred(_)
            | Change::GroupSettingsChanged(_)
            | Change::GroupArchived(_),
        )
        | None => None,
    };
    match user {
        // A join or leave also changes the member count, which decides reaction coalescing;
        // that may lag by the TTL, which is harmless.
        Some(user) => directory.invalidate_member(group, user),
        None => directory.invalidate_group(group),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn member() -> MemberInfo {
        MemberInfo { role: common::Role::Member, joined_at: DateTime::UNIX_EPOCH, muted_until: None }
    }

    fn group_info(id: i64) -> GroupInfo {
        GroupInfo {
            id: GroupId::from_trusted(id),
            kind: common::GroupKind::Community,
            post_policy: common::PostPolicy::AllMembers,
            slow_mode: Duration::ZERO,
            history_visible_to_new_members: true,
            archived: false,
            member_count: 1,
        }
    }

    #[test]
    fn memberships_are_dropped_by_group_and_counted() {
        let mut cache = Cache::default();
        let (one, two) = (GroupId::from_trusted(1), GroupId::from_trusted(2));
        for user in 1..=3 {
            cache.put_member(one, UserId::from_trusted(user), Some(member()), TTL);
        }
        cache.put_member(two, UserId::from_trusted(1), None, TTL);
        cache.put_member(two, UserId::from_trusted(1), Some(member()), TTL);
        assert_eq!(cache.member_count, 4, "a replaced entry is counted once");
        cache.forget_member(one, UserId::from_trusted(2));
        assert_eq!(cache.member(one, UserId::from_trusted(2), TTL), None);
        assert_eq!(cache.member(one, UserId::from_trusted(1), TTL), Some(Some(member())));
        cache.forget_group(one);
        assert_eq!(cache.member(one, UserId::from_trusted(1), TTL), None);
        assert_eq!(cache.member_count, 1);
        assert_eq!(cache.member(two, UserId::from_trusted(1), TTL), Some(Some(member())));
        cache.clear();
        assert_eq!(cache.member_count, 0);
    }

    #[test]
    fn both_maps_stay_within_their_bounds() {
        let mut cache = Cache::bounded(10, 100);
        for index in 0..1_000 {
            cache.put_member(GroupId::from_trusted(index % 7 + 1), UserId::from_trusted(index + 1), None, TTL);
            cache.put_group(group_info(index + 1), TTL);
            assert!(cache.member_count <= 100 && cache.groups.len() <= 10, "bounded at insert {index}");
            assert_eq!(cache.member_count, cache.members.values().map(HashMap::len).sum::<usize>());
        }
        // Expired entries go first when full: with a zero TTL everything has expired.
        let mut expiring = Cache::bounded(10, 100);
        for index in 0..100 {
            expiring.put_member(GroupId::from_trusted(1), UserId::from_trusted(index + 1), None, Duration::ZERO);
        }
        expiring.put_member(GroupId::from_trusted(2), UserId::from_trusted(1), None, Duration::ZERO);
        assert_eq!(expiring.member_count, 1, "the expired ones were dropped, the new one kept");
    }
}
