//! The Prometheus exporter and the metrics layer together: calls to a real server show up,
//! with help text and histogram buckets, on the metrics endpoint. Its own test binary,
//! because the metrics recorder is process-wide.

use std::net::SocketAddr;
use std::time::Duration;

use fanfare_core::config::ServerConfig;
use fanfare_core::metrics::install_metrics_exporter;
use fanfare_core::server::GrpcServer;
use fanfare_core::telemetry::init_test_tracing;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const PATIENCE: Duration = Duration::from_secs(10);

/// A port free a moment ago (the exporter binds by address, not by listener).
fn free_port_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    probe.local_addr().expect("bound address")
}

/// GETs `/metrics` and returns the body.
async fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("metrics port open");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request sent");
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("metrics answer")
        .expect("readable response");
    response
}

#[tokio::test]
async fn calls_are_counted_and_timed_on_the_metrics_endpoint() {
    init_test_tracing();
    let metrics_addr = free_port_addr();
    install_metrics_exporter(metrics_addr).expect("exporter installs");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let grpc_addr = listener.local_addr().expect("bound address");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(
        GrpcServer::new("fanfare.test.v1.Metrics", ServerConfig::for_dev()).serve(listener, shutdown.clone()),
    );

    let channel = Endpoint::from_shared(format!("http://{grpc_addr}"))
        .expect("valid endpoint")
        .connect()
        .await
        .expect("server accepts connections");
    let mut health = HealthClient::new(channel);
    health.check(HealthCheckRequest::default()).await.expect("health answers");
    let unknown =
        health.check(HealthCheckRequest { service: "no.such.Service".to_owned() }).await.expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let body = scrape(metrics_addr).await;
    let build_info = format!(r#"fanfare_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION"));
    for expected in [
        build_info.as_str(),
        "# HELP fanfare_grpc_requests_total",
        "# HELP fanfare_grpc_request_duration_seconds",
        r#"fanfare_grpc_requests_total{service="grpc.health.v1.Health",method="Check",caller="none",code="OK"} 1"#,
        r#"fanfare_grpc_requests_total{service="grpc.health.v1.Health",method="Check",caller="none",code="NOT_FOUND"} 1"#,
        r#"fanfare_grpc_request_duration_seconds_bucket{service="grpc.health.v1.Health",method="Check",le="0.0005"}"#,
        r#"fanfare_grpc_request_duration_seconds_bucket{service="grpc.health.v1.Health",method="Check",le="10"}"#,
    ] {
        assert!(body.contains(expected), "{expected} missing from:\n{body}");
    }

    shutdown.cancel();
    tokio::time::timeout(PATIENCE, server).await.expect("serve returns").expect("no panic").expect("clean shutdown");
}

/// Calls without a token to made-up methods of a served service all land under one
/// `method="unknown"` series: no caller can grow the label set.
#[tokio::test]
async fn unauthenticated_calls_to_made_up_methods_share_one_label() {
    let metrics_addr = free_port_addr();
    install_metrics_exporter(metrics_addr).expect("exporter installs");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let grpc_addr = listener.local_addr().expect("bound address");
    let shutdown = CancellationToken::new();
    let config = ServerConfig { service_token: Some("a-token".to_owned()), ..ServerConfig::for_dev() };
    let server = tokio::spawn(GrpcServer::new("fanfare.test.v1.Metrics", config).serve(listener, shutdown.clone()));
    let channel = Endpoint::from_shared(format!("http://{grpc_addr}"))
        .expect("valid endpoint")
        .connect()
        .await
        .expect("server accepts connections");

    for index in 0..50 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.expect("ready");
        // A service every server advertises (reflection), so its name is a known label.
        let path = format!("/grpc.reflection.v1.ServerReflection/MadeUp{index}");
        let refused = grpc
            .unary::<_, (), _>(
                tonic::Request::new(()),
                http::uri::PathAndQuery::try_from(path).expect("a valid path"),
                tonic_prost::ProstCodec::<(), ()>::default(),
            )
            .await
            .expect_err("no token");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }

    let body = scrape(metrics_addr).await;
    let refused_series: Vec<&str> = body
        .lines()
        .filter(|line| line.starts_with("fanfare_grpc_requests_total") && line.contains("UNAUTHENTICATED"))
        .collect();
    assert_eq!(
        refused_series,
        [
            r#"fanfare_grpc_requests_total{service="grpc.reflection.v1.ServerReflection",method="unknown",caller="none",code="UNAUTHENTICATED"} 50"#
        ],
        "one series for every refused call:\n{body}"
    );
    assert!(!body.contains("MadeUp"), "no made-up name reaches a label");
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, server).await.expect("serve returns").expect("no panic").expect("clean shutdown");
}

/// A named caller's calls carry its name; the made-up methods it may not call land under
/// `method="unknown"` like every other refusal.
#[tokio::test]
async fn calls_are_labelled_with_their_callers_name() {
    use fanfare_core::callers::token_sha256_hex;
    let metrics_addr = free_port_addr();
    install_metrics_exporter(metrics_addr).expect("exporter installs");
    let path = std::env::temp_dir().join(format!("fanfare-metrics-callers-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "[[callers]]\nname = \"viewer\"\ntoken_sha256 = [\"{}\"]\nmethods = [\"grpc.reflection.v1alpha.ServerReflection/*\"]\n",
            token_sha256_hex("viewer-token")
        ),
    )
    .expect("callers file written");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let grpc_addr = listener.local_addr().expect("bound address");
    let shutdown = CancellationToken::new();
    let config =
        ServerConfig { callers_file: Some(path.clone()), allow_unauthenticated: false, ..ServerConfig::for_dev() };
    let server = tokio::spawn(GrpcServer::new("fanfare.test.v1.Metrics", config).serve(listener, shutdown.clone()));
    let channel = Endpoint::from_shared(format!("http://{grpc_addr}"))
        .expect("valid endpoint")
        .connect()
        .await
        .expect("server accepts connections");

    for (service, expected) in [
        ("grpc.reflection.v1.ServerReflection", tonic::Code::PermissionDenied),
        ("grpc.reflection.v1alpha.ServerReflection", tonic::Code::Unimplemented),
    ] {
        for index in 0..10 {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.expect("ready");
            let mut request = tonic::Request::new(());
            request.metadata_mut().insert("authorization", "Bearer viewer-token".parse().expect("valid"));
            let path = format!("/{service}/MadeUp{index}");
            let refused = grpc
                .unary::<_, (), _>(
                    request,
                    http::uri::PathAndQuery::try_from(path).expect("a valid path"),
                    tonic_prost::ProstCodec::<(), ()>::default(),
                )
                .await
                .expect_err("no such method for the viewer");
            assert_eq!(refused.code(), expected, "{refused:?}");
        }
    }

    let body = scrape(metrics_addr).await;
    for expected in [
        r#"fanfare_grpc_requests_total{service="grpc.reflection.v1.ServerReflection",method="unknown",caller="viewer",code="PERMISSION_DENIED"} 10"#,
        r#"fanfare_grpc_requests_total{service="grpc.reflection.v1alpha.ServerReflection",method="unknown",caller="viewer",code="UNIMPLEMENTED"} 10"#,
    ] {
        assert!(body.contains(expected), "{expected} missing from:\n{body}");
    }
    assert!(!body.contains("MadeUp"), "no made-up name reaches a label");
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, server).await.expect("serve returns").expect("no panic").expect("clean shutdown");
    std::fs::remove_file(path).ok();
}
