//! `ARCHITECTURE.md`'s invariants, checked against the source: each rule names what only some modules may
//! mention, and the sentence of the document that states it, so the code and the document cannot drift apart
//! silently. The check reads code, not comments: a module may explain what it does not do.

use std::path::{Path, PathBuf};

/// One invariant: `needles` (words or paths of code) appear only in files under `allowed` (an entry starting
/// with `*` is a suffix: `*/tests.rs` allows every module's tests).
struct Rule {
    /// The start of the invariant's line in `ARCHITECTURE.md`.
    stated: &'static str,
    needles: &'static [&'static str],
    allowed: &'static [&'static str],
}

const RULES: &[Rule] = &[
    Rule {
        stated: "Only `agent::engine::features` names oci-client and reqwest",
        needles: &["oci_client", "reqwest"],
        allowed: &["agent/src/engine/features"],
    },
    Rule {
        stated: "Only `agent::docker` names bollard",
        needles: &["bollard"],
        allowed: &["agent/src/docker/"],
    },
    Rule {
        stated: "Only `agent::engine` names `agent::docker`",
        needles: &["crate::docker", "docker::"],
        allowed: &["agent/src/docker/", "agent/src/engine/"],
    },
    Rule {
        stated: "A process starts in the dev container only through `Engine::start`",
        needles: &["ExecConfig", "procd::Spec"],
        allowed: &[
            "agent/src/docker/",
            "agent/src/engine/process.rs",
            "agent/src/engine/servers.rs",
        ],
    },
    Rule {
        stated: "Only `skiff::api::stamp` stamps a path on disk",
        needles: &["FileStamp {"],
        allowed: &[
            "src/api.rs",
            "src/proto/",
            "agent/src/upload.rs",
            // Tests write the stamps they expect as data.
            "client/src/files/tests.rs",
        ],
    },
    Rule {
        stated: "Only one place contains `unsafe`",
        needles: &["unsafe"],
        allowed: &["agent/src/procd/server.rs"],
    },
    Rule {
        stated: "Only `skiff::proto`, `agent::server`, `agent::service` and `client::agent_client` name generated protobuf types",
        needles: &["proto::v1", "v1::"],
        allowed: &[
            "src/proto/",
            "agent/src/server.rs",
            "agent/src/service.rs",
            "client/src/agent_client",
        ],
    },
    Rule {
        stated: "In the agent, only `agent::server` and `agent::service` name tonic",
        needles: &["tonic"],
        allowed: &[
            "agent/src/server.rs",
            "agent/src/service.rs",
            "src/",
            "client/",
        ],
    },
    Rule {
        stated: "Only `agent::service` turns an error into a `tonic::Status`",
        needles: &[
            "Status::new",
            "Status::internal",
            "Status::invalid_argument",
            "Status::not_found",
            "Status::failed_precondition",
            "Status::permission_denied",
            "Status::unavailable",
            "Status::already_exists",
        ],
        // The client's unit tests make the statuses an agent would send, to sort them.
        allowed: &["agent/src/service.rs", "client/src/agent_client/tests.rs"],
    },
    Rule {
        stated: "Only `client::provider::aws` and the Session Manager transports",
        needles: &["aws_sdk_", "aws_config", "aws_types"],
        allowed: &[
            "client/src/provider/aws/",
            "client/src/tunnel/ssm/",
            "client/src/tunnel/plugin.rs",
        ],
    },
    Rule {
        stated: "Only `client::ui` names axum",
        needles: &["axum"],
        allowed: &["client/src/ui/"],
    },
    Rule {
        stated: "Only `client::registry_logins` reads this machine's Docker logins",
        needles: &["docker_credential"],
        allowed: &["client/src/registry_logins.rs"],
    },
    Rule {
        stated: "Only `agent::files::beneath` names cap-std",
        needles: &["cap_std"],
        allowed: &["agent/src/files/beneath.rs"],
    },
    Rule {
        stated: "Only `agent::procd::client` enters a container's network namespace",
        needles: &["setns"],
        allowed: &["agent/src/procd/client.rs"],
    },
    Rule {
        stated: "Nothing tags an EC2 resource after it is created",
        needles: &["create_tags"],
        allowed: &[],
    },
    Rule {
        stated: "Only `client::provider::aws::setup`",
        needles: &[
            "create_role",
            "put_role_policy",
            "attach_role_policy",
            "create_policy",
            "create_instance_profile",
            "add_role_to_instance_profile",
        ],
        allowed: &["client/src/provider/aws/setup.rs"],
    },
    Rule {
        stated: "Only `client::tunnel::ssm::channel` speaks the Session Manager data channel",
        needles: &[
            "input_stream_data",
            "output_stream_data",
            "tokio_tungstenite",
            "aws_ssm_bridge",
        ],
        allowed: &["client/src/tunnel/ssm/channel/"],
    },
    Rule {
        stated: "Only `client::provider` names `provider::aws`",
        needles: &["provider::aws"],
        allowed: &[
            "client/src/provider/",
            "client/src/cli.rs",
            "client/src/lib.rs",
        ],
    },
    Rule {
        stated: "In the client, only `client::provider::aws` and `client::tunnel` name `tunnel::warm`",
        needles: &["tunnel::warm", "warm::POOL"],
        allowed: &["client/src/provider/aws/", "client/src/tunnel/"],
    },
    Rule {
        stated: "In the client, only `client::agent_client` names tonic",
        needles: &["tonic"],
        allowed: &["src/", "agent/", "client/src/agent_client"],
    },
    Rule {
        stated: "In the client, only `client::tunnel::connect` names rustls and pins an agent certificate",
        needles: &[
            "rustls",
            "tokio_rustls",
            "client_config",
            "client_config_first_use",
        ],
        allowed: &[
            "src/",
            "agent/",
            "client/src/tunnel/connect.rs",
            "client/src/tunnel/ssm/channel/socket.rs",
        ],
    },
    Rule {
        stated: "A task is detached with `tokio::spawn` only where it ends with the connection or channel it serves",
        needles: &["tokio::spawn", "tokio::task::spawn"],
        allowed: &[
            "agent/src/procd/",
            "agent/src/server.rs",
            "agent/src/main.rs",
            "src/resume/",
            "client/src/tunnel/ssm/",
            "*/tests.rs",
        ],
    },
    Rule {
        stated: "In the agent, only `agent::git` runs git",
        needles: &["Command::new(\"git\")"],
        allowed: &["agent/src/git", "client/src/"],
    },
];

/// The workspace's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Every `.rs` file under `folder`, relative to the root, with `/` between parts.
fn sources(root: &Path, folder: &str, found: &mut Vec<(String, String)>) {
    let mut pending = vec![root.join(folder)];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                found.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
}

/// The code of a line: what precedes a `//` comment.
fn code(line: &str) -> &str {
    line.split_once("//").map_or(line, |(code, _)| code)
}

/// Whether `needle` occurs in `text` as a whole word (an identifier character on neither side).
fn mentions(text: &str, needle: &str) -> bool {
    let word = |character: char| character.is_alphanumeric() || character == '_';
    text.match_indices(needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        let joined_before = needle.starts_with(word) && before.is_some_and(word);
        let joined_after = needle.ends_with(word) && after.is_some_and(word);
        !joined_before && !joined_after
    })
}

#[test]
fn the_invariants_of_architecture_md_hold_in_the_code() {
    let root = root();
    let document = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let invariants = document
        .split_once("## Invariants")
        .expect("ARCHITECTURE.md has an Invariants section")
        .1;
    let mut files = Vec::new();
    for folder in ["src", "agent/src", "client/src"] {
        sources(&root, folder, &mut files);
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut broken = Vec::new();
    for rule in RULES {
        assert!(
            invariants.contains(&format!("- {}", rule.stated)),
            "ARCHITECTURE.md no longer states {:?}; update the rule in tests/it/architecture.rs with it",
            rule.stated
        );
        for (path, text) in &files {
            if rule
                .allowed
                .iter()
                .any(|allowed| match allowed.strip_prefix('*') {
                    Some(suffix) => path.ends_with(suffix),
                    None => path.starts_with(allowed),
                })
            {
                continue;
            }
            for (number, line) in text.lines().enumerate() {
                if let Some(needle) = rule
                    .needles
                    .iter()
                    .find(|needle| mentions(code(line), needle))
                {
                    broken.push(format!(
                        "{path}:{}: {needle} breaks \"{}\"",
                        number + 1,
                        rule.stated
                    ));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "ARCHITECTURE.md invariants broken:\n{}",
        broken.join("\n")
    );
}

/// A rule that names the only places allowed something (`unsafe`, a library) goes stale when one of them no longer
/// has it: the document would then promise a place that does not exist.
#[test]
fn the_places_the_unsafe_rule_allows_still_hold_unsafe() {
    let root = root();
    let rule = RULES
        .iter()
        .find(|rule| rule.needles == ["unsafe"])
        .expect("the unsafe rule");
    for allowed in rule.allowed {
        let text = std::fs::read_to_string(root.join(allowed)).unwrap();
        assert!(
            text.lines().any(|line| mentions(code(line), "unsafe")),
            "{allowed} holds no `unsafe` any more; \"{}\" in ARCHITECTURE.md and its rule are stale",
            rule.stated
        );
    }
}

#[test]
fn the_check_finds_what_it_looks_for() {
    assert!(mentions("use bollard::Docker;", "bollard"));
    assert!(!mentions("#![forbid(unsafe_code)]", "unsafe"));
    assert!(mentions("let x = unsafe { f() };", "unsafe"));
    assert!(!mentions("my_bollard_thing", "bollard"));
    assert!(mentions("Command::new(\"git\")", "Command::new(\"git\")"));
    assert_eq!(code("let a = 1; // bollard"), "let a = 1; ");
}
