//! Fanfare from the client side: the groups and their members (set up through the groups
//! API, then left for the outboxes to settle), the `Subscribe` streams spread over the fanout
//! processes and over HTTP/2 connections, and the `SendMessage` sender.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use fanfare_proto::common::v1::{GroupKind, Update};
use fanfare_proto::fanout::v1::SubscribeRequest;
use fanfare_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use fanfare_proto::frame::{Frame, SubscribeResponse};
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_proto::messages::v1::SendMessageRequest;
use fanfare_proto::messages::v1::message_service_client::MessageServiceClient;
use fanfare_testkit::as_user;
use futures::{StreamExt as _, TryStreamExt as _};
use prost::Message as _;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use super::load::Publisher;
use super::payload::now_micros;
use super::tally::{Board, StreamTally};

/// Users added per AddMembers call (the service's largest batch).
const ADD_BATCH: usize = 100;
/// AddMembers calls in flight while setting up.
const SETUP_CONCURRENCY: usize = 8;
/// Subscribe calls in flight while opening streams.
const OPEN_CONCURRENCY: usize = 64;
/// Attempts of a Subscribe refused as overloaded or unavailable.
const OPEN_ATTEMPTS: u32 = 8;
/// How long the groups relay and the messages publishers may take to publish the setup's
/// membership updates.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Connects to `url` (one HTTP/2 connection).
pub(super) async fn connect(url: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(url.to_owned())
        .context("building an endpoint")?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Creates a group of `kind` owned by `owner`; returns its id.
pub(super) async fn create_group(
    groups: &GroupServiceClient<Channel>,
    owner: i64,
    kind: GroupKind,
    title: &str,
) -> anyhow::Result<i64> {
    let request = groups_pb::CreateGroupRequest { kind: kind as i32, title: title.to_owned(), ..Default::default() };
    let response = groups
        .clone()
        .create_group(as_user(owner, request))
        .await
        .with_context(|| format!("creating group {title:?}"))?;
    response.into_inner().group.map(|group| group.group_id).context("CreateGroup answered without a group")
}

/// Adds `users` to `group` as `owner`, a hundred per call.
pub(super) async fn add_members(
    groups: &GroupServiceClient<Channel>,
    owner: i64,
    group: i64,
    users: &[i64],
) -> anyhow::Result<()> {
    futures::stream::iter(users.chunks(ADD_BATCH))
        .map(|batch| {
            let mut client = groups.clone();
            let request = groups_pb::AddMembersRequest { group_id: group, user_ids: batch.to_vec() };
            async move {
                client
                    .add_members(as_user(owner, request))
                    .await
                    .with_context(|| format!("adding {} members to group {group}", batch.len()))
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// Adds one batch of members to each of many groups: `(group, owner, users)`.
pub(super) async fn add_members_to_each(
    groups: &GroupServiceClient<Channel>,
    memberships: Vec<(i64, i64, Vec<i64>)>,
) -> anyhow::Result<()> {
    futures::stream::iter(memberships)
        .map(|(group, owner, users)| {
            let client = groups.clone();
            async move { add_members(&client, owner, group, &users).await }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_for_each(|()| async { Ok(()) })
        .await
}

/// Waits until the groups outbox has nothing unpublished and the messages outbox is empty: every membership change of the
/// setup is in its group's update log and published, so a stream opened now starts after it.
pub(super) async fn wait_settled(admin: &PgPool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut empty_in_a_row = 0;
    while empty_in_a_row < 2 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM groups.outbox WHERE published_at IS NULL) \
             + (SELECT count(*) FROM messages.outbox)",
        )
        .fetch_one(admin)
        .await
        .context("counting the outboxes")?;
        empty_in_a_row = if waiting == 0 { empty_in_a_row + 1 } else { 0 };
        anyhow::ensure!(
            started.elapsed() < SETTLE_TIMEOUT,
            "the outboxes still held {waiting} updates after {SETTLE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(started.elapsed())
}

/// Open streams: their reader tasks and the connections they share.
pub(super) struct OpenStreams {
    readers: Vec<JoinHandle<()>>,
    /// HTTP/2 connections the streams are spread over.
    pub connections: usize,
    /// How long opening them all took.
    pub took: Duration,
}

impl OpenStreams {
    /// Closes every stream (the server sees each one cancelled).
    pub(super) fn close(self) {
        for reader in self.readers {
            reader.abort();
        }
    }
}

/// HTTP/2 connections to `urls`, `per_connection` streams each, streams dealt out to the
/// processes in turn: stream g goes to process g mod `urls.len()`.
pub(super) async fn spread_connections(
    urls: &[String],
    streams: usize,
    per_connection: usize,
) -> anyhow::Result<Vec<Vec<Channel>>> {
    let mut per_process = Vec::with_capacity(urls.len());
    for (index, url) in urls.iter().enumerate() {
        let mine = streams / urls.len() + usize::from(index < streams % urls.len());
        let mut channels = Vec::new();
        for _ in 0..mine.div_ceil(per_connection.max(1)).max(1) {
            channels.push(connect(url).await?);
        }
        per_process.push(channels);
    }
    Ok(per_process)
}

/// The connection stream `number` uses.
pub(super) fn channel_for(connections: &[Vec<Channel>], number: usize, per_connection: usize) -> Channel {
    let process = number % connections.len();
    let slot = (number / connections.len()) / per_connection.max(1);
    connections[process][slot.min(connections[process].len() - 1)].clone()
}

/// Opens a Subscribe stream as each of `users` (user i is stream i) on the fanout processes
/// at `urls`, recording what each receives on `board`.
pub(super) async fn open_streams(
    urls: &[String],
    users: &[i64],
    per_connection: usize,
    board: &Arc<Board>,
) -> anyhow::Result<OpenStreams> {
    let started = Instant::now();
    let connections = spread_connections(urls, users.len(), per_connection).await?;
    let readers = futures::stream::iter(users.iter().copied().enumerate())
        .map(|(number, user)| {
            let client = FanoutServiceClient::new(channel_for(&connections, number, per_connection))
                .max_decoding_message_size(64 << 20);
            let board = Arc::clone(board);
            async move {
                let frames = subscribe(client, user).await?;
                let tally = board.receiver(user);
                anyhow::Ok(tokio::spawn(read_frames(frames, tally, board)))
            }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let connections = connections.iter().map(Vec::len).sum();
    Ok(OpenStreams { readers, connections, took: started.elapsed() })
}

/// Subscribes as `user`, retrying while the server sheds or is unavailable.
async fn subscribe(
    mut client: FanoutServiceClient<Channel>,
    user: i64,
) -> anyhow::Result<Streaming<SubscribeResponse>> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match client.subscribe(as_user(user, SubscribeRequest::default())).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status)
                if attempt < OPEN_ATTEMPTS && matches!(status.code(), Code::ResourceExhausted | Code::Unavailable) =>
            {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                attempt += 1;
            }
            Err(status) => return Err(anyhow::Error::new(status).context(format!("Subscribe as user {user}"))),
        }
    }
}

/// Reads one stream's frames until it ends, recording every update.
async fn read_frames(mut frames: Streaming<SubscribeResponse>, tally: Arc<Mutex<StreamTally>>, board: Arc<Board>) {
    loop {
        let frame = match frames.message().await {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => {
                lock(&tally).ended();
                return;
            }
        };
        let received_us = now_micros();
        match frame.frame {
            Some(Frame::Updates(batch)) => {
                let mut tally = lock(&tally);
                for bytes in &batch.updates {
                    if let Ok(update) = Update::decode(bytes.as_ref()) {
                        tally.record(&board, &update, bytes.len(), received_us);
                    }
                }
            }
            Some(Frame::Resync(_)) => lock(&tally).resync(),
            Some(Frame::Reconnect(_)) => lock(&tally).reconnect(),
            Some(Frame::Heartbeat(_) | Frame::MembershipChange(_) | Frame::Notification(_)) | None => {}
        }
    }
}

fn lock(tally: &Mutex<StreamTally>) -> std::sync::MutexGuard<'_, StreamTally> {
    tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends with `SendMessage`: sender `s` posts as `routes[s].0` into group `routes[s].1`,
/// through messages process `s` mod the number of processes.
pub(super) struct FanfareSender {
    /// Per messages process, its connections.
    clients: Vec<Vec<MessageServiceClient<Channel>>>,
    routes: Vec<(i64, i64)>,
}

impl FanfareSender {
    /// A sender over `channels` connections in all, dealt out in turn to the messages
    /// processes at `urls` (each gets at least one).
    pub(super) async fn connect(urls: &[String], channels: usize, routes: Vec<(i64, i64)>) -> anyhow::Result<Self> {
        anyhow::ensure!(!urls.is_empty(), "a sender needs at least one messages process");
        anyhow::ensure!(!routes.is_empty(), "a sender needs at least one route");
        let mut clients: Vec<Vec<MessageServiceClient<Channel>>> = vec![Vec::new(); urls.len()];
        for index in 0..channels.max(urls.len()) {
            let process = index % urls.len();
            clients[process].push(MessageServiceClient::new(connect(&urls[process]).await?));
        }
        Ok(Self { clients, routes })
    }
}

/// The connection sender `sender` uses: process `sender` mod `processes`, then its
/// connections in turn.
fn connection_of(sender: usize, processes: usize, per_process: usize) -> (usize, usize) {
    let processes = processes.max(1);
    (sender % processes, (sender / processes) % per_process.max(1))
}

#[async_trait]
impl Publisher for FanfareSender {
    async fn publish(&self, sender: u32, seq: u64, text: String) -> anyhow::Result<()> {
        let (user, group) = self.routes[sender as usize % self.routes.len()];
        let (process, slot) = connection_of(sender as usize, self.clients.len(), self.clients[0].len());
        let connections = &self.clients[process];
        let mut client = connections[slot % connections.len()].clone();
        let request = SendMessageRequest {
            group_id: group,
            // Unique per acting user: W1's slots share the owner, so the slot is part of it.
            client_message_id: format!("b{sender}-{seq}"),
            text,
            ..Default::default()
        };
        let response = client
            .send_message(as_user(user, request))
            .await
            .with_context(|| format!("SendMessage by user {user} to group {group}"))?;
        anyhow::ensure!(!response.into_inner().duplicate, "SendMessage by user {user} was answered as a retry");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_alternate_between_the_messages_processes() {
        assert_eq!(connection_of(0, 2, 8), (0, 0));
        assert_eq!(connection_of(1, 2, 8), (1, 0));
        assert_eq!(connection_of(2, 2, 8), (0, 1));
        assert_eq!(connection_of(17, 2, 8), (1, 0));
        assert_eq!(connection_of(5, 1, 16), (0, 5));
    }
}
