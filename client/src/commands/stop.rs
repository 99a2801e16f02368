//! `skiff stop NAME`: stops the workspace (its dev container and agent, or its machine); files and state stay for
//! the next `up`.

use crate::cli::{AgentOptions, StopArgs};
use crate::provider::Provider;

pub async fn run(args: StopArgs) -> anyhow::Result<i32> {
    Provider::find(&args.name, args.owner.as_deref(), &AgentOptions::default())
        .await?
        .stop(&args.name)
        .await
}
