//! Creator-to-follower fan-out jobs (docs/fanout.md, "Fan-out jobs"): the four job RPCs'
//! good and bad paths on every storage, then jobs run for real on Postgres and a Redis push
//! stream: thousands of followers each notified once, pages published live, a killed worker
//! taken over after its lease, a crash between append and checkpoint replayed exactly, and a
//! cancel that stops a running job.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fanfare_bus::BusEvent;
use fanfare_core::ids::UserId;
use fanfare_core::status::ErrorReason;
use fanfare_fanout::config::{DEFAULT_JOB_MAX_RATE, DEFAULT_JOB_RATE, JobsConfig};
use fanfare_fanout::jobs::domain::{FanoutJob, IdempotencyKey, JobKind, JobState, NewJob, PayloadRef, Rate, StartJob};
use fanfare_fanout::jobs::{JobStore, JobWorkers};
use fanfare_fanout::live::notify::{NOTIFICATIONS_CHANNEL, NotificationPage};
use fanfare_proto::fanout::v1 as pb;
use fanfare_proto::prost::Message as _;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::fanout_jobs::{
    CheckpointFailsOnce, JobBackends, assert_each_follower_once, get_job, start_job, start_request, wait_for_job,
    wait_in_store,
};
use fanfare_tests::{error_metadata, expect_code, expect_field_violation, expect_reason, on_every_storage};
use tokio_util::sync::CancellationToken;
use tonic::Code;

on_every_storage!(
    starting_is_idempotent_per_key_and_a_key_reused_for_something_else_is_already_exists,
    jobs_are_read_listed_and_cancelled_by_their_creator_only,
    bad_requests_name_every_bad_field,
    a_creator_without_followers_succeeds_at_once_and_cancelling_then_changes_nothing,
    a_creator_starting_jobs_too_often_is_told_when_to_retry,
);

/// The creator in every test.
const CREATOR: i64 = 1;

async fn starting_is_idempotent_per_key_and_a_key_reused_for_something_else_is_already_exists(storage: Storage) {
    let mut backends = JobBackends::open(storage).await.expect("backends");
    backends.add_followers(CREATOR, 100, 3).await;
    // No workers: the job stays pending.
    let (_service, mut client) = backends.serve(|config| config.jobs.job_workers = 0).await;

    let first = start_job(&mut client, CREATOR, "launch", 0).await;
    assert!(first.created);
    let job = first.job.expect("a job");
    assert!(job.job_id > 0);
    assert_eq!((job.creator_user_id, job.state), (CREATOR, pb::FanoutJobState::Pending as i32));
    assert_eq!((job.kind, job.payload_ref.as_str()), (pb::FanoutJobKind::BroadcastNotification as i32, "post-1"));
    assert_eq!(job.idempotency_key, "launch");
    assert_eq!((job.followers_total, job.followers_done, job.eta_seconds), (3, 0, 0));
    assert_eq!(job.rate_limit_per_second, i32::try_from(DEFAULT_JOB_RATE).expect("fits"), "0 asks for the default");
    assert!(job.created_at.is_some() && job.started_at.is_none() && job.finished_at.is_none());

    // The same key again: the same job, whatever the rate asked this time.
    let again = start_job(&mut client, CREATOR, "launch", 250).await;
    assert!(!again.created);
    assert_eq!(again.job, Some(job.clone()));

    // The same key for another payload or kind: refused, naming the key.
    let other_payload = start_request(pb::FanoutJobKind::BroadcastNotification, "post-2", "launch", 0);
    let refused = client.start_fanout_job(as_user(CREATOR, other_payload)).await;
    let refused = expect_reason(refused, Code::AlreadyExists, ErrorReason::IdempotencyConflict);
    assert_eq!(error_metadata(&refused, "job_id"), job.job_id.to_string());
    assert!(refused.message().contains("launch"), "{}", refused.message());
    let other_kind = start_request(pb::FanoutJobKind::NewGroupInvitation, "post-1", "launch", 0);
    expect_code(client.start_fanout_job(as_user(CREATOR, other_kind)).await, Code::AlreadyExists);

    // Keys are per creator.
    let theirs = start_job(&mut client, 2, "launch", 10).await;
    assert!(theirs.created);
    let theirs = theirs.job.expect("a job");
    assert_ne!(theirs.job_id, job.job_id);
    assert_eq!((theirs.followers_total, theirs.rate_limit_per_second), (0, 10));
}

async fn jobs_are_read_listed_and_cancelled_by_their_creator_only(storage: Storage) {
    let mut backends = JobBackends::open(storage).await.expect("backends");
    let (_service, mut client) = backends.serve(|config| config.jobs.job_workers = 0).await;
    let mut mine = Vec::new();
    for key in ["a", "b", "c"] {
        mine.push(start_job(&mut client, CREATOR, key, 0).await.job.expect("a job").job_id);
    }
    let theirs = start_job(&mut client, 2, "a", 0).await.job.expect("a job").job_id;

    assert_eq!(get_job(&mut client, CREATOR, mine[1]).await.idempotency_key, "b");
    for (actor, job_id) in [(2, mine[0]), (CREATOR, theirs), (CREATOR, 999_999)] {
        let request = pb::GetFanoutJobRequest { job_id };
        expect_reason(client.get_fanout_job(as_user(actor, request)).await, Code::NotFound, ErrorReason::JobNotFound);
        let request = pb::CancelFanoutJobRequest { job_id };
        expect_code(client.cancel_fanout_job(as_user(actor, request)).await, Code::NotFound);
    }
    assert_eq!(get_job(&mut client, CREATOR, mine[0]).await.state, pb::FanoutJobState::Pending as i32);

    // Newest first, two at a time.
    let request = pb::ListFanoutJobsRequest { page_size: 2, page_token: String::new() };
    let first = client.list_fanout_jobs(as_user(CREATOR, request)).await.expect("a page").into_inner();
    let ids: Vec<i64> = first.jobs.iter().map(|job| job.job_id).collect();
    assert_eq!(ids, [mine[2], mine[1]]);
    assert!(!first.next_page_token.is_empty());
    let request = pb::ListFanoutJobsRequest { page_size: 2, page_token: first.next_page_token };
    let second = client.list_fanout_jobs(as_user(CREATOR, request)).await.expect("a page").into_inner();
    assert_eq!(second.jobs.iter().map(|job| job.job_id).collect::<Vec<_>>(), [mine[0]]);
    assert_eq!(second.next_page_token, "");
    let request = pb::ListFanoutJobsRequest::default();
    let nobody = client.list_fanout_jobs(as_user(3, request)).await.expect("a page").into_inner();
    assert!(nobody.jobs.is_empty() && nobody.next_page_token.is_empty());

    // Cancel a pending job; again changes nothing.
    let request = pb::CancelFanoutJobRequest { job_id: mine[0] };
    let cancelled = client.cancel_fanout_job(as_user(CREATOR, request)).await.expect("cancel").into_inner();
    let cancelled = cancelled.job.expect("a job");
    assert_eq!(cancelled.state, pb::FanoutJobState::Cancelled as i32);
    assert!(cancelled.finished_at.is_some() && cancelled.started_at.is_none());
    let request = pb::CancelFanoutJobRequest { job_id: mine[0] };
    let again = client.cancel_fanout_job(as_user(CREATOR, request)).await.expect("cancel").into_inner();
    assert_eq!(again.job, Some(cancelled));
}

async fn bad_requests_name_every_bad_field(storage: Storage) {
    let mut backends = JobBackends::open(storage).await.expect("backends");
    let (_service, mut client) = backends.serve(|config| config.jobs.job_workers = 0).await;
    let kind = pb::FanoutJobKind::NewGroupInvitation;
    let too_fast = i32::try_from(DEFAULT_JOB_MAX_RATE + 1).expect("fits");
    let cases = [
        (start_request(pb::FanoutJobKind::Unspecified, "g", "k", 0), "kind"),
        (pb::StartFanoutJobRequest { kind: 9, ..start_request(kind, "g", "k", 0) }, "kind"),
        (start_request(kind, "", "k", 0), "payload_ref"),
        (start_request(kind, &"p".repeat(513), "k", 0), "payload_ref"),
        (start_request(kind, "g", "", 0), "idempotency_key"),
        (start_request(kind, "g", &"k".repeat(129), 0), "idempotency_key"),
        (start_request(kind, "g", "k\u{0}", 0), "idempotency_key"),
        (start_request(kind, "g", "k", -1), "rate_limit_per_second"),
        (start_request(kind, "g", "k", too_fast), "rate_limit_per_second"),
    ];
    for (request, field) in cases {
        expect_field_violation(client.start_fanout_job(as_user(CREATOR, request)).await, field);
    }
    // Every bad field at once.
    let all_bad = start_request(pb::FanoutJobKind::Unspecified, "", "", -5);
    let status = expect_code(client.start_fanout_job(as_user(CREATOR, all_bad)).await, Code::InvalidArgument);
    for field in ["kind", "payload_ref", "idempotency_key", "rate_limit_per_second"] {
        assert!(status.message().contains(field), "{field}: {}", status.message());
    }
    // The limits themselves are accepted.
    let at_the_limits = start_request(kind, &"p".repeat(512), &"k".repeat(128), too_fast - 1);
    client.start_fanout_job(as_user(CREATOR, at_the_limits)).await.expect("the limits are allowed");

    expect_field_violation(
        client.get_fanout_job(as_user(CREATOR, pb::GetFanoutJobRequest { job_id: 0 })).await,
        "job_id",
    );
    let cancel = pb::CancelFanoutJobRequest { job_id: -1 };
    expect_field_violation(client.cancel_fanout_job(as_user(CREATOR, cancel)).await, "job_id");
    let oversized = pb::ListFanoutJobsRequest { page_size: 1_001, page_token: String::new() };
    expect_field_violation(client.list_fanout_jobs(as_user(CREATOR, oversized)).await, "page_size");
    let foreign = pb::ListFanoutJobsRequest { page_size: 0, page_token: "junk".to_owned() };
    expect_field_violation(client.list_fanout_jobs(as_user(CREATOR, foreign)).await, "page_token");
    let anonymous = tonic::Request::new(pb::GetFanoutJobRequest { job_id: 1 });
    let anonymous =
        expect_reason(client.get_fanout_job(anonymous).await, Code::Unauthenticated, ErrorReason::Unauthenticated);
    assert_eq!(error_metadata(&anonymous, "header"), "x-fanfare-user-id");
}

async fn a_creator_without_followers_succeeds_at_once_and_cancelling_then_changes_nothing(storage: Storage) {
    let mut backends = JobBackends::open(storage).await.expect("backends");
    let (_service, mut client) = backends.serve(|_| {}).await;
    let job_id = start_job(&mut client, CREATOR, "lonely", 0).await.job.expect("a job").job_id;
    let succeeded = pb::FanoutJobState::Succeeded as i32;
    let job = wait_for_job(&mut client, CREATOR, job_id, Duration::from_secs(5), |job| job.state == succeeded).await;
    assert_eq!((job.followers_total, job.followers_done, job.eta_seconds), (0, 0, 0));
    assert!(job.started_at.is_some() && job.finished_at.is_some());

    let request = pb::CancelFanoutJobRequest { job_id };
    let after = client.cancel_fanout_job(as_user(CREATOR, request)).await.expect("cancel").into_inner();
    assert_eq!(after.job, Some(job), "a finished job is returned unchanged");
}

/// A pending broadcast job of the creator stored directly, at `rate` followers per second.
async fn stored_job(jobs: &Arc<dyn JobStore>, key: &str, rate: u32, followers_total: u64) -> FanoutJob {
    let request = StartJob {
        kind: JobKind::BroadcastNotification,
        payload_ref: PayloadRef::from_trusted("post-1".to_owned()),
        idempotency_key: IdempotencyKey::from_trusted(key.to_owned()),
        rate: Rate::from_trusted(rate),
    };
    let new = NewJob { creator: UserId::from_trusted(CREATOR), request, followers_total };
    jobs.create(new, Utc::now()).await.expect("create").job
}

fn worker_config(page_size: u32, lease_seconds: u64) -> JobsConfig {
    JobsConfig {
        job_page_size: page_size,
        job_lease_seconds: lease_seconds,
        job_workers: 1,
        job_poll_ms: 20,
        ..JobsConfig::default()
    }
}

fn ids(first: i64, count: i64) -> HashSet<i64> {
    (first..first + count).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_over_2500_followers_notifies_each_once() {
    let mut backends = JobBackends::open(Storage::Postgres).await.expect("backends");
    backends.add_followers(CREATOR, 100, 2_500).await;
    let (_service, mut client) = backends.serve(|config| config.jobs.job_page_size = 100).await;

    let started = start_job(&mut client, CREATOR, "big", 0).await.job.expect("a job");
    assert_eq!(started.followers_total, 2_500);
    let succeeded = pb::FanoutJobState::Succeeded as i32;
    let job_id = started.job_id;
    let job = wait_for_job(&mut client, CREATOR, job_id, Duration::from_secs(8), |job| job.state == succeeded).await;
    assert_eq!((job.followers_total, job.followers_done, job.eta_seconds), (2_500, 2_500, 0));
    assert!(job.followers_per_second > 0.0, "{job:?}");
    assert!(job.started_at.is_some() && job.finished_at.is_some());

    let entries = backends.entries().await;
    assert_each_follower_once(&entries, job_id, CREATOR, &ids(100, 2_500));
    assert!(entries.iter().all(|entry| entry.kind == "FANOUT_JOB_KIND_BROADCAST_NOTIFICATION"));
    assert!(entries.iter().all(|entry| entry.payload_ref == "post-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_is_published_live() {
    let mut backends = JobBackends::open(Storage::Postgres).await.expect("backends");
    let mut subscriber = backends.backends.bus.subscriber().await.expect("a subscriber");
    subscriber.subscribe(NOTIFICATIONS_CHANNEL).await.expect("subscribe");
    backends.add_followers(CREATOR, 100, 300).await;
    let (_service, mut client) = backends.serve(|config| config.jobs.job_page_size = 50).await;
    let job_id = start_job(&mut client, CREATOR, "live", 0).await.job.expect("a job").job_id;

    let mut live = Vec::new();
    tokio::time::timeout(Duration::from_secs(8), async {
        while live.len() < 300 {
            let Some(BusEvent::Message { payload, .. }) = subscriber.recv().await else { continue };
            let page = NotificationPage::decode(payload).expect("a notification page");
            assert_eq!((page.job_id, page.creator_user_id), (job_id, CREATOR));
            assert_eq!(page.kind, pb::FanoutJobKind::BroadcastNotification as i32);
            assert_eq!(page.payload_ref, "post-1");
            assert!(!page.follower_user_ids.is_empty() && page.follower_user_ids.len() <= 50);
            live.extend(page.follower_user_ids);
        }
    })
    .await
    .expect("every page arrives live");
    let distinct: HashSet<i64> = live.iter().copied().collect();
    assert_eq!((live.len(), distinct), (300, ids(100, 300)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_is_taken_over_after_its_lease_and_nobody_is_notified_twice() {
    let backends = JobBackends::open(Storage::Postgres).await.expect("backends");
    let jobs = Arc::clone(&backends.backends.jobs);
    backends.add_followers(CREATOR, 100, 300).await;
    // 200 followers a second, pages of 20: a page every 100 ms; leases of one second.
    let job = stored_job(&jobs, "killed", 200, 300).await;
    let config = worker_config(20, 1);

    let first = JobWorkers::spawn(&config, &backends.backends, CancellationToken::new());
    let progress = wait_in_store(&jobs, job.id, Duration::from_secs(5), |job| job.followers_done >= 60).await;
    // Killed mid-page, as a pod is: no release, no last checkpoint.
    drop(first);

    let second_shutdown = CancellationToken::new();
    let second = JobWorkers::spawn(&config, &backends.backends, second_shutdown.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = jobs.get(job.id).await.expect("get").expect("the job");
    assert!(waiting.followers_done <= progress.followers_done + 20, "nothing moves while the lease lasts");
    assert_eq!(waiting.state, JobState::Running);

    let finished = wait_in_store(&jobs, job.id, Duration::from_secs(8), |job| job.state.is_finished()).await;
    assert_eq!((finished.state, finished.followers_done), (JobState::Succeeded, 300));
    second_shutdown.cancel();
    second.join().await;
    assert_each_follower_once(&backends.entries().await, job.id.get(), CREATOR, &ids(100, 300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_between_append_and_checkpoint_is_replayed_exactly() {
    let mut backends = JobBackends::open(Storage::Postgres).await.expect("backends");
    backends.add_followers(CREATOR, 100, 250).await;
    // The third page is appended, then its checkpoint fails: the page is read and appended
    // again, and the marker makes that append write nothing.
    let failing = Arc::new(CheckpointFailsOnce::new(Arc::clone(&backends.backends.jobs), 2));
    backends.backends.jobs = failing.clone();
    let jobs = Arc::clone(&backends.backends.jobs);
    let job = stored_job(&jobs, "crash", 1_000_000, 250).await;

    let shutdown = CancellationToken::new();
    let workers = JobWorkers::spawn(&worker_config(50, 30), &backends.backends, shutdown.clone());
    let finished = wait_in_store(&jobs, job.id, Duration::from_secs(8), |job| job.state.is_finished()).await;
    shutdown.cancel();
    workers.join().await;
    assert_eq!(failing.failures(), 1, "the crash happened");
    assert_eq!((finished.state, finished.followers_done), (JobState::Succeeded, 250));
    assert_each_follower_once(&backends.entries().await, job.id.get(), CREATOR, &ids(100, 250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_a_running_job_stops_it() {
    let mut backends = JobBackends::open(Storage::Postgres).await.expect("backends");
    backends.add_followers(CREATOR, 100, 500).await;
    let (_service, mut client) = backends.serve(|config| config.jobs.job_page_size = 10).await;
    // 100 a second: five seconds for everyone, unless cancelled.
    let job_id = start_job(&mut client, CREATOR, "cancel-me", 100).await.job.expect("a job").job_id;
    wait_for_job(&mut client, CREATOR, job_id, Duration::from_secs(5), |job| job.followers_done >= 20).await;

    let request = pb::CancelFanoutJobRequest { job_id };
    let cancelled = client.cancel_fanout_job(as_user(CREATOR, request)).await.expect("cancel").into_inner();
    let cancelled = cancelled.job.expect("a job");
    assert_eq!(cancelled.state, pb::FanoutJobState::Cancelled as i32);
    assert_eq!(cancelled.eta_seconds, 0);

    // The worker stops at its next checkpoint (a page lasts 100 ms) and records that page.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stopped = backends.entries().await.len();
    let job = get_job(&mut client, CREATOR, job_id).await;
    assert_eq!(job.state, pb::FanoutJobState::Cancelled as i32);
    assert_eq!(job.followers_done, i64::try_from(stopped).expect("fits"), "every notification sent is counted");
    assert!(stopped < 500, "{stopped}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(backends.entries().await.len(), stopped, "nothing more is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_started_on_a_pod_is_claimed_at_once_not_at_the_next_poll() {
    let mut backends = JobBackends::open(Storage::Postgres).await.expect("backends");
    backends.add_followers(CREATOR, 100, 20).await;
    // Workers that look for jobs on their own only every ten minutes.
    let (_service, mut client) = backends.serve(|config| config.jobs.job_poll_ms = 600_000).await;
    let succeeded = |job: &pb::FanoutJob| job.state == pb::FanoutJobState::Succeeded as i32;

    // Once a first job is done, every worker has looked and found nothing: all of them sleep.
    let first = start_job(&mut client, CREATOR, "first", 0).await.job.expect("a job").job_id;
    wait_for_job(&mut client, CREATOR, first, Duration::from_secs(8), succeeded).await;
    // The next one is claimed because starting it woke a worker, not ten minutes later.
    let second = start_job(&mut client, CREATOR, "second", 0).await.job.expect("a job").job_id;
    let job = wait_for_job(&mut client, CREATOR, second, Duration::from_secs(8), succeeded).await;
    assert_eq!(job.followers_done, 20);
}

/// Starting jobs is rate-limited per creator (FANFARE_FANOUT_USER_JOBS_*): past the burst a
/// new job is refused RESOURCE_EXHAUSTED with a retry delay and nothing is created, while a
/// retry of a job already started is still answered and other creators are unaffected.
async fn a_creator_starting_jobs_too_often_is_told_when_to_retry(storage: Storage) {
    let mut backends = JobBackends::open(storage).await.expect("backends");
    backends.add_followers(CREATOR, 100, 3).await;
    let (_service, mut client) = backends
        .serve(|config| {
            config.jobs.job_workers = 0;
            config.jobs.user_jobs_per_minute = 1;
            config.jobs.user_jobs_burst = 2;
        })
        .await;
    let first = start_job(&mut client, CREATOR, "one", 0).await;
    start_job(&mut client, CREATOR, "two", 0).await;
    let refused = client
        .start_fanout_job(as_user(
            CREATOR,
            start_request(pb::FanoutJobKind::BroadcastNotification, "post-1", "three", 0),
        ))
        .await;
    let status = expect_reason(refused, Code::ResourceExhausted, ErrorReason::RateLimited);
    assert!(status.message().contains("too often"), "{status:?}");
    let listed = client
        .list_fanout_jobs(as_user(CREATOR, pb::ListFanoutJobsRequest::default()))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.jobs.len(), 2, "the refused start created nothing");

    let again = start_job(&mut client, CREATOR, "one", 0).await;
    assert!(!again.created);
    assert_eq!(again.job, first.job, "a retry of a started job is answered");
    assert!(start_job(&mut client, 2, "theirs", 0).await.created, "another creator has a quota of their own");
}
