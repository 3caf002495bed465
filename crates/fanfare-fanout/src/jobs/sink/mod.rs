//! Where job notifications go for the push service: the [`NotificationSink`] trait, with a
//! Redis Stream implementation ([`RedisStreamSink`]) for production and an in-memory one
//! ([`MemoryNotificationSink`]) for `fanfare dev` and fast tests. One conformance suite
//! (`conformance`, behind the `testing` feature) runs against both.
//!
//! A sink appends a job's followers **a page at a time, exactly once per page**: the page's
//! entries and a *page marker* keyed by the job and the page's start position are written
//! together, atomically. Appending a page whose marker exists (the worker crashed after the
//! append but before its Postgres checkpoint, and a worker is replaying the page) writes
//! nothing and answers what the marker recorded: where the page ended and how many followers
//! it held, for the worker to checkpoint. Pages start where the previous one ended, so
//! successive pages of a walk cover disjoint ranges of the follower listing, and no
//! follower's key is appended twice within a job.

#[cfg(feature = "testing")]
pub mod conformance;
pub mod memory;
pub mod stream;

use std::time::Duration;

use async_trait::async_trait;
use fanfare_core::ids::UserId;

use super::domain::{FanoutJob, JobId, JobKind, PayloadRef, cursor_text, parse_cursor_text};
use crate::follows::domain::FollowKey;
use crate::live::notify::NotificationPage;

pub use memory::MemoryNotificationSink;
pub use stream::RedisStreamSink;

/// How long a page marker is kept. A job that stays paused longer than this right after a
/// crash between an append and its checkpoint would append that page again.
pub const PAGE_MARKER_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Why an append failed. Either way the page may or may not have been appended: the worker
/// retries it, and the page marker makes the retry exact.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Redis could not be reached or did not answer in time.
    #[error("the push stream is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Redis refused the command, or a marker did not parse.
    #[error("the push stream failed")]
    Internal(#[source] anyhow::Error),
}

/// What a sink needs to know of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    /// The job.
    pub id: JobId,
    /// The creator.
    pub creator: UserId,
    /// What it announces.
    pub kind: JobKind,
    /// What it refers to.
    pub payload_ref: PayloadRef,
}

impl From<&FanoutJob> for JobRef {
    fn from(job: &FanoutJob) -> Self {
        Self { id: job.id, creator: job.creator, kind: job.kind, payload_ref: job.payload_ref.clone() }
    }
}

/// What appending a page did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageAppend {
    /// The last follower of the page: where the next page starts.
    pub end: FollowKey,
    /// Followers in the page.
    pub count: u64,
    /// Whether the page had been appended before: nothing was written now, and `end` and
    /// `count` are what the first append recorded.
    pub replayed: bool,
}

/// Appends job notifications for the push service.
#[async_trait]
pub trait NotificationSink: Send + Sync + 'static {
    /// Appends one entry per follower of a page of `job`'s walk that starts strictly after
    /// `start` (`None`: the first page) and ends at `end`, in order, together with the page's
    /// marker — unless the marker exists, in which case nothing is written and the recorded
    /// end and count are returned with `replayed: true`. `followers` is not empty.
    async fn append_page(
        &self,
        job: &JobRef,
        start: Option<FollowKey>,
        end: FollowKey,
        followers: &[UserId],
    ) -> Result<PageAppend, SinkError>;
}

/// One notification as the push service reads it from the stream: every field is text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PushEntry {
    /// `<job_id>:<follower_user_id>`, unique per notification; the same key as live.
    pub key: String,
    /// The job.
    pub job_id: i64,
    /// Who is notified.
    pub follower_user_id: i64,
    /// The creator they follow.
    pub creator_user_id: i64,
    /// The `fanfare.fanout.v1.FanoutJobKind` value's name, e.g.
    /// `FANOUT_JOB_KIND_NEW_GROUP_INVITATION`.
    pub kind: String,
    /// What the notification refers to.
    pub payload_ref: String,
}

impl PushEntry {
    /// The entry of `follower` in `job`'s walk.
    pub fn new(job: &JobRef, follower: UserId) -> Self {
        Self {
            key: NotificationPage::key(job.id.get(), follower.get()),
            job_id: job.id.get(),
            follower_user_id: follower.get(),
            creator_user_id: job.creator.get(),
            kind: job.kind.to_proto().as_str_name().to_owned(),
            payload_ref: job.payload_ref.as_str().to_owned(),
        }
    }

    /// Reads an entry from its stream fields; `None` when one is missing or malformed.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let (mut key, mut job_id, mut follower, mut creator, mut kind, mut payload_ref) =
            (None, None, None, None, None, None);
        for (name, value) in fields {
            match name {
                "key" => key = Some(value.to_owned()),
                "job_id" => job_id = value.parse().ok(),
                "follower_user_id" => follower = value.parse().ok(),
                "creator_user_id" => creator = value.parse().ok(),
                "kind" => kind = Some(value.to_owned()),
                "payload_ref" => payload_ref = Some(value.to_owned()),
                _ => {}
            }
        }
        Some(Self {
            key: key?,
            job_id: job_id?,
            follower_user_id: follower?,
            creator_user_id: creator?,
            kind: kind?,
            payload_ref: payload_ref?,
        })
    }
}

/// The full key of the push stream `stream` in the Redis namespace `namespace`
/// (`FANFARE_REDIS_NAMESPACE`): `<namespace>:<stream>`, or `stream` alone when the namespace
/// is empty. A hash tag in the stream's name stays the key's hash tag.
pub fn push_stream_key(namespace: &str, stream: &str) -> String {
    if namespace.is_empty() { stream.to_owned() } else { format!("{namespace}:{stream}") }
}

/// The key of the marker of `job`'s page starting after `start`, next to `stream` (and in
/// its Redis Cluster slot when the stream's name carries a hash tag, e.g. `{push}:stream`):
/// `<stream>:job:<job_id>:page:<start>`.
pub fn page_marker_key(stream: &str, job: JobId, start: Option<FollowKey>) -> String {
    format!("{stream}:job:{job}:page:{}", cursor_text(start))
}

/// What a page marker records: `<end cursor>|<count>`.
pub fn page_marker_value(end: FollowKey, count: u64) -> String {
    format!("{}|{count}", cursor_text(Some(end)))
}

/// The (end, count) a page marker records.
pub fn parse_page_marker(value: &str) -> Option<(FollowKey, u64)> {
    let (end, count) = value.split_once('|')?;
    Some((parse_cursor_text(end)?, count.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    #[test]
    fn markers_are_keyed_by_job_and_start_and_record_end_and_count() {
        let end = FollowKey {
            followed_at: DateTime::from_timestamp_micros(1_893_456_000_000_001).unwrap(),
            user: UserId::from_trusted(7),
        };
        let job = JobId::from_trusted(42);
        assert_eq!(page_marker_key("{push}:s", job, None), "{push}:s:job:42:page:start");
        assert_eq!(page_marker_key("s", job, Some(end)), "s:job:42:page:1893456000000001:7");
        assert_eq!(page_marker_value(end, 100), "1893456000000001:7|100");
        assert_eq!(parse_page_marker(&page_marker_value(end, 100)), Some((end, 100)));
        assert_eq!(parse_page_marker("start|3"), None);
        assert_eq!(parse_page_marker("1:2"), None);
    }

    #[test]
    fn the_push_stream_is_namespaced_when_a_namespace_is_set() {
        assert_eq!(push_stream_key("", "fanfare:push:notifications"), "fanfare:push:notifications");
        assert_eq!(push_stream_key("staging", "{push}:notifications"), "staging:{push}:notifications");
    }

    #[test]
    fn entries_read_back_from_their_fields() {
        let job = JobRef {
            id: JobId::from_trusted(5),
            creator: UserId::from_trusted(1),
            kind: JobKind::NewGroupInvitation,
            payload_ref: PayloadRef::from_trusted("group-9".to_owned()),
        };
        let entry = PushEntry::new(&job, UserId::from_trusted(33));
        assert_eq!(entry.key, "5:33");
        assert_eq!(entry.kind, "FANOUT_JOB_KIND_NEW_GROUP_INVITATION");
        let fields = [
            ("key", "5:33"),
            ("job_id", "5"),
            ("follower_user_id", "33"),
            ("creator_user_id", "1"),
            ("kind", "FANOUT_JOB_KIND_NEW_GROUP_INVITATION"),
            ("payload_ref", "group-9"),
        ];
        assert_eq!(PushEntry::from_fields(fields), Some(entry));
        assert_eq!(PushEntry::from_fields(fields[1..].iter().copied()), None);
    }
}
