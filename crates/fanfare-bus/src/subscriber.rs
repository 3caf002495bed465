//! The subscriber every bus hands out: a set of channels changed at runtime, and the events
//! of those channels in one queue.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use futures::Stream;

use crate::queue::EventQueue;
use crate::{BusError, BusEvent};

/// How a bus implementation changes the channels of one subscriber.
///
/// Dropping the value ends the subscription: implementations clean up in `Drop`.
#[async_trait]
pub(crate) trait ChannelControl: Send + Sync + 'static {
    /// Adds channels; returns once they are subscribed (see [`Subscriber::subscribe`]).
    async fn subscribe(&self, channels: HashSet<String>) -> Result<(), BusError>;

    /// Removes channels; returns once no message of theirs can be received any more.
    async fn unsubscribe(&self, channels: HashSet<String>) -> Result<(), BusError>;
}

/// One subscription to the bus: the channels it holds and the events they bring.
///
/// Channels form a set: subscribing to a channel already held, or unsubscribing from one not
/// held, does nothing (reference counting listeners is the caller's job). Events arrive in a
/// bounded queue; when it overflows, messages are dropped and a [`BusEvent::Gap`] says so.
///
/// Dropping the subscriber ends the subscription (and, for Redis, closes its connection);
/// [`SubscriberHandle`]s then answer [`BusError::Closed`].
pub struct Subscriber {
    control: Arc<dyn ChannelControl>,
    events: Arc<EventQueue>,
}

/// A cheap, cloneable way to add and remove channels of a [`Subscriber`] from other tasks
/// while one task receives its events.
#[derive(Clone)]
pub struct SubscriberHandle {
    control: Weak<dyn ChannelControl>,
}

impl Subscriber {
    pub(crate) fn new(control: Arc<dyn ChannelControl>, events: Arc<EventQueue>) -> Self {
        Self { control, events }
    }

    /// Subscribes to `channel`, returning once the subscription is confirmed.
    ///
    /// If the subscriber is disconnected (between a [`BusEvent::Gap`] and its
    /// [`BusEvent::Resumed`]), the channel joins the set at once and goes live with the
    /// others on `Resumed`, which is when every channel is to be repaired anyway.
    pub async fn subscribe(&self, channel: &str) -> Result<(), BusError> {
        self.control.subscribe(channel_set([channel])).await
    }

    /// Subscribes to several channels in one round trip; see [`Subscriber::subscribe`].
    pub async fn subscribe_many<'a>(&self, channels: impl IntoIterator<Item = &'a str>) -> Result<(), BusError> {
        self.control.subscribe(channel_set(channels)).await
    }

    /// Unsubscribes from `channel`. Once it returns, no message of that channel is received,
    /// including any that were already queued.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), BusError> {
        self.control.unsubscribe(channel_set([channel])).await
    }

    /// Unsubscribes from several channels; see [`Subscriber::unsubscribe`].
    pub async fn unsubscribe_many<'a>(&self, channels: impl IntoIterator<Item = &'a str>) -> Result<(), BusError> {
        self.control.unsubscribe(channel_set(channels)).await
    }

    /// A handle to change this subscriber's channels from other tasks.
    pub fn handle(&self) -> SubscriberHandle {
        SubscriberHandle { control: Arc::downgrade(&self.control) }
    }

    /// The next event, waiting for one. `None` only if the machinery behind the subscriber
    /// died (the Redis listener task panicked); a Redis outage is a `Gap`, never an end.
    pub async fn recv(&mut self) -> Option<BusEvent> {
        self.events.recv().await
    }

    /// The next event if one is already queued.
    pub fn try_recv(&mut self) -> Option<BusEvent> {
        self.events.try_recv()
    }

    /// How many messages are queued and not yet received (for a queue-depth gauge).
    pub fn queued_messages(&self) -> usize {
        self.events.queued_messages()
    }

    /// How many messages were dropped because the queue was full (for a counter).
    pub fn dropped_messages(&self) -> u64 {
        self.events.dropped_messages()
    }

    /// The events as a stream; the stream owns the subscriber, so dropping it unsubscribes.
    pub fn into_stream(self) -> impl Stream<Item = BusEvent> + Send + 'static {
        futures::stream::unfold(self, |mut subscriber| async move {
            let event = subscriber.recv().await?;
            Some((event, subscriber))
        })
    }
}

impl SubscriberHandle {
    /// [`Subscriber::subscribe`], or [`BusError::Closed`] once the subscriber is dropped.
    pub async fn subscribe(&self, channel: &str) -> Result<(), BusError> {
        self.live_control()?.subscribe(channel_set([channel])).await
    }

    /// [`Subscriber::subscribe_many`], or [`BusError::Closed`] once the subscriber is dropped.
    pub async fn subscribe_many<'a>(&self, channels: impl IntoIterator<Item = &'a str>) -> Result<(), BusError> {
        self.live_control()?.subscribe(channel_set(channels)).await
    }

    /// [`Subscriber::unsubscribe`], or [`BusError::Closed`] once the subscriber is dropped.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), BusError> {
        self.live_control()?.unsubscribe(channel_set([channel])).await
    }

    /// [`Subscriber::unsubscribe_many`], or [`BusError::Closed`] once the subscriber is
    /// dropped.
    pub async fn unsubscribe_many<'a>(&self, channels: impl IntoIterator<Item = &'a str>) -> Result<(), BusError> {
        self.live_control()?.unsubscribe(channel_set(channels)).await
    }

    fn live_control(&self) -> Result<Arc<dyn ChannelControl>, BusError> {
        self.control.upgrade().ok_or(BusError::Closed)
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Subscriber")
            .field("queued_messages", &self.queued_messages())
            .field("dropped_messages", &self.dropped_messages())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SubscriberHandle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SubscriberHandle").field("closed", &(self.control.strong_count() == 0)).finish()
    }
}

fn channel_set<'a>(channels: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
    channels.into_iter().map(str::to_owned).collect()
}
