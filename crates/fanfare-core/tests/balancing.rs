//! The balanced client channel against several real servers on port 0, with a resolver the
//! test controls: calls spread over every address, follow addresses as they go and come, and
//! survive failed or empty resolutions; the resolver task ends with the channel.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fanfare_core::client::{ClientOptions, Resolve, lazy_channel_with};
use fanfare_core::telemetry::init_test_tracing;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Upper bound for anything that should happen "soon"; never a pass/fail timing.
const PATIENCE: Duration = Duration::from_secs(10);
/// A name only the test resolver knows.
const URL: &str = "http://fanfare-backends.test:50051";
/// Short, so the test does not wait; correctness never depends on it.
const DNS_REFRESH: Duration = Duration::from_millis(20);
/// Calls per round: enough that every backend gets some whatever the random choices.
const CALLS: usize = 300;

/// A resolver answering whatever the test last set.
#[derive(Default)]
struct TestResolver {
    addresses: Mutex<Vec<SocketAddr>>,
    failing: AtomicBool,
    resolutions: AtomicUsize,
}

impl TestResolver {
    fn set(&self, addresses: Vec<SocketAddr>) {
        *self.addresses.lock().expect("resolver lock") = addresses;
    }

    /// Waits until the channel has asked twice since now, so the first answer after now has
    /// been handed to the balancer, which applies it before routing the next call.
    async fn wait_for_refresh(&self) {
        let seen = self.resolutions.load(Ordering::SeqCst);
        eventually("the channel resolves again", || self.resolutions.load(Ordering::SeqCst) >= seen + 2).await;
    }
}

#[async_trait]
impl Resolve for TestResolver {
    async fn resolve(&self, _host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
        let answer = if self.failing.load(Ordering::SeqCst) {
            Err(io::Error::other("test resolver switched off"))
        } else {
            Ok(self.addresses.lock().expect("resolver lock").clone())
        };
        self.resolutions.fetch_add(1, Ordering::SeqCst);
        answer
    }
}

/// One server (health only) counting the calls it receives.
struct Backend {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Backend {
    async fn start() -> Self {
        init_test_tracing();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("bound address");
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let count_calls = move |request| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(request)
        };
        let (_reporter, health) = tonic_health::server::health_reporter();
        let shutdown = CancellationToken::new();
        let serving = Server::builder()
            .layer(tonic::service::InterceptorLayer::new(count_calls))
            .add_service(health)
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown.clone().cancelled_owned());
        Self { addr, calls, shutdown, handle: tokio::spawn(serving) }
    }

    /// Calls received since the last look.
    fn take_calls(&self) -> usize {
        self.calls.swap(0, Ordering::SeqCst)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(PATIENCE, self.handle).await;
        assert!(stopped.is_ok(), "backend {} did not stop", self.addr);
    }
}

async fn check(channel: &Channel) -> Result<(), tonic::Status> {
    HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await.map(|_| ())
}

/// Makes [`CALLS`] calls, each of which must succeed, and returns how many each backend got.
async fn call_round(channel: &Channel, backends: &[&Backend]) -> Vec<usize> {
    for backend in backends {
        backend.take_calls();
    }
    for call in 0..CALLS {
        let answer = tokio::time::timeout(PATIENCE, check(channel)).await.expect("the call returns");
        answer.unwrap_or_else(|status| panic!("call {call} failed: {status:?}"));
    }
    backends.iter().map(|backend| backend.take_calls()).collect()
}

/// Polls `condition` until it holds; panics after [`PATIENCE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let polling = async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(PATIENCE, polling).await.unwrap_or_else(|_| panic!("never happened: {what}"));
}

fn channel_with(resolver: &Arc<TestResolver>) -> Channel {
    let options =
        ClientOptions::new(Some(Duration::from_secs(5))).with_resolver(resolver.clone()).with_dns_refresh(DNS_REFRESH);
    lazy_channel_with(URL, options).expect("a valid URL")
}

/// Every backend gets a fair share: far more than zero, whatever the random choices.
fn assert_all_served(counts: &[usize]) {
    let fair_share = CALLS / counts.len();
    for (index, count) in counts.iter().enumerate() {
        assert!(*count >= fair_share / 4, "backend {index} got {count} of {CALLS} calls: {counts:?}");
    }
}

#[tokio::test]
async fn calls_spread_over_every_address_and_follow_the_set_as_it_changes() {
    let first = Backend::start().await;
    let second = Backend::start().await;
    let third = Backend::start().await;
    let resolver = Arc::new(TestResolver::default());
    resolver.set(vec![first.addr, second.addr, third.addr]);
    let channel = channel_with(&resolver);

    let counts = call_round(&channel, &[&first, &second, &third]).await;
    assert_all_served(&counts);

    // A pod goes away: it leaves the name's addresses and stops.
    resolver.set(vec![second.addr, third.addr]);
    resolver.wait_for_refresh().await;
    first.stop().await;
    let counts = call_round(&channel, &[&second, &third]).await;
    assert_all_served(&counts);

    // A new pod appears.
    let fourth = Backend::start().await;
    resolver.set(vec![second.addr, third.addr, fourth.addr]);
    resolver.wait_for_refresh().await;
    let counts = call_round(&channel, &[&second, &third, &fourth]).await;
    assert_all_served(&counts);

    for backend in [second, third, fourth] {
        backend.stop().await;
    }
}

#[tokio::test]
async fn a_failed_or_empty_resolution_keeps_the_last_addresses() {
    let first = Backend::start().await;
    let second = Backend::start().await;
    let resolver = Arc::new(TestResolver::default());
    resolver.set(vec![first.addr, second.addr]);
    let channel = channel_with(&resolver);
    assert_all_served(&call_round(&channel, &[&first, &second]).await);

    resolver.failing.store(true, Ordering::SeqCst);
    resolver.wait_for_refresh().await;
    assert_all_served(&call_round(&channel, &[&first, &second]).await);

    resolver.failing.store(false, Ordering::SeqCst);
    resolver.set(Vec::new());
    resolver.wait_for_refresh().await;
    assert_all_served(&call_round(&channel, &[&first, &second]).await);

    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn the_resolver_task_ends_with_the_channel() {
    let backend = Backend::start().await;
    let resolver = Arc::new(TestResolver::default());
    resolver.set(vec![backend.addr]);
    let channel = channel_with(&resolver);
    check(&channel).await.expect("the call succeeds");
    let cloned = channel.clone();
    drop(channel);
    resolver.wait_for_refresh().await;
    check(&cloned).await.expect("a clone keeps the channel alive");

    drop(cloned);
    // The task holds the resolver through its options; only the test's reference is left
    // once it has ended.
    eventually("the resolver task ends", || Arc::strong_count(&resolver) == 1).await;
    backend.stop().await;
}

#[tokio::test]
async fn an_ip_address_is_connected_directly_without_resolving() {
    let backend = Backend::start().await;
    let resolver = Arc::new(TestResolver::default());
    let options = ClientOptions::new(None).with_resolver(resolver.clone()).with_dns_refresh(DNS_REFRESH);
    let channel = lazy_channel_with(&format!("http://{}", backend.addr), options).expect("a valid URL");

    check(&channel).await.expect("the call succeeds");
    assert_eq!(backend.take_calls(), 1);
    assert_eq!(resolver.resolutions.load(Ordering::SeqCst), 0, "nothing to resolve");
    backend.stop().await;
}

#[tokio::test]
async fn a_name_that_never_resolves_fails_calls_instead_of_holding_them() {
    let resolver = Arc::new(TestResolver::default());
    resolver.failing.store(true, Ordering::SeqCst);
    let options = ClientOptions { connect_timeout: Duration::from_secs(1), ..ClientOptions::new(None) }
        .with_resolver(resolver.clone())
        .with_dns_refresh(DNS_REFRESH);
    // `.invalid` never resolves (RFC 6761), so connecting by name fails too.
    let channel = lazy_channel_with("http://fanfare-backends.invalid:50051", options).expect("a valid URL");

    let answer = tokio::time::timeout(PATIENCE, check(&channel)).await.expect("the call returns");
    assert!(answer.is_err(), "no server can have answered: {answer:?}");
}

#[test]
fn a_url_without_a_host_is_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let _entered = runtime.enter();
    assert!(lazy_channel_with("not a url", ClientOptions::new(None)).is_err());
    assert!(lazy_channel_with("/just/a/path", ClientOptions::new(None)).is_err());
}
