//! Helpers for the black-box tests: status assertions and a macro that runs one test body
//! against every storage.

use fanfare_core::status::{ERROR_DOMAIN, ErrorReason, reason_of};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Codes only a server makes (a client's own failures are UNAVAILABLE, DEADLINE_EXCEEDED,
/// CANCELLED, UNKNOWN, and RESOURCE_EXHAUSTED or INTERNAL for messages it will not send or
/// read): a status of one of them must carry a Fanfare `ErrorInfo`.
const SERVER_ONLY_CODES: [Code; 6] = [
    Code::InvalidArgument,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::FailedPrecondition,
    Code::Unauthenticated,
];

/// Asserts a call failed with `code`, returning the status for further checks. A status of a
/// code only servers make must carry an `ErrorInfo` reason of ours.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            if SERVER_ONLY_CODES.contains(&code) {
                expect_some_reason(&status);
            }
            status
        }
    }
}

/// Asserts a call failed with `code` and an `ErrorInfo` of `reason` (domain `fanfare.io`),
/// returning the status for further checks.
#[track_caller]
pub fn expect_reason<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, reason: ErrorReason) -> Status {
    let status = expect_code(result, code);
    assert_eq!(reason_of(&status), Some(reason), "unexpected reason: {status:?}");
    status
}

/// Asserts `status` carries an `ErrorInfo` of ours, whatever its reason.
#[track_caller]
pub fn expect_some_reason(status: &Status) -> ErrorReason {
    let details = status.get_error_details();
    let info = details.error_info().unwrap_or_else(|| panic!("an ErrorInfo detail: {status:?}"));
    assert_eq!(info.domain, ERROR_DOMAIN, "{status:?}");
    reason_of(status).unwrap_or_else(|| panic!("a known reason: {status:?}"))
}

/// The `ErrorInfo` metadata entry `key` of `status`.
#[track_caller]
pub fn error_metadata(status: &Status, key: &str) -> String {
    let details = status.get_error_details();
    let info = details.error_info().unwrap_or_else(|| panic!("an ErrorInfo detail: {status:?}"));
    info.metadata.get(key).cloned().unwrap_or_else(|| panic!("`{key}` in the ErrorInfo metadata: {status:?}"))
}

/// Asserts a call failed with `INVALID_ARGUMENT` naming `field` among its field violations.
#[track_caller]
pub fn expect_field_violation<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> Status {
    let status = expect_reason(result, Code::InvalidArgument, ErrorReason::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<String> = details
        .bad_request()
        .map(|bad_request| bad_request.field_violations.iter().map(|violation| violation.field.clone()).collect())
        .unwrap_or_default();
    assert!(
        fields.iter().any(|name| name == field),
        "expected a violation of `{field}`, got {fields:?} ({})",
        status.message()
    );
    status
}

/// Stamps out one `#[tokio::test]` per storage for an `async fn(Storage)` test body.
#[macro_export]
macro_rules! on_every_storage {
    ($($name:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(fanfare_testkit::Storage::Memory).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(fanfare_testkit::Storage::Postgres).await;
                }
            )+
        }
    };
}

pub mod abuse;
pub mod fanout;
pub mod fanout_jobs;
pub mod live;
pub mod messages;
pub mod outage;
pub mod proxy;

/// Helpers for the groups service tests: spawning, common calls and outbox reading.
pub mod groups {
    use std::time::{SystemTime, UNIX_EPOCH};

    use fanfare_core::status::ErrorReason;
    use fanfare_groups::GroupsConfig;
    use fanfare_proto::common::v1 as common;
    use fanfare_proto::common::v1::group_event::Change;
    use fanfare_proto::groups::v1 as pb;
    use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
    use fanfare_proto::prost::Message;
    use fanfare_proto::prost_types::Timestamp;
    use fanfare_testkit::{Storage, TestGroups, as_user};
    use tonic::transport::Channel;
    use tonic::{Code, Status};
    use tonic_types::StatusExt;

    use crate::expect_code;

    /// A connected groups client.
    pub type Client = GroupServiceClient<Channel>;

    /// Starts the groups service with the dev configuration and connects to it.
    pub async fn start(storage: Storage) -> (TestGroups, Client) {
        start_with(storage, |_| {}).await
    }

    /// Starts the groups service after `adjust` has changed its configuration.
    pub async fn start_with(storage: Storage, adjust: impl FnOnce(&mut GroupsConfig)) -> (TestGroups, Client) {
        let service = TestGroups::spawn_with(storage, adjust).await.expect("the groups service starts");
        let client = service.client().await.expect("a client connects");
        (service, client)
    }

    /// Settings with the given join and post policies.
    pub fn settings(join_policy: common::JoinPolicy, post_policy: common::PostPolicy) -> pb::GroupSettings {
        pb::GroupSettings {
            join_policy: join_policy as i32,
            slow_mode_seconds: 0,
            history_visible_to_new_members: true,
            post_policy: post_policy as i32,
            min_follow_age_seconds: 0,
        }
    }

    /// Creates a group of `kind` with its default settings, owned by `owner`.
    pub async fn create(client: &mut Client, owner: i64, kind: common::GroupKind) -> pb::Group {
        let request =
            pb::CreateGroupRequest { kind: kind as i32, title: format!("{kind:?} of {owner}"), ..Default::default() };
        created(client.create_group(as_user(owner, request)).await)
    }

    /// Creates a group of `kind` with `join_policy` and the kind's usual post policy.
    pub async fn create_with_policy(
        client: &mut Client,
        owner: i64,
        kind: common::GroupKind,
        join_policy: common::JoinPolicy,
    ) -> pb::Group {
        let post_policy = match kind {
            common::GroupKind::Broadcast => common::PostPolicy::AdminsOnly,
            _ => common::PostPolicy::AllMembers,
        };
        let request = pb::CreateGroupRequest {
            kind: kind as i32,
            title: format!("{kind:?} of {owner}"),
            settings: Some(settings(join_policy, post_policy)),
            ..Default::default()
        };
        created(client.create_group(as_user(owner, request)).await)
    }

    fn created(result: Result<tonic::Response<pb::CreateGroupResponse>, Status>) -> pb::Group {
        result.expect("CreateGroup succeeds").into_inner().group.expect("the new group is returned")
    }

    /// Adds `users` to `group_id` as `actor`, expecting success.
    pub async fn add(client: &mut Client, actor: i64, group_id: i64, users: &[i64]) -> pb::AddMembersResponse {
        let request = pb::AddMembersRequest { group_id, user_ids: users.to_vec() };
        client.add_members(as_user(actor, request)).await.expect("AddMembers succeeds").into_inner()
    }

    /// Sets `user`'s role as `owner`, expecting success.
    pub async fn set_role(client: &mut Client, owner: i64, group_id: i64, user_id: i64, role: common::Role) {
        let request = pb::SetMemberRoleRequest { group_id, user_id, role: role as i32 };
        client.set_member_role(as_user(owner, request)).await.expect("SetMemberRole succeeds");
    }

    /// Reads a group as `actor`, expecting success.
    pub async fn get(client: &mut Client, actor: i64, group_id: i64) -> pb::Group {
        client
            .get_group(as_user(actor, pb::GetGroupRequest { group_id }))
            .await
            .expect("GetGroup succeeds")
            .into_inner()
            .group
            .expect("the group is returned")
    }

    /// `user`'s own membership of `group_id` (everyone may read their own), if any.
    pub async fn membership(client: &mut Client, group_id: i64, user_id: i64) -> Option<pb::Membership> {
        let request = pb::GetMembershipRequest { group_id, user_id: 0 };
        match client.get_membership(as_user(user_id, request)).await {
            Ok(response) => response.into_inner().membership,
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => panic!("GetMembership failed: {status:?}"),
        }
    }

    /// `user`'s role in `group_id`, or `None` when not a member.
    pub async fn role_of(client: &mut Client, group_id: i64, user_id: i64) -> Option<common::Role> {
        let found = membership(client, group_id, user_id).await?;
        Some(common::Role::try_from(found.role).expect("a known role"))
    }

    /// Creates an invite as `actor` with the default lifetime, expecting success.
    pub async fn invite(client: &mut Client, actor: i64, group_id: i64, max_uses: i32) -> pb::Invite {
        let request = pb::CreateInviteRequest { group_id, ttl_seconds: 0, max_uses };
        client
            .create_invite(as_user(actor, request))
            .await
            .expect("CreateInvite succeeds")
            .into_inner()
            .invite
            .expect("the invite is returned")
    }

    /// Every outbox event so far, decoded, in outbox order.
    pub async fn events(service: &TestGroups) -> Vec<common::GroupEvent> {
        let entries = service.store.read_outbox(0, 100_000).await.expect("the outbox reads");
        let ids: Vec<i64> = entries.iter().map(|entry| entry.id).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "outbox ids increase: {ids:?}");
        entries
            .iter()
            .map(|entry| common::GroupEvent::decode(entry.payload.as_slice()).expect("a GroupEvent"))
            .collect()
    }

    /// The number of outbox rows so far.
    pub async fn outbox_len(service: &TestGroups) -> usize {
        events(service).await.len()
    }

    /// A short name for an event's change, for comparing sequences.
    pub fn change_name(event: &common::GroupEvent) -> &'static str {
        match event.change.as_ref().expect("every event carries a change") {
            Change::GroupCreated(_) => "created",
            Change::MemberJoined(_) => "joined",
            Change::MemberLeft(_) => "left",
            Change::MemberRemoved(_) => "removed",
            Change::MemberBanned(_) => "banned",
            Change::MemberUnbanned(_) => "unbanned",
            Change::MemberMuted(_) => "muted",
            Change::MemberUnmuted(_) => "unmuted",
            Change::MemberRoleChanged(_) => "role_changed",
            Change::OwnershipTransferred(_) => "ownership_transferred",
            Change::GroupSettingsChanged(_) => "settings_changed",
            Change::GroupArchived(_) => "archived",
        }
    }

    /// The change names of `events`, in order.
    pub fn change_names(events: &[common::GroupEvent]) -> Vec<&'static str> {
        events.iter().map(change_name).collect()
    }

    /// A wire timestamp `seconds` from now (negative for the past).
    pub fn seconds_from_now(seconds: i64) -> Timestamp {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after the epoch");
        let now_seconds = i64::try_from(now.as_secs()).expect("a sane clock");
        Timestamp { seconds: now_seconds + seconds, nanos: 0 }
    }

    /// The `ErrorInfo` reason of precondition failures of `kind` (the groups service's, and
    /// the messages service's, which share the `ARCHIVED` kind).
    fn precondition_reason(kind: &str) -> ErrorReason {
        match kind {
            "ARCHIVED" => ErrorReason::GroupArchived,
            "OWNER" => ErrorReason::OwnerImmovable,
            "INVITE_EXPIRED" => ErrorReason::InviteExpired,
            "INVITE_REVOKED" => ErrorReason::InviteRevoked,
            "INVITE_EXHAUSTED" => ErrorReason::InviteExhausted,
            "NOT_A_FOLLOWER" => ErrorReason::NotAFollower,
            "FOLLOW_TOO_RECENT" => ErrorReason::FollowTooRecent,
            "FOLLOWERS_ONLY_UNAVAILABLE" => ErrorReason::FollowersOnlyUnsupported,
            // The messages service's.
            "EDIT_WINDOW" => ErrorReason::EditWindowClosed,
            "DELETED" => ErrorReason::MessageDeleted,
            other => panic!("no groups precondition is of kind {other:?}"),
        }
    }

    /// Asserts `FAILED_PRECONDITION` whose precondition failure is of `kind`, with the
    /// `ErrorInfo` reason of that kind.
    #[track_caller]
    pub fn expect_precondition<T: std::fmt::Debug>(result: Result<T, Status>, kind: &str) -> Status {
        let status = crate::expect_reason(result, Code::FailedPrecondition, precondition_reason(kind));
        let details = status.get_error_details();
        let kinds: Vec<String> = details
            .precondition_failure()
            .map(|failure| failure.violations.iter().map(|violation| violation.r#type.clone()).collect())
            .unwrap_or_default();
        assert!(
            kinds.iter().any(|found| found == kind),
            "expected precondition `{kind}`, got {kinds:?} ({})",
            status.message()
        );
        status
    }

    /// Asserts `RESOURCE_EXHAUSTED` for a limit: a `QuotaFailure` and no retry delay.
    #[track_caller]
    pub fn expect_quota_failure<T: std::fmt::Debug>(result: Result<T, Status>) -> Status {
        let status = expect_code(result, Code::ResourceExhausted);
        crate::expect_some_reason(&status);
        let details = status.get_error_details();
        assert!(details.quota_failure().is_some(), "a QuotaFailure detail: {status:?}");
        assert!(details.retry_info().is_none(), "waiting does not help a limit: {status:?}");
        status
    }

    /// Asserts `INVALID_ARGUMENT` naming exactly `fields` (in any order).
    #[track_caller]
    pub fn expect_exact_violations<T: std::fmt::Debug>(result: Result<T, Status>, fields: &[&str]) -> Status {
        let status = crate::expect_reason(result, Code::InvalidArgument, ErrorReason::InvalidArgument);
        let details = status.get_error_details();
        let mut found: Vec<String> = details
            .bad_request()
            .map(|bad_request| bad_request.field_violations.iter().map(|violation| violation.field.clone()).collect())
            .unwrap_or_default();
        found.sort();
        let mut expected: Vec<String> = fields.iter().map(|field| (*field).to_owned()).collect();
        expected.sort();
        assert_eq!(found, expected, "field violations ({})", status.message());
        status
    }
}
