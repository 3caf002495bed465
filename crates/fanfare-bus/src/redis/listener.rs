//! The task behind one Redis subscriber: it owns the pub/sub connection, applies channel
//! changes, forwards messages to the subscriber's queue, and survives connection loss.
//!
//! The task keeps the set of channels the subscriber *wants*; that set, not the state of any
//! one connection, is the truth. When the connection is lost (in redis 1.x the message stream
//! simply ends; a failed command or `PING` counts too) the task reports
//! `Gap { Disconnected }`, retries with jittered exponential backoff while still accepting
//! channel changes, subscribes a new connection to every wanted channel, then reports
//! `Resumed`. Dropping the subscriber aborts the task, which closes the connection.
//!
//! The wanted set and the queue hold channel names as callers know them; the namespace is
//! added to each `SUBSCRIBE`/`UNSUBSCRIBE` argument and removed from each received message.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{PubSubSink, PubSubStream};
use ::redis::{Client, Msg, RedisError, Value};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;

use super::{ChannelNamespace, RedisBusConfig};
use crate::GapReason;
use crate::error::{BusError, is_transient, timeout_error};
use crate::queue::EventQueue;
use crate::subscriber::{ChannelControl, Subscriber};

/// Channel changes waiting for the task; callers wait beyond that.
const COMMAND_BUFFER: usize = 64;
/// Channels per `SUBSCRIBE` command when resubscribing many at once.
const SUBSCRIBE_BATCH: usize = 256;

/// Opens the subscriber's first connection and starts its task.
///
/// Fails with [`BusError::Unavailable`] if Redis cannot be reached now; after this first
/// connection, the task reconnects by itself for as long as the subscriber lives.
pub(super) async fn start(
    client: Client,
    config: Arc<RedisBusConfig>,
    namespace: ChannelNamespace,
) -> Result<Subscriber, BusError> {
    let connection = open_connection(&client, &config).await.map_err(BusError::from_redis)?;
    let events = Arc::new(EventQueue::new(config.queue_capacity));
    let (command_sender, command_receiver) = mpsc::channel(COMMAND_BUFFER);
    let listener = Listener {
        client,
        config,
        namespace,
        commands: command_receiver,
        events: Arc::clone(&events),
        wanted: HashSet::new(),
    };
    let task = tokio::spawn(listener.run(connection).instrument(tracing::info_span!("update_bus_listener")));
    let control = RedisSubscription { commands: command_sender, task };
    Ok(Subscriber::new(Arc::new(control), events))
}

/// The subscriber's side: sends channel changes to the task, aborts it when dropped.
struct RedisSubscription {
    commands: mpsc::Sender<ChannelCommand>,
    task: JoinHandle<()>,
}

/// A change of the wanted channels, answered once applied.
struct ChannelCommand {
    change: ChannelChange,
    channels: HashSet<String>,
    reply: oneshot::Sender<Result<(), BusError>>,
}

#[derive(Debug, Clone, Copy)]
enum ChannelChange {
    Subscribe,
    Unsubscribe,
}

impl RedisSubscription {
    async fn send(&self, change: ChannelChange, channels: HashSet<String>) -> Result<(), BusError> {
        let (reply, answer) = oneshot::channel();
        let command = ChannelCommand { change, channels, reply };
        self.commands.send(command).await.map_err(|_| BusError::Closed)?;
        answer.await.map_err(|_| BusError::Closed)?
    }
}

#[async_trait]
impl ChannelControl for RedisSubscription {
    async fn subscribe(&self, channels: HashSet<String>) -> Result<(), BusError> {
        self.send(ChannelChange::Subscribe, channels).await
    }

    async fn unsubscribe(&self, channels: HashSet<String>) -> Result<(), BusError> {
        self.send(ChannelChange::Unsubscribe, channels).await
    }
}

impl Drop for RedisSubscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One pub/sub connection: commands go through the sink, messages come out of the stream.
struct LiveConnection {
    sink: PubSubSink,
    messages: PubSubStream,
}

/// Why serving a connection stopped.
enum Interruption {
    SubscriberDropped,
    ConnectionLost(RedisError),
}

/// The state the task owns.
struct Listener {
    client: Client,
    config: Arc<RedisBusConfig>,
    /// Applied to channel names on their way to Redis and removed on their way back.
    namespace: ChannelNamespace,
    commands: mpsc::Receiver<ChannelCommand>,
    events: Arc<EventQueue>,
    /// Every channel the subscriber holds, whether or not the connection is up.
    wanted: HashSet<String>,
}

impl Listener {
    async fn run(mut self, first_connection: LiveConnection) {
        let mut connection = first_connection;
        loop {
            let cause = match self.serve(&mut connection).await {
                Interruption::SubscriberDropped => return,
                Interruption::ConnectionLost(cause) => cause,
            };
            tracing::warn!(
                error = %cause,
                channels = self.wanted.len(),
                "update bus subscription lost; reconnecting"
            );
            self.events.push_gap(GapReason::Disconnected);
            connection = match self.reconnect().await {
                Some(new_connection) => new_connection,
                None => return,
            };
            self.events.push_resumed();
            tracing::info!(channels = self.wanted.len(), "update bus subscription resumed");
        }
    }

    /// Forwards messages and applies channel changes until the connection is lost.
    async fn serve(&mut self, connection: &mut LiveConnection) -> Interruption {
        let ping_interval = self.config.ping_interval;
        let mut heartbeat = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = connection.messages.next() => match message {
                    Some(message) => self.forward(&message),
                    // redis 1.x ends the stream, with no error, when the connection drops.
                    None => return Interruption::ConnectionLost(connection_closed_error()),
                },
                command = self.commands.recv() => match command {
                    Some(command) => {
                        if let Err(cause) = self.apply_live(&mut connection.sink, command).await {
                            return Interruption::ConnectionLost(cause);
                        }
                    }
                    None => return Interruption::SubscriberDropped,
                },
                _ = heartbeat.tick() => {
                    let ping = connection.sink.ping::<Value>();
                    if let Err(cause) = self.within_response_timeout("ping", ping).await {
                        return Interruption::ConnectionLost(cause);
                    }
                }
            }
        }
    }

    fn forward(&self, message: &Msg) {
        // Only names in the namespace were subscribed, so no other name is expected here.
        let Some(channel) = self.namespace.channel_name(message.get_channel_name()) else {
            return;
        };
        // A message already on its way when its channel was unsubscribed is not wanted.
        if !self.wanted.contains(channel) {
            return;
        }
        let payload = Bytes::copy_from_slice(message.get_payload_bytes());
        self.events.push_message(channel, payload);
    }

    /// Applies a channel change on a live connection. An error means the connection is in
    /// doubt and must be replaced; the caller was answered already.
    async fn apply_live(&mut self, sink: &mut PubSubSink, command: ChannelCommand) -> Result<(), RedisError> {
        match command.change {
            ChannelChange::Subscribe => {
                let added: Vec<String> =
                    command.channels.into_iter().filter(|channel| !self.wanted.contains(channel)).collect();
                self.wanted.extend(added.iter().cloned());
                match self.subscribe_in_batches(sink, &added).await {
                    Ok(()) => {
                        let _ = command.reply.send(Ok(()));
                        Ok(())
                    }
                    Err(cause) if !is_transient(&cause) => {
                        for channel in &added {
                            self.wanted.remove(channel);
                        }
                        let _ = command.reply.send(Err(BusError::Refused(cause)));
                        Ok(())
                    }
                    Err(cause) => {
                        // The channels stay wanted: they go live with the others after the
                        // gap this failure is about to report.
                        let _ = command.reply.send(Ok(()));
                        Err(cause)
                    }
                }
            }
            ChannelChange::Unsubscribe => {
                let removed = self.forget(command.channels);
                let _ = command.reply.send(Ok(()));
                if removed.is_empty() {
                    return Ok(());
                }
                let removed: Vec<String> = removed.iter().map(|channel| self.namespace.redis_name(channel)).collect();
                match self.within_response_timeout("unsubscribe", sink.unsubscribe(&removed)).await {
                    Err(cause) if is_transient(&cause) => Err(cause),
                    Err(cause) => {
                        // Messages of these channels are filtered out anyway.
                        tracing::warn!(error = %cause, "redis refused an unsubscribe");
                        Ok(())
                    }
                    Ok(()) => Ok(()),
                }
            }
        }
    }

    /// Applies a channel change while disconnected: only the wanted set changes.
    fn apply_offline(&mut self, command: ChannelCommand) {
        match command.change {
            ChannelChange::Subscribe => self.wanted.extend(command.channels),
            ChannelChange::Unsubscribe => {
                self.forget(command.channels);
            }
        }
        let _ = command.reply.send(Ok(()));
    }

    /// Removes channels from the wanted set and their queued messages from the queue;
    /// returns those that were wanted.
    fn forget(&mut self, channels: HashSet<String>) -> HashSet<String> {
        let removed: HashSet<String> = channels.into_iter().filter(|channel| self.wanted.remove(channel)).collect();
        self.events.discard_channels(&removed);
        removed
    }

    /// Retries until a new connection is subscribed to every wanted channel; `None` if the
    /// subscriber was dropped meanwhile.
    async fn reconnect(&mut self) -> Option<LiveConnection> {
        let mut backoff = Backoff::new(self.config.reconnect_min_delay, self.config.reconnect_max_delay);
        let mut attempt: u64 = 0;
        loop {
            attempt += 1;
            if !self.wait_offline(backoff.next_delay()).await {
                return None;
            }
            match self.open_and_resubscribe().await {
                Ok(connection) => return Some(connection),
                Err(cause) => {
                    tracing::debug!(error = %cause, attempt, "update bus reconnect attempt failed");
                }
            }
        }
    }

    /// Waits `delay`, applying channel changes meanwhile; `false` if the subscriber was
    /// dropped.
    async fn wait_offline(&mut self, delay: Duration) -> bool {
        let deadline = tokio::time::sleep(delay);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return true,
                command = self.commands.recv() => match command {
                    Some(command) => self.apply_offline(command),
                    None => return false,
                },
            }
        }
    }

    async fn open_and_resubscribe(&self) -> Result<LiveConnection, RedisError> {
        let mut connection = open_connection(&self.client, &self.config).await?;
        let channels: Vec<String> = self.wanted.iter().cloned().collect();
        self.subscribe_in_batches(&mut connection.sink, &channels).await?;
        Ok(connection)
    }

    async fn subscribe_in_batches(&self, sink: &mut PubSubSink, channels: &[String]) -> Result<(), RedisError> {
        for batch in channels.chunks(SUBSCRIBE_BATCH) {
            let redis_names: Vec<String> = batch.iter().map(|channel| self.namespace.redis_name(channel)).collect();
            self.within_response_timeout("subscribe", sink.subscribe(&redis_names)).await?;
        }
        Ok(())
    }

    async fn within_response_timeout<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        let limit = self.config.response_timeout;
        match tokio::time::timeout(limit, request).await {
            Ok(result) => result,
            Err(_elapsed) => Err(timeout_error(what, limit)),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // However the task ends (dropped subscriber, abort, panic), the reader is not left
        // waiting forever.
        self.events.close();
    }
}

async fn open_connection(client: &Client, config: &RedisBusConfig) -> Result<LiveConnection, RedisError> {
    let limit = config.connection_timeout;
    let pubsub = match tokio::time::timeout(limit, client.get_async_pubsub()).await {
        Ok(result) => result?,
        Err(_elapsed) => return Err(timeout_error("connecting to redis", limit)),
    };
    let (sink, messages) = pubsub.split();
    Ok(LiveConnection { sink, messages })
}

fn connection_closed_error() -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the redis pub/sub connection closed"))
}

/// Exponential backoff with jitter: each delay lies between half and all of a base that
/// doubles from `min` up to `max`, so many pods do not reconnect in lockstep.
struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self { base: min, max: max.max(min) }
    }

    fn next_delay(&mut self) -> Duration {
        let half = self.base / 2;
        let delay = half + half.mul_f64(rand::random::<f64>());
        self.base = (self.base * 2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let delays: Vec<Duration> = (0..5).map(|_| backoff.next_delay()).collect();
        let ceilings = [100, 200, 400, 400, 400].map(Duration::from_millis);
        for (delay, ceiling) in delays.iter().zip(ceilings) {
            assert!(*delay >= ceiling / 2 && *delay <= ceiling, "{delay:?} vs {ceiling:?}");
        }
    }
}
