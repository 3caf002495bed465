//! Certificates made at run time for tests (behind the `testing` feature): a CA, server and
//! client certificates it signs, and a temporary directory holding them as a Kubernetes
//! TLS Secret would (`ca.crt`, `tls.crt`, `tls.key`), so no key is ever committed.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::{TlsClientConfig, TlsConfig};

/// The names every test server certificate carries.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];
/// The identity of the client certificate of [`TestTlsFiles`].
pub const CLIENT_IDENTITY: &str = "spiffe://fanfare.test/ns/fanfare/sa/test-client";

/// A certificate authority that signs server and client certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A signed certificate and its key.
#[derive(Debug, Clone)]
pub struct TestCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let certificate = params.self_signed(&key).expect("a self-signed CA");
        Self { pem: certificate.pem(), issuer: Issuer::new(params, key) }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate for `names` (DNS names or IP addresses), with `uri` as its first
    /// subject alternative name when given, valid for servers and clients alike, with serial
    /// number `serial`.
    pub fn issue(&self, names: &[&str], uri: Option<&str>, serial: u64) -> TestCertificate {
        let key = KeyPair::generate().expect("a key");
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        if let Some(uri) = uri {
            params.subject_alt_names.insert(0, SanType::URI(uri.try_into().expect("an ASCII URI")));
        }
        params.distinguished_name.push(DnType::CommonName, "fanfare test");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(SerialNumber::from(serial));
        let certificate = params.signed_by(&key, &self.issuer).expect("a signed certificate");
        TestCertificate { cert_pem: certificate.pem(), key_pem: key.serialize_pem(), der: certificate.der().clone() }
    }

    /// A server certificate for [`SERVER_NAMES`].
    pub fn server_certificate(&self, serial: u64) -> TestCertificate {
        self.issue(&SERVER_NAMES, None, serial)
    }
}

/// A CA with a server and a client certificate, written to a temporary directory (removed on
/// drop): `ca.crt`, `tls.crt` + `tls.key` (the server, serial 1), `client.crt` + `client.key`
/// (named [`CLIENT_IDENTITY`]).
pub struct TestTlsFiles {
    ca: TestCa,
    directory: tempfile::TempDir,
}

impl Default for TestTlsFiles {
    fn default() -> Self {
        Self::new()
    }
}

impl TestTlsFiles {
    /// Makes the CA and both certificates and writes them.
    pub fn new() -> Self {
        let files = Self { ca: TestCa::new("fanfare test CA"), directory: tempfile::tempdir().expect("a temp dir") };
        files.write("ca.crt", files.ca.pem());
        let server = files.ca.server_certificate(1);
        files.write("tls.key", &server.key_pem);
        files.write("tls.crt", &server.cert_pem);
        let client = files.ca.issue(&["test-client.fanfare.test"], Some(CLIENT_IDENTITY), 2);
        files.write("client.key", &client.key_pem);
        files.write("client.crt", &client.cert_pem);
        files
    }

    /// The CA, to issue more certificates.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The directory the files are in.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// The path of file `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    /// Replaces `name` with `contents` at once (written aside, then renamed into place, as a
    /// Secret volume update appears to the process).
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        let staging = self.path(&format!(".{name}.new"));
        std::fs::write(&staging, contents).expect("write a file");
        std::fs::rename(&staging, &path).expect("rename it into place");
        path
    }

    /// Server TLS from `tls.crt` and `tls.key`, checked for changes every 20 ms; client
    /// certificates from the CA required when `mtls`; calls to other services as
    /// [`Self::client_config`].
    pub fn server_config(&self, mtls: bool) -> TlsConfig {
        TlsConfig {
            tls_cert_file: Some(self.path("tls.crt")),
            tls_key_file: Some(self.path("tls.key")),
            tls_client_ca_file: mtls.then(|| self.path("ca.crt")),
            tls_reload_interval_ms: 20,
            plaintext_health_addr: None,
            client: self.client_config(),
        }
    }

    /// Clients trusting the CA and presenting `client.crt`.
    pub fn client_config(&self) -> TlsClientConfig {
        TlsClientConfig {
            tls_ca_file: Some(self.path("ca.crt")),
            tls_client_cert_file: Some(self.path("client.crt")),
            tls_client_key_file: Some(self.path("client.key")),
        }
    }
}
