//! Tests of certificate pinning and the trust folder.

use super::*;

#[test]
fn generated_identity_round_trips_through_pem() {
    let identity = Identity::generate("skiff-client").unwrap();
    let certificate = identity.certificate_der().unwrap();
    assert!(identity.private_key_der().is_ok());
    assert_eq!(fingerprint(&certificate).len(), 16);
    assert!(!format!("{identity:?}").contains("PRIVATE KEY"));
}

#[test]
fn trusted_clients_accept_only_configured_certificates() {
    let alice = Identity::generate("alice")
        .unwrap()
        .certificate_der()
        .unwrap();
    let mallory = Identity::generate("mallory")
        .unwrap()
        .certificate_der()
        .unwrap();
    let trusted = TrustedClients::new(vec![alice.clone()], None);
    assert!(trusted.contains(&alice));
    assert!(!trusted.contains(&mallory));
}

#[test]
fn trust_folder_is_read_again_when_it_changes() {
    let folder = tempfile::tempdir().unwrap();
    let alice = Identity::generate("alice").unwrap();
    let bob = Identity::generate("bob").unwrap();
    let trusted = TrustedClients::new(Vec::new(), Some(folder.path().to_owned()));
    let bob_der = bob.certificate_der().unwrap();
    assert!(!trusted.contains(&bob_der));
    std::fs::write(folder.path().join("bob.pem"), &bob.certificate_pem).unwrap();
    std::fs::write(folder.path().join("notes.txt"), &alice.certificate_pem).unwrap();
    assert!(trusted.contains(&bob_der));
    // Only `*.pem` files count.
    assert!(!trusted.contains(&alice.certificate_der().unwrap()));
    std::fs::remove_file(folder.path().join("bob.pem")).unwrap();
    assert!(!trusted.contains(&bob_der));
}

#[test]
fn certificates_lists_the_configured_ones_and_the_folder() {
    let folder = tempfile::tempdir().unwrap();
    let alice = Identity::generate("alice")
        .unwrap()
        .certificate_der()
        .unwrap();
    let bob = Identity::generate("bob").unwrap();
    let trusted = TrustedClients::new(vec![alice.clone()], Some(folder.path().to_owned()));
    assert_eq!(trusted.certificates(), vec![alice.clone()]);
    std::fs::write(folder.path().join("bob.pem"), &bob.certificate_pem).unwrap();
    assert_eq!(
        trusted.certificates(),
        vec![alice, bob.certificate_der().unwrap()]
    );
}

#[test]
fn broken_pem_names_what_it_was() {
    let error = parse_certificate("client certificate in skiffd.toml", "not pem").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("client certificate in skiffd.toml: not a PEM certificate"),
        "{error}"
    );
}

#[test]
fn configurations_build_for_both_ends() {
    let agent = Identity::generate("skiff-agent").unwrap();
    let client = Identity::generate("skiff-client").unwrap();
    let trusted = Arc::new(TrustedClients::new(
        vec![client.certificate_der().unwrap()],
        None,
    ));
    let server = server_config(&agent, trusted).unwrap();
    assert_eq!(server.alpn_protocols, vec![b"h2".to_vec()]);
    let client_side = client_config(&client, agent.certificate_der().unwrap()).unwrap();
    assert_eq!(client_side.alpn_protocols, vec![b"h2".to_vec()]);
}
