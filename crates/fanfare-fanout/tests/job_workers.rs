//! The job worker over in-memory backends: a walk notifies each follower once and publishes
//! its pages live, crashes between an append and its checkpoint replay the page exactly, a
//! worker that lost its lease writes nothing, a failing live publish never fails a job, a
//! push stream that is down for a while delays the job without losing or doubling anyone,
//! the rate limit holds, and shutdown hands the job over at once. (Postgres and Redis run the
//! same worker in the black-box tests, `tests/tests/fanout_jobs.rs`.)

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use fanfare_bus::{BusError, BusEvent, MemoryBus, Subscriber, UpdateBus};
use fanfare_core::ids::UserId;
use fanfare_fanout::FanoutBackends;
use fanfare_fanout::config::JobsConfig;
use fanfare_fanout::follows::domain::FollowKey;
use fanfare_fanout::follows::store::MemoryFollowStore;
use fanfare_fanout::jobs::domain::{FanoutJob, JobId, JobKind, JobState, NewJob, Rate, StartJob};
use fanfare_fanout::jobs::sink::{JobRef, PageAppend, SinkError};
use fanfare_fanout::jobs::store::Claim;
use fanfare_fanout::jobs::store::conformance::request;
use fanfare_fanout::jobs::store::testing::CheckpointFailsOnce;
use fanfare_fanout::jobs::{
    JobOutcome, JobRunner, JobStore, JobWorkers, MemoryJobStore, MemoryNotificationSink, NotificationSink,
};
use fanfare_fanout::live::notify::{NOTIFICATIONS_CHANNEL, NotificationPage};
use fanfare_proto::prost::Message as _;
use tokio_util::sync::CancellationToken;

/// The creator in every test.
const CREATOR: i64 = 1;

fn user(id: i64) -> UserId {
    UserId::from_trusted(id)
}

/// Memory backends, with the concrete sink kept for reading.
struct Setup {
    backends: FanoutBackends,
    sink: MemoryNotificationSink,
}

impl Setup {
    fn new(jobs: Arc<dyn JobStore>, bus: Arc<dyn UpdateBus>) -> Self {
        let sink = MemoryNotificationSink::new();
        let backends = FanoutBackends {
            follows: Arc::new(MemoryFollowStore::new()),
            jobs,
            bus,
            sink: Arc::new(sink.clone()) as Arc<dyn NotificationSink>,
        };
        Self { backends, sink }
    }

    fn memory() -> Self {
        Self::new(Arc::new(MemoryJobStore::new()), Arc::new(MemoryBus::new()))
    }

    /// Followers 2 ..= count + 1 of the creator, the lowest id the newest.
    async fn followers(&self, count: i64) {
        let base = DateTime::from_timestamp(1_893_456_000, 0).expect("a valid time");
        for follower in 2..=count + 1 {
            let followed_at = base - chrono::Duration::seconds(follower);
            self.backends.follows.follow(user(follower), user(CREATOR), None, followed_at).await.expect("follow");
        }
    }

    /// A pending job of the creator, at `rate` followers per second.
    async fn job_at_rate(&self, key: &str, rate: u32) -> FanoutJob {
        let request =
            StartJob { rate: Rate::from_trusted(rate), ..request(key, JobKind::BroadcastNotification, "post-1") };
        let new = NewJob { creator: user(CREATOR), request, followers_total: 0 };
        self.backends.jobs.create(new, Utc::now()).await.expect("create").job
    }

    /// A pending job of the creator, fast enough not to be paced noticeably.
    async fn job(&self, key: &str) -> FanoutJob {
        self.job_at_rate(key, 1_000_000).await
    }

    async fn claim(&self, lease: Duration) -> Claim {
        self.backends.jobs.claim(lease, Utc::now()).await.expect("claim").expect("a runnable job")
    }

    async fn stored(&self, id: JobId) -> FanoutJob {
        self.backends.jobs.get(id).await.expect("get").expect("the job")
    }

    /// Asserts the sink holds followers 2 ..= count + 1 of `job`, each once, in walk order.
    fn assert_each_follower_once(&self, job: JobId, count: i64) {
        let entries = self.sink.entries();
        let keys: HashSet<&str> = entries.iter().map(|entry| entry.key.as_str()).collect();
        assert_eq!(keys.len(), entries.len(), "no key twice");
        let followers: Vec<i64> = entries.iter().map(|entry| entry.follower_user_id).collect();
        assert_eq!(followers, (2..=count + 1).collect::<Vec<_>>());
        assert!(entries.iter().all(|entry| entry.job_id == job.get() && entry.creator_user_id == CREATOR));
    }
}

fn config(page_size: u32, lease_seconds: u64) -> JobsConfig {
    JobsConfig { job_page_size: page_size, job_lease_seconds: lease_seconds, job_poll_ms: 20, ..JobsConfig::default() }
}

async fn run(setup: &Setup, config: &JobsConfig, claim: Claim) -> JobOutcome {
    JobRunner::new(config, &setup.backends).run_job(claim, &CancellationToken::new()).await
}

#[tokio::test]
async fn a_creator_without_followers_succeeds_at_once() {
    let setup = Setup::memory();
    let job = setup.job("empty").await;
    let claim = setup.claim(Duration::from_secs(30)).await;
    assert_eq!(run(&setup, &config(100, 30), claim).await, JobOutcome::Succeeded);
    let stored = setup.stored(job.id).await;
    assert_eq!((stored.state, stored.followers_done), (JobState::Succeeded, 0));
    assert!(setup.sink.entries().is_empty());
}

/// The follower ids of every notification page published on `subscriber` so far.
fn live_followers(subscriber: &mut Subscriber) -> Vec<i64> {
    let mut followers = Vec::new();
    while let Some(event) = subscriber.try_recv() {
        if let BusEvent::Message { payload, .. } = event {
            let page = NotificationPage::decode(payload).expect("a notification page");
            assert_eq!((page.creator_user_id, page.payload_ref.as_str()), (CREATOR, "post-1"));
            followers.extend(page.follower_user_ids);
        }
    }
    followers
}

#[tokio::test]
async fn every_follower_is_notified_once_and_each_page_is_published_live() {
    let setup = Setup::memory();
    let mut subscriber = setup.backends.bus.subscriber().await.expect("a subscriber");
    subscriber.subscribe(NOTIFICATIONS_CHANNEL).await.expect("subscribe");
    setup.followers(95).await;
    let job = setup.job("walk").await;
    let claim = setup.claim(Duration::from_secs(30)).await;
    assert_eq!(run(&setup, &config(10, 30), claim).await, JobOutcome::Succeeded);

    setup.assert_each_follower_once(job.id, 95);
    assert_eq!(live_followers(&mut subscriber), (2..=96).collect::<Vec<_>>());
    let stored = setup.stored(job.id).await;
    assert_eq!((stored.state, stored.followers_done), (JobState::Succeeded, 95));
}

#[tokio::test]
async fn a_crash_between_append_and_checkpoint_replays_the_page_without_writing_it_again() {
    // The third page is appended, then its checkpoint fails; the worker retries the page.
    let failing = CheckpointFailsOnce::new(Arc::new(MemoryJobStore::new()), 2);
    let setup = Setup::new(Arc::new(failing), Arc::new(MemoryBus::new()));
    setup.followers(50).await;
    let job = setup.job("replay").await;
    let claim = setup.claim(Duration::from_secs(30)).await;
    assert_eq!(run(&setup, &config(10, 30), claim).await, JobOutcome::Succeeded);

    setup.assert_each_follower_once(job.id, 50);
    assert_eq!(setup.stored(job.id).await.followers_done, 50, "the replayed page is counted once");
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_writes_nothing_and_stops() {
    let setup = Setup::memory();
    setup.followers(30).await;
    let job = setup.job("fenced").await;
    // The first worker claims and stalls past its one-second lease; a second takes over and
    // finishes.
    let stalled = setup.claim(Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let current = setup.claim(Duration::from_secs(1)).await;
    assert!(current.takeover);
    assert_eq!(run(&setup, &config(10, 1), current).await, JobOutcome::Succeeded);
    let finished = setup.stored(job.id).await;

    // The stalled worker wakes: its first page replays, its checkpoint is fenced.
    assert_eq!(run(&setup, &config(10, 1), stalled).await, JobOutcome::LeaseLost);
    assert_eq!(setup.stored(job.id).await, finished, "nothing written over the finished job");
    setup.assert_each_follower_once(job.id, 30);
}

/// A bus that is always down.
struct DownBus;

#[async_trait]
impl UpdateBus for DownBus {
    async fn publish(&self, _channel: &str, _payload: Bytes) -> Result<(), BusError> {
        Err(BusError::Closed)
    }
    async fn subscriber(&self) -> Result<Subscriber, BusError> {
        Err(BusError::Closed)
    }
    async fn ping(&self) -> Result<(), BusError> {
        Err(BusError::Closed)
    }
}

#[tokio::test]
async fn a_failing_live_publish_never_fails_the_job() {
    let setup = Setup::new(Arc::new(MemoryJobStore::new()), Arc::new(DownBus));
    setup.followers(25).await;
    let job = setup.job("offline").await;
    let claim = setup.claim(Duration::from_secs(30)).await;
    assert_eq!(run(&setup, &config(10, 30), claim).await, JobOutcome::Succeeded);
    setup.assert_each_follower_once(job.id, 25);
}

/// The memory sink behind a push stream that is down for its first `failures` appends.
struct SinkDownAtFirst {
    inner: MemoryNotificationSink,
    failures: AtomicU32,
}

#[async_trait]
impl NotificationSink for SinkDownAtFirst {
    async fn append_page(
        &self,
        job: &JobRef,
        start: Option<FollowKey>,
        end: FollowKey,
        followers: &[UserId],
    ) -> Result<PageAppend, SinkError> {
        let down = self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok();
        if down {
            return Err(SinkError::Unavailable(anyhow::anyhow!("connection refused")));
        }
        self.inner.append_page(job, start, end, followers).await
    }
}

#[tokio::test]
async fn a_push_stream_down_for_a_while_delays_the_job_and_loses_no_one() {
    let mut setup = Setup::memory();
    setup.backends.sink = Arc::new(SinkDownAtFirst { inner: setup.sink.clone(), failures: AtomicU32::new(3) });
    setup.followers(25).await;
    let job = setup.job("redis-down").await;
    let claim = setup.claim(Duration::from_secs(30)).await;
    // Three failed appends: retried after 0.2, 0.4 and 0.8 s from the last checkpoint.
    assert_eq!(run(&setup, &config(10, 30), claim).await, JobOutcome::Succeeded);
    setup.assert_each_follower_once(job.id, 25);
    let stored = setup.stored(job.id).await;
    assert_eq!((stored.state, stored.followers_done), (JobState::Succeeded, 25));
}

#[tokio::test]
async fn the_rate_limit_paces_the_pages() {
    let setup = Setup::memory();
    setup.followers(100).await;
    let job = setup.job_at_rate("paced", 200).await;
    let claim = setup.claim(Duration::from_secs(30)).await;
    let started = Instant::now();
    assert_eq!(run(&setup, &config(20, 30), claim).await, JobOutcome::Succeeded);
    let elapsed = started.elapsed();
    // 100 followers at 200/s: half a second, less a little timer slack.
    assert!(elapsed >= Duration::from_millis(480), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    let progress = setup.stored(job.id).await.progress(Utc::now());
    assert!(progress.followers_per_second <= 210.0, "{progress:?}");
}

#[tokio::test]
async fn shutdown_checkpoints_and_hands_the_job_over_at_once() {
    let setup = Setup::memory();
    setup.followers(40).await;
    // At 20/s a page of 10 lasts half a second: the shutdown lands in the second page's pause.
    let job = setup.job_at_rate("handover", 20).await;
    let claim = setup.claim(Duration::from_secs(30)).await;
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        stopper.cancel();
    });
    let runner = JobRunner::new(&config(10, 30), &setup.backends);
    assert_eq!(runner.run_job(claim, &shutdown).await, JobOutcome::Released);
    let released = setup.stored(job.id).await;
    assert_eq!((released.state, released.followers_done), (JobState::Running, 20), "the page in flight counted");

    let next = setup.claim(Duration::from_secs(30)).await;
    assert!(!next.takeover, "released, not expired");
    assert_eq!((next.job.id, next.job.followers_done), (job.id, 20));
    // Finish it fast (the rate is the job's: raise it by running a copy of the claim).
    let fast_claim = Claim { job: FanoutJob { rate: Rate::from_trusted(1_000_000), ..next.job }, ..next };
    assert_eq!(run(&setup, &config(10, 30), fast_claim).await, JobOutcome::Succeeded);
    setup.assert_each_follower_once(job.id, 40);
}

#[tokio::test]
async fn workers_run_queued_jobs_and_stop_when_told() {
    let setup = Setup::memory();
    setup.followers(12).await;
    let first = setup.job("first").await;
    let second = setup.job("second").await;
    let shutdown = CancellationToken::new();
    let workers = JobWorkers::spawn(&config(5, 30), &setup.backends, shutdown.clone());
    let deadline = Instant::now() + Duration::from_secs(5);
    while setup.stored(second.id).await.state != JobState::Succeeded {
        assert!(Instant::now() < deadline, "the jobs finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(setup.stored(first.id).await.state, JobState::Succeeded);
    assert_eq!(setup.sink.entries().len(), 24);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), workers.join()).await.expect("the workers stop");
}
