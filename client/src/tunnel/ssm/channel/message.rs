//! The `ClientMessage` codec of Session Manager's data channel (`ssm/PROTOCOL.md` §2): a 120-byte big-endian
//! header (HeaderLength 116, MessageType padded with spaces, SchemaVersion 1, CreatedDate in milliseconds,
//! SequenceNumber, Flags, MessageId with its two halves swapped, the payload's SHA-256, PayloadType,
//! PayloadLength) and then the payload.
//!
//! Decoding is tolerant, as §2's robust rule and §9 say: the payload is everything from `HeaderLength + 4`
//! (PayloadLength is not trusted), PayloadType is read only when `HeaderLength >= 116` (the service's short
//! `channel_closed` has none), MessageType is trimmed of NUL and spaces, and the publication messages are not
//! validated at all. The decoder never copies the payload (it is a slice of the frame) and allocates at most the
//! 32 bytes of MessageType, whatever the input. Whether the digest matches is the caller's question
//! ([`Message::digest_matches`]): only stream data is dropped for a wrong one.

use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// The HeaderLength every sender writes: all header fields but PayloadLength.
pub const HEADER_LENGTH: u32 = 116;
/// The smallest HeaderLength whose fixed fields (through the digest) fit: the short `channel_closed`.
const MINIMUM_HEADER_LENGTH: u32 = 112;
/// Bytes before the payload in the standard layout.
pub const HEADER_SIZE: usize = 120;
/// The width of the MessageType field.
const MESSAGE_TYPE_SIZE: usize = 32;

/// The MessageType strings the client sends or acts on.
pub mod message_type {
    /// Client to agent data (sequenced).
    pub const INPUT_STREAM_DATA: &str = "input_stream_data";
    /// Agent to client data (sequenced).
    pub const OUTPUT_STREAM_DATA: &str = "output_stream_data";
    /// The acknowledgement of one sequenced message.
    pub const ACKNOWLEDGE: &str = "acknowledge";
    /// The session ended.
    pub const CHANNEL_CLOSED: &str = "channel_closed";
    /// The service carries data again.
    pub const START_PUBLICATION: &str = "start_publication";
    /// The service asks the client to hold its data.
    pub const PAUSE_PUBLICATION: &str = "pause_publication";
}

/// The PayloadType values the client sends or acts on.
pub mod payload_type {
    /// Stream bytes.
    pub const OUTPUT: u32 = 1;
    /// The agent's handshake request.
    pub const HANDSHAKE_REQUEST: u32 = 5;
    /// The client's handshake response.
    pub const HANDSHAKE_RESPONSE: u32 = 6;
    /// The agent's handshake confirmation.
    pub const HANDSHAKE_COMPLETE: u32 = 7;
    /// A 4-byte big-endian flag ([`super::flag`]).
    pub const FLAG: u32 = 10;
}

/// The values a Flag payload carries.
pub mod flag {
    /// The client ends the session.
    pub const TERMINATE_SESSION: u32 = 2;
    /// The agent could not dial the port.
    pub const CONNECT_TO_PORT_ERROR: u32 = 3;
}

/// Header Flags: the client sends 0 on data and SYN|FIN on acknowledgements (§3).
pub mod header_flags {
    /// Data.
    pub const DATA: u64 = 0;
    /// Acknowledgements and other control messages.
    pub const CONTROL: u64 = 3;
}

/// Why bytes are not a `ClientMessage`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("data channel message of {length} bytes is truncated: its header needs {needed}")]
    Truncated { length: usize, needed: usize },
    #[error("data channel message HeaderLength {0} is too small for its fixed fields")]
    HeaderLength(u32),
    #[error("data channel message type is not text")]
    MessageTypeNotText,
    #[error("data channel message has no type")]
    EmptyMessageType,
    #[error("data channel message {0} has no CreatedDate")]
    ZeroCreatedDate(String),
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// MessageType without its padding.
    pub message_type: String,
    /// Per-direction sequence number; 0 for control messages.
    pub sequence_number: i64,
    /// The canonical MessageId (its halves are swapped on the wire).
    pub message_id: Uuid,
    /// The SHA-256 the sender declared.
    pub payload_digest: [u8; 32],
    /// PayloadType, or 0 when the header has no such field.
    pub payload_type: u32,
    /// PayloadLength as declared (not trusted: the payload is everything after the header).
    pub payload_length: u32,
    /// The payload, a slice of the frame.
    pub payload: Bytes,
}

impl Message {
    /// Whether the declared digest is the payload's; a message with no payload and no declared length has
    /// nothing to check (the plugin's rule).
    pub fn digest_matches(&self) -> bool {
        (self.payload.is_empty() && self.payload_length == 0)
            || sha256(&self.payload) == self.payload_digest
    }

    /// The first four payload bytes as a big-endian number (a Flag's value).
    pub fn flag(&self) -> Option<u32> {
        let bytes = self.payload.get(..4)?;
        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

/// Encodes a message the client sends: stamped now, a new random MessageId, HeaderLength 116.
pub fn encode(
    message_type: &str,
    sequence_number: i64,
    flags: u64,
    payload_type: u32,
    payload: &[u8],
) -> Bytes {
    encode_with(
        message_type,
        sequence_number,
        flags,
        payload_type,
        payload,
        Uuid::new_v4(),
        now_millis(),
    )
}

/// Encodes with a given MessageId and CreatedDate (the tests' fixed vectors).
pub fn encode_with(
    message_type: &str,
    sequence_number: i64,
    flags: u64,
    payload_type: u32,
    payload: &[u8],
    message_id: Uuid,
    created_date: u64,
) -> Bytes {
    let mut buffer = BytesMut::with_capacity(HEADER_SIZE + payload.len());
    buffer.put_u32(HEADER_LENGTH);
    let mut name = [b' '; MESSAGE_TYPE_SIZE];
    let length = message_type.len().min(MESSAGE_TYPE_SIZE);
    name[..length].copy_from_slice(&message_type.as_bytes()[..length]);
    buffer.put_slice(&name);
    buffer.put_u32(1);
    buffer.put_u64(created_date);
    buffer.put_i64(sequence_number);
    buffer.put_u64(flags);
    buffer.put_slice(&swap_halves(*message_id.as_bytes()));
    buffer.put_slice(&sha256(payload));
    buffer.put_u32(payload_type);
    buffer.put_u32(payload.len() as u32);
    buffer.put_slice(payload);
    buffer.freeze()
}

/// Decodes one message by the tolerant rule; never panics, and keeps the payload as a slice of `frame`.
pub fn decode(frame: &Bytes) -> Result<Message, MessageError> {
    let header_length = read_u32(frame, 0).ok_or(MessageError::Truncated {
        length: frame.len(),
        needed: 4,
    })?;
    if header_length < MINIMUM_HEADER_LENGTH {
        return Err(MessageError::HeaderLength(header_length));
    }
    // HeaderLength is at most u32::MAX, so this cannot overflow a 64-bit usize; checked anyway for 32-bit.
    let payload_start = (header_length as usize)
        .checked_add(4)
        .ok_or(MessageError::HeaderLength(header_length))?;
    if frame.len() < payload_start {
        return Err(MessageError::Truncated {
            length: frame.len(),
            needed: payload_start,
        });
    }
    let message_type = std::str::from_utf8(&frame[4..4 + MESSAGE_TYPE_SIZE])
        .map_err(|_| MessageError::MessageTypeNotText)?
        .trim_matches(|character: char| character == '\0' || character == ' ')
        .to_owned();
    let mut message_id = [0u8; 16];
    message_id.copy_from_slice(&frame[64..80]);
    let mut payload_digest = [0u8; 32];
    payload_digest.copy_from_slice(&frame[80..112]);
    let created_date = read_u64(frame, 40).unwrap_or_default();
    let message = Message {
        sequence_number: read_u64(frame, 48).unwrap_or_default() as i64,
        message_id: Uuid::from_bytes(swap_halves(message_id)),
        payload_digest,
        payload_type: if header_length >= HEADER_LENGTH {
            read_u32(frame, 112).unwrap_or_default()
        } else {
            0
        },
        payload_length: read_u32(frame, header_length as usize).unwrap_or_default(),
        payload: frame.slice(payload_start..),
        message_type,
    };
    if message.message_type == message_type::START_PUBLICATION
        || message.message_type == message_type::PAUSE_PUBLICATION
    {
        return Ok(message);
    }
    if message.message_type.is_empty() {
        return Err(MessageError::EmptyMessageType);
    }
    if created_date == 0 {
        return Err(MessageError::ZeroCreatedDate(message.message_type));
    }
    Ok(message)
}

/// §2's MessageId byte order: the canonical bytes `u[0..16]` travel as `u[8..16] ‖ u[0..8]`; its own inverse.
pub fn swap_halves(bytes: [u8; 16]) -> [u8; 16] {
    let mut swapped = [0u8; 16];
    swapped[..8].copy_from_slice(&bytes[8..]);
    swapped[8..].copy_from_slice(&bytes[..8]);
    swapped
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_millis() as u64)
        .max(1)
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes(field.try_into().ok()?))
}

fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let field = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_be_bytes(field.try_into().ok()?))
}

#[cfg(test)]
mod tests;
