//! `skiff exec NAME [--] CMD…`: runs a command in the dev container; stdout and stderr stay separate,
//! stdin is passed through, and the command's exit code becomes skiff's.

use std::collections::BTreeMap;

use skiff::api::ExecSpec;

use crate::cli::ExecArgs;
use crate::terminal;

pub async fn run(args: ExecArgs) -> anyhow::Result<i32> {
    let mut env = BTreeMap::new();
    for pair in &args.env {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--env {pair:?}: write KEY=VALUE"))?;
        env.insert(key.to_owned(), value.to_owned());
    }
    crate::ssh_agent::check(args.keys).await?;
    let workspace = super::find_workspace(&args.name)?;
    let mut client = super::connect(&workspace, &args.agent, &args.start).await?;
    let tty = args.tty || (!args.no_tty && terminal::is_interactive());
    let forwarded =
        crate::ssh_agent::forward_all(&client, args.user.as_deref(), args.keys, &mut env).await?;
    let spec = ExecSpec {
        command: args.command,
        tty,
        user: args.user,
        working_dir: args.workdir,
        env,
        window: if tty { terminal::window_size() } else { None },
        stdin: true,
    };
    let credentials = super::git_credentials(&workspace, &client, &args.credentials);
    let code = super::session::attach(&mut client, spec).await;
    drop((credentials, forwarded));
    code
}
