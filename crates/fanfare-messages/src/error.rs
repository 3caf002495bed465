//! The messages service's one error type and its mapping to gRPC status codes — the only
//! place a `MessagesError` becomes a `tonic::Status`. Internal causes are logged here and
//! never sent to the caller.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fanfare_core::identity::IdentityError;
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::status::{self, ErrorReason, Reason};
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
    /// The caller's role does not allow this; the message says why.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller is not a member of the group, and must be for this.
    #[error("user {user} is not a member of group {group}")]
    NotAMember {
        /// The group.
        group: GroupId,
        /// The caller.
        user: UserId,
    },
    /// The caller is muted in the group.
    #[error("user {user} is muted in group {group} until {}", until.to_rfc3339())]
    Muted {
        /// The group.
        group: GroupId,
        /// The caller.
        user: UserId,
        /// When the mute ends.
        until: DateTime<Utc>,
    },
    /// The group is archived and accepts no changes.
    #[error("group {0} is archived and accepts no changes")]
    Archived(GroupId),
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
            MessagesError::PermissionDenied(_) => {
                status::new(Code::PermissionDenied, ErrorReason::PermissionDenied, message)
            }
            MessagesError::NotAMember { group, user } => {
                status::new(Code::PermissionDenied, about(ErrorReason::NotAMember, group, user), message)
            }
            MessagesError::Muted { group, user, until } => {
                let reason = about(ErrorReason::Muted, group, user).with("muted_until", until.to_rfc3339());
                status::new(Code::PermissionDenied, reason, message)
            }
            MessagesError::Archived(group) => {
                status::failed_precondition(in_group(ErrorReason::GroupArchived, group), message, "ARCHIVED", "group")
            }
            MessagesError::RateLimited { user, action, retry_after } => status::resource_exhausted(
                Reason::new(ErrorReason::RateLimited).with("user_id", user),
                message,
                format!("user:{user}:{action}"),
                Some(retry_after),
            ),
            MessagesError::NotFound(_) => status::new(Code::NotFound, ErrorReason::MessageNotFound, message),
            MessagesError::GroupNotFound(group) | MessagesError::Directory(DirectoryError::GroupNotFound(group)) => {
                status::new(Code::NotFound, in_group(ErrorReason::GroupNotFound, group), message)
            }
            MessagesError::Directory(DirectoryError::Unavailable(cause)) => {
                tracing::warn!(%cause, "groups service unavailable");
                status::unavailable("the groups service")
            }
            MessagesError::Commit(commit) => commit_status(commit, message),
            MessagesError::Store(store) => store_status(store),
        }
    }
}

/// `reason`, about `group`.
fn in_group(reason: ErrorReason, group: GroupId) -> Reason {
    Reason::new(reason).with("group_id", group)
}

/// `reason`, about `user` in `group`.
fn about(reason: ErrorReason, group: GroupId, user: UserId) -> Reason {
    in_group(reason, group).with("user_id", user)
}

fn commit_status(error: CommitError, message: String) -> Status {
    match error {
        CommitError::Refused(refused) => write_status(refused, message),
        CommitError::Store(store) => store_status(store),
        CommitError::Overloaded => status::resource_exhausted(
            ErrorReason::Overloaded,
            message,
            "messages:commit-queue",
            Some(Duration::from_millis(200)),
        ),
        CommitError::ShuttingDown => status::new(Code::Unavailable, ErrorReason::ShuttingDown, message),
    }
}

fn write_status(error: WriteError, message: String) -> Status {
    match error {
        WriteError::MessageNotFound { group, message_seq } => {
            let reason = in_group(ErrorReason::MessageNotFound, group).with("message_seq", message_seq);
            status::new(Code::NotFound, reason, message)
        }
        WriteError::ReplyTargetNotFound(message_seq) => {
            let reason = Reason::new(ErrorReason::ReplyTargetNotFound).with("message_seq", message_seq);
            status::new(Code::NotFound, reason, message)
        }
        // As the fanout service answers a reused fan-out job key with other content.
        WriteError::IdempotencyConflict { .. } | WriteError::SystemEventConflict { .. } => {
            status::new(Code::AlreadyExists, ErrorReason::IdempotencyConflict, message)
        }
        WriteError::SlowMode { group, retry_after } => status::resource_exhausted(
            in_group(ErrorReason::SlowMode, group),
            message,
            format!("group:{group}:slow-mode"),
            Some(retry_after),
        ),
        WriteError::NotSender(message_seq) => {
            let reason = Reason::new(ErrorReason::NotSender).with("message_seq", message_seq);
            status::new(Code::PermissionDenied, reason, message)
        }
        WriteError::EditWindowClosed { message_seq, .. } => {
            let reason = Reason::new(ErrorReason::EditWindowClosed).with("message_seq", message_seq);
            status::failed_precondition(reason, message, "EDIT_WINDOW", "message")
        }
        WriteError::Deleted(message_seq) => {
            let reason = Reason::new(ErrorReason::MessageDeleted).with("message_seq", message_seq);
            status::failed_precondition(reason, message, "DELETED", "message")
        }
        // Waiting does not help a limit: no retry delay.
        WriteError::TooManyEmojis { .. } => {
            status::resource_exhausted(ErrorReason::TooManyEmojis, message, "message:emojis", None)
        }
        WriteError::PinLimit { group, .. } => status::resource_exhausted(
            in_group(ErrorReason::PinLimit, group),
            message,
            format!("group:{group}:pins"),
            None,
        ),
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
        assert_eq!(status::reason_of(&status), Some(ErrorReason::IdempotencyConflict));
        assert!(status.message().contains("k1"));
    }

    #[test]
    fn who_may_not_is_told_by_the_reason() {
        let group = GroupId::from_trusted(3);
        let user = UserId::from_trusted(8);
        let until = DateTime::from_timestamp(1_900_000_000, 0).expect("a time");
        let cases = [
            (MessagesError::GroupNotFound(group), Code::NotFound, ErrorReason::GroupNotFound),
            (MessagesError::NotAMember { group, user }, Code::PermissionDenied, ErrorReason::NotAMember),
            (MessagesError::Muted { group, user, until }, Code::PermissionDenied, ErrorReason::Muted),
            (MessagesError::PermissionDenied("role".into()), Code::PermissionDenied, ErrorReason::PermissionDenied),
            (MessagesError::Archived(group), Code::FailedPrecondition, ErrorReason::GroupArchived),
        ];
        for (error, code, reason) in cases {
            let status = Status::from(error);
            assert_eq!((status.code(), status::reason_of(&status)), (code, Some(reason)), "{status:?}");
        }
        let muted = Status::from(MessagesError::Muted { group, user, until });
        assert_eq!(muted.message(), "user 8 is muted in group 3 until 2030-03-17T17:46:40+00:00");
    }

    #[test]
    fn slow_mode_and_an_overloaded_committer_say_when_to_retry() {
        let group = GroupId::from_trusted(3);
        let retry_after = Duration::from_millis(1_500);
        let slow =
            Status::from(MessagesError::Commit(CommitError::Refused(WriteError::SlowMode { group, retry_after })));
        assert_eq!((slow.code(), status::reason_of(&slow)), (Code::ResourceExhausted, Some(ErrorReason::SlowMode)));
        let overloaded = Status::from(MessagesError::Commit(CommitError::Overloaded));
        assert_eq!(status::reason_of(&overloaded), Some(ErrorReason::Overloaded));
        let closing = Status::from(MessagesError::Commit(CommitError::ShuttingDown));
        assert_eq!((closing.code(), status::reason_of(&closing)), (Code::Unavailable, Some(ErrorReason::ShuttingDown)));
    }

    #[test]
    fn store_causes_are_not_sent() {
        let status = Status::from(MessagesError::Store(StoreError::Internal(anyhow::anyhow!("secret"))));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status::reason_of(&status), Some(ErrorReason::Internal));
        assert!(!status.message().contains("secret"));
    }
}
