//! The update bus: services publish each committed update of a group to that group's channel,
//! and fanout pods subscribe to the channels of the groups that have local listeners.
//!
//! Delivery is fire-and-forget; the per-group update log is what keeps the delivery promise.
//! The bus's one duty beyond carrying bytes is to *say* when it may have lost some: a
//! [`BusEvent::Gap`] tells the subscriber to repair every channel it holds from the log.
//!
//! Two implementations sit behind [`UpdateBus`]: [`RedisBus`] (Redis pub/sub, production) and
//! [`MemoryBus`] (in process, for `fanfare dev` and fast tests). The `testing` feature exposes
//! the conformance suite both of them pass.

mod error;
mod limits;
mod memory;
mod probe;
mod queue;
mod redis;
mod subscriber;

#[cfg(feature = "testing")]
pub mod conformance;

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use fanfare_core::config::DependencyConfig;

pub use crate::error::BusError;
pub use crate::limits::RedisLimits;
pub use crate::memory::{DEFAULT_MEMORY_QUEUE_CAPACITY, MemoryBus};
pub use crate::probe::BusProbe;
pub use crate::redis::{
    DEFAULT_CONNECTION_TIMEOUT, DEFAULT_PING_INTERVAL, DEFAULT_RECONNECT_MAX_DELAY, DEFAULT_RECONNECT_MIN_DELAY,
    DEFAULT_REDIS_QUEUE_CAPACITY, DEFAULT_RESPONSE_TIMEOUT, MAX_NAMESPACE_LEN, RedisBus, RedisBusConfig, redis_client,
};
pub use crate::subscriber::{Subscriber, SubscriberHandle};

/// Prefix of every group channel; [`group_channel`] and [`group_id_from_channel`] are the only
/// places that build or read it.
const GROUP_CHANNEL_PREFIX: &str = "fanfare:group:";
/// Prefix of every user channel; [`user_channel`] and [`user_id_from_channel`] are the only
/// places that build or read it.
const USER_CHANNEL_PREFIX: &str = "fanfare:user:";

/// The channel a group's updates are published to, e.g. `fanfare:group:42`.
pub fn group_channel(group_id: i64) -> String {
    format!("{GROUP_CHANNEL_PREFIX}{group_id}")
}

/// The group a channel built by [`group_channel`] belongs to, or `None` for any other channel.
pub fn group_id_from_channel(channel: &str) -> Option<i64> {
    channel.strip_prefix(GROUP_CHANNEL_PREFIX)?.parse().ok()
}

/// The channel of updates addressed to one user rather than to a group, e.g.
/// `fanfare:user:7`: the messages service publishes there the update that makes the user a
/// member, so a stream of that user can start carrying the group at once.
pub fn user_channel(user_id: i64) -> String {
    format!("{USER_CHANNEL_PREFIX}{user_id}")
}

/// The user a channel built by [`user_channel`] belongs to, or `None` for any other channel.
pub fn user_id_from_channel(channel: &str) -> Option<i64> {
    channel.strip_prefix(USER_CHANNEL_PREFIX)?.parse().ok()
}

/// Publishes payloads to channels and hands out subscribers.
///
/// Payloads are opaque bytes (encoded protobuf). Delivery is at most once and may silently
/// fail between publish and subscriber; subscribers are told through [`BusEvent::Gap`]
/// whenever that may have happened on their side.
#[async_trait]
pub trait UpdateBus: Send + Sync + 'static {
    /// Publishes `payload` to every current subscriber of `channel`.
    ///
    /// An error means the payload was not published: the caller keeps the update (in its
    /// outbox) and retries. [`BusError::Unavailable`] is what a Redis outage returns.
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError>;

    /// Publishes each `(channel, payload)` in order, as [`UpdateBus::publish`] would one
    /// after another, but in as few round trips as the bus allows (Redis: one pipeline).
    /// An error means some may have been published and the rest not: the caller keeps them
    /// all and publishes them again (subscribers recognise a repeat).
    async fn publish_all(&self, messages: &[(String, Bytes)]) -> Result<(), BusError> {
        for (channel, payload) in messages {
            self.publish(channel, payload.clone()).await?;
        }
        Ok(())
    }

    /// Opens a subscriber, subscribed to no channel yet.
    ///
    /// A pod is meant to hold one for its lifetime and add and remove channels on it.
    async fn subscriber(&self) -> Result<Subscriber, BusError>;

    /// Checks that the bus can publish right now, for health reporting.
    async fn ping(&self) -> Result<(), BusError>;

    /// Rate limits counted for every pod on the bus's server, if it can keep them (Redis
    /// can; an in-process bus has only one pod, whose own count is the limit).
    fn shared_limits(&self) -> Option<std::sync::Arc<dyn fanfare_core::rate_limit::SharedLimits>> {
        None
    }
}

/// What a [`Subscriber`] receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A payload published to a channel this subscriber is subscribed to.
    Message {
        /// The channel it was published to.
        channel: String,
        /// The payload, as published.
        payload: Bytes,
    },
    /// Messages may have been lost (the connection dropped, or this subscriber fell behind):
    /// every subscribed channel must be repaired from the log.
    ///
    /// After a [`GapReason::Disconnected`] gap, live delivery is suspended until
    /// [`BusEvent::Resumed`]; repair after that event so nothing slips between the repair and
    /// the resubscription. A [`GapReason::Lagged`] gap is not followed by `Resumed`: the
    /// subscription never stopped, so repair at once.
    Gap {
        /// Why messages may have been lost.
        reason: GapReason,
    },
    /// The subscription is live again after a [`GapReason::Disconnected`] gap: every channel
    /// currently subscribed has been resubscribed.
    Resumed,
}

/// Why a [`BusEvent::Gap`] was reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapReason {
    /// The connection to the bus was lost; messages published until [`BusEvent::Resumed`]
    /// are not delivered.
    Disconnected,
    /// This subscriber's queue was full and messages were dropped rather than stall the bus.
    Lagged,
}

/// Opens the bus a deployment names: Redis at `redis_url`, its channels in `namespace` (see
/// [`RedisBusConfig::namespace`]; empty for none), or a fresh in-process bus when the URL is
/// unset (one process only: `fanfare dev` shares one between its services), which needs no
/// namespace and ignores it.
pub async fn open_bus(redis_url: Option<&str>, namespace: &str) -> Result<std::sync::Arc<dyn UpdateBus>, BusError> {
    match redis_url {
        Some(url) => {
            let config = RedisBusConfig { namespace: namespace.to_owned(), ..RedisBusConfig::new(url) };
            Ok(std::sync::Arc::new(RedisBus::open(config).await?))
        }
        None => Ok(std::sync::Arc::new(MemoryBus::new())),
    }
}

/// Opens the bus a service's configuration names: [`open_bus`] with `REDIS_URL` and
/// `FANFARE_REDIS_NAMESPACE`, trusting the CA certificates of `FANFARE_REDIS_CA_FILE` for a
/// `rediss://` URL.
pub async fn open_configured_bus(dependencies: &DependencyConfig) -> anyhow::Result<std::sync::Arc<dyn UpdateBus>> {
    let Some(url) = &dependencies.redis_url else {
        return Ok(std::sync::Arc::new(MemoryBus::new()));
    };
    let root_ca_pem = dependencies
        .redis_ca_file
        .as_ref()
        .map(|path| std::fs::read(path).with_context(|| format!("reading FANFARE_REDIS_CA_FILE {}", path.display())))
        .transpose()?;
    let config =
        RedisBusConfig { namespace: dependencies.redis_namespace.clone(), root_ca_pem, ..RedisBusConfig::new(url) };
    Ok(std::sync::Arc::new(RedisBus::open(config).await.context("opening the Redis bus")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_channels_round_trip_and_other_channels_are_not_groups() {
        assert_eq!(group_channel(42), "fanfare:group:42");
        assert_eq!(group_id_from_channel(&group_channel(42)), Some(42));
        assert_eq!(group_id_from_channel("fanfare:group:"), None);
        assert_eq!(group_id_from_channel("fanfare:group:4x"), None);
        assert_eq!(group_id_from_channel("other:42"), None);
    }

    #[test]
    fn user_channels_round_trip_and_group_channels_are_not_users() {
        assert_eq!(user_channel(7), "fanfare:user:7");
        assert_eq!(user_id_from_channel(&user_channel(7)), Some(7));
        assert_eq!(user_id_from_channel("fanfare:user:"), None);
        assert_eq!(user_id_from_channel("fanfare:user:7x"), None);
        assert_eq!(user_id_from_channel(&group_channel(7)), None);
        assert_eq!(group_id_from_channel(&user_channel(7)), None);
    }
}
