//! The fan-out job RPCs: parse the request into validated values (every bad field named at
//! once, [`super::parse`]), call [`JobService`], and map the job to its wire form with its
//! progress ([`super::convert`]).

use fanfare_core::ids::UserId;
use fanfare_proto::fanout::v1 as pb;
use tonic::Response;

use super::convert::job;
use super::{GrpcResult, invalid, parse};
use crate::jobs::JobService;

pub(super) async fn start(
    jobs: &JobService,
    actor: UserId,
    request: pb::StartFanoutJobRequest,
) -> GrpcResult<pb::StartFanoutJobResponse> {
    let start = parse::start_fanout_job(&request, jobs.default_rate(), jobs.max_rate()).map_err(invalid)?;
    let created = jobs.start(actor, start).await?;
    Ok(Response::new(pb::StartFanoutJobResponse { job: Some(job(&created.job)), created: created.created }))
}

pub(super) async fn get(
    jobs: &JobService,
    actor: UserId,
    request: pb::GetFanoutJobRequest,
) -> GrpcResult<pb::GetFanoutJobResponse> {
    let id = parse::job_id(request.job_id).map_err(invalid)?;
    let found = jobs.get(actor, id).await?;
    Ok(Response::new(pb::GetFanoutJobResponse { job: Some(job(&found)) }))
}

pub(super) async fn list(
    jobs: &JobService,
    actor: UserId,
    request: pb::ListFanoutJobsRequest,
) -> GrpcResult<pb::ListFanoutJobsResponse> {
    let listing = parse::job_listing(request.page_size, &request.page_token).map_err(invalid)?;
    let page = jobs.list(actor, listing.size, listing.before).await?;
    Ok(Response::new(pb::ListFanoutJobsResponse {
        jobs: page.items.iter().map(job).collect(),
        next_page_token: page.next_page_token(),
    }))
}

pub(super) async fn cancel(
    jobs: &JobService,
    actor: UserId,
    request: pb::CancelFanoutJobRequest,
) -> GrpcResult<pb::CancelFanoutJobResponse> {
    let id = parse::job_id(request.job_id).map_err(invalid)?;
    let cancelled = jobs.cancel(actor, id).await?;
    Ok(Response::new(pb::CancelFanoutJobResponse { job: Some(job(&cancelled)) }))
}
