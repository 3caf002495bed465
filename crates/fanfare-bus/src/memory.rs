//! The in-process bus, for `fanfare dev` and fast tests: a routing table from channel to the
//! queues of its subscribers, filled synchronously by `publish`.
//!
//! A publish pushes into each subscriber's bounded queue without waiting; a full queue drops
//! the message and reports a lag gap there, so a stuck subscriber never slows the others.
//! It never disconnects, so it never reports `Gap { Disconnected }` or `Resumed`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;

use crate::queue::EventQueue;
use crate::subscriber::ChannelControl;
use crate::{BusError, Subscriber, UpdateBus};

/// Messages a [`MemoryBus`] subscriber queues before it lags, unless configured otherwise.
pub const DEFAULT_MEMORY_QUEUE_CAPACITY: usize = 4_096;

/// An update bus living in this process. Clones share the same channels.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    shared: Arc<SharedRoutes>,
}

/// Which subscriber queues each channel reaches.
#[derive(Debug)]
struct SharedRoutes {
    routes: Mutex<RouteTable>,
    next_subscriber_id: AtomicU64,
    queue_capacity: usize,
}

type SubscriberId = u64;

/// Channel to the queues of the subscribers holding it; channels with none are removed.
type RouteTable = HashMap<String, HashMap<SubscriberId, Arc<EventQueue>>>;

impl MemoryBus {
    /// A bus whose subscribers queue [`DEFAULT_MEMORY_QUEUE_CAPACITY`] messages.
    pub fn new() -> Self {
        Self::with_queue_capacity(DEFAULT_MEMORY_QUEUE_CAPACITY)
    }

    /// A bus whose subscribers queue at most `queue_capacity` messages before lagging.
    pub fn with_queue_capacity(queue_capacity: usize) -> Self {
        Self {
            shared: Arc::new(SharedRoutes {
                routes: Mutex::default(),
                next_subscriber_id: AtomicU64::new(1),
                queue_capacity,
            }),
        }
    }

    /// How many channels have at least one subscriber (for tests and debugging).
    pub fn subscribed_channel_count(&self) -> usize {
        self.shared.lock_routes().len()
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl UpdateBus for MemoryBus {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError> {
        // Pushing under the routing lock means a concurrent unsubscribe either sees this
        // message queued (and discards it) or keeps it from being queued at all.
        let routes = self.shared.lock_routes();
        if let Some(subscribers) = routes.get(channel) {
            for queue in subscribers.values() {
                queue.push_message(channel, payload.clone());
            }
        }
        Ok(())
    }

    async fn publish_all(&self, messages: &[(String, Bytes)]) -> Result<(), BusError> {
        // One lock for the batch: nothing published concurrently lands in between.
        let routes = self.shared.lock_routes();
        for (channel, payload) in messages {
            if let Some(subscribers) = routes.get(channel.as_str()) {
                for queue in subscribers.values() {
                    queue.push_message(channel, payload.clone());
                }
            }
        }
        Ok(())
    }

    async fn subscriber(&self) -> Result<Subscriber, BusError> {
        let events = Arc::new(EventQueue::new(self.shared.queue_capacity));
        let control = MemorySubscription {
            shared: Arc::clone(&self.shared),
            id: self.shared.next_subscriber_id.fetch_add(1, Ordering::Relaxed),
            events: Arc::clone(&events),
            channels: Mutex::default(),
        };
        Ok(Subscriber::new(Arc::new(control), events))
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

impl SharedRoutes {
    fn lock_routes(&self) -> MutexGuard<'_, RouteTable> {
        // Every critical section leaves the table consistent, so a poisoned lock is usable.
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One subscriber's entries in the routing table, removed when it is dropped.
struct MemorySubscription {
    shared: Arc<SharedRoutes>,
    id: SubscriberId,
    events: Arc<EventQueue>,
    /// The channels this subscriber holds; only changed under the routing lock.
    channels: Mutex<HashSet<String>>,
}

impl MemorySubscription {
    fn lock_channels(&self) -> MutexGuard<'_, HashSet<String>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl ChannelControl for MemorySubscription {
    async fn subscribe(&self, channels: HashSet<String>) -> Result<(), BusError> {
        let mut routes = self.shared.lock_routes();
        let mut held = self.lock_channels();
        for channel in channels {
            routes.entry(channel.clone()).or_default().insert(self.id, Arc::clone(&self.events));
            held.insert(channel);
        }
        Ok(())
    }

    async fn unsubscribe(&self, channels: HashSet<String>) -> Result<(), BusError> {
        let mut routes = self.shared.lock_routes();
        let mut held = self.lock_channels();
        for channel in &channels {
            held.remove(channel);
            remove_route(&mut routes, channel, self.id);
        }
        self.events.discard_channels(&channels);
        Ok(())
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        let mut routes = self.shared.lock_routes();
        let held = std::mem::take(&mut *self.lock_channels());
        for channel in &held {
            remove_route(&mut routes, channel, self.id);
        }
    }
}

fn remove_route(routes: &mut RouteTable, channel: &str, subscriber: SubscriberId) {
    if let Some(subscribers) = routes.get_mut(channel) {
        subscribers.remove(&subscriber);
        if subscribers.is_empty() {
            routes.remove(channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn routes_are_removed_with_the_last_subscriber_of_a_channel() -> Result<(), BusError> {
        let bus = MemoryBus::new();
        let first = bus.subscriber().await?;
        let second = bus.subscriber().await?;
        first.subscribe_many(["a", "b"]).await?;
        second.subscribe("a").await?;
        assert_eq!(bus.subscribed_channel_count(), 2);

        first.unsubscribe("b").await?;
        assert_eq!(bus.subscribed_channel_count(), 1);
        drop(first);
        assert_eq!(bus.subscribed_channel_count(), 1);
        drop(second);
        assert_eq!(bus.subscribed_channel_count(), 0);
        Ok(())
    }
}
