//! The store conformance suite against the in-memory store and against PostgreSQL (a
//! fresh database per test), plus PostgreSQL-only checks: migrations and error mapping.
//!
//! PostgreSQL is reached at `postgres://postgres@127.0.0.1:5432/postgres` unless
//! `DATABASE_URL` names another admin connection.

use fanfare_messages::store::conformance::StoreFixture;
use fanfare_messages::store::{MessageStore, PostgresMessageStore, StoreError};
use fanfare_testdb::{TestDatabase, migrations};

mod memory {
    use fanfare_messages::store::MemoryMessageStore;

    fanfare_messages::message_store_conformance_tests!(async { MemoryMessageStore::new() });
}

mod postgres {
    fanfare_messages::message_store_conformance_tests!(super::PostgresFixture::new());
}

/// Connections per test pool: enough for the concurrency tests to overlap for real.
const TEST_POOL_CONNECTIONS: u32 = 8;

/// A migrated store over its own fresh database.
pub struct PostgresFixture {
    store: PostgresMessageStore,
    // Declared last so it drops after the store.
    _database: TestDatabase,
}

impl PostgresFixture {
    /// Creates a database, connects and migrates it.
    pub async fn new() -> Self {
        let database = TestDatabase::create().await.expect("a fresh test database");
        let store = PostgresMessageStore::connect(&database.url(), TEST_POOL_CONNECTIONS)
            .await
            .expect("connect to the test database");
        PostgresMessageStore::migrate(store.pool()).await.expect("migrate the test database");
        Self { store, _database: database }
    }
}

impl StoreFixture for PostgresFixture {
    fn store(&self) -> &dyn MessageStore {
        &self.store
    }
}

#[tokio::test]
async fn migrating_twice_applies_each_migration_once_inside_the_messages_schema() {
    let (_database, pool) =
        migrations::migrate_twice("messages", 4, |pool| async move { PostgresMessageStore::migrate(&pool).await })
            .await;
    let partitions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class parent ON parent.oid = i.inhparent \
         WHERE parent.oid IN ('messages.messages'::regclass, 'messages.updates'::regclass)",
    )
    .fetch_one(&pool)
    .await
    .expect("count partitions");
    assert_eq!(partitions, 32, "16 hash partitions each for messages and updates");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_from_two_pools_succeed() {
    migrations::migrate_concurrently("messages", 4, |pool| async move { PostgresMessageStore::migrate(&pool).await })
        .await;
}

#[tokio::test]
async fn migrating_is_a_send_future() {
    // Callers spawn the migration; this fails to compile if the future stops being Send.
    let database = TestDatabase::create().await.expect("a fresh test database");
    let store = PostgresMessageStore::connect(&database.url(), 2).await.expect("connect");
    let pool = store.pool().clone();
    tokio::spawn(async move { PostgresMessageStore::migrate(&pool).await })
        .await
        .expect("the migration task")
        .expect("migrate");
    store.pool().close().await;
}

#[tokio::test]
async fn a_closed_pool_reports_the_store_unavailable() {
    use fanfare_messages::store::conformance::{at, group, post, text, user};

    let fixture = PostgresFixture::new().await;
    fixture.store.pool().close().await;
    let ping = fixture.store.ping().await;
    assert!(matches!(ping, Err(StoreError::Unavailable(_))), "{ping:?}");
    let read = fixture.store.log_positions(&[group(1)]).await;
    assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
    let write = fixture.store.apply(vec![post(group(1), user(1), "k", text("k"))], at(0)).await;
    assert!(matches!(write, Err(StoreError::Unavailable(_))), "{write:?}");
}

#[tokio::test]
async fn a_failed_batch_writes_nothing_and_takes_no_seq() {
    use fanfare_messages::store::conformance::{apply_one, at, group, post, text, user};

    let fixture = PostgresFixture::new().await;
    let store: &dyn MessageStore = &fixture.store;
    apply_one(store, post(group(1), user(1), "a", text("a")), at(0)).await.expect("the first post");
    // Make the next insert into the log fail inside the batch's transaction.
    sqlx::query("ALTER TABLE messages.updates ADD CONSTRAINT no_more CHECK (event_seq < 2)")
        .execute(fixture.store.pool())
        .await
        .expect("add a failing constraint");
    let failed = store.apply(vec![post(group(1), user(1), "b", text("b"))], at(1)).await;
    assert!(matches!(failed, Err(StoreError::Internal(_))), "{failed:?}");
    sqlx::query("ALTER TABLE messages.updates DROP CONSTRAINT no_more")
        .execute(fixture.store.pool())
        .await
        .expect("drop the failing constraint");
    let position = store.log_positions(&[group(1)]).await.expect("read the position").remove(0);
    assert_eq!((position.last_event_seq.get(), position.last_message_seq.get()), (1, 1), "rolled back");
    let retried = apply_one(store, post(group(1), user(1), "b", text("b")), at(2)).await;
    let Ok(fanfare_messages::store::Applied::Posted { message, duplicate: false }) = retried else {
        panic!("expected the retry to post: {retried:?}")
    };
    assert_eq!((message.message_seq.get(), message.event_seq.get()), (2, 2), "no seq was lost");
}
