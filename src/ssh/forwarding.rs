//! SSH agent forwarding's wire, shared by both ends: connections to a Unix socket carried as numbered streams of
//! [`SshAgentMessage`]s over one `SshAgent` call. The agent's end accepts on the socket in the dev container and
//! opens streams; the client's end connects each stream to the laptop's own `SSH_AUTH_SOCK`. The bytes are the SSH
//! agent protocol's, passed through untouched: keys never leave the laptop, only requests and signatures travel.

use std::collections::HashMap;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::api::SshAgentMessage;

/// The most bytes one message carries; SSH agent messages are far smaller (a signature request is a few KiB).
const CHUNK: usize = 64 * 1024;

/// The connections one call carries: their writing halves by number, and a reading task each, owned here.
#[derive(Debug)]
pub struct Carrier {
    writers: HashMap<u64, OwnedWriteHalf>,
    readers: JoinSet<()>,
    outbound: mpsc::Sender<SshAgentMessage>,
}

impl Carrier {
    /// A carrier whose connections' bytes, and their ends, go out on `outbound`.
    pub fn new(outbound: mpsc::Sender<SshAgentMessage>) -> Self {
        Self {
            writers: HashMap::new(),
            readers: JoinSet::new(),
            outbound,
        }
    }

    /// Carries `stream` as connection `connection`: what it says goes out as `Data`, and its end as `Close`.
    pub fn carry(&mut self, connection: u64, stream: UnixStream) {
        let (mut reader, writer) = stream.into_split();
        self.writers.insert(connection, writer);
        let outbound = self.outbound.clone();
        self.readers.spawn(async move {
            let mut buffer = vec![0u8; CHUNK];
            loop {
                match reader.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => {
                        let data = SshAgentMessage::Data {
                            connection,
                            data: buffer[..read].to_vec(),
                        };
                        if outbound.send(data).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = outbound.send(SshAgentMessage::Close { connection }).await;
        });
        // Readers that ended are reaped as new ones come, so a long session holds only its open connections.
        while let Some(Ok(())) = self.readers.try_join_next() {}
    }

    /// Acts on a message from the far end: `Data` is written to its connection, `Close` ends the connection's
    /// writing half. A connection this end does not know (already closed) is ignored; a write that fails closes
    /// the connection and says so to the far end. Other messages are not the carrier's and are returned.
    pub async fn deliver(&mut self, message: SshAgentMessage) -> Option<SshAgentMessage> {
        match message {
            SshAgentMessage::Data { connection, data } => {
                let writer = self.writers.get_mut(&connection)?;
                if writer.write_all(&data).await.is_err() {
                    self.writers.remove(&connection);
                    let _ = self
                        .outbound
                        .send(SshAgentMessage::Close { connection })
                        .await;
                }
                None
            }
            SshAgentMessage::Close { connection } => {
                if let Some(mut writer) = self.writers.remove(&connection) {
                    let _ = writer.shutdown().await;
                }
                None
            }
            other => Some(other),
        }
    }

    /// How many connections are open for writing.
    pub fn open(&self) -> usize {
        self.writers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two carriers joined back to back pass one connection's bytes both ways, and its end.
    #[tokio::test]
    async fn bytes_and_ends_cross_both_ways() {
        let (to_client, mut at_client) = mpsc::channel(8);
        let (to_agent, mut at_agent) = mpsc::channel(8);
        let mut agent = Carrier::new(to_client);
        let mut client = Carrier::new(to_agent);
        // The container's program on one end of a pair, the laptop's SSH agent on the other.
        let (mut program, agent_side) = UnixStream::pair().unwrap();
        let (client_side, mut laptop_agent) = UnixStream::pair().unwrap();
        agent.carry(7, agent_side);
        client.carry(7, client_side);

        program.write_all(b"request").await.unwrap();
        let message = at_client.recv().await.unwrap();
        assert_eq!(
            message,
            SshAgentMessage::Data {
                connection: 7,
                data: b"request".to_vec()
            }
        );
        assert!(client.deliver(message).await.is_none());
        let mut read = [0u8; 7];
        laptop_agent.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"request");

        laptop_agent.write_all(b"answer").await.unwrap();
        drop(laptop_agent);
        let answer = at_agent.recv().await.unwrap();
        assert!(agent.deliver(answer).await.is_none());
        let end = at_agent.recv().await.unwrap();
        assert_eq!(end, SshAgentMessage::Close { connection: 7 });
        assert!(agent.deliver(end).await.is_none());
        assert_eq!(agent.open(), 0);
        let mut answer = Vec::new();
        program.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"answer");
    }

    /// Bytes for a connection this end never had, or already closed, go nowhere and break nothing.
    #[tokio::test]
    async fn unknown_connections_are_ignored() {
        let (outbound, mut sent) = mpsc::channel(8);
        let mut carrier = Carrier::new(outbound);
        let stray = SshAgentMessage::Data {
            connection: 3,
            data: b"x".to_vec(),
        };
        assert!(carrier.deliver(stray).await.is_none());
        assert!(
            carrier
                .deliver(SshAgentMessage::Close { connection: 3 })
                .await
                .is_none()
        );
        assert!(sent.try_recv().is_err());
        let ready = SshAgentMessage::Ready {
            socket: "/tmp/x".into(),
        };
        assert_eq!(carrier.deliver(ready.clone()).await, Some(ready));
    }
}
