//! The minimal tonic streaming server, the fanout benchmark's baseline, run as a separate
//! process by the hidden `fanfare-bench minimal-stream-server --listen ADDR` subcommand:
//! the obvious implementation of a server-streaming fan-out. `Publish` puts an update on a
//! tokio broadcast channel; each stream has a task that receives its own clone of the
//! update and hands it to tonic, which encodes it for that stream. A stream that falls more
//! than the channel's capacity behind skips what it missed (counted by the receivers as
//! holes), as the obvious implementation would.

#![allow(clippy::disallowed_methods, reason = "the benchmark's minimal baseline server is not a Fanfare service")]

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use fanfare_proto::common::v1::Update;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

/// The generated code of `proto/minimal.proto`.
#[allow(clippy::all, unreachable_pub, missing_docs, reason = "generated code")]
pub(crate) mod pb {
    tonic::include_proto!("minimal.v1");
}

use pb::minimal_stream_server::{MinimalStream, MinimalStreamServer};
use pb::{PublishRequest, PublishResponse, StreamFrame, SubscribeRequest};

/// Updates the broadcast channel holds for a slow stream.
const BROADCAST_CAPACITY: usize = 1_024;
/// Frames queued between a stream's task and tonic.
const STREAM_BUFFER: usize = 64;

struct Minimal {
    updates: broadcast::Sender<Update>,
    /// The last event_seq handed out; held while sending so streams get them in order.
    last_event_seq: Mutex<i64>,
}

#[tonic::async_trait]
impl MinimalStream for Minimal {
    type SubscribeStream = ReceiverStream<Result<StreamFrame, Status>>;

    async fn subscribe(&self, _request: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let mut updates = self.updates.subscribe();
        let (frames, stream) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                match updates.recv().await {
                    Ok(update) => {
                        if frames.send(Ok(StreamFrame { updates: vec![update] })).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<PublishResponse>, Status> {
        let mut update = request.into_inner().update.ok_or_else(|| Status::invalid_argument("update is required"))?;
        let streams = {
            let mut last = self.last_event_seq.lock().unwrap_or_else(PoisonError::into_inner);
            *last += 1;
            update.event_seq = *last;
            self.updates.send(update).unwrap_or(0)
        };
        Ok(Response::new(PublishResponse { streams: u32::try_from(streams).unwrap_or(u32::MAX) }))
    }
}

/// Serves on `listen` until the process is stopped.
pub(crate) async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let (updates, _) = broadcast::channel(BROADCAST_CAPACITY);
    let service = Minimal { updates, last_event_seq: Mutex::new(0) };
    Server::builder()
        .tcp_nodelay(true)
        .add_service(MinimalStreamServer::new(service))
        .serve(listen)
        .await
        .with_context(|| format!("serving the minimal streaming server on {listen}"))
}
