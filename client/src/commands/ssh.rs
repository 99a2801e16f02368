//! `skiff ssh NAME`: an interactive login shell in the dev container, with a terminal that follows the
//! local window's size. No SSH server is involved; the shell runs through the agent.

use skiff::api::{ExecSpec, WindowSize};

use crate::cli::SshArgs;
use crate::ssh_agent::Agent;
use crate::terminal;

pub async fn run(args: SshArgs) -> anyhow::Result<i32> {
    if args.forward_agent {
        crate::ssh_agent::local_socket(Agent::Ssh).await?;
    }
    if args.gpg {
        crate::ssh_agent::local_socket(Agent::Gpg).await?;
    }
    let workspace = super::find_workspace(&args.name)?;
    let mut client = super::connect(&workspace, &args.agent, &args.start).await?;
    let forwarded = if args.forward_agent {
        Some(crate::ssh_agent::forward(&client, args.user.clone(), Agent::Ssh).await?)
    } else {
        None
    };
    let gpg = if args.gpg {
        Some(crate::ssh_agent::forward(&client, args.user.clone(), Agent::Gpg).await?)
    } else {
        None
    };
    // While the shell runs, the configuration's ports and ports that start listening are forwarded: the set ends
    // the forwards when the shell ends.
    let mut forwards = tokio::task::JoinSet::new();
    if let Ok(loaded) = skiff::devcontainer::load(
        &workspace.record.local_folder,
        Some(&workspace.record.config_file),
    ) {
        let plan = super::ports::PortPlan::from_config(&loaded.config);
        forwards.spawn(super::ports::forward_while_attached(
            client.clone(),
            plan,
            |line| {
                // The terminal is in raw mode: return the carriage explicitly.
                eprint!("\r\nskiff: {line}\r\n");
            },
        ));
    }
    let spec = ExecSpec {
        command: Vec::new(),
        tty: true,
        user: args.user,
        working_dir: None,
        env: forwarded
            .iter()
            .map(|forwarded| ("SSH_AUTH_SOCK".to_owned(), forwarded.socket.clone()))
            .collect(),
        window: Some(terminal::window_size().unwrap_or(WindowSize {
            columns: 80,
            rows: 24,
        })),
        stdin: true,
    };
    let credentials = super::git_credentials(&workspace, &client, &args.credentials);
    let code = super::session::attach(&mut client, spec).await;
    drop((forwards, credentials, forwarded, gpg));
    code
}
