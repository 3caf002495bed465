//! The groups service's one error type, and its mapping to gRPC status codes — the only
//! place a `GroupsError` becomes a `tonic::Status`. Internal causes are logged here and
//! never sent to the caller.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use fanfare_core::identity::IdentityError;
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::status::{self, ErrorReason, Reason};
use fanfare_core::validation::InvalidRequest;
use tonic::{Code, Status};

use crate::follows::FollowGraphError;
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
    /// The caller's role does not allow this; the message says what would allow it.
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
    /// An INVITE_ONLY group, joined without an invite.
    #[error("group {0} is invite-only: join with an invite code or ask a member to add you")]
    InviteOnly(GroupId),
    /// The group's state does not allow this (e.g. the join policy); `kind` tags it.
    #[error("{message}")]
    FailedPrecondition {
        /// The `ErrorInfo` reason.
        reason: ErrorReason,
        /// A short upper-case tag (the `PreconditionFailure` type), e.g. `OWNER`.
        kind: &'static str,
        /// What is wrong and what to do instead.
        message: String,
    },
    /// A FOLLOWERS_ONLY group, and the caller does not follow its owner.
    #[error(
        "group {group} admits only followers of its owner: follow user {owner}, then join (or join with an invite code)"
    )]
    NotAFollower {
        /// The group.
        group: GroupId,
        /// Its owner, whom the caller would have to follow.
        owner: UserId,
    },
    /// A FOLLOWERS_ONLY group with a minimum follow age, and the caller has not followed its
    /// owner for that long yet.
    #[error(
        "group {group} admits only users who have followed its owner, user {owner}, for at least \
         {min_follow_age_seconds} seconds; you may join from {}",
        joinable_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )]
    FollowTooRecent {
        /// The group.
        group: GroupId,
        /// Its owner.
        owner: UserId,
        /// The group's minimum follow age.
        min_follow_age_seconds: u32,
        /// When the caller's follow will be old enough.
        joinable_at: DateTime<Utc>,
    },
    /// The fanout service could not say whether the caller follows the owner.
    #[error(transparent)]
    FollowGraph(#[from] FollowGraphError),
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
            GroupsError::PermissionDenied(_) => {
                status::new(Code::PermissionDenied, ErrorReason::PermissionDenied, message)
            }
            GroupsError::NotAMember { group, user } => {
                status::new(Code::PermissionDenied, about(ErrorReason::NotAMember, group, user), message)
            }
            GroupsError::InviteOnly(group) => {
                let reason = Reason::new(ErrorReason::InviteRequired).with("group_id", group);
                status::new(Code::PermissionDenied, reason, message)
            }
            GroupsError::FailedPrecondition { reason, kind, .. } => {
                status::failed_precondition(reason, message, kind, "group")
            }
            GroupsError::RateLimited { user, retry_after } => status::resource_exhausted(
                Reason::new(ErrorReason::RateLimited).with("user_id", user),
                message,
                format!("user:{user}"),
                Some(retry_after),
            ),
            GroupsError::MembershipNotFound { group, user } => {
                status::new(Code::NotFound, about(ErrorReason::MemberNotFound, group, user), message)
            }
            GroupsError::NotAFollower { group, owner } => status::failed_precondition(
                Reason::new(ErrorReason::NotAFollower).with("group_id", group).with("owner_user_id", owner),
                message,
                "NOT_A_FOLLOWER",
                format!("user:{owner}"),
            ),
            GroupsError::FollowTooRecent { group, owner, joinable_at, .. } => status::failed_precondition(
                Reason::new(ErrorReason::FollowTooRecent)
                    .with("group_id", group)
                    .with("owner_user_id", owner)
                    .with("joinable_at", joinable_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
                message,
                "FOLLOW_TOO_RECENT",
                format!("user:{owner}"),
            ),
            GroupsError::FollowGraph(follows) => follow_graph_status(follows),
            GroupsError::Store(store) => store_status(store, message),
        }
    }
}

fn follow_graph_status(error: FollowGraphError) -> Status {
    match error {
        FollowGraphError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "fanout service unavailable for a follow check");
            status::unavailable("the follow graph (fanout service)")
        }
        FollowGraphError::Failed(cause) => {
            tracing::error!(error = ?cause, "follow check failed");
            status::internal()
        }
    }
}

/// `reason`, about `user` in `group`.
fn about(reason: ErrorReason, group: GroupId, user: UserId) -> Reason {
    Reason::new(reason).with("group_id", group).with("user_id", user)
}

fn store_status(error: StoreError, message: String) -> Status {
    match error {
        StoreError::GroupNotFound(group) => {
            status::new(Code::NotFound, Reason::new(ErrorReason::GroupNotFound).with("group_id", group), message)
        }
        StoreError::JoinRequestNotFound { group, user } => {
            status::new(Code::NotFound, about(ErrorReason::JoinRequestNotFound, group, user), message)
        }
        StoreError::InviteNotFound => status::new(Code::NotFound, ErrorReason::InviteNotFound, message),
        StoreError::NotBanned { group, user } => {
            status::new(Code::NotFound, about(ErrorReason::BanNotFound, group, user), message)
        }
        StoreError::NotMember { group, user } => {
            status::new(Code::NotFound, about(ErrorReason::MemberNotFound, group, user), message)
        }
        StoreError::Banned { group, user } => {
            status::new(Code::PermissionDenied, about(ErrorReason::Banned, group, user), message)
        }
        StoreError::Archived(group) => status::failed_precondition(
            Reason::new(ErrorReason::GroupArchived).with("group_id", group),
            message,
            "ARCHIVED",
            format!("group:{group}"),
        ),
        StoreError::OwnerImmovable(group) => status::failed_precondition(
            Reason::new(ErrorReason::OwnerImmovable).with("group_id", group),
            message,
            "OWNER",
            format!("group:{group}"),
        ),
        StoreError::InviteExpired(_) => {
            status::failed_precondition(ErrorReason::InviteExpired, message, "INVITE_EXPIRED", "invite")
        }
        StoreError::InviteRevoked => {
            status::failed_precondition(ErrorReason::InviteRevoked, message, "INVITE_REVOKED", "invite")
        }
        StoreError::InviteExhausted(_) => {
            status::failed_precondition(ErrorReason::InviteExhausted, message, "INVITE_EXHAUSTED", "invite")
        }
        // Waiting does not help a limit: no retry delay.
        StoreError::GroupFull { group, limit } => status::resource_exhausted(
            Reason::new(ErrorReason::GroupFull).with("group_id", group).with("limit", limit),
            message,
            format!("group:{group}:members"),
            None,
        ),
        StoreError::UserGroupLimit { user, limit } => status::resource_exhausted(
            Reason::new(ErrorReason::UserGroupLimit).with("user_id", user).with("limit", limit),
            message,
            format!("user:{user}:groups"),
            None,
        ),
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
    use tonic_types::StatusExt;

    #[test]
    fn internal_causes_are_not_sent() {
        let error = GroupsError::Store(StoreError::Internal(anyhow::anyhow!("secret table name")));
        let status = Status::from(error);
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status::reason_of(&status), Some(ErrorReason::Internal));
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn not_found_and_permission_denied_say_which_by_their_reason() {
        let group = GroupId::from_trusted(4);
        let user = UserId::from_trusted(7);
        let cases = [
            (GroupsError::Store(StoreError::GroupNotFound(group)), Code::NotFound, ErrorReason::GroupNotFound),
            (GroupsError::MembershipNotFound { group, user }, Code::NotFound, ErrorReason::MemberNotFound),
            (GroupsError::Store(StoreError::NotBanned { group, user }), Code::NotFound, ErrorReason::BanNotFound),
            (GroupsError::NotAMember { group, user }, Code::PermissionDenied, ErrorReason::NotAMember),
            (GroupsError::PermissionDenied("role".into()), Code::PermissionDenied, ErrorReason::PermissionDenied),
            (GroupsError::Store(StoreError::Banned { group, user }), Code::PermissionDenied, ErrorReason::Banned),
            (GroupsError::InviteOnly(group), Code::PermissionDenied, ErrorReason::InviteRequired),
        ];
        for (error, code, reason) in cases {
            let status = Status::from(error);
            assert_eq!((status.code(), status::reason_of(&status)), (code, Some(reason)), "{status:?}");
        }
        let status = Status::from(GroupsError::NotAMember { group, user });
        assert_eq!(status.message(), "user 7 is not a member of group 4");
        let info = status.get_error_details().error_info().cloned().expect("an ErrorInfo");
        assert_eq!(info.metadata.get("group_id").map(String::as_str), Some("4"));
        assert_eq!(info.metadata.get("user_id").map(String::as_str), Some("7"));
    }

    #[test]
    fn follow_refusals_name_the_owner_and_when_to_come_back() {
        let group = GroupId::from_trusted(4);
        let owner = UserId::from_trusted(7);
        let refused = Status::from(GroupsError::NotAFollower { group, owner });
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert_eq!(status::reason_of(&refused), Some(ErrorReason::NotAFollower));
        assert!(refused.message().contains("follow user 7"), "{}", refused.message());
        let joinable_at = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let early = GroupsError::FollowTooRecent { group, owner, min_follow_age_seconds: 60, joinable_at };
        let early = Status::from(early);
        assert_eq!(early.code(), Code::FailedPrecondition);
        assert_eq!(status::reason_of(&early), Some(ErrorReason::FollowTooRecent));
        assert!(early.message().contains("2030-03-17T17:46:40Z"), "{}", early.message());
    }

    #[test]
    fn an_unavailable_follow_graph_asks_for_a_retry_and_hides_the_cause() {
        #[allow(clippy::disallowed_methods, reason = "tonic's client makes this one")]
        let cause = tonic::Status::unavailable("tcp connect error 10.0.0.3");
        let status = Status::from(GroupsError::FollowGraph(FollowGraphError::Unavailable(cause)));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status::reason_of(&status), Some(ErrorReason::DependencyUnavailable));
        assert!(!status.message().contains("10.0.0.3"));
        let failed = FollowGraphError::Failed(anyhow::anyhow!("bad token"));
        assert_eq!(Status::from(GroupsError::FollowGraph(failed)).code(), Code::Internal);
    }

    #[test]
    fn limits_are_resource_exhausted() {
        let group = GroupId::from_trusted(1);
        let status = Status::from(GroupsError::Store(StoreError::GroupFull { group, limit: 32 }));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status::reason_of(&status), Some(ErrorReason::GroupFull));
        assert!(status.message().contains("32"));
    }
}
