//! The Redis pub/sub bus, for production.
//!
//! Publishing goes through one shared [`ConnectionManager`] (a multiplexed connection that
//! reconnects by itself); every publish is bounded in time, and when Redis is down it fails
//! with [`BusError::Unavailable`] so the caller keeps the update in its outbox.
//!
//! Each [`Subscriber`] owns one dedicated RESP2 pub/sub connection
//! ([`Client::get_async_pubsub`], split into its command sink and its message stream),
//! driven by a background task ([`listener`]) that takes channel changes over a channel and
//! owns the connection. This mechanism was chosen over RESP3 push messages on a multiplexed
//! connection because it makes both duties of the bus explicit: `SUBSCRIBE`/`UNSUBSCRIBE`
//! return only once Redis confirmed them, and a dropped connection ends the message stream,
//! which the task turns into `Gap { Disconnected }`, a reconnect with backoff, a
//! resubscription to every wanted channel, then `Resumed`. (The connection manager's own
//! automatic resubscription would hide exactly the disconnect the subscriber must hear of.)
//! A periodic `PING` catches connections that die without closing.

mod listener;

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Value};
use async_trait::async_trait;
use bytes::Bytes;

use crate::error::BusError;
use crate::{Subscriber, UpdateBus};

/// Messages a Redis subscriber queues before it lags, unless configured otherwise.
pub const DEFAULT_REDIS_QUEUE_CAPACITY: usize = 4_096;
/// How long connecting to Redis may take, unless configured otherwise.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long Redis may take to answer one command, unless configured otherwise.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// First delay before a subscriber reconnects, unless configured otherwise.
pub const DEFAULT_RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between a subscriber's reconnect attempts, unless configured otherwise.
pub const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);
/// How often an idle subscriber connection is checked with `PING`, unless configured otherwise.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);

/// Where the Redis bus connects and how patient it is.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisBusConfig {
    /// A `redis://` or `rediss://` URL.
    pub url: String,
    /// Messages a subscriber queues before it drops them and reports a lag gap.
    pub queue_capacity: usize,
    /// How long one connection attempt may take.
    pub connection_timeout: Duration,
    /// How long Redis may take to answer one command.
    pub response_timeout: Duration,
    /// First delay before a lost subscriber connection is retried; it doubles per failure.
    pub reconnect_min_delay: Duration,
    /// Longest delay between reconnect attempts.
    pub reconnect_max_delay: Duration,
    /// How often a subscriber connection is checked with `PING`.
    pub ping_interval: Duration,
}

impl RedisBusConfig {
    /// The defaults, connecting to `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            queue_capacity: DEFAULT_REDIS_QUEUE_CAPACITY,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            reconnect_min_delay: DEFAULT_RECONNECT_MIN_DELAY,
            reconnect_max_delay: DEFAULT_RECONNECT_MAX_DELAY,
            ping_interval: DEFAULT_PING_INTERVAL,
        }
    }
}

/// The update bus over Redis pub/sub. Clones share the publishing connection.
#[derive(Clone)]
pub struct RedisBus {
    client: Client,
    publisher: ConnectionManager,
    config: Arc<RedisBusConfig>,
}

impl RedisBus {
    /// Opens the bus. The publishing connection is made on first use, so this succeeds while
    /// Redis is down (publishes then fail with [`BusError::Unavailable`] until it is back);
    /// it fails only on a configuration that cannot work.
    pub async fn open(config: RedisBusConfig) -> Result<Self, BusError> {
        let client = Client::open(config.url.as_str()).map_err(BusError::InvalidConfig)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout))
            // A publish waits for at most one retry; the outbox retries beyond that.
            .set_number_of_retries(1)
            .set_min_delay(config.reconnect_min_delay)
            .set_max_delay(config.reconnect_max_delay);
        let publisher =
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config).map_err(BusError::InvalidConfig)?;
        Ok(Self { client, publisher, config: Arc::new(config) })
    }

    /// The configuration the bus was opened with.
    pub fn config(&self) -> &RedisBusConfig {
        &self.config
    }

    /// Runs one command on the publishing connection, within a bounded time.
    async fn run_command(&self, what: &str, command: &::redis::Cmd) -> Result<Value, BusError> {
        // A command may wait for a reconnect (connection timeout, then one retry) before
        // its own response timeout starts; beyond that, the caller is better off retrying.
        let limit = self.config.connection_timeout * 2 + self.config.response_timeout;
        let mut connection = self.publisher.clone();
        match tokio::time::timeout(limit, command.query_async::<Value>(&mut connection)).await {
            Ok(result) => result.map_err(BusError::from_redis),
            Err(_elapsed) => Err(BusError::timed_out(what, limit)),
        }
    }
}

#[async_trait]
impl UpdateBus for RedisBus {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError> {
        let mut command = ::redis::cmd("PUBLISH");
        command.arg(channel).arg(payload.as_ref());
        self.run_command("publish", &command).await.map(|_receivers| ())
    }

    async fn subscriber(&self) -> Result<Subscriber, BusError> {
        listener::start(self.client.clone(), Arc::clone(&self.config)).await
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.run_command("ping", &::redis::cmd("PING")).await.map(|_pong| ())
    }
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("RedisBus").field("config", &self.config).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RedisBusConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisBusConfig")
            .field("url", &redact_credentials(&self.url))
            .field("queue_capacity", &self.queue_capacity)
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("reconnect_min_delay", &self.reconnect_min_delay)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("ping_interval", &self.ping_interval)
            .finish()
    }
}

/// The URL with any `user:password@` part masked, for logs.
fn redact_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((_credentials, address)) => format!("{scheme}://***@{address}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_redis_password() {
        let config = RedisBusConfig::new("redis://default:hunter2@cache:6379/0");
        let printed = format!("{config:?}");
        assert!(printed.contains("redis://***@cache:6379/0"), "{printed}");
        assert!(!printed.contains("hunter2"));
        assert_eq!(redact_credentials("redis://cache:6379"), "redis://cache:6379");
    }
}
