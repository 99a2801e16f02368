//! Running a command in the dev container to its end, for the engine's own work (lifecycle commands, their
//! markers, the user environment probe): through the container's process server when it runs there, which
//! starts a process with a fork (milliseconds), else through `docker exec` (tens of milliseconds each). A
//! restart of a stopped workspace runs three such commands, so this is most of what `skiff up` adds to
//! `docker start`; starting the server here also makes the first `skiff exec` after `up` fast.

use futures::StreamExt;
use skiff::api::{OutputStream, UpEvent};
use tokio::io::AsyncWriteExt;

use super::{Engine, EngineError, Events, emit};
use crate::docker::{ContainerInfo, ExecConfig};
use crate::procd::{
    self,
    client::{Event, Input},
};

/// Where a command's output goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sink<'a> {
    /// Standard output is kept and returned; standard error is dropped.
    Collect,
    /// Both streams go to the client of `up` as they come.
    Events(&'a Events),
}

impl Sink<'_> {
    async fn take(&self, stream: OutputStream, data: &[u8], stdout: &mut Vec<u8>) {
        match self {
            Sink::Collect if stream == OutputStream::Stdout => stdout.extend_from_slice(data),
            Sink::Collect => {}
            Sink::Events(events) => {
                emit(
                    events,
                    UpEvent::Output {
                        stream,
                        data: data.to_vec(),
                    },
                )
                .await
            }
        }
    }
}

impl Engine {
    /// Runs `config` (without a terminal or input) in `container` to its end; returns its exit code and, for
    /// [`Sink::Collect`], its standard output. A process server that cannot start the command falls back to
    /// `docker exec`; one that fails after the command started is an error, never a second run of the command.
    pub(crate) async fn run_to_end(
        &self,
        container: &ContainerInfo,
        config: ExecConfig,
        sink: Sink<'_>,
    ) -> Result<(i64, Vec<u8>), EngineError> {
        let mut stdout = Vec::new();
        if let Some(server) = self.servers.get(&self.docker, container).await {
            let spec = procd::Spec {
                argv: config.command.clone(),
                env: config.env.clone(),
                cwd: config.working_dir.clone(),
                user: config.user.clone(),
                tty: None,
                connect: None,
            };
            match server.spawn(&spec).await {
                Ok(mut process) => {
                    let _ = process.input.send(Input::StdinEof).await;
                    while let Some(event) = process.events.recv().await {
                        match event {
                            Ok(Event::Output(stream, data)) => {
                                sink.take(stream, &data, &mut stdout).await
                            }
                            Ok(Event::Exit(code)) => return Ok((i64::from(code), stdout)),
                            Err(error) => {
                                self.servers.forget().await;
                                return Err(EngineError::Process {
                                    command: config.command.join(" "),
                                    reason: error.to_string(),
                                });
                            }
                        }
                    }
                    self.servers.forget().await;
                    return Err(EngineError::Process {
                        command: config.command.join(" "),
                        reason: "the process server stopped answering".into(),
                    });
                }
                Err(error) => {
                    tracing::info!("the process server did not answer, using docker exec: {error}");
                    self.servers.forget().await;
                }
            }
        }
        let mut session = self.docker.exec(&container.id, config).await?;
        let _ = session.input.shutdown().await;
        while let Some(item) = session.output.next().await {
            let (stream, data) = item?;
            sink.take(stream, &data, &mut stdout).await;
        }
        Ok((self.exit_code(&session.id).await?, stdout))
    }
}
