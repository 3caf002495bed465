//! The in-memory [`FollowStore`], for `fanfare dev` and fast tests: plain maps behind one
//! mutex, with the same semantics as PostgreSQL.
//!
//! Every method takes the lock once, checks everything a change needs, and only then
//! changes anything, which makes each call atomic. The lock is never held across an await.
//! Times are kept at microsecond precision, as PostgreSQL keeps them, so both stores return
//! equal values.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::UserId;
use fanfare_core::paging::PageSize;
use fanfare_core::time::stored_time;

use super::{FollowStore, Followed, StoreError, StoreResult};
use crate::follows::domain::{Follow, FollowCounts, FollowKey};

/// A [`FollowStore`] in memory; clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryFollowStore {
    state: Arc<Mutex<State>>,
}

impl MemoryFollowStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> StoreResult<MutexGuard<'_, State>> {
        // A panic while holding the lock may have left a change half-applied.
        self.state
            .lock()
            .map_err(|_| StoreError::Internal(anyhow::Error::msg("a panic poisoned the lock").context("memory store")))
    }
}

/// An entry of a newest-first index: (owner of the listing, followed_at, the other user).
type IndexEntry = (UserId, DateTime<Utc>, UserId);

#[derive(Debug, Default)]
struct State {
    /// Edge times by (creator, follower), as the `fanout.follows` primary key.
    edges: HashMap<(UserId, UserId), DateTime<Utc>>,
    /// (creator, followed_at, follower), as the `follows_by_creator` index.
    by_creator: BTreeSet<IndexEntry>,
    /// (follower, followed_at, creator), as the `follows_by_follower` index.
    by_follower: BTreeSet<IndexEntry>,
    /// The maintained counters; absent means zero.
    counts: HashMap<UserId, FollowCounts>,
}

impl State {
    fn counts_mut(&mut self, user: UserId) -> &mut FollowCounts {
        self.counts.entry(user).or_insert_with(|| FollowCounts::zero(user))
    }

    fn following(&self, user: UserId) -> u64 {
        self.counts.get(&user).map_or(0, |counts| counts.following)
    }
}

/// Up to `limit + 1` entries of `owner` in `index`, newest first, strictly before `before`.
fn newest_first(
    index: &BTreeSet<IndexEntry>,
    owner: UserId,
    before: Option<FollowKey>,
    limit: PageSize,
) -> Vec<IndexEntry> {
    let lowest = Bound::Included((owner, DateTime::<Utc>::MIN_UTC, UserId::from_trusted(1)));
    let highest = match before {
        Some(key) => Bound::Excluded((owner, key.followed_at, key.user)),
        None => Bound::Included((owner, DateTime::<Utc>::MAX_UTC, UserId::from_trusted(i64::MAX))),
    };
    index.range((lowest, highest)).rev().take(limit.get() as usize + 1).copied().collect()
}

#[async_trait]
impl FollowStore for MemoryFollowStore {
    async fn follow(
        &self,
        follower: UserId,
        creator: UserId,
        following_limit: Option<u64>,
        now: DateTime<Utc>,
    ) -> StoreResult<Followed> {
        debug_assert_ne!(follower, creator, "the service refuses self-follows");
        let now = stored_time(now);
        let mut state = self.lock()?;
        if let Some(&followed_at) = state.edges.get(&(creator, follower)) {
            return Ok(Followed { follow: Follow { follower, creator, followed_at }, created: false });
        }
        if let Some(limit) = following_limit
            && state.following(follower) >= limit
        {
            return Err(StoreError::FollowingLimit { user: follower, limit });
        }
        state.edges.insert((creator, follower), now);
        state.by_creator.insert((creator, now, follower));
        state.by_follower.insert((follower, now, creator));
        state.counts_mut(follower).following += 1;
        state.counts_mut(creator).followers += 1;
        Ok(Followed { follow: Follow { follower, creator, followed_at: now }, created: true })
    }

    async fn unfollow(&self, follower: UserId, creator: UserId) -> StoreResult<bool> {
        let mut state = self.lock()?;
        let Some(followed_at) = state.edges.remove(&(creator, follower)) else {
            return Ok(false);
        };
        state.by_creator.remove(&(creator, followed_at, follower));
        state.by_follower.remove(&(follower, followed_at, creator));
        let following = &mut state.counts_mut(follower).following;
        *following = following.saturating_sub(1);
        let followers = &mut state.counts_mut(creator).followers;
        *followers = followers.saturating_sub(1);
        Ok(true)
    }

    async fn get_follows(&self, follower: UserId, creators: &[UserId]) -> StoreResult<Vec<Follow>> {
        let state = self.lock()?;
        let found = creators.iter().filter_map(|&creator| {
            let followed_at = *state.edges.get(&(creator, follower))?;
            Some(Follow { follower, creator, followed_at })
        });
        Ok(found.collect())
    }

    async fn list_followers(
        &self,
        creator: UserId,
        before: Option<FollowKey>,
        limit: PageSize,
    ) -> StoreResult<Vec<Follow>> {
        let state = self.lock()?;
        let entries = newest_first(&state.by_creator, creator, before, limit);
        Ok(entries.into_iter().map(|(_, followed_at, follower)| Follow { follower, creator, followed_at }).collect())
    }

    async fn list_following(
        &self,
        follower: UserId,
        before: Option<FollowKey>,
        limit: PageSize,
    ) -> StoreResult<Vec<Follow>> {
        let state = self.lock()?;
        let entries = newest_first(&state.by_follower, follower, before, limit);
        Ok(entries.into_iter().map(|(_, followed_at, creator)| Follow { follower, creator, followed_at }).collect())
    }

    async fn get_counts(&self, users: &[UserId]) -> StoreResult<Vec<FollowCounts>> {
        let state = self.lock()?;
        Ok(users.iter().map(|&user| state.counts.get(&user).copied().unwrap_or(FollowCounts::zero(user))).collect())
    }

    async fn ping(&self) -> StoreResult<()> {
        self.lock().map(drop)
    }
}
