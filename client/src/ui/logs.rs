//! `GET /api/workspaces/{name}/logs`: the dev container's output (its last lines, then what it prints), as
//! server-sent events, through the agent's `Logs` call. Looking is not using: the agent is reached without counting
//! as activity, as `skiff logs` does, and a stopped workspace is not started.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;

use crate::cli::AgentOptions;
use crate::provider::Provider;
use crate::workspace::Store;

/// The lines of output shown before following.
const TAIL: u32 = 200;

pub async fn follow(State(shared): State<super::AppState>, Path(name): Path<String>) -> Response {
    let Some(row) = shared.row(&name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no workspace {name:?} on the board"),
        )
            .into_response();
    };
    if row.state == "stopped" {
        return (
            StatusCode::CONFLICT,
            format!("workspace {name} is stopped: start it to see its output"),
        )
            .into_response();
    }
    let workspace = match Store::open_default().and_then(|store| store.get(&name)) {
        Ok(workspace) => workspace,
        Err(error) => {
            return (
                StatusCode::NOT_FOUND,
                format!("workspace {name} has no record on this machine: {error}"),
            )
                .into_response();
        }
    };
    let provider = Provider::of(&workspace, &AgentOptions::default()).without_activity();
    let logs = async {
        let mut client = provider.agent(&workspace).await?;
        anyhow::Ok(client.logs(true, TAIL).await?)
    }
    .await;
    let logs = match logs {
        Ok(logs) => logs,
        Err(error) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("reading the output of workspace {name}: {error:#}"),
            )
                .into_response();
        }
    };
    let events = logs.map(|chunk| {
        Ok::<_, Infallible>(match chunk {
            // As a JSON string: a carriage return or a lone newline arrives as printed.
            Ok((_stream, bytes)) => Event::default()
                .event("output")
                .json_data(String::from_utf8_lossy(&bytes))
                .unwrap_or_default(),
            Err(error) => Event::default()
                .event("failed")
                .data(format!("the output stopped: {error}")),
        })
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
