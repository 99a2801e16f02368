//! One `Exec` call: starts the process in the dev container and carries its input, terminal size,
//! signals and output until it ends. Activity is counted here: a running command keeps the workspace
//! busy, and bytes from the user count as use.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use skiff::api::{ExecInput, ExecOutput, ExecSpec};
use tokio::sync::mpsc;

use crate::engine::{Engine, EngineError};
use crate::idle::{self, Activity};

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
/// and its exit was sent. The process starts through the engine's one way ([`Engine::start`]); input and
/// output are carried side by side in this task, so neither waits for the other.
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
    let during = if spec.command.is_empty() {
        "a shell ran".to_owned()
    } else {
        format!("`{}` ran", spec.command.join(" "))
    };
    let mut process_spec = engine.process_spec(&target, command);
    process_spec.tty = spec.tty;
    process_spec.window = spec.window;
    process_spec.stdin = spec.stdin;
    if let Some(user) = spec.user.clone() {
        process_spec.user = Some(user);
    }
    if let Some(folder) = spec.working_dir.clone() {
        process_spec.working_dir = Some(folder);
    }
    if spec.tty && !spec.env.contains_key("TERM") {
        process_spec.env.push("TERM=xterm-256color".to_owned());
    }
    process_spec
        .env
        .extend(spec.env.iter().map(|(key, value)| format!("{key}={value}")));

    // A command without a terminal is work in progress; a shell counts only while someone types into it.
    let _busy =
        (!spec.tty && busy == Busy::WhileRunning).then(|| activity.busy(idle::source::EXEC));
    let mut notices = activity.notices();

    let process = engine.start(&target.container, process_spec).await?;
    let control = &process.control;
    let mut process_output = process.output;
    let pump_input = async {
        while let Some(message) = input.next().await {
            if matches!(message, ExecInput::Stdin(_) | ExecInput::Signal(_)) {
                activity.touch(idle::source::EXEC_INPUT);
            }
            control.send(message).await;
        }
        // The client hung up without closing input: leave the process its input open, as `docker exec` does
        // when its client dies; it ends on its own or with the container.
        std::future::pending::<()>().await;
    };
    tokio::pin!(pump_input);
    loop {
        let event = tokio::select! {
            event = process_output.next() => event,
            () = &mut pump_input => continue,
            notice = notices.recv(), if spec.tty => {
                if let Ok(notice) = notice {
                    let _ = output.send(ExecOutput::Notice(notice)).await;
                }
                continue;
            }
        };
        match event {
            // A death by signal may be the container stopping under the command (Docker restarted): say so.
            Some(Ok(ExecOutput::Exit(code)))
                if code > 128 && engine.stopped_since(&target).await =>
            {
                return Err(engine.stopped_under(&during, &format!("it ended with {code}")));
            }
            Some(Ok(ExecOutput::Exit(code))) => {
                let _ = output.send(ExecOutput::Exit(code)).await;
                return Ok(());
            }
            Some(Ok(message)) => {
                if output.send(message).await.is_err() {
                    // The client is gone: hang the process up, as a closed terminal would.
                    control.send(ExecInput::Signal(libc::SIGHUP)).await;
                    return Ok(());
                }
            }
            Some(Err(error)) if engine.stopped_since(&target).await => {
                return Err(engine.stopped_under(&during, &error));
            }
            Some(Err(EngineError::Process { reason, .. })) => {
                tracing::warn!(error = %reason, "a command's process server connection failed; it ends with 126");
                let _ = output
                    .send(ExecOutput::Stderr(
                        format!("skiff: {reason}\n").into_bytes(),
                    ))
                    .await;
                let _ = output.send(ExecOutput::Exit(126)).await;
                return Ok(());
            }
            Some(Err(error)) => return Err(error),
            None => return Ok(()),
        }
    }
}

/// Runs a command to its end as the workspace's remote user and returns its exit code and standard output,
/// through the process server when it runs, else `docker exec`.
pub async fn collect(engine: &Engine, command: Vec<String>) -> Result<(i32, Vec<u8>), EngineError> {
    let target = engine.running().await?;
    let (code, stdout) = engine.exec_collect(&target, command).await?;
    Ok((i32::try_from(code).unwrap_or(-1), stdout))
}
