//! Mutual TLS by pinning: each end knows the other's exact certificate.
//!
//! skiff does not use a certificate authority. The client makes a key pair per workspace and the agent
//! makes its own at first start; each side trusts the other's certificate byte for byte. The client's
//! certificate reaches the agent through a channel AWS (or the local file system) already authenticated:
//! user-data, SSM Run Command, or the workspace's state folder. The agent's certificate is pinned by the
//! client on first contact, made through the same authenticated channel.
//!
//! This module builds the rustls configurations for both ends; it does no I/O on sockets.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The name the client asks for in its TLS handshake; pinning makes the name itself irrelevant.
pub const AGENT_SERVER_NAME: &str = "skiff-agent";

/// Errors of key generation and certificate handling.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Making a key pair or a certificate failed.
    #[error("generating a key pair: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM text held no certificate, or a broken one.
    #[error("{what}: not a PEM certificate: {detail}")]
    BadCertificate { what: String, detail: String },
    /// A PEM text held no private key, or a broken one.
    #[error("{what}: not a PEM private key: {detail}")]
    BadKey { what: String, detail: String },
    /// rustls refused the configuration.
    #[error("building the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Reading a certificate or key file failed.
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Identity {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The private key (PKCS#8), PEM. Never leaves the machine that made it.
    pub private_key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key must never reach a log line.
        formatter
            .debug_struct("Identity")
            .field("certificate_pem", &self.certificate_pem)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Makes a fresh ECDSA P-256 key pair and a self-signed certificate naming `subject`.
    pub fn generate(subject: &str) -> Result<Self, TlsError> {
        let certified = rcgen::generate_simple_self_signed(vec![subject.to_owned()])?;
        Ok(Self {
            certificate_pem: certified.cert.pem(),
            private_key_pem: certified.signing_key.serialize_pem(),
        })
    }

    /// The certificate in DER form.
    pub fn certificate_der(&self) -> Result<CertificateDer<'static>, TlsError> {
        parse_certificate("identity certificate", &self.certificate_pem)
    }

    fn private_key_der(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(self.private_key_pem.as_bytes()).map_err(|error| {
            TlsError::BadKey {
                what: "identity key".into(),
                detail: error.to_string(),
            }
        })
    }
}

/// Parses one PEM certificate; `what` names it in the error.
pub fn parse_certificate(what: &str, pem: &str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|error| TlsError::BadCertificate {
        what: what.to_owned(),
        detail: error.to_string(),
    })
}

/// A short fingerprint of a certificate for logs and messages: the first 16 hex digits of its SHA-256.
pub fn fingerprint(certificate: &CertificateDer<'_>) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(certificate.as_ref());
    digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client certificates an agent accepts: one from its configuration, plus every `*.pem` file in a
/// trust folder (where `skiff enroll` adds another laptop's). The folder is read again whenever it changes,
/// so an enrolled client is accepted without restarting the agent.
#[derive(Debug)]
pub struct TrustedClients {
    configured: Vec<CertificateDer<'static>>,
    folder: Option<PathBuf>,
    cache: Mutex<FolderCache>,
}

#[derive(Debug, Default)]
struct FolderCache {
    /// The folder's listing (file name, modification time, length) when it was last read.
    stamp: Vec<(PathBuf, Option<SystemTime>, u64)>,
    certificates: Vec<CertificateDer<'static>>,
}

impl TrustedClients {
    /// Trusts the given certificates and whatever the folder holds.
    pub fn new(configured: Vec<CertificateDer<'static>>, folder: Option<PathBuf>) -> Self {
        Self {
            configured,
            folder,
            cache: Mutex::new(FolderCache::default()),
        }
    }

    /// Whether `certificate` is one the agent trusts right now.
    pub fn contains(&self, certificate: &CertificateDer<'_>) -> bool {
        if self.configured.iter().any(|trusted| trusted == certificate) {
            return true;
        }
        self.with_folder(|certificates| certificates.iter().any(|trusted| trusted == certificate))
    }

    /// Every certificate the agent trusts right now (the SSH server accepts their keys).
    pub fn certificates(&self) -> Vec<CertificateDer<'static>> {
        let mut certificates = self.configured.clone();
        self.with_folder(|folder| certificates.extend(folder.iter().cloned()));
        certificates
    }

    /// Runs `read` on the trust folder's certificates, reading the folder again if it changed.
    fn with_folder<T>(&self, read: impl FnOnce(&[CertificateDer<'static>]) -> T) -> T {
        let Some(folder) = &self.folder else {
            return read(&[]);
        };
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stamp = folder_stamp(folder);
        if stamp != cache.stamp {
            cache.certificates = stamp
                .iter()
                .filter_map(|(path, _, _)| {
                    let pem = std::fs::read_to_string(path).ok()?;
                    match parse_certificate(&path.display().to_string(), &pem) {
                        Ok(certificate) => Some(certificate),
                        Err(error) => {
                            tracing::warn!("ignoring trusted client certificate: {error}");
                            None
                        }
                    }
                })
                .collect();
            cache.stamp = stamp;
        }
        read(&cache.certificates)
    }
}

fn folder_stamp(folder: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut stamp: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "pem"))
        .map(|path| {
            let metadata = std::fs::metadata(&path).ok();
            let modified = metadata
                .as_ref()
                .and_then(|metadata| metadata.modified().ok());
            let length = metadata.map_or(0, |metadata| metadata.len());
            (path, modified, length)
        })
        .collect();
    stamp.sort();
    stamp
}

/// The agent's TLS configuration: its own identity, and only the trusted clients may connect.
pub fn server_config(
    identity: &Identity,
    trusted: Arc<TrustedClients>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedClientVerifier {
        trusted,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![identity.certificate_der()?],
            identity.private_key_der()?,
        )?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The client's TLS configuration: its own identity, and only the pinned agent certificate is accepted.
pub fn client_config(
    identity: &Identity,
    agent_certificate: CertificateDer<'static>,
) -> Result<rustls::ClientConfig, TlsError> {
    client_config_with(identity, Pinned::Certificate(agent_certificate))
}

fn client_config_with(
    identity: &Identity,
    pinned: Pinned,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedServerVerifier {
        pinned,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(
            vec![identity.certificate_der()?],
            identity.private_key_der()?,
        )?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A certificate as PEM text, the form workspaces keep pinned certificates in.
pub fn certificate_pem(certificate: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The server name the client sends; any value works because the certificate is pinned.
pub fn agent_server_name() -> ServerName<'static> {
    ServerName::try_from(AGENT_SERVER_NAME).expect("a constant, valid DNS name")
}

#[derive(Debug)]
struct PinnedServerVerifier {
    pinned: Pinned,
    algorithms: WebPkiSupportedAlgorithms,
}

/// What the client accepts from the agent.
#[derive(Debug)]
enum Pinned {
    /// Only this certificate.
    Certificate(CertificateDer<'static>),
    /// Whatever the agent presents, recorded for the caller to pin: trust on first use, for a connection whose
    /// transport already authenticated the other end (a Session Manager session to an instance IAM named).
    FirstUse(FirstUse),
}

/// The certificate an agent presented on a first-use connection (see [`client_config_first_use`]).
#[derive(Debug, Clone, Default)]
pub struct FirstUse(Arc<Mutex<Option<CertificateDer<'static>>>>);

impl FirstUse {
    /// The certificate the agent presented, once a handshake got that far.
    pub fn certificate(&self) -> Option<CertificateDer<'static>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The client's TLS configuration for the first connection to a new agent: any agent certificate is accepted
/// (its handshake signature is still checked) and recorded in the returned [`FirstUse`], so the caller can pin
/// it for every later connection. Use it only over a transport that authenticated the agent's machine.
pub fn client_config_first_use(
    identity: &Identity,
) -> Result<(rustls::ClientConfig, FirstUse), TlsError> {
    let seen = FirstUse::default();
    let config = client_config_with(identity, Pinned::FirstUse(seen.clone()))?;
    Ok((config, seen))
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pinned {
            Pinned::Certificate(pinned) if end_entity.as_ref() == pinned.as_ref() => {
                Ok(ServerCertVerified::assertion())
            }
            Pinned::Certificate(pinned) => Err(rustls::Error::General(format!(
                "the agent presented certificate {} but this workspace pinned {}",
                fingerprint(end_entity),
                fingerprint(pinned)
            ))),
            Pinned::FirstUse(seen) => {
                *seen
                    .0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(end_entity.clone().into_owned());
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct PinnedClientVerifier {
    trusted: Arc<TrustedClients>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.trusted.contains(end_entity) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "client certificate {} is not trusted by this workspace",
                fingerprint(end_entity)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
