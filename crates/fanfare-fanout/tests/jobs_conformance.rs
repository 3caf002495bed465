//! The fan-out job conformance suites: the job store against memory and PostgreSQL (a fresh
//! database per test), the notification sink against memory and Redis (a fresh stream key
//! per test, deleted afterwards).
//!
//! PostgreSQL is reached at `postgres://postgres@127.0.0.1:5432/postgres` unless
//! `DATABASE_URL` names another admin connection; Redis at `REDIS_URL` (default
//! `redis://127.0.0.1:6379`).

use async_trait::async_trait;
use fanfare_fanout::follows::store::PostgresFollowStore;
use fanfare_fanout::jobs::sink::PushEntry;
use fanfare_fanout::jobs::sink::conformance::SinkFixture;
use fanfare_fanout::jobs::store::conformance::JobStoreFixture;
use fanfare_fanout::jobs::{JobStore, NotificationSink, PostgresJobStore, RedisStreamSink};
use fanfare_testdb::TestDatabase;

mod memory_store {
    use fanfare_fanout::jobs::MemoryJobStore;

    fanfare_fanout::job_store_conformance_tests!(async { MemoryJobStore::new() });
}

mod postgres_store {
    fanfare_fanout::job_store_conformance_tests!(super::PostgresFixture::new());
}

mod memory_sink {
    use fanfare_fanout::jobs::MemoryNotificationSink;

    fanfare_fanout::notification_sink_conformance_tests!(async { MemoryNotificationSink::new() });
}

mod redis_sink {
    fanfare_fanout::notification_sink_conformance_tests!(super::RedisFixture::new());
}

/// A migrated job store over its own fresh database.
pub struct PostgresFixture {
    store: PostgresJobStore,
    // Declared last so it drops after the store.
    _database: TestDatabase,
}

impl PostgresFixture {
    /// Creates a database, connects and migrates it.
    pub async fn new() -> Self {
        let database = TestDatabase::create().await.expect("a fresh test database");
        let follows = PostgresFollowStore::connect(&database.url(), 8).await.expect("connect to the test database");
        PostgresFollowStore::migrate(follows.pool()).await.expect("migrate the test database");
        Self { store: PostgresJobStore::from_pool(follows.pool().clone()), _database: database }
    }
}

impl JobStoreFixture for PostgresFixture {
    fn store(&self) -> &dyn JobStore {
        &self.store
    }
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A Redis sink on a stream key of its own; the stream and its page markers are deleted
/// on drop.
pub struct RedisFixture {
    sink: RedisStreamSink,
}

impl RedisFixture {
    /// A sink on a fresh stream key.
    pub async fn new() -> Self {
        let stream = format!("fanfare-test:{}:push", uuid::Uuid::new_v4().simple());
        Self { sink: RedisStreamSink::open(&redis_url(), None, &stream, 1_000_000).expect("open the push stream") }
    }
}

#[async_trait]
impl SinkFixture for RedisFixture {
    fn sink(&self) -> &dyn NotificationSink {
        &self.sink
    }

    async fn entries(&self) -> Vec<PushEntry> {
        self.sink.read_entries().await.expect("read the push stream")
    }
}

impl Drop for RedisFixture {
    fn drop(&mut self) {
        // Best effort, synchronously: the stream and every marker named after it.
        let Ok(mut connection) = redis::Client::open(redis_url()).and_then(|client| client.get_connection()) else {
            return;
        };
        let pattern = format!("{}*", self.sink.stream());
        let keys: Vec<String> = redis::Commands::scan_match::<_, String>(&mut connection, &pattern)
            .map(|keys| keys.filter_map(Result::ok).collect())
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::Commands::del(&mut connection, keys);
        }
    }
}
