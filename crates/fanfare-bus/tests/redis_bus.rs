//! The conformance suite against Redis, plus what only Redis does: several processes on one
//! server, and connections that break.
//!
//! Uses the shared server at `REDIS_URL` (default `redis://127.0.0.1:6379`) with random
//! channel names or random namespaces; the restart test runs its own `redis-server` instead
//! of touching it.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fanfare_bus::conformance::{
    BusFactory, EVENT_TIMEOUT, ROOMY_QUEUE_CAPACITY, message, next_event, publish, unique_channel,
};
use fanfare_bus::{BusError, BusEvent, GapReason, RedisBus, RedisBusConfig, UpdateBus, group_channel};

use crate::support::frozen_proxy::FreezableProxy;
use crate::support::redis_server::{RedisServer, free_port};

/// The shared Redis the tests run against.
fn shared_redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Short timeouts and backoff, so outages are noticed and healed quickly in tests.
fn test_config(url: String, queue_capacity: usize) -> RedisBusConfig {
    RedisBusConfig {
        queue_capacity,
        connection_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(1),
        reconnect_min_delay: Duration::from_millis(50),
        reconnect_max_delay: Duration::from_millis(500),
        ..RedisBusConfig::new(url)
    }
}

async fn open_bus(url: String, queue_capacity: usize) -> RedisBus {
    RedisBus::open(test_config(url, queue_capacity)).await.expect("open the redis bus")
}

/// A new bus (with its own connections) on the shared Redis per call.
struct RedisBusFactory;

#[async_trait]
impl BusFactory for RedisBusFactory {
    async fn bus(&self, queue_capacity: usize) -> Arc<dyn UpdateBus> {
        Arc::new(open_bus(shared_redis_url(), queue_capacity).await)
    }
}

fanfare_bus::bus_conformance_tests!(RedisBusFactory);

/// A namespace no other test uses.
fn unique_namespace(label: &str) -> String {
    format!("test-{label}-{:016x}", rand::random::<u64>())
}

/// A bus on the shared Redis in its own namespace.
async fn open_namespaced_bus(namespace: &str) -> RedisBus {
    let config =
        RedisBusConfig { namespace: namespace.to_owned(), ..test_config(shared_redis_url(), ROOMY_QUEUE_CAPACITY) };
    RedisBus::open(config).await.expect("open the namespaced redis bus")
}

/// The conformance suite again, every bus in a fresh namespace: the namespace must be
/// invisible to callers.
mod namespaced {
    use super::*;

    struct NamespacedRedisBusFactory;

    #[async_trait]
    impl BusFactory for NamespacedRedisBusFactory {
        async fn bus(&self, queue_capacity: usize) -> Arc<dyn UpdateBus> {
            let config = RedisBusConfig {
                namespace: unique_namespace("conformance"),
                ..test_config(shared_redis_url(), queue_capacity)
            };
            Arc::new(RedisBus::open(config).await.expect("open the namespaced redis bus"))
        }
    }

    fanfare_bus::bus_conformance_tests!(NamespacedRedisBusFactory);
}

#[tokio::test]
async fn buses_in_different_namespaces_share_a_redis_without_hearing_each_other() {
    // The same channel name in both, as when two test databases both have a group 1.
    let channel = group_channel(1);
    let first_namespace = unique_namespace("first");
    let second_namespace = unique_namespace("second");
    let first_bus = open_namespaced_bus(&first_namespace).await;
    let second_bus = open_namespaced_bus(&second_namespace).await;
    let mut first_subscriber = first_bus.subscriber().await.expect("subscriber in the first namespace");
    first_subscriber.subscribe(&channel).await.expect("subscribe");
    let mut second_subscriber = second_bus.subscriber().await.expect("subscriber in the second namespace");
    second_subscriber.subscribe(&channel).await.expect("subscribe");

    // Redis answers a publish after pushing it to subscribers, so a leak would come first.
    publish(&second_bus, &channel, "for the second").await;
    publish(&first_bus, &channel, "for the first").await;

    // Subscribers see the channel name they subscribed to, without the namespace.
    assert_eq!(next_event(&mut first_subscriber).await, message(&channel, "for the first"));
    assert_eq!(next_event(&mut second_subscriber).await, message(&channel, "for the second"));
    assert_eq!(first_subscriber.try_recv(), None);
    assert_eq!(second_subscriber.try_recv(), None);
    // On the server, each subscription is to the channel name behind its namespace.
    assert_eq!(server_subscriber_count(&format!("{first_namespace}:{channel}")).await, 1);
    assert_eq!(server_subscriber_count(&format!("{second_namespace}:{channel}")).await, 1);

    // The unsubscribe reaches Redis just after the call returns.
    first_subscriber.unsubscribe(&channel).await.expect("unsubscribe");
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while server_subscriber_count(&format!("{first_namespace}:{channel}")).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the namespaced channel was never unsubscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_bus_without_a_namespace_does_not_hear_a_namespaced_one() {
    let channel = unique_channel("unnamespaced");
    let namespaced_bus = open_namespaced_bus(&unique_namespace("loud")).await;
    let plain_bus = open_bus(shared_redis_url(), ROOMY_QUEUE_CAPACITY).await;
    let mut plain_subscriber = plain_bus.subscriber().await.expect("subscriber without a namespace");
    plain_subscriber.subscribe(&channel).await.expect("subscribe");

    publish(&namespaced_bus, &channel, "namespaced").await;
    publish(&plain_bus, &channel, "marker").await;

    assert_eq!(next_event(&mut plain_subscriber).await, message(&channel, "marker"));
    assert_eq!(plain_subscriber.try_recv(), None);
}

#[tokio::test]
async fn an_invalid_namespace_is_refused_at_open() {
    for namespace in ["has:colon", "has space", &"n".repeat(fanfare_bus::MAX_NAMESPACE_LEN + 1)] {
        let config = RedisBusConfig { namespace: namespace.to_owned(), ..test_config(shared_redis_url(), 1) };
        let opened = RedisBus::open(config).await;
        assert!(matches!(opened, Err(BusError::InvalidConfig(_))), "{namespace:?}: {opened:?}");
    }
}

#[tokio::test]
async fn a_publish_on_one_bus_reaches_a_subscriber_of_another() {
    let publishing_bus = open_bus(shared_redis_url(), ROOMY_QUEUE_CAPACITY).await;
    let subscribing_bus = open_bus(shared_redis_url(), ROOMY_QUEUE_CAPACITY).await;
    let channel = unique_channel("across");
    let mut subscriber = subscribing_bus.subscriber().await.expect("subscriber");
    subscriber.subscribe(&channel).await.expect("subscribe");

    publish(&publishing_bus, &channel, "from afar").await;

    assert_eq!(next_event(&mut subscriber).await, message(&channel, "from afar"));
}

#[tokio::test]
async fn dropping_the_subscriber_releases_its_channels_on_the_server() {
    let bus = open_bus(shared_redis_url(), ROOMY_QUEUE_CAPACITY).await;
    let channel = unique_channel("numsub");
    let subscriber = bus.subscriber().await.expect("subscriber");
    subscriber.subscribe(&channel).await.expect("subscribe");
    assert_eq!(server_subscriber_count(&channel).await, 1);

    drop(subscriber);

    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while server_subscriber_count(&channel).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the subscriber's connection outlived it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `PUBSUB NUMSUB` of one channel on the shared server.
async fn server_subscriber_count(channel: &str) -> i64 {
    let client = redis::Client::open(shared_redis_url()).expect("a valid URL");
    let mut connection = client.get_multiplexed_async_connection().await.expect("connect to the shared redis");
    let (_channel, count): (String, i64) =
        redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut connection).await.expect("PUBSUB NUMSUB");
    count
}

#[tokio::test]
async fn without_redis_everything_fails_as_unavailable() {
    let nowhere = format!("redis://127.0.0.1:{}", free_port());
    let bus = open_bus(nowhere, ROOMY_QUEUE_CAPACITY).await;

    let published = bus.publish("fanfare:test:nowhere", Bytes::from_static(b"lost")).await;
    assert!(matches!(published, Err(BusError::Unavailable(_))), "{published:?}");
    let pinged = bus.ping().await;
    assert!(matches!(pinged, Err(BusError::Unavailable(_))), "{pinged:?}");
    let subscribed = bus.subscriber().await;
    assert!(matches!(subscribed, Err(BusError::Unavailable(_))), "{subscribed:?}");
}

#[tokio::test]
async fn a_subscriber_reports_a_redis_restart_and_resumes_after_it() {
    let mut server = RedisServer::start().await;
    let bus = open_bus(server.url(), ROOMY_QUEUE_CAPACITY).await;
    let channel = unique_channel("restart");
    let mut subscriber = bus.subscriber().await.expect("subscriber");
    subscriber.subscribe(&channel).await.expect("subscribe");
    publish(&bus, &channel, "before").await;
    assert_eq!(next_event(&mut subscriber).await, message(&channel, "before"));

    server.kill().await;

    let disconnected = BusEvent::Gap { reason: GapReason::Disconnected };
    assert_eq!(next_event(&mut subscriber).await, disconnected);
    let published = bus.publish(&channel, Bytes::from_static(b"lost")).await;
    assert!(matches!(published, Err(BusError::Unavailable(_))), "{published:?}");
    // A channel added during the outage goes live with the others on `Resumed`.
    let added_during_outage = unique_channel("added-during-outage");
    subscriber.subscribe(&added_during_outage).await.expect("subscribe while disconnected");

    server.start_again().await;

    assert_eq!(next_event(&mut subscriber).await, BusEvent::Resumed);
    publish_once_redis_is_back(&bus, &channel, "after").await;
    assert_eq!(next_event(&mut subscriber).await, message(&channel, "after"));
    publish(&bus, &added_during_outage, "new").await;
    assert_eq!(next_event(&mut subscriber).await, message(&added_during_outage, "new"));
}

/// Publishes, retrying while the publishing connection is still reconnecting (as the
/// outbox relay does).
async fn publish_once_redis_is_back(bus: &RedisBus, channel: &str, payload: &'static str) {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let outcome = bus.publish(channel, Bytes::from_static(payload.as_bytes())).await;
        let Err(error) = outcome else {
            return;
        };
        assert!(tokio::time::Instant::now() < deadline, "publishing never recovered after the restart: {error:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_connection_that_goes_silent_is_caught_by_ping() {
    let server = RedisServer::start().await;
    let proxy = FreezableProxy::start(server.address()).await;
    let config =
        RedisBusConfig { ping_interval: Duration::from_millis(50), ..test_config(proxy.url(), ROOMY_QUEUE_CAPACITY) };
    let subscribing_bus = RedisBus::open(config).await.expect("open the bus");
    let publishing_bus = open_bus(server.url(), ROOMY_QUEUE_CAPACITY).await;
    let channel = unique_channel("silent");
    let mut subscriber = subscribing_bus.subscriber().await.expect("subscriber");
    subscriber.subscribe(&channel).await.expect("subscribe");

    // Healthy pings, on a connection in subscribed mode, change nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&publishing_bus, &channel, "while healthy").await;
    assert_eq!(next_event(&mut subscriber).await, message(&channel, "while healthy"));

    proxy.freeze_open_connections();

    let disconnected = BusEvent::Gap { reason: GapReason::Disconnected };
    assert_eq!(next_event(&mut subscriber).await, disconnected);
    assert_eq!(next_event(&mut subscriber).await, BusEvent::Resumed);
    publish(&publishing_bus, &channel, "after").await;
    assert_eq!(next_event(&mut subscriber).await, message(&channel, "after"));
}

/// Two buses (two pods) on one Redis and namespace share each user's quota: the burst is
/// spent once between them, the wait is named, other users and namespaces are not touched,
/// and the quota refills at its rate.
#[tokio::test]
async fn rate_limits_are_shared_by_every_bus_of_a_namespace() {
    use fanfare_core::rate_limit::LimitQuota;
    let namespace = format!("limits-{:08x}", rand::random::<u32>());
    let first = open_namespaced_bus(&namespace).await.shared_limits().expect("redis keeps shared limits");
    let second = open_namespaced_bus(&namespace).await.shared_limits().expect("redis keeps shared limits");
    let quota = LimitQuota::new(2, 4).expect("a quota");
    let key = "limit:test:1";

    let mut allowed = 0;
    for index in 0..8 {
        let limits = if index % 2 == 0 { &first } else { &second };
        if limits.take(key, quota).await.expect("redis answers").is_ok() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 4, "the burst of 4 is spent once across both pods (eight tries at once)");
    let wait = first.take(key, quota).await.expect("redis answers").expect_err("over the quota");
    assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500), "one unit comes back every 500 ms: {wait:?}");

    assert!(first.take("limit:test:2", quota).await.expect("redis answers").is_ok(), "another user has its own");
    let elsewhere = open_namespaced_bus(&format!("{namespace}-other")).await.shared_limits().expect("limits");
    assert!(elsewhere.take(key, quota).await.expect("redis answers").is_ok(), "another namespace has its own");

    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    assert!(second.take(key, quota).await.expect("redis answers").is_ok(), "a unit came back at the rate");
}

#[tokio::test]
async fn without_redis_a_shared_limit_check_fails_rather_than_hangs() {
    use fanfare_core::rate_limit::LimitQuota;
    let bus = open_bus(format!("redis://127.0.0.1:{}", free_port()), 16).await;
    let limits = bus.shared_limits().expect("redis keeps shared limits");
    let answer = limits.take("limit:test:1", LimitQuota::new(1, 1).expect("a quota")).await;
    assert!(answer.is_err(), "an unreachable Redis is an error the caller falls back from: {answer:?}");
}
