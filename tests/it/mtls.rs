//! The agent's mutual TLS: only the workspace's client certificate gets in, and it binds only loopback.

use std::sync::Arc;

use skiff::tls::Identity;
use skiff_agent::config::AgentConfig;
use skiff_tests::agent::InProcessAgent;

async fn start_agent(client: &Identity) -> InProcessAgent {
    start_agent_with(client, |_| {}).await
}

async fn start_agent_with(
    client: &Identity,
    adjust: impl FnOnce(&mut AgentConfig),
) -> InProcessAgent {
    InProcessAgent::start_with("mtls", client, adjust).await
}

async fn version_with(agent: &InProcessAgent, identity: &Identity) -> Result<String, String> {
    agent
        .connect_as(identity)
        .await?
        .version()
        .await
        .map(|info| info.agent_version)
        .map_err(|error| error.to_string())
}

#[tokio::test]
async fn only_the_workspace_client_certificate_is_accepted() {
    let owner = Identity::generate("skiff-client").unwrap();
    let stranger = Identity::generate("skiff-client").unwrap();
    let agent = start_agent(&owner).await;

    let version = version_with(&agent, &owner)
        .await
        .expect("the owner is accepted");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert!(
        version_with(&agent, &stranger).await.is_err(),
        "another workspace's certificate is refused"
    );

    // A client that presents no certificate at all is refused during the handshake.
    let stream = tokio::net::TcpStream::connect(agent.address).await.unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAnything))
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let refused = async {
        let mut tls = connector
            .connect(skiff::tls::agent_server_name(), stream)
            .await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let mut buffer = [0u8; 64];
        let read = tls.read(&mut buffer).await?;
        if read == 0 {
            return Err(std::io::Error::other("closed"));
        }
        Ok::<_, std::io::Error>(())
    }
    .await;
    assert!(
        refused.is_err(),
        "a client without a certificate must be refused"
    );

    // A certificate dropped into the trust folder is accepted without a restart.
    std::fs::write(
        agent.agent_dir().join("trusted-clients/second-laptop.pem"),
        &stranger.certificate_pem,
    )
    .unwrap();
    assert!(
        version_with(&agent, &stranger).await.is_ok(),
        "an enrolled certificate is accepted"
    );

    agent.stop().await;
}

/// Whether the agent closed `stream` within `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 256];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Attack (issue 13, pre-authentication exhaustion): a peer opens TCP to the agent and never speaks. The agent
/// closes it after the configured handshake timeout (before the fix it waited 30 s for a first byte, and then
/// forever for a TLS handshake).
#[tokio::test]
async fn a_client_that_never_speaks_is_dropped_after_the_handshake_timeout() {
    let owner = Identity::generate("skiff-client").unwrap();
    let agent = start_agent_with(&owner, |config| {
        config.handshake_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(agent.address).await.unwrap();
    assert!(
        closed_within(&mut silent, std::time::Duration::from_secs(5)).await,
        "a silent connection outlived the handshake timeout"
    );
    // One that starts a handshake and stalls in it is closed too: a resumable connection's hello, then nothing.
    let mut stalled = tokio::net::TcpStream::connect(agent.address).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stalled,
        &skiff::resume::wire::Hello::New { id: [3; 16] }.encode(),
    )
    .await
    .unwrap();
    assert!(
        closed_within(&mut stalled, std::time::Duration::from_secs(5)).await,
        "a resumable connection that never did TLS kept its slot"
    );
    assert!(version_with(&agent, &owner).await.is_ok());
    agent.stop().await;
}

/// Attack (issue 13, pre-authentication exhaustion): many idle connections, plain and resumable, are opened to
/// fill the agent. At most `max_handshakes` are held, each only until the handshake timeout; the rest are closed
/// at once; afterwards the owner gets in as before.
#[tokio::test]
async fn many_idle_connections_do_not_hold_the_agent() {
    let owner = Identity::generate("skiff-client").unwrap();
    let agent = start_agent_with(&owner, |config| {
        config.handshake_timeout = std::time::Duration::from_millis(800);
        config.max_handshakes = 4;
    })
    .await;
    let mut idle = Vec::new();
    for index in 0..24u8 {
        let mut stream = tokio::net::TcpStream::connect(agent.address).await.unwrap();
        if index % 2 == 0 {
            tokio::io::AsyncWriteExt::write_all(
                &mut stream,
                &skiff::resume::wire::Hello::New { id: [index; 16] }.encode(),
            )
            .await
            .unwrap();
        }
        idle.push(stream);
    }
    let started = std::time::Instant::now();
    for stream in &mut idle {
        assert!(
            closed_within(stream, std::time::Duration::from_secs(5)).await,
            "an idle connection was held past the handshake timeout"
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        version_with(&agent, &owner).await.is_ok(),
        "the owner is let in once the idle connections are gone"
    );
    agent.stop().await;
}

#[test]
fn the_agent_refuses_a_non_loopback_address() {
    let state = tempfile::tempdir().unwrap();
    let client = Identity::generate("skiff-client").unwrap();
    let config_path = state.path().join("skiffd.toml");
    std::fs::write(
        &config_path,
        format!(
            "workspace = \"open\"\nlisten = \"0.0.0.0:0\"\nstate_dir = \"{}\"\nclient_certificate = '''{}'''\n",
            state.path().join("agent").display(),
            client.certificate_pem
        ),
    )
    .unwrap();
    let output = std::process::Command::new(skiff_tests::binary("skiffd"))
        .arg("--config")
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("0.0.0.0:0 is not a loopback address"),
        "{stderr}"
    );
    assert!(stderr.contains("allow_non_loopback = true"), "{stderr}");
}

#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `tunnel::connect` pins on first use for every transport: the first agent's certificate is kept in the file,
/// a later connection to it works, and another agent (another key) is refused without touching the file.
#[tokio::test]
async fn a_certificate_pinned_on_first_use_is_required_afterwards() {
    use skiff_client::agent_client::AgentClient;
    use skiff_client::tunnel::connect::{Pin, connect};
    use skiff_client::tunnel::tcp;
    let client = Identity::generate("skiff-client").unwrap();
    let first = start_agent(&client).await;
    let impostor = start_agent(&client).await;
    let folder = tempfile::tempdir().unwrap();
    let pinned = skiff_client::tunnel::connect::first_use_file(folder.path());

    let channel = connect(
        tcp::dial(first.address),
        &client,
        Pin::FirstUse(&pinned),
        "first",
    )
    .await
    .expect("the first connection pins whatever the agent presents");
    AgentClient::new(channel).version().await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&pinned).unwrap(),
        first.certificate_pem,
        "the first agent's certificate is pinned"
    );
    let again = connect(
        tcp::dial(first.address),
        &client,
        Pin::FirstUse(&pinned),
        "again",
    )
    .await
    .expect("the pinned agent is accepted again");
    AgentClient::new(again).version().await.unwrap();

    let refused = connect(
        tcp::dial(impostor.address),
        &client,
        Pin::FirstUse(&pinned),
        "impostor",
    )
    .await;
    let error = refused.expect_err("another agent's certificate is refused once one is pinned");
    assert!(error.to_string().contains("pinned"), "{error}");
    assert_eq!(
        std::fs::read_to_string(&pinned).unwrap(),
        first.certificate_pem,
        "a refused agent leaves the pin as it was"
    );
    assert_eq!(
        skiff_client::tunnel::connect::pinned_certificate(folder.path()).as_deref(),
        Some(first.certificate_pem.as_str())
    );

    for agent in [first, impostor] {
        agent.stop().await;
    }
}
