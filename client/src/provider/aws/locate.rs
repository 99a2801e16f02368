//! Finding an AWS workspace by name: through this machine's record (region, owner), or, on a machine that has
//! no record of it, by its tags in the configured regions. AWS is the record, so `list`, `status`, `stop` and
//! `delete` work from any machine.

use anyhow::Context as _;

use super::Aws;
use super::config::{AwsOptions, AwsSettings};
use super::lifecycle::InstanceSummary;
use crate::workspace::{ProviderKind, Store, Workspace};

/// The regions `list` and lookups by name ask: the settings' region, `list_regions`, and local records'.
pub(crate) fn regions(settings: &AwsSettings, store: &Store) -> Vec<String> {
    let mut regions: Vec<String> = settings
        .region_or_error()
        .ok()
        .into_iter()
        .chain(settings.list_regions.iter().cloned())
        .chain(
            store
                .all()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|workspace| workspace.record.aws.map(|placement| placement.region)),
        )
        .collect();
    regions.sort();
    regions.dedup();
    regions
}

/// Whether anything says AWS is in use here: saved settings, `SKIFF_AWS_REGION`, or an AWS workspace.
pub(crate) fn aws_in_use(store: &Store) -> bool {
    AwsSettings::configured(store.root())
        || store
            .all()
            .unwrap_or_default()
            .iter()
            .any(|workspace| workspace.record.provider == ProviderKind::Aws)
}

/// A workspace found on AWS.
#[derive(Debug)]
pub(crate) struct Located {
    /// The clients of the workspace's region.
    pub(crate) aws: Aws,
    /// Whose workspace it is (`skiff:owner`).
    pub(crate) owner: String,
    /// Its instance, if it has one.
    pub(crate) instance: Option<InstanceSummary>,
    /// This machine's record of it, if it has one.
    pub(crate) record: Option<Workspace>,
}

/// Finds `name` on AWS: through its local record, else by tag in the configured regions. `None` if the name
/// is a local workspace or AWS does not know it.
pub(crate) async fn locate(name: &str) -> anyhow::Result<Option<Located>> {
    locate_owned(name, None).await
}

/// [`locate`] for `owner`'s workspace (an operator's clean-up) when given: a local record of that name counts
/// only if it is that owner's.
pub(crate) async fn locate_owned(
    name: &str,
    owner: Option<&str>,
) -> anyhow::Result<Option<Located>> {
    let store = Store::open_default()?;
    let record_owner = |workspace: &Workspace| {
        workspace
            .record
            .aws
            .as_ref()
            .map(|placement| placement.owner.clone())
    };
    match store.get(name) {
        Ok(workspace)
            if owner.is_some_and(|owner| record_owner(&workspace).as_deref() != Some(owner)) => {}
        Ok(workspace) if workspace.record.provider == ProviderKind::Aws => {
            let placement = workspace.record.aws.clone().with_context(|| {
                format!("workspace record {name} says aws but has no region; remove its folder in the skiff home")
            })?;
            let aws = Aws::connect(&placement.region, placement.profile.as_deref()).await?;
            let instance = aws.find(name, &placement.owner).await?;
            return Ok(Some(Located {
                aws,
                owner: placement.owner,
                instance,
                record: Some(workspace),
            }));
        }
        Ok(_) => return Ok(None),
        Err(_) => {}
    }
    if !AwsSettings::configured(store.root()) {
        return Ok(None);
    }
    let settings = AwsSettings::resolve(store.root(), &AwsOptions::default())?;
    for region in regions(&settings, &store) {
        let aws = Aws::connect(&region, settings.profile()).await?;
        let owner = match owner {
            Some(owner) => owner.to_owned(),
            None => aws.caller().await?.user_id,
        };
        if let Some(instance) = aws.find(name, &owner).await? {
            return Ok(Some(Located {
                aws,
                owner,
                instance: Some(instance),
                record: None,
            }));
        }
    }
    Ok(None)
}
