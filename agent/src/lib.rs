//! skiffd, the agent: it runs beside one Docker engine, builds and runs one workspace's dev container,
//! serves the skiff client over gRPC with mutual TLS, and stops the workspace when nobody uses it.
//!
//! `Agent::bind` then `Agent::serve` is the whole life of the agent; `main` and the tests both use it.

pub mod config;
pub mod credentials;
mod docker;
pub mod engine;
pub mod exec;
pub mod files;
pub mod forward;
pub mod git;
pub mod idle;
pub mod ledger;
pub mod ports;
pub mod procd;
pub mod registry_helpers;
pub mod replace;
pub mod server;
pub mod service;
pub mod ssh;
pub mod ssh_agent;
pub mod state;
pub mod tasks;
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
    ssh: Arc<ssh::SshServer>,
    /// When the machine ran (see `ledger`).
    ledger: Arc<ledger::Ledger>,
    /// One agent per state folder: two would make two key pairs and two dev containers.
    _serving: skiff::lock::Lock,
}

impl Agent {
    /// Opens the state folder, loads or makes the agent's key, binds the listener and records its address.
    pub async fn bind(config: AgentConfig) -> anyhow::Result<Self> {
        let state = StateDir::open(&config.state_dir)
            .with_context(|| format!("opening state folder {}", config.state_dir.display()))?;
        let serving = skiff::lock::try_lock(&config.state_dir.join("agent.lock"))
            .with_context(|| format!("locking state folder {}", config.state_dir.display()))?
            .with_context(|| {
                format!(
                    "another skiffd is serving the state folder {}: one agent runs per workspace; stop it (`skiff stop NAME`) or wait for it to exit",
                    config.state_dir.display()
                )
            })?;
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
        // The SSH server inside the tunnel has the agent's key as its host key and accepts the same clients.
        let ssh = Arc::new(
            ssh::SshServer::new(&identity.private_key_pem, Arc::clone(&trusted))
                .context("setting up the SSH server")?,
        );
        let tls = Arc::new(skiff::tls::server_config(&identity, trusted)?);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let address = listener.local_addr()?;
        let settings = state.load_settings();
        let idle_timeout = match settings.idle_timeout_seconds {
            Some(0) => None,
            Some(seconds) => Some(std::time::Duration::from_secs(seconds)),
            None => config.idle_timeout,
        };
        let boot_id = idle::boot_id();
        // A machine of its own (idle action `poweroff`) is up from its boot; a laptop's workspace while served.
        let ledger = Arc::new(ledger::Ledger::open(
            state.path(),
            &boot_id,
            ledger::boot_time(),
            config.idle_action == IdleAction::Poweroff,
            ledger::unix(std::time::SystemTime::now()),
        ));
        let activity = Activity::restore(state.activity_path(), boot_id, idle_timeout);
        activity.set_busy_cpu_percent(settings.busy_cpu_percent.or(config.busy_cpu_percent));
        let engine = Arc::new(
            Engine::connect(
                config.workspace.clone(),
                state.clone(),
                Arc::clone(&activity),
            )?
            .with_registry_helpers(config.registry_helpers.clone()),
        );
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
            ssh,
            ledger,
            _serving: serving,
        })
    }

    /// The address the agent listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Records activity before serving, such as the start of an agent a client launched for a command.
    pub fn record_activity(&self, source: &'static str) {
        self.activity.touch(source);
    }

    /// The agent's certificate, which its clients pin.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// Serves until `shutdown` is cancelled (by the caller, a client's `Stop`/`Delete`, idle shutdown, or a
    /// `ReplaceAgent` call, after which the caller restarts into the new executable).
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<Exit> {
        let service = AgentService::new(
            Arc::clone(&self.engine),
            Arc::clone(&self.activity),
            self.state.clone(),
            shutdown.clone(),
        )
        .with_ssh(Arc::clone(&self.ssh))
        .with_ledger(Arc::clone(&self.ledger));
        let replacement = service.replacement();
        let tasks = service.tasks();
        // An upload cut short by a crash or a reboot left temporary files beside the files it was writing.
        let files = self.state.files_dir();
        tasks.spawn_blocking(move || {
            if !files.is_dir() {
                return;
            }
            match files::beneath::Folder::open(&files)
                .and_then(|folder| folder.remove_stale_uploads())
            {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(removed, "removed the temporary files of uploads cut short")
                }
                Err(error) => tracing::warn!(
                    "looking for uploads cut short in {}: {error}",
                    files.display()
                ),
            }
        });
        let watchers = CancellationToken::new();
        let idle_watch = {
            let activity = Arc::clone(&self.activity);
            let engine = Arc::clone(&self.engine);
            let shutdown = shutdown.clone();
            let config = self.config.clone();
            let watchers = watchers.clone();
            let ledger = Arc::clone(&self.ledger);
            tasks.spawn(async move {
                tokio::select! {
                    () = watchers.cancelled() => {}
                    () = activity.idle() => {
                        ledger.down(ledger::reason::IDLE, ledger::unix(std::time::SystemTime::now()));
                        stop_idle_workspace(&engine, &config).await;
                        shutdown.cancel();
                    }
                }
            })
        };
        let heartbeat = tasks.spawn(beat(Arc::clone(&self.ledger), watchers.clone()));
        let sampler = tasks.spawn(sample_activity(
            Arc::clone(&self.engine),
            Arc::clone(&self.activity),
            watchers.clone(),
        ));
        let served = {
            let limits = server::Limits {
                handshake_timeout: self.config.handshake_timeout,
                max_handshakes: self.config.max_handshakes.max(1),
            };
            let serving = server::run(self.listener, self.tls, service, limits, shutdown.clone());
            // A replaced agent gives calls still open (a long `exec`, a forward) a moment, then ends them: its
            // successor is waiting to take the port, and the client that asked for it waits for that.
            let replaced = async {
                shutdown.cancelled().await;
                if replacement.get().is_none() {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(REPLACE_GRACE).await;
            };
            tokio::select! {
                served = serving => served,
                () = replaced => {
                    tracing::info!("calls still open {REPLACE_GRACE:?} after the replacement; ending them");
                    Ok(())
                }
            }
        };
        watchers.cancel();
        let _ = idle_watch.await;
        let _ = sampler.await;
        let _ = heartbeat.await;
        // What calls left running (an `up`'s lifecycle commands after `ready`, a command whose client left)
        // gets a moment to finish, then ends with the agent; a replaced agent's calls have had theirs.
        let grace = if replacement.get().is_some() {
            std::time::Duration::ZERO
        } else {
            TASK_GRACE
        };
        tasks.end(grace).await;
        // A replaced agent's successor continues the same up; any other exit ends it (an idle stop recorded its
        // own reason already). Written before the listen address goes: a client waiting for the agent to exit
        // (`delete`, which then removes the state folder) sees it gone only after this last write.
        if replacement.get().is_none() {
            self.ledger.down(
                ledger::reason::STOP,
                ledger::unix(std::time::SystemTime::now()),
            );
        }
        self.state.clear_listen_address();
        tracing::info!("skiffd stopped");
        served.context("serving gRPC")?;
        Ok(match replacement.get() {
            Some(path) => Exit::Replaced(path.clone()),
            None => Exit::Stopped,
        })
    }
}

/// How long a replaced agent lets open calls finish before it restarts into the new executable.
const REPLACE_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// How long a stopping agent waits for the tasks its calls left running before it ends them.
const TASK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How serving ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop (a signal, a client, idle shutdown).
    Stopped,
    /// A client replaced the executable at this path; the process should become it (`exec`), with the same
    /// arguments.
    Replaced(std::path::PathBuf),
}

/// Notes in the ledger, every [`ledger::HEARTBEAT`], that the agent still runs, until `stop`.
async fn beat(ledger: Arc<ledger::Ledger>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(ledger::HEARTBEAT) => {}
        }
        ledger.beat(ledger::unix(std::time::SystemTime::now()));
    }
}

/// Activity the agent has to look for rather than being told of: a busy CPU (opt-in) and Session
/// Manager shells opened by other means. Sampled every second, when throttled activity is also saved.
async fn sample_activity(engine: Arc<Engine>, activity: Arc<Activity>, stop: CancellationToken) {
    const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
        if let Some(input) =
            idle::session_manager_input(std::path::Path::new("/proc"), std::path::Path::new("/dev"))
        {
            activity.touch_at(idle::source::SESSION_MANAGER, input);
        }
        if let Some(threshold) = activity.busy_cpu_percent()
            && let Ok(Some(target)) = engine.current().await
            && let Ok(Some(percent)) = engine.cpu_percent(&target).await
        {
            tracing::debug!(percent, threshold, "dev container CPU use");
            if percent >= threshold {
                activity.touch(idle::source::CPU);
            }
        }
    }
}

/// What idle shutdown does: on a machine of its own, power it off; with the local provider, stop the dev
/// container (unless its `shutdownAction` is `none`) and let the agent exit.
async fn stop_idle_workspace(engine: &Engine, config: &AgentConfig) {
    match config.idle_action {
        IdleAction::StopContainer => {
            let keep_running = engine
                .current()
                .await
                .ok()
                .flatten()
                .is_some_and(|target| target.record.shutdown_action.as_deref() == Some("none"));
            if keep_running {
                tracing::info!(
                    "idle: shutdownAction is none, so the dev container keeps running; the agent exits"
                );
                return;
            }
            tracing::info!("idle: stopping the dev container and exiting");
            if let Err(error) = engine.stop().await {
                tracing::warn!("stopping the idle dev container: {error}");
            }
        }
        IdleAction::Poweroff => {
            tracing::info!(command = ?config.poweroff_command, "idle: flushing disks and powering the machine off");
            // Flush what the kernel holds first; the instance then stops and keeps its disk.
            nix::unistd::sync();
            let Some((program, arguments)) = config.poweroff_command.split_first() else {
                tracing::warn!("idle: poweroff_command is empty; nothing to run");
                return;
            };
            match tokio::process::Command::new(program)
                .args(arguments)
                .status()
                .await
            {
                Ok(status) if status.success() => {}
                Ok(status) => tracing::warn!(%status, "idle: the poweroff command failed"),
                Err(error) => tracing::warn!("idle: running {program}: {error}"),
            }
        }
    }
}
