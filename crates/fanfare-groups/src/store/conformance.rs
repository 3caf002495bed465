//! The conformance suite: what every [`GroupStore`] must do, written once as async test
//! bodies and stamped out per implementation with [`conformance_tests!`].
//!
//! This is test support compiled into the library (so integration tests and the testkit
//! can use it without feature flags): its functions panic through `assert!` when a store
//! misbehaves, and must never be called outside tests. Each test expects an empty store.
//! Times are fixed (see [`at`]), never read from the clock, so expiry is deterministic.
//!
//! [`conformance_tests!`]: crate::conformance_tests

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::PageSize;
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::group_event::Change;
use futures::future::join_all;
use prost::Message as _;

use super::{
    AddedMembers, Departure, GroupStore, JoinContext, MemoryGroupStore, PostgresGroupStore, Redemption, StoreError,
};
use crate::domain::rules::default_settings;
use crate::domain::{
    AvatarRef, BanReason, Description, Group, GroupKind, Invite, InviteCode, JoinMethod, JoinPolicy, MembershipLimits,
    NewGroup, OutboxEntry, Role, SettingsUpdate, Title,
};

/// The member limit of CHAT groups in these tests (the configured default).
pub const CHAT_MEMBER_LIMIT: u64 = 32;
/// The member limit of COMMUNITY groups in these tests.
pub const COMMUNITY_MEMBER_LIMIT: u64 = 1_000;
/// The per-user group limit in these tests.
pub const USER_GROUP_LIMIT: u64 = 5_000;

/// Something that holds a store under test (and whatever must live as long as it, such
/// as a throwaway database).
pub trait StoreFixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> &dyn GroupStore;
}

impl StoreFixture for MemoryGroupStore {
    fn store(&self) -> &dyn GroupStore {
        self
    }
}

impl StoreFixture for PostgresGroupStore {
    fn store(&self) -> &dyn GroupStore {
        self
    }
}

/// Stamps out one `#[tokio::test]` per conformance test. The argument is an expression
/// evaluated afresh for each test, yielding a future of a [`StoreFixture`] over an empty
/// store, e.g. `async { MemoryGroupStore::new() }`.
///
/// [`StoreFixture`]: crate::store::conformance::StoreFixture
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@each $factory;
            create_group_makes_the_owner_a_member,
            create_group_counts_toward_the_owner_group_limit,
            get_groups_keeps_the_requested_order_and_skips_unknown_ids,
            update_settings_changes_only_the_given_fields,
            min_follow_age_is_stored_and_reset_by_leaving_followers_only,
            archived_groups_refuse_every_change,
            join_context_reads_the_group_membership_and_ban_together,
            add_members_reports_existing_members_and_writes_one_join_each,
            add_members_is_all_or_nothing,
            add_members_fills_a_group_exactly_then_reports_full,
            member_counts_follow_joins_and_leaves,
            a_broadcast_group_with_a_configured_limit_fills_exactly,
            remove_member_writes_left_or_removed,
            set_role_changes_roles_but_never_the_owner,
            transfer_ownership_swaps_roles,
            ban_removes_membership_and_pending_request,
            bans_expire_and_are_replaced,
            unban_lifts_the_ban,
            list_bans_pages_by_user_id,
            set_mute_mutes_and_unmutes,
            join_requests_are_idempotent_and_approved,
            rejected_and_failed_approvals,
            list_join_requests_pages_in_request_order,
            invites_are_stored_revoked_and_read,
            redeeming_an_invite_joins_and_counts_uses,
            list_members_pages_in_user_id_order,
            list_user_groups_pages_newest_first,
            outbox_is_read_in_id_order,
            claims_take_the_oldest_rows_first,
            concurrent_claims_never_share_a_row,
            an_expired_claim_is_claimed_again,
            published_rows_are_never_claimed_again,
            a_group_waits_behind_its_claimed_rows,
            claims_look_a_bounded_way_ahead,
            concurrent_adds_never_exceed_the_member_limit,
            concurrent_joins_of_one_user_make_one_membership,
            concurrent_joins_never_exceed_the_user_group_limit,
            concurrent_redemptions_respect_max_uses,
            ping_succeeds,
        );
    };
    (@each $factory:expr; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let fixture = $factory.await;
                $crate::store::conformance::$test(
                    $crate::store::conformance::StoreFixture::store(&fixture),
                )
                .await;
            }
        )+
    };
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A fixed point in time plus `seconds`; tests never read the clock.
pub fn at(seconds: i64) -> DateTime<Utc> {
    // 2030-01-01T00:00:00Z
    let epoch = DateTime::from_timestamp(1_893_456_000, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    epoch + chrono::Duration::seconds(seconds)
}

/// A user id.
pub fn user(id: i64) -> UserId {
    UserId::from_trusted(id)
}

/// The test limits of a kind: CHAT 32, COMMUNITY 1,000, BROADCAST unlimited.
pub fn limits(kind: GroupKind) -> MembershipLimits {
    let group_member_limit = match kind {
        GroupKind::Chat => Some(CHAT_MEMBER_LIMIT),
        GroupKind::Community => Some(COMMUNITY_MEMBER_LIMIT),
        GroupKind::Broadcast => None,
    };
    MembershipLimits { group_member_limit, user_group_limit: USER_GROUP_LIMIT }
}

/// What a new group of `kind` owned by `owner` is made of.
pub fn new_group(kind: GroupKind, owner: UserId) -> NewGroup {
    NewGroup {
        kind,
        title: Title::from_trusted(format!("{kind:?} of {owner}")),
        description: Description::from_trusted(String::new()),
        avatar_ref: AvatarRef::from_trusted(String::new()),
        owner,
        settings: default_settings(kind),
    }
}

async fn create(store: &dyn GroupStore, kind: GroupKind, owner: UserId) -> Group {
    store.create_group(new_group(kind, owner), USER_GROUP_LIMIT, at(0)).await.expect("create a group")
}

async fn add(store: &dyn GroupStore, group: &Group, users: &[i64], now: DateTime<Utc>) -> AddedMembers {
    let users: Vec<UserId> = users.iter().copied().map(user).collect();
    store
        .add_members(group.id, &users, JoinMethod::Added, limits(group.kind), group.owner, now)
        .await
        .expect("add members")
}

async fn member_count(store: &dyn GroupStore, group: GroupId) -> u64 {
    store.get_group(group).await.expect("read the group").expect("the group exists").member_count
}

fn user_ids<'a>(memberships: impl IntoIterator<Item = &'a crate::domain::Membership>) -> Vec<i64> {
    memberships.into_iter().map(|membership| membership.user_id.get()).collect()
}

/// Every outbox event, decoded, in outbox order.
async fn all_events(store: &dyn GroupStore) -> Vec<common::GroupEvent> {
    let mut events = Vec::new();
    let mut after_id = 0;
    loop {
        let page = store.read_outbox(after_id, 7).await.expect("read the outbox");
        let Some(last) = page.last() else {
            return events;
        };
        after_id = last.id;
        for entry in &page {
            let event = common::GroupEvent::decode(entry.payload.as_slice()).expect("decode an outbox payload");
            assert_eq!(event.group_id, entry.group_id.get(), "payload and row name the same group");
            events.push(event);
        }
    }
}

/// The changes of one group, in outbox order.
async fn changes(store: &dyn GroupStore, group: GroupId) -> Vec<Change> {
    all_events(store)
        .await
        .into_iter()
        .filter(|event| event.group_id == group.get())
        .map(|event| event.change.expect("every event carries a change"))
        .collect()
}

/// Short names of changes, for readable assertions.
fn names(changes: &[Change]) -> Vec<&'static str> {
    changes
        .iter()
        .map(|change| match change {
            Change::GroupCreated(_) => "created",
            Change::MemberJoined(_) => "joined",
            Change::MemberLeft(_) => "left",
            Change::MemberRemoved(_) => "removed",
            Change::MemberBanned(_) => "banned",
            Change::MemberUnbanned(_) => "unbanned",
            Change::MemberMuted(_) => "muted",
            Change::MemberUnmuted(_) => "unmuted",
            Change::MemberRoleChanged(_) => "role_changed",
            Change::OwnershipTransferred(_) => "ownership_transferred",
            Change::GroupSettingsChanged(_) => "settings_changed",
            Change::GroupArchived(_) => "archived",
        })
        .collect()
}

/// The (user, method) of every join among `changes`.
fn joins(changes: &[Change]) -> Vec<(i64, common::JoinMethod)> {
    changes
        .iter()
        .filter_map(|change| match change {
            Change::MemberJoined(joined) => Some((joined.user_id, joined.method())),
            _ => None,
        })
        .collect()
}

fn invite(group: &Group, max_uses: u32, expires_at: DateTime<Utc>) -> Invite {
    Invite {
        code: InviteCode::generate(),
        group_id: group.id,
        created_by: group.owner,
        created_at: at(0),
        expires_at,
        max_uses,
        use_count: 0,
        revoked_at: None,
    }
}

// ---------------------------------------------------------------------------------------
// Groups

/// A new group has its owner as its only member, and `Created` then `Joined` in the outbox.
pub async fn create_group_makes_the_owner_a_member(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Chat, owner).await;
    assert_eq!(group.owner, owner);
    assert_eq!(group.kind, GroupKind::Chat);
    assert_eq!(group.member_count, 1);
    assert_eq!(group.created_at, at(0));
    assert_eq!(group.settings, default_settings(GroupKind::Chat));
    assert!(!group.is_archived());
    assert_eq!(store.get_group(group.id).await.unwrap(), Some(group.clone()));

    let membership = store.get_membership(group.id, owner).await.unwrap().expect("the owner is a member");
    assert_eq!(membership.role, Role::Owner);
    assert_eq!(membership.joined_at, at(0));
    assert_eq!(membership.muted_until, None);
    assert_eq!(store.get_membership(group.id, user(2)).await.unwrap(), None);

    let events: Vec<_> = all_events(store).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|event| event.actor_user_id == owner.get()));
    let group_changes = changes(store, group.id).await;
    assert_eq!(names(&group_changes), ["created", "joined"]);
    let Change::MemberJoined(joined) = &group_changes[1] else { unreachable!("checked above") };
    assert_eq!((joined.user_id, joined.method(), joined.role()), (1, common::JoinMethod::Creator, common::Role::Owner));

    let second = create(store, GroupKind::Broadcast, owner).await;
    assert_ne!(second.id, group.id);
    assert_eq!(store.get_group(GroupId::from_trusted(i64::MAX)).await.unwrap(), None);
}

/// Owning a group counts toward the owner's group limit, like any membership.
pub async fn create_group_counts_toward_the_owner_group_limit(store: &dyn GroupStore) {
    let other_group = create(store, GroupKind::Community, user(1)).await;
    let joiner = user(2);
    let limit = 2;
    let tight = MembershipLimits { group_member_limit: None, user_group_limit: limit };
    store.add_members(other_group.id, &[joiner], JoinMethod::Direct, tight, joiner, at(1)).await.unwrap();
    store.create_group(new_group(GroupKind::Chat, joiner), limit, at(2)).await.unwrap();

    let refused = store.create_group(new_group(GroupKind::Chat, joiner), limit, at(3)).await;
    assert!(matches!(refused, Err(StoreError::UserGroupLimit { user: who, limit: 2 }) if who == joiner), "{refused:?}");

    store.remove_member(other_group.id, joiner, Departure::Left, joiner, at(4)).await.unwrap();
    store.create_group(new_group(GroupKind::Chat, joiner), limit, at(5)).await.expect("a slot was freed");
    let none_allowed = store.create_group(new_group(GroupKind::Chat, user(3)), 0, at(6)).await;
    assert!(matches!(none_allowed, Err(StoreError::UserGroupLimit { limit: 0, .. })), "{none_allowed:?}");
}

/// `get_groups` follows the order asked for and leaves unknown ids out.
pub async fn get_groups_keeps_the_requested_order_and_skips_unknown_ids(store: &dyn GroupStore) {
    let first = create(store, GroupKind::Chat, user(1)).await;
    let second = create(store, GroupKind::Community, user(2)).await;
    let unknown = GroupId::from_trusted(i64::MAX);
    let found = store.get_groups(&[second.id, unknown, first.id]).await.unwrap();
    assert_eq!(found, vec![second, first]);
    assert_eq!(store.get_groups(&[]).await.unwrap(), vec![]);
}

/// A settings update changes the given fields, keeps the rest, and is published whole.
pub async fn update_settings_changes_only_the_given_fields(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Community, user(1)).await;
    let update = SettingsUpdate {
        title: Some(Title::from_trusted("Renamed".to_owned())),
        slow_mode_seconds: Some(30),
        join_policy: Some(JoinPolicy::Approval),
        ..SettingsUpdate::default()
    };
    let updated = store.update_settings(group.id, &update, user(1), at(5)).await.unwrap();
    assert_eq!(updated.title.as_str(), "Renamed");
    assert_eq!(updated.description, group.description);
    assert_eq!(updated.settings, update.apply_to(group.settings));
    assert_eq!(updated.member_count, 1);
    assert_eq!(store.get_group(group.id).await.unwrap(), Some(updated));

    let group_changes = changes(store, group.id).await;
    assert_eq!(names(&group_changes), ["created", "joined", "settings_changed"]);
    let Change::GroupSettingsChanged(settings) = &group_changes[2] else { unreachable!("checked above") };
    assert_eq!(settings.title, "Renamed");
    assert_eq!(settings.slow_mode_seconds, 30);
    assert_eq!(settings.join_policy(), common::JoinPolicy::Approval);

    let unknown = store.update_settings(GroupId::from_trusted(i64::MAX), &update, user(1), at(6)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// A FOLLOWERS_ONLY group keeps its minimum follow age from creation and through updates
/// that do not touch it; a policy other than FOLLOWERS_ONLY resets it to 0, as
/// [`SettingsUpdate::apply_to`] says. Each change is published whole.
pub async fn min_follow_age_is_stored_and_reset_by_leaving_followers_only(store: &dyn GroupStore) {
    let mut new = new_group(GroupKind::Broadcast, user(1));
    new.settings.join_policy = JoinPolicy::FollowersOnly;
    new.settings.min_follow_age_seconds = 86_400;
    let group = store.create_group(new, USER_GROUP_LIMIT, at(0)).await.expect("create a group");
    assert_eq!(group.settings.min_follow_age_seconds, 86_400);
    assert_eq!(store.get_group(group.id).await.unwrap(), Some(group.clone()));
    let context = store.join_context(group.id, user(2), at(1)).await.unwrap();
    assert_eq!(context.group.map(|read| read.settings.min_follow_age_seconds), Some(86_400));

    let retitle =
        SettingsUpdate { title: Some(Title::from_trusted("Renamed".to_owned())), ..SettingsUpdate::default() };
    let kept = store.update_settings(group.id, &retitle, user(1), at(2)).await.unwrap();
    assert_eq!(kept.settings.min_follow_age_seconds, 86_400, "an update that does not touch it keeps it");

    let shorter = SettingsUpdate { min_follow_age_seconds: Some(3_600), ..SettingsUpdate::default() };
    let changed = store.update_settings(group.id, &shorter, user(1), at(3)).await.unwrap();
    assert_eq!(changed.settings.min_follow_age_seconds, 3_600);
    assert_eq!(changed.settings, shorter.apply_to(kept.settings));

    let open = SettingsUpdate { join_policy: Some(JoinPolicy::Open), ..SettingsUpdate::default() };
    let opened = store.update_settings(group.id, &open, user(1), at(4)).await.unwrap();
    assert_eq!((opened.settings.join_policy, opened.settings.min_follow_age_seconds), (JoinPolicy::Open, 0));
    assert_eq!(opened.settings, open.apply_to(changed.settings));
    assert_eq!(store.get_group(group.id).await.unwrap(), Some(opened.clone()));

    let back = SettingsUpdate { join_policy: Some(JoinPolicy::FollowersOnly), ..SettingsUpdate::default() };
    let followers_again = store.update_settings(group.id, &back, user(1), at(5)).await.unwrap();
    assert_eq!(followers_again.settings.min_follow_age_seconds, 0, "a reset value does not come back");

    let published: Vec<i32> = changes(store, group.id)
        .await
        .into_iter()
        .filter_map(|change| match change {
            Change::GroupSettingsChanged(settings) => Some(settings.min_follow_age_seconds),
            _ => None,
        })
        .collect();
    assert_eq!(published, [86_400, 3_600, 0, 0]);
}

/// An archived group can still be read, but every change is refused with `Archived`.
pub async fn archived_groups_refuse_every_change(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    add(store, &group, &[2, 3], at(1)).await;
    store.ban(group.id, user(5), BanReason::from_trusted(String::new()), None, owner, at(1)).await.unwrap();
    store.create_join_request(group.id, user(4), at(1)).await.unwrap();
    let code = store.create_invite(invite(&group, 0, at(1_000))).await.unwrap().code;

    let archived = store.archive_group(group.id, owner, at(2)).await.unwrap();
    assert_eq!(archived.archived_at, Some(at(2)));
    assert_eq!(store.get_group(group.id).await.unwrap(), Some(archived));
    assert_eq!(names(&changes(store, group.id).await).last(), Some(&"archived"));
    let events_before = all_events(store).await.len();

    let is_archived =
        |result: Result<(), StoreError>| matches!(result, Err(StoreError::Archived(id)) if id == group.id);
    let (id, now, reason) = (group.id, at(3), BanReason::from_trusted(String::new()));
    let update = SettingsUpdate { slow_mode_seconds: Some(5), ..SettingsUpdate::default() };
    let outcomes = [
        store.update_settings(id, &update, owner, now).await.map(drop),
        store.archive_group(id, owner, now).await.map(drop),
        store.add_members(id, &[user(6)], JoinMethod::Direct, limits(group.kind), user(6), now).await.map(drop),
        store.remove_member(id, user(2), Departure::Left, user(2), now).await,
        store.set_role(id, user(2), Role::Admin, owner, now).await.map(drop),
        store.transfer_ownership(id, user(2), owner, now).await.map(drop),
        store.ban(id, user(3), reason, None, owner, now).await.map(drop),
        store.unban(id, user(5), owner, now).await,
        store.set_mute(id, user(2), Some(at(100)), owner, now).await.map(drop),
        store.create_join_request(id, user(7), now).await.map(drop),
        store.approve_join_request(id, user(4), limits(group.kind), owner, now).await.map(drop),
        store.create_invite(invite(&group, 0, at(1_000))).await.map(drop),
        store.redeem_invite(&code, user(8), limits(group.kind), now).await.map(drop),
    ];
    for (index, outcome) in outcomes.into_iter().enumerate() {
        assert!(is_archived(outcome), "change #{index} was not refused as archived");
    }
    assert_eq!(all_events(store).await.len(), events_before, "refused changes write nothing");
    assert_eq!(member_count(store, group.id).await, 3);
}

// ---------------------------------------------------------------------------------------
// Adding members

/// `join_context` answers what `get_group`, `get_membership` and `get_active_ban` would.
pub async fn join_context_reads_the_group_membership_and_ban_together(store: &dyn GroupStore) {
    let owner = user(1);
    // BROADCAST: the member count is summed over shards.
    let group = create(store, GroupKind::Broadcast, owner).await;
    add(store, &group, &[2, 3, 4], at(1)).await;

    let unknown = store.join_context(GroupId::from_trusted(i64::MAX), user(2), at(2)).await.unwrap();
    assert_eq!(unknown, JoinContext::default());

    let member = store.join_context(group.id, user(2), at(2)).await.unwrap();
    assert_eq!(member.group, store.get_group(group.id).await.unwrap());
    assert_eq!(member.group.as_ref().map(|group| group.member_count), Some(4));
    assert_eq!(member.membership, store.get_membership(group.id, user(2)).await.unwrap());
    assert_eq!(
        member.membership.as_ref().map(|membership| (membership.role, membership.joined_at)),
        Some((Role::Member, at(1)))
    );
    assert_eq!(member.active_ban, None);
    let the_owner = store.join_context(group.id, owner, at(2)).await.unwrap();
    assert_eq!(the_owner.membership.map(|membership| membership.role), Some(Role::Owner));

    let stranger = store.join_context(group.id, user(9), at(2)).await.unwrap();
    assert_eq!((stranger.group.is_some(), stranger.membership, stranger.active_ban), (true, None, None));

    let reason = BanReason::from_trusted("spam".to_owned());
    let ban = store.ban(group.id, user(3), reason, Some(at(10)), owner, at(3)).await.unwrap();
    let banned = store.join_context(group.id, user(3), at(5)).await.unwrap();
    assert_eq!(banned.membership, None, "the ban ended the membership");
    assert_eq!(banned.active_ban, Some(ban.clone()));
    assert_eq!(banned.active_ban, store.get_active_ban(group.id, user(3), at(5)).await.unwrap());
    assert_eq!(banned.group.map(|group| group.member_count), Some(3));
    let ended = store.join_context(group.id, user(3), at(10)).await.unwrap();
    assert_eq!(ended.active_ban, None, "a ban stops counting at its end");

    store.set_mute(group.id, user(4), Some(at(50)), owner, at(4)).await.unwrap();
    let archived = store.archive_group(group.id, owner, at(6)).await.unwrap();
    let read = store.join_context(group.id, user(4), at(7)).await.unwrap();
    assert_eq!(read.group, Some(archived), "an archived group is read like any other");
    assert_eq!(read.membership.and_then(|membership| membership.muted_until), Some(at(50)));
}

/// New members are reported in the order given; existing ones are reported, not changed.
pub async fn add_members_reports_existing_members_and_writes_one_join_each(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Chat, user(1)).await;
    let added = add(store, &group, &[3, 2, 3, 1], at(1)).await;
    assert_eq!(user_ids(&added.added), [3, 2]);
    assert!(added.added.iter().all(|membership| membership.role == Role::Member && membership.joined_at == at(1)));
    assert_eq!(user_ids(&added.already_members), [1]);
    assert_eq!(added.already_members[0].role, Role::Owner);

    let again = add(store, &group, &[2, 4], at(2)).await;
    assert_eq!(user_ids(&again.added), [4]);
    assert_eq!(again.already_members[0].joined_at, at(1), "an existing membership is left as it was");
    assert_eq!(member_count(store, group.id).await, 4);
    assert_eq!(store.get_membership(group.id, user(4)).await.unwrap(), Some(again.added[0].clone()));

    let group_changes = changes(store, group.id).await;
    let expected = [(3, common::JoinMethod::Added), (2, common::JoinMethod::Added), (4, common::JoinMethod::Added)];
    assert_eq!(joins(&group_changes)[1..], expected);
    let nothing = add(store, &group, &[], at(3)).await;
    assert_eq!(nothing, AddedMembers::default());

    let unknown = store
        .add_members(
            GroupId::from_trusted(i64::MAX),
            &[user(2)],
            JoinMethod::Added,
            limits(GroupKind::Chat),
            user(1),
            at(4),
        )
        .await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// One banned user, or one user at their group limit, keeps the whole batch out.
pub async fn add_members_is_all_or_nothing(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    store.ban(group.id, user(5), BanReason::from_trusted("spam".to_owned()), None, owner, at(1)).await.unwrap();
    let events_before = all_events(store).await.len();

    let batch = [user(2), user(3), user(5), user(4)];
    let banned = store.add_members(group.id, &batch, JoinMethod::Added, limits(group.kind), owner, at(2)).await;
    assert!(matches!(banned, Err(StoreError::Banned { user: who, .. }) if who == user(5)), "{banned:?}");

    let elsewhere = create(store, GroupKind::Chat, user(9)).await;
    add(store, &elsewhere, &[6], at(2)).await;
    let one_group_each = MembershipLimits { group_member_limit: None, user_group_limit: 1 };
    let batch = [user(7), user(6), user(8)];
    let at_limit = store.add_members(group.id, &batch, JoinMethod::Added, one_group_each, owner, at(3)).await;
    assert!(
        matches!(at_limit, Err(StoreError::UserGroupLimit { user: who, limit: 1 }) if who == user(6)),
        "{at_limit:?}"
    );

    let two_slots = MembershipLimits { group_member_limit: Some(3), user_group_limit: USER_GROUP_LIMIT };
    let too_many = store.add_members(group.id, &batch, JoinMethod::Added, two_slots, owner, at(4)).await;
    assert!(matches!(too_many, Err(StoreError::GroupFull { limit: 3, .. })), "{too_many:?}");

    for candidate in [2, 3, 4, 6, 7, 8] {
        assert_eq!(store.get_membership(group.id, user(candidate)).await.unwrap(), None, "user {candidate}");
    }
    assert_eq!(member_count(store, group.id).await, 1);
    let events_after: Vec<_> = all_events(store).await;
    assert_eq!(events_after.len(), events_before + 3, "only the other group's creation and join were written");
    // User 7 was not counted toward its group limit by the failed batches.
    let single = MembershipLimits { group_member_limit: None, user_group_limit: 1 };
    store.add_members(group.id, &[user(7)], JoinMethod::Added, single, owner, at(5)).await.expect("user 7 has room");
}

/// A limited group takes members up to its limit exactly, then refuses with `GroupFull`.
pub async fn add_members_fills_a_group_exactly_then_reports_full(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Chat, user(1)).await;
    let thirty: Vec<i64> = (2..=31).collect();
    add(store, &group, &thirty, at(1)).await;
    assert_eq!(member_count(store, group.id).await, 31);

    let two = [user(100), user(101)];
    let full = store.add_members(group.id, &two, JoinMethod::Added, limits(group.kind), user(1), at(2)).await;
    assert!(matches!(full, Err(StoreError::GroupFull { limit: CHAT_MEMBER_LIMIT, .. })), "{full:?}");
    assert_eq!(member_count(store, group.id).await, 31, "all or nothing");

    add(store, &group, &[100], at(3)).await;
    assert_eq!(member_count(store, group.id).await, CHAT_MEMBER_LIMIT);
    let one_more =
        store.add_members(group.id, &[user(101)], JoinMethod::Added, limits(group.kind), user(1), at(4)).await;
    assert!(matches!(one_more, Err(StoreError::GroupFull { .. })), "{one_more:?}");
    let existing = add(store, &group, &[100], at(5)).await;
    assert_eq!(user_ids(&existing.already_members), [100], "re-adding a member of a full group is no error");
}

/// Member counts are exact after joins, leaves, removals and bans, for limited groups and
/// for sharded (BROADCAST) ones alike.
pub async fn member_counts_follow_joins_and_leaves(store: &dyn GroupStore) {
    for kind in [GroupKind::Community, GroupKind::Broadcast, GroupKind::Chat] {
        let owner = user(1);
        let group = create(store, kind, owner).await;
        let joiners: Vec<i64> = (2..=31).collect();
        add(store, &group, &joiners[..20], at(1)).await;
        for joiner in &joiners[20..] {
            add(store, &group, &[*joiner], at(2)).await;
        }
        assert_eq!(member_count(store, group.id).await, 31, "{kind:?}");
        for leaver in 2..=8 {
            store.remove_member(group.id, user(leaver), Departure::Left, user(leaver), at(3)).await.unwrap();
        }
        store.remove_member(group.id, user(9), Departure::Removed, owner, at(3)).await.unwrap();
        for banned in [10, 11, 999] {
            store
                .ban(group.id, user(banned), BanReason::from_trusted(String::new()), None, owner, at(3))
                .await
                .unwrap();
        }
        let expected = 31 - 7 - 1 - 2;
        assert_eq!(member_count(store, group.id).await, expected, "{kind:?}");
        let page = store.list_members(group.id, None, None, PageSize::new(100)).await.unwrap();
        assert_eq!(page.len() as u64, expected, "{kind:?}");
        let (listed, _) = store.list_user_groups(owner, None, PageSize::new(10)).await.unwrap().remove(0);
        assert_eq!(listed.member_count, expected, "{kind:?}");
    }
}

/// A BROADCAST group given a member limit (a configuration choice) still fills exactly.
pub async fn a_broadcast_group_with_a_configured_limit_fills_exactly(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Broadcast, user(1)).await;
    let five = MembershipLimits { group_member_limit: Some(5), user_group_limit: USER_GROUP_LIMIT };
    let batch: Vec<UserId> = (2..=4).map(user).collect();
    store.add_members(group.id, &batch, JoinMethod::Direct, five, user(1), at(1)).await.unwrap();
    let over = [user(5), user(6)];
    let full = store.add_members(group.id, &over, JoinMethod::Direct, five, user(1), at(2)).await;
    assert!(matches!(full, Err(StoreError::GroupFull { limit: 5, .. })), "{full:?}");
    store.add_members(group.id, &over[..1], JoinMethod::Direct, five, user(1), at(3)).await.unwrap();
    assert_eq!(member_count(store, group.id).await, 5);
}

// ---------------------------------------------------------------------------------------
// Leaving, roles, ownership

/// Leaving and removal end a membership with the matching outbox change; the owner stays.
pub async fn remove_member_writes_left_or_removed(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Chat, owner).await;
    add(store, &group, &[2, 3], at(1)).await;
    store.remove_member(group.id, user(2), Departure::Left, user(2), at(2)).await.unwrap();
    store.remove_member(group.id, user(3), Departure::Removed, owner, at(3)).await.unwrap();
    assert_eq!(store.get_membership(group.id, user(2)).await.unwrap(), None);
    assert_eq!(member_count(store, group.id).await, 1);
    let group_changes = changes(store, group.id).await;
    assert_eq!(names(&group_changes)[4..], ["left", "removed"]);

    let again = store.remove_member(group.id, user(2), Departure::Left, user(2), at(4)).await;
    assert!(matches!(again, Err(StoreError::NotMember { user: who, .. }) if who == user(2)), "{again:?}");
    let the_owner = store.remove_member(group.id, owner, Departure::Left, owner, at(4)).await;
    assert!(matches!(the_owner, Err(StoreError::OwnerImmovable(id)) if id == group.id), "{the_owner:?}");
    let unknown = store.remove_member(GroupId::from_trusted(i64::MAX), user(2), Departure::Left, user(2), at(4)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
    add(store, &group, &[2], at(5)).await;
    assert_eq!(member_count(store, group.id).await, 2, "a former member can come back");
}

/// Roles change between admin and member, with an outbox row only for a real change.
pub async fn set_role_changes_roles_but_never_the_owner(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    add(store, &group, &[2], at(1)).await;
    let promoted = store.set_role(group.id, user(2), Role::Admin, owner, at(2)).await.unwrap();
    assert_eq!(promoted.role, Role::Admin);
    assert_eq!(promoted.joined_at, at(1));
    let unchanged = store.set_role(group.id, user(2), Role::Admin, owner, at(3)).await.unwrap();
    assert_eq!(unchanged, promoted);
    assert_eq!(store.get_membership(group.id, user(2)).await.unwrap(), Some(promoted));
    store.set_role(group.id, user(2), Role::Member, owner, at(4)).await.unwrap();
    let group_changes = changes(store, group.id).await;
    assert_eq!(names(&group_changes)[3..], ["role_changed", "role_changed"]);
    let Change::MemberRoleChanged(first) = &group_changes[3] else { unreachable!("checked above") };
    assert_eq!((first.user_id, first.role()), (2, common::Role::Admin));

    let the_owner = store.set_role(group.id, owner, Role::Admin, owner, at(5)).await;
    assert!(matches!(the_owner, Err(StoreError::OwnerImmovable(_))), "{the_owner:?}");
    let stranger = store.set_role(group.id, user(9), Role::Admin, owner, at(5)).await;
    assert!(matches!(stranger, Err(StoreError::NotMember { .. })), "{stranger:?}");
    let unknown = store.set_role(GroupId::from_trusted(i64::MAX), user(2), Role::Admin, owner, at(5)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// A transfer makes the new owner `Owner` and the previous one `Admin`.
pub async fn transfer_ownership_swaps_roles(store: &dyn GroupStore) {
    let (previous, next) = (user(1), user(2));
    let group = create(store, GroupKind::Community, previous).await;
    add(store, &group, &[2], at(1)).await;
    let stranger = store.transfer_ownership(group.id, user(9), previous, at(2)).await;
    assert!(matches!(stranger, Err(StoreError::NotMember { user: who, .. }) if who == user(9)), "{stranger:?}");

    let transferred = store.transfer_ownership(group.id, next, previous, at(3)).await.unwrap();
    assert_eq!(transferred.owner, next);
    assert_eq!(store.get_group(group.id).await.unwrap(), Some(transferred));
    assert_eq!(store.get_membership(group.id, next).await.unwrap().map(|m| m.role), Some(Role::Owner));
    assert_eq!(store.get_membership(group.id, previous).await.unwrap().map(|m| m.role), Some(Role::Admin));
    let group_changes = changes(store, group.id).await;
    let Some(Change::OwnershipTransferred(change)) = group_changes.last() else {
        panic!("expected a transfer last, got {:?}", names(&group_changes));
    };
    assert_eq!((change.previous_owner_user_id, change.new_owner_user_id), (1, 2));

    let owners = store.list_members(group.id, Some(Role::Owner), None, PageSize::new(10)).await.unwrap();
    assert_eq!(user_ids(&owners), [2]);
    store.remove_member(group.id, previous, Departure::Left, previous, at(4)).await.expect("no longer the owner");
    let new_owner_leaves = store.remove_member(group.id, next, Departure::Left, next, at(4)).await;
    assert!(matches!(new_owner_leaves, Err(StoreError::OwnerImmovable(_))), "{new_owner_leaves:?}");
    let unknown = store.transfer_ownership(GroupId::from_trusted(i64::MAX), next, next, at(5)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

// ---------------------------------------------------------------------------------------
// Bans and mutes

/// A ban ends a membership and a pending request, and keeps the user out every way.
pub async fn ban_removes_membership_and_pending_request(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    add(store, &group, &[2], at(1)).await;
    store.create_join_request(group.id, user(3), at(1)).await.unwrap();
    let reason = BanReason::from_trusted("spam".to_owned());

    let ban = store.ban(group.id, user(2), reason.clone(), Some(at(1_000)), owner, at(2)).await.unwrap();
    assert_eq!((ban.user_id, ban.banned_by, ban.banned_at, ban.until), (user(2), owner, at(2), Some(at(1_000))));
    assert_eq!(ban.reason, reason);
    assert_eq!(store.get_active_ban(group.id, user(2), at(3)).await.unwrap(), Some(ban));
    store.ban(group.id, user(3), reason.clone(), None, owner, at(2)).await.unwrap();
    assert_eq!(store.get_membership(group.id, user(2)).await.unwrap(), None);
    assert!(store.list_join_requests(group.id, None, PageSize::new(10)).await.unwrap().is_empty());
    assert_eq!(member_count(store, group.id).await, 1);

    let group_changes = changes(store, group.id).await;
    let was_member: Vec<bool> = group_changes
        .iter()
        .filter_map(|change| match change {
            Change::MemberBanned(banned) => Some(banned.was_member),
            _ => None,
        })
        .collect();
    assert_eq!(was_member, [true, false]);

    let the_owner = store.ban(group.id, owner, reason, None, owner, at(3)).await;
    assert!(matches!(the_owner, Err(StoreError::OwnerImmovable(_))), "{the_owner:?}");
    let joining = store.add_members(group.id, &[user(2)], JoinMethod::Direct, limits(group.kind), user(2), at(4)).await;
    assert!(matches!(joining, Err(StoreError::Banned { .. })), "{joining:?}");
    let asking = store.create_join_request(group.id, user(3), at(4)).await;
    assert!(matches!(asking, Err(StoreError::Banned { .. })), "{asking:?}");
    let code = store.create_invite(invite(&group, 0, at(1_000))).await.unwrap().code;
    let redeeming = store.redeem_invite(&code, user(2), limits(group.kind), at(4)).await;
    assert!(matches!(redeeming, Err(StoreError::Banned { .. })), "{redeeming:?}");
    let unknown = store
        .ban(GroupId::from_trusted(i64::MAX), user(2), BanReason::from_trusted(String::new()), None, owner, at(4))
        .await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// A ban with an end stops counting at its end; a new ban replaces the old one.
pub async fn bans_expire_and_are_replaced(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    let reason = BanReason::from_trusted(String::new());
    store.ban(group.id, user(2), reason.clone(), Some(at(100)), owner, at(1)).await.unwrap();
    assert!(store.get_active_ban(group.id, user(2), at(99)).await.unwrap().is_some());
    assert_eq!(store.get_active_ban(group.id, user(2), at(100)).await.unwrap(), None, "ends at `until`");
    assert!(store.list_bans(group.id, None, PageSize::new(10), at(150)).await.unwrap().is_empty());
    let lifted = store.unban(group.id, user(2), owner, at(150)).await;
    assert!(matches!(lifted, Err(StoreError::NotBanned { .. })), "{lifted:?}");
    let added = store.add_members(group.id, &[user(2)], JoinMethod::Direct, limits(group.kind), user(2), at(150)).await;
    assert_eq!(user_ids(&added.expect("an expired ban no longer blocks").added), [2]);

    store.ban(group.id, user(3), reason.clone(), None, owner, at(200)).await.unwrap();
    let replaced = store.ban(group.id, user(3), reason, Some(at(300)), owner, at(250)).await.unwrap();
    assert_eq!(store.get_active_ban(group.id, user(3), at(260)).await.unwrap(), Some(replaced));
    assert_eq!(store.get_active_ban(group.id, user(3), at(300)).await.unwrap(), None);
}

/// Unbanning lifts the ban in force and lets the user back in.
pub async fn unban_lifts_the_ban(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    store.ban(group.id, user(2), BanReason::from_trusted(String::new()), None, owner, at(1)).await.unwrap();
    store.unban(group.id, user(2), owner, at(2)).await.unwrap();
    assert_eq!(store.get_active_ban(group.id, user(2), at(3)).await.unwrap(), None);
    assert_eq!(names(&changes(store, group.id).await).last(), Some(&"unbanned"));
    let again = store.unban(group.id, user(2), owner, at(3)).await;
    assert!(matches!(again, Err(StoreError::NotBanned { user: who, .. }) if who == user(2)), "{again:?}");
    add(store, &group, &[2], at(4)).await;
    let unknown = store.unban(GroupId::from_trusted(i64::MAX), user(2), owner, at(5)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// Bans in force list by ascending user id, page by page, without gaps or repeats.
pub async fn list_bans_pages_by_user_id(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    let other = create(store, GroupKind::Community, owner).await;
    let reason = BanReason::from_trusted(String::new());
    for banned in [17, 4, 9, 30, 2, 11, 25] {
        store.ban(group.id, user(banned), reason.clone(), None, owner, at(1)).await.unwrap();
    }
    store.ban(group.id, user(6), reason.clone(), Some(at(5)), owner, at(1)).await.unwrap();
    store.ban(other.id, user(3), reason, None, owner, at(1)).await.unwrap();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_bans(group.id, after, PageSize::new(3), at(10)).await.unwrap();
        assert!(page.len() <= 4, "at most limit + 1");
        let more = page.len() > 3;
        seen.extend(page.iter().take(3).map(|ban| ban.user_id.get()));
        if !more {
            break;
        }
        after = page.get(2).map(|ban| ban.user_id);
    }
    assert_eq!(seen, [2, 4, 9, 11, 17, 25, 30], "ascending, the expired ban and other groups left out");
}

/// Mutes are set and lifted, each with its outbox change.
pub async fn set_mute_mutes_and_unmutes(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    add(store, &group, &[2], at(1)).await;
    let muted = store.set_mute(group.id, user(2), Some(at(600)), owner, at(2)).await.unwrap();
    assert_eq!(muted.muted_until, Some(at(600)));
    assert_eq!(store.get_membership(group.id, user(2)).await.unwrap(), Some(muted));
    let unmuted = store.set_mute(group.id, user(2), None, owner, at(3)).await.unwrap();
    assert_eq!(unmuted.muted_until, None);
    let group_changes = changes(store, group.id).await;
    assert_eq!(names(&group_changes)[3..], ["muted", "unmuted"]);
    let Change::MemberMuted(mute) = &group_changes[3] else { unreachable!("checked above") };
    assert_eq!(mute.until.as_ref().map(|until| until.seconds), Some(at(600).timestamp()));

    let stranger = store.set_mute(group.id, user(9), Some(at(600)), owner, at(4)).await;
    assert!(matches!(stranger, Err(StoreError::NotMember { .. })), "{stranger:?}");
    let unknown = store.set_mute(GroupId::from_trusted(i64::MAX), user(2), None, owner, at(4)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

// ---------------------------------------------------------------------------------------
// Join requests

/// Filing twice returns the first request; approval joins the user with `Approved`.
pub async fn join_requests_are_idempotent_and_approved(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    let events_before = all_events(store).await.len();
    let first = store.create_join_request(group.id, user(2), at(10)).await.unwrap();
    assert_eq!((first.user_id, first.requested_at), (user(2), at(10)));
    let second = store.create_join_request(group.id, user(2), at(20)).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(all_events(store).await.len(), events_before, "requests are not part of the timeline");

    let membership = store.approve_join_request(group.id, user(2), limits(group.kind), owner, at(30)).await.unwrap();
    assert_eq!((membership.role, membership.joined_at), (Role::Member, at(30)));
    assert_eq!(joins(&changes(store, group.id).await).last(), Some(&(2, common::JoinMethod::Approved)));
    assert!(store.list_join_requests(group.id, None, PageSize::new(10)).await.unwrap().is_empty());
    let again = store.approve_join_request(group.id, user(2), limits(group.kind), owner, at(31)).await;
    assert!(matches!(again, Err(StoreError::JoinRequestNotFound { .. })), "{again:?}");

    store.create_join_request(group.id, user(3), at(40)).await.unwrap();
    add(store, &group, &[3], at(41)).await;
    assert!(
        store.list_join_requests(group.id, None, PageSize::new(10)).await.unwrap().is_empty(),
        "joining by other means deletes the pending request"
    );
    let unknown = store.create_join_request(GroupId::from_trusted(i64::MAX), user(2), at(50)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");
}

/// Rejection deletes a request; a failed approval keeps it.
pub async fn rejected_and_failed_approvals(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Community, owner).await;
    store.create_join_request(group.id, user(2), at(1)).await.unwrap();
    store.reject_join_request(group.id, user(2)).await.unwrap();
    assert!(store.list_join_requests(group.id, None, PageSize::new(10)).await.unwrap().is_empty());
    let again = store.reject_join_request(group.id, user(2)).await;
    assert!(matches!(again, Err(StoreError::JoinRequestNotFound { .. })), "{again:?}");
    let unknown = store.reject_join_request(GroupId::from_trusted(i64::MAX), user(2)).await;
    assert!(matches!(unknown, Err(StoreError::GroupNotFound(_))), "{unknown:?}");

    store.create_join_request(group.id, user(3), at(2)).await.unwrap();
    let full = MembershipLimits { group_member_limit: Some(1), user_group_limit: USER_GROUP_LIMIT };
    let refused = store.approve_join_request(group.id, user(3), full, owner, at(3)).await;
    assert!(matches!(refused, Err(StoreError::GroupFull { .. })), "{refused:?}");
    let pending = store.list_join_requests(group.id, None, PageSize::new(10)).await.unwrap();
    assert_eq!(pending.iter().map(|request| request.user_id.get()).collect::<Vec<_>>(), [3]);
    let unknown_approval =
        store.approve_join_request(GroupId::from_trusted(i64::MAX), user(3), full, owner, at(3)).await;
    assert!(matches!(unknown_approval, Err(StoreError::GroupNotFound(_))), "{unknown_approval:?}");
}

/// Pending requests list oldest first, ties by user id, page by page.
pub async fn list_join_requests_pages_in_request_order(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Community, user(1)).await;
    let filed = [(5, 30), (2, 10), (9, 10), (4, 20), (7, 10), (3, 40), (8, 20)];
    for (requester, seconds) in filed {
        store.create_join_request(group.id, user(requester), at(seconds)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_join_requests(group.id, after, PageSize::new(2)).await.unwrap();
        let more = page.len() > 2;
        seen.extend(page.iter().take(2).map(|request| request.user_id.get()));
        if !more {
            break;
        }
        after = page.get(1).map(|request| (request.requested_at, request.user_id));
    }
    assert_eq!(seen, [2, 7, 9, 4, 8, 5, 3]);
}

// ---------------------------------------------------------------------------------------
// Invites

/// Invites are stored as given, read back in any state, and revoked idempotently.
pub async fn invites_are_stored_revoked_and_read(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Chat, user(1)).await;
    let stored = store.create_invite(invite(&group, 3, at(1_000))).await.unwrap();
    assert_eq!(store.get_invite(&stored.code).await.unwrap(), Some(stored.clone()));
    let revoked = store.revoke_invite(&stored.code, at(5)).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(at(5)));
    let again = store.revoke_invite(&stored.code, at(6)).await.unwrap();
    assert_eq!(again.revoked_at, Some(at(5)), "revoking twice keeps the first time");
    assert_eq!(store.get_invite(&stored.code).await.unwrap(), Some(again));

    let unknown_code = InviteCode::generate();
    assert_eq!(store.get_invite(&unknown_code).await.unwrap(), None);
    let revoke_unknown = store.revoke_invite(&unknown_code, at(7)).await;
    assert!(matches!(revoke_unknown, Err(StoreError::InviteNotFound)), "{revoke_unknown:?}");
    let mut orphan = invite(&group, 0, at(1_000));
    orphan.group_id = GroupId::from_trusted(i64::MAX);
    let no_group = store.create_invite(orphan).await;
    assert!(matches!(no_group, Err(StoreError::GroupNotFound(_))), "{no_group:?}");
}

/// Redemption joins and counts a use; members, expiry, revocation and exhaustion are
/// reported; `max_uses` 0 is unlimited.
pub async fn redeeming_an_invite_joins_and_counts_uses(store: &dyn GroupStore) {
    let owner = user(1);
    let group = create(store, GroupKind::Chat, owner).await;
    let chat = limits(group.kind);
    let twice = store.create_invite(invite(&group, 2, at(1_000))).await.unwrap();

    let joined = store.redeem_invite(&twice.code, user(2), chat, at(1)).await.unwrap();
    assert!(matches!(&joined, Redemption::Joined(m) if m.user_id == user(2) && m.role == Role::Member), "{joined:?}");
    let member = store.redeem_invite(&twice.code, user(2), chat, at(2)).await.unwrap();
    assert!(matches!(member, Redemption::AlreadyMember(_)), "{member:?}");
    let the_owner = store.redeem_invite(&twice.code, owner, chat, at(2)).await.unwrap();
    assert!(matches!(&the_owner, Redemption::AlreadyMember(m) if m.role == Role::Owner), "{the_owner:?}");
    assert_eq!(store.get_invite(&twice.code).await.unwrap().map(|i| i.use_count), Some(1), "members use nothing");
    store.redeem_invite(&twice.code, user(3), chat, at(3)).await.unwrap();
    let exhausted = store.redeem_invite(&twice.code, user(4), chat, at(4)).await;
    assert!(matches!(exhausted, Err(StoreError::InviteExhausted(2))), "{exhausted:?}");
    let group_changes = changes(store, group.id).await;
    assert_eq!(joins(&group_changes)[1..], [(2, common::JoinMethod::Invite), (3, common::JoinMethod::Invite)]);
    let redeemer = all_events(store).await.last().map(|event| event.actor_user_id);
    assert_eq!(redeemer, Some(3), "the redeeming user is the actor");

    let unlimited = store.create_invite(invite(&group, 0, at(1_000))).await.unwrap();
    for joiner in 10..16 {
        let outcome = store.redeem_invite(&unlimited.code, user(joiner), chat, at(5)).await.unwrap();
        assert!(matches!(outcome, Redemption::Joined(_)), "{outcome:?}");
    }
    assert_eq!(store.get_invite(&unlimited.code).await.unwrap().map(|i| i.use_count), Some(6));

    let expiring = store.create_invite(invite(&group, 0, at(100))).await.unwrap();
    let expired = store.redeem_invite(&expiring.code, user(20), chat, at(100)).await;
    assert!(matches!(expired, Err(StoreError::InviteExpired(when)) if when == at(100)), "{expired:?}");
    store.revoke_invite(&unlimited.code, at(6)).await.unwrap();
    let revoked = store.redeem_invite(&unlimited.code, user(21), chat, at(7)).await;
    assert!(matches!(revoked, Err(StoreError::InviteRevoked)), "{revoked:?}");
    let unknown = store.redeem_invite(&InviteCode::generate(), user(22), chat, at(7)).await;
    assert!(matches!(unknown, Err(StoreError::InviteNotFound)), "{unknown:?}");
    assert_eq!(member_count(store, group.id).await, 9);
}

// ---------------------------------------------------------------------------------------
// Listings and the outbox

/// Members list by ascending user id, page by page, with or without a role filter.
pub async fn list_members_pages_in_user_id_order(store: &dyn GroupStore) {
    let owner = user(50);
    let group = create(store, GroupKind::Broadcast, owner).await;
    let other = create(store, GroupKind::Broadcast, owner).await;
    let joiners = [17, 3, 44, 8, 21, 2, 39, 12, 30, 5, 26, 48, 9, 33, 14];
    add(store, &group, &joiners, at(1)).await;
    add(store, &other, &[1, 4, 99], at(1)).await;
    for admin in [8, 30, 48] {
        store.set_role(group.id, user(admin), Role::Admin, owner, at(2)).await.unwrap();
    }

    for (role, page_size) in [(None, 4), (None, 1), (Some(Role::Admin), 2), (Some(Role::Member), 5)] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.list_members(group.id, role, after, PageSize::new(page_size)).await.unwrap();
            assert!(page.len() <= page_size as usize + 1);
            let more = page.len() > page_size as usize;
            let kept: Vec<_> = page.into_iter().take(page_size as usize).collect();
            assert!(kept.iter().all(|membership| role.is_none_or(|role| membership.role == role)));
            seen.extend(user_ids(&kept));
            if !more {
                break;
            }
            after = kept.last().map(|membership| membership.user_id);
        }
        let mut expected: Vec<i64> = match role {
            None => joiners.iter().copied().chain([50]).collect(),
            Some(Role::Admin) => vec![8, 30, 48],
            Some(_) => joiners.iter().copied().filter(|id| ![8, 30, 48].contains(id)).collect(),
        };
        expected.sort_unstable();
        assert_eq!(seen, expected, "role {role:?}, page size {page_size}");
    }
}

/// A user's groups list newest membership first (ties by group id, descending).
pub async fn list_user_groups_pages_newest_first(store: &dyn GroupStore) {
    let member = user(9);
    let mut expected = Vec::new();
    for (index, joined_seconds) in [40, 10, 30, 30, 20, 50, 30].into_iter().enumerate() {
        let kind = [GroupKind::Chat, GroupKind::Community, GroupKind::Broadcast][index % 3];
        let group = create(store, kind, user(100 + index as i64)).await;
        add(store, &group, &[9], at(joined_seconds)).await;
        expected.push((at(joined_seconds), group.id));
    }
    let owned = create(store, GroupKind::Chat, member).await;
    expected.push((at(0), owned.id));
    expected.sort_by(|left, right| right.cmp(left));

    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_user_groups(member, before, PageSize::new(3)).await.unwrap();
        let more = page.len() > 3;
        for (group, membership) in page.iter().take(3) {
            assert_eq!(membership.group_id, group.id);
            assert_eq!(membership.user_id, member);
            let role = if group.id == owned.id { Role::Owner } else { Role::Member };
            assert_eq!(membership.role, role);
            assert_eq!(Some(group), store.get_group(group.id).await.unwrap().as_ref());
            seen.push((membership.joined_at, group.id));
        }
        if !more {
            break;
        }
        before = seen.last().copied();
    }
    assert_eq!(seen, expected);
    assert!(store.list_user_groups(user(12345), None, PageSize::new(3)).await.unwrap().is_empty());
}

/// The outbox reads in increasing id order, page by page, each group's changes in order.
pub async fn outbox_is_read_in_id_order(store: &dyn GroupStore) {
    let owner = user(1);
    let first = create(store, GroupKind::Chat, owner).await;
    let second = create(store, GroupKind::Community, owner).await;
    add(store, &first, &[2, 3], at(1)).await;
    add(store, &second, &[2], at(1)).await;
    store.remove_member(first.id, user(2), Departure::Left, user(2), at(2)).await.unwrap();
    store.archive_group(second.id, owner, at(3)).await.unwrap();

    let mut ids = Vec::new();
    let mut after_id = 0;
    loop {
        let page = store.read_outbox(after_id, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after_id = last.id;
        ids.extend(page.iter().map(|entry| entry.id));
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids increase: {ids:?}");
    assert_eq!(ids.len(), 9);
    assert!(store.read_outbox(after_id, 10).await.unwrap().is_empty());
    assert_eq!(names(&changes(store, first.id).await), ["created", "joined", "joined", "joined", "left"]);
    assert_eq!(names(&changes(store, second.id).await), ["created", "joined", "joined", "archived"]);
    let events = all_events(store).await;
    let left = events.iter().find(|event| matches!(event.change, Some(Change::MemberLeft(_))));
    let occurred = left.and_then(|event| event.occurred_at.as_ref()).map(|time| time.seconds);
    assert_eq!(occurred, Some(at(2).timestamp()));
}

// ---------------------------------------------------------------------------------------
// The relay's queue: claims, leases, publishing

/// The lease of the claims in these tests.
const LEASE: Duration = Duration::from_secs(10);

fn ids(entries: &[OutboxEntry]) -> Vec<i64> {
    entries.iter().map(|entry| entry.id).collect()
}

/// Every outbox entry, published or not, in id order.
async fn whole_outbox(store: &dyn GroupStore) -> Vec<OutboxEntry> {
    store.read_outbox(0, 10_000).await.expect("read the outbox")
}

/// `count` CHAT groups owned by user 1, created at `at(0)`: two outbox rows each.
async fn create_groups(store: &dyn GroupStore, count: usize) -> Vec<Group> {
    let mut groups = Vec::with_capacity(count);
    for _ in 0..count {
        groups.push(create(store, GroupKind::Chat, user(1)).await);
    }
    groups
}

/// Claims hand out unpublished rows oldest first, at most `limit`, as stored.
pub async fn claims_take_the_oldest_rows_first(store: &dyn GroupStore) {
    create_groups(store, 4).await;
    let all = whole_outbox(store).await;
    assert_eq!(all.len(), 8);

    let first = store.claim_outbox(4, LEASE, at(10)).await.unwrap();
    assert_eq!(first, all[..4], "the two oldest groups' rows, as stored");
    let second = store.claim_outbox(3, LEASE, at(10)).await.unwrap();
    assert_eq!(second, all[4..7]);
    // The last row waits behind its group's claimed row (see a_group_waits_behind_its_claimed_rows).
    assert!(store.claim_outbox(10, LEASE, at(10)).await.unwrap().is_empty());
}

/// Claimers running at once never receive the same row, nor rows of the same group, and no
/// row is lost. Three times over, each after every lease has expired, for more chances to race.
pub async fn concurrent_claims_never_share_a_row(store: &dyn GroupStore) {
    create_groups(store, 30).await;
    let all = ids(&whole_outbox(store).await);
    assert_eq!(all.len(), 60);

    for epoch in 0..3 {
        let now = at(100 * epoch);
        let mut seen = HashSet::new();
        // Which claim took each group's rows: two claims sharing a group could deliver its
        // rows in either order.
        let mut claim_of_group = HashMap::new();
        for round in 0.. {
            let batches = join_all((0..10).map(|_| store.claim_outbox(4, LEASE, now))).await;
            let mut claimed_now = 0;
            for (index, batch) in batches.into_iter().enumerate() {
                let batch = batch.expect("a claim");
                let batch_ids = ids(&batch);
                assert!(batch_ids.windows(2).all(|pair| pair[0] < pair[1]), "claims are in id order: {batch_ids:?}");
                for entry in batch {
                    assert!(seen.insert(entry.id), "row {} was claimed twice", entry.id);
                    let claim = *claim_of_group.entry(entry.group_id).or_insert((round, index));
                    assert_eq!(claim, (round, index), "group {} was split between claims", entry.group_id);
                    claimed_now += 1;
                }
            }
            if claimed_now == 0 {
                break;
            }
        }
        // Rows left are only those waiting behind their group's claimed first row.
        assert!(!seen.is_empty());
        for id in all.iter().filter(|id| !seen.contains(id)) {
            assert!(seen.contains(&(id - 1)), "row {id} waits behind row {} of its group", id - 1);
        }
    }
    // Once every lease has expired, everything not published is claimable again, in order.
    assert_eq!(ids(&store.claim_outbox(1_000, LEASE, at(1_000)).await.unwrap()), all);
}

/// A claim lasts exactly its lease: until then nobody else gets the rows, after it anyone can.
pub async fn an_expired_claim_is_claimed_again(store: &dyn GroupStore) {
    create_groups(store, 2).await;
    let all = ids(&whole_outbox(store).await);

    assert_eq!(ids(&store.claim_outbox(2, LEASE, at(10)).await.unwrap()), all[..2]);
    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(15)).await.unwrap()), all[2..]);
    // The first claim runs until at(20) inclusive.
    assert!(store.claim_outbox(10, LEASE, at(20)).await.unwrap().is_empty());
    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(21)).await.unwrap()), all[..2]);
    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(26)).await.unwrap()), all[2..]);
}

/// Published rows stay readable but are never claimed again, however old their claim;
/// publishing twice or an unknown id changes nothing.
pub async fn published_rows_are_never_claimed_again(store: &dyn GroupStore) {
    assert_eq!(store.oldest_unpublished().await.unwrap(), None);
    let groups = create_groups(store, 2).await;
    add(store, &groups[0], &[2], at(5)).await;
    let all = ids(&whole_outbox(store).await);
    assert_eq!(all.len(), 5);
    assert_eq!(store.oldest_unpublished().await.unwrap(), Some(at(0)));

    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(10)).await.unwrap()), all);
    let published = [all[0], all[1], all[2], all[3]];
    store.mark_published(&published, at(11)).await.unwrap();
    store.mark_published(&published, at(12)).await.unwrap();
    store.mark_published(&[all[4] + 1_000, -1], at(12)).await.unwrap();
    store.mark_published(&[], at(12)).await.unwrap();
    assert_eq!(store.oldest_unpublished().await.unwrap(), Some(at(5)), "the join of user 2");

    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(100)).await.unwrap()), [all[4]]);
    store.mark_published(&[all[4]], at(101)).await.unwrap();
    assert!(store.claim_outbox(10, LEASE, at(1_000)).await.unwrap().is_empty());
    assert_eq!(store.oldest_unpublished().await.unwrap(), None);
    assert_eq!(ids(&whole_outbox(store).await), all, "published rows remain readable");

    add(store, &groups[1], &[3], at(50)).await;
    assert_eq!(store.oldest_unpublished().await.unwrap(), Some(at(50)));
    assert_eq!(store.claim_outbox(10, LEASE, at(1_000)).await.unwrap().len(), 1);
}

/// While a group's row is under a live claim, its later rows are not handed out (they
/// would overtake it); other groups' rows are.
pub async fn a_group_waits_behind_its_claimed_rows(store: &dyn GroupStore) {
    let groups = create_groups(store, 2).await;
    add(store, &groups[0], &[2], at(1)).await;
    let all = ids(&whole_outbox(store).await);
    // groups[0]: all[0], all[1], all[4]; groups[1]: all[2], all[3].

    assert_eq!(ids(&store.claim_outbox(1, LEASE, at(10)).await.unwrap()), [all[0]]);
    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(10)).await.unwrap()), [all[2], all[3]]);
    assert!(store.claim_outbox(10, LEASE, at(10)).await.unwrap().is_empty());
    store.mark_published(&[all[0]], at(11)).await.unwrap();
    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(11)).await.unwrap()), [all[1], all[4]]);
}

/// A claim of `limit` looks at the oldest `limit × CLAIM_WINDOW_FACTOR` claimable rows
/// only: when they all wait behind a live claim, later groups' rows wait for a larger claim
/// or for the lease to end, rather than every claim scanning the whole backlog.
pub async fn claims_look_a_bounded_way_ahead(store: &dyn GroupStore) {
    let busy = create(store, GroupKind::Broadcast, user(1)).await;
    let joiners: Vec<i64> = (10..20).collect();
    add(store, &busy, &joiners, at(1)).await;
    let quiet = create(store, GroupKind::Chat, user(2)).await;
    let all = whole_outbox(store).await;
    assert_eq!(all.len(), 14, "12 rows of the busy group, then 2 of the quiet one");
    debug_assert_eq!(super::CLAIM_WINDOW_FACTOR, 4);

    assert_eq!(ids(&store.claim_outbox(1, LEASE, at(10)).await.unwrap()), [all[0].id]);
    // A window of 8 rows, all the busy group's: nothing to take.
    assert!(store.claim_outbox(2, LEASE, at(10)).await.unwrap().is_empty());
    // A window of 40 reaches the quiet group.
    let quiet_rows = store.claim_outbox(10, LEASE, at(10)).await.unwrap();
    assert!(quiet_rows.iter().all(|entry| entry.group_id == quiet.id));
    assert_eq!(ids(&quiet_rows), ids(&all[12..]));
}

// ---------------------------------------------------------------------------------------
// Concurrency

/// 50 users joining a CHAT group at once: the owner and 31 of them make the limit of 32
/// exactly; the other 19 are told the group is full.
pub async fn concurrent_adds_never_exceed_the_member_limit(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Chat, user(1)).await;
    let (group_id, kind) = (group.id, group.kind);
    let attempts = (100..150).map(|joiner| async move {
        store.add_members(group_id, &[user(joiner)], JoinMethod::Invite, limits(kind), user(joiner), at(1)).await
    });
    let outcomes = join_all(attempts).await;
    let joined = outcomes.iter().filter(|outcome| matches!(outcome, Ok(added) if added.added.len() == 1)).count();
    let full = outcomes.iter().filter(|outcome| matches!(outcome, Err(StoreError::GroupFull { .. }))).count();
    assert_eq!((joined, full), (31, 19), "{outcomes:?}");
    assert_eq!(member_count(store, group.id).await, CHAT_MEMBER_LIMIT);
    let members = store.list_members(group.id, None, None, PageSize::new(100)).await.unwrap();
    assert_eq!(members.len() as u64, CHAT_MEMBER_LIMIT);
    assert_eq!(joins(&changes(store, group.id).await).len(), 32);
}

/// 20 simultaneous joins of one user make one membership and one `Joined` change; the
/// others report the user as already a member.
pub async fn concurrent_joins_of_one_user_make_one_membership(store: &dyn GroupStore) {
    for kind in [GroupKind::Chat, GroupKind::Broadcast] {
        let group = create(store, kind, user(1)).await;
        let joiner = user(7);
        let group_id = group.id;
        let attempts = (0..20).map(|_| async move {
            store.add_members(group_id, &[joiner], JoinMethod::Direct, limits(kind), joiner, at(1)).await
        });
        let outcomes = join_all(attempts).await;
        let mut added = 0;
        for outcome in outcomes {
            let outcome = outcome.expect("a duplicate join is not an error");
            added += outcome.added.len();
            assert_eq!(outcome.added.len() + outcome.already_members.len(), 1);
        }
        assert_eq!(added, 1, "{kind:?}");
        assert_eq!(member_count(store, group.id).await, 2, "{kind:?}");
        let joined: Vec<i64> = joins(&changes(store, group.id).await).into_iter().map(|(id, _)| id).collect();
        assert_eq!(joined, [1, 7], "{kind:?}");
    }
    // The user was counted once per group toward their limit.
    let tight = MembershipLimits { group_member_limit: None, user_group_limit: 3 };
    let third = create(store, GroupKind::Broadcast, user(2)).await;
    store
        .add_members(third.id, &[user(7)], JoinMethod::Direct, tight, user(7), at(2))
        .await
        .expect("a third group fits");
}

/// One user joining ten groups at once with room for three more groups: exactly three
/// joins succeed, the other seven are told the user is at their limit, and nothing of the
/// refused joins is left behind.
pub async fn concurrent_joins_never_exceed_the_user_group_limit(store: &dyn GroupStore) {
    let joiner = user(7);
    let mut groups = Vec::new();
    for owner in 11..=20 {
        let kind = if owner % 2 == 0 { GroupKind::Broadcast } else { GroupKind::Community };
        groups.push(create(store, kind, user(owner)).await);
    }
    let three = MembershipLimits { group_member_limit: None, user_group_limit: 3 };
    let attempts = groups.iter().map(|group| {
        let group_id = group.id;
        async move { store.add_members(group_id, &[joiner], JoinMethod::Direct, three, joiner, at(1)).await }
    });
    let outcomes = join_all(attempts).await;
    let joined = outcomes.iter().filter(|outcome| matches!(outcome, Ok(added) if added.added.len() == 1)).count();
    let refused = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Err(StoreError::UserGroupLimit { user: who, limit: 3 }) if *who == joiner))
        .count();
    assert_eq!((joined, refused), (3, 7), "{outcomes:?}");
    let joiner_groups = store.list_user_groups(joiner, None, PageSize::new(100)).await.unwrap();
    assert_eq!(joiner_groups.len(), 3);
    let mut members = 0;
    let mut joiner_joins = 0;
    for group in &groups {
        members += member_count(store, group.id).await;
        joiner_joins += joins(&changes(store, group.id).await).iter().filter(|(id, _)| *id == joiner.get()).count();
    }
    assert_eq!((members, joiner_joins), (10 + 3, 3));
    let another = create(store, GroupKind::Community, user(21)).await;
    let refused_again = store.add_members(another.id, &[joiner], JoinMethod::Direct, three, joiner, at(2)).await;
    assert!(matches!(refused_again, Err(StoreError::UserGroupLimit { .. })), "{refused_again:?}");
}

/// Simultaneous redemptions of an invite never exceed its `max_uses`.
pub async fn concurrent_redemptions_respect_max_uses(store: &dyn GroupStore) {
    let group = create(store, GroupKind::Community, user(1)).await;
    let five = store.create_invite(invite(&group, 5, at(1_000))).await.unwrap();
    let attempts = (10..30).map(|joiner| store.redeem_invite(&five.code, user(joiner), limits(group.kind), at(1)));
    let outcomes = join_all(attempts).await;
    let joined = outcomes.iter().filter(|outcome| matches!(outcome, Ok(Redemption::Joined(_)))).count();
    let exhausted = outcomes.iter().filter(|outcome| matches!(outcome, Err(StoreError::InviteExhausted(5)))).count();
    assert_eq!((joined, exhausted), (5, 15), "{outcomes:?}");
    assert_eq!(store.get_invite(&five.code).await.unwrap().map(|i| i.use_count), Some(5));
    assert_eq!(member_count(store, group.id).await, 6);
    let distinct: HashSet<i64> = joins(&changes(store, group.id).await).into_iter().map(|(id, _)| id).collect();
    assert_eq!(distinct.len(), 6);
}

/// A reachable store answers `ping`.
pub async fn ping_succeeds(store: &dyn GroupStore) {
    store.ping().await.expect("ping");
}
