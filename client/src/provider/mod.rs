//! Providers: where a workspace's agent runs and how the client reaches it. `local` runs the agent on this
//! machine; `aws` makes and finds EC2 instances by their tags.
//!
//! [`Provider`] is chosen once, from the workspace's record ([`Provider::of`]), from `up`'s choice for a new
//! one ([`Provider::new`]), or by looking a name up wherever workspaces are recorded ([`Provider::find`]).
//! Commands then ask it for a client of the agent (one for commands, several for bulk transfers), to place a
//! workspace and make its agent ready, to send its files, and to stop, delete, list and report on workspaces;
//! they never learn how it was done.
//!
//! It is an enum, not a trait: the providers are few and all known here, an enum's methods can be `async`
//! without boxing, and a provider added is one arm the compiler then asks for in every method below.

pub mod aws;
pub mod local;

use std::path::Path;

use skiff::devcontainer::HostRequirements;

use crate::agent_client::AgentClient;
use crate::cli::{AgentOptions, UpArgs};
use crate::progress::Progress;
use crate::workspace::{ProviderKind, Store, Workspace};

pub use aws::AwsProvider;
pub use local::LocalProvider;

/// Where a workspace's agent runs, and everything the client does there.
#[derive(Debug)]
pub enum Provider {
    /// The agent runs on this machine.
    Local(LocalProvider),
    /// The agent runs on an EC2 instance, reached through Session Manager.
    Aws(AwsProvider),
}

/// What `up` asks a provider to place: a workspace for a folder and its configuration.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The command line of `up`.
    pub args: &'a UpArgs,
    /// The workspace's folder on this machine (for a repository cloned by the agent, its folder in the store).
    pub folder: &'a Path,
    /// The devcontainer.json.
    pub config_file: &'a Path,
    /// What the configuration asks of the machine, when known before the agent runs.
    pub host_requirements: Option<&'a HostRequirements>,
}

/// What a command that connects does with a stopped workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStopped {
    /// Starts it (its machine, its agent and its dev container), saying so in one line on standard error.
    Start,
    /// Fails, saying how to start it.
    Refuse,
}

impl OnStopped {
    /// The choice for `workspace`: `--no-start` for this command, else the workspace's saved setting.
    pub fn of(workspace: &Workspace, no_start: bool) -> Self {
        if no_start || !workspace.record.auto_start {
            Self::Refuse
        } else {
            Self::Start
        }
    }

    /// The error of a command that found `workspace` stopped and did not start it.
    pub(crate) fn refused(workspace: &Workspace) -> anyhow::Error {
        let name = workspace.name();
        let why = if workspace.record.auto_start {
            "--no-start"
        } else {
            "its setting auto-start=off"
        };
        anyhow::anyhow!(
            "workspace {name} is stopped and {why} leaves it so; `skiff up {}` starts it",
            workspace.record.local_folder.display()
        )
    }

    /// The line a command shows when it starts a stopped workspace.
    pub(crate) fn announce(workspace: &Workspace) {
        eprintln!(
            "skiff: workspace {} is stopped; starting it (--no-start leaves it stopped)",
            workspace.name()
        );
    }
}

/// What `skiff list` shows of an AWS workspace: its region, instance, owner and prices.
pub type AwsRow = aws::status::ListRow;

/// One workspace in `skiff list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListRow {
    pub name: String,
    pub provider: String,
    pub state: String,
    pub folder: String,
    pub container_id: Option<String>,
    /// When a stopped workspace stopped (seconds since the epoch), where that is known: the local agent's ledger, or
    /// EC2's state transition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_since_unix: Option<i64>,
    /// Where an AWS workspace runs and whose it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsRow>,
    /// A running local agent's report (its idle countdown, its month); AWS rows are listed without reaching their
    /// agents.
    #[serde(skip)]
    pub status: Option<skiff::api::Status>,
}

impl Provider {
    /// The provider of `kind`, with the command's options.
    pub fn new(kind: ProviderKind, options: &AgentOptions) -> Self {
        match kind {
            ProviderKind::Local => Self::Local(LocalProvider {
                agent_binary: options.agent_binary.clone(),
                start_is_activity: true,
            }),
            ProviderKind::Aws => Self::Aws(AwsProvider::new(options)),
        }
    }

    /// The provider that holds `workspace`, from its record.
    pub fn of(workspace: &Workspace, options: &AgentOptions) -> Self {
        Self::new(workspace.record.provider, options)
    }

    /// The provider a new workspace goes to when nothing names one: AWS once it is configured here, else local.
    pub fn default_kind(store: &Store) -> ProviderKind {
        if aws::config::AwsSettings::configured(store.root()) {
            ProviderKind::Aws
        } else {
            ProviderKind::Local
        }
    }

    /// The provider that holds the workspace called `name`: the one its local record names, or, for a name
    /// this machine has no record of, the one where it is found (AWS, by its tags, from any machine). With
    /// `owner`, that owner's workspace, which only AWS records.
    pub async fn find(
        name: &str,
        owner: Option<&str>,
        options: &AgentOptions,
    ) -> anyhow::Result<Self> {
        if let Some(found) = AwsProvider::find(name, owner, options).await? {
            return Ok(Self::Aws(found));
        }
        if let Some(owner) = owner {
            anyhow::bail!("no AWS workspace {name} of {owner} in the configured regions");
        }
        Ok(Self::new(ProviderKind::Local, options))
    }

    /// This provider for looking at or removing a workspace: starting its agent is not using it, so it does not
    /// restart an idle countdown.
    #[must_use]
    pub fn without_activity(mut self) -> Self {
        if let Self::Local(local) = &mut self {
            local.start_is_activity = false;
        }
        self
    }

    /// Whether the agent runs on another machine, so the workspace's files are sent to it or cloned there.
    pub fn is_remote(&self) -> bool {
        match self {
            Self::Local(_) => false,
            Self::Aws(_) => true,
        }
    }

    /// A client of the workspace's agent for commands, starting the agent (or the way to it) when needed.
    pub async fn agent(&self, workspace: &Workspace) -> anyhow::Result<AgentClient> {
        match self {
            Self::Local(local) => Ok(local.ensure_agent(workspace).await?),
            Self::Aws(aws) => aws.agent(workspace).await,
        }
    }

    /// A client of the workspace's agent for a command that uses the dev container: a stopped workspace is started
    /// first (its machine, its agent, then its dev container as it was made), or refused, as `on_stopped` says. Two
    /// commands that start one workspace at once start it once: one of them starts the agent or the machine, and the
    /// agent starts the dev container for the first `Start` and finds it running for the second.
    pub async fn connect(
        &self,
        workspace: &Workspace,
        on_stopped: OnStopped,
    ) -> anyhow::Result<AgentClient> {
        match self {
            Self::Local(local) => local.connect(workspace, on_stopped).await,
            Self::Aws(aws) => aws.connect(workspace, on_stopped).await,
        }
    }

    /// Clients of the workspace's agent for a bulk transfer, each over its own way there when the provider has
    /// several (one Session Manager session each); a transfer deals its parts over them.
    pub async fn bulk_agents(&self, workspace: &Workspace) -> anyhow::Result<Vec<AgentClient>> {
        match self {
            Self::Local(local) => Ok(vec![local.ensure_agent(workspace).await?]),
            Self::Aws(aws) => aws.bulk_agents(workspace).await,
        }
    }

    /// The agent certificate this machine pinned for `workspace`; its key is also the agent's SSH host key.
    pub fn pinned_certificate(&self, workspace: &Workspace) -> Option<String> {
        crate::tunnel::connect::pinned_certificate(&workspace.folder)
    }

    /// `up`'s first part: the workspace's record, found or made for `placement`, and the machine its agent
    /// runs on. `None` when `up --no-wait` is done once the machine runs.
    pub async fn place(
        &self,
        placement: &Placement<'_>,
        progress: &Progress,
    ) -> anyhow::Result<Option<Workspace>> {
        match self {
            Self::Local(local) => local.place(placement, progress).map(Some),
            Self::Aws(aws) => {
                // The AWS provider shows its own steps.
                progress.finish();
                aws.place(placement).await
            }
        }
    }

    /// `up`'s second part: a client of the workspace's agent once it answers, as new as this client asks.
    pub async fn ready_agent(
        &self,
        workspace: &Workspace,
        args: &UpArgs,
        progress: &Progress,
    ) -> anyhow::Result<AgentClient> {
        match self {
            Self::Local(local) => {
                progress.step(&format!(
                    "starting the agent of workspace {}",
                    workspace.name()
                ));
                Ok(local.ensure_agent(workspace).await?)
            }
            Self::Aws(aws) => aws.ready_agent(workspace, args, progress).await,
        }
    }

    /// The folder the agent finds the workspace's files in: the folder itself for an agent on this machine;
    /// for one elsewhere, sent there now when this workspace has not sent them before, otherwise the ones already
    /// there (work done there stays, and `skiff sync` sends this machine's changes).
    pub async fn send_files(
        &self,
        workspace: &mut Workspace,
        folder: &Path,
        progress: &Progress,
    ) -> anyhow::Result<String> {
        match self {
            Self::Local(_) => Ok(folder.display().to_string()),
            Self::Aws(aws) => aws.send_files(workspace, folder, progress).await,
        }
    }

    /// The files folder on the agent's machine that this workspace's files were sent or cloned to, if any.
    pub fn remote_files_folder(&self, workspace: &Workspace) -> Option<String> {
        match self {
            Self::Local(_) => None,
            Self::Aws(_) => AwsProvider::files_folder(workspace),
        }
    }

    /// Remembers in the workspace's record where its files are on the agent's machine.
    pub fn keep_remote_files_folder(
        &self,
        workspace: &mut Workspace,
        files_folder: String,
    ) -> anyhow::Result<()> {
        match self {
            Self::Local(_) => Ok(()),
            Self::Aws(_) => AwsProvider::keep_files_folder(workspace, files_folder),
        }
    }

    /// Removes a workspace that `up` recorded moments ago and then failed on before anything else was made (a
    /// clone that failed): its agent ended and its record gone, so bad input leaves nothing behind. A workspace on
    /// another machine has its machine by then, and is left for `skiff delete`.
    pub async fn discard(&self, workspace: Workspace, mut client: AgentClient) {
        match self {
            Self::Local(local) => {
                let _ = client.stop(true).await;
                local
                    .wait_for_exit(&workspace, std::time::Duration::from_secs(5))
                    .await;
                if let Err(error) = workspace.remove() {
                    tracing::warn!("removing the failed workspace's record: {error}");
                }
            }
            Self::Aws(_) => {}
        }
    }

    /// `skiff status NAME`: prints the workspace's state (as JSON with `json`); the exit code.
    pub async fn status(self, name: &str, json: bool) -> anyhow::Result<i32> {
        match self {
            Self::Local(local) => local.status(name, json).await,
            Self::Aws(aws) => aws.status(name, json).await,
        }
    }

    /// `skiff stop NAME`: stops the workspace, keeping what the next `up` needs; the exit code.
    pub async fn stop(self, name: &str) -> anyhow::Result<i32> {
        match self {
            Self::Local(local) => local.stop(name).await,
            Self::Aws(aws) => aws.stop(name).await,
        }
    }

    /// `skiff delete NAME`: removes the workspace and what was made for it, asking first unless `yes`; the exit
    /// code.
    pub async fn delete(self, name: &str, confirmation: Confirmation) -> anyhow::Result<i32> {
        match self {
            Self::Local(local) => local.delete(name, confirmation).await,
            Self::Aws(aws) => aws.delete(name, confirmation).await,
        }
    }

    /// `skiff logs NAME --boot`: the boot log of the machine the agent runs on; the exit code.
    pub async fn boot_log(self, name: &str) -> anyhow::Result<i32> {
        match self {
            Self::Local(_) => anyhow::bail!(
                "workspace {name} is not on AWS; --boot shows an AWS instance's boot, leave it out for the container's output"
            ),
            Self::Aws(aws) => aws.boot_log(name).await,
        }
    }
}

/// Has a workspace's agent start its dev container as it was made, if it is stopped; true when this call started
/// it. An agent older than `Start` is left as it is: the command then says, as before, that `skiff up` starts it.
pub(crate) async fn start_dev_container(
    client: &mut AgentClient,
    workspace: &Workspace,
) -> anyhow::Result<bool> {
    match client.start().await {
        Ok(started) => Ok(started),
        Err(error) if error.code() == Some(crate::agent_client::Code::Unimplemented) => Ok(false),
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "starting the dev container of workspace {}",
            workspace.name()
        ))),
    }
}

/// How a delete was agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// Ask on a terminal, both whether to delete and, when the files hold work that exists nowhere else, whether to
    /// lose it; without a terminal, such work (or files that cannot be checked) keeps the workspace.
    Ask,
    /// The deletion itself is agreed (`prune`'s one question, or its `--yes`), but work that exists nowhere else is
    /// still asked about, or keeps the workspace, as with [`Confirmation::Ask`].
    Agreed,
    /// Delete whatever the files hold (`delete --yes`).
    Yes,
}

impl Confirmation {
    /// Whether work that exists nowhere else may be lost without asking.
    pub fn loses_work(self) -> bool {
        self == Self::Yes
    }

    /// Whether the deletion itself is still to be asked about.
    pub fn asks(self) -> bool {
        self == Self::Ask
    }
}

/// Every workspace of every provider (everyone's on AWS with `all`), sorted by provider as found.
pub async fn list(all: bool) -> anyhow::Result<Vec<ListRow>> {
    let mut rows = list_local().await?;
    rows.extend(list_aws(all).await?);
    Ok(rows)
}

/// The workspaces whose agent runs on this machine, each running agent asked at once; cheap (loopback only).
pub async fn list_local() -> anyhow::Result<Vec<ListRow>> {
    LocalProvider::list().await
}

/// Whether this machine works with AWS at all (saved settings, `SKIFF_AWS_REGION`, or an AWS workspace).
pub fn aws_in_use() -> bool {
    AwsProvider::in_use()
}

/// The AWS workspaces (everyone's with `all`): a call per configured region, none when AWS is not in use here.
pub async fn list_aws(all: bool) -> anyhow::Result<Vec<ListRow>> {
    AwsProvider::list(all).await
}

/// The agent's part of `status`, as lines of text: the agent, the dev container and the idle countdown. Shared by
/// the providers.
pub(crate) fn print_agent(status: &skiff::api::Status) {
    use std::time::Duration;
    println!(
        "agent             running, version {}",
        status.agent_version
    );
    match &status.container_id {
        Some(id) => println!(
            "container         {} {} ({})",
            status.container_state,
            short_id(id),
            status.image.as_deref().unwrap_or("?")
        ),
        None => println!("container         none yet (`skiff up` makes it)"),
    }
    if let Some(folder) = &status.workspace_folder {
        println!("workspace folder  {folder}");
    }
    if let Some(user) = &status.remote_user {
        println!("remote user       {user}");
    }
    if let Some(error) = &status.docker_error {
        println!("docker            {error}");
    }
    let idle = &status.idle;
    let idle_for = humantime::format_duration(Duration::from_secs(idle.idle_seconds));
    let countdown = if idle.timeout_seconds == 0 {
        "idle shutdown is off".to_owned()
    } else if !idle.busy_sources.is_empty() {
        format!("kept up by {}", idle.busy_sources.join(", "))
    } else {
        match idle.stops_in_seconds {
            Some(seconds) => format!(
                "stops in {}",
                humantime::format_duration(Duration::from_secs(seconds))
            ),
            None => "no stop scheduled".to_owned(),
        }
    };
    println!(
        "idle              {idle_for} (last activity: {}); {countdown}",
        idle.last_activity_source
    );
    if let Some(usage) = &status.usage {
        println!("this month        {}", crate::usage::describe(usage));
    }
}

/// A short form of a container id, as Docker prints it.
pub(crate) fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Asks on a terminal whether to go on; true for yes.
pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead as _, Write as _};
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
