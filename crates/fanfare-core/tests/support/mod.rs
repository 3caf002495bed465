//! Shared harness of the server tests: a test-only slow service, a switchable probe, a
//! server on port 0, and health and reflection client helpers.

#![allow(clippy::disallowed_methods, reason = "a test service and client, not a Fanfare service")]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use fanfare_core::config::ServerConfig;
use fanfare_core::server::{DependencyProbe, GrpcServer};
use fanfare_core::telemetry::init_test_tracing;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub(crate) const SERVICE: &str = "fanfare.test.v1.Slow";
pub(crate) const WAIT_PATH: &str = "/fanfare.test.v1.Slow/Wait";
pub(crate) const TOKEN: &str = "s3cret-token";
/// Upper bound for anything that should happen "soon"; never a pass/fail timing.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// A tiny test-only service: `Wait` answers once the test releases it.

/// Gates the `Wait` calls of one server.
#[derive(Clone, Default)]
pub(crate) struct Gate {
    pub started: Arc<Notify>,
    pub release: CancellationToken,
}

/// `fanfare.test.v1.Slow`, written by hand the way tonic generates services.
#[derive(Clone, Default)]
pub(crate) struct SlowService {
    pub gate: Gate,
}

impl tonic::server::NamedService for SlowService {
    const NAME: &'static str = SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for SlowService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let gate = self.gate.clone();
        Box::pin(async move {
            if request.uri().path() != WAIT_PATH {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
            Ok(grpc.unary(WaitMethod { gate }, request).await)
        })
    }
}

struct WaitMethod {
    gate: Gate,
}

impl tonic::server::UnaryService<()> for WaitMethod {
    type Response = ();
    type Future = BoxFuture<Result<tonic::Response<()>, Status>>;

    fn call(&mut self, _request: Request<()>) -> Self::Future {
        let gate = self.gate.clone();
        Box::pin(async move {
            gate.started.notify_one();
            gate.release.cancelled().await;
            Ok(tonic::Response::new(()))
        })
    }
}

/// Calls `Wait` with an optional bearer token.
pub(crate) async fn call_wait(channel: Channel, token: Option<&str>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|error| Status::unknown(error.to_string()))?;
    let mut request = Request::new(());
    if let Some(token) = token {
        authorize(&mut request, token);
    }
    grpc.unary(request, http::uri::PathAndQuery::from_static(WAIT_PATH), tonic_prost::ProstCodec::<(), ()>::default())
        .await
        .map(|_| ())
}

// ---------------------------------------------------------------------------------------
// Harness.

/// A probe whose answer the test flips.
pub(crate) struct SwitchProbe {
    pub healthy: AtomicBool,
}

#[async_trait::async_trait]
impl DependencyProbe for SwitchProbe {
    fn name(&self) -> &'static str {
        "switch"
    }

    async fn check(&self) -> anyhow::Result<()> {
        if self.healthy.load(Ordering::SeqCst) { Ok(()) } else { anyhow::bail!("switched off") }
    }
}

/// One server under test.
pub(crate) struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub(crate) async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("valid endpoint")
            .connect()
            .await
            .expect("server accepts connections")
    }

    /// Cancels the token and waits for `serve` to return.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.handle)
            .await
            .expect("serve returns after shutdown")
            .expect("serve does not panic")
    }
}

pub(crate) async fn start(server: GrpcServer) -> Running {
    init_test_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("bound address");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(server.serve(listener, shutdown.clone()));
    Running { addr, shutdown, handle }
}

pub(crate) fn dev_config() -> ServerConfig {
    ServerConfig { health_check_interval_ms: 20, ..ServerConfig::for_dev() }
}

pub(crate) fn authorize<T>(request: &mut Request<T>, token: &str) {
    let value = format!("Bearer {token}").parse().expect("valid metadata");
    request.metadata_mut().insert("authorization", value);
}

pub(crate) async fn health_status(channel: Channel, service: &str) -> Result<ServingStatus, Status> {
    let response = HealthClient::new(channel).check(HealthCheckRequest { service: service.to_owned() }).await?;
    Ok(response.into_inner().status())
}

/// Polls health until `service` reports `expected`; panics after [`PATIENCE`].
pub(crate) async fn wait_for_health(channel: &Channel, service: &str, expected: ServingStatus) {
    let polling = async {
        loop {
            if health_status(channel.clone(), service).await.ok() == Some(expected) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(PATIENCE, polling)
        .await
        .unwrap_or_else(|_| panic!("health of {service:?} never became {expected:?}"));
}

// ---------------------------------------------------------------------------------------
// Reflection helpers.

pub(crate) mod reflection_v1 {
    pub(crate) use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    pub(crate) use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    pub(crate) use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    pub(crate) use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};
}

pub(crate) mod reflection_v1alpha {
    pub(crate) use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    pub(crate) use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    pub(crate) use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    pub(crate) use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
}

/// One v1 reflection exchange.
pub(crate) async fn reflect_v1(
    channel: Channel,
    token: Option<&str>,
    message: reflection_v1::MessageRequest,
) -> Result<reflection_v1::MessageResponse, Status> {
    use reflection_v1::*;
    let outgoing =
        futures::stream::iter([ServerReflectionRequest { host: String::new(), message_request: Some(message) }]);
    let mut request = Request::new(outgoing);
    if let Some(token) = token {
        authorize(&mut request, token);
    }
    let mut responses = ServerReflectionClient::new(channel).server_reflection_info(request).await?.into_inner();
    let response: ServerReflectionResponse = responses.next().await.expect("one reflection response")?;
    Ok(response.message_response.expect("a message response"))
}

pub(crate) async fn list_services_v1(channel: Channel, token: Option<&str>) -> Result<Vec<String>, Status> {
    use reflection_v1::*;
    match reflect_v1(channel, token, MessageRequest::ListServices(String::new())).await? {
        MessageResponse::ListServicesResponse(list) => {
            Ok(list.service.into_iter().map(|service| service.name).collect())
        }
        other => panic!("unexpected reflection answer: {other:?}"),
    }
}

pub(crate) async fn list_services_v1alpha(channel: Channel) -> Vec<String> {
    use reflection_v1alpha::*;
    let outgoing = futures::stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }]);
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(outgoing)
        .await
        .expect("v1alpha reflection answers")
        .into_inner();
    let response =
        responses.next().await.expect("one reflection response").expect("a reflection response, not an error");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|service| service.name).collect()
        }
        other => panic!("unexpected reflection answer: {other:?}"),
    }
}

/// Asks v1 reflection for the file defining `symbol`; true when it is found.
pub(crate) async fn symbol_is_known(channel: Channel, symbol: &str) -> bool {
    use reflection_v1::*;
    let answer = reflect_v1(channel, None, MessageRequest::FileContainingSymbol(symbol.to_owned()))
        .await
        .expect("reflection answers");
    matches!(answer, MessageResponse::FileDescriptorResponse(_))
}

/// Asks v1 reflection for a file by name; true when it is found.
pub(crate) async fn file_is_known(channel: Channel, file: &str) -> bool {
    use reflection_v1::*;
    let answer =
        reflect_v1(channel, None, MessageRequest::FileByFilename(file.to_owned())).await.expect("reflection answers");
    matches!(answer, MessageResponse::FileDescriptorResponse(_))
}
