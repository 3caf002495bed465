//! Property tests of the request parsers ([`super::parse`]): any request message, however
//! hostile (extreme ids, unknown enum numbers, strings of any characters and of up to
//! 4 MiB, lists of up to ten times their limit), is either parsed into values within the
//! documented bounds or refused with a bounded error; never a panic.

use chrono::Utc;
use fanfare_core::arbitrary::{assert_parsed, config, ids, int32, int64, page_token, text};
use fanfare_core::paging::MAX_PAGE_SIZE;
use fanfare_proto::groups::v1 as pb;
use fanfare_proto::prost_types::Timestamp;
use proptest::prelude::*;

use super::parse;
use crate::config::{DEFAULT_MAX_BATCH_SIZE, MAX_INVITE_TTL_SECONDS, MAX_INVITE_USES, MIN_INVITE_TTL_SECONDS};
use crate::domain::values::{MAX_AVATAR_REF_CHARS, MAX_BAN_REASON_CHARS, MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS};

fn settings() -> impl Strategy<Value = pb::GroupSettings> {
    (int32(), int32(), any::<bool>(), int32(), int32()).prop_map(
        |(join_policy, slow_mode_seconds, history_visible_to_new_members, post_policy, min_follow_age_seconds)| {
            pb::GroupSettings {
                join_policy,
                slow_mode_seconds,
                history_visible_to_new_members,
                post_policy,
                min_follow_age_seconds,
            }
        },
    )
}

fn timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    proptest::option::of((int64(), int32()).prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }))
}

fn chars_within(text: &str, max: usize) -> bool {
    text.chars().count() <= max
}

fn page_within(size: u32) -> bool {
    (1..=MAX_PAGE_SIZE).contains(&size)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn create_group(
        kind in int32(), title in text(), description in text(), avatar_ref in text(),
        settings in proptest::option::of(settings()),
    ) {
        let request = pb::CreateGroupRequest { kind, title, description, avatar_ref, settings };
        assert_parsed(&parse::create_group(&request), |create| {
            assert!(!create.title.as_str().is_empty() && chars_within(create.title.as_str(), MAX_TITLE_CHARS));
            assert!(chars_within(create.description.as_str(), MAX_DESCRIPTION_CHARS));
            assert!(chars_within(create.avatar_ref.as_str(), MAX_AVATAR_REF_CHARS));
        });
    }

    #[test]
    fn update_settings(
        group_id in int64(), title in proptest::option::of(text()), description in proptest::option::of(text()),
        join_policy in proptest::option::of(int32()), slow_mode in proptest::option::of(int32()),
        post_policy in proptest::option::of(int32()), min_follow_age in proptest::option::of(int32()),
    ) {
        let request = pb::UpdateGroupSettingsRequest {
            group_id,
            title,
            description,
            avatar_ref: None,
            join_policy,
            slow_mode_seconds: slow_mode,
            history_visible_to_new_members: None,
            post_policy,
            min_follow_age_seconds: min_follow_age,
        };
        assert_parsed(&parse::update_settings(&request), |parse::UpdateSettings { group_id: group, update }| {
            assert!(group.get() > 0);
            assert!(update.title.as_ref().is_none_or(|title| chars_within(title.as_str(), MAX_TITLE_CHARS)));
        });
    }

    #[test]
    fn id_batches(group_id in int64(), user_ids in ids(DEFAULT_MAX_BATCH_SIZE)) {
        let max = DEFAULT_MAX_BATCH_SIZE;
        let batch = pb::BatchGetGroupsRequest { group_ids: user_ids.clone() };
        assert_parsed(&parse::batch_get_groups(&batch, max), |groups| {
            assert!(!groups.is_empty() && groups.len() <= max && groups.iter().all(|group| group.get() > 0));
        });
        let add = pb::AddMembersRequest { group_id, user_ids };
        assert_parsed(&parse::add_members(&add, max), |parse::AddMembers { group_id: group, users }| {
            assert!(group.get() > 0 && !users.is_empty() && users.len() <= max);
            assert!(users.iter().all(|user| user.get() > 0));
        });
    }

    #[test]
    fn listings(group_id in int64(), page_size in int32(), page_token in page_token(), role in int32()) {
        let members = pb::ListMembersRequest { group_id, page_size, page_token: page_token.clone(), role };
        assert_parsed(&parse::list_members(&members), |listing| {
            assert!(listing.page.group_id.get() > 0 && page_within(listing.page.size.get()));
            assert!(listing.page.after.is_none_or(|user| user.get() > 0));
        });
        let groups = pb::ListUserGroupsRequest { page_size, page_token: page_token.clone() };
        assert_parsed(&parse::list_user_groups(&groups), |listing| assert!(page_within(listing.size.get())));
        let requests = pb::ListJoinRequestsRequest { group_id, page_size, page_token };
        assert_parsed(&parse::list_join_requests(&requests), |listing| {
            assert!(listing.group_id.get() > 0 && page_within(listing.size.get()));
        });
    }

    #[test]
    fn member_actions(group_id in int64(), user_id in int64(), role in int32(), reason in text(), until in timestamp()) {
        let now = Utc::now();
        assert_parsed(&parse::member_ref(group_id, user_id), |member| {
            assert!(member.group_id.get() > 0 && member.user.get() > 0);
        });
        let set_role = pb::SetMemberRoleRequest { group_id, user_id, role };
        assert_parsed(&parse::set_member_role(&set_role), |change| {
            assert!(change.group_id.get() > 0 && change.user.get() > 0);
        });
        let ban = pb::BanMemberRequest { group_id, user_id, reason, until };
        assert_parsed(&parse::ban_member(&ban, now), |ban| {
            assert!(chars_within(ban.terms.reason.as_str(), MAX_BAN_REASON_CHARS));
            assert!(ban.terms.until.is_none_or(|until| until > now));
        });
        let mute = pb::MuteMemberRequest { group_id, user_id, until };
        assert_parsed(&parse::mute_member(&mute, now), |mute| assert!(mute.until > now));
        let membership = pb::GetMembershipRequest { group_id, user_id };
        assert_parsed(&parse::get_membership(&membership), |parse::GetMembership { group_id: group, user }| {
            assert!(group.get() > 0 && user.is_none_or(|user| user.get() > 0));
        });
        let transfer = pb::TransferOwnershipRequest { group_id, new_owner_user_id: user_id };
        assert_parsed(&parse::transfer_ownership(&transfer), |transfer| assert!(transfer.new_owner.get() > 0));
    }

    #[test]
    fn invites(group_id in int64(), ttl_seconds in int64(), max_uses in int32(), code in text()) {
        let create = pb::CreateInviteRequest { group_id, ttl_seconds, max_uses };
        assert_parsed(&parse::create_invite(&create), |invite| {
            assert!((MIN_INVITE_TTL_SECONDS..=MAX_INVITE_TTL_SECONDS).contains(&invite.ttl.num_seconds()));
            assert!(i64::from(invite.max_uses) <= i64::from(MAX_INVITE_USES));
        });
        assert_parsed(&parse::invite_code(&code), |parsed| assert!(parsed.as_str().len() <= 64));
        assert_parsed(&parse::group_id(group_id), |group| assert!(group.get() > 0));
    }
}
