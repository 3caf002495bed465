//! Live delivery through a Redis restart: the stream keeps its place and, once Redis is
//! back, delivers everything committed meanwhile, in order, with nothing twice. And the
//! fanout store's database known to be away: calls are refused at once, then served again.

use std::sync::Arc;
use std::time::Duration;

use fanfare_core::status::{ErrorReason, reason_of};
use fanfare_fanout::FanoutBackends;
use fanfare_fanout::follows::store::PostgresFollowStore;
use fanfare_proto::common::v1 as common;
use fanfare_testkit::as_user;
use fanfare_tests::fanout::{TestFanout, dev_config};
use fanfare_tests::live::subscribe_fresh;
use fanfare_tests::messages::{eventually, settle, text};
use fanfare_tests::outage::{RedisServer, Services, postgres_stores};
use fanfare_tests::{expect_code, expect_reason};
use tonic::Code;

/// A message committed while Redis is down waits in the outbox for its lease (10 s) before
/// the relay publishes it again; the stream must have it well within this.
const DELIVERED_WITHIN: Duration = Duration::from_secs(40);

#[tokio::test]
async fn a_stream_survives_a_redis_restart_and_misses_nothing() {
    let (_database, groups_store, messages_store) = postgres_stores().await;
    let mut redis = RedisServer::start().await;
    let services = Services::start(groups_store, messages_store, redis.bus().await, |messages| {
        messages.limits.user_sends_per_second = 0;
    })
    .await;
    let mut groups = services.groups().await;
    let group = fanfare_tests::groups::create(&mut groups, 1, common::GroupKind::Chat).await.group_id;
    fanfare_tests::groups::add(&mut groups, 1, group, &[2]).await;
    settle(services.groups_store.as_ref()).await;

    let mut config =
        dev_config(&format!("http://{}", services.groups_addr), &format!("http://{}", services.messages_addr));
    // Frequent heartbeats keep frames coming while the relay waits out Redis, so only
    // DELIVERED_WITHIN bounds the wait.
    config.live.heartbeat_ms = 500;
    let pod =
        TestFanout::serve(config, FanoutBackends::in_memory(redis.bus().await), None).await.expect("fanout starts");
    let mut client = pod.client().await.expect("a fanout client");
    let (mut stream, starts) = subscribe_fresh(&mut client, 2).await;
    let mut messages = services.messages().await;
    let mut send = async |key: String| {
        let request = text(group, &key, &key);
        messages.send_message(as_user(1, request)).await.expect("SendMessage commits with Redis down too");
    };
    send("before".into()).await;
    stream.until_message(group, "before").await;

    redis.kill().await;
    for index in 0..5 {
        send(format!("during-{index}")).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.start_again().await;
    send("after".into()).await;

    tokio::time::timeout(DELIVERED_WITHIN, stream.until_message(group, "after"))
        .await
        .expect("everything arrives once Redis is back");
    stream.assert_gapless(&starts);
    let keys: Vec<String> = stream.messages(group).iter().map(|message| message.client_message_id.clone()).collect();
    assert_eq!(keys, ["before", "during-0", "during-1", "during-2", "during-3", "during-4", "after"]);
}

#[tokio::test]
async fn a_pod_started_without_redis_serves_streams_once_redis_is_up() {
    let mut redis = RedisServer::start().await;
    let bus = redis.bus().await;
    redis.kill().await;
    let config = dev_config(fanfare_tests::fanout::NOBODY_URL, fanfare_tests::fanout::NOBODY_URL);
    let pod = TestFanout::serve(config, FanoutBackends::in_memory(bus), None).await.expect("fanout starts anyway");
    let mut client = pod.client().await.expect("a fanout client");
    let subscribe = |client: &mut fanfare_tests::fanout::Client| {
        let mut client = client.clone();
        async move { client.subscribe(as_user(2, Default::default())).await.map(|_| ()) }
    };
    let refused = expect_reason(subscribe(&mut client).await, Code::Unavailable, ErrorReason::DependencyUnavailable);
    assert!(refused.message().contains("not connected to the update bus"), "{}", refused.message());

    redis.start_again().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = subscribe(&mut client).await.expect_err("groups is unreachable in this test");
        if !status.message().contains("update bus") {
            // Past the bus: the stream now fails on the next step, listing the user's groups.
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            // tonic's client made this one; passed on, it gets a reason.
            assert_eq!(reason_of(&status), Some(ErrorReason::DependencyUnavailable), "{status:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the pod never connected to Redis: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With its database known to be away (readiness NOT_SERVING), fanout refuses a follow and a
/// fan-out job (whose store shares the follow store's pool) with a 1 s deadline UNAVAILABLE
/// at once, and serves them again once the database answers.
#[tokio::test]
async fn a_database_known_to_be_down_fails_fast_and_recovers() {
    use fanfare_proto::fanout::v1 as pb;
    use fanfare_tests::outage::{CuttableProxy, database_address, wait_until_not_serving};

    let database = fanfare_testkit::TestDatabase::create().await.expect("a test database");
    let migrated = PostgresFollowStore::connect(&database.url(), 2).await.expect("connect");
    PostgresFollowStore::migrate(migrated.pool()).await.expect("migrate the fanout schema");
    let options = database.options();
    let proxy = CuttableProxy::start(database_address(&options)).await;
    let proxied = options.host("127.0.0.1").port(proxy.address().port());
    // The production pool's acquire timeout.
    let pool = fanfare_tests::outage::lazy_pool(proxied, Duration::from_secs(5));
    let store = PostgresFollowStore::from_pool(pool);
    let mut backends = FanoutBackends::in_memory(fanfare_bus::open_bus(None, "").await.expect("a bus"));
    backends.jobs = Arc::new(fanfare_fanout::jobs::PostgresJobStore::sharing(store.shared_pool().clone()));
    backends.follows = Arc::new(store);
    let config = dev_config(fanfare_tests::fanout::NOBODY_URL, fanfare_tests::fanout::NOBODY_URL);
    let pod = TestFanout::serve(config, backends, None).await.expect("fanout starts");
    let mut client = pod.client().await.expect("a fanout client");
    client.follow(as_user(2, pb::FollowRequest { creator_user_id: 1 })).await.expect("a follow before the outage");

    proxy.stall();
    wait_until_not_serving(pod.addr, fanfare_fanout::SERVICE_NAME).await;
    let mut follow = as_user(3, pb::FollowRequest { creator_user_id: 1 });
    follow.set_timeout(Duration::from_secs(1));
    let refused = expect_code(client.follow(follow).await, Code::Unavailable);
    assert!(refused.message().contains("retry"), "{}", refused.message());
    let job = || pb::StartFanoutJobRequest {
        kind: pb::FanoutJobKind::BroadcastNotification as i32,
        payload_ref: "post-1".into(),
        idempotency_key: "job-1".into(),
        rate_limit_per_second: 0,
    };
    let mut start = as_user(1, job());
    start.set_timeout(Duration::from_secs(1));
    expect_code(client.start_fanout_job(start).await, Code::Unavailable);

    proxy.restore();
    eventually("follows succeed again", || {
        let mut client = client.clone();
        async move { client.follow(as_user(3, pb::FollowRequest { creator_user_id: 1 })).await.is_ok() }
    })
    .await;
    client.start_fanout_job(as_user(1, job())).await.expect("a job starts again");
    pod.stop().await.expect("fanout stops cleanly");
}
