//! The fanout service's one error type, and its mapping to gRPC status codes — the only
//! place a `FanoutError` becomes a `tonic::Status`. Internal causes are logged here and
//! never sent to the caller.

use std::time::Duration;

use fanfare_core::identity::IdentityError;
use fanfare_core::ids::UserId;
use fanfare_core::status;
use fanfare_core::validation::InvalidRequest;
use tonic::Status;

use crate::follows::store::StoreError;

/// Why a fanout call failed.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The acting user is missing or malformed in metadata.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// One or more request fields are invalid (including a self-follow).
    #[error(transparent)]
    InvalidRequest(#[from] InvalidRequest),
    /// The caller is following and unfollowing too fast.
    #[error("user {user} is following and unfollowing too fast; retry in {retry_after:?}")]
    RateLimited {
        /// The caller.
        user: UserId,
        /// When a retry will be accepted.
        retry_after: Duration,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result of a fanout call.
pub type FanoutResult<T> = Result<T, FanoutError>;

impl From<FanoutError> for Status {
    fn from(error: FanoutError) -> Self {
        let message = error.to_string();
        match error {
            FanoutError::Identity(identity) => identity.into(),
            FanoutError::InvalidRequest(invalid) => status::invalid_argument(&invalid),
            FanoutError::RateLimited { user, retry_after } => {
                status::resource_exhausted(message, format!("user:{user}:follow-changes"), Some(retry_after))
            }
            FanoutError::Store(store) => store_status(store, message),
        }
    }
}

fn store_status(error: StoreError, message: String) -> Status {
    match error {
        // Waiting does not help a limit: no retry delay.
        StoreError::FollowingLimit { user, .. } => {
            status::resource_exhausted(message, format!("user:{user}:following"), None)
        }
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
    use tonic::Code;
    use tonic_types::StatusExt;

    use super::*;

    fn has_retry_delay(status: &Status) -> bool {
        status.get_error_details().retry_info().is_some()
    }

    #[test]
    fn internal_causes_are_not_sent() {
        let status = Status::from(FanoutError::Store(StoreError::Internal(anyhow::anyhow!("secret table name"))));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn the_following_limit_is_resource_exhausted_without_a_retry_delay() {
        let user = UserId::from_trusted(3);
        let status = Status::from(FanoutError::Store(StoreError::FollowingLimit { user, limit: 10_000 }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("10000"), "{}", status.message());
        assert!(!has_retry_delay(&status));
    }

    #[test]
    fn rate_limits_carry_a_retry_delay_and_outages_are_unavailable() {
        let user = UserId::from_trusted(3);
        let limited = Status::from(FanoutError::RateLimited { user, retry_after: Duration::from_millis(100) });
        assert_eq!(limited.code(), Code::ResourceExhausted);
        assert!(has_retry_delay(&limited));
        let down = Status::from(FanoutError::Store(StoreError::Unavailable(anyhow::anyhow!("connection refused"))));
        assert_eq!(down.code(), Code::Unavailable);
        assert!(!down.message().contains("refused"));
    }
}
