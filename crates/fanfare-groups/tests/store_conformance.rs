//! The store conformance suite against the in-memory store and against PostgreSQL (a
//! fresh database per test), plus PostgreSQL-only checks: migrations and error mapping.
//!
//! PostgreSQL is reached at `postgres://postgres@127.0.0.1:5432/postgres` unless
//! `DATABASE_URL` names another admin connection.

use fanfare_groups::store::conformance::StoreFixture;
use fanfare_groups::store::{GroupStore, PostgresGroupStore, StoreError};
use fanfare_testdb::TestDatabase;

mod memory {
    use fanfare_groups::store::MemoryGroupStore;

    fanfare_groups::conformance_tests!(async { MemoryGroupStore::new() });
}

mod postgres {
    fanfare_groups::conformance_tests!(super::PostgresFixture::new());
}

/// Migrations in `crates/fanfare-groups/migrations`.
const MIGRATIONS: i64 = 2;

/// Connections per test pool: enough for the concurrency tests to overlap for real.
const TEST_POOL_CONNECTIONS: u32 = 8;

/// A migrated store over its own fresh database.
pub struct PostgresFixture {
    store: PostgresGroupStore,
    // Declared last so it drops after the store.
    _database: TestDatabase,
}

impl PostgresFixture {
    /// Creates a database, connects and migrates it.
    pub async fn new() -> Self {
        let database = TestDatabase::create().await.expect("a fresh test database");
        let store = PostgresGroupStore::connect(&database.url(), TEST_POOL_CONNECTIONS)
            .await
            .expect("connect to the test database");
        PostgresGroupStore::migrate(store.pool()).await.expect("migrate the test database");
        Self { store, _database: database }
    }
}

impl StoreFixture for PostgresFixture {
    fn store(&self) -> &dyn GroupStore {
        &self.store
    }
}

async fn applied_migrations(store: &PostgresGroupStore) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM groups._sqlx_migrations WHERE success")
        .fetch_one(store.pool())
        .await
        .expect("count applied migrations")
}

#[tokio::test]
async fn migrating_twice_applies_each_migration_once_inside_the_groups_schema() {
    let database = TestDatabase::create().await.expect("a fresh test database");
    let store = PostgresGroupStore::connect(&database.url(), 2).await.expect("connect");
    PostgresGroupStore::migrate(store.pool()).await.expect("first migration");
    PostgresGroupStore::migrate(store.pool()).await.expect("second migration");
    assert_eq!(applied_migrations(&store).await, MIGRATIONS);

    let public_table: Option<String> = sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations')::text")
        .fetch_one(store.pool())
        .await
        .expect("look for a public migrations table");
    assert_eq!(public_table, None, "other services' migration tables stay free");
    store.pool().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_from_two_pools_succeed() {
    let database = TestDatabase::create().await.expect("a fresh test database");
    let first = PostgresGroupStore::connect(&database.url(), 2).await.expect("connect the first pool");
    let second = PostgresGroupStore::connect(&database.url(), 2).await.expect("connect the second pool");
    let (first_outcome, second_outcome) =
        tokio::join!(PostgresGroupStore::migrate(first.pool()), PostgresGroupStore::migrate(second.pool()),);
    first_outcome.expect("the first pod migrates");
    second_outcome.expect("the second pod migrates");
    assert_eq!(applied_migrations(&first).await, MIGRATIONS);
    first.pool().close().await;
    second.pool().close().await;
}

#[tokio::test]
async fn a_closed_pool_reports_the_store_unavailable() {
    let fixture = PostgresFixture::new().await;
    fixture.store.pool().close().await;
    let ping = fixture.store.ping().await;
    assert!(matches!(ping, Err(StoreError::Unavailable(_))), "{ping:?}");
    let read = fixture.store.get_group(fanfare_core::ids::GroupId::from_trusted(1)).await;
    assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
}

#[tokio::test]
async fn an_unknown_stored_code_is_an_internal_error() {
    use fanfare_groups::domain::GroupKind;
    use fanfare_groups::store::conformance::{USER_GROUP_LIMIT, at, new_group, user};

    let fixture = PostgresFixture::new().await;
    let group = fixture
        .store
        .create_group(new_group(GroupKind::Chat, user(1)), USER_GROUP_LIMIT, at(0))
        .await
        .expect("create a group");
    // Simulate a row written by a newer binary: drop the CHECK and store an unknown kind.
    sqlx::query("ALTER TABLE groups.groups DROP CONSTRAINT groups_kind_check")
        .execute(fixture.store.pool())
        .await
        .expect("drop the kind check");
    sqlx::query("UPDATE groups.groups SET kind = 42 WHERE id = $1")
        .bind(group.id.get())
        .execute(fixture.store.pool())
        .await
        .expect("store an unknown kind");
    let read = fixture.store.get_group(group.id).await;
    assert!(matches!(read, Err(StoreError::Internal(_))), "{read:?}");
}
