//! `skiff aws-setup [--remove]`: makes (or removes) skiff's instance role, its permissions boundary and its instance
//! profile in the account of the given credentials, and says what it did. Run once per account by someone allowed
//! to manage IAM; developers' policies have no IAM write permission.

use crate::cli::AwsSetupArgs;
use crate::provider::aws::Aws;
use crate::provider::aws::config::{AwsOptions, AwsSettings};
use crate::workspace::Store;

pub async fn run(args: &AwsSetupArgs) -> anyhow::Result<i32> {
    let store = Store::open_default()?;
    let options = AwsOptions {
        region: args.region.clone(),
        profile: args.profile.clone(),
        ..AwsOptions::default()
    };
    let settings = AwsSettings::resolve(store.root(), &options)?;
    let region = settings.region_or_error()?;
    let aws = Aws::connect(&region, settings.profile()).await?;
    let caller = aws.caller().await?;
    let report = if args.remove {
        aws.remove_setup().await?
    } else {
        aws.setup(args.kms_key.as_deref()).await?
    };
    for line in &report {
        println!("{line}");
    }
    eprintln!(
        "{} in account {} as {}",
        if args.remove {
            "removed skiff's IAM role, boundary and instance profile"
        } else {
            "skiff's IAM role and instance profile are ready; developers need only `skiff aws-policy`"
        },
        caller.account,
        caller.arn
    );
    Ok(0)
}
