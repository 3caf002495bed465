//! Pacing a job to its rate limit, page by page. Pure arithmetic, unit-tested here.
//!
//! A page of `n` followers may take no less than `n / rate` seconds: the worker measures
//! from the moment it starts reading the page and, once the page is appended, waits for the
//! rest of that time before checkpointing and reading the next. The average rate therefore
//! never exceeds the limit (work and waiting add up to the page's share of time), and a page
//! that took longer than its share is not "made up for" by a burst afterwards.
//!
//! A page must also end well within the lease, since only the checkpoint after it renews
//! the lease: pages are cut to what the job may send in a third of the lease.

use std::time::Duration;

use super::domain::Rate;

/// Fraction of the lease one page may take at the job's rate.
const PAGE_SHARE_OF_LEASE: u64 = 3;

/// The page size a job runs with: the configured size, lowered so that one page at `rate`
/// lasts at most a third of `lease` (and never below one follower).
pub fn page_size(configured: u32, rate: Rate, lease: Duration) -> u32 {
    let per_lease_share = u64::from(rate.get()).saturating_mul(lease.as_secs().max(1)) / PAGE_SHARE_OF_LEASE;
    let cap = u32::try_from(per_lease_share).unwrap_or(u32::MAX).max(1);
    configured.clamp(1, cap)
}

/// How long to wait after a page of `count` followers that took `elapsed` so far, so the
/// page lasts at least `count / rate`.
pub fn pause_after_page(count: u64, rate: Rate, elapsed: Duration) -> Duration {
    let share = Duration::from_secs_f64(count as f64 / f64::from(rate.get()));
    share.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: u32) -> Rate {
        Rate::from_trusted(per_second)
    }

    #[test]
    fn pages_fit_a_third_of_the_lease_at_the_jobs_rate() {
        let lease = Duration::from_secs(30);
        assert_eq!(page_size(1_000, rate(50_000), lease), 1_000, "fast jobs keep the configured size");
        assert_eq!(page_size(1_000, rate(60), lease), 600, "60/s for 10 s");
        assert_eq!(page_size(1_000, rate(1), lease), 10);
        assert_eq!(page_size(1_000, rate(1), Duration::from_secs(1)), 1, "never below one follower");
        assert_eq!(page_size(0, rate(10), lease), 1);
    }

    #[test]
    fn a_page_waits_for_the_rest_of_its_share_of_time() {
        let hundred_per_second = rate(100);
        assert_eq!(pause_after_page(50, hundred_per_second, Duration::from_millis(100)), Duration::from_millis(400));
        assert_eq!(pause_after_page(50, hundred_per_second, Duration::from_millis(700)), Duration::ZERO);
        assert_eq!(pause_after_page(0, hundred_per_second, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_average_rate_holds_over_many_pages() {
        // 20 pages of 100 at 1,000/s, each taking 30 ms of work: 2 s in all.
        let limit = rate(1_000);
        let work = Duration::from_millis(30);
        let total: Duration = (0..20).map(|_| work + pause_after_page(100, limit, work)).sum();
        let average = 2_000.0 / total.as_secs_f64();
        assert!((average - 1_000.0).abs() < 1.0, "{average}");
    }
}
