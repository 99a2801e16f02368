//! `skiff provider aws …`: saves the AWS provider's defaults in the skiff home (never credentials).

use crate::cli::{ProviderArgs, ProviderCommand};

pub async fn run(args: ProviderArgs) -> anyhow::Result<i32> {
    match &args.provider {
        ProviderCommand::Aws(aws) => crate::provider::aws::commands::provider(aws).await,
    }
}
