//! [`LoopbackCertificates`]: a test CA and a serving certificate for 127.0.0.1, as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Why the test certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// Generating a key or signing a certificate failed.
    #[error("cannot generate the test certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// PEM files of a test CA and of a serving certificate for `127.0.0.1` (and `localhost`) signed by it, made with
/// rcgen: `ca.crt`, `tls.crt` and `tls.key` (PKCS#8) in a folder. A client that trusts [`Self::ca_cert`] accepts
/// a server that serves [`Self::cert`] with [`Self::key`] on the loopback address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopbackCertificates {
    /// The CA's certificate: what clients trust.
    pub ca_cert: PathBuf,
    /// The server's certificate chain (its leaf certificate).
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl LoopbackCertificates {
    /// Makes a CA and a serving certificate for 127.0.0.1 and writes them into `dir`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let files = kelemetry_testkit::LoopbackCertificates::write_to(dir.path())?;
    /// assert!(std::fs::read_to_string(&files.cert)?.starts_with("-----BEGIN CERTIFICATE-----"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_to(dir: &Path) -> Result<Self, CertificateError> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "kelemetry test CA");
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate()?;
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = server.signed_by(&key, &issuer)?;

        let files = Self {
            ca_cert: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        write(&files.ca_cert, ca_cert.pem())?;
        write(&files.cert, cert.pem())?;
        write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}

fn write(path: &Path, pem: String) -> Result<(), CertificateError> {
    std::fs::write(path, pem).map_err(|source| CertificateError::Write {
        path: path.to_owned(),
        source,
    })
}
