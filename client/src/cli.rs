//! The command line: every command, flag and its help text. Parsing only; `commands` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// skiff: a dev container on your own machine or your own AWS account, driven from your laptop.
#[derive(Debug, Parser)]
#[command(
    name = "skiff",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create (or start) the workspace of a folder and its dev container; prints the workspace's name.
    Up(UpArgs),
    /// List the workspaces.
    List(ListArgs),
    /// Show a workspace's dev container, agent and idle countdown.
    Status(StatusArgs),
    /// Run a command in a workspace's dev container.
    Exec(ExecArgs),
    /// Open an interactive login shell in a workspace's dev container.
    Ssh(SshArgs),
    /// Stop a workspace's dev container; its files stay.
    Stop(StopArgs),
    /// Remove a workspace: its dev container, the image built for it, and its keys and state.
    Delete(DeleteArgs),
    /// Delete the workspaces stopped for longer than a time, after showing them (their disks still cost storage).
    Prune(PruneArgs),
    /// Send the changes made in a workspace's folder on this machine since its last upload or sync.
    Sync(SyncArgs),
    /// Show a workspace's dev container output.
    Logs(LogsArgs),
    /// Forward local ports to ports of a workspace's dev container, until interrupted.
    Forward(ForwardArgs),
    /// Keep a workspace up for a while, whatever its activity.
    Keepalive(KeepaliveArgs),
    /// Change a workspace's settings (idle-timeout, busy-cpu, auto-start), or with --global every workspace's (dotfiles).
    Config(ConfigArgs),
    /// Save a provider's defaults, such as `skiff provider aws --region eu-west-1`.
    Provider(ProviderArgs),
    /// Print the IAM policy a skiff developer needs on AWS (only their own workspaces), or the operator's.
    AwsPolicy(AwsPolicyArgs),
    /// Make skiff's instance role and profile in an AWS account: once, by someone allowed to manage IAM.
    AwsSetup(AwsSetupArgs),
    /// Let this machine reach an AWS workspace made elsewhere, by adding its certificate through Run Command.
    Enroll(EnrollArgs),
    /// Keep `Host NAME.skiff` entries in ~/.ssh/config, so ssh, scp, rsync and IDEs reach dev containers.
    SshConfig(SshConfigArgs),
    /// Carry one SSH connection between standard input and output and a workspace (ssh's ProxyCommand).
    Proxy(ProxyArgs),
    /// Hold an AWS workspace's Session Manager tunnel for the other commands (started by them, not by hand).
    #[command(hide = true)]
    TunnelDaemon(TunnelDaemonArgs),
    /// Open VS Code (or Insiders, or Cursor) on a workspace's folder in its dev container, through Remote-SSH, with
    /// devcontainer.json's extensions and settings.
    Code(CodeArgs),
    /// Serve a page on this machine with every workspace, what it does and costs, and buttons to start, stop, keep
    /// alive and delete each; opens it in the default browser.
    Ui(UiArgs),
}

/// `skiff ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// The port on 127.0.0.1 to serve on (default: a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Print the page's URL instead of opening a browser.
    #[arg(long)]
    pub no_open: bool,
    /// How often AWS is asked for the AWS workspaces, for every open page together (10s at least).
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub aws_every: String,
}

/// `skiff forward`.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// The workspace.
    pub name: String,
    /// What to forward: PORT, LOCAL:PORT, HOST:PORT or LOCAL:HOST:PORT (HOST as the dev container resolves it, an IPv6 one in brackets).
    #[arg(required = true, value_name = "[LOCAL:]REMOTE")]
    pub ports: Vec<String>,
    #[command(flatten)]
    pub start: StartOptions,
    #[command(flatten)]
    pub agent: AgentOptions,
}

/// `skiff keepalive`.
#[derive(Debug, Args)]
pub struct KeepaliveArgs {
    /// The workspace.
    pub name: String,
    /// How long to keep it up, such as 2h.
    #[arg(long = "for", value_name = "DURATION", required_unless_present = "off")]
    pub duration: Option<String>,
    /// End the current pin.
    #[arg(long, conflicts_with = "duration")]
    pub off: bool,
}

/// `skiff config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Change the settings of every workspace instead of one: dotfiles (a repository URL, or none).
    #[arg(long)]
    pub global: bool,
    /// The workspace (not with --global), then settings as KEY=VALUE: idle-timeout (30m, 2h, off), busy-cpu (20%,
    /// off), and auto-start (on, off: whether exec, ssh, proxy, forward, code, sync and logs -f start the workspace
    /// when it is stopped).
    #[arg(required = true, value_name = "NAME KEY=VALUE")]
    pub settings: Vec<String>,
}

/// What a command that uses a workspace's dev container does when the workspace is stopped.
#[derive(Debug, Args, Clone, Default)]
pub struct StartOptions {
    /// Fail instead of starting the workspace when it is stopped (`skiff config NAME auto-start=off` saves this).
    #[arg(long)]
    pub no_start: bool,
}

/// Whether a session answers git's credential requests from the dev container with this machine's git.
#[derive(Debug, Args, Clone, Default)]
pub struct CredentialOptions {
    /// Do not answer git's credential requests from the dev container (`skiff config NAME git-credentials=off`
    /// saves this).
    #[arg(long)]
    pub no_git_credentials: bool,
}

/// This machine's agents forwarded into a session (`exec`, `ssh`); off unless asked, as in OpenSSH.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct KeyForwarding {
    /// Forward this machine's SSH agent (`SSH_AUTH_SOCK`) into the dev container for this session, as `ssh -A`
    /// does: git over SSH and SSH commit signing there use its keys, which never leave this machine.
    #[arg(short = 'A', long)]
    pub forward_agent: bool,
    /// Forward this machine's gpg-agent into the dev container for this session (at the socket gpg uses there; your
    /// public keys are imported): GPG commit signing there uses keys that never leave this machine.
    #[arg(long)]
    pub gpg: bool,
}

/// Options that pick the agent binary for the local provider.
#[derive(Debug, Args, Clone, Default)]
pub struct AgentOptions {
    /// The skiffd binary to run for the local provider (default: the one beside skiff).
    #[arg(
        long,
        value_name = "PATH",
        env = "SKIFF_AGENT_BINARY",
        global = true,
        hide_env = true
    )]
    pub agent_binary: Option<PathBuf>,
    /// How an AWS workspace's agent is reached: skiff's own Session Manager client, or AWS's
    /// session-manager-plugin (which must be installed).
    #[arg(
        long,
        value_enum,
        value_name = "TUNNEL",
        env = "SKIFF_TUNNEL",
        global = true,
        hide_env = true,
        default_value_t = TunnelChoice::Ssm
    )]
    pub tunnel: TunnelChoice,
}

/// The transport to an AWS workspace's agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TunnelChoice {
    /// skiff's own Session Manager data channel (nothing else to install).
    #[default]
    Ssm,
    /// AWS's session-manager-plugin forwarding a local port.
    Plugin,
}

impl TunnelChoice {
    /// The value as the flag takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelChoice::Ssm => "ssm",
            TunnelChoice::Plugin => "plugin",
        }
    }
}

/// `skiff up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The workspace folder.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// The workspace's name (default: the folder's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The devcontainer.json to use, such as .devcontainer/python/devcontainer.json.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Remove the existing dev container and build it again.
    #[arg(long)]
    pub rebuild: bool,
    /// Stop the workspace after this long unused (`30m`, `2h`, `off`); kept for later starts.
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Keep the workspace up while the dev container's CPU use is above this (such as 20%).
    #[arg(long, value_name = "PERCENT")]
    pub busy_cpu: Option<String>,
    /// Stay in the foreground forwarding forwardPorts, appPort and ports that start listening, until Ctrl-C.
    #[arg(long)]
    pub forward: bool,
    /// Where the workspace runs: local or aws [default: the workspace's, else aws once configured, else local].
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<crate::workspace::ProviderKind>,
    /// A dotfiles repository to clone in the dev container (once per container) and install; kept for the
    /// workspace's later starts [default: the workspace's, else `skiff config --global dotfiles=URL`].
    #[arg(long, value_name = "URL")]
    pub dotfiles: Option<String>,
    /// With --provider aws: return once the instance runs, without waiting for its agent.
    #[arg(long)]
    pub no_wait: bool,
    /// For a git URL: go on without asking when its devcontainer.json would run initializeCommand on this
    /// machine or read local environment variables (what it would do is still shown).
    #[arg(long)]
    pub trust: bool,
    /// With --agent-binary on an AWS workspace: replace the instance's skiffd even when it is newer than this
    /// client (a downgrade, which the agent refuses unless asked like this).
    #[arg(long)]
    pub allow_agent_downgrade: bool,
    #[command(flatten)]
    pub aws: crate::provider::aws::config::AwsOptions,
    #[command(flatten)]
    pub agent: AgentOptions,
}

/// `skiff provider`.
#[derive(Debug, Args)]
pub struct ProviderArgs {
    /// Which provider.
    #[command(subcommand)]
    pub provider: ProviderCommand,
}

/// The providers that have settings.
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Save defaults for AWS workspaces; once saved, new workspaces go to AWS unless --provider local.
    Aws(crate::provider::aws::config::ProviderAwsArgs),
}

/// `skiff aws-policy`.
#[derive(Debug, Args)]
pub struct AwsPolicyArgs {
    /// Print the operator's policy instead: see everyone's workspaces, stop, delete and enroll into any of them.
    #[arg(long)]
    pub admin: bool,
    /// The Route53 hosted zone id of `--dns-zone`, if workspaces get DNS records: changes only there.
    #[arg(long, value_name = "ZONEID")]
    pub dns_zone: Option<String>,
    /// A tag key `up --tag` may set besides skiff's own and Name (repeatable).
    #[arg(long, value_name = "KEY")]
    pub tag_key: Vec<String>,
    /// The KMS key (ARN) of `up --kms-key`, if root volumes are encrypted with one: EBS may use it for the
    /// developer's volumes, through EC2 only.
    #[arg(long, value_name = "ARN")]
    pub kms_key: Option<String>,
    /// The team's file of `skiff aws-setup --team-defaults`: its [rules] become IAM conditions on launching
    /// (instance types, largest volume, required tags), so AWS refuses what they forbid.
    #[arg(long, value_name = "FILE")]
    pub team: Option<PathBuf>,
}

/// `skiff aws-setup`.
#[derive(Debug, Args)]
pub struct AwsSetupArgs {
    /// Remove what aws-setup made instead (every workspace of the account must be deleted first).
    #[arg(long)]
    pub remove: bool,
    /// Allow the role kms:Decrypt on this key (its ARN), for workspaces launched with --kms-key.
    #[arg(long, value_name = "ARN", conflicts_with = "remove")]
    pub kms_key: Option<String>,
    /// Allow the role to pull from this account's ECR repositories (read only), for workspaces launched with --ecr.
    #[arg(long, conflicts_with = "remove")]
    pub ecr: bool,
    /// Only write the team's file for this region from FILE: defaults (aws.toml's keys instance_type, volume_size,
    /// spot, ecr, subnet, vpc, availability_zone, security_group, instance_profile, kms_key, tags, confirm_above,
    /// dns_zone, and idle_timeout and dotfiles), which every `skiff up` there reads under the person's own settings, and [rules]
    /// (instance_types, max_volume_size, max_idle_timeout, required_tags) it checks before launching; `none` removes it.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["remove", "kms_key", "ecr"])]
    pub team_defaults: Option<PathBuf>,
    /// Only keep a monthly AWS Budget of this many US dollars for everything tagged skiff:workspace, alerting
    /// --alert-email at 80% spent and 100% forecast; run again to change it, `none` removes it.
    #[arg(long, value_name = "USD", conflicts_with_all = ["remove", "kms_key", "ecr", "team_defaults"])]
    pub budget: Option<String>,
    /// Where the budget's alerts go (with --budget).
    #[arg(long, value_name = "ADDRESS", requires = "budget")]
    pub alert_email: Option<String>,
    /// The region to call (IAM is global; any enabled region does) [default: the saved AWS settings'].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// AWS profile for credentials.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
}

/// `skiff enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The workspace.
    pub name: String,
    /// Whose workspace it is (its `skiff:owner`, an aws:userid) [default: yours]; another's needs --operator.
    #[arg(long, value_name = "USERID")]
    pub owner: Option<String>,
    /// Enroll into someone else's workspace, with the operator policy of `skiff aws-policy --admin`.
    #[arg(long)]
    pub operator: bool,
    /// The region to look in [default: the saved AWS settings'].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// AWS profile for credentials.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
}

/// `skiff list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also show other people's AWS workspaces.
    #[arg(long)]
    pub all: bool,
    /// Name the workspaces stopped for longer than this, whose disks still cost storage (`30d`, `12h`).
    #[arg(long, value_name = "DURATION", default_value = "14d")]
    pub stale: String,
}

/// `skiff status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The workspace.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// AWS: this owner's workspace (its `skiff:owner`, as `list --all` shows), with the operator policy of
    /// `skiff aws-policy --admin`.
    #[arg(long, value_name = "USERID")]
    pub owner: Option<String>,
    #[command(flatten)]
    pub agent: AgentOptions,
}

/// `skiff exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The workspace.
    pub name: String,
    /// Run as this user instead of the workspace's remote user.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Run in this folder instead of the workspace folder.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Set an environment variable (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Give the command a terminal (the default when both stdin and stdout are terminals).
    #[arg(short = 't', long, conflicts_with = "no_tty")]
    pub tty: bool,
    /// Never give the command a terminal.
    #[arg(short = 'T', long)]
    pub no_tty: bool,
    #[command(flatten)]
    pub keys: KeyForwarding,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
    #[command(flatten)]
    pub credentials: CredentialOptions,
    #[command(flatten)]
    pub start: StartOptions,
    #[command(flatten)]
    pub agent: AgentOptions,
}

/// `skiff ssh`.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// The workspace.
    pub name: String,
    /// Log in as this user instead of the workspace's remote user.
    #[arg(short, long)]
    pub user: Option<String>,
    #[command(flatten)]
    pub keys: KeyForwarding,
    #[command(flatten)]
    pub credentials: CredentialOptions,
    #[command(flatten)]
    pub start: StartOptions,
    #[command(flatten)]
    pub agent: AgentOptions,
}

/// `skiff stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// The workspace.
    pub name: String,
    /// AWS: stop this owner's workspace (its `skiff:owner`, as `list --all` shows), with the operator policy of
    /// `skiff aws-policy --admin`.
    #[arg(long, value_name = "USERID")]
    pub owner: Option<String>,
}

/// `skiff sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The workspace.
    pub name: String,
    /// Send this machine's version of files changed on both sides (and remove those deleted here but changed there).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub start: StartOptions,
    #[command(flatten)]
    pub agent: AgentOptions,
}

/// `skiff delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The workspace.
    pub name: String,
    /// Do not ask for confirmation, even when the workspace's files hold uncommitted or unpushed work.
    #[arg(short, long)]
    pub yes: bool,
    /// AWS: delete this owner's workspace (its `skiff:owner`, as `list --all` shows), with the operator policy of
    /// `skiff aws-policy --admin`.
    #[arg(long, value_name = "USERID")]
    pub owner: Option<String>,
    #[command(flatten)]
    pub agent: AgentOptions,
}

/// `skiff prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Delete the workspaces stopped for longer than this (`30d`, `12h`).
    #[arg(long, value_name = "DURATION")]
    pub stopped_for: String,
    /// Do not ask before deleting the workspaces shown; work in their files that exists nowhere else still keeps a
    /// workspace (`skiff delete NAME --yes` deletes one anyway).
    #[arg(short, long)]
    pub yes: bool,
}

/// `skiff logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The workspace.
    pub name: String,
    /// Keep printing new output.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub tail: u32,
    /// AWS: show the instance's boot progress from its serial console instead.
    #[arg(long)]
    pub boot: bool,
    #[command(flatten)]
    pub start: StartOptions,
    #[command(flatten)]
    pub agent: AgentOptions,
}

/// `skiff ssh-config`.
#[derive(Debug, Args)]
pub struct SshConfigArgs {
    /// The workspaces to write entries for [default: all of them].
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Print the managed block instead of writing it.
    #[arg(long)]
    pub print: bool,
    /// The ssh configuration file to keep the block in [default: ~/.ssh/config].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Have ssh forward this machine's SSH agent into the dev container (`ForwardAgent yes`), so git over SSH and
    /// SSH commit signing there use the keys of this machine's agent; off unless asked, as in OpenSSH.
    #[arg(long)]
    pub forward_agent: bool,
    #[command(flatten)]
    pub agent: AgentOptions,
}

/// `skiff proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The workspace.
    pub name: String,
    #[command(flatten)]
    pub credentials: CredentialOptions,
    #[command(flatten)]
    pub start: StartOptions,
    #[command(flatten)]
    pub agent: AgentOptions,
}

/// `skiff code`.
#[derive(Debug, Args)]
pub struct CodeArgs {
    /// The workspace.
    pub name: String,
    /// The editor: code (VS Code), insiders (VS Code Insiders) or cursor.
    #[arg(long, value_enum, value_name = "EDITOR", conflicts_with = "insiders")]
    pub editor: Option<Editor>,
    /// VS Code Insiders (as --editor insiders).
    #[arg(long)]
    pub insiders: bool,
    #[command(flatten)]
    pub start: StartOptions,
    #[command(flatten)]
    pub agent: AgentOptions,
}

/// A Remote-SSH editor `skiff code` opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Editor {
    /// VS Code (`code`).
    Code,
    /// VS Code Insiders (`code-insiders`).
    Insiders,
    /// Cursor (`cursor`).
    Cursor,
}

impl CodeArgs {
    /// The editor asked for; VS Code by default.
    pub fn editor(&self) -> Editor {
        match (self.editor, self.insiders) {
            (Some(editor), _) => editor,
            (None, true) => Editor::Insiders,
            (None, false) => Editor::Code,
        }
    }
}

/// `skiff tunnel-daemon`.
#[derive(Debug, Args)]
pub struct TunnelDaemonArgs {
    /// The workspace.
    pub name: String,
    #[command(flatten)]
    pub agent: AgentOptions,
}
