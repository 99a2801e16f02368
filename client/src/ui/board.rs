//! One picture of every workspace for every open page.
//!
//! One task (owned by `skiff ui`'s task set) refreshes it: the local agents every [`LOCAL_EVERY`] (each asked at
//! once, over loopback), AWS every `--aws-every` and when an action on an AWS workspace asks for it, never more
//! often than [`AWS_AT_MOST`]. The picture is published as JSON through a `watch` channel; each page's event stream
//! sends it when it changed, so ten tabs cost what one does. Countdowns are sent as the instant the stop is due,
//! which the page counts down itself, so a quiet workspace's picture does not change every second.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::{Notify, watch};

use crate::provider::ListRow;

/// How often the local agents are asked.
pub const LOCAL_EVERY: Duration = Duration::from_secs(2);
/// The least time between two AWS listings, whatever asks.
pub const AWS_AT_MOST: Duration = Duration::from_secs(5);

/// The shared picture and the way to ask for a fresh one.
#[derive(Debug)]
pub struct Board {
    picture: watch::Receiver<Arc<Published>>,
    wake: Arc<Notify>,
    aws_wanted: Arc<AtomicBool>,
}

/// A picture as sent: its JSON, and the rows for the handlers that check a name.
#[derive(Debug, Default)]
pub struct Published {
    json: String,
    pub rows: Vec<Row>,
}

/// What the page shows.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
struct Picture {
    rows: Vec<Row>,
    /// Whether this machine works with AWS at all.
    aws_in_use: bool,
    /// When AWS was last listed (milliseconds since the epoch), and when it will be next.
    aws_listed_unix_ms: Option<i64>,
    aws_next_unix_ms: Option<i64>,
    /// Why the last listing failed, if it did.
    aws_error: Option<String>,
    local_error: Option<String>,
}

/// One workspace on the page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    pub name: String,
    pub provider: String,
    pub region: Option<String>,
    pub owner: Option<String>,
    pub state: String,
    /// The folder on this machine; `up` of it starts the workspace.
    pub folder: Option<String>,
    /// What it runs on: this machine, or the instance type and id.
    machine: String,
    hourly_usd: Option<f64>,
    storage_usd_month: Option<f64>,
    /// What this month cost so far, where known.
    month_usd: Option<f64>,
    /// `month_usd` is a floor: runs the laptop was not told of are missing.
    month_usd_at_least: bool,
    /// The agent's words for this month.
    month: Option<String>,
    idle: Option<Idle>,
    stopped_since_unix: Option<i64>,
    /// The line that opens a shell (`skiff ssh-config` writes the host).
    ssh: String,
    /// The local ports `skiff up --forward` or `skiff forward` forward now.
    ports: Vec<u16>,
}

/// The idle countdown, as the page shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Idle {
    timeout_seconds: u64,
    /// When the agent stops the workspace unless something happens (milliseconds since the epoch).
    stops_at_unix_ms: Option<i64>,
    /// What keeps it up now.
    busy: Vec<String>,
    pinned_until_unix_ms: Option<i64>,
    last_activity_unix_ms: i64,
    last_activity: String,
}

impl Board {
    /// Starts the refresher in `tasks`; the board follows what it publishes.
    pub fn start(tasks: &mut tokio::task::JoinSet<()>, aws_every: Duration) -> Self {
        let (sender, picture) = watch::channel(Arc::new(Published::default()));
        let wake = Arc::new(Notify::new());
        let aws_wanted = Arc::new(AtomicBool::new(true));
        tasks.spawn(refresh(sender, wake.clone(), aws_wanted.clone(), aws_every));
        Self {
            picture,
            wake,
            aws_wanted,
        }
    }

    /// The latest picture's rows.
    pub fn rows(&self) -> Vec<Row> {
        self.picture.borrow().rows.clone()
    }

    /// Asks for a fresh picture now (with AWS's too when `aws`).
    pub fn refresh_now(&self, aws: bool) {
        if aws {
            self.aws_wanted.store(true, Ordering::SeqCst);
        }
        self.wake.notify_one();
    }

    /// Waits for the first picture, for handlers that come before it.
    async fn first(&self) -> Arc<Published> {
        let mut receiver = self.picture.clone();
        let _ = receiver
            .wait_for(|published| !published.json.is_empty())
            .await;
        receiver.borrow().clone()
    }
}

async fn refresh(
    sender: watch::Sender<Arc<Published>>,
    wake: Arc<Notify>,
    aws_wanted: Arc<AtomicBool>,
    aws_every: Duration,
) {
    let mut picture = Picture::default();
    let mut aws_rows: Vec<Row> = Vec::new();
    let mut aws_listed: Option<Instant> = None;
    loop {
        let aws_due = aws_listed.is_none_or(|listed| {
            let since = listed.elapsed();
            since >= aws_every || (aws_wanted.load(Ordering::SeqCst) && since >= AWS_AT_MOST)
        });
        let local = crate::provider::list_local();
        let (local, aws) = if aws_due {
            aws_wanted.store(false, Ordering::SeqCst);
            let (local, aws) = tokio::join!(local, crate::provider::list_aws(false));
            (local, Some(aws))
        } else {
            (local.await, None)
        };
        let now_ms = now_unix_ms();
        let mut rows = match local {
            Ok(rows) => {
                picture.local_error = None;
                rows.into_iter().map(|row| Row::of(row, now_ms)).collect()
            }
            Err(error) => {
                picture.local_error = Some(format!("{error:#}"));
                Vec::new()
            }
        };
        if let Some(aws) = aws {
            aws_listed = Some(Instant::now());
            picture.aws_in_use = crate::provider::aws_in_use();
            picture.aws_listed_unix_ms = Some(now_ms);
            picture.aws_next_unix_ms =
                Some(now_ms + i64::try_from(aws_every.as_millis()).unwrap_or(i64::MAX));
            match aws {
                Ok(listed) => {
                    picture.aws_error = None;
                    aws_rows = listed.into_iter().map(|row| Row::of(row, now_ms)).collect();
                }
                // The last rows stay, with the error beside them.
                Err(error) => picture.aws_error = Some(format!("{error:#}")),
            }
        }
        rows.extend(aws_rows.iter().cloned());
        picture.rows = rows;
        let json = serde_json::to_string(&picture).unwrap_or_else(|_| "{}".to_owned());
        sender.send_if_modified(|published| {
            if published.json == json {
                return false;
            }
            *published = Arc::new(Published {
                json,
                rows: picture.rows.clone(),
            });
            true
        });
        let until_aws = aws_listed.map_or(Duration::ZERO, |listed| {
            aws_every.saturating_sub(listed.elapsed())
        });
        tokio::select! {
            () = tokio::time::sleep(LOCAL_EVERY.min(until_aws.max(Duration::from_millis(100)))) => {}
            () = wake.notified() => {}
            () = sender.closed() => return,
        }
    }
}

impl Row {
    fn of(row: ListRow, now_ms: i64) -> Self {
        let ssh = format!("ssh {}.skiff", row.name);
        let (region, owner, machine, hourly_usd, storage_usd_month) = match &row.aws {
            Some(aws) => (
                Some(aws.region.clone()),
                Some(aws.owner.clone()),
                match (&aws.instance_type, &aws.instance_id) {
                    (Some(kind), Some(id)) => format!("{kind} ({id})"),
                    (None, Some(id)) => id.clone(),
                    _ => "no instance".to_owned(),
                },
                aws.on_demand_hourly_usd,
                aws.storage_usd_month,
            ),
            None => (None, None, "this machine".to_owned(), None, None),
        };
        let folder = match &row.aws {
            Some(aws) => aws.folder.clone(),
            None => Some(row.folder.clone()),
        };
        let usage = row.status.as_ref().and_then(|status| status.usage);
        let (month_usd, month_usd_at_least) = match (&row.aws, usage) {
            // This machine's own: nothing to pay for.
            (None, _) => (Some(0.0), false),
            (Some(_), Some(usage)) => (
                hourly_usd.map(|hourly| {
                    hourly * usage.running_seconds as f64 / 3600.0
                        + storage_usd_month.unwrap_or(0.0) * month_fraction(now_ms / 1000)
                }),
                false,
            ),
            // As `list` tells it: from the ledger's last reading this machine kept, and EC2's last run.
            (Some(aws), None) => (
                aws.month_to_date_usd,
                aws.month_to_date_whole == Some(false),
            ),
        };
        let idle = row.status.as_ref().map(|status| {
            let idle = &status.idle;
            let stops_at_unix_ms = idle.stops_in_seconds.map(|_| {
                // Due at the last activity plus the timeout, or when the pin ends if that is later: stable between
                // refreshes, so the picture changes only when something happens.
                let due = idle.last_activity_unix_ms
                    + i64::try_from(idle.timeout_seconds).unwrap_or(i64::MAX / 2) * 1000;
                idle.pinned_until_unix_ms.map_or(due, |pin| due.max(pin))
            });
            Idle {
                timeout_seconds: idle.timeout_seconds,
                stops_at_unix_ms,
                busy: idle.busy_sources.clone(),
                pinned_until_unix_ms: idle.pinned_until_unix_ms.filter(|until| *until > now_ms),
                last_activity_unix_ms: idle.last_activity_unix_ms,
                last_activity: idle.last_activity_source.clone(),
            }
        });
        let ports = if row.aws.is_none() || folder.is_some() {
            crate::workspace::forwarded_ports(&row.name)
        } else {
            Vec::new()
        };
        Self {
            month: usage.as_ref().map(crate::usage::describe),
            name: row.name,
            provider: row.provider,
            region,
            owner,
            state: row.state,
            folder,
            machine,
            hourly_usd,
            storage_usd_month,
            month_usd,
            month_usd_at_least,
            idle,
            stopped_since_unix: row.stopped_since_unix,
            ssh,
            ports,
        }
    }
}

#[cfg(test)]
impl Row {
    /// A row with the fields of `json` that tests care about (name, provider, region, owner, state, folder).
    pub fn for_test(json: serde_json::Value) -> Self {
        let text = |key: &str| json[key].as_str().map(str::to_owned);
        Self {
            name: text("name").unwrap_or_default(),
            provider: text("provider").unwrap_or_default(),
            region: text("region"),
            owner: text("owner"),
            state: text("state").unwrap_or_default(),
            folder: text("folder"),
            machine: String::new(),
            hourly_usd: None,
            storage_usd_month: None,
            month_usd: None,
            month_usd_at_least: false,
            month: None,
            idle: None,
            stopped_since_unix: None,
            ssh: String::new(),
            ports: Vec::new(),
        }
    }
}

/// How much of the current month has passed at `now` (seconds since the epoch), from 0 to 1.
fn month_fraction(now: i64) -> f64 {
    let start = skiff::calendar::month_start(now);
    let length = skiff::calendar::next_month_start(now) - start;
    (now - start) as f64 / length.max(1) as f64
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// `GET /api/board`: the latest picture, once there is one.
pub async fn snapshot(State(shared): State<super::AppState>) -> impl IntoResponse {
    let published = shared.board.first().await;
    (
        [(header::CONTENT_TYPE, "application/json")],
        published.json.clone(),
    )
}

/// `GET /api/events`: the picture now and whenever it changes, as server-sent events.
pub async fn events(
    State(shared): State<super::AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut receiver = shared.board.picture.clone();
    receiver.mark_changed();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            receiver.changed().await.ok()?;
            let published = receiver.borrow_and_update().clone();
            if !published.json.is_empty() {
                let event = Event::default().event("board").data(published.json.clone());
                return Some((Ok(event), receiver));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
