//! The production [`FollowStore`]: PostgreSQL through sqlx, in schema `fanout`.
//!
//! Every name in the SQL is schema-qualified (`fanout.follows`), so the store works on any
//! pool whatever its `search_path`. Queries are checked at run time (`sqlx::query*` with
//! binds), so building needs no database. A follow or unfollow is one transaction that
//! changes the edge and, only if the edge was actually created or removed, both counters.
//!
//! Locking, always in this order so that no two transactions wait on each other in a
//! cycle: the edge row (the primary key entry a follow inserts or an unfollow deletes), then
//! counter rows by ascending `(user_id, shard)`. The creator's follower count is spread over
//! [`FOLLOWER_COUNTER_SHARDS`] rows so that a creator gaining followers by the thousand does
//! not serialise every follow on one row lock (see the migration).

use fanfare_core::time::stored_time;
use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::UserId;
use fanfare_core::paging::PageSize;
use fanfare_postgres::During as _;
use sqlx::{PgConnection, PgPool};

use super::{FollowStore, Followed, StoreError, StoreResult};
use crate::follows::domain::{Follow, FollowCounts, FollowKey};

/// The schema the fanout service owns; its migrations table lives there too.
pub const SCHEMA: &str = "fanout";

/// Rows each user's follower count is spread over (shard = follower id modulo this).
pub const FOLLOWER_COUNTER_SHARDS: i16 = 16;

/// The shard row that holds a user's `following` count.
const FOLLOWING_SHARD: i16 = 0;

/// How often a follow tries again when the edge it found vanished before it could read it
/// (an unfollow of the same pair committed in between).
const FOLLOW_ATTEMPTS: usize = 3;

/// A page of a creator's followers: `$1` creator, `$2`/`$3` the (followed_at, follower id)
/// to start strictly before (NULL for the first page), `$4` the row limit. Public so that a
/// test can check its plan is a range scan of `follows_by_creator` with no sort.
pub const LIST_FOLLOWERS_SQL: &str = "SELECT follower_id AS other, followed_at FROM fanout.follows \
     WHERE creator_id = $1 \
     AND (followed_at, follower_id) < (COALESCE($2, 'infinity'::timestamptz), COALESCE($3, 9223372036854775807)) \
     ORDER BY followed_at DESC, follower_id DESC LIMIT $4";

/// A page of the creators a user follows: `$1` follower, `$2`/`$3` the (followed_at,
/// creator id) to start strictly before, `$4` the row limit. A range scan of
/// `follows_by_follower`.
pub const LIST_FOLLOWING_SQL: &str = "SELECT creator_id AS other, followed_at FROM fanout.follows \
     WHERE follower_id = $1 \
     AND (followed_at, creator_id) < (COALESCE($2, 'infinity'::timestamptz), COALESCE($3, 9223372036854775807)) \
     ORDER BY followed_at DESC, creator_id DESC LIMIT $4";

/// A [`FollowStore`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresFollowStore {
    pool: fanfare_postgres::Pool,
}

impl PostgresFollowStore {
    /// Opens a pool of at most `max_connections` connections to `database_url`.
    pub async fn connect(database_url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = fanfare_postgres::connect(database_url, max_connections, "fanfare-fanout").await?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool: fanfare_postgres::Pool::new(pool) }
    }

    /// The pool, for health checks and tests.
    pub fn pool(&self) -> &PgPool {
        self.pool.inner()
    }

    /// The pool with what is known of the database's reachability, for another store to
    /// share ([`crate::jobs::PostgresJobStore::sharing`]).
    pub fn shared_pool(&self) -> &fanfare_postgres::Pool {
        &self.pool
    }

    /// A connection for one statement: at once an unavailable error while the database is
    /// known to be down (`fanfare_postgres::Pool`).
    async fn connection(&self) -> StoreResult<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        Ok(self.pool.acquire().await.during("acquiring a connection")?)
    }

    /// Creates schema `fanout` and applies pending migrations, recording them in
    /// `fanout._sqlx_migrations` so other services' migrations in the same database stay
    /// separate. Safe to run from several pods at once: sqlx holds a session advisory
    /// lock from before the schema is created until the last migration is applied.
    pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
        fanfare_postgres::migrate(pool, sqlx::migrate!("./migrations"), SCHEMA).await
    }
}

/// The follower-count shard an edge from `follower` is counted in.
fn follower_shard(follower: UserId) -> i16 {
    // rem_euclid of a positive id by 16 fits in i16.
    follower.get().rem_euclid(i64::from(FOLLOWER_COUNTER_SHARDS)) as i16
}

/// A limit as SQL compares it; `None` (unlimited) is the largest bigint.
fn sql_limit(limit: Option<u64>) -> i64 {
    limit.map_or(i64::MAX, fanfare_core::wire::int64)
}

fn ids(users: &[UserId]) -> Vec<i64> {
    users.iter().map(|user| user.get()).collect()
}

// ---------------------------------------------------------------------------------------
// Errors

/// A stored value that does not map back to the domain: corrupt data or a bug.
fn corrupt(what: String) -> StoreError {
    StoreError::Internal(anyhow::Error::msg(what).context("reading the follow graph"))
}

fn stored_count(value: i64, column: &str, user: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| corrupt(format!("{column} of user {user} is negative: {value}")))
}

// ---------------------------------------------------------------------------------------
// Counters

/// Which counter of a user a row update changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    /// The follower's `following`, in shard 0 (limit-checked when it grows).
    Following,
    /// The creator's `followers`, in the follower's shard.
    Followers,
}

/// Whether an edge is being counted or uncounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Added,
    Removed,
}

/// Counts (or uncounts) the edge `follower → creator` in both users' counters, touching the
/// two rows by ascending `(user_id, shard)`: the lock order every transaction keeps.
async fn count_edge(
    connection: &mut PgConnection,
    follower: UserId,
    creator: UserId,
    change: Change,
    following_limit: Option<u64>,
) -> StoreResult<()> {
    let mut rows =
        [(follower, FOLLOWING_SHARD, Counter::Following), (creator, follower_shard(follower), Counter::Followers)];
    rows.sort_by_key(|(user, shard, _)| (*user, *shard));
    for (user, shard, counter) in rows {
        match (counter, change) {
            (Counter::Following, Change::Added) => count_following(connection, user, following_limit).await?,
            (Counter::Followers, Change::Added) => count_follower(connection, user, shard).await?,
            (counter, Change::Removed) => uncount(connection, user, shard, counter).await?,
        }
    }
    Ok(())
}

/// One more followed creator for `user`, unless that passes the limit. A waiting upsert
/// re-evaluates its WHERE on the row it waited for, so the limit is exact under concurrency.
async fn count_following(connection: &mut PgConnection, user: UserId, limit: Option<u64>) -> StoreResult<()> {
    let counted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO fanout.follow_counts AS c (user_id, shard, following) SELECT $1, $2, 1 WHERE $3 >= 1 \
         ON CONFLICT (user_id, shard) DO UPDATE SET following = c.following + 1 WHERE c.following + 1 <= $3 \
         RETURNING following",
    )
    .bind(user.get())
    .bind(FOLLOWING_SHARD)
    .bind(sql_limit(limit))
    .fetch_optional(&mut *connection)
    .await
    .during("counting a followed creator")?;
    match (counted, limit) {
        (Some(_), _) => Ok(()),
        (None, Some(limit)) => Err(StoreError::FollowingLimit { user, limit }),
        (None, None) => Err(corrupt(format!("the following count of user {user} did not grow"))),
    }
}

/// One more follower for `creator`, in one of their shards.
async fn count_follower(connection: &mut PgConnection, creator: UserId, shard: i16) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO fanout.follow_counts AS c (user_id, shard, followers) VALUES ($1, $2, 1) \
         ON CONFLICT (user_id, shard) DO UPDATE SET followers = c.followers + 1",
    )
    .bind(creator.get())
    .bind(shard)
    .execute(&mut *connection)
    .await
    .during("counting a follower")?;
    Ok(())
}

/// One less in a counter row that counted the edge being removed.
async fn uncount(connection: &mut PgConnection, user: UserId, shard: i16, counter: Counter) -> StoreResult<()> {
    let sql = match counter {
        Counter::Following => {
            "UPDATE fanout.follow_counts SET following = following - 1 WHERE user_id = $1 AND shard = $2"
        }
        Counter::Followers => {
            "UPDATE fanout.follow_counts SET followers = followers - 1 WHERE user_id = $1 AND shard = $2"
        }
    };
    let updated =
        sqlx::query(sql).bind(user.get()).bind(shard).execute(&mut *connection).await.during("uncounting an edge")?;
    if updated.rows_affected() != 1 {
        return Err(corrupt(format!("user {user} has no counter row {shard} for an edge being removed")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The trait

#[derive(sqlx::FromRow)]
struct EdgeRow {
    /// The user at the other end of the edge from the one the query is about.
    other: i64,
    followed_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct CountsRow {
    user_id: i64,
    followers: i64,
    following: i64,
}

#[async_trait]
impl FollowStore for PostgresFollowStore {
    async fn follow(
        &self,
        follower: UserId,
        creator: UserId,
        following_limit: Option<u64>,
        now: DateTime<Utc>,
    ) -> StoreResult<Followed> {
        debug_assert_ne!(follower, creator, "the service refuses self-follows");
        let now = stored_time(now);
        for _ in 0..FOLLOW_ATTEMPTS {
            let mut tx = self.pool.begin().await.during("starting a transaction")?;
            // A concurrent follow of the same pair waits on the primary key and then does
            // nothing: exactly one transaction creates (and counts) the edge.
            let inserted = sqlx::query(
                "INSERT INTO fanout.follows (creator_id, follower_id, followed_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (creator_id, follower_id) DO NOTHING",
            )
            .bind(creator.get())
            .bind(follower.get())
            .bind(now)
            .execute(&mut *tx)
            .await
            .during("inserting a follow")?;
            if inserted.rows_affected() == 1 {
                count_edge(&mut tx, follower, creator, Change::Added, following_limit).await?;
                tx.commit().await.during("committing a follow")?;
                let follow = Follow { follower, creator, followed_at: now };
                return Ok(Followed { follow, created: true });
            }
            // Already following: nothing was written. The edge is read in a fresh snapshot
            // (READ COMMITTED), so a concurrent follow that just committed it is seen.
            let existing: Option<DateTime<Utc>> =
                sqlx::query_scalar("SELECT followed_at FROM fanout.follows WHERE creator_id = $1 AND follower_id = $2")
                    .bind(creator.get())
                    .bind(follower.get())
                    .fetch_optional(&mut *tx)
                    .await
                    .during("reading a follow")?;
            tx.rollback().await.during("ending a follow that changed nothing")?;
            if let Some(followed_at) = existing {
                return Ok(Followed { follow: Follow { follower, creator, followed_at }, created: false });
            }
            // Unfollowed between the insert and the read: try again.
        }
        Err(StoreError::Unavailable(
            anyhow::Error::msg("the edge kept changing concurrently").context("following a creator"),
        ))
    }

    async fn unfollow(&self, follower: UserId, creator: UserId) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.during("starting a transaction")?;
        let deleted = sqlx::query("DELETE FROM fanout.follows WHERE creator_id = $1 AND follower_id = $2")
            .bind(creator.get())
            .bind(follower.get())
            .execute(&mut *tx)
            .await
            .during("deleting a follow")?;
        if deleted.rows_affected() == 0 {
            // Not following (or a concurrent unfollow won): nothing to uncount.
            tx.rollback().await.during("ending an unfollow that changed nothing")?;
            return Ok(false);
        }
        count_edge(&mut tx, follower, creator, Change::Removed, None).await?;
        tx.commit().await.during("committing an unfollow")?;
        Ok(true)
    }

    async fn get_follows(&self, follower: UserId, creators: &[UserId]) -> StoreResult<Vec<Follow>> {
        if creators.is_empty() {
            return Ok(Vec::new());
        }
        // Primary-key probes, one per creator.
        let rows: Vec<EdgeRow> = sqlx::query_as(
            "SELECT creator_id AS other, followed_at FROM fanout.follows \
             WHERE creator_id = ANY($1) AND follower_id = $2",
        )
        .bind(ids(creators))
        .bind(follower.get())
        .fetch_all(&mut *self.connection().await?)
        .await
        .during("checking follows")?;
        let by_creator: HashMap<UserId, DateTime<Utc>> =
            rows.into_iter().map(|row| (UserId::from_trusted(row.other), row.followed_at)).collect();
        let found = creators.iter().filter_map(|&creator| {
            let followed_at = *by_creator.get(&creator)?;
            Some(Follow { follower, creator, followed_at })
        });
        Ok(found.collect())
    }

    async fn list_followers(
        &self,
        creator: UserId,
        before: Option<FollowKey>,
        limit: PageSize,
    ) -> StoreResult<Vec<Follow>> {
        // A range scan of `follows_by_creator` from the cursor, whatever the audience's size.
        let rows: Vec<EdgeRow> = sqlx::query_as(LIST_FOLLOWERS_SQL)
            .bind(creator.get())
            .bind(before.map(|key| key.followed_at))
            .bind(before.map(|key| key.user.get()))
            .bind(limit.as_limit() + 1)
            .fetch_all(&mut *self.connection().await?)
            .await
            .during("listing followers")?;
        let follows = rows.into_iter().map(|row| Follow {
            follower: UserId::from_trusted(row.other),
            creator,
            followed_at: row.followed_at,
        });
        Ok(follows.collect())
    }

    async fn list_following(
        &self,
        follower: UserId,
        before: Option<FollowKey>,
        limit: PageSize,
    ) -> StoreResult<Vec<Follow>> {
        // A range scan of `follows_by_follower` from the cursor.
        let rows: Vec<EdgeRow> = sqlx::query_as(LIST_FOLLOWING_SQL)
            .bind(follower.get())
            .bind(before.map(|key| key.followed_at))
            .bind(before.map(|key| key.user.get()))
            .bind(limit.as_limit() + 1)
            .fetch_all(&mut *self.connection().await?)
            .await
            .during("listing follows")?;
        let follows = rows.into_iter().map(|row| Follow {
            follower,
            creator: UserId::from_trusted(row.other),
            followed_at: row.followed_at,
        });
        Ok(follows.collect())
    }

    async fn get_counts(&self, users: &[UserId]) -> StoreResult<Vec<FollowCounts>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        // At most 16 rows per user, read through the primary key.
        let rows: Vec<CountsRow> = sqlx::query_as(
            "SELECT user_id, COALESCE(SUM(followers), 0)::bigint AS followers, \
             COALESCE(SUM(following), 0)::bigint AS following \
             FROM fanout.follow_counts WHERE user_id = ANY($1) GROUP BY user_id",
        )
        .bind(ids(users))
        .fetch_all(&mut *self.connection().await?)
        .await
        .during("reading follow counts")?;
        let mut by_user = HashMap::with_capacity(rows.len());
        for row in rows {
            let user = UserId::from_trusted(row.user_id);
            let followers = stored_count(row.followers, "followers", row.user_id)?;
            let following = stored_count(row.following, "following", row.user_id)?;
            by_user.insert(user, FollowCounts { user, followers, following });
        }
        Ok(users.iter().map(|&user| by_user.get(&user).copied().unwrap_or(FollowCounts::zero(user))).collect())
    }

    async fn ping(&self) -> StoreResult<()> {
        self.pool.ping().await.during("pinging the database")?;
        Ok(())
    }
}
