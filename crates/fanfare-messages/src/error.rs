//! The messages service's one error type and its mapping to gRPC status codes — the only
//! place a `MessagesError` becomes a `tonic::Status`. Internal causes are logged here and
//! never sent to the caller.

use std::time::Duration;

use fanfare_core::identity::IdentityError;
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::status;
use fanfare_core::validation::InvalidRequest;
use tonic::{Code, Status};

use crate::committer::CommitError;
use crate::directory::DirectoryError;
use crate::store::{StoreError, WriteError};

/// Why a messages call failed.
#[derive(Debug, thiserror::Error)]
pub enum MessagesError {
    /// The acting user is missing or malformed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// One or more request fields are invalid.
    #[error(transparent)]
    InvalidRequest(#[from] InvalidRequest),
    /// The caller may not do this; the message says why.
    #[error("{0}")]
    PermissionDenied(String),
    /// The group's state forbids this (e.g. archived); `kind` tags it.
    #[error("{message}")]
    FailedPrecondition {
        /// A short upper-case tag.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The caller acts too fast (`action`: sends, changes or reactions).
    #[error("user {user} {action} too fast; retry in {retry_after:?}")]
    RateLimited {
        /// The caller.
        user: UserId,
        /// What the caller did too often, as the limit is named.
        action: &'static str,
        /// When a retry will be accepted.
        retry_after: Duration,
    },
    /// A message asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The group does not exist (or is private).
    #[error("group {0} does not exist")]
    GroupNotFound(GroupId),
    /// The groups service could not be asked.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// A write was not committed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// A read failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result of a messages call.
pub type MessagesResult<T> = Result<T, MessagesError>;

impl From<MessagesError> for Status {
    fn from(error: MessagesError) -> Self {
        let message = error.to_string();
        match error {
            MessagesError::Identity(identity) => identity.into(),
            MessagesError::InvalidRequest(invalid) => status::invalid_argument(&invalid),
            MessagesError::PermissionDenied(_) => Status::permission_denied(message),
            MessagesError::FailedPrecondition { kind, .. } => status::failed_precondition(message, kind, "group"),
            MessagesError::RateLimited { user, action, retry_after } => {
                status::resource_exhausted(message, format!("user:{user}:{action}"), Some(retry_after))
            }
            MessagesError::NotFound(_) | MessagesError::GroupNotFound(_) => Status::not_found(message),
            MessagesError::Directory(DirectoryError::GroupNotFound(_)) => Status::not_found(message),
            MessagesError::Directory(DirectoryError::Unavailable(cause)) => {
                tracing::warn!(%cause, "groups service unavailable");
                status::unavailable("the groups service")
            }
            MessagesError::Commit(commit) => commit_status(commit, message),
            MessagesError::Store(store) => store_status(store),
        }
    }
}

fn commit_status(error: CommitError, message: String) -> Status {
    match error {
        CommitError::Refused(refused) => write_status(refused, message),
        CommitError::Store(store) => store_status(store),
        CommitError::Overloaded => {
            status::resource_exhausted(message, "messages:commit-queue", Some(Duration::from_millis(200)))
        }
        CommitError::ShuttingDown => Status::new(Code::Unavailable, message),
    }
}

fn write_status(error: WriteError, message: String) -> Status {
    match error {
        WriteError::MessageNotFound { .. } | WriteError::ReplyTargetNotFound(_) => Status::not_found(message),
        WriteError::IdempotencyConflict { .. } | WriteError::SystemEventConflict { .. } => {
            Status::already_exists(message)
        }
        WriteError::SlowMode { group, retry_after } => {
            status::resource_exhausted(message, format!("group:{group}:slow-mode"), Some(retry_after))
        }
        WriteError::NotSender(_) => Status::permission_denied(message),
        WriteError::EditWindowClosed { .. } => status::failed_precondition(message, "EDIT_WINDOW", "message"),
        WriteError::Deleted(_) => status::failed_precondition(message, "DELETED", "message"),
        WriteError::TooManyEmojis { .. } => status::resource_exhausted(message, "message:emojis", None),
        WriteError::PinLimit { group, .. } => status::resource_exhausted(message, format!("group:{group}:pins"), None),
    }
}

fn store_status(error: StoreError) -> Status {
    match error {
        StoreError::Unavailable(cause) => {
            tracing::warn!(error = ?cause, "postgres unavailable");
            status::unavailable("the messages database")
        }
        StoreError::Internal(cause) => {
            tracing::error!(error = ?cause, "messages store failure");
            status::internal()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_conflicts_are_already_exists_and_name_the_key() {
        let error = MessagesError::Commit(CommitError::Refused(WriteError::IdempotencyConflict {
            key: "k1".into(),
            original_seq: fanfare_core::ids::MessageSeq::from_trusted(4),
        }));
        let status = Status::from(error);
        assert_eq!(status.code(), Code::AlreadyExists);
        assert!(status.message().contains("k1"));
    }

    #[test]
    fn store_causes_are_not_sent() {
        let status = Status::from(MessagesError::Store(StoreError::Internal(anyhow::anyhow!("secret"))));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }
}
