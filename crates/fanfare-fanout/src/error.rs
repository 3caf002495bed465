//! The fanout service's one error type, and its mapping to gRPC status codes — the only
//! place a `FanoutError` becomes a `tonic::Status`, for the follow graph, fan-out jobs and
//! live delivery alike. Internal causes are logged here and never sent to the caller.

use std::fmt;
use std::time::Duration;

use fanfare_core::identity::IdentityError;
use fanfare_core::ids::UserId;
use fanfare_core::status::{self, ErrorReason, Reason};
use fanfare_core::validation::InvalidRequest;
use tonic::{Code, Status};

use crate::follows::store::StoreError;
use crate::jobs::domain::JobId;

/// Why a fanout call failed.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The acting user is missing or malformed in metadata.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// One or more request fields are invalid (including a self-follow).
    #[error(transparent)]
    InvalidRequest(#[from] InvalidRequest),
    /// The caller does something too often.
    #[error("user {user} {action}; retry in {retry_after:?}")]
    RateLimited {
        /// The caller.
        user: UserId,
        /// What they do too often.
        action: LimitedAction,
        /// When a retry will be accepted.
        retry_after: Duration,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    // Fan-out jobs.
    /// No job with this id, or not one of the caller's (the two are not told apart, so
    /// job ids reveal nothing about other creators).
    #[error("fan-out job {0} not found among the caller's jobs")]
    JobNotFound(JobId),
    /// The caller used this idempotency key before, for a job announcing something else.
    #[error(
        "idempotency key {key:?} was already used for fan-out job {job}, which announces something else; \
         use a new key for a new job"
    )]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The job it was used for.
        job: JobId,
    },

    // Live delivery.
    /// The pod is shutting down: streams open elsewhere.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The user holds as many streams on this pod as one user may.
    #[error("user {user} already holds {max} streams on this pod; close one before opening another")]
    TooManyStreams {
        /// The user.
        user: UserId,
        /// The most one user holds on one pod.
        max: usize,
    },
    /// The user belongs to more groups than one stream carries.
    #[error("user {user} belongs to more than {max} groups, the most one stream carries")]
    TooManyGroups {
        /// The user.
        user: UserId,
        /// The most groups one stream carries.
        max: usize,
    },
    /// The pod could not listen to the update bus for a stream.
    #[error("the update bus is unavailable ({0}); retry shortly")]
    BusUnavailable(String),
    /// A stream keeps falling behind and catching up from the log: it is asked to reconnect.
    #[error("this stream keeps falling behind and catching up from the log; read faster, or reconnect later")]
    FallingBehind,
    /// The messages service answered `GetUpdates` without a result.
    #[error("the messages service answered GetUpdates with nothing")]
    EmptyUpdates,
    /// The groups or messages service answered a call of live delivery with this status;
    /// it is passed on as it came (with a reason added if it carries none: tonic's client
    /// makes statuses of its own when a connection breaks or a deadline passes).
    #[error("{}", .0.message())]
    Upstream(Status),
}

/// Result of a fanout call.
pub type FanoutResult<T> = Result<T, FanoutError>;

/// What a caller may do only so often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedAction {
    /// Follows and unfollows.
    FollowChanges,
    /// Starting fan-out jobs.
    JobStarts,
    /// Opening `Subscribe` streams.
    Subscribes,
}

impl LimitedAction {
    /// The last part of the quota subject (`user:{id}:{this}`), as the limit is named.
    fn quota(self) -> &'static str {
        match self {
            Self::FollowChanges => "follow-changes",
            Self::JobStarts => "fanout-jobs",
            Self::Subscribes => "subscribes",
        }
    }
}

impl fmt::Display for LimitedAction {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::FollowChanges => "is following and unfollowing too fast",
            Self::JobStarts => "starts fan-out jobs too often",
            Self::Subscribes => "subscribes too often",
        })
    }
}

impl From<FanoutError> for Status {
    fn from(error: FanoutError) -> Self {
        let message = error.to_string();
        match error {
            FanoutError::Identity(identity) => identity.into(),
            FanoutError::InvalidRequest(invalid) => status::invalid_argument(&invalid),
            FanoutError::RateLimited { user, action, retry_after } => status::resource_exhausted(
                Reason::new(ErrorReason::RateLimited).with("user_id", user),
                message,
                format!("user:{user}:{}", action.quota()),
                Some(retry_after),
            ),
            FanoutError::Store(store) => store_status(store, message),
            FanoutError::JobNotFound(job) => {
                status::new(Code::NotFound, Reason::new(ErrorReason::JobNotFound).with("job_id", job), message)
            }
            // As the messages service answers a reused client_message_id with other content.
            FanoutError::IdempotencyConflict { job, .. } => {
                let reason = Reason::new(ErrorReason::IdempotencyConflict).with("job_id", job);
                status::new(Code::AlreadyExists, reason, message)
            }
            FanoutError::ShuttingDown => fanfare_core::shutdown::shutdown_status(),
            FanoutError::TooManyStreams { user, max } => {
                let reason = Reason::new(ErrorReason::TooManyStreams).with("user_id", user).with("limit", max);
                status::new(Code::ResourceExhausted, reason, message)
            }
            FanoutError::FallingBehind => {
                status::new(Code::ResourceExhausted, ErrorReason::StreamFallingBehind, message)
            }
            FanoutError::TooManyGroups { user, max } => {
                let reason = Reason::new(ErrorReason::TooManyGroups).with("user_id", user).with("limit", max);
                status::new(Code::FailedPrecondition, reason, message)
            }
            FanoutError::BusUnavailable(_) => {
                let reason = Reason::new(ErrorReason::DependencyUnavailable).with("dependency", "update-bus");
                status::new(Code::Unavailable, reason, message)
            }
            // Another service broke its contract; nothing of ours is in the message.
            FanoutError::EmptyUpdates => status::new(Code::Internal, ErrorReason::Internal, message),
            FanoutError::Upstream(upstream) => {
                let fallback = upstream_fallback(upstream.code());
                status::with_reason_if_missing(upstream, fallback)
            }
        }
    }
}

/// The reason of another service's status that carries none, which only tonic's client
/// makes: a connection that broke or a deadline that passed, or else a broken contract.
fn upstream_fallback(code: Code) -> ErrorReason {
    match code {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            ErrorReason::DependencyUnavailable
        }
        _ => ErrorReason::Internal,
    }
}

fn store_status(error: StoreError, message: String) -> Status {
    match error {
        // Waiting does not help a limit: no retry delay.
        StoreError::FollowingLimit { user, limit } => status::resource_exhausted(
            Reason::new(ErrorReason::FollowingLimit).with("user_id", user).with("limit", limit),
            message,
            format!("user:{user}:following"),
            None,
        ),
        StoreError::Unavailable(cause) => {
            tracing::warn!(error = ?cause, "postgres unavailable");
            status::unavailable("the fanout database")
        }
        StoreError::Internal(cause) => {
            tracing::error!(error = ?cause, "fanout store failure");
            status::internal()
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    fn has_retry_delay(status: &Status) -> bool {
        status.get_error_details().retry_info().is_some()
    }

    #[test]
    fn internal_causes_are_not_sent() {
        let status = Status::from(FanoutError::Store(StoreError::Internal(anyhow::anyhow!("secret table name"))));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status::reason_of(&status), Some(ErrorReason::Internal));
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn the_following_limit_is_resource_exhausted_without_a_retry_delay() {
        let user = UserId::from_trusted(3);
        let status = Status::from(FanoutError::Store(StoreError::FollowingLimit { user, limit: 10_000 }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status::reason_of(&status), Some(ErrorReason::FollowingLimit));
        assert!(status.message().contains("10000"), "{}", status.message());
        assert!(!has_retry_delay(&status));
    }

    #[test]
    fn rate_limits_carry_a_retry_delay_and_outages_are_unavailable() {
        let user = UserId::from_trusted(3);
        let retry_after = Duration::from_millis(100);
        let limited =
            Status::from(FanoutError::RateLimited { user, action: LimitedAction::FollowChanges, retry_after });
        assert_eq!(limited.code(), Code::ResourceExhausted);
        assert_eq!(status::reason_of(&limited), Some(ErrorReason::RateLimited));
        assert!(has_retry_delay(&limited));
        assert!(limited.message().starts_with("user 3 is following and unfollowing too fast; retry in"));
        let quota = limited.get_error_details().quota_failure().expect("a quota failure").violations[0].clone();
        assert_eq!(quota.subject, "user:3:follow-changes");
        let down = Status::from(FanoutError::Store(StoreError::Unavailable(anyhow::anyhow!("connection refused"))));
        assert_eq!(down.code(), Code::Unavailable);
        assert_eq!(status::reason_of(&down), Some(ErrorReason::DependencyUnavailable));
        assert!(!down.message().contains("refused"));
    }

    #[test]
    fn conflicts_are_already_exists_naming_key_and_job() {
        let status = Status::from(FanoutError::IdempotencyConflict { key: "k1".into(), job: JobId::from_trusted(4) });
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(status::reason_of(&status), Some(ErrorReason::IdempotencyConflict));
        assert!(status.message().contains("\"k1\"") && status.message().contains(" 4,"), "{}", status.message());
    }

    #[test]
    fn missing_jobs_are_not_found() {
        let status = Status::from(FanoutError::JobNotFound(JobId::from_trusted(9)));
        assert_eq!((status.code(), status::reason_of(&status)), (Code::NotFound, Some(ErrorReason::JobNotFound)));
    }

    #[test]
    fn upstream_statuses_pass_through_and_stream_refusals_keep_their_codes() {
        let upstream = status::new(Code::PermissionDenied, ErrorReason::NotAMember, "not a member");
        let passed = Status::from(FanoutError::Upstream(upstream));
        assert_eq!((passed.code(), passed.message()), (Code::PermissionDenied, "not a member"));
        assert_eq!(status::reason_of(&passed), Some(ErrorReason::NotAMember));
        #[allow(clippy::disallowed_methods, reason = "tonic's client makes this one")]
        let broken = Status::unknown("transport error");
        let passed = Status::from(FanoutError::Upstream(broken));
        assert_eq!((passed.code(), passed.message()), (Code::Unknown, "transport error"));
        assert_eq!(status::reason_of(&passed), Some(ErrorReason::DependencyUnavailable));

        let user = UserId::from_trusted(5);
        let cases = [
            (FanoutError::TooManyStreams { user, max: 8 }, Code::ResourceExhausted, ErrorReason::TooManyStreams),
            (FanoutError::FallingBehind, Code::ResourceExhausted, ErrorReason::StreamFallingBehind),
            (FanoutError::TooManyGroups { user, max: 8 }, Code::FailedPrecondition, ErrorReason::TooManyGroups),
            (FanoutError::BusUnavailable("down".into()), Code::Unavailable, ErrorReason::DependencyUnavailable),
            (FanoutError::ShuttingDown, Code::Unavailable, ErrorReason::ShuttingDown),
            (FanoutError::EmptyUpdates, Code::Internal, ErrorReason::Internal),
        ];
        for (error, code, reason) in cases {
            let status = Status::from(error);
            assert_eq!((status.code(), status::reason_of(&status)), (code, Some(reason)), "{status:?}");
        }
    }
}
