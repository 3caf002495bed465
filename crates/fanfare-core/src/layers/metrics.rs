//! Request metrics: a counter by method, caller and gRPC code and a latency histogram by
//! method. The caller is the name the auth layer gave it (`none` when it named none), so the
//! label takes only the values of the callers file.
//!
//! The code is read from the response headers. Tonic puts an error status there
//! ("trailers-only" responses) but an OK status in the trailers, so a 200 response without
//! `grpc-status` counts as OK. Streaming calls are measured up to their response headers, and
//! an error a stream ends with later is not seen here.

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::Code;
use tower::{Layer, Service};

use super::ResponseFuture;
use super::auth::{CallerLabel, RefusedByAuth};

/// Counter of finished calls, labelled `service`, `method`, `caller` and `code`.
pub const REQUESTS_TOTAL: &str = "fanfare_grpc_requests_total";
/// Histogram of call latency in seconds, labelled `service` and `method`.
pub const REQUEST_DURATION_SECONDS: &str = "fanfare_grpc_request_duration_seconds";

/// Label value standing in for services and methods this server does not serve, so that
/// callers cannot grow the label set without bound.
const UNKNOWN: &str = "unknown";
/// Caller label of calls the auth layer named no caller for (refused or health checks).
const NO_CALLER: &str = "none";

/// Records [`REQUESTS_TOTAL`] and [`REQUEST_DURATION_SECONDS`] for every call.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    known_services: Arc<HashSet<String>>,
}

impl MetricsLayer {
    /// Measures calls to `known_services` (fully-qualified gRPC names) under their own
    /// names, and calls to anything else under `unknown`.
    pub fn new<I, N>(known_services: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        Self { known_services: Arc::new(known_services.into_iter().map(Into::into).collect()) }
    }

    /// The `service` and `method` labels of a call to `path` (`/package.Service/Method`).
    fn labels(&self, path: &str) -> (String, String) {
        let parsed = path
            .strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .filter(|(service, _)| self.known_services.contains(*service));
        match parsed {
            Some((service, method)) => (service.to_owned(), method.to_owned()),
            None => (UNKNOWN.to_owned(), UNKNOWN.to_owned()),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics { inner, layer: self.clone() }
    }
}

/// The service [`MetricsLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct Metrics<S> {
    inner: S,
    layer: MetricsLayer,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Metrics<S>
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

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = self.layer.labels(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let elapsed = started.elapsed();
            let (code, caller, refused) = match &result {
                Ok(response) => (
                    response_code(response),
                    response.extensions().get::<CallerLabel>().map(|label| Arc::clone(&label.0)),
                    response.extensions().get::<RefusedByAuth>().is_some(),
                ),
                // Only layers outside this one turn an error into a status; count it as such.
                Err(_) => (Code::Unknown, None, false),
            };
            // A method this service lacks answers UNIMPLEMENTED, and a call the auth layer
            // refused never reached a method: keep neither name, so callers (with a token or
            // without) cannot grow the label set.
            let method = if refused || code == Code::Unimplemented { UNKNOWN.to_owned() } else { method };
            let caller = caller.map_or_else(|| NO_CALLER.to_owned(), |name| name.to_string());
            ::metrics::histogram!(
                REQUEST_DURATION_SECONDS,
                "service" => service.clone(),
                "method" => method.clone(),
            )
            .record(elapsed.as_secs_f64());
            ::metrics::counter!(
                REQUESTS_TOTAL,
                "service" => service,
                "method" => method,
                "caller" => caller,
                "code" => code_name(code),
            )
            .increment(1);
            result
        })
    }
}

/// The gRPC code of a response, judged from its headers.
pub fn response_code<B>(response: &http::Response<B>) -> Code {
    if let Some(value) = response.headers().get("grpc-status") {
        return Code::from_bytes(value.as_bytes());
    }
    // No status in the headers: tonic sends OK in the trailers. Other HTTP statuses map as
    // gRPC's "HTTP to gRPC status code mapping" says.
    match response.status().as_u16() {
        200 => Code::Ok,
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// The canonical upper-case name of a gRPC code, as used in the `code` label.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_comes_from_the_header_or_the_http_status() {
        let ok = http::Response::new(());
        assert_eq!(response_code(&ok), Code::Ok);

        let denied: http::Response<()> =
            crate::status::new(Code::PermissionDenied, crate::status::ErrorReason::PermissionDenied, "no").into_http();
        assert_eq!(response_code(&denied), Code::PermissionDenied);

        let mut unavailable = http::Response::new(());
        *unavailable.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(response_code(&unavailable), Code::Unavailable);
    }

    #[test]
    fn unknown_services_share_one_label() {
        let layer = MetricsLayer::new(["fanfare.groups.v1.GroupService"]);
        assert_eq!(
            layer.labels("/fanfare.groups.v1.GroupService/GetGroup"),
            ("fanfare.groups.v1.GroupService".to_owned(), "GetGroup".to_owned())
        );
        assert_eq!(layer.labels("/random.Thing/Do"), (UNKNOWN.to_owned(), UNKNOWN.to_owned()));
        assert_eq!(layer.labels("/"), (UNKNOWN.to_owned(), UNKNOWN.to_owned()));
    }

    #[test]
    fn code_names_match_the_grpc_spelling() {
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}
