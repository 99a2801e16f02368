//! The smux protocol version 1 framing of port forwarding's mux mode, written from `ssm/PROTOCOL.md` §5: an
//! 8-byte header `ver(1) | cmd(1) | length(u16 LE) | streamId(u32 LE)` and `length` data bytes, with the
//! commands SYN, FIN, PSH and NOP. The Output payloads of a session form one continuous smux byte stream, so
//! frames may span messages: [`Reassembler`] cuts frames out of that stream.
//!
//! The server that acts on frames (dials, copies, FIN) is in `port`.

/// The only protocol version either side speaks.
pub const VERSION: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_SIZE: usize = 8;
/// The largest data a frame carries (xtaci/smux `DefaultConfig().MaxFrameSize`).
pub const MAX_FRAME_SIZE: usize = 32768;

/// A frame's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Open a stream.
    Syn = 0,
    /// Close a stream.
    Fin = 1,
    /// Data for a stream.
    Psh = 2,
    /// Keep-alive, stream 0.
    Nop = 3,
}

/// One smux frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the frame does.
    pub command: Command,
    /// The stream it belongs to (0 for NOP).
    pub stream_id: u32,
    /// PSH data; empty for the other commands.
    pub data: Vec<u8>,
}

/// Why bytes are not an smux v1 frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmuxError {
    /// Fewer bytes than the frame needs; not an error in a byte stream, only a reason to wait.
    #[error("smux frame is incomplete: {have} of {needed} bytes")]
    Incomplete {
        /// Bytes available.
        have: usize,
        /// Bytes the frame needs.
        needed: usize,
    },
    /// A version byte other than 1, which the receiver rejects as a protocol error.
    #[error("smux frame has version {0}; only version 1 is spoken")]
    Version(u8),
    /// A command byte v1 does not have (UPD, 4, exists only in v2).
    #[error("smux frame has unknown command {0}")]
    Command(u8),
    /// SYN, FIN or NOP with a length: xtaci/smux would not consume those bytes and lose its framing.
    #[error("smux {command:?} frame carries {length} data bytes; only PSH carries data")]
    DataOnControl {
        /// The command.
        command: Command,
        /// The declared length.
        length: u16,
    },
}

impl Frame {
    /// SYN for `stream_id`.
    pub fn syn(stream_id: u32) -> Self {
        Self::control(Command::Syn, stream_id)
    }

    /// FIN for `stream_id`.
    pub fn fin(stream_id: u32) -> Self {
        Self::control(Command::Fin, stream_id)
    }

    /// NOP (stream 0).
    pub fn nop() -> Self {
        Self::control(Command::Nop, 0)
    }

    /// PSH of `data` (at most [`MAX_FRAME_SIZE`] bytes) for `stream_id`.
    pub fn psh(stream_id: u32, data: &[u8]) -> Self {
        Self {
            command: Command::Psh,
            stream_id,
            data: data.to_vec(),
        }
    }

    fn control(command: Command, stream_id: u32) -> Self {
        Self {
            command,
            stream_id,
            data: Vec::new(),
        }
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_SIZE + self.data.len());
        bytes.push(VERSION);
        bytes.push(self.command as u8);
        bytes.extend_from_slice(&(self.data.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&self.stream_id.to_le_bytes());
        bytes.extend_from_slice(&self.data);
        bytes
    }
}

/// Decodes the frame at the start of `bytes` and says how many bytes it took. Never panics.
pub fn decode(bytes: &[u8]) -> Result<(Frame, usize), SmuxError> {
    if bytes.len() < HEADER_SIZE {
        return Err(SmuxError::Incomplete {
            have: bytes.len(),
            needed: HEADER_SIZE,
        });
    }
    if bytes[0] != VERSION {
        return Err(SmuxError::Version(bytes[0]));
    }
    let command = match bytes[1] {
        0 => Command::Syn,
        1 => Command::Fin,
        2 => Command::Psh,
        3 => Command::Nop,
        other => return Err(SmuxError::Command(other)),
    };
    let length = u16::from_le_bytes([bytes[2], bytes[3]]);
    let stream_id = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if command != Command::Psh && length != 0 {
        return Err(SmuxError::DataOnControl { command, length });
    }
    let needed = HEADER_SIZE + usize::from(length);
    if bytes.len() < needed {
        return Err(SmuxError::Incomplete {
            have: bytes.len(),
            needed,
        });
    }
    let frame = Frame {
        command,
        stream_id,
        data: bytes[HEADER_SIZE..needed].to_vec(),
    };
    Ok((frame, needed))
}

/// Cuts frames out of the smux byte stream, whatever the message boundaries were.
#[derive(Debug, Default)]
pub struct Reassembler {
    buffer: Vec<u8>,
}

impl Reassembler {
    /// Appends stream bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` when more bytes are needed, or the protocol error that ends the stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SmuxError> {
        match decode(&self.buffer) {
            Ok((frame, used)) => {
                self.buffer.drain(..used);
                Ok(Some(frame))
            }
            Err(SmuxError::Incomplete { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }
}
