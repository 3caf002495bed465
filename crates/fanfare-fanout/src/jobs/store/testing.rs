//! A job store that fails one checkpoint, for tests of crash recovery (here and in the
//! black-box suites).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::UserId;
use fanfare_core::paging::PageSize;

use super::{Cancelled, Checkpoint, CheckpointOutcome, Claim, Created, JobStore, Lease};
use crate::follows::store::{StoreError, StoreResult};
use crate::jobs::domain::{FanoutJob, IdempotencyKey, JobId, NewJob};

/// A job store whose first checkpoint after `after` successful ones fails without reaching
/// the store: as if the worker died right after appending a page.
pub struct CheckpointFailsOnce {
    inner: Arc<dyn JobStore>,
    succeeded: AtomicUsize,
    after: usize,
    failed: AtomicUsize,
}

impl CheckpointFailsOnce {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn JobStore>, after: usize) -> Self {
        Self { inner, succeeded: AtomicUsize::new(0), after, failed: AtomicUsize::new(0) }
    }

    /// How many checkpoints it failed (0 or 1).
    pub fn failures(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl JobStore for CheckpointFailsOnce {
    async fn create(&self, job: NewJob, now: DateTime<Utc>) -> StoreResult<Created> {
        self.inner.create(job, now).await
    }

    async fn get(&self, id: JobId) -> StoreResult<Option<FanoutJob>> {
        self.inner.get(id).await
    }

    async fn find(&self, creator: UserId, key: &IdempotencyKey) -> StoreResult<Option<FanoutJob>> {
        self.inner.find(creator, key).await
    }

    async fn list(&self, creator: UserId, before: Option<JobId>, limit: PageSize) -> StoreResult<Vec<FanoutJob>> {
        self.inner.list(creator, before, limit).await
    }

    async fn cancel(&self, creator: UserId, id: JobId, now: DateTime<Utc>) -> StoreResult<Option<Cancelled>> {
        self.inner.cancel(creator, id, now).await
    }

    async fn claim(&self, lease: Duration, now: DateTime<Utc>) -> StoreResult<Option<Claim>> {
        self.inner.claim(lease, now).await
    }

    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: Checkpoint,
        renew_for: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<CheckpointOutcome> {
        if self.succeeded.load(Ordering::SeqCst) == self.after
            && self.failed.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            return Err(StoreError::Unavailable(anyhow::anyhow!("simulated crash before the checkpoint")));
        }
        let outcome = self.inner.checkpoint(lease, checkpoint, renew_for, now).await?;
        self.succeeded.fetch_add(1, Ordering::SeqCst);
        Ok(outcome)
    }

    async fn release(&self, lease: &Lease) -> StoreResult<()> {
        self.inner.release(lease).await
    }
}
