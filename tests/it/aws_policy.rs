//! The IAM policies of `skiff aws-policy` decided, not just read: a table of requests evaluated against the
//! developer's policy (and the operator's) by an evaluator that honours conditions and policy variables; the same
//! policy under moto's IAM enforcement for what moto decides; and the policy checked by the linters security teams
//! use, `cloudsplaining scan-policy-file` and `parliament --include-community-auditors`.
//!
//! The evaluator is this file's own, small and limited to what the policies use, because no crate was found that
//! is fit for it: `iam-rs` (crates.io) says of itself "still in final dev and verification phase, caution on
//! usage". It follows the AWS documentation, section by section:
//! - "Policy evaluation logic" (IAM User Guide): an explicit Deny wins, then any Allow, else the implicit deny; a
//!   statement applies when its Action, its Resource and every one of its conditions match.
//! - "IAM JSON policy elements: Condition operators": operators in one block are ANDed, keys in one operator are
//!   ANDed, the values of one key are ORed; a key absent from the request makes every operator false except
//!   `Null` and the `…IfExists` forms (true); `StringLike` has `*` and `?`; `Bool` compares `true`/`false`.
//! - "Single-valued vs. multivalued condition keys": `ForAllValues:` is true when every value of the request's key
//!   matches some policy value, and also when the key is absent or empty; `ForAnyValue:` needs one match.
//! - "IAM policy elements: Variables and tags": `${aws:userid}` in a Resource or a condition value is replaced by the
//!   caller's value; a variable without a value makes the statement not match.
//! - "IAM JSON policy elements: Resource": `*` and `?` match within each colon-separated part of an ARN.
//!
//! What the request context holds for each action (which resources RunInstances authorises, which keys they carry)
//! is from the Service Authorization Reference for EC2, Systems Manager, IAM and Route 53.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use skiff_client::provider::aws::policy::{
    PolicyOptions, developer_policy, instance_boundary, operator_policy,
};

/// The caller whose workspaces these are: an IAM Identity Center user, as `aws:userid` shows one.
const ALICE: &str = "AROAEXAMPLEROLEID:alice@example.com";
/// A colleague in the same permission set: the same role, another session name.
const BOB: &str = "AROAEXAMPLEROLEID:bob@example.com";
const ZONE: &str = "Z0123456789ABCDEFGHIJ";
/// The key of `up --kms-key`.
const KEY: &str = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// One authorisation request: the action, the resource, the context keys (each with one or more values), and the
/// caller's `aws:userid`.
#[derive(Debug, Clone)]
struct Request {
    action: &'static str,
    resource: String,
    context: BTreeMap<String, Vec<String>>,
    user_id: &'static str,
}

fn request(action: &'static str, resource: &str) -> Request {
    Request {
        action,
        resource: resource.to_owned(),
        context: BTreeMap::new(),
        user_id: ALICE,
    }
}

impl Request {
    fn with(mut self, key: &str, values: &[&str]) -> Self {
        self.context.insert(
            key.to_owned(),
            values.iter().map(|value| (*value).to_owned()).collect(),
        );
        self
    }

    fn by(mut self, user_id: &'static str) -> Self {
        self.user_id = user_id;
        self
    }

    /// An EC2 instance's tags as `aws:ResourceTag/…` (and `ssm:resourceTag/…` for Systems Manager's actions).
    fn tagged(mut self, tags: &[(&str, &str)]) -> Self {
        for (key, value) in tags {
            self = self
                .with(&format!("aws:ResourceTag/{key}"), &[value])
                .with(&format!("ssm:resourceTag/{key}"), &[value]);
        }
        self
    }

    /// The tags a creating call writes, as `aws:RequestTag/…` and `aws:TagKeys`.
    fn writing(mut self, tags: &[(&str, &str)]) -> Self {
        for (key, value) in tags {
            self = self.with(&format!("aws:RequestTag/{key}"), &[value]);
        }
        let keys: Vec<&str> = tags.iter().map(|(key, _)| *key).collect();
        self.with("aws:TagKeys", &keys)
    }
}

/// A JSON value that may be one string or a list of them, as a list.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().unwrap().to_owned())
            .collect(),
        Value::Bool(flag) => vec![flag.to_string()],
        other => panic!("not a string or a list of strings: {other}"),
    }
}

/// Replaces the policy variables; `None` if one has no value for this request.
fn substitute(text: &str, request: &Request) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        let name = &rest[start + 2..end];
        let value = match name {
            "aws:userid" => request.user_id.to_owned(),
            // The literal escapes of the documentation.
            "*" => "*".to_owned(),
            "?" => "?".to_owned(),
            "$" => "$".to_owned(),
            _ => request.context.get(name)?.first()?.clone(),
        };
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// `*` (any run of characters) and `?` (one character), case-sensitive.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    // The classic two-cursor match, going back to just after the last `*` on a mismatch.
    let (mut in_pattern, mut in_text) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while in_text < text.len() {
        if in_pattern < pattern.len()
            && (pattern[in_pattern] == '?' || pattern[in_pattern] == text[in_text])
        {
            in_pattern += 1;
            in_text += 1;
        } else if in_pattern < pattern.len() && pattern[in_pattern] == '*' {
            last_star = Some((in_pattern, in_text));
            in_pattern += 1;
        } else if let Some((star, matched)) = last_star {
            // The star swallows one more character.
            last_star = Some((star, matched + 1));
            in_pattern = star + 1;
            in_text = matched + 1;
        } else {
            return false;
        }
    }
    pattern[in_pattern..]
        .iter()
        .all(|character| *character == '*')
}

/// An ARN pattern against an ARN: part by part, wildcards never crossing a colon of the first five.
fn arn_matches(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let patterns: Vec<&str> = pattern.splitn(6, ':').collect();
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    patterns.len() == parts.len()
        && patterns
            .iter()
            .zip(&parts)
            .all(|(pattern, part)| glob(pattern, part))
}

/// Actions match case-insensitively, with wildcards.
fn action_matches(pattern: &str, action: &str) -> bool {
    glob(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

fn condition_holds(operator: &str, key: &str, policy_values: &[String], request: &Request) -> bool {
    let (qualifier, operator) = match operator.split_once(':') {
        Some((qualifier, operator)) => (Some(qualifier), operator),
        None => (None, operator),
    };
    let (operator, if_exists) = match operator.strip_suffix("IfExists") {
        Some(operator) => (operator, true),
        None => (operator, false),
    };
    let present = request.context.get(key);
    if operator == "Null" {
        let wanted_absent = policy_values.iter().any(|value| value == "true");
        return present.is_none_or(Vec::is_empty) == wanted_absent;
    }
    let one = |value: &str| -> bool {
        policy_values.iter().any(|policy_value| match operator {
            "StringEquals" => value == policy_value,
            "StringNotEquals" => value != policy_value,
            "StringLike" => glob(policy_value, value),
            "Bool" => value.eq_ignore_ascii_case(policy_value),
            "ArnLike" | "ArnEquals" => arn_matches(policy_value, value),
            // A value that is not a number makes a numeric operator false.
            "NumericLessThanEquals" => match (value.parse::<f64>(), policy_value.parse::<f64>()) {
                (Ok(value), Ok(limit)) => value <= limit,
                _ => false,
            },
            other => panic!("the evaluator does not know condition operator {other}"),
        })
    };
    match (qualifier, present) {
        (Some("ForAllValues"), None) => true,
        (Some("ForAllValues"), Some(values)) => values.iter().all(|value| one(value)),
        (Some("ForAnyValue"), None) => false,
        (Some("ForAnyValue"), Some(values)) => values.iter().any(|value| one(value)),
        (Some(other), _) => panic!("the evaluator does not know qualifier {other}"),
        (None, None) => if_exists,
        (None, Some(values)) => values.iter().any(|value| one(value)),
    }
}

fn statement_applies(statement: &Value, request: &Request) -> bool {
    let actions = strings(&statement["Action"]);
    if !actions
        .iter()
        .any(|pattern| action_matches(pattern, request.action))
    {
        return false;
    }
    let resources = strings(&statement["Resource"]);
    let resource_matches = resources.iter().any(|pattern| {
        substitute(pattern, request).is_some_and(|pattern| arn_matches(&pattern, &request.resource))
    });
    if !resource_matches {
        return false;
    }
    let Some(conditions) = statement.get("Condition").and_then(Value::as_object) else {
        return true;
    };
    conditions.iter().all(|(operator, keys)| {
        keys.as_object().unwrap().iter().all(|(key, values)| {
            let Some(values) = strings(values)
                .iter()
                .map(|value| substitute(value, request))
                .collect::<Option<Vec<String>>>()
            else {
                return false;
            };
            condition_holds(operator, key, &values, request)
        })
    })
}

/// The decision for one request against one identity policy: "Allow", "Deny" (explicit) or "ImplicitDeny".
fn decide(policy: &Value, request: &Request) -> &'static str {
    let statements = policy["Statement"].as_array().unwrap();
    let applying: Vec<&Value> = statements
        .iter()
        .filter(|statement| statement_applies(statement, request))
        .collect();
    if applying
        .iter()
        .any(|statement| statement["Effect"] == "Deny")
    {
        "Deny"
    } else if applying
        .iter()
        .any(|statement| statement["Effect"] == "Allow")
    {
        "Allow"
    } else {
        "ImplicitDeny"
    }
}

fn instance(id: &str) -> String {
    format!("arn:aws:ec2:eu-west-1:123456789012:instance/{id}")
}

fn spot_request(id: &str) -> String {
    format!("arn:aws:ec2:eu-west-1:123456789012:spot-instances-request/{id}")
}

fn own() -> [(&'static str, &'static str); 2] {
    [("skiff:workspace", "app"), ("skiff:owner", ALICE)]
}

fn bobs() -> [(&'static str, &'static str); 2] {
    [("skiff:workspace", "app"), ("skiff:owner", BOB)]
}

/// The tags `up` writes at launch.
fn launch_tags() -> Vec<(&'static str, &'static str)> {
    vec![
        ("skiff:workspace", "app"),
        ("skiff:owner", ALICE),
        (
            "skiff:owner-arn",
            "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Dev/alice@example.com",
        ),
        ("Name", "skiff-app"),
    ]
}

/// Every part of a RunInstances call, as EC2 authorises it: one request per resource, each with its own keys.
fn run_instances(tags: &[(&'static str, &'static str)], tokens: &str) -> Vec<Request> {
    let created = |resource: &str| {
        request("ec2:RunInstances", resource)
            .writing(tags)
            .with("ec2:MetadataHttpTokens", &[tokens])
    };
    vec![
        created(&instance("*")).with("ec2:MetadataHttpTokens", &[tokens]),
        request(
            "ec2:RunInstances",
            "arn:aws:ec2:eu-west-1:123456789012:volume/*",
        )
        .writing(tags),
        request(
            "ec2:RunInstances",
            "arn:aws:ec2:eu-west-1:123456789012:network-interface/*",
        )
        .writing(tags),
        request(
            "ec2:RunInstances",
            "arn:aws:ec2:eu-west-1::image/ami-0a0b0c0d0e0f0002",
        ),
        request(
            "ec2:RunInstances",
            "arn:aws:ec2:eu-west-1:123456789012:subnet/subnet-1",
        ),
        request(
            "ec2:RunInstances",
            "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-1",
        ),
    ]
}

/// A call is allowed only if every resource it authorises is.
fn all_allowed(policy: &Value, requests: &[Request]) -> bool {
    requests
        .iter()
        .all(|request| decide(policy, request) == "Allow")
}

fn policy_options() -> PolicyOptions {
    PolicyOptions::new(Some(ZONE), &[])
        .unwrap()
        .with_kms_key(KEY)
        .unwrap()
}

/// The options with a team's rules (`skiff aws-policy --team FILE`).
fn ruled_options() -> PolicyOptions {
    let team = skiff_client::provider::aws::team::Team::from_file(
        "[rules]\ninstance_types = [\"t3.*\", \"m7i.large\"]\nmax_volume_size = 100\nmax_idle_timeout = \"2h\"\nrequired_tags = [\"cost-center\"]\n",
    )
    .unwrap();
    policy_options().with_rules(team.rules).unwrap()
}

/// RunInstances as EC2 authorises it with the keys the team's rules read: the instance type on the instance, the
/// size on the volume.
fn run_instances_sized(
    tags: &[(&'static str, &'static str)],
    instance_type: &str,
    volume_gib: &str,
) -> Vec<Request> {
    run_instances(tags, "required")
        .into_iter()
        .map(|request| {
            if request.resource.contains(":instance/") {
                request.with("ec2:InstanceType", &[instance_type])
            } else if request.resource.contains(":volume/") {
                request.with("ec2:VolumeSize", &[volume_gib])
            } else {
                request
            }
        })
        .collect()
}

/// The team's rules, decided by AWS: a launch inside them is allowed; another instance type, a bigger volume or a
/// missing required tag is refused whatever the client does; without rules, the same launches are allowed.
#[test]
fn aws_policy_team_rules_are_conditions_aws_enforces() {
    let ruled = developer_policy(&ruled_options());
    // The same tag key allowed, without the rules.
    let unruled = developer_policy(
        &PolicyOptions::new(Some(ZONE), &["cost-center".to_owned()])
            .unwrap()
            .with_kms_key(KEY)
            .unwrap(),
    );
    let mut tagged = launch_tags();
    tagged.push(("cost-center", "42"));
    let inside = [
        ("t3.large", "40"),
        ("t3.2xlarge", "100"),
        ("m7i.large", "8"),
    ];
    for (instance_type, size) in inside {
        assert!(
            all_allowed(&ruled, &run_instances_sized(&tagged, instance_type, size)),
            "{instance_type} with {size} GiB is inside the rules"
        );
    }
    let outside = [
        ("another family", tagged.clone(), "m5.24xlarge", "40"),
        ("a pattern's near miss", tagged.clone(), "m7i.large2", "40"),
        ("a bigger volume", tagged.clone(), "t3.large", "101"),
        (
            "a size that is not a number",
            tagged.clone(),
            "t3.large",
            "lots",
        ),
        ("no cost-center tag", launch_tags(), "t3.large", "40"),
    ];
    for (what, tags, instance_type, size) in outside {
        let requests = run_instances_sized(&tags, instance_type, size);
        assert!(
            !all_allowed(&ruled, &requests),
            "{what}: the team's rules must refuse it"
        );
        if what != "a size that is not a number" {
            assert!(
                all_allowed(&unruled, &requests),
                "{what}: allowed without rules, so the rule is what refuses it"
            );
        }
    }
    // The required tag may be written at launch (and, like every tag, only then).
    let tag_on_create = request(
        "ec2:CreateTags",
        "arn:aws:ec2:eu-west-1:123456789012:instance/*",
    )
    .writing(&tagged)
    .with("ec2:CreateAction", &["RunInstances"]);
    assert_eq!(decide(&ruled, &tag_on_create), "Allow");
    // A bad rule never reaches a policy.
    let error = policy_options()
        .with_rules(skiff_client::provider::aws::team::Rules {
            instance_types: vec!["*\"}]}".to_owned()],
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(error.contains("rules.instance_types"), "{error}");
}

/// The evaluator itself, on the documentation's own cases, before it decides anything about skiff's policy.
#[test]
fn aws_policy_evaluator_follows_the_documented_rules() {
    assert!(glob("skiff:*", "skiff:owner"));
    assert!(!glob("skiff:*", "Skiff:owner"));
    assert!(glob("a?c", "abc") && !glob("a?c", "abbc"));
    assert!(glob("a*b*c", "axxbyybzc") && !glob("a*c", "abcbd") && glob("*", ""));
    assert!(arn_matches(
        "arn:aws:ssm:*:*:parameter/aws/service/canonical/*",
        "arn:aws:ssm:eu-west-1::parameter/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
    ));
    assert!(!arn_matches(
        "arn:aws:ec2:*:*:instance/*",
        "arn:aws:ec2:eu-west-1:123456789012:volume/vol-1"
    ));
    let policy = serde_json::json!({"Statement": [{
        "Effect": "Allow", "Action": "ec2:StartInstances", "Resource": "*",
        "Condition": {"StringEquals": {"aws:ResourceTag/owner": "${aws:userid}"},
                      "ForAllValues:StringLike": {"aws:TagKeys": ["a*"]}}
    }]});
    let start = request("ec2:StartInstances", &instance("i-1"));
    assert_eq!(
        decide(
            &policy,
            &start.clone().with("aws:ResourceTag/owner", &[ALICE])
        ),
        "Allow"
    );
    assert_eq!(
        decide(
            &policy,
            &start.clone().with("aws:ResourceTag/owner", &[BOB])
        ),
        "ImplicitDeny"
    );
    assert_eq!(
        decide(&policy, &start.clone()),
        "ImplicitDeny",
        "an absent key fails StringEquals"
    );
    assert_eq!(
        decide(
            &policy,
            &start
                .clone()
                .with("aws:ResourceTag/owner", &[ALICE])
                .with("aws:TagKeys", &["ab", "b"])
        ),
        "ImplicitDeny",
        "ForAllValues needs every value to match"
    );
    let deny = serde_json::json!({"Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ec2:Start*", "Resource": "*"}
    ]});
    assert_eq!(decide(&deny, &start), "Deny", "an explicit deny wins");
}

/// The developer's policy, decided: what a developer does to their own workspace is allowed, and every attack of
/// issue 13 (another's workspace, an untagged instance, tagging after creation, a policy on the role, a secret
/// parameter, another hosted zone) is denied by AWS, whatever the client does.
#[test]
fn aws_policy_developer_table_allows_only_own_workspaces() {
    let policy = developer_policy(&policy_options());
    let own_instance = instance("i-own");
    let bobs_instance = instance("i-bob");
    let production = instance("i-prod");
    let allowed: Vec<(&str, Vec<Request>)> = vec![
        (
            "launch own workspace",
            run_instances(&launch_tags(), "required"),
        ),
        (
            "encrypt the root volume with the --kms-key key, through EC2",
            vec![
                request("kms:GenerateDataKeyWithoutPlaintext", KEY)
                    .with("kms:ViaService", &["ec2.eu-west-1.amazonaws.com"]),
                request("kms:CreateGrant", KEY)
                    .with("kms:ViaService", &["ec2.eu-west-1.amazonaws.com"])
                    .with("kms:GrantIsForAWSResource", &["true"]),
            ],
        ),
        (
            "pass skiff-instance to EC2",
            vec![
                request(
                    "iam:PassRole",
                    "arn:aws:iam::123456789012:role/skiff-instance",
                )
                .with("iam:PassedToService", &["ec2.amazonaws.com"]),
            ],
        ),
        (
            "tag while launching",
            vec![
                request("ec2:CreateTags", &instance("i-new"))
                    .writing(&launch_tags())
                    .with("ec2:CreateAction", &["RunInstances"]),
            ],
        ),
        (
            "own security group while creating it",
            vec![
                request(
                    "ec2:CreateSecurityGroup",
                    "arn:aws:ec2:eu-west-1:123456789012:security-group/*",
                )
                .writing(&own()),
                request(
                    "ec2:CreateSecurityGroup",
                    "arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-1",
                ),
                request(
                    "ec2:CreateTags",
                    "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-new",
                )
                .writing(&own())
                .with("ec2:CreateAction", &["CreateSecurityGroup"]),
            ],
        ),
        (
            "start own",
            vec![request("ec2:StartInstances", &own_instance).tagged(&own())],
        ),
        (
            "stop own",
            vec![request("ec2:StopInstances", &own_instance).tagged(&own())],
        ),
        (
            "delete own",
            vec![request("ec2:TerminateInstances", &own_instance).tagged(&own())],
        ),
        (
            "cancel own spot request before deleting",
            vec![
                request("ec2:DescribeSpotInstanceRequests", "*"),
                request("ec2:CancelSpotInstanceRequests", &spot_request("sir-own")).tagged(&own()),
            ],
        ),
        (
            "boot log of own",
            vec![request("ec2:GetConsoleOutput", &own_instance).tagged(&own())],
        ),
        (
            "session to own",
            vec![
                request("ssm:StartSession", &own_instance)
                    .tagged(&own())
                    .with("ssm:SessionDocumentAccessCheck", &["true"]),
                request(
                    "ssm:StartSession",
                    "arn:aws:ssm:eu-west-1::document/AWS-StartPortForwardingSession",
                ),
            ],
        ),
        (
            "end own session",
            vec![
                request(
                    "ssm:TerminateSession",
                    "arn:aws:ssm:eu-west-1:123456789012:session/alice@example.com-0a1b2c3d4e5f",
                )
                .with("ssm:resourceTag/aws:ssmmessages:session-id", &[ALICE]),
            ],
        ),
        (
            "enroll into own",
            vec![
                request("ssm:SendCommand", &own_instance).tagged(&own()),
                request(
                    "ssm:SendCommand",
                    "arn:aws:ssm:eu-west-1::document/AWS-RunShellScript",
                ),
            ],
        ),
        (
            "Canonical's AMI parameter",
            vec![request(
                "ssm:GetParameter",
                "arn:aws:ssm:eu-west-1::parameter/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
            )],
        ),
        (
            "the team's defaults",
            vec![request(
                "ssm:GetParameter",
                "arn:aws:ssm:eu-west-1:123456789012:parameter/skiff/team/defaults",
            )],
        ),
        (
            "DNS record in the configured zone",
            vec![request(
                "route53:ChangeResourceRecordSets",
                &format!("arn:aws:route53:::hostedzone/{ZONE}"),
            )],
        ),
        ("list", vec![request("ec2:DescribeInstances", "*")]),
    ];
    for (case, requests) in &allowed {
        for request in requests {
            assert_eq!(decide(&policy, request), "Allow", "{case}: {request:#?}");
        }
    }

    let denied: Vec<(&str, Vec<Request>)> = vec![
        (
            "stop another's",
            vec![request("ec2:StopInstances", &bobs_instance).tagged(&bobs())],
        ),
        (
            "delete another's",
            vec![request("ec2:TerminateInstances", &bobs_instance).tagged(&bobs())],
        ),
        (
            "cancel another's spot request",
            vec![
                request("ec2:CancelSpotInstanceRequests", &spot_request("sir-bob")).tagged(&bobs()),
            ],
        ),
        (
            "cancel a spot request nobody tagged",
            vec![request(
                "ec2:CancelSpotInstanceRequests",
                &spot_request("sir-other"),
            )],
        ),
        (
            "start another's",
            vec![request("ec2:StartInstances", &bobs_instance).tagged(&bobs())],
        ),
        (
            "boot log of another's",
            vec![request("ec2:GetConsoleOutput", &bobs_instance).tagged(&bobs())],
        ),
        (
            "session to another's",
            vec![
                request("ssm:StartSession", &bobs_instance)
                    .tagged(&bobs())
                    .with("ssm:SessionDocumentAccessCheck", &["true"]),
            ],
        ),
        (
            "enroll into another's",
            vec![request("ssm:SendCommand", &bobs_instance).tagged(&bobs())],
        ),
        (
            "stop an untagged instance",
            vec![request("ec2:StopInstances", &production)],
        ),
        (
            "session to an untagged instance",
            vec![request("ssm:StartSession", &production)],
        ),
        (
            "run a command on an untagged instance",
            vec![request("ssm:SendCommand", &production)],
        ),
        (
            "a workspace-tagged instance of nobody",
            vec![request("ssm:SendCommand", &production).tagged(&[("skiff:workspace", "prod")])],
        ),
        (
            "tag an existing instance as own",
            vec![request("ec2:CreateTags", &production).writing(&own())],
        ),
        (
            "tag own instance after launch",
            vec![
                request("ec2:CreateTags", &own_instance)
                    .tagged(&own())
                    .writing(&[("skiff:owner", ALICE)]),
            ],
        ),
        (
            "tag another's instance as own",
            vec![
                request("ec2:CreateTags", &bobs_instance)
                    .tagged(&bobs())
                    .writing(&[("skiff:owner", ALICE)]),
            ],
        ),
        (
            "launch as someone else",
            vec![
                run_instances(
                    &[("skiff:workspace", "app"), ("skiff:owner", BOB)],
                    "required",
                )
                .remove(0),
            ],
        ),
        (
            "launch untagged",
            vec![
                request("ec2:RunInstances", &instance("*"))
                    .with("ec2:MetadataHttpTokens", &["required"]),
            ],
        ),
        (
            "launch with a tag key other policies may trust",
            vec![
                run_instances(
                    &[
                        ("skiff:workspace", "app"),
                        ("skiff:owner", ALICE),
                        ("access-team", "prod"),
                    ],
                    "required",
                )
                .remove(0),
            ],
        ),
        (
            "launch with IMDSv1",
            vec![run_instances(&launch_tags(), "optional").remove(0)],
        ),
        (
            "attach a policy to the role",
            vec![
                request(
                    "iam:AttachRolePolicy",
                    "arn:aws:iam::123456789012:role/skiff-instance",
                )
                .with(
                    "iam:PolicyARN",
                    &["arn:aws:iam::aws:policy/AdministratorAccess"],
                ),
            ],
        ),
        (
            "put an inline policy on the role",
            vec![request(
                "iam:PutRolePolicy",
                "arn:aws:iam::123456789012:role/skiff-instance",
            )],
        ),
        (
            "remove the role's boundary",
            vec![request(
                "iam:DeleteRolePermissionsBoundary",
                "arn:aws:iam::123456789012:role/skiff-instance",
            )],
        ),
        (
            "remove the shared instance profile",
            vec![request(
                "iam:DeleteInstanceProfile",
                "arn:aws:iam::123456789012:instance-profile/skiff-instance",
            )],
        ),
        (
            "pass the role to another service",
            vec![
                request(
                    "iam:PassRole",
                    "arn:aws:iam::123456789012:role/skiff-instance",
                )
                .with("iam:PassedToService", &["lambda.amazonaws.com"]),
            ],
        ),
        (
            "pass another role",
            vec![
                request("iam:PassRole", "arn:aws:iam::123456789012:role/admin")
                    .with("iam:PassedToService", &["ec2.amazonaws.com"]),
            ],
        ),
        (
            "write the team's defaults",
            vec![request(
                "ssm:PutParameter",
                "arn:aws:ssm:eu-west-1:123456789012:parameter/skiff/team/defaults",
            )],
        ),
        (
            "read a SecureString",
            vec![request(
                "ssm:GetParameter",
                "arn:aws:ssm:eu-west-1:123456789012:parameter/prod/database-password",
            )],
        ),
        (
            "read another command's output",
            vec![request("ssm:GetCommandInvocation", "*")],
        ),
        (
            "a shell session through the default document",
            vec![request(
                "ssm:StartSession",
                "arn:aws:ssm:eu-west-1:123456789012:document/SSM-SessionManagerRunShell",
            )],
        ),
        (
            "another command document",
            vec![request(
                "ssm:SendCommand",
                "arn:aws:ssm:eu-west-1::document/AWS-RunPowerShellScript",
            )],
        ),
        (
            "end another's session",
            vec![
                request(
                    "ssm:TerminateSession",
                    "arn:aws:ssm:eu-west-1:123456789012:session/bob@example.com-0a1b2c3d4e5f",
                )
                .with("ssm:resourceTag/aws:ssmmessages:session-id", &[BOB]),
            ],
        ),
        (
            "DNS in another zone",
            vec![request(
                "route53:ChangeResourceRecordSets",
                "arn:aws:route53:::hostedzone/ZOTHERZONE0000",
            )],
        ),
        (
            "delete another's security group",
            vec![
                request(
                    "ec2:DeleteSecurityGroup",
                    "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-bob",
                )
                .tagged(&bobs()),
            ],
        ),
        (
            "decrypt with the --kms-key key directly",
            vec![request("kms:Decrypt", KEY)],
        ),
        (
            "a grant on the key for a principal, not a resource",
            vec![
                request("kms:CreateGrant", KEY)
                    .with("kms:ViaService", &["ec2.eu-west-1.amazonaws.com"])
                    .with("kms:GrantIsForAWSResource", &["false"]),
            ],
        ),
        (
            "another key, through EC2",
            vec![
                request(
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "arn:aws:kms:eu-west-1:123456789012:key/ffffffff-0000-0000-0000-000000000000",
                )
                .with("kms:ViaService", &["ec2.eu-west-1.amazonaws.com"]),
            ],
        ),
        (
            "open a security group",
            vec![
                request(
                    "ec2:AuthorizeSecurityGroupIngress",
                    "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-own",
                )
                .tagged(&own()),
            ],
        ),
    ];
    for (case, requests) in &denied {
        assert!(
            !all_allowed(&policy, requests),
            "{case} must be denied: {requests:#?}"
        );
    }
    // A colleague holding the same policy is Bob for AWS: Alice's workspace is another's to him.
    let own_as_bob = request("ec2:StopInstances", &own_instance)
        .tagged(&own())
        .by(BOB);
    assert_eq!(decide(&policy, &own_as_bob), "ImplicitDeny");
}

/// No IAM write in the developer's policy, whatever its options: only passing skiff's role to EC2, and reading
/// skiff's instance profile.
#[test]
fn aws_policy_developer_has_no_iam_write() {
    for options in [
        PolicyOptions::default(),
        policy_options(),
        PolicyOptions::new(None, &["CostCenter".to_owned()]).unwrap(),
        ruled_options(),
    ] {
        let policy = developer_policy(&options);
        for statement in policy["Statement"].as_array().unwrap() {
            for action in strings(&statement["Action"]) {
                assert!(
                    !action.starts_with("iam:")
                        || action == "iam:GetInstanceProfile"
                        || (action == "iam:PassRole"
                            && statement["Condition"]["StringEquals"]["iam:PassedToService"]
                                == "ec2.amazonaws.com"),
                    "the developer's policy has an IAM action beyond PassRole to EC2 and one read: {action} in {statement:#}"
                );
                assert!(!action.contains('*'), "no wildcard action: {action}");
            }
        }
        assert!(
            !policy.to_string().contains("route53:Change") || options.dns_zone.is_some(),
            "Route53 changes only with --dns-zone"
        );
    }
    let error = PolicyOptions::default()
        .with_kms_key("alias/skiff")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("--kms-key") && error.contains("ARN"),
        "{error}"
    );
    let error = PolicyOptions::default()
        .with_kms_key("arn:aws:kms:*:*:key/*")
        .unwrap_err()
        .to_string();
    assert!(error.contains("--kms-key"), "{error}");
    let error = PolicyOptions::new(Some("*"), &[]).unwrap_err().to_string();
    assert!(error.contains("--dns-zone"), "{error}");
    let error = PolicyOptions::new(None, &["skiff:*".to_owned()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("--tag-key"), "{error}");
}

/// The operator's policy: anyone's workspace can be stopped, deleted and enrolled into, and nothing without a
/// `skiff:workspace` tag; no session and no launch.
#[test]
fn aws_policy_operator_table_reaches_every_workspace_and_nothing_else() {
    let policy = operator_policy(&policy_options());
    let bobs_instance = instance("i-bob");
    let production = instance("i-prod");
    assert_eq!(
        decide(
            &policy,
            &request("ec2:StopInstances", &bobs_instance).tagged(&bobs())
        ),
        "Allow"
    );
    assert_eq!(
        decide(
            &policy,
            &request("ec2:TerminateInstances", &bobs_instance).tagged(&bobs())
        ),
        "Allow"
    );
    assert!(all_allowed(
        &policy,
        &[
            request("ec2:CancelSpotInstanceRequests", &spot_request("sir-bob")).tagged(&bobs()),
            request("ssm:SendCommand", &bobs_instance).tagged(&bobs()),
            request(
                "ssm:SendCommand",
                "arn:aws:ssm:eu-west-1::document/AWS-RunShellScript"
            ),
        ]
    ));
    for denied in [
        request("ec2:StopInstances", &production),
        request("ec2:TerminateInstances", &production),
        request("ec2:CancelSpotInstanceRequests", &spot_request("sir-prod")),
        request("ssm:SendCommand", &production),
        request("ssm:StartSession", &bobs_instance).tagged(&bobs()),
        request("ec2:CreateTags", &production).writing(&bobs()),
        request(
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/skiff-instance",
        ),
    ] {
        assert_ne!(decide(&policy, &denied), "Allow", "{denied:#?}");
    }
}

/// The boundary `aws-setup` puts on the role caps whatever is attached later: no IAM, no EC2, no parameters.
#[test]
fn aws_policy_instance_boundary_caps_the_role() {
    let boundary = instance_boundary();
    assert_eq!(
        decide(&boundary, &request("ssm:UpdateInstanceInformation", "*")),
        "Allow"
    );
    assert_eq!(
        decide(&boundary, &request("ssmmessages:OpenDataChannel", "*")),
        "Allow"
    );
    for action in [
        "iam:AttachRolePolicy",
        "iam:CreateUser",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ssm:GetParameter",
        "ssm:SendCommand",
        "s3:GetObject",
        "secretsmanager:GetSecretValue",
        "ecr:PutImage",
        "ecr:InitiateLayerUpload",
        "ecr:DeleteRepository",
    ] {
        assert_eq!(
            decide(&boundary, &request(action, "*")),
            "ImplicitDeny",
            "{action} is outside the boundary"
        );
    }
}

/// `aws-setup --ecr`: the role reads its own account's repositories (within the boundary) and nothing else: not
/// another account's, and never a push.
#[test]
fn aws_policy_ecr_read_is_the_account_s_repositories_only() {
    let policy = skiff_client::provider::aws::policy::ecr_read("aws", "123456789012");
    let own = "arn:aws:ecr:eu-west-1:123456789012:repository/team/app";
    let other = "arn:aws:ecr:eu-west-1:999999999999:repository/team/app";
    for action in [
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchCheckLayerAvailability",
    ] {
        assert_eq!(decide(&policy, &request(action, own)), "Allow", "{action}");
        assert_eq!(
            decide(&policy, &request(action, other)),
            "ImplicitDeny",
            "{action} in another account"
        );
        assert_eq!(
            decide(&instance_boundary(), &request(action, own)),
            "Allow",
            "{action} within the boundary"
        );
    }
    assert_eq!(
        decide(&policy, &request("ecr:GetAuthorizationToken", "*")),
        "Allow"
    );
    for action in [
        "ecr:PutImage",
        "ecr:CompleteLayerUpload",
        "ecr:DeleteRepository",
    ] {
        assert_eq!(
            decide(&policy, &request(action, own)),
            "ImplicitDeny",
            "{action}"
        );
    }
}

/// Runs a program; its exit status and standard output, or a failure naming the missing tool (or the version found)
/// and how to get the one `tests/fixtures/aws/requirements.txt` pins.
fn tool(
    program: &str,
    version: &str,
    args: &[&str],
    stdin: Option<&std::path::Path>,
) -> (i32, String) {
    assert_eq!(
        version,
        skiff_tests::aws::pinned(program),
        "the version this test checks for differs from tests/fixtures/aws/requirements.txt"
    );
    let install = format!(
        "{program} {version} is needed for this test: {}",
        skiff_tests::aws::PYTHON_TOOLS_HINT
    );
    let reported = Command::new(program)
        .arg("--version")
        .output()
        .unwrap_or_else(|error| panic!("{install} ({error})"));
    let reported = String::from_utf8_lossy(&reported.stdout).to_string()
        + &String::from_utf8_lossy(&reported.stderr);
    assert!(
        reported.contains(version),
        "{install}; found {}",
        reported.trim()
    );
    let mut command = Command::new(program);
    command.args(args);
    if let Some(path) = stdin {
        command.stdin(std::fs::File::open(path).unwrap());
    } else {
        command.stdin(std::process::Stdio::null());
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn policy_file(policy: &Value) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), serde_json::to_string_pretty(policy).unwrap()).unwrap();
    file
}

/// cloudsplaining reports no privilege escalation, resource exposure, data exfiltration or credentials exposure
/// for the developer's policy (today's policy had all but the last).
#[test]
fn aws_policy_passes_cloudsplaining() {
    for options in [PolicyOptions::default(), policy_options(), ruled_options()] {
        let file = policy_file(&developer_policy(&options));
        let (_, report) = tool(
            "cloudsplaining",
            "0.9.1",
            &[
                "scan-policy-file",
                "--input-file",
                file.path().to_str().unwrap(),
            ],
            None,
        );
        for finding in [
            "Privilege Escalation",
            "Resource Exposure",
            "Data Exfiltration",
            "Credentials Exposure",
        ] {
            assert!(
                !report.contains(finding),
                "cloudsplaining finds {finding} in the developer's policy:\n{report}"
            );
        }
        assert!(
            report.contains("There were no results found"),
            "cloudsplaining reports nothing at all: {report}"
        );
    }
}

/// parliament with the community auditors reports nothing at MEDIUM or above for the developer's policy (with and
/// without a team's rules), except
/// these, each inherent and each limited by conditions instead:
/// - `PRIVILEGE_ESCALATION` `CreateEC2WithExistingIP` (HIGH) and `PERMISSIONS_MANAGEMENT_ACTIONS` `iam:passrole`
///   (MEDIUM): launching an instance with a role is the product. The role is the one `aws-setup` made, passed to
///   EC2 only (`iam:PassedToService`), its permissions capped by the `skiff-instance-boundary` boundary, and the
///   developer can change neither (no IAM write).
/// - `PERMISSIONS_MANAGEMENT_ACTIONS` `kms:creategrant` (MEDIUM, with `--kms-key`): EBS needs a grant on the key
///   to encrypt a root volume with it. The grant is allowed on that one key only, only through EC2
///   (`kms:ViaService`) and only for an AWS resource (`kms:GrantIsForAWSResource`), never for a principal.
/// - `RESOURCE_MISMATCH` on the statements of `ec2:RunInstances`, `ec2:CreateSecurityGroup` and
///   `ssm:SendCommand`: parliament wants every resource type an action needs in each statement, but the owner
///   conditions differ by resource type (`aws:RequestTag` exists only for what the call creates,
///   `ssm:resourceTag` only on the instance), so AWS's own examples split them into one statement per type.
/// - `UNKNOWN_CONDITION_FOR_ACTION` `ssm:SessionDocumentAccessCheck` on `ssm:StartSession`: documented by Session
///   Manager ("Enforce a session document permission check", Systems Manager User Guide) but missing from
///   parliament 1.6.4's definitions; it makes a session that names no document need a document permission.
#[test]
fn aws_policy_passes_parliament_with_community_auditors() {
    for options in [policy_options(), ruled_options()] {
        let policy = developer_policy(&options);
        let file = policy_file(&policy);
        let (_, report) = tool(
            "parliament",
            "1.6.4",
            &["--include-community-auditors", "--json"],
            Some(file.path()),
        );
        let text = std::fs::read_to_string(file.path()).unwrap();
        let findings: Vec<Value> = report
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|_| panic!("parliament printed {line}"))
            })
            .collect();
        let statements = policy["Statement"].clone();
        let statement_at = |line: u64| -> String {
            // parliament gives the line of the statement's opening brace: count the statements opened up to it.
            let opened = text
                .lines()
                .take(line as usize)
                .filter(|line| *line == "    {")
                .count();
            statements[opened.saturating_sub(1)]["Sid"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let split_by_resource_type = [
            "SkiffLaunchOwnedInstances",
            "SkiffLaunchOwnedVolumesAndInterfaces",
            "SkiffLaunchOwnedVolumesUpToTheTeamsSize",
            "SkiffLaunchFromImagesAndNetworks",
            "SkiffCreateOwnedSecurityGroups",
            "SkiffCreateSecurityGroupsInVpcs",
            "SkiffRunCommandDocument",
            "SkiffRunCommandOnOwnInstances",
        ];
        let mut named = Vec::new();
        for finding in &findings {
            let severity = finding["severity"].as_str().unwrap_or_default();
            if !matches!(severity, "MEDIUM" | "HIGH" | "CRITICAL") {
                continue;
            }
            let issue = finding["issue"].as_str().unwrap_or_default();
            let location = &finding["location"];
            let expected = match issue {
                "PRIVILEGE_ESCALATION" => {
                    location["type"] == "CreateEC2WithExistingIP"
                        && location["actions"] == serde_json::json!(["iam:passrole", "ec2:runinstances"])
                }
                "PERMISSIONS_MANAGEMENT_ACTIONS" => {
                    // In either order: parliament lists them from a set.
                    let actions = strings(&location["actions"]);
                    actions.contains(&"iam:passrole".to_owned())
                        && actions
                            .iter()
                            .all(|action| matches!(action.as_str(), "iam:passrole" | "kms:creategrant"))
                }
                "RESOURCE_MISMATCH" => {
                    let statement = statement_at(location["line"].as_u64().unwrap_or_default());
                    split_by_resource_type.contains(&statement.as_str())
                }
                "UNKNOWN_CONDITION_FOR_ACTION" => finding["detail"]
                    .as_str()
                    .is_some_and(|detail| {
                        detail == "Unknown condition ssm:SessionDocumentAccessCheck for action ssm:StartSession"
                    }),
                _ => false,
            };
            assert!(
                expected,
                "parliament finds {issue} ({severity}) that this test does not name: {finding:#}\nin\n{text}"
            );
            named.push(issue.to_owned());
        }
        assert!(
            named.contains(&"PRIVILEGE_ESCALATION".to_owned()),
            "the inherent finding is still seen (the tool ran): {report}"
        );
    }
}

/// moto's IAM enforcement (a server whose `INITIAL_NO_AUTH_ACTION_COUNT` has run out) decides the developer's
/// policy for what moto evaluates: as a user holding only that policy, reads pass, and the IAM writes of issue 13
/// (a policy attached to or put on the role, the shared profile removed), tagging and reading a SecureString are
/// refused.
///
/// What moto does not evaluate: it authorises every non-S3 call against the resource `*` (never the instance's or
/// the parameter's ARN) and evaluates no condition key it is not given, so a statement scoped to ARNs counts as
/// not applying and a conditioned one as denying. Own-workspace calls (start, stop, sessions, enroll) are therefore
/// refused by moto too, and decided by the evaluator's table above instead; moto here proves that the actions
/// the policy leaves out are refused by a real authorisation layer.
#[test]
fn aws_policy_moto_enforcement_refuses_what_the_policy_leaves_out() {
    let file = policy_file(&developer_policy(&policy_options()));
    let output = Command::new("python3")
        .arg(skiff_tests::fixtures_dir().join("aws/iam_enforcement.py"))
        .arg(file.path())
        .output()
        .expect("running python3");
    assert!(
        output.status.success(),
        "iam_enforcement.py failed (needs moto {}: {}): {}",
        skiff_tests::aws::pinned("moto"),
        skiff_tests::aws::PYTHON_TOOLS_HINT,
        String::from_utf8_lossy(&output.stderr)
    );
    let results: BTreeMap<String, String> = serde_json::from_slice(&output.stdout).unwrap();
    let expect = |case: &str, wanted: &str| {
        assert_eq!(
            results.get(case).map(String::as_str),
            Some(wanted),
            "{case}: {results:#?}"
        );
    };
    expect("sts:GetCallerIdentity", "allowed");
    expect("ec2:DescribeInstances", "allowed");
    expect("iam:AttachRolePolicy", "denied");
    expect("iam:PutRolePolicy", "denied");
    expect("iam:CreateRole", "denied");
    expect("iam:DeleteInstanceProfile", "denied");
    expect("ec2:CreateTags", "denied");
    expect("ssm:GetParameter SecureString", "denied");
    expect("ec2:TerminateInstances untagged", "denied");
}
