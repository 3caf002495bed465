//! TLS with rustls (ring): the gRPC server's certificate, reloaded when its files change
//! ([`server`]), optional client-certificate verification (mTLS) whose verified peer reaches
//! every call as a [`PeerIdentity`], and the TLS of this service's own calls to other
//! services ([`client`]). Plaintext unless configured: `fanfare dev` and tests stay on
//! `http://`.

pub mod client;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use client::ClientTls;
pub use server::ServerTls;

/// Default interval between checks of the certificate files for a new version.
pub const DEFAULT_TLS_RELOAD_INTERVAL_MS: u64 = 5_000;
/// Shortest reload interval accepted.
pub const MIN_TLS_RELOAD_INTERVAL_MS: u64 = 10;

/// TLS of the gRPC server, and of this service's calls to the others. Unset (the default),
/// the server speaks plaintext HTTP/2.
#[derive(Debug, Clone, Args)]
pub struct TlsConfig {
    /// PEM certificate chain the gRPC server presents (leaf first); turns TLS on, with
    /// FANFARE_TLS_KEY_FILE. Read again when it changes (cert-manager rotation).
    #[arg(long, env = "FANFARE_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of FANFARE_TLS_CERT_FILE.
    #[arg(long, env = "FANFARE_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// PEM CA certificates that sign client certificates: when set, every connection must
    /// present a certificate they signed (mTLS), or the handshake is refused.
    #[arg(long, env = "FANFARE_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// How often the certificate, key and client CA files are read for a new version.
    #[arg(long, env = "FANFARE_TLS_RELOAD_INTERVAL_MS", default_value_t = DEFAULT_TLS_RELOAD_INTERVAL_MS)]
    pub tls_reload_interval_ms: u64,

    /// With TLS on, also serve gRPC health (`grpc.health.v1` only, plaintext) at this
    /// address, for Kubernetes' gRPC probes, which cannot speak TLS.
    #[arg(long, env = "FANFARE_PLAINTEXT_HEALTH_ADDR", requires = "tls_cert_file")]
    pub plaintext_health_addr: Option<SocketAddr>,

    /// This service's calls to the other services.
    #[command(flatten)]
    pub client: TlsClientConfig,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            tls_reload_interval_ms: DEFAULT_TLS_RELOAD_INTERVAL_MS,
            plaintext_health_addr: None,
            client: TlsClientConfig::default(),
        }
    }
}

impl TlsConfig {
    /// Whether the gRPC server speaks TLS.
    pub fn server_enabled(&self) -> bool {
        self.tls_cert_file.is_some()
    }

    /// How often the server's files are checked for a new version.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.tls_reload_interval_ms)
    }

    /// Refuses settings that cannot work (the files themselves are read at start).
    pub fn check(&self) -> Result<(), String> {
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err("FANFARE_TLS_CERT_FILE and FANFARE_TLS_KEY_FILE go together".to_owned());
        }
        if self.tls_client_ca_file.is_some() && self.tls_cert_file.is_none() {
            return Err("FANFARE_TLS_CLIENT_CA_FILE needs FANFARE_TLS_CERT_FILE and FANFARE_TLS_KEY_FILE".to_owned());
        }
        if self.plaintext_health_addr.is_some() && self.tls_cert_file.is_none() {
            return Err("FANFARE_PLAINTEXT_HEALTH_ADDR is for TLS servers: health is plaintext already".to_owned());
        }
        if self.tls_reload_interval_ms < MIN_TLS_RELOAD_INTERVAL_MS {
            return Err(format!("FANFARE_TLS_RELOAD_INTERVAL_MS must be at least {MIN_TLS_RELOAD_INTERVAL_MS}"));
        }
        self.client.check()
    }
}

/// TLS of the calls this process makes to Fanfare services at `https://` URLs (`http://`
/// URLs stay plaintext whatever is set here).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsClientConfig {
    /// PEM CA certificates that sign the other services' certificates; unset, the system's
    /// trusted roots.
    #[arg(long, global = true, env = "FANFARE_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,

    /// PEM certificate chain presented to services that require client certificates (mTLS),
    /// with FANFARE_TLS_CLIENT_KEY_FILE. Read when the channel is built.
    #[arg(long, global = true, env = "FANFARE_TLS_CLIENT_CERT_FILE", requires = "tls_client_key_file")]
    pub tls_client_cert_file: Option<PathBuf>,

    /// PEM private key of FANFARE_TLS_CLIENT_CERT_FILE.
    #[arg(long, global = true, env = "FANFARE_TLS_CLIENT_KEY_FILE", requires = "tls_client_cert_file")]
    pub tls_client_key_file: Option<PathBuf>,
}

impl TlsClientConfig {
    /// Refuses a certificate without its key and the other way round.
    pub fn check(&self) -> Result<(), String> {
        if self.tls_client_cert_file.is_some() != self.tls_client_key_file.is_some() {
            return Err("FANFARE_TLS_CLIENT_CERT_FILE and FANFARE_TLS_CLIENT_KEY_FILE go together".to_owned());
        }
        Ok(())
    }
}

/// Who is calling, as its verified client certificate names it: the first URI subject
/// alternative name (a SPIFFE id such as `spiffe://cluster.local/ns/app/sa/feed`), else the
/// first DNS one. Present in a call's request extensions (`request.extensions().get::<
/// PeerIdentity>()`, in tower layers and handlers alike) only when the connection is mTLS
/// and the certificate names one: the handshake already verified the certificate against
/// FANFARE_TLS_CLIENT_CA_FILE, so whatever this says is vouched for by that CA. A
/// certificate with neither kind of name (a common name only) gives no identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity(String);

impl PeerIdentity {
    /// The identity `certificate` (DER) names, if it parses and names one.
    pub fn from_certificate(certificate: &CertificateDer<'_>) -> Option<Self> {
        let parsed = webpki::EndEntityCert::try_from(certificate).ok()?;
        let name = parsed.valid_uri_names().next().or_else(|| parsed.valid_dns_names().next())?;
        Some(Self(name.to_owned()))
    }

    /// The name, as the certificate spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Every certificate of a PEM file, in order; an error when there is none.
pub(crate) fn parse_certificates(pem: &[u8], path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    anyhow::ensure!(!certificates.is_empty(), "{} holds no certificate", path.display());
    Ok(certificates)
}

/// The first private key of a PEM file.
pub(crate) fn parse_private_key(pem: &[u8], path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).with_context(|| format!("{} holds no PEM private key", path.display()))
}

/// Reads a whole file, naming it on failure.
pub(crate) fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
