//! The conformance suite: what every [`UpdateBus`] must do, written once as async test
//! functions and stamped out per implementation with [`bus_conformance_tests!`].
//!
//! Every test uses fresh random channel names, so suites against a shared Redis can run in
//! parallel. Waits are bounded by [`EVENT_TIMEOUT`]; nothing sleeps for a fixed time.
//!
//! [`bus_conformance_tests!`]: crate::bus_conformance_tests

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{BusError, BusEvent, GapReason, Subscriber, UpdateBus};

/// How long a test waits for an event, or for a condition, before it fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The queue capacity of buses in tests that do not overflow on purpose.
pub const ROOMY_QUEUE_CAPACITY: usize = 1_024;

/// Makes buses of the implementation under test.
#[async_trait]
pub trait BusFactory: Send + Sync {
    /// A bus whose subscribers queue at most `queue_capacity` messages.
    async fn bus(&self, queue_capacity: usize) -> Arc<dyn UpdateBus>;
}

/// Stamps out one `#[tokio::test]` per conformance test, each calling the suite with the
/// given [`BusFactory`] expression.
#[macro_export]
macro_rules! bus_conformance_tests {
    ($factory:expr) => {
        $crate::bus_conformance_tests!(@each $factory;
            publish_reaches_a_subscribed_channel,
            other_channels_are_not_delivered,
            channels_are_added_and_removed_at_runtime,
            unsubscribing_discards_queued_messages,
            subscribing_twice_delivers_once,
            every_subscriber_receives_each_message,
            order_is_kept_within_a_channel,
            publish_all_delivers_each_message_in_order,
            a_full_queue_reports_a_gap_without_blocking_the_publisher,
            a_handle_changes_channels_while_another_task_receives,
            a_dropped_subscriber_closes_its_handles,
        );
    };
    (@each $factory:expr; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                $crate::conformance::$test(&$factory).await;
            }
        )+
    };
}

/// A channel name no other test uses.
pub fn unique_channel(label: &str) -> String {
    format!("fanfare:test:{label}:{:016x}", rand::random::<u64>())
}

/// The message event a publish of `payload` to `channel` produces.
pub fn message(channel: &str, payload: &str) -> BusEvent {
    BusEvent::Message { channel: channel.to_owned(), payload: Bytes::copy_from_slice(payload.as_bytes()) }
}

/// The next event of `subscriber`; panics after [`EVENT_TIMEOUT`].
pub async fn next_event(subscriber: &mut Subscriber) -> BusEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, subscriber.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the subscriber's event queue ended"),
        Err(_elapsed) => panic!("no bus event within {EVENT_TIMEOUT:?}"),
    }
}

/// Publishes `payload` to `channel`; panics if it fails or takes longer than
/// [`EVENT_TIMEOUT`].
pub async fn publish(bus: &dyn UpdateBus, channel: &str, payload: &str) {
    let publishing = bus.publish(channel, Bytes::copy_from_slice(payload.as_bytes()));
    match tokio::time::timeout(EVENT_TIMEOUT, publishing).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("publish to {channel} failed: {error:?}"),
        Err(_elapsed) => panic!("publish to {channel} blocked for {EVENT_TIMEOUT:?}"),
    }
}

/// Waits until `condition` holds; panics after [`EVENT_TIMEOUT`].
pub async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn subscriber_of(bus: &dyn UpdateBus, channels: &[&str]) -> Subscriber {
    let subscriber = bus.subscriber().await.expect("open a subscriber");
    subscriber.subscribe_many(channels.iter().copied()).await.expect("subscribe");
    subscriber
}

/// A publish right after `subscribe` returns is received: subscribing waits for confirmation.
pub async fn publish_reaches_a_subscribed_channel(factory: &dyn BusFactory) {
    let bus = factory.bus(ROOMY_QUEUE_CAPACITY).await;
    let channel = unique_channel("basic");
    let mut subscriber = subscriber_of(bus.as_ref(), &[&channel]).await;

    publish(bus.as_ref(), &channel, "hello").await;

    assert_eq!(next_event(&mut subscriber).await, message(&channel, "hello"));
}

/// Messages of channels the subscriber does not hold never arrive.
pub async fn other_channels_are_not_delivered(factory: &dyn BusFactory) {
    let bus = factory.bus(ROOMY_QUEUE_CAPACITY).await;
    let subscribed = unique_channel("subscribed");
    let other = unique_channel("other");
    let mut subscriber = subscriber_of(bus.as_ref(), &[&subscribed]).await;

    // From one publisher, the other channel's message would arrive before the marker.
    publish(bus.as_ref(), &other, "not for you").await;
    publish(bus.as_ref(), &subscribed, "marker").await;

    assert_eq!(next_event(&mut subscriber).await, message(&subscribed, "marker"));
    assert_eq!(subscriber.try_recv(), None);
}

/// Channels join and leave one subscriber while it runs.
pub async fn channels_are_added_and_removed_at_runtime(factory: &dyn BusFactory) {
    let bus = factory.bus(ROOMY_QUEUE_CAPACITY).await;
    let first = unique_channel("first");
    let second = unique_channel("second");
    let mut subscriber = subscriber_of(bus.as_ref(), &[&first]).await;

    subscriber.subscribe(&second).await.expect("subscribe second");
    publish(bus.as_ref(), &second, "to second").await;
    assert_eq!(next_event(&mut subscriber).await, message(&second, "to second"));

    subscriber.unsubscribe(&first).await.expect("unsubscribe first");
    publish(bus.as_ref(), &first, "to first, unheard").await;
    publish(bus.as_ref(), &second, "marker").await;
    assert_eq!(next_event(&mut subscriber).await, message(&second, "marker"));

    subscriber.subscribe(&first).await.expect("subscribe first again");
    publish(bus.as_ref(), &first, "to first again").await;
    assert_eq!(next_event(&mut subscriber).await, message(&first, "to first again"));

    // Unsubscribing from a channel not held is not an error.
    subscriber.unsubscribe(&unique_channel("never")).await.expect("unsubscribe from a channel never held");
}

/// Once `unsubscribe` returns, not even already-queued messages of that channel arrive.
pub async fn unsubscribing_discards_queued_messages(factory: &dyn BusFactory) {
    let bus = factory.bus(ROOMY_QUEUE_CAPACITY).await;
    let leaving = unique_channel("leaving");
    let staying = unique_channel("staying");
    let mut subscriber = subscriber_of(bus.as_ref(), &[&leaving, &staying]).await;

    for payload in ["1", "2", "3"] {
        publish(bus.as_ref(), &leaving, payload).await;
    }
    wait_until("three messages are queued", || subscriber.queued_messages() == 3).await;
    subscriber.unsubscribe(&leaving).await.expect("unsubscribe");
    publish(bus.as_ref(), &staying, "marker").await;

    assert_eq!(next_event(&mut subscriber).await, message(&staying, "marker"));
}

/// The channels of a subscriber are a set, not a count.
pub async fn subscribing_twice_delivers_once(factory: &dyn BusFactory) {
    let bus = factory.bus(ROOMY_QUEUE_CAPACITY).await;
    let channel = unique_channel("twice");
    let mut subscriber = subscriber_of(bus.as_ref(), &[&channel]).await;
    subscriber.subscribe(&channel).await.expect("subscribe again");

    publish(bus.as_ref(), &channel, "once").await;
    publish(bus.as_ref(), &channel, "marker").await;

    assert_eq!(next_event(&mut subscriber).await, message(&channel, "once"));
    assert_eq!(next_event(&mut subscriber).await, message(&channel, "marker"));
}

/// Two subscribers of one channel both receive each message.
pub async fn every_subscriber_receives_each_message(factory: &dyn BusFactory) {
    let bus = factory.bus(ROOMY_QUEUE_CAPACITY).await;
    let channel = unique_channel("shared");
    let mut first = subscriber_of(bus.as_ref(), &[&channel]).await;
    let mut second = subscriber_of(bus.as_ref(), &[&channel]).await;

    publish(bus.as_ref(), &channel, "to both").await;

    assert_eq!(next_event(&mut first).await, message(&channel, "to both"));
    assert_eq!(next_event(&mut second).await, message(&channel, "to both"));
}

/// Messages of one publisher on one channel arrive in publish order.
pub async fn order_is_kept_within_a_channel(factory: &dyn BusFactory) {
    let bus = factory.bus(ROOMY_QUEUE_CAPACITY).await;
    let channel = unique_channel("ordered");
    let mut subscriber = subscriber_of(bus.as_ref(), &[&channel]).await;

    let payloads: Vec<String> = (0..200).map(|sequence| sequence.to_string()).collect();
    for payload in &payloads {
        publish(bus.as_ref(), &channel, payload).await;
    }

    for payload in &payloads {
        assert_eq!(next_event(&mut subscriber).await, message(&channel, payload));
    }
}

/// `publish_all` delivers every message of the batch, each to its own channel, in order,
/// interleaved with single publishes as they were made; an empty batch publishes nothing.
pub async fn publish_all_delivers_each_message_in_order(factory: &dyn BusFactory) {
    let bus = factory.bus(ROOMY_QUEUE_CAPACITY).await;
    let (first, second) = (unique_channel("batch-a"), unique_channel("batch-b"));
    let mut subscriber = subscriber_of(bus.as_ref(), &[&first, &second]).await;

    bus.publish_all(&[]).await.expect("an empty batch");
    publish(bus.as_ref(), &first, "before").await;
    let batch: Vec<(String, Bytes)> = (0..100)
        .map(|sequence| {
            let channel = if sequence % 3 == 0 { &second } else { &first };
            (channel.clone(), Bytes::from(sequence.to_string()))
        })
        .collect();
    bus.publish_all(&batch).await.expect("the batch is published");
    publish(bus.as_ref(), &first, "after").await;

    assert_eq!(next_event(&mut subscriber).await, message(&first, "before"));
    for (channel, payload) in &batch {
        let payload = std::str::from_utf8(payload).expect("ASCII");
        assert_eq!(next_event(&mut subscriber).await, message(channel, payload));
    }
    assert_eq!(next_event(&mut subscriber).await, message(&first, "after"));
}

/// A subscriber that does not read drops what exceeds its queue and reports a lag gap at
/// the point of loss; publishers never wait for it; it recovers once it reads again.
pub async fn a_full_queue_reports_a_gap_without_blocking_the_publisher(factory: &dyn BusFactory) {
    const CAPACITY: usize = 4;
    const PUBLISHED: usize = 12;
    let bus = factory.bus(CAPACITY).await;
    let channel = unique_channel("overflow");
    let mut subscriber = subscriber_of(bus.as_ref(), &[&channel]).await;

    for sequence in 0..PUBLISHED {
        publish(bus.as_ref(), &channel, &sequence.to_string()).await;
    }
    let expected_drops = (PUBLISHED - CAPACITY) as u64;
    wait_until("the overflowing messages are dropped", || subscriber.dropped_messages() == expected_drops).await;

    for sequence in 0..CAPACITY {
        let payload = sequence.to_string();
        assert_eq!(next_event(&mut subscriber).await, message(&channel, &payload));
    }
    let lagged = BusEvent::Gap { reason: GapReason::Lagged };
    assert_eq!(next_event(&mut subscriber).await, lagged);

    publish(bus.as_ref(), &channel, "after the gap").await;
    assert_eq!(next_event(&mut subscriber).await, message(&channel, "after the gap"));
}

/// One task receives while another adds channels through a handle, as a fanout pod does.
pub async fn a_handle_changes_channels_while_another_task_receives(factory: &dyn BusFactory) {
    let bus = factory.bus(ROOMY_QUEUE_CAPACITY).await;
    let channel = unique_channel("handle");
    let mut subscriber = bus.subscriber().await.expect("open a subscriber");
    let handle = subscriber.handle();
    let receiving = tokio::spawn(async move { next_event(&mut subscriber).await });

    handle.subscribe(&channel).await.expect("subscribe via handle");
    publish(bus.as_ref(), &channel, "via handle").await;

    let event = receiving.await.expect("the receiving task finishes");
    assert_eq!(event, message(&channel, "via handle"));
}

/// Handles outliving their subscriber report it closed.
pub async fn a_dropped_subscriber_closes_its_handles(factory: &dyn BusFactory) {
    let bus = factory.bus(ROOMY_QUEUE_CAPACITY).await;
    let subscriber = bus.subscriber().await.expect("open a subscriber");
    let handle = subscriber.handle();
    drop(subscriber);

    let outcome = handle.subscribe(&unique_channel("closed")).await;
    assert!(matches!(outcome, Err(BusError::Closed)), "{outcome:?}");
}
