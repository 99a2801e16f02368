//! The typed client of the agent: the only place the client sees gRPC, tonic and generated types.
//! Everything it returns is `skiff::api`, and every failure is an [`AgentError`] that says what failed.
//! A failure is sorted by its type, never by its text: the agent's answers by their status [`Code`], and the
//! connection's failures by the errors beneath them (see [`AgentError::from_status`]).

use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use skiff::api;
use skiff::proto::{self, v1};

use crate::tunnel::{ConnectError, Dial};

/// A failed call to the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent answered with an error; its message already names the thing and the fix.
    #[error("{message}")]
    Agent {
        /// The call that failed.
        call: &'static str,
        /// The status code the agent answered with.
        code: Code,
        /// The agent's message.
        message: String,
    },
    /// The connection to the agent failed or dropped.
    #[error("{call}: lost the connection to the agent: {detail}")]
    Connection { call: &'static str, detail: String },
    /// The agent sent something that breaks the contract.
    #[error("{call}: the agent sent a malformed message: {source}")]
    Protocol {
        call: &'static str,
        #[source]
        source: proto::ProtoError,
    },
}

/// What kind of error the agent answered with: the gRPC status codes, as the client's own type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    /// The agent has no such call: it is older than this client.
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl From<tonic::Code> for Code {
    fn from(code: tonic::Code) -> Self {
        match code {
            // An error never carries Ok; should a peer send it, it is no known kind.
            tonic::Code::Ok | tonic::Code::Unknown => Self::Unknown,
            tonic::Code::Cancelled => Self::Cancelled,
            tonic::Code::InvalidArgument => Self::InvalidArgument,
            tonic::Code::DeadlineExceeded => Self::DeadlineExceeded,
            tonic::Code::NotFound => Self::NotFound,
            tonic::Code::AlreadyExists => Self::AlreadyExists,
            tonic::Code::PermissionDenied => Self::PermissionDenied,
            tonic::Code::ResourceExhausted => Self::ResourceExhausted,
            tonic::Code::FailedPrecondition => Self::FailedPrecondition,
            tonic::Code::Aborted => Self::Aborted,
            tonic::Code::OutOfRange => Self::OutOfRange,
            tonic::Code::Unimplemented => Self::Unimplemented,
            tonic::Code::Internal => Self::Internal,
            tonic::Code::Unavailable => Self::Unavailable,
            tonic::Code::DataLoss => Self::DataLoss,
            tonic::Code::Unauthenticated => Self::Unauthenticated,
        }
    }
}

impl AgentError {
    /// Sorts a failed call. A status the agent sent arrives from the wire with no source; one that tonic made
    /// here from a failure of the connection carries that failure as its source. So a status is the
    /// connection's when an error of a transport layer (I/O, which carries TLS's too, HTTP/2, hyper, tonic's
    /// transport)
    /// is found in its source chain, and the agent's answer otherwise.
    pub(crate) fn from_status(call: &'static str, status: tonic::Status) -> Self {
        if from_transport(&status) {
            let mut detail = status.message().to_owned();
            let mut source = std::error::Error::source(&status);
            while let Some(cause) = source {
                detail.push_str(": ");
                detail.push_str(&cause.to_string());
                source = cause.source();
            }
            Self::Connection { call, detail }
        } else {
            Self::Agent {
                call,
                code: status.code().into(),
                message: status.message().to_owned(),
            }
        }
    }

    /// The status code the agent answered with; `None` when the call failed before it could answer.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Agent { code, .. } => Some(*code),
            Self::Connection { .. } | Self::Protocol { .. } => None,
        }
    }
}

/// Whether `status` reports a failure of the connection rather than the agent's answer: some error of a
/// transport layer is in its source chain.
fn from_transport(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>()
            || cause.is::<h2::Error>()
            || cause.is::<hyper::Error>()
            || cause.is::<tonic::transport::Error>()
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A gRPC channel to one agent, over streams that are already mutual TLS (`tunnel::connect` makes them).
#[derive(Debug, Clone)]
pub struct Channel(tonic::transport::Channel);

impl Channel {
    /// Opens a channel over streams from `dial`; `route` names the way in errors. The channel dials again by
    /// itself if a stream drops.
    pub(crate) async fn connect(dial: Dial, route: &str) -> Result<Self, ConnectError> {
        let endpoint = tonic::transport::Endpoint::from_static("http://skiff-agent.invalid")
            .connect_timeout(Duration::from_secs(20))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        endpoint
            .connect_with_connector(tower::service_fn(move |_uri| {
                let dial = std::sync::Arc::clone(&dial);
                async move { Ok::<_, std::io::Error>(TokioIo::new(dial().await?)) }
            }))
            .await
            .map(Self)
            .map_err(|error| ConnectError::Unreachable {
                address: route.to_owned(),
                detail: crate::tunnel::error_chain(&error),
            })
    }
}

// The Forward and Upload types are the shared library's, named here as the client's commands know them.
pub use skiff::api::{
    Compression as ArchiveCompression, ForwardEvent, ForwardInput, UploadHeader, UploadPart,
    UploadReply,
};

/// A command run to its end by [`AgentClient::output`].
#[derive(Debug, Default)]
pub struct Finished {
    /// Its exit code; `None` when the call ended without one.
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

/// A client of one agent.
#[derive(Debug, Clone)]
pub struct AgentClient {
    inner: v1::agent_client::AgentClient<tonic::transport::Channel>,
}

const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

impl AgentClient {
    /// A client over an open channel.
    pub fn new(channel: Channel) -> Self {
        Self {
            inner: v1::agent_client::AgentClient::new(channel.0)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        }
    }

    /// The agent's version and capabilities.
    pub async fn version(&mut self) -> Result<api::VersionInfo, AgentError> {
        let request = v1::VersionRequest {
            client_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let response = self
            .inner
            .version(request)
            .await
            .map_err(|status| AgentError::from_status("version", status))?;
        Ok(response.into_inner().into())
    }

    /// The workspace's status.
    pub async fn status(&mut self) -> Result<api::Status, AgentError> {
        let response = self
            .inner
            .status(v1::StatusRequest {})
            .await
            .map_err(|status| AgentError::from_status("status", status))?;
        api::Status::try_from(response.into_inner()).map_err(|source| AgentError::Protocol {
            call: "status",
            source,
        })
    }

    /// Builds (or finds) and starts the dev container; the stream ends with `UpEvent::Ready` or an error.
    pub async fn up(
        &mut self,
        spec: api::UpSpec,
    ) -> Result<BoxStream<'static, Result<api::UpEvent, AgentError>>, AgentError> {
        let response = self
            .inner
            .up(v1::UpRequest::from(spec))
            .await
            .map_err(|status| AgentError::from_status("up", status))?;
        Ok(response
            .into_inner()
            .map(|item| {
                let response = item.map_err(|status| AgentError::from_status("up", status))?;
                api::UpEvent::try_from(response)
                    .map_err(|source| AgentError::Protocol { call: "up", source })
            })
            .boxed())
    }

    /// Runs a command; `input` carries stdin, resizes and signals, and the stream ends with `ExecOutput::Exit`.
    pub async fn exec(
        &mut self,
        spec: api::ExecSpec,
        input: impl Stream<Item = api::ExecInput> + Send + 'static,
    ) -> Result<BoxStream<'static, Result<api::ExecOutput, AgentError>>, AgentError> {
        let requests = futures::stream::once(async move { v1::ExecRequest::from(spec) })
            .chain(input.map(v1::ExecRequest::from));
        let response = self
            .inner
            .exec(requests)
            .await
            .map_err(|status| AgentError::from_status("exec", status))?;
        Ok(response
            .into_inner()
            .map(|item| {
                let response = item.map_err(|status| AgentError::from_status("exec", status))?;
                api::ExecOutput::try_from(response).map_err(|source| AgentError::Protocol {
                    call: "exec",
                    source,
                })
            })
            .boxed())
    }

    /// Runs `command` (no terminal, no input) as the remote user to its end; its exit code, stdout and stderr.
    pub async fn output(&mut self, command: Vec<String>) -> Result<Finished, AgentError> {
        self.output_as(None, command).await
    }

    /// Runs `command` as `user` (none: the remote user) to its end, as [`AgentClient::output`] does.
    pub async fn output_as(
        &mut self,
        user: Option<String>,
        command: Vec<String>,
    ) -> Result<Finished, AgentError> {
        let spec = api::ExecSpec {
            command,
            tty: false,
            user,
            working_dir: None,
            env: Default::default(),
            window: None,
            stdin: false,
        };
        let mut outputs = self.exec(spec, futures::stream::empty()).await?;
        let mut finished = Finished::default();
        while let Some(output) = outputs.next().await {
            match output? {
                api::ExecOutput::Stdout(data) => finished.stdout.extend_from_slice(&data),
                api::ExecOutput::Stderr(data) => finished.stderr.extend_from_slice(&data),
                api::ExecOutput::Notice(_) => {}
                api::ExecOutput::Exit(code) => {
                    finished.code = Some(code);
                    break;
                }
            }
        }
        Ok(finished)
    }

    /// Opens a forwarded connection; the first event is `Opened` (or the stream fails with why it could not).
    pub async fn forward(
        &mut self,
        target: api::ForwardTarget,
        input: impl Stream<Item = ForwardInput> + Send + 'static,
    ) -> Result<BoxStream<'static, Result<ForwardEvent, AgentError>>, AgentError> {
        let requests = futures::stream::once(async move { v1::ForwardRequest::from(target) })
            .chain(input.map(v1::ForwardRequest::from));
        let response = self
            .inner
            .forward(requests)
            .await
            .map_err(|status| AgentError::from_status("forward", status))?;
        Ok(response
            .into_inner()
            .map(|item| {
                let response = item.map_err(|status| AgentError::from_status("forward", status))?;
                ForwardEvent::try_from(response).map_err(|source| AgentError::Protocol {
                    call: "forward",
                    source,
                })
            })
            .boxed())
    }

    /// Sends a gzip-compressed tar archive of the workspace's files; returns the folder they landed in.
    pub async fn upload(
        &mut self,
        size: u64,
        chunks: impl Stream<Item = Vec<u8>> + Send + 'static,
    ) -> Result<(String, u64, u64), AgentError> {
        let header = UploadHeader {
            compression: ArchiveCompression::Gzip,
            size,
            part: None,
            remove: Vec::new(),
            expected: Vec::new(),
        };
        let reply = self.upload_with(header, chunks).await?;
        Ok((reply.files_folder, reply.files, reply.bytes))
    }

    /// Sends one `Upload` call: a whole archive, or one part of an upload in parts (which answers only once every
    /// part has arrived and the whole is unpacked).
    pub async fn upload_with(
        &mut self,
        header: UploadHeader,
        chunks: impl Stream<Item = Vec<u8>> + Send + 'static,
    ) -> Result<UploadReply, AgentError> {
        use v1::upload_request::Message;
        let start = v1::UploadRequest::from(header);
        let requests = futures::stream::once(async move { start }).chain(chunks.map(|chunk| {
            v1::UploadRequest {
                message: Some(Message::Chunk(chunk)),
            }
        }));
        let response = self
            .inner
            .upload(requests)
            .await
            .map_err(|status| AgentError::from_status("upload", status))?
            .into_inner();
        Ok(response.into())
    }

    /// The agent's files folder, each path with how it is and how the last upload left it; with `hash_paths`,
    /// only those paths, with the hash of their content.
    pub async fn manifest(
        &mut self,
        hash_paths: Vec<String>,
    ) -> Result<Vec<api::ManifestEntry>, AgentError> {
        let mut responses = self
            .inner
            .manifest(v1::ManifestRequest { hash_paths })
            .await
            .map_err(|status| AgentError::from_status("manifest", status))?
            .into_inner();
        let mut entries = Vec::new();
        while let Some(response) = responses
            .message()
            .await
            .map_err(|status| AgentError::from_status("manifest", status))?
        {
            for entry in response.entries {
                entries.push(api::ManifestEntry::try_from(entry).map_err(|source| {
                    AgentError::Protocol {
                        call: "manifest",
                        source,
                    }
                })?);
            }
        }
        Ok(entries)
    }

    /// Clones `url` into the agent's (empty) files folder; the stream carries git's output and ends with `Done`.
    pub async fn clone_repository(
        &mut self,
        url: &str,
        branch: Option<&str>,
    ) -> Result<BoxStream<'static, Result<api::CloneEvent, AgentError>>, AgentError> {
        let response = self
            .inner
            .clone_repository(v1::CloneRepositoryRequest {
                url: url.to_owned(),
                branch: branch.unwrap_or_default().to_owned(),
            })
            .await
            .map_err(|status| AgentError::from_status("clone", status))?;
        Ok(response
            .into_inner()
            .map(|item| {
                let response = item.map_err(|status| AgentError::from_status("clone", status))?;
                api::CloneEvent::try_from(response).map_err(|source| AgentError::Protocol {
                    call: "clone",
                    source,
                })
            })
            .boxed())
    }

    /// The devcontainer.json inside the agent's files folder: `config_path` (relative to it), or the one discovery finds.
    pub async fn read_config(
        &mut self,
        config_path: Option<&str>,
        refresh: bool,
    ) -> Result<api::RemoteConfig, AgentError> {
        let response = self
            .inner
            .read_config(v1::ReadConfigRequest {
                config_path: config_path.unwrap_or_default().to_owned(),
                refresh,
            })
            .await
            .map_err(|status| AgentError::from_status("read config", status))?;
        Ok(response.into_inner().into())
    }

    /// What deleting the workspace would lose from the files folder's git repository.
    pub async fn git_state(&mut self) -> Result<api::GitState, AgentError> {
        let response = self
            .inner
            .git_state(v1::GitStateRequest {})
            .await
            .map_err(|status| AgentError::from_status("git state", status))?;
        Ok(response.into_inner().into())
    }

    /// Sends `executable` (whose SHA-256 is `sha256`) to replace the agent's own; the agent answers, then restarts
    /// into it. Returns where the agent put it. The agent refuses an executable older than itself unless
    /// `allow_downgrade`, which only a person's explicit request may set.
    pub async fn replace_agent(
        &mut self,
        executable: bytes::Bytes,
        sha256: &str,
        allow_downgrade: bool,
    ) -> Result<String, AgentError> {
        use v1::replace_agent_request::Item;
        const CHUNK: usize = 256 * 1024;
        let start = v1::ReplaceAgentRequest {
            item: Some(Item::Start(v1::ReplaceAgentStart {
                size: executable.len() as u64,
                sha256: sha256.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                allow_downgrade,
            })),
        };
        let chunks: Vec<v1::ReplaceAgentRequest> = (0..executable.len())
            .step_by(CHUNK)
            .map(|offset| v1::ReplaceAgentRequest {
                item: Some(Item::Chunk(
                    executable[offset..(offset + CHUNK).min(executable.len())].to_vec(),
                )),
            })
            .collect();
        let requests = futures::stream::iter(std::iter::once(start).chain(chunks));
        let response = self
            .inner
            .replace_agent(requests)
            .await
            .map_err(|status| AgentError::from_status("replace agent", status))?;
        Ok(response.into_inner().path)
    }

    /// Opens the call that carries git's credential requests from the dev container to this client; `answers`
    /// carries the answers (its first item, id 0, opens the call).
    pub async fn git_credentials(
        &mut self,
        answers: impl Stream<Item = api::GitCredentialAnswer> + Send + 'static,
    ) -> Result<BoxStream<'static, Result<api::GitCredentialRequest, AgentError>>, AgentError> {
        let response = self
            .inner
            .git_credentials(answers.map(v1::GitCredentialAnswer::from))
            .await
            .map_err(|status| AgentError::from_status("git credentials", status))?;
        Ok(response
            .into_inner()
            .map(|item| {
                item.map(api::GitCredentialRequest::from)
                    .map_err(|status| AgentError::from_status("git credentials", status))
            })
            .boxed())
    }

    /// Opens the call that forwards this machine's SSH agent into the dev container; `messages` carries this side's
    /// (its first, `Start`, opens the call).
    pub async fn ssh_agent(
        &mut self,
        messages: impl Stream<Item = api::SshAgentMessage> + Send + 'static,
    ) -> Result<BoxStream<'static, Result<api::SshAgentMessage, AgentError>>, AgentError> {
        let response = self
            .inner
            .ssh_agent(messages.map(v1::SshAgentMessage::from))
            .await
            .map_err(|status| AgentError::from_status("ssh agent forwarding", status))?;
        Ok(response
            .into_inner()
            .map(|item| {
                item.map_err(|status| AgentError::from_status("ssh agent forwarding", status))
                    .and_then(|message| {
                        api::SshAgentMessage::try_from(message).map_err(|source| {
                            AgentError::Protocol {
                                call: "ssh agent forwarding",
                                source,
                            }
                        })
                    })
            })
            .boxed())
    }

    /// Makes sure the dev container runs, starting a stopped one as it was made; true when this call started it.
    pub async fn start(&mut self) -> Result<bool, AgentError> {
        let response = self
            .inner
            .start(v1::StartRequest {})
            .await
            .map_err(|status| AgentError::from_status("start", status))?;
        Ok(response.into_inner().started)
    }

    /// Stops the dev container; with `exit_agent` the agent exits afterwards.
    pub async fn stop(&mut self, exit_agent: bool) -> Result<bool, AgentError> {
        let response = self
            .inner
            .stop(v1::StopRequest { exit_agent })
            .await
            .map_err(|status| AgentError::from_status("stop", status))?;
        Ok(response.into_inner().was_running)
    }

    /// Removes the dev container and what the agent made; returns the containers and images removed.
    pub async fn delete(
        &mut self,
        exit_agent: bool,
    ) -> Result<(Vec<String>, Vec<String>), AgentError> {
        let response = self
            .inner
            .delete(v1::DeleteRequest { exit_agent })
            .await
            .map_err(|status| AgentError::from_status("delete", status))?
            .into_inner();
        Ok((response.removed_containers, response.removed_images))
    }

    /// Keeps the workspace up for `seconds` from now (0 ends the pin); returns the pin's end in Unix ms, if any.
    pub async fn pin(&mut self, seconds: u64) -> Result<Option<i64>, AgentError> {
        let response = self
            .inner
            .pin(v1::PinRequest { seconds })
            .await
            .map_err(|status| AgentError::from_status("pin", status))?
            .into_inner();
        Ok((response.pinned_until_unix_ms > 0).then_some(response.pinned_until_unix_ms))
    }

    /// Changes the agent's idle settings; returns the timeout in seconds (0 = off) and the CPU threshold.
    pub async fn configure(
        &mut self,
        idle_timeout: Option<String>,
        busy_cpu_percent: Option<f64>,
    ) -> Result<(u64, f64), AgentError> {
        let response = self
            .inner
            .configure(v1::ConfigureRequest {
                idle_timeout,
                busy_cpu_percent,
            })
            .await
            .map_err(|status| AgentError::from_status("configure", status))?
            .into_inner();
        Ok((response.idle_timeout_seconds, response.busy_cpu_percent))
    }

    /// Opens one SSH connection to the agent's SSH server: `input` carries the SSH client's bytes, and the
    /// stream the server's, until either side ends.
    pub async fn ssh(
        &mut self,
        input: impl Stream<Item = Vec<u8>> + Send + 'static,
    ) -> Result<BoxStream<'static, Result<Vec<u8>, AgentError>>, AgentError> {
        let requests = input
            .filter(|data| futures::future::ready(!data.is_empty()))
            .map(|data| v1::SshRequest { data });
        let response = self
            .inner
            .ssh(requests)
            .await
            .map_err(|status| AgentError::from_status("ssh", status))?;
        Ok(response
            .into_inner()
            .map(|item| {
                item.map(|response| response.data)
                    .map_err(|status| AgentError::from_status("ssh", status))
            })
            .boxed())
    }

    /// Changes in the dev container's listening ports: (port, now listening, loopback only).
    pub async fn watch_ports(
        &mut self,
    ) -> Result<BoxStream<'static, Result<(u16, bool, bool), AgentError>>, AgentError> {
        let response = self
            .inner
            .watch_ports(v1::WatchPortsRequest {})
            .await
            .map_err(|status| AgentError::from_status("watch ports", status))?;
        Ok(response
            .into_inner()
            .map(|item| {
                let change =
                    item.map_err(|status| AgentError::from_status("watch ports", status))?;
                let port = u16::try_from(change.port).map_err(|_| AgentError::Protocol {
                    call: "watch ports",
                    source: proto::ProtoError::Invalid {
                        message: "WatchPortsResponse",
                        field: "port",
                        value: change.port.to_string(),
                    },
                })?;
                Ok((port, change.listening, change.loopback_only))
            })
            .boxed())
    }

    /// The dev container's output.
    pub async fn logs(
        &mut self,
        follow: bool,
        tail: u32,
    ) -> Result<BoxStream<'static, Result<(api::OutputStream, Vec<u8>), AgentError>>, AgentError>
    {
        let response = self
            .inner
            .logs(v1::LogsRequest { follow, tail })
            .await
            .map_err(|status| AgentError::from_status("logs", status))?;
        Ok(response
            .into_inner()
            .map(|item| {
                let response = item.map_err(|status| AgentError::from_status("logs", status))?;
                proto::logs_chunk(response).map_err(|source| AgentError::Protocol {
                    call: "logs",
                    source,
                })
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests;
