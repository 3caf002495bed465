//! `fanfare migrate` with runtime roles (docs/security.md, "Least privilege"): each service's
//! role may read and write the rows of its own schema and nothing else: no DDL, no other
//! service's schema, not the migrations table. Roles are made for the test on the shared
//! server with unique names and dropped after it.

use std::process::Command;

use fanfare_testdb::TestDatabase;
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection, PgConnection};

const SERVICES: [&str; 3] = ["groups", "messages", "fanout"];

async fn admin() -> PgConnection {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| fanfare_testdb::DEFAULT_ADMIN_URL.to_owned());
    PgConnection::connect(&url).await.expect("the admin connection")
}

/// The SQLSTATE of a statement `connection` runs, or `None` if it succeeds.
async fn sqlstate(connection: &mut PgConnection, statement: &str) -> Option<String> {
    match sqlx::query(AssertSqlSafe(statement.to_owned())).execute(&mut *connection).await {
        Ok(_) => None,
        Err(error) => Some(error.as_database_error().and_then(|error| error.code()).map_or("?".to_owned(), Into::into)),
    }
}

#[tokio::test]
async fn each_runtime_role_reaches_only_the_rows_of_its_own_schema() {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let roles: Vec<String> = SERVICES.iter().map(|service| format!("fanfare_rt_{service}_{}", &suffix[..12])).collect();
    let mut admin = admin().await;
    for role in &roles {
        sqlx::query(AssertSqlSafe(format!("CREATE ROLE \"{role}\" LOGIN"))).execute(&mut admin).await.expect("role");
    }
    let database = TestDatabase::create().await.expect("a database");

    let output = Command::new(env!("CARGO_BIN_EXE_fanfare"))
        .arg("migrate")
        .env("DATABASE_URL", database.url())
        .env("FANFARE_MIGRATE_GROUPS_ROLE", &roles[0])
        .env("FANFARE_MIGRATE_MESSAGES_ROLE", &roles[1])
        .env("FANFARE_MIGRATE_FANOUT_ROLE", &roles[2])
        .output()
        .expect("running fanfare migrate");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let as_role = |role: &str| database.options().username(role);
    let mut messages = PgConnection::connect_with(&as_role(&roles[1])).await.expect("the messages role logs in");
    // Its own rows: read, write, delete.
    for statement in [
        "INSERT INTO messages.outbox (group_id, event_seq) VALUES (1, 1)",
        "UPDATE messages.outbox SET event_seq = 2 WHERE group_id = 1",
        "SELECT count(*) FROM messages.updates",
        "DELETE FROM messages.outbox WHERE group_id = 1",
    ] {
        assert_eq!(sqlstate(&mut messages, statement).await, None, "{statement}");
    }
    // No DDL, no migrations table, no other schema (42501: insufficient privilege).
    for statement in [
        "CREATE TABLE messages.taken (x int)",
        "DROP TABLE messages.outbox",
        "ALTER TABLE messages.outbox ADD COLUMN x int",
        "SELECT * FROM messages._sqlx_migrations",
        "SELECT * FROM groups.groups",
        "SELECT * FROM fanout.follows",
        "CREATE SCHEMA elsewhere",
    ] {
        let code = sqlstate(&mut messages, statement).await;
        assert!(matches!(code.as_deref(), Some("42501")), "{statement}: {code:?}");
    }
    messages.close().await.ok();

    // The messages store's whole write path (one batch: message, log entry, outbox, counters)
    // runs as the role.
    use fanfare_messages::store::conformance::{group, post, text, user};
    use fanfare_messages::store::{MessageStore as _, PostgresMessageStore};
    let role_url = as_role(&roles[1]).to_url_lossy().to_string();
    let store = PostgresMessageStore::connect(&role_url, 2).await.expect("the store connects as the role");
    let committed = store.apply(vec![post(group(1), user(1), "k", text("hi"))], chrono::Utc::now()).await;
    let outcomes = committed.expect("the role writes a batch").outcomes;
    assert!(matches!(outcomes.as_slice(), [Ok(_)]), "{outcomes:?}");

    let mut groups = PgConnection::connect_with(&as_role(&roles[0])).await.expect("the groups role logs in");
    assert_eq!(sqlstate(&mut groups, "SELECT count(*) FROM groups.groups").await, None);
    assert_eq!(sqlstate(&mut groups, "SELECT count(*) FROM messages.updates").await.as_deref(), Some("42501"));
    groups.close().await.ok();
    let mut fanout = PgConnection::connect_with(&as_role(&roles[2])).await.expect("the fanout role logs in");
    assert_eq!(sqlstate(&mut fanout, "SELECT count(*) FROM fanout.jobs").await, None);
    assert_eq!(sqlstate(&mut fanout, "CREATE INDEX taken ON fanout.jobs (state)").await.as_deref(), Some("42501"));
    fanout.close().await.ok();

    // A role name that is not a plain identifier is refused before anything is granted.
    let refused = Command::new(env!("CARGO_BIN_EXE_fanfare"))
        .arg("migrate")
        .env("DATABASE_URL", database.url())
        .env("FANFARE_MIGRATE_GROUPS_ROLE", "x\"; DROP SCHEMA groups CASCADE; --")
        .output()
        .expect("running fanfare migrate");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("lower-case identifier"));

    drop(database);
    for role in &roles {
        sqlx::query(AssertSqlSafe(format!("DROP ROLE \"{role}\""))).execute(&mut admin).await.expect("role dropped");
    }
}
