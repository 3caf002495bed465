//! The conformance suite: what every [`FollowStore`] must do, written once as async test
//! bodies and stamped out per implementation with [`follow_store_conformance_tests!`].
//!
//! This is test support, compiled only with the `testing` feature (which this crate's tests
//! and any other crate's dev-dependency turn on): its functions panic through `assert!` when
//! a store misbehaves, and must never be called outside tests. Each test expects an empty store.
//! Times are fixed (see [`at`]), never read from the clock.
//!
//! [`follow_store_conformance_tests!`]: crate::follow_store_conformance_tests

use chrono::{DateTime, Utc};
use fanfare_core::ids::UserId;
use fanfare_core::paging::PageSize;
use futures::future::join_all;

use super::{FollowStore, Followed, MemoryFollowStore, PostgresFollowStore, StoreError};
use crate::follows::domain::{Follow, FollowCounts, FollowKey};

/// The following limit in these tests, unless a test sets its own.
pub const FOLLOWING_LIMIT: Option<u64> = Some(10_000);

/// Something that holds a store under test (and whatever must live as long as it, such
/// as a throwaway database).
pub trait StoreFixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> &dyn FollowStore;
}

impl StoreFixture for MemoryFollowStore {
    fn store(&self) -> &dyn FollowStore {
        self
    }
}

impl StoreFixture for PostgresFollowStore {
    fn store(&self) -> &dyn FollowStore {
        self
    }
}

/// Stamps out one `#[tokio::test]` per conformance test. The argument is an expression
/// evaluated afresh for each test, yielding a future of a [`StoreFixture`] over an empty
/// store, e.g. `async { MemoryFollowStore::new() }`.
///
/// [`StoreFixture`]: crate::follows::store::conformance::StoreFixture
#[macro_export]
macro_rules! follow_store_conformance_tests {
    ($factory:expr) => {
        $crate::follow_store_conformance_tests!(@each $factory;
            follow_creates_an_edge_and_counts_both_ends,
            following_again_changes_nothing_and_keeps_the_first_time,
            unfollow_removes_and_uncounts_the_edge_once,
            following_again_after_unfollowing_makes_a_new_edge,
            get_follows_keeps_the_order_and_leaves_out_creators_not_followed,
            get_counts_keeps_the_order_and_counts_strangers_as_zero,
            list_followers_walks_newest_first_without_repeats_or_gaps,
            list_following_walks_newest_first_without_repeats_or_gaps,
            a_walk_survives_changes_between_pages,
            the_following_limit_is_exact_and_freed_by_unfollowing,
            concurrent_follows_of_one_creator_are_counted_exactly,
            concurrent_follows_of_one_pair_make_one_edge,
            concurrent_follows_never_pass_the_following_limit,
            concurrent_mutual_follows_and_unfollows_keep_counts_exact,
            ping_succeeds,
        );
    };
    (@each $factory:expr; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let fixture = $factory.await;
                $crate::follows::store::conformance::$test(
                    $crate::follows::store::conformance::StoreFixture::store(&fixture),
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

/// Follows with the test limit, expecting success.
pub async fn follow(store: &dyn FollowStore, follower: i64, creator: i64, now: DateTime<Utc>) -> Followed {
    store.follow(user(follower), user(creator), FOLLOWING_LIMIT, now).await.expect("follow succeeds")
}

/// One user's counters.
pub async fn counts(store: &dyn FollowStore, id: i64) -> FollowCounts {
    let mut counts = store.get_counts(&[user(id)]).await.expect("counts read");
    assert_eq!(counts.len(), 1, "one entry per user asked for");
    counts.remove(0)
}

/// (followers, following) of a user.
async fn count_pair(store: &dyn FollowStore, id: i64) -> (u64, u64) {
    let found = counts(store, id).await;
    (found.followers, found.following)
}

/// Which newest-first listing to walk.
#[derive(Debug, Clone, Copy)]
pub enum Listing {
    /// A creator's followers.
    Followers(i64),
    /// The creators a user follows.
    Following(i64),
}

impl Listing {
    async fn page(self, store: &dyn FollowStore, before: Option<FollowKey>, size: PageSize) -> Vec<Follow> {
        let rows = match self {
            Self::Followers(creator) => store.list_followers(user(creator), before, size).await,
            Self::Following(follower) => store.list_following(user(follower), before, size).await,
        };
        let rows = rows.expect("a page reads");
        assert!(rows.len() <= size.get() as usize + 1, "at most one row more than the page size");
        rows
    }

    fn key(self, follow: &Follow) -> FollowKey {
        match self {
            Self::Followers(_) => follow.follower_key(),
            Self::Following(_) => follow.following_key(),
        }
    }

    /// The user at the other end of an edge of this listing.
    fn other(self, follow: &Follow) -> i64 {
        match self {
            Self::Followers(_) => follow.follower.get(),
            Self::Following(_) => follow.creator.get(),
        }
    }
}

/// Walks a listing page by page, as a caller passing `next_page_token` along does (the
/// extra row of each page only says there is more), returning each page.
pub async fn walk(store: &dyn FollowStore, listing: Listing, size: u32) -> Vec<Vec<Follow>> {
    let size = PageSize::new(size);
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let mut rows = listing.page(store, before, size).await;
        let more = rows.len() > size.get() as usize;
        rows.truncate(size.get() as usize);
        before = rows.last().map(|last| listing.key(last));
        pages.push(rows);
        if !more {
            return pages;
        }
        assert!(pages.len() <= 10_000, "the walk ends");
    }
}

/// The other ends of a listing's edges, walked with pages of `size`.
async fn walked_ids(store: &dyn FollowStore, listing: Listing, size: u32) -> Vec<i64> {
    walk(store, listing, size).await.iter().flatten().map(|follow| listing.other(follow)).collect()
}

// ---------------------------------------------------------------------------------------
// Following and unfollowing

/// A new edge is returned with the time given (at the store's microsecond precision) and
/// counted at both ends.
pub async fn follow_creates_an_edge_and_counts_both_ends(store: &dyn FollowStore) {
    let now = at(0) + chrono::Duration::nanoseconds(1_234_567);
    let followed = follow(store, 2, 1, now).await;
    assert!(followed.created);
    let stored_now = at(0) + chrono::Duration::microseconds(1_234);
    assert_eq!(followed.follow, Follow { follower: user(2), creator: user(1), followed_at: stored_now });
    assert_eq!(count_pair(store, 1).await, (1, 0), "the creator has one follower");
    assert_eq!(count_pair(store, 2).await, (0, 1), "the follower follows one creator");

    let listed = store.list_followers(user(1), None, PageSize::new(10)).await.expect("followers list");
    assert_eq!(listed, [followed.follow], "the listing returns the same edge");
    let following = store.list_following(user(2), None, PageSize::new(10)).await.expect("following lists");
    assert_eq!(following, [followed.follow]);
    let checked = store.get_follows(user(2), &[user(1)]).await.expect("follows check");
    assert_eq!(checked, [followed.follow]);
    assert!(store.get_follows(user(1), &[user(2)]).await.expect("follows check").is_empty(), "edges are one-way");
}

/// Following twice returns the first edge, uncounted a second time.
pub async fn following_again_changes_nothing_and_keeps_the_first_time(store: &dyn FollowStore) {
    let first = follow(store, 2, 1, at(0)).await;
    let again = follow(store, 2, 1, at(60)).await;
    assert!(!again.created);
    assert_eq!(again.follow, first.follow, "the original time is kept");
    assert_eq!(count_pair(store, 1).await, (1, 0));
    assert_eq!(count_pair(store, 2).await, (0, 1));
    let listed = store.list_followers(user(1), None, PageSize::new(10)).await.expect("followers list");
    assert_eq!(listed.len(), 1);
}

/// Unfollowing removes the edge and uncounts it; a second unfollow reports nothing removed.
pub async fn unfollow_removes_and_uncounts_the_edge_once(store: &dyn FollowStore) {
    follow(store, 2, 1, at(0)).await;
    follow(store, 3, 1, at(1)).await;
    assert!(store.unfollow(user(2), user(1)).await.expect("unfollow"));
    assert!(!store.unfollow(user(2), user(1)).await.expect("a repeated unfollow"), "already removed");
    assert!(!store.unfollow(user(1), user(2)).await.expect("unfollowing an edge never made"));
    assert_eq!(count_pair(store, 1).await, (1, 0), "one follower left");
    assert_eq!(count_pair(store, 2).await, (0, 0));
    assert_eq!(count_pair(store, 3).await, (0, 1), "others are untouched");
    assert!(store.get_follows(user(2), &[user(1)]).await.expect("follows check").is_empty());
    assert_eq!(walked_ids(store, Listing::Followers(1), 10).await, [3]);
    assert!(walked_ids(store, Listing::Following(2), 10).await.is_empty());
}

/// A follow after an unfollow is a new edge, with the new time.
pub async fn following_again_after_unfollowing_makes_a_new_edge(store: &dyn FollowStore) {
    follow(store, 2, 1, at(0)).await;
    follow(store, 3, 1, at(5)).await;
    store.unfollow(user(2), user(1)).await.expect("unfollow");
    let again = follow(store, 2, 1, at(10)).await;
    assert!(again.created);
    assert_eq!(again.follow.followed_at, at(10));
    assert_eq!(count_pair(store, 1).await, (2, 0));
    assert_eq!(count_pair(store, 2).await, (0, 1));
    assert_eq!(walked_ids(store, Listing::Followers(1), 10).await, [2, 3], "the new edge is the newest");
}

// ---------------------------------------------------------------------------------------
// Batch reads

/// CheckFollows' store call: edges in the order of the creators asked about.
pub async fn get_follows_keeps_the_order_and_leaves_out_creators_not_followed(store: &dyn FollowStore) {
    follow(store, 9, 1, at(1)).await;
    follow(store, 9, 3, at(3)).await;
    follow(store, 9, 5, at(5)).await;
    follow(store, 8, 2, at(2)).await;
    let asked = [user(5), user(2), user(1), user(4), user(3)];
    let found = store.get_follows(user(9), &asked).await.expect("follows check");
    let found: Vec<(i64, DateTime<Utc>)> =
        found.iter().map(|follow| (follow.creator.get(), follow.followed_at)).collect();
    assert_eq!(found, [(5, at(5)), (1, at(1)), (3, at(3))], "creator 2 is followed by 8, not 9");
    assert!(found.len() < asked.len());
    assert!(store.get_follows(user(9), &[]).await.expect("an empty check").is_empty());
}

/// GetFollowCounts' store call: one entry per user, in order, zeros for strangers.
pub async fn get_counts_keeps_the_order_and_counts_strangers_as_zero(store: &dyn FollowStore) {
    for follower in 2..=20 {
        follow(store, follower, 1, at(follower)).await;
    }
    follow(store, 1, 2, at(100)).await;
    let asked = [user(99), user(2), user(1)];
    let counted = store.get_counts(&asked).await.expect("counts read");
    assert_eq!(
        counted,
        [
            FollowCounts { user: user(99), followers: 0, following: 0 },
            FollowCounts { user: user(2), followers: 1, following: 1 },
            FollowCounts { user: user(1), followers: 19, following: 1 },
        ]
    );
    assert!(store.get_counts(&[]).await.expect("an empty read").is_empty());
}

// ---------------------------------------------------------------------------------------
// Keyset walks

/// 40 followers of creator 1 at 10 distinct times, four per instant, plus edges of others.
async fn follow_in_bursts(store: &dyn FollowStore) -> Vec<(DateTime<Utc>, i64)> {
    let mut edges = Vec::new();
    // Ids in an order unrelated to time, so neither id nor insertion order alone is right.
    for follower in (2..=41).rev() {
        let followed_at = at((follower * 7) % 10);
        follow(store, follower, 1, followed_at).await;
        edges.push((followed_at, follower));
    }
    follow(store, 2, 100, at(50)).await;
    follow(store, 100, 1000, at(50)).await;
    edges
}

/// Followers newest first, ties broken by descending follower id, however small the pages.
pub async fn list_followers_walks_newest_first_without_repeats_or_gaps(store: &dyn FollowStore) {
    let mut edges = follow_in_bursts(store).await;
    edges.sort_by(|left, right| right.cmp(left));
    let expected: Vec<i64> = edges.iter().map(|(_, follower)| *follower).collect();
    for size in [1, 3, 4, 7, 40, 1_000] {
        let pages = walk(store, Listing::Followers(1), size).await;
        let walked: Vec<i64> = pages.iter().flatten().map(|follow| follow.follower.get()).collect();
        assert_eq!(walked, expected, "pages of {size}");
        assert_eq!(pages.len(), 40_usize.div_ceil(size as usize), "no empty trailing page with pages of {size}");
        assert!(pages.iter().flatten().all(|follow| follow.creator == user(1)));
    }
}

/// Creators followed newest first, ties broken by descending creator id.
pub async fn list_following_walks_newest_first_without_repeats_or_gaps(store: &dyn FollowStore) {
    let mut edges = Vec::new();
    for creator in (2..=31).rev() {
        let followed_at = at((creator * 3) % 5);
        follow(store, 1, creator, followed_at).await;
        edges.push((followed_at, creator));
    }
    follow(store, 2, 3, at(50)).await;
    edges.sort_by(|left, right| right.cmp(left));
    let expected: Vec<i64> = edges.iter().map(|(_, creator)| *creator).collect();
    for size in [1, 2, 6, 29, 30, 31] {
        let pages = walk(store, Listing::Following(1), size).await;
        let walked: Vec<i64> = pages.iter().flatten().map(|follow| follow.creator.get()).collect();
        assert_eq!(walked, expected, "pages of {size}");
        assert!(pages.iter().flatten().all(|follow| follow.follower == user(1)));
    }
    assert_eq!(walked_ids(store, Listing::Following(2), 1).await, [3]);
    assert!(walked_ids(store, Listing::Following(99), 1).await.is_empty(), "a user following nobody");
}

/// A cursor is a position, not an offset: new edges appear on no later page, removed ones
/// shift nothing, and no edge is returned twice.
pub async fn a_walk_survives_changes_between_pages(store: &dyn FollowStore) {
    for follower in 2..=11 {
        follow(store, follower, 1, at(follower)).await;
    }
    let size = PageSize::new(3);
    let listing = Listing::Followers(1);
    let first = listing.page(store, None, size).await;
    let first_ids: Vec<i64> = first.iter().take(3).map(|follow| follow.follower.get()).collect();
    assert_eq!(first_ids, [11, 10, 9]);
    let cursor = listing.key(&first[2]);

    follow(store, 50, 1, at(100)).await; // newer than the cursor: belongs before it
    store.unfollow(user(9), user(1)).await.expect("unfollow an edge already seen");
    store.unfollow(user(7), user(1)).await.expect("unfollow an edge not yet seen");
    follow(store, 60, 1, at(8)).await; // same instant as follower 8, higher id: sorts first

    let mut seen = first_ids;
    let mut before = Some(cursor);
    while let Some(key) = before {
        let mut rows = listing.page(store, Some(key), size).await;
        let more = rows.len() > 3;
        rows.truncate(3);
        seen.extend(rows.iter().map(|follow| follow.follower.get()));
        before = if more { rows.last().map(|last| listing.key(last)) } else { None };
    }
    assert_eq!(seen, [11, 10, 9, 60, 8, 6, 5, 4, 3, 2]);
}

// ---------------------------------------------------------------------------------------
// The following limit

/// A new edge past the limit is refused and changes nothing; an existing edge is returned
/// at the limit; unfollowing frees a place.
pub async fn the_following_limit_is_exact_and_freed_by_unfollowing(store: &dyn FollowStore) {
    let limit = Some(3);
    for creator in 11..=13 {
        store.follow(user(1), user(creator), limit, at(creator)).await.expect("within the limit");
    }
    let refused = store.follow(user(1), user(14), limit, at(20)).await;
    assert!(matches!(refused, Err(StoreError::FollowingLimit { limit: 3, .. })), "{refused:?}");
    assert_eq!(count_pair(store, 1).await, (0, 3));
    assert_eq!(count_pair(store, 14).await, (0, 0), "the refused edge was not counted");
    assert!(store.get_follows(user(1), &[user(14)]).await.expect("check").is_empty());

    let existing = store.follow(user(1), user(12), limit, at(30)).await.expect("an existing edge at the limit");
    assert!(!existing.created);
    assert_eq!(existing.follow.followed_at, at(12));

    // Other users have their own limit; the creators' follower counts are not limited.
    store.follow(user(2), user(14), limit, at(40)).await.expect("another user");
    store.unfollow(user(1), user(11)).await.expect("unfollow");
    store.follow(user(1), user(14), limit, at(50)).await.expect("room again after unfollowing");
    assert_eq!(count_pair(store, 1).await, (0, 3));
    assert_eq!(count_pair(store, 14).await, (2, 0));
    store.follow(user(1), user(15), None, at(60)).await.expect("no limit");
    assert_eq!(count_pair(store, 1).await, (0, 4));
}

// ---------------------------------------------------------------------------------------
// Concurrency

/// 50 users following one creator at once: every edge counted exactly once.
pub async fn concurrent_follows_of_one_creator_are_counted_exactly(store: &dyn FollowStore) {
    let attempts = (2..=51).map(|follower| store.follow(user(follower), user(1), FOLLOWING_LIMIT, at(1)));
    for outcome in join_all(attempts).await {
        assert!(outcome.expect("a concurrent follow succeeds").created);
    }
    assert_eq!(count_pair(store, 1).await, (50, 0));
    let mut walked = walked_ids(store, Listing::Followers(1), 7).await;
    assert_eq!(walked, (2..=51).rev().collect::<Vec<_>>(), "same instant: by descending id");
    walked.sort_unstable();
    walked.dedup();
    assert_eq!(walked.len(), 50);
    for follower in [2, 17, 51] {
        assert_eq!(count_pair(store, follower).await, (0, 1));
    }
}

/// 20 identical follows at once: one creates the edge, the others return it.
pub async fn concurrent_follows_of_one_pair_make_one_edge(store: &dyn FollowStore) {
    let attempts = (0..20).map(|offset| store.follow(user(2), user(1), FOLLOWING_LIMIT, at(offset)));
    let outcomes: Vec<Followed> =
        join_all(attempts).await.into_iter().map(|outcome| outcome.expect("a duplicate follow is no error")).collect();
    let created: Vec<&Followed> = outcomes.iter().filter(|outcome| outcome.created).collect();
    assert_eq!(created.len(), 1, "exactly one call created the edge");
    let edge = created[0].follow;
    assert!(outcomes.iter().all(|outcome| outcome.follow == edge), "every call returns the same edge");
    assert_eq!(count_pair(store, 1).await, (1, 0));
    assert_eq!(count_pair(store, 2).await, (0, 1));
}

/// One user following 20 creators at once with room for 10: exactly 10 edges.
pub async fn concurrent_follows_never_pass_the_following_limit(store: &dyn FollowStore) {
    let limit = Some(10);
    let attempts = (100..120).map(|creator| store.follow(user(1), user(creator), limit, at(1)));
    let mut created = 0;
    for outcome in join_all(attempts).await {
        match outcome {
            Ok(followed) => {
                assert!(followed.created);
                created += 1;
            }
            Err(StoreError::FollowingLimit { limit: 10, .. }) => {}
            Err(other) => panic!("unexpected failure: {other:?}"),
        }
    }
    assert_eq!(created, 10);
    assert_eq!(count_pair(store, 1).await, (0, 10));
    assert_eq!(walked_ids(store, Listing::Following(1), 3).await.len(), 10);
    let creators: Vec<UserId> = (100..120).map(user).collect();
    let followers: u64 = store.get_counts(&creators).await.expect("counts").iter().map(|found| found.followers).sum();
    assert_eq!(followers, 10, "refused follows counted no follower");
}

/// Users following and unfollowing each other at once (ids in one counter shard, so both
/// directions touch the same two counter rows): no deadlock, exact counts.
pub async fn concurrent_mutual_follows_and_unfollows_keep_counts_exact(store: &dyn FollowStore) {
    let users: Vec<i64> = (1..=6).map(|index| index * 16).collect();
    let pairs: Vec<(i64, i64)> = users
        .iter()
        .flat_map(|&follower| {
            users.iter().filter(move |&&creator| creator != follower).map(move |&creator| (follower, creator))
        })
        .collect();
    let follows = pairs.iter().map(|&(follower, creator)| store.follow(user(follower), user(creator), None, at(1)));
    for outcome in join_all(follows).await {
        outcome.expect("a mutual follow succeeds");
    }
    for &id in &users {
        assert_eq!(count_pair(store, id).await, (5, 5), "user {id} after following everyone");
    }
    // Everyone unfollows the users with a larger id while re-following the others.
    let changes = pairs.iter().map(|&(follower, creator)| async move {
        if creator > follower {
            store.unfollow(user(follower), user(creator)).await.map(|removed| assert!(removed))
        } else {
            store.follow(user(follower), user(creator), None, at(2)).await.map(|followed| assert!(!followed.created))
        }
    });
    for outcome in join_all(changes).await {
        outcome.expect("a concurrent change succeeds");
    }
    for (index, &id) in users.iter().enumerate() {
        let smaller = index as u64;
        let larger = 5 - smaller;
        assert_eq!(count_pair(store, id).await, (larger, smaller), "user {id}");
        assert_eq!(walked_ids(store, Listing::Followers(id), 2).await.len() as u64, larger);
    }
}

/// A healthy store answers a ping.
pub async fn ping_succeeds(store: &dyn FollowStore) {
    store.ping().await.expect("ping");
}
