//! The follow graph: follow, unfollow, the two newest-first listings, counters and batch
//! checks. The graph is public: anyone may list anyone's followers and follows.

use fanfare_core::ids::UserId;
use fanfare_core::paging::{Cursor, Page, PageSize};

use super::{FanoutService, now};
use crate::domain::rules::{check_follow, following_limit};
use crate::domain::{Follow, FollowCheck, FollowCounts, FollowKey};
use crate::error::{FanoutError, FanoutResult};
use crate::store::Followed;

/// The page token of a listing: the (followed_at in microseconds, user id) of its last edge.
fn cursor(key: FollowKey) -> Cursor {
    Cursor(vec![key.followed_at.timestamp_micros(), key.user.get()])
}

impl FanoutService {
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
}
