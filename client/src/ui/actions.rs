//! The page's buttons, done by the `skiff` commands themselves, so a click does exactly what the command does, with
//! its checks and its words: start is `skiff up FOLDER`, stop `skiff stop`, delete `skiff delete` (which, without a
//! terminal, deletes only when no work would be lost, and otherwise prints that work and keeps the workspace; the
//! page shows that and offers "delete anyway", `skiff delete --yes`), keep alive `skiff keepalive --for`, and open
//! `skiff code`.
//!
//! Only a workspace on the current board can be acted on, and its name and folder reach the command as arguments
//! after `--`, never through a shell. A command runs to its end even if the page that asked goes away (its process is
//! not tied to the request); Ctrl-C on `skiff ui` reaches it too, as it shares the terminal's process group.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::board::Row;

/// A button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    /// Deletes unless work would be lost.
    Delete,
    /// Deletes whatever work would be lost (after the page showed it and asked).
    DeleteAnyway,
    /// Keeps it up for this many hours.
    Keep(u8),
    /// Opens VS Code on it.
    Code,
}

impl Action {
    /// The action a path names.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "start" => Self::Start,
            "stop" => Self::Stop,
            "delete" => Self::Delete,
            "delete-anyway" => Self::DeleteAnyway,
            "keep-1h" => Self::Keep(1),
            "keep-4h" => Self::Keep(4),
            "code" => Self::Code,
            _ => return None,
        })
    }

    /// The `skiff` command line for `row`, or why there is none.
    pub fn arguments(self, row: &Row) -> Result<Vec<OsString>, String> {
        let name = OsString::from(&row.name);
        let mut arguments: Vec<OsString> = match self {
            Self::Start => {
                let Some(folder) = &row.folder else {
                    return Err(format!(
                        "workspace {} has no folder on this machine to start it from; run `skiff up` where it was made",
                        row.name
                    ));
                };
                return Ok(vec!["up".into(), "--".into(), folder.into()]);
            }
            Self::Stop => vec!["stop".into()],
            Self::Delete => vec!["delete".into()],
            Self::DeleteAnyway => vec!["delete".into(), "--yes".into()],
            Self::Keep(hours) => vec![
                "keepalive".into(),
                "--for".into(),
                format!("{hours}h").into(),
            ],
            Self::Code => vec!["code".into()],
        };
        arguments.extend(["--".into(), name]);
        Ok(arguments)
    }

    /// How long the command may take before the page is answered without it (it goes on).
    fn patience(self) -> Option<Duration> {
        match self {
            // The editor's launcher may stay attached to its output.
            Self::Code => Some(Duration::from_secs(60)),
            _ => None,
        }
    }
}

/// What a button's command did, for the page.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    ok: bool,
    code: Option<i32>,
    /// Its standard error, then its standard output.
    output: String,
}

/// `POST /api/workspaces/{name}/{action}`.
pub async fn act(
    State(shared): State<super::AppState>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let Some(action) = Action::parse(&action) else {
        return (StatusCode::NOT_FOUND, format!("no action {action:?}")).into_response();
    };
    let Some(row) = shared.row(&name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no workspace {name:?} on the board"),
        )
            .into_response();
    };
    let arguments = match action.arguments(&row) {
        Ok(arguments) => arguments,
        Err(why) => return (StatusCode::CONFLICT, why).into_response(),
    };
    let outcome = run_skiff(&arguments, action.patience()).await;
    shared.board.refresh_now(row.provider == "aws");
    Json(outcome).into_response()
}

/// `GET /api/workspaces/{name}/boot-log`: an AWS instance's boot log (`skiff logs --boot`), as text.
pub async fn boot_log(State(shared): State<super::AppState>, Path(name): Path<String>) -> Response {
    let Some(row) = shared.row(&name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no workspace {name:?} on the board"),
        )
            .into_response();
    };
    if row.provider != "aws" {
        return (
            StatusCode::CONFLICT,
            format!("workspace {name} is not on AWS: it has no boot log"),
        )
            .into_response();
    }
    let outcome = run_skiff(
        &["logs".into(), "--boot".into(), "--".into(), row.name.into()],
        Some(Duration::from_secs(120)),
    )
    .await;
    Json(outcome).into_response()
}

/// Runs this `skiff` binary with `arguments`, without a terminal; waits `patience` at most, when given.
async fn run_skiff(arguments: &[OsString], patience: Option<Duration>) -> Outcome {
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(error) => {
            return Outcome {
                ok: false,
                code: None,
                output: format!("finding the skiff binary: {error}"),
            };
        }
    };
    let child = tokio::process::Command::new(&program)
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(error) => {
            return Outcome {
                ok: false,
                code: None,
                output: format!("starting {}: {error}", program.display()),
            };
        }
    };
    let waited = child.wait_with_output();
    let output = match patience {
        Some(limit) => match tokio::time::timeout(limit, waited).await {
            Ok(output) => output,
            Err(_) => {
                return Outcome {
                    ok: true,
                    code: None,
                    output: format!(
                        "still running after {} s; it goes on without the page",
                        limit.as_secs()
                    ),
                };
            }
        },
        None => waited.await,
    };
    match output {
        Ok(output) => {
            let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stdout));
            Outcome {
                ok: output.status.success(),
                code: output.status.code(),
                output: text,
            }
        }
        Err(error) => Outcome {
            ok: false,
            code: None,
            output: format!("waiting for skiff: {error}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, folder: Option<&str>, owner: Option<&str>) -> Row {
        let json = serde_json::json!({
            "name": name, "provider": if owner.is_some() { "aws" } else { "local" },
            "region": null, "owner": owner, "state": "running", "folder": folder,
        });
        Row::for_test(json)
    }

    #[test]
    fn names_and_folders_are_arguments_after_the_options() {
        let local = row("-rf", Some("/tmp/a b;c"), None);
        assert_eq!(
            Action::Start.arguments(&local).unwrap(),
            ["up", "--", "/tmp/a b;c"].map(OsString::from)
        );
        assert_eq!(
            Action::Keep(4).arguments(&local).unwrap(),
            ["keepalive", "--for", "4h", "--", "-rf"].map(OsString::from)
        );
        let aws = row("w", None, Some("AIDA:me"));
        assert_eq!(
            Action::Stop.arguments(&aws).unwrap(),
            ["stop", "--", "w"].map(OsString::from)
        );
        assert!(
            Action::Start
                .arguments(&aws)
                .unwrap_err()
                .contains("no folder")
        );
    }

    #[test]
    fn only_the_page_s_actions_parse() {
        for text in [
            "start",
            "stop",
            "delete",
            "delete-anyway",
            "keep-1h",
            "keep-4h",
            "code",
        ] {
            assert!(Action::parse(text).is_some(), "{text}");
        }
        for text in ["keep-100h", "exec", "", "Stop"] {
            assert!(Action::parse(text).is_none(), "{text}");
        }
    }
}
