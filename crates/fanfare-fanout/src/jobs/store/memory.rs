//! The in-memory [`JobStore`], for `fanfare dev` and fast tests: the jobs in a map behind
//! one mutex, with the same semantics as PostgreSQL (each method takes the lock once and is
//! atomic; the lock is never held across an await).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::UserId;
use fanfare_core::paging::PageSize;
use fanfare_core::time::stored_time;
use uuid::Uuid;

use super::{Cancelled, Checkpoint, CheckpointOutcome, Claim, Created, JobStore, Lease};
use crate::follows::store::{StoreError, StoreResult};
use crate::jobs::domain::{FanoutJob, IdempotencyKey, JobId, JobState, NewJob};
use fanfare_core::time::lease_end;

/// A [`JobStore`] in memory; clones share the same jobs.
#[derive(Debug, Clone, Default)]
pub struct MemoryJobStore {
    state: Arc<Mutex<State>>,
}

impl MemoryJobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> StoreResult<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| {
            StoreError::Internal(anyhow::Error::msg("a panic poisoned the lock").context("memory job store"))
        })
    }
}

/// A job and its lease, as the `fanout.jobs` row holds them.
#[derive(Debug, Clone)]
struct Row {
    job: FanoutJob,
    lease_token: Option<Uuid>,
    lease_expires_at: Option<DateTime<Utc>>,
}

impl Row {
    /// Whether a claim at `now` may take it (the claim query's WHERE).
    fn runnable(&self, now: DateTime<Utc>) -> bool {
        match self.job.state {
            JobState::Pending => true,
            JobState::Running => self.lease_expires_at.is_none_or(|expires_at| expires_at <= now),
            JobState::Succeeded | JobState::Cancelled => false,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Jobs by id (ids increase with creation).
    jobs: BTreeMap<JobId, Row>,
    /// Job ids by (creator, idempotency key), as the unique constraint.
    keys: HashMap<(UserId, String), JobId>,
    /// The last id handed out.
    last_id: i64,
}

impl State {
    fn row_mut(&mut self, id: JobId) -> Option<&mut Row> {
        self.jobs.get_mut(&id)
    }
}

#[async_trait]
impl JobStore for MemoryJobStore {
    async fn create(&self, new: NewJob, now: DateTime<Utc>) -> StoreResult<Created> {
        let mut state = self.lock()?;
        let key = (new.creator, new.request.idempotency_key.as_str().to_owned());
        if let Some(existing) = state.keys.get(&key).and_then(|id| state.jobs.get(id)) {
            return Ok(Created { job: existing.job.clone(), created: false });
        }
        state.last_id += 1;
        let id = JobId::from_trusted(state.last_id);
        let job = FanoutJob {
            id,
            creator: new.creator,
            kind: new.request.kind,
            payload_ref: new.request.payload_ref,
            idempotency_key: new.request.idempotency_key,
            rate: new.request.rate,
            state: JobState::Pending,
            followers_total: new.followers_total,
            followers_done: 0,
            cursor: None,
            created_at: stored_time(now),
            started_at: None,
            finished_at: None,
        };
        state.keys.insert(key, id);
        state.jobs.insert(id, Row { job: job.clone(), lease_token: None, lease_expires_at: None });
        Ok(Created { job, created: true })
    }

    async fn get(&self, id: JobId) -> StoreResult<Option<FanoutJob>> {
        Ok(self.lock()?.jobs.get(&id).map(|row| row.job.clone()))
    }

    async fn find(&self, creator: UserId, key: &IdempotencyKey) -> StoreResult<Option<FanoutJob>> {
        let state = self.lock()?;
        let id = state.keys.get(&(creator, key.as_str().to_owned()));
        Ok(id.and_then(|id| state.jobs.get(id)).map(|row| row.job.clone()))
    }

    async fn list(&self, creator: UserId, before: Option<JobId>, limit: PageSize) -> StoreResult<Vec<FanoutJob>> {
        let state = self.lock()?;
        let newest_first = state
            .jobs
            .values()
            .rev()
            .filter(|row| row.job.creator == creator && before.is_none_or(|before| row.job.id < before));
        Ok(newest_first.take(limit.get() as usize + 1).map(|row| row.job.clone()).collect())
    }

    async fn cancel(&self, creator: UserId, id: JobId, now: DateTime<Utc>) -> StoreResult<Option<Cancelled>> {
        let mut state = self.lock()?;
        let Some(row) = state.row_mut(id).filter(|row| row.job.creator == creator) else {
            return Ok(None);
        };
        if row.job.state.is_finished() {
            return Ok(Some(Cancelled { job: row.job.clone(), changed: false }));
        }
        // The lease stays: the worker's next checkpoint still records its last page.
        row.job.state = JobState::Cancelled;
        row.job.finished_at = Some(stored_time(now));
        Ok(Some(Cancelled { job: row.job.clone(), changed: true }))
    }

    async fn claim(&self, lease: Duration, now: DateTime<Utc>) -> StoreResult<Option<Claim>> {
        let mut state = self.lock()?;
        // Fair between creators, as the Postgres claim: fewest jobs running under a live
        // lease first, then the oldest.
        let mut running: HashMap<UserId, usize> = HashMap::new();
        for row in state.jobs.values() {
            if row.job.state == JobState::Running && row.lease_expires_at.is_some_and(|expires_at| expires_at > now) {
                *running.entry(row.job.creator).or_default() += 1;
            }
        }
        let Some(row) = state
            .jobs
            .values_mut()
            .filter(|row| row.runnable(now))
            .min_by_key(|row| (running.get(&row.job.creator).copied().unwrap_or(0), row.job.id))
        else {
            return Ok(None);
        };
        let takeover = row.job.state == JobState::Running && row.lease_token.is_some();
        let token = Uuid::new_v4();
        let expires_at = lease_end(now, lease);
        row.job.state = JobState::Running;
        row.job.started_at = row.job.started_at.or(Some(stored_time(now)));
        row.lease_token = Some(token);
        row.lease_expires_at = Some(expires_at);
        let lease = Lease { job: row.job.id, token, expires_at };
        Ok(Some(Claim { job: row.job.clone(), lease, takeover }))
    }

    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: Checkpoint,
        renew_for: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<CheckpointOutcome> {
        let mut state = self.lock()?;
        let Some(row) = state.row_mut(lease.job).filter(|row| row.lease_token == Some(lease.token)) else {
            return Ok(CheckpointOutcome::LeaseLost);
        };
        if row.job.state == JobState::Succeeded {
            return Ok(CheckpointOutcome::LeaseLost);
        }
        row.job.cursor = checkpoint.cursor;
        row.job.followers_done = checkpoint.followers_done;
        if row.job.state == JobState::Cancelled {
            row.lease_token = None;
            row.lease_expires_at = None;
            return Ok(CheckpointOutcome::Cancelled);
        }
        if checkpoint.finished {
            row.job.state = JobState::Succeeded;
            row.job.finished_at = Some(stored_time(now));
            row.lease_token = None;
            row.lease_expires_at = None;
            return Ok(CheckpointOutcome::Succeeded);
        }
        let lease_expires_at = lease_end(now, renew_for);
        row.lease_expires_at = Some(lease_expires_at);
        Ok(CheckpointOutcome::Running { lease_expires_at })
    }

    async fn release(&self, lease: &Lease) -> StoreResult<()> {
        let mut state = self.lock()?;
        if let Some(row) = state.row_mut(lease.job).filter(|row| row.lease_token == Some(lease.token)) {
            row.lease_token = None;
            row.lease_expires_at = None;
        }
        Ok(())
    }
}
