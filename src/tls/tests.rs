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

#[test]
fn certificate_pem_round_trips() {
    let identity = Identity::generate("agent").unwrap();
    let der = identity.certificate_der().unwrap();
    let pem = certificate_pem(&der);
    assert_eq!(parse_certificate("round trip", &pem).unwrap(), der);
}

/// A first-use connection records the certificate the agent presented, and the agent still checks the
/// client's: the recorded certificate is the one a pinned connection then accepts.
#[test]
fn first_use_records_the_agent_certificate() {
    let agent = Identity::generate("agent").unwrap();
    let client = Identity::generate("client").unwrap();
    let trusted = Arc::new(TrustedClients::new(
        vec![client.certificate_der().unwrap()],
        None,
    ));
    let server = Arc::new(server_config(&agent, trusted).unwrap());
    let (config, seen) = client_config_first_use(&client).unwrap();
    assert!(seen.certificate().is_none());
    let mut client_connection =
        rustls::ClientConnection::new(Arc::new(config), agent_server_name()).unwrap();
    let mut server_connection = rustls::ServerConnection::new(server).unwrap();
    for _ in 0..10 {
        let mut buffer = Vec::new();
        client_connection.write_tls(&mut buffer).unwrap();
        server_connection.read_tls(&mut &buffer[..]).unwrap();
        server_connection.process_new_packets().unwrap();
        let mut buffer = Vec::new();
        server_connection.write_tls(&mut buffer).unwrap();
        client_connection.read_tls(&mut &buffer[..]).unwrap();
        client_connection.process_new_packets().unwrap();
        if !client_connection.is_handshaking() && !server_connection.is_handshaking() {
            break;
        }
    }
    assert!(!client_connection.is_handshaking());
    assert_eq!(seen.certificate(), Some(agent.certificate_der().unwrap()));
}
