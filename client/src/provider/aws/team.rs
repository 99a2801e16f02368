//! A team's file, kept in the account by `skiff aws-setup --team-defaults FILE` (SSM parameter
//! [`TEAM_DEFAULTS_PARAMETER`] of each region) and read by every `up` there:
//! - defaults, in aws.toml's keys (`config::AwsSettings::team_defaults` checks them), plus `idle_timeout` and
//!   `dotfiles`, which sit under each person's own settings and flags;
//! - `[rules]` an administrator sets: the instance types allowed, the largest root volume, the longest idle timeout
//!   and the tags every workspace must carry. `up` checks them before anything is made and names the rule and who
//!   wrote it; `skiff aws-policy --team FILE` writes the same rules into the developer's policy as IAM conditions
//!   (`policy::developer_policy`), so a client that skips the check is refused by AWS. The idle timeout is the one
//!   rule AWS cannot see (it travels in user-data), so only skiff enforces it.
//!
//! `aws-setup` adds a `[written]` table saying who wrote the file and when; a file may not set it itself.

use std::time::Duration;

use anyhow::Context as _;

use super::config::AwsSettings;

/// The SSM parameter (in each region) holding the team's file.
pub use super::config::TEAM_DEFAULTS_PARAMETER;

/// Rules an administrator sets for every workspace of the region.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Instance types allowed, as IAM's `StringLike` patterns (`t3.*`, `m7i.large`); empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_types: Vec<String>,
    /// The largest root volume, in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_volume_size: Option<i32>,
    /// The longest idle timeout (`2h`); a workspace may not turn its idle stop off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_timeout: Option<String>,
    /// Tag keys every workspace must carry (given with `up --tag KEY=VALUE`, saved settings or the team's tags).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_tags: Vec<String>,
}

/// Who wrote the team's file, and when (`aws-setup` adds it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Written {
    pub by: String,
    pub at: String,
}

/// A team's file, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Team {
    /// The AWS settings under each person's own.
    pub defaults: AwsSettings,
    /// The idle timeout of new workspaces, under `up --idle-timeout`.
    pub idle_timeout: Option<String>,
    /// The dotfiles repository of new workspaces, under `up --dotfiles` and the person's own saved one.
    pub dotfiles: Option<String>,
    pub rules: Rules,
    pub written: Option<Written>,
}

/// What one launch would make, as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    pub instance_type: &'a str,
    pub volume_gib: i32,
    pub tags: &'a std::collections::BTreeMap<String, String>,
    pub idle_timeout: &'a str,
}

/// An idle timeout as a duration; `None` for `off`.
fn idle_duration(text: &str) -> anyhow::Result<Option<Duration>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let duration = humantime::parse_duration(text)
        .map_err(|_| anyhow::anyhow!("{text:?} is not a duration such as 30m or 2h"))?;
    if duration.is_zero() {
        anyhow::bail!("{text:?} is no time at all; write a duration such as 30m, or off");
    }
    Ok(Some(duration))
}

/// A tag key IAM can name in `aws:RequestTag/KEY` and `up --tag` may set.
fn plain_tag_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && !key.starts_with("aws:")
        && !key.starts_with("skiff:")
        && key != "Name"
        && key
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || " _.:/=+-@".contains(character))
}

impl Rules {
    /// Checks the rules' own values; an error names the rule and what to write instead.
    pub fn check(&self) -> anyhow::Result<()> {
        for pattern in &self.instance_types {
            let plain = !pattern.is_empty()
                && pattern.len() <= 64
                && pattern.chars().all(|character| {
                    character.is_ascii_lowercase()
                        || character.is_ascii_digit()
                        || ".-*?".contains(character)
                });
            if !plain {
                anyhow::bail!(
                    "rules.instance_types {pattern:?}: give an instance type or a pattern of one, such as t3.* or m7i.large"
                );
            }
        }
        if let Some(size) = self.max_volume_size
            && !(8..=16384).contains(&size)
        {
            anyhow::bail!("rules.max_volume_size {size}: give a size in GiB from 8 to 16384");
        }
        if let Some(text) = &self.max_idle_timeout {
            match idle_duration(text) {
                Ok(Some(_)) => {}
                Ok(None) => anyhow::bail!(
                    "rules.max_idle_timeout {text:?}: give the longest idle timeout allowed, such as 2h (leave the rule out to allow any)"
                ),
                Err(error) => anyhow::bail!("rules.max_idle_timeout: {error}"),
            }
        }
        for key in &self.required_tags {
            if !plain_tag_key(key) {
                anyhow::bail!(
                    "rules.required_tags {key:?}: give a tag key of letters, digits and _.:/=+-@ (not aws:…, skiff:… or Name, which skiff sets)"
                );
            }
        }
        Ok(())
    }

    /// Whether any rule is set.
    pub fn any(&self) -> bool {
        *self != Self::default()
    }

    /// Whether `instance_type` matches an allowed pattern (as IAM's `StringLike` does).
    pub fn allows_type(&self, instance_type: &str) -> bool {
        self.instance_types.is_empty()
            || self
                .instance_types
                .iter()
                .any(|pattern| glob(pattern, instance_type))
    }
}

/// IAM's `StringLike`: `*` is any run of characters, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    let (mut at_pattern, mut at_text) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while at_text < text.len() {
        if at_pattern < pattern.len()
            && (pattern[at_pattern] == '?' || pattern[at_pattern] == text[at_text])
        {
            at_pattern += 1;
            at_text += 1;
        } else if at_pattern < pattern.len() && pattern[at_pattern] == '*' {
            star = Some((at_pattern, at_text));
            at_pattern += 1;
        } else if let Some((star_at, matched)) = star {
            star = Some((star_at, matched + 1));
            at_pattern = star_at + 1;
            at_text = matched + 1;
        } else {
            return false;
        }
    }
    pattern[at_pattern..]
        .iter()
        .all(|character| *character == '*')
}

impl Team {
    /// The team's file as an administrator wrote it; `[written]` is refused (aws-setup adds it).
    pub fn from_file(text: &str) -> anyhow::Result<Self> {
        let team = Self::parse(text)?;
        if team.written.is_some() {
            anyhow::bail!(
                "the team's file sets [written], which skiff aws-setup adds itself; remove it from the file"
            );
        }
        Ok(team)
    }

    /// The team's file as kept in the account.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut table: toml::Table = toml::from_str(text)
            .map_err(|error| anyhow::anyhow!("the team's defaults: {error}"))?;
        let rules: Rules = match table.remove("rules") {
            Some(value) => value
                .try_into()
                .map_err(|error| anyhow::anyhow!("the team's [rules]: {error}"))?,
            None => Rules::default(),
        };
        rules.check()?;
        let written: Option<Written> = table
            .remove("written")
            .map(|value| {
                value
                    .try_into()
                    .map_err(|error| anyhow::anyhow!("the team's [written]: {error}"))
            })
            .transpose()?;
        let idle_timeout = match table.remove("idle_timeout") {
            None => None,
            Some(toml::Value::String(text)) => {
                idle_duration(&text)
                    .with_context(|| format!("the team's idle_timeout {text:?}"))?;
                Some(text)
            }
            Some(other) => anyhow::bail!(
                "the team's idle_timeout {other}: write a duration in quotes, such as \"1h\""
            ),
        };
        let dotfiles = match table.remove("dotfiles") {
            None => None,
            Some(toml::Value::String(url)) => {
                crate::dotfiles::check_url(&url).context("the team's dotfiles")?;
                Some(url)
            }
            Some(other) => anyhow::bail!(
                "the team's dotfiles {other}: write a repository URL in quotes, such as \"https://git.example.com/team/dotfiles\""
            ),
        };
        let defaults = AwsSettings::team_defaults(&toml::to_string(&table)?)?;
        let team = Self {
            defaults,
            idle_timeout,
            dotfiles,
            rules,
            written,
        };
        // The team's own defaults must pass its rules, or every default `up` would be refused.
        if let Some(instance_type) = &team.defaults.instance_type
            && !team.rules.allows_type(instance_type)
        {
            anyhow::bail!(
                "the team's instance_type {instance_type} is not among its rules.instance_types {:?}; change one of them",
                team.rules.instance_types
            );
        }
        if let (Some(size), Some(max)) = (team.defaults.volume_size, team.rules.max_volume_size)
            && size > max
        {
            anyhow::bail!(
                "the team's volume_size {size} is above its rules.max_volume_size {max}; change one of them"
            );
        }
        if let Some(idle) = &team.idle_timeout {
            team.check_idle(idle)?;
        }
        Ok(team)
    }

    /// The text kept in the account: the administrator's file, then who wrote it and when.
    pub fn stored_text(file: &str, by: &str, at: std::time::SystemTime) -> anyhow::Result<String> {
        let written = Written {
            by: by.to_owned(),
            at: humantime::format_rfc3339_seconds(at).to_string(),
        };
        let mut wrapper = toml::Table::new();
        wrapper.insert("written".into(), toml::Value::try_from(written)?);
        Ok(format!(
            "{}\n\n{}",
            file.trim_end(),
            toml::to_string(&wrapper)?
        ))
    }

    /// Who set the rules, for the messages that name one.
    fn set_by(&self) -> String {
        match &self.written {
            Some(written) => format!(
                "set by {} on {} with `skiff aws-setup --team-defaults`",
                written.by, written.at
            ),
            None => "set with `skiff aws-setup --team-defaults`".to_owned(),
        }
    }

    fn check_idle(&self, idle_timeout: &str) -> anyhow::Result<()> {
        let Some(max_text) = &self.rules.max_idle_timeout else {
            return Ok(());
        };
        let max = idle_duration(max_text)?;
        let given = idle_duration(idle_timeout)
            .with_context(|| format!("idle timeout {idle_timeout:?}"))?;
        let too_long = match (given, max) {
            (None, _) => true,
            (Some(given), Some(max)) => given > max,
            (Some(_), None) => false,
        };
        if too_long {
            anyhow::bail!(
                "idle timeout {idle_timeout} is longer than the team's rule max_idle_timeout = {max_text:?} ({}); nothing was created: pass --idle-timeout {max_text} or less",
                self.set_by()
            );
        }
        Ok(())
    }

    /// Checks one launch against the rules before anything is made; an error names the rule, who set it and the
    /// way out.
    pub fn check_launch(&self, launch: &Launch<'_>) -> anyhow::Result<()> {
        let rules = &self.rules;
        if !rules.allows_type(launch.instance_type) {
            anyhow::bail!(
                "instance type {} is not allowed by the team's rule instance_types = {:?} ({}); nothing was created: choose an allowed one with --instance-type",
                launch.instance_type,
                rules.instance_types,
                self.set_by()
            );
        }
        if let Some(max) = rules.max_volume_size
            && launch.volume_gib > max
        {
            anyhow::bail!(
                "a root volume of {} GiB is above the team's rule max_volume_size = {max} ({}); nothing was created: pass --volume-size {max} or less",
                launch.volume_gib,
                self.set_by()
            );
        }
        if let Some(missing) = rules
            .required_tags
            .iter()
            .find(|key| !launch.tags.contains_key(*key))
        {
            anyhow::bail!(
                "the team's rule required_tags = {:?} ({}) needs tag {missing:?} on every workspace; nothing was created: pass --tag {missing}=VALUE (or save it with `skiff provider aws --tag {missing}=VALUE`)",
                rules.required_tags,
                self.set_by()
            );
        }
        self.check_idle(launch.idle_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
instance_type = "t3.xlarge"
idle_timeout = "45m"
dotfiles = "https://git.example.com/team/dotfiles"
[tags]
cost-center = "42"
[rules]
instance_types = ["t3.*", "m7i.large"]
max_volume_size = 100
max_idle_timeout = "2h"
required_tags = ["cost-center"]
"#;

    fn launch<'a>(
        instance_type: &'a str,
        volume_gib: i32,
        tags: &'a std::collections::BTreeMap<String, String>,
        idle_timeout: &'a str,
    ) -> Launch<'a> {
        Launch {
            instance_type,
            volume_gib,
            tags,
            idle_timeout,
        }
    }

    #[test]
    fn a_team_file_splits_into_defaults_idle_timeout_and_rules() {
        let team = Team::from_file(FILE).unwrap();
        assert_eq!(team.defaults.instance_type.as_deref(), Some("t3.xlarge"));
        assert_eq!(team.defaults.tags["cost-center"], "42");
        assert_eq!(team.idle_timeout.as_deref(), Some("45m"));
        assert_eq!(
            team.dotfiles.as_deref(),
            Some("https://git.example.com/team/dotfiles")
        );
        assert_eq!(team.rules.max_volume_size, Some(100));
        assert!(team.written.is_none());
        let stored = Team::stored_text(
            FILE,
            "arn:aws:iam::123456789012:user/admin",
            std::time::UNIX_EPOCH,
        )
        .unwrap();
        let kept = Team::parse(&stored).unwrap();
        assert_eq!(
            kept.written.as_ref().map(|written| written.by.as_str()),
            Some("arn:aws:iam::123456789012:user/admin")
        );
        assert_eq!(kept.rules, team.rules);
        let forged = Team::from_file(&stored).unwrap_err().to_string();
        assert!(forged.contains("[written]"), "{forged}");
    }

    #[test]
    fn each_rule_refuses_a_launch_naming_itself_and_its_writer() {
        let stored = Team::stored_text(
            FILE,
            "arn:aws:iam::123456789012:user/admin",
            std::time::UNIX_EPOCH,
        )
        .unwrap();
        let team = Team::parse(&stored).unwrap();
        let tagged: std::collections::BTreeMap<String, String> =
            [("cost-center".to_owned(), "42".to_owned())].into();
        team.check_launch(&launch("t3.large", 40, &tagged, "30m"))
            .unwrap();
        team.check_launch(&launch("m7i.large", 100, &tagged, "2h"))
            .unwrap();
        for (refused, rule) in [
            (launch("m5.24xlarge", 40, &tagged, "30m"), "instance_types"),
            (launch("m7i.large2", 40, &tagged, "30m"), "instance_types"),
            (launch("t3.large", 101, &tagged, "30m"), "max_volume_size"),
            (launch("t3.large", 40, &tagged, "3h"), "max_idle_timeout"),
            (launch("t3.large", 40, &tagged, "off"), "max_idle_timeout"),
        ] {
            let error = team.check_launch(&refused).unwrap_err().to_string();
            assert!(
                error.contains(rule)
                    && error.contains("arn:aws:iam::123456789012:user/admin")
                    && error.contains("nothing was created"),
                "{error}"
            );
        }
        let untagged = std::collections::BTreeMap::new();
        let error = team
            .check_launch(&launch("t3.large", 40, &untagged, "30m"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("required_tags") && error.contains("--tag cost-center=VALUE"),
            "{error}"
        );
    }

    #[test]
    fn bad_rules_are_refused_by_name() {
        for (text, named) in [
            (
                "[rules]\ninstance_types = [\"t3.large; rm\"]",
                "rules.instance_types",
            ),
            ("[rules]\nmax_volume_size = 2", "rules.max_volume_size"),
            (
                "[rules]\nmax_idle_timeout = \"off\"",
                "rules.max_idle_timeout",
            ),
            (
                "[rules]\nmax_idle_timeout = \"soon\"",
                "rules.max_idle_timeout",
            ),
            (
                "[rules]\nrequired_tags = [\"aws:x\"]",
                "rules.required_tags",
            ),
            ("[rules]\nrequired_tag = [\"x\"]", "required_tag"),
            ("idle_timeout = 5", "idle_timeout"),
            ("dotfiles = \"--upload-pack=evil\"", "dotfiles"),
            (
                "instance_type = \"m5.large\"\n[rules]\ninstance_types = [\"t3.*\"]",
                "instance_type",
            ),
            (
                "volume_size = 200\n[rules]\nmax_volume_size = 100",
                "max_volume_size",
            ),
            (
                "idle_timeout = \"4h\"\n[rules]\nmax_idle_timeout = \"2h\"",
                "max_idle_timeout",
            ),
            ("agent_url = \"https://evil.example/skiffd\"", "agent_url"),
        ] {
            let error = format!("{:#}", Team::from_file(text).unwrap_err());
            assert!(error.contains(named), "{text:?}: {error}");
        }
    }

    #[test]
    fn instance_type_patterns_match_as_iam_string_like_does() {
        assert!(glob("t3.*", "t3.large") && glob("t3.*", "t3.") && !glob("t3.*", "t3a.large"));
        assert!(glob("m?i.large", "m7i.large") && !glob("m?i.large", "m7gi.large"));
        assert!(glob("*", "anything") && !glob("t3.large", "t3.larger"));
    }
}
