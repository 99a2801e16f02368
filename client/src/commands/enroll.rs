//! `skiff enroll NAME`: makes this machine a client of an AWS workspace made on another one, by adding this
//! machine's certificate to the agent's trust folder through SSM Run Command.

use crate::cli::EnrollArgs;

pub async fn run(args: EnrollArgs) -> anyhow::Result<i32> {
    crate::provider::aws::commands::enroll(
        &args.name,
        args.owner.as_deref(),
        args.operator,
        args.region.as_deref(),
        args.profile.as_deref(),
    )
    .await
}
