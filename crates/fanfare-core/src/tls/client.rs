//! The TLS of calls to other Fanfare services: which CA vouches for them and which
//! certificate this process presents when they require one (mTLS). Applied by
//! [`crate::client`] to every connection of an `https://` URL.

use std::path::Path;

use anyhow::Context as _;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::{TlsClientConfig, parse_certificates, parse_private_key, read_file};

/// What a client trusts and presents. The default trusts the system's roots and presents no
/// certificate.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// The CA certificates (PEM) that sign the services' certificates; `None` for the
    /// system's trusted roots.
    ca: Option<Certificate>,
    /// The certificate chain and key (PEM) presented to services that ask for one.
    identity: Option<Identity>,
}

impl ClientTls {
    /// Reads and checks the files `config` names (once: a channel keeps the certificate it
    /// was built with).
    pub fn load(config: &TlsClientConfig) -> anyhow::Result<Self> {
        let ca = config.tls_ca_file.as_deref().map(read_certificates).transpose()?;
        let identity = match (&config.tls_client_cert_file, &config.tls_client_key_file) {
            (Some(cert), Some(key)) => Some(read_identity(cert, key)?),
            (None, None) => None,
            _ => anyhow::bail!("FANFARE_TLS_CLIENT_CERT_FILE and FANFARE_TLS_CLIENT_KEY_FILE go together"),
        };
        Ok(Self { ca, identity })
    }

    /// Trusting the CA certificates of `ca_pem` only.
    pub fn with_ca_pem(self, ca_pem: impl AsRef<[u8]>) -> Self {
        Self { ca: Some(Certificate::from_pem(ca_pem)), ..self }
    }

    /// Presenting the certificate chain `cert_pem` with its key `key_pem`.
    pub fn with_identity_pem(self, cert_pem: impl AsRef<[u8]>, key_pem: impl AsRef<[u8]>) -> Self {
        Self { identity: Some(Identity::from_pem(cert_pem, key_pem)), ..self }
    }

    /// tonic's settings for a connection to `server_name`, the host the URL names (checked
    /// against the certificate whatever address the name resolved to).
    pub fn tonic_config(&self, server_name: &str) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().domain_name(server_name);
        config = match &self.ca {
            Some(ca) => config.ca_certificate(ca.clone()),
            None => config.with_native_roots(),
        };
        if let Some(identity) = &self.identity {
            config = config.identity(identity.clone());
        }
        config
    }
}

/// The PEM CA certificates of `path`, checked to parse.
fn read_certificates(path: &Path) -> anyhow::Result<Certificate> {
    let pem = read_file(path)?;
    parse_certificates(&pem, path)?;
    Ok(Certificate::from_pem(pem))
}

/// The PEM certificate chain and key of `cert` and `key`, checked to parse.
fn read_identity(cert: &Path, key: &Path) -> anyhow::Result<Identity> {
    let cert_pem = read_file(cert)?;
    parse_certificates(&cert_pem, cert)?;
    let key_pem = read_file(key)?;
    parse_private_key(&key_pem, key).with_context(|| format!("the key of {}", cert.display()))?;
    Ok(Identity::from_pem(cert_pem, key_pem))
}
