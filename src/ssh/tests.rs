//! The SSH key of a certificate matches the key pair it was made from, and other keys are refused clearly.

use super::*;
use crate::tls::Identity;

#[test]
fn a_skiff_identity_is_an_ecdsa_p256_ssh_key() {
    let identity = Identity::generate("skiff-client").unwrap();
    let certificate = identity.certificate_der().unwrap();
    let key = public_key("client.crt", &certificate).unwrap();
    assert_eq!(key.algorithm().as_str(), "ecdsa-sha2-nistp256");
    assert!(openssh(&key).starts_with("ecdsa-sha2-nistp256 AAAA"));
    assert!(!openssh(&key).contains('\n'));
}

#[test]
fn the_same_certificate_gives_the_same_key_and_another_one_differs() {
    let first = Identity::generate("a").unwrap();
    let second = Identity::generate("b").unwrap();
    let key =
        |identity: &Identity| public_key("test", &identity.certificate_der().unwrap()).unwrap();
    assert_eq!(key(&first), key(&first));
    assert_ne!(key(&first).key_data(), key(&second).key_data());
}

#[test]
fn a_known_hosts_line_names_the_host_then_the_key() {
    let identity = Identity::generate("skiff-agent").unwrap();
    let key = public_key("agent.crt", &identity.certificate_der().unwrap()).unwrap();
    let line = known_hosts_line("app.skiff", &key);
    assert!(line.starts_with("app.skiff ecdsa-sha2-nistp256 "), "{line}");
    assert!(line.ends_with('\n'));
    assert_eq!(
        ssh_key::PublicKey::from_openssh(line.trim_start_matches("app.skiff ").trim())
            .unwrap()
            .key_data(),
        key.key_data()
    );
}

#[test]
fn garbage_is_not_a_certificate() {
    let error = public_key("trusted-clients/laptop.pem", b"not a certificate").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("trusted-clients/laptop.pem: not an X.509 certificate"),
        "{error}"
    );
}
