//! The job workers: each claims a runnable job and walks the creator's followers a page at
//! a time until the job succeeds, is cancelled, or is taken over; then claims the next.
//!
//! One page, in this order:
//!
//! 1. read up to a page of followers strictly after the checkpoint (keyset, newest first);
//! 2. append them to the push stream with the page's marker, atomically (a replayed page,
//!    after a crash between this step and step 5, writes nothing and yields what was recorded);
//! 3. publish the page live (best effort: a failure is logged and counted);
//! 4. wait out the rest of the page's share of time at the job's rate;
//! 5. checkpoint cursor and count in Postgres, fenced on the lease, which renews it.
//!
//! Checkpointing last means a cancel or a lost lease is noticed right before the next page,
//! not after it: after a cancel at most the page in flight is sent, and it is counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fanfare_bus::UpdateBus;
use fanfare_core::ids::UserId;
use fanfare_core::paging::PageSize;
use metrics::counter;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::domain::Rate;
use super::pacing;
use super::sink::{JobRef, NotificationSink, SinkError};
use super::store::{Checkpoint, CheckpointOutcome, Claim, JobStore, Lease};
use crate::backends::FanoutBackends;
use crate::config::JobsConfig;
use crate::follows::domain::FollowKey;
use crate::follows::store::{FollowStore, StoreError};
use crate::live::notify::{NotificationPage, publish_page};
use crate::metrics::{
    self as job_metrics, FOLLOWERS_NOTIFIED_TOTAL, LEASE_TAKEOVERS_TOTAL, LEASES_LOST_TOTAL,
    LIVE_PUBLISH_FAILURES_TOTAL, PAGE_FAILURES_TOTAL, PAGES_TOTAL, RunningJob,
};
use fanfare_core::time::now;

/// The wait after a first failed page; it doubles with each further failure.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
/// The longest wait between failed attempts of a page.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How a worker stopped running one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Every follower was notified.
    Succeeded,
    /// The creator cancelled it.
    Cancelled,
    /// Another worker took it over; this one wrote nothing more.
    LeaseLost,
    /// This worker is shutting down: it gave the job up for another to claim at once.
    Released,
}

/// Why a page attempt failed; it is retried from the last checkpoint.
#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// What one page attempt led to.
enum PageStep {
    /// Checkpointed; go on with the next page.
    Next,
    /// The job is over for this worker.
    Stop(JobOutcome),
}

/// Where a worker's walk of one job stands: its lease and its last checkpoint.
struct Walk {
    lease: Lease,
    cursor: Option<FollowKey>,
    done: u64,
}

/// Runs claimed jobs over the service's backends.
pub struct JobRunner {
    jobs: Arc<dyn JobStore>,
    follows: Arc<dyn FollowStore>,
    bus: Arc<dyn UpdateBus>,
    sink: Arc<dyn NotificationSink>,
    config: JobsConfig,
    /// Notified when this pod starts a job, so an idle worker claims it at once instead of
    /// at its next poll.
    started: Arc<Notify>,
}

impl JobRunner {
    /// A runner over `backends` with `config`'s page size, lease and poll interval.
    pub fn new(config: &JobsConfig, backends: &FanoutBackends) -> Self {
        Self {
            jobs: Arc::clone(&backends.jobs),
            follows: Arc::clone(&backends.follows),
            bus: Arc::clone(&backends.bus),
            sink: Arc::clone(&backends.sink),
            config: config.clone(),
            started: Arc::new(Notify::new()),
        }
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.config.job_lease_seconds)
    }

    /// Claims and runs jobs until `shutdown`, looking again every poll interval when
    /// there was none, or at once when this pod started one (jobs started on other pods
    /// wait for the poll).
    pub async fn run(self: Arc<Self>, worker: usize, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.config.job_poll_ms);
        while !shutdown.is_cancelled() {
            match self.jobs.claim(self.lease(), now()).await {
                Ok(Some(claim)) => {
                    // Look for more work at once: jobs may be queued behind this one.
                    self.run_job(claim, &shutdown).await;
                    continue;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(error = ?error, worker, "claiming a fan-out job failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.started.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Runs one claimed job until it is over for this worker, or `shutdown`.
    #[tracing::instrument(skip_all, fields(job_id = %claim.job.id, creator = %claim.job.creator))]
    pub async fn run_job(&self, claim: Claim, shutdown: &CancellationToken) -> JobOutcome {
        let _running = RunningJob::start();
        if claim.takeover {
            counter!(LEASE_TAKEOVERS_TOTAL).increment(1);
            tracing::info!(followers_done = claim.job.followers_done, "took over a fan-out job whose lease ran out");
        }
        let job = JobRef::from(&claim.job);
        let rate = claim.job.rate;
        let page_size = pacing::page_size(self.config.job_page_size, rate, self.lease());
        let mut walk = Walk { lease: claim.lease, cursor: claim.job.cursor, done: claim.job.followers_done };
        let mut retry_delay = FIRST_RETRY_DELAY;
        loop {
            if shutdown.is_cancelled() {
                return self.release(&walk.lease).await;
            }
            match self.run_page(&job, rate, page_size, &mut walk, shutdown).await {
                Ok(PageStep::Next) => retry_delay = FIRST_RETRY_DELAY,
                Ok(PageStep::Stop(outcome)) => return outcome,
                Err(error) => {
                    // Nothing is lost: the page is read again from the last checkpoint, and
                    // its marker makes appending it again exact.
                    counter!(PAGE_FAILURES_TOTAL).increment(1);
                    tracing::warn!(error = ?error, retry_in = ?retry_delay, "fan-out page failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return self.release(&walk.lease).await,
                        () = tokio::time::sleep(retry_delay) => {}
                    }
                    retry_delay = (retry_delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
    }

    /// Gives the job up for another worker (shutdown).
    async fn release(&self, lease: &Lease) -> JobOutcome {
        if let Err(error) = self.jobs.release(lease).await {
            // The lease runs out by itself; the job is taken over then.
            tracing::warn!(error = ?error, "releasing a fan-out job failed");
        }
        tracing::info!("released a fan-out job at shutdown");
        JobOutcome::Released
    }

    /// One page: read, append, publish, pace, checkpoint.
    async fn run_page(
        &self,
        job: &JobRef,
        rate: Rate,
        page_size: u32,
        walk: &mut Walk,
        shutdown: &CancellationToken,
    ) -> Result<PageStep, PageError> {
        let page_started = Instant::now();
        let mut follows = self.follows.list_followers(job.creator, walk.cursor, PageSize::new(page_size)).await?;
        let more = follows.len() > page_size as usize;
        follows.truncate(page_size as usize);
        let checkpoint = match follows.last() {
            // Nobody after the checkpoint: every follower has been notified.
            None => Checkpoint { cursor: walk.cursor, followers_done: walk.done, finished: true },
            Some(last) => {
                let followers: Vec<UserId> = follows.iter().map(|follow| follow.follower).collect();
                let appended = self.sink.append_page(job, walk.cursor, last.follower_key(), &followers).await?;
                if appended.replayed {
                    // Appended (and published) before a crash; what it covered is recorded.
                    counter!(PAGES_TOTAL, "outcome" => "replayed").increment(1);
                    tracing::info!(count = appended.count, "replayed a page appended before; nothing written");
                } else {
                    counter!(PAGES_TOTAL, "outcome" => "appended").increment(1);
                    counter!(FOLLOWERS_NOTIFIED_TOTAL).increment(appended.count);
                    self.publish_live(job, &followers).await;
                    let pause = pacing::pause_after_page(appended.count, rate, page_started.elapsed());
                    tokio::select! {
                        // Cut short: checkpoint what was sent, then stop.
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Checkpoint {
                    cursor: Some(appended.end),
                    followers_done: walk.done + appended.count,
                    // A replayed page may have been followed by more: the next read tells.
                    finished: !appended.replayed && !more,
                }
            }
        };
        let outcome = self.jobs.checkpoint(&walk.lease, checkpoint, self.lease(), now()).await?;
        match outcome {
            CheckpointOutcome::Running { lease_expires_at } => {
                walk.lease.expires_at = lease_expires_at;
                walk.cursor = checkpoint.cursor;
                walk.done = checkpoint.followers_done;
                Ok(PageStep::Next)
            }
            CheckpointOutcome::Succeeded => {
                job_metrics::job_finished(super::domain::JobState::Succeeded);
                tracing::info!(followers_done = checkpoint.followers_done, "fan-out job succeeded");
                Ok(PageStep::Stop(JobOutcome::Succeeded))
            }
            CheckpointOutcome::Cancelled => {
                // Counted as finished by the cancel itself.
                tracing::info!(followers_done = checkpoint.followers_done, "fan-out job stopped: cancelled");
                Ok(PageStep::Stop(JobOutcome::Cancelled))
            }
            CheckpointOutcome::LeaseLost => {
                counter!(LEASES_LOST_TOTAL).increment(1);
                tracing::warn!("fan-out job stopped: another worker holds its lease now");
                Ok(PageStep::Stop(JobOutcome::LeaseLost))
            }
        }
    }

    /// Hands the page to every pod for the followers online there. Never fails the job.
    async fn publish_live(&self, job: &JobRef, followers: &[UserId]) {
        let page = NotificationPage {
            job_id: job.id.get(),
            creator_user_id: job.creator.get(),
            kind: job.kind.to_proto() as i32,
            payload_ref: job.payload_ref.as_str().to_owned(),
            follower_user_ids: followers.iter().map(|follower| follower.get()).collect(),
        };
        if let Err(error) = publish_page(self.bus.as_ref(), &page).await {
            counter!(LIVE_PUBLISH_FAILURES_TOTAL).increment(1);
            tracing::warn!(error = ?error, followers = followers.len(), "live publish of a page failed");
        }
    }
}

/// The pod's job workers: `job_workers` tasks, each running one job at a time.
///
/// Dropping this without [`JobWorkers::join`] aborts the workers wherever they are, like a
/// killed pod: their jobs are taken over once their leases run out.
pub struct JobWorkers {
    tasks: JoinSet<()>,
    started: Arc<Notify>,
}

impl JobWorkers {
    /// Starts the workers over `backends`; they stop at their next checkpoint once
    /// `shutdown` is cancelled, releasing their jobs.
    pub fn spawn(config: &JobsConfig, backends: &FanoutBackends, shutdown: CancellationToken) -> Self {
        let runner = Arc::new(JobRunner::new(config, backends));
        let started = Arc::clone(&runner.started);
        let mut tasks = JoinSet::new();
        for worker in 0..config.job_workers {
            tasks.spawn(Arc::clone(&runner).run(worker, shutdown.clone()));
        }
        Self { tasks, started }
    }

    /// What to notify when this pod starts a job: one idle worker claims it at once.
    pub fn on_start(&self) -> Arc<Notify> {
        Arc::clone(&self.started)
    }

    /// Waits for every worker to stop (after `shutdown` was cancelled).
    pub async fn join(mut self) {
        while let Some(finished) = self.tasks.join_next().await {
            if let Err(error) = finished {
                tracing::error!(error = ?error, "a fan-out job worker panicked");
            }
        }
    }
}
