//! One SSH session channel: it gathers the client's requests (pty, env, window size), runs the shell,
//! command or `sftp` subsystem through [`crate::exec`] as the logged-in user, and carries input, resizes
//! and signals in, and output, the exit status and the end out.
//!
//! The exit status of a process killed by signal n is 128 + n, as `exec` reports it and as a shell would;
//! `exec` does not say whether the process died of a signal, so no `exit-signal` is sent.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelWriteHalf, Sig};
use skiff::api::{ExecInput, ExecOutput, ExecSpec, WindowSize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Context;
use crate::procd::client::CONTAINER_PATH;

/// The one subsystem the server offers.
pub(super) const SFTP: &str = "sftp";

/// Runs an SSH `exec` request's command with the user's login shell, as sshd does (`$SHELL -c COMMAND`),
/// falling back to `/bin/sh` where the shell cannot be found.
const USER_SHELL_COMMAND: &str = "shell=\"$(getent passwd \"$(id -un)\" 2>/dev/null | cut -d: -f7)\"; \
    [ -x \"$shell\" ] || shell=/bin/sh; exec \"$shell\" -c \"$1\"";

/// The status reported when the process could not be started at all.
const START_FAILED: u32 = 1;

/// What the session runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Program {
    /// The user's login shell.
    Shell,
    /// A command line, for the user's shell.
    Command(String),
    /// The SFTP server, on the channel's standard input and output.
    Sftp,
}

/// What the client asked for before the program started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Request {
    /// Environment variables from `env` requests, and `TERM` from a pty request.
    pub env: BTreeMap<String, String>,
    /// The terminal's size, when the client asked for a pty.
    pub terminal: Option<WindowSize>,
    /// Whether the client asked for agent forwarding (`auth-agent-req@openssh.com`).
    pub agent: bool,
}

/// The `exec` specification of `program` for `user` (empty: the workspace's remote user).
pub(super) fn spec(program: &Program, request: &Request, user: &str) -> ExecSpec {
    let (command, terminal) = match program {
        Program::Shell => (Vec::new(), request.terminal),
        Program::Command(line) => (
            vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                USER_SHELL_COMMAND.to_owned(),
                "sh".to_owned(),
                line.clone(),
            ],
            request.terminal,
        ),
        // The SFTP protocol must not pass through a terminal, whatever the client asked for.
        Program::Sftp => (vec![CONTAINER_PATH.to_owned(), "--sftp".to_owned()], None),
    };
    ExecSpec {
        command,
        tty: terminal.is_some(),
        user: (!user.is_empty()).then(|| user.to_owned()),
        working_dir: None,
        env: request.env.clone(),
        window: terminal,
        stdin: true,
    }
}

/// A terminal size from an SSH request, which may say 0 for "unknown".
pub(super) fn window(columns: u32, rows: u32) -> WindowSize {
    let clamp = |value: u32, default: u16| match u16::try_from(value) {
        Ok(0) => default,
        Ok(value) => value,
        Err(_) => u16::MAX,
    };
    WindowSize {
        columns: clamp(columns, 80),
        rows: clamp(rows, 24),
    }
}

/// The number of a signal named in an SSH `signal` request (RFC 4254 names, without `SIG`).
pub(super) fn signal_number(signal: &Sig) -> Option<i32> {
    use nix::sys::signal::Signal;
    let signal = match signal {
        Sig::ABRT => Signal::SIGABRT,
        Sig::ALRM => Signal::SIGALRM,
        Sig::FPE => Signal::SIGFPE,
        Sig::HUP => Signal::SIGHUP,
        Sig::ILL => Signal::SIGILL,
        Sig::INT => Signal::SIGINT,
        Sig::KILL => Signal::SIGKILL,
        Sig::PIPE => Signal::SIGPIPE,
        Sig::QUIT => Signal::SIGQUIT,
        Sig::SEGV => Signal::SIGSEGV,
        Sig::TERM => Signal::SIGTERM,
        Sig::USR1 => Signal::SIGUSR1,
        Sig::Custom(name) => format!("SIG{name}").parse().ok()?,
    };
    Some(signal as i32)
}

/// Serves one session channel until the client closes it.
pub(super) async fn run(
    channel: Channel<Msg>,
    context: Arc<Context>,
    user: String,
    handle: russh::server::Handle,
) {
    let (mut reader, writer) = channel.split();
    let mut writer = Some(writer);
    let mut request = Request::default();
    // Input that arrived before the program started, and the program's input once it runs.
    let mut early = Vec::new();
    let mut input: Option<mpsc::Sender<ExecInput>> = None;
    while let Some(message) = reader.wait().await {
        let program = match message {
            ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                ..
            } => {
                request.env.insert("TERM".to_owned(), term);
                request.terminal = Some(window(col_width, row_height));
                continue;
            }
            ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            } => {
                request.env.insert(variable_name, variable_value);
                continue;
            }
            ChannelMsg::AgentForward { .. } => {
                request.agent = true;
                continue;
            }
            ChannelMsg::RequestShell { .. } => Program::Shell,
            ChannelMsg::Exec { command, .. } => {
                Program::Command(String::from_utf8_lossy(&command).into_owned())
            }
            ChannelMsg::RequestSubsystem { name, .. } if name == SFTP => Program::Sftp,
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            } => {
                let size = window(col_width, row_height);
                if input.is_none() && request.terminal.is_some() {
                    request.terminal = Some(size);
                }
                deliver(&input, &mut early, ExecInput::Resize(size)).await;
                continue;
            }
            ChannelMsg::Signal { signal } => {
                if let Some(number) = signal_number(&signal) {
                    deliver(&input, &mut early, ExecInput::Signal(number)).await;
                }
                continue;
            }
            ChannelMsg::Data { data } => {
                deliver(&input, &mut early, ExecInput::Stdin(data.to_vec())).await;
                continue;
            }
            ChannelMsg::Eof => {
                deliver(&input, &mut early, ExecInput::StdinEof).await;
                continue;
            }
            ChannelMsg::Close => break,
            _ => continue,
        };
        // A session runs one program; a second request is ignored, as sshd does.
        let Some(writer) = writer.take() else {
            continue;
        };
        let spec = spec(&program, &request, &user);
        let (sender, receiver) = mpsc::channel(16);
        let stream =
            futures::stream::iter(std::mem::take(&mut early)).chain(ReceiverStream::new(receiver));
        input = Some(sender);
        let agent = request.agent.then(|| handle.clone());
        context.tasks.spawn(execute(
            Arc::clone(&context),
            program,
            spec,
            agent,
            Box::pin(stream),
            writer,
        ));
    }
    // The client closed the channel: a terminal's process is hung up, as a closed terminal would do;
    // a command without one keeps running until it ends, as it would under sshd.
    if request.terminal.is_some()
        && let Some(input) = &input
    {
        let _ = input.send(ExecInput::Signal(libc::SIGHUP)).await;
    }
}

/// Passes input to the running program, or keeps it until the program starts.
async fn deliver(
    input: &Option<mpsc::Sender<ExecInput>>,
    early: &mut Vec<ExecInput>,
    message: ExecInput,
) {
    match input {
        // A program that ended has no use for more input.
        Some(input) => {
            let _ = input.send(message).await;
        }
        None => early.push(message),
    }
}

/// Runs the program and writes its output, exit status and end to the channel.
async fn execute(
    context: Arc<Context>,
    program: Program,
    mut spec: ExecSpec,
    agent: Option<russh::server::Handle>,
    input: std::pin::Pin<Box<dyn futures::Stream<Item = ExecInput> + Send>>,
    writer: ChannelWriteHalf<Msg>,
) {
    let tty = spec.tty;
    // The forwarding lasts while the program runs; aborting its task ends it.
    let forwarding = match agent {
        Some(handle) if program != Program::Sftp => {
            match forward_agent(&context, &mut spec, handle).await {
                Ok(task) => Some(task),
                Err(reason) => {
                    let line = format!("skiff: the SSH agent is not forwarded: {reason}\r\n");
                    let _ = writer.extended_data_bytes(1, line.into_bytes()).await;
                    None
                }
            }
        }
        _ => None,
    };
    let status = match prepare(&context, &program).await {
        Err(reason) => {
            let _ = writer
                .extended_data_bytes(1, format!("skiff: {reason}\r\n").into_bytes())
                .await;
            START_FAILED
        }
        Ok(()) => {
            let (outputs, receiver) = mpsc::channel(16);
            // IDEs keep commands running over SSH for as long as they are open; only what is sent counts.
            let running = crate::exec::run(
                &context.engine,
                &context.activity,
                crate::exec::Busy::OnInput,
                spec,
                input,
                outputs,
            );
            let (result, exit) = tokio::join!(running, pump(receiver, &writer, tty));
            match (result, exit) {
                (_, Some(code)) => u32::try_from(code).unwrap_or(255),
                (Err(error), None) => {
                    let _ = writer
                        .extended_data_bytes(1, format!("skiff: {error}\r\n").into_bytes())
                        .await;
                    START_FAILED
                }
                // The client went away before the end; nobody reads the status.
                (Ok(()), None) => 255,
            }
        }
    };
    if let Some(forwarding) = forwarding {
        forwarding.abort();
    }
    // In sshd's order: the end of output, the status, then the close.
    let _ = writer.eof().await;
    let _ = writer.exit_status(status).await;
    let _ = writer.close().await;
}

/// Starts agent forwarding for `spec`'s user and sets its `SSH_AUTH_SOCK`; each connection to the socket becomes an
/// `auth-agent@openssh.com` channel to the client. The returned task carries them; aborting it ends the forwarding.
async fn forward_agent(
    context: &Context,
    spec: &mut ExecSpec,
    handle: russh::server::Handle,
) -> Result<tokio::task::AbortHandle, String> {
    let mut forwarding = crate::ssh_agent::Forwarding::start(
        &context.engine,
        &context.activity,
        &context.tasks,
        spec.user.clone(),
        crate::ssh_agent::Kind::Ssh,
    )
    .await?;
    spec.env
        .insert("SSH_AUTH_SOCK".to_owned(), forwarding.socket.clone());
    let tasks = context.tasks.clone();
    let carrying = context.tasks.spawn(async move {
        while let Some(mut connection) = forwarding.next().await {
            let handle = handle.clone();
            tasks.spawn(async move {
                match handle.channel_open_agent().await {
                    Ok(channel) => {
                        let mut stream = channel.into_stream();
                        let _ = tokio::io::copy_bidirectional(&mut connection, &mut stream).await;
                    }
                    Err(error) => {
                        tracing::info!("ssh: the client refused an agent channel: {error}")
                    }
                }
            });
        }
    });
    Ok(carrying.abort_handle())
}

/// Makes sure what `program` needs is in the dev container: for SFTP, the `skiff-procd` binary.
async fn prepare(context: &Context, program: &Program) -> Result<(), String> {
    if *program != Program::Sftp {
        return Ok(());
    }
    let target = context
        .engine
        .running()
        .await
        .map_err(|error| error.to_string())?;
    // A running process server means its binary is in place; otherwise it is copied in for this one use.
    context.engine.place_process_server_binary(&target).await
}

/// Writes the program's output to the channel until it ends; returns its exit code. Stops early when the
/// channel is gone, which drops `outputs` so `exec` hangs the process up.
async fn pump(
    mut outputs: mpsc::Receiver<ExecOutput>,
    writer: &ChannelWriteHalf<Msg>,
    tty: bool,
) -> Option<i32> {
    let mut exit = None;
    while let Some(output) = outputs.recv().await {
        let written = match output {
            ExecOutput::Stdout(data) => writer.data_bytes(data).await,
            ExecOutput::Stderr(data) => writer.extended_data_bytes(1, data).await,
            ExecOutput::Notice(notice) if tty => {
                writer
                    .data_bytes(format!("\r\nskiff: {notice}\r\n").into_bytes())
                    .await
            }
            ExecOutput::Notice(notice) => {
                writer
                    .extended_data_bytes(1, format!("skiff: {notice}\n").into_bytes())
                    .await
            }
            ExecOutput::Exit(code) => {
                exit = Some(code);
                Ok(())
            }
        };
        if written.is_err() {
            break;
        }
    }
    exit
}
