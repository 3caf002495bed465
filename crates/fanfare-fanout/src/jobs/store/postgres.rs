//! The production [`JobStore`]: table `fanout.jobs` (migration `0002_jobs.sql`) through
//! sqlx, on the follow store's pool.
//!
//! Every method is one statement, so each is atomic without an explicit transaction. A claim
//! picks the oldest runnable row with `FOR UPDATE SKIP LOCKED` (concurrent claims skip each
//! other's row instead of waiting for it) and leases it in the same statement; checkpoints
//! and releases are `UPDATE … WHERE lease_token = $token`, so a worker whose lease was taken
//! over matches no row and writes nothing.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::UserId;
use fanfare_core::paging::PageSize;
use fanfare_core::time::stored_time;
use fanfare_postgres::During as _;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Cancelled, Checkpoint, CheckpointOutcome, Claim, Created, JobStore, Lease};
use crate::follows::domain::FollowKey;
use crate::follows::store::{StoreError, StoreResult};
use crate::jobs::domain::{FanoutJob, IdempotencyKey, JobId, JobKind, JobState, NewJob, PayloadRef, Rate};
use fanfare_core::time::lease_end;
use fanfare_core::wire::int64;

/// The columns every query returns, in [`JobRow`]'s names.
const COLUMNS: &str = "job_id, creator_id, idempotency_key, kind, payload_ref, rate_limit_per_second, state, \
     followers_total, followers_done, cursor_followed_at, cursor_follower_id, created_at, started_at, finished_at";

/// The claim: a pending job, or running job whose lease is released or ran out, skipping
/// rows another claim holds; leased to `$1` until `$2`, at `$3`. Fair between creators: the
/// job of the creator with the fewest jobs running under a live lease goes first, the oldest
/// among equals, so one creator's queue of big jobs does not hold back everyone else's.
/// `takeover` says whether it took the job from a worker whose lease ran out. Public so a
/// test can check the plan uses `jobs_runnable`.
pub const CLAIM_SQL: &str = "WITH candidate AS ( \
       SELECT job_id, state = 'RUNNING' AND lease_token IS NOT NULL AS takeover FROM fanout.jobs AS c \
       WHERE state IN ('PENDING', 'RUNNING') \
         AND (state = 'PENDING' OR lease_expires_at IS NULL OR lease_expires_at <= $3) \
       ORDER BY (SELECT count(*) FROM fanout.jobs AS r \
                 WHERE r.creator_id = c.creator_id AND r.state = 'RUNNING' AND r.lease_expires_at > $3), \
                job_id \
       LIMIT 1 FOR UPDATE SKIP LOCKED) \
     UPDATE fanout.jobs AS j SET state = 'RUNNING', lease_token = $1, lease_expires_at = $2, \
       started_at = COALESCE(j.started_at, $3) \
     FROM candidate WHERE j.job_id = candidate.job_id \
     RETURNING j.job_id, j.creator_id, j.idempotency_key, j.kind, j.payload_ref, j.rate_limit_per_second, \
       j.state, j.followers_total, j.followers_done, j.cursor_followed_at, j.cursor_follower_id, \
       j.created_at, j.started_at, j.finished_at, candidate.takeover";

/// A fenced checkpoint: `$1` job, `$2` lease token, `$3`/`$4` cursor, `$5` followers done,
/// `$6` finished, `$7` now, `$8` the renewed lease expiry. A cancelled job records the
/// progress and drops the lease; a finished walk succeeds and drops it.
const CHECKPOINT_SQL: &str = "UPDATE fanout.jobs SET cursor_followed_at = $3, cursor_follower_id = $4, \
       followers_done = $5, \
       state = CASE WHEN state = 'RUNNING' AND $6 THEN 'SUCCEEDED' ELSE state END, \
       finished_at = CASE WHEN state = 'RUNNING' AND $6 THEN $7 ELSE finished_at END, \
       lease_token = CASE WHEN state = 'RUNNING' AND NOT $6 THEN lease_token END, \
       lease_expires_at = CASE WHEN state = 'RUNNING' AND NOT $6 THEN $8::timestamptz END \
     WHERE job_id = $1 AND lease_token = $2 AND state IN ('RUNNING', 'CANCELLED') \
     RETURNING state, lease_expires_at";

/// A [`JobStore`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresJobStore {
    pool: fanfare_postgres::Pool,
}

impl PostgresJobStore {
    /// A store on `pool`, which must be migrated (`PostgresFollowStore::migrate`).
    pub fn from_pool(pool: PgPool) -> Self {
        Self::sharing(fanfare_postgres::Pool::new(pool))
    }

    /// A store on the pool another store uses, sharing what is known of the database's
    /// reachability (the follow store's, whose health probe keeps it current).
    pub fn sharing(pool: fanfare_postgres::Pool) -> Self {
        Self { pool }
    }

    /// The pool, for tests.
    #[cfg(feature = "testing")]
    pub fn pool(&self) -> &PgPool {
        self.pool.inner()
    }

    /// A connection for one statement: at once an unavailable error while the database is
    /// known to be down (`fanfare_postgres::Pool`).
    async fn connection(&self) -> StoreResult<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        Ok(self.pool.acquire().await.during("acquiring a connection")?)
    }
}

/// A stored value that does not map back to the domain: corrupt data or a bug.
fn corrupt(what: String) -> StoreError {
    StoreError::Internal(anyhow::Error::msg(what).context("reading fan-out jobs"))
}

#[derive(sqlx::FromRow)]
struct JobRow {
    job_id: i64,
    creator_id: i64,
    idempotency_key: String,
    kind: String,
    payload_ref: String,
    rate_limit_per_second: i32,
    state: String,
    followers_total: i64,
    followers_done: i64,
    cursor_followed_at: Option<DateTime<Utc>>,
    cursor_follower_id: Option<i64>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    #[sqlx(flatten)]
    job: JobRow,
    takeover: bool,
}

impl TryFrom<JobRow> for FanoutJob {
    type Error = StoreError;

    fn try_from(row: JobRow) -> StoreResult<Self> {
        let id = row.job_id;
        let kind = JobKind::from_name(&row.kind).ok_or_else(|| corrupt(format!("job {id} has kind {}", row.kind)))?;
        let state =
            JobState::from_name(&row.state).ok_or_else(|| corrupt(format!("job {id} has state {}", row.state)))?;
        let rate = u32::try_from(row.rate_limit_per_second)
            .ok()
            .filter(|rate| *rate > 0)
            .ok_or_else(|| corrupt(format!("job {id} has rate {}", row.rate_limit_per_second)))?;
        let stored_count = |value: i64, column: &str| {
            u64::try_from(value).map_err(|_| corrupt(format!("{column} of job {id} is negative: {value}")))
        };
        let cursor = match (row.cursor_followed_at, row.cursor_follower_id) {
            (Some(followed_at), Some(follower)) if follower > 0 => {
                Some(FollowKey { followed_at, user: UserId::from_trusted(follower) })
            }
            (None, None) => None,
            _ => return Err(corrupt(format!("job {id} has a half-set or invalid cursor"))),
        };
        Ok(Self {
            id: JobId::from_trusted(id),
            creator: UserId::from_trusted(row.creator_id),
            kind,
            payload_ref: PayloadRef::from_trusted(row.payload_ref),
            idempotency_key: IdempotencyKey::from_trusted(row.idempotency_key),
            rate: Rate::from_trusted(rate),
            state,
            followers_total: stored_count(row.followers_total, "followers_total")?,
            followers_done: stored_count(row.followers_done, "followers_done")?,
            cursor,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
        })
    }
}

#[async_trait]
impl JobStore for PostgresJobStore {
    async fn create(&self, new: NewJob, now: DateTime<Utc>) -> StoreResult<Created> {
        let insert = format!(
            "INSERT INTO fanout.jobs (creator_id, idempotency_key, kind, payload_ref, rate_limit_per_second, \
             followers_total, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (creator_id, idempotency_key) DO NOTHING RETURNING {COLUMNS}"
        );
        let rate = i32::try_from(new.request.rate.get()).unwrap_or(i32::MAX);
        let inserted: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(insert))
            .bind(new.creator.get())
            .bind(new.request.idempotency_key.as_str())
            .bind(new.request.kind.name())
            .bind(new.request.payload_ref.as_str())
            .bind(rate)
            .bind(int64(new.followers_total))
            .bind(stored_time(now))
            .fetch_optional(&mut *self.connection().await?)
            .await
            .during("inserting a fan-out job")?;
        if let Some(row) = inserted {
            return Ok(Created { job: row.try_into()?, created: true });
        }
        // The key is taken, by an earlier call or a concurrent one that just committed (the
        // conflict waited for it): jobs are never deleted, so it is there to read.
        let select = format!("SELECT {COLUMNS} FROM fanout.jobs WHERE creator_id = $1 AND idempotency_key = $2");
        let existing: JobRow = sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(new.creator.get())
            .bind(new.request.idempotency_key.as_str())
            .fetch_one(&mut *self.connection().await?)
            .await
            .during("reading a fan-out job by key")?;
        Ok(Created { job: existing.try_into()?, created: false })
    }

    async fn get(&self, id: JobId) -> StoreResult<Option<FanoutJob>> {
        let select = format!("SELECT {COLUMNS} FROM fanout.jobs WHERE job_id = $1");
        let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(id.get())
            .fetch_optional(&mut *self.connection().await?)
            .await
            .during("reading a fan-out job")?;
        row.map(FanoutJob::try_from).transpose()
    }

    async fn find(&self, creator: UserId, key: &IdempotencyKey) -> StoreResult<Option<FanoutJob>> {
        let select = format!("SELECT {COLUMNS} FROM fanout.jobs WHERE creator_id = $1 AND idempotency_key = $2");
        let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(creator.get())
            .bind(key.as_str())
            .fetch_optional(&mut *self.connection().await?)
            .await
            .during("finding a fan-out job by key")?;
        row.map(FanoutJob::try_from).transpose()
    }

    async fn list(&self, creator: UserId, before: Option<JobId>, limit: PageSize) -> StoreResult<Vec<FanoutJob>> {
        // A range scan of `jobs_by_creator` from the cursor.
        let select = format!(
            "SELECT {COLUMNS} FROM fanout.jobs WHERE creator_id = $1 AND job_id < $2 ORDER BY job_id DESC LIMIT $3"
        );
        let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(creator.get())
            .bind(before.map_or(i64::MAX, JobId::get))
            .bind(limit.as_limit() + 1)
            .fetch_all(&mut *self.connection().await?)
            .await
            .during("listing fan-out jobs")?;
        rows.into_iter().map(FanoutJob::try_from).collect()
    }

    async fn cancel(&self, creator: UserId, id: JobId, now: DateTime<Utc>) -> StoreResult<Option<Cancelled>> {
        // The lease stays: the worker's next checkpoint still records its last page.
        let update = format!(
            "UPDATE fanout.jobs SET state = 'CANCELLED', finished_at = $3 \
             WHERE job_id = $1 AND creator_id = $2 AND state IN ('PENDING', 'RUNNING') RETURNING {COLUMNS}"
        );
        let cancelled: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(update))
            .bind(id.get())
            .bind(creator.get())
            .bind(stored_time(now))
            .fetch_optional(&mut *self.connection().await?)
            .await
            .during("cancelling a fan-out job")?;
        if let Some(row) = cancelled {
            return Ok(Some(Cancelled { job: row.try_into()?, changed: true }));
        }
        let select = format!("SELECT {COLUMNS} FROM fanout.jobs WHERE job_id = $1 AND creator_id = $2");
        let unchanged: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(id.get())
            .bind(creator.get())
            .fetch_optional(&mut *self.connection().await?)
            .await
            .during("reading a fan-out job to cancel")?;
        unchanged.map(|row| Ok(Cancelled { job: row.try_into()?, changed: false })).transpose()
    }

    async fn claim(&self, lease: Duration, now: DateTime<Utc>) -> StoreResult<Option<Claim>> {
        let token = Uuid::new_v4();
        let expires_at = lease_end(now, lease);
        let claimed: Option<ClaimedRow> = sqlx::query_as(CLAIM_SQL)
            .bind(token)
            .bind(expires_at)
            .bind(stored_time(now))
            .fetch_optional(&mut *self.connection().await?)
            .await
            .during("claiming a fan-out job")?;
        let Some(claimed) = claimed else {
            return Ok(None);
        };
        let job = FanoutJob::try_from(claimed.job)?;
        let lease = Lease { job: job.id, token, expires_at };
        Ok(Some(Claim { job, lease, takeover: claimed.takeover }))
    }

    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: Checkpoint,
        renew_for: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<CheckpointOutcome> {
        let renewed = lease_end(now, renew_for);
        let row: Option<(String, Option<DateTime<Utc>>)> = sqlx::query_as(CHECKPOINT_SQL)
            .bind(lease.job.get())
            .bind(lease.token)
            .bind(checkpoint.cursor.map(|key| key.followed_at))
            .bind(checkpoint.cursor.map(|key| key.user.get()))
            .bind(int64(checkpoint.followers_done))
            .bind(checkpoint.finished)
            .bind(stored_time(now))
            .bind(renewed)
            .fetch_optional(&mut *self.connection().await?)
            .await
            .during("checkpointing a fan-out job")?;
        let Some((state, lease_expires_at)) = row else {
            return Ok(CheckpointOutcome::LeaseLost);
        };
        match (JobState::from_name(&state), lease_expires_at) {
            (Some(JobState::Running), Some(lease_expires_at)) => Ok(CheckpointOutcome::Running { lease_expires_at }),
            (Some(JobState::Succeeded), _) => Ok(CheckpointOutcome::Succeeded),
            (Some(JobState::Cancelled), _) => Ok(CheckpointOutcome::Cancelled),
            _ => Err(corrupt(format!("job {} is {state} after a checkpoint", lease.job))),
        }
    }

    async fn release(&self, lease: &Lease) -> StoreResult<()> {
        sqlx::query(
            "UPDATE fanout.jobs SET lease_token = NULL, lease_expires_at = NULL \
             WHERE job_id = $1 AND lease_token = $2",
        )
        .bind(lease.job.get())
        .bind(lease.token)
        .execute(&mut *self.connection().await?)
        .await
        .during("releasing a fan-out job")?;
        Ok(())
    }
}
