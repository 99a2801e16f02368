//! Git credentials for the dev container, from this machine: while a session (`skiff exec`, `skiff ssh`, `skiff
//! proxy`) runs, it answers the `GitCredentials` call, where the agent passes the requests of git's credential
//! helper in the dev container; each is answered by this machine's own `git credential fill` (or `approve`,
//! `reject`), so the credential comes from the laptop's store or credential manager, and nothing is stored there.
//!
//! The request's attributes are data: only those git's helper protocol names, each a single line, go to git's
//! standard input. Git is told never to prompt (the session may hold the terminal in raw mode).

use std::collections::BTreeMap;
use std::process::Stdio;

use futures::StreamExt as _;
use skiff::api::{GitCredentialAnswer, GitCredentialRequest};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::agent_client::{AgentClient, Code};

/// The attributes passed to and from git.
const ATTRIBUTES: &[&str] = &[
    "protocol",
    "host",
    "path",
    "username",
    "password",
    "password_expiry_utc",
    "oauth_refresh_token",
];

/// Answers the dev container's git credential requests until the call ends (the agent goes, or this is dropped).
/// An agent without the call, or a dev container the agent cannot offer it in, is left quietly: git there then asks
/// as it would without skiff.
pub async fn serve(mut client: AgentClient) {
    let (answers, outgoing) = mpsc::channel::<GitCredentialAnswer>(8);
    if answers.send(GitCredentialAnswer::default()).await.is_err() {
        return;
    }
    let mut requests = match client.git_credentials(ReceiverStream::new(outgoing)).await {
        Ok(requests) => requests,
        Err(error) => {
            if error.code() != Some(Code::Unimplemented) {
                tracing::debug!("git credentials are not offered: {error}");
            }
            return;
        }
    };
    while let Some(Ok(request)) = requests.next().await {
        let answer = answer(&request).await;
        if answers.send(answer).await.is_err() {
            break;
        }
    }
}

/// This machine's git's answer to `request`.
async fn answer(request: &GitCredentialRequest) -> GitCredentialAnswer {
    let (subcommand, wants_output) = match request.action.as_str() {
        "get" => ("fill", true),
        "store" => ("approve", false),
        "erase" => ("reject", false),
        other => {
            return GitCredentialAnswer {
                id: request.id,
                attributes: BTreeMap::new(),
                error: Some(format!("unknown action {other:?}")),
            };
        }
    };
    let result = run_git(subcommand, &request.attributes).await;
    match result {
        Ok(output) if wants_output => GitCredentialAnswer {
            id: request.id,
            attributes: parse(&output),
            error: None,
        },
        Ok(_) => GitCredentialAnswer {
            id: request.id,
            ..GitCredentialAnswer::default()
        },
        // `fill` with nothing stored and no prompt allowed fails: the container's git hears "none".
        Err(error) if subcommand == "fill" => {
            tracing::debug!("git credential fill: {error}");
            GitCredentialAnswer {
                id: request.id,
                ..GitCredentialAnswer::default()
            }
        }
        Err(error) => GitCredentialAnswer {
            id: request.id,
            attributes: BTreeMap::new(),
            error: Some(error),
        },
    }
}

/// The lines git reads for `attributes`: only the protocol's names, only single-line values.
pub fn format(attributes: &BTreeMap<String, String>) -> String {
    attributes
        .iter()
        .filter(|(key, value)| {
            ATTRIBUTES.contains(&key.as_str()) && !value.contains(['\n', '\r', '\0'])
        })
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect::<String>()
        + "\n"
}

/// The attributes of git's answer.
fn parse(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| ATTRIBUTES.contains(key))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// Runs `git credential SUBCOMMAND` with `attributes` on its standard input; its standard output.
async fn run_git(
    subcommand: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut child = tokio::process::Command::new("git")
        .args(["credential", subcommand])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("running git on this machine: {error}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(format(attributes).as_bytes())
        .await
        .map_err(|error| format!("writing to git credential {subcommand}: {error}"))?;
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .map_err(|error| format!("git credential {subcommand}: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "git credential {subcommand} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_never_adds_a_line_and_unknown_attributes_stay_out() {
        let attributes = BTreeMap::from([
            ("host".to_owned(), "example.com\nusername=admin".to_owned()),
            ("protocol".to_owned(), "https".to_owned()),
            ("url".to_owned(), "https://elsewhere".to_owned()),
        ]);
        assert_eq!(format(&attributes), "protocol=https\n\n");
        let parsed = parse("username=ada\npassword=s3cret\nquit=1\n");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed["password"], "s3cret");
    }
}
