//! The groups service with its database gone: every call that needs the store answers
//! UNAVAILABLE with a retry delay (nothing half-written), at once while the database is
//! known to be away, health says NOT_SERVING, and the service itself keeps running and
//! serves again when the database is back.

use std::sync::Arc;
use std::time::Duration;

use fanfare_core::config::DependencyConfig;
use fanfare_core::status::ErrorReason;
use fanfare_groups::GroupsConfig;
use fanfare_groups::store::PostgresGroupStore;
use fanfare_proto::groups::v1 as pb;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_testkit::TestDatabase;
use fanfare_testkit::as_user;
use fanfare_tests::messages::eventually;
use fanfare_tests::outage::{CuttableProxy, database_address, wait_until_not_serving};
use fanfare_tests::{expect_code, expect_reason};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

/// A Postgres nobody listens on: port 1 on loopback refuses at once.
const DEAD_DATABASE: &str = "postgres://postgres@127.0.0.1:1/fanfare";

#[tokio::test]
async fn a_dead_database_answers_unavailable_and_health_not_serving() {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(DEAD_DATABASE)
        .expect("a lazy pool never connects up front");
    let store = Arc::new(PostgresGroupStore::from_pool(pool));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let config = GroupsConfig::for_dev(DependencyConfig::default());
    let server = tokio::spawn(fanfare_groups::serve(config, store, listener, shutdown.clone()));

    let channel = Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    let mut groups = GroupServiceClient::new(channel.clone());

    let create = pb::CreateGroupRequest {
        kind: fanfare_proto::common::v1::GroupKind::Chat as i32,
        title: "Friends".into(),
        ..Default::default()
    };
    let status = groups.create_group(as_user(1, create)).await;
    let status = expect_reason(status, Code::Unavailable, ErrorReason::DependencyUnavailable);
    assert!(status.message().contains("retry"), "{}", status.message());
    assert!(status.get_error_details().retry_info().is_some(), "UNAVAILABLE carries a retry delay");
    expect_code(groups.get_group(as_user(1, pb::GetGroupRequest { group_id: 1 })).await, Code::Unavailable);

    // Bad input is still refused as bad input: validation does not need the database.
    let bad = pb::CreateGroupRequest { kind: 0, title: String::new(), ..Default::default() };
    expect_code(groups.create_group(as_user(1, bad)).await, Code::InvalidArgument);

    let mut health = HealthClient::new(channel);
    let request = HealthCheckRequest { service: fanfare_groups::SERVICE_NAME.to_owned() };
    let answer = health.check(request).await.expect("health answers even when the database is down");
    assert_eq!(answer.into_inner().status, ServingStatus::NotServing as i32);

    shutdown.cancel();
    server.await.expect("the server task").expect("the server stops cleanly");
}

/// With the database known to be away (readiness NOT_SERVING), a call with a 1 s deadline
/// is refused UNAVAILABLE rather than waiting out the pool's acquire timeout into
/// DEADLINE_EXCEEDED; when the database answers again, calls succeed.
#[tokio::test]
async fn a_database_known_to_be_down_fails_fast_and_recovers() {
    let database = TestDatabase::create().await.expect("a test database");
    let migrated = PostgresGroupStore::connect(&database.url(), 2).await.expect("connect");
    PostgresGroupStore::migrate(migrated.pool()).await.expect("migrate the groups schema");
    let options = database.options();
    let proxy = CuttableProxy::start(database_address(&options)).await;
    let proxied = options.host("127.0.0.1").port(proxy.address().port());
    // The production pool's acquire timeout.
    let pool = fanfare_tests::outage::lazy_pool(proxied, Duration::from_secs(5));
    let store = Arc::new(PostgresGroupStore::from_pool(pool));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let config = GroupsConfig::for_dev(DependencyConfig::default());
    let server = tokio::spawn(fanfare_groups::serve(config, store, listener, shutdown.clone()));
    let channel = Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    let mut groups = GroupServiceClient::new(channel);
    let create = || pb::CreateGroupRequest {
        kind: fanfare_proto::common::v1::GroupKind::Community as i32,
        title: "Skaters".into(),
        ..Default::default()
    };
    let group_id =
        groups.create_group(as_user(1, create())).await.expect("created").into_inner().group.unwrap().group_id;

    proxy.stall();
    wait_until_not_serving(address, fanfare_groups::SERVICE_NAME).await;
    let mut request = as_user(1, pb::GetGroupRequest { group_id });
    request.set_timeout(Duration::from_secs(1));
    let refused = expect_code(groups.get_group(request).await, Code::Unavailable);
    assert!(refused.message().contains("retry"), "{}", refused.message());
    let mut request = as_user(1, create());
    request.set_timeout(Duration::from_secs(1));
    expect_code(groups.create_group(request).await, Code::Unavailable);

    proxy.restore();
    eventually("calls succeed again", || {
        let mut groups = groups.clone();
        async move { groups.get_group(as_user(1, pb::GetGroupRequest { group_id })).await.is_ok() }
    })
    .await;
    groups.create_group(as_user(1, create())).await.expect("a change succeeds again");

    shutdown.cancel();
    server.await.expect("the server task").expect("the server stops cleanly");
}
