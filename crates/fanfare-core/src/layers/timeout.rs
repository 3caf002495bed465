//! The unary request timeout: a call whose handler has not answered in time is answered
//! DEADLINE_EXCEEDED and its handler is dropped (cancelled at its next await point).
//!
//! Streaming methods are exempt: they are long-lived by design. The health `Watch` and the
//! reflection streams are always exempt; services name their own with
//! [`GrpcServer::streaming_method`](crate::server::GrpcServer::streaming_method).
//! A caller's shorter `grpc-timeout` is enforced by tonic itself, answering CANCELLED.

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::Code;
use tower::{Layer, Service};

use super::ResponseFuture;
use crate::status::{ErrorReason, Reason};

/// Streaming methods of the services every server runs.
pub const BUILT_IN_STREAMING_METHODS: &[&str] = &[
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Fails unary calls that take longer than a fixed timeout.
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    timeout: Duration,
    exempt_paths: Arc<HashSet<String>>,
}

impl TimeoutLayer {
    /// Times out every call after `timeout` except those to `streaming_methods` (full paths,
    /// `/package.Service/Method`) and the built-in streaming methods.
    pub fn new<I, P>(timeout: Duration, streaming_methods: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        let mut exempt_paths: HashSet<String> = streaming_methods.into_iter().map(Into::into).collect();
        exempt_paths.extend(BUILT_IN_STREAMING_METHODS.iter().map(|path| (*path).to_owned()));
        Self { timeout, exempt_paths: Arc::new(exempt_paths) }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout { inner, layer: self.clone() }
    }
}

/// The service [`TimeoutLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    layer: TimeoutLayer,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Timeout<S>
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
        if self.layer.exempt_paths.contains(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let timeout = self.layer.timeout;
        let response = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(timeout, response).await {
                Ok(result) => result,
                Err(_elapsed) => {
                    let timeout_ms = timeout.as_millis();
                    tracing::warn!(timeout_ms, "call timed out");
                    let status = crate::status::new(
                        Code::DeadlineExceeded,
                        Reason::new(ErrorReason::Timeout).with("timeout_ms", timeout_ms),
                        format!("the server did not finish the call within {timeout_ms} ms"),
                    );
                    Ok(status.into_http())
                }
            }
        })
    }
}
