//! The fanout service's orchestration: which rules and limits apply, then one atomic store
//! call. Takes only validated values; the gRPC adapter parses requests and maps results.
//!
//! The follow graph's methods live in `service/follows.rs`; live delivery and fan-out jobs
//! will sit beside it in their own files, sharing this type.

mod follows;

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use fanfare_core::ids::UserId;
use fanfare_core::rate_limit::{SharedLimits, UserLimit};

use crate::config::FollowLimits;
use crate::error::{FanoutError, FanoutResult};
use crate::store::FollowStore;

/// The fanout service.
pub struct FanoutService {
    store: Arc<dyn FollowStore>,
    limits: FollowLimits,
    change_limit: Option<UserLimit>,
}

/// The current time at the precision every store keeps (microseconds).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

impl FanoutService {
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

    /// Counts one change against the caller's rate limit.
    async fn take_change_budget(&self, actor: UserId) -> FanoutResult<()> {
        match &self.change_limit {
            Some(limit) => {
                limit.check(actor).await.map_err(|retry_after| FanoutError::RateLimited { user: actor, retry_after })
            }
            None => Ok(()),
        }
    }
}
