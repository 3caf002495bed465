//! The verified client certificate's [`PeerIdentity`], put in every call's request
//! extensions on an mTLS connection, so the layers after this one (auth, metrics) and the
//! handlers can tell which service is calling. Plaintext and server-only TLS connections get
//! none.

use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::tls::PeerIdentity;

/// Adds the caller's [`PeerIdentity`] to requests that arrived over mTLS.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerIdentityLayer;

impl<S> Layer<S> for PeerIdentityLayer {
    type Service = PeerIdentityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PeerIdentityService { inner }
    }
}

/// The service [`PeerIdentityLayer`] wraps.
#[derive(Debug, Clone)]
pub struct PeerIdentityService<S> {
    inner: S,
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for PeerIdentityService<S>
where
    S: Service<http::Request<ReqBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The leaf certificate comes first; the handshake already verified the chain. Parsing
        // it is a walk over ~1 KB of DER, cheap next to a call.
        let identity = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|chain| chain.first().and_then(PeerIdentity::from_certificate));
        if let Some(identity) = identity {
            request.extensions_mut().insert(identity);
        }
        self.inner.call(request)
    }
}
