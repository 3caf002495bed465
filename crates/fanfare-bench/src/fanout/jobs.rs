//! W3: a creator with a million followers starts a fan-out job. The follow edges and their
//! counters are written straight into Postgres (one `INSERT … SELECT generate_series` each);
//! the job runs at the highest rate the server allows and is polled until it succeeds; the
//! push stream is then read back to check that every follower is in it exactly once.

use std::time::{Duration, Instant};

use anyhow::Context;
use fanfare_proto::fanout::v1 as pb;
use fanfare_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use fanfare_testkit::as_user;
use redis::streams::StreamRangeReply;
use sqlx::PgPool;
use tonic::Code;
use tonic::transport::Channel;

use super::probe::{Spent, Watched};

/// The creator of W3 (far from every other scenario's users).
pub(super) const CREATOR: i64 = 900_000_000;
/// The first follower's id; followers are consecutive from it.
const FIRST_FOLLOWER: i64 = 1_000_000_000;
/// How often the job is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Entries read per XRANGE while checking the push stream.
const READ_BATCH: usize = 10_000;

/// What W3 measured.
#[derive(Debug)]
pub(super) struct JobRun {
    /// Followers written.
    pub followers: u64,
    /// How long writing the edges and counters took.
    pub insert: Duration,
    /// The creator's follower count as GetFollowCounts reads it.
    pub counted: i64,
    /// The job, unless the server does not run jobs.
    pub outcome: Result<JobFigures, String>,
}

/// The job's figures.
#[derive(Debug)]
pub(super) struct JobFigures {
    /// The rate asked for.
    pub rate_limit: i32,
    /// The state it ended in.
    pub state: String,
    /// Followers it counted at start, and notified.
    pub total: i64,
    /// Followers notified.
    pub done: i64,
    /// From a worker's first claim to the last checkpoint (server clock).
    pub running: Option<Duration>,
    /// From StartFanoutJob to finished (server clock).
    pub created_to_finished: Option<Duration>,
    /// From the StartFanoutJob call to the poll that saw it finished (bench clock).
    pub observed: Duration,
    /// Entries in the push stream (XLEN).
    pub stream_len: u64,
    /// `(entries read, distinct followers among them, entries naming no follower of the job)`,
    /// when the stream was read back.
    pub read_back: Option<(u64, u64, u64)>,
    /// CPU from the start call to the end.
    pub spent: Spent,
}

impl JobFigures {
    /// Followers notified per second, over the job's running time (server clock).
    pub(super) fn rate(&self) -> f64 {
        self.running.map_or(0.0, |running| self.done as f64 / running.as_secs_f64().max(f64::EPSILON))
    }
}

/// Writes `followers` follow edges of [`CREATOR`] and their counters.
pub(super) async fn insert_followers(admin: &PgPool, followers: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let last = FIRST_FOLLOWER + i64::try_from(followers)? - 1;
    let mut tx = admin.begin().await?;
    // Distinct times, newest first by follower id, as a real audience would have.
    sqlx::query(
        "INSERT INTO fanout.follows (creator_id, follower_id, followed_at) \
         SELECT $1, g, now() - ($3 - g)::float8 * interval '1 millisecond' FROM generate_series($2::bigint, $3::bigint) AS g",
    )
    .bind(CREATOR)
    .bind(FIRST_FOLLOWER)
    .bind(last)
    .execute(&mut *tx)
    .await
    .context("inserting the follow edges")?;
    // The creator's follower count in its 16 shards (shard = follower_id % 16), and each
    // follower's following count in its shard 0, as the service keeps them.
    sqlx::query(
        "INSERT INTO fanout.follow_counts (user_id, shard, followers, following) \
         SELECT $1, (g % 16)::smallint, count(*), 0 FROM generate_series($2::bigint, $3::bigint) AS g GROUP BY g % 16",
    )
    .bind(CREATOR)
    .bind(FIRST_FOLLOWER)
    .bind(last)
    .execute(&mut *tx)
    .await
    .context("inserting the creator's follower counters")?;
    sqlx::query(
        "INSERT INTO fanout.follow_counts (user_id, shard, followers, following) \
         SELECT g, 0, 0, 1 FROM generate_series($1::bigint, $2::bigint) AS g",
    )
    .bind(FIRST_FOLLOWER)
    .bind(last)
    .execute(&mut *tx)
    .await
    .context("inserting the followers' following counters")?;
    tx.commit().await.context("committing the followers")?;
    sqlx::query("ANALYZE fanout.follows").execute(admin).await.context("analyzing fanout.follows")?;
    Ok(started.elapsed())
}

/// The creator's follower count through the API.
pub(super) async fn follower_count(client: &mut FanoutServiceClient<Channel>) -> anyhow::Result<i64> {
    let request = pb::GetFollowCountsRequest { user_ids: vec![CREATOR] };
    let response = client.get_follow_counts(as_user(CREATOR, request)).await.context("GetFollowCounts")?;
    Ok(response.into_inner().counts.first().map_or(0, |counts| counts.followers))
}

/// Starts the job and polls it until it is over; `Err` (not a failure of the benchmark)
/// when the server answers that it does not run jobs.
pub(super) async fn run_job(
    client: &mut FanoutServiceClient<Channel>,
    rate_limit: i32,
    timeout: Duration,
    watched: &Watched,
) -> anyhow::Result<Result<(pb::FanoutJob, Duration, Spent), String>> {
    let start = watched.snapshot();
    let started = Instant::now();
    let request = pb::StartFanoutJobRequest {
        kind: pb::FanoutJobKind::BroadcastNotification as i32,
        payload_ref: "fanfare-bench".to_owned(),
        idempotency_key: uuid::Uuid::new_v4().to_string(),
        rate_limit_per_second: rate_limit,
    };
    let job = match client.start_fanout_job(as_user(CREATOR, request)).await {
        Ok(response) => response.into_inner().job.context("StartFanoutJob answered without a job")?,
        Err(status) if status.code() == Code::Unimplemented => {
            return Ok(Err(format!("StartFanoutJob answered UNIMPLEMENTED: {}", status.message())));
        }
        Err(status) => return Err(anyhow::Error::new(status).context("StartFanoutJob")),
    };
    loop {
        let request = pb::GetFanoutJobRequest { job_id: job.job_id };
        let polled = client
            .get_fanout_job(as_user(CREATOR, request))
            .await
            .context("GetFanoutJob")?
            .into_inner()
            .job
            .context("GetFanoutJob answered without a job")?;
        let finished = matches!(
            pb::FanoutJobState::try_from(polled.state),
            Ok(pb::FanoutJobState::Succeeded | pb::FanoutJobState::Cancelled)
        );
        if finished || started.elapsed() > timeout {
            let observed = started.elapsed();
            let spent = start.until(&watched.snapshot());
            return Ok(Ok((polled, observed, spent)));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The figures of a finished job, with the push stream's length and, when `read_back`, its
/// entries checked.
pub(super) async fn figures(
    job: &pb::FanoutJob,
    observed: Duration,
    spent: Spent,
    redis: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    followers: u64,
    read_back: bool,
) -> anyhow::Result<JobFigures> {
    let stream_len: u64 = redis::cmd("XLEN").arg(stream).query_async(redis).await.context("XLEN")?;
    let read_back = match read_back {
        true => Some(check_stream(redis, stream, followers).await?),
        false => None,
    };
    Ok(JobFigures {
        rate_limit: job.rate_limit_per_second,
        state: pb::FanoutJobState::try_from(job.state).map_or("?".to_owned(), |state| state.as_str_name().to_owned()),
        total: job.followers_total,
        done: job.followers_done,
        running: between(&job.started_at, &job.finished_at),
        created_to_finished: between(&job.created_at, &job.finished_at),
        observed,
        stream_len,
        read_back,
        spent,
    })
}

/// From `from` to `to`, when both are set and in order.
fn between(from: &Option<prost_types::Timestamp>, to: &Option<prost_types::Timestamp>) -> Option<Duration> {
    let time = |timestamp: &Option<prost_types::Timestamp>| {
        fanfare_core::time::parse_timestamp("timestamp", timestamp.as_ref()?).ok()
    };
    (time(to)? - time(from)?).to_std().ok()
}

/// Reads the whole stream: `(entries, distinct followers of the job, entries of others)`.
async fn check_stream(
    redis: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    followers: u64,
) -> anyhow::Result<(u64, u64, u64)> {
    let mut seen = vec![false; usize::try_from(followers)?];
    let (mut entries, mut distinct, mut others) = (0u64, 0u64, 0u64);
    let mut start = "-".to_owned();
    loop {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(READ_BATCH)
            .query_async(redis)
            .await
            .context("XRANGE over the push stream")?;
        let Some(last) = reply.ids.last() else { break };
        start = format!("({}", last.id);
        for entry in &reply.ids {
            entries += 1;
            let follower: Option<i64> = entry.get("follower_user_id");
            let index = follower.and_then(|id| usize::try_from(id - FIRST_FOLLOWER).ok()).filter(|i| *i < seen.len());
            match index {
                Some(index) if !seen[index] => {
                    seen[index] = true;
                    distinct += 1;
                }
                Some(_) => {}
                None => others += 1,
            }
        }
    }
    Ok((entries, distinct, others))
}

/// Deletes the run's push stream and its page markers from the shared Redis.
pub(super) async fn delete_push_stream(
    redis: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> anyhow::Result<u64> {
    let mut deleted: u64 = redis::cmd("UNLINK").arg(stream).query_async(redis).await.context("UNLINK")?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{stream}:job:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(redis)
            .await
            .context("SCAN for page markers")?;
        if !keys.is_empty() {
            let removed: u64 = redis::cmd("UNLINK").arg(&keys).query_async(redis).await.context("UNLINK markers")?;
            deleted += removed;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
