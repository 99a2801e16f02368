//! Another laptop: `skiff enroll NAME` adds this machine's client certificate to the workspace's agent through
//! SSM Run Command (`AWS-RunShellScript`). The command carries only the certificate (public) and a fixed
//! script that writes it into the agent's trust folder, which the agent re-reads without a restart. IAM, not a
//! shared secret, decides who may do this: the developer's policy allows Run Command only on the caller's own
//! instances, the operator's on every workspace.
//!
//! skiff does not read the command's result back: `ssm:GetCommandInvocation` has no resource-level permission, so
//! allowing it would let every developer read every command's output in the account. The first connection of
//! this machine shows whether the agent trusts it.

use super::{Aws, aws_error};

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
