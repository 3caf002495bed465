//! Request ids: each call gets the caller's `x-request-id` (or a fresh UUID v7), carried in
//! the request extensions, echoed in the response headers, and recorded on a `grpc_request`
//! tracing span around the call (with the caller, once the auth layer has named it), so one
//! id ties together the logs of every service a request crosses.

use std::fmt;
use std::task::{Context, Poll};

use http::HeaderValue;
use tower::{Layer, Service};
use tracing::Instrument;

use super::ResponseFuture;

/// The metadata key that carries the request id, in requests and responses.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id accepted from a caller; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of one request. Handlers read it with [`RequestId::of`] and pass it on to the
/// services they call with [`RequestId::propagate`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh, time-ordered id (UUID v7).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Accepts a caller's id if it is 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII characters,
    /// so it is safe to log and to send back as a header.
    pub fn parse(value: &str) -> Option<Self> {
        let acceptable =
            !value.is_empty() && value.len() <= MAX_REQUEST_ID_LEN && value.bytes().all(|byte| byte.is_ascii_graphic());
        acceptable.then(|| Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id the request-id layer attached to an incoming call, if it ran.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&RequestId> {
        request.extensions().get::<RequestId>()
    }

    /// Sets this id on an outgoing call so the next service logs under the same id.
    pub fn propagate<T>(&self, request: &mut tonic::Request<T>) {
        // `parse` and `generate` only make visible ASCII, which is always valid metadata.
        if let Ok(value) = self.0.parse() {
            request.metadata_mut().insert(REQUEST_ID_HEADER, value);
        }
    }

    /// The caller's id from the headers, or a fresh one.
    fn from_headers(headers: &http::HeaderMap) -> Self {
        headers
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(Self::parse)
            .unwrap_or_else(Self::generate)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Attaches a [`RequestId`] to every call and runs it inside a `grpc_request` span.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// The service [`RequestIdLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RequestIdService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let request_id = RequestId::from_headers(request.headers());
        let span = tracing::info_span!(
            "grpc_request",
            request_id = %request_id,
            method = %request.uri().path(),
            caller = tracing::field::Empty,
        );
        let header_value = HeaderValue::from_str(request_id.as_str()).ok();
        request.extensions_mut().insert(request_id);

        let response = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let mut response = response.await?;
                if let Some(value) = header_value {
                    response.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_visible_ascii_ids_only() {
        assert_eq!(RequestId::parse("req-42").map(|id| id.0), Some("req-42".to_owned()));
        assert!(RequestId::parse("").is_none());
        assert!(RequestId::parse("has space").is_none());
        assert!(RequestId::parse("naïve").is_none());
        assert!(RequestId::parse(&"x".repeat(MAX_REQUEST_ID_LEN + 1)).is_none());
    }

    #[test]
    fn generated_ids_are_uuid_v7() {
        let id = RequestId::generate();
        let parsed = uuid::Uuid::parse_str(id.as_str()).expect("a uuid");
        assert_eq!(parsed.get_version_num(), 7);
    }

    #[test]
    fn a_bad_incoming_id_is_replaced() {
        let mut headers = http::HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("bad id"));
        let id = RequestId::from_headers(&headers);
        assert_ne!(id.as_str(), "bad id");
    }
}
