//! The SSH server's own parts: which keys it accepts (in-process, with russh's client over the same byte
//! pipe the `Ssh` call uses), the host key it shows, how requests become `exec` specifications, signal names,
//! and where `direct-tcpip` goes. The whole path with OpenSSH and a dev container is in `tests/it/sshd.rs`.

use std::collections::BTreeMap;

use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use skiff::api::WindowSize;
use skiff::tls::Identity;

use super::session::{Program, Request, signal_number, spec, window};
use super::*;

/// A server for `agent` that trusts `client`'s certificate, with an engine nothing here reaches.
fn server(agent: &Identity, client: &Identity, state: &std::path::Path) -> (SshServer, Context) {
    let trusted = Arc::new(TrustedClients::new(
        vec![client.certificate_der().unwrap()],
        None,
    ));
    let server = SshServer::new(&agent.private_key_pem, trusted).unwrap();
    let state = crate::state::StateDir::open(state).unwrap();
    let activity = Activity::new(crate::idle::source::AGENT_START, None);
    let engine = Engine::connect("ssh-test".to_owned(), state, Arc::clone(&activity)).unwrap();
    let context = Context {
        engine: Arc::new(engine),
        activity,
        tasks: crate::tasks::Tasks::new(),
    };
    (server, context)
}

/// A client that records the host key it was shown and accepts it.
struct Client {
    shown: Arc<std::sync::Mutex<Option<PublicKey>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let PublicKeyOrCertificate::PublicKey { key, .. } = key {
            *self.shown.lock().unwrap() = Some(key.clone());
        }
        Ok(true)
    }
}

/// Connects through the server's byte pipe and tries to log in with `key`; returns whether it worked and
/// the host key shown.
async fn log_in(server: SshServer, context: Context, key_pem: &str) -> (bool, Option<PublicKey>) {
    let (client_side, mut pipe) = tokio::io::duplex(64 * 1024);
    let (to_server, from_client) = mpsc::channel::<Vec<u8>>(16);
    let (to_client, mut from_server) = mpsc::channel::<Vec<u8>>(16);
    let serving = tokio::spawn(async move {
        server
            .serve(
                context,
                tokio_stream::wrappers::ReceiverStream::new(from_client),
                to_client,
            )
            .await;
    });
    // Plays the gRPC call: bytes from the client pipe go in, bytes from the server come out.
    let carrying = tokio::spawn(async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                read = pipe.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(read) => if to_server.send(buffer[..read].to_vec()).await.is_err() { break },
                },
                data = from_server.recv() => match data {
                    Some(data) => if pipe.write_all(&data).await.is_err() { break },
                    None => break,
                },
            }
        }
    });
    let shown = Arc::new(std::sync::Mutex::new(None));
    let handler = Client {
        shown: Arc::clone(&shown),
    };
    let mut session =
        client::connect_stream(Arc::new(client::Config::default()), client_side, handler)
            .await
            .expect("the SSH handshake");
    let key = russh::keys::decode_secret_key(key_pem, None).unwrap();
    let result = session
        .authenticate_publickey("root", PrivateKeyWithHashAlg::new(Arc::new(key), None))
        .await
        .unwrap();
    let _ = session
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    drop(session);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), serving).await;
    carrying.abort();
    let shown = shown.lock().unwrap().clone();
    (result.success(), shown)
}

#[tokio::test]
async fn the_trusted_clients_key_logs_in_and_the_host_key_is_the_agents() {
    let state = tempfile::tempdir().unwrap();
    let agent = Identity::generate("skiff-agent").unwrap();
    let client = Identity::generate("skiff-client").unwrap();
    let (server, context) = server(&agent, &client, state.path());
    let (logged_in, shown) = log_in(server, context, &client.private_key_pem).await;
    assert!(logged_in, "the workspace's own client key is accepted");
    let expected = skiff::ssh::public_key("agent.crt", &agent.certificate_der().unwrap()).unwrap();
    assert_eq!(
        shown.expect("a host key was shown").key_data(),
        expected.key_data(),
        "the host key is the key of the agent's certificate, which the client pinned"
    );
}

#[tokio::test]
async fn another_key_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let agent = Identity::generate("skiff-agent").unwrap();
    let client = Identity::generate("skiff-client").unwrap();
    let stranger = Identity::generate("skiff-client").unwrap();
    let (server, context) = server(&agent, &client, state.path());
    let (logged_in, _) = log_in(server, context, &stranger.private_key_pem).await;
    assert!(!logged_in, "a key no trusted certificate holds is refused");
}

#[test]
fn a_certificate_list_accepts_exactly_its_keys() {
    let first = Identity::generate("a").unwrap();
    let second = Identity::generate("b").unwrap();
    let certificates = vec![first.certificate_der().unwrap()];
    let key = |identity: &Identity| {
        skiff::ssh::public_key("test", &identity.certificate_der().unwrap()).unwrap()
    };
    assert!(accepts(&certificates, &key(&first)));
    assert!(!accepts(&certificates, &key(&second)));
    assert!(!accepts(&[], &key(&first)));
}

#[test]
fn a_shell_gets_the_terminal_it_asked_for() {
    let request = Request {
        env: BTreeMap::from([("TERM".to_owned(), "xterm".to_owned())]),
        terminal: Some(WindowSize {
            columns: 120,
            rows: 40,
        }),
        agent: false,
    };
    let shell = spec(&Program::Shell, &request, "vscode");
    assert!(shell.command.is_empty(), "the login shell");
    assert!(shell.tty && shell.stdin);
    assert_eq!(shell.window, request.terminal);
    assert_eq!(shell.user.as_deref(), Some("vscode"));
    assert_eq!(shell.env, request.env);
    assert_eq!(shell.working_dir, None, "the workspace folder");
    let plain = spec(&Program::Shell, &Request::default(), "");
    assert!(!plain.tty);
    assert_eq!(plain.user, None, "no name: the remote user");
}

#[test]
fn a_command_runs_in_the_users_shell_and_sftp_never_gets_a_terminal() {
    let request = Request {
        env: BTreeMap::new(),
        terminal: Some(WindowSize {
            columns: 80,
            rows: 24,
        }),
        agent: false,
    };
    let command = spec(
        &Program::Command("echo $HOME | wc -c".to_owned()),
        &request,
        "root",
    );
    assert_eq!(command.command[..2], ["/bin/sh", "-c"]);
    assert_eq!(command.command.last().unwrap(), "echo $HOME | wc -c");
    assert!(command.tty, "ssh -t gives a command a terminal");
    let sftp = spec(&Program::Sftp, &request, "root");
    assert_eq!(
        sftp.command,
        [crate::procd::client::CONTAINER_PATH, "--sftp"]
    );
    assert!(!sftp.tty && sftp.window.is_none() && sftp.stdin);
}

#[test]
fn window_sizes_of_zero_mean_the_usual_terminal() {
    assert_eq!(
        window(0, 0),
        WindowSize {
            columns: 80,
            rows: 24
        }
    );
    assert_eq!(
        window(132, 50),
        WindowSize {
            columns: 132,
            rows: 50
        }
    );
    assert_eq!(window(100_000, 7).columns, u16::MAX);
}

#[test]
fn signal_names_map_to_numbers() {
    assert_eq!(signal_number(&russh::Sig::INT), Some(libc::SIGINT));
    assert_eq!(signal_number(&russh::Sig::TERM), Some(libc::SIGTERM));
    assert_eq!(signal_number(&russh::Sig::KILL), Some(libc::SIGKILL));
    assert_eq!(
        signal_number(&russh::Sig::Custom("USR2".to_owned())),
        Some(libc::SIGUSR2)
    );
    assert_eq!(signal_number(&russh::Sig::Custom("NOPE".to_owned())), None);
}

#[test]
fn direct_tcpip_to_loopback_means_the_dev_container() {
    for host in [
        "localhost",
        "LocalHost",
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "[::1]",
        "0.0.0.0",
        "",
        // The IPv4-mapped spelling of loopback, which the filter once missed (and sent to the agent's own
        // loopback).
        "::ffff:127.0.0.1",
        "[::ffff:127.0.0.1]",
    ] {
        let target = tcpip::target(host, 8080).unwrap();
        assert_eq!(target.host, None, "{host:?}");
        assert_eq!(target.port, 8080);
    }
    assert_eq!(
        tcpip::target("db", 5432).unwrap().host.as_deref(),
        Some("db")
    );
    assert_eq!(
        tcpip::target("172.17.0.5", 80).unwrap().host.as_deref(),
        Some("172.17.0.5")
    );
    assert!(tcpip::target("localhost", 0).is_none());
    assert!(tcpip::target("localhost", 70_000).is_none());
}
