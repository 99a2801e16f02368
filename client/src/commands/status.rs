//! `skiff status NAME`: the workspace, its agent and the idle countdown; `--json` for scripts.
//! The provider that holds the workspace reports it.

use crate::cli::StatusArgs;
use crate::provider::Provider;

pub async fn run(args: StatusArgs) -> anyhow::Result<i32> {
    Provider::find(&args.name, args.owner.as_deref(), &args.agent)
        .await?
        .status(&args.name, args.json)
        .await
}
