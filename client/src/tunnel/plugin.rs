//! The fallback tunnel (`--tunnel plugin`): AWS's own `session-manager-plugin` forwards a local ephemeral port
//! on 127.0.0.1 to the agent's port, and each connection to the agent is a TCP connection to it. For networks
//! where skiff's native data channel misbehaves; the plugin must be installed separately.
//!
//! The client starts the session (`ssm:StartSession`, as the AWS CLI does) and hands the plugin the response,
//! the region, the request and the endpoint, in the argument order the AWS CLI uses.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::BoxIo;
use super::ssm::Target;
use super::warm::Carrier;

/// The plugin's program name.
pub const PROGRAM: &str = "session-manager-plugin";
/// Where AWS documents installing it.
pub const INSTALL_URL: &str = "https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html";

/// The plugin on `PATH`, or an error that says how to install it.
pub fn find() -> anyhow::Result<PathBuf> {
    find_in(&std::env::var_os("PATH").unwrap_or_default())
}

/// The plugin in the folders of a `PATH`-style list.
fn find_in(path: &std::ffi::OsStr) -> anyhow::Result<PathBuf> {
    std::env::split_paths(path)
        .map(|folder| folder.join(PROGRAM))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--tunnel plugin needs AWS's {PROGRAM}, which is not on PATH: install it ({INSTALL_URL}), or leave out --tunnel plugin to use skiff's own Session Manager client"
            )
        })
}

/// What the plugin is given besides the session.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub region: String,
    pub profile: Option<String>,
    /// The SSM API endpoint, as the AWS CLI passes it.
    pub endpoint: String,
}

/// The plugin's command line for a started session, in the AWS CLI's order: the StartSession response, the
/// region, the operation, the profile, the request, the endpoint.
pub fn arguments(
    spec: &PluginSpec,
    target: &Target,
    local_port: u16,
    session_id: &str,
    token: &str,
    stream_url: &str,
) -> Vec<String> {
    let response = serde_json::json!({
        "SessionId": session_id,
        "TokenValue": token,
        "StreamUrl": stream_url,
    });
    let request = serde_json::json!({
        "Target": target.instance_id,
        "DocumentName": "AWS-StartPortForwardingSession",
        "Parameters": {
            "portNumber": [target.port.to_string()],
            "localPortNumber": [local_port.to_string()],
        },
    });
    vec![
        response.to_string(),
        spec.region.clone(),
        "StartSession".into(),
        spec.profile.clone().unwrap_or_default(),
        request.to_string(),
        spec.endpoint.clone(),
    ]
}

/// A running plugin forwarding `local` to the agent.
#[derive(Debug)]
pub struct PluginTunnel {
    child: tokio::sync::Mutex<Child>,
    local: SocketAddr,
    ssm: aws_sdk_ssm::Client,
    session_id: String,
}

impl PluginTunnel {
    /// Starts a session to `target` and the plugin for it; waits until its local port accepts connections.
    pub async fn open(
        ssm: &aws_sdk_ssm::Client,
        spec: &PluginSpec,
        target: &Target,
    ) -> anyhow::Result<Self> {
        let program = find()?;
        let local_port = {
            let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            probe.local_addr()?.port()
        };
        let response = ssm
            .start_session()
            .target(&target.instance_id)
            .document_name("AWS-StartPortForwardingSession")
            .parameters("portNumber", vec![target.port.to_string()])
            .parameters("localPortNumber", vec![local_port.to_string()])
            .send()
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "starting a Session Manager session to {}: {}",
                    target.instance_id,
                    aws_sdk_ssm::error::DisplayErrorContext(&error)
                )
            })?;
        let session_id = response.session_id().unwrap_or_default().to_owned();
        let mut child = Command::new(&program)
            .args(arguments(
                spec,
                target,
                local_port,
                &session_id,
                response.token_value().unwrap_or_default(),
                response.stream_url().unwrap_or_default(),
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| anyhow::anyhow!("starting {}: {error}", program.display()))?;
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, local_port));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(local).await.is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr).await;
                }
                anyhow::bail!(
                    "{PROGRAM} exited ({status}) before forwarding port {local_port}: {}",
                    stderr.trim()
                );
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("{PROGRAM} did not open 127.0.0.1:{local_port} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            child: tokio::sync::Mutex::new(child),
            local,
            ssm: ssm.clone(),
            session_id,
        })
    }
}

impl Carrier for PluginTunnel {
    fn open_stream(&self) -> Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send + '_>> {
        Box::pin(async move {
            let stream = TcpStream::connect(self.local).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxIo)
        })
    }

    fn ended(&self) -> Option<String> {
        let mut child = self.child.try_lock().ok()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("{PROGRAM} exited ({status})")),
            _ => None,
        }
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let _ = self.child.lock().await.kill().await;
            let _ = self
                .ssm
                .terminate_session()
                .session_id(&self.session_id)
                .send()
                .await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_gets_the_aws_cli_argument_order() {
        let spec = PluginSpec {
            region: "eu-west-1".into(),
            profile: Some("work".into()),
            endpoint: "https://ssm.eu-west-1.amazonaws.com".into(),
        };
        let target = Target {
            instance_id: "i-0123".into(),
            port: 7443,
        };
        let arguments = arguments(&spec, &target, 50000, "s-1", "token", "wss://x");
        assert_eq!(arguments.len(), 6);
        let response: serde_json::Value = serde_json::from_str(&arguments[0]).unwrap();
        assert_eq!(response["SessionId"], "s-1");
        assert_eq!(response["TokenValue"], "token");
        assert_eq!(&arguments[1..4], ["eu-west-1", "StartSession", "work"]);
        let request: serde_json::Value = serde_json::from_str(&arguments[4]).unwrap();
        assert_eq!(request["Target"], "i-0123");
        assert_eq!(request["Parameters"]["portNumber"][0], "7443");
        assert_eq!(request["Parameters"]["localPortNumber"][0], "50000");
        assert_eq!(arguments[5], "https://ssm.eu-west-1.amazonaws.com");
    }

    #[test]
    fn a_missing_plugin_says_how_to_install_it() {
        let empty = tempfile::tempdir().unwrap();
        let error = find_in(empty.path().as_os_str()).unwrap_err().to_string();
        assert!(error.contains("not on PATH"), "{error}");
        assert!(error.contains(INSTALL_URL), "{error}");
        std::fs::write(empty.path().join(PROGRAM), "").unwrap();
        assert_eq!(
            find_in(empty.path().as_os_str()).unwrap(),
            empty.path().join(PROGRAM)
        );
    }
}
