//! The server's maximum connection age over real TCP: a unary caller moves to a new
//! connection once its connection has aged, without a failed call, and a stream open on an
//! aged connection runs on until shutdown ends it; a call refused because its connection was
//! going away is recognised as unprocessed and answered when sent once more.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fanfare_core::config::{MIN_MAX_CONNECTION_AGE_MS, ServerConfig};
use fanfare_core::server::GrpcServer;
use fanfare_core::telemetry::init_test_tracing;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Upper bound for anything that should happen "soon"; never a pass/fail timing.
const PATIENCE: Duration = Duration::from_secs(10);
const SERVICE: &str = "fanfare.test.v1.Aging";
/// The shortest age the configuration accepts, so the test waits little.
const AGE: Duration = Duration::from_millis(MIN_MAX_CONNECTION_AGE_MS);

/// A server with the shortest connection age, behind a proxy counting the connections it
/// accepts (the server's own accepted connections, seen from outside).
struct AgingServer {
    channel: Channel,
    accepted: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    serving: JoinHandle<anyhow::Result<()>>,
}

impl AgingServer {
    async fn start() -> Self {
        init_test_tracing();
        let config = ServerConfig {
            max_connection_age_ms: MIN_MAX_CONNECTION_AGE_MS,
            health_check_interval_ms: 20,
            ..ServerConfig::for_dev()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let server_addr = listener.local_addr().expect("bound address");
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(GrpcServer::new(SERVICE, config).serve(listener, shutdown.clone()));
        let (proxy_addr, accepted) = counting_proxy(server_addr).await;
        let channel = Endpoint::from_shared(format!("http://{proxy_addr}")).expect("valid endpoint").connect_lazy();
        Self { channel, accepted, shutdown, serving }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(PATIENCE, self.serving).await.expect("serve returns after shutdown");
        stopped.expect("serve does not panic").expect("clean shutdown");
    }
}

/// Forwards every connection to `target`, counting them.
async fn counting_proxy(target: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("bound address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                // Either side closing ends the copy; how is of no interest here.
                let _closed = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (addr, accepted)
}

async fn check(channel: &Channel) -> Result<(), tonic::Status> {
    HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await.map(|_| ())
}

#[tokio::test]
async fn a_unary_caller_moves_to_a_new_connection_once_its_connection_has_aged() {
    let server = AgingServer::start().await;
    check(&server.channel).await.expect("the first call succeeds");
    assert_eq!(server.accepted(), 1);

    // Two ages' worth of calls: every one succeeds, over a connection opened after the first
    // one was told to go away.
    let calling = async {
        while server.accepted() < 3 {
            check(&server.channel).await.expect("no call fails while connections age");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(PATIENCE, calling).await.expect("the client reconnects after each connection's age");
    server.stop().await;
}

#[tokio::test]
async fn a_stream_outlives_its_connections_age_until_shutdown() {
    let server = AgingServer::start().await;
    // A long-lived stream, like fanout's Subscribe.
    let mut watch = HealthClient::new(server.channel.clone())
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .expect("watch starts")
        .into_inner();
    let first = watch.message().await.expect("watch answers").expect("a first status");
    assert_eq!(first.status(), ServingStatus::Serving);

    // Its connection, opened before the stream, is past its age after this wait however
    // slowly the test runs; the stream must still be open.
    let opened = Instant::now();
    tokio::time::sleep(AGE * 2).await;
    assert!(opened.elapsed() > AGE);
    let still_open = tokio::time::timeout(Duration::from_millis(100), watch.message()).await;
    assert!(still_open.is_err(), "the stream ended with its connection's age: {still_open:?}");

    // Only shutdown ends it, with a last status.
    server.shutdown.cancel();
    let last = tokio::time::timeout(PATIENCE, watch.message()).await.expect("shutdown ends the stream");
    let last = last.expect("a last status, not an error").expect("a last status before the end");
    assert_eq!(last.status(), ServingStatus::NotServing);
    server.stop().await;
}

#[tokio::test]
async fn calls_in_flight_as_connections_age_are_answered_or_refused_unprocessed_and_answered_once_more() {
    let server = AgingServer::start().await;
    check(&server.channel).await.expect("the first call succeeds");

    // Many callers at once across several connection ages, so calls are sent in the instant a
    // GOAWAY crosses them: any call that fails must be one the server never saw, and sent once
    // more it must be answered.
    let refused = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let channel = server.channel.clone();
            let refused = refused.clone();
            tokio::spawn(async move {
                let until = Instant::now() + AGE * 4;
                while Instant::now() < until {
                    if let Err(status) = check(&channel).await {
                        assert!(
                            fanfare_core::client::unprocessed(&status),
                            "a call failed other than unprocessed: {status:?}"
                        );
                        refused.fetch_add(1, Ordering::SeqCst);
                        check(&channel).await.expect("an unprocessed call sent once more is answered");
                    }
                }
            })
        })
        .collect();
    for caller in callers {
        tokio::time::timeout(PATIENCE, caller).await.expect("callers finish").expect("no caller panicked");
    }
    let answered = fanfare_core::client::once_more_if_unprocessed(|| check(&server.channel)).await;
    answered.expect("once_more_if_unprocessed answers on a healthy connection");
    assert!(server.accepted() >= 3, "the connections aged: {} accepted", server.accepted());
    println!("{} calls refused unprocessed across {} connections", refused.load(Ordering::SeqCst), server.accepted());
    server.stop().await;
}
