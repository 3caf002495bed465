//! Building every error `tonic::Status` the services return. Each carries a
//! `google.rpc.ErrorInfo` whose `domain` is [`ERROR_DOMAIN`] and whose `reason` names an
//! [`ErrorReason`] (its value name without the `ERROR_REASON_` prefix, as Google's APIs do),
//! beside the rich details (`google.rpc` BadRequest, RetryInfo, QuotaFailure,
//! PreconditionFailure) that grpcurl and clients decode. Every builder takes the reason, or
//! implies it where the code has only one (`invalid_argument`, `internal`, `unavailable`), so
//! no call site can leave it out; clippy (`clippy.toml`) refuses tonic's own constructors
//! elsewhere. The reasons and what callers do about them: `docs/callers.md`, "Errors".

use std::collections::HashMap;
use std::fmt::Display;
use std::time::Duration;

pub use fanfare_proto::common::v1::ErrorReason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::validation::InvalidRequest;

/// The `domain` of every `ErrorInfo` Fanfare sends.
pub const ERROR_DOMAIN: &str = "fanfare.io";

/// What every [`ErrorReason`] value name begins with, and its `ErrorInfo` reason does not.
const REASON_PREFIX: &str = "ERROR_REASON_";

/// The `ErrorInfo` metadata key of a retry delay, in whole milliseconds.
pub const RETRY_AFTER_MS_KEY: &str = "retry_after_ms";

/// How long a caller is told to wait before retrying an unavailable dependency.
const DEPENDENCY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The `ErrorInfo` reason of `reason`: its value name without `ERROR_REASON_`
/// (`GROUP_NOT_FOUND` for [`ErrorReason::GroupNotFound`]).
pub fn reason_name(reason: ErrorReason) -> &'static str {
    let name = reason.as_str_name();
    name.strip_prefix(REASON_PREFIX).unwrap_or(name)
}

/// The reason of a status a Fanfare service made: `None` when it carries no `ErrorInfo` of
/// [`ERROR_DOMAIN`], or one naming a reason this build does not know.
pub fn reason_of(status: &Status) -> Option<ErrorReason> {
    let details = status.get_error_details();
    let info = details.error_info()?;
    if info.domain != ERROR_DOMAIN {
        return None;
    }
    ErrorReason::from_str_name(&format!("{REASON_PREFIX}{}", info.reason))
}

/// Why a call failed, and what the `ErrorInfo` metadata says about it (`group_id`,
/// `user_id`, `retry_after_ms`, … where known). Every builder takes `impl Into<Reason>`, so
/// a bare [`ErrorReason`] does where there is nothing to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    reason: ErrorReason,
    metadata: HashMap<String, String>,
}

impl Reason {
    /// `reason` with no metadata.
    pub fn new(reason: ErrorReason) -> Self {
        debug_assert!(reason != ErrorReason::Unspecified, "ERROR_REASON_UNSPECIFIED is never sent");
        Self { reason, metadata: HashMap::new() }
    }

    /// Adds a metadata entry (`key` in snake case, such as `group_id`).
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Display) -> Self {
        self.metadata.insert(key.to_owned(), value.to_string());
        self
    }

    /// The reason.
    pub fn reason(&self) -> ErrorReason {
        self.reason
    }
}

impl From<ErrorReason> for Reason {
    fn from(reason: ErrorReason) -> Self {
        Self::new(reason)
    }
}

/// A status of `code` for `reason`, with no other detail.
pub fn new(code: Code, reason: impl Into<Reason>, message: impl Into<String>) -> Status {
    with_details(code, reason, message, ErrorDetails::new())
}

/// A status of `code` for `reason` with other `details` beside its `ErrorInfo`.
#[allow(clippy::disallowed_methods, reason = "the one place a status is built with its ErrorInfo")]
pub fn with_details(
    code: Code,
    reason: impl Into<Reason>,
    message: impl Into<String>,
    mut details: ErrorDetails,
) -> Status {
    let Reason { reason, metadata } = reason.into();
    debug_assert!(code != Code::Ok, "an error status");
    details.set_error_info(reason_name(reason), ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// `INVALID_ARGUMENT` (reason `INVALID_ARGUMENT`) carrying one field violation per bad
/// field, up to [`MAX_REPORTED_VIOLATIONS`](crate::validation::MAX_REPORTED_VIOLATIONS) and
/// one counting the rest; the message spells out only the first few, so the whole error
/// stays a few KiB whatever the request held.
pub fn invalid_argument(invalid: &InvalidRequest) -> Status {
    let mut details = ErrorDetails::new();
    for violation in invalid.reported() {
        details.add_bad_request_violation(violation.field, violation.description);
    }
    with_details(Code::InvalidArgument, ErrorReason::InvalidArgument, invalid.to_string(), details)
}

/// `RESOURCE_EXHAUSTED` for a limit (`subject` names it in a `QuotaFailure`); with
/// `retry_after` (a `RetryInfo`, and `retry_after_ms` in the `ErrorInfo`) when waiting will
/// help.
pub fn resource_exhausted(
    reason: impl Into<Reason>,
    message: impl Into<String>,
    subject: impl Into<String>,
    retry_after: Option<Duration>,
) -> Status {
    let message = message.into();
    let mut reason = reason.into();
    let mut details = ErrorDetails::new();
    details.add_quota_failure_violation(subject, message.clone());
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
        reason = reason.with(RETRY_AFTER_MS_KEY, delay.as_millis());
    }
    with_details(Code::ResourceExhausted, reason, message, details)
}

/// `FAILED_PRECONDITION` naming the violated precondition in a `PreconditionFailure`
/// (`kind` is a short upper-case tag such as `ARCHIVED`, `subject` what it is about).
pub fn failed_precondition(
    reason: impl Into<Reason>,
    message: impl Into<String>,
    kind: impl Into<String>,
    subject: impl Into<String>,
) -> Status {
    let message = message.into();
    let mut details = ErrorDetails::new();
    details.add_precondition_failure_violation(kind, subject, message.clone());
    with_details(Code::FailedPrecondition, reason, message, details)
}

/// `UNAVAILABLE` (reason `DEPENDENCY_UNAVAILABLE`) for a dependency that is down, with a
/// retry delay; the cause is logged, not sent.
pub fn unavailable(dependency: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.set_retry_info(Some(DEPENDENCY_RETRY_AFTER));
    let reason =
        Reason::new(ErrorReason::DependencyUnavailable).with(RETRY_AFTER_MS_KEY, DEPENDENCY_RETRY_AFTER.as_millis());
    with_details(
        Code::Unavailable,
        reason,
        format!("{dependency} is unavailable; nothing was changed, retry later"),
        details,
    )
}

/// `INTERNAL` (reason `INTERNAL`) with no other detail: the cause is logged where this is
/// built, never sent.
pub fn internal() -> Status {
    new(Code::Internal, ErrorReason::Internal, "internal error; it has been logged")
}

/// `status` as it is when it carries a Fanfare reason; otherwise the same code, message,
/// details and metadata with an `ErrorInfo` of `fallback` added. For statuses passed on from
/// elsewhere: another Fanfare service's answer keeps its reason, while one tonic's client
/// made (a broken connection, a deadline) gets one.
#[allow(clippy::disallowed_methods, reason = "keeps the status' own code, message and metadata")]
pub fn with_reason_if_missing(status: Status, fallback: impl Into<Reason>) -> Status {
    if reason_of(&status).is_some() {
        return status;
    }
    let Reason { reason, metadata } = fallback.into();
    let mut details = status.get_error_details();
    details.set_error_info(reason_name(reason), ERROR_DOMAIN, metadata);
    Status::with_error_details_and_metadata(status.code(), status.message(), details, status.metadata().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::FieldViolation;

    /// The `ErrorInfo` of `status`, which every builder adds.
    fn error_info(status: &Status) -> tonic_types::ErrorInfo {
        status.get_error_details().error_info().cloned().expect("an ErrorInfo")
    }

    #[test]
    fn reasons_are_sent_without_their_prefix_and_read_back() {
        assert_eq!(reason_name(ErrorReason::GroupNotFound), "GROUP_NOT_FOUND");
        let status = new(Code::NotFound, ErrorReason::GroupNotFound, "group 4 does not exist");
        let info = error_info(&status);
        assert_eq!((info.reason.as_str(), info.domain.as_str()), ("GROUP_NOT_FOUND", ERROR_DOMAIN));
        assert_eq!(reason_of(&status), Some(ErrorReason::GroupNotFound));
        #[allow(clippy::disallowed_methods, reason = "a status from elsewhere")]
        let foreign = Status::not_found("no ErrorInfo");
        assert_eq!(reason_of(&foreign), None);
    }

    #[test]
    fn new_keeps_code_message_and_metadata() {
        let reason = Reason::new(ErrorReason::NotAMember).with("group_id", 4).with("user_id", 7);
        let status = new(Code::PermissionDenied, reason, "user 7 is not a member of group 4");
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "user 7 is not a member of group 4");
        let info = error_info(&status);
        assert_eq!(info.reason, "NOT_A_MEMBER");
        assert_eq!(info.metadata.get("group_id").map(String::as_str), Some("4"));
        assert_eq!(info.metadata.get("user_id").map(String::as_str), Some("7"));
    }

    #[test]
    fn with_details_keeps_the_other_details_beside_the_error_info() {
        let mut details = ErrorDetails::new();
        details.set_retry_info(Some(Duration::from_millis(250)));
        let status = with_details(Code::Unavailable, ErrorReason::ShuttingDown, "closing", details);
        assert_eq!(reason_of(&status), Some(ErrorReason::ShuttingDown));
        let retry = status.get_error_details().retry_info().cloned().expect("the retry info is kept");
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(250)));
    }

    #[test]
    fn invalid_argument_carries_field_violations() {
        let invalid = InvalidRequest::from(FieldViolation::new("title", "must not be empty"));
        let status = invalid_argument(&invalid);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&status), Some(ErrorReason::InvalidArgument));
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request detail");
        assert_eq!(bad_request.field_violations[0].field, "title");
    }

    #[test]
    fn a_thousand_violations_make_an_error_of_a_few_kib() {
        let many = (0..1_000).map(|index| FieldViolation::new(format!("user_ids[{index}]"), "x".repeat(1_000)));
        let status = invalid_argument(&InvalidRequest::new(many.collect()));
        let bad_request = status.get_error_details().bad_request().cloned().expect("bad request detail");
        assert_eq!(bad_request.field_violations.len(), crate::validation::MAX_REPORTED_VIOLATIONS + 1);
        let mut trailers = http::HeaderMap::new();
        status.add_header(&mut trailers).expect("encodable");
        let size: usize = trailers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
        assert!(size < 8 * 1024, "{size} bytes of trailers");
    }

    #[test]
    fn resource_exhausted_carries_retry_delay() {
        let status = resource_exhausted(ErrorReason::RateLimited, "slow down", "user:1", Some(Duration::from_secs(3)));
        let details = status.get_error_details();
        let retry = details.retry_info().expect("retry info");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(3)));
        let info = error_info(&status);
        assert_eq!(info.reason, "RATE_LIMITED");
        assert_eq!(info.metadata.get(RETRY_AFTER_MS_KEY).map(String::as_str), Some("3000"));

        let limit = resource_exhausted(ErrorReason::GroupFull, "group 1 is full", "group:1:members", None);
        assert_eq!(reason_of(&limit), Some(ErrorReason::GroupFull));
        assert!(limit.get_error_details().retry_info().is_none());
        assert!(!error_info(&limit).metadata.contains_key(RETRY_AFTER_MS_KEY));
    }

    #[test]
    fn failed_precondition_names_the_condition() {
        let status = failed_precondition(ErrorReason::GroupArchived, "group 2 is archived", "ARCHIVED", "group:2");
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(reason_of(&status), Some(ErrorReason::GroupArchived));
        let failure = status.get_error_details().precondition_failure().cloned().expect("a precondition failure");
        assert_eq!(
            (failure.violations[0].r#type.as_str(), failure.violations[0].subject.as_str()),
            ("ARCHIVED", "group:2")
        );
    }

    #[test]
    fn unavailable_asks_for_a_retry() {
        let status = unavailable("the groups database");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(reason_of(&status), Some(ErrorReason::DependencyUnavailable));
        assert_eq!(
            status.get_error_details().retry_info().and_then(|retry| retry.retry_delay),
            Some(DEPENDENCY_RETRY_AFTER)
        );
        assert_eq!(error_info(&status).metadata.get(RETRY_AFTER_MS_KEY).map(String::as_str), Some("1000"));
    }

    #[test]
    fn internal_says_nothing_but_its_reason() {
        let status = internal();
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(reason_of(&status), Some(ErrorReason::Internal));
    }

    #[test]
    fn a_reason_is_added_only_where_missing() {
        let ours = new(Code::NotFound, ErrorReason::GroupNotFound, "gone");
        assert_eq!(reason_of(&with_reason_if_missing(ours, ErrorReason::Internal)), Some(ErrorReason::GroupNotFound));

        let mut details = ErrorDetails::new();
        details.set_retry_info(Some(Duration::from_millis(5)));
        #[allow(clippy::disallowed_methods, reason = "a status from elsewhere")]
        let mut foreign = Status::with_error_details(Code::Unavailable, "connection refused", details);
        foreign.metadata_mut().insert("x-request-id", "r1".parse().expect("ascii"));
        let passed = with_reason_if_missing(foreign, ErrorReason::DependencyUnavailable);
        assert_eq!((passed.code(), passed.message()), (Code::Unavailable, "connection refused"));
        assert_eq!(reason_of(&passed), Some(ErrorReason::DependencyUnavailable));
        assert!(passed.get_error_details().retry_info().is_some(), "its own details are kept");
        assert_eq!(passed.metadata().get("x-request-id").and_then(|value| value.to_str().ok()), Some("r1"));
    }

    /// Every reason the protos declare is in the table of `docs/callers.md` ("Errors"), and
    /// the table names no other. A row whose last column says "reserved" is a reason no code
    /// produces; every other reason is produced somewhere in the workspace's sources.
    #[test]
    fn every_reason_is_documented_and_produced_unless_reserved() {
        let doc = include_str!("../../../docs/callers.md");
        let rows: HashMap<&str, &str> = doc
            .lines()
            .filter_map(|line| {
                let first = line.strip_prefix("| `")?;
                let (name, _) = first.split_once('`')?;
                Some((name, line))
            })
            .collect();
        let sources = workspace_sources();
        let mut declared = Vec::new();
        for value in 1..1_000 {
            let Ok(reason) = ErrorReason::try_from(value) else { continue };
            let name = reason_name(reason);
            declared.push(name);
            let row = rows.get(name).unwrap_or_else(|| panic!("docs/callers.md has no row for `{name}`"));
            let produced = sources.contains(&format!("ErrorReason::{reason:?}"));
            let reserved = row.trim_end_matches(['|', ' ']).to_lowercase().ends_with("reserved");
            assert!(
                produced != reserved,
                "`{name}`: produced in the sources: {produced}, documented as reserved: {reserved}"
            );
        }
        for name in rows.keys() {
            assert!(declared.contains(name), "docs/callers.md lists `{name}`, which ErrorReason does not declare");
        }
    }

    /// The text of every `.rs` file under `crates/*/src`, each without its unit tests (the
    /// `#[cfg(test)] mod tests` that ends it).
    fn workspace_sources() -> String {
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut pending: Vec<std::path::PathBuf> = std::fs::read_dir(&crates)
            .expect("the crates directory")
            .map(|entry| entry.expect("an entry").path().join("src"))
            .collect();
        let mut text = String::new();
        while let Some(path) = pending.pop() {
            if path.is_dir() {
                pending.extend(
                    std::fs::read_dir(&path).expect("a directory").map(|entry| entry.expect("an entry").path()),
                );
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                let source = std::fs::read_to_string(&path).expect("a source file");
                text.push_str(without_unit_tests(&source));
            }
        }
        text
    }

    /// `source` up to its `#[cfg(test)]` unit-test module (the attribute, maybe others after
    /// it, then `mod tests`), or all of it.
    fn without_unit_tests(source: &str) -> &str {
        let mut searched = 0;
        while let Some(found) = source[searched..].find("#[cfg(test)]") {
            let start = searched + found;
            let after = source[start..].lines().skip(1).find(|line| !line.trim_start().starts_with("#["));
            if after.is_some_and(|line| line.trim_start().starts_with("mod tests")) {
                return &source[..start];
            }
            searched = start + 1;
        }
        source
    }
}
