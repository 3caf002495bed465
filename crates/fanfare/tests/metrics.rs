//! The metrics endpoint of a running `fanfare dev` on PostgreSQL: after one message, a
//! scrape shows the build, the process, each service's connection pool and the group
//! commit's batch sizes as a histogram (docs/operations.md, "Metrics"; the PrometheusRule
//! and the dashboard in deploy/ query them).

#[allow(dead_code, reason = "only DevServer, free_port and grpcurl are used here")]
mod support;

use std::time::{Duration, Instant};

use fanfare_testdb::TestDatabase;
use support::{DevServer, free_port, grpcurl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the series may take to appear (the pool gauges come with the first health
/// check, the process metrics with the first refresh: both at start).
const PATIENCE: Duration = Duration::from_secs(30);

/// The body of `GET /metrics`, or `None` while nothing answers.
async fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut response)).await.ok()?.ok()?;
    Some(response)
}

/// Sends one message through the real services, so that messages commits a batch.
fn send_one_message(server: &DevServer) {
    let created = grpcurl(&[
        "-plaintext",
        "-H",
        "x-fanfare-user-id: 1",
        "-d",
        r#"{"kind":"GROUP_KIND_CHAT","title":"Metrics"}"#,
        &server.groups_addr(),
        "fanfare.groups.v1.GroupService/CreateGroup",
    ])
    .expect_success();
    let created: serde_json::Value = serde_json::from_str(&created).expect("CreateGroup prints JSON");
    let group_id = created["group"]["groupId"].as_str().expect("int64 ids print as JSON strings").to_owned();
    grpcurl(&[
        "-plaintext",
        "-H",
        "x-fanfare-user-id: 1",
        "-d",
        &format!(r#"{{"group_id":{group_id},"client_message_id":"m1","text":"counted"}}"#),
        &server.messages_addr(),
        "fanfare.messages.v1.MessageService/SendMessage",
    ])
    .expect_success();
}

#[tokio::test]
async fn a_scrape_shows_build_process_pool_and_batch_size_series() {
    let database = TestDatabase::create().await.expect("a test database");
    let metrics_port = free_port();
    let server = DevServer::start_with(Some(&database.url()), metrics_port).await;
    send_one_message(&server);

    let build_info = format!(r#"fanfare_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION"));
    let mut expected = vec![
        build_info.as_str(),
        "# HELP fanfare_build_info",
        "# HELP process_cpu_seconds_total",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_virtual_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_threads ",
        "process_start_time_seconds ",
        "# HELP fanfare_db_pool_connections",
        "# TYPE fanfare_messages_commit_batch_size histogram",
        // At least the message's commit (the group's creation may add the relay's).
        r#"fanfare_messages_commit_batch_size_bucket{le="1"} "#,
        r#"fanfare_messages_commit_batch_size_bucket{le="1024"} "#,
        r#"fanfare_messages_commit_batch_size_bucket{le="+Inf"} "#,
        "fanfare_messages_commit_batch_size_count ",
    ];
    let pools: Vec<String> = ["fanfare-groups", "fanfare-messages", "fanfare-fanout"]
        .iter()
        .flat_map(|pool| {
            ["connections", "idle_connections", "max_connections"]
                .map(|gauge| format!(r#"fanfare_db_pool_{gauge}{{pool="{pool}"}} "#))
        })
        .collect();
    expected.extend(pools.iter().map(String::as_str));

    let deadline = Instant::now() + PATIENCE;
    let body = loop {
        let body = scrape(metrics_port).await.unwrap_or_default();
        if expected.iter().all(|series| body.contains(series)) || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let missing: Vec<&&str> = expected.iter().filter(|series| !body.contains(**series)).collect();
    assert!(missing.is_empty(), "missing from /metrics: {missing:?}\n{body}");

    // The max is the configured pool size; the process has used some CPU and memory.
    let value = |prefix: &str| -> f64 {
        let line = body.lines().find(|line| line.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix} in {body}"));
        line.rsplit(' ').next().and_then(|value| value.parse().ok()).unwrap_or_else(|| panic!("a number: {line}"))
    };
    assert!(value(r#"fanfare_db_pool_max_connections{pool="fanfare-messages"}"#) >= 1.0);
    assert!(value("process_resident_memory_bytes ") > 1_000_000.0, "a running server holds more than 1 MB");
    assert!(value("process_open_fds ") >= 3.0);
    drop(server);
}
