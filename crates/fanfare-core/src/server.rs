//! The gRPC server every Fanfare service runs: its routes plus health, reflection, the tower
//! layers of [`crate::layers`], TLS when configured ([`crate::tls`]), HTTP/2 keepalive,
//! connection age and stream limits, and graceful shutdown, in one builder.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::config::ServerConfig;
pub use crate::health::DependencyProbe;
use crate::health::{HealthState, run_probe_loop};
use crate::layers::{
    AuthLayer, LoadShedLayer, MessageSizeLayer, MetricsLayer, PeerIdentityLayer, RequestIdLayer, TimeoutLayer,
};
use crate::tls::ServerTls;
use crate::tls::server::tls_incoming;

/// How often an idle connection is pinged to detect dead peers and keep proxies from
/// closing it.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a keepalive ping may go unanswered before the connection is closed.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive on accepted connections.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Largest request message a service decodes, in bytes (4 MiB, gRPC's usual default, set
/// explicitly on every service with `max_decoding_message_size`). A larger one is refused
/// before any handler runs, answered RESOURCE_EXHAUSTED ([`MessageSizeLayer`]). Our own
/// clients encode at most this much.
pub const MAX_DECODING_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Largest response message a service encodes, in bytes (4 MiB: what gRPC clients decode by
/// default, so nothing larger would be read anyway). Our own clients decode at most this
/// much.
pub const MAX_ENCODING_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Names of the services every server runs besides the application's.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_V1_SERVICE: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA_SERVICE: &str = "grpc.reflection.v1alpha.ServerReflection";
const BUILT_IN_SERVICES: [&str; 3] = [HEALTH_SERVICE, REFLECTION_V1_SERVICE, REFLECTION_V1ALPHA_SERVICE];

/// Descriptor sets served by reflection: every Fanfare proto, health, reflection itself, and
/// `google.rpc` (status and error details, shipped by tonic-types) so `grpcurl` can decode
/// rich error details.
const DESCRIPTOR_SETS: [&[u8]; 5] = [
    fanfare_proto::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_types::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

/// Builds and runs one service's gRPC server.
///
/// ```no_run
/// # async fn example(
/// #     config: fanfare_core::config::ServerConfig,
/// #     listener: tokio::net::TcpListener,
/// # ) -> anyhow::Result<()> {
/// use fanfare_core::server::GrpcServer;
/// use fanfare_core::shutdown::shutdown_on_signals;
///
/// GrpcServer::new("fanfare.groups.v1.GroupService", config)
///     // .add_service(GroupServiceServer::new(adapter))
///     // .probe(Arc::new(PostgresProbe::new(pool)))
///     .serve(listener, shutdown_on_signals())
///     .await
/// # }
/// ```
///
/// # Shutdown
///
/// When the token is cancelled, health turns NOT_SERVING, the listener closes, connections
/// are told to go away (HTTP/2 GOAWAY) and in-flight calls get [`ServerConfig::shutdown_grace`]
/// to finish. Server-streaming handlers must watch the same token themselves and end their
/// streams with UNAVAILABLE ([`crate::shutdown::shutdown_status`]) so clients reconnect to
/// another instance; a stream still open at the end of the grace period is abandoned when
/// `serve` returns.
///
/// # Connection age
///
/// A connection older than [`ServerConfig::max_connection_age_ms`] is told to go away
/// (GOAWAY): its caller opens a new one, which may reach another pod, for its next calls.
/// The calls and streams already open on it are left to finish; a long `Subscribe` keeps its
/// connection open until it ends.
///
/// # TLS
///
/// With [`TlsConfig::tls_cert_file`](crate::tls::TlsConfig::tls_cert_file) set, every
/// connection is TLS (HTTP/2 by ALPN) and plaintext clients are refused at the handshake;
/// the files are checked for a new version every
/// [`tls_reload_interval_ms`](crate::tls::TlsConfig::tls_reload_interval_ms) and new
/// handshakes use it at once. With a client CA as well, a client must present a
/// certificate it signed, and the certificate's [`PeerIdentity`](crate::tls::PeerIdentity)
/// is in each call's request extensions. Kubernetes' gRPC probes cannot speak TLS: with
/// [`plaintext_health_addr`](crate::tls::TlsConfig::plaintext_health_addr) the same health
/// statuses are also served in plaintext there, and nothing else is.
pub struct GrpcServer {
    service_name: &'static str,
    config: ServerConfig,
    routes: Routes,
    service_names: Vec<&'static str>,
    duplicate_services: Vec<&'static str>,
    probes: Vec<Arc<dyn DependencyProbe>>,
    streaming_methods: Vec<&'static str>,
}

impl GrpcServer {
    /// `service_name` is the fully-qualified gRPC service (e.g.
    /// `"fanfare.groups.v1.GroupService"`), reported by health next to `""`.
    pub fn new(service_name: &'static str, config: ServerConfig) -> Self {
        Self {
            service_name,
            config,
            routes: Routes::default(),
            service_names: Vec::new(),
            duplicate_services: Vec::new(),
            probes: Vec::new(),
            streaming_methods: Vec::new(),
        }
    }

    /// Adds a tonic service (a generated `XxxServer<T>`), like tonic's `Router::add_service`.
    /// Adding a service twice, or one of the built-in health and reflection services, makes
    /// [`serve`](Self::serve) fail.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: NamedService
            + tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let name = S::NAME;
        // The router panics on a duplicate route; report it from `serve` instead.
        if self.service_names.contains(&name) || BUILT_IN_SERVICES.contains(&name) {
            self.duplicate_services.push(name);
            return self;
        }
        self.service_names.push(name);
        self.routes = self.routes.add_service(service);
        self
    }

    /// Adds a dependency whose reachability decides health (Postgres, Redis).
    pub fn probe(mut self, probe: Arc<dyn DependencyProbe>) -> Self {
        self.probes.push(probe);
        self
    }

    /// Exempts a streaming method (full path, `/package.Service/Method`) from the request
    /// timeout, which would otherwise end long-lived streams.
    pub fn streaming_method(mut self, path: &'static str) -> Self {
        self.streaming_methods.push(path);
        self
    }

    /// Serves on an already-bound listener until `shutdown` is cancelled, then drains (see
    /// [the type's docs](Self#shutdown)). Fails at once if the configuration is invalid.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.check()?;
        let auth = AuthLayer::from_config(&self.config).context("cannot set up caller authentication")?;
        let local_addr = listener.local_addr().context("cannot read the listener's address")?;
        let config = self.config;
        let tls = ServerTls::load(&config.tls).context("cannot load the server's TLS certificate")?;
        let health_listener = match config.tls.plaintext_health_addr {
            Some(addr) if tls.is_some() => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot bind the plaintext health address {addr}"))?,
            ),
            _ => None,
        };

        let initial_status = if self.probes.is_empty() { ServingStatus::Serving } else { ServingStatus::NotServing };
        let health = HealthState::new(self.service_name, initial_status).await;

        let mut advertised: Vec<&str> = self.service_names.clone();
        advertised.extend(BUILT_IN_SERVICES);
        let reflection_v1 = reflection_builder(&advertised).build_v1().context("cannot build reflection v1")?;
        let reflection_v1alpha =
            reflection_builder(&advertised).build_v1alpha().context("cannot build reflection v1alpha")?;
        let routes = self
            .routes
            .add_service(health.service(shutdown.clone()))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let layers = tower::ServiceBuilder::new()
            .layer(PeerIdentityLayer)
            .layer(RequestIdLayer)
            .layer(MetricsLayer::new(advertised.iter().copied()))
            .layer(auth)
            .layer(LoadShedLayer::new(config.max_concurrent_requests))
            .layer(TimeoutLayer::new(config.request_timeout(), self.streaming_methods.iter().copied()))
            .layer(MessageSizeLayer);
        let mut builder = Server::builder()
            .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
            .max_concurrent_streams(config.max_concurrent_streams);
        if let Some(age) = config.max_connection_age() {
            // No `max_connection_age_grace`: in tonic 0.14 setting one skips the GOAWAY and cuts
            // the connection, streams and all, once age + grace have passed. Without it the
            // connection drains: open calls and streams finish, new calls go elsewhere.
            builder = builder.max_connection_age(age);
        }
        let router = builder.layer(layers).add_routes(routes);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true)).with_keepalive(Some(TCP_KEEPALIVE));

        let probe_loop =
            tokio::spawn(run_probe_loop(health.clone(), self.probes, config.health_check_interval(), shutdown.clone()));
        let stop_accepting = {
            let health = health.clone();
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                health.set(ServingStatus::NotServing).await;
                tracing::info!(
                    grace_ms = config.shutdown_grace_ms,
                    "shutting down: health is not serving, draining calls"
                );
            }
        };
        let plaintext_health = match health_listener {
            Some(listener) => Some(tokio::spawn(serve_plaintext_health(listener, &health, shutdown.clone())?)),
            None => None,
        };
        let tls_reload =
            tls.as_ref().map(|tls| tokio::spawn(Arc::clone(tls).watch(config.tls.reload_interval(), shutdown.clone())));
        let serving = match &tls {
            Some(tls) => {
                router.serve_with_incoming_shutdown(tls_incoming(incoming, Arc::clone(tls)), stop_accepting).boxed()
            }
            None => router.serve_with_incoming_shutdown(incoming, stop_accepting).boxed(),
        };
        tracing::info!(
            service = self.service_name,
            addr = %local_addr,
            tls = tls.is_some(),
            client_certificates = tls.as_ref().is_some_and(|tls| tls.requires_client_certificates()),
            "grpc server listening"
        );
        let grace_over = async {
            shutdown.cancelled().await;
            tokio::time::sleep(config.shutdown_grace()).await;
        };
        let result = tokio::select! {
            result = serving => result.context("grpc server failed"),
            () = grace_over => {
                tracing::warn!(
                    grace_ms = config.shutdown_grace_ms,
                    "grace period over; abandoning the calls still open"
                );
                Ok(())
            }
        };
        // Also stops the probe loop (and the certificate reloads) when the server failed before
        // shutdown.
        probe_loop.abort();
        if let Some(tls_reload) = tls_reload {
            tls_reload.abort();
        }
        if let Some(plaintext_health) = plaintext_health {
            plaintext_health.abort();
        }
        if result.is_ok() {
            tracing::info!(service = self.service_name, "grpc server stopped");
        }
        result
    }

    /// Refuses configurations and builds that must not run.
    fn check(&self) -> anyhow::Result<()> {
        if let Err(reason) = self.config.check() {
            anyhow::bail!("invalid server configuration: {reason}");
        }
        if !self.duplicate_services.is_empty() {
            anyhow::bail!(
                "services added twice or clashing with built-in ones: {}",
                self.duplicate_services.join(", ")
            );
        }
        if self.config.allow_unauthenticated {
            if self.config.service_token.is_some() || self.config.callers_file.is_some() {
                tracing::warn!("allow_unauthenticated is set but callers are configured: a token is still required");
            } else {
                tracing::warn!("accepting unauthenticated calls: for local development only, never in production");
            }
        }
        Ok(())
    }
}

/// Health alone, in plaintext, on `listener` until `shutdown`: the same statuses as the
/// main port, for probes that cannot speak TLS, with reflection that knows health alone
/// (so `grpcurl -plaintext` works and no other schema is shown).
fn serve_plaintext_health(
    listener: TcpListener,
    health: &HealthState,
    shutdown: CancellationToken,
) -> anyhow::Result<impl Future<Output = Result<(), tonic::transport::Error>> + Send + 'static> {
    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        builder
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
            .with_service_name(HEALTH_SERVICE)
    };
    let configure = tonic_reflection::server::Builder::configure;
    let reflection_v1 = reflection(configure()).build_v1().context("cannot build health reflection v1")?;
    let reflection_v1alpha =
        reflection(configure()).build_v1alpha().context("cannot build health reflection v1alpha")?;
    tracing::info!(addr = ?listener.local_addr().ok(), "plaintext grpc health listening");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Ok(Server::builder()
        .add_service(health.service(shutdown.clone()))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()))
}

/// A reflection builder with every descriptor set, advertising `services`.
fn reflection_builder(services: &[&str]) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure();
    for descriptor_set in DESCRIPTOR_SETS {
        builder = builder.register_encoded_file_descriptor_set(descriptor_set);
    }
    for service in services {
        builder = builder.with_service_name(*service);
    }
    builder
}
