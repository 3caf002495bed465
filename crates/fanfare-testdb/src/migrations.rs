//! The checks every service's migrations must pass, for each service's own tests: applied
//! once however often they run, recorded in the service's own schema (never in `public`,
//! which the other services share), and safe when two pods migrate at once.

use std::future::Future;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::TestDatabase;

/// Connections of each pool the checks open.
const POOL_CONNECTIONS: u32 = 2;

async fn pool(database: &TestDatabase) -> PgPool {
    PgPoolOptions::new()
        .max_connections(POOL_CONNECTIONS)
        .connect_with(database.options())
        .await
        .expect("connect to the test database")
}

async fn applied(pool: &PgPool, schema: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {schema}._sqlx_migrations WHERE success")))
        .fetch_one(pool)
        .await
        .expect("count applied migrations")
}

/// Runs `migrate` twice on a fresh database and asserts that `expected` migrations were
/// applied, recorded in `schema`, with no migrations table in `public`. Returns the database
/// and a pool on it for the service's own further checks.
pub async fn migrate_twice<F, Fut>(schema: &str, expected: i64, migrate: F) -> (TestDatabase, PgPool)
where
    F: Fn(PgPool) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let database = TestDatabase::create().await.expect("a fresh test database");
    let pool = pool(&database).await;
    migrate(pool.clone()).await.expect("first migration");
    migrate(pool.clone()).await.expect("second migration");
    assert_eq!(applied(&pool, schema).await, expected, "each migration applied once, in {schema}");
    let public_table: Option<String> = sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations')::text")
        .fetch_one(&pool)
        .await
        .expect("look for a public migrations table");
    assert_eq!(public_table, None, "other services' migration tables stay free");
    (database, pool)
}

/// Runs `migrate` from two pools on one fresh database at once (two pods starting
/// together) and asserts that both succeed and `expected` migrations were applied once.
pub async fn migrate_concurrently<F, Fut>(schema: &str, expected: i64, migrate: F)
where
    F: Fn(PgPool) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let database = TestDatabase::create().await.expect("a fresh test database");
    let (first, second) = (pool(&database).await, pool(&database).await);
    let (first_outcome, second_outcome) = tokio::join!(migrate(first.clone()), migrate(second.clone()));
    first_outcome.expect("the first pod migrates");
    second_outcome.expect("the second pod migrates");
    assert_eq!(applied(&first, schema).await, expected, "each migration applied once, in {schema}");
    first.close().await;
    second.close().await;
}
