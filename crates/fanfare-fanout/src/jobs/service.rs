//! The job RPCs' orchestration: start (idempotent per creator and key), read, list and
//! cancel a creator's jobs. Takes only validated values; running jobs is the workers' part
//! ([`super::worker`]).

use std::sync::Arc;
use tokio::sync::Notify;

use fanfare_core::ids::UserId;
use fanfare_core::paging::{Cursor, Page, PageSize};
use fanfare_core::rate_limit::{LimitQuota, SharedLimits, UserLimit};
use fanfare_core::time::now;

use super::domain::{FanoutJob, JobId, NewJob, StartJob};
use super::store::{Created, JobStore};
use crate::config::JobsConfig;
use crate::error::{FanoutError, FanoutResult, LimitedAction};
use crate::follows::store::FollowStore;
use crate::metrics::{self, JOBS_STARTED_TOTAL};

/// The page token of ListFanoutJobs: the id of the page's last job.
fn cursor(job: &FanoutJob) -> Cursor {
    Cursor(vec![job.id.get()])
}

/// Fan-out jobs, as the RPCs see them.
pub struct JobService {
    store: Arc<dyn JobStore>,
    follows: Arc<dyn FollowStore>,
    config: JobsConfig,
    started: Arc<Notify>,
    start_limit: Option<UserLimit>,
}

impl JobService {
    /// A service over `store`, counting followers in `follows`, with `config`'s rates;
    /// `started` is notified for every job it creates (the pod's workers listen). Job starts
    /// are limited per creator, across pods when `shared` limits are given.
    pub fn new(
        store: Arc<dyn JobStore>,
        follows: Arc<dyn FollowStore>,
        config: JobsConfig,
        started: Arc<Notify>,
        shared: Option<Arc<dyn SharedLimits>>,
    ) -> Self {
        let start_limit = LimitQuota::per_minute(config.user_jobs_per_minute, config.user_jobs_burst)
            .and_then(|quota| UserLimit::with_quota("fanout-jobs", quota, shared));
        Self { store, follows, config, started, start_limit }
    }

    /// The rate of a job that does not ask for one, followers per second.
    pub fn default_rate(&self) -> u32 {
        self.config.job_rate
    }

    /// The highest rate a job may ask for.
    pub fn max_rate(&self) -> u32 {
        self.config.job_max_rate
    }

    /// Starts notifying every follower of the actor, or returns the job the actor started
    /// with the same key (`created: false`). The same key for something else (another kind
    /// or payload) is an [`FanoutError::IdempotencyConflict`]; a different rate is not.
    pub async fn start(&self, actor: UserId, request: StartJob) -> FanoutResult<Created> {
        if let Some(limit) = &self.start_limit
            && let Err(retry_after) = limit.check(actor).await
            // A retry of a job already started is answered, not limited.
            && self.store.find(actor, &request.idempotency_key).await?.is_none()
        {
            return Err(FanoutError::RateLimited { user: actor, action: LimitedAction::JobStarts, retry_after });
        }
        let counts = self.follows.get_counts(&[actor]).await?;
        let followers_total = counts.first().map_or(0, |counts| counts.followers);
        let new = NewJob { creator: actor, request: request.clone(), followers_total };
        let created = self.store.create(new, now()).await?;
        if !created.created && !created.job.matches(&request) {
            return Err(FanoutError::IdempotencyConflict {
                key: request.idempotency_key.as_str().to_owned(),
                job: created.job.id,
            });
        }
        if created.created {
            self.started.notify_one();
            ::metrics::counter!(JOBS_STARTED_TOTAL).increment(1);
            tracing::info!(job_id = %created.job.id, creator = %actor, followers_total, "fan-out job started");
        }
        Ok(created)
    }

    /// One of the actor's jobs; another creator's is as missing as an unknown id.
    pub async fn get(&self, actor: UserId, id: JobId) -> FanoutResult<FanoutJob> {
        match self.store.get(id).await? {
            Some(job) if job.creator == actor => Ok(job),
            _ => Err(FanoutError::JobNotFound(id)),
        }
    }

    /// The actor's jobs, newest first.
    pub async fn list(&self, actor: UserId, size: PageSize, before: Option<JobId>) -> FanoutResult<Page<FanoutJob>> {
        let rows = self.store.list(actor, before, size).await?;
        Ok(Page::from_overfetch(rows, size, cursor))
    }

    /// Cancels one of the actor's jobs; a finished one is returned unchanged. A running job's
    /// worker stops at its next checkpoint.
    pub async fn cancel(&self, actor: UserId, id: JobId) -> FanoutResult<FanoutJob> {
        let cancelled = self.store.cancel(actor, id, now()).await?.ok_or(FanoutError::JobNotFound(id))?;
        if cancelled.changed {
            metrics::job_finished(cancelled.job.state);
            tracing::info!(job_id = %id, creator = %actor, "fan-out job cancelled");
        }
        Ok(cancelled.job)
    }
}
