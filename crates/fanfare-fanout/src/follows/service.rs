//! The follow graph's orchestration: follow, unfollow, the two newest-first listings,
//! counters and batch checks — which rules and limits apply, then one atomic store call.
//! Takes only validated values; the gRPC adapter parses requests and maps results. The
//! graph is public: anyone may list anyone's followers and follows.

use std::sync::Arc;

use fanfare_core::ids::UserId;
use fanfare_core::paging::{Cursor, Page, PageSize};
use fanfare_core::rate_limit::{SharedLimits, UserLimit};
use fanfare_core::time::now;

use super::domain::rules::{check_follow, following_limit};
use super::domain::{Follow, FollowCheck, FollowCounts, FollowKey};
use super::store::{FollowStore, Followed};
use crate::config::FollowLimits;
use crate::error::{FanoutError, FanoutResult, LimitedAction};

/// The follow graph, as the RPCs see it.
pub struct FollowService {
    store: Arc<dyn FollowStore>,
    limits: FollowLimits,
    change_limit: Option<UserLimit>,
}

/// The page token of a listing: the (followed_at in microseconds, user id) of its last edge.
fn cursor(key: FollowKey) -> Cursor {
    Cursor(vec![key.followed_at.timestamp_micros(), key.user.get()])
}

impl FollowService {
    /// A service over `store` enforcing `limits`, counting follow changes across pods when
    /// `shared` limits are given.
    pub fn new(store: Arc<dyn FollowStore>, limits: FollowLimits, shared: Option<Arc<dyn SharedLimits>>) -> Self {
        let change_limit =
            UserLimit::new("follow-changes", limits.user_changes_per_second, limits.user_changes_burst, shared);
        Self { store, limits, change_limit }
    }

    /// The largest batch of ids one call may carry.
    pub fn max_batch_size(&self) -> usize {
        self.limits.max_batch_size
    }

    /// Makes the actor follow `creator`; following again returns the existing edge.
    pub async fn follow(&self, actor: UserId, creator: UserId) -> FanoutResult<Followed> {
        check_follow(actor, creator).map_err(|violation| FanoutError::InvalidRequest(violation.into()))?;
        self.take_change_budget(actor).await?;
        let limit = following_limit(self.limits.max_following);
        let followed = self.store.follow(actor, creator, limit, now()).await?;
        if followed.created {
            tracing::debug!(follower = %actor, creator = %creator, "followed");
        }
        Ok(followed)
    }

    /// Makes the actor stop following `creator`; reports whether they were following.
    pub async fn unfollow(&self, actor: UserId, creator: UserId) -> FanoutResult<bool> {
        check_follow(actor, creator).map_err(|violation| FanoutError::InvalidRequest(violation.into()))?;
        self.take_change_budget(actor).await?;
        let removed = self.store.unfollow(actor, creator).await?;
        if removed {
            tracing::debug!(follower = %actor, creator = %creator, "unfollowed");
        }
        Ok(removed)
    }

    /// Lists `user`'s followers (the actor's when `None`), newest first.
    pub async fn list_followers(
        &self,
        actor: UserId,
        user: Option<UserId>,
        size: PageSize,
        before: Option<FollowKey>,
    ) -> FanoutResult<Page<Follow>> {
        let creator = user.unwrap_or(actor);
        let rows = self.store.list_followers(creator, before, size).await?;
        Ok(Page::from_overfetch(rows, size, |follow| cursor(follow.follower_key())))
    }

    /// Lists the creators `user` follows (the actor when `None`), newest first.
    pub async fn list_following(
        &self,
        actor: UserId,
        user: Option<UserId>,
        size: PageSize,
        before: Option<FollowKey>,
    ) -> FanoutResult<Page<Follow>> {
        let follower = user.unwrap_or(actor);
        let rows = self.store.list_following(follower, before, size).await?;
        Ok(Page::from_overfetch(rows, size, |follow| cursor(follow.following_key())))
    }

    /// The maintained counters of each of `users` (distinct), in their order.
    pub async fn get_follow_counts(&self, users: &[UserId]) -> FanoutResult<Vec<FollowCounts>> {
        Ok(self.store.get_counts(users).await?)
    }

    /// Whether `follower` (the actor when `None`) follows each of `creators` (distinct),
    /// in their order.
    pub async fn check_follows(
        &self,
        actor: UserId,
        follower: Option<UserId>,
        creators: &[UserId],
    ) -> FanoutResult<Vec<FollowCheck>> {
        let follower = follower.unwrap_or(actor);
        let found = self.store.get_follows(follower, creators).await?;
        let checks = creators.iter().map(|&creator| FollowCheck {
            creator,
            followed_at: found.iter().find(|follow| follow.creator == creator).map(|follow| follow.followed_at),
        });
        Ok(checks.collect())
    }

    /// Counts one change against the caller's rate limit.
    async fn take_change_budget(&self, actor: UserId) -> FanoutResult<()> {
        match &self.change_limit {
            Some(limit) => limit.check(actor).await.map_err(|retry_after| FanoutError::RateLimited {
                user: actor,
                action: LimitedAction::FollowChanges,
                retry_after,
            }),
            None => Ok(()),
        }
    }
}
