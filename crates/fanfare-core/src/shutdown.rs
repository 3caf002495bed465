//! Shutdown is an input: SIGTERM or SIGINT cancels one token that the server, its streams
//! and its background tasks all watch; a stream the token ends closes with
//! [`shutdown_status`].

use tokio_util::sync::CancellationToken;

/// The status a server-streaming handler ends its stream with once the shutdown token is
/// cancelled, so the client reconnects to another instance.
pub fn shutdown_status() -> tonic::Status {
    crate::status::new(
        tonic::Code::Unavailable,
        crate::status::ErrorReason::ShuttingDown,
        "server is shutting down; reconnect to another instance",
    )
}

/// A token cancelled on the first SIGTERM or SIGINT (Ctrl-C), logging which arrived.
///
/// On Unix the handlers are registered before this returns, so a signal sent right after is
/// never missed.
///
/// # Panics
///
/// When called outside a Tokio runtime.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let signals = Signals::register();
    let trigger = token.clone();
    tokio::spawn(async move {
        let name = signals.first().await;
        tracing::info!(signal = name, "shutdown signal received");
        trigger.cancel();
    });
    token
}

/// The signals that shut the process down, registered and waiting.
#[cfg(unix)]
struct Signals {
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn register() -> Self {
        use tokio::signal::unix::{SignalKind, signal};

        let register = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(error) => {
                tracing::error!(signal = name, %error, "cannot listen for a shutdown signal");
                None
            }
        };
        Self {
            terminate: register(SignalKind::terminate(), "SIGTERM"),
            interrupt: register(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Waits for the first signal and names it. A signal that could not be registered never
    /// arrives.
    async fn first(mut self) -> &'static str {
        tokio::select! {
            Some(()) = recv(self.terminate.as_mut()) => "SIGTERM",
            Some(()) = recv(self.interrupt.as_mut()) => "SIGINT",
            // Both streams closed: no signal can arrive any more.
            else => std::future::pending().await,
        }
    }
}

/// The next delivery of `signal`, or never when it is not registered.
#[cfg(unix)]
async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Ctrl-C, the only shutdown signal elsewhere.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn register() -> Self {
        Self
    }

    async fn first(self) -> &'static str {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
        "ctrl-c"
    }
}
