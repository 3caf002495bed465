//! TLS on the shared gRPC server and client, over real TCP on port 0, with a CA and
//! certificates made by the test: TLS clients are answered and plaintext ones refused; under
//! mTLS a client without a certificate from the CA is refused at the handshake and the
//! certificate's identity reaches the request extensions; and a certificate replaced on disk
//! is served to the next connection without a restart.

#![allow(clippy::disallowed_methods, reason = "a client-side failure of the test")]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use fanfare_core::client::lazy_channel;
use fanfare_core::config::ServerConfig;
use fanfare_core::server::GrpcServer;
use fanfare_core::telemetry::init_test_tracing;
use fanfare_core::tls::testing::{TestCa, TestTlsFiles};
use fanfare_core::tls::{ClientTls, PeerIdentity, TlsConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Upper bound for anything that should happen "soon"; never a pass/fail timing.
const PATIENCE: Duration = Duration::from_secs(10);
const WHO_SERVICE: &str = "fanfare.test.v1.Who";
const WHO_PATH: &str = "/fanfare.test.v1.Who/Ask";
const CALLER_URI: &str = "spiffe://fanfare.test/ns/app/sa/feed";

// ---------------------------------------------------------------------------------------
// A test-only service that answers with the caller's PeerIdentity ("" for none).

#[derive(Clone, Default)]
struct WhoService;

impl tonic::server::NamedService for WhoService {
    const NAME: &'static str = WHO_SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<tonic::body::Body>> for WhoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<String, ()>::default());
            Ok(grpc.unary(AskMethod, request).await)
        })
    }
}

struct AskMethod;

impl tonic::server::UnaryService<()> for AskMethod {
    type Response = String;
    type Future = BoxFuture<Result<tonic::Response<String>, Status>>;

    fn call(&mut self, request: Request<()>) -> Self::Future {
        let identity = request.extensions().get::<PeerIdentity>().map(|identity| identity.as_str().to_owned());
        Box::pin(async move { Ok(tonic::Response::new(identity.unwrap_or_default())) })
    }
}

/// The caller's identity as the server saw it.
async fn ask_who(channel: Channel) -> Result<String, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|error| Status::unavailable(error.to_string()))?;
    let codec = tonic_prost::ProstCodec::<(), String>::default();
    let response = grpc.unary(Request::new(()), http::uri::PathAndQuery::from_static(WHO_PATH), codec).await?;
    Ok(response.into_inner())
}

// ---------------------------------------------------------------------------------------
// Harness.

struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(tls: TlsConfig) -> Running {
    start_with(ServerConfig { tls, ..ServerConfig::for_dev() }).await
}

async fn start_with(config: ServerConfig) -> Running {
    init_test_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("bound address");
    let shutdown = CancellationToken::new();
    let server = GrpcServer::new(WHO_SERVICE, config).add_service(WhoService);
    tokio::spawn(server.serve(listener, shutdown.clone()));
    Running { addr, shutdown }
}

/// A channel to `url` (connected lazily, as services connect to each other).
fn channel(url: &str, tls: &ClientTls) -> Channel {
    lazy_channel(url, Some(PATIENCE), tls).expect("a valid URL")
}

/// Health of `""` through `channel`.
async fn health(channel: Channel) -> Result<(), Status> {
    HealthClient::new(channel).check(HealthCheckRequest::default()).await.map(|_| ())
}

/// The certificate a fresh TLS connection to `addr` is shown, trusting `ca_pem`.
async fn served_certificate(addr: SocketAddr, ca_pem: &str) -> CertificateDer<'static> {
    let mut roots = RootCertStore::empty();
    for certificate in rustls_pemfile_certs(ca_pem) {
        roots.add(certificate).expect("a CA certificate");
    }
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let server_name = ServerName::try_from("localhost").expect("a server name");
    let connection = connector.connect(server_name, tcp).await.expect("a TLS handshake");
    let (_, session) = connection.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]), "HTTP/2 is negotiated");
    session.peer_certificates().expect("the server's certificate")[0].clone().into_owned()
}

fn rustls_pemfile_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().expect("PEM certificates")
}

// ---------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn a_tls_server_answers_tls_clients_and_refuses_plaintext() {
    let files = TestTlsFiles::new();
    let server = start(files.server_config(false)).await;
    let trusting = ClientTls::default().with_ca_pem(files.ca().pem());

    // By address and by name: the certificate names both.
    health(channel(&format!("https://{}", server.addr), &trusting)).await.expect("TLS by address is answered");
    let by_name = format!("https://localhost:{}", server.addr.port());
    health(channel(&by_name, &trusting)).await.expect("TLS by name is answered");
    let identity = ask_who(channel(&by_name, &trusting)).await.expect("Ask answers");
    assert_eq!(identity, "", "no client certificate, no identity");

    let plaintext = health(channel(&format!("http://{}", server.addr), &ClientTls::default())).await;
    assert!(plaintext.is_err(), "plaintext is refused: {plaintext:?}");

    let other_ca = TestCa::new("another CA");
    let distrusting = ClientTls::default().with_ca_pem(other_ca.pem());
    let untrusted = health(channel(&format!("https://{}", server.addr), &distrusting)).await;
    assert_eq!(untrusted.expect_err("a certificate from an unknown CA is refused").code(), Code::Unavailable);
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_and_names_those_with_one() {
    let files = TestTlsFiles::new();
    let ca = files.ca();
    let server = start(files.server_config(true)).await;
    let url = format!("https://localhost:{}", server.addr.port());

    let anonymous = ClientTls::default().with_ca_pem(ca.pem());
    let refused = ask_who(channel(&url, &anonymous)).await;
    assert!(refused.is_err(), "no client certificate is refused: {refused:?}");
    // Health too: a probe without a certificate cannot reach a server requiring mTLS.
    assert!(health(channel(&url, &anonymous)).await.is_err());

    let stranger = TestCa::new("a stranger's CA").issue(&["feed.app.svc"], Some(CALLER_URI), 7);
    let with_strangers =
        ClientTls::default().with_ca_pem(ca.pem()).with_identity_pem(&stranger.cert_pem, &stranger.key_pem);
    let refused = ask_who(channel(&url, &with_strangers)).await;
    assert!(refused.is_err(), "a certificate from another CA is refused: {refused:?}");

    let caller = ca.issue(&["feed.app.svc"], Some(CALLER_URI), 8);
    let with_caller = ClientTls::default().with_ca_pem(ca.pem()).with_identity_pem(&caller.cert_pem, &caller.key_pem);
    let identity = ask_who(channel(&url, &with_caller)).await.expect("a client certificate from the CA is accepted");
    assert_eq!(identity, CALLER_URI, "the URI name comes first");

    let dns_only = ca.issue(&["groups.fanfare.svc"], None, 9);
    let with_dns = ClientTls::default().with_ca_pem(ca.pem()).with_identity_pem(&dns_only.cert_pem, &dns_only.key_pem);
    assert_eq!(ask_who(channel(&url, &with_dns)).await.expect("accepted"), "groups.fanfare.svc");

    // The settings a service reads from its files do the same.
    let loaded = ClientTls::load(&files.client_config()).expect("the client files load");
    let identity = ask_who(channel(&url, &loaded)).await.expect("accepted");
    assert_eq!(identity, fanfare_core::tls::testing::CLIENT_IDENTITY);
}

/// With a callers file, a verified client certificate whose name a caller lists is that
/// caller (no token needed), held to its methods like any caller; a certificate no caller
/// lists must still bring a token.
#[tokio::test]
async fn a_client_certificate_names_its_caller() {
    let files = TestTlsFiles::new();
    let ca = files.ca();
    let callers = files.write(
        "callers.toml",
        &format!(
            "[[callers]]\nname = \"feed\"\ncertificate_names = [\"{CALLER_URI}\"]\nmethods = [\"{WHO_SERVICE}/*\"]\n\
             [[callers]]\nname = \"relay\"\ncertificate_names = [\"relay.fanfare.svc\"]\n\
             methods = [\"fanfare.test.v1.Other/*\"]\n"
        ),
    );
    let config = ServerConfig {
        tls: files.server_config(true),
        callers_file: Some(callers),
        allow_unauthenticated: false,
        ..ServerConfig::for_dev()
    };
    let server = start_with(config).await;
    let url = format!("https://localhost:{}", server.addr.port());

    let feed = ca.issue(&["feed.app.svc"], Some(CALLER_URI), 20);
    let as_feed = ClientTls::default().with_ca_pem(ca.pem()).with_identity_pem(&feed.cert_pem, &feed.key_pem);
    assert_eq!(ask_who(channel(&url, &as_feed)).await.expect("the feed caller, by its certificate"), CALLER_URI);

    let relay = ca.issue(&["relay.fanfare.svc"], None, 21);
    let as_relay = ClientTls::default().with_ca_pem(ca.pem()).with_identity_pem(&relay.cert_pem, &relay.key_pem);
    let denied = ask_who(channel(&url, &as_relay)).await.expect_err("the relay may not ask");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    let unknown = ca.issue(&["someone.else.svc"], None, 22);
    let as_unknown = ClientTls::default().with_ca_pem(ca.pem()).with_identity_pem(&unknown.cert_pem, &unknown.key_pem);
    let refused = ask_who(channel(&url, &as_unknown)).await.expect_err("no caller, no token");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_new_connections_without_a_restart() {
    let files = TestTlsFiles::new();
    let ca = files.ca();
    let first = ca.server_certificate(1001);
    files.write("tls.key", &first.key_pem);
    files.write("tls.crt", &first.cert_pem);
    let server = start(files.server_config(false)).await;
    let trusting = ClientTls::default().with_ca_pem(ca.pem());
    let open_before = channel(&format!("https://{}", server.addr), &trusting);
    health(open_before.clone()).await.expect("answered");
    assert_eq!(served_certificate(server.addr, ca.pem()).await, first.der);

    // A half-written version (a certificate without its key) is refused; the first stays.
    let second = ca.server_certificate(1002);
    files.write("tls.crt", &second.cert_pem);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(served_certificate(server.addr, ca.pem()).await, first.der, "a mismatched key is not served");

    files.write("tls.key", &second.key_pem);
    let switched = async {
        loop {
            if served_certificate(server.addr, ca.pem()).await == second.der {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, switched).await.expect("the new certificate is served");
    health(open_before).await.expect("the connection opened before still works");
}

#[test]
fn the_identity_is_the_first_uri_name_else_the_first_dns_name() {
    let ca = TestCa::new("fanfare test CA");
    let with_uri = ca.issue(&["a.example", "b.example"], Some(CALLER_URI), 1);
    let identity = PeerIdentity::from_certificate(&with_uri.der).expect("a URI name");
    assert_eq!(identity.to_string(), CALLER_URI);
    let dns = ca.issue(&["a.example", "b.example"], None, 2);
    assert_eq!(PeerIdentity::from_certificate(&dns.der).expect("a DNS name").as_str(), "a.example");
    let address_only = ca.issue(&["10.0.0.1"], None, 3);
    assert_eq!(PeerIdentity::from_certificate(&address_only.der), None, "an address is not an identity");
    assert_eq!(PeerIdentity::from_certificate(&CertificateDer::from(vec![1, 2, 3])), None);
}

#[tokio::test]
async fn unusable_tls_settings_fail_at_start() {
    let files = TestTlsFiles::new();
    let missing = TlsConfig { tls_cert_file: Some(files.path("missing.crt")), ..files.server_config(false) };
    let error = serve_once(missing).await.expect_err("a missing file fails");
    assert!(format!("{error:#}").contains("missing.crt"), "{error:#}");

    files.write("other.key", &files.ca().server_certificate(2).key_pem);
    let mismatched = TlsConfig { tls_key_file: Some(files.path("other.key")), ..files.server_config(false) };
    assert!(serve_once(mismatched).await.is_err(), "a key of another certificate fails");

    let half = TlsConfig { tls_key_file: None, ..files.server_config(false) };
    assert!(half.check().is_err(), "a certificate without its key");
    let ca_only = TlsConfig { tls_client_ca_file: Some(Path::new("ca.crt").into()), ..TlsConfig::default() };
    assert!(ca_only.check().is_err(), "a client CA without a server certificate");
    assert!(TlsConfig::default().check().is_ok(), "plaintext");
}

/// Serves with `tls` until it fails (or, if it does not, stops it at once).
async fn serve_once(tls: TlsConfig) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let shutdown = CancellationToken::new();
    let config = ServerConfig { tls, shutdown_grace_ms: 10, ..ServerConfig::for_dev() };
    let serving = GrpcServer::new(WHO_SERVICE, config).serve(listener, shutdown.clone());
    shutdown.cancel();
    serving.await
}

#[tokio::test]
async fn health_is_also_served_in_plaintext_where_asked_and_nothing_else_is() {
    let files = TestTlsFiles::new();
    let free = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let health_addr = free.local_addr().expect("an address");
    drop(free);
    let server = start(TlsConfig { plaintext_health_addr: Some(health_addr), ..files.server_config(true) }).await;

    let plaintext = channel(&format!("http://{health_addr}"), &ClientTls::default());
    let answered = async {
        loop {
            if health(plaintext.clone()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(PATIENCE, answered).await.expect("health answers in plaintext, without a certificate");
    let other = ask_who(plaintext).await.expect_err("only health is served there");
    assert_eq!(other.code(), Code::Unimplemented, "{other:?}");
    let main_port = health(channel(&format!("http://{}", server.addr), &ClientTls::default())).await;
    assert!(main_port.is_err(), "the gRPC port stays TLS only: {main_port:?}");

    let without_tls = TlsConfig { plaintext_health_addr: Some(health_addr), ..TlsConfig::default() };
    assert!(without_tls.check().is_err(), "a plaintext server needs no second health port");
}
