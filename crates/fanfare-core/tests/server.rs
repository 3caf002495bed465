//! The shared gRPC server over real TCP on port 0: health follows probes, auth, request ids,
//! reflection v1 and v1alpha, load shedding, timeouts and graceful shutdown.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fanfare_core::config::ServerConfig;
use fanfare_core::server::GrpcServer;
use fanfare_core::status::{ErrorReason, reason_of};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use support::*;

#[tokio::test]
async fn health_follows_the_dependency_probe() {
    let probe = Arc::new(SwitchProbe { healthy: AtomicBool::new(true) });
    let server = start(GrpcServer::new(SERVICE, dev_config()).probe(probe.clone())).await;
    let channel = server.channel().await;

    wait_for_health(&channel, "", ServingStatus::Serving).await;
    wait_for_health(&channel, SERVICE, ServingStatus::Serving).await;

    // The service (readiness) follows its dependencies; "" (liveness) stays SERVING, so a
    // database outage takes pods out of rotation without restarting them.
    probe.healthy.store(false, Ordering::SeqCst);
    wait_for_health(&channel, SERVICE, ServingStatus::NotServing).await;
    let liveness = health_status(channel.clone(), "").await.expect("health answers");
    assert_eq!(liveness, ServingStatus::Serving);

    probe.healthy.store(true, Ordering::SeqCst);
    wait_for_health(&channel, SERVICE, ServingStatus::Serving).await;
    wait_for_health(&channel, "", ServingStatus::Serving).await;

    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn every_call_but_health_needs_the_service_token() {
    let config = ServerConfig { service_token: Some(TOKEN.to_owned()), allow_unauthenticated: false, ..dev_config() };
    let server = start(GrpcServer::new(SERVICE, config)).await;
    let channel = server.channel().await;

    let missing = list_services_v1(channel.clone(), None).await.expect_err("no token is refused");
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");

    let wrong = list_services_v1(channel.clone(), Some("not-the-token")).await.expect_err("a wrong token is refused");
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");

    let services = list_services_v1(channel.clone(), Some(TOKEN)).await.expect("the right token is accepted");
    assert!(services.iter().any(|name| name == "grpc.health.v1.Health"));

    let status = health_status(channel, "").await.expect("health needs no token");
    assert_eq!(status, ServingStatus::Serving);

    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let server = start(GrpcServer::new(SERVICE, dev_config())).await;
    let mut client = HealthClient::new(server.channel().await);

    let mut request = Request::new(HealthCheckRequest::default());
    request.metadata_mut().insert("x-request-id", "req-from-caller-42".parse().expect("valid"));
    let response = client.check(request).await.expect("health answers");
    let echoed = response.metadata().get("x-request-id").expect("request id");
    assert_eq!(echoed, "req-from-caller-42");

    let response = client.check(HealthCheckRequest::default()).await.expect("health answers");
    let generated = response.metadata().get("x-request-id").expect("a generated request id").to_str().expect("ascii");
    let uuid = uuid::Uuid::parse_str(generated).expect("a uuid");
    assert_eq!(uuid.get_version_num(), 7);

    // An error answered by a layer carries the id too.
    let config = ServerConfig { service_token: Some(TOKEN.to_owned()), ..dev_config() };
    let guarded = start(GrpcServer::new(SERVICE, config)).await;
    let mut request = Request::new(HealthCheckRequest::default());
    request.metadata_mut().insert("x-request-id", "req-refused".parse().expect("valid"));
    let mut grpc = tonic::client::Grpc::new(guarded.channel().await);
    grpc.ready().await.expect("ready");
    let refused = grpc
        .unary::<_, (), _>(
            Request::new(()),
            http::uri::PathAndQuery::from_static(WAIT_PATH),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.metadata().get("x-request-id").is_some());

    server.stop().await.expect("clean shutdown");
    guarded.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services() {
    let server = start(GrpcServer::new(SERVICE, dev_config()).add_service(SlowService::default())).await;
    let channel = server.channel().await;

    for services in [
        list_services_v1(channel.clone(), None).await.expect("v1 reflection answers"),
        list_services_v1alpha(channel.clone()).await,
    ] {
        for expected in [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            SERVICE,
        ] {
            assert!(services.iter().any(|name| name == expected), "{expected} missing from {services:?}");
        }
        // Only the services this server runs are advertised.
        assert_eq!(services.len(), 4, "{services:?}");
    }

    // The descriptors grpcurl needs to describe calls and decode rich error details.
    for symbol in [
        "google.rpc.Status",
        "google.rpc.BadRequest",
        "google.rpc.RetryInfo",
        "grpc.health.v1.Health",
        "fanfare.groups.v1.GroupService",
    ] {
        assert!(symbol_is_known(channel.clone(), symbol).await, "{symbol}");
    }
    for file in ["google/protobuf/duration.proto", "google/protobuf/any.proto", "google/protobuf/timestamp.proto"] {
        assert!(file_is_known(channel.clone(), file).await, "{file}");
    }

    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn calls_over_the_concurrency_limit_are_shed() {
    let slow = SlowService::default();
    let config = ServerConfig { max_concurrent_requests: 1, ..dev_config() };
    let server = start(GrpcServer::new(SERVICE, config).add_service(slow.clone())).await;
    let channel = server.channel().await;

    let started = slow.gate.started.notified();
    let in_flight = tokio::spawn(call_wait(channel.clone(), None));
    tokio::time::timeout(PATIENCE, started).await.expect("the first call starts");

    let shed = list_services_v1(channel.clone(), None).await.expect_err("a second call is shed");
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert_eq!(reason_of(&shed), Some(ErrorReason::Overloaded), "{shed:?}");
    let details = tonic_types::StatusExt::get_error_details(&shed);
    assert!(details.retry_info().is_some(), "shed calls carry a retry hint");

    // Health checks are never shed.
    assert_eq!(health_status(channel.clone(), "").await.expect("health answers"), ServingStatus::Serving);

    slow.gate.release.cancel();
    in_flight.await.expect("no panic").expect("the first call succeeds");
    list_services_v1(channel, None).await.expect("a slot is free again");

    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn slow_unary_calls_time_out_but_streaming_methods_do_not() {
    let config = ServerConfig { request_timeout_ms: 200, ..dev_config() };
    let timed = start(GrpcServer::new(SERVICE, config.clone()).add_service(SlowService::default())).await;
    let status = call_wait(timed.channel().await, None).await.expect_err("the call times out");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(reason_of(&status), Some(ErrorReason::Timeout), "{status:?}");

    // Registered as streaming: not timed out. Released well after the timeout would fire.
    let slow = SlowService::default();
    let exempt = start(GrpcServer::new(SERVICE, config).add_service(slow.clone()).streaming_method(WAIT_PATH)).await;
    let started = slow.gate.started.notified();
    let call = tokio::spawn(call_wait(exempt.channel().await, None));
    tokio::time::timeout(PATIENCE, started).await.expect("the call starts");
    tokio::time::sleep(Duration::from_millis(600)).await;
    slow.gate.release.cancel();
    call.await.expect("no panic").expect("an exempt call is not timed out");

    timed.stop().await.expect("clean shutdown");
    exempt.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_drains_calls_and_ends_health_watches() {
    let slow = SlowService::default();
    let config = ServerConfig { shutdown_grace_ms: 60_000, ..dev_config() };
    let server = start(GrpcServer::new(SERVICE, config).add_service(slow.clone())).await;
    let channel = server.channel().await;

    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest::default())
        .await
        .expect("watch starts")
        .into_inner();
    let first = watch.next().await.expect("a status").expect("not an error");
    assert_eq!(first.status(), ServingStatus::Serving);

    let started = slow.gate.started.notified();
    let in_flight = tokio::spawn(call_wait(channel.clone(), None));
    tokio::time::timeout(PATIENCE, started).await.expect("the call starts");

    server.shutdown.cancel();

    // The watcher hears NOT_SERVING, then the stream ends with UNAVAILABLE.
    let mut saw_not_serving = false;
    let ending = tokio::time::timeout(PATIENCE, async {
        while let Some(item) = watch.next().await {
            match item {
                Ok(update) => {
                    saw_not_serving |= update.status() == ServingStatus::NotServing;
                }
                Err(status) => return Some(status),
            }
        }
        None
    })
    .await
    .expect("the watch ends");
    assert!(saw_not_serving, "the watch reported NOT_SERVING");
    assert_eq!(ending.map(|status| status.code()), Some(Code::Unavailable));

    // New connections are refused while the in-flight call still runs.
    let refused = Endpoint::from_shared(format!("http://{}", server.addr)).expect("valid endpoint").connect().await;
    assert!(refused.is_err(), "the listener is closed");

    // The in-flight call finishes, then serve returns well inside the 60 s grace.
    slow.gate.release.cancel();
    in_flight.await.expect("no panic").expect("the in-flight call completes");
    tokio::time::timeout(PATIENCE, server.handle)
        .await
        .expect("serve returns once drained")
        .expect("no panic")
        .expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_gives_up_on_calls_after_the_grace_period() {
    let slow = SlowService::default();
    let config = ServerConfig { shutdown_grace_ms: 200, ..dev_config() };
    let server = start(GrpcServer::new(SERVICE, config).add_service(slow.clone())).await;
    let channel = server.channel().await;

    let started = slow.gate.started.notified();
    let _never_released = tokio::spawn(call_wait(channel, None));
    tokio::time::timeout(PATIENCE, started).await.expect("the call starts");

    server.stop().await.expect("serve returns after the grace period");
}

/// A callers file written to a fresh temporary path.
fn callers_file(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("fanfare-callers-{}.toml", uuid_like()));
    std::fs::write(&path, text).expect("temp file written");
    path
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("after the epoch").as_nanos();
    format!("{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn callers_reach_only_their_methods_with_any_of_their_tokens() {
    use fanfare_core::callers::token_sha256_hex;
    let path = callers_file(&format!(
        "[[callers]]\nname = \"viewer\"\ntoken_sha256 = [\"{old}\", \"{new}\"]\n\
         methods = [\"grpc.reflection.v1.ServerReflection/ServerReflectionInfo\"]\n\
         [[callers]]\nname = \"relay\"\ntoken_sha256 = [\"{relay}\"]\nmethods = [\"fanfare.test.v1.Other/*\"]\n",
        old = token_sha256_hex("old-token"),
        new = token_sha256_hex("new-token"),
        relay = token_sha256_hex("relay-token"),
    ));
    let config = ServerConfig { callers_file: Some(path.clone()), allow_unauthenticated: false, ..dev_config() };
    let server = start(GrpcServer::new(SERVICE, config)).await;
    let channel = server.channel().await;

    // A rotation: the old and the new token are both the viewer's.
    for token in ["old-token", "new-token"] {
        let services = list_services_v1(channel.clone(), Some(token)).await.expect("the viewer may reflect");
        assert!(services.iter().any(|name| name == "grpc.health.v1.Health"));
    }
    let denied = list_services_v1(channel.clone(), Some("relay-token")).await.expect_err("the relay may not");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("`relay`"), "the refusal names the caller: {denied:?}");
    let unknown = list_services_v1(channel.clone(), Some("other-token")).await.expect_err("unknown token");
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");
    let missing = list_services_v1(channel.clone(), None).await.expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    wait_for_health(&channel, SERVICE, ServingStatus::Serving).await;

    server.stop().await.expect("clean shutdown");
    std::fs::remove_file(path).ok();
}

#[tokio::test]
async fn refuses_to_start_with_an_invalid_callers_file() {
    let path = callers_file("[[callers]]\nname = \"x\"\ntoken_sha256 = [\"not-hex\"]\nmethods = [\"*\"]\n");
    let config = ServerConfig { callers_file: Some(path.clone()), allow_unauthenticated: false, ..dev_config() };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let error = GrpcServer::new(SERVICE, config).serve(listener, CancellationToken::new()).await.expect_err("refused");
    assert!(format!("{error:#}").contains("token_sha256"), "{error:#}");
    std::fs::remove_file(path).ok();
}

#[tokio::test]
async fn refuses_to_start_without_authentication() {
    let config = ServerConfig { service_token: None, allow_unauthenticated: false, ..dev_config() };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let result = GrpcServer::new(SERVICE, config).serve(listener, CancellationToken::new()).await;
    let error = result.expect_err("the server refuses to start");
    assert!(error.to_string().contains("FANFARE_CALLERS_FILE"), "{error:#}");
}

#[tokio::test]
async fn refuses_a_service_added_twice() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let result = GrpcServer::new(SERVICE, dev_config())
        .add_service(SlowService::default())
        .add_service(SlowService::default())
        .serve(listener, CancellationToken::new())
        .await;
    let error = result.expect_err("the server refuses to start");
    assert!(error.to_string().contains(SERVICE), "{error:#}");
}

#[tokio::test]
async fn an_over_size_request_is_resource_exhausted_and_the_server_carries_on() {
    let server = start(GrpcServer::new(SERVICE, dev_config())).await;
    let channel = server.channel().await;

    let over_size = "x".repeat(fanfare_core::server::MAX_DECODING_MESSAGE_SIZE);
    let refused = health_status(channel.clone(), &over_size).await.expect_err("too large to read");
    assert_eq!(refused.code(), Code::ResourceExhausted, "not tonic's OUT_OF_RANGE: {refused:?}");
    assert_eq!(reason_of(&refused), Some(ErrorReason::RequestTooLarge), "{refused:?}");
    let just_fits = "x".repeat(fanfare_core::server::MAX_DECODING_MESSAGE_SIZE - 16);
    let unknown = health_status(channel.clone(), &just_fits).await.expect_err("no such service");
    assert_eq!(unknown.code(), Code::NotFound, "read, and answered as any unknown service: {unknown:?}");
    assert_eq!(health_status(channel, "").await.expect("health answers"), ServingStatus::Serving);

    server.stop().await.expect("clean shutdown");
}
