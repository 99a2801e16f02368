//! Unit tests of the AWS provider: what can be checked without AWS (the moto tests are in `tests/it/aws.rs`).

use std::collections::BTreeSet;

use super::ami::{Architecture, instance_type_for, parse_bytes};
use super::config::{AwsOptions, AwsSettings, region_in_config};
use super::lifecycle::{agent_source, elf_architecture};
use super::user_data::{UserDataSpec, check_agent_url, render};
use super::{check_region_name, enroll, launch, network, policy};

const CERTIFICATE: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ3Vyc29y\n-----END CERTIFICATE-----\n";
const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn spec(url: Option<&'static str>) -> UserDataSpec<'static> {
    UserDataSpec {
        ecr_registry: None,
        workspace: "app",
        idle_timeout: "30m",
        agent_url: url,
        agent_sha256: SHA,
        client_certificate: CERTIFICATE,
    }
}

#[test]
fn user_data_fills_every_placeholder_and_stays_small() {
    let script = render(&spec(Some("https://example.com/skiffd"))).unwrap();
    assert!(!script.contains("'@"), "{script}");
    // Room is left for a real certificate (about 600 bytes) and a long URL.
    assert!(
        script.len() < super::user_data::MAX_BYTES - 4096,
        "{} bytes",
        script.len()
    );
    assert!(script.contains(&format!("SKIFF_AGENT_SHA256='{SHA}'")));
    assert!(script.contains("SKIFF_AGENT_LISTEN='127.0.0.1:7443'"));
    assert!(script.contains("SKIFF_AGENT_URL='https://example.com/skiffd'"));
    assert!(script.contains("idle_action = \"poweroff\""));
    assert!(script.contains(CERTIFICATE.trim()));
    let pushed = render(&spec(None)).unwrap();
    assert!(pushed.contains("SKIFF_AGENT_URL=''"));
}

#[test]
fn user_data_refuses_values_that_could_escape_their_quotes() {
    let mut bad = spec(None);
    bad.agent_sha256 = "abc";
    assert!(
        render(&bad)
            .unwrap_err()
            .to_string()
            .contains("is not 64 hexadecimal digits")
    );
    let mut bad = spec(None);
    bad.idle_timeout = "30m'; rm -rf /; '";
    assert!(render(&bad).is_err());
    let mut bad = spec(None);
    bad.client_certificate = "-----BEGIN CERTIFICATE-----\n'$(reboot)'\n-----END CERTIFICATE-----";
    assert!(render(&bad).is_err());
    let mut bad = spec(None);
    bad.workspace = "a'b";
    assert!(render(&bad).is_err());
}

#[test]
fn user_data_with_ecr_maps_the_account_s_registry_to_amazon_s_helper() {
    let registry = super::user_data::ecr_registry("123456789012", "eu-west-1").unwrap();
    assert_eq!(registry, "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
    assert_eq!(
        super::user_data::ecr_registry("123456789012", "cn-north-1").unwrap(),
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
    );
    for (account, region) in [("12345", "eu-west-1"), ("123456789012", "eu'; reboot; '")] {
        assert!(super::user_data::ecr_registry(account, region).is_err());
    }
    let mut with_ecr = spec(None);
    with_ecr.ecr_registry = Some(&registry);
    let script = render(&with_ecr).unwrap();
    assert!(script.contains(&format!("SKIFF_ECR_REGISTRY='{registry}'")));
    assert!(script.contains("amazon-ecr-credential-helper"));
    assert!(
        render(&spec(None))
            .unwrap()
            .contains("SKIFF_ECR_REGISTRY=''")
    );
    let mut bad = spec(None);
    bad.ecr_registry = Some("x'; reboot; '");
    assert!(render(&bad).is_err());
}

#[test]
fn agent_urls_are_https_or_loopback_http() {
    assert!(check_agent_url("https://releases.example.com/skiffd").is_ok());
    assert!(check_agent_url("http://127.0.0.1:8080/skiffd").is_ok());
    assert!(check_agent_url("http://localhost/skiffd").is_ok());
    let error = check_agent_url("http://example.com/skiffd")
        .unwrap_err()
        .to_string();
    assert!(error.contains("use an https:// URL"), "{error}");
    assert!(check_agent_url("https://example.com/$(id)").is_err());
    assert!(check_agent_url("https://example.com/a b").is_err());
}

#[test]
fn the_enroll_script_carries_one_certificate_and_nothing_else() {
    let script = enroll::enroll_script(CERTIFICATE).unwrap();
    assert!(script.contains(CERTIFICATE.trim()));
    assert!(script.contains("dir=/var/lib/skiffd/trusted-clients\n"));
    assert!(!script.contains("PRIVATE"));
    let key = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----";
    assert!(enroll::enroll_script(key).is_err());
    let two = format!("{CERTIFICATE}{CERTIFICATE}");
    assert!(enroll::enroll_script(&two).is_err());
    assert_eq!(
        enroll::certificate_file_name(CERTIFICATE),
        enroll::certificate_file_name(CERTIFICATE.trim()),
        "the same certificate gets the same file, so enrolling twice changes nothing"
    );
}

#[test]
fn client_tokens_are_stable_per_launch_and_fit_ec2() {
    let token = launch::client_token("arn:owner", "eu-west-1", "app", "nonce");
    assert_eq!(token.len(), 64);
    assert_eq!(
        token,
        launch::client_token("arn:owner", "eu-west-1", "app", "nonce")
    );
    assert_ne!(
        token,
        launch::client_token("arn:owner", "eu-west-1", "app", "other")
    );
    assert_ne!(
        token,
        launch::client_token("arn:other", "eu-west-1", "app", "nonce")
    );
}

#[test]
fn two_owners_get_different_security_groups() {
    let mine = network::group_name("app", "arn:aws:iam::1:user/me");
    let theirs = network::group_name("app", "arn:aws:iam::1:user/you");
    assert!(mine.starts_with("skiff-app-"));
    assert_ne!(mine, theirs);
}

#[test]
fn settings_overlay_saved_then_environment_then_flags() {
    let saved = AwsSettings {
        region: Some("eu-west-1".into()),
        instance_type: Some("t3.large".into()),
        subnet: Some("subnet-saved".into()),
        ..AwsSettings::default()
    };
    let environment = AwsSettings::from_environment(|name| match name {
        "SKIFF_AWS_INSTANCE_TYPE" => Some("m7g.large".into()),
        "SKIFF_AWS_VOLUME_SIZE" => Some("80".into()),
        _ => None,
    })
    .unwrap();
    let flags = AwsSettings::from_options(&AwsOptions {
        region: Some("us-east-2".into()),
        tags: vec!["team=web".into()],
        spot: true,
        ..AwsOptions::default()
    })
    .unwrap();
    let resolved = saved.overlay(environment).overlay(flags);
    assert_eq!(resolved.region.as_deref(), Some("us-east-2"));
    assert_eq!(resolved.instance_type.as_deref(), Some("m7g.large"));
    assert_eq!(resolved.subnet.as_deref(), Some("subnet-saved"));
    assert_eq!(resolved.volume_size, Some(80));
    assert!(resolved.spot);
    assert_eq!(resolved.tags.get("team").map(String::as_str), Some("web"));
    let text = toml::to_string(&resolved).unwrap();
    assert_eq!(toml::from_str::<AwsSettings>(&text).unwrap(), resolved);

    let error = AwsSettings::from_environment(|name| {
        (name == "SKIFF_AWS_VOLUME_SIZE").then(|| "big".to_owned())
    })
    .unwrap_err();
    assert!(
        error.to_string().contains("SKIFF_AWS_VOLUME_SIZE"),
        "{error}"
    );
    for reserved in ["skiff:owner=x", "Name=x", "aws:x=y", "novalue"] {
        let options = AwsOptions {
            tags: vec![reserved.into()],
            ..AwsOptions::default()
        };
        assert!(AwsSettings::from_options(&options).is_err(), "{reserved}");
    }
}

#[test]
fn a_profile_region_is_read_from_aws_config_text() {
    let text = "[default]\nregion = eu-west-1\n\n[profile work]\noutput = json\nregion=us-east-2\n";
    assert_eq!(
        region_in_config(text, "default").as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(region_in_config(text, "work").as_deref(), Some("us-east-2"));
    assert_eq!(region_in_config(text, "missing"), None);
}

#[test]
fn region_names_are_checked_before_any_call() {
    assert!(check_region_name("eu-west-1").is_ok());
    assert!(check_region_name("us-gov-west-1").is_ok());
    for bad in ["mars", "EU-WEST-1", "eu-west", "eu west 1", ""] {
        let error = check_region_name(bad).unwrap_err().to_string();
        assert!(error.starts_with("unknown AWS region"), "{error}");
    }
}

#[test]
fn host_requirements_pick_a_big_enough_instance_type() {
    use skiff::devcontainer::HostRequirements;
    assert_eq!(instance_type_for(None), "t3.large");
    let needs = |cpus: Option<u32>, memory: Option<&str>| HostRequirements {
        cpus,
        memory: memory.map(str::to_owned),
        ..HostRequirements::default()
    };
    assert_eq!(
        instance_type_for(Some(&needs(Some(2), Some("4gb")))),
        "t3.large"
    );
    assert_eq!(instance_type_for(Some(&needs(Some(4), None))), "t3.xlarge");
    assert_eq!(
        instance_type_for(Some(&needs(Some(2), Some("20gb")))),
        "t3.2xlarge"
    );
    assert_eq!(
        instance_type_for(Some(&needs(Some(512), None))),
        "m6i.16xlarge"
    );
    assert_eq!(parse_bytes("8gb"), Some(8 << 30));
    assert_eq!(parse_bytes("512"), Some(512));
    assert_eq!(parse_bytes("1.5 kb"), Some(1536));
    assert_eq!(parse_bytes("lots"), None);
}

#[test]
fn the_agent_comes_from_a_checked_url_or_a_push() {
    let binary = std::env::current_exe().unwrap();
    let architecture = elf_architecture(&binary).expect("the test binary is an ELF file");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(architecture, Architecture::X86_64);
    }
    let settings = AwsSettings {
        agent_url: Some("https://example.com/skiffd".into()),
        ..AwsSettings::default()
    };
    let error = agent_source(&settings, None, architecture)
        .unwrap_err()
        .to_string();
    assert!(error.contains("needs the SHA-256"), "{error}");
    let source = agent_source(&settings, Some(&binary), architecture).unwrap();
    assert_eq!(source.url.as_deref(), Some("https://example.com/skiffd"));
    assert_eq!(source.sha256.len(), 64);
    let pushed = agent_source(&AwsSettings::default(), Some(&binary), architecture).unwrap();
    assert_eq!(pushed.url, None);
    assert_eq!(pushed.push.as_deref(), Some(binary.as_path()));
    let other = match architecture {
        Architecture::X86_64 => Architecture::Arm64,
        Architecture::Arm64 => Architecture::X86_64,
    };
    let error = agent_source(&AwsSettings::default(), Some(&binary), other)
        .unwrap_err()
        .to_string();
    assert!(error.contains("is built for"), "{error}");
}

/// The IAM actions named by the SDK calls in this module's source (`.ec2.run_instances()` → `ec2:RunInstances`),
/// leaving out `setup.rs` and `budget.rs` (`skiff aws-setup`, run by an administrator) when `with_setup` is false.
fn actions_called_in_source_of(with_setup: bool) -> BTreeSet<String> {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/provider/aws");
    let mut actions = BTreeSet::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "rs")
            || path.file_name().is_some_and(|name| name == "tests.rs")
            || (!with_setup
                && path
                    .file_name()
                    .is_some_and(|name| name == "setup.rs" || name == "budget.rs"))
        {
            continue;
        }
        let source: String = std::fs::read_to_string(&path)
            .unwrap()
            .chars()
            .filter(|character| !character.is_whitespace())
            .collect();
        for service in ["budgets", "ec2", "iam", "pricing", "route53", "ssm", "sts"] {
            for (index, _) in source.match_indices(&format!("{service}.")) {
                let before = source[..index].chars().next_back();
                if before
                    .is_some_and(|character| character.is_ascii_alphanumeric() || character == '_')
                {
                    continue;
                }
                let rest = &source[index + service.len() + 1..];
                let name: String = rest
                    .chars()
                    .take_while(|character| character.is_ascii_lowercase() || *character == '_')
                    .collect();
                // `config()` reads the client's configuration; it is not an AWS call.
                if name.is_empty() || name == "config" || !rest[name.len()..].starts_with("()") {
                    continue;
                }
                let operation: String = name
                    .split('_')
                    .map(|word| {
                        let mut characters = word.chars();
                        characters
                            .next()
                            .map(|first| {
                                first.to_ascii_uppercase().to_string() + characters.as_str()
                            })
                            .unwrap_or_default()
                    })
                    .collect();
                actions.insert(format!("{service}:{operation}"));
            }
        }
    }
    actions
}

fn actions_called_in_source() -> BTreeSet<String> {
    actions_called_in_source_of(false)
}

/// The developer's flow writes nothing in IAM: every IAM call outside `setup.rs` (which an administrator runs, as
/// `skiff aws-setup`) is a read, so a developer's policy never needs an IAM write.
#[test]
fn only_aws_setup_writes_iam() {
    let setup: BTreeSet<String> = actions_called_in_source_of(true)
        .difference(&actions_called_in_source())
        .cloned()
        .collect();
    assert!(
        setup.contains("iam:CreateRole") && setup.contains("budgets:CreateBudget"),
        "the scan sees setup.rs and budget.rs: {setup:?}"
    );
    let iam: Vec<String> = actions_called_in_source()
        .into_iter()
        .filter(|action| action.starts_with("iam:"))
        .collect();
    assert_eq!(
        iam,
        vec!["iam:GetInstanceProfile".to_owned()],
        "the developer's commands call IAM only to read skiff's instance profile"
    );
}

#[test]
fn aws_policy_covers_every_call_skiff_makes() {
    let called = actions_called_in_source();
    assert!(
        called.contains("ec2:RunInstances"),
        "the scan finds calls: {called:?}"
    );
    assert!(called.contains("iam:GetInstanceProfile"), "{called:?}");
    assert!(called.contains("ssm:SendCommand"), "{called:?}");
    let listed: BTreeSet<String> = policy::PERMISSIONS
        .iter()
        .map(|permission| permission.action.to_owned())
        .collect();
    let missing: Vec<&String> = called.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "calls missing from policy::PERMISSIONS: {missing:?}"
    );
    let not_called: BTreeSet<String> = listed.difference(&called).cloned().collect();
    let expected: BTreeSet<String> = policy::NOT_CALLED_HERE
        .iter()
        .map(|action| (*action).to_owned())
        .collect();
    assert_eq!(
        not_called, expected,
        "every permission without a call here is listed in NOT_CALLED_HERE, with its reason"
    );
    let options = policy::PolicyOptions::new(Some("Z0123456789ABC"), &[]).unwrap();
    let text = policy::policy_text(&policy::developer_policy(&options));
    for action in &called {
        assert!(
            text.contains(&format!("\"{action}\"")),
            "{action} is in the policy"
        );
    }
}

#[test]
fn confirm_above_is_a_price_in_dollars_or_a_clear_error() {
    let with = |text: &str| AwsSettings {
        confirm_above: Some(text.into()),
        ..AwsSettings::default()
    };
    assert_eq!(with("0.50").confirm_above_usd().unwrap(), Some(0.5));
    assert_eq!(with("$1").confirm_above_usd().unwrap(), Some(1.0));
    assert_eq!(AwsSettings::default().confirm_above_usd().unwrap(), None);
    for bad in ["cheap", "-1", "NaN", "inf", ""] {
        let error = with(bad).confirm_above_usd().unwrap_err().to_string();
        assert!(error.contains("such as 0.50"), "{bad}: {error}");
    }
}

#[test]
fn a_team_s_defaults_sit_under_the_person_s_settings() {
    let team = AwsSettings::team_defaults(
        "instance_type = \"t3.xlarge\"\nvolume_size = 60\nspot = true\n[tags]\nteam = \"web\"\ncost-centre = \"42\"\n",
    )
    .unwrap();
    let person = AwsSettings {
        instance_type: Some("t3.large".into()),
        tags: [("team".to_owned(), "data".to_owned())].into(),
        ..AwsSettings::default()
    };
    let merged = person.clone().over_team(team.clone(), false);
    assert_eq!(
        merged.instance_type.as_deref(),
        Some("t3.large"),
        "the person's flag wins"
    );
    assert_eq!(
        merged.volume_size,
        Some(60),
        "the team's size fills the gap"
    );
    assert!(merged.spot);
    assert_eq!(merged.tags["team"], "data");
    assert_eq!(
        merged.tags["cost-centre"], "42",
        "the team's tags are added"
    );
    // A configuration's hostRequirements pick the machine, not the team's default type.
    let sized = AwsSettings::default().over_team(team.clone(), true);
    assert_eq!(sized.instance_type, None);
    assert_eq!(
        AwsSettings::default()
            .over_team(team, false)
            .instance_type
            .as_deref(),
        Some("t3.xlarge")
    );
}

#[test]
fn a_team_cannot_set_where_code_comes_from_or_who_gets_in() {
    for (line, key) in [
        ("agent_url = \"https://evil.example/skiffd\"", "agent_url"),
        ("agent_sha256 = \"00\"", "agent_sha256"),
        ("ami = \"ami-1\"", "ami"),
        (
            "allow_open_security_group = true",
            "allow_open_security_group",
        ),
        ("region = \"eu-west-1\"", "region"),
        ("profile = \"admin\"", "profile"),
    ] {
        let error = AwsSettings::team_defaults(line).unwrap_err().to_string();
        assert!(
            error.contains(key) && error.contains("remove it"),
            "{line}: {error}"
        );
    }
    let unknown = AwsSettings::team_defaults("instance_typ = \"t3.large\"").unwrap_err();
    assert!(
        format!("{unknown:#}").contains("instance_typ"),
        "{unknown:#}"
    );
    let price = AwsSettings::team_defaults("confirm_above = \"cheap\"").unwrap_err();
    assert!(format!("{price:#}").contains("confirm"), "{price:#}");
}
