//! `skiff forward NAME [LOCAL:]REMOTE…`: listens on 127.0.0.1 and carries each accepted connection to a
//! port as the dev container sees it, one gRPC stream per connection, with half-close both ways.

use std::net::SocketAddr;

use anyhow::Context as _;
use futures::StreamExt;
use skiff::api::ForwardTarget;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;

use crate::agent_client::{AgentClient, ForwardEvent, ForwardInput};
use crate::cli::ForwardArgs;

/// One forwarding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The local port on 127.0.0.1.
    pub local: u16,
    /// Where it goes.
    pub target: ForwardTarget,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target.host {
            Some(host) => write!(
                formatter,
                "127.0.0.1:{} -> {host}:{}",
                self.local, self.target.port
            ),
            None => write!(
                formatter,
                "127.0.0.1:{} -> port {} of the dev container",
                self.local, self.target.port
            ),
        }
    }
}

/// Parses `PORT`, `LOCAL:PORT`, `HOST:PORT` or `LOCAL:HOST:PORT`; an IPv6 HOST is written in brackets,
/// as ssh wants it (`[::1]:8080`).
pub fn parse_rule(text: &str) -> anyhow::Result<Rule> {
    let port = |part: &str| {
        part.parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| anyhow::anyhow!("{text:?}: {part:?} is not a port number (1-65535)"))
    };
    // The bracketed host is set aside so its colons do not split.
    let (unbracketed, bracketed) = match (text.find('['), text.find(']')) {
        (Some(open), Some(close)) if open < close => (
            format!("{}[]{}", &text[..open], &text[close + 1..]),
            Some(&text[open + 1..close]),
        ),
        (None, None) => (text.to_owned(), None),
        _ => anyhow::bail!("{text:?}: an IPv6 host goes in brackets, as in [::1]:8080"),
    };
    let parts: Vec<&str> = unbracketed
        .split(':')
        .map(|part| match bracketed {
            Some(host) if part == "[]" => host,
            _ => part,
        })
        .collect();
    let (local, host, remote) = match parts.as_slice() {
        [remote] => (port(remote)?, None, port(remote)?),
        [first, remote] if first.parse::<u16>().is_ok() => (port(first)?, None, port(remote)?),
        [host, remote] => (port(remote)?, Some((*host).to_owned()), port(remote)?),
        [local, host, remote] => (port(local)?, Some((*host).to_owned()), port(remote)?),
        _ => anyhow::bail!("{text:?}: write PORT, LOCAL:PORT, HOST:PORT or LOCAL:HOST:PORT"),
    };
    if host.as_deref().is_some_and(str::is_empty) {
        anyhow::bail!("{text:?}: the host is empty");
    }
    Ok(Rule {
        local,
        target: ForwardTarget { host, port: remote },
    })
}

pub async fn run(args: ForwardArgs) -> anyhow::Result<i32> {
    let rules = args
        .ports
        .iter()
        .map(|text| parse_rule(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let workspace = super::find_workspace(&args.name)?;
    let client = super::connect(&workspace, &args.agent, &args.start).await?;
    let mut listeners = Vec::new();
    for rule in rules {
        listeners.push((bind_local(rule.local).await?, rule));
    }
    // The forwards live as long as this command: dropping the set at the end ends them.
    let mut forwards = JoinSet::new();
    for (listener, rule) in listeners {
        eprintln!("forwarding {rule}");
        let mark = listener.local_addr().ok().and_then(|address| {
            crate::workspace::ForwardMark::new(&workspace.folder, address.port())
        });
        let client = client.clone();
        forwards.spawn(async move {
            let _mark = mark;
            serve(listener, rule.target, client).await;
        });
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(0)
}

/// Binds 127.0.0.1:`port`, or explains that it is taken and suggests a free one.
pub async fn bind_local(port: u16) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(listener) => Ok(listener),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            let free = TcpListener::bind("127.0.0.1:0")
                .await
                .and_then(|listener| listener.local_addr())
                .map(|address| address.port())
                .ok();
            match free {
                Some(free) => anyhow::bail!(
                    "local port {port} is already in use; forward from a free one, such as {free} ({free}:REMOTE)"
                ),
                None => anyhow::bail!(
                    "local port {port} is already in use; pick another with LOCAL:REMOTE"
                ),
            }
        }
        Err(error) => Err(error).with_context(|| format!("listening on 127.0.0.1:{port}")),
    }
}

/// Accepts connections on `listener` and forwards each until this future is dropped, which ends the connections
/// it carries too.
pub async fn serve(listener: TcpListener, target: ForwardTarget, client: AgentClient) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Finished connections leave the set as new ones come.
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let target = target.clone();
        let mut client = client.clone();
        connections.spawn(async move {
            if let Err(error) = forward_connection(&mut client, stream, target).await {
                eprintln!("skiff: forward: {error:#}");
            }
        });
    }
}

/// Carries one local connection; each direction's end is passed on as a half-close.
pub async fn forward_connection(
    client: &mut AgentClient,
    stream: TcpStream,
    target: ForwardTarget,
) -> anyhow::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let (input, input_receiver) = mpsc::channel::<ForwardInput>(8);
    let mut events = client
        .forward(target, ReceiverStream::new(input_receiver))
        .await?;
    // The local-to-remote direction, ended with this connection however it ends (the set aborts it when dropped).
    let mut upstream = JoinSet::new();
    upstream.spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => {
                    let _ = input.send(ForwardInput::Eof).await;
                    break;
                }
                Ok(read) => {
                    if input
                        .send(ForwardInput::Data(buffer[..read].to_vec()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    let mut result = Ok(());
    while let Some(event) = events.next().await {
        match event {
            Ok(ForwardEvent::Opened(_)) => {}
            Ok(ForwardEvent::Data(data)) => {
                if writer.write_all(&data).await.is_err() {
                    break;
                }
            }
            Ok(ForwardEvent::Eof) => {
                let _ = writer.shutdown().await;
            }
            Err(error) => {
                result = Err(error.into());
                break;
            }
        }
    }
    if result.is_err() {
        // The remote side failed or reset: reset the local connection too rather than end it cleanly,
        // so the application can tell a broken stream from a finished one.
        let _ = socket2::SockRef::from(writer.as_ref()).set_linger(Some(std::time::Duration::ZERO));
        return result;
    }
    let _ = writer.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_rules_parse_like_ssh() {
        assert_eq!(
            parse_rule("8080").unwrap(),
            Rule {
                local: 8080,
                target: ForwardTarget {
                    host: None,
                    port: 8080
                }
            }
        );
        assert_eq!(
            parse_rule("9000:8080").unwrap(),
            Rule {
                local: 9000,
                target: ForwardTarget {
                    host: None,
                    port: 8080
                }
            }
        );
        assert_eq!(
            parse_rule("db:5432").unwrap(),
            Rule {
                local: 5432,
                target: ForwardTarget {
                    host: Some("db".into()),
                    port: 5432
                }
            }
        );
        assert_eq!(
            parse_rule("15432:db:5432").unwrap(),
            Rule {
                local: 15432,
                target: ForwardTarget {
                    host: Some("db".into()),
                    port: 5432
                }
            }
        );
        assert_eq!(
            parse_rule("8000:[::ffff:169.254.169.254]:80").unwrap(),
            Rule {
                local: 8000,
                target: ForwardTarget {
                    host: Some("::ffff:169.254.169.254".into()),
                    port: 80
                }
            }
        );
        assert_eq!(
            parse_rule("[::1]:8080").unwrap().target.host.as_deref(),
            Some("::1")
        );
        assert!(parse_rule("8000:[::1:80").is_err());
        assert!(parse_rule("0").is_err());
        assert!(parse_rule("a:b:c:d").is_err());
        assert!(parse_rule(":80").is_err());
    }
}
