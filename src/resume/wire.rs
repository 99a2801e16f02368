//! The resumable connection's bytes: the hello a client opens each transport with, the agent's welcome, and
//! the frames that follow. Every unit ends in a CRC-32 of what precedes it, so bytes lost or changed by a
//! transport below are seen at the first unit they touch instead of being passed on.
//!
//! ```text
//! hello    "SKIFFRS1" kind:u8 (0 new, 1 resume) id:[u8; 16] received:u64 crc:u32
//! welcome  "SKIFFRW1" status:u8 (0 accepted, 1 unknown id) received:u64 crc:u32
//! data     1:u8 offset:u64 length:u32 crc:u32 payload[length]   (crc over header and payload)
//! ack      2:u8 received:u64 crc:u32
//! fin      3:u8 offset:u64 crc:u32
//! ping     4:u8 sent:u64 crc:u32      (the client, every few seconds)
//! pong     5:u8 sent:u64 crc:u32      (the agent's answer)
//! ```
//!
//! Integers are big-endian. Offsets count the bytes of one direction from the start of the connection; a
//! `fin` takes one offset of its own (as TCP's FIN takes a sequence number), so acknowledging past it says it
//! arrived. `received` is the next offset a side expects. `sent` is the offset of the sender's next byte: as
//! everything before a ping or pong arrived before it, a receiver that has less knows bytes were lost, even
//! when nothing follows them; and a client that hears nothing back knows its transport stopped moving.

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};

/// The first bytes of a hello; a TLS client hello starts with 0x16 instead, so one byte tells them apart.
pub const HELLO_MAGIC: &[u8; 8] = b"SKIFFRS1";
/// The first bytes of a welcome.
pub const WELCOME_MAGIC: &[u8; 8] = b"SKIFFRW1";
/// A hello's length.
pub const HELLO_LEN: usize = 8 + 1 + 16 + 8 + 4;
/// A welcome's length.
pub const WELCOME_LEN: usize = 8 + 1 + 8 + 4;
/// The largest payload of one data frame.
pub const MAX_PAYLOAD: usize = 64 * 1024;

const DATA: u8 = 1;
const ACK: u8 = 2;
const FIN: u8 = 3;
const PING: u8 = 4;
const PONG: u8 = 5;
const DATA_HEADER: usize = 1 + 8 + 4 + 4;
/// Every frame but data: a kind, one number, a checksum.
const CONTROL_LEN: usize = 1 + 8 + 4;

/// A connection's identity, chosen at random by the client.
pub type ConnectionId = [u8; 16];

/// What a client opens a transport with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hello {
    /// A new connection.
    New { id: ConnectionId },
    /// A transport for a connection the agent already holds; `received` is what the client has of the agent's
    /// bytes.
    Resume { id: ConnectionId, received: u64 },
}

/// The agent's answer to a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Welcome {
    /// Carrying on; `received` is what the agent has of the client's bytes.
    Accepted { received: u64 },
    /// The agent holds no such connection (it ended, or the agent restarted).
    Unknown,
}

/// One unit after the hello and welcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes of the stream starting at `offset`.
    Data { offset: u64, payload: Bytes },
    /// Everything before `received` arrived.
    Ack { received: u64 },
    /// The sender's stream ends at `offset`.
    Fin { offset: u64 },
    /// Are you there? The client has sent everything before `sent`.
    Ping { sent: u64 },
    /// Here. The agent has sent everything before `sent`.
    Pong { sent: u64 },
}

/// Bytes that are not this protocol, or were damaged on the way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(
        "the peer does not speak skiff's resumable connections (its first bytes are not a {0})"
    )]
    NotThisProtocol(&'static str),
    #[error(
        "a resumable connection's {0} failed its checksum: bytes were lost or changed on the way"
    )]
    Checksum(&'static str),
    #[error("a resumable connection's frame has an unknown kind {0}: bytes were lost on the way")]
    UnknownKind(u8),
    #[error(
        "a resumable connection's data frame claims {0} bytes, more than the {MAX_PAYLOAD} allowed"
    )]
    TooLong(u32),
    #[error("a resumable connection's {0} has an unknown value {1}")]
    UnknownValue(&'static str, u8),
}

fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn verify(unit: &[u8], what: &'static str) -> Result<(), WireError> {
    let (body, crc) = unit.split_at(unit.len() - 4);
    if checksum(body).to_be_bytes() == crc {
        Ok(())
    } else {
        Err(WireError::Checksum(what))
    }
}

impl Hello {
    /// The hello's bytes.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let (kind, id, received) = match *self {
            Hello::New { id } => (0, id, 0),
            Hello::Resume { id, received } => (1, id, received),
        };
        let mut out = [0; HELLO_LEN];
        out[..8].copy_from_slice(HELLO_MAGIC);
        out[8] = kind;
        out[9..25].copy_from_slice(&id);
        out[25..33].copy_from_slice(&received.to_be_bytes());
        let crc = checksum(&out[..33]);
        out[33..].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Reads a hello from its bytes.
    pub fn decode(bytes: &[u8; HELLO_LEN]) -> Result<Self, WireError> {
        if &bytes[..8] != HELLO_MAGIC {
            return Err(WireError::NotThisProtocol("hello"));
        }
        verify(bytes, "hello")?;
        let mut id = [0; 16];
        id.copy_from_slice(&bytes[9..25]);
        let received = u64::from_be_bytes(bytes[25..33].try_into().expect("eight bytes"));
        match bytes[8] {
            0 => Ok(Hello::New { id }),
            1 => Ok(Hello::Resume { id, received }),
            other => Err(WireError::UnknownValue("hello kind", other)),
        }
    }
}

impl Welcome {
    /// The welcome's bytes.
    pub fn encode(&self) -> [u8; WELCOME_LEN] {
        let (status, received) = match *self {
            Welcome::Accepted { received } => (0, received),
            Welcome::Unknown => (1, 0),
        };
        let mut out = [0; WELCOME_LEN];
        out[..8].copy_from_slice(WELCOME_MAGIC);
        out[8] = status;
        out[9..17].copy_from_slice(&received.to_be_bytes());
        let crc = checksum(&out[..17]);
        out[17..].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Reads a welcome from its bytes.
    pub fn decode(bytes: &[u8; WELCOME_LEN]) -> Result<Self, WireError> {
        if &bytes[..8] != WELCOME_MAGIC {
            return Err(WireError::NotThisProtocol("welcome"));
        }
        verify(bytes, "welcome")?;
        let received = u64::from_be_bytes(bytes[9..17].try_into().expect("eight bytes"));
        match bytes[8] {
            0 => Ok(Welcome::Accepted { received }),
            1 => Ok(Welcome::Unknown),
            other => Err(WireError::UnknownValue("welcome status", other)),
        }
    }
}

impl Frame {
    /// Appends the frame's bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        match self {
            Frame::Data { offset, payload } => {
                debug_assert!(payload.len() <= MAX_PAYLOAD);
                out.reserve(DATA_HEADER + payload.len());
                out.put_u8(DATA);
                out.put_u64(*offset);
                out.put_u32(payload.len() as u32);
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(&out[start..]);
                hasher.update(payload);
                out.put_u32(hasher.finalize());
                out.extend_from_slice(payload);
            }
            Frame::Ack { received: value }
            | Frame::Fin { offset: value }
            | Frame::Ping { sent: value }
            | Frame::Pong { sent: value } => {
                out.put_u8(match self {
                    Frame::Ack { .. } => ACK,
                    Frame::Fin { .. } => FIN,
                    Frame::Ping { .. } => PING,
                    _ => PONG,
                });
                out.put_u64(*value);
                let crc = checksum(&out[start..]);
                out.put_u32(crc);
            }
        }
    }

    /// Takes one whole frame off the front of `buffer`; `Ok(None)` when more bytes are needed.
    pub fn decode(buffer: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some(&kind) = buffer.first() else {
            return Ok(None);
        };
        match kind {
            DATA => {
                if buffer.len() < DATA_HEADER {
                    return Ok(None);
                }
                let length = u32::from_be_bytes(buffer[9..13].try_into().expect("four bytes"));
                if length as usize > MAX_PAYLOAD {
                    return Err(WireError::TooLong(length));
                }
                let total = DATA_HEADER + length as usize;
                if buffer.len() < total {
                    return Ok(None);
                }
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(&buffer[..13]);
                hasher.update(&buffer[DATA_HEADER..total]);
                if hasher.finalize().to_be_bytes() != buffer[13..17] {
                    return Err(WireError::Checksum("data frame"));
                }
                let offset = u64::from_be_bytes(buffer[1..9].try_into().expect("eight bytes"));
                buffer.advance(DATA_HEADER);
                let payload = buffer.split_to(length as usize).freeze();
                Ok(Some(Frame::Data { offset, payload }))
            }
            ACK | FIN | PING | PONG => {
                if buffer.len() < CONTROL_LEN {
                    return Ok(None);
                }
                verify(&buffer[..CONTROL_LEN], "control frame")?;
                let value = u64::from_be_bytes(buffer[1..9].try_into().expect("eight bytes"));
                buffer.advance(CONTROL_LEN);
                Ok(Some(match kind {
                    ACK => Frame::Ack { received: value },
                    FIN => Frame::Fin { offset: value },
                    PING => Frame::Ping { sent: value },
                    _ => Frame::Pong { sent: value },
                }))
            }
            other => Err(WireError::UnknownKind(other)),
        }
    }
}
