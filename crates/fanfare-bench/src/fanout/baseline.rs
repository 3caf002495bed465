//! The baselines' client side, recording on the same [`Board`] as Fanfare's streams:
//!
//! - raw Redis pub/sub: N subscriber connections on one channel, each decoding every
//!   update; the publisher PUBLISHes the encoded update (the bytes the messages
//!   committer's publisher would publish);
//! - the minimal tonic server ([`super::minimal`]): N streams over shared connections, the
//!   publisher calls its `Publish`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use fanfare_proto::common::v1::Update;
use futures::{StreamExt as _, TryStreamExt as _};
use prost::Message as _;
use redis::AsyncCommands as _;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::fanfare::{channel_for, spread_connections};
use super::load::Publisher;
use super::minimal::pb::minimal_stream_client::MinimalStreamClient;
use super::minimal::pb::{PublishRequest, SubscribeRequest};
use super::payload::{baseline_update, now_micros};
use super::tally::{Board, StreamTally};

/// Connections (or streams) opened at once.
const OPEN_CONCURRENCY: usize = 64;
/// The user the baselines' messages claim to be from (nobody's stream).
const BASELINE_SENDER: i64 = 1;

/// Open baseline receivers.
pub(super) struct Receivers {
    readers: Vec<JoinHandle<()>>,
    /// How long opening them took.
    pub took: Duration,
}

impl Receivers {
    /// Closes every receiver.
    pub(super) fn close(self) {
        for reader in self.readers {
            reader.abort();
        }
    }
}

/// `count` Redis connections subscribed to `channel`, each recording on `board`.
pub(super) async fn subscribe_redis(
    client: &redis::Client,
    channel: &str,
    count: usize,
    board: &Arc<Board>,
) -> anyhow::Result<Receivers> {
    let started = Instant::now();
    let readers = futures::stream::iter(0..count)
        .map(|_| {
            let board = Arc::clone(board);
            async move {
                let mut pubsub = client.get_async_pubsub().await.context("opening a Redis subscriber connection")?;
                pubsub.subscribe(channel).await.context("subscribing")?;
                let messages = pubsub.into_on_message();
                let tally = board.receiver(0);
                anyhow::Ok(tokio::spawn(read_redis(messages, tally, board)))
            }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let mut connection = client.get_multiplexed_async_connection().await.context("connecting to Redis")?;
    let (_, subscribers): (String, usize) =
        redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut connection).await.context("PUBSUB NUMSUB")?;
    anyhow::ensure!(subscribers == count, "Redis counts {subscribers} subscribers of {channel}, not {count}");
    Ok(Receivers { readers, took: started.elapsed() })
}

async fn read_redis(mut messages: redis::aio::PubSubStream, tally: Arc<Mutex<StreamTally>>, board: Arc<Board>) {
    while let Some(message) = messages.next().await {
        let received_us = now_micros();
        let payload = message.get_payload_bytes();
        if let Ok(update) = Update::decode(payload) {
            lock(&tally).record(&board, &update, payload.len(), received_us);
        }
    }
    lock(&tally).ended();
}

fn lock(tally: &Mutex<StreamTally>) -> std::sync::MutexGuard<'_, StreamTally> {
    tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// PUBLISHes encoded updates to one channel, numbering them in publish order.
pub(super) struct RedisPublisher {
    connection: tokio::sync::Mutex<(redis::aio::MultiplexedConnection, i64)>,
    channel: String,
}

impl RedisPublisher {
    /// A publisher to `channel`.
    pub(super) async fn connect(client: &redis::Client, channel: &str) -> anyhow::Result<Self> {
        let connection = client.get_multiplexed_async_connection().await.context("connecting the publisher")?;
        Ok(Self { connection: tokio::sync::Mutex::new((connection, 0)), channel: channel.to_owned() })
    }
}

#[async_trait]
impl Publisher for RedisPublisher {
    async fn publish(&self, _sender: u32, seq: u64, text: String) -> anyhow::Result<()> {
        let mut update = baseline_update(BASELINE_SENDER, seq, text);
        // One publish at a time, so event_seq order is publish order (as a commit lane's publisher does).
        let mut guard = self.connection.lock().await;
        let (connection, last) = &mut *guard;
        update.event_seq = *last + 1;
        let _: usize = connection.publish(&self.channel, update.encode_to_vec()).await.context("PUBLISH")?;
        *last += 1;
        Ok(())
    }
}

/// `count` streams of the minimal server at `url`, `per_connection` to a connection.
pub(super) async fn open_minimal_streams(
    url: &str,
    count: usize,
    per_connection: usize,
    board: &Arc<Board>,
) -> anyhow::Result<Receivers> {
    let started = Instant::now();
    let connections = spread_connections(&[url.to_owned()], count, per_connection).await?;
    let readers = futures::stream::iter(0..count)
        .map(|number| {
            let mut client = MinimalStreamClient::new(channel_for(&connections, number, per_connection));
            let board = Arc::clone(board);
            async move {
                let frames = client.subscribe(SubscribeRequest {}).await.context("minimal Subscribe")?.into_inner();
                let tally = board.receiver(0);
                anyhow::Ok(tokio::spawn(read_minimal(frames, tally, board)))
            }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(Receivers { readers, took: started.elapsed() })
}

async fn read_minimal(
    mut frames: tonic::Streaming<super::minimal::pb::StreamFrame>,
    tally: Arc<Mutex<StreamTally>>,
    board: Arc<Board>,
) {
    while let Ok(Some(frame)) = frames.message().await {
        let received_us = now_micros();
        let mut tally = lock(&tally);
        for update in &frame.updates {
            tally.record(&board, update, update.encoded_len(), received_us);
        }
    }
    lock(&tally).ended();
}

/// Calls the minimal server's `Publish`.
pub(super) struct MinimalPublisher {
    client: MinimalStreamClient<Channel>,
}

impl MinimalPublisher {
    /// A publisher to the minimal server at `url`.
    pub(super) async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(Self { client: MinimalStreamClient::new(super::fanfare::connect(url).await?) })
    }
}

#[async_trait]
impl Publisher for MinimalPublisher {
    async fn publish(&self, _sender: u32, seq: u64, text: String) -> anyhow::Result<()> {
        let update = baseline_update(BASELINE_SENDER, seq, text);
        self.client.clone().publish(PublishRequest { update: Some(update) }).await.context("minimal Publish")?;
        Ok(())
    }
}
