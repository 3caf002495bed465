//! The groups service's one error type, and its mapping to gRPC status codes — the only
//! place a `GroupsError` becomes a `tonic::Status`. Internal causes are logged here and
//! never sent to the caller.

use std::time::Duration;

use fanfare_core::identity::IdentityError;
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::status;
use fanfare_core::validation::InvalidRequest;
use tonic::Status;

use crate::store::StoreError;

/// Why a groups call failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    /// The acting user is missing or malformed in metadata.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// One or more request fields are invalid.
    #[error(transparent)]
    InvalidRequest(#[from] InvalidRequest),
    /// The caller may not do this; the message says what would allow it.
    #[error("{0}")]
    PermissionDenied(String),
    /// The group's state does not allow this (e.g. the join policy); `kind` tags it.
    #[error("{message}")]
    FailedPrecondition {
        /// A short upper-case tag, e.g. `JOIN_POLICY`.
        kind: &'static str,
        /// What is wrong and what to do instead.
        message: String,
    },
    /// The caller is changing too fast.
    #[error("user {user} is making changes too fast; retry in {retry_after:?}")]
    RateLimited {
        /// The caller.
        user: UserId,
        /// When a retry will be accepted.
        retry_after: Duration,
    },
    /// A membership lookup named a user who is not a member.
    #[error("user {user} is not a member of group {group}")]
    MembershipNotFound {
        /// The group.
        group: GroupId,
        /// The user.
        user: UserId,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result of a groups call.
pub type GroupsResult<T> = Result<T, GroupsError>;

impl From<GroupsError> for Status {
    fn from(error: GroupsError) -> Self {
        let message = error.to_string();
        match error {
            GroupsError::Identity(identity) => identity.into(),
            GroupsError::InvalidRequest(invalid) => status::invalid_argument(&invalid),
            GroupsError::PermissionDenied(_) => Status::permission_denied(message),
            GroupsError::FailedPrecondition { kind, .. } => status::failed_precondition(message, kind, "group"),
            GroupsError::RateLimited { user, retry_after } => {
                status::resource_exhausted(message, format!("user:{user}"), Some(retry_after))
            }
            GroupsError::MembershipNotFound { .. } => Status::not_found(message),
            GroupsError::Store(store) => store_status(store, message),
        }
    }
}

fn store_status(error: StoreError, message: String) -> Status {
    match error {
        StoreError::GroupNotFound(_)
        | StoreError::JoinRequestNotFound { .. }
        | StoreError::InviteNotFound
        | StoreError::NotBanned { .. }
        | StoreError::NotMember { .. } => Status::not_found(message),
        StoreError::Banned { .. } => Status::permission_denied(message),
        StoreError::Archived(group) => status::failed_precondition(message, "ARCHIVED", format!("group:{group}")),
        StoreError::OwnerImmovable(group) => status::failed_precondition(message, "OWNER", format!("group:{group}")),
        StoreError::InviteExpired(_) => status::failed_precondition(message, "INVITE_EXPIRED", "invite"),
        StoreError::InviteRevoked => status::failed_precondition(message, "INVITE_REVOKED", "invite"),
        StoreError::InviteExhausted(_) => status::failed_precondition(message, "INVITE_EXHAUSTED", "invite"),
        StoreError::GroupFull { group, .. } => {
            status::resource_exhausted(message, format!("group:{group}:members"), None)
        }
        StoreError::UserGroupLimit { user, .. } => {
            status::resource_exhausted(message, format!("user:{user}:groups"), None)
        }
        StoreError::Unavailable(cause) => {
            tracing::warn!(error = ?cause, "postgres unavailable");
            status::unavailable("the groups database")
        }
        StoreError::Internal(cause) => {
            tracing::error!(error = ?cause, "groups store failure");
            status::internal()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn internal_causes_are_not_sent() {
        let error = GroupsError::Store(StoreError::Internal(anyhow::anyhow!("secret table name")));
        let status = Status::from(error);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn limits_are_resource_exhausted() {
        let group = GroupId::from_trusted(1);
        let status = Status::from(GroupsError::Store(StoreError::GroupFull { group, limit: 32 }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("32"));
    }
}
