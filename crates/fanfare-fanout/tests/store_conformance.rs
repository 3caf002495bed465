//! The store conformance suite against the in-memory store and against PostgreSQL (a
//! fresh database per test), plus PostgreSQL-only checks: migrations, error mapping, and
//! that both listings are index range scans.
//!
//! PostgreSQL is reached at `postgres://postgres@127.0.0.1:5432/postgres` unless
//! `DATABASE_URL` names another admin connection.

use fanfare_fanout::follows::store::conformance::{FOLLOWING_LIMIT, StoreFixture, at, user};
use fanfare_fanout::follows::store::postgres::{LIST_FOLLOWERS_SQL, LIST_FOLLOWING_SQL};
use fanfare_fanout::follows::store::{FollowStore, PostgresFollowStore, StoreError};
use fanfare_testdb::{TestDatabase, migrations};

mod memory {
    use fanfare_fanout::follows::store::MemoryFollowStore;

    fanfare_fanout::follow_store_conformance_tests!(async { MemoryFollowStore::new() });
}

mod postgres {
    fanfare_fanout::follow_store_conformance_tests!(super::PostgresFixture::new());
}

/// Migrations in `crates/fanfare-fanout/migrations`.
const MIGRATIONS: i64 = 3;

/// Connections per test pool: enough for the concurrency tests to overlap for real.
const TEST_POOL_CONNECTIONS: u32 = 8;

/// A migrated store over its own fresh database.
pub struct PostgresFixture {
    store: PostgresFollowStore,
    // Declared last so it drops after the store.
    _database: TestDatabase,
}

impl PostgresFixture {
    /// Creates a database, connects and migrates it.
    pub async fn new() -> Self {
        let database = TestDatabase::create().await.expect("a fresh test database");
        let store = PostgresFollowStore::connect(&database.url(), TEST_POOL_CONNECTIONS)
            .await
            .expect("connect to the test database");
        PostgresFollowStore::migrate(store.pool()).await.expect("migrate the test database");
        Self { store, _database: database }
    }
}

impl StoreFixture for PostgresFixture {
    fn store(&self) -> &dyn FollowStore {
        &self.store
    }
}

#[tokio::test]
async fn migrating_twice_applies_each_migration_once_inside_the_fanout_schema() {
    let (_database, pool) =
        migrations::migrate_twice(
            "fanout",
            MIGRATIONS,
            |pool| async move { PostgresFollowStore::migrate(&pool).await },
        )
        .await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_from_two_pools_succeed() {
    migrations::migrate_concurrently(
        "fanout",
        MIGRATIONS,
        |pool| async move { PostgresFollowStore::migrate(&pool).await },
    )
    .await;
}

#[tokio::test]
async fn a_closed_pool_reports_the_store_unavailable() {
    let fixture = PostgresFixture::new().await;
    fixture.store.pool().close().await;
    let ping = fixture.store.ping().await;
    assert!(matches!(ping, Err(StoreError::Unavailable(_))), "{ping:?}");
    let follow = fixture.store.follow(user(2), user(1), FOLLOWING_LIMIT, at(0)).await;
    assert!(matches!(follow, Err(StoreError::Unavailable(_))), "{follow:?}");
}

#[tokio::test]
async fn a_negative_stored_count_is_an_internal_error() {
    let fixture = PostgresFixture::new().await;
    fixture.store.follow(user(2), user(1), FOLLOWING_LIMIT, at(0)).await.expect("follow");
    // Simulate corruption the CHECK would refuse: drop it and store a negative count.
    sqlx::query("ALTER TABLE fanout.follow_counts DROP CONSTRAINT follow_counts_followers_check")
        .execute(fixture.store.pool())
        .await
        .expect("drop the followers check");
    sqlx::query("UPDATE fanout.follow_counts SET followers = -5 WHERE user_id = 1")
        .execute(fixture.store.pool())
        .await
        .expect("store a negative count");
    let read = fixture.store.get_counts(&[user(1)]).await;
    assert!(matches!(read, Err(StoreError::Internal(_))), "{read:?}");
}

#[tokio::test]
async fn a_followers_count_is_spread_over_shards() {
    let fixture = PostgresFixture::new().await;
    for follower in 2..=33 {
        fixture.store.follow(user(follower), user(1), FOLLOWING_LIMIT, at(follower)).await.expect("follow");
    }
    let shards: Vec<(i16, i64)> =
        sqlx::query_as("SELECT shard, followers FROM fanout.follow_counts WHERE user_id = 1 ORDER BY shard")
            .fetch_all(fixture.store.pool())
            .await
            .expect("read the shards");
    assert_eq!(shards.len(), 16, "32 followers with consecutive ids fill every shard");
    assert!(shards.iter().all(|(_, followers)| *followers == 2), "{shards:?}");
}

/// The plan of a listing's SQL for a page of 100 of `user`'s edges, before `before` or
/// from the start.
async fn plan(store: &PostgresFollowStore, sql: &str, user: i64, before: Option<(i64, i64)>) -> String {
    let explain = format!("EXPLAIN {sql}");
    let before_time: Option<chrono::DateTime<chrono::Utc>> = before.map(|(seconds, _)| at(seconds));
    let lines: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
        .bind(user)
        .bind(before_time)
        .bind(before.map(|(_, other)| other))
        .bind(101_i64)
        .fetch_all(store.pool())
        .await
        .expect("explain");
    lines.join("\n")
}

#[tokio::test]
async fn both_listings_are_keyset_index_scans() {
    let fixture = PostgresFixture::new().await;
    let pool = fixture.store.pool();
    // 210,000 edges, written directly: 20 creators with 10,000 followers each (who thus
    // follow 20 creators each), and follower 1,001 following 10,000 more creators.
    sqlx::query(
        "INSERT INTO fanout.follows (creator_id, follower_id, followed_at) \
         SELECT creator, 1000 + follower, $1::timestamptz - follower * interval '1 second' \
         FROM generate_series(1, 20) AS creator, generate_series(1, 10000) AS follower \
         UNION ALL \
         SELECT 100000 + creator, 1001, $1::timestamptz - creator * interval '1 second' \
         FROM generate_series(1, 10000) AS creator",
    )
    .bind(at(0))
    .execute(pool)
    .await
    .expect("bulk edges");
    sqlx::query("ANALYZE fanout.follows").execute(pool).await.expect("analyze");

    for before in [None, Some((-3_600, 5_000))] {
        let followers = plan(&fixture.store, LIST_FOLLOWERS_SQL, 7, before).await;
        assert!(followers.contains("Index Only Scan using follows_by_creator"), "{followers}");
        assert!(!followers.contains("Sort"), "{followers}");
        let following = plan(&fixture.store, LIST_FOLLOWING_SQL, 1_001, before).await;
        assert!(following.contains("Index Only Scan using follows_by_follower"), "{following}");
        assert!(!following.contains("Sort"), "{following}");
    }
}
