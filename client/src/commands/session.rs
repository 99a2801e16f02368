//! An attached exec session: the local terminal or pipes on one side, the remote process on the other.
//! Shared by `skiff exec` and `skiff ssh`.

use anyhow::Context as _;
use futures::StreamExt;
use skiff::api::{ExecInput, ExecOutput, ExecSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::agent_client::AgentClient;
use crate::terminal;

/// Runs `spec` with this process's standard streams attached; returns the remote exit code.
pub async fn attach(client: &mut AgentClient, spec: ExecSpec) -> anyhow::Result<i32> {
    let tty = spec.tty;
    let (input, input_receiver) = mpsc::channel::<ExecInput>(16);
    // The readers of standard input, window sizes and signals live as long as the session: the set ends them.
    let mut feeders = tokio::task::JoinSet::new();

    if spec.stdin {
        let stdin_input = input.clone();
        feeders.spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buffer = vec![0u8; 256 * 1024];
            loop {
                match stdin.read(&mut buffer).await {
                    Ok(0) | Err(_) => {
                        let _ = stdin_input.send(ExecInput::StdinEof).await;
                        break;
                    }
                    Ok(read) => {
                        if stdin_input
                            .send(ExecInput::Stdin(buffer[..read].to_vec()))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
    }
    if tty {
        if let Ok(resizes) = terminal::resizes() {
            let resize_input = input.clone();
            feeders.spawn(async move {
                let mut resizes = Box::pin(resizes);
                while let Some(size) = resizes.next().await {
                    if resize_input.send(ExecInput::Resize(size)).await.is_err() {
                        break;
                    }
                }
            });
        }
    } else {
        // Without a terminal, Ctrl-C and SIGTERM reach this process: pass them on to the remote one.
        for kind in [
            tokio::signal::unix::SignalKind::interrupt(),
            tokio::signal::unix::SignalKind::terminate(),
        ] {
            let Ok(mut signal) = tokio::signal::unix::signal(kind) else {
                continue;
            };
            let signal_input = input.clone();
            feeders.spawn(async move {
                while signal.recv().await.is_some() {
                    if signal_input
                        .send(ExecInput::Signal(kind.as_raw_value()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    }
    drop(input);

    let raw_mode = if tty && terminal::is_interactive() {
        Some(terminal::RawMode::enable().context("putting the terminal in raw mode")?)
    } else {
        None
    };
    let mut outputs = Box::pin(
        client
            .exec(spec, ReceiverStream::new(input_receiver))
            .await?,
    );
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    while let Some(output) = outputs.next().await {
        match output? {
            ExecOutput::Stdout(data) => {
                stdout
                    .write_all(&data)
                    .await
                    .context("writing to standard output")?;
                stdout.flush().await.context("writing to standard output")?;
            }
            ExecOutput::Stderr(data) => {
                stderr
                    .write_all(&data)
                    .await
                    .context("writing to standard error")?;
                stderr.flush().await.context("writing to standard error")?;
            }
            ExecOutput::Exit(code) => return Ok(code),
            ExecOutput::Notice(notice) => {
                // In raw mode a bare newline does not return the carriage.
                let text = if raw_mode.is_some() {
                    format!("\r\n{notice}\r\n")
                } else {
                    format!("{notice}\n")
                };
                stderr
                    .write_all(text.as_bytes())
                    .await
                    .context("writing to standard error")?;
                stderr.flush().await.context("writing to standard error")?;
            }
        }
    }
    anyhow::bail!(
        "the agent ended the session without the command's exit code; the connection may have dropped"
    )
}
