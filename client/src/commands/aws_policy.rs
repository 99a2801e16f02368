//! `skiff aws-policy [--admin]`: prints the developer's IAM policy (or the operator's), as JSON for
//! `aws iam create-policy`.

use crate::cli::AwsPolicyArgs;
use crate::provider::aws::policy;

pub fn run(args: &AwsPolicyArgs) -> anyhow::Result<i32> {
    let mut options = policy::PolicyOptions::new(args.dns_zone.as_deref(), &args.tag_key)?;
    if let Some(key) = &args.kms_key {
        options = options.with_kms_key(key)?;
    }
    let document = if args.admin {
        policy::operator_policy(&options)
    } else {
        policy::developer_policy(&options)
    };
    println!("{}", policy::policy_text(&document));
    Ok(0)
}
