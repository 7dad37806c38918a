//! TLS for the PostgreSQL endpoint (`--tls-cert`, `--tls-key`): a PEM certificate chain
//! and private key, loaded once at start-up. Any problem with either file stops start-up
//! with an error naming the file: the server never falls back to plain text because a
//! certificate could not be read.
//!
//! With TLS configured, clients that ask for it (`sslmode=require`, `prefer`) get it, and
//! plain-text connections are still accepted (as PostgreSQL with `ssl = on` and a `host`
//! line in pg_hba.conf); passwords never cross the wire either way, as SCRAM sends proofs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate file {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("TLS key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS certificate {cert} and key {key} do not make a server configuration: {reason}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| e.to_string())
}

/// The acceptor for `cert` (PEM, the server certificate first) and `key` (PEM private
/// key: PKCS#8, PKCS#1 or SEC1).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_error = |reason: String| TlsError::Certificate {
        path: cert.to_path_buf(),
        reason,
    };
    let key_error = |reason: String| TlsError::Key {
        path: key.to_path_buf(),
        reason,
    };
    let cert_pem = read(cert).map_err(cert_error)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!("not a PEM certificate ({e})")))?;
    if chain.is_empty() {
        return Err(cert_error("holds no PEM certificate".into()));
    }
    let key_pem = read(key).map_err(key_error)?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| key_error(format!("not a PEM private key ({e})")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config_error = |reason: String| TlsError::Config {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| config_error(e.to_string()))?;
    // PostgreSQL 17 clients negotiating TLS directly require this ALPN protocol.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_file_that_is_wrong() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem").expect("write");
        let e = acceptor(&missing, &garbage).err().expect("fails");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = acceptor(&garbage, &missing).err().expect("fails");
        assert!(e.to_string().contains("garbage.pem"), "{e}");
    }
}
