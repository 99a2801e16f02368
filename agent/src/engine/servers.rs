//! The process server's life in the dev container: copied in and started once per container start with one
//! `docker exec` that hands it its token, kept while the container runs, forgotten when it stops answering.
//! Where it cannot run (no binary beside the agent, a namespace the agent cannot enter), `None` tells
//! `engine::process` to use `docker exec`.

use std::net::SocketAddr;
use std::path::Path;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::docker::{ContainerInfo, Docker, DockerError, ExecConfig};
use crate::procd::client::{
    CONTAINER_PATH, ProcServer, ProcdError, binary_beside_agent, can_enter,
};

impl From<DockerError> for ProcdError {
    fn from(error: DockerError) -> Self {
        Self::Launch(error.to_string())
    }
}

/// Starts the server in the container as root, first copying it there unless `copied` says this agent's
/// binary already is (a container restarted keeps its files, so only its first start pays for the copy);
/// returns where it listens.
async fn start(
    docker: &Docker,
    container_id: &str,
    namespace: &Path,
    binary: &Path,
    copied: bool,
) -> Result<ProcServer, ProcdError> {
    can_enter(namespace).await?;
    if copied {
        match launch(docker, container_id, namespace).await {
            Ok(server) => return Ok(server),
            Err(error) => tracing::debug!(
                "the process server did not start from its copy; copying it again: {error}"
            ),
        }
    }
    let contents = tokio::fs::read(binary).await?;
    docker
        .put_file(container_id, CONTAINER_PATH, &contents, 0o755)
        .await?;
    launch(docker, container_id, namespace).await
}

/// Starts the server already in the container and reads the port it says it listens on.
async fn launch(
    docker: &Docker,
    container_id: &str,
    namespace: &Path,
) -> Result<ProcServer, ProcdError> {
    let mut session = docker
        .exec(
            container_id,
            ExecConfig {
                command: vec![
                    CONTAINER_PATH.to_owned(),
                    "--listen".to_owned(),
                    "127.0.0.1:0".to_owned(),
                ],
                user: Some("root".to_owned()),
                working_dir: Some("/".to_owned()),
                env: Vec::new(),
                tty: false,
                stdin: true,
            },
        )
        .await?;
    let token = crate::procd::new_token()?;
    session
        .input
        .write_all(format!("{token}\n").as_bytes())
        .await?;
    session.input.flush().await?;
    let mut said = Vec::new();
    let ready = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(item) = session.output.next().await {
            let (_, data) = item?;
            said.extend_from_slice(&data);
            // The binary in the container is the container's to replace; its answer is one short line.
            if said.len() > 1024 && !said.contains(&b'\n') {
                return Err(ProcdError::Start(
                    "said more than 1 KiB without a line end instead of ready".into(),
                ));
            }
            if let Some(line) = said
                .split(|byte| *byte == b'\n')
                .next()
                .filter(|_| said.contains(&b'\n'))
            {
                return Ok::<_, ProcdError>(String::from_utf8_lossy(line).into_owned());
            }
        }
        Err(ProcdError::Start(format!(
            "exited before it was ready: {}",
            String::from_utf8_lossy(&said).trim()
        )))
    })
    .await
    .map_err(|_| ProcdError::Start("did not say it was ready within 5 s".into()))??;
    let port: u16 = ready
        .strip_prefix("ready ")
        .and_then(|port| port.trim().parse().ok())
        .ok_or_else(|| ProcdError::Start(format!("said {ready:?} instead of ready")))?;
    // The server keeps running after this attachment closes; it never writes to its output again.
    drop(session);
    Ok(ProcServer {
        address: SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port),
        namespace: Some(namespace.to_owned()),
        token,
    })
}

/// The process server of the workspace's container, started on first use and kept while the container
/// runs. A container that restarted (another start time) gets a new server.
#[derive(Debug, Default)]
pub struct ProcServers {
    /// The container and start time the server belongs to, and the server (`None`: it cannot run there).
    slot: tokio::sync::Mutex<Option<(String, Option<ProcServer>)>>,
    /// The container this agent last copied its server into (the binary does not change while it runs).
    copied_into: std::sync::Mutex<Option<String>>,
}

impl ProcServers {
    /// The server for `container`, starting it if needed; `None` means use `docker exec`.
    pub async fn get(&self, docker: &Docker, container: &ContainerInfo) -> Option<ProcServer> {
        let key = format!("{}@{}", container.id, container.started_at);
        let mut slot = self.slot.lock().await;
        if let Some((started_for, server)) = slot.as_ref()
            && *started_for == key
        {
            return server.clone();
        }
        let server = match (binary_beside_agent(), &container.network_namespace) {
            (Ok(binary), Some(namespace)) => {
                let copied = self
                    .copied_into
                    .lock()
                    .expect("never left half-changed")
                    .as_deref()
                    == Some(container.id.as_str());
                match start(docker, &container.id, namespace, &binary, copied).await {
                    Ok(server) => {
                        *self.copied_into.lock().expect("never left half-changed") =
                            Some(container.id.clone());
                        tracing::info!(address = %server.address, "process server started in the dev container");
                        Some(server)
                    }
                    Err(error) => {
                        tracing::info!("commands use docker exec: {error}");
                        None
                    }
                }
            }
            (Err(error), _) => {
                tracing::info!("commands use docker exec: {error}");
                None
            }
            (_, None) => {
                tracing::info!(
                    "commands use docker exec: the engine names no network namespace for the dev container"
                );
                None
            }
        };
        *slot = Some((key, server.clone()));
        server
    }

    /// Forgets the server (it stopped answering); the next command starts another.
    pub async fn forget(&self) {
        *self.slot.lock().await = None;
    }
}
