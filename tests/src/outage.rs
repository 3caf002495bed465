//! Dependencies a test can break, and services over stores and buses the test picks: a
//! private `redis-server` that can be killed and restarted (never the shared one), a TCP
//! proxy whose connections can be cut, and groups plus messages whose messages service can
//! be stopped and started again on the same stores.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_bus::{RedisBus, RedisBusConfig, UpdateBus};
use fanfare_core::config::DependencyConfig;
use fanfare_groups::GroupsConfig;
use fanfare_groups::store::{GroupStore, PostgresGroupStore};
use fanfare_messages::MessagesConfig;
use fanfare_messages::store::testing::{ApplyHook, HookedStore};
use fanfare_messages::store::{Committed, LogWrite, MessageStore, PostgresMessageStore, StoreError, StoreResult};
use fanfare_testkit::TestDatabase;
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::messages::{Client, Groups};

/// How long a freshly spawned `redis-server` gets to answer.
const REDIS_STARTUP: Duration = Duration::from_secs(10);

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("a bound address").port()
}

/// A private `redis-server` on a free port, killed on drop.
pub struct RedisServer {
    port: u16,
    process: Option<Child>,
}

impl RedisServer {
    /// Starts a server and waits until it answers PING.
    pub async fn start() -> Self {
        let mut server = Self { port: free_port(), process: None };
        server.start_again().await;
        server
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it, as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await.expect("kill redis-server");
        }
    }

    /// Starts it again on the same port and waits until it answers.
    pub async fn start_again(&mut self) {
        assert!(self.process.is_none(), "redis-server is already running");
        let port = self.port.to_string();
        let process = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("`redis-server` on PATH (the outage tests start their own)");
        self.process = Some(process);
        let deadline = tokio::time::Instant::now() + REDIS_STARTUP;
        while !self.answers_ping().await {
            assert!(tokio::time::Instant::now() < deadline, "redis-server on port {port} did not answer");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await else { return false };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut reply = [0_u8; 7];
        stream.read_exact(&mut reply).await.is_ok() && &reply == b"+PONG\r\n"
    }

    /// A bus on this server with short timeouts, so an outage is noticed and healed fast.
    pub async fn bus(&self) -> Arc<dyn UpdateBus> {
        let config = RedisBusConfig {
            connection_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(500),
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_millis(250),
            ..RedisBusConfig::new(self.url())
        };
        Arc::new(RedisBus::open(config).await.expect("open the redis bus"))
    }
}

/// A TCP proxy to `upstream` whose connections can be cut (open ones reset, new ones
/// refused) or stalled (open ones reset, new ones accepted and never answered, as a host
/// that stopped answering), and restored: a database that becomes unreachable.
pub struct CuttableProxy {
    address: SocketAddr,
    cut: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    accepting: JoinHandle<()>,
}

impl CuttableProxy {
    /// Starts forwarding a free local port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let address = listener.local_addr().expect("the proxy's address");
        let cut = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0);
        let accepting =
            tokio::spawn(accept(listener, upstream, Arc::clone(&cut), Arc::clone(&stalled), generation.subscribe()));
        Self { address, cut, stalled, generation, accepting }
    }

    /// Where to connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Resets every open connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Resets every open connection and holds new ones open without an answer until
    /// [`restore`](Self::restore): connecting seems to work, then nothing comes back.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Lets connections through again (closing the ones held by [`stall`](Self::stall)).
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
        if self.stalled.swap(false, Ordering::SeqCst) {
            self.generation.send_modify(|generation| *generation += 1);
        }
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    cut: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    generation: watch::Receiver<u64>,
) {
    // Dropping the set (when the proxy aborts this task) ends every connection.
    let mut connections = JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        if cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let mut cuts = generation.clone();
        cuts.mark_unchanged();
        if stalled.load(Ordering::SeqCst) {
            connections.spawn(async move {
                let _held = client;
                let _ = cuts.changed().await;
            });
            continue;
        }
        connections.spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream).await else { return };
            let mut client = client;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cuts.changed() => {}
            }
        });
    }
}

/// The address of the database `options` name, to put a proxy in front of.
pub fn database_address(options: &PgConnectOptions) -> SocketAddr {
    use std::net::ToSocketAddrs;
    (options.get_host(), options.get_port())
        .to_socket_addrs()
        .expect("the database address resolves")
        .next()
        .expect("an address")
}

/// Waits until the health of `service` at `address` says NOT_SERVING (its readiness probe
/// found its dependency away).
pub async fn wait_until_not_serving(address: SocketAddr, service: &str) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("connect to the service");
    let health = tonic_health::pb::health_client::HealthClient::new(channel);
    crate::messages::eventually(&format!("{service} reports NOT_SERVING"), || {
        let mut health = health.clone();
        let request = HealthCheckRequest { service: service.to_owned() };
        async move {
            let status = health.check(request).await.map(|answer| answer.into_inner().status);
            status.is_ok_and(|status| status == ServingStatus::NotServing as i32)
        }
    })
    .await;
}

/// A fresh database with both schemas migrated, and stores on it.
pub async fn postgres_stores() -> (TestDatabase, Arc<dyn GroupStore>, Arc<dyn MessageStore>) {
    let database = TestDatabase::create().await.expect("a test database");
    let groups_store = PostgresGroupStore::connect(&database.url(), 4).await.expect("connect the groups store");
    PostgresGroupStore::migrate(groups_store.pool()).await.expect("migrate the groups schema");
    let messages_store = postgres_messages_store_with(database.options());
    PostgresMessageStore::migrate(messages_store.pool()).await.expect("migrate the messages schema");
    (database, Arc::new(groups_store), Arc::new(messages_store))
}

/// A messages store on `url`, connecting lazily (so it can be built while the database is
/// unreachable) and giving up on a connection after 2 s.
pub fn postgres_messages_store(url: &str) -> PostgresMessageStore {
    let options = url.parse::<PgConnectOptions>().expect("a valid database URL");
    postgres_messages_store_with(options)
}

/// [`postgres_messages_store`] with explicit connection options.
pub fn postgres_messages_store_with(options: PgConnectOptions) -> PostgresMessageStore {
    PostgresMessageStore::from_pool(lazy_pool(options, Duration::from_secs(2)))
}

/// A pool of 4 connections to `options`, connecting only when used (so it opens while the
/// database is cut), waiting at most `acquire_timeout` for a connection.
pub fn lazy_pool(options: PgConnectOptions, acquire_timeout: Duration) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new().max_connections(4).acquire_timeout(acquire_timeout).connect_lazy_with(options)
}

struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("a service task panicked")?
    }
}

/// Groups and messages on stores and a bus the test chose; the messages service can be
/// stopped and a new one started on the same address.
pub struct Services {
    /// Where groups listens.
    pub groups_addr: SocketAddr,
    /// Where messages listens.
    pub messages_addr: SocketAddr,
    /// The groups store.
    pub groups_store: Arc<dyn GroupStore>,
    messages_config: MessagesConfig,
    groups: Option<Running>,
    messages: Option<Running>,
    other_pods: Vec<Running>,
}

impl Services {
    /// Starts both services; `adjust` changes the messages configuration.
    pub async fn start(
        groups_store: Arc<dyn GroupStore>,
        messages_store: Arc<dyn MessageStore>,
        bus: Arc<dyn UpdateBus>,
        adjust: impl FnOnce(&mut MessagesConfig),
    ) -> Self {
        let groups_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let messages_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let groups_addr = groups_listener.local_addr().expect("an address");
        let messages_addr = messages_listener.local_addr().expect("an address");
        let mut groups_config = GroupsConfig::for_dev(DependencyConfig::default());
        groups_config.messages_url = Some(format!("http://{messages_addr}"));
        let mut messages_config = MessagesConfig::for_dev(DependencyConfig::default(), format!("http://{groups_addr}"));
        adjust(&mut messages_config);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(fanfare_groups::serve(
            groups_config,
            Arc::clone(&groups_store),
            groups_listener,
            shutdown.clone(),
        ));
        let mut services = Self {
            groups_addr,
            messages_addr,
            groups_store,
            messages_config,
            groups: Some(Running { shutdown, task }),
            messages: None,
            other_pods: Vec::new(),
        };
        services.serve_messages(messages_listener, messages_store, bus);
        services
    }

    fn serve_messages(&mut self, listener: TcpListener, store: Arc<dyn MessageStore>, bus: Arc<dyn UpdateBus>) {
        let shutdown = CancellationToken::new();
        let config = self.messages_config.clone();
        let task = tokio::spawn(fanfare_messages::serve(config, store, bus, listener, shutdown.clone()));
        self.messages = Some(Running { shutdown, task });
    }

    /// Stops the messages service (its relay and committer with it).
    pub async fn stop_messages(&mut self) {
        if let Some(messages) = self.messages.take() {
            messages.stop().await.expect("the messages service stops cleanly");
        }
    }

    /// Starts a new messages service on the same address, over `store` and `bus`.
    pub async fn start_messages(&mut self, store: Arc<dyn MessageStore>, bus: Arc<dyn UpdateBus>) {
        assert!(self.messages.is_none(), "stop the running messages service first");
        let listener = TcpListener::bind(self.messages_addr).await.expect("rebind the messages address");
        self.serve_messages(listener, store, bus);
    }

    /// Starts one more messages pod over `store` and `bus` (the groups relay keeps calling
    /// the first one); returns where it listens.
    pub async fn start_another_messages_pod(
        &mut self,
        store: Arc<dyn MessageStore>,
        bus: Arc<dyn UpdateBus>,
    ) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let address = listener.local_addr().expect("an address");
        let shutdown = CancellationToken::new();
        let config = self.messages_config.clone();
        let task = tokio::spawn(fanfare_messages::serve(config, store, bus, listener, shutdown.clone()));
        self.other_pods.push(Running { shutdown, task });
        address
    }

    /// A connected groups client.
    pub async fn groups(&self) -> Groups {
        let endpoint = format!("http://{}", self.groups_addr);
        Groups::connect(endpoint).await.expect("connect to groups")
    }

    /// A connected messages client.
    pub async fn messages(&self) -> Client {
        let endpoint = format!("http://{}", self.messages_addr);
        Client::connect(endpoint).await.expect("connect to messages")
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for running in [&self.groups, &self.messages].into_iter().flatten().chain(&self.other_pods) {
            running.shutdown.cancel();
        }
    }
}

/// A [`MessageStore`] whose batch writes (`apply`) can be held at a gate or made to fail,
/// delegating everything to an inner store: a database that is slow, or that fails a commit.
/// [`GatedStore::hook`] steers the gate.
pub type GatedStore = HookedStore<CommitGate>;

/// The gate of a [`GatedStore`]'s batch writes.
pub struct CommitGate {
    open: watch::Sender<bool>,
    fail_next: AtomicBool,
    applies_started: AtomicU64,
}

impl CommitGate {
    /// A store over `inner` with the gate open.
    pub fn around(inner: Arc<dyn MessageStore>) -> Arc<GatedStore> {
        let (open, _) = watch::channel(true);
        let gate = Self { open, fail_next: AtomicBool::new(false), applies_started: AtomicU64::new(0) };
        Arc::new(HookedStore::new(inner, gate))
    }

    /// Holds every batch write that starts from now on until [`open`](Self::open).
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Lets held and new batch writes through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Makes the next batch write fail as an unreachable database would, writing nothing.
    pub fn fail_next_batch(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }

    /// How many batch writes have started (held ones included).
    pub fn applies_started(&self) -> u64 {
        self.applies_started.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ApplyHook for CommitGate {
    async fn apply(
        &self,
        inner: &dyn MessageStore,
        writes: Vec<LogWrite>,
        now: DateTime<Utc>,
    ) -> StoreResult<Committed> {
        self.applies_started.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.subscribe();
        open.wait_for(|open| *open).await.expect("the gate lives as long as the store");
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Unavailable(anyhow::anyhow!("the test failed this batch")));
        }
        inner.apply(writes, now).await
    }
}
