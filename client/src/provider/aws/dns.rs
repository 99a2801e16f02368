//! Optional DNS: an `A` record in a Route53 hosted zone the user names (`--dns-zone`) for the instance's
//! private address, so tools inside the VPC (or over a VPN into it) can reach a workspace by name.
//!
//! The record is `<workspace>.<owner>.<zone>`: the owner's part (the last part of the caller's ARN, such as
//! `alice` in `arn:aws:sts::…:assumed-role/Dev/alice`) keeps two people's `app` apart, as the `skiff:owner` tag
//! does for instances. The zone and the name are kept in the instance's tags (`skiff:dns-zone`,
//! `skiff:dns-name`, written at launch like every tag), so any machine that runs `up` keeps the record current and any machine that runs `delete`
//! removes it. `delete` removes a record only while it still points at the workspace's own address: a name
//! someone has since pointed elsewhere is left alone.

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};

use super::{Aws, aws_error};

/// The instance tag holding the hosted zone's id.
pub const TAG_DNS_ZONE: &str = "skiff:dns-zone";
/// The instance tag holding the record's name.
pub const TAG_DNS_NAME: &str = "skiff:dns-name";
/// The record's time to live: short, since an instance's address changes only when it is replaced.
const TTL_SECONDS: i64 = 60;

/// A hosted zone, found by id or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The bare id (`Z…`, without `/hostedzone/`).
    pub id: String,
    /// The zone's name with its final dot (`dev.example.com.`).
    pub name: String,
}

/// One DNS label made from `text`: lower case letters, digits and hyphens, at most 63 characters, never
/// starting or ending with a hyphen; `None` if nothing is left.
pub fn label(text: &str) -> Option<String> {
    let mapped: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character
            } else {
                '-'
            }
        })
        .collect();
    let trimmed: String = mapped.trim_matches('-').chars().take(63).collect();
    let trimmed = trimmed.trim_end_matches('-').to_owned();
    (!trimmed.is_empty()).then_some(trimmed)
}

/// The record name of `workspace` for the caller `owner` (an ARN) in `zone`.
pub fn record_name(workspace: &str, owner: &str, zone: &Zone) -> anyhow::Result<String> {
    let who = owner.rsplit(['/', ':']).next().unwrap_or(owner);
    let (Some(workspace_label), Some(owner_label)) = (label(workspace), label(who)) else {
        anyhow::bail!(
            "workspace {workspace:?} of {owner} makes no DNS name; rename the workspace with letters and digits"
        );
    };
    Ok(format!("{workspace_label}.{owner_label}.{}", zone.name))
}

fn bare_id(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_owned()
}

impl Aws {
    /// The hosted zone `given` names: an id (`Z…`) or a domain name. A name that matches more than one zone
    /// (a public and a private zone of the same name) must be given by id.
    pub async fn dns_zone(&self, given: &str) -> anyhow::Result<Zone> {
        let given = given.trim();
        // A zone's name has a dot (`dev.example.com`); an id (`Z0123…`, or `/hostedzone/Z0123…`) has none. A
        // dotless name is looked up as a name when no zone has it as its id.
        if !given.trim_end_matches('.').contains('.') || given.starts_with("/hostedzone/") {
            match self
                .route53
                .get_hosted_zone()
                .id(bare_id(given))
                .send()
                .await
            {
                Ok(answer) => {
                    let zone = answer.hosted_zone.ok_or_else(|| {
                        anyhow::anyhow!("--dns-zone {given}: Route53 returned no hosted zone")
                    })?;
                    return Ok(Zone {
                        id: bare_id(&zone.id),
                        name: zone.name,
                    });
                }
                Err(error)
                    if super::error_code(&error) == Some("NoSuchHostedZone")
                        && !given.starts_with("/hostedzone/") => {}
                Err(error) => {
                    return Err(aws_error(
                        &format!(
                            "--dns-zone {given}: reading the hosted zone (check the id with `aws route53 list-hosted-zones`)"
                        ),
                        &error,
                    ));
                }
            }
        }
        let wanted = format!("{}.", given.trim_end_matches('.')).to_ascii_lowercase();
        let answer = self
            .route53
            .list_hosted_zones_by_name()
            .dns_name(&wanted)
            .send()
            .await
            .map_err(|error| {
                aws_error(&format!("--dns-zone {given}: listing hosted zones"), &error)
            })?;
        let matching: Vec<Zone> = answer
            .hosted_zones
            .into_iter()
            .filter(|zone| zone.name.eq_ignore_ascii_case(&wanted))
            .map(|zone| Zone {
                id: bare_id(&zone.id),
                name: zone.name,
            })
            .collect();
        match matching.as_slice() {
            [zone] => Ok(zone.clone()),
            [] => anyhow::bail!(
                "--dns-zone {given}: no Route53 hosted zone has that name or id in this account; create it, or give a zone id (`aws route53 list-hosted-zones`)"
            ),
            several => anyhow::bail!(
                "--dns-zone {given}: {} hosted zones have that name ({}); give the zone id instead",
                several.len(),
                several
                    .iter()
                    .map(|zone| zone.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Points `name` in `zone_id` at `address` (create or update).
    pub async fn dns_upsert(&self, zone_id: &str, name: &str, address: &str) -> anyhow::Result<()> {
        self.dns_change(zone_id, ChangeAction::Upsert, name, address)
            .await
            .map_err(|error| error.context(format!("pointing {name} at {address}")))
    }

    /// The address `name` points at in `zone_id`, if it has an `A` record.
    pub async fn dns_lookup(&self, zone_id: &str, name: &str) -> anyhow::Result<Option<String>> {
        let answer = self
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(name)
            .start_record_type(RrType::A)
            .max_items(1)
            .send()
            .await
            .map_err(|error| aws_error(&format!("looking up {name} in zone {zone_id}"), &error))?;
        Ok(answer
            .resource_record_sets
            .into_iter()
            .find(|set| set.name.eq_ignore_ascii_case(name) && set.r#type == RrType::A)
            .and_then(|set| set.resource_records?.into_iter().next())
            .map(|record| record.value))
    }

    /// Removes `name` from `zone_id` if it still points at `address`; returns whether it did.
    pub async fn dns_remove(
        &self,
        zone_id: &str,
        name: &str,
        address: &str,
    ) -> anyhow::Result<bool> {
        match self.dns_lookup(zone_id, name).await? {
            Some(current) if current == address => {}
            _ => return Ok(false),
        }
        self.dns_change(zone_id, ChangeAction::Delete, name, address)
            .await
            .map_err(|error| error.context(format!("removing {name}")))?;
        Ok(true)
    }

    async fn dns_change(
        &self,
        zone_id: &str,
        action: ChangeAction,
        name: &str,
        address: &str,
    ) -> anyhow::Result<()> {
        let record = ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::A)
            .ttl(TTL_SECONDS)
            .resource_records(ResourceRecord::builder().value(address).build()?)
            .build()?;
        let batch = ChangeBatch::builder()
            .comment("skiff workspace address")
            .changes(
                Change::builder()
                    .action(action)
                    .resource_record_set(record)
                    .build()?,
            )
            .build()?;
        self.route53
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|error| aws_error(&format!("changing zone {zone_id}"), &error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_dns_safe() {
        assert_eq!(label("app").as_deref(), Some("app"));
        assert_eq!(label("My_App.v2").as_deref(), Some("my-app-v2"));
        assert_eq!(label("--x--").as_deref(), Some("x"));
        assert_eq!(label("___"), None);
        assert_eq!(label(&"a".repeat(80)).map(|label| label.len()), Some(63));
        assert_eq!(
            label(&format!("{}-b", "a".repeat(62))).as_deref(),
            Some("a".repeat(62).as_str())
        );
    }

    #[test]
    fn the_record_name_holds_the_workspace_and_its_owner() {
        let zone = Zone {
            id: "Z1".into(),
            name: "dev.example.com.".into(),
        };
        assert_eq!(
            record_name(
                "app",
                "arn:aws:sts::123456789012:assumed-role/Dev/Alice",
                &zone
            )
            .unwrap(),
            "app.alice.dev.example.com."
        );
        assert_eq!(
            record_name("app", "arn:aws:iam::123456789012:user/moto", &zone).unwrap(),
            "app.moto.dev.example.com."
        );
        assert_ne!(
            record_name("app", "arn:aws:iam::1:user/alice", &zone).unwrap(),
            record_name("app", "arn:aws:iam::1:user/bob", &zone).unwrap()
        );
        assert!(record_name("___", "arn:aws:iam::1:user/alice", &zone).is_err());
    }
}
