//! A TCP proxy a test can cut: everything through it reaches one service until [`Proxy::cut`],
//! after which its connections are closed and new ones refused. For a test that needs one
//! service unreachable from another while the rest keeps running.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A proxy to one address.
pub struct Proxy {
    /// Where callers connect instead of the target.
    pub addr: SocketAddr,
    cut: CancellationToken,
}

impl Proxy {
    /// Starts forwarding connections on a fresh local port to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("the proxy's address");
        let cut = CancellationToken::new();
        tokio::spawn(accept(listener, target, cut.clone()));
        Self { addr, cut }
    }

    /// Closes every connection and stops listening: from now on, connecting is refused.
    pub fn cut(&self) {
        self.cut.cancel();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut.cancel();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, cut: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = cut.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((inbound, _)) = accepted else { continue };
        tokio::spawn(forward(inbound, target, cut.clone()));
    }
}

async fn forward(mut inbound: TcpStream, target: SocketAddr, cut: CancellationToken) {
    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
    tokio::select! {
        () = cut.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
    }
}
