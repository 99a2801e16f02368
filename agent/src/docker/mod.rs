//! The Docker engine, through bollard. The only module that names bollard: everything else speaks in
//! the plain types below, so the engine API's shape stays in one place.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, HostConfig, Mount as BollardMount, MountType,
    PortBinding,
};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, CreateImageOptions, InspectContainerOptions,
    ListContainersOptions, ListVolumesOptions, LogsOptions, RemoveContainerOptions,
    RemoveImageOptions, RemoveVolumeOptions, ResizeExecOptions, StartContainerOptions,
    StatsOptions, StopContainerOptions, UploadToContainerOptions,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use skiff::api::RegistryLogin;
use skiff::api::{ContainerState, OutputStream};
use tokio::io::AsyncWrite;

/// A failure talking to the Docker engine.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine did not answer.
    #[error(
        "docker engine unreachable at {endpoint}: {detail}; is Docker running? skiffd connects to \
         DOCKER_HOST when it is set ({docker_host}), otherwise to unix:///var/run/docker.sock"
    )]
    Unreachable {
        endpoint: String,
        docker_host: String,
        detail: String,
    },
    /// An image is not on the machine and could not be pulled.
    #[error("image {image} is not on this machine and pulling it failed: {detail}")]
    Pull { image: String, detail: String },
    /// An image build failed.
    #[error("building image {tag} failed: {detail}")]
    Build { tag: String, detail: String },
    /// Another engine call failed.
    #[error("docker: {action}: {source}")]
    Api {
        action: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// Reading the build context failed.
    #[error("reading build context {path}: {source}")]
    Context {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DockerError {
    fn api(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Self {
        let action = action.into();
        move |source| Self::Api { action, source }
    }
}

fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// A container as the engine describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The container's id.
    pub id: String,
    /// Its state.
    pub state: ContainerState,
    /// The image it was created from (as named at creation).
    pub image: String,
    /// When it was created (RFC 3339, as the engine reports it).
    pub created: String,
    /// When it last started (RFC 3339), empty if never.
    pub started_at: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// The user its main process runs as (empty means root).
    pub user: String,
    /// Its address on its first network, if it has one.
    pub ip_address: Option<IpAddr>,
    /// The file of its network namespace on the engine's machine (Docker's sandbox key), while it runs.
    pub network_namespace: Option<std::path::PathBuf>,
}

/// An image as the engine describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image's id.
    pub id: String,
    /// The user its containers run as by default (empty means root).
    pub user: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// A mount of a new container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A folder of the agent's machine.
    Bind {
        source: String,
        target: String,
        read_only: bool,
    },
    /// A named (or anonymous, with no source) volume.
    Volume {
        source: Option<String>,
        target: String,
    },
}

/// What a new container should be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Its name, if it should have one.
    pub name: Option<String>,
    /// The image.
    pub image: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// The user its main process runs as.
    pub user: Option<String>,
    /// Overrides the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Overrides the image's command.
    pub cmd: Option<Vec<String>>,
    /// Mounts.
    pub mounts: Vec<Mount>,
    /// Run an init process (tini) as PID 1.
    pub init: bool,
    /// Run privileged.
    pub privileged: bool,
    /// Extra capabilities.
    pub cap_add: Vec<String>,
    /// Security options.
    pub security_opt: Vec<String>,
    /// Published ports: container port (`"8080/tcp"`) to host address and port.
    pub published_ports: Vec<(String, String, String)>,
}

/// What an image build should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// The build context folder.
    pub context: PathBuf,
    /// The Dockerfile (anywhere; one outside the context is added to the archive).
    pub dockerfile: PathBuf,
    /// The tag to give the image.
    pub tag: String,
    /// `--build-arg` values.
    pub args: BTreeMap<String, String>,
    /// The stage to build, if not the last.
    pub target: Option<String>,
    /// Images to use as cache sources.
    pub cache_from: Vec<String>,
    /// Labels to add.
    pub labels: BTreeMap<String, String>,
    /// Build without the cache.
    pub no_cache: bool,
}

/// What an exec should run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecConfig {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Run as this user.
    pub user: Option<String>,
    /// Run in this folder.
    pub working_dir: Option<String>,
    /// Environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Give it a terminal.
    pub tty: bool,
    /// Attach standard input.
    pub stdin: bool,
}

/// Output of a process, chunk by chunk, tagged with the stream it came from.
pub type OutputChunks =
    Pin<Box<dyn Stream<Item = Result<(OutputStream, Bytes), DockerError>> + Send>>;

/// A running exec: its output, and its input if it was attached.
pub struct ExecSession {
    /// The exec's id, for resize and inspect.
    pub id: String,
    /// What the process writes, by stream (with a terminal, all of it arrives as stdout).
    pub output: OutputChunks,
    /// The process's standard input; shutting it down closes the process's input.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ExecSession")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// How an exec ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The exit code, if the engine knows it.
    pub exit_code: Option<i64>,
    /// Whether it still runs.
    pub running: bool,
    /// The process's id on the engine's machine.
    pub pid: Option<i64>,
}

/// A connection to the Docker engine.
#[derive(Debug, Clone)]
pub struct Docker {
    /// The engine's client, made on first use and kept; a missing socket is retried on the next call.
    connection: std::sync::Arc<std::sync::Mutex<Option<bollard::Docker>>>,
    endpoint: String,
}

impl Docker {
    /// Connects as the Docker CLI would: `DOCKER_HOST` when set, otherwise the local socket.
    /// Nothing is sent until the first call; [`Docker::version`] checks the engine answers.
    pub fn connect() -> Result<Self, DockerError> {
        let endpoint = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
        let docker = Self {
            connection: Default::default(),
            endpoint,
        };
        // An engine that is not there yet is not an error here: the agent starts anyway and says so per call.
        let _ = docker.client();
        Ok(docker)
    }

    fn client(&self) -> Result<bollard::Docker, DockerError> {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = connection.as_ref() {
            return Ok(client.clone());
        }
        let client = bollard::Docker::connect_with_defaults()
            .map_err(|error| unreachable(&self.endpoint, &error.to_string()))?;
        *connection = Some(client.clone());
        Ok(client)
    }

    /// The engine's version; the error names the socket and `DOCKER_HOST` when it does not answer.
    pub async fn version(&self) -> Result<String, DockerError> {
        let version = self
            .client()?
            .version()
            .await
            .map_err(|error| unreachable(&self.endpoint, &error.to_string()))?;
        Ok(version.version.unwrap_or_default())
    }

    /// Finds a container (running or not) carrying every one of `labels`; the newest wins.
    pub async fn find_container(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Option<ContainerInfo>, DockerError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            labels
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect(),
        )]);
        let summaries = self
            .client()?
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|error| self.classify(error, "listing containers"))?;
        for summary in summaries {
            let Some(id) = summary.id else { continue };
            if let Some(info) = self.inspect_container(&id).await?
                && info.state != ContainerState::Removing
            {
                return Ok(Some(info));
            }
        }
        Ok(None)
    }

    /// Describes a container, or `None` if there is no such container.
    pub async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInfo>, DockerError> {
        let response = match self
            .client()?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(response) => response,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(self.classify(error, format!("inspecting container {id}"))),
        };
        let state = response.state.as_ref();
        let config = response.config.as_ref();
        let ip_address = response
            .network_settings
            .as_ref()
            .and_then(|settings| settings.networks.as_ref())
            .and_then(|networks| {
                let mut addresses: Vec<_> = networks
                    .iter()
                    .filter_map(|(name, endpoint)| {
                        let address = endpoint.ip_address.as_deref()?.parse::<IpAddr>().ok()?;
                        Some((name.clone(), address))
                    })
                    .collect();
                addresses.sort();
                addresses.first().map(|(_, address)| *address)
            });
        Ok(Some(ContainerInfo {
            id: response.id.clone().unwrap_or_else(|| id.to_owned()),
            state: container_state(state.and_then(|state| state.status)),
            image: config
                .and_then(|config| config.image.clone())
                .unwrap_or_default(),
            created: response.created.clone().unwrap_or_default(),
            started_at: state
                .and_then(|state| state.started_at.clone())
                .filter(|started| !started.starts_with("0001-"))
                .unwrap_or_default(),
            labels: config
                .and_then(|config| config.labels.clone())
                .unwrap_or_default()
                .into_iter()
                .collect(),
            env: config
                .and_then(|config| config.env.clone())
                .unwrap_or_default(),
            user: config
                .and_then(|config| config.user.clone())
                .unwrap_or_default(),
            ip_address,
            network_namespace: response
                .network_settings
                .as_ref()
                .and_then(|settings| settings.sandbox_key.as_deref())
                .filter(|key| !key.is_empty())
                .map(std::path::PathBuf::from),
        }))
    }

    /// Describes an image, or `None` if it is not on the machine.
    pub async fn inspect_image(&self, image: &str) -> Result<Option<ImageInfo>, DockerError> {
        match self.client()?.inspect_image(image).await {
            Ok(inspect) => {
                let config = inspect.config.unwrap_or_default();
                Ok(Some(ImageInfo {
                    id: inspect.id.unwrap_or_default(),
                    user: config.user.unwrap_or_default(),
                    labels: config.labels.unwrap_or_default().into_iter().collect(),
                }))
            }
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(self.classify(error, format!("inspecting image {image}"))),
        }
    }

    /// Pulls an image, reporting each status line.
    pub async fn pull_image(
        &self,
        image: &str,
        login: Option<&RegistryLogin>,
        mut progress: impl FnMut(String),
    ) -> Result<(), DockerError> {
        let (repository, tag) = split_image_reference(image);
        let client = self.client()?;
        let mut stream = client.create_image(
            Some(CreateImageOptions {
                from_image: Some(repository.to_owned()),
                tag: Some(tag.to_owned()),
                ..Default::default()
            }),
            None,
            login.map(credentials),
        );
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|detail| detail.message) {
                        return Err(DockerError::Pull {
                            image: image.to_owned(),
                            detail: explain_refusal(image, login, detail),
                        });
                    }
                    if let Some(status) = info.status {
                        let line = match info.id {
                            Some(id) => format!("{id}: {status}"),
                            None => status,
                        };
                        progress(line);
                    }
                }
                Err(error) => {
                    return Err(DockerError::Pull {
                        image: image.to_owned(),
                        detail: explain_refusal(image, login, error.to_string()),
                    });
                }
            }
        }
        Ok(())
    }

    /// Starts a container (a running one is left as it is).
    pub async fn start_container(&self, id: &str) -> Result<(), DockerError> {
        self.client()?
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|error| self.classify(error, format!("starting container {id}")))
    }

    /// Stops a container, giving its processes `grace_seconds` to exit after SIGTERM.
    pub async fn stop_container(&self, id: &str, grace_seconds: i32) -> Result<(), DockerError> {
        match self
            .client()?
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(grace_seconds),
                    ..Default::default()
                }),
            )
            .await
        {
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            result => {
                result.map_err(|error| self.classify(error, format!("stopping container {id}")))
            }
        }
    }

    /// Removes a container, running or not, with its anonymous volumes; a missing one is not an error.
    pub async fn remove_container(&self, id: &str) -> Result<bool, DockerError> {
        match self
            .client()?
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(self.classify(error, format!("removing container {id}"))),
        }
    }

    /// Removes an image; a missing one is not an error.
    pub async fn remove_image(&self, image: &str) -> Result<bool, DockerError> {
        match self
            .client()?
            .remove_image(
                image,
                Some(RemoveImageOptions {
                    force: true,
                    ..Default::default()
                }),
                None,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(self.classify(error, format!("removing image {image}"))),
        }
    }

    /// Starts a process in a running container and attaches to it.
    pub async fn exec(
        &self,
        container_id: &str,
        config: ExecConfig,
    ) -> Result<ExecSession, DockerError> {
        let created = self
            .client()?
            .create_exec(
                container_id,
                CreateExecOptions {
                    attach_stdin: Some(config.stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(config.tty),
                    env: Some(config.env),
                    cmd: Some(config.command),
                    user: config.user,
                    working_dir: config.working_dir,
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| {
                self.classify(error, format!("starting a process in {container_id}"))
            })?;
        let started = self
            .client()?
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: config.tty,
                    output_capacity: Some(64 * 1024),
                }),
            )
            .await
            .map_err(|error| {
                self.classify(error, format!("attaching to a process in {container_id}"))
            })?;
        let StartExecResults::Attached { output, input } = started else {
            unreachable!("an exec started with detach: false is attached");
        };
        let output = output.filter_map(|item| async move {
            match item {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    Some(Ok((OutputStream::Stdout, message)))
                }
                Ok(LogOutput::StdErr { message }) => Some(Ok((OutputStream::Stderr, message))),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(source) => Some(Err(DockerError::Api {
                    action: "reading a process's output".into(),
                    source,
                })),
            }
        });
        Ok(ExecSession {
            id: created.id,
            output: Box::pin(output),
            input,
        })
    }

    /// Writes one file into a container's filesystem (creating its folder), owned by root.
    pub async fn put_file(
        &self,
        container_id: &str,
        path: &str,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), DockerError> {
        let relative = path.trim_start_matches('/');
        let mut builder = tar::Builder::new(Vec::new());
        if let Some(parent) = Path::new(relative)
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            header.set_cksum();
            builder
                .append_data(&mut header, parent, std::io::empty())
                .map_err(|source| DockerError::Context {
                    path: parent.to_owned(),
                    source,
                })?;
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        builder
            .append_data(&mut header, relative, contents)
            .map_err(|source| DockerError::Context {
                path: PathBuf::from(path),
                source,
            })?;
        let archive = builder
            .into_inner()
            .map_err(|source| DockerError::Context {
                path: PathBuf::from(path),
                source,
            })?;
        self.client()?
            .upload_to_container(
                container_id,
                Some(UploadToContainerOptions {
                    path: "/".to_owned(),
                    ..Default::default()
                }),
                bollard::body_full(Bytes::from(archive)),
            )
            .await
            .map_err(|error| {
                self.classify(
                    error,
                    format!("copying {path} into container {container_id}"),
                )
            })
    }

    /// Resizes an exec's terminal.
    pub async fn resize_exec(
        &self,
        exec_id: &str,
        columns: u16,
        rows: u16,
    ) -> Result<(), DockerError> {
        self.client()?
            .resize_exec(
                exec_id,
                ResizeExecOptions {
                    h: i32::from(rows),
                    w: i32::from(columns),
                },
            )
            .await
            .map_err(DockerError::api("resizing a terminal"))
    }

    /// How an exec is doing.
    pub async fn inspect_exec(&self, exec_id: &str) -> Result<ExecOutcome, DockerError> {
        let inspect = self
            .client()?
            .inspect_exec(exec_id)
            .await
            .map_err(DockerError::api("inspecting a process"))?;
        Ok(ExecOutcome {
            exit_code: inspect.exit_code,
            running: inspect.running.unwrap_or(false),
            pid: inspect.pid.filter(|pid| *pid > 0),
        })
    }

    /// The container's CPU use in percent of one core (200 means two busy cores), measured over about a
    /// second by the engine; `None` when it is not running.
    pub async fn cpu_percent(&self, container_id: &str) -> Result<Option<f64>, DockerError> {
        let mut stats = self.client()?.stats(
            container_id,
            Some(StatsOptions {
                stream: false,
                one_shot: false,
            }),
        );
        let Some(sample) = stats.next().await else {
            return Ok(None);
        };
        let sample = sample.map_err(|error| self.classify(error, "reading container CPU use"))?;
        let (Some(now), Some(before)) = (sample.cpu_stats, sample.precpu_stats) else {
            return Ok(None);
        };
        let used = |stats: &bollard::models::ContainerCpuStats| {
            stats
                .cpu_usage
                .as_ref()
                .and_then(|usage| usage.total_usage)
                .unwrap_or(0)
        };
        let container_delta = used(&now).saturating_sub(used(&before));
        let system_delta = now
            .system_cpu_usage
            .unwrap_or(0)
            .saturating_sub(before.system_cpu_usage.unwrap_or(0));
        if system_delta == 0 {
            return Ok(None);
        }
        let cores = f64::from(now.online_cpus.unwrap_or(1).max(1));
        #[expect(
            clippy::cast_precision_loss,
            reason = "CPU counters fit f64's precision for a percentage"
        )]
        let percent = container_delta as f64 / system_delta as f64 * cores * 100.0;
        Ok(Some(percent))
    }

    /// The container's output, from the start or the last `tail` lines, following new output if asked.
    pub fn logs(
        &self,
        container_id: &str,
        follow: bool,
        tail: u32,
    ) -> Result<impl Stream<Item = Result<(OutputStream, Bytes), DockerError>> + use<>, DockerError>
    {
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail: if tail == 0 {
                "all".to_owned()
            } else {
                tail.to_string()
            },
            ..Default::default()
        };
        Ok(self
            .client()?
            .logs(container_id, Some(options))
            .filter_map(|item| async move {
                match item {
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        Some(Ok((OutputStream::Stdout, message)))
                    }
                    Ok(LogOutput::StdErr { message }) => Some(Ok((OutputStream::Stderr, message))),
                    Ok(LogOutput::StdIn { .. }) => None,
                    Err(source) => Some(Err(DockerError::Api {
                        action: "reading container logs".into(),
                        source,
                    })),
                }
            }))
    }

    /// Turns a connection failure into [`DockerError::Unreachable`], and anything else into an API error.
    fn classify(&self, error: bollard::errors::Error, action: impl Into<String>) -> DockerError {
        if is_connection_error(&error) {
            return unreachable(&self.endpoint, &error.to_string());
        }
        DockerError::Api {
            action: action.into(),
            source: error,
        }
    }
}

/// Whether `error` is the connection to the engine failing (it stopped, restarted, or is not there) rather than an
/// answer.
fn is_connection_error(error: &bollard::errors::Error) -> bool {
    use bollard::errors::Error;
    matches!(
        error,
        Error::HyperResponseError { .. }
            | Error::HyperLegacyError { .. }
            | Error::IOError { .. }
            | Error::SocketNotFoundError(_)
            | Error::RequestTimeoutError
    )
}

fn unreachable(endpoint: &str, detail: &str) -> DockerError {
    DockerError::Unreachable {
        endpoint: endpoint.to_owned(),
        docker_host: std::env::var("DOCKER_HOST").map_or_else(
            |_| "DOCKER_HOST is unset".to_owned(),
            |host| format!("DOCKER_HOST={host}"),
        ),
        detail: detail.to_owned(),
    }
}

fn container_state(status: Option<ContainerStateStatusEnum>) -> ContainerState {
    match status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::STOPPING) => {
            ContainerState::Stopped
        }
        Some(ContainerStateStatusEnum::REMOVING | ContainerStateStatusEnum::DEAD) => {
            ContainerState::Removing
        }
        Some(ContainerStateStatusEnum::EMPTY) | None => ContainerState::Absent,
    }
}

/// Splits `name[:tag]` (or `name@digest`) into the repository and the tag or digest, defaulting to `latest`.
pub fn split_image_reference(image: &str) -> (&str, &str) {
    if let Some((repository, digest)) = image.split_once('@') {
        return (repository, digest);
    }
    // A colon after the last slash separates the tag; one before it belongs to a registry's port.
    let last_slash = image.rfind('/').map_or(0, |index| index + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => (
            &image[..last_slash + colon],
            &image[last_slash + colon + 1..],
        ),
        None => (image, "latest"),
    }
}

/// Packs the build context into a tar archive for the engine, with the Dockerfile inside it.
/// Returns the archive and the Dockerfile's name within it.
fn context_archive(context: &Path, dockerfile: &Path) -> Result<(Vec<u8>, String), DockerError> {
    let error = |path: &Path| {
        let path = path.to_owned();
        move |source| DockerError::Context { path, source }
    };
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", context)
        .map_err(error(context))?;
    let dockerfile_name = match dockerfile.strip_prefix(context) {
        Ok(relative) => relative.to_string_lossy().into_owned(),
        Err(_) => {
            // The Docker CLI does the same for a Dockerfile outside the context: it travels under a private name.
            let name = ".skiff-dockerfile".to_owned();
            let contents = std::fs::read(dockerfile).map_err(error(dockerfile))?;
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, &name, contents.as_slice())
                .map_err(error(dockerfile))?;
            name
        }
    };
    let archive = builder.into_inner().map_err(error(context))?;
    Ok((archive, dockerfile_name))
}

#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------------------------------------------------
// Dev Container conformance additions (owned by the engine's conformance work): container options that come from
// `runArgs`, and builds from an in-memory context (the Feature layer). Kept in one block so the functions above stay as
// they are.
// ---------------------------------------------------------------------------------------------------------------------

/// Container options beyond [`ContainerSpec`], mostly from `runArgs`; empty fields leave Docker's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostExtras {
    /// `--network`.
    pub network_mode: Option<String>,
    /// `--add-host NAME:IP`.
    pub extra_hosts: Vec<String>,
    /// `--device HOST[:CONTAINER[:PERMISSIONS]]`.
    pub devices: Vec<String>,
    /// `--gpus` (`all` or a count).
    pub gpus: Option<String>,
    /// `--shm-size`, in bytes.
    pub shm_size: Option<i64>,
    /// `--ipc`.
    pub ipc_mode: Option<String>,
    /// `--pid`.
    pub pid_mode: Option<String>,
    /// `--userns`.
    pub userns_mode: Option<String>,
    /// `--uts`.
    pub uts_mode: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--memory`, in bytes.
    pub memory: Option<i64>,
    /// `--cpus`, in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// `--dns`.
    pub dns: Vec<String>,
    /// `--tmpfs PATH[:OPTIONS]`.
    pub tmpfs: Vec<(String, String)>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<(String, i64, i64)>,
    /// `--sysctl`.
    pub sysctls: Vec<(String, String)>,
    /// `--group-add`.
    pub group_add: Vec<String>,
    /// `--platform`.
    pub platform: Option<String>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--workdir`.
    pub working_dir: Option<String>,
}

/// Build options beyond [`BuildSpec`], from `build.options`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildExtras {
    /// `--platform`.
    pub platform: Option<String>,
    /// `--add-host NAME:IP`.
    pub extra_hosts: Vec<String>,
    /// `--network`.
    pub network_mode: Option<String>,
}

/// Docker's form of a registry login.
fn credentials(login: &RegistryLogin) -> bollard::auth::DockerCredentials {
    let serveraddress = Some(RegistryLogin::server_address(&login.registry).to_owned());
    if login.identity_token {
        bollard::auth::DockerCredentials {
            identitytoken: Some(login.secret.clone()),
            serveraddress,
            ..Default::default()
        }
    } else {
        bollard::auth::DockerCredentials {
            username: Some(login.username.clone()),
            password: Some(login.secret.clone()),
            serveraddress,
            ..Default::default()
        }
    }
}

/// A pull's error, with what to do when the registry refused the login sent, or refused anonymous access.
fn explain_refusal(image: &str, login: Option<&RegistryLogin>, detail: String) -> String {
    let lower = detail.to_ascii_lowercase();
    let refused = [
        "unauthorized",
        "denied",
        "authentication required",
        "no basic auth",
    ]
    .iter()
    .any(|word| lower.contains(word));
    if !refused {
        return detail;
    }
    let registry = RegistryLogin::registry_of(image);
    match login {
        Some(login) => format!(
            "registry {registry} refused the login of {} from this machine's Docker configuration ({detail}); log in again on this machine with `docker login {registry}`, then run `skiff up` again",
            if login.identity_token {
                "an identity token".to_owned()
            } else {
                format!("user {:?}", login.username)
            }
        ),
        None => format!(
            "registry {registry} refused to let this machine pull anonymously ({detail}); log in on this machine with `docker login {registry}` (skiff sends that login with `up`), then run `skiff up` again"
        ),
    }
}

impl Docker {
    /// Creates a container like [`Docker::create_container`], with the extra options of `extras`.
    pub async fn create_container_ext(
        &self,
        spec: ContainerSpec,
        extras: HostExtras,
    ) -> Result<String, DockerError> {
        let mounts: Vec<BollardMount> = spec
            .mounts
            .into_iter()
            .map(|mount| match mount {
                Mount::Bind {
                    source,
                    target,
                    read_only,
                } => BollardMount {
                    typ: Some(MountType::BIND),
                    source: Some(source),
                    target: Some(target),
                    read_only: Some(read_only),
                    ..Default::default()
                },
                Mount::Volume { source, target } => BollardMount {
                    typ: Some(MountType::VOLUME),
                    source,
                    target: Some(target),
                    ..Default::default()
                },
            })
            .collect();
        let mut port_bindings = HashMap::new();
        for (container_port, host_ip, host_port) in spec.published_ports {
            port_bindings
                .entry(container_port)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(host_ip),
                    host_port: Some(host_port),
                });
        }
        let devices: Vec<bollard::models::DeviceMapping> = extras
            .devices
            .iter()
            .map(|device| {
                let mut parts = device.splitn(3, ':');
                let host = parts.next().unwrap_or_default().to_owned();
                let container = parts.next().map_or_else(|| host.clone(), str::to_owned);
                let permissions = parts.next().unwrap_or("rwm").to_owned();
                bollard::models::DeviceMapping {
                    path_on_host: Some(host),
                    path_in_container: Some(container),
                    cgroup_permissions: Some(permissions),
                }
            })
            .collect();
        let device_requests = extras.gpus.as_ref().map(|gpus| {
            vec![bollard::models::DeviceRequest {
                count: Some(if gpus == "all" {
                    -1
                } else {
                    gpus.trim_start_matches("count=").parse().unwrap_or(-1)
                }),
                capabilities: Some(vec![vec!["gpu".to_owned()]]),
                ..Default::default()
            }]
        });
        let non_empty = |list: Vec<String>| (!list.is_empty()).then_some(list);
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            labels: Some(spec.labels.into_iter().collect()),
            env: Some(spec.env),
            user: spec.user,
            entrypoint: spec.entrypoint,
            cmd: spec.cmd,
            hostname: extras.hostname,
            working_dir: extras.working_dir,
            exposed_ports: (!port_bindings.is_empty())
                .then(|| port_bindings.keys().cloned().collect()),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                init: spec.init.then_some(true),
                privileged: Some(spec.privileged),
                cap_add: non_empty(spec.cap_add),
                cap_drop: non_empty(extras.cap_drop),
                security_opt: non_empty(spec.security_opt),
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                network_mode: extras.network_mode,
                extra_hosts: non_empty(extras.extra_hosts),
                devices: (!devices.is_empty()).then_some(devices),
                device_requests,
                shm_size: extras.shm_size,
                ipc_mode: extras.ipc_mode,
                pid_mode: extras.pid_mode,
                userns_mode: extras.userns_mode,
                uts_mode: extras.uts_mode,
                memory: extras.memory,
                nano_cpus: extras.nano_cpus,
                dns: non_empty(extras.dns),
                group_add: non_empty(extras.group_add),
                readonly_rootfs: extras.read_only.then_some(true),
                tmpfs: (!extras.tmpfs.is_empty()).then(|| extras.tmpfs.into_iter().collect()),
                sysctls: (!extras.sysctls.is_empty()).then(|| extras.sysctls.into_iter().collect()),
                ulimits: (!extras.ulimits.is_empty()).then(|| {
                    extras
                        .ulimits
                        .into_iter()
                        .map(|(name, soft, hard)| bollard::models::ResourcesUlimits {
                            name: Some(name),
                            soft: Some(soft),
                            hard: Some(hard),
                        })
                        .collect()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: spec.name,
            platform: extras.platform.unwrap_or_default(),
        };
        let response = self
            .client()?
            .create_container(Some(options), body)
            .await
            .map_err(|error| {
                self.classify(error, format!("creating a container from {}", spec.image))
            })?;
        Ok(response.id)
    }

    /// Builds an image from a context archive already in memory (`dockerfile` names the Dockerfile inside it), with the
    /// classic builder, passing each line of build output to `output`.
    pub async fn build_image_archive(
        &self,
        archive: Vec<u8>,
        dockerfile: &str,
        spec: &BuildSpec,
        extras: &BuildExtras,
        logins: &[RegistryLogin],
        mut output: impl FnMut(String),
    ) -> Result<(), DockerError> {
        let options = BuildImageOptions {
            dockerfile: dockerfile.to_owned(),
            t: Some(spec.tag.clone()),
            buildargs: Some(spec.args.clone().into_iter().collect()),
            target: spec.target.clone().unwrap_or_default(),
            cachefrom: (!spec.cache_from.is_empty()).then(|| spec.cache_from.clone()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            nocache: spec.no_cache,
            platform: extras.platform.clone().unwrap_or_default(),
            extrahosts: (!extras.extra_hosts.is_empty()).then(|| extras.extra_hosts.join(",")),
            networkmode: extras.network_mode.clone(),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let client = self.client()?;
        // The builder's pulls of `FROM` images use the logins, by registry (Docker Hub under its index URL).
        let registry_config = (!logins.is_empty()).then(|| {
            logins
                .iter()
                .map(|login| {
                    (
                        RegistryLogin::server_address(&login.registry).to_owned(),
                        credentials(login),
                    )
                })
                .collect::<HashMap<_, _>>()
        });
        let mut stream = client.build_image(
            options,
            registry_config,
            Some(bollard::body_full(Bytes::from(archive))),
        );
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                // The engine going away mid-build (a restart) is not the Dockerfile's fault: say so. A daemon shutting
                // down fails the step it kills (exit 137, which bollard gives as a stream error) once it has already
                // stopped answering.
                Err(error) if is_connection_error(&error) || self.version().await.is_err() => {
                    return Err(unreachable(
                        &self.endpoint,
                        &format!("building image {}: {error}", spec.tag),
                    ));
                }
                Err(error) => {
                    return Err(DockerError::Build {
                        tag: spec.tag.clone(),
                        detail: error.to_string(),
                    });
                }
            };
            if let Some(detail) = info.error_detail.and_then(|detail| detail.message) {
                return Err(DockerError::Build {
                    tag: spec.tag.clone(),
                    detail,
                });
            }
            if let Some(line) = info.stream.or(info.status) {
                output(line);
            }
        }
        Ok(())
    }
}

/// Packs a build context folder and its Dockerfile into an archive for [`Docker::build_image_archive`]; returns the archive
/// and the Dockerfile's name inside it.
pub fn pack_build_context(
    context: &Path,
    dockerfile: &Path,
) -> Result<(Vec<u8>, String), DockerError> {
    context_archive(context, dockerfile)
}

impl Docker {
    /// An image's `ENTRYPOINT` and `CMD`, for running them after the keep-alive's Feature entrypoints.
    pub async fn image_command(
        &self,
        image: &str,
    ) -> Result<(Vec<String>, Vec<String>), DockerError> {
        let inspect = self
            .client()?
            .inspect_image(image)
            .await
            .map_err(|error| self.classify(error, format!("inspecting image {image}")))?;
        let config = inspect.config.unwrap_or_default();
        Ok((
            config.entrypoint.unwrap_or_default(),
            config.cmd.unwrap_or_default(),
        ))
    }

    /// Removes every volume carrying label `key=value` (a compose project's named volumes); returns their names.
    /// A volume that went meanwhile is not an error.
    pub async fn remove_volumes_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>, DockerError> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{key}={value}")])]);
        let listed = self
            .client()?
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|error| self.classify(error, format!("listing the volumes of {value}")))?;
        let mut removed = Vec::new();
        for volume in listed.volumes.unwrap_or_default() {
            match self
                .client()?
                .remove_volume(&volume.name, None::<RemoveVolumeOptions>)
                .await
            {
                Ok(()) => removed.push(volume.name),
                Err(error) if is_not_found(&error) => {}
                Err(error) => {
                    return Err(self.classify(error, format!("removing volume {}", volume.name)));
                }
            }
        }
        Ok(removed)
    }

    /// Removes a network; a missing one is not an error.
    pub async fn remove_network(&self, name: &str) -> Result<bool, DockerError> {
        match self.client()?.remove_network(name).await {
            Ok(()) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(self.classify(error, format!("removing network {name}"))),
        }
    }
}

impl Docker {
    /// The ids of every container (running or not) carrying all of `labels`.
    pub async fn find_containers_ext(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, DockerError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            labels
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect(),
        )]);
        let summaries = self
            .client()?
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|error| self.classify(error, "listing containers"))?;
        Ok(summaries
            .into_iter()
            .filter_map(|summary| summary.id)
            .collect())
    }
}
