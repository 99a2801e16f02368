//! One `Exec` call: starts the process in the dev container and carries its input, terminal size,
//! signals and output until it ends. Activity is counted here: a running command keeps the workspace
//! busy, and bytes from the user count as use.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use skiff::api::{ExecInput, ExecOutput, ExecSpec, OutputStream};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::engine::{Engine, EngineError};
use crate::idle::{self, Activity};
use crate::procd::{
    self,
    client::{Event, Input, Process},
};

/// The login shell of the remote user, found the way `login` would, falling back to `/bin/sh`.
const LOGIN_SHELL: &str = "shell=\"$(getent passwd \"$(id -un)\" 2>/dev/null | cut -d: -f7)\"; \
    [ -x \"$shell\" ] || shell=/bin/bash; [ -x \"$shell\" ] || shell=/bin/sh; exec \"$shell\" -l";

/// Whether a running command keeps the workspace busy, or only the bytes sent into it count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// A command without a terminal keeps the workspace busy while it runs (`skiff exec`).
    WhileRunning,
    /// Only input counts: for connections an IDE holds open for days, such as the long-running commands of
    /// VS Code's and JetBrains' remote servers over SSH, which must not keep a forgotten workspace up.
    OnInput,
}

/// Runs `spec` and pumps `input` into it and its output into `output`; returns once the process ended
/// and its exit was sent.
pub async fn run(
    engine: &Engine,
    activity: &Arc<Activity>,
    busy: Busy,
    spec: ExecSpec,
    mut input: impl Stream<Item = ExecInput> + Unpin + Send + 'static,
    output: mpsc::Sender<ExecOutput>,
) -> Result<(), EngineError> {
    let target = engine.running().await?;
    let command = if spec.command.is_empty() {
        vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            LOGIN_SHELL.to_owned(),
        ]
    } else {
        spec.command.clone()
    };
    let mut config = engine.exec_config(&target, command, spec.tty, spec.stdin);
    if let Some(user) = spec.user.clone() {
        config.user = Some(user);
    }
    if let Some(folder) = spec.working_dir.clone() {
        config.working_dir = Some(folder);
    }
    if spec.tty && !spec.env.contains_key("TERM") {
        config.env.push("TERM=xterm-256color".to_owned());
    }
    config
        .env
        .extend(spec.env.iter().map(|(key, value)| format!("{key}={value}")));

    // A command without a terminal is work in progress; a shell counts only while someone types into it.
    let _busy =
        (!spec.tty && busy == Busy::WhileRunning).then(|| activity.busy(idle::source::EXEC));
    let mut notices = activity.notices();

    // The fast path: the process server in the container starts the process with a fork.
    let servers = engine.servers();
    if let Some(server) = servers.get(engine.docker(), &target.container).await {
        let procd_spec = procd::Spec {
            argv: config.command.clone(),
            env: config.env.clone(),
            cwd: config.working_dir.clone(),
            user: config.user.clone(),
            tty: spec.tty.then(|| {
                spec.window
                    .map_or((80, 24), |window| (window.columns, window.rows))
            }),
            connect: None,
        };
        match server.spawn(&procd_spec).await {
            Ok(process) => {
                return run_through_server(process, activity, spec, input, output, notices).await;
            }
            Err(error) => {
                tracing::info!("the process server did not answer, using docker exec: {error}");
                servers.forget().await;
            }
        }
    }

    let session = engine.docker().exec(&target.container.id, config).await?;
    let exec_id = session.id.clone();
    if let Some(window) = spec.window.filter(|_| spec.tty) {
        // The terminal must have its size before the program draws; a failure only costs layout.
        if let Err(error) = engine
            .docker()
            .resize_exec(&exec_id, window.columns, window.rows)
            .await
        {
            tracing::debug!("sizing a new terminal: {error}");
        }
    }

    let mut stdin = session.input;
    if !spec.stdin {
        let _ = stdin.shutdown().await;
    }
    let docker = engine.docker().clone();
    let input_activity = Arc::clone(activity);
    let input_exec_id = exec_id.clone();
    let input_task = tokio::spawn(async move {
        let mut stdin_open = spec.stdin;
        while let Some(message) = input.next().await {
            match message {
                ExecInput::Stdin(data) => {
                    input_activity.touch(idle::source::EXEC_INPUT);
                    if stdin_open && stdin.write_all(&data).await.is_err() {
                        // The process closed its input; later bytes have nowhere to go.
                        stdin_open = false;
                    }
                }
                ExecInput::StdinEof => {
                    if stdin_open {
                        let _ = stdin.shutdown().await;
                        stdin_open = false;
                    }
                }
                ExecInput::Resize(window) => {
                    let _ = docker
                        .resize_exec(&input_exec_id, window.columns, window.rows)
                        .await;
                }
                ExecInput::Signal(signal) => {
                    input_activity.touch(idle::source::EXEC_INPUT);
                    signal_exec(&docker, &input_exec_id, signal).await;
                }
            }
        }
        // The client hung up without closing input: leave the process its input open, as `docker exec` does
        // when its client dies; it ends on its own or with the container.
        stdin
    });

    let mut output_stream = session.output;
    loop {
        let item = tokio::select! {
            item = output_stream.next() => item,
            notice = notices.recv(), if spec.tty => {
                if let Ok(notice) = notice {
                    let _ = output.send(ExecOutput::Notice(notice)).await;
                }
                continue;
            }
        };
        let Some(item) = item else { break };
        let (stream, data) = item?;
        let message = match stream {
            OutputStream::Stdout => ExecOutput::Stdout(data.to_vec()),
            OutputStream::Stderr => ExecOutput::Stderr(data.to_vec()),
        };
        if output.send(message).await.is_err() {
            // The client is gone; stop the process rather than leave it orphaned.
            signal_exec(engine.docker(), &exec_id, libc::SIGHUP).await;
            break;
        }
    }
    input_task.abort();
    let code = engine.exit_code(&exec_id).await?;
    let _ = output
        .send(ExecOutput::Exit(i32::try_from(code).unwrap_or(-1)))
        .await;
    Ok(())
}

/// Delivers a signal to an exec's process. Docker has no API for it, but the agent runs on the engine's
/// machine, where the process's id (from inspect) is valid.
async fn signal_exec(docker: &crate::docker::Docker, exec_id: &str, signal: i32) {
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

/// Carries one process started through the process server.
async fn run_through_server(
    mut process: Process,
    activity: &Arc<Activity>,
    spec: ExecSpec,
    mut input: impl Stream<Item = ExecInput> + Unpin + Send + 'static,
    output: mpsc::Sender<ExecOutput>,
    mut notices: tokio::sync::broadcast::Receiver<String>,
) -> Result<(), EngineError> {
    let process_input = process.input.clone();
    if !spec.stdin {
        let _ = process_input.send(Input::StdinEof).await;
    }
    let input_activity = Arc::clone(activity);
    let input_task = tokio::spawn(async move {
        while let Some(message) = input.next().await {
            let message = match message {
                ExecInput::Stdin(data) => {
                    input_activity.touch(idle::source::EXEC_INPUT);
                    Input::Stdin(data)
                }
                ExecInput::StdinEof => Input::StdinEof,
                ExecInput::Resize(window) => Input::Resize(window.columns, window.rows),
                ExecInput::Signal(signal) => {
                    input_activity.touch(idle::source::EXEC_INPUT);
                    Input::Signal(signal)
                }
            };
            if process_input.send(message).await.is_err() {
                break;
            }
        }
        // Keep the connection open until the process ends: closing it would hang the process up.
        std::future::pending::<()>().await;
    });
    let result = loop {
        let event = tokio::select! {
            event = process.events.recv() => event,
            notice = notices.recv(), if spec.tty => {
                if let Ok(notice) = notice {
                    let _ = output.send(ExecOutput::Notice(notice)).await;
                }
                continue;
            }
        };
        match event {
            Some(Ok(Event::Output(stream, data))) => {
                let message = match stream {
                    OutputStream::Stdout => ExecOutput::Stdout(data.to_vec()),
                    OutputStream::Stderr => ExecOutput::Stderr(data.to_vec()),
                };
                if output.send(message).await.is_err() {
                    // The client is gone: hang the process up, as a closed terminal would.
                    let _ = process.input.send(Input::Signal(libc::SIGHUP)).await;
                    break Ok(());
                }
            }
            Some(Ok(Event::Exit(code))) => {
                let _ = output.send(ExecOutput::Exit(code)).await;
                break Ok(());
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "a command's process server connection failed; it ends with 126");
                let _ = output
                    .send(ExecOutput::Stderr(format!("skiff: {error}\n").into_bytes()))
                    .await;
                let _ = output.send(ExecOutput::Exit(126)).await;
                break Ok(());
            }
            None => break Ok(()),
        }
    };
    input_task.abort();
    result
}

/// Runs a command to its end as the workspace's remote user and returns its exit code and standard output,
/// through the process server when it runs, else `docker exec`.
pub async fn collect(engine: &Engine, command: Vec<String>) -> Result<(i32, Vec<u8>), EngineError> {
    let target = engine.running().await?;
    let (code, stdout) = engine.exec_collect(&target, command).await?;
    Ok((i32::try_from(code).unwrap_or(-1), stdout))
}
