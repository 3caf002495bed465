//! A pool that fails fast while its database is known to be unreachable.
//!
//! sqlx waits up to the pool's acquire timeout (5 s) for a connection, retrying a refused
//! connect all the while; with the database away, every call would cost its caller those
//! 5 s before answering `UNAVAILABLE`, past many callers' deadlines, although the health
//! probe already says NOT_SERVING. So the pool remembers that the database is down: a
//! health ping that fails, or a connection that cannot be had, marks it down; any
//! connection had (a call's or the probe's) marks it up again. While it is down a call
//! waits at most [`ACQUIRE_WHILE_DOWN`] for a connection, which is enough to connect to a
//! database that has come back, and otherwise fails at once as unreachable.
//!
//! Each health ping also records how many connections the pool holds and how many of them
//! are idle ([`crate::metrics`]), labelled with the pool's application name.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics::gauge;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Transaction};

use crate::metrics::{POOL_CONNECTIONS, POOL_IDLE_CONNECTIONS, POOL_MAX_CONNECTIONS};

/// How long a call waits for a connection while the database is known to be down: a
/// database that came back connects in milliseconds; a caller's deadline is not spent.
pub const ACQUIRE_WHILE_DOWN: Duration = Duration::from_millis(250);

/// How long a health ping may take before the database counts as down. Under the health
/// loop's shortest probe timeout (1 s), so a ping always ends, and is recorded, before the
/// loop gives up on it.
pub const PING_TIMEOUT: Duration = Duration::from_millis(900);

/// The `pool` label of a pool that connects without an application name.
const UNNAMED_POOL: &str = "unnamed";

/// A [`PgPool`] with what is known of its database's reachability, shared by its clones
/// (a store's calls and its health probe).
#[derive(Debug, Clone)]
pub struct Pool {
    pool: PgPool,
    down: Arc<AtomicBool>,
    /// The `pool` label of its metrics: the application name it connects with
    /// ([`crate::connect`] sets `fanfare-<service>`).
    label: Arc<str>,
}

impl Pool {
    /// Wraps `pool`; the database counts as up until something says otherwise.
    pub fn new(pool: PgPool) -> Self {
        let label: Arc<str> = pool.connect_options().get_application_name().unwrap_or(UNNAMED_POOL).into();
        Self { pool, down: Arc::new(AtomicBool::new(false)), label }
    }

    /// The sqlx pool itself (migrations, tests). Calls through it neither fail fast nor
    /// update what is known.
    pub fn inner(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database is known to be unreachable right now.
    pub fn is_known_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// A connection, or at once an unreachable error while the database is known to be
    /// down and none can be had within [`ACQUIRE_WHILE_DOWN`].
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let acquired = self.bounded_while_down(self.pool.acquire()).await;
        self.record(&acquired);
        acquired
    }

    /// A transaction, failing fast as [`Self::acquire`] does.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let begun = self.bounded_while_down(self.pool.begin()).await;
        self.record(&begun);
        begun
    }

    /// Checks that the database answers (`SELECT 1`) within [`PING_TIMEOUT`], and records
    /// the answer: the health probe, which notices an outage (and its end) even when no
    /// call comes.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        // Before the ping takes a connection of its own.
        self.record_sizes();
        let answer = async {
            let mut connection = self.pool.acquire().await?;
            sqlx::query("SELECT 1").execute(&mut *connection).await.map(|_| ())
        };
        let pinged = tokio::time::timeout(PING_TIMEOUT, answer).await.unwrap_or_else(|_| {
            Err(sqlx::Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("postgres did not answer within {} ms", PING_TIMEOUT.as_millis()),
            )))
        });
        self.record(&pinged);
        pinged
    }

    /// Sets the pool's gauges: connections open, idle, and the most it may open.
    fn record_sizes(&self) {
        gauge!(POOL_CONNECTIONS, "pool" => Arc::clone(&self.label)).set(self.pool.size());
        gauge!(POOL_IDLE_CONNECTIONS, "pool" => Arc::clone(&self.label)).set(self.pool.num_idle() as f64);
        gauge!(POOL_MAX_CONNECTIONS, "pool" => Arc::clone(&self.label)).set(self.pool.options().get_max_connections());
    }

    /// Runs `attempt` in full while the database counts as up; while it is known to be
    /// down, gives it [`ACQUIRE_WHILE_DOWN`].
    async fn bounded_while_down<T>(
        &self,
        attempt: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        if !self.is_known_down() {
            return attempt.await;
        }
        tokio::time::timeout(ACQUIRE_WHILE_DOWN, attempt).await.unwrap_or_else(|_| {
            Err(sqlx::Error::Io(io::Error::new(
                io::ErrorKind::NotConnected,
                "postgres is unreachable (known from failed connections or health checks); not waiting for it",
            )))
        })
    }

    /// Marks the database up after a connection was had, down after a failure that says it
    /// is unreachable; logs each change once.
    fn record<T>(&self, result: &Result<T, sqlx::Error>) {
        match result {
            Ok(_) => {
                // A load first: the common case writes nothing shared.
                if self.is_known_down() && self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("postgres is reachable again; calls wait for connections as usual");
                }
            }
            Err(error) if is_unreachable(error) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %error,
                        "postgres is unreachable; calls fail fast until a connection or health check succeeds"
                    );
                }
            }
            Err(_) => {}
        }
    }
}

/// Whether `error` says the database cannot be reached (as opposed to refusing one
/// statement): no connection, a broken one, none within the acquire timeout, or a server
/// shutting down or starting up.
fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database_error) => {
            database_error.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool on a port nothing listens on, whose own acquire timeout is long.
    fn dead_pool() -> Pool {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy("postgres://postgres@127.0.0.1:1/nowhere")
            .expect("a lazy pool");
        Pool::new(pool)
    }

    #[tokio::test]
    async fn a_failed_ping_makes_calls_fail_fast() {
        let pool = dead_pool();
        assert!(!pool.is_known_down());
        assert!(pool.ping().await.is_err(), "nothing answers on port 1");
        assert!(pool.is_known_down());
        let started = tokio::time::Instant::now();
        let refused = pool.acquire().await.expect_err("no connection");
        assert!(started.elapsed() < Duration::from_secs(5), "not the pool's 30 s");
        assert!(crate::is_unavailable(&refused), "answered as unavailable: {refused}");
        assert!(pool.is_known_down(), "still down");
    }

    #[test]
    fn only_failures_of_reach_count() {
        assert!(is_unreachable(&sqlx::Error::PoolTimedOut));
        assert!(is_unreachable(&sqlx::Error::Io(io::Error::from(io::ErrorKind::ConnectionRefused))));
        assert!(!is_unreachable(&sqlx::Error::RowNotFound));
        assert!(!is_unreachable(&sqlx::Error::PoolClosed), "closed by us, not unreachable");
    }
}
