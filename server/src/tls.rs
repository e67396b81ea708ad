//! TLS for client connections (`--tls-cert`, `--tls-key`,
//! `--tls-required`): rustls through pgwire, which answers the client's
//! SSLRequest (and direct TLS with ALPN `postgresql`, Postgres 17's form)
//! when it is given an acceptor.

use std::path::Path;
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How the server treats encryption.
#[derive(Clone, Default)]
pub struct TlsPolicy {
    /// Answers SSLRequests; `None` declines them (plain connections only).
    pub acceptor: Option<TlsAcceptor>,
    /// Refuses a client that did not encrypt its connection.
    pub required: bool,
}

impl std::fmt::Debug for TlsPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPolicy")
            .field("enabled", &self.acceptor.is_some())
            .field("required", &self.required)
            .finish()
    }
}

impl TlsPolicy {
    /// Loads the certificate chain and private key (PEM files) for
    /// `--tls-cert` and `--tls-key`. Errors name the file and what is wrong
    /// with it, since they stop the server from starting.
    pub fn from_files(cert: &Path, key: &Path, required: bool) -> Result<Self, String> {
        let certificates = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?;
        if certificates.is_empty() {
            return Err(format!(
                "the TLS certificate file {} holds no PEM certificate",
                cert.display()
            ));
        }
        let private_key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("cannot read the TLS private key {}: {e}", key.display()))?;
        // Named rather than left to rustls' process default, which is
        // ambiguous as soon as a dependency enables a second provider.
        // ring: the provider pgwire is built with (its default, aws-lc-rs,
        // adds a C library built with cmake to every cold build).
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certificates, private_key)
            .map_err(|e| {
                format!(
                    "the TLS certificate {} and key {} do not make a usable pair: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
        // Direct TLS (Postgres 17's `sslnegotiation=direct`) must name this
        // protocol; pgwire checks it but keeps its constant private.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Self {
            acceptor: Some(TlsAcceptor::from(Arc::new(config))),
            required,
        })
    }
}
