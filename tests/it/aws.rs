//! The AWS provider against a real moto server on 127.0.0.1: the whole up/stop/up/delete cycle read back from
//! the emulator, client tokens from moto's request recorder, an interrupted `up`, `enroll`, 300 workspaces,
//! bad input, and the generated user-data run for real in a Debian container.
//!
//! The moto server, `AwsSandbox` and the boto3 read-backs are the rig's (`skiff_tests::aws`): each test uses a region
//! of its own, so tests running at once never see each other's instances, and every AWS call goes to 127.0.0.1.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use skiff::tls::Identity;
use skiff_tests::agent::InProcessAgent;
use skiff_tests::aws::{
    AwsSandbox, Instance, MOTO_ARN, MOTO_OWNER, call, helper, live_instances, moto, recorded,
    recorded_actions, tag, tagged_groups,
};
use skiff_tests::file_server::FileServer;
use skiff_tests::{binary, free_port, require_docker, wait_until};

fn sha256_of(path: &Path) -> String {
    skiff_tests::sha256_hex(&std::fs::read(path).unwrap())
}

/// `up --provider aws --no-wait` with skiffd "downloaded" from a loopback URL, hashed from the built skiffd.
pub(crate) fn up_args<'a>(project: &'a str, skiffd: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "up",
        project,
        "--provider",
        "aws",
        "--no-wait",
        "--agent-url",
        "http://127.0.0.1:9/skiffd",
        "--agent-binary",
        skiffd,
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_full_cycle_is_locked_down_and_leaves_nothing_behind() {
    let sandbox = AwsSandbox::new("eu-west-1");
    // Saved settings make AWS the default for new workspaces; the environment's region is the same.
    sandbox.ok(&[
        "provider",
        "aws",
        "--region",
        "eu-west-1",
        "--instance-type",
        "t3.large",
    ]);
    let project = sandbox.project("app");
    let skiffd = binary("skiffd");
    let (project_text, skiffd_text) = (project.display().to_string(), skiffd.display().to_string());
    let mut args = up_args(&project_text, &skiffd_text, &["--tag", "team=web"]);
    args.retain(|arg| *arg != "--provider" && *arg != "aws");
    assert_eq!(sandbox.ok(&args).trim(), "app");
    let saved = std::fs::read_to_string(sandbox.home().join("aws.toml")).unwrap();
    assert!(saved.contains("region = \"eu-west-1\""), "{saved}");
    assert!(
        !saved.contains("testing"),
        "no credentials are saved: {saved}"
    );

    let instances = live_instances("eu-west-1", "app");
    assert_eq!(instances.len(), 1, "one instance: {instances:#?}");
    let instance = &instances[0];
    let instance_id = instance["InstanceId"].as_str().unwrap();
    assert_eq!(instance["State"]["Name"], "running");
    assert_eq!(instance["InstanceType"], "t3.large");
    assert_eq!(
        instance["ImageId"], "ami-0a0b0c0d0e0f0002",
        "the newest Ubuntu 24.04 amd64"
    );
    assert_eq!(instance["MetadataOptions"]["HttpTokens"], "required");
    assert_eq!(instance["MetadataOptions"]["HttpPutResponseHopLimit"], 1);
    assert!(
        instance.get("KeyName").is_none(),
        "no key pair: {instance:#?}"
    );
    assert!(
        instance["IamInstanceProfile"]["Arn"]
            .as_str()
            .unwrap()
            .ends_with("instance-profile/skiff-instance")
    );
    assert_eq!(tag(instance, "skiff:workspace"), Some("app"));
    assert_eq!(tag(instance, "skiff:owner"), Some(MOTO_OWNER));
    assert_eq!(tag(instance, "skiff:owner-arn"), Some(MOTO_ARN));
    assert_eq!(tag(instance, "Name"), Some("skiff-app"));
    assert_eq!(tag(instance, "team"), Some("web"));
    let shutdown = call(
        "eu-west-1",
        "ec2",
        "describe_instance_attribute",
        &serde_json::json!({"InstanceId": instance_id, "Attribute": "instanceInitiatedShutdownBehavior"}),
    );
    assert_eq!(
        shutdown["InstanceInitiatedShutdownBehavior"]["Value"],
        "stop"
    );

    // The root volume: encrypted gp3, 40 GiB, deleted with the instance, tagged.
    let mapping = &instance["BlockDeviceMappings"][0];
    assert_eq!(mapping["DeviceName"], "/dev/sda1");
    assert_eq!(mapping["Ebs"]["DeleteOnTermination"], true);
    let volumes = call(
        "eu-west-1",
        "ec2",
        "describe_volumes",
        &serde_json::json!({"VolumeIds": [mapping["Ebs"]["VolumeId"]]}),
    );
    let volume = &volumes["Volumes"][0];
    assert_eq!(volume["Encrypted"], true);
    assert_eq!(volume["VolumeType"], "gp3");
    assert_eq!(volume["Size"], 40);
    assert_eq!(tag(volume, "skiff:workspace"), Some("app"));

    // The security group: the workspace's own, with no ingress rule at all.
    let groups = &instance["SecurityGroups"];
    assert_eq!(groups.as_array().unwrap().len(), 1);
    let group = &call(
        "eu-west-1",
        "ec2",
        "describe_security_groups",
        &serde_json::json!({"GroupIds": [groups[0]["GroupId"]]}),
    )["SecurityGroups"][0];
    assert_eq!(
        group["IpPermissions"],
        serde_json::json!([]),
        "zero ingress: {group:#?}"
    );
    assert_eq!(tag(group, "skiff:workspace"), Some("app"));

    // The user-data: small, the agent's SHA-256 in it, the workspace's certificate and no private key.
    let user_data = helper("eu-west-1", &["user-data", instance_id]);
    assert!(user_data.len() < 16 * 1024, "{} bytes", user_data.len());
    assert!(user_data.starts_with("#!/bin/bash\n"));
    assert!(user_data.contains(&format!("SKIFF_AGENT_SHA256='{}'", sha256_of(&skiffd))));
    assert!(user_data.contains("SKIFF_AGENT_URL='http://127.0.0.1:9/skiffd'"));
    assert!(
        !user_data.contains("PRIVATE KEY"),
        "no private key in user-data"
    );
    let certificate = std::fs::read_to_string(sandbox.record("app").join("client.crt")).unwrap();
    assert!(user_data.contains(certificate.trim()));
    assert!(
        !user_data.contains("'@"),
        "every placeholder is filled: {user_data}"
    );

    // What moto ignores, read from the recorder: the client token and every safety setting as sent.
    let requests = recorded("eu-west-1");
    let runs = recorded_actions(&requests, "RunInstances");
    assert_eq!(runs.len(), 1);
    let run = &runs[0]["params"];
    let token = run["ClientToken"].as_str().unwrap();
    assert_eq!(token.len(), 64, "{token}");
    assert_eq!(run["MetadataOptions.HttpTokens"], "required");
    assert_eq!(run["MetadataOptions.HttpPutResponseHopLimit"], "1");
    assert_eq!(run["BlockDeviceMapping.1.Ebs.Encrypted"], "true");
    assert_eq!(run["BlockDeviceMapping.1.Ebs.VolumeType"], "gp3");
    assert_eq!(run["InstanceInitiatedShutdownBehavior"], "stop");
    assert!(run.get("KeyName").is_none());

    // stop, then up again: the same instance starts.
    sandbox.ok(&["stop", "app"]);
    assert_eq!(
        live_instances("eu-west-1", "app")[0]["State"]["Name"],
        "stopped"
    );
    let listed: Value = serde_json::from_str(&sandbox.ok(&["list", "--json"])).unwrap();
    assert_eq!(listed[0]["state"], "stopped");
    assert_eq!(listed[0]["aws"]["instance_id"], instance_id);
    // When it stopped, from EC2's state transition, and its disk's size, from the tag `up` launched it with.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stopped_since = listed[0]["stopped_since_unix"].as_i64().unwrap_or_default();
    assert!((now - stopped_since).abs() < 120, "{listed:#}");
    assert_eq!(listed[0]["aws"]["volume_gib"], 40, "{listed:#}");
    let table = sandbox.ok(&["list"]);
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("app") && line.contains("stopped ")),
        "{table}"
    );
    assert_eq!(sandbox.ok(&args).trim(), "app");
    let again = live_instances("eu-west-1", "app");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["InstanceId"], instance_id);
    assert_eq!(again[0]["State"]["Name"], "running");
    assert_eq!(
        recorded_actions(&recorded("eu-west-1"), "RunInstances").len(),
        1
    );
    assert_eq!(
        recorded_actions(&recorded("eu-west-1"), "StartInstances").len(),
        1
    );

    // Without --no-wait, up waits for Session Manager, which moto does not have: it says so plainly (the endpoint
    // and the variable to check) instead of printing moto's HTML page, and the running instance stays.
    let no_tunnel = sandbox.fails(&["up", &project_text]);
    assert!(
        no_tunnel.contains("asking Session Manager whether the instance is online")
            && no_tunnel.contains("answered HTTP 500 without an AWS error")
            && no_tunnel.contains("AWS_ENDPOINT_URL_SSM"),
        "{no_tunnel}"
    );
    assert!(!no_tunnel.contains("<html"), "{no_tunnel}");
    // status reports the instance from EC2 and says why the agent could not be asked, without failing.
    let status: Value = serde_json::from_str(&sandbox.ok(&["status", "app", "--json"])).unwrap();
    assert_eq!(status["instance"]["state"], "running");
    assert_eq!(status["owner"], MOTO_OWNER);
    assert_eq!(status["agent_running"], false);
    assert!(
        status["agent_error"]
            .as_str()
            .is_some_and(|error| error.contains("Session Manager")),
        "{status:#}"
    );
    let exec = sandbox.fails(&["exec", "app", "--", "true"]);
    assert!(exec.contains("Session Manager"), "{exec}");
    // moto's console output is canned text, but it arrives through GetConsoleOutput and is decoded.
    let boot = sandbox.ok(&["logs", "app", "--boot"]);
    assert!(boot.contains("Linux version"), "{boot}");

    // delete: nothing skiff-tagged is left, and the local record is gone.
    sandbox.ok(&["delete", "app", "--yes"]);
    assert!(live_instances("eu-west-1", "app").is_empty());
    assert!(tagged_groups("eu-west-1", "app").is_empty());
    assert!(!sandbox.record("app").exists());
    let listed: Value = serde_json::from_str(&sandbox.ok(&["list", "--json"])).unwrap();
    assert_eq!(listed, serde_json::json!([]));
}

/// The `A` records named `name` in the hosted zone `zone_id`, as Route53 (moto) holds them: their values.
fn a_records(zone_id: &str, name: &str) -> Vec<String> {
    let sets = call(
        "us-east-1",
        "route53",
        "list_resource_record_sets",
        &serde_json::json!({"HostedZoneId": zone_id}),
    );
    sets["ResourceRecordSets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|set| set["Type"] == "A" && set["Name"] == name)
        .flat_map(|set| set["ResourceRecords"].as_array().unwrap().clone())
        .map(|record| record["Value"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_dns_record_follows_the_instance_and_goes_with_it() {
    let sandbox = AwsSandbox::new("eu-central-1");
    let zone = call(
        "us-east-1",
        "route53",
        "create_hosted_zone",
        &serde_json::json!({"Name": "skiff-dns.example", "CallerReference": "skiff-dns-test"}),
    );
    let zone_id = zone["HostedZone"]["Id"]
        .as_str()
        .unwrap()
        .trim_start_matches("/hostedzone/")
        .to_owned();
    let project = sandbox.project("web");
    let skiffd = binary("skiffd");
    let (project_text, skiffd_text) = (project.display().to_string(), skiffd.display().to_string());

    // A zone that does not exist is refused before anything is made.
    let other = sandbox.project("nozone");
    let other_text = other.display().to_string();
    let refused = sandbox.fails(&up_args(
        &other_text,
        &skiffd_text,
        &["--dns-zone", "missing.example"],
    ));
    assert!(
        refused.contains("--dns-zone missing.example: no Route53 hosted zone has that name or id"),
        "{refused}"
    );
    assert!(live_instances("eu-central-1", "nozone").is_empty());
    assert!(tagged_groups("eu-central-1", "nozone").is_empty());

    // Given by name: the record is WORKSPACE.OWNER.ZONE and points at the private address.
    sandbox.ok(&up_args(
        &project_text,
        &skiffd_text,
        &["--dns-zone", "skiff-dns.example"],
    ));
    let name = "web.moto.skiff-dns.example.";
    let instance = live_instances("eu-central-1", "web").remove(0);
    let address = instance["PrivateIpAddress"].as_str().unwrap().to_owned();
    assert_eq!(a_records(&zone_id, name), std::slice::from_ref(&address));
    assert_eq!(tag(&instance, "skiff:dns-zone"), Some(zone_id.as_str()));
    assert_eq!(tag(&instance, "skiff:dns-name"), Some(name));
    let status: Value = serde_json::from_str(&sandbox.ok(&["status", "web", "--json"])).unwrap();
    assert_eq!(status["instance"]["dns_name"], name);

    // Kept current on start, without the flag: the zone comes from the instance's tag. A record pointed
    // elsewhere meanwhile is put back.
    sandbox.ok(&["stop", "web"]);
    call(
        "us-east-1",
        "route53",
        "change_resource_record_sets",
        &serde_json::json!({"HostedZoneId": zone_id, "ChangeBatch": {"Changes": [{"Action": "UPSERT",
            "ResourceRecordSet": {"Name": name, "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "10.9.9.9"}]}}]}}),
    );
    sandbox.ok(&up_args(&project_text, &skiffd_text, &[]));
    assert_eq!(a_records(&zone_id, name), std::slice::from_ref(&address));
    // Issue 13, item 2: the record's tags were written by RunInstances itself; skiff never tags an existing
    // instance, which the developer's policy no longer allows anyone to do.
    assert!(
        recorded_actions(&recorded("eu-central-1"), "CreateTags").is_empty(),
        "no CreateTags after launch"
    );

    // delete removes it with the instance and says so.
    let deleted = sandbox.ok_stderr(&["delete", "web", "--yes"]);
    assert!(
        deleted.contains(&format!("DNS record {name} removed")),
        "{deleted}"
    );
    assert!(a_records(&zone_id, name).is_empty());
    assert!(live_instances("eu-central-1", "web").is_empty());
}

#[test]
fn an_interrupted_up_converges_on_one_instance() {
    let sandbox = AwsSandbox::new("eu-west-2");
    let project = sandbox.project("killed");
    let skiffd = binary("skiffd");
    let (project_text, skiffd_text) = (project.display().to_string(), skiffd.display().to_string());
    let args = up_args(&project_text, &skiffd_text, &[]);
    let output = sandbox
        .skiff()
        .args(&args)
        .env("SKIFF_AWS_ABORT_AFTER", "run-instances")
        .output()
        .unwrap();
    assert!(!output.status.success(), "the first up was killed");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("aborting after run-instances"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(live_instances("eu-west-2", "killed").len(), 1);

    assert_eq!(sandbox.ok(&args).trim(), "killed");
    let instances = live_instances("eu-west-2", "killed");
    assert_eq!(instances.len(), 1, "no duplicate: {instances:#?}");
    assert_eq!(instances[0]["State"]["Name"], "running");
    let requests = recorded("eu-west-2");
    assert_eq!(
        recorded_actions(&requests, "RunInstances").len(),
        1,
        "the rerun found the instance by its tags"
    );
    assert_eq!(recorded_actions(&requests, "CreateSecurityGroup").len(), 1);
    assert_eq!(
        tagged_groups("eu-west-2", "killed").len(),
        1,
        "no orphaned group"
    );
    let record = std::fs::read_to_string(sandbox.record("killed").join("workspace.toml")).unwrap();
    assert!(
        record.contains(instances[0]["InstanceId"].as_str().unwrap()),
        "the rerun recorded the instance: {record}"
    );

    // A killed run whose RunInstances never answered would be retried with the same token: the token comes
    // from the workspace's record, so it is the same as long as the record is.
    sandbox.ok(&["delete", "killed", "--yes"]);
    assert!(live_instances("eu-west-2", "killed").is_empty());
    assert!(tagged_groups("eu-west-2", "killed").is_empty());
}

async fn accepted(agent: &InProcessAgent, identity: &Identity) -> bool {
    let Ok(mut client) = agent.connect_as(identity).await else {
        return false;
    };
    client.version().await.is_ok()
}

fn identity_of(sandbox: &AwsSandbox, name: &str) -> Identity {
    Identity {
        private_key_pem: std::fs::read_to_string(sandbox.record(name).join("client.key")).unwrap(),
        certificate_pem: std::fs::read_to_string(sandbox.record(name).join("client.crt")).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn enroll_sends_only_a_certificate_and_the_agent_then_accepts_that_machine() {
    let first = AwsSandbox::new("eu-west-3");
    let project = first.project("shared");
    let skiffd = binary("skiffd");
    let (project_text, skiffd_text) = (project.display().to_string(), skiffd.display().to_string());
    let args: Vec<String> = up_args(&project_text, &skiffd_text, &[])
        .into_iter()
        .map(str::to_owned)
        .collect();
    let first = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        first.ok(&args);
        first
    })
    .await
    .unwrap();
    let instance_id = live_instances("eu-west-3", "shared")[0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_owned();

    let second = AwsSandbox::new("eu-west-3");
    let second = tokio::task::spawn_blocking(move || {
        second.ok(&["enroll", "shared"]);
        second
    })
    .await
    .unwrap();
    let laptop = identity_of(&second, "shared");
    let record = std::fs::read_to_string(second.record("shared").join("workspace.toml")).unwrap();
    assert!(
        record.contains("provider = \"aws\"") && record.contains(&instance_id),
        "{record}"
    );

    // The Run Command as sent: AWS-RunShellScript on that instance, carrying the certificate and no key.
    let requests = recorded("eu-west-3");
    let commands = recorded_actions(&requests, "SendCommand");
    assert_eq!(commands.len(), 1);
    let params = &commands[0]["params"];
    assert_eq!(params["DocumentName"], "AWS-RunShellScript");
    assert_eq!(params["InstanceIds"], serde_json::json!([instance_id]));
    let lines = params["Parameters"]["commands"].as_array().unwrap();
    assert_eq!(lines.len(), 1);
    let script = lines[0].as_str().unwrap();
    assert!(script.contains(laptop.certificate_pem.trim()));
    assert!(!script.contains("PRIVATE KEY"));
    assert_eq!(
        script.matches("BEGIN").count(),
        1,
        "one certificate and nothing else: {script}"
    );
    let without_certificate = script.replace(laptop.certificate_pem.trim(), "");
    assert!(
        without_certificate.len() < 600,
        "only a fixed script around the certificate: {without_certificate}"
    );

    // The agent, given that script's certificate in its trust folder, accepts the laptop and no other.
    let owner = identity_of(&first, "shared");
    let stranger = Identity::generate("skiff-client").unwrap();
    let agent = InProcessAgent::start_with("enrolled", &owner, |_| {}).await;
    assert!(!accepted(&agent, &laptop).await, "not before enrolling");
    let trust = agent.agent_dir().join("trusted-clients");
    let local_script = script.replace(
        "dir=/var/lib/skiffd/trusted-clients",
        &format!("dir={}", trust.display()),
    );
    assert_ne!(local_script, script, "the script names the trust folder");
    let output = Command::new("sh")
        .args(["-c", &local_script])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("skiff: enrolled enrolled-"));
    assert!(
        accepted(&agent, &laptop).await,
        "the enrolled laptop is accepted"
    );
    assert!(accepted(&agent, &owner).await, "the first laptop still is");
    assert!(
        !accepted(&agent, &stranger).await,
        "others are still refused"
    );
    agent.stop().await;

    tokio::task::spawn_blocking(move || {
        first.ok(&["delete", "shared", "--yes"]);
        drop(second);
    })
    .await
    .unwrap();
}

#[test]
fn three_hundred_workspaces_are_listed_across_pages() {
    let sandbox = AwsSandbox::new("ap-southeast-1");
    helper(
        "ap-southeast-1",
        &["seed", "300", MOTO_OWNER, "ws-", "ami-0a0b0c0d0e0f0002"],
    );
    helper(
        "ap-southeast-1",
        &[
            "seed",
            "5",
            "arn:aws:iam::123456789012:user/someone-else",
            "other-",
            "ami-0a0b0c0d0e0f0002",
        ],
    );
    sandbox.ok(&["provider", "aws", "--region", "ap-southeast-1"]);

    let mine: Vec<Value> = serde_json::from_str(&sandbox.ok(&["list", "--json"])).unwrap();
    assert_eq!(mine.len(), 300);
    let mut names: Vec<&str> = mine
        .iter()
        .map(|row| row["name"].as_str().unwrap())
        .collect();
    names.dedup();
    assert_eq!(names.len(), 300, "each workspace once");
    assert_eq!(names[0], "ws-000");
    assert_eq!(names[299], "ws-299");
    assert!(
        mine.iter()
            .all(|row| row["provider"] == "aws" && row["state"] == "running")
    );

    let everyone: Vec<Value> =
        serde_json::from_str(&sandbox.ok(&["list", "--json", "--all"])).unwrap();
    assert_eq!(everyone.len(), 305);
    assert_eq!(
        everyone
            .iter()
            .filter(|row| row["aws"]["owner"] != MOTO_OWNER)
            .count(),
        5
    );
    // moto pages by 100 reservations: skiff followed every NextToken.
    let requests = recorded("ap-southeast-1");
    let pages = recorded_actions(&requests, "DescribeInstances");
    assert!(
        pages
            .iter()
            .filter(|request| request["params"].get("NextToken").is_some())
            .count()
            >= 4,
        "two listings of at least three pages each: {} DescribeInstances",
        pages.len()
    );
    let table = sandbox.ok(&["list"]);
    assert_eq!(table.lines().count(), 301, "a header and 300 rows");
}

#[test]
fn bad_input_is_a_clear_error_before_anything_is_created() {
    let sandbox = AwsSandbox::new("ca-central-1");
    let project = sandbox.project("bad");
    let skiffd = binary("skiffd");
    let (project_text, skiffd_text) = (project.display().to_string(), skiffd.display().to_string());
    let with = |extra: &[&'static str]| -> Vec<String> {
        up_args(&project_text, &skiffd_text, extra)
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let fails = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sandbox.fails(&args)
    };

    let error = fails(with(&["--region", "mars"]));
    assert!(error.contains("unknown AWS region \"mars\""), "{error}");
    let error = fails(with(&["--region", "eu-mars-1"]));
    assert!(
        error.contains("unknown AWS region eu-mars-1; pass --region with one of: ")
            && error.contains("eu-west-1"),
        "{error}"
    );

    let output = sandbox
        .skiff()
        .args(up_args(&project_text, &skiffd_text, &[]))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        error.contains("no AWS credentials found") && error.contains("AWS_PROFILE"),
        "{error}"
    );

    let error = fails(with(&["--instance-type", "t9.bogus"]));
    assert!(
        error.contains(
            "instance type t9.bogus does not exist in region ca-central-1; pass --instance-type"
        ),
        "{error}"
    );

    let error = fails(with(&["--ami", "ami-0a0b0c0d0e0f0004"]));
    assert!(
        error.contains("AMI ami-0a0b0c0d0e0f0004 is for arm64, but the instance type runs x86_64"),
        "{error}"
    );

    let error = fails(with(&["--instance-type", "m7g.large"]));
    assert!(
        error.contains("is built for x86_64, but the instance type runs aarch64"),
        "a local skiffd for the wrong architecture: {error}"
    );

    let vpc = call(
        "ca-central-1",
        "ec2",
        "create_vpc",
        &serde_json::json!({"CidrBlock": "10.8.0.0/16"}),
    );
    let vpc_id = vpc["Vpc"]["VpcId"].as_str().unwrap().to_owned();
    let subnet = call(
        "ca-central-1",
        "ec2",
        "create_subnet",
        &serde_json::json!({"VpcId": vpc_id, "CidrBlock": "10.8.1.0/24"}),
    );
    let subnet_id = subnet["Subnet"]["SubnetId"].as_str().unwrap().to_owned();
    let default_vpc = call(
        "ca-central-1",
        "ec2",
        "describe_vpcs",
        &serde_json::json!({"Filters": [{"Name": "is-default", "Values": ["true"]}]}),
    )["Vpcs"][0]["VpcId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut args = with(&[]);
    args.extend([
        "--subnet".into(),
        subnet_id.clone(),
        "--vpc".into(),
        default_vpc.clone(),
    ]);
    let error = fails(args);
    assert!(
        error.contains(&format!(
            "subnet {subnet_id} is in VPC {vpc_id}, not in VPC {default_vpc} given with --vpc"
        )),
        "{error}"
    );

    let open = call(
        "ca-central-1",
        "ec2",
        "create_security_group",
        &serde_json::json!({"GroupName": "wide-open", "Description": "test", "VpcId": default_vpc}),
    );
    let open_id = open["GroupId"].as_str().unwrap().to_owned();
    call(
        "ca-central-1",
        "ec2",
        "authorize_security_group_ingress",
        &serde_json::json!({"GroupId": open_id, "IpPermissions": [
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ]}),
    );
    let mut args = with(&[]);
    args.extend(["--security-group".into(), open_id.clone()]);
    let error = fails(args);
    assert!(
        error.contains(&format!(
            "security group {open_id} allows ingress from 0.0.0.0/0"
        )) && error.contains("--allow-open-security-group"),
        "{error}"
    );

    // None of that made anything: no instance, no group, no role call, no local record.
    let requests = recorded("ca-central-1");
    for action in ["RunInstances", "CreateSecurityGroup", "StartInstances"] {
        assert!(
            recorded_actions(&requests, action).is_empty(),
            "{action} was called"
        );
    }
    assert!(live_instances("ca-central-1", "bad").is_empty());
    assert!(tagged_groups("ca-central-1", "bad").is_empty());
    assert!(
        sandbox.workspaces().is_empty(),
        "no local record: {:?}",
        sandbox.workspaces()
    );

    // The same open group is accepted when said explicitly (here with a persistent spot request).
    let mut args = with(&["--allow-open-security-group", "--spot"]);
    args.extend(["--security-group".into(), open_id.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sandbox.ok(&args);
    assert_eq!(
        live_instances("ca-central-1", "bad")[0]["SecurityGroups"][0]["GroupId"],
        open_id.as_str()
    );
    let requests = recorded("ca-central-1");
    let runs = recorded_actions(&requests, "RunInstances");
    assert_eq!(runs.len(), 1);
    let run = &runs[0]["params"];
    assert_eq!(run["InstanceMarketOptions.MarketType"], "spot");
    assert_eq!(
        run["InstanceMarketOptions.SpotOptions.SpotInstanceType"],
        "persistent"
    );
    assert_eq!(
        run["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"],
        "stop"
    );
    assert_eq!(run["SecurityGroupId.1"], open_id.as_str());
    sandbox.ok(&["delete", "bad", "--yes"]);
    assert!(live_instances("ca-central-1", "bad").is_empty());
}

/// `skiff aws-policy` prints the developer's policy (the one `aws_policy.rs` decides), `--admin` the operator's,
/// and a zone that is not a hosted zone id is refused; neither policy writes IAM.
#[test]
fn aws_policy_prints_the_developer_and_operator_policies() {
    let sandbox = AwsSandbox::new("us-west-1");
    let policy: Value =
        serde_json::from_str(&sandbox.ok(&["aws-policy", "--dns-zone", "Z0123456789ABC"])).unwrap();
    let options =
        skiff_client::provider::aws::policy::PolicyOptions::new(Some("Z0123456789ABC"), &[])
            .unwrap();
    assert_eq!(
        policy,
        skiff_client::provider::aws::policy::developer_policy(&options)
    );
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().unwrap();
    let find = |sid: &str| {
        statements
            .iter()
            .find(|statement| statement["Sid"] == sid)
            .unwrap_or_else(|| panic!("{sid} in {policy:#}"))
    };
    assert_eq!(
        find("SkiffManageOwnInstances")["Condition"]["StringEquals"]["aws:ResourceTag/skiff:owner"],
        "${aws:userid}"
    );
    assert_eq!(
        find("SkiffDnsRecordsInOneZone")["Resource"],
        "arn:aws:route53:::hostedzone/Z0123456789ABC"
    );
    let text = policy.to_string();
    for write in [
        "iam:Create",
        "iam:Attach",
        "iam:Put",
        "iam:Delete",
        "iam:Remove",
        "iam:Add",
    ] {
        assert!(!text.contains(write), "no {write}: {policy:#}");
    }
    let admin: Value = serde_json::from_str(&sandbox.ok(&["aws-policy", "--admin"])).unwrap();
    assert!(!admin.to_string().contains("\"iam:"), "{admin:#}");
    assert!(
        admin.to_string().contains("ec2:TerminateInstances"),
        "{admin:#}"
    );
    let refused = sandbox.fails(&["aws-policy", "--dns-zone", "*"]);
    assert!(refused.contains("--dns-zone \"*\""), "{refused}");
}

/// `skiff aws-setup` (an IAM administrator, once per account) makes the role with its permissions boundary, the
/// SSM policy and the instance profile; run again it finds them; `--remove` takes them all away. In an account of
/// its own, so the other tests' role is never touched.
#[test]
fn aws_setup_makes_the_bounded_role_once_and_removes_it() {
    let admin = AwsSandbox::as_role("us-east-2", "333333333333", "admin");
    let made = admin.ok(&["aws-setup"]);
    assert!(
        made.contains("made policy arn:aws:iam::333333333333:policy/skiff-instance-boundary")
            && made.contains("made role skiff-instance")
            && made.contains("made instance profile skiff-instance"),
        "{made}"
    );
    let again = admin.ok(&["aws-setup"]);
    assert!(
        again.contains("found role skiff-instance")
            && again.contains("found instance profile skiff-instance"),
        "{again}"
    );
    let [key, secret, token] = admin.credentials.clone().unwrap();
    let read = |operation: &str, params: Value| -> Value {
        let output = Command::new("python3")
            .arg(skiff_tests::fixtures_dir().join("aws/moto.py"))
            .args([
                &moto().endpoint,
                "us-east-1",
                "call",
                "iam",
                operation,
                &params.to_string(),
            ])
            .env(
                "SKIFF_TEST_AWS_CREDENTIALS",
                format!("{key}:{secret}:{token}"),
            )
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let role = read(
        "get_role",
        serde_json::json!({"RoleName": "skiff-instance"}),
    );
    assert_eq!(
        role["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"],
        "arn:aws:iam::333333333333:policy/skiff-instance-boundary"
    );
    assert!(
        role["Role"]["AssumeRolePolicyDocument"]
            .to_string()
            .contains("ec2.amazonaws.com"),
        "{role:#}"
    );
    let attached = read(
        "list_attached_role_policies",
        serde_json::json!({"RoleName": "skiff-instance"}),
    );
    assert_eq!(
        attached["AttachedPolicies"][0]["PolicyArn"],
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    );
    // A boundary an older skiff made (without ECR) is brought up to this one's: a new default version.
    let boundary = "arn:aws:iam::333333333333:policy/skiff-instance-boundary";
    let older = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["ssm:UpdateInstanceInformation"], "Resource": "*"}]});
    read(
        "create_policy_version",
        serde_json::json!({"PolicyArn": boundary, "PolicyDocument": older.to_string(), "SetAsDefault": true}),
    );
    // --ecr: the role may pull from this account's repositories, and only pull.
    let with_ecr = admin.ok(&["aws-setup", "--ecr"]);
    assert!(
        with_ecr
            .contains("updated policy arn:aws:iam::333333333333:policy/skiff-instance-boundary")
            && with_ecr.contains("skiff-ecr-read"),
        "{with_ecr}"
    );
    let policy = read("get_policy", serde_json::json!({"PolicyArn": boundary}));
    let version = read(
        "get_policy_version",
        serde_json::json!({"PolicyArn": boundary, "VersionId": policy["Policy"]["DefaultVersionId"]}),
    );
    let document = version["PolicyVersion"]["Document"].to_string();
    assert!(
        document.contains("ecr:BatchGetImage") && document.contains("ssmmessages:OpenDataChannel"),
        "the boundary is this skiff's again: {document}"
    );
    let inline = read(
        "get_role_policy",
        serde_json::json!({"RoleName": "skiff-instance", "PolicyName": "skiff-ecr-read"}),
    );
    let ecr_policy = inline["PolicyDocument"].to_string();
    assert!(
        ecr_policy.contains("arn:aws:ecr:*:333333333333:repository/*")
            && !ecr_policy.contains("ecr:PutImage"),
        "{ecr_policy}"
    );
    let current = admin.ok(&["aws-setup"]);
    assert!(
        current.contains("found policy arn:aws:iam::333333333333:policy/skiff-instance-boundary"),
        "{current}"
    );
    let removed = admin.ok(&["aws-setup", "--remove"]);
    assert!(
        removed.contains("removed role skiff-instance")
            && removed.contains("removed instance profile skiff-instance"),
        "{removed}"
    );
    let refused = admin.fails(&up_args(
        &admin.project("after").display().to_string(),
        &binary("skiffd").display().to_string(),
        &[],
    ));
    assert!(refused.contains("skiff aws-setup"), "{refused}");
}

/// `up` in an account where nobody ran `aws-setup` fails before it makes anything, saying who must run it; a
/// developer's skiff never makes the role itself (it used to, which needed IAM writes in every developer's policy).
#[test]
fn up_without_aws_setup_says_who_must_run_it() {
    let sandbox = AwsSandbox::as_role("sa-east-1", "222222222222", "carol");
    let project = sandbox.project("nosetup");
    let skiffd = binary("skiffd");
    let (project_text, skiffd_text) = (project.display().to_string(), skiffd.display().to_string());
    let refused = sandbox.fails(&up_args(&project_text, &skiffd_text, &[]));
    assert!(
        refused.contains("instance profile skiff-instance does not exist")
            && refused.contains("someone allowed to manage IAM")
            && refused.contains("skiff aws-setup"),
        "{refused}"
    );
    assert!(live_instances("sa-east-1", "nosetup").is_empty());
    assert!(tagged_groups("sa-east-1", "nosetup").is_empty());
    assert!(sandbox.workspaces().is_empty(), "no record is left");
    let requests = recorded("sa-east-1");
    for write in [
        "CreateRole",
        "CreateInstanceProfile",
        "AttachRolePolicy",
        "RunInstances",
    ] {
        assert!(
            recorded_actions(&requests, write).is_empty(),
            "up calls no {write}"
        );
    }
}

/// Issue 13, item 6: someone who can tag an instance as your workspace (here through moto, which enforces no
/// policy; in AWS an account without skiff's policy, or a colleague before it) pre-creates it, so that your first
/// `up` would find it by its tags, pin its agent's certificate and upload your files to it. skiff refuses it by
/// name before sending it anything, and launches nothing in its place.
#[test]
fn a_pre_created_instance_tagged_as_yours_is_refused_before_anything_is_sent() {
    let sandbox = AwsSandbox::new("ap-northeast-1");
    let project = sandbox.project("victim");
    let skiffd = binary("skiffd");
    let (project_text, skiffd_text) = (project.display().to_string(), skiffd.display().to_string());
    let planted_id = planted_instance("ap-northeast-1", MOTO_OWNER, "victim");
    let mut args = up_args(&project_text, &skiffd_text, &[]);
    // Without --no-wait, an accepted instance would next be waited for, pushed skiffd and uploaded to.
    args.retain(|arg| *arg != "--no-wait");
    let refused = sandbox.fails(&args);
    assert!(
        refused.contains(&format!("instance {planted_id} is tagged as your workspace victim but was not launched by this machine")),
        "{refused}"
    );
    let requests = recorded("ap-northeast-1");
    for call in [
        "SendCommand",
        "StartSession",
        "DescribeInstanceInformation",
        "RunInstances",
        "StartInstances",
    ] {
        assert!(
            recorded_actions(&requests, call).is_empty(),
            "nothing goes to the planted instance, and nothing replaces it: {call}"
        );
    }
    assert!(
        sandbox.workspaces().is_empty(),
        "no record is left: {:?}",
        sandbox.workspaces()
    );
    call(
        "ap-northeast-1",
        "ec2",
        "terminate_instances",
        &serde_json::json!({"InstanceIds": [planted_id]}),
    );
}

/// An instance made outside this machine's skiff (moto's seed) with `skiff:owner` `owner` and tagged as workspace
/// `workspace`, as whoever can tag instances would leave it; its id.
fn planted_instance(region: &str, owner: &str, workspace: &str) -> String {
    helper(
        region,
        &["seed", "1", owner, workspace, "ami-0a0b0c0d0e0f0002"],
    );
    // The seed names workspaces PREFIX000; the planted one gets the workspace's own name.
    let planted = live_instances(region, &format!("{workspace}000"));
    assert_eq!(planted.len(), 1);
    let id = planted[0]["InstanceId"].as_str().unwrap().to_owned();
    call(
        region,
        "ec2",
        "create_tags",
        &serde_json::json!({"Resources": [id], "Tags": [{"Key": "skiff:workspace", "Value": workspace}]}),
    );
    id
}

/// A workspace an older skiff launched carries the owner's ARN in `skiff:owner`, which the developer policy's
/// conditions (on `aws:userid`) no longer match: `up` says so and who can remove it, and launches no second
/// instance beside it (which would leave the first one costing unseen).
#[test]
fn a_workspace_tagged_by_an_older_skiff_is_named_not_duplicated() {
    let sandbox = AwsSandbox::new("ap-northeast-1");
    let project = sandbox.project("legacy");
    let skiffd = binary("skiffd");
    let (project_text, skiffd_text) = (project.display().to_string(), skiffd.display().to_string());
    let older_id = planted_instance("ap-northeast-1", MOTO_ARN, "legacy");
    let refused = sandbox.fails(&up_args(&project_text, &skiffd_text, &[]));
    assert!(
        refused.contains(&format!("workspace legacy is instance {older_id}"))
            && refused.contains("older skiff")
            && refused.contains(&format!("skiff delete legacy --owner '{MOTO_ARN}'")),
        "{refused}"
    );
    assert!(
        recorded_actions(&recorded("ap-northeast-1"), "RunInstances").is_empty(),
        "no second instance is launched beside it"
    );
    assert!(
        sandbox.workspaces().is_empty(),
        "{:?}",
        sandbox.workspaces()
    );
    call(
        "ap-northeast-1",
        "ec2",
        "terminate_instances",
        &serde_json::json!({"InstanceIds": [older_id]}),
    );
}

/// Issue 13, item 3: a colleague (another session of the same role, so another `aws:userid`) cannot `skiff enroll`
/// into your workspace: found only by its owner, refused by name with `--owner`, and only `--operator` (the
/// operator's policy in AWS) sends the Run Command.
#[test]
fn enroll_into_a_colleagues_workspace_is_refused() {
    let owner = AwsSandbox::as_role("ap-south-1", "123456789012", "alice");
    let project = owner.project("mine");
    let skiffd = binary("skiffd");
    let (project_text, skiffd_text) = (project.display().to_string(), skiffd.display().to_string());
    owner.ok(&up_args(&project_text, &skiffd_text, &[]));
    let instance = live_instances("ap-south-1", "mine").remove(0);
    let alice = tag(&instance, "skiff:owner").unwrap().to_owned();
    assert!(
        alice.ends_with(":alice"),
        "the owner is alice's aws:userid: {alice}"
    );
    assert!(
        tag(&instance, "skiff:owner-arn").is_some_and(|arn| arn.ends_with("/developers/alice")),
        "{instance:#}"
    );

    let colleague = AwsSandbox::as_role("ap-south-1", "123456789012", "bob");
    let not_found = colleague.fails(&["enroll", "mine"]);
    assert!(not_found.contains("no workspace mine of"), "{not_found}");
    let refused = colleague.fails(&["enroll", "mine", "--owner", &alice]);
    assert!(
        refused.contains(&format!("workspace mine of {alice} is not yours"))
            && refused.contains("--operator"),
        "{refused}"
    );
    assert!(colleague.workspaces().is_empty());
    let requests = recorded("ap-south-1");
    assert!(
        recorded_actions(&requests, "SendCommand").is_empty(),
        "no Run Command reached alice's instance"
    );

    // An operator may, and says whose workspace it is.
    colleague.ok(&["enroll", "mine", "--owner", &alice, "--operator"]);
    let requests = recorded("ap-south-1");
    assert_eq!(recorded_actions(&requests, "SendCommand").len(), 1);

    // An operator's clean-up (`stop --owner`, `delete --owner`, the operator policy in AWS) from a machine with no
    // record of it.
    let operator = AwsSandbox::as_role("ap-south-1", "123456789012", "ops");
    operator.ok(&["stop", "mine", "--owner", &alice]);
    assert_eq!(
        live_instances("ap-south-1", "mine")[0]["State"]["Name"],
        "stopped"
    );
    let status = operator.ok(&["status", "mine", "--owner", &alice, "--json"]);
    assert!(status.contains("\"stopped\""), "{status}");
    // The team's view: everyone's workspaces, then a line per owner.
    let listed = operator.ok(&["list", "--all"]);
    let owners = listed
        .split_once("OWNER")
        .unwrap_or_else(|| panic!("a table of owners: {listed}"))
        .1;
    let line = owners
        .lines()
        .find(|line| line.starts_with(&alice))
        .unwrap_or_else(|| panic!("alice's line: {listed}"));
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        columns[1..3],
        ["1", "0"],
        "one workspace, none running: {line}"
    );
    let deleted = operator.ok_stderr(&["delete", "mine", "--owner", &alice, "--yes"]);
    assert!(
        deleted.contains("deleted workspace mine (1 instance terminated"),
        "{deleted}"
    );
    assert!(live_instances("ap-south-1", "mine").is_empty());
    drop((owner, colleague));
}

/// Makes a workspace with `up --no-wait` and returns its user-data, with the agent's and receiver's ports made
/// free ones, because the stand-in shares the host's loopback with everything else.
fn user_data_of(sandbox: &AwsSandbox, name: &str, extra: &[&str]) -> (String, u16) {
    let project = sandbox.project(name);
    let skiffd = binary("skiffd");
    let mut args = vec![
        "up".to_owned(),
        project.display().to_string(),
        "--provider".into(),
        "aws".into(),
        "--no-wait".into(),
        "--agent-binary".into(),
        skiffd.display().to_string(),
    ];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sandbox.ok(&args);
    let instance_id = live_instances(&sandbox.region, name)[0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let script = helper(&sandbox.region, &["user-data", &instance_id]);
    let receiver = free_port();
    let script = script
        .replace(
            "SKIFF_AGENT_LISTEN='127.0.0.1:7443'",
            "SKIFF_AGENT_LISTEN='127.0.0.1:0'",
        )
        .replace(
            "SKIFF_RECEIVER_PORT='7444'",
            &format!("SKIFF_RECEIVER_PORT='{receiver}'"),
        );
    assert!(script.contains("SKIFF_AGENT_LISTEN='127.0.0.1:0'"));
    (script, receiver)
}

fn shellcheck(script: &str, folder: &Path) {
    let path = folder.join("shellcheck-me.sh");
    std::fs::write(&path, script).unwrap();
    let output = Command::new("shellcheck").arg(&path).output();
    let output = output.unwrap_or_else(|error| {
        panic!("running shellcheck: {error}; install it with `apt-get install shellcheck` (.ci/run does)")
    });
    assert!(
        output.status.success(),
        "shellcheck finds problems in the user-data:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Connects to the agent in the stand-in with the workspace's key; its version.
fn agent_version(sandbox: &AwsSandbox, name: &str, instance: &Instance) -> String {
    let address: std::net::SocketAddr = instance
        .exec("cat /var/lib/skiffd/listen-address")
        .trim()
        .parse()
        .unwrap();
    let agent_certificate = instance.exec("cat /var/lib/skiffd/agent.crt");
    let identity = identity_of(sandbox, name);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = skiff_client::tunnel::tcp::connect(address, &identity, &agent_certificate)
            .await
            .unwrap();
        skiff_client::agent_client::AgentClient::new(channel)
            .version()
            .await
            .unwrap()
            .agent_version
    })
}

#[test]
fn user_data_installs_a_checked_skiffd_and_starts_it_without_systemd() {
    require_docker();
    let sandbox = AwsSandbox::new("us-east-2");
    let skiffd = std::fs::read(binary("skiffd")).unwrap();
    let server = FileServer::start("skiffd", skiffd.clone());
    let url = format!("http://127.0.0.1:{}/skiffd", server.port);
    let (script, _) = user_data_of(
        &sandbox,
        "booted",
        &["--agent-url", &url, "--idle-timeout", "45m"],
    );
    shellcheck(&script, sandbox.root.path());

    let instance = Instance::boot(&script, sandbox.root.path());
    let (code, log) = instance.finish();
    assert_eq!(code, 0, "user-data failed:\n{log}");
    assert!(
        log.contains(&format!("skiff-boot: skiffd from {url} matches SHA-256")),
        "{log}"
    );
    assert!(log.contains("skiff-boot: docker is installed"), "{log}");
    assert!(
        log.contains("skiff-boot: WARNING: no SSM agent runs here"),
        "{log}"
    );
    assert!(
        log.contains("skiff-boot: started skiffd without systemd"),
        "{log}"
    );
    assert!(
        log.contains("skiff-boot: done: workspace booted is ready"),
        "{log}"
    );
    let config = instance.exec("cat /etc/skiffd/skiffd.toml");
    assert!(config.contains("workspace = \"booted\""), "{config}");
    assert!(config.contains("idle_timeout = \"45m\""), "{config}");
    assert!(config.contains("idle_action = \"poweroff\""), "{config}");
    assert!(config.contains("BEGIN CERTIFICATE"), "{config}");
    assert_eq!(
        instance.exec("stat -c %a /etc/skiffd/skiffd.toml").trim(),
        "600"
    );
    assert_eq!(
        agent_version(&sandbox, "booted", &instance),
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn user_data_refuses_a_skiffd_with_the_wrong_sha256() {
    require_docker();
    let sandbox = AwsSandbox::new("us-west-2");
    let mut tampered = std::fs::read(binary("skiffd")).unwrap();
    tampered.extend_from_slice(b"tampered");
    let server = FileServer::start("skiffd", tampered);
    let url = format!("http://127.0.0.1:{}/skiffd", server.port);
    let (script, _) = user_data_of(&sandbox, "tampered", &["--agent-url", &url]);
    let instance = Instance::boot(&script, sandbox.root.path());
    let (code, log) = instance.finish();
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains(&format!(
            "skiff-boot: FAILED: skiffd from {url} has SHA-256"
        )) && log.contains("but the client expects")
            && log.contains("refusing to install it"),
        "{log}"
    );
    assert_eq!(
        instance
            .exec("test -e /usr/local/bin/skiffd && echo present")
            .trim(),
        ""
    );
    assert_eq!(
        instance.exec("ls /var/lib/skiffd").trim(),
        "",
        "the download was removed"
    );
}

#[test]
fn user_data_receives_a_pushed_skiffd_on_loopback_and_checks_it() {
    require_docker();
    let sandbox = AwsSandbox::new("ap-northeast-1");
    let (script, receiver) = user_data_of(&sandbox, "pushed", &[]);
    assert!(
        script.contains("SKIFF_AGENT_URL=''"),
        "no URL: the client pushes"
    );
    shellcheck(&script, sandbox.root.path());
    let instance = Instance::boot(&script, sandbox.root.path());
    // The receiver listens on 127.0.0.1 only; push the binary the way the tunnel will, one connection.
    let skiffd = std::fs::read(binary("skiffd")).unwrap();
    let mut stream = None;
    wait_until(Duration::from_secs(30), || {
        stream = std::net::TcpStream::connect(("127.0.0.1", receiver)).ok();
        stream.is_some()
    })
    .expect("the receiver listens");
    let mut stream = stream.unwrap();
    stream.write_all(&skiffd).unwrap();
    drop(stream);
    let (code, log) = instance.finish();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!(
            "waiting up to 3600s for the client to push skiffd to 127.0.0.1:{receiver}"
        )),
        "{log}"
    );
    assert!(
        log.contains("skiff-boot: skiffd from the client's push matches SHA-256"),
        "{log}"
    );
    assert_eq!(
        agent_version(&sandbox, "pushed", &instance),
        env!("CARGO_PKG_VERSION")
    );
}

/// Start on connect on AWS: a command that needs the agent of a workspace whose instance is stopped (by `skiff
/// stop`, as the idle stop leaves it) starts the instance, saying so on standard error, then waits for its agent;
/// `--no-start` leaves it stopped and says how to start it. (The agent's side, the dev container started again,
/// is the same `Start` the local tests drive.)
#[test]
fn a_command_on_a_stopped_instance_starts_it_unless_told_not_to() {
    // A region no other test uses: the tests read back what was recorded in theirs.
    let region = "ap-northeast-2";
    let sandbox = AwsSandbox::new(region);
    let project = sandbox.project("sleepy");
    let skiffd = binary("skiffd");
    let (project_text, skiffd_text) = (project.display().to_string(), skiffd.display().to_string());
    sandbox.ok(&up_args(&project_text, &skiffd_text, &[]));
    sandbox.ok(&["stop", "sleepy"]);
    let state = || live_instances(region, "sleepy")[0]["State"]["Name"].clone();
    assert_eq!(state(), "stopped");

    let refused = sandbox.fails(&["exec", "--no-start", "sleepy", "--", "true"]);
    assert!(
        refused.contains("workspace sleepy is stopped") && refused.contains("--no-start"),
        "{refused}"
    );
    assert!(refused.contains("skiff up"), "{refused}");
    assert_eq!(state(), "stopped", "--no-start left it stopped");
    let requests = recorded(region);
    assert!(recorded_actions(&requests, "StartInstances").is_empty());

    let mut exec = skiff_tests::Reaped(
        sandbox
            .skiff()
            .args(["exec", "sleepy", "--", "true"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let running = wait_until(Duration::from_secs(60), || state() == "running");
    let _ = exec.0.kill();
    let _ = exec.0.wait();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut exec.0.stderr.take().unwrap(), &mut stderr);
    assert!(running.is_some(), "exec started the instance: {stderr}");
    assert!(
        stderr.contains("workspace sleepy is stopped; starting it"),
        "{stderr}"
    );
    let requests = recorded(region);
    assert_eq!(recorded_actions(&requests, "StartInstances").len(), 1);
    sandbox.ok(&["delete", "sleepy", "--yes"]);
    assert!(live_instances(region, "sleepy").is_empty());
    // An on-demand workspace's delete asks nothing about spot: a policy without the spot statements still deletes it.
    let requests = recorded(region);
    assert!(recorded_actions(&requests, "DescribeSpotInstanceRequests").is_empty());
}

/// A `--spot` workspace's persistent request is cancelled by `delete` before its instance is terminated (left open,
/// it would launch a new instance for the one terminated, a bill nobody sees), and only the caller's own request:
/// a colleague's request for a workspace of the same name stays.
#[test]
fn delete_cancels_the_spot_request_first_and_no_one_elses() {
    // A region no other test uses: the test reads back what was recorded in it.
    let region = "ap-southeast-2";
    let sandbox = AwsSandbox::new(region);
    let project = sandbox.project("cheap");
    let skiffd = binary("skiffd");
    let (project_text, skiffd_text) = (project.display().to_string(), skiffd.display().to_string());
    sandbox.ok(&up_args(&project_text, &skiffd_text, &["--spot"]));
    let instance = live_instances(region, "cheap").remove(0);
    assert_eq!(instance["InstanceLifecycle"], "spot");

    // moto's RunInstances makes no spot request (MOTO.md); AWS's makes one tagged as the launch asked. Planted
    // here as AWS would have made it, beside a colleague's for a workspace of the same name.
    let request = |owner: &str| {
        call(
            region,
            "ec2",
            "request_spot_instances",
            &serde_json::json!({
                "InstanceCount": 1,
                "Type": "persistent",
                "LaunchSpecification": {"ImageId": instance["ImageId"], "InstanceType": "t3.large"},
                "TagSpecifications": [{"ResourceType": "spot-instances-request", "Tags": [
                    {"Key": "skiff:workspace", "Value": "cheap"},
                    {"Key": "skiff:owner", "Value": owner}
                ]}]
            }),
        )["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let ours = request(MOTO_OWNER);
    let colleagues = request("AROAEXAMPLEROLEID:bob@example.com");
    let open_requests = || -> Vec<String> {
        call(
            region,
            "ec2",
            "describe_spot_instance_requests",
            &serde_json::json!({}),
        )["SpotInstanceRequests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|request| request["State"] != "cancelled")
            .map(|request| {
                request["SpotInstanceRequestId"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert!(open_requests().contains(&ours));

    let output = sandbox
        .skiff()
        .args(["delete", "cheap", "--yes"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("spot request {ours} cancelled")),
        "{stderr}"
    );
    assert_eq!(
        open_requests(),
        vec![colleagues.clone()],
        "ours is cancelled, the colleague's stays"
    );
    let requests = recorded(region);
    let position = |action: &str| {
        requests
            .iter()
            .position(|request| request["action"] == action)
            .unwrap_or_else(|| panic!("{action} was not sent"))
    };
    assert!(
        position("CancelSpotInstanceRequests") < position("TerminateInstances"),
        "the request is cancelled before the instance is terminated"
    );
    let cancels = recorded_actions(&requests, "CancelSpotInstanceRequests");
    assert_eq!(cancels.len(), 1);
    assert_eq!(
        cancels[0]["params"]["SpotInstanceRequestId.1"],
        ours.as_str()
    );
    assert!(
        cancels[0]["params"]
            .get("SpotInstanceRequestId.2")
            .is_none(),
        "{:?}",
        cancels[0]
    );
    assert!(live_instances(region, "cheap").is_empty());
}

/// `up` says what the workspace will cost before it launches: the instance type's on-demand price and the disk's
/// monthly price from the Price List Query API (a stand-in here, since moto does not model it), and the current
/// spot price from EC2 with `--spot`; list prices are cached on the laptop for a day; a price that cannot be had
/// is said and `up` goes on.
#[test]
fn up_shows_the_price_before_launching_and_goes_on_without_one() {
    use skiff_tests::pricing::{PriceList, gp3, instance};
    // A region no other test uses: the test reads back what was recorded in it.
    let region = "ap-northeast-3";
    let prices = PriceList::start(vec![
        instance(region, "t3.large", "0.1088000000"),
        instance(region, "t3.xlarge", "0.2176000000"),
        instance("eu-west-1", "t3.large", "0.0912000000"),
        gp3(region, "0.0960000000"),
    ]);
    let sandbox = AwsSandbox::new(region).with_env("AWS_ENDPOINT_URL_PRICING", &prices.endpoint());
    let skiffd = binary("skiffd");
    let skiffd_text = skiffd.display().to_string();
    let priced = |name: &str, extra: &[&str]| -> String {
        let project = sandbox.project(name).display().to_string();
        let mut args = up_args(&project, &skiffd_text, &[]);
        args.extend_from_slice(extra);
        let output = sandbox.skiff().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    let stderr = priced("priced", &["--instance-type", "t3.large"]);
    assert!(
        stderr.contains(
            "t3.large in ap-northeast-3: $0.1088/hour on demand; 40 GiB gp3 $3.84/month while it exists"
        ),
        "{stderr}"
    );
    let line = stderr.find("$0.1088/hour").unwrap();
    assert!(
        line < stderr.find("launching a t3.large").unwrap(),
        "the price comes before the launch: {stderr}"
    );
    assert_eq!(prices.calls(), 2, "the instance and the disk");
    // `status` prices the disk from its size (the tag `up` launched it with) for the part of the month it existed,
    // from the volume's attachment; its agent is not needed for that, so a stopped workspace shows it too.
    // EC2 times the attachment to the second: a status within the launch's second would see no time pass.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let status: Value = serde_json::from_str(&sandbox.ok(&["status", "priced", "--json"])).unwrap();
    let storage = &status["storage_cost_this_month"];
    assert_eq!(storage["gib"], 40, "{status:#}");
    assert_eq!(storage["gib_month_usd"], 0.096, "{status:#}");
    let usd = storage["usd"].as_f64().unwrap();
    // Launched a moment ago: more than nothing, less than an hour of a 31-day month's $3.84.
    assert!(usd > 0.0 && usd < 3.84 / (28.0 * 24.0), "{usd}");
    let text = sandbox.ok(&["status", "priced"]);
    assert!(
        text.contains("storage cost      ≈ $0.00 this month (40 GiB gp3 at $0.096/GiB-month, running or stopped)"),
        "{text}"
    );
    assert_eq!(prices.calls(), 2, "status used the cached prices");
    // `list` prices the month so far without the agent: launched this month and never stopped, its one run is the
    // whole month (compute for seconds, and the disk's share).
    let month_of = |listed: &str| -> (f64, bool) {
        let rows: Value = serde_json::from_str(listed).unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["name"] == "priced")
            .unwrap()
            .clone();
        (
            row["aws"]["month_to_date_usd"].as_f64().unwrap(),
            row["aws"]["month_to_date_whole"].as_bool().unwrap(),
        )
    };
    let (usd, whole) = month_of(&sandbox.ok(&["list", "--json"]));
    assert!(
        usd > 0.0 && usd < 0.1088 / 4.0 + 3.84 / (28.0 * 24.0),
        "{usd}"
    );
    assert!(
        whole,
        "the first run of a machine made this month is its month"
    );
    // With the ledger's last reading (which `status` keeps when the agent answers): its 10 hours, and the rest of
    // the same run since.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let month_start = skiff::calendar::month_start(now);
    std::fs::write(
        sandbox.home().join("workspaces/priced/usage.json"),
        serde_json::json!({
            "usage": {
                "month_start_unix": month_start,
                "running_seconds": 36_000,
                "idle_off_seconds": 0,
                "idle_stops": 0,
                "up_since_unix": now - 60,
                "ledger_since_unix": month_start,
            },
            "read_at_unix": now,
        })
        .to_string(),
    )
    .unwrap();
    let (usd, whole) = month_of(&sandbox.ok(&["list", "--json"]));
    assert!(
        whole && (1.088..1.088 + 0.05).contains(&usd),
        "10 h at $0.1088 and a moment's disk: {usd}"
    );
    let table = sandbox.ok(&["list"]);
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("priced ") && line.contains("$1.09")),
        "{table}"
    );
    assert!(table.contains("AWS this month so far: "), "{table}");

    // A second workspace within the day: the list prices come from the laptop's cache; the spot price is asked.
    let stderr = priced("priced-spot", &["--instance-type", "t3.large", "--spot"]);
    assert!(
        stderr.contains("/hour spot now ($0.1088/hour on demand); 40 GiB gp3 $3.84/month"),
        "{stderr}"
    );
    assert_eq!(prices.calls(), 2, "cached for a day");
    let requests = recorded(region);
    assert_eq!(
        recorded_actions(&requests, "DescribeSpotPriceHistory").len(),
        1
    );
    let cache = std::fs::read_to_string(sandbox.home().join("prices.json")).unwrap();
    assert!(cache.contains("ap-northeast-3/t3.large"), "{cache}");
    // Above the saved confirm-above price, without a terminal: refused before anything is made, unless --yes.
    sandbox.ok(&[
        "provider",
        "aws",
        "--region",
        region,
        "--confirm-above",
        "0.10",
    ]);
    let project = sandbox.project("pricey").display().to_string();
    let refused = sandbox.fails(&up_args(
        &project,
        &skiffd_text,
        &["--instance-type", "t3.xlarge"],
    ));
    assert!(
        refused.contains("t3.xlarge costs $0.2176/hour in ap-northeast-3, above your confirm-above of $0.10; nothing was created: pass --yes"),
        "{refused}"
    );
    assert!(live_instances(region, "pricey").is_empty());
    assert!(
        tagged_groups(region, "pricey").is_empty(),
        "nothing half-made"
    );
    let error = sandbox.fails(&up_args(
        &project,
        &skiffd_text,
        &["--confirm-above", "cheap"],
    ));
    assert!(
        error.contains("--confirm-above \"cheap\"") && error.contains("such as 0.50"),
        "{error}"
    );
    let stderr = priced("pricey", &["--instance-type", "t3.xlarge", "--yes"]);
    assert!(stderr.contains("$0.2176/hour on demand"), "{stderr}");
    assert_eq!(live_instances(region, "pricey").len(), 1);
    for name in ["priced", "priced-spot", "pricey"] {
        sandbox.ok(&["delete", name, "--yes"]);
    }

    // No Price List API to be had: a warning, and the launch goes on.
    drop(prices);
    let unpriced = AwsSandbox::new(region).with_env(
        "AWS_ENDPOINT_URL_PRICING",
        &format!("http://127.0.0.1:{}", free_port()),
    );
    let project = unpriced.project("unpriced").display().to_string();
    let output = unpriced
        .skiff()
        .args(up_args(
            &project,
            &skiffd_text,
            &["--instance-type", "t3.xlarge"],
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("t3.xlarge in ap-northeast-3: no hourly price; 40 GiB gp3: no storage price (going on without: the on-demand price: "),
        "{stderr}"
    );
    assert_eq!(live_instances(region, "unpriced").len(), 1);
    unpriced.ok(&["delete", "unpriced", "--yes"]);
}

/// Issue 17: a team's defaults live in the account (SSM Parameter Store, written by `aws-setup --team-defaults`), and
/// every `up` reads them under the person's own flags and settings; a file that sets what a team may not is refused.
#[test]
fn a_team_s_defaults_in_the_account_sit_under_each_person_s_flags() {
    let region = "af-south-1";
    let sandbox = AwsSandbox::new(region);
    let team = sandbox.root.path().join("team.toml");
    std::fs::write(
        &team,
        "instance_type = \"t3.xlarge\"\nvolume_size = 60\nidle_timeout = \"45m\"\ndotfiles = \"https://git.example.com/team/dotfiles\"\n[tags]\ncost-centre = \"42\"\n\
         [rules]\ninstance_types = [\"t3.*\"]\nmax_volume_size = 100\nmax_idle_timeout = \"2h\"\nrequired_tags = [\"cost-centre\"]\n",
    )
    .unwrap();
    let team_text = team.display().to_string();
    let said = sandbox.ok_stderr(&["aws-setup", "--team-defaults", &team_text]);
    assert!(
        said.contains("/skiff/team/defaults") && said.contains("skiff aws-policy --team"),
        "{said}"
    );
    let skiffd = binary("skiffd").display().to_string();
    let up = |name: &str, extra: &[&str]| {
        let project = sandbox.project(name).display().to_string();
        sandbox.ok(&up_args(&project, &skiffd, extra));
        live_instances(region, name).remove(0)
    };
    let defaulted = up("team-default", &[]);
    assert_eq!(defaulted["InstanceType"], "t3.xlarge", "the team's type");
    assert_eq!(
        tag(&defaulted, "skiff:volume-gib"),
        Some("60"),
        "the team's disk"
    );
    assert_eq!(tag(&defaulted, "cost-centre"), Some("42"), "the team's tag");
    let user_data = call(
        region,
        "ec2",
        "describe_instance_attribute",
        &serde_json::json!({"InstanceId": defaulted["InstanceId"], "Attribute": "userData"}),
    );
    use base64::Engine as _;
    let script = base64::engine::general_purpose::STANDARD
        .decode(user_data["UserData"]["Value"].as_str().unwrap())
        .unwrap();
    assert!(
        String::from_utf8_lossy(&script).contains("SKIFF_IDLE_TIMEOUT='45m'"),
        "the team's idle timeout"
    );
    let record = std::fs::read_to_string(
        sandbox
            .home()
            .join("workspaces/team-default/workspace.toml"),
    )
    .unwrap();
    assert!(
        record.contains("https://git.example.com/team/dotfiles"),
        "the team's dotfiles: {record}"
    );
    let chosen = up("team-flag", &["--instance-type", "t3.large"]);
    assert_eq!(chosen["InstanceType"], "t3.large", "the person's flag wins");
    assert_eq!(tag(&chosen, "skiff:volume-gib"), Some("60"));

    // The team's rules refuse, before anything is made, naming the rule and who wrote it.
    for (name, extra, rule) in [
        (
            "rule-type",
            vec!["--instance-type", "m5.large"],
            "instance_types",
        ),
        ("rule-disk", vec!["--volume-size", "500"], "max_volume_size"),
        (
            "rule-idle",
            vec!["--idle-timeout", "off"],
            "max_idle_timeout",
        ),
    ] {
        let project = sandbox.project(name).display().to_string();
        let refused = sandbox.fails(&up_args(&project, &skiffd, &extra));
        assert!(
            refused.contains(rule)
                && refused.contains("nothing was created")
                && refused.contains(MOTO_ARN),
            "{name}: {refused}"
        );
        assert!(
            live_instances(region, name).is_empty(),
            "{name}: no instance"
        );
        let listed = sandbox.ok(&["list", "--json"]);
        assert!(!listed.contains(name), "{name}: no local record: {listed}");
    }

    // What decides the code instances run is not a team default.
    std::fs::write(&team, "agent_url = \"https://evil.example/skiffd\"\n").unwrap();
    let refused = sandbox.fails(&["aws-setup", "--team-defaults", &team_text]);
    assert!(
        refused.contains("agent_url") && refused.contains("remove it"),
        "{refused}"
    );
    let parameter = call(
        region,
        "ssm",
        "get_parameter",
        &serde_json::json!({"Name": "/skiff/team/defaults"}),
    );
    let kept = parameter["Parameter"]["Value"].as_str().unwrap_or_default();
    assert!(
        kept.contains("t3.xlarge") && kept.contains(MOTO_ARN),
        "the refused file wrote nothing, and the kept one says who wrote it: {parameter}"
    );
    let removed = sandbox.ok_stderr(&["aws-setup", "--team-defaults", "none"]);
    assert!(removed.contains("removed the team's defaults"), "{removed}");
}
/// `aws-setup --budget`: one monthly budget for everything tagged skiff:workspace, with its two alerts, made,
/// kept on a second run (the alerts follow the new address) and removed; bad flags are refused by name. Budgets is
/// global: the region only signs the calls, and nothing regional is made.
#[test]
fn a_budget_for_every_workspace_alerts_the_team() {
    let region = "af-south-1";
    let sandbox = AwsSandbox::new(region);
    let missing = sandbox.fails(&["aws-setup", "--budget", "500"]);
    assert!(missing.contains("--alert-email"), "{missing}");
    let bad = sandbox.fails(&[
        "aws-setup",
        "--budget",
        "lots",
        "--alert-email",
        "ops@example.com",
    ]);
    assert!(bad.contains("--budget \"lots\""), "{bad}");

    let made = sandbox.ok(&[
        "aws-setup",
        "--budget",
        "500",
        "--alert-email",
        "ops@example.com",
    ]);
    assert!(made.contains("made budget skiff-workspaces"), "{made}");
    let account = "123456789012";
    let described = call(
        region,
        "budgets",
        "describe_budget",
        &serde_json::json!({"AccountId": account, "BudgetName": "skiff-workspaces"}),
    );
    let budget = &described["Budget"];
    assert_eq!(budget["BudgetLimit"]["Amount"], "500.00", "{budget}");
    assert_eq!(budget["BudgetLimit"]["Unit"], "USD");
    assert_eq!(budget["TimeUnit"], "MONTHLY");
    assert_eq!(budget["BudgetType"], "COST");
    assert_eq!(
        budget["FilterExpression"],
        serde_json::json!({"Not": {"Tags": {"Key": "skiff:workspace", "MatchOptions": ["ABSENT"]}}}),
        "everything tagged skiff:workspace, whatever its value"
    );
    let alerts = || {
        let listed = call(
            region,
            "budgets",
            "describe_notifications_for_budget",
            &serde_json::json!({"AccountId": account, "BudgetName": "skiff-workspaces"}),
        );
        let mut alerts: Vec<(String, f64)> = listed["Notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|alert| {
                (
                    alert["NotificationType"].as_str().unwrap().to_owned(),
                    alert["Threshold"].as_f64().unwrap(),
                )
            })
            .collect();
        alerts.sort_by(|a, b| a.0.cmp(&b.0));
        alerts
    };
    assert_eq!(
        alerts(),
        vec![
            ("ACTUAL".to_owned(), 80.0),
            ("FORECASTED".to_owned(), 100.0)
        ]
    );

    // Run again: the budget is kept, and its alerts are the new run's (two, not four).
    let again = sandbox.ok(&[
        "aws-setup",
        "--budget",
        "500",
        "--alert-email",
        "finance@example.com",
    ]);
    assert!(
        again.contains("found budget skiff-workspaces") && again.contains("finance@example.com"),
        "{again}"
    );
    assert_eq!(alerts().len(), 2);

    let removed = sandbox.ok(&["aws-setup", "--budget", "none"]);
    assert!(
        removed.contains("removed budget skiff-workspaces"),
        "{removed}"
    );
    let gone = sandbox.ok(&["aws-setup", "--budget", "none"]);
    assert!(gone.contains("had no budget"), "{gone}");
}
