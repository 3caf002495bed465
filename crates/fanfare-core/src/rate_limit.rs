//! Per-user request rate limits (GCRA through `governor`), answering with the wait a
//! caller should observe before retrying.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

use crate::ids::UserId;

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
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
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
    }
}
