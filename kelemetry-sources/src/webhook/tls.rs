//! The webhook's TLS: a rustls server configuration from PEM files.

use std::sync::Arc;

use super::{TlsFiles, WebhookError};

/// A TLS acceptor serving the certificate chain and key of `files` (HTTP/2 and HTTP/1.1 by ALPN).
pub(super) fn load_tls(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, WebhookError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let cert_error = |detail: String| WebhookError::Tls {
        what: "certificate",
        path: files.cert.clone(),
        detail,
    };
    let key_error = |detail: String| WebhookError::Tls {
        what: "key",
        path: files.key.clone(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|err| cert_error(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| cert_error(err.to_string()))?;
    if certs.is_empty() {
        return Err(cert_error("no CERTIFICATE block found".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|err| key_error(err.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| cert_error(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| {
            key_error(format!(
                "does not match the certificate or is unusable: {err}"
            ))
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

impl TlsFiles {
    /// A TLS acceptor serving these files, HTTP/2 and HTTP/1.1 by ALPN: what the webhook serves with, for other
    /// servers (`kelemetry serve`) to serve the same way. Fails as [`AuditWebhook::bind`](super::AuditWebhook::bind)
    /// does when a file cannot be read or used.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, WebhookError> {
        load_tls(self)
    }
}
