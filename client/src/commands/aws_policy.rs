//! `skiff aws-policy`: prints the least-privilege IAM policy a skiff user needs, as JSON for `aws iam create-policy`.

pub fn run() -> anyhow::Result<i32> {
    println!("{}", crate::provider::aws::policy::policy_text());
    Ok(0)
}
