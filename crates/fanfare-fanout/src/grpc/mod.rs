//! The gRPC adapter of `fanfare.fanout.v1.FanoutService`: per call, read the acting user
//! from metadata, parse the request into validated values ([`parse`]), call the part of the
//! service it belongs to ([`FollowService`], [`JobService`] or [`Live`]), and map the result
//! ([`convert`]). No rules and no storage here.

mod convert;
mod jobs;
mod parse;
#[cfg(test)]
mod parse_proptest;
mod subscribe;

use std::sync::Arc;

use fanfare_core::identity::acting_user;
use fanfare_core::ids::UserId;
use fanfare_core::server::{MAX_DECODING_MESSAGE_SIZE, MAX_ENCODING_MESSAGE_SIZE};
use fanfare_core::validation::InvalidRequest;
use fanfare_proto::fanout::v1 as pb;
use fanfare_proto::fanout::v1::fanout_service_server::{FanoutService as FanoutApi, FanoutServiceServer};
use tonic::{Request, Response, Status};

use crate::error::FanoutError;
use crate::follows::FollowService;
use crate::jobs::JobService;
use crate::live::Live;

/// The tonic service over the follow graph ([`FollowService`]), fan-out jobs
/// ([`JobService`]) and live delivery ([`Live`]).
#[derive(Clone)]
pub struct FanoutGrpc {
    follows: Arc<FollowService>,
    jobs: Arc<JobService>,
    live: Arc<Live>,
}

impl FanoutGrpc {
    /// Wraps the three parts of the service.
    pub fn new(follows: Arc<FollowService>, jobs: Arc<JobService>, live: Arc<Live>) -> Self {
        Self { follows, jobs, live }
    }

    /// The generated tonic server for this adapter, with the message size limits of
    /// `fanfare_core::server`.
    pub fn into_server(self) -> FanoutServiceServer<Self> {
        FanoutServiceServer::new(self)
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE)
    }
}

type GrpcResult<T> = Result<Response<T>, Status>;

/// The acting user of a request.
fn actor<T>(request: &Request<T>) -> Result<UserId, Status> {
    Ok(acting_user(request.metadata())?)
}

fn invalid(error: InvalidRequest) -> Status {
    FanoutError::from(error).into()
}

#[tonic::async_trait]
impl FanoutApi for FanoutGrpc {
    async fn follow(&self, request: Request<pb::FollowRequest>) -> GrpcResult<pb::FollowResponse> {
        let actor = actor(&request)?;
        let creator = parse::creator(request.get_ref().creator_user_id).map_err(invalid)?;
        let followed = self.follows.follow(actor, creator).await?;
        Ok(Response::new(pb::FollowResponse {
            follow: Some(convert::follow(&followed.follow)),
            created: followed.created,
        }))
    }

    async fn unfollow(&self, request: Request<pb::UnfollowRequest>) -> GrpcResult<pb::UnfollowResponse> {
        let actor = actor(&request)?;
        let creator = parse::creator(request.get_ref().creator_user_id).map_err(invalid)?;
        let removed = self.follows.unfollow(actor, creator).await?;
        Ok(Response::new(pb::UnfollowResponse { removed }))
    }

    async fn list_followers(
        &self,
        request: Request<pb::ListFollowersRequest>,
    ) -> GrpcResult<pb::ListFollowersResponse> {
        let actor = actor(&request)?;
        let raw = request.get_ref();
        let listing = parse::listing(raw.user_id, raw.page_size, &raw.page_token).map_err(invalid)?;
        let page = self.follows.list_followers(actor, listing.user, listing.size, listing.before).await?;
        Ok(Response::new(pb::ListFollowersResponse {
            follows: page.items.iter().map(convert::follow).collect(),
            next_page_token: page.next_page_token(),
        }))
    }

    async fn list_following(
        &self,
        request: Request<pb::ListFollowingRequest>,
    ) -> GrpcResult<pb::ListFollowingResponse> {
        let actor = actor(&request)?;
        let raw = request.get_ref();
        let listing = parse::listing(raw.user_id, raw.page_size, &raw.page_token).map_err(invalid)?;
        let page = self.follows.list_following(actor, listing.user, listing.size, listing.before).await?;
        Ok(Response::new(pb::ListFollowingResponse {
            follows: page.items.iter().map(convert::follow).collect(),
            next_page_token: page.next_page_token(),
        }))
    }

    async fn get_follow_counts(
        &self,
        request: Request<pb::GetFollowCountsRequest>,
    ) -> GrpcResult<pb::GetFollowCountsResponse> {
        // Counters are public, but the call still needs an acting user, like every call.
        actor(&request)?;
        let users = parse::get_follow_counts(request.get_ref(), self.follows.max_batch_size()).map_err(invalid)?;
        let counts = self.follows.get_follow_counts(&users).await?;
        Ok(Response::new(pb::GetFollowCountsResponse { counts: counts.iter().map(convert::counts).collect() }))
    }

    async fn check_follows(&self, request: Request<pb::CheckFollowsRequest>) -> GrpcResult<pb::CheckFollowsResponse> {
        let actor = actor(&request)?;
        let check = parse::check_follows(request.get_ref(), self.follows.max_batch_size()).map_err(invalid)?;
        let checks = self.follows.check_follows(actor, check.follower, &check.creators).await?;
        Ok(Response::new(pb::CheckFollowsResponse { checks: checks.iter().map(convert::check).collect() }))
    }

    type SubscribeStream = subscribe::SubscribeStream;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> GrpcResult<Self::SubscribeStream> {
        let actor = actor(&request)?;
        subscribe::subscribe(&self.live, actor, request.into_inner()).await
    }

    async fn list_streams(&self, request: Request<pb::ListStreamsRequest>) -> GrpcResult<pb::ListStreamsResponse> {
        let actor = actor(&request)?;
        Ok(Response::new(pb::ListStreamsResponse { pod: self.live.pod_name(), streams: self.live.streams_of(actor) }))
    }

    async fn start_fanout_job(
        &self,
        request: Request<pb::StartFanoutJobRequest>,
    ) -> GrpcResult<pb::StartFanoutJobResponse> {
        let actor = actor(&request)?;
        jobs::start(&self.jobs, actor, request.into_inner()).await
    }

    async fn get_fanout_job(&self, request: Request<pb::GetFanoutJobRequest>) -> GrpcResult<pb::GetFanoutJobResponse> {
        let actor = actor(&request)?;
        jobs::get(&self.jobs, actor, request.into_inner()).await
    }

    async fn list_fanout_jobs(
        &self,
        request: Request<pb::ListFanoutJobsRequest>,
    ) -> GrpcResult<pb::ListFanoutJobsResponse> {
        let actor = actor(&request)?;
        jobs::list(&self.jobs, actor, request.into_inner()).await
    }

    async fn cancel_fanout_job(
        &self,
        request: Request<pb::CancelFanoutJobRequest>,
    ) -> GrpcResult<pb::CancelFanoutJobResponse> {
        let actor = actor(&request)?;
        jobs::cancel(&self.jobs, actor, request.into_inner()).await
    }
}
