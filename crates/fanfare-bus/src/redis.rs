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
//!
//! A deployment's [namespace](RedisBusConfig::namespace) is applied only where channel names
//! meet Redis (`PUBLISH` here, `SUBSCRIBE`/`UNSUBSCRIBE` and received messages in
//! [`listener`]), so everything else, callers included, works on the channel names they chose.

mod listener;

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ErrorKind, RedisError, Value};
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
/// The longest [namespace](RedisBusConfig::namespace) a bus accepts.
pub const MAX_NAMESPACE_LEN: usize = 64;

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
    /// Prefix of every channel on Redis, so several deployments (or test runs) can share one
    /// server: channel `c` is `{namespace}:c` on the wire. Empty (the default) for none.
    /// Callers never see it: they publish and subscribe to `c`, and receive messages of `c`.
    /// Only ASCII letters, digits, `_`, `.` and `-`, at most [`MAX_NAMESPACE_LEN`] of them.
    pub namespace: String,
    /// PEM CA certificates that sign the server's certificate, for a `rediss://` URL; `None`
    /// for the system's trusted roots. Ignored for `redis://`.
    pub root_ca_pem: Option<Vec<u8>>,
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
            namespace: String::new(),
            root_ca_pem: None,
        }
    }
}

/// A client of the Redis at `url`: over TLS for a `rediss://` URL, checking the server's
/// certificate against `root_ca_pem` (PEM CA certificates) or, without it, the system's
/// trusted roots. Connects nowhere yet.
pub fn redis_client(url: &str, root_ca_pem: Option<&[u8]>) -> Result<Client, RedisError> {
    match root_ca_pem {
        Some(root_cert) if url.starts_with("rediss://") => {
            let certificates = ::redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert.to_vec()) };
            Client::build_with_tls(url, certificates)
        }
        _ => Client::open(url),
    }
}

/// The prefix a namespace puts before every channel name on Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ChannelNamespace {
    /// `{namespace}:`, or empty without a namespace.
    prefix: String,
}

impl ChannelNamespace {
    /// The namespace `namespace` names, if it is a valid one.
    fn new(namespace: &str) -> Result<Self, String> {
        if namespace.is_empty() {
            return Ok(Self::default());
        }
        if namespace.len() > MAX_NAMESPACE_LEN {
            return Err(format!("the namespace is longer than {MAX_NAMESPACE_LEN} characters"));
        }
        // Without `:` in the namespace, the prefix ends exactly at its first `:`.
        let allowed = |character: char| character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | '-');
        if let Some(refused) = namespace.chars().find(|character| !allowed(*character)) {
            return Err(format!("the namespace may hold only A-Z, a-z, 0-9, `_`, `.` and `-`, not {refused:?}"));
        }
        Ok(Self { prefix: format!("{namespace}:") })
    }

    /// The name `channel` has on Redis.
    fn redis_name(&self, channel: &str) -> String {
        format!("{}{channel}", self.prefix)
    }

    /// The channel a name on Redis stands for; `None` for a name outside this namespace.
    fn channel_name<'a>(&self, redis_name: &'a str) -> Option<&'a str> {
        redis_name.strip_prefix(self.prefix.as_str())
    }
}

/// The update bus over Redis pub/sub. Clones share the publishing connection.
#[derive(Clone)]
pub struct RedisBus {
    client: Client,
    publisher: ConnectionManager,
    config: Arc<RedisBusConfig>,
    namespace: ChannelNamespace,
}

impl RedisBus {
    /// Opens the bus. The publishing connection is made on first use, so this succeeds while
    /// Redis is down (publishes then fail with [`BusError::Unavailable`] until it is back);
    /// it fails only on a configuration that cannot work (an invalid URL or namespace).
    pub async fn open(config: RedisBusConfig) -> Result<Self, BusError> {
        let namespace = ChannelNamespace::new(&config.namespace).map_err(|reason| {
            BusError::InvalidConfig(RedisError::from((ErrorKind::InvalidClientConfig, "invalid namespace", reason)))
        })?;
        let client = redis_client(&config.url, config.root_ca_pem.as_deref()).map_err(BusError::InvalidConfig)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout))
            // A publish waits for at most one retry; the outbox retries beyond that.
            .set_number_of_retries(1)
            .set_min_delay(config.reconnect_min_delay)
            .set_max_delay(config.reconnect_max_delay);
        let publisher =
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config).map_err(BusError::InvalidConfig)?;
        Ok(Self { client, publisher, config: Arc::new(config), namespace })
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
    fn shared_limits(&self) -> Option<Arc<dyn fanfare_core::rate_limit::SharedLimits>> {
        Some(Arc::new(crate::limits::RedisLimits::new(self.publisher.clone(), self.namespace.redis_name(""))))
    }

    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError> {
        let mut command = ::redis::cmd("PUBLISH");
        command.arg(self.namespace.redis_name(channel)).arg(payload.as_ref());
        self.run_command("publish", &command).await.map(|_receivers| ())
    }

    async fn publish_all(&self, messages: &[(String, Bytes)]) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipeline = ::redis::pipe();
        for (channel, payload) in messages {
            pipeline.cmd("PUBLISH").arg(self.namespace.redis_name(channel)).arg(payload.as_ref()).ignore();
        }
        // The whole pipeline gets the time of one command: it is one write and one read.
        let limit = self.config.connection_timeout * 2 + self.config.response_timeout;
        let mut connection = self.publisher.clone();
        match tokio::time::timeout(limit, pipeline.query_async::<()>(&mut connection)).await {
            Ok(result) => result.map_err(BusError::from_redis),
            Err(_elapsed) => Err(BusError::timed_out("publish", limit)),
        }
    }

    async fn subscriber(&self) -> Result<Subscriber, BusError> {
        listener::start(self.client.clone(), Arc::clone(&self.config), self.namespace.clone()).await
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
            .field("namespace", &self.namespace)
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

    #[test]
    fn a_namespace_prefixes_channel_names_on_redis_and_only_its_own_names_map_back() {
        let namespace = ChannelNamespace::new("staging").expect("a valid namespace");
        assert_eq!(namespace.redis_name("fanfare:group:1"), "staging:fanfare:group:1");
        assert_eq!(namespace.channel_name("staging:fanfare:group:1"), Some("fanfare:group:1"));
        assert_eq!(namespace.channel_name("fanfare:group:1"), None);
        assert_eq!(namespace.channel_name("staging-2:fanfare:group:1"), None);

        let none = ChannelNamespace::new("").expect("no namespace");
        assert_eq!(none.redis_name("fanfare:group:1"), "fanfare:group:1");
        assert_eq!(none.channel_name("fanfare:group:1"), Some("fanfare:group:1"));
    }

    #[test]
    fn a_namespace_is_short_and_made_of_safe_characters() {
        assert!(ChannelNamespace::new("test-fanfare_test_0a.B").is_ok());
        assert!(ChannelNamespace::new(&"n".repeat(MAX_NAMESPACE_LEN)).is_ok());
        assert!(ChannelNamespace::new(&"n".repeat(MAX_NAMESPACE_LEN + 1)).is_err());
        for refused in ["a:b", "a b", "a*", "é", "a/b"] {
            assert!(ChannelNamespace::new(refused).is_err(), "{refused:?}");
        }
    }
}
