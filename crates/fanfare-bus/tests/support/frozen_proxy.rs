//! A TCP proxy whose open connections can be frozen: they stay open but carry nothing, like a
//! connection whose peer vanished without closing it. New connections pass normally.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The proxy; its connections close when it is dropped.
pub(crate) struct FreezableProxy {
    address: SocketAddr,
    freezes: watch::Sender<u64>,
    accepting: JoinHandle<()>,
}

impl FreezableProxy {
    /// Starts forwarding a free local port to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let address = listener.local_addr().expect("the proxy's address");
        let (freezes, freeze_receiver) = watch::channel(0);
        let accepting = tokio::spawn(accept(listener, upstream, freeze_receiver));
        Self { address, freezes, accepting }
    }

    /// The `redis://` URL that reaches upstream through the proxy.
    pub(crate) fn url(&self) -> String {
        format!("redis://{}", self.address)
    }

    /// Stops every connection open now from carrying data, without closing it.
    pub(crate) fn freeze_open_connections(&self) {
        self.freezes.send_modify(|generation| *generation += 1);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, freezes: watch::Receiver<u64>) {
    // Dropping the set (when the proxy aborts this task) aborts every connection.
    let mut connections = JoinSet::new();
    while let Ok((client, _peer)) = listener.accept().await {
        let mut freeze = freezes.clone();
        freeze.mark_unchanged();
        connections.spawn(forward(client, upstream, freeze));
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut freeze: watch::Receiver<u64>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = freeze.changed() => {
            // Hold both sockets open, silent, until the proxy goes away.
            std::future::pending::<()>().await;
        }
    }
}
