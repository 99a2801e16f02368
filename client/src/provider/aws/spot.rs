//! Spot workspaces (`up --spot`): the persistent spot request RunInstances makes beside the instance, cancelled by
//! `delete` before the instance is terminated (a persistent request left open launches a new instance for the one
//! terminated), and an interruption told apart from a stop, since only EC2 may start an interrupted spot instance
//! again: it does so when capacity returns, and `up` says so instead of failing on StartInstances.

use super::lifecycle::InstanceSummary;
use super::{Aws, TAG_OWNER, TAG_WORKSPACE, aws_error, filter};

/// EC2's `StateReason` code for a spot instance it stopped because it needed the capacity back.
pub const INTERRUPTED_STOP: &str = "Server.SpotInstanceShutdown";

/// What a spot request's status says (`Status.Code`, `Status.Message`), for telling the user why an interrupted
/// workspace is still stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestStatus {
    pub request_id: String,
    pub code: String,
    pub message: String,
}

impl InstanceSummary {
    /// Whether EC2 stopped this spot instance to reclaim its capacity (as opposed to `skiff stop` or the idle stop).
    pub fn interrupted(&self) -> bool {
        self.state == "stopped" && self.state_reason.as_deref() == Some(INTERRUPTED_STOP)
    }
}

/// The error for `up` (or a command starting the workspace) on an interrupted spot instance: only EC2 may start it
/// again, so what the user can do is wait, or make it on-demand.
pub fn interrupted_error(
    instance: &InstanceSummary,
    status: Option<&RequestStatus>,
) -> anyhow::Error {
    let workspace = &instance.workspace;
    let request = status.map_or_else(String::new, |status| {
        format!(
            " (spot request {}: {}{}{})",
            status.request_id,
            status.code,
            if status.message.is_empty() { "" } else { ": " },
            status.message
        )
    });
    let zone = instance
        .availability_zone
        .as_deref()
        .map_or_else(String::new, |zone| format!(" in {zone}"));
    anyhow::anyhow!(
        "workspace {workspace}'s spot instance {} was stopped by EC2 to reclaim {} capacity{zone}{request}; \
         only EC2 can start an interrupted spot instance, and it does so when capacity returns (its disk is kept): \
         run `skiff up` again later, or `skiff delete {workspace}` and `skiff up` without --spot for an on-demand one",
        instance.instance_id,
        instance.instance_type,
    )
}

impl Aws {
    /// The workspace's spot requests that still hold capacity or may launch (open, active or disabled): those
    /// tagged with the workspace and owner (RunInstances tags them), and those its instances name.
    pub async fn spot_requests(
        &self,
        workspace: &str,
        owner: &str,
        instances: &[InstanceSummary],
    ) -> anyhow::Result<Vec<String>> {
        let output = self
            .ec2
            .describe_spot_instance_requests()
            .filters(filter(&format!("tag:{TAG_WORKSPACE}"), workspace))
            .filters(filter(&format!("tag:{TAG_OWNER}"), owner))
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("state")
                    .values("open")
                    .values("active")
                    .values("disabled")
                    .build(),
            )
            .send()
            .await
            .map_err(|error| {
                aws_error(
                    &format!(
                        "finding workspace {workspace}'s spot requests (a policy from before skiff cancelled them lacks ec2:DescribeSpotInstanceRequests and ec2:CancelSpotInstanceRequests: have an administrator apply `skiff aws-policy` again)"
                    ),
                    &error,
                )
            })?;
        let mut ids: Vec<String> = output
            .spot_instance_requests
            .unwrap_or_default()
            .into_iter()
            .filter_map(|request| request.spot_instance_request_id)
            .chain(
                instances
                    .iter()
                    .filter_map(|instance| instance.spot_request.clone()),
            )
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Cancels `ids` (see [`Aws::spot_requests`]), so terminating their instances launches nothing new.
    pub async fn cancel_spot_requests(&self, ids: &[String]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.ec2
            .cancel_spot_instance_requests()
            .set_spot_instance_request_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|error| {
                aws_error(
                    &format!("cancelling spot request {}", ids.join(", ")),
                    &error,
                )
            })?;
        Ok(())
    }

    /// The status of `instance`'s spot request, when it has one AWS describes; `None` when it cannot be read
    /// (the error message then goes without it, never fails for it).
    pub async fn spot_status(&self, instance: &InstanceSummary) -> Option<RequestStatus> {
        let id = instance.spot_request.as_deref()?;
        let output = self
            .ec2
            .describe_spot_instance_requests()
            .spot_instance_request_ids(id)
            .send()
            .await
            .inspect_err(|error| {
                tracing::debug!(
                    "reading spot request {id}: {}",
                    aws_sdk_ec2::error::DisplayErrorContext(error)
                );
            })
            .ok()?;
        let request = output.spot_instance_requests?.into_iter().next()?;
        let status = request.status?;
        Some(RequestStatus {
            request_id: id.to_owned(),
            code: status.code.unwrap_or_default(),
            message: status.message.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(state: &str, reason: Option<&str>) -> InstanceSummary {
        InstanceSummary {
            workspace: "app".into(),
            owner: "AROA:alice".into(),
            region: "eu-west-1".into(),
            instance_id: "i-0123".into(),
            state: state.into(),
            instance_type: "t3.large".into(),
            image_id: "ami-1".into(),
            availability_zone: Some("eu-west-1b".into()),
            private_ip: None,
            launched: None,
            started_unix: None,
            volume_gib: None,
            volume_since: None,
            stopped_since: None,
            dns_name: None,
            dns_zone: None,
            client_token: None,
            spot_request: Some("sir-abc".into()),
            spot: true,
            state_reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn only_a_stop_by_ec2_for_capacity_is_an_interruption() {
        assert!(instance("stopped", Some(INTERRUPTED_STOP)).interrupted());
        assert!(!instance("stopped", Some("Client.UserInitiatedShutdown")).interrupted());
        assert!(!instance("stopped", None).interrupted());
        // Started again by EC2: the reason may linger, the instance runs.
        assert!(!instance("running", Some(INTERRUPTED_STOP)).interrupted());
    }

    #[test]
    fn the_interruption_error_says_why_and_what_to_do() {
        let status = RequestStatus {
            request_id: "sir-abc".into(),
            code: "instance-stopped-no-capacity".into(),
            message: "There is no Spot capacity available that matches your request.".into(),
        };
        let error = interrupted_error(&instance("stopped", Some(INTERRUPTED_STOP)), Some(&status))
            .to_string();
        for part in [
            "workspace app's spot instance i-0123 was stopped by EC2 to reclaim t3.large capacity in eu-west-1b",
            "(spot request sir-abc: instance-stopped-no-capacity: There is no Spot capacity",
            "only EC2 can start an interrupted spot instance",
            "`skiff delete app` and `skiff up` without --spot",
        ] {
            assert!(error.contains(part), "{part:?} in {error}");
        }
        let bare =
            interrupted_error(&instance("stopped", Some(INTERRUPTED_STOP)), None).to_string();
        assert!(!bare.contains("spot request"), "{bare}");
    }
}
