//! The fanout service's own metrics: their names, their help text and units, and the few
//! helpers that record them. The names and labels are part of the service's interface
//! (docs/operations.md, "Metrics"; the dashboards and alerts in deploy/); the gRPC and
//! rate-limit metrics every service shares are described in `fanfare_core::metrics`.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::jobs::domain::JobState;

// ---------------------------------------------------------------------------------------
// Live delivery

/// `Subscribe` streams open on this pod.
pub const STREAMS_OPEN: &str = "fanfare_fanout_streams_open";
/// Bus channels (groups and users) this pod listens to for its streams.
pub const BUS_CHANNELS: &str = "fanfare_fanout_bus_channels";
/// Updates handed to local streams' inboxes.
pub const DISPATCHED_TOTAL: &str = "fanfare_fanout_dispatched_total";
/// Updates sent on streams, live and repaired.
pub const DELIVERIES_TOTAL: &str = "fanfare_fanout_deliveries_total";
/// Updates not queued because a stream's inbox was full.
pub const STREAM_OVERFLOWS_TOTAL: &str = "fanfare_fanout_stream_overflows_total";
/// Catch-ups from the update log, by `reason` (`jump`, `overflow`, `bus`, `log_reissued`).
pub const GAP_REPAIRS_TOTAL: &str = "fanfare_fanout_gap_repairs_total";
/// Updates that arrived ahead of their predecessor and were held, by `outcome` (`filled`,
/// `timed_out`).
pub const REORDERS_TOTAL: &str = "fanfare_fanout_reorders_total";
/// Gaps the bus reported to this pod, by `reason` (`disconnected`, `lagged`).
pub const BUS_GAPS_TOTAL: &str = "fanfare_fanout_bus_gaps_total";
/// Streams asked to reconnect because they kept falling behind.
pub const CATCH_UP_LIMITED_TOTAL: &str = "fanfare_fanout_catch_up_limited_total";
/// Fan-out notifications delivered live to local streams.
pub const NOTIFICATIONS_DELIVERED_TOTAL: &str = "fanfare_fanout_notifications_delivered_total";
/// Fan-out notifications not delivered live because the stream's inbox was full.
pub const NOTIFICATIONS_DROPPED_TOTAL: &str = "fanfare_fanout_notifications_dropped_total";
/// Undecodable or mismatched updates received from the bus.
pub const BAD_PAYLOADS_TOTAL: &str = "fanfare_fanout_bad_payloads_total";

// ---------------------------------------------------------------------------------------
// Fan-out jobs

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

/// Describes the service's metrics (help text and units); called once when the service
/// starts ([`crate::serve`]), after the process installed its recorder.
pub fn describe() {
    // Its Postgres pool's, recorded only when it runs on Postgres.
    fanfare_postgres::metrics::describe();
    describe_live();
    describe_jobs();
}

fn describe_live() {
    describe_gauge!(STREAMS_OPEN, Unit::Count, "Subscribe streams open on this pod.");
    describe_gauge!(BUS_CHANNELS, Unit::Count, "Bus channels this pod subscribes to for its streams.");
    describe_counter!(DISPATCHED_TOTAL, Unit::Count, "Updates handed to local streams' inboxes.");
    describe_counter!(DELIVERIES_TOTAL, Unit::Count, "Updates sent on streams (live and repaired).");
    describe_counter!(
        STREAM_OVERFLOWS_TOTAL,
        Unit::Count,
        "Updates not queued because a stream's inbox was full (the stream catches up from the log)."
    );
    describe_counter!(
        GAP_REPAIRS_TOTAL,
        Unit::Count,
        "Catch-ups from the update log, by reason: jump (a hole in event_seq), overflow, bus (outage or lag), \
         log_reissued (the log went back)."
    );
    describe_counter!(
        REORDERS_TOTAL,
        Unit::Count,
        "Updates that arrived ahead of their predecessor and were held, by outcome: filled (the hole closed in \
         time) or timed_out."
    );
    describe_counter!(BUS_GAPS_TOTAL, Unit::Count, "Bus gaps reported to this pod, by reason.");
    describe_counter!(
        CATCH_UP_LIMITED_TOTAL,
        Unit::Count,
        "Streams asked to reconnect because they kept falling behind (FANFARE_FANOUT_STREAM_CATCH_UPS_*)."
    );
    describe_counter!(
        NOTIFICATIONS_DELIVERED_TOTAL,
        Unit::Count,
        "Fan-out notifications delivered live to local streams."
    );
    describe_counter!(
        NOTIFICATIONS_DROPPED_TOTAL,
        Unit::Count,
        "Fan-out notifications not delivered live because the stream's inbox was full (the push stream has them)."
    );
    describe_counter!(BAD_PAYLOADS_TOTAL, Unit::Count, "Undecodable updates received from the bus.");
}

fn describe_jobs() {
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
