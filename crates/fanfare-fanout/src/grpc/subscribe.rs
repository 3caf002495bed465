//! `Subscribe`: validate the resume positions, open the caller's stream, hand tonic its
//! frames.

use std::pin::Pin;

use fanfare_core::ids::UserId;
use fanfare_proto::fanout::v1 as pb;
use fanfare_proto::frame::SubscribeResponse;
use futures::Stream;
use tonic::{Response, Status};

use super::{GrpcResult, invalid, parse};
use crate::live::Live;

/// The frames of one stream.
pub(super) type SubscribeStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send + 'static>>;

pub(super) async fn subscribe(
    live: &Live,
    actor: UserId,
    request: pb::SubscribeRequest,
) -> GrpcResult<SubscribeStream> {
    let resume = parse::resume(&request.positions, &request.cursor, live.max_groups()).map_err(invalid)?;
    let stream = live.open(actor, resume).await?;
    Ok(Response::new(Box::pin(stream.into_frames())))
}
