//! Where the follow graph lives: the [`FollowStore`] trait, with a PostgreSQL
//! implementation for production and an in-memory one for `fanfare dev` and fast tests. One
//! conformance suite (`conformance`, behind the `testing` feature) runs against both so
//! they cannot drift.
//!
//! Store methods are atomic: a follow or unfollow changes the edge and both users' counters
//! together or not at all. The store enforces what must hold under concurrency (one edge
//! per pair, exact counters, the following limit); the rules that need no data (nobody
//! follows themselves) are the service's and are checked before the store is called.

#[cfg(feature = "testing")]
pub mod conformance;
pub mod memory;
pub mod postgres;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::UserId;
use fanfare_core::paging::PageSize;

use crate::follows::domain::{Follow, FollowCounts, FollowKey};

pub use memory::MemoryFollowStore;
pub use postgres::PostgresFollowStore;

/// Why a store call did not change anything.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Following one more creator would exceed the user's following limit.
    #[error("user {user} already follows {limit} creators, the most one user may follow; unfollow someone first")]
    FollowingLimit {
        /// The follower.
        user: UserId,
        /// The limit.
        limit: u64,
    },
    /// The database could not be reached or failed the transaction.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: a bug or corrupt data.
    #[error("store failure")]
    Internal(#[source] anyhow::Error),
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// sqlx failures as the fanout stores (follows and jobs) report them, classified once for every store
/// (`fanfare_postgres::During`): an unreachable or overloaded database, or a transaction it
/// rolled back, is `Unavailable` and may be retried; anything else is `Internal`.
impl From<fanfare_postgres::Failure> for StoreError {
    fn from(failure: fanfare_postgres::Failure) -> Self {
        match failure {
            fanfare_postgres::Failure::Unavailable(cause) => Self::Unavailable(cause),
            fanfare_postgres::Failure::Internal(cause) => Self::Internal(cause),
        }
    }
}

/// What a follow did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Followed {
    /// The edge: the new one, or the existing one with its original time.
    pub follow: Follow,
    /// Whether this call created it (and counted it).
    pub created: bool,
}

/// Storage of follow edges and the counters maintained with them.
#[async_trait]
pub trait FollowStore: Send + Sync + 'static {
    /// Makes `follower` follow `creator` at `now`, counting the edge in the follower's
    /// `following` and the creator's `followers`. Idempotent: an existing edge is returned
    /// unchanged (original time, `created: false`, nothing counted, no limit check), also
    /// when a concurrent call of the same pair created it. Errors: `FollowingLimit` when a
    /// new edge would take the follower past `following_limit` (`None` is unlimited).
    /// `follower != creator` (debug-asserted; the service refuses it first).
    async fn follow(
        &self,
        follower: UserId,
        creator: UserId,
        following_limit: Option<u64>,
        now: DateTime<Utc>,
    ) -> StoreResult<Followed>;

    /// Removes the edge and uncounts it; reports whether there was one (idempotent).
    async fn unfollow(&self, follower: UserId, creator: UserId) -> StoreResult<bool>;

    /// The edges from `follower` to any of `creators`, in the order of `creators`; creators
    /// not followed are left out.
    async fn get_follows(&self, follower: UserId, creators: &[UserId]) -> StoreResult<Vec<Follow>>;

    /// `creator`'s followers by descending (followed_at, follower id), strictly before
    /// `before`, at most `limit + 1` rows (the extra row tells the caller there is more).
    async fn list_followers(
        &self,
        creator: UserId,
        before: Option<FollowKey>,
        limit: PageSize,
    ) -> StoreResult<Vec<Follow>>;

    /// The creators `follower` follows by descending (followed_at, creator id), strictly
    /// before `before`, at most `limit + 1` rows.
    async fn list_following(
        &self,
        follower: UserId,
        before: Option<FollowKey>,
        limit: PageSize,
    ) -> StoreResult<Vec<Follow>>;

    /// The counters of each of `users`, in their order (zeros for users with no edges).
    async fn get_counts(&self, users: &[UserId]) -> StoreResult<Vec<FollowCounts>>;

    /// Reports whether the store is reachable (for health).
    async fn ping(&self) -> StoreResult<()>;
}
