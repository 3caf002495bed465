//! The conformance suite: what every [`GroupStore`] must do, written once as async test
//! bodies and stamped out per implementation with [`conformance_tests!`]. One file per
//! area (the same areas as the PostgreSQL store's), what they share in `helpers`; the
//! tests and the public helpers are re-exported here, where the macro finds them.
//!
//! This is test support, compiled only with the `testing` feature (which this crate's tests
//! and any other crate's dev-dependency turn on): its functions panic through `assert!` when
//! a store misbehaves, and must never be called outside tests. Each test expects an empty store.
//! Times are fixed (see [`at`]), never read from the clock, so expiry is deterministic.
//!
//! [`conformance_tests!`]: crate::conformance_tests

mod concurrency;
mod groups;
mod helpers;
mod invites;
mod join_requests;
mod joins;
mod membership;
mod moderation;
mod outbox;

use super::{GroupStore, MemoryGroupStore, PostgresGroupStore};

pub use self::concurrency::*;
pub use self::groups::*;
pub use self::helpers::{CHAT_MEMBER_LIMIT, COMMUNITY_MEMBER_LIMIT, USER_GROUP_LIMIT, at, limits, new_group, user};
pub use self::invites::*;
pub use self::join_requests::*;
pub use self::joins::*;
pub use self::membership::*;
pub use self::moderation::*;
pub use self::outbox::*;

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
