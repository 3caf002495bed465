//! A fresh PostgreSQL database per test, dropped when the test ends (even when it panics),
//! so tests never share state. Service crates use it in their own tests; the testkit
//! re-exports it.

pub mod migrations;

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

/// Admin connection used to create and drop test databases; `DATABASE_URL` overrides it.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Prefix of every test database's name, so leftovers are easy to spot and clean.
pub const NAME_PREFIX: &str = "fanfare_test_";

fn admin_options() -> anyhow::Result<PgConnectOptions> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
    PgConnectOptions::from_str(&url).with_context(|| format!("DATABASE_URL is not a PostgreSQL URL: {url}"))
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    options: PgConnectOptions,
}

impl TestDatabase {
    /// Creates an empty database with a random name on the admin server.
    pub async fn create() -> anyhow::Result<Self> {
        let admin_options = admin_options()?;
        let name = format!("{NAME_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_options
            .connect()
            .await
            .context("connecting to postgres to create a test database (is it running on 127.0.0.1:5432?)")?;
        sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating test database {name}"))?;
        // Closing is best effort: the database exists either way.
        admin.close().await.ok();
        let options = admin_options.database(&name);
        Ok(Self { name, options })
    }

    /// The URL of the test database.
    pub fn url(&self) -> String {
        self.options.to_url_lossy().to_string()
    }

    /// Connection options of the test database.
    pub fn options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await inside the test's runtime, so a thread with its own runtime drops
        // the database; FORCE ends connections a pool still holds.
        let cleanup = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin: PgConnection = admin_options()?.connect().await?;
                sqlx::query(AssertSqlSafe(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#)))
                    .execute(&mut admin)
                    .await?;
                admin.close().await?;
                Ok(())
            })
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("left test database {} behind: {error:#}", self.name),
            Err(_) => eprintln!("left test database {} behind: the cleanup thread panicked", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_a_reachable_database_and_drops_it() {
        let database = TestDatabase::create().await.expect("a test database");
        let name = database.name().to_owned();
        let mut connection = database.options().connect().await.expect("connecting to the test database");
        let current: String =
            sqlx::query_scalar("SELECT current_database()").fetch_one(&mut connection).await.expect("a query");
        assert_eq!(current, name);
        connection.close().await.ok();
        drop(database);

        let mut admin = admin_options().unwrap().connect().await.unwrap();
        let still_there: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(!still_there, "the database is dropped with its guard");
    }
}
