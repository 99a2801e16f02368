//! `skiff delete NAME`: removes the workspace's dev container, the image built for it, its machine where it has
//! one of its own, and the workspace's keys and state. Asks first on a terminal. The workspace's own folder (the
//! source) is never touched; files that live with the agent (a workspace cloned from a git URL) are checked for
//! uncommitted and unpushed work first (`files::check_before_delete`), and without `--yes` such work keeps the
//! workspace.

use crate::cli::DeleteArgs;
use crate::provider::{Confirmation, Provider};

pub async fn run(args: DeleteArgs) -> anyhow::Result<i32> {
    Provider::find(&args.name, args.owner.as_deref(), &args.agent)
        .await?
        .without_activity()
        .delete(
            &args.name,
            if args.yes {
                Confirmation::Yes
            } else {
                Confirmation::Ask
            },
        )
        .await
}
