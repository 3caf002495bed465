//! Domain records to their wire messages.

use fanfare_core::time::{to_optional_timestamp, to_timestamp};
use fanfare_proto::groups::v1 as pb;

use crate::domain::{Ban, Group, Invite, JoinRequest, Membership, Settings};

/// The wire form of a group; `member_limit` is 0 when unlimited.
pub(super) fn group(group: &Group, member_limit: Option<u64>) -> pb::Group {
    pb::Group {
        group_id: group.id.get(),
        kind: group.kind.to_proto() as i32,
        title: group.title.as_str().to_owned(),
        description: group.description.as_str().to_owned(),
        avatar_ref: group.avatar_ref.as_str().to_owned(),
        owner_user_id: group.owner.get(),
        settings: Some(settings(&group.settings)),
        member_count: fanfare_core::wire::int64(group.member_count),
        member_limit: member_limit.map_or(0, fanfare_core::wire::int64),
        created_at: Some(to_timestamp(group.created_at)),
        archived_at: to_optional_timestamp(group.archived_at),
    }
}

/// The wire form of settings.
pub(super) fn settings(settings: &Settings) -> pb::GroupSettings {
    pb::GroupSettings {
        join_policy: settings.join_policy.to_proto() as i32,
        slow_mode_seconds: i32::try_from(settings.slow_mode_seconds).unwrap_or(i32::MAX),
        history_visible_to_new_members: settings.history_visible_to_new_members,
        post_policy: settings.post_policy.to_proto() as i32,
        min_follow_age_seconds: i32::try_from(settings.min_follow_age_seconds).unwrap_or(i32::MAX),
    }
}

/// The wire form of a membership; a mute that has ended is not shown.
pub(super) fn membership(membership: &Membership, now: chrono::DateTime<chrono::Utc>) -> pb::Membership {
    pb::Membership {
        group_id: membership.group_id.get(),
        user_id: membership.user_id.get(),
        role: membership.role.to_proto() as i32,
        joined_at: Some(to_timestamp(membership.joined_at)),
        muted_until: to_optional_timestamp(membership.active_mute(now)),
    }
}

/// The wire form of a ban.
pub(super) fn ban(ban: &Ban) -> pb::Ban {
    pb::Ban {
        group_id: ban.group_id.get(),
        user_id: ban.user_id.get(),
        banned_by_user_id: ban.banned_by.get(),
        reason: ban.reason.as_str().to_owned(),
        banned_at: Some(to_timestamp(ban.banned_at)),
        until: to_optional_timestamp(ban.until),
    }
}

/// The wire form of a join request.
pub(super) fn join_request(request: &JoinRequest) -> pb::JoinRequest {
    pb::JoinRequest {
        group_id: request.group_id.get(),
        user_id: request.user_id.get(),
        requested_at: Some(to_timestamp(request.requested_at)),
    }
}

/// The wire form of an invite.
pub(super) fn invite(invite: &Invite) -> pb::Invite {
    pb::Invite {
        code: invite.code.as_str().to_owned(),
        group_id: invite.group_id.get(),
        created_by_user_id: invite.created_by.get(),
        expires_at: Some(to_timestamp(invite.expires_at)),
        max_uses: i32::try_from(invite.max_uses).unwrap_or(i32::MAX),
        use_count: i32::try_from(invite.use_count).unwrap_or(i32::MAX),
        created_at: Some(to_timestamp(invite.created_at)),
    }
}
