//! The agent machine's own registry logins: `[registry_helpers]` in `skiffd.toml` maps a registry to a Docker
//! credential helper, as Docker's `credHelpers` does. `skiff up --ecr` has user-data map the account's ECR registry
//! of the region to `ecr-login` (Amazon's `docker-credential-ecr-login`, which signs with the instance role).
//!
//! For each mapped registry the client sent no login for, an `up` asks the helper (`docker-credential-NAME get`, the
//! registry on standard input, `{"Username": …, "Secret": …}` back, the protocol of docker-credential-helpers) and
//! lends the answer to that `up`'s pulls, builds and Features like a client's login: in memory, never written.
//! A helper that fails is reported in the `up`'s output and the pull goes on without a login, so the registry's
//! refusal (explained by `docker`) says what is missing.
//!
//! Written here rather than with the `docker_credential` crate the client uses: that crate finds helpers through a
//! Docker `config.json`, and the agent's map is its own configuration.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use skiff::api::RegistryLogin;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a helper may take (ECR's asks AWS for a token).
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a helper may print.
const MAX_ANSWER: u64 = 64 * 1024;

/// Checks the map: a registry is a host with an optional port, a helper is a helper's name (`ecr-login`, run as
/// `docker-credential-ecr-login` from `PATH`) or an absolute path to one.
pub fn check(helpers: &BTreeMap<String, String>) -> Result<(), String> {
    for (registry, helper) in helpers {
        let host_ok = !registry.is_empty()
            && registry.len() <= 253
            && registry
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || ".-:".contains(character))
            && !registry.starts_with(['.', '-', ':']);
        if !host_ok {
            return Err(format!(
                "registry_helpers: {registry:?} is not a registry host such as 123456789012.dkr.ecr.eu-west-1.amazonaws.com"
            ));
        }
        let name_ok = !helper.is_empty()
            && helper.len() <= 64
            && helper
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || "-_.".contains(character))
            && !helper.starts_with('.');
        if !name_ok && !Path::new(helper).is_absolute() {
            return Err(format!(
                "registry_helpers.{registry:?} = {helper:?}: give a helper's name such as ecr-login, or an absolute path"
            ));
        }
    }
    Ok(())
}

/// The program a helper entry names.
fn program(helper: &str) -> String {
    if Path::new(helper).is_absolute() {
        helper.to_owned()
    } else {
        format!("docker-credential-{helper}")
    }
}

/// Asks `helper` for its login to `registry`.
pub async fn ask(helper: &str, registry: &str) -> Result<RegistryLogin, String> {
    let program = program(helper);
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("starting {program}: {error}"))?;
    let mut stdin = child.stdin.take().ok_or("no standard input")?;
    let stdout = child.stdout.take().ok_or("no standard output")?;
    let stderr = child.stderr.take().ok_or("no standard error")?;
    let asked = async {
        // A helper that does not read its input may have gone already; its answer says what it thought.
        let _ = stdin.write_all(format!("{registry}\n").as_bytes()).await;
        drop(stdin);
        let mut answer = Vec::new();
        let mut complaint = Vec::new();
        let (mut stdout, mut stderr) = (stdout.take(MAX_ANSWER), stderr.take(MAX_ANSWER));
        let (read, _) = tokio::join!(
            stdout.read_to_end(&mut answer),
            stderr.read_to_end(&mut complaint),
        );
        read.map_err(|error| format!("reading {program}'s answer: {error}"))?;
        let status = child
            .wait()
            .await
            .map_err(|error| format!("waiting for {program}: {error}"))?;
        if !status.success() {
            let said = String::from_utf8_lossy(if complaint.is_empty() {
                &answer
            } else {
                &complaint
            })
            .trim()
            .chars()
            .take(300)
            .collect::<String>();
            return Err(format!(
                "{program} get {registry} failed ({status}): {said}"
            ));
        }
        Ok(answer)
    };
    let answer = tokio::time::timeout(HELPER_TIMEOUT, asked)
        .await
        .map_err(|_| {
            format!(
                "{program} gave no answer within {} s",
                HELPER_TIMEOUT.as_secs()
            )
        })??;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let parsed: Answer = serde_json::from_slice(&answer)
        .map_err(|error| format!("{program}'s answer is not a login: {error}"))?;
    if parsed.secret.is_empty() {
        return Err(format!("{program} answered with an empty secret"));
    }
    // docker-credential-helpers' convention: this user name means the secret is an identity token.
    let identity_token = parsed.username == "<token>";
    Ok(RegistryLogin {
        registry: registry.to_ascii_lowercase(),
        username: if identity_token {
            String::new()
        } else {
            parsed.username
        },
        secret: parsed.secret,
        identity_token,
    })
}

/// The client's logins plus, for every mapped registry the client sent none for, the helper's; each helper that
/// fails is said through `report`.
pub async fn with_machine_logins(
    client: &[RegistryLogin],
    helpers: &BTreeMap<String, String>,
    mut report: impl FnMut(String),
) -> Vec<RegistryLogin> {
    let mut logins = client.to_vec();
    for (registry, helper) in helpers {
        let registry = registry.to_ascii_lowercase();
        if logins.iter().any(|login| login.registry == registry) {
            continue;
        }
        match ask(helper, &registry).await {
            Ok(login) => logins.push(login),
            Err(error) => report(format!(
                "no login to {registry} from this machine's credential helper: {error}; pulling without one"
            )),
        }
    }
    logins
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn helper(folder: &Path, body: &str) -> String {
        let path = folder.join("docker-credential-test");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    #[tokio::test]
    async fn a_helper_s_login_is_added_for_a_registry_the_client_sent_none_for() {
        let folder = tempfile::tempdir().unwrap();
        // The helper reads the registry from standard input, as docker-credential-helpers do.
        let path = helper(
            folder.path(),
            r#"read registry; printf '{"ServerURL":"%s","Username":"AWS","Secret":"token-for-%s"}' "$registry" "$registry""#,
        );
        let helpers = BTreeMap::from([
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com".to_owned(),
                path.clone(),
            ),
            ("ghcr.io".to_owned(), path),
        ]);
        check(&helpers).unwrap();
        let client = vec![RegistryLogin {
            registry: "ghcr.io".into(),
            username: "ada".into(),
            secret: "laptop".into(),
            identity_token: false,
        }];
        let mut said = Vec::new();
        let logins = with_machine_logins(&client, &helpers, |line| said.push(line)).await;
        assert!(said.is_empty(), "{said:?}");
        assert_eq!(logins.len(), 2);
        assert_eq!(logins[0].secret, "laptop", "the client's login wins");
        assert_eq!(
            logins[1].registry,
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(logins[1].username, "AWS");
        assert_eq!(
            logins[1].secret,
            "token-for-123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        );
    }

    #[tokio::test]
    async fn a_failing_or_missing_helper_is_reported_and_the_up_goes_on() {
        let folder = tempfile::tempdir().unwrap();
        let failing = helper(folder.path(), "echo 'no instance role' >&2; exit 1");
        for (helper, expected) in [
            (failing.as_str(), "no instance role"),
            (
                "no-such-helper-here",
                "docker-credential-no-such-helper-here",
            ),
        ] {
            let helpers = BTreeMap::from([("registry.example".to_owned(), helper.to_owned())]);
            let mut said = Vec::new();
            let logins = with_machine_logins(&[], &helpers, |line| said.push(line)).await;
            assert!(logins.is_empty());
            assert!(
                said.len() == 1
                    && said[0].contains(expected)
                    && said[0].contains("registry.example"),
                "{said:?}"
            );
        }
        let garbled = helper(folder.path(), "echo not json");
        let error = ask(&garbled, "registry.example").await.unwrap_err();
        assert!(error.contains("not a login"), "{error}");
    }

    #[test]
    fn the_map_holds_hosts_and_helper_names_only() {
        for (registry, helper) in [
            ("bad host; rm", "ecr-login"),
            ("", "ecr-login"),
            ("registry.example", "ecr login"),
            ("registry.example", "../../bin/sh"),
        ] {
            let map = BTreeMap::from([(registry.to_owned(), helper.to_owned())]);
            assert!(check(&map).is_err(), "{registry:?} = {helper:?}");
        }
        let good = BTreeMap::from([(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com".to_owned(),
            "ecr-login".to_owned(),
        )]);
        check(&good).unwrap();
    }
}
