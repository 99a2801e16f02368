//! The one way to start a process in the dev container: [`Engine::start`] takes our own [`ProcessSpec`] and
//! gives a [`Process`], through the container's process server when it runs there, which starts a process
//! with a fork (milliseconds), else through `docker exec` (tens of milliseconds each). `Exec`, SSH sessions,
//! lifecycle commands, their markers and the user environment probe all start processes here, and none of
//! them knows which way was taken: a process's input is `ExecInput` and its output `ExecOutput` either way.
//!
//! [`Engine::run_to_end`] runs one to its end for the engine's own work. A restart of a stopped workspace
//! runs three such commands, so this is most of what `skiff up` adds to `docker start`; starting the server
//! here also makes the first `skiff exec` after `up` fast.

use std::collections::BTreeMap;
use std::pin::Pin;

use futures::StreamExt;
use futures::stream::BoxStream;
use skiff::api::{ExecInput, ExecOutput, OutputStream, UpEvent, WindowSize};
use skiff::devcontainer;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{ContainerInfo, Docker, Engine, EngineError, Events, Target, emit};
use crate::docker::ExecConfig;
use crate::procd;

/// A process to start in the dev container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Run as this user (the container's user when `None`).
    pub user: Option<String>,
    /// Run in this folder.
    pub working_dir: Option<String>,
    /// Environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Give it a terminal (of `window`'s size, 80×24 when not given).
    pub tty: bool,
    /// The terminal's size at start.
    pub window: Option<WindowSize>,
    /// Keep its standard input open for [`Control::send`]; otherwise it sees the end of input at once.
    pub stdin: bool,
}

/// A process running in the dev container.
pub struct Process {
    /// What it writes, as it comes, then its exit. An `Err` ends it: [`EngineError::Process`] when the
    /// process server carrying it failed after it started (never a reason to run it again).
    pub output: BoxStream<'static, Result<ExecOutput, EngineError>>,
    /// Its input, terminal size and signals.
    pub control: Control,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Process")
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

/// Sends a running process its input, terminal size and signals. Dropping it closes the process's input and,
/// through the process server, hangs the process up; keep it until the process ended.
#[derive(Debug)]
pub struct Control {
    way: Way,
}

/// How a process was started.
enum Way {
    /// Through the process server, whose writer turns each input into a frame.
    Server(mpsc::Sender<ExecInput>),
    /// Through `docker exec`: input to the attached stream, sizes and signals by the exec's id.
    Docker {
        docker: Docker,
        exec_id: String,
        /// The process's standard input, and whether it is still open.
        stdin: tokio::sync::Mutex<(Pin<Box<dyn AsyncWrite + Send>>, bool)>,
    },
}

impl std::fmt::Debug for Way {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Way::Server(_) => formatter.write_str("Server"),
            Way::Docker { exec_id, .. } => formatter
                .debug_struct("Docker")
                .field("exec_id", exec_id)
                .finish_non_exhaustive(),
        }
    }
}

impl Control {
    /// Delivers `input`; bytes after the process closed its input have nowhere to go and are dropped.
    pub async fn send(&self, input: ExecInput) {
        match &self.way {
            Way::Server(sender) => {
                let _ = sender.send(input).await;
            }
            Way::Docker {
                docker,
                exec_id,
                stdin,
            } => match input {
                ExecInput::Stdin(data) => {
                    let mut stdin = stdin.lock().await;
                    let (writer, open) = &mut *stdin;
                    if *open && writer.write_all(&data).await.is_err() {
                        // The process closed its input; later bytes have nowhere to go.
                        *open = false;
                    }
                }
                ExecInput::StdinEof => {
                    let mut stdin = stdin.lock().await;
                    let (writer, open) = &mut *stdin;
                    if *open {
                        let _ = writer.shutdown().await;
                        *open = false;
                    }
                }
                ExecInput::Resize(window) => {
                    let _ = docker
                        .resize_exec(exec_id, window.columns, window.rows)
                        .await;
                }
                ExecInput::Signal(signal) => signal_exec(docker, exec_id, signal).await,
            },
        }
    }
}

/// Where a command's output goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sink<'a> {
    /// Standard output is kept and returned; standard error is dropped.
    Collect,
    /// Both streams go to the client of `up` as they come.
    Events(&'a Events),
}

impl Sink<'_> {
    async fn take(&self, stream: OutputStream, data: Vec<u8>, stdout: &mut Vec<u8>) {
        match self {
            Sink::Collect if stream == OutputStream::Stdout => stdout.extend_from_slice(&data),
            Sink::Collect => {}
            Sink::Events(events) => emit(events, UpEvent::Output { stream, data }).await,
        }
    }
}

impl Engine {
    /// Starts `spec` in `container`: through the process server when it runs there, else (or when it does
    /// not answer) with `docker exec`.
    pub async fn start(
        &self,
        container: &ContainerInfo,
        spec: ProcessSpec,
    ) -> Result<Process, EngineError> {
        if let Some(server) = self.servers.get(&self.docker, container).await {
            let procd_spec = procd::Spec {
                argv: spec.command.clone(),
                env: spec.env.clone(),
                cwd: spec.working_dir.clone(),
                user: spec.user.clone(),
                tty: spec.tty.then(|| {
                    spec.window
                        .map_or((80, 24), |window| (window.columns, window.rows))
                }),
                connect: None,
            };
            match server.spawn(&procd_spec).await {
                Ok(process) => {
                    if !spec.stdin {
                        let _ = process.input.send(ExecInput::StdinEof).await;
                    }
                    let command = spec.command.join(" ");
                    let output = process
                        .events
                        .map(move |event| {
                            event.map_err(|error| EngineError::Process {
                                command: command.clone(),
                                reason: error.to_string(),
                            })
                        })
                        .boxed();
                    return Ok(Process {
                        output,
                        control: Control {
                            way: Way::Server(process.input),
                        },
                    });
                }
                Err(error) => {
                    tracing::info!("the process server did not answer, using docker exec: {error}");
                    self.servers.forget().await;
                }
            }
        }

        let config = ExecConfig {
            command: spec.command,
            user: spec.user,
            working_dir: spec.working_dir,
            env: spec.env,
            tty: spec.tty,
            stdin: spec.stdin,
        };
        let mut session = self.docker.exec(&container.id, config).await?;
        if let Some(window) = spec.window.filter(|_| spec.tty) {
            // The terminal must have its size before the program draws; a failure only costs layout.
            if let Err(error) = self
                .docker
                .resize_exec(&session.id, window.columns, window.rows)
                .await
            {
                tracing::debug!("sizing a new terminal: {error}");
            }
        }
        if !spec.stdin {
            let _ = session.input.shutdown().await;
        }
        // The exit follows the output: the engine records it once the output ended.
        let exit = {
            let docker = self.docker.clone();
            let exec_id = session.id.clone();
            futures::stream::once(async move {
                let code = exit_code(&docker, &exec_id).await?;
                Ok(ExecOutput::Exit(i32::try_from(code).unwrap_or(-1)))
            })
        };
        let output = session
            .output
            .map(|item| {
                let (stream, data) = item?;
                Ok(match stream {
                    OutputStream::Stdout => ExecOutput::Stdout(data.to_vec()),
                    OutputStream::Stderr => ExecOutput::Stderr(data.to_vec()),
                })
            })
            .chain(exit)
            .boxed();
        Ok(Process {
            output,
            control: Control {
                way: Way::Docker {
                    docker: self.docker.clone(),
                    exec_id: session.id,
                    stdin: tokio::sync::Mutex::new((session.input, spec.stdin)),
                },
            },
        })
    }

    /// Runs `spec` (without a terminal or input) in `container` to its end; returns its exit code and, for
    /// [`Sink::Collect`], its standard output. A process server that cannot start the command falls back to
    /// `docker exec`; one that fails after the command started is an error, never a second run of the command.
    pub(crate) async fn run_to_end(
        &self,
        container: &ContainerInfo,
        spec: ProcessSpec,
        sink: Sink<'_>,
    ) -> Result<(i64, Vec<u8>), EngineError> {
        let command = spec.command.join(" ");
        let mut process = self.start(container, spec).await?;
        let mut stdout = Vec::new();
        while let Some(event) = process.output.next().await {
            match event {
                Ok(ExecOutput::Stdout(data)) => {
                    sink.take(OutputStream::Stdout, data, &mut stdout).await
                }
                Ok(ExecOutput::Stderr(data)) => {
                    sink.take(OutputStream::Stderr, data, &mut stdout).await
                }
                Ok(ExecOutput::Exit(code)) => return Ok((i64::from(code), stdout)),
                Ok(ExecOutput::Notice(_)) => {}
                Err(error) => {
                    if matches!(error, EngineError::Process { .. }) {
                        self.servers.forget().await;
                    }
                    return Err(error);
                }
            }
        }
        // Only a process server's connection ends without an exit.
        self.servers.forget().await;
        Err(EngineError::Process {
            command,
            reason: "the process server stopped answering".into(),
        })
    }

    /// Runs a command to its end as the workspace's remote user and returns its exit code and standard output.
    pub async fn exec_collect(
        &self,
        target: &Target,
        command: Vec<String>,
    ) -> Result<(i64, Vec<u8>), EngineError> {
        let spec = self.process_spec(target, command);
        self.run_to_end(&target.container, spec, Sink::Collect)
            .await
    }

    /// Runs a command of the agent's own set-up in the container (a fixed script, never a user's) to its end as root,
    /// there; returns its exit code and standard output.
    pub async fn run_as_root(
        &self,
        target: &Target,
        command: Vec<String>,
    ) -> Result<(i64, Vec<u8>), EngineError> {
        let spec = ProcessSpec {
            command,
            user: Some("root".to_owned()),
            working_dir: None,
            env: Vec::new(),
            tty: false,
            window: None,
            stdin: false,
        };
        self.run_to_end(&target.container, spec, Sink::Collect)
            .await
    }

    /// How to run `command` in the container as the workspace's remote user, in the workspace folder,
    /// with `remoteEnv` applied, without a terminal or input.
    pub fn process_spec(&self, target: &Target, command: Vec<String>) -> ProcessSpec {
        ProcessSpec {
            command,
            user: Some(target.record.remote_user.clone()),
            working_dir: Some(target.record.workspace_folder.clone()),
            env: remote_env(&target.record.remote_env, &target.container.env),
            tty: false,
            window: None,
            stdin: false,
        }
    }
}

/// The exit code of a finished exec; the engine may need a moment after the output ends to record it.
async fn exit_code(docker: &Docker, exec_id: &str) -> Result<i64, EngineError> {
    let mut delay = std::time::Duration::from_millis(1);
    loop {
        let outcome = docker.inspect_exec(exec_id).await?;
        if !outcome.running {
            return Ok(outcome.exit_code.unwrap_or(-1));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_millis(50));
    }
}

/// Delivers a signal to an exec's process. Docker has no API for it, but the agent runs on the engine's
/// machine, where the process's id (from inspect) is valid.
async fn signal_exec(docker: &Docker, exec_id: &str, signal: i32) {
    let pid = match docker.inspect_exec(exec_id).await {
        Ok(outcome) if outcome.running => outcome.pid,
        _ => None,
    };
    let Some(pid) = pid.and_then(|pid| i32::try_from(pid).ok()) else {
        return;
    };
    let Ok(signal) = nix::sys::signal::Signal::try_from(signal) else {
        tracing::warn!(signal, "ignoring an unknown signal number");
        return;
    };
    if let Err(error) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
        tracing::warn!(pid, %signal, "delivering a signal: {error}");
    }
}

/// `remoteEnv` as `KEY=VALUE`, with `${containerEnv:VAR[:default]}` resolved from the container's environment.
/// A `null` value unsets the variable (Docker cannot unset, so it becomes empty for exec).
pub fn remote_env(
    remote_env: &BTreeMap<String, Option<String>>,
    container_env: &[String],
) -> Vec<String> {
    let container: std::collections::HashMap<String, String> = container_env
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    remote_env
        .iter()
        .map(|(key, value)| {
            let value = value
                .as_deref()
                .map(|value| {
                    let mut value = serde_json::Value::String(value.to_owned());
                    // A `${containerEnv}` without a name is left as written rather than failing the command.
                    let _ = devcontainer::substitute_container_env(&mut value, &container);
                    value.as_str().unwrap_or_default().to_owned()
                })
                .unwrap_or_default();
            format!("{key}={value}")
        })
        .collect()
}
