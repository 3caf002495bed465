//! The production [`NotificationSink`]: a Redis Stream the push service consumes, written by
//! one Lua script per page (`EVALSHA`, loaded on first use) so that the page's `XADD`s and its
//! marker are applied together or not at all: Redis runs a script without interleaving other
//! commands, and replicates and persists its effects as one unit.
//!
//! On Redis Cluster the stream and the markers must live in one slot: give the stream a
//! hash tag (`FANFARE_FANOUT_PUSH_STREAM={fanfare:push}:notifications`); markers are named
//! after the stream, so they share it.

use std::path::Path;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{RedisError, Script, Value};
use anyhow::Context as _;
use async_trait::async_trait;
use fanfare_core::ids::UserId;

use super::{
    JobRef, NotificationSink, PAGE_MARKER_TTL, PageAppend, PushEntry, SinkError, page_marker_key, page_marker_value,
    parse_page_marker,
};
use crate::follows::domain::FollowKey;

/// How long connecting to Redis may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one script may take to answer (a page of 10,000 entries takes milliseconds).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The page script. `KEYS[1]`: the stream; `KEYS[2]`: the page marker. `ARGV[1]`: the
/// stream's approximate cap; `ARGV[2]`: the marker's TTL in seconds; `ARGV[3]`: the marker's
/// value (`<end>|<count>`); `ARGV[4..7]`: job_id, creator_user_id, kind, payload_ref; then,
/// per follower, its key and id. Answers `{replayed, marker value}`: `{1, recorded}` when the
/// marker existed (nothing written), `{0, ARGV[3]}` after appending.
const APPEND_PAGE_LUA: &str = r"
local recorded = redis.call('GET', KEYS[2])
if recorded then
  return {1, recorded}
end
for i = 8, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
    'key', ARGV[i], 'job_id', ARGV[4], 'follower_user_id', ARGV[i + 1],
    'creator_user_id', ARGV[5], 'kind', ARGV[6], 'payload_ref', ARGV[7])
end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
return {0, ARGV[3]}
";

/// A [`NotificationSink`] appending to a Redis Stream.
#[derive(Clone)]
pub struct RedisStreamSink {
    connection: ConnectionManager,
    stream: String,
    max_len: u64,
    script: Script,
}

impl std::fmt::Debug for RedisStreamSink {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("RedisStreamSink").field("stream", &self.stream).field("max_len", &self.max_len).finish()
    }
}

/// Sorts a Redis error: reaching Redis, or the command itself.
fn sink_error(error: RedisError, operation: &'static str) -> SinkError {
    let unreachable = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error();
    let error = anyhow::Error::new(error).context(operation);
    if unreachable { SinkError::Unavailable(error) } else { SinkError::Internal(error) }
}

impl RedisStreamSink {
    /// A sink appending to the stream named `stream` (the full, namespaced key) at the Redis
    /// at `redis_url` (over TLS for `rediss://`, trusting the PEM CA certificates of
    /// `root_ca_file` or, without it, the system's roots), capped at about `max_len` entries.
    /// Connects lazily, on the first page; must be called inside a Tokio runtime.
    pub fn open(redis_url: &str, root_ca_file: Option<&Path>, stream: &str, max_len: u64) -> anyhow::Result<Self> {
        let root_ca_pem = root_ca_file
            .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
            .transpose()?;
        let client = fanfare_bus::redis_client(redis_url, root_ca_pem.as_deref())
            .context("parsing the Redis URL of the push stream")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .context("creating the push stream's Redis connection")?;
        Ok(Self { connection, stream: stream.to_owned(), max_len, script: Script::new(APPEND_PAGE_LUA) })
    }

    /// The stream's key.
    pub fn stream(&self) -> &str {
        &self.stream
    }
}

#[async_trait]
impl NotificationSink for RedisStreamSink {
    async fn append_page(
        &self,
        job: &JobRef,
        start: Option<FollowKey>,
        end: FollowKey,
        followers: &[UserId],
    ) -> Result<PageAppend, SinkError> {
        debug_assert!(!followers.is_empty(), "pages hold at least one follower");
        let count = followers.len() as u64;
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&self.stream)
            .key(page_marker_key(&self.stream, job.id, start))
            .arg(self.max_len)
            .arg(PAGE_MARKER_TTL.as_secs())
            .arg(page_marker_value(end, count))
            .arg(job.id.get())
            .arg(job.creator.get())
            .arg(job.kind.to_proto().as_str_name())
            .arg(job.payload_ref.as_str());
        for follower in followers {
            let entry = PushEntry::new(job, *follower);
            invocation.arg(entry.key).arg(follower.get());
        }
        let mut connection = self.connection.clone();
        let (replayed, recorded): (i64, Value) =
            invocation.invoke_async(&mut connection).await.map_err(|error| sink_error(error, "appending a page"))?;
        let recorded: String = ::redis::from_redis_value(recorded)
            .map_err(|error| SinkError::Internal(anyhow::Error::new(error).context("reading a page marker")))?;
        let (recorded_end, recorded_count) = parse_page_marker(&recorded)
            .with_context(|| format!("page marker of job {} holds {recorded:?}", job.id))
            .map_err(SinkError::Internal)?;
        Ok(PageAppend { end: recorded_end, count: recorded_count, replayed: replayed == 1 })
    }
}

/// Reading the stream back, for tests.
#[cfg(feature = "testing")]
mod read_back {
    use ::redis::AsyncCommands as _;
    use ::redis::streams::StreamRangeReply;
    use anyhow::Context as _;

    use super::{PushEntry, RedisStreamSink, SinkError, sink_error};

    /// Entries read per `XRANGE` by [`RedisStreamSink::read_entries`].
    const READ_BATCH: usize = 10_000;

    impl RedisStreamSink {
        /// Every entry of the stream, oldest first, in batches of `XRANGE`: for tests (the push
        /// service reads the stream with its own consumer group).
        pub async fn read_entries(&self) -> Result<Vec<PushEntry>, SinkError> {
            let mut connection = self.connection.clone();
            let mut entries = Vec::new();
            let mut start = "-".to_owned();
            loop {
                let reply: StreamRangeReply = connection
                    .xrange_count(&self.stream, &start, "+", READ_BATCH)
                    .await
                    .map_err(|error| sink_error(error, "reading the push stream"))?;
                let Some(last) = reply.ids.last() else {
                    return Ok(entries);
                };
                start = format!("({}", last.id);
                for id in &reply.ids {
                    let fields: Vec<(&str, String)> = id
                        .map
                        .iter()
                        .map(|(name, value)| (name.as_str(), ::redis::from_redis_value_ref(value).unwrap_or_default()))
                        .collect();
                    let entry = PushEntry::from_fields(fields.iter().map(|(name, value)| (*name, value.as_str())))
                        .with_context(|| format!("push stream entry {} lacks a field", id.id))
                        .map_err(SinkError::Internal)?;
                    entries.push(entry);
                }
            }
        }
    }
}
