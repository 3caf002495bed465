//! Over-size requests: a request message past the decode limit
//! ([`MAX_DECODING_MESSAGE_SIZE`](crate::server::MAX_DECODING_MESSAGE_SIZE)) is refused by
//! tonic, before any handler runs, with OUT_OF_RANGE. gRPC's other implementations answer
//! RESOURCE_EXHAUSTED (the code gRPC documents for a message larger than the receiver
//! accepts), and callers retry or alert on codes, so this layer relabels exactly that answer:
//! RESOURCE_EXHAUSTED with a `QuotaFailure` naming the limit and no retry delay (sending the
//! same request again cannot help).
//!
//! tonic answers the refusal as a trailers-only response carrying its [`Status`] in the
//! response's extensions; that status, OUT_OF_RANGE with tonic's "decoded message length too
//! large" message, is what is recognised. Every other response passes untouched.

use std::task::{Context, Poll};

use tonic::{Code, Status};
use tower::{Layer, Service};

use super::ResponseFuture;

/// How tonic's decoder begins the message of an over-size request.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: ";

/// The quota subject of the refusal.
pub const MESSAGE_SIZE_SUBJECT: &str = "max_decoding_message_size";

/// Answers over-size requests RESOURCE_EXHAUSTED instead of tonic's OUT_OF_RANGE.
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
            Ok(match response.extensions().get::<Status>().and_then(too_large) {
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
        format!("the request message is too large ({sizes}); send less in one call"),
        MESSAGE_SIZE_SUBJECT,
        None,
    ))
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn only_tonics_over_size_refusal_is_relabelled() {
        let refusal =
            Status::out_of_range(format!("{TONIC_TOO_LARGE}found 5000000 bytes, the limit is: 4194304 bytes"));
        let relabelled = too_large(&refusal).expect("relabelled");
        assert_eq!(relabelled.code(), Code::ResourceExhausted);
        assert!(relabelled.message().contains("found 5000000 bytes"), "{}", relabelled.message());
        let details = relabelled.get_error_details();
        assert_eq!(details.quota_failure().expect("a quota failure").violations[0].subject, MESSAGE_SIZE_SUBJECT);
        assert!(details.retry_info().is_none(), "resending cannot help");

        assert!(too_large(&Status::out_of_range("page_token is past the end")).is_none());
        assert!(too_large(&Status::invalid_argument(refusal.message())).is_none());
    }
}
