//! The conformance suite of [`NotificationSink`]: written once and stamped out per
//! implementation with [`notification_sink_conformance_tests!`]. Test support behind the
//! `testing` feature; its functions panic when a sink misbehaves and must never be called
//! outside tests. Each test expects an empty sink.
//!
//! [`notification_sink_conformance_tests!`]: crate::notification_sink_conformance_tests

use std::collections::HashSet;

use async_trait::async_trait;
use fanfare_core::ids::UserId;
use futures::future::join_all;

use super::{JobRef, MemoryNotificationSink, NotificationSink, PageAppend, PushEntry};
use crate::follows::domain::FollowKey;
use crate::follows::store::conformance::{at, user};
use crate::jobs::domain::{JobId, JobKind, PayloadRef};

/// Something that holds a sink under test and can read back what it appended.
#[async_trait]
pub trait SinkFixture: Send + Sync {
    /// The sink under test.
    fn sink(&self) -> &dyn NotificationSink;

    /// Every entry appended so far, oldest first.
    async fn entries(&self) -> Vec<PushEntry>;
}

#[async_trait]
impl SinkFixture for MemoryNotificationSink {
    fn sink(&self) -> &dyn NotificationSink {
        self
    }

    async fn entries(&self) -> Vec<PushEntry> {
        MemoryNotificationSink::entries(self)
    }
}

/// Stamps out one `#[tokio::test]` per conformance test. The argument is an expression
/// evaluated afresh for each test, yielding a future of a [`SinkFixture`] over an empty sink.
///
/// [`SinkFixture`]: crate::jobs::sink::conformance::SinkFixture
#[macro_export]
macro_rules! notification_sink_conformance_tests {
    ($factory:expr) => {
        $crate::notification_sink_conformance_tests!(@each $factory;
            a_page_appends_one_entry_per_follower_in_order,
            replaying_a_page_writes_nothing_and_answers_what_was_recorded,
            pages_are_told_apart_by_job_and_start,
            concurrent_appends_of_one_page_write_it_once,
            a_walk_replayed_page_by_page_appends_each_key_once,
        );
    };
    (@each $factory:expr; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let fixture = $factory.await;
                $crate::jobs::sink::conformance::$test(&fixture).await;
            }
        )+
    };
}

/// Job `id` of creator 1, inviting to group 9.
pub fn job(id: i64) -> JobRef {
    JobRef {
        id: JobId::from_trusted(id),
        creator: user(1),
        kind: JobKind::NewGroupInvitation,
        payload_ref: PayloadRef::from_trusted("group-9".to_owned()),
    }
}

/// The walk position of follower `follower`, who followed at `at(-follower)`.
fn key(follower: i64) -> FollowKey {
    FollowKey { followed_at: at(-follower), user: user(follower) }
}

fn followers(ids: std::ops::RangeInclusive<i64>) -> Vec<UserId> {
    ids.map(user).collect()
}

async fn append(
    sink: &dyn NotificationSink,
    job: &JobRef,
    start: Option<FollowKey>,
    page: std::ops::RangeInclusive<i64>,
) -> PageAppend {
    let end = key(*page.end());
    sink.append_page(job, start, end, &followers(page)).await.expect("append succeeds")
}

fn keys(entries: &[PushEntry]) -> Vec<String> {
    entries.iter().map(|entry| entry.key.clone()).collect()
}

/// A first page: one entry per follower, in the page's order, carrying every field.
pub async fn a_page_appends_one_entry_per_follower_in_order(fixture: &dyn SinkFixture) {
    let appended = append(fixture.sink(), &job(5), None, 1..=3).await;
    assert_eq!(appended, PageAppend { end: key(3), count: 3, replayed: false });
    let entries = fixture.entries().await;
    assert_eq!(keys(&entries), ["5:1", "5:2", "5:3"]);
    let second = &entries[1];
    assert_eq!((second.job_id, second.follower_user_id, second.creator_user_id), (5, 2, 1));
    assert_eq!(
        (second.kind.as_str(), second.payload_ref.as_str()),
        ("FANOUT_JOB_KIND_NEW_GROUP_INVITATION", "group-9")
    );
}

/// The same start again writes nothing, even with other followers, and answers the end and
/// count of the first append.
pub async fn replaying_a_page_writes_nothing_and_answers_what_was_recorded(fixture: &dyn SinkFixture) {
    let start = Some(key(10));
    append(fixture.sink(), &job(5), start, 11..=14).await;
    // Since the first append, follower 12 unfollowed and the page now reaches 15.
    let replay = fixture.sink().append_page(&job(5), start, key(15), &[user(11), user(13), user(14), user(15)]).await;
    assert_eq!(replay.expect("replay succeeds"), PageAppend { end: key(14), count: 4, replayed: true });
    assert_eq!(keys(&fixture.entries().await), ["5:11", "5:12", "5:13", "5:14"]);
}

/// Markers belong to one job and one start: another job's first page, or the next page of
/// the same job, is appended.
pub async fn pages_are_told_apart_by_job_and_start(fixture: &dyn SinkFixture) {
    assert!(!append(fixture.sink(), &job(5), None, 1..=2).await.replayed);
    assert!(!append(fixture.sink(), &job(6), None, 1..=2).await.replayed);
    assert!(!append(fixture.sink(), &job(5), Some(key(2)), 3..=4).await.replayed);
    assert_eq!(keys(&fixture.entries().await), ["5:1", "5:2", "6:1", "6:2", "5:3", "5:4"]);
}

/// Eight workers appending one page at once (a takeover racing a worker that lost its
/// lease): one appends, the others replay.
pub async fn concurrent_appends_of_one_page_write_it_once(fixture: &dyn SinkFixture) {
    let the_job = job(5);
    let attempts = join_all((0..8).map(|_| append(fixture.sink(), &the_job, None, 1..=50))).await;
    assert_eq!(attempts.iter().filter(|appended| !appended.replayed).count(), 1);
    assert!(attempts.iter().all(|appended| appended.end == key(50) && appended.count == 50));
    assert_eq!(fixture.entries().await.len(), 50);
}

/// A walk of 10 pages where every page is appended twice (a crash after each append):
/// each of the 100 keys once, in walk order.
pub async fn a_walk_replayed_page_by_page_appends_each_key_once(fixture: &dyn SinkFixture) {
    let the_job = job(7);
    let mut start = None;
    for page in 0..10 {
        let range = page * 10 + 1..=page * 10 + 10;
        let first = append(fixture.sink(), &the_job, start, range.clone()).await;
        let again = append(fixture.sink(), &the_job, start, range).await;
        assert!(again.replayed);
        assert_eq!((again.end, again.count), (first.end, first.count));
        start = Some(again.end);
    }
    let entries = fixture.entries().await;
    let distinct: HashSet<&str> = entries.iter().map(|entry| entry.key.as_str()).collect();
    assert_eq!((entries.len(), distinct.len()), (100, 100));
    let followers: Vec<i64> = entries.iter().map(|entry| entry.follower_user_id).collect();
    assert_eq!(followers, (1..=100).collect::<Vec<_>>());
}
