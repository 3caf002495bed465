//! Who may do what, and which settings fit which kind of group. Pure functions: the
//! service asks them before it asks the store to change anything.

use chrono::{DateTime, Duration, DurationRound, Utc};

use super::{GroupKind, JoinPolicy, PostPolicy, Role, Settings};

/// The settings a new group of `kind` gets when the request leaves them unset.
pub fn default_settings(kind: GroupKind) -> Settings {
    match kind {
        GroupKind::Chat => Settings {
            join_policy: JoinPolicy::InviteOnly,
            slow_mode_seconds: 0,
            history_visible_to_new_members: true,
            post_policy: PostPolicy::AllMembers,
            min_follow_age_seconds: 0,
        },
        GroupKind::Community => Settings {
            join_policy: JoinPolicy::Open,
            slow_mode_seconds: 0,
            history_visible_to_new_members: true,
            post_policy: PostPolicy::AllMembers,
            min_follow_age_seconds: 0,
        },
        GroupKind::Broadcast => Settings {
            join_policy: JoinPolicy::Open,
            slow_mode_seconds: 0,
            history_visible_to_new_members: true,
            post_policy: PostPolicy::AdminsOnly,
            min_follow_age_seconds: 0,
        },
    }
}

/// The join policies a kind supports: friends' chats grow only by adding and invites;
/// approval queues exist for communities, where moderators are at hand.
pub fn allowed_join_policies(kind: GroupKind) -> &'static [JoinPolicy] {
    match kind {
        GroupKind::Chat => &[JoinPolicy::InviteOnly],
        GroupKind::Community => {
            &[JoinPolicy::Open, JoinPolicy::FollowersOnly, JoinPolicy::InviteOnly, JoinPolicy::Approval]
        }
        GroupKind::Broadcast => &[JoinPolicy::Open, JoinPolicy::FollowersOnly, JoinPolicy::InviteOnly],
    }
}

/// Why settings do not fit a kind: (field, description).
pub fn check_settings(kind: GroupKind, settings: &Settings) -> Result<(), (&'static str, String)> {
    let allowed = allowed_join_policies(kind);
    if !allowed.contains(&settings.join_policy) {
        let names: Vec<&str> = allowed.iter().map(|policy| policy.to_proto().as_str_name()).collect();
        return Err((
            "join_policy",
            format!("{} groups support only {}", kind.to_proto().as_str_name(), names.join(", ")),
        ));
    }
    if kind == GroupKind::Broadcast && settings.post_policy != PostPolicy::AdminsOnly {
        return Err(("post_policy", "GROUP_KIND_BROADCAST groups are always POST_POLICY_ADMINS_ONLY".to_owned()));
    }
    // Refused rather than ignored: a caller who sets a minimum follow age on a group that
    // does not check follows has most likely forgotten to set the policy.
    if settings.min_follow_age_seconds > 0 && settings.join_policy != JoinPolicy::FollowersOnly {
        return Err((
            "min_follow_age_seconds",
            format!(
                "must be 0 unless join_policy is JOIN_POLICY_FOLLOWERS_ONLY (got {} with {})",
                settings.min_follow_age_seconds,
                settings.join_policy.to_proto().as_str_name()
            ),
        ));
    }
    Ok(())
}

/// Whether a follow since `followed_at` is old enough at `now` for a FOLLOWERS_ONLY group
/// whose minimum follow age is `min_follow_age_seconds`: `followed_at + min_follow_age <=
/// now`, exactly (docs/groups.md).
pub fn follow_old_enough(followed_at: DateTime<Utc>, min_follow_age_seconds: u32, now: DateTime<Utc>) -> bool {
    followed_at + Duration::seconds(i64::from(min_follow_age_seconds)) <= now
}

/// When a user who has followed the owner since `followed_at` may join a FOLLOWERS_ONLY
/// group whose minimum follow age is `min_follow_age_seconds`, as the refusal states it:
/// rounded up to the whole second, so that a caller told "from 12:00:01" is not refused at
/// 12:00:01 (the rule itself, [`follow_old_enough`], is exact).
pub fn joinable_from(followed_at: DateTime<Utc>, min_follow_age_seconds: u32) -> DateTime<Utc> {
    let earliest = followed_at + Duration::seconds(i64::from(min_follow_age_seconds));
    if min_follow_age_seconds == 0 {
        return earliest;
    }
    let second = Duration::seconds(1);
    match earliest.duration_trunc(second) {
        Ok(truncated) if truncated < earliest => truncated + second,
        Ok(truncated) => truncated,
        // Only for times near the ends of chrono's range; the exact time is as good.
        Err(_) => earliest,
    }
}

/// Whether a role moderates: owners and admins.
pub fn is_moderator(role: Role) -> bool {
    fanfare_proto::visibility::moderates(role.to_proto())
}

/// Whether `actor` outranks `target`, as acting on another member requires
/// (an admin cannot remove, ban or mute another admin or the owner).
pub fn outranks(actor: Role, target: Role) -> bool {
    rank(actor) > rank(target)
}

fn rank(role: Role) -> u8 {
    match role {
        Role::Owner => 3,
        Role::Admin => 2,
        Role::Member => 1,
    }
}

/// Whether a member with `role` may add others or create invites: anyone in a friends'
/// chat, moderators elsewhere.
pub fn may_invite(kind: GroupKind, role: Role) -> bool {
    kind == GroupKind::Chat || is_moderator(role)
}

/// The member limit of a kind under the configured limits; `None` is unlimited.
pub fn member_limit(kind: GroupKind, chat: u64, community: u64, broadcast: u64) -> Option<u64> {
    let configured = match kind {
        GroupKind::Chat => chat,
        GroupKind::Community => community,
        GroupKind::Broadcast => broadcast,
    };
    (configured > 0).then_some(configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_their_kind() {
        for kind in [GroupKind::Chat, GroupKind::Community, GroupKind::Broadcast] {
            assert!(check_settings(kind, &default_settings(kind)).is_ok(), "{kind:?}");
        }
    }

    #[test]
    fn broadcast_is_admins_only_and_has_no_approval_queue() {
        let mut settings = default_settings(GroupKind::Broadcast);
        settings.post_policy = PostPolicy::AllMembers;
        assert_eq!(check_settings(GroupKind::Broadcast, &settings).unwrap_err().0, "post_policy");
        let mut approval = default_settings(GroupKind::Broadcast);
        approval.join_policy = JoinPolicy::Approval;
        assert_eq!(check_settings(GroupKind::Broadcast, &approval).unwrap_err().0, "join_policy");
    }

    #[test]
    fn a_min_follow_age_needs_the_followers_only_policy() {
        let mut settings = default_settings(GroupKind::Community);
        settings.min_follow_age_seconds = 60;
        assert_eq!(check_settings(GroupKind::Community, &settings).unwrap_err().0, "min_follow_age_seconds");
        settings.join_policy = JoinPolicy::FollowersOnly;
        assert!(check_settings(GroupKind::Community, &settings).is_ok());
    }

    #[test]
    fn a_follow_is_old_enough_exactly_at_its_minimum_age() {
        let followed_at = DateTime::from_timestamp(1_700_000_000, 250_000_000).unwrap();
        let exactly = followed_at + Duration::seconds(60);
        assert!(follow_old_enough(followed_at, 60, exactly), "at followed_at + 60 s, not at the next whole second");
        assert!(!follow_old_enough(followed_at, 60, exactly - Duration::microseconds(1)));
        assert!(follow_old_enough(followed_at, 0, followed_at));
    }

    #[test]
    fn joinable_from_adds_the_min_age_and_rounds_up_to_the_second() {
        let followed_at = DateTime::from_timestamp_micros(1_700_000_000_250_000).unwrap();
        assert_eq!(joinable_from(followed_at, 0), followed_at, "no minimum: at once");
        let joinable = joinable_from(followed_at, 60);
        assert_eq!(joinable, DateTime::from_timestamp(1_700_000_061, 0).unwrap());
        let whole = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(joinable_from(whole, 60), DateTime::from_timestamp(1_700_000_060, 0).unwrap());
    }

    #[test]
    fn ranks_order_owner_admin_member() {
        assert!(outranks(Role::Owner, Role::Admin));
        assert!(outranks(Role::Admin, Role::Member));
        assert!(!outranks(Role::Admin, Role::Admin));
        assert!(!outranks(Role::Member, Role::Owner));
    }

    #[test]
    fn chat_members_may_invite_but_community_members_may_not() {
        assert!(may_invite(GroupKind::Chat, Role::Member));
        assert!(!may_invite(GroupKind::Community, Role::Member));
        assert!(may_invite(GroupKind::Broadcast, Role::Admin));
    }

    #[test]
    fn zero_configured_limit_means_unlimited() {
        assert_eq!(member_limit(GroupKind::Chat, 32, 1_000, 0), Some(32));
        assert_eq!(member_limit(GroupKind::Broadcast, 32, 1_000, 0), None);
    }
}
