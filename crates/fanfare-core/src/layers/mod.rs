//! Tower layers every Fanfare gRPC server runs, one concern per file. [`GrpcServer`]
//! stacks them outermost first: the mTLS peer identity, request id and tracing span, metrics,
//! caller authentication and permissions, load shedding, the unary request timeout, and the
//! relabelling of over-size and malformed requests.
//!
//! Each layer answers its own rejections as proper gRPC responses (HTTP 200 with a
//! `grpc-status` header, built by `tonic::Status::into_http`), never as transport errors, so
//! callers see UNAUTHENTICATED, RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED and the metrics layer
//! counts them like any other answer.
//!
//! [`GrpcServer`]: crate::server::GrpcServer

use std::future::Future;
use std::pin::Pin;

pub mod auth;
pub mod load_shed;
pub mod message_size;
pub mod metrics;
pub mod peer_identity;
pub mod request_id;
pub mod timeout;

pub use auth::AuthLayer;
pub use load_shed::LoadShedLayer;
pub use message_size::MessageSizeLayer;
pub use metrics::MetricsLayer;
pub use peer_identity::PeerIdentityLayer;
pub use request_id::{RequestId, RequestIdLayer};
pub use timeout::TimeoutLayer;

/// Path prefix of the gRPC health service. Health checks skip auth and load shedding so
/// Kubernetes probes keep working for unauthenticated kubelets and under load.
pub const HEALTH_PATH_PREFIX: &str = "/grpc.health.v1.Health/";

/// The boxed response future every layer here returns.
pub type ResponseFuture<ResBody, Error> =
    Pin<Box<dyn Future<Output = Result<http::Response<ResBody>, Error>> + Send + 'static>>;

/// True for calls to the gRPC health service.
pub(crate) fn is_health_check(path: &str) -> bool {
    path.starts_with(HEALTH_PATH_PREFIX)
}
