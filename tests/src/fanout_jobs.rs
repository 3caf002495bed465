//! Helpers for the fan-out job tests: backends on a fresh Postgres database and a Redis
//! push stream of the test's own (deleted afterwards), many followers made fast through the
//! store, the job RPCs, and checks on what the stream holds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use fanfare_bus::MemoryBus;
use fanfare_core::ids::UserId;
use fanfare_fanout::follows::store::{MemoryFollowStore, PostgresFollowStore};
use fanfare_fanout::jobs::domain::{FanoutJob, JobId};
use fanfare_fanout::jobs::sink::PushEntry;
use fanfare_fanout::jobs::{JobStore, MemoryJobStore, MemoryNotificationSink, PostgresJobStore, RedisStreamSink};
use fanfare_fanout::{FanoutBackends, FanoutConfig};
use fanfare_proto::fanout::v1 as pb;
use fanfare_testkit::{Storage, TestDatabase, as_user};

pub use fanfare_fanout::jobs::store::testing::CheckpointFailsOnce;

use crate::fanout::{Client, NOBODY_URL, TestFanout, dev_config};

/// The Redis the push stream is written to: `REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A push stream key of this test's own; the stream and its page markers are deleted on drop.
pub struct PushStream {
    /// The sink appending to it.
    pub sink: RedisStreamSink,
}

impl PushStream {
    /// A fresh stream key.
    pub fn create() -> anyhow::Result<Self> {
        let key = format!("fanfare-test:{}:push", uuid::Uuid::new_v4().simple());
        Ok(Self { sink: RedisStreamSink::open(&redis_url(), None, &key, 10_000_000)? })
    }

    /// The stream's key.
    pub fn key(&self) -> &str {
        self.sink.stream()
    }

    /// Every entry, oldest first.
    pub async fn entries(&self) -> Vec<PushEntry> {
        self.sink.read_entries().await.expect("the push stream reads")
    }
}

impl Drop for PushStream {
    fn drop(&mut self) {
        // Best effort, synchronously: the stream and every page marker named after it.
        let Ok(mut connection) = redis::Client::open(redis_url()).and_then(|client| client.get_connection()) else {
            return;
        };
        let pattern = format!("{}*", self.key());
        let keys: Vec<String> = redis::Commands::scan_match::<_, String>(&mut connection, &pattern)
            .map(|keys| keys.filter_map(Result::ok).collect())
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::Commands::del(&mut connection, keys);
        }
    }
}

/// Backends of a job test and what they must outlive.
pub struct JobBackends {
    /// What the service and workers run on.
    pub backends: FanoutBackends,
    /// The Redis push stream (`None` on memory storage, where the sink is in memory).
    pub stream: Option<PushStream>,
    /// The in-memory sink on memory storage.
    pub memory_sink: Option<MemoryNotificationSink>,
    /// The database on Postgres storage.
    pub database: Option<TestDatabase>,
    /// The follow store on Postgres storage, for bulk follows.
    postgres_follows: Option<PostgresFollowStore>,
}

impl JobBackends {
    /// Postgres stores on a fresh database and a fresh Redis push stream, or all in memory,
    /// over an in-process bus.
    pub async fn open(storage: Storage) -> anyhow::Result<Self> {
        let bus = Arc::new(MemoryBus::new());
        match storage {
            Storage::Memory => {
                let sink = MemoryNotificationSink::new();
                let backends = FanoutBackends {
                    follows: Arc::new(MemoryFollowStore::new()),
                    jobs: Arc::new(MemoryJobStore::new()),
                    bus,
                    sink: Arc::new(sink.clone()),
                };
                Ok(Self { backends, stream: None, memory_sink: Some(sink), database: None, postgres_follows: None })
            }
            Storage::Postgres => {
                let database = TestDatabase::create().await?;
                let follows = PostgresFollowStore::connect(&database.url(), 16).await?;
                PostgresFollowStore::migrate(follows.pool()).await.context("migrating the test database")?;
                let stream = PushStream::create()?;
                let backends = FanoutBackends {
                    jobs: Arc::new(PostgresJobStore::from_pool(follows.pool().clone())),
                    follows: Arc::new(follows.clone()),
                    bus,
                    sink: Arc::new(stream.sink.clone()),
                };
                Ok(Self {
                    backends,
                    stream: Some(stream),
                    memory_sink: None,
                    database: Some(database),
                    postgres_follows: Some(follows),
                })
            }
        }
    }

    /// Every notification appended so far, from the stream or the memory sink.
    pub async fn entries(&self) -> Vec<PushEntry> {
        match (&self.stream, &self.memory_sink) {
            (Some(stream), _) => stream.entries().await,
            (None, Some(sink)) => sink.entries(),
            (None, None) => Vec::new(),
        }
    }

    /// Serves these backends (the database moves into the service) with the dev
    /// configuration after `adjust`; jobs poll every 20 ms.
    pub async fn serve(&mut self, adjust: impl FnOnce(&mut FanoutConfig)) -> (TestFanout, Client) {
        let mut config = dev_config(NOBODY_URL, NOBODY_URL);
        config.jobs.job_poll_ms = 20;
        if let Some(stream) = &self.stream {
            config.jobs.push_stream = stream.key().to_owned();
        }
        adjust(&mut config);
        let service =
            TestFanout::serve(config, self.backends.clone(), self.database.take()).await.expect("the service starts");
        let client = service.client().await.expect("a client connects");
        (service, client)
    }
}

impl JobBackends {
    /// Makes users `first ..= first + count - 1` follow `creator`, one second apart (the
    /// lowest id the newest), keeping the counters as the store does. On Postgres, in one
    /// transaction of bulk SQL: the store's follow is a transaction per edge, and thousands
    /// of them take seconds on a busy machine. In memory, through the store.
    pub async fn add_followers(&self, creator: i64, first: i64, count: i64) {
        assert!(first > creator, "followers are other users than the creator");
        let base: DateTime<Utc> = Utc::now() - chrono::Duration::days(1);
        let Some(postgres) = &self.postgres_follows else {
            for follower in first..first + count {
                let followed_at = base - chrono::Duration::seconds(follower);
                let (follower, creator) = (UserId::from_trusted(follower), UserId::from_trusted(creator));
                self.backends.follows.follow(follower, creator, None, followed_at).await.expect("follow");
            }
            return;
        };
        let last = first + count - 1;
        let mut tx = postgres.pool().begin().await.expect("a transaction");
        sqlx::query(
            "INSERT INTO fanout.follows (creator_id, follower_id, followed_at) \
             SELECT $1, follower, $2::timestamptz - follower * interval '1 second' \
             FROM generate_series($3::bigint, $4::bigint) AS follower",
        )
        .bind(creator)
        .bind(base)
        .bind(first)
        .bind(last)
        .execute(&mut *tx)
        .await
        .expect("bulk edges");
        // The creator's followers in 16 shards (follower % 16), each follower's following.
        sqlx::query(
            "INSERT INTO fanout.follow_counts AS c (user_id, shard, followers) \
             SELECT $1, (follower % 16)::smallint, count(*) FROM generate_series($2::bigint, $3::bigint) AS follower \
             GROUP BY 2 ON CONFLICT (user_id, shard) DO UPDATE SET followers = c.followers + EXCLUDED.followers",
        )
        .bind(creator)
        .bind(first)
        .bind(last)
        .execute(&mut *tx)
        .await
        .expect("bulk follower counts");
        sqlx::query(
            "INSERT INTO fanout.follow_counts AS c (user_id, shard, following) \
             SELECT follower, 0, 1 FROM generate_series($1::bigint, $2::bigint) AS follower \
             ON CONFLICT (user_id, shard) DO UPDATE SET following = c.following + 1",
        )
        .bind(first)
        .bind(last)
        .execute(&mut *tx)
        .await
        .expect("bulk following counts");
        tx.commit().await.expect("commit the follows");
    }
}

/// A StartFanoutJob request.
pub fn start_request(kind: pb::FanoutJobKind, payload_ref: &str, key: &str, rate: i32) -> pb::StartFanoutJobRequest {
    pb::StartFanoutJobRequest {
        kind: kind as i32,
        payload_ref: payload_ref.to_owned(),
        idempotency_key: key.to_owned(),
        rate_limit_per_second: rate,
    }
}

/// `creator` starts a broadcast job under `key` at `rate`, expecting success.
pub async fn start_job(client: &mut Client, creator: i64, key: &str, rate: i32) -> pb::StartFanoutJobResponse {
    let request = start_request(pb::FanoutJobKind::BroadcastNotification, "post-1", key, rate);
    client.start_fanout_job(as_user(creator, request)).await.expect("StartFanoutJob succeeds").into_inner()
}

/// `creator`'s job `job_id`, expecting success.
pub async fn get_job(client: &mut Client, creator: i64, job_id: i64) -> pb::FanoutJob {
    let request = pb::GetFanoutJobRequest { job_id };
    let response = client.get_fanout_job(as_user(creator, request)).await.expect("GetFanoutJob succeeds");
    response.into_inner().job.expect("a job")
}

/// Polls `creator`'s job until `done` says so, for at most `limit`.
pub async fn wait_for_job(
    client: &mut Client,
    creator: i64,
    job_id: i64,
    limit: Duration,
    done: impl Fn(&pb::FanoutJob) -> bool,
) -> pb::FanoutJob {
    let deadline = Instant::now() + limit;
    loop {
        let job = get_job(client, creator, job_id).await;
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {job_id} did not get there in {limit:?}: {job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the job store until `done` says so about job `id`, for at most `limit`.
pub async fn wait_in_store(
    jobs: &Arc<dyn JobStore>,
    id: JobId,
    limit: Duration,
    done: impl Fn(&FanoutJob) -> bool,
) -> FanoutJob {
    let deadline = Instant::now() + limit;
    loop {
        let job = jobs.get(id).await.expect("the job store answers").expect("the job exists");
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not get there in {limit:?}: {job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts `entries` hold each of `followers` exactly once for job `job_id` of `creator`.
#[track_caller]
pub fn assert_each_follower_once(entries: &[PushEntry], job_id: i64, creator: i64, followers: &HashSet<i64>) {
    let keys: HashSet<&str> = entries.iter().map(|entry| entry.key.as_str()).collect();
    assert_eq!(keys.len(), entries.len(), "a key appears twice among {} entries", entries.len());
    let notified: HashSet<i64> = entries.iter().map(|entry| entry.follower_user_id).collect();
    assert_eq!(notified.len(), followers.len(), "followers notified");
    assert!(notified == *followers, "exactly the followers are notified");
    for entry in entries {
        assert_eq!((entry.job_id, entry.creator_user_id), (job_id, creator), "{entry:?}");
        assert_eq!(entry.key, format!("{job_id}:{}", entry.follower_user_id));
    }
}
