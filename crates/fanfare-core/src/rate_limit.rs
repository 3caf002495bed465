//! Per-user request rate limits, answering with the wait a caller should observe before
//! retrying.
//!
//! [`UserRateLimiter`] counts on this pod alone (GCRA through `governor`). [`UserLimit`] is
//! what services use: the same check on this pod first (a user over the limit here is over
//! it everywhere), then, when the deployment has a shared store ([`SharedLimits`], Redis),
//! the same quota counted across every pod. When the shared store cannot answer within
//! [`SHARED_LIMIT_TIMEOUT`], the pod's own count is the limit (counted in
//! [`RATE_LIMIT_FALLBACKS_TOTAL`]): a user then gets at most the quota on each pod.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

use crate::ids::UserId;

/// How long the shared store may take before the pod's own count decides alone.
pub const SHARED_LIMIT_TIMEOUT: Duration = Duration::from_millis(50);
/// Counter of calls refused by a rate limit, labelled `action` and `scope` (`pod` or
/// `shared`).
pub const RATE_LIMITED_TOTAL: &str = "fanfare_rate_limited_total";
/// Counter of checks the shared store could not answer, decided by the pod alone, labelled
/// `action`.
pub const RATE_LIMIT_FALLBACKS_TOTAL: &str = "fanfare_rate_limit_fallbacks_total";

/// A sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitQuota {
    /// Time per unit, sustained (one second for 1/s).
    pub interval: Duration,
    /// Units that may be taken at once after a quiet spell.
    pub burst: NonZeroU32,
}

impl LimitQuota {
    /// `per_second` sustained with bursts of `burst` (at least 1); `None` when `per_second`
    /// is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Self::per_period(per_second, Duration::from_secs(1), burst)
    }

    /// `per_minute` sustained with bursts of `burst` (at least 1); `None` when `per_minute`
    /// is 0 (no limit).
    pub fn per_minute(per_minute: u32, burst: u32) -> Option<Self> {
        Self::per_period(per_minute, Duration::from_secs(60), burst)
    }

    fn per_period(count: u32, period: Duration, burst: u32) -> Option<Self> {
        let count = NonZeroU32::new(count)?;
        let interval = (period / count.get()).max(Duration::from_micros(1));
        Some(Self { interval, burst: NonZeroU32::new(burst.max(1))? })
    }
}

/// Limits counted once for every pod of a deployment (Redis, in production).
#[async_trait]
pub trait SharedLimits: Send + Sync + 'static {
    /// Takes one unit of `key` under `quota`: `Ok(Ok(()))` when allowed, `Ok(Err(wait))`
    /// when not (retry after `wait`), `Err` when the store cannot answer.
    async fn take(&self, key: &str, quota: LimitQuota) -> anyhow::Result<Result<(), Duration>>;
}

/// One per-user limit of one action (`sends`, `reactions`, `jobs`, …), counted on this pod and,
/// when there is a shared store, across pods.
pub struct UserLimit {
    action: &'static str,
    quota: LimitQuota,
    local: UserRateLimiter,
    shared: Option<Arc<dyn SharedLimits>>,
}

impl std::fmt::Debug for UserLimit {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UserLimit")
            .field("action", &self.action)
            .field("quota", &self.quota)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl UserLimit {
    /// The limit of `action` at `per_second` with bursts of `burst`, shared through `shared`
    /// when given; `None` when `per_second` is 0 (no limit).
    pub fn new(
        action: &'static str,
        per_second: u32,
        burst: u32,
        shared: Option<Arc<dyn SharedLimits>>,
    ) -> Option<Self> {
        Self::with_quota(action, LimitQuota::new(per_second, burst)?, shared)
    }

    /// The limit of `action` at `quota`, shared through `shared` when given.
    pub fn with_quota(action: &'static str, quota: LimitQuota, shared: Option<Arc<dyn SharedLimits>>) -> Option<Self> {
        let local = UserRateLimiter::with_quota(quota)?;
        Some(Self { action, quota, local, shared })
    }

    /// The action limited, as named in metrics and errors.
    pub fn action(&self) -> &'static str {
        self.action
    }

    /// Takes one unit for `user`, or says how long until one is available.
    pub async fn check(&self, user: UserId) -> Result<(), Duration> {
        if let Err(wait) = self.local.check(user) {
            ::metrics::counter!(RATE_LIMITED_TOTAL, "action" => self.action, "scope" => "pod").increment(1);
            return Err(wait);
        }
        let Some(shared) = &self.shared else { return Ok(()) };
        let key = format!("limit:{}:{}", self.action, user.get());
        match tokio::time::timeout(SHARED_LIMIT_TIMEOUT, shared.take(&key, self.quota)).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(wait))) => {
                ::metrics::counter!(RATE_LIMITED_TOTAL, "action" => self.action, "scope" => "shared").increment(1);
                Err(wait)
            }
            Ok(Err(_)) | Err(_) => {
                ::metrics::counter!(RATE_LIMIT_FALLBACKS_TOTAL, "action" => self.action).increment(1);
                Ok(())
            }
        }
    }
}

/// Keys kept before idle ones are dropped, so the limiter's memory stays bounded.
const RETAIN_THRESHOLD: usize = 100_000;

/// A sustained rate per user with a burst allowance.
pub struct UserRateLimiter {
    limiter: RateLimiter<UserId, governor::state::keyed::DefaultKeyedStateStore<UserId>, DefaultClock>,
    clock: DefaultClock,
}

impl std::fmt::Debug for UserRateLimiter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("UserRateLimiter").finish_non_exhaustive()
    }
}

impl UserRateLimiter {
    /// A limiter of `per_second` sustained with bursts of `burst`; `None` when
    /// `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Self::with_quota(LimitQuota::new(per_second, burst)?)
    }

    /// A limiter of `quota`; `None` if its interval is zero.
    pub fn with_quota(quota: LimitQuota) -> Option<Self> {
        let quota = Quota::with_period(quota.interval)?.allow_burst(quota.burst);
        Some(Self { limiter: RateLimiter::keyed(quota), clock: DefaultClock::default() })
    }

    /// Takes one unit for `user`, or says how long until one is available.
    pub fn check(&self, user: UserId) -> Result<(), Duration> {
        if self.limiter.len() > RETAIN_THRESHOLD {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&user).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_wait_is_named() {
        let limiter = UserRateLimiter::new(1, 3).expect("a limit");
        let user = UserId::from_trusted(1);
        for _ in 0..3 {
            assert!(limiter.check(user).is_ok());
        }
        let wait = limiter.check(user).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiter.check(UserId::from_trusted(2)).is_ok(), "other users are unaffected");
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(UserRateLimiter::new(0, 10).is_none());
        assert!(UserLimit::new("sends", 0, 10, None).is_none());
    }

    /// A shared store that counts in process, or fails, or hangs, as told.
    struct FakeShared {
        answer: std::sync::Mutex<Option<Result<(), Duration>>>,
        hang: bool,
        keys: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait]
    impl SharedLimits for FakeShared {
        async fn take(&self, key: &str, _quota: LimitQuota) -> anyhow::Result<Result<(), Duration>> {
            self.keys.lock().expect("not poisoned").push(key.to_owned());
            if self.hang {
                std::future::pending::<()>().await;
            }
            self.answer.lock().expect("not poisoned").ok_or_else(|| anyhow::anyhow!("store away"))
        }
    }

    fn fake(answer: Option<Result<(), Duration>>, hang: bool) -> Arc<FakeShared> {
        Arc::new(FakeShared { answer: std::sync::Mutex::new(answer), hang, keys: std::sync::Mutex::default() })
    }

    #[tokio::test]
    async fn the_shared_count_decides_after_the_pods_own() {
        let user = UserId::from_trusted(7);
        let refusing = fake(Some(Err(Duration::from_millis(300))), false);
        let limit = UserLimit::new("reactions", 1, 3, Some(refusing.clone())).expect("a limit");
        assert_eq!(limit.check(user).await, Err(Duration::from_millis(300)), "the other pods used the quota");
        assert_eq!(refusing.keys.lock().expect("not poisoned").as_slice(), ["limit:reactions:7"]);

        // The pod's own count refuses without asking the store.
        let allowing = fake(Some(Ok(())), false);
        let limit = UserLimit::new("reactions", 1, 2, Some(allowing.clone())).expect("a limit");
        assert!(limit.check(user).await.is_ok() && limit.check(user).await.is_ok());
        assert!(limit.check(user).await.is_err());
        assert_eq!(allowing.keys.lock().expect("not poisoned").len(), 2);
    }

    #[tokio::test]
    async fn without_an_answer_from_the_shared_store_the_pod_decides() {
        let user = UserId::from_trusted(7);
        for store in [fake(None, false), fake(None, true)] {
            let limit = UserLimit::new("sends", 1, 2, Some(store)).expect("a limit");
            assert!(limit.check(user).await.is_ok(), "a failing or hanging store lets the pod decide");
            assert!(limit.check(user).await.is_ok());
            assert!(limit.check(user).await.is_err(), "the pod's own count still holds");
        }
    }
}
