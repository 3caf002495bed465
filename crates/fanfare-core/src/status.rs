//! Building `tonic::Status` values with rich error details (`google.rpc` BadRequest,
//! RetryInfo, QuotaFailure, PreconditionFailure) that grpcurl and clients can decode.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::validation::InvalidRequest;

/// `INVALID_ARGUMENT` carrying one field violation per bad field, up to
/// [`MAX_REPORTED_VIOLATIONS`](crate::validation::MAX_REPORTED_VIOLATIONS) and one counting
/// the rest; the message spells out only the first few, so the whole error stays a few KiB
/// whatever the request held.
pub fn invalid_argument(invalid: &InvalidRequest) -> Status {
    let mut details = ErrorDetails::new();
    for violation in invalid.reported() {
        details.add_bad_request_violation(violation.field, violation.description);
    }
    Status::with_error_details(Code::InvalidArgument, invalid.to_string(), details)
}

/// `RESOURCE_EXHAUSTED` for a limit; with `retry_after` when waiting will help.
pub fn resource_exhausted(
    message: impl Into<String>,
    subject: impl Into<String>,
    retry_after: Option<Duration>,
) -> Status {
    let message = message.into();
    let mut details = ErrorDetails::new();
    details.add_quota_failure_violation(subject, message.clone());
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// `FAILED_PRECONDITION` naming the violated precondition (`kind` is a short
/// upper-case tag such as `ARCHIVED`, `subject` what it is about).
pub fn failed_precondition(message: impl Into<String>, kind: impl Into<String>, subject: impl Into<String>) -> Status {
    let message = message.into();
    let mut details = ErrorDetails::new();
    details.add_precondition_failure_violation(kind, subject, message.clone());
    Status::with_error_details(Code::FailedPrecondition, message, details)
}

/// `UNAVAILABLE` for a dependency that is down; the cause is logged, not sent.
pub fn unavailable(dependency: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.set_retry_info(Some(Duration::from_secs(1)));
    Status::with_error_details(
        Code::Unavailable,
        format!("{dependency} is unavailable; nothing was changed, retry later"),
        details,
    )
}

/// `INTERNAL` with no detail: the cause is logged where this is built, never sent.
pub fn internal() -> Status {
    Status::internal("internal error; it has been logged")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::FieldViolation;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let invalid = InvalidRequest::from(FieldViolation::new("title", "must not be empty"));
        let status = invalid_argument(&invalid);
        assert_eq!(status.code(), Code::InvalidArgument);
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
        let status = resource_exhausted("slow down", "user:1", Some(Duration::from_secs(3)));
        let details = status.get_error_details();
        let retry = details.retry_info().expect("retry info");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(3)));
    }
}
