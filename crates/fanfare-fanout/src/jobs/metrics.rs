//! The metrics of fan-out jobs: names, help text, and the few helpers that record them.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use super::domain::JobState;

/// Jobs created by StartFanoutJob (a repeated key creates none).
pub const JOBS_STARTED_TOTAL: &str = "fanfare_fanout_jobs_started_total";
/// Jobs that finished, by final `state` (`succeeded`, `cancelled`).
pub const JOBS_FINISHED_TOTAL: &str = "fanfare_fanout_jobs_finished_total";
/// Jobs this pod's workers are running now.
pub const JOBS_RUNNING: &str = "fanfare_fanout_jobs_running";
/// Notifications appended to the push stream.
pub const FOLLOWERS_NOTIFIED_TOTAL: &str = "fanfare_fanout_job_followers_notified_total";
/// Pages of followers handled, by `outcome` (`appended`, `replayed`).
pub const PAGES_TOTAL: &str = "fanfare_fanout_job_pages_total";
/// Jobs taken over from a worker whose lease ran out.
pub const LEASE_TAKEOVERS_TOTAL: &str = "fanfare_fanout_job_lease_takeovers_total";
/// Jobs a worker stopped because another worker had taken them over.
pub const LEASES_LOST_TOTAL: &str = "fanfare_fanout_job_leases_lost_total";
/// Pages whose live publish failed (the push stream still has them).
pub const LIVE_PUBLISH_FAILURES_TOTAL: &str = "fanfare_fanout_job_live_publish_failures_total";
/// Page attempts that failed on the store or the push stream and were retried.
pub const PAGE_FAILURES_TOTAL: &str = "fanfare_fanout_job_page_failures_total";

/// Describes the jobs' metrics (help text and units); call after the recorder is installed.
pub fn describe() {
    describe_counter!(JOBS_STARTED_TOTAL, Unit::Count, "Fan-out jobs created by StartFanoutJob.");
    describe_counter!(JOBS_FINISHED_TOTAL, Unit::Count, "Fan-out jobs finished, by final state.");
    describe_gauge!(JOBS_RUNNING, Unit::Count, "Fan-out jobs this pod's workers are running.");
    describe_counter!(FOLLOWERS_NOTIFIED_TOTAL, Unit::Count, "Follower notifications appended to the push stream.");
    describe_counter!(
        PAGES_TOTAL,
        Unit::Count,
        "Pages of followers handled by fan-out jobs, by outcome: appended, or replayed after a crash (nothing written)."
    );
    describe_counter!(
        LEASE_TAKEOVERS_TOTAL,
        Unit::Count,
        "Fan-out jobs taken over after their worker's lease ran out."
    );
    describe_counter!(
        LEASES_LOST_TOTAL,
        Unit::Count,
        "Fan-out jobs a worker stopped because another worker had taken them over."
    );
    describe_counter!(
        LIVE_PUBLISH_FAILURES_TOTAL,
        Unit::Count,
        "Pages of job notifications that could not be published live (the push stream has them)."
    );
    describe_counter!(
        PAGE_FAILURES_TOTAL,
        Unit::Count,
        "Fan-out job pages that failed on Postgres or Redis and were retried."
    );
}

/// Counts a job that reached a final state.
pub fn job_finished(state: JobState) {
    debug_assert!(state.is_finished());
    let label = match state {
        JobState::Succeeded => "succeeded",
        JobState::Cancelled => "cancelled",
        JobState::Pending | JobState::Running => "unfinished",
    };
    counter!(JOBS_FINISHED_TOTAL, "state" => label).increment(1);
}

/// Holds one unit of the running-jobs gauge for as long as it lives (also when the worker's
/// task is aborted mid-job).
pub struct RunningJob(());

impl RunningJob {
    /// Counts a job as running.
    pub fn start() -> Self {
        gauge!(JOBS_RUNNING).increment(1.0);
        Self(())
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        gauge!(JOBS_RUNNING).decrement(1.0);
    }
}
