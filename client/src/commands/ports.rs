//! Forwarding a workspace's ports while someone is attached (`skiff up --forward`, `skiff ssh`): the ports
//! devcontainer.json names (`forwardPorts`, `appPort`) from the start, and ports that start listening in the
//! dev container as they appear, each on the same local port when it is free. `portsAttributes` gives
//! labels and can say `ignore`; `otherPortsAttributes` covers the rest.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use skiff::api::ForwardTarget;
use skiff::devcontainer::{DevContainer, ForwardPort, OnAutoForward, PortAttributes, PortSpec};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::agent_client::AgentClient;

/// What to forward and how to name it, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct PortPlan {
    /// Ports forwarded from the start.
    pub configured: Vec<ForwardTarget>,
    /// `portsAttributes` by port number.
    attributes: Vec<(String, PortAttributes)>,
    /// `otherPortsAttributes`.
    other: Option<PortAttributes>,
}

impl PortPlan {
    /// The plan of a configuration.
    pub fn from_config(config: &DevContainer) -> Self {
        let mut configured = Vec::new();
        for port in config.forward_ports.iter().flatten() {
            configured.push(match port {
                ForwardPort::Port(port) => ForwardTarget {
                    host: None,
                    port: *port,
                },
                ForwardPort::HostPort { host, port } => ForwardTarget {
                    host: Some(host.clone()),
                    port: *port,
                },
            });
        }
        for port in config
            .app_port
            .iter()
            .flat_map(|app_port| app_port.as_slice())
        {
            let number = match port {
                PortSpec::Number(number) => Some(*number),
                PortSpec::Text(text) => text.rsplit(':').next().and_then(|port| port.parse().ok()),
            };
            if let Some(port) = number
                && !configured
                    .iter()
                    .any(|target| target.host.is_none() && target.port == port)
            {
                configured.push(ForwardTarget { host: None, port });
            }
        }
        Self {
            configured,
            attributes: config
                .ports_attributes
                .iter()
                .flatten()
                .map(|(key, attributes)| (key.clone(), attributes.clone()))
                .collect(),
            other: config.other_ports_attributes.clone(),
        }
    }

    /// The attributes that apply to `port`: an exact entry, a range `a-b`, else `otherPortsAttributes`.
    pub fn attributes(&self, port: u16) -> Option<&PortAttributes> {
        self.attributes
            .iter()
            .find(|(key, _)| {
                key.parse::<u16>() == Ok(port)
                    || key.split_once('-').is_some_and(|(low, high)| {
                        matches!((low.trim().parse::<u16>(), high.trim().parse::<u16>()), (Ok(low), Ok(high)) if (low..=high).contains(&port))
                    })
            })
            .map(|(_, attributes)| attributes)
            .or(self.other.as_ref())
    }

    /// Whether a detected port is to be left alone.
    pub fn ignores(&self, port: u16) -> bool {
        self.attributes(port)
            .is_some_and(|attributes| attributes.on_auto_forward == Some(OnAutoForward::Ignore))
    }

    /// How a forwarded port is announced.
    pub fn describe(&self, target: &ForwardTarget, local: u16) -> String {
        let scheme = match self
            .attributes(target.port)
            .and_then(|attributes| attributes.protocol)
        {
            Some(skiff::devcontainer::PortProtocol::Https) => "https",
            _ => "http",
        };
        let label = self
            .attributes(target.port)
            .and_then(|attributes| attributes.label.clone())
            .map(|label| format!(" ({label})"))
            .unwrap_or_default();
        let remote = match &target.host {
            Some(host) => format!("{host}:{}", target.port),
            None => format!("port {}", target.port),
        };
        format!("forwarding {scheme}://127.0.0.1:{local} -> {remote}{label}")
    }
}

/// The targets already forwarded (host, port), so each is forwarded and announced once.
type Forwarded = Mutex<BTreeSet<(Option<String>, u16)>>;

/// Forwards the plan's ports and then every port that starts listening, until this future is dropped, which
/// ends every forward it started. `announce` receives one line per port, once.
pub async fn forward_while_attached(
    client: AgentClient,
    plan: PortPlan,
    workspace_folder: std::path::PathBuf,
    announce: impl Fn(String) + Send + Sync + 'static,
) {
    let announce = Arc::new(announce);
    let forwarded: Arc<Forwarded> = Arc::default();
    let mut forwards = JoinSet::new();
    for target in plan.configured.clone() {
        start(
            &client,
            &plan,
            target,
            &forwarded,
            &announce,
            &workspace_folder,
            &mut forwards,
        )
        .await;
    }
    let mut watcher = client.clone();
    // An agent without `WatchPorts` still gets the configured ports forwarded.
    if let Ok(mut changes) = watcher.watch_ports().await {
        while let Some(Ok((port, listening, _loopback_only))) = changes.next().await {
            if !listening || plan.ignores(port) {
                continue;
            }
            start(
                &client,
                &plan,
                ForwardTarget { host: None, port },
                &forwarded,
                &announce,
                &workspace_folder,
                &mut forwards,
            )
            .await;
        }
    }
    // The forwards go on until the caller drops this future.
    while forwards.join_next().await.is_some() {}
    std::future::pending::<()>().await;
}

async fn start(
    client: &AgentClient,
    plan: &PortPlan,
    target: ForwardTarget,
    forwarded: &Forwarded,
    announce: &Arc<impl Fn(String) + Send + Sync + 'static>,
    workspace_folder: &std::path::Path,
    forwards: &mut JoinSet<()>,
) {
    if !forwarded
        .lock()
        .await
        .insert((target.host.clone(), target.port))
    {
        return;
    }
    let require_local = plan
        .attributes(target.port)
        .and_then(|attributes| attributes.require_local_port)
        .unwrap_or(false);
    let listener = match super::forward::bind_local(target.port).await {
        Ok(listener) => listener,
        Err(_) if !require_local => match super::forward::bind_local(0).await {
            Ok(listener) => listener,
            Err(error) => {
                return announce(format!("not forwarding port {}: {error:#}", target.port));
            }
        },
        Err(error) => {
            return announce(format!(
                "not forwarding port {} (requireLocalPort): {error:#}",
                target.port
            ));
        }
    };
    let local = listener
        .local_addr()
        .map(|address| address.port())
        .unwrap_or(target.port);
    announce(plan.describe(&target, local));
    let mark = crate::workspace::ForwardMark::new(workspace_folder, local);
    let client = client.clone();
    forwards.spawn(async move {
        let _mark = mark;
        super::forward::serve(listener, target, client).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: &str) -> PortPlan {
        let (config, _) =
            skiff::devcontainer::parse(std::path::Path::new("devcontainer.json"), json).unwrap();
        PortPlan::from_config(&config)
    }

    #[test]
    fn configured_ports_and_attributes() {
        let plan = plan(
            r#"{ "image": "x", "forwardPorts": [3000, "db:5432"], "appPort": [8080, "9000:9001"],
                 "portsAttributes": { "3000": { "label": "web", "protocol": "https" }, "9000-9100": { "onAutoForward": "ignore" } },
                 "otherPortsAttributes": { "label": "other" } }"#,
        );
        let ports: Vec<_> = plan
            .configured
            .iter()
            .map(|target| (target.host.clone(), target.port))
            .collect();
        assert_eq!(
            ports,
            vec![
                (None, 3000),
                (Some("db".into()), 5432),
                (None, 8080),
                (None, 9001)
            ]
        );
        assert_eq!(
            plan.describe(
                &ForwardTarget {
                    host: None,
                    port: 3000
                },
                3000
            ),
            "forwarding https://127.0.0.1:3000 -> port 3000 (web)"
        );
        assert!(plan.ignores(9050));
        assert!(!plan.ignores(3000));
        assert_eq!(
            plan.attributes(4000)
                .and_then(|attributes| attributes.label.clone())
                .as_deref(),
            Some("other")
        );
    }
}
