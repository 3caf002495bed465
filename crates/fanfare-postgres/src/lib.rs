//! Postgres plumbing every store shares: opening a pool that fails fast while its database
//! is known to be down and reports its size ([`Pool`], [`metrics`]), applying a service's
//! migrations in its own schema, and telling retryable sqlx failures from the rest
//! ([`is_unavailable`], and [`During`] to classify a result as every store's error does).
//!
//! Each service keeps its own `sqlx::migrate!("./migrations")` (the macro embeds paths
//! relative to the crate that expands it) and passes the resulting migrator to [`migrate`].

pub mod metrics;
mod pool;

pub use pool::{ACQUIRE_WHILE_DOWN, PING_TIMEOUT, Pool};

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Opens a pool of at most `max_connections` connections to `database_url`, announcing
/// itself to the server as `application_name`.
pub async fn connect(database_url: &str, max_connections: u32, application_name: &str) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(database_url)
        .with_context(|| format!("parsing the database URL for {application_name}"))?
        .application_name(application_name);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to the database for {application_name}"))
}

/// Creates `schema` and applies `migrator`'s pending migrations, recording them in
/// `{schema}._sqlx_migrations` so other services' migrations in the same database stay
/// separate. Safe to run from several pods at once: sqlx holds a session advisory lock
/// from before the schema is created until the last migration is applied.
pub async fn migrate(pool: &PgPool, mut migrator: Migrator, schema: &'static str) -> anyhow::Result<()> {
    migrator.dangerous_set_table_name(format!("{schema}._sqlx_migrations"));
    migrator.create_schema(schema);
    // A dedicated connection: if a migration fails, sqlx returns before releasing its
    // session advisory lock, and a pooled connection would keep holding it.
    let mut connection =
        pool.acquire().await.with_context(|| format!("acquiring a connection to migrate the {schema} schema"))?;
    // `run_direct` is sqlx's documented way around "`Acquire` is not general enough"
    // when the migrating future must be `Send`; it is `run` without the acquire.
    let outcome = migrator.run_direct(None, &mut *connection, false).await;
    if outcome.is_err() {
        // Closing the session releases the lock; a failure to close is moot by now.
        let _ = connection.close().await;
    }
    outcome.with_context(|| format!("migrating the {schema} schema"))
}

/// Gives `role` what a service needs at run time in `schema`, and nothing more: the schema's
/// tables to read and write (rows only) and its sequences, but not its migrations table, and
/// no DDL (it neither owns nor may create anything). Run after every migration, so tables
/// added by a release are covered. The role must exist (the operators create it, with its
/// password or certificate); a name that is not a plain lower-case identifier is refused.
pub async fn grant_runtime_role(pool: &PgPool, schema: &'static str, role: &str) -> anyhow::Result<()> {
    let plain = role.len() <= 63
        && role.starts_with(|first: char| first.is_ascii_lowercase() || first == '_')
        && role.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    if !plain {
        anyhow::bail!("runtime role {role:?} must be a lower-case identifier (a-z, 0-9, _; at most 63 bytes)");
    }
    // Both names are plain identifiers (the schema is a constant), so quoting is enough.
    let statements = [
        format!("GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\""),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{schema}\" TO \"{role}\""),
        format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA \"{schema}\" TO \"{role}\""),
        format!("REVOKE ALL ON \"{schema}\"._sqlx_migrations FROM \"{role}\""),
    ];
    let mut transaction = pool.begin().await.with_context(|| format!("granting {role} the {schema} schema"))?;
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *transaction)
            .await
            .with_context(|| format!("granting {role} the {schema} schema"))?;
    }
    transaction.commit().await.with_context(|| format!("granting {role} the {schema} schema"))
}

/// How sqlx 0.9 words a connection that closed before answering its `SSLRequest`.
const CLOSED_DURING_SSL_REQUEST: &str = "unexpected response from SSLRequest: 0x00";

/// Classifies a sqlx failure: an unreachable or overloaded database, or a transaction it
/// rolled back (deadlock, serialization failure), is unavailable and may be retried;
/// anything else is not.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // The connection closed before the server answered the TLS request (sslmode prefer
        // and up): sqlx reads no byte and reports it as a protocol error.
        sqlx::Error::Protocol(message) => message.starts_with(CLOSED_DURING_SSL_REQUEST),
        sqlx::Error::Database(database_error) => database_error.code().is_some_and(|code| {
            // 08: connection exception; 53: insufficient resources; 57P: shutdown or
            // cancel; 40001/40P01: serialization failure or deadlock, rolled back.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    }
}

/// A failed sqlx call, classified the way every store's error is: the database
/// unavailable (see [`is_unavailable`]: retrying may help) or anything else (a bug or
/// corrupt data). Each store's error converts it into its own two variants
/// (`From<Failure>`), so the rule is written once.
#[derive(Debug)]
pub enum Failure {
    /// The database could not be reached or failed the transaction.
    Unavailable(anyhow::Error),
    /// Anything else.
    Internal(anyhow::Error),
}

/// Classifies the error of a sqlx result ([`Failure`]), naming the operation that failed:
/// `query.fetch_one(..).await.during("reading a group")?` in a store method.
pub trait During<T> {
    /// Maps the error, naming the operation that failed.
    fn during(self, operation: &'static str) -> Result<T, Failure>;
}

impl<T> During<T> for Result<T, sqlx::Error> {
    fn during(self, operation: &'static str) -> Result<T, Failure> {
        self.map_err(|error| {
            let unavailable = is_unavailable(&error);
            let error = anyhow::Error::new(error).context(operation);
            if unavailable { Failure::Unavailable(error) } else { Failure::Internal(error) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{During, Failure, is_unavailable};

    #[test]
    fn connection_and_pool_failures_are_unavailable() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::PoolClosed));
        assert!(is_unavailable(&sqlx::Error::WorkerCrashed));
        assert!(is_unavailable(&sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset))));
        let closed = "unexpected response from SSLRequest: 0x00 (sqlx_postgres::connection::tls:95)";
        assert!(is_unavailable(&sqlx::Error::Protocol(closed.to_owned())));
    }

    #[test]
    fn other_failures_are_not() {
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::Protocol("unexpected message".to_owned())));
    }

    #[test]
    fn during_names_the_operation_and_keeps_the_class() {
        let down: Result<(), sqlx::Error> = Err(sqlx::Error::PoolTimedOut);
        match down.during("reading a row") {
            Err(Failure::Unavailable(error)) => assert_eq!(error.to_string(), "reading a row"),
            other => panic!("not unavailable: {other:?}"),
        }
        let missing: Result<(), sqlx::Error> = Err(sqlx::Error::RowNotFound);
        assert!(matches!(missing.during("reading a row"), Err(Failure::Internal(_))));
        assert!(matches!(Ok::<_, sqlx::Error>(7).during("reading a row"), Ok(7)));
    }
}
