//! The SSH server inside the agent: one SSH connection per `Ssh` call, spoken over the call's bytes, so
//! OpenSSH, VS Code Remote-SSH, JetBrains Gateway, scp and rsync reach the dev container through
//! `skiff proxy` without an sshd, a port 22 or any listening socket.
//!
//! Authentication is by public key only, and the keys are the trusted clients' certificates' keys (the
//! workspace's own and every enrolled laptop's, see `skiff::ssh`); the host key is the agent's TLS key, which
//! the client already pinned. Sessions run as the SSH user name through [`crate::exec`] (shell, exec, pty,
//! env, signals, exit status); `direct-tcpip` channels go through [`crate::forward`], which opens them inside the
//! dev container's network (so `localhost` is the container's loopback, where IDE servers listen); the `sftp`
//! subsystem is `skiff-procd --sftp` run in the dev container as the user (see [`crate::procd::sftp`]).
//! Activity is counted where those modules count it: bytes typed or sent in. SSH itself (key exchange,
//! keep-alives, window adjustments) never touches the idle clock.
//!
//! Agent forwarding (`ssh -A`, `ForwardAgent yes`) is honoured as OpenSSH does: a session that asked for it runs with
//! `SSH_AUTH_SOCK` set, and each connection to that socket becomes an `auth-agent@openssh.com` channel to the
//! client (see [`crate::ssh_agent`]). What is not here: remote forwarding (`ssh -R`) and X11 forwarding; requests for
//! them are refused.

mod session;
mod tcpip;

use std::sync::Arc;

use futures::{Stream, StreamExt};
use russh::keys::PublicKey;
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use skiff::tls::TrustedClients;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::engine::Engine;
use crate::idle::Activity;
use crate::tasks::Tasks;

/// The agent's SSH server could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The agent's key cannot serve as an SSH host key.
    #[error("the agent's key cannot serve as the SSH host key: {0}")]
    HostKey(String),
}

/// What SSH sessions act on, shared with the gRPC service.
#[derive(Debug, Clone)]
pub struct Context {
    /// The dev container's engine.
    pub engine: Arc<Engine>,
    /// The activity model; sessions count through `exec` and `forward`.
    pub activity: Arc<Activity>,
    /// Where each channel's task runs, so the agent's end ends them.
    pub tasks: Tasks,
}

/// The agent's SSH server: its configuration and who may log in.
pub struct SshServer {
    config: Arc<russh::server::Config>,
    trusted: Arc<TrustedClients>,
}

impl std::fmt::Debug for SshServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the private host key; it must never reach a log line.
        formatter
            .debug_struct("SshServer")
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

/// How long a refused key waits before the answer, so timing tells nothing about which keys exist.
const REJECTION_TIME: std::time::Duration = std::time::Duration::from_millis(300);

impl SshServer {
    /// A server whose host key is `host_key_pem` (PKCS#8 PEM, the agent's TLS key) and which accepts the
    /// keys of `trusted`'s certificates.
    pub fn new(host_key_pem: &str, trusted: Arc<TrustedClients>) -> Result<Self, SshError> {
        let host_key = russh::keys::decode_secret_key(host_key_pem, None)
            .map_err(|error| SshError::HostKey(error.to_string()))?;
        let config = russh::server::Config {
            server_id: russh::SshId::Standard(
                concat!("SSH-2.0-skiffd_", env!("CARGO_PKG_VERSION")).into(),
            ),
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            auth_rejection_time: REJECTION_TIME,
            // OpenSSH first asks with "none" to learn the methods; that costs nothing to answer at once.
            auth_rejection_time_initial: Some(std::time::Duration::ZERO),
            keys: vec![host_key],
            // The connection beneath is a gRPC stream that ends when the client goes away, so an idle SSH
            // connection is not a dead one: no inactivity timeout, and no keep-alives of our own.
            inactivity_timeout: None,
            keepalive_interval: None,
            nodelay: true,
            ..Default::default()
        };
        Ok(Self {
            config: Arc::new(config),
            trusted,
        })
    }

    /// Serves one SSH connection whose client bytes arrive on `input` and whose server bytes go to `output`;
    /// returns when the connection ends (either side closed it, or the SSH session failed).
    pub async fn serve(
        &self,
        context: Context,
        mut input: impl Stream<Item = Vec<u8>> + Unpin + Send + 'static,
        output: mpsc::Sender<Vec<u8>>,
    ) {
        // The SSH library wants one byte stream; a duplex pipe joins the call's two directions into one.
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        let (mut reader, mut writer) = tokio::io::split(ours);
        let inbound = async move {
            while let Some(bytes) = input.next().await {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            // The client's end is the SSH connection's end of input.
            let _ = writer.shutdown().await;
            // The connection goes on until the server side ends it.
            std::future::pending::<()>().await;
        };
        let outbound = async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => {
                        if output.send(buffer[..read].to_vec()).await.is_err() {
                            break;
                        }
                    }
                }
            }
        };
        let handler = Connection {
            context: Arc::new(context),
            trusted: Arc::clone(&self.trusted),
            user: None,
        };
        let config = Arc::clone(&self.config);
        let connection = async move {
            match russh::server::run_stream(config, theirs, handler).await {
                Ok(running) => match running.await {
                    Ok(()) => tracing::debug!("ssh connection ended"),
                    Err(error) => tracing::info!("ssh connection ended: {error}"),
                },
                Err(error) => tracing::info!("ssh connection failed before it began: {error}"),
            }
        };
        // The three run side by side in this task; the connection's end drops the inbound half, and the
        // outbound half ends once it has passed on what the connection wrote.
        let serving = async {
            tokio::select! {
                () = connection => {}
                () = inbound => {}
            }
        };
        tokio::join!(serving, outbound);
    }
}

/// Whether `key` is the key of one of `certificates`.
fn accepts(certificates: &[rustls::pki_types::CertificateDer<'_>], key: &PublicKey) -> bool {
    certificates.iter().any(|certificate| {
        skiff::ssh::public_key("a trusted client certificate", certificate)
            .is_ok_and(|trusted| trusted.key_data() == key.key_data())
    })
}

/// One SSH connection's handler: authentication, and a task per channel.
struct Connection {
    context: Arc<Context>,
    trusted: Arc<TrustedClients>,
    /// The user name that authenticated; sessions run as this user.
    user: Option<String>,
}

impl Connection {
    fn accepts(&self, key: &PublicKey) -> bool {
        accepts(&self.trusted.certificates(), key)
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Refusing here spares the client a signature for a key that would be refused anyway.
        Ok(if self.accepts(offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if !self.accepts(key.public_key) {
            tracing::info!(
                user,
                "ssh: refused a key that no trusted client certificate holds"
            );
            return Ok(Auth::reject());
        }
        tracing::info!(user, "ssh: logged in");
        self.user = Some(user.to_owned());
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let user = self.user.clone().unwrap_or_default();
        reply.accept().await;
        self.context.tasks.spawn(session::run(
            channel,
            Arc::clone(&self.context),
            user,
            session.handle(),
        ));
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(target) = tcpip::target(host_to_connect, port_to_connect) else {
            reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        // The channel is confirmed only once the connection is open, so `ssh -L` reports a refused port.
        self.context.tasks.spawn(tcpip::run(
            channel,
            reply,
            Arc::clone(&self.context),
            target,
        ));
        Ok(())
    }

    // The channel's task acts on each request (it receives them as messages); the handler only answers them.

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _columns: u32,
        _rows: u32,
        _pixel_width: u32,
        _pixel_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        // The session's task sets the forwarding up when its program starts, as sshd does.
        Ok(true)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == session::SFTP {
            session.channel_success(channel)
        } else {
            tracing::info!(subsystem = name, "ssh: refused an unknown subsystem");
            session.channel_failure(channel)
        }
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _columns: u32,
        _rows: u32,
        _pixel_width: u32,
        _pixel_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }
}

#[cfg(test)]
mod tests;
