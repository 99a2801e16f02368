//! The SSM test gateway: AWS's side of Session Manager port forwarding (the MGS service and the SSM agent on
//! the instance) as `ssm/PROTOCOL.md` describes it byte by byte, in process, on 127.0.0.1, with faults a test
//! can turn on. skiff's client reaches it through `AWS_ENDPOINT_URL_SSM=`[`Gateway::endpoint`].
//!
//! One port serves both planes: AWS JSON 1.1 calls (`control`) and the data-channel WebSockets its StreamUrls
//! name (`upgrade`, then `socket`). Each session is one task (`session`) that plays the agent: the
//! reliability layer (`channel`), the ClientMessage codec (`frame`) and JSON (`payloads`), the Port plugin
//! with its smux v1 server (`port`, `smux`), and the faults (`faults`). Dropping the [`Gateway`] stops every
//! task, closes every socket and every dialled connection.

mod channel;
mod control;
mod faults;
pub mod frame;
mod payloads;
mod port;
mod session;
pub mod smux;
mod socket;
mod stats;
mod tasks;
mod upgrade;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use faults::{Faults, REORDER_HOLD};
pub use stats::Stats;

use session::SessionHandle;
use stats::Counters;
use tasks::Tasks;

/// The SSM agent version the gateway reports by default (a mux-mode agent).
pub const DEFAULT_AGENT_VERSION: &str = "3.3.1142.0";

/// How a gateway starts.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where every other `AmazonSSM.*` call is passed through (`http://127.0.0.1:PORT` of a moto server).
    pub moto_endpoint: Option<String>,
    /// The initial fault settings ([`Gateway::set_faults`] changes them).
    pub faults: Faults,
    /// Where a session to `(target, portNumber)` dials; by default `127.0.0.1:portNumber`.
    pub routes: HashMap<(String, u16), SocketAddr>,
    /// The AgentVersion of the handshake and of DescribeInstanceInformation.
    pub agent_version: String,
    /// Instances online from the start ([`Gateway::set_online`] changes them).
    pub online: Vec<String>,
    /// The port to listen on (127.0.0.1 always); 0 for any free port.
    pub port: u16,
    /// Send `channel_closed` in the short form the service has been seen to use (HeaderLength 112, no
    /// PayloadType, NUL padding) instead of the standard one. aws-ssm-bridge 0.6.0 rejects the short form.
    pub short_channel_closed: bool,
    /// Send a `start_publication` message first on every WebSocket, as the service is seen to do.
    pub start_publication: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            moto_endpoint: None,
            faults: Faults::default(),
            routes: HashMap::new(),
            agent_version: DEFAULT_AGENT_VERSION.to_owned(),
            online: Vec::new(),
            port: 0,
            short_channel_closed: false,
            start_publication: false,
        }
    }
}

/// A running gateway; dropping it stops it.
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    ended: Option<mpsc::Receiver<()>>,
}

impl Gateway {
    /// Listens on 127.0.0.1 (`config.port`, 0 for any) and serves until dropped or shut down.
    pub async fn start(config: GatewayConfig) -> anyhow::Result<Gateway> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port))
            .await
            .with_context(|| {
                format!("binding the SSM test gateway to 127.0.0.1:{}", config.port)
            })?;
        let address = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let (tasks, ended) = Tasks::new(cancel.clone());
        let shared = Arc::new(Shared {
            address,
            settings: Settings {
                moto_endpoint: config.moto_endpoint,
                routes: config.routes,
                agent_version: config.agent_version,
                short_channel_closed: config.short_channel_closed,
                start_publication: config.start_publication,
            },
            faults: Arc::new(RwLock::new(config.faults)),
            counters: Arc::new(Counters::default()),
            tasks: tasks.clone(),
            sessions: Mutex::new(HashMap::new()),
            online: Mutex::new(config.online.into_iter().collect()),
            ordinals: AtomicU64::new(0),
        });
        tasks.spawn(serve(listener, shared.clone()));
        tracing::debug!(%address, "ssm gateway: listening");
        Ok(Gateway {
            shared,
            cancel,
            ended: Some(ended),
        })
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_SSM`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.shared.address)
    }

    /// aws-config pointed at this gateway: fake credentials, us-east-1.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(skiff_client::provider::aws::http_client())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ssm::config::Credentials::new(
                "AKIDGATEWAYTEST",
                "gateway-test-secret",
                None,
                None,
                "ssm-gateway-tests",
            ))
            .endpoint_url(self.endpoint())
            .load()
            .await
    }

    /// The address the gateway listens on.
    pub fn address(&self) -> SocketAddr {
        self.shared.address
    }

    /// Whether DescribeInstanceInformation reports `instance_id` Online (and StartSession reaches it).
    pub fn set_online(&self, instance_id: &str, online: bool) {
        let mut instances = lock(&self.shared.online);
        if online {
            instances.insert(instance_id.to_owned());
        } else {
            instances.remove(instance_id);
        }
    }

    /// Replaces the fault settings; sessions see them from their next message on.
    pub fn set_faults(&self, faults: Faults) {
        *self
            .shared
            .faults
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = faults;
    }

    /// Drops every open data-channel WebSocket now, without a Close frame; the sessions stay resumable.
    pub fn drop_websockets(&self) {
        for session in lock(&self.shared.sessions).values() {
            session.drop_socket(&self.shared.counters);
        }
    }

    /// Closes every open data-channel WebSocket with a normal Close frame but no `channel_closed` first, as the
    /// service may when it moves a connection; the sessions stay resumable.
    pub fn close_websockets(&self) {
        for session in lock(&self.shared.sessions).values() {
            session.close_socket();
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Stops the gateway and waits until every task, socket and dialled connection is gone.
    pub async fn shutdown(mut self) {
        let ended = self.ended.take();
        drop(self);
        if let Some(mut ended) = ended {
            let _ = ended.recv().await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.cancel.cancel();
        // Forget the sessions so their tasks see their command queue end, too.
        lock(&self.shared.sessions).clear();
    }
}

/// Accepts HTTP connections (control calls and WebSocket upgrades alike).
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (connection, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "ssm gateway: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = connection.set_nodelay(true);
        let service_shared = shared.clone();
        let service = service_fn(move |request| {
            let shared = service_shared.clone();
            async move { Ok::<_, Infallible>(control::handle(shared, request).await) }
        });
        shared.tasks.spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(connection), service)
                .with_upgrades()
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "ssm gateway: HTTP connection ended");
            }
        });
    }
}

/// What the gateway's settings fix for its whole life.
#[derive(Debug)]
pub(crate) struct Settings {
    pub moto_endpoint: Option<String>,
    pub routes: HashMap<(String, u16), SocketAddr>,
    pub agent_version: String,
    pub short_channel_closed: bool,
    pub start_publication: bool,
}

/// What the gateway's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub address: SocketAddr,
    pub settings: Settings,
    pub faults: Arc<RwLock<Faults>>,
    pub counters: Arc<Counters>,
    pub tasks: Tasks,
    sessions: Mutex<HashMap<String, Arc<SessionHandle>>>,
    online: Mutex<BTreeSet<String>>,
    ordinals: AtomicU64,
}

impl Shared {
    pub(crate) fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    pub(crate) fn session(&self, id: &str) -> Option<Arc<SessionHandle>> {
        lock(&self.sessions).get(id).cloned()
    }

    pub(crate) fn insert_session(&self, session: Arc<SessionHandle>) {
        lock(&self.sessions).insert(session.info.id.clone(), session);
    }

    pub(crate) fn is_online(&self, instance_id: &str) -> bool {
        lock(&self.online).contains(instance_id)
    }

    pub(crate) fn online_instances(&self) -> Vec<String> {
        lock(&self.online).iter().cloned().collect()
    }

    pub(crate) fn next_ordinal(&self) -> u64 {
        self.ordinals.fetch_add(1, Ordering::Relaxed)
    }

    /// A session id shaped like AWS's (`<caller>-<17 hex digits>`).
    pub(crate) fn new_session_id(&self) -> String {
        use rand::Rng;
        let suffix: u128 = rand::rng().random();
        format!("skiff-gateway-{:017x}", suffix & ((1u128 << 68) - 1))
    }

    pub(crate) fn stream_url(&self, session_id: &str) -> String {
        format!(
            "ws://{}{}{session_id}?role=publish_subscribe",
            self.address,
            upgrade::DATA_CHANNEL_PATH
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
