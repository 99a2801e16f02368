//! The gRPC service: the one place generated types meet the agent, and the one place errors become
//! `tonic::Status`. Each method converts its request, hands it to the engine, and converts back.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use skiff::api::{self, capability};
use skiff::proto::{self, v1};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::engine::{Engine, EngineError};
use crate::files::config::ReadConfigError;
use crate::files::parts::{self, PartSpec, Uploads};
use crate::files::record::Record;
use crate::forward::{self, ForwardError};
use crate::git::GitError;
use crate::idle::{self, Activity};
use crate::ssh::{self, SshServer};
use crate::state::StateDir;
use crate::tasks::Tasks;
use crate::upload::{self, Target, UploadError};

/// The agent's version, from Cargo.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The service behind `skiff.agent.v1.Agent`.
#[derive(Debug, Clone)]
pub struct AgentService {
    engine: Arc<Engine>,
    activity: Arc<Activity>,
    state: StateDir,
    shutdown: CancellationToken,
    ssh: Option<Arc<SshServer>>,
    uploads: Arc<Uploads>,
    /// The running executable, as it was at start (a replaced file reads as deleted afterwards).
    executable: Option<std::path::PathBuf>,
    /// Its SHA-256, read on the first `Version` call.
    binary_sha256: Arc<tokio::sync::OnceCell<Option<String>>>,
    /// Set by `ReplaceAgent` to the new executable, which `main` restarts into once serving stops.
    replaced: Arc<std::sync::OnceLock<std::path::PathBuf>>,
    /// Every task a call starts; the agent waits for them (a while) when it stops.
    tasks: Tasks,
    /// The clients that answer git's credential requests from the dev container.
    credentials: Arc<crate::credentials::Broker>,
    /// When the machine ran, for `Status` (an agent without one reports no usage).
    ledger: Option<Arc<crate::ledger::Ledger>>,
}

impl AgentService {
    /// A service over `engine`; `shutdown` is cancelled when a client asks the agent to exit.
    pub fn new(
        engine: Arc<Engine>,
        activity: Arc<Activity>,
        state: StateDir,
        shutdown: CancellationToken,
    ) -> Self {
        let credentials = crate::credentials::Broker::new(engine.workspace(), shutdown.clone());
        Self {
            engine,
            activity,
            state,
            shutdown,
            ssh: None,
            uploads: Arc::default(),
            executable: std::env::current_exe().ok(),
            binary_sha256: Arc::default(),
            replaced: Arc::default(),
            tasks: Tasks::new(),
            credentials,
            ledger: None,
        }
    }

    /// The tasks the service's calls started, which the agent waits for when it stops.
    pub fn tasks(&self) -> Tasks {
        self.tasks.clone()
    }

    /// Where a `ReplaceAgent` call puts the path of the new executable.
    pub fn replacement(&self) -> Arc<std::sync::OnceLock<std::path::PathBuf>> {
        Arc::clone(&self.replaced)
    }

    /// Serves `Ssh` calls with `ssh`; without it they are refused as unimplemented.
    pub fn with_ssh(mut self, ssh: Arc<SshServer>) -> Self {
        self.ssh = Some(ssh);
        self
    }

    /// Reports this month's figures of `ledger` in `Status`.
    pub fn with_ledger(mut self, ledger: Arc<crate::ledger::Ledger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Exits the agent shortly, once the current answer is on its way.
    fn exit_soon(&self) {
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            shutdown.cancel();
        });
    }
}

fn status_of_engine(error: EngineError) -> Status {
    let message = error.to_string();
    match error {
        _ if error.docker_unreachable() => Status::unavailable(message),
        _ if error.image_refused() => Status::failed_precondition(message),
        EngineError::Config { .. } => Status::invalid_argument(message),
        EngineError::Hook { .. } | EngineError::Stopped { .. } => Status::aborted(message),
        EngineError::NoContainer { .. } | EngineError::NotRunning { .. } => {
            Status::failed_precondition(message)
        }
        EngineError::Docker(_) | EngineError::State(_) | EngineError::Process { .. } => {
            Status::internal(message)
        }
    }
}

fn status_of_forward(error: ForwardError) -> Status {
    match error {
        ForwardError::Engine(error) => status_of_engine(error),
        ForwardError::Refused(_) | ForwardError::NoProcessServer { .. } => {
            Status::failed_precondition(error.to_string())
        }
        ForwardError::Connect { .. } | ForwardError::NoAddress => {
            Status::unavailable(error.to_string())
        }
        ForwardError::Reset { .. } => Status::aborted(error.to_string()),
    }
}

fn status_of_upload(error: UploadError) -> Status {
    match error {
        UploadError::Parts { .. } => Status::aborted(error.to_string()),
        UploadError::DiskFull { .. } => Status::resource_exhausted(error.to_string()),
        UploadError::Unpack { .. } | UploadError::Invalid(_) => {
            Status::invalid_argument(error.to_string())
        }
    }
}

fn status_of_git(error: GitError) -> Status {
    match error {
        GitError::Missing | GitError::NotEmpty { .. } | GitError::Unreadable { .. } => {
            Status::failed_precondition(error.to_string())
        }
        GitError::BadUrl { .. } | GitError::BadBranch { .. } => {
            Status::invalid_argument(error.to_string())
        }
        GitError::Failed { .. } => Status::aborted(error.to_string()),
        GitError::Io(_) => Status::internal(error.to_string()),
    }
}

fn status_of_config(error: ReadConfigError) -> Status {
    match error {
        ReadConfigError::NotFound(_) => Status::not_found(error.to_string()),
        ReadConfigError::Outside { .. } => Status::permission_denied(error.to_string()),
        ReadConfigError::Read { .. } => Status::internal(error.to_string()),
    }
}

fn invalid(error: proto::ProtoError) -> Status {
    Status::invalid_argument(error.to_string())
}

type Stream<T> = BoxStream<'static, Result<T, Status>>;

/// A call's answer: `work` runs on a task of the service's own and sends into a channel, and what it sends
/// is converted as it passes (no task relays it), followed by the status of `work`'s error if it failed.
fn answer<Item, Response, Error, Work>(
    tasks: &Tasks,
    capacity: usize,
    work: impl FnOnce(mpsc::Sender<Item>) -> Work,
    status: fn(Error) -> Status,
) -> Stream<Response>
where
    Item: Send + 'static,
    Response: From<Item> + Send + 'static,
    Error: Send + 'static,
    Work: std::future::Future<Output = Result<(), Error>> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(capacity);
    let (failed, failure) = oneshot::channel();
    let work = work(sender);
    tasks.spawn(async move {
        if let Err(error) = work.await {
            let _ = failed.send(error);
        }
    });
    let failure = futures::stream::once(failure).filter_map(move |failure| {
        futures::future::ready(failure.ok().map(|error| Err(status(error))))
    });
    ReceiverStream::new(receiver)
        .map(|item| Ok(Response::from(item)))
        .chain(failure)
        .boxed()
}

#[tonic::async_trait]
impl v1::agent_server::Agent for AgentService {
    async fn version(
        &self,
        request: Request<v1::VersionRequest>,
    ) -> Result<Response<v1::VersionResponse>, Status> {
        let client_version = request.into_inner().client_version;
        if client_version != AGENT_VERSION {
            tracing::info!(
                client_version,
                agent_version = AGENT_VERSION,
                "client and agent versions differ"
            );
        }
        let info = api::VersionInfo {
            agent_version: AGENT_VERSION.to_owned(),
            protocol_version: api::PROTOCOL_VERSION,
            capabilities: [
                capability::EXEC_TTY,
                capability::FORWARD_TCP,
                capability::UPLOAD_TAR_GZIP,
                capability::UP_IMAGE_DOCKERFILE,
                capability::SSH,
                capability::UPLOAD_TAR_ZSTD,
                capability::UPLOAD_PARTS,
                capability::MANIFEST,
                capability::UPLOAD_EXPECTED,
                capability::CLONE,
                capability::GIT_STATE,
                capability::REPLACE_AGENT,
                capability::START,
                capability::CLONE_BRANCH,
                capability::GIT_CREDENTIALS,
                capability::SSH_AGENT,
                capability::GPG_AGENT,
            ]
            .map(str::to_owned)
            .to_vec(),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            docker_version: self.engine.docker_version().await.ok(),
            binary_sha256: self.binary_sha256().await,
        };
        Ok(Response::new(info.into()))
    }

    async fn status(
        &self,
        _request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        let idle = self.activity.status();
        let (current, docker_error) = match self.engine.current().await {
            Ok(current) => (current, None),
            Err(error) => (None, Some(error.to_string())),
        };
        let status = api::Status {
            workspace: self.engine.workspace().to_owned(),
            container_state: current
                .as_ref()
                .map_or(api::ContainerState::Absent, |target| target.container.state),
            container_id: current.as_ref().map(|target| target.container.id.clone()),
            image: current.as_ref().map(|target| target.record.image.clone()),
            workspace_folder: current
                .as_ref()
                .map(|target| target.record.workspace_folder.clone()),
            remote_user: current
                .as_ref()
                .map(|target| target.record.remote_user.clone()),
            idle,
            agent_version: AGENT_VERSION.to_owned(),
            docker_error,
            usage: self
                .ledger
                .as_ref()
                .map(|ledger| ledger.this_month(crate::ledger::unix(std::time::SystemTime::now()))),
            editor: current
                .as_ref()
                .map(crate::engine::Engine::editor_customizations)
                .unwrap_or_default(),
        };
        Ok(Response::new(status.into()))
    }

    type UpStream = Stream<v1::UpResponse>;

    async fn up(
        &self,
        request: Request<v1::UpRequest>,
    ) -> Result<Response<Self::UpStream>, Status> {
        let spec = api::UpSpec::try_from(request.into_inner()).map_err(invalid)?;
        let engine = Arc::clone(&self.engine);
        // The service's task, not the call, owns the work: the lifecycle commands after `waitFor` run to their
        // end even when the client stops listening at `ready`.
        let responses = answer(
            &self.tasks,
            64,
            move |events: mpsc::Sender<api::UpEvent>| {
                async move {
                    let result = match engine.up(spec, &events).await {
                        Ok(up) => {
                            let result = up.result;
                            tracing::info!(container = %result.container_id, created = result.created, "dev container ready");
                            // Through the event channel, so `ready` follows every event before it.
                            let _ = events.send(api::UpEvent::Ready(result)).await;
                            engine.finish(up.remaining, &events).await
                        }
                        Err(error) => Err(error),
                    };
                    if let Err(error) = &result {
                        tracing::warn!("up failed: {error}");
                    }
                    result
                }
            },
            status_of_engine,
        );
        Ok(Response::new(responses))
    }

    type ExecStream = Stream<v1::ExecResponse>;

    async fn exec(
        &self,
        request: Request<Streaming<v1::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.ok_or_else(|| {
            Status::invalid_argument("ExecRequest: the stream ended before start")
        })?;
        let spec = proto::exec_start(first).map_err(invalid)?;
        // Input the client sends after start; a malformed message ends the input, and the process sees EOF.
        let input = incoming
            .take_while(|message| futures::future::ready(message.is_ok()))
            .filter_map(|message| async move {
                message
                    .ok()
                    .and_then(|message| api::ExecInput::try_from(message).ok())
            });
        let engine = Arc::clone(&self.engine);
        let activity = Arc::clone(&self.activity);
        let responses = answer(
            &self.tasks,
            64,
            move |outputs: mpsc::Sender<api::ExecOutput>| async move {
                crate::exec::run(
                    &engine,
                    &activity,
                    crate::exec::Busy::WhileRunning,
                    spec,
                    Box::pin(input),
                    outputs,
                )
                .await
            },
            status_of_engine,
        );
        Ok(Response::new(responses))
    }

    type ForwardStream = Stream<v1::ForwardResponse>;

    async fn forward(
        &self,
        request: Request<Streaming<v1::ForwardRequest>>,
    ) -> Result<Response<Self::ForwardStream>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.ok_or_else(|| {
            Status::invalid_argument("ForwardRequest: the stream ended before open")
        })?;
        let target = proto::forward_open(first).map_err(invalid)?;
        // Input until the client's stream breaks; a message that is not input (a second open) is skipped.
        let input = incoming
            .take_while(|message| futures::future::ready(message.is_ok()))
            .filter_map(|message| async move {
                message
                    .ok()
                    .and_then(|message| api::ForwardInput::try_from(message).ok())
            });
        let engine = Arc::clone(&self.engine);
        let activity = Arc::clone(&self.activity);
        let responses = answer(
            &self.tasks,
            16,
            move |events: mpsc::Sender<api::ForwardEvent>| async move {
                forward::run(&engine, &activity, target, Box::pin(input), events).await
            },
            status_of_forward,
        );
        Ok(Response::new(responses))
    }

    async fn upload(
        &self,
        request: Request<Streaming<v1::UploadRequest>>,
    ) -> Result<Response<v1::UploadResponse>, Status> {
        use v1::upload_request::Message;
        let mut incoming = request.into_inner();
        let start = match incoming
            .message()
            .await?
            .and_then(|message| message.message)
        {
            Some(Message::Start(start)) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "UploadRequest: the first message must be start",
                ));
            }
        };
        let header = api::UploadHeader::try_from(start).map_err(invalid)?;
        let compression = header.compression;
        let _busy = self.activity.busy(idle::source::UPLOAD);
        let target = Target {
            folder: self.state.files_dir(),
            record: Record::file_in(self.state.path()),
        };
        let expected: upload::Expected = header.expected.into_iter().collect();
        let (unpacked, parts) = if let Some(part) = header.part {
            let wait = match part.wait_seconds {
                0 => parts::DEFAULT_WAIT,
                seconds => Duration::from_secs(u64::from(seconds)).min(parts::MAX_WAIT),
            };
            let spec = PartSpec {
                upload_id: part.upload_id,
                part: part.part,
                parts: part.parts,
                stripe_size: part.stripe_size,
                wait,
                compression,
                remove: header.remove,
                expected,
            };
            let parts = spec.parts;
            let chunks = incoming.filter_map(|message| async move {
                match message {
                    Ok(v1::UploadRequest {
                        message: Some(Message::Chunk(chunk)),
                    }) => Some(Ok(chunk)),
                    Ok(_) => None,
                    Err(status) => Some(Err(status.message().to_owned())),
                }
            });
            let unpacked = self
                .uploads
                .receive(spec, &self.state.path().join("uploads"), &target, chunks)
                .await
                .map_err(status_of_upload)?;
            (unpacked, parts)
        } else {
            // One call carries the whole archive, unpacked as it arrives.
            let (chunks, receiver) = mpsc::channel(8);
            let unpacking = {
                let target = target.clone();
                let remove = header.remove;
                self.tasks.spawn(async move {
                    upload::unpack_into(&target, compression, receiver, remove, expected).await
                })
            };
            while let Some(message) = incoming.message().await? {
                if let Some(Message::Chunk(chunk)) = message.message
                    && chunks.send(chunk).await.is_err()
                {
                    break;
                }
            }
            drop(chunks);
            let unpacked = unpacking
                .await
                .map_err(|error| Status::internal(error.to_string()))?
                .ok_or_else(|| Status::unavailable("the agent stopped while unpacking the upload"))?
                .map_err(status_of_upload)?;
            (unpacked, 1)
        };
        let reply = api::UploadReply {
            files_folder: unpacked.folder.to_string_lossy().into_owned(),
            files: unpacked.files,
            bytes: unpacked.bytes,
            removed: unpacked.removed,
            parts,
            conflicts: unpacked.conflicts,
        };
        Ok(Response::new(reply.into()))
    }

    async fn stop(
        &self,
        request: Request<v1::StopRequest>,
    ) -> Result<Response<v1::StopResponse>, Status> {
        let request = request.into_inner();
        // An idle stop does not race the client's own.
        let _held = self.activity.hold(idle::source::CALL);
        let was_running = self.engine.stop().await.map_err(status_of_engine)?;
        if request.exit_agent {
            self.exit_soon();
        }
        Ok(Response::new(v1::StopResponse { was_running }))
    }

    async fn start(
        &self,
        _request: Request<v1::StartRequest>,
    ) -> Result<Response<v1::StartResponse>, Status> {
        // The engine counts the start as use, so an idle stop does not race it.
        let started = self
            .engine
            .start_if_stopped()
            .await
            .map_err(status_of_engine)?;
        Ok(Response::new(v1::StartResponse { started }))
    }

    async fn delete(
        &self,
        request: Request<v1::DeleteRequest>,
    ) -> Result<Response<v1::DeleteResponse>, Status> {
        let request = request.into_inner();
        // An idle stop (which would exit the agent) does not cut a delete short.
        let _held = self.activity.hold(idle::source::CALL);
        let (removed_containers, removed_images) =
            self.engine.delete(None).await.map_err(status_of_engine)?;
        if request.exit_agent {
            // The client removes the state folder once the agent is gone: nothing more goes in it.
            if let Some(ledger) = &self.ledger {
                ledger.retire();
            }
            self.exit_soon();
        }
        Ok(Response::new(v1::DeleteResponse {
            removed_containers,
            removed_images,
        }))
    }

    async fn pin(
        &self,
        request: Request<v1::PinRequest>,
    ) -> Result<Response<v1::PinResponse>, Status> {
        let seconds = request.into_inner().seconds;
        let pinned = self
            .activity
            .pin((seconds > 0).then(|| Duration::from_secs(seconds)));
        Ok(Response::new(v1::PinResponse {
            pinned_until_unix_ms: pinned.map_or(0, |until| {
                until
                    .duration_since(std::time::SystemTime::UNIX_EPOCH)
                    .map_or(0, |since| {
                        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
                    })
            }),
        }))
    }

    async fn configure(
        &self,
        request: Request<v1::ConfigureRequest>,
    ) -> Result<Response<v1::ConfigureResponse>, Status> {
        let request = request.into_inner();
        let mut settings = self.state.load_settings();
        if let Some(text) = request.idle_timeout {
            let timeout = crate::config::parse_idle_timeout(&text)
                .map_err(|error| Status::invalid_argument(format!("idle-timeout: {error}")))?;
            self.activity.set_timeout(timeout);
            settings.idle_timeout_seconds = Some(timeout.map_or(0, |timeout| timeout.as_secs()));
        }
        if let Some(percent) = request.busy_cpu_percent {
            if !(0.0..=100_000.0).contains(&percent) {
                return Err(Status::invalid_argument(format!(
                    "busy-cpu: {percent} is not a percentage; write a value such as 20"
                )));
            }
            self.activity.set_busy_cpu_percent(Some(percent));
            settings.busy_cpu_percent = Some(percent);
        }
        self.state
            .save_settings(&settings)
            .map_err(|error| Status::internal(format!("saving the settings: {error}")))?;
        Ok(Response::new(v1::ConfigureResponse {
            idle_timeout_seconds: self
                .activity
                .timeout()
                .map_or(0, |timeout| timeout.as_secs()),
            busy_cpu_percent: self.activity.busy_cpu_percent().unwrap_or(0.0),
        }))
    }

    type WatchPortsStream = Stream<v1::WatchPortsResponse>;

    async fn watch_ports(
        &self,
        _request: Request<v1::WatchPortsRequest>,
    ) -> Result<Response<Self::WatchPortsStream>, Status> {
        self.engine.running().await.map_err(status_of_engine)?;
        let (responses, stream) = mpsc::channel(16);
        let engine = Arc::clone(&self.engine);
        self.tasks.spawn(async move {
            let mut known = Vec::new();
            loop {
                let command = vec![
                    "cat".to_owned(),
                    "/proc/net/tcp".to_owned(),
                    "/proc/net/tcp6".to_owned(),
                ];
                let listening = match crate::exec::collect(&engine, command).await {
                    Ok((_, text)) => crate::ports::parse_listening(&String::from_utf8_lossy(&text)),
                    Err(error) => {
                        let _ = responses.send(Err(status_of_engine(error))).await;
                        return;
                    }
                };
                for (port, now_listening) in crate::ports::changes(&known, &listening) {
                    let change = v1::WatchPortsResponse {
                        port: port.port.into(),
                        listening: now_listening,
                        loopback_only: port.loopback_only,
                    };
                    if responses.send(Ok(change)).await.is_err() {
                        return;
                    }
                }
                known = listening;
                tokio::select! {
                    () = responses.closed() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(stream).boxed()))
    }

    type SshStream = Stream<v1::SshResponse>;

    async fn ssh(
        &self,
        request: Request<Streaming<v1::SshRequest>>,
    ) -> Result<Response<Self::SshStream>, Status> {
        let server = self
            .ssh
            .clone()
            .ok_or_else(|| Status::unimplemented("this agent serves no SSH connections"))?;
        // The client's bytes until its stream ends; a broken stream ends the SSH connection's input.
        let input = request
            .into_inner()
            .take_while(|message| futures::future::ready(message.is_ok()))
            .filter_map(|message| async move { message.ok().map(|message| message.data) });
        let context = ssh::Context {
            engine: Arc::clone(&self.engine),
            activity: Arc::clone(&self.activity),
            tasks: self.tasks.clone(),
        };
        let (output, responses) = mpsc::channel::<Vec<u8>>(16);
        self.tasks
            .spawn(async move { server.serve(context, Box::pin(input), output).await });
        let responses = ReceiverStream::new(responses).map(|data| Ok(v1::SshResponse { data }));
        Ok(Response::new(responses.boxed()))
    }

    type GitCredentialsStream = Stream<v1::GitCredentialRequest>;

    async fn git_credentials(
        &self,
        request: Request<Streaming<v1::GitCredentialAnswer>>,
    ) -> Result<Response<Self::GitCredentialsStream>, Status> {
        let target = self.engine.running().await.map_err(status_of_engine)?;
        let namespace = target.container.network_namespace.clone().ok_or_else(|| {
            Status::failed_precondition(
                "the engine names no network namespace for the dev container, where git's credential requests come from",
            )
        })?;
        self.credentials
            .listen_in(&namespace, &self.tasks)
            .map_err(Status::failed_precondition)?;
        if self
            .credentials
            .configure_once(&target.container.id, &target.container.started_at)
        {
            // Every user's git in the container asks the helper first (system configuration, set as root there).
            let script = crate::credentials::CONFIGURE.to_owned();
            match self
                .engine
                .run_as_root(&target, vec!["/bin/sh".into(), "-c".into(), script])
                .await
            {
                Ok((0, _)) => {}
                Ok((code, _)) => tracing::warn!(
                    "setting git's credential helper in the dev container exited with {code}"
                ),
                Err(error) => {
                    tracing::warn!("setting git's credential helper in the dev container: {error}")
                }
            }
        }
        let (registration, requests) = self.credentials.register();
        let broker = Arc::clone(&self.credentials);
        let mut answers = request.into_inner();
        // The client's answers until its stream ends; then it no longer answers (the registration goes with the task).
        self.tasks.spawn(async move {
            let _registration = registration;
            while let Some(Ok(answer)) = answers.next().await {
                broker.answer(answer.into());
            }
        });
        let responses = ReceiverStream::new(requests).map(|request| Ok(request.into()));
        Ok(Response::new(responses.boxed()))
    }

    type SshAgentStream = Stream<v1::SshAgentMessage>;

    async fn ssh_agent(
        &self,
        request: Request<Streaming<v1::SshAgentMessage>>,
    ) -> Result<Response<Self::SshAgentStream>, Status> {
        let mut inbound = request.into_inner();
        let (user, gpg) = match inbound.next().await {
            Some(Ok(message)) => match api::SshAgentMessage::try_from(message) {
                Ok(api::SshAgentMessage::Start { user, gpg }) => (user, gpg),
                Ok(_) => {
                    return Err(Status::invalid_argument(
                        "an SshAgent call opens with `start`",
                    ));
                }
                Err(error) => return Err(Status::invalid_argument(error.to_string())),
            },
            Some(Err(status)) => return Err(status),
            None => return Err(Status::cancelled("the client went away")),
        };
        let kind = if gpg {
            crate::ssh_agent::Kind::Gpg
        } else {
            crate::ssh_agent::Kind::Ssh
        };
        let forwarding = crate::ssh_agent::Forwarding::start(
            &self.engine,
            &self.activity,
            &self.tasks,
            user,
            kind,
        )
        .await
        .map_err(Status::failed_precondition)?;
        let (outbound, responses) = mpsc::channel::<api::SshAgentMessage>(16);
        let ready = api::SshAgentMessage::Ready {
            socket: forwarding.socket.clone(),
        };
        outbound
            .send(ready)
            .await
            .map_err(|_| Status::cancelled("the client went away"))?;
        // Until the client's stream ends: then the forwarding (and the relay in the container) ends with the task.
        let inbound = inbound
            .take_while(|message| futures::future::ready(message.is_ok()))
            .filter_map(|message| async move {
                message
                    .ok()
                    .and_then(|message| api::SshAgentMessage::try_from(message).ok())
            });
        self.tasks.spawn(crate::ssh_agent::carry(
            forwarding,
            Box::pin(inbound),
            outbound,
        ));
        let responses = ReceiverStream::new(responses).map(|message| Ok(message.into()));
        Ok(Response::new(responses.boxed()))
    }

    type LogsStream = Stream<v1::LogsResponse>;

    async fn logs(
        &self,
        request: Request<v1::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let request = request.into_inner();
        let target = self
            .engine
            .current()
            .await
            .map_err(status_of_engine)?
            .ok_or_else(|| {
                status_of_engine(EngineError::NoContainer {
                    workspace: self.engine.workspace().to_owned(),
                })
            })?;
        let logs = self
            .engine
            .logs(&target, request.follow, request.tail)
            .map_err(status_of_engine)?;
        let responses = logs.map(|item| {
            item.map(|(stream, data)| v1::LogsResponse {
                output: Some(proto::output(stream, data.to_vec())),
            })
            .map_err(status_of_engine)
        });
        Ok(Response::new(responses.boxed()))
    }

    type ManifestStream = Stream<v1::ManifestResponse>;

    async fn manifest(
        &self,
        request: Request<v1::ManifestRequest>,
    ) -> Result<Response<Self::ManifestStream>, Status> {
        let hash_paths = request.into_inner().hash_paths.into_iter().collect();
        let busy = self.activity.busy(idle::source::UPLOAD);
        let folder = self.state.files_dir();
        let record = Record::file_in(self.state.path());
        let (responses, stream) = mpsc::channel(4);
        self.tasks.spawn_blocking(move || {
            let _busy = busy;
            let listed = crate::files::manifest::list(&folder, &record, &hash_paths, |entries| {
                let response = v1::ManifestResponse {
                    entries: entries.into_iter().map(Into::into).collect(),
                };
                responses.blocking_send(Ok(response)).is_ok()
            });
            if let Err(error) = listed {
                let _ = responses.blocking_send(Err(Status::internal(format!(
                    "listing the files folder {}: {error}",
                    folder.display()
                ))));
            }
        });
        Ok(Response::new(ReceiverStream::new(stream).boxed()))
    }

    type CloneRepositoryStream = Stream<v1::CloneRepositoryResponse>;

    async fn clone_repository(
        &self,
        request: Request<v1::CloneRepositoryRequest>,
    ) -> Result<Response<Self::CloneRepositoryStream>, Status> {
        let request = request.into_inner();
        let url = request.url;
        crate::git::check_url(&url).map_err(status_of_git)?;
        let branch = (!request.branch.is_empty()).then_some(request.branch);
        if let Some(branch) = &branch {
            crate::git::check_branch(branch).map_err(status_of_git)?;
        }
        let busy = self.activity.busy(idle::source::UPLOAD);
        let folder = self.state.files_dir();
        let record = Record::file_in(self.state.path());
        let pin = crate::files::config::pin_file(self.state.path());
        let (responses, stream) = mpsc::channel(16);
        self.tasks.spawn(async move {
            let _busy = busy;
            let output = responses.clone();
            let result = crate::git::clone(&url, branch.as_deref(), &folder, |data| {
                // Progress output is best effort: a full channel drops a line rather than stalling git.
                let _ = output.try_send(Ok(api::CloneEvent::Output(data).into()));
            })
            .await;
            let last = match result {
                Ok(cloned) => {
                    if cloned.cloned {
                        // The clone's files came from the repository, not from an upload.
                        let _ = std::fs::remove_file(&record);
                        // Its config is pinned now, before any dev container can write to the clone.
                        crate::files::config::unpin(&pin);
                        let pinning = {
                            let (folder, pin) = (folder.clone(), pin.clone());
                            tokio::task::spawn_blocking(move || {
                                crate::files::config::read_pinned(&folder, &pin, None, true)
                            })
                            .await
                        };
                        if let Ok(Err(error)) = pinning {
                            tracing::info!("no config pinned at clone time: {error}");
                        }
                    }
                    tracing::info!(url = %url, head = ?cloned.head, "cloned the workspace's repository");
                    Ok(api::CloneEvent::Done(cloned).into())
                }
                Err(error) => {
                    tracing::warn!(url = %url, "clone failed: {error}");
                    Err(status_of_git(error))
                }
            };
            let _ = responses.send(last).await;
        });
        Ok(Response::new(ReceiverStream::new(stream).boxed()))
    }

    async fn read_config(
        &self,
        request: Request<v1::ReadConfigRequest>,
    ) -> Result<Response<v1::ReadConfigResponse>, Status> {
        let request = request.into_inner();
        let config_path = request.config_path;
        let folder = self.state.files_dir();
        let pin = crate::files::config::pin_file(self.state.path());
        let config = tokio::task::spawn_blocking(move || {
            crate::files::config::read_pinned(
                &folder,
                &pin,
                (!config_path.is_empty()).then_some(config_path.as_str()),
                request.refresh,
            )
        })
        .await
        .map_err(|error| Status::internal(error.to_string()))?
        .map_err(status_of_config)?;
        Ok(Response::new(config.into()))
    }

    async fn git_state(
        &self,
        _request: Request<v1::GitStateRequest>,
    ) -> Result<Response<v1::GitStateResponse>, Status> {
        let state = crate::git::state(&self.state.files_dir())
            .await
            .map_err(status_of_git)?;
        Ok(Response::new(state.into()))
    }

    async fn replace_agent(
        &self,
        request: Request<Streaming<v1::ReplaceAgentRequest>>,
    ) -> Result<Response<v1::ReplaceAgentResponse>, Status> {
        use v1::replace_agent_request::Item;
        let _busy = self.activity.busy(idle::source::UPLOAD);
        let mut stream = request.into_inner();
        let start = match stream.message().await? {
            Some(v1::ReplaceAgentRequest {
                item: Some(Item::Start(start)),
            }) => crate::replace::Start {
                size: start.size,
                sha256: start.sha256,
                version: start.version,
                allow_downgrade: start.allow_downgrade,
            },
            _ => {
                return Err(Status::invalid_argument(
                    "ReplaceAgent: the first message must be `start`",
                ));
            }
        };
        let target = self.executable.clone().ok_or_else(|| {
            Status::failed_precondition(
                "ReplaceAgent: the agent cannot tell where its executable is",
            )
        })?;
        let chunks = stream.map(|message| match message {
            Ok(v1::ReplaceAgentRequest {
                item: Some(Item::Chunk(chunk)),
            }) => Ok(chunk),
            Ok(_) => Err("a message other than a chunk after `start`".to_owned()),
            Err(status) => Err(status.message().to_owned()),
        });
        crate::replace::receive(&target, env!("CARGO_PKG_VERSION"), &start, chunks)
            .await
            .map_err(|error| match error {
                crate::replace::ReplaceError::Io { .. } => Status::internal(error.to_string()),
                crate::replace::ReplaceError::Downgrade { .. } => {
                    Status::failed_precondition(error.to_string())
                }
                _ => Status::invalid_argument(error.to_string()),
            })?;
        let _ = self.replaced.set(target.clone());
        self.exit_soon();
        Ok(Response::new(v1::ReplaceAgentResponse {
            path: target.display().to_string(),
        }))
    }
}

impl AgentService {
    /// The SHA-256 of the running executable, read once.
    async fn binary_sha256(&self) -> Option<String> {
        let executable = self.executable.clone()?;
        self.binary_sha256
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || crate::replace::sha256_of(&executable).ok())
                    .await
                    .ok()
                    .flatten()
            })
            .await
            .clone()
    }
}
