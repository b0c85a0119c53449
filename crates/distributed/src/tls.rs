//! `tls://`: TLS with mutual certificates (rustls, ring).
//!
//! Every member of a TLS cluster — scheduler, workers, clients — holds a
//! certificate signed by the cluster's CA and trusts only that CA, in both
//! directions: a connection without a valid certificate is refused during
//! the handshake (and logged by the side that refused it). One certificate
//! per member serves both as server (the scheduler, a worker's peer port)
//! and as client (everyone connecting), so it carries both extended key
//! usages.
//!
//! [`create_test_certificates`] (the `blockwise tls-certs DIR` command)
//! makes a CA and member certificates for `localhost` and `127.0.0.1`, for
//! tests and trials; a real cluster uses certificates from its own CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockwise_core::{Error, ErrorKind, Result};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// The PEM files of one member of a TLS cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster's CA certificate: the only one trusted.
    pub ca: PathBuf,
    /// This member's certificate (signed by the CA).
    pub cert: PathBuf,
    /// This member's private key.
    pub key: PathBuf,
}

/// The environment variables naming a worker's [`TlsFiles`] (set by
/// [`crate::LocalCluster`] for its worker processes).
pub const TLS_ENV: [&str; 3] = [
    "BLOCKWISE_CLUSTER_TLS_CA",
    "BLOCKWISE_CLUSTER_TLS_CERT",
    "BLOCKWISE_CLUSTER_TLS_KEY",
];

impl TlsFiles {
    /// The files named by [`TLS_ENV`], if all three are set.
    pub fn from_env() -> Option<TlsFiles> {
        let [ca, cert, key] = TLS_ENV.map(|v| std::env::var_os(v).filter(|s| !s.is_empty()));
        Some(TlsFiles {
            ca: ca?.into(),
            cert: cert?.into(),
            key: key?.into(),
        })
    }

    /// The environment variables that make a worker process use these files.
    pub fn env(&self) -> [(&'static str, &Path); 3] {
        [
            (TLS_ENV[0], self.ca.as_path()),
            (TLS_ENV[1], self.cert.as_path()),
            (TLS_ENV[2], self.key.as_path()),
        ]
    }
}

/// A member's TLS configuration, for connecting and for accepting.
#[derive(Clone)]
pub struct Tls {
    pub(crate) client: Arc<rustls::ClientConfig>,
    pub(crate) server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(mutual certificates)")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("TLS: {what}"))
}

impl Tls {
    /// Reads the PEM files.
    pub fn from_files(files: &TlsFiles) -> Result<Tls> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| tls_error(format!("cannot read {}: {e}", p.display())));
        Tls::from_pem(&read(&files.ca)?, &read(&files.cert)?, &read(&files.key)?).map_err(|e| {
            e.context(format!(
                "with the CA {}, certificate {}",
                files.ca.display(),
                files.cert.display()
            ))
        })
    }

    /// Builds the configuration from PEM text: the CA certificate, this
    /// member's certificate (chain) and its private key.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Tls> {
        let mut roots = RootCertStore::empty();
        let mut any = false;
        for c in CertificateDer::pem_slice_iter(ca) {
            let c = c.map_err(|e| tls_error(format!("the CA file is not PEM certificates: {e}")))?;
            roots
                .add(c)
                .map_err(|e| tls_error(format!("the CA certificate is not usable: {e}")))?;
            any = true;
        }
        if !any {
            return Err(tls_error("the CA file holds no certificate"));
        }
        let roots = Arc::new(roots);
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| tls_error(format!("the certificate file is not PEM certificates: {e}")))?;
        if chain.is_empty() {
            return Err(tls_error("the certificate file holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| tls_error(format!("the key file holds no private key: {e}")))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| tls_error(format!("cannot verify clients with this CA: {e}")))?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| tls_error(format!("the certificate and key do not fit: {e}")))?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_error(format!("the certificate and key do not fit: {e}")))?;
        Ok(Tls {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}

/// Writes a test CA (`ca.pem`, `ca-key.pem`) and one certificate and key
/// per member name (`NAME.pem`, `NAME-key.pem`) into `dir`, each valid for
/// `localhost` and `127.0.0.1`. Returns the files of each member, in order.
pub fn create_test_certificates(dir: &Path, members: &[&str]) -> Result<Vec<TlsFiles>> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| tls_error(format!("cannot create a certificate: {e}"));
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "blockwise test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem())?;
    std::fs::write(dir.join("ca-key.pem"), ca_key.serialize_pem())?;
    let issuer = Issuer::new(ca_params, ca_key);
    members
        .iter()
        .map(|name| {
            let key = KeyPair::generate().map_err(err)?;
            let mut params =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).map_err(err)?;
            params.distinguished_name.push(DnType::CommonName, *name);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let cert = params.signed_by(&key, &issuer).map_err(err)?;
            let files = TlsFiles {
                ca: ca_path.clone(),
                cert: dir.join(format!("{name}.pem")),
                key: dir.join(format!("{name}-key.pem")),
            };
            std::fs::write(&files.cert, cert.pem())?;
            std::fs::write(&files.key, key.serialize_pem())?;
            Ok(files)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_certificates_load_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("blockwise-tls-unit-{}", std::process::id()));
        let files = create_test_certificates(&dir, &["a"]).unwrap();
        Tls::from_files(&files[0]).unwrap();
        let bad = TlsFiles {
            cert: dir.join("missing.pem"),
            ..files[0].clone()
        };
        let err = Tls::from_files(&bad).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        let swapped = TlsFiles {
            cert: files[0].key.clone(),
            ..files[0].clone()
        };
        assert!(Tls::from_files(&swapped).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
