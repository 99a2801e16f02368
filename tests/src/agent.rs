//! An agent served in the test's own process on 127.0.0.1, with a state folder of its own: for tests of the agent's
//! service (TLS, uploads, files) that need no dev container. The client reaches it as the real one does, through
//! `tunnel::tcp`.

use std::net::SocketAddr;
use std::path::PathBuf;

use skiff::tls::Identity;
use skiff_agent::config::AgentConfig;
use skiff_client::agent_client::AgentClient;
use tokio_util::sync::CancellationToken;

/// An agent served in this process, reachable over as many connections as a test opens.
#[derive(Debug)]
pub struct InProcessAgent {
    /// Its state folder's parent: the agent keeps its state in `agent/` inside it.
    pub state: tempfile::TempDir,
    /// The client identity it trusts (the workspace's client certificate).
    pub identity: Identity,
    /// Where it listens.
    pub address: SocketAddr,
    /// Its own certificate, which clients pin.
    pub certificate_pem: String,
    shutdown: CancellationToken,
    serving: tokio::task::JoinHandle<anyhow::Result<skiff_agent::Exit>>,
}

impl InProcessAgent {
    /// An agent of workspace `name` trusting a client identity made for it, with no idle timeout.
    pub async fn start(name: &str) -> Self {
        let identity = Identity::generate("skiff-client").expect("a client identity");
        Self::start_with(name, &identity, |_| {}).await
    }

    /// An agent of workspace `name` trusting `client`, with no idle timeout and its configuration then changed by
    /// `adjust`.
    pub async fn start_with(
        name: &str,
        client: &Identity,
        adjust: impl FnOnce(&mut AgentConfig),
    ) -> Self {
        let state = tempfile::tempdir().expect("a temporary folder");
        let mut config =
            AgentConfig::new(name, &client.certificate_pem, &state.path().join("agent"));
        config.idle_timeout = None;
        adjust(&mut config);
        let agent = skiff_agent::Agent::bind(config)
            .await
            .expect("binding the agent");
        let address = agent.local_addr();
        let certificate_pem = agent.certificate_pem().to_owned();
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(agent.serve(shutdown.clone()));
        Self {
            state,
            identity: client.clone(),
            address,
            certificate_pem,
            shutdown,
            serving,
        }
    }

    /// A client over a connection of its own, as the trusted identity.
    pub async fn connect(&self) -> AgentClient {
        self.connect_as(&self.identity)
            .await
            .expect("connecting to the agent")
    }

    /// A client over a connection of its own, as `identity`; the error's text if the agent refused it.
    pub async fn connect_as(&self, identity: &Identity) -> Result<AgentClient, String> {
        let channel =
            skiff_client::tunnel::tcp::connect(self.address, identity, &self.certificate_pem)
                .await
                .map_err(|error| error.to_string())?;
        Ok(AgentClient::new(channel))
    }

    /// `count` clients, each over a connection of its own.
    pub async fn clients(&self, count: usize) -> Vec<AgentClient> {
        let mut clients = Vec::new();
        for _ in 0..count {
            clients.push(self.connect().await);
        }
        clients
    }

    /// The agent's state folder.
    pub fn agent_dir(&self) -> PathBuf {
        self.state.path().join("agent")
    }

    /// The folder uploads land in.
    pub fn files(&self) -> PathBuf {
        self.agent_dir().join("files")
    }

    /// Stops serving and fails the test unless the agent ended cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.serving
            .await
            .expect("the agent's task")
            .expect("the agent ends cleanly");
    }
}
