//! Another laptop: `skiff enroll NAME` adds this machine's client certificate to the workspace's agent through
//! SSM Run Command (`AWS-RunShellScript`). The command carries only the certificate (public) and a fixed
//! script that writes it into the agent's trust folder, which the agent re-reads without a restart. IAM, not a
//! shared secret, decides who may do this.

use std::time::{Duration, Instant};

use super::{Aws, aws_error};

/// The agent's trust folder on an instance (`state_dir` in user-data's `skiffd.toml`, then `trusted-clients`).
pub const TRUST_FOLDER: &str = "/var/lib/skiffd/trusted-clients";

/// How long the Run Command may take before skiff gives up waiting.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// Runs `script` on the instance with `AWS-RunShellScript` and waits for it to succeed.
    pub async fn run_shell_script(
        &self,
        instance_id: &str,
        workspace: &str,
        script: &str,
    ) -> anyhow::Result<()> {
        let sent = self
            .ssm
            .send_command()
            .document_name("AWS-RunShellScript")
            .instance_ids(instance_id)
            .comment(format!("skiff enroll {workspace}"))
            .timeout_seconds(60)
            .parameters("commands", vec![script.to_owned()])
            .send()
            .await
            .map_err(|error| {
                aws_error(
                    &format!(
                        "sending the certificate to {instance_id} with Run Command (is it running and online in Systems Manager? `skiff up {workspace}` starts it)"
                    ),
                    &error,
                )
            })?;
        let command_id = sent
            .command
            .and_then(|command| command.command_id)
            .ok_or_else(|| anyhow::anyhow!("SendCommand returned no command id"))?;
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let invocation = self
                .ssm
                .get_command_invocation()
                .command_id(&command_id)
                .instance_id(instance_id)
                .send()
                .await;
            match invocation {
                Ok(invocation) => {
                    let status = invocation
                        .status
                        .map(|status| status.as_str().to_owned())
                        .unwrap_or_default();
                    match status.as_str() {
                        "Success" => return Ok(()),
                        "Pending" | "InProgress" | "Delayed" => {}
                        _ => anyhow::bail!(
                            "Run Command {command_id} on {instance_id} ended {status}: {}",
                            invocation
                                .standard_error_content
                                .filter(|text| !text.trim().is_empty())
                                .unwrap_or_else(|| "no output".into())
                                .trim()
                        ),
                    }
                }
                // The invocation can take a moment to exist after SendCommand returns.
                Err(error)
                    if super::error_code(&error) == Some("InvocationDoesNotExist")
                        && started.elapsed() < Duration::from_secs(10) => {}
                Err(error) => {
                    return Err(aws_error(
                        &format!("reading Run Command {command_id}"),
                        &error,
                    ));
                }
            }
            if started.elapsed() > COMMAND_TIMEOUT {
                anyhow::bail!(
                    "Run Command {command_id} on {instance_id} did not finish within {} s; is the instance online in Systems Manager?",
                    COMMAND_TIMEOUT.as_secs()
                );
            }
        }
    }
}
