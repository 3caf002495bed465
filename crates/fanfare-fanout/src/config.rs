//! Configuration of the fanout service: the shared server settings, the limits of the
//! follow graph, live delivery and fan-out jobs, each with a named default and an
//! environment override.

use clap::Args;
use fanfare_core::config::{DependencyConfig, ServerConfig};

/// Default number of creators one user may follow.
pub const DEFAULT_MAX_FOLLOWING: u64 = 10_000;
/// Default largest batch of ids in GetFollowCounts and CheckFollows.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 100;
/// Default sustained rate of follows and unfollows one user may make, per second.
pub const DEFAULT_USER_CHANGES_PER_SECOND: u32 = 10;
/// Default burst of follows and unfollows one user may make at once.
pub const DEFAULT_USER_CHANGES_BURST: u32 = 20;

/// Limits of the follow graph.
#[derive(Debug, Clone, Args)]
pub struct FollowLimits {
    /// Creators one user may follow (0 = unlimited).
    #[arg(long, env = "FANFARE_FANOUT_MAX_FOLLOWING", default_value_t = DEFAULT_MAX_FOLLOWING)]
    pub max_following: u64,

    /// Largest batch of ids in GetFollowCounts and CheckFollows.
    #[arg(long, env = "FANFARE_FANOUT_MAX_BATCH_SIZE", default_value_t = DEFAULT_MAX_BATCH_SIZE)]
    pub max_batch_size: usize,

    /// Sustained follows and unfollows per second one user may make; 0 = no limit.
    #[arg(long, env = "FANFARE_FANOUT_USER_CHANGES_PER_SECOND", default_value_t = DEFAULT_USER_CHANGES_PER_SECOND)]
    pub user_changes_per_second: u32,

    /// Burst of follows and unfollows one user may make at once.
    #[arg(long, env = "FANFARE_FANOUT_USER_CHANGES_BURST", default_value_t = DEFAULT_USER_CHANGES_BURST)]
    pub user_changes_burst: u32,
}

impl Default for FollowLimits {
    fn default() -> Self {
        Self {
            max_following: DEFAULT_MAX_FOLLOWING,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            user_changes_per_second: DEFAULT_USER_CHANGES_PER_SECOND,
            user_changes_burst: DEFAULT_USER_CHANGES_BURST,
        }
    }
}

/// Where the groups service answers unless configured otherwise.
pub const DEFAULT_GROUPS_URL: &str = "http://127.0.0.1:50051";
/// Where the messages service answers unless configured otherwise.
pub const DEFAULT_MESSAGES_URL: &str = "http://127.0.0.1:50052";
/// Default number of deliveries one stream may have queued before it is marked behind.
pub const DEFAULT_STREAM_QUEUE_CAPACITY: usize = 256;
/// Default time between heartbeats on an idle stream, in milliseconds.
pub const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
/// Default number of updates read per GetUpdates call when a stream catches up.
pub const DEFAULT_BACKFILL_PAGE_SIZE: i32 = 500;
/// Default pause a client is asked to make before reconnecting, in milliseconds.
pub const DEFAULT_RECONNECT_AFTER_MS: u32 = 1_000;
/// Default largest number of groups one stream carries.
pub const DEFAULT_MAX_GROUPS_PER_STREAM: usize = 10_000;
/// Default most streams one user may hold open on one pod.
pub const DEFAULT_MAX_STREAMS_PER_USER: usize = 8;
/// Default catch-up rounds one stream may make per minute, sustained.
pub const DEFAULT_STREAM_CATCH_UPS_PER_MINUTE: u32 = 30;
/// Default catch-up rounds one stream may make in a burst.
pub const DEFAULT_STREAM_CATCH_UP_BURST: u32 = 10;
/// Default Subscribe calls one user may make per minute, sustained.
pub const DEFAULT_USER_SUBSCRIBES_PER_MINUTE: u32 = 60;
/// Default Subscribe calls one user may make at once.
pub const DEFAULT_USER_SUBSCRIBES_BURST: u32 = 20;

/// Live delivery (`Subscribe`): the services it reads from and the per-stream limits.
#[derive(Debug, Clone, Args)]
pub struct LiveConfig {
    /// Where the groups service answers (a user's groups).
    #[arg(long, env = "FANFARE_GROUPS_URL", default_value = DEFAULT_GROUPS_URL)]
    pub groups_url: String,

    /// Where the messages service answers (the update log, for catching up).
    #[arg(long, env = "FANFARE_MESSAGES_URL", default_value = DEFAULT_MESSAGES_URL)]
    pub messages_url: String,

    /// Deliveries one stream may have queued; beyond that it is caught up from the log.
    #[arg(long, env = "FANFARE_FANOUT_STREAM_QUEUE_CAPACITY", default_value_t = DEFAULT_STREAM_QUEUE_CAPACITY)]
    pub stream_queue_capacity: usize,

    /// Milliseconds between heartbeats.
    #[arg(long, env = "FANFARE_FANOUT_HEARTBEAT_MS", default_value_t = DEFAULT_HEARTBEAT_MS)]
    pub heartbeat_ms: u64,

    /// Updates read per GetUpdates call while catching a stream up (1 to 1,000).
    #[arg(long, env = "FANFARE_FANOUT_BACKFILL_PAGE_SIZE", default_value_t = DEFAULT_BACKFILL_PAGE_SIZE)]
    pub backfill_page_size: i32,

    /// Milliseconds a client is asked to wait before reconnecting after a shutdown.
    #[arg(long, env = "FANFARE_FANOUT_RECONNECT_AFTER_MS", default_value_t = DEFAULT_RECONNECT_AFTER_MS)]
    pub reconnect_after_ms: u32,

    /// Groups one stream may carry; a user in more gets FAILED_PRECONDITION.
    #[arg(long, env = "FANFARE_FANOUT_MAX_GROUPS_PER_STREAM", default_value_t = DEFAULT_MAX_GROUPS_PER_STREAM)]
    pub max_groups_per_stream: usize,

    /// Streams one user may hold open on one pod; one more is refused RESOURCE_EXHAUSTED.
    #[arg(long, env = "FANFARE_FANOUT_MAX_STREAMS_PER_USER", default_value_t = DEFAULT_MAX_STREAMS_PER_USER)]
    pub max_streams_per_user: usize,

    /// Catch-up rounds (after a bus gap, an overflowed inbox or a skipped-ahead update) one
    /// stream may make per minute; past them the stream asks its client to reconnect. 0 turns
    /// the limit off.
    #[arg(long, env = "FANFARE_FANOUT_STREAM_CATCH_UPS_PER_MINUTE", default_value_t = DEFAULT_STREAM_CATCH_UPS_PER_MINUTE)]
    pub stream_catch_ups_per_minute: u32,

    /// Catch-up rounds one stream may make in a burst.
    #[arg(long, env = "FANFARE_FANOUT_STREAM_CATCH_UP_BURST", default_value_t = DEFAULT_STREAM_CATCH_UP_BURST)]
    pub stream_catch_up_burst: u32,

    /// Subscribe calls one user may make per minute (sustained, across pods on Redis), each
    /// of which catches up from the log; 0 turns the limit off.
    #[arg(long, env = "FANFARE_FANOUT_USER_SUBSCRIBES_PER_MINUTE", default_value_t = DEFAULT_USER_SUBSCRIBES_PER_MINUTE)]
    pub user_subscribes_per_minute: u32,

    /// Subscribe calls one user may make at once.
    #[arg(long, env = "FANFARE_FANOUT_USER_SUBSCRIBES_BURST", default_value_t = DEFAULT_USER_SUBSCRIBES_BURST)]
    pub user_subscribes_burst: u32,
}

impl LiveConfig {
    /// The defaults, reading from the services at `groups_url` and `messages_url`.
    pub fn new(groups_url: String, messages_url: String) -> Self {
        Self {
            groups_url,
            messages_url,
            stream_queue_capacity: DEFAULT_STREAM_QUEUE_CAPACITY,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            backfill_page_size: DEFAULT_BACKFILL_PAGE_SIZE,
            reconnect_after_ms: DEFAULT_RECONNECT_AFTER_MS,
            max_groups_per_stream: DEFAULT_MAX_GROUPS_PER_STREAM,
            max_streams_per_user: DEFAULT_MAX_STREAMS_PER_USER,
            stream_catch_ups_per_minute: DEFAULT_STREAM_CATCH_UPS_PER_MINUTE,
            stream_catch_up_burst: DEFAULT_STREAM_CATCH_UP_BURST,
            user_subscribes_per_minute: DEFAULT_USER_SUBSCRIBES_PER_MINUTE,
            user_subscribes_burst: DEFAULT_USER_SUBSCRIBES_BURST,
        }
    }

    /// Rejects settings that cannot work.
    pub fn check(&self) -> Result<(), String> {
        if self.max_streams_per_user == 0 {
            return Err("FANFARE_FANOUT_MAX_STREAMS_PER_USER must be at least 1".to_owned());
        }
        if self.stream_queue_capacity == 0 || self.heartbeat_ms == 0 || self.max_groups_per_stream == 0 {
            return Err("FANFARE_FANOUT_STREAM_QUEUE_CAPACITY, FANFARE_FANOUT_HEARTBEAT_MS and \
                        FANFARE_FANOUT_MAX_GROUPS_PER_STREAM must be at least 1"
                .to_owned());
        }
        if !(1..=1_000).contains(&self.backfill_page_size) {
            return Err("FANFARE_FANOUT_BACKFILL_PAGE_SIZE must be between 1 and 1000".to_owned());
        }
        for url in [&self.groups_url, &self.messages_url] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "{url:?} is not an http:// or https:// URL (FANFARE_GROUPS_URL, FANFARE_MESSAGES_URL)"
                ));
            }
        }
        Ok(())
    }
}

/// Default followers notified per second by one job.
pub const DEFAULT_JOB_RATE: u32 = 50_000;
/// Default highest rate a job may ask for.
pub const DEFAULT_JOB_MAX_RATE: u32 = 200_000;
/// Default followers read and notified per page (one checkpoint per page).
pub const DEFAULT_JOB_PAGE_SIZE: u32 = 1_000;
/// Default lease a worker holds on a job, renewed at every checkpoint, in seconds.
pub const DEFAULT_JOB_LEASE_SECONDS: u64 = 30;
/// Default number of jobs one pod runs at once.
pub const DEFAULT_JOB_WORKERS: usize = 2;
/// Default pause between looks for a job to run, in milliseconds.
pub const DEFAULT_JOB_POLL_MS: u64 = 1_000;
/// Default fan-out jobs one creator may start per minute, sustained.
pub const DEFAULT_USER_JOBS_PER_MINUTE: u32 = 6;
/// Default fan-out jobs one creator may start at once.
pub const DEFAULT_USER_JOBS_BURST: u32 = 3;
/// Default Redis Stream the push service reads notifications from.
pub const DEFAULT_PUSH_STREAM: &str = "fanfare:push:notifications";
/// Default approximate cap of the push stream's length (`XADD MAXLEN ~`).
pub const DEFAULT_PUSH_STREAM_MAX_LEN: u64 = 5_000_000;

/// Creator-to-follower fan-out jobs.
#[derive(Debug, Clone, Args)]
pub struct JobsConfig {
    /// Followers per second a job notifies when it does not ask for a rate.
    #[arg(long, env = "FANFARE_FANOUT_JOB_RATE", default_value_t = DEFAULT_JOB_RATE)]
    pub job_rate: u32,

    /// The highest rate a job may ask for, followers per second.
    #[arg(long, env = "FANFARE_FANOUT_JOB_MAX_RATE", default_value_t = DEFAULT_JOB_MAX_RATE)]
    pub job_max_rate: u32,

    /// Followers per page: read together, notified together, checkpointed together.
    #[arg(long, env = "FANFARE_FANOUT_JOB_PAGE_SIZE", default_value_t = DEFAULT_JOB_PAGE_SIZE)]
    pub job_page_size: u32,

    /// Seconds a worker owns a job without checkpointing before another pod may take it.
    #[arg(long, env = "FANFARE_FANOUT_JOB_LEASE_SECONDS", default_value_t = DEFAULT_JOB_LEASE_SECONDS)]
    pub job_lease_seconds: u64,

    /// Jobs this pod runs at once; 0 runs none (the pod still serves the job RPCs).
    #[arg(long, env = "FANFARE_FANOUT_JOB_WORKERS", default_value_t = DEFAULT_JOB_WORKERS)]
    pub job_workers: usize,

    /// Milliseconds between looks for a job to run when there was none.
    #[arg(long, env = "FANFARE_FANOUT_JOB_POLL_MS", default_value_t = DEFAULT_JOB_POLL_MS)]
    pub job_poll_ms: u64,

    /// Fan-out jobs one creator may start per minute (sustained, across pods when Redis is
    /// configured); 0 turns the limit off.
    #[arg(long, env = "FANFARE_FANOUT_USER_JOBS_PER_MINUTE", default_value_t = DEFAULT_USER_JOBS_PER_MINUTE)]
    pub user_jobs_per_minute: u32,

    /// Fan-out jobs one creator may start at once.
    #[arg(long, env = "FANFARE_FANOUT_USER_JOBS_BURST", default_value_t = DEFAULT_USER_JOBS_BURST)]
    pub user_jobs_burst: u32,

    /// The Redis Stream notifications are appended to for the push service.
    #[arg(long, env = "FANFARE_FANOUT_PUSH_STREAM", default_value = DEFAULT_PUSH_STREAM)]
    pub push_stream: String,

    /// Approximate cap of the push stream's length.
    #[arg(long, env = "FANFARE_FANOUT_PUSH_STREAM_MAX_LEN", default_value_t = DEFAULT_PUSH_STREAM_MAX_LEN)]
    pub push_stream_max_len: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            job_rate: DEFAULT_JOB_RATE,
            job_max_rate: DEFAULT_JOB_MAX_RATE,
            job_page_size: DEFAULT_JOB_PAGE_SIZE,
            job_lease_seconds: DEFAULT_JOB_LEASE_SECONDS,
            job_workers: DEFAULT_JOB_WORKERS,
            job_poll_ms: DEFAULT_JOB_POLL_MS,
            user_jobs_per_minute: DEFAULT_USER_JOBS_PER_MINUTE,
            user_jobs_burst: DEFAULT_USER_JOBS_BURST,
            push_stream: DEFAULT_PUSH_STREAM.to_owned(),
            push_stream_max_len: DEFAULT_PUSH_STREAM_MAX_LEN,
        }
    }
}

impl JobsConfig {
    /// Rejects settings that cannot work.
    pub fn check(&self) -> Result<(), String> {
        if self.job_rate == 0 || self.job_max_rate < self.job_rate {
            return Err("FANFARE_FANOUT_JOB_RATE must be at least 1 and at most FANFARE_FANOUT_JOB_MAX_RATE".to_owned());
        }
        // Rates travel as int32 (`rate_limit_per_second`) and are stored as integer.
        if i32::try_from(self.job_max_rate).is_err() {
            return Err(format!("FANFARE_FANOUT_JOB_MAX_RATE must be at most {}", i32::MAX));
        }
        if !(1..=10_000).contains(&self.job_page_size) {
            return Err("FANFARE_FANOUT_JOB_PAGE_SIZE must be between 1 and 10000".to_owned());
        }
        if self.job_lease_seconds == 0 || self.job_poll_ms == 0 || self.push_stream_max_len == 0 {
            return Err("FANFARE_FANOUT_JOB_LEASE_SECONDS, FANFARE_FANOUT_JOB_POLL_MS and \
                        FANFARE_FANOUT_PUSH_STREAM_MAX_LEN must be at least 1"
                .to_owned());
        }
        if self.push_stream.trim().is_empty() {
            return Err("FANFARE_FANOUT_PUSH_STREAM must not be empty".to_owned());
        }
        Ok(())
    }
}

/// Everything `fanfare serve fanout` reads.
#[derive(Debug, Clone, Args)]
pub struct FanoutConfig {
    /// Shared gRPC server settings.
    #[command(flatten)]
    pub server: ServerConfig,

    /// Postgres (and Redis) location; unset for in-memory storage.
    #[command(flatten)]
    pub dependencies: DependencyConfig,

    /// Limits of the follow graph.
    #[command(flatten)]
    pub limits: FollowLimits,

    /// Live delivery.
    #[command(flatten)]
    pub live: LiveConfig,

    /// Fan-out jobs.
    #[command(flatten)]
    pub jobs: JobsConfig,
}

impl FanoutConfig {
    /// The configuration for tests and `fanfare dev`: no token, default limits, reading
    /// from the groups and messages services at the given URLs.
    pub fn for_dev(dependencies: DependencyConfig, groups_url: String, messages_url: String) -> Self {
        Self {
            server: ServerConfig::for_dev(),
            dependencies,
            limits: FollowLimits::default(),
            live: LiveConfig::new(groups_url, messages_url),
            jobs: JobsConfig::default(),
        }
    }

    /// Rejects settings that cannot work (`fanfare serve fanout --check-config`).
    pub fn check(&self) -> Result<(), String> {
        self.server.check()?;
        self.dependencies.check()?;
        self.live.check()?;
        self.jobs.check()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        config: FanoutConfig,
    }

    #[test]
    fn flags_default_to_the_named_defaults() {
        let parsed = Command::try_parse_from(["fanout", "--allow-unauthenticated"]).expect("parses");
        let limits = parsed.config.limits;
        assert_eq!(limits.max_following, DEFAULT_MAX_FOLLOWING);
        assert_eq!(limits.max_batch_size, DEFAULT_MAX_BATCH_SIZE);
        assert_eq!(limits.user_changes_per_second, DEFAULT_USER_CHANGES_PER_SECOND);
        assert_eq!(limits.user_changes_burst, DEFAULT_USER_CHANGES_BURST);
        let flags = ["fanout", "--max-following", "5", "--user-changes-per-second", "0"];
        let adjusted = Command::try_parse_from(flags).expect("parses").config.limits;
        assert_eq!((adjusted.max_following, adjusted.user_changes_per_second), (5, 0));
    }
}
