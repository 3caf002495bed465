//! Wire requests to validated domain values. Every bad field is reported at once, by its
//! proto name, as a field violation.

use std::hash::Hash;

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::{Cursor, PageSize, not_a_page_token};
use fanfare_core::time::parse_future;
use fanfare_core::validation::{FieldViolation, InvalidRequest, Violations, distinct_list};
use fanfare_proto::groups::v1 as pb;

use crate::config::{DEFAULT_INVITE_TTL_SECONDS, MAX_INVITE_TTL_SECONDS, MAX_INVITE_USES, MIN_INVITE_TTL_SECONDS};
use crate::domain::{
    AvatarRef, BanReason, Description, GroupKind, InviteCode, JoinPolicy, PostPolicy, Role, Settings, SettingsUpdate,
    Title, parse_min_follow_age, parse_slow_mode,
};
use crate::service::{BanTerms, CreateGroup, JoinRequestKey, UserGroupsKey};

/// A request naming one member (or user) of one group: RemoveMember, UnbanMember,
/// UnmuteMember, ApproveJoinRequest, RejectJoinRequest.
#[derive(Debug)]
pub(super) struct MemberRef {
    /// The group.
    pub group_id: GroupId,
    /// The user acted on.
    pub user: UserId,
}

/// A validated GetMembership request.
#[derive(Debug)]
pub(super) struct GetMembership {
    /// The group.
    pub group_id: GroupId,
    /// Whose membership; `None` for the caller's own.
    pub user: Option<UserId>,
}

/// A validated ListUserGroups request.
#[derive(Debug)]
pub(super) struct ListUserGroups {
    /// How many groups at most.
    pub size: PageSize,
    /// The last group of the previous page; `None` for the first page.
    pub before: Option<UserGroupsKey>,
}

/// A validated AddMembers request.
#[derive(Debug)]
pub(super) struct AddMembers {
    /// The group.
    pub group_id: GroupId,
    /// The users to add, distinct, in the order asked.
    pub users: Vec<UserId>,
}

/// A validated UpdateGroupSettings request.
#[derive(Debug)]
pub(super) struct UpdateSettings {
    /// The group.
    pub group_id: GroupId,
    /// The fields to change (the others stay).
    pub update: SettingsUpdate,
}

/// A validated TransferOwnership request.
#[derive(Debug)]
pub(super) struct TransferOwnership {
    /// The group.
    pub group_id: GroupId,
    /// The member who becomes its owner.
    pub new_owner: UserId,
}

/// A page of a listing keyed by user id (members, bans).
#[derive(Debug)]
pub(super) struct UserKeyedPage {
    /// The group listed.
    pub group_id: GroupId,
    /// How many rows at most.
    pub size: PageSize,
    /// The last user of the previous page; `None` for the first page.
    pub after: Option<UserId>,
}

/// A validated ListMembers request.
#[derive(Debug)]
pub(super) struct ListMembers {
    /// The page of members.
    pub page: UserKeyedPage,
    /// Only members of this role; `None` for all.
    pub role: Option<Role>,
}

/// A validated ListJoinRequests request.
#[derive(Debug)]
pub(super) struct ListJoinRequests {
    /// The group listed.
    pub group_id: GroupId,
    /// How many rows at most.
    pub size: PageSize,
    /// The last request of the previous page; `None` for the first page.
    pub after: Option<JoinRequestKey>,
}

/// A validated SetMemberRole request.
#[derive(Debug)]
pub(super) struct SetMemberRole {
    /// The group.
    pub group_id: GroupId,
    /// The member whose role changes.
    pub user: UserId,
    /// The new role.
    pub role: Role,
}

/// A validated BanMember request.
#[derive(Debug)]
pub(super) struct BanMember {
    /// The group.
    pub group_id: GroupId,
    /// The user banned.
    pub user: UserId,
    /// Why and until when.
    pub terms: BanTerms,
}

/// A validated MuteMember request.
#[derive(Debug)]
pub(super) struct MuteMember {
    /// The group.
    pub group_id: GroupId,
    /// The member muted.
    pub user: UserId,
    /// When the mute ends.
    pub until: DateTime<Utc>,
}

/// A validated CreateInvite request.
#[derive(Debug)]
pub(super) struct CreateInvite {
    /// The group the invite opens.
    pub group_id: GroupId,
    /// How long the invite lasts.
    pub ttl: chrono::Duration,
    /// How many joins it allows; 0 is unlimited.
    pub max_uses: u32,
}

/// `group_id` alone.
pub(super) fn group_id(raw: i64) -> Result<GroupId, InvalidRequest> {
    Ok(GroupId::parse("group_id", raw)?)
}

/// `group_id` and `user_id`, both required.
pub(super) fn member_ref(group_raw: i64, user_raw: i64) -> Result<MemberRef, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", group_raw));
    let user = violations.check(UserId::parse("user_id", user_raw));
    violations.finish_with(|| Some(MemberRef { group_id: group?, user: user? }))
}

/// A page size and a token holding a cursor of `parts` keys.
fn page(
    size: i32,
    token: &str,
    parts: usize,
    violations: &mut Violations,
) -> (Option<PageSize>, Option<Option<Cursor>>) {
    let size = violations.check(PageSize::parse_default("page_size", size));
    let cursor = violations.check(Cursor::decode("page_token", token, parts));
    (size, cursor)
}

fn cursor_user(value: i64) -> Result<UserId, FieldViolation> {
    UserId::parse("page_token", value)
}

fn cursor_time(micros: i64) -> Result<DateTime<Utc>, FieldViolation> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| not_a_page_token("page_token"))
}

/// A paged listing keyed by user id (members, bans).
pub(super) fn user_keyed_page(group_raw: i64, size: i32, token: &str) -> Result<UserKeyedPage, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", group_raw));
    let (size, cursor) = page(size, token, 1, &mut violations);
    let after = match cursor.flatten() {
        Some(cursor) => violations.check(cursor_user(cursor.0[0])).map(Some),
        None => Some(None),
    };
    violations.finish_with(|| Some(UserKeyedPage { group_id: group?, size: size?, after: after? }))
}

/// ListMembers: the user-keyed page plus an optional role filter.
pub(super) fn list_members(request: &pb::ListMembersRequest) -> Result<ListMembers, InvalidRequest> {
    let role = if request.role == 0 { None } else { Some(Role::parse("role", request.role)?) };
    let page = user_keyed_page(request.group_id, request.page_size, &request.page_token)?;
    Ok(ListMembers { page, role })
}

/// ListUserGroups: keyed by (joined_at, group id), newest first.
pub(super) fn list_user_groups(request: &pb::ListUserGroupsRequest) -> Result<ListUserGroups, InvalidRequest> {
    let mut violations = Violations::new();
    let (size, cursor) = page(request.page_size, &request.page_token, 2, &mut violations);
    let before = match cursor.flatten() {
        Some(cursor) => {
            let time = violations.check(cursor_time(cursor.0[0]));
            let group = violations.check(GroupId::parse("page_token", cursor.0[1]));
            time.zip(group).map(Some)
        }
        None => Some(None),
    };
    violations.finish_with(|| Some(ListUserGroups { size: size?, before: before? }))
}

/// ListJoinRequests: keyed by (requested_at, user id), oldest first.
pub(super) fn list_join_requests(request: &pb::ListJoinRequestsRequest) -> Result<ListJoinRequests, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let (size, cursor) = page(request.page_size, &request.page_token, 2, &mut violations);
    let after = match cursor.flatten() {
        Some(cursor) => {
            let time = violations.check(cursor_time(cursor.0[0]));
            let user = violations.check(cursor_user(cursor.0[1]));
            time.zip(user).map(Some)
        }
        None => Some(None),
    };
    violations.finish_with(|| Some(ListJoinRequests { group_id: group?, size: size?, after: after? }))
}

/// A list of ids: 1 to `max` entries (counted before repeats are dropped), refused on its
/// length before any id is parsed; each positive; repeats are dropped, order kept.
fn id_batch<T: Copy + Eq + Hash>(
    field: &str,
    raw: &[i64],
    max: usize,
    parse: impl Fn(&str, i64) -> Result<T, FieldViolation>,
    violations: &mut Violations,
) -> Option<Vec<T>> {
    distinct_list(field, raw, (1, max), "ids", |name, value| parse(name, *value), violations)
}

/// BatchGetGroups.
pub(super) fn batch_get_groups(
    request: &pb::BatchGetGroupsRequest,
    max: usize,
) -> Result<Vec<GroupId>, InvalidRequest> {
    let mut violations = Violations::new();
    let ids = id_batch("group_ids", &request.group_ids, max, GroupId::parse, &mut violations);
    violations.finish_with(|| ids)
}

/// AddMembers.
pub(super) fn add_members(request: &pb::AddMembersRequest, max: usize) -> Result<AddMembers, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let users = id_batch("user_ids", &request.user_ids, max, UserId::parse, &mut violations);
    violations.finish_with(|| Some(AddMembers { group_id: group?, users: users? }))
}

fn parse_settings(settings: &pb::GroupSettings, violations: &mut Violations) -> Option<Settings> {
    let join_policy = violations.check(JoinPolicy::parse("settings.join_policy", settings.join_policy));
    let slow_mode = violations.check(parse_slow_mode("settings.slow_mode_seconds", settings.slow_mode_seconds));
    let post_policy = violations.check(PostPolicy::parse("settings.post_policy", settings.post_policy));
    let min_follow_age =
        violations.check(parse_min_follow_age("settings.min_follow_age_seconds", settings.min_follow_age_seconds));
    Some(Settings {
        join_policy: join_policy?,
        slow_mode_seconds: slow_mode?,
        history_visible_to_new_members: settings.history_visible_to_new_members,
        post_policy: post_policy?,
        min_follow_age_seconds: min_follow_age?,
    })
}

/// CreateGroup.
pub(super) fn create_group(request: &pb::CreateGroupRequest) -> Result<CreateGroup, InvalidRequest> {
    let mut violations = Violations::new();
    let kind = violations.check(GroupKind::parse("kind", request.kind));
    let title = violations.check(Title::parse_title("title", &request.title));
    let description = violations.check(Description::parse("description", &request.description));
    let avatar_ref = violations.check(AvatarRef::parse("avatar_ref", &request.avatar_ref));
    let settings = match &request.settings {
        Some(settings) => parse_settings(settings, &mut violations).map(Some),
        None => Some(None),
    };
    violations.finish_with(|| {
        Some(CreateGroup {
            kind: kind?,
            title: title?,
            description: description?,
            avatar_ref: avatar_ref?,
            settings: settings?,
        })
    })
}

/// UpdateGroupSettings: only the fields present are parsed and changed.
pub(super) fn update_settings(request: &pb::UpdateGroupSettingsRequest) -> Result<UpdateSettings, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let update = SettingsUpdate {
        title: request.title.as_deref().and_then(|title| violations.check(Title::parse_title("title", title))),
        description: request
            .description
            .as_deref()
            .and_then(|text| violations.check(Description::parse("description", text))),
        avatar_ref: request
            .avatar_ref
            .as_deref()
            .and_then(|text| violations.check(AvatarRef::parse("avatar_ref", text))),
        join_policy: request.join_policy.and_then(|raw| violations.check(JoinPolicy::parse("join_policy", raw))),
        slow_mode_seconds: request
            .slow_mode_seconds
            .and_then(|raw| violations.check(parse_slow_mode("slow_mode_seconds", raw))),
        history_visible_to_new_members: request.history_visible_to_new_members,
        post_policy: request.post_policy.and_then(|raw| violations.check(PostPolicy::parse("post_policy", raw))),
        min_follow_age_seconds: request
            .min_follow_age_seconds
            .and_then(|raw| violations.check(parse_min_follow_age("min_follow_age_seconds", raw))),
    };
    violations.finish_with(|| Some(UpdateSettings { group_id: group?, update }))
}

/// SetMemberRole.
pub(super) fn set_member_role(request: &pb::SetMemberRoleRequest) -> Result<SetMemberRole, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let user = violations.check(UserId::parse("user_id", request.user_id));
    let role = violations.check(Role::parse("role", request.role));
    violations.finish_with(|| Some(SetMemberRole { group_id: group?, user: user?, role: role? }))
}

/// BanMember.
pub(super) fn ban_member(request: &pb::BanMemberRequest, now: DateTime<Utc>) -> Result<BanMember, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let user = violations.check(UserId::parse("user_id", request.user_id));
    let reason = violations.check(BanReason::parse("reason", &request.reason));
    let until = match &request.until {
        Some(timestamp) => violations.check(parse_future("until", Some(timestamp), now)).map(Some),
        None => Some(None),
    };
    violations.finish_with(|| {
        Some(BanMember { group_id: group?, user: user?, terms: BanTerms { reason: reason?, until: until? } })
    })
}

/// MuteMember.
pub(super) fn mute_member(request: &pb::MuteMemberRequest, now: DateTime<Utc>) -> Result<MuteMember, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let user = violations.check(UserId::parse("user_id", request.user_id));
    let until = violations.check(parse_future("until", request.until.as_ref(), now));
    violations.finish_with(|| Some(MuteMember { group_id: group?, user: user?, until: until? }))
}

/// GetMembership: `user_id` 0 means the caller.
pub(super) fn get_membership(request: &pb::GetMembershipRequest) -> Result<GetMembership, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let user = if request.user_id == 0 {
        Some(None)
    } else {
        violations.check(UserId::parse("user_id", request.user_id)).map(Some)
    };
    violations.finish_with(|| Some(GetMembership { group_id: group?, user: user? }))
}

/// CreateInvite: ttl 0 means the default; max_uses 0 means unlimited.
pub(super) fn create_invite(request: &pb::CreateInviteRequest) -> Result<CreateInvite, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let ttl_seconds = match request.ttl_seconds {
        0 => Some(DEFAULT_INVITE_TTL_SECONDS),
        seconds if (MIN_INVITE_TTL_SECONDS..=MAX_INVITE_TTL_SECONDS).contains(&seconds) => Some(seconds),
        seconds => {
            violations.push(FieldViolation::new(
                "ttl_seconds",
                format!(
                    "must be between {MIN_INVITE_TTL_SECONDS} and {MAX_INVITE_TTL_SECONDS}, or 0 for {DEFAULT_INVITE_TTL_SECONDS} (got {seconds})"
                ),
            ));
            None
        }
    };
    let max_uses = match u32::try_from(request.max_uses) {
        Ok(uses) if request.max_uses <= MAX_INVITE_USES => Some(uses),
        _ => {
            violations.push(FieldViolation::new(
                "max_uses",
                format!("must be between 0 (unlimited) and {MAX_INVITE_USES} (got {})", request.max_uses),
            ));
            None
        }
    };
    violations.finish_with(|| {
        Some(CreateInvite { group_id: group?, ttl: chrono::Duration::seconds(ttl_seconds?), max_uses: max_uses? })
    })
}

/// An invite code.
pub(super) fn invite_code(raw: &str) -> Result<InviteCode, InvalidRequest> {
    Ok(InviteCode::parse("code", raw)?)
}

/// TransferOwnership.
pub(super) fn transfer_ownership(request: &pb::TransferOwnershipRequest) -> Result<TransferOwnership, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let new_owner = violations.check(UserId::parse("new_owner_user_id", request.new_owner_user_id));
    violations.finish_with(|| Some(TransferOwnership { group_id: group?, new_owner: new_owner? }))
}
