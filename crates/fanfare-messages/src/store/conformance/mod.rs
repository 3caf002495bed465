//! The conformance suite: what every [`MessageStore`] must do, written once as async test
//! bodies and stamped out per implementation with [`message_store_conformance_tests!`].
//! One file per area, what they share in `helpers`; the tests and the public helpers
//! are re-exported here, where the macro finds them.
//!
//! This is test support, compiled only with the `testing` feature (which this crate's tests
//! and any other crate's dev-dependency turn on): its functions panic through `assert!` when
//! a store misbehaves, and must never be called outside tests. Each test expects an empty store.
//! Times are fixed (see [`at`]), never read from the clock, so windows and leases are
//! deterministic.
//!
//! [`message_store_conformance_tests!`]: crate::message_store_conformance_tests

mod changes;
mod helpers;
mod outbox;
mod posting;
mod reactions;
mod reading;

use super::{MemoryMessageStore, MessageStore, PostgresMessageStore};

pub use self::changes::*;
pub use self::helpers::{
    apply_one, at, emoji, event_seq, group, message_seq, message_seqs, new_message, post, text, user,
};
pub use self::outbox::*;
pub use self::posting::*;
pub use self::reactions::*;
pub use self::reading::*;

/// Something that holds a store under test (and whatever must live as long as it, such
/// as a throwaway database).
pub trait StoreFixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> &dyn MessageStore;
}

impl StoreFixture for MemoryMessageStore {
    fn store(&self) -> &dyn MessageStore {
        self
    }
}

impl StoreFixture for PostgresMessageStore {
    fn store(&self) -> &dyn MessageStore {
        self
    }
}

/// Stamps out one `#[tokio::test]` per conformance test. The argument is an expression
/// evaluated afresh for each test, yielding a future of a [`StoreFixture`] over an empty
/// store, e.g. `async { MemoryMessageStore::new() }`.
///
/// [`StoreFixture`]: crate::store::conformance::StoreFixture
#[macro_export]
macro_rules! message_store_conformance_tests {
    ($factory:expr) => {
        $crate::message_store_conformance_tests!(@each $factory;
            posts_take_gapless_seqs_and_read_back,
            content_round_trips_through_the_store_and_the_log,
            a_retry_with_the_same_content_returns_the_original,
            a_retry_with_other_content_is_a_conflict,
            the_same_key_twice_in_one_batch_makes_one_message,
            a_mixed_batch_is_gapless_and_refused_writes_take_no_seq,
            concurrent_posts_to_one_group_are_gapless,
            concurrent_batches_over_several_groups_are_gapless_per_group,
            slow_mode_spaces_a_senders_posts,
            replies_need_an_existing_target,
            edits_need_the_sender_a_live_message_and_the_window,
            deletes_make_tombstones_once_and_moderators_may_delete,
            purge_tombstones_a_users_messages_since_a_time,
            a_large_purge_is_listed_by_bounded_updates,
            reactions_add_and_remove_idempotently,
            reactions_are_limited_to_distinct_emojis,
            reaction_updates_are_appended_only_when_asked,
            pins_toggle_once_and_respect_the_limit,
            deleted_messages_refuse_edits_reactions_and_pins,
            missing_messages_are_not_found_by_every_kind,
            system_events_are_idempotent_on_the_source_and_outbox_id,
            list_messages_pages_both_ways,
            list_messages_skips_messages_before_not_before,
            get_messages_skip_unknown_seqs_and_ids,
            get_updates_pages_the_log_and_reports_the_position,
            log_positions_keep_the_order_asked,
            mark_read_never_goes_backwards_and_is_clamped,
            unread_counts_count_messages_and_mentions,
            a_batch_returns_what_it_appended_and_leaves_it_unpublished,
            unpublished_updates_page_in_order_and_acks_remove_them,
            orphaned_lanes_and_their_leases,
            prune_drops_old_updates_and_raises_the_oldest_retained,
            prune_keeps_updates_still_waiting_in_the_outbox,
            an_empty_batch_writes_nothing,
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
