//! Where fan-out jobs live: the [`JobStore`] trait, with a PostgreSQL implementation for
//! production and an in-memory one for `fanfare dev` and fast tests. One conformance suite
//! (`conformance`, behind the `testing` feature) runs against both; `testing` also holds a
//! store that fails one checkpoint, for crash-recovery tests.
//!
//! The store is also the jobs' queue and their lock: a worker *claims* a runnable job,
//! which gives it a [`Lease`] (a fresh token and an expiry); every later write of that
//! worker names the lease and is refused once another worker holds the job. That fencing is
//! what lets a worker that was paused or cut off past its lease stop without writing over
//! the progress of the worker that took the job over.
//!
//! Methods take the current time as an argument (the service's clock) rather than reading
//! it, so the suite runs on fixed times.

#[cfg(feature = "testing")]
pub mod conformance;
pub mod memory;
pub mod postgres;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::UserId;
use fanfare_core::paging::PageSize;
use uuid::Uuid;

use super::domain::{FanoutJob, IdempotencyKey, JobId, NewJob};
use crate::follows::domain::FollowKey;
use crate::follows::store::StoreResult;

pub use memory::MemoryJobStore;
pub use postgres::PostgresJobStore;

/// What a start did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The new job, or the one the creator started with the same key before.
    pub job: FanoutJob,
    /// Whether this call created it.
    pub created: bool,
}

/// A worker's hold on a running job, proved by its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job: JobId,
    /// Fresh for every claim: the fence every later write is checked against.
    pub token: Uuid,
    /// When another worker may take the job unless the lease is renewed.
    pub expires_at: DateTime<Utc>,
}

/// A job a worker claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The job, as of the claim (its cursor is where to resume).
    pub job: FanoutJob,
    /// The worker's lease on it.
    pub lease: Lease,
    /// Whether the job was running under another worker whose lease ran out.
    pub takeover: bool,
}

/// The progress a worker records after a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last follower notified: the walk resumes strictly after it.
    pub cursor: Option<FollowKey>,
    /// Followers notified in all (not since the last checkpoint).
    pub followers_done: u64,
    /// Whether every follower has been notified: the job succeeds.
    pub finished: bool,
}

/// What a checkpoint found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// Recorded; the lease is renewed until the given time. Go on.
    Running {
        /// The renewed expiry.
        lease_expires_at: DateTime<Utc>,
    },
    /// Recorded, and the job succeeded.
    Succeeded,
    /// Recorded, but the job was cancelled meanwhile: stop.
    Cancelled,
    /// Nothing recorded: another worker holds the job now (or it is gone). Stop.
    LeaseLost,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    /// The job after the call.
    pub job: FanoutJob,
    /// Whether this call cancelled it (false when it had already finished).
    pub changed: bool,
}

/// Storage of fan-out jobs, their checkpoints and their leases.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Stores a pending job at `now`. Idempotent per (creator, idempotency key): when the
    /// creator already used the key, the existing job is returned unchanged with
    /// `created: false` (also when a concurrent call of the same key created it); the
    /// caller compares what was asked.
    async fn create(&self, job: NewJob, now: DateTime<Utc>) -> StoreResult<Created>;

    /// The job with this id, whoever created it.
    async fn get(&self, id: JobId) -> StoreResult<Option<FanoutJob>>;

    /// `creator`'s job started with `key`, if there is one.
    async fn find(&self, creator: UserId, key: &IdempotencyKey) -> StoreResult<Option<FanoutJob>>;

    /// `creator`'s jobs newest first (by descending id), strictly before `before`, at most
    /// `limit + 1` rows (the extra row tells the caller there is more).
    async fn list(&self, creator: UserId, before: Option<JobId>, limit: PageSize) -> StoreResult<Vec<FanoutJob>>;

    /// Cancels `creator`'s job `id` at `now` if it is pending or running; a finished job is
    /// returned unchanged. `None` when there is no such job of that creator. A worker running
    /// it finds out at its next checkpoint.
    async fn cancel(&self, creator: UserId, id: JobId, now: DateTime<Utc>) -> StoreResult<Option<Cancelled>>;

    /// Claims the oldest runnable job (pending, or running with no live lease) for `lease`
    /// from `now`: it becomes running (started at `now` if it never ran) under a fresh lease
    /// token. Two concurrent claims never get the same job. `None` when nothing is runnable.
    async fn claim(&self, lease: Duration, now: DateTime<Utc>) -> StoreResult<Option<Claim>>;

    /// Records a page's progress under `lease` and renews it by `renew_for` from `now`, only
    /// if the lease still holds the job (not if another worker claimed it since). A job
    /// cancelled meanwhile still records the progress (those followers were notified) but
    /// answers [`CheckpointOutcome::Cancelled`]; the lease then ends.
    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: Checkpoint,
        renew_for: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<CheckpointOutcome>;

    /// Gives the job up (a worker shutting down): it stays running and any worker may claim
    /// it at once, without waiting for the lease to run out. Does nothing if `lease` no
    /// longer holds it.
    async fn release(&self, lease: &Lease) -> StoreResult<()>;
}
