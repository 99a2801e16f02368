//! `skiff ui`: a page on this machine that shows every workspace (local and on AWS) with what it is doing and
//! costing, and starts, stops, deletes and keeps each alive.
//!
//! The server is axum on the command's own tokio runtime, bound to 127.0.0.1 only. `guard` lets only this user
//! in: the URL printed (and opened) carries a random token that becomes an `HttpOnly`, `SameSite=Strict` cookie;
//! every request must carry it, name this server in its `Host` (against DNS rebinding), and every request that
//! changes anything must come from this page's own origin.
//!
//! `board` keeps one picture of every workspace, refreshed by one task for all open pages: local agents every
//! couple of seconds (loopback), AWS at a slow interval (and after an action on an AWS workspace), so open tabs
//! never multiply AWS calls. Pages follow it over server-sent events. `actions` runs what the buttons ask as the
//! `skiff` commands themselves (the same checks, the same messages), and `logs` streams a dev container's output.
//! The page (`assets/`) is plain HTML, CSS and JavaScript written for skiff, embedded in the binary; no build step.

mod actions;
mod board;
mod guard;
mod logs;

use std::future::IntoFuture as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::cli::UiArgs;

/// How long open pages get to close their streams after Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What every request handler shares.
#[derive(Debug)]
struct Shared {
    guard: guard::Guard,
    board: board::Board,
}

type AppState = Arc<Shared>;

impl Shared {
    /// The workspace called `name` on the current board: the only ones the page may act on or read.
    fn row(&self, name: &str) -> Option<board::Row> {
        self.board.rows().into_iter().find(|row| row.name == name)
    }
}

/// Serves the page until Ctrl-C; the exit code.
pub async fn run(args: UiArgs) -> anyhow::Result<i32> {
    let aws_every = humantime::parse_duration(args.aws_every.trim()).map_err(|error| {
        anyhow::anyhow!(
            "--aws-every {:?}: {error}; write a duration such as 60s or 5m",
            args.aws_every
        )
    })?;
    if aws_every < Duration::from_secs(10) {
        anyhow::bail!(
            "--aws-every {:?} is shorter than 10s; AWS would be asked too often (write 10s or more)",
            args.aws_every
        );
    }
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, args.port))
        .await
        .with_context(|| {
            format!(
                "listening on 127.0.0.1:{}; pick another --port, or leave it out for a free one",
                args.port
            )
        })?;
    let port = listener.local_addr()?.port();
    let guard = guard::Guard::new(port)?;
    let url = guard.entry_url();
    let mut tasks = tokio::task::JoinSet::new();
    let board = board::Board::start(&mut tasks, aws_every);
    let shared = Arc::new(Shared { guard, board });
    let app = router(shared);
    println!("{url}");
    if args.no_open {
        eprintln!("skiff ui: serving on 127.0.0.1:{port} until Ctrl-C; open the URL above");
    } else {
        eprintln!(
            "skiff ui: serving on 127.0.0.1:{port} until Ctrl-C; opening it in the default browser"
        );
        if let Err(error) = open::that_detached(&url) {
            eprintln!(
                "skiff ui: could not open a browser ({error}); open the URL above (--no-open only prints it)"
            );
        }
    }
    // Ctrl-C stops taking connections; open pages hold their event streams open, so they get a moment to go, then
    // the server stops anyway.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let serve = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown({
        let stopping = stopping.clone();
        async move { stopping.notified().await }
    })
    .into_future();
    tokio::pin!(serve);
    tokio::select! {
        served = &mut serve => served.context("serving the page")?,
        _ = tokio::signal::ctrl_c() => {
            stopping.notify_one();
            if let Ok(served) = tokio::time::timeout(SHUTDOWN_GRACE, &mut serve).await {
                served.context("serving the page")?;
            }
        }
    }
    // The refresher ends with the set.
    tasks.shutdown().await;
    eprintln!("skiff ui: stopped");
    Ok(0)
}

fn router(shared: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/style.css", get(style))
        .route("/api/board", get(board::snapshot))
        .route("/api/events", get(board::events))
        .route("/api/workspaces/{name}/logs", get(logs::follow))
        .route("/api/workspaces/{name}/boot-log", get(actions::boot_log))
        .route("/api/workspaces/{name}/{action}", post(actions::act))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            guard::check,
        ))
        .with_state(shared)
}

async fn page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("assets/index.html"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/app.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/style.css"),
    )
}
