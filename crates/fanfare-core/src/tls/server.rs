//! The gRPC server's side of TLS: a rustls configuration rebuilt whenever the certificate,
//! key or client CA files change, and the stream of accepted connections that
//! [`GrpcServer`](crate::server::GrpcServer) serves once their handshakes are done.
//!
//! tonic's own `ServerTlsConfig` reads its files once. cert-manager renews a certificate
//! by replacing the Secret's files (an atomic swap of the volume's `..data` link), and the
//! new certificate must be served without a restart, so [`ServerTls`] keeps the current
//! configuration behind a lock, every new handshake takes the one current at that moment,
//! and [`ServerTls::watch`] reads the files every few seconds and swaps in a new
//! configuration when their contents differ. Connections already open keep the session
//! they negotiated (the server's maximum connection age recycles them within minutes).

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use futures::{Stream, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use super::{TlsConfig, parse_certificates, parse_private_key, read_file};

/// How long a client may take to complete its handshake before the connection is closed.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; past it, new connections wait in the listen backlog.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 256;
/// The only application protocol served: gRPC is HTTP/2.
const ALPN_H2: &[u8] = b"h2";
/// Connections closed because their TLS handshake failed or timed out.
pub const HANDSHAKE_FAILURES_TOTAL: &str = "fanfare_tls_handshake_failures_total";
/// New versions of the certificate files, by outcome: `reloaded` or `refused`.
pub const CERTIFICATE_RELOADS_TOTAL: &str = "fanfare_tls_certificate_reloads_total";

fn describe_metrics() {
    metrics::describe_counter!(
        HANDSHAKE_FAILURES_TOTAL,
        metrics::Unit::Count,
        "Connections closed because their TLS handshake failed (plaintext, no or an untrusted client certificate) or timed out."
    );
    metrics::describe_counter!(
        CERTIFICATE_RELOADS_TOTAL,
        metrics::Unit::Count,
        "New versions of the TLS certificate, key or client CA files, by outcome: reloaded, or refused (unusable; the current one stays)."
    );
}

/// The files a server's TLS is made of.
#[derive(Debug, Clone)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// The contents of [`TlsFiles`] at one moment, compared to notice a new version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TlsFileContents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl TlsFiles {
    fn read(&self) -> anyhow::Result<TlsFileContents> {
        Ok(TlsFileContents {
            cert: read_file(&self.cert)?,
            key: read_file(&self.key)?,
            client_ca: self.client_ca.as_deref().map(read_file).transpose()?,
        })
    }

    /// A rustls server configuration from `contents`: the certificate chain and its key,
    /// client certificates required and verified when there is a client CA, HTTP/2 only.
    ///
    /// The crypto is rustls' process default: *ring*, the only provider compiled in.
    fn build(&self, contents: &TlsFileContents) -> anyhow::Result<rustls::ServerConfig> {
        let chain = parse_certificates(&contents.cert, &self.cert)?;
        let key = parse_private_key(&contents.key, &self.key)?;
        let builder = rustls::ServerConfig::builder();
        let builder = match (&self.client_ca, &contents.client_ca) {
            (Some(path), Some(pem)) => {
                let mut roots = RootCertStore::empty();
                for certificate in parse_certificates(pem, path)? {
                    roots.add(certificate).with_context(|| format!("a CA certificate of {}", path.display()))?;
                }
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .with_context(|| format!("a client certificate verifier from {}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .with_context(|| format!("the certificate {} with the key {}", self.cert.display(), self.key.display()))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }
}

/// The server's current TLS configuration, reloaded from its files by [`Self::watch`].
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
    /// What `current` was built from.
    loaded: Mutex<TlsFileContents>,
    /// The last version that could not be used (its contents, or why the files could not be
    /// read), so each broken version is logged and counted once.
    refused: Mutex<Option<Result<TlsFileContents, String>>>,
}

impl ServerTls {
    /// The server TLS `config` names, read and checked now; `None` when TLS is off.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Option<Arc<Self>>> {
        let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) else {
            return Ok(None);
        };
        let files = TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: config.tls_client_ca_file.clone() };
        let contents = files.read()?;
        let built = files.build(&contents)?;
        describe_metrics();
        Ok(Some(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(built)),
            loaded: Mutex::new(contents),
            refused: Mutex::new(None),
        })))
    }

    /// Whether connections must present a client certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// An acceptor with the configuration current now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner)))
    }

    /// Reads the files and, if they changed, switches new handshakes to them. Returns whether
    /// it switched. Files that do not form a valid configuration (a key from another
    /// certificate, half-written PEM) are refused and the current configuration stays.
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let contents = self.files.read()?;
        if *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) == contents {
            return Ok(false);
        }
        let built = self.files.build(&contents)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(built);
        *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) = contents;
        Ok(true)
    }

    /// Checks the files every `interval` until `shutdown`, logging each switch, and each new
    /// version that cannot be used once (it is tried again at every check, so a certificate
    /// written before its key is picked up as soon as the key follows).
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            match self.reload_if_changed() {
                Ok(true) => {
                    metrics::counter!(CERTIFICATE_RELOADS_TOTAL, "outcome" => "reloaded").increment(1);
                    *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = None;
                    tracing::info!(cert = %self.files.cert.display(), "tls certificate reloaded");
                }
                Ok(false) => {}
                Err(error) => {
                    let attempt = self.files.read().map_err(|error| format!("{error:#}"));
                    let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
                    if refused.as_ref() != Some(&attempt) {
                        metrics::counter!(CERTIFICATE_RELOADS_TOTAL, "outcome" => "refused").increment(1);
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "cannot reload the tls certificate; new connections keep the current one"
                        );
                        *refused = Some(attempt);
                    }
                }
            }
        }
    }
}

/// Accepted connections with their TLS handshake done, in the order handshakes finish.
/// Handshakes run concurrently (at most [`MAX_CONCURRENT_HANDSHAKES`], each bounded by
/// [`TLS_HANDSHAKE_TIMEOUT`]), so a slow or silent client delays nobody; a failed one (a
/// plaintext client, a client certificate the CA did not sign, none at all under mTLS) is
/// logged at debug level and closed. Accepting stops when the stream is dropped.
pub(crate) fn tls_incoming(
    tcp: TcpIncoming,
    tls: Arc<ServerTls>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> + Send + 'static {
    let (ready, connections) = mpsc::channel(MAX_CONCURRENT_HANDSHAKES);
    tokio::spawn(accept_loop(tcp, tls, ready));
    ReceiverStream::new(connections)
}

async fn accept_loop(
    mut tcp: TcpIncoming,
    tls: Arc<ServerTls>,
    ready: mpsc::Sender<Result<TlsStream<TcpStream>, io::Error>>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            () = ready.closed() => return,
            permit = Arc::clone(&handshakes).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => return,
            },
        };
        let accepted = tokio::select! {
            () = ready.closed() => return,
            accepted = tcp.next() => accepted,
        };
        let stream = match accepted {
            None => return,
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(error = %error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = tls.acceptor();
        let ready = ready.clone();
        tokio::spawn(async move {
            let peer = stream.peer_addr().ok();
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(connection)) => {
                    // The server has stopped taking connections when this fails.
                    let _ = ready.send(Ok(connection)).await;
                }
                Ok(Err(error)) => {
                    metrics::counter!(HANDSHAKE_FAILURES_TOTAL).increment(1);
                    tracing::debug!(?peer, error = %error, "tls handshake failed");
                }
                Err(_elapsed) => {
                    metrics::counter!(HANDSHAKE_FAILURES_TOTAL).increment(1);
                    tracing::debug!(?peer, "tls handshake timed out");
                }
            }
            drop(permit);
        });
    }
}
