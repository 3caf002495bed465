//! Domain records to their wire messages.

use chrono::Utc;
use fanfare_core::time::{to_optional_timestamp, to_timestamp};
use fanfare_proto::fanout::v1 as pb;

use crate::follows::domain::{Follow, FollowCheck, FollowCounts};
use crate::jobs::domain::FanoutJob;

/// The wire form of an edge.
pub(super) fn follow(follow: &Follow) -> pb::Follow {
    pb::Follow {
        follower_user_id: follow.follower.get(),
        creator_user_id: follow.creator.get(),
        followed_at: Some(to_timestamp(follow.followed_at)),
    }
}

/// The wire form of one user's counters.
pub(super) fn counts(counts: &FollowCounts) -> pb::FollowCounts {
    pb::FollowCounts {
        user_id: counts.user.get(),
        followers: fanfare_core::wire::int64(counts.followers),
        following: fanfare_core::wire::int64(counts.following),
    }
}

/// The wire form of one check.
pub(super) fn check(check: &FollowCheck) -> pb::FollowCheck {
    pb::FollowCheck {
        creator_user_id: check.creator.get(),
        following: check.followed_at.is_some(),
        followed_at: to_optional_timestamp(check.followed_at),
    }
}

/// The wire form of a job, with its progress as of now.
pub(super) fn job(job: &FanoutJob) -> pb::FanoutJob {
    let progress = job.progress(Utc::now());
    pb::FanoutJob {
        job_id: job.id.get(),
        creator_user_id: job.creator.get(),
        kind: job.kind.to_proto().into(),
        payload_ref: job.payload_ref.as_str().to_owned(),
        idempotency_key: job.idempotency_key.as_str().to_owned(),
        state: job.state.to_proto().into(),
        followers_total: fanfare_core::wire::int64(job.followers_total),
        followers_done: fanfare_core::wire::int64(job.followers_done),
        followers_per_second: progress.followers_per_second,
        eta_seconds: fanfare_core::wire::int64(progress.eta_seconds),
        rate_limit_per_second: i32::try_from(job.rate.get()).unwrap_or(i32::MAX),
        created_at: Some(to_timestamp(job.created_at)),
        started_at: to_optional_timestamp(job.started_at),
        finished_at: to_optional_timestamp(job.finished_at),
    }
}
