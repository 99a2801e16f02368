//! What both ends know about SSH: the SSH public key inside a skiff certificate.
//!
//! skiff has one key pair per identity and reuses it for SSH. The agent's TLS key is its SSH host key, so
//! the client, which pinned the agent's certificate, can write the `known_hosts` line without asking anything
//! new; the clients' TLS keys are their SSH user keys, so the agent's SSH server accepts exactly the clients
//! its TLS server trusts. Nothing here does I/O.

pub mod forwarding;

use ssh_key::PublicKey;
use ssh_key::public::{EcdsaPublicKey, Ed25519PublicKey, KeyData};

/// The object identifier of an elliptic-curve public key (RFC 5480).
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// The object identifier of the NIST P-256 curve (RFC 5480).
const NIST_P256: &str = "1.2.840.10045.3.1.7";
/// The object identifier of an Ed25519 public key (RFC 8410).
const ED25519: &str = "1.3.101.112";

/// A certificate whose key cannot serve as an SSH key.
#[derive(Debug, thiserror::Error)]
pub enum SshKeyError {
    /// The certificate is not DER X.509.
    #[error("{what}: not an X.509 certificate: {detail}")]
    BadCertificate { what: String, detail: String },
    /// The key's algorithm has no SSH form here.
    #[error(
        "{what}: its key (algorithm {algorithm}) cannot serve as an SSH key; skiff's keys are ECDSA P-256 (or Ed25519)"
    )]
    Unsupported { what: String, algorithm: String },
    /// The key's bytes are malformed.
    #[error("{what}: a malformed public key: {detail}")]
    BadKey { what: String, detail: String },
}

/// The SSH public key of a DER certificate (such as `CertificateDer`); `what` names the certificate in errors.
pub fn public_key(what: &str, certificate_der: &[u8]) -> Result<PublicKey, SshKeyError> {
    let (_, certificate) =
        x509_parser::parse_x509_certificate(certificate_der).map_err(|error| {
            SshKeyError::BadCertificate {
                what: what.to_owned(),
                detail: error.to_string(),
            }
        })?;
    let info = certificate.public_key();
    let algorithm = info.algorithm.algorithm.to_id_string();
    let bytes = info.subject_public_key.data.as_ref();
    let bad_key = |detail: String| SshKeyError::BadKey {
        what: what.to_owned(),
        detail,
    };
    let key_data = match algorithm.as_str() {
        EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .unwrap_or_default();
            if curve != NIST_P256 {
                return Err(SshKeyError::Unsupported {
                    what: what.to_owned(),
                    algorithm: format!("EC on curve {curve}"),
                });
            }
            let key = EcdsaPublicKey::from_sec1_bytes(bytes)
                .map_err(|error| bad_key(error.to_string()))?;
            KeyData::Ecdsa(key)
        }
        ED25519 => {
            let key = <[u8; 32]>::try_from(bytes)
                .map_err(|_| bad_key(format!("{} bytes instead of 32", bytes.len())))?;
            KeyData::Ed25519(Ed25519PublicKey(key))
        }
        _ => {
            return Err(SshKeyError::Unsupported {
                what: what.to_owned(),
                algorithm,
            });
        }
    };
    Ok(PublicKey::new(key_data, ""))
}

/// The OpenSSH text of a public key without a comment, such as `ecdsa-sha2-nistp256 AAAA…`.
pub fn openssh(key: &PublicKey) -> String {
    // Encoding a key that was decoded or built from valid parts cannot fail; a failure would be a bug in ssh-key.
    key.to_openssh()
        .expect("a valid public key has an OpenSSH form")
        .trim()
        .to_owned()
}

/// One `known_hosts` line that trusts `key` for `host`.
pub fn known_hosts_line(host: &str, key: &PublicKey) -> String {
    format!("{host} {}\n", openssh(key))
}

#[cfg(test)]
mod tests;
