//! The conformance suite of [`JobStore`]: written once as async test bodies and stamped out
//! per implementation with [`job_store_conformance_tests!`]. Test support behind the
//! `testing` feature, like the follow store's suite: its functions panic when a store
//! misbehaves and must never be called outside tests. Each test expects an empty store; times are fixed.
//!
//! [`job_store_conformance_tests!`]: crate::job_store_conformance_tests

use std::collections::HashSet;
use std::time::Duration;

use fanfare_core::paging::PageSize;
use futures::future::join_all;

use super::{Checkpoint, CheckpointOutcome, JobStore, MemoryJobStore, PostgresJobStore};
use crate::follows::domain::FollowKey;
use crate::follows::store::conformance::{at, user};
use crate::jobs::domain::{FanoutJob, IdempotencyKey, JobId, JobKind, JobState, NewJob, PayloadRef, Rate, StartJob};

/// The lease in these tests.
pub const LEASE: Duration = Duration::from_secs(30);

/// Something that holds a job store under test (and whatever must outlive it).
pub trait JobStoreFixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> &dyn JobStore;
}

impl JobStoreFixture for MemoryJobStore {
    fn store(&self) -> &dyn JobStore {
        self
    }
}

impl JobStoreFixture for PostgresJobStore {
    fn store(&self) -> &dyn JobStore {
        self
    }
}

/// Stamps out one `#[tokio::test]` per conformance test. The argument is an expression
/// evaluated afresh for each test, yielding a future of a [`JobStoreFixture`] over an empty
/// store, e.g. `async { MemoryJobStore::new() }`.
///
/// [`JobStoreFixture`]: crate::jobs::store::conformance::JobStoreFixture
#[macro_export]
macro_rules! job_store_conformance_tests {
    ($factory:expr) => {
        $crate::job_store_conformance_tests!(@each $factory;
            create_is_idempotent_per_creator_and_key,
            concurrent_creates_with_one_key_make_one_job,
            get_answers_none_for_a_missing_job,
            list_walks_a_creators_jobs_newest_first,
            claim_leases_the_oldest_pending_job,
            a_live_lease_is_kept_and_an_expired_one_is_taken_over,
            a_checkpoint_records_progress_and_renews_the_lease,
            a_checkpoint_under_a_lost_lease_writes_nothing,
            the_last_checkpoint_succeeds_the_job,
            cancelling_a_pending_job_keeps_it_from_running,
            cancelling_a_running_job_stops_the_worker_at_its_checkpoint,
            cancelling_a_finished_job_changes_nothing,
            only_the_creator_cancels,
            a_released_job_is_claimable_at_once,
            concurrent_claims_never_share_a_job,
            claims_are_fair_between_creators,
            find_answers_a_creators_job_by_key,
        );
    };
    (@each $factory:expr; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let fixture = $factory.await;
                $crate::jobs::store::conformance::$test(
                    $crate::jobs::store::conformance::JobStoreFixture::store(&fixture),
                )
                .await;
            }
        )+
    };
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A start request of `kind` referring to `payload`, under `key`, at 100 followers/s.
pub fn request(key: &str, kind: JobKind, payload: &str) -> StartJob {
    StartJob {
        kind,
        payload_ref: PayloadRef::from_trusted(payload.to_owned()),
        idempotency_key: IdempotencyKey::from_trusted(key.to_owned()),
        rate: Rate::from_trusted(100),
    }
}

/// A new broadcast job of `creator` under `key` with 10 followers.
pub fn new_job(creator: i64, key: &str) -> NewJob {
    NewJob {
        creator: user(creator),
        request: request(key, JobKind::BroadcastNotification, "post"),
        followers_total: 10,
    }
}

/// Creates a job at `at(seconds)`, expecting a new one.
pub async fn create(store: &dyn JobStore, creator: i64, key: &str, seconds: i64) -> FanoutJob {
    let created = store.create(new_job(creator, key), at(seconds)).await.expect("create succeeds");
    assert!(created.created, "a new key makes a new job");
    created.job
}

async fn get(store: &dyn JobStore, id: JobId) -> FanoutJob {
    store.get(id).await.expect("get succeeds").expect("the job exists")
}

/// A walk position after follower `follower`, who followed at `at(seconds)`.
pub fn position(seconds: i64, follower: i64) -> FollowKey {
    FollowKey { followed_at: at(seconds), user: user(follower) }
}

/// Whether a checkpoint ends the walk of the job's followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// More followers to go.
    GoesOn,
    /// Every follower notified: the job succeeds.
    Finished,
}

/// The checkpoint after `done` followers, the last one at `cursor`.
fn progress(cursor: Option<FollowKey>, done: u64, walk: Walk) -> Checkpoint {
    Checkpoint { cursor, followers_done: done, finished: walk == Walk::Finished }
}

// ---------------------------------------------------------------------------------------
// The tests

/// A repeated key returns the first job unchanged; other keys and other creators' keys
/// are other jobs.
pub async fn create_is_idempotent_per_creator_and_key(store: &dyn JobStore) {
    let first = create(store, 1, "launch", 0).await;
    assert_eq!(first.state, JobState::Pending);
    assert_eq!((first.followers_total, first.followers_done, first.cursor), (10, 0, None));
    assert_eq!((first.started_at, first.finished_at), (None, None));
    assert_eq!(first.created_at, at(0));

    let mut different = new_job(1, "launch");
    different.request = request("launch", JobKind::NewGroupInvitation, "group-9");
    let again = store.create(different, at(5)).await.expect("create succeeds");
    assert!(!again.created);
    assert_eq!(again.job, first, "the existing job, unchanged: the caller compares");

    let other_key = create(store, 1, "launch-2", 6).await;
    let other_creator = create(store, 2, "launch", 7).await;
    let ids: HashSet<JobId> = [first.id, other_key.id, other_creator.id].into();
    assert_eq!(ids.len(), 3);
    assert!(other_key.id > first.id, "ids grow with creation");
}

/// Ten concurrent starts with one key make one job.
pub async fn concurrent_creates_with_one_key_make_one_job(store: &dyn JobStore) {
    let attempts = (0..10).map(|_| store.create(new_job(1, "same"), at(0)));
    let outcomes: Vec<_> = join_all(attempts).await.into_iter().map(|outcome| outcome.expect("create")).collect();
    assert_eq!(outcomes.iter().filter(|outcome| outcome.created).count(), 1);
    let ids: HashSet<JobId> = outcomes.iter().map(|outcome| outcome.job.id).collect();
    assert_eq!(ids.len(), 1);
}

/// A missing id is `None`, not an error.
pub async fn get_answers_none_for_a_missing_job(store: &dyn JobStore) {
    assert_eq!(store.get(JobId::from_trusted(12_345)).await.expect("get succeeds"), None);
    let job = create(store, 1, "k", 0).await;
    assert_eq!(get(store, job.id).await, job);
}

/// Pages of 2 over 5 jobs of one creator, newest first, without another creator's.
pub async fn list_walks_a_creators_jobs_newest_first(store: &dyn JobStore) {
    let mut mine = Vec::new();
    for index in 0..5 {
        mine.push(create(store, 1, &format!("mine-{index}"), index).await.id);
        create(store, 2, &format!("theirs-{index}"), index).await;
    }
    let size = PageSize::new(2);
    let mut walked = Vec::new();
    let mut before = None;
    loop {
        let mut rows = store.list(user(1), before, size).await.expect("list succeeds");
        assert!(rows.len() <= 3, "at most limit + 1 rows");
        let more = rows.len() > 2;
        rows.truncate(2);
        assert!(rows.iter().all(|job| job.creator == user(1)));
        walked.extend(rows.iter().map(|job| job.id));
        before = rows.last().map(|job| job.id);
        if !more {
            break;
        }
    }
    mine.reverse();
    assert_eq!(walked, mine);
    assert!(store.list(user(3), None, size).await.expect("list succeeds").is_empty());
}

/// A claim runs the oldest pending job under a fresh lease; the next claim the next job.
pub async fn claim_leases_the_oldest_pending_job(store: &dyn JobStore) {
    assert!(store.claim(LEASE, at(0)).await.expect("claim succeeds").is_none(), "nothing to run");
    let older = create(store, 1, "a", 0).await;
    let newer = create(store, 2, "b", 1).await;

    let first = store.claim(LEASE, at(10)).await.expect("claim succeeds").expect("a job");
    assert_eq!(first.job.id, older.id);
    assert_eq!(first.job.state, JobState::Running);
    assert_eq!(first.job.started_at, Some(at(10)));
    assert!(!first.takeover);
    assert_eq!(first.lease.job, older.id);
    assert_eq!(first.lease.expires_at, at(40));
    assert_eq!(get(store, older.id).await.state, JobState::Running);

    let second = store.claim(LEASE, at(11)).await.expect("claim succeeds").expect("a job");
    assert_eq!(second.job.id, newer.id);
    assert_ne!(second.lease.token, first.lease.token);
    assert!(store.claim(LEASE, at(12)).await.expect("claim succeeds").is_none(), "both are leased");
}

/// Before the lease ends nobody else gets the job; after, the next claim takes it over
/// from the last checkpoint, keeping the original start time.
pub async fn a_live_lease_is_kept_and_an_expired_one_is_taken_over(store: &dyn JobStore) {
    let job = create(store, 1, "a", 0).await;
    let first = store.claim(LEASE, at(10)).await.expect("claim").expect("a job");
    let cursor = Some(position(-5, 77));
    let recorded =
        store.checkpoint(&first.lease, progress(cursor, 4, Walk::GoesOn), LEASE, at(20)).await.expect("checkpoint");
    assert_eq!(recorded, CheckpointOutcome::Running { lease_expires_at: at(50) });

    assert!(store.claim(LEASE, at(49)).await.expect("claim").is_none(), "the renewed lease holds until 50");
    let second = store.claim(LEASE, at(50)).await.expect("claim").expect("taken over");
    assert_eq!(second.job.id, job.id);
    assert!(second.takeover);
    assert_eq!((second.job.cursor, second.job.followers_done), (cursor, 4), "resumes from the checkpoint");
    assert_eq!(second.job.started_at, Some(at(10)));
    assert_eq!(second.lease.expires_at, at(80));
}

/// A checkpoint stores cursor and count and moves the lease's end.
pub async fn a_checkpoint_records_progress_and_renews_the_lease(store: &dyn JobStore) {
    let job = create(store, 1, "a", 0).await;
    let claim = store.claim(LEASE, at(0)).await.expect("claim").expect("a job");
    for (page, seconds) in [(1_i64, 5_i64), (2, 25), (3, 45)] {
        let cursor = Some(position(-page, page * 10));
        let done = u64::try_from(page * 3).expect("small");
        let outcome = store.checkpoint(&claim.lease, progress(cursor, done, Walk::GoesOn), LEASE, at(seconds)).await;
        assert_eq!(outcome.expect("checkpoint"), CheckpointOutcome::Running { lease_expires_at: at(seconds + 30) });
        let stored = get(store, job.id).await;
        assert_eq!((stored.cursor, stored.followers_done, stored.state), (cursor, done, JobState::Running));
    }
    assert!(store.claim(LEASE, at(74)).await.expect("claim").is_none(), "renewed past the first lease's end");
}

/// Once another worker took the job over, the first one's checkpoints and releases match
/// nothing: the second worker's progress stands.
pub async fn a_checkpoint_under_a_lost_lease_writes_nothing(store: &dyn JobStore) {
    let job = create(store, 1, "a", 0).await;
    let stale = store.claim(LEASE, at(0)).await.expect("claim").expect("a job");
    let current = store.claim(LEASE, at(31)).await.expect("claim").expect("taken over");
    let cursor = Some(position(-1, 9));
    store.checkpoint(&current.lease, progress(cursor, 7, Walk::GoesOn), LEASE, at(32)).await.expect("checkpoint");

    let late = store.checkpoint(&stale.lease, progress(Some(position(-9, 99)), 2, Walk::Finished), LEASE, at(33)).await;
    assert_eq!(late.expect("checkpoint answers"), CheckpointOutcome::LeaseLost);
    store.release(&stale.lease).await.expect("release answers");
    let stored = get(store, job.id).await;
    assert_eq!((stored.cursor, stored.followers_done, stored.state), (cursor, 7, JobState::Running));
    assert!(store.claim(LEASE, at(40)).await.expect("claim").is_none(), "the current lease was not released");
}

/// The checkpoint of the last page succeeds the job and ends the lease.
pub async fn the_last_checkpoint_succeeds_the_job(store: &dyn JobStore) {
    let job = create(store, 1, "a", 0).await;
    let claim = store.claim(LEASE, at(1)).await.expect("claim").expect("a job");
    let cursor = Some(position(-1, 3));
    let outcome = store.checkpoint(&claim.lease, progress(cursor, 10, Walk::Finished), LEASE, at(2)).await;
    assert_eq!(outcome.expect("checkpoint"), CheckpointOutcome::Succeeded);
    let stored = get(store, job.id).await;
    assert_eq!((stored.state, stored.followers_done, stored.finished_at), (JobState::Succeeded, 10, Some(at(2))));
    assert!(store.claim(LEASE, at(100)).await.expect("claim").is_none(), "finished jobs never run again");
    let again = store.checkpoint(&claim.lease, progress(None, 0, Walk::GoesOn), LEASE, at(3)).await;
    assert_eq!(again.expect("checkpoint answers"), CheckpointOutcome::LeaseLost);
    assert_eq!(get(store, job.id).await, stored);
}

/// A pending job cancelled never runs.
pub async fn cancelling_a_pending_job_keeps_it_from_running(store: &dyn JobStore) {
    let job = create(store, 1, "a", 0).await;
    let cancelled = store.cancel(user(1), job.id, at(3)).await.expect("cancel").expect("the job");
    assert!(cancelled.changed);
    assert_eq!((cancelled.job.state, cancelled.job.finished_at), (JobState::Cancelled, Some(at(3))));
    assert_eq!(cancelled.job.started_at, None);
    assert!(store.claim(LEASE, at(4)).await.expect("claim").is_none());
}

/// A running job cancelled records its worker's last page and then stops it.
pub async fn cancelling_a_running_job_stops_the_worker_at_its_checkpoint(store: &dyn JobStore) {
    let job = create(store, 1, "a", 0).await;
    let claim = store.claim(LEASE, at(1)).await.expect("claim").expect("a job");
    let cancelled = store.cancel(user(1), job.id, at(2)).await.expect("cancel").expect("the job");
    assert!(cancelled.changed);
    assert_eq!(cancelled.job.state, JobState::Cancelled);

    let cursor = Some(position(-1, 5));
    let outcome = store.checkpoint(&claim.lease, progress(cursor, 6, Walk::GoesOn), LEASE, at(3)).await;
    assert_eq!(outcome.expect("checkpoint"), CheckpointOutcome::Cancelled);
    let stored = get(store, job.id).await;
    assert_eq!((stored.state, stored.followers_done, stored.cursor), (JobState::Cancelled, 6, cursor));
    assert_eq!(stored.finished_at, Some(at(2)), "finished when cancelled");
    let after = store.checkpoint(&claim.lease, progress(None, 9, Walk::GoesOn), LEASE, at(4)).await;
    assert_eq!(after.expect("checkpoint answers"), CheckpointOutcome::LeaseLost, "the lease ended");
    assert!(store.claim(LEASE, at(100)).await.expect("claim").is_none());
}

/// Cancelling a job that succeeded, or was cancelled, returns it as it is.
pub async fn cancelling_a_finished_job_changes_nothing(store: &dyn JobStore) {
    let job = create(store, 1, "a", 0).await;
    let claim = store.claim(LEASE, at(1)).await.expect("claim").expect("a job");
    store.checkpoint(&claim.lease, progress(None, 0, Walk::Finished), LEASE, at(2)).await.expect("checkpoint");
    let succeeded = get(store, job.id).await;
    let cancel = store.cancel(user(1), job.id, at(3)).await.expect("cancel").expect("the job");
    assert!(!cancel.changed);
    assert_eq!(cancel.job, succeeded);

    let other = create(store, 1, "b", 4).await;
    let first = store.cancel(user(1), other.id, at(5)).await.expect("cancel").expect("the job");
    let second = store.cancel(user(1), other.id, at(6)).await.expect("cancel").expect("the job");
    assert!(!second.changed);
    assert_eq!(second.job, first.job, "still cancelled at the first time");
}

/// Another creator's cancel finds nothing and changes nothing.
pub async fn only_the_creator_cancels(store: &dyn JobStore) {
    let job = create(store, 1, "a", 0).await;
    assert_eq!(store.cancel(user(2), job.id, at(1)).await.expect("cancel answers"), None);
    assert_eq!(store.cancel(user(1), JobId::from_trusted(999), at(1)).await.expect("cancel answers"), None);
    assert_eq!(get(store, job.id).await.state, JobState::Pending);
}

/// A released job (its worker shut down) is claimed again at once, from its checkpoint, and
/// that is not a takeover; the releasing lease is dead.
pub async fn a_released_job_is_claimable_at_once(store: &dyn JobStore) {
    let job = create(store, 1, "a", 0).await;
    let first = store.claim(LEASE, at(1)).await.expect("claim").expect("a job");
    let cursor = Some(position(-1, 5));
    store.checkpoint(&first.lease, progress(cursor, 3, Walk::GoesOn), LEASE, at(2)).await.expect("checkpoint");
    store.release(&first.lease).await.expect("release");
    let second = store.claim(LEASE, at(3)).await.expect("claim").expect("claimable at once");
    assert_eq!((second.job.id, second.job.cursor, second.job.followers_done), (job.id, cursor, 3));
    assert!(!second.takeover);
    let stale = store.checkpoint(&first.lease, progress(None, 0, Walk::GoesOn), LEASE, at(4)).await;
    assert_eq!(stale.expect("checkpoint answers"), CheckpointOutcome::LeaseLost);
}

/// Eight concurrent claims over five jobs: each job goes to exactly one claim.
pub async fn concurrent_claims_never_share_a_job(store: &dyn JobStore) {
    for index in 0..5 {
        create(store, 1, &format!("job-{index}"), index).await;
    }
    let claims = join_all((0..8).map(|_| store.claim(LEASE, at(10)))).await;
    let claimed: Vec<JobId> =
        claims.into_iter().filter_map(|claim| claim.expect("claim succeeds")).map(|claim| claim.job.id).collect();
    let distinct: HashSet<JobId> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 5, "{claimed:?}");
    assert_eq!(distinct.len(), 5, "{claimed:?}");
}

/// One creator's queue does not hold back another's: a claim takes the job of the creator
/// with the fewest jobs running, the oldest among equals.
pub async fn claims_are_fair_between_creators(store: &dyn JobStore) {
    let busy = [create(store, 1, "a", 0).await, create(store, 1, "b", 1).await, create(store, 1, "c", 2).await];
    let late = create(store, 2, "d", 3).await;
    let mut claimed = Vec::new();
    for second in 10..14 {
        claimed.push(store.claim(LEASE, at(second)).await.expect("claim succeeds").expect("a job").job.id);
    }
    assert_eq!(claimed, [busy[0].id, late.id, busy[1].id, busy[2].id], "the late creator's job runs second");
}

/// A job is found by its creator and key, and by nobody else's.
pub async fn find_answers_a_creators_job_by_key(store: &dyn JobStore) {
    let job = create(store, 1, "launch", 0).await;
    let key = IdempotencyKey::parse("key", "launch").expect("a valid key");
    assert_eq!(store.find(user(1), &key).await.expect("find succeeds"), Some(job));
    assert_eq!(store.find(user(2), &key).await.expect("find succeeds"), None, "keys are per creator");
    let other = IdempotencyKey::parse("key", "other").expect("a valid key");
    assert_eq!(store.find(user(1), &other).await.expect("find succeeds"), None);
}
