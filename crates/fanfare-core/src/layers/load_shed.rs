//! Load shedding: one limit on calls in flight, shared by every connection. A call beyond it
//! is answered RESOURCE_EXHAUSTED at once (with a retry hint) instead of queueing, so an
//! overloaded instance fails fast and clients retry elsewhere.
//!
//! A call holds its slot until its handler returns a response. For a server-streaming call
//! that is when the stream starts, so long-lived streams do not starve unary calls. Health
//! checks never count, so probes answer even at the limit.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::{ResponseFuture, is_health_check};
use crate::status::ErrorReason;

/// How long a shed caller is told to wait before retrying.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Sheds calls beyond a global limit on concurrent calls.
#[derive(Debug, Clone)]
pub struct LoadShedLayer {
    slots: Arc<Semaphore>,
    max_concurrent_requests: usize,
}

impl LoadShedLayer {
    /// Allows `max_concurrent_requests` calls at once across all connections; zero sheds
    /// every call but health checks.
    pub fn new(max_concurrent_requests: usize) -> Self {
        let max_concurrent_requests = max_concurrent_requests.min(Semaphore::MAX_PERMITS);
        Self { slots: Arc::new(Semaphore::new(max_concurrent_requests)), max_concurrent_requests }
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShed { inner, layer: self.clone() }
    }
}

/// The service [`LoadShedLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct LoadShed<S> {
    inner: S,
    layer: LoadShedLayer,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for LoadShed<S>
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
        if is_health_check(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let Ok(slot) = Arc::clone(&self.layer.slots).try_acquire_owned() else {
            tracing::debug!(limit = self.layer.max_concurrent_requests, "shed a call over the concurrency limit");
            let status = crate::status::resource_exhausted(
                ErrorReason::Overloaded,
                format!(
                    "server is at its limit of {} concurrent requests; retry shortly",
                    self.layer.max_concurrent_requests
                ),
                "max_concurrent_requests",
                Some(RETRY_AFTER),
            );
            let response = status.into_http();
            return Box::pin(async move { Ok(response) });
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            drop(slot);
            result
        })
    }
}
