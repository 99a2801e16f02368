//! `skiff ssh NAME`: an interactive login shell in the dev container, with a terminal that follows the
//! local window's size. No SSH server is involved; the shell runs through the agent.

use skiff::api::{ExecSpec, WindowSize};

use crate::cli::SshArgs;
use crate::terminal;

pub async fn run(args: SshArgs) -> anyhow::Result<i32> {
    let workspace = super::find_workspace(&args.name)?;
    let mut client = super::agent(&workspace, &args.agent).await?;
    let spec = ExecSpec {
        command: Vec::new(),
        tty: true,
        user: args.user,
        working_dir: None,
        env: Default::default(),
        window: Some(terminal::window_size().unwrap_or(WindowSize {
            columns: 80,
            rows: 24,
        })),
        stdin: true,
    };
    super::session::attach(&mut client, spec).await
}
