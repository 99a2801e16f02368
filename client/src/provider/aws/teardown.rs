//! Ending an AWS workspace: `stop` (the instance stops, its disk stays) and `delete` (the instance, its security
//! group, its DNS record and the local record go; skiff's IAM role stays).

use std::io::IsTerminal as _;

use super::locate::Located;
use crate::progress::Progress;

/// `skiff stop NAME` for an AWS workspace: stops the instance, whose disk stays. It may be another person's
/// workspace (`--owner`, an operator's, allowed by `aws-policy --admin` only).
pub(crate) async fn stop(located: Located, name: &str) -> anyhow::Result<i32> {
    let Some(instance) = &located.instance else {
        eprintln!("workspace {name} has no instance on AWS; nothing to stop");
        return Ok(0);
    };
    if let Some(record) = &located.record {
        super::connect::stop_daemon(record).await;
    }
    let progress = Progress::new();
    let stopped = located.aws.stop(instance, &progress).await?;
    progress.finish();
    eprintln!(
        "stopped workspace {name} (instance {}); its disk stays, `skiff up` starts it again",
        stopped.instance_id
    );
    Ok(0)
}

/// `skiff delete NAME` for an AWS workspace: terminates it, removes its security group, its DNS record and its
/// local record. skiff's IAM role stays: only `skiff aws-setup --remove`, by an IAM administrator, removes it.
/// It may be another person's workspace (`--owner`, an operator's clean-up, allowed by `aws-policy --admin` only).
pub(crate) async fn delete(
    located: Located,
    name: &str,
    confirmation: crate::provider::Confirmation,
    tunnel: crate::cli::TunnelChoice,
) -> anyhow::Result<i32> {
    let yes = confirmation.loses_work();
    // The workspace's files live on the instance: work there that exists nowhere else (uncommitted changes,
    // unpushed commits) goes with it, so it is checked first, through the tunnel.
    let mut confirmed = false;
    if let Some(record) = &located.record
        && let Some(instance) = &located.instance
        && record
            .record
            .aws
            .as_ref()
            .is_some_and(|placement| placement.files_folder.is_some())
    {
        use crate::files::DeleteDecision;
        if instance.state != "running" {
            if !yes {
                eprintln!(
                    "workspace {name} is {}, so its files on the instance cannot be checked for work that is nowhere else; `skiff up` it to check, or pass --yes to delete it anyway",
                    instance.state
                );
                return Ok(1);
            }
        } else {
            match super::connect::agent(record, tunnel).await {
                Ok(mut client) => {
                    match crate::files::check_before_delete(&mut client, name, yes).await? {
                        DeleteDecision::Refused => return Ok(1),
                        DeleteDecision::Confirmed => confirmed = true,
                        DeleteDecision::NothingToLose => {}
                    }
                }
                Err(error) if !yes => {
                    eprintln!(
                        "could not check workspace {name}'s files for work that is nowhere else ({error:#}); pass --yes to delete it anyway"
                    );
                    return Ok(1);
                }
                Err(_) => {}
            }
        }
    }
    if confirmation.asks() && !confirmed && std::io::stdin().is_terminal() {
        let question = format!(
            "Delete workspace {name} (instance {} in {}, its disk and security group)?",
            located
                .instance
                .as_ref()
                .map_or("none", |instance| instance.instance_id.as_str()),
            located.aws.region
        );
        if !crate::provider::confirm(&question)? {
            eprintln!("kept workspace {name}");
            return Ok(1);
        }
    }
    let progress = Progress::new();
    let deleted = located.aws.delete(name, &located.owner, &progress).await?;
    let (instances, groups) = (&deleted.instances, deleted.groups);
    progress.finish();
    if let Some(record) = located.record {
        super::connect::stop_daemon(&record).await;
        record.remove()?;
    }
    let mut records: String = deleted
        .spot_requests
        .iter()
        .map(|request| format!(", spot request {request} cancelled"))
        .collect();
    records.extend(
        deleted
            .records
            .iter()
            .map(|record| format!(", DNS record {record} removed")),
    );
    eprintln!(
        "deleted workspace {name} ({} instance{} terminated, {groups} security group{} removed{records})",
        instances.len(),
        if instances.len() == 1 { "" } else { "s" },
        if groups == 1 { "" } else { "s" },
    );
    Ok(0)
}
