//! The fan-out job RPCs: parse the request into validated values (every bad field named at
//! once), call [`JobService`], and map the job to its wire form with its progress.

use chrono::Utc;
use fanfare_core::ids::UserId;
use fanfare_core::paging::{Cursor, PageSize};
use fanfare_core::time::{to_optional_timestamp, to_timestamp};
use fanfare_core::validation::{FieldViolation, InvalidRequest, Violations};
use fanfare_proto::fanout::v1 as pb;
use tonic::Response;

use super::GrpcResult;
use crate::jobs::domain::{FanoutJob, IdempotencyKey, JobId, JobKind, PayloadRef, Rate, StartJob};
use crate::jobs::{JobError, JobService};

/// The kind of a start request; `UNSPECIFIED` and unknown values are refused.
fn kind(raw: i32) -> Result<JobKind, FieldViolation> {
    JobKind::from_proto(raw).ok_or_else(|| {
        FieldViolation::new(
            "kind",
            format!(
                "must be FANOUT_JOB_KIND_NEW_GROUP_INVITATION or FANOUT_JOB_KIND_BROADCAST_NOTIFICATION (got {raw})"
            ),
        )
    })
}

/// StartFanoutJob, with the server's default and highest rates.
pub(super) fn start_request(
    request: &pb::StartFanoutJobRequest,
    default_rate: u32,
    max_rate: u32,
) -> Result<StartJob, InvalidRequest> {
    let mut violations = Violations::new();
    let kind = violations.check(kind(request.kind));
    let payload_ref = violations.check(PayloadRef::parse("payload_ref", &request.payload_ref));
    let idempotency_key = violations.check(IdempotencyKey::parse("idempotency_key", &request.idempotency_key));
    let rate =
        violations.check(Rate::parse("rate_limit_per_second", request.rate_limit_per_second, default_rate, max_rate));
    let parsed =
        (|| Some(StartJob { kind: kind?, payload_ref: payload_ref?, idempotency_key: idempotency_key?, rate: rate? }))(
        );
    violations.finish_with(parsed)
}

/// A `job_id` field.
pub(super) fn job_id(raw: i64) -> Result<JobId, InvalidRequest> {
    Ok(JobId::parse("job_id", raw)?)
}

/// ListFanoutJobs: the page size and the job to continue before.
pub(super) fn listing(page_size: i32, page_token: &str) -> Result<(PageSize, Option<JobId>), InvalidRequest> {
    let mut violations = Violations::new();
    let size = violations.check(PageSize::parse_default("page_size", page_size));
    let before = match violations.check(Cursor::decode("page_token", page_token, 1)) {
        Some(Some(cursor)) => violations
            .check(
                JobId::parse("page_token", cursor.0[0])
                    .map_err(|_| FieldViolation::new("page_token", "is not a token returned by this method")),
            )
            .map(Some),
        Some(None) => Some(None),
        None => None,
    };
    violations.finish_with((|| Some((size?, before?)))())
}

/// The wire form of a job, with its progress as of now.
fn job(job: &FanoutJob) -> pb::FanoutJob {
    let progress = job.progress(Utc::now());
    pb::FanoutJob {
        job_id: job.id.get(),
        creator_user_id: job.creator.get(),
        kind: job.kind.to_proto().into(),
        payload_ref: job.payload_ref.as_str().to_owned(),
        idempotency_key: job.idempotency_key.as_str().to_owned(),
        state: job.state.to_proto().into(),
        followers_total: i64::try_from(job.followers_total).unwrap_or(i64::MAX),
        followers_done: i64::try_from(job.followers_done).unwrap_or(i64::MAX),
        followers_per_second: progress.followers_per_second,
        eta_seconds: i64::try_from(progress.eta_seconds).unwrap_or(i64::MAX),
        rate_limit_per_second: i32::try_from(job.rate.get()).unwrap_or(i32::MAX),
        created_at: Some(to_timestamp(job.created_at)),
        started_at: to_optional_timestamp(job.started_at),
        finished_at: to_optional_timestamp(job.finished_at),
    }
}

pub(super) async fn start(
    jobs: &JobService,
    actor: UserId,
    request: pb::StartFanoutJobRequest,
) -> GrpcResult<pb::StartFanoutJobResponse> {
    let start = start_request(&request, jobs.default_rate(), jobs.max_rate()).map_err(JobError::from)?;
    let created = jobs.start(actor, start).await?;
    Ok(Response::new(pb::StartFanoutJobResponse { job: Some(job(&created.job)), created: created.created }))
}

pub(super) async fn get(
    jobs: &JobService,
    actor: UserId,
    request: pb::GetFanoutJobRequest,
) -> GrpcResult<pb::GetFanoutJobResponse> {
    let id = job_id(request.job_id).map_err(JobError::from)?;
    let found = jobs.get(actor, id).await?;
    Ok(Response::new(pb::GetFanoutJobResponse { job: Some(job(&found)) }))
}

pub(super) async fn list(
    jobs: &JobService,
    actor: UserId,
    request: pb::ListFanoutJobsRequest,
) -> GrpcResult<pb::ListFanoutJobsResponse> {
    let (size, before) = listing(request.page_size, &request.page_token).map_err(JobError::from)?;
    let page = jobs.list(actor, size, before).await?;
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
    let id = job_id(request.job_id).map_err(JobError::from)?;
    let cancelled = jobs.cancel(actor, id).await?;
    Ok(Response::new(pb::CancelFanoutJobResponse { job: Some(job(&cancelled)) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(error: InvalidRequest) -> Vec<String> {
        error.violations().iter().map(|violation| violation.field.clone()).collect()
    }

    fn request(kind: i32, payload_ref: &str, key: &str, rate: i32) -> pb::StartFanoutJobRequest {
        pb::StartFanoutJobRequest {
            kind,
            payload_ref: payload_ref.to_owned(),
            idempotency_key: key.to_owned(),
            rate_limit_per_second: rate,
        }
    }

    #[test]
    fn a_start_request_defaults_its_rate_and_names_every_bad_field() {
        let parsed = start_request(&request(2, "post-1", "key-1", 0), 50, 100).expect("valid");
        assert_eq!((parsed.kind, parsed.rate.get()), (JobKind::BroadcastNotification, 50));
        let refused = start_request(&request(0, "", &"k".repeat(129), 101), 50, 100).unwrap_err();
        assert_eq!(fields(refused), ["kind", "payload_ref", "idempotency_key", "rate_limit_per_second"]);
        assert_eq!(
            fields(start_request(&request(9, "p", "k", -1), 50, 100).unwrap_err()),
            ["kind", "rate_limit_per_second"]
        );
    }

    #[test]
    fn listing_tokens_hold_one_positive_job_id() {
        assert_eq!(listing(0, "").expect("defaults"), (PageSize::new(100), None));
        let token = Cursor(vec![7]).encode();
        assert_eq!(listing(5, &token).expect("a token").1, Some(JobId::from_trusted(7)));
        for bad in [Cursor(vec![0]).encode(), Cursor(vec![1, 2]).encode(), "x".to_owned()] {
            assert_eq!(fields(listing(5, &bad).unwrap_err()), ["page_token"], "{bad}");
        }
        assert_eq!(fields(listing(-1, "").unwrap_err()), ["page_size"]);
        assert_eq!(fields(job_id(0).unwrap_err()), ["job_id"]);
    }
}
