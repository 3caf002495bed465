//! Over-size and malformed requests, as tonic's codec refuses them before any handler runs.
//!
//! Over-size: a request message past the decode limit
//! ([`MAX_DECODING_MESSAGE_SIZE`](crate::server::MAX_DECODING_MESSAGE_SIZE)) is refused by
//! tonic, before any handler runs, with OUT_OF_RANGE. gRPC's other implementations answer
//! RESOURCE_EXHAUSTED (the code gRPC documents for a message larger than the receiver
//! accepts), and callers retry or alert on codes, so this layer relabels exactly that answer:
//! RESOURCE_EXHAUSTED with a `QuotaFailure` naming the limit and no retry delay (sending the
//! same request again cannot help).
//!
//! Malformed: bytes that are not a protobuf message of the method's request type (a string
//! that is not UTF-8, a bad wire type, a length past the end) are answered INTERNAL by
//! tonic-prost, the code of a server fault: alerts fire and callers retry a request that can
//! never succeed. This layer answers them INVALID_ARGUMENT, the caller's fault.
//!
//! tonic answers both refusals as a trailers-only response carrying its [`Status`] in the
//! response's extensions; that status, OUT_OF_RANGE with tonic's "decoded message length too
//! large" message or INTERNAL with prost's "failed to decode Protobuf message", is what is
//! recognised.
//!
//! tonic's other answers of its own carry no `ErrorInfo` reason: UNIMPLEMENTED for a method
//! no service here has (its router answers that in the headers alone, without a [`Status`] in
//! the extensions) or an encoding it does not support, and INTERNAL for a request stream
//! without a message. This layer adds reason `UNIMPLEMENTED` or `INTERNAL` to them, keeping
//! code and message. Every other response passes untouched: the handlers' statuses carry
//! their reasons already, and health and reflection answer in their own terms.

use std::task::{Context, Poll};

use tonic::{Code, Status};
use tower::{Layer, Service};

use super::ResponseFuture;
use crate::status::ErrorReason;

/// How tonic's decoder begins the message of an over-size request.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: ";

/// How prost's decode error begins (tonic-prost answers it INTERNAL).
const PROST_DECODE_ERROR: &str = "failed to decode Protobuf message: ";

/// Longest reason of a malformed request kept in the answer (prost's reasons are short:
/// a description and the message and field names it was in).
const MAX_DECODE_REASON_BYTES: usize = 256;

/// The header of a trailers-only answer's code.
const GRPC_STATUS_HEADER: &str = "grpc-status";

/// The header of a trailers-only answer's details (a `google.rpc.Status`).
const GRPC_STATUS_DETAILS_HEADER: &str = "grpc-status-details-bin";

/// The quota subject of the refusal.
pub const MESSAGE_SIZE_SUBJECT: &str = "max_decoding_message_size";

/// Answers over-size requests RESOURCE_EXHAUSTED instead of tonic's OUT_OF_RANGE, and
/// malformed ones INVALID_ARGUMENT instead of INTERNAL.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageSizeLayer;

impl<S> Layer<S> for MessageSizeLayer {
    type Service = MessageSize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageSize { inner }
    }
}

/// The service [`MessageSizeLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct MessageSize<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for MessageSize<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let refusal = match response.extensions().get::<Status>() {
                Some(status) => too_large(status).or_else(|| malformed(status)).or_else(|| unreasoned(status)),
                // tonic's router answers a path it has no route for in headers alone.
                None => unrouted(response.headers()),
            };
            Ok(match refusal {
                Some(refusal) => refusal.into_http(),
                None => response,
            })
        })
    }
}

/// The RESOURCE_EXHAUSTED answer for tonic's refusal of an over-size request, if `status`
/// is that refusal.
fn too_large(status: &Status) -> Option<Status> {
    if status.code() != Code::OutOfRange {
        return None;
    }
    // "found N bytes, the limit is: M bytes"
    let sizes = status.message().strip_prefix(TONIC_TOO_LARGE)?;
    tracing::debug!(sizes, "refused an over-size request");
    Some(crate::status::resource_exhausted(
        ErrorReason::RequestTooLarge,
        format!("the request message is too large ({sizes}); send less in one call"),
        MESSAGE_SIZE_SUBJECT,
        None,
    ))
}

/// The INVALID_ARGUMENT answer for prost's refusal of a malformed request, if `status` is
/// that refusal.
fn malformed(status: &Status) -> Option<Status> {
    if status.code() != Code::Internal {
        return None;
    }
    let reason = status.message().strip_prefix(PROST_DECODE_ERROR)?;
    let mut end = reason.len().min(MAX_DECODE_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    tracing::debug!(reason, "refused a malformed request");
    Some(crate::status::new(
        Code::InvalidArgument,
        ErrorReason::MalformedRequest,
        format!("the request is not a valid message of this method: {}", &reason[..end]),
    ))
}

/// tonic's UNIMPLEMENTED or INTERNAL answer with an `ErrorInfo` reason added, if `status` is
/// one of those without a reason.
fn unreasoned(status: &Status) -> Option<Status> {
    let reason = match status.code() {
        Code::Unimplemented => ErrorReason::Unimplemented,
        Code::Internal => ErrorReason::Internal,
        _ => return None,
    };
    if crate::status::reason_of(status).is_some() {
        return None;
    }
    Some(crate::status::with_reason_if_missing(status.clone(), reason))
}

/// The UNIMPLEMENTED answer of tonic's router for a path no service has, with an `ErrorInfo`
/// reason added, if `headers` are that answer: it carries its status in the headers only, not
/// in the extensions.
fn unrouted(headers: &http::HeaderMap) -> Option<Status> {
    let code = Code::from_bytes(headers.get(GRPC_STATUS_HEADER)?.as_bytes());
    if code != Code::Unimplemented || headers.contains_key(GRPC_STATUS_DETAILS_HEADER) {
        return None;
    }
    let status = Status::from_header_map(headers)?;
    Some(crate::status::new(Code::Unimplemented, ErrorReason::Unimplemented, status.message()))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tonic's own refusals, as tonic builds them")]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn only_tonics_over_size_refusal_is_relabelled() {
        let refusal =
            Status::out_of_range(format!("{TONIC_TOO_LARGE}found 5000000 bytes, the limit is: 4194304 bytes"));
        let relabelled = too_large(&refusal).expect("relabelled");
        assert_eq!(relabelled.code(), Code::ResourceExhausted);
        assert_eq!(crate::status::reason_of(&relabelled), Some(ErrorReason::RequestTooLarge));
        assert!(relabelled.message().contains("found 5000000 bytes"), "{}", relabelled.message());
        let details = relabelled.get_error_details();
        assert_eq!(details.quota_failure().expect("a quota failure").violations[0].subject, MESSAGE_SIZE_SUBJECT);
        assert!(details.retry_info().is_none(), "resending cannot help");

        assert!(too_large(&Status::out_of_range("page_token is past the end")).is_none());
        assert!(too_large(&Status::invalid_argument(refusal.message())).is_none());
    }

    #[test]
    fn only_prosts_decode_refusal_is_relabelled() {
        let refusal = Status::internal(format!("{PROST_DECODE_ERROR}GetGroupRequest.title: invalid string value"));
        let relabelled = malformed(&refusal).expect("relabelled");
        assert_eq!(relabelled.code(), Code::InvalidArgument);
        assert_eq!(crate::status::reason_of(&relabelled), Some(ErrorReason::MalformedRequest));
        assert!(relabelled.message().ends_with("GetGroupRequest.title: invalid string value"), "{relabelled:?}");

        let long = Status::internal(format!("{PROST_DECODE_ERROR}{}", "é".repeat(1_000)));
        assert!(malformed(&long).expect("relabelled").message().len() < 2 * MAX_DECODE_REASON_BYTES);
        assert!(malformed(&Status::internal("the store failed")).is_none());
        assert!(malformed(&Status::unknown(refusal.message())).is_none());
    }

    #[test]
    fn tonics_other_answers_get_a_reason_and_keep_their_code() {
        let unknown_method = unreasoned(&Status::unimplemented("")).expect("a reason added");
        assert_eq!(unknown_method.code(), Code::Unimplemented);
        assert_eq!(crate::status::reason_of(&unknown_method), Some(ErrorReason::Unimplemented));
        let missing = unreasoned(&Status::internal("Missing request message.")).expect("a reason added");
        assert_eq!((missing.code(), missing.message()), (Code::Internal, "Missing request message."));
        assert_eq!(crate::status::reason_of(&missing), Some(ErrorReason::Internal));

        assert!(unreasoned(&crate::status::internal()).is_none(), "a reason is kept");
        assert!(unreasoned(&Status::not_found("service not registered")).is_none(), "health's own answer");
    }

    #[test]
    fn the_routers_answer_in_headers_gets_a_reason() {
        let mut unrouted_headers = http::HeaderMap::new();
        Status::unimplemented("").add_header(&mut unrouted_headers).expect("encodable");
        let answered = unrouted(&unrouted_headers).expect("a reason added");
        assert_eq!((answered.code(), answered.message()), (Code::Unimplemented, ""));
        assert_eq!(crate::status::reason_of(&answered), Some(ErrorReason::Unimplemented));

        let mut ours = http::HeaderMap::new();
        let with_reason = crate::status::new(Code::Unimplemented, ErrorReason::Unimplemented, "");
        with_reason.add_header(&mut ours).expect("encodable");
        assert!(unrouted(&ours).is_none(), "a status with details is left as it is");
        assert!(unrouted(&http::HeaderMap::new()).is_none(), "a response without a status");
    }
}
