//! A private PostgreSQL cluster with `ssl=on` and a private `redis-server` on a TLS port,
//! both with certificates from a CA made at run time ([`TestTlsFiles`]), for the tests of
//! `sslmode=verify-full` and `rediss://`. Each starts once per test process, on a free
//! loopback port, the first time a test asks for it.
//!
//! A static is never dropped, so each server runs under a small watchdog shell, its parent:
//! once the test process is gone the shell stops the server by its PID (the shell's own
//! child, so the PID cannot have been reused) and removes its directory. The shell has a
//! process group of its own, so a test runner killing the test's group on a timeout does
//! not take the watchdog with it.

use std::ffi::OsString;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fanfare_core::tls::testing::TestTlsFiles;

/// How long a server gets to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Where Debian's packages put each PostgreSQL version's programs.
const POSTGRES_VERSIONS_DIR: &str = "/usr/lib/postgresql";
/// The user PostgreSQL runs as when the tests run as root (initdb refuses root).
const POSTGRES_USER: &str = "postgres";

/// The watchdog: runs the server (`"$@"`) in the background, waits while the test process
/// (`$WATCH_PID`) and the server live, then stops the server with `$STOP_SIGNAL`, waits for
/// it, and removes `$WATCH_DIR`.
const WATCHDOG: &str = r#""$@" & server=$!
while kill -0 "$WATCH_PID" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 1; done
kill "-$STOP_SIGNAL" "$server" 2>/dev/null
wait "$server"
rm -rf "$WATCH_DIR""#;

/// A PostgreSQL cluster that requires TLS (`hostssl` only) on 127.0.0.1.
pub struct TlsPostgres {
    port: u16,
    files: TestTlsFiles,
}

impl TlsPostgres {
    /// The cluster of this test process, started on first use; panics if it cannot start
    /// (PostgreSQL's server package missing, say), with the reason.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<Result<TlsPostgres, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| Self::start().map_err(|error| format!("{error:#}")));
        started.as_ref().unwrap_or_else(|reason| panic!("cannot start a PostgreSQL cluster with ssl=on: {reason}"))
    }

    /// A URL of database `postgres` as user `postgres` at `localhost` (the name the server
    /// certificate carries) with `sslmode` and the test CA as `sslrootcert`.
    pub fn url(&self, sslmode: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres?sslmode={sslmode}&sslrootcert={}",
            self.port,
            self.files.path("ca.crt").display()
        )
    }

    /// The certificates; their CA signed the server's.
    pub fn files(&self) -> &TestTlsFiles {
        &self.files
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "runs once per test binary, in `get_or_init`, before any runtime work waits on it"
    )]
    fn start() -> anyhow::Result<Self> {
        let bin = postgres_bin_dir()?;
        let files = TestTlsFiles::new();
        let port = free_port()?;
        // Inside the certificates' directory, so the watchdog removes both.
        let directory = files.directory().join("cluster");
        std::fs::create_dir(&directory)?;
        let data = directory.join("data");
        let owner = if running_as_root()? { Some(user_ids(POSTGRES_USER)?) } else { None };
        if let Some((uid, gid)) = owner {
            // The postgres user may pass through the certificates' directory, not list it.
            std::fs::set_permissions(files.directory(), std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
            std::os::unix::fs::chown(&directory, Some(uid), Some(gid)).context("chown the cluster directory")?;
        }

        let mut initdb = as_postgres(owner, bin.join("initdb"));
        initdb.arg("-D").arg(&data).args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
        run(initdb).context("initdb")?;
        for (name, source, mode) in [("server.crt", "tls.crt", 0o644), ("server.key", "tls.key", 0o600)] {
            let target = data.join(name);
            std::fs::copy(files.path(source), &target)?;
            std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&target, Some(uid), Some(gid))?;
            }
        }
        // TLS or nothing over TCP: a plaintext connection is refused by pg_hba.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )?;

        let mut server = as_postgres(owner, bin.join("postgres"));
        server.arg("-D").arg(&data).args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"]);
        server.arg("-c").arg(format!("unix_socket_directories={}", directory.display()));
        server.args(["-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key"]);
        server.args(["-c", "fsync=off", "-c", "max_connections=40"]);
        // SIGINT is PostgreSQL's fast shutdown.
        watch(server, "INT", files.directory())?;

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let mut ready = Command::new(bin.join("pg_isready"));
            ready.args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()]);
            if ready.status().is_ok_and(|status| status.success()) {
                return Ok(Self { port, files });
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "PostgreSQL did not accept connections within {STARTUP_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A `redis-server` that speaks TLS only, on 127.0.0.1, trusting no client certificate.
pub struct TlsRedis {
    port: u16,
    files: TestTlsFiles,
}

impl TlsRedis {
    /// The server of this test process, started on first use; panics if it cannot start.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<Result<TlsRedis, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| Self::start().map_err(|error| format!("{error:#}")));
        started.as_ref().unwrap_or_else(|reason| panic!("cannot start redis-server with TLS: {reason}"))
    }

    /// `rediss://localhost:PORT` (the name the server certificate carries).
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }

    /// The certificates; their CA signed the server's.
    pub fn files(&self) -> &TestTlsFiles {
        &self.files
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "runs once per test binary, in `get_or_init`, before any runtime work waits on it"
    )]
    fn start() -> anyhow::Result<Self> {
        let files = TestTlsFiles::new();
        let port = free_port()?;
        let directory = files.directory();
        let mut server = Command::new("redis-server");
        server.args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"]);
        server.arg("--tls-cert-file").arg(files.path("tls.crt"));
        server.arg("--tls-key-file").arg(files.path("tls.key"));
        server.arg("--tls-ca-cert-file").arg(files.path("ca.crt"));
        server.args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--daemonize", "no"]);
        server.arg("--dir").arg(directory);
        watch(server, "TERM", directory)?;

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "redis-server did not listen within {STARTUP_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { port, files })
    }
}

/// Starts `server` under the watchdog: stopped with `stop_signal`, and `directory` removed,
/// once this process is gone.
fn watch(server: Command, stop_signal: &str, directory: &Path) -> anyhow::Result<()> {
    let mut watchdog = Command::new("sh");
    watchdog.arg("-c").arg(WATCHDOG).arg("watchdog").arg(server.get_program()).args(server.get_args());
    watchdog
        .env("WATCH_PID", std::process::id().to_string())
        .env("WATCH_DIR", directory)
        .env("STOP_SIGNAL", stop_signal)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // Never waited for: it outlives this process by design.
    watchdog.spawn().with_context(|| format!("starting {:?}", server.get_program()))?;
    Ok(())
}

/// `program`, run as the `postgres` user (`owner`) when the tests run as root.
fn as_postgres(owner: Option<(u32, u32)>, program: PathBuf) -> Command {
    match owner {
        None => Command::new(program),
        Some(_) => {
            let mut command = Command::new("setpriv");
            command.args(["--reuid", POSTGRES_USER, "--regid", POSTGRES_USER, "--clear-groups", "--"]).arg(program);
            command
        }
    }
}

/// Runs `command` to completion, failing with its output when it fails.
fn run(mut command: Command) -> anyhow::Result<()> {
    let output = command.stdin(Stdio::null()).output().with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The `bin` directory of the newest PostgreSQL installed.
fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, OsString)> = std::fs::read_dir(POSTGRES_VERSIONS_DIR)
        .with_context(|| format!("no {POSTGRES_VERSIONS_DIR}: is the postgresql package installed?"))?
        .filter_map(Result::ok)
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.file_name())))
        .collect();
    versions.sort();
    let (_, newest) = versions.pop().with_context(|| format!("no PostgreSQL version in {POSTGRES_VERSIONS_DIR}"))?;
    Ok(Path::new(POSTGRES_VERSIONS_DIR).join(newest).join("bin"))
}

/// Whether this process's effective user is root.
fn running_as_root() -> anyhow::Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let uids = status.lines().find_map(|line| line.strip_prefix("Uid:")).context("no Uid line")?;
    Ok(uids.split_whitespace().nth(1) == Some("0"))
}

/// The uid and gid of `user`, from /etc/passwd.
fn user_ids(user: &str) -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let line =
        passwd.lines().find(|line| line.split(':').next() == Some(user)).with_context(|| format!("no user {user}"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Ok((fields[2].parse()?, fields[3].parse()?))
}

/// A loopback port nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
