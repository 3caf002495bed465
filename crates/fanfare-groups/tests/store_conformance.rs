//! The store conformance suite against the in-memory store and against PostgreSQL (a
//! fresh database per test), plus PostgreSQL-only checks: migrations and error mapping.
//!
//! PostgreSQL is reached at `postgres://postgres@127.0.0.1:5432/postgres` unless
//! `DATABASE_URL` names another admin connection.

use fanfare_groups::store::conformance::StoreFixture;
use fanfare_groups::store::{GroupStore, PostgresGroupStore, StoreError};
use fanfare_testdb::{TestDatabase, migrations};

mod memory {
    use fanfare_groups::store::MemoryGroupStore;

    fanfare_groups::conformance_tests!(async { MemoryGroupStore::new() });
}

mod postgres {
    fanfare_groups::conformance_tests!(super::PostgresFixture::new());
}

/// Migrations in `crates/fanfare-groups/migrations`.
const MIGRATIONS: i64 = 4;

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

#[tokio::test]
async fn migrating_twice_applies_each_migration_once_inside_the_groups_schema() {
    let (_database, pool) =
        migrations::migrate_twice("groups", MIGRATIONS, |pool| async move { PostgresGroupStore::migrate(&pool).await })
            .await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_from_two_pools_succeed() {
    migrations::migrate_concurrently(
        "groups",
        MIGRATIONS,
        |pool| async move { PostgresGroupStore::migrate(&pool).await },
    )
    .await;
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

/// Connections of this test database waiting for a lock.
async fn lock_waiters(store: &PostgresGroupStore) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(store.pool())
    .await
    .expect("count the lock waiters")
}

/// Waits until `count` connections of this test database wait for a lock.
async fn until_lock_waiters(store: &PostgresGroupStore, count: i64) {
    for _ in 0..500 {
        if lock_waiters(store).await >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{count} connections never waited for a lock");
}

/// A join is one statement whose snapshot is taken before it waits for the group row; a
/// ban that commits while it waits is not in that snapshot, yet the join must see it and
/// refuse, rather than make a banned user a member behind the ban's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_that_waited_for_a_ban_is_refused() {
    use fanfare_groups::domain::{BanReason, GroupKind, JoinMethod};
    use fanfare_groups::store::conformance::{USER_GROUP_LIMIT, at, limits, new_group, user};

    let fixture = PostgresFixture::new().await;
    let store = fixture.store.clone();
    let owner = user(1);
    let joiner = user(7);
    let group = store.create_group(new_group(GroupKind::Community, owner), USER_GROUP_LIMIT, at(0)).await.unwrap();
    // The ban will stop, group row held and ban written, at the joiner's join request,
    // which this transaction holds.
    store.create_join_request(group.id, joiner, at(1)).await.unwrap();
    let mut blocker = store.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM groups.join_requests WHERE group_id = $1 AND user_id = $2 FOR UPDATE")
        .bind(group.id.get())
        .bind(joiner.get())
        .execute(&mut *blocker)
        .await
        .unwrap();

    let banning = tokio::spawn({
        let store = store.clone();
        async move { store.ban(group.id, joiner, BanReason::from_trusted(String::new()), None, owner, at(2)).await }
    });
    until_lock_waiters(&store, 1).await;
    let joining = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .add_members(group.id, &[joiner], JoinMethod::Direct, limits(GroupKind::Community), joiner, at(3))
                .await
        }
    });
    until_lock_waiters(&store, 2).await;
    blocker.rollback().await.unwrap();

    banning.await.unwrap().expect("the ban");
    let joined = joining.await.unwrap();
    assert!(matches!(joined, Err(StoreError::Banned { user: who, .. }) if who == joiner), "{joined:?}");
    assert_eq!(store.get_membership(group.id, joiner).await.unwrap(), None);
    assert_eq!(store.get_group(group.id).await.unwrap().map(|group| group.member_count), Some(1));
}
