//! Another laptop: `skiff enroll NAME` adds this machine's client certificate to the workspace's agent through
//! SSM Run Command (`AWS-RunShellScript`). The command carries only the certificate (public) and a fixed
//! script that writes it into the agent's trust folder, which the agent re-reads without a restart. IAM, not a
//! shared secret, decides who may do this: the developer's policy allows Run Command only on the caller's own
//! instances, the operator's on every workspace.
//!
//! skiff does not read the command's result back: `ssm:GetCommandInvocation` has no resource-level permission, so
//! allowing it would let every developer read every command's output in the account. The first connection of
//! this machine shows whether the agent trusts it.

use anyhow::Context as _;

use super::config::{AwsOptions, AwsSettings};
use super::{Aws, aws_error};
use crate::workspace::{AwsPlacement, ProviderKind, Store, WorkspaceRecord};

/// The agent's trust folder on an instance (`state_dir` in user-data's `skiffd.toml`, then `trusted-clients`).
pub const TRUST_FOLDER: &str = "/var/lib/skiffd/trusted-clients";

/// The file name of an enrolled certificate: stable for one certificate, so enrolling twice changes nothing.
pub fn certificate_file_name(certificate_pem: &str) -> String {
    format!(
        "enrolled-{}.pem",
        &super::launch::short_hash(certificate_pem.trim())[..16]
    )
}

/// The shell script Run Command executes: the certificate and nothing else that varies.
pub fn enroll_script(certificate_pem: &str) -> anyhow::Result<String> {
    let certificate = certificate_pem.trim().replace('\r', "");
    let one_certificate = certificate.starts_with("-----BEGIN CERTIFICATE-----")
        && certificate.ends_with("-----END CERTIFICATE-----")
        && certificate.matches("-----BEGIN").count() == 1
        && certificate
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "+/=- \n".contains(character));
    if !one_certificate {
        anyhow::bail!("the client certificate to enroll is not exactly one PEM certificate");
    }
    let file = certificate_file_name(&certificate);
    Ok(format!(
        "set -eu\n\
         dir={TRUST_FOLDER}\n\
         install -d -m 0700 \"$dir\"\n\
         cat >\"$dir/{file}.new\" <<'SKIFF_CERTIFICATE'\n\
         {certificate}\n\
         SKIFF_CERTIFICATE\n\
         chmod 0644 \"$dir/{file}.new\"\n\
         mv \"$dir/{file}.new\" \"$dir/{file}\"\n\
         echo \"skiff: enrolled {file}\"\n"
    ))
}

impl Aws {
    /// Sends `script` to the instance with `AWS-RunShellScript`; the command's id.
    pub async fn run_shell_script(
        &self,
        instance_id: &str,
        workspace: &str,
        script: &str,
    ) -> anyhow::Result<String> {
        let sent = self
            .ssm
            .send_command()
            .document_name(super::policy::RUN_COMMAND_DOCUMENT)
            .instance_ids(instance_id)
            .comment(format!("skiff enroll {workspace}"))
            .timeout_seconds(60)
            .parameters("commands", vec![script.to_owned()])
            .send()
            .await
            .map_err(|error| {
                aws_error(
                    &format!(
                        "sending the certificate to {instance_id} with Run Command (is it yours, running and online in Systems Manager? `skiff up {workspace}` starts it)"
                    ),
                    &error,
                )
            })?;
        sent.command
            .and_then(|command| command.command_id)
            .ok_or_else(|| anyhow::anyhow!("SendCommand returned no command id"))
    }
}

/// `skiff enroll NAME`: makes this machine a client of a workspace made elsewhere: your own, or with `operator`
/// (the operator policy of `aws-policy --admin`) anyone's, named by `owner`. The owner is checked here before
/// anything is sent, and by AWS again (the developer's policy allows Run Command only on the caller's instances).
pub async fn command(args: &crate::cli::EnrollArgs) -> anyhow::Result<i32> {
    let name = args.name.as_str();
    let owner = args.owner.as_deref();
    let operator = args.operator;
    let region = args.region.as_deref();
    let profile = args.profile.as_deref();
    let store = Store::open_default()?;
    if let Ok(existing) = store.get(name) {
        anyhow::bail!(
            "this machine already has workspace {name} ({}); nothing to enroll",
            existing.record.provider
        );
    }
    let options = AwsOptions {
        region: region.map(str::to_owned),
        profile: profile.map(str::to_owned),
        ..AwsOptions::default()
    };
    let settings = AwsSettings::resolve(store.root(), &options)?;
    let region = settings.region_or_error()?;
    let aws = Aws::connect(&region, settings.profile()).await?;
    let caller = aws.caller().await?;
    let owner = match owner {
        Some(owner) if owner != caller.user_id && !operator => anyhow::bail!(
            "workspace {name} of {owner} is not yours ({}): only its owner enrolls machines into it, or an operator with `--operator` (the policy of `skiff aws-policy --admin`)",
            caller.user_id
        ),
        Some(owner) => owner.to_owned(),
        None => caller.user_id.clone(),
    };
    let instance = aws.find(name, &owner).await?.with_context(|| {
        format!(
            "no workspace {name} of {owner} in {region}; `skiff list --all` shows everyone's, pass --owner USERID or --region REGION"
        )
    })?;
    if instance.owner != owner {
        anyhow::bail!(
            "instance {} of workspace {name} belongs to {:?}, not {owner}; skiff sends it nothing",
            instance.instance_id,
            instance.owner
        );
    }
    if instance.state != "running" {
        anyhow::bail!(
            "workspace {name}'s instance {} is {}; Run Command needs it running: `skiff up` it from its first machine, then enroll again",
            instance.instance_id,
            instance.state
        );
    }
    let workspace = store.create(WorkspaceRecord {
        name: name.to_owned(),
        provider: ProviderKind::Aws,
        local_folder: std::path::PathBuf::new(),
        config_file: std::path::PathBuf::new(),
        idle_timeout: "30m".into(),
        aws: Some(AwsPlacement {
            region: region.clone(),
            instance_id: Some(instance.instance_id.clone()),
            owner: owner.clone(),
            profile: settings.profile.clone(),
            files_folder: None,
        }),
        auto_start: true,
        git_credentials: true,
        dotfiles: None,
    })?;
    let certificate = workspace.identity()?.certificate_pem;
    let result = async {
        let script = enroll_script(&certificate)?;
        aws.run_shell_script(&instance.instance_id, name, &script)
            .await
    }
    .await;
    let command_id = match result {
        Ok(command_id) => command_id,
        Err(error) => {
            let _ = workspace.remove();
            return Err(error);
        }
    };
    eprintln!(
        "enrolled this machine in workspace {name} (instance {} in {region}): Run Command {command_id} adds {} to its agent's trusted clients within seconds; `skiff status {name}` shows the agent once it has",
        instance.instance_id,
        certificate_file_name(&certificate)
    );
    Ok(0)
}
