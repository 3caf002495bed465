//! A private `redis-server` on a free port, for tests that must stop and restart Redis
//! without touching the shared one.

use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// How long a freshly spawned server gets to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process, killed when this value is dropped.
pub(crate) struct RedisServer {
    port: u16,
    process: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free local port and waits until it answers.
    pub(crate) async fn start() -> Self {
        let mut server = Self { port: free_port(), process: None };
        server.start_again().await;
        server
    }

    /// The URL of this server.
    pub(crate) fn url(&self) -> String {
        format!("redis://{}", self.address())
    }

    /// The TCP address of this server.
    pub(crate) fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server (as a crash would: no shutdown, connections reset).
    pub(crate) async fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await.expect("kill redis-server");
        }
    }

    /// Starts the server again on the same port and waits until it answers.
    pub(crate) async fn start_again(&mut self) {
        assert!(self.process.is_none(), "the server is already running");
        let port = self.port.to_string();
        let spawned = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let process = match spawned {
            Ok(process) => process,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "`redis-server` is not on PATH; the Redis restart test needs it \
                 (install the redis-server package)"
            ),
            Err(error) => panic!("could not start redis-server: {error}"),
        };
        self.process = Some(process);
        self.wait_until_ready().await;
    }

    async fn wait_until_ready(&mut self) {
        let client = redis::Client::open(self.url()).expect("a valid URL");
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(process) = self.process.as_mut()
                && let Ok(Some(status)) = process.try_wait()
            {
                panic!("redis-server on port {} exited at start: {status}", self.port);
            }
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut connection).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server on port {} did not answer within {STARTUP_TIMEOUT:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("a bound address").port()
}
