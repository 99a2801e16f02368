//! skiffd, the agent: it runs beside one Docker engine, builds and runs one workspace's dev container,
//! serves the skiff client over gRPC with mutual TLS, and stops the workspace when nobody uses it.
//!
//! `Agent::bind` then `Agent::serve` is the whole life of the agent; `main` and the tests both use it.

pub mod config;
pub mod docker;
pub mod engine;
pub mod exec;
pub mod forward;
pub mod idle;
pub mod server;
pub mod service;
pub mod state;
pub mod upload;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, IdleAction};
use crate::engine::Engine;
use crate::idle::Activity;
use crate::service::AgentService;
use crate::state::StateDir;

/// An agent whose listener is bound, ready to serve.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    engine: Arc<Engine>,
    activity: Arc<Activity>,
    state: StateDir,
    certificate_pem: String,
}

impl Agent {
    /// Opens the state folder, loads or makes the agent's key, binds the listener and records its address.
    pub async fn bind(config: AgentConfig) -> anyhow::Result<Self> {
        let state = StateDir::open(&config.state_dir)
            .with_context(|| format!("opening state folder {}", config.state_dir.display()))?;
        let identity = state.identity().with_context(|| {
            format!(
                "loading the agent's key from {}",
                config.state_dir.display()
            )
        })?;
        let client_certificate = skiff::tls::parse_certificate(
            "client_certificate in the agent configuration",
            &config.client_certificate,
        )?;
        let trusted = Arc::new(skiff::tls::TrustedClients::new(
            vec![client_certificate],
            Some(state.trusted_clients_dir()),
        ));
        let tls = Arc::new(skiff::tls::server_config(&identity, trusted)?);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let address = listener.local_addr()?;
        let docker = docker::Docker::connect()?;
        let activity = Activity::new(idle::source::AGENT_START);
        let engine = Arc::new(Engine::new(
            docker,
            config.workspace.clone(),
            state.clone(),
            Arc::clone(&activity),
        ));
        // Recorded last: a client that sees the address may rely on everything above having worked.
        state
            .write_listen_address(address)
            .context("recording the listen address")?;
        tracing::info!(workspace = %config.workspace, %address, "skiffd listening");
        Ok(Self {
            config,
            listener,
            tls,
            engine,
            activity,
            state,
            certificate_pem: identity.certificate_pem,
        })
    }

    /// The address the agent listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The agent's certificate, which its clients pin.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// Serves until `shutdown` is cancelled (by the caller, a client's `Stop`/`Delete`, or idle shutdown).
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let service = AgentService::new(
            Arc::clone(&self.engine),
            Arc::clone(&self.activity),
            self.state.clone(),
            self.config.idle_timeout,
            shutdown.clone(),
        );
        let idle_watch = self.config.idle_timeout.map(|timeout| {
            let activity = Arc::clone(&self.activity);
            let engine = Arc::clone(&self.engine);
            let shutdown = shutdown.clone();
            let action = self.config.idle_action;
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = activity.idle_for(timeout) => {
                        let status = activity.status(Some(timeout));
                        tracing::info!(
                            idle_seconds = status.idle_seconds,
                            last_activity = %status.last_activity_source,
                            "idle for the timeout; stopping the workspace"
                        );
                        stop_idle_workspace(&engine, action).await;
                        shutdown.cancel();
                    }
                }
            })
        });
        let served = server::run(self.listener, self.tls, service, shutdown.clone()).await;
        if let Some(idle_watch) = idle_watch {
            idle_watch.abort();
        }
        self.state.clear_listen_address();
        tracing::info!("skiffd stopped");
        served.context("serving gRPC")
    }
}

async fn stop_idle_workspace(engine: &Engine, action: IdleAction) {
    match action {
        IdleAction::StopContainer => {
            if let Err(error) = engine.stop().await {
                tracing::warn!("stopping the idle dev container: {error}");
            }
        }
        IdleAction::Poweroff => {
            // Flush what the kernel holds, then power off; the instance stops and keeps its disk.
            nix::unistd::sync();
            match tokio::process::Command::new("systemctl")
                .arg("poweroff")
                .status()
                .await
            {
                Ok(status) if status.success() => {}
                _ => {
                    let _ = tokio::process::Command::new("poweroff").status().await;
                }
            }
        }
    }
}
