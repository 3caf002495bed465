//! Why a job RPC failed, and its gRPC status. The causes the follow graph shares (bad
//! input, the store) are mapped by [`FanoutError`]'s one mapping; only the jobs' own causes
//! are mapped here.

use fanfare_core::validation::InvalidRequest;
use tonic::Status;

use super::domain::JobId;
use crate::error::FanoutError;
use crate::follows::store::StoreError;

/// Why a job RPC failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// One or more request fields are invalid.
    #[error(transparent)]
    InvalidRequest(#[from] InvalidRequest),
    /// No job with this id, or not one of the caller's (the two are not told apart, so
    /// job ids reveal nothing about other creators).
    #[error("fan-out job {0} not found among the caller's jobs")]
    NotFound(JobId),
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
    /// The creator starts jobs too often.
    #[error("user {user} starts fan-out jobs too often; retry in {retry_after:?}")]
    RateLimited {
        /// The creator.
        user: fanfare_core::ids::UserId,
        /// When a retry will be accepted.
        retry_after: std::time::Duration,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result of a job RPC.
pub type JobResult<T> = Result<T, JobError>;

impl From<JobError> for Status {
    fn from(error: JobError) -> Self {
        let message = error.to_string();
        match error {
            JobError::InvalidRequest(invalid) => FanoutError::InvalidRequest(invalid).into(),
            JobError::NotFound(_) => Status::not_found(message),
            // As the messages service answers a reused client_message_id with other content.
            JobError::IdempotencyConflict { .. } => Status::already_exists(message),
            JobError::RateLimited { user, retry_after } => {
                fanfare_core::status::resource_exhausted(message, format!("user:{user}:fanout-jobs"), Some(retry_after))
            }
            JobError::Store(store) => FanoutError::Store(store).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn conflicts_are_already_exists_naming_key_and_job() {
        let status = Status::from(JobError::IdempotencyConflict { key: "k1".into(), job: JobId::from_trusted(4) });
        assert_eq!(status.code(), Code::AlreadyExists);
        assert!(status.message().contains("\"k1\"") && status.message().contains(" 4,"), "{}", status.message());
    }

    #[test]
    fn missing_jobs_are_not_found_and_store_causes_are_not_sent() {
        assert_eq!(Status::from(JobError::NotFound(JobId::from_trusted(9))).code(), Code::NotFound);
        let down = Status::from(JobError::Store(StoreError::Unavailable(anyhow::anyhow!("secret host"))));
        assert_eq!(down.code(), Code::Unavailable);
        assert!(!down.message().contains("secret"));
    }
}
