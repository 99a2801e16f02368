//! `skiff ssh NAME`: an interactive login shell in the dev container, with a terminal that follows the
//! local window's size. No SSH server is involved; the shell runs through the agent.

use skiff::api::{ExecSpec, WindowSize};

use crate::cli::SshArgs;
use crate::terminal;

pub async fn run(args: SshArgs) -> anyhow::Result<i32> {
    crate::ssh_agent::check(args.keys).await?;
    let workspace = super::find_workspace(&args.name)?;
    let mut client = super::connect(&workspace, &args.agent, &args.start).await?;
    let mut env = std::collections::BTreeMap::new();
    let forwarded =
        crate::ssh_agent::forward_all(&client, args.user.as_deref(), args.keys, &mut env).await?;
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
            workspace.folder.clone(),
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
        env,
        window: Some(terminal::window_size().unwrap_or(WindowSize {
            columns: 80,
            rows: 24,
        })),
        stdin: true,
    };
    let credentials = super::git_credentials(&workspace, &client, &args.credentials);
    let code = super::session::attach(&mut client, spec).await;
    drop((forwards, credentials, forwarded));
    code
}
