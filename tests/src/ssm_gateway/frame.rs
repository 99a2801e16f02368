//! The `ClientMessage` binary codec of Session Manager's data channel, written from `ssm/PROTOCOL.md` §2:
//! a 120-byte big-endian header (HeaderLength, space-padded MessageType, SchemaVersion, CreatedDate,
//! SequenceNumber, Flags, MessageId with its halves swapped, SHA-256 PayloadDigest, PayloadType,
//! PayloadLength) and the payload.
//!
//! Decoding follows the robust rule of §2: the payload starts at `HeaderLength + 4`, PayloadType is read only
//! when `HeaderLength >= 116`, MessageType is trimmed of NUL and whitespace, and `start_publication` and
//! `pause_publication` are not validated. The digest is checked separately ([`ClientMessage::digest_matches`]),
//! because what a bad digest means depends on the message. What the JSON payloads hold lives in `payloads`.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The HeaderLength every serializer writes: all header fields but PayloadLength.
pub const HEADER_LENGTH: u32 = 116;
/// The HeaderLength of the `channel_closed` variant seen from the service, which has no PayloadType field.
pub const SHORT_HEADER_LENGTH: u32 = 112;
/// Bytes before the payload in the standard layout.
pub const HEADER_SIZE: usize = 120;
/// Width of the MessageType field.
const MESSAGE_TYPE_SIZE: usize = 32;
/// The smallest HeaderLength whose fixed fields (up to the digest) all fit.
const MINIMUM_HEADER_LENGTH: u32 = SHORT_HEADER_LENGTH;

/// The MessageType strings of the data channel.
pub mod message_type {
    /// Client to agent data (sequenced).
    pub const INPUT_STREAM_DATA: &str = "input_stream_data";
    /// Agent to client data (sequenced).
    pub const OUTPUT_STREAM_DATA: &str = "output_stream_data";
    /// An acknowledgement of one sequenced message.
    pub const ACKNOWLEDGE: &str = "acknowledge";
    /// The session ended.
    pub const CHANNEL_CLOSED: &str = "channel_closed";
    /// The service is ready to carry data.
    pub const START_PUBLICATION: &str = "start_publication";
    /// The service asks the sender to hold its data.
    pub const PAUSE_PUBLICATION: &str = "pause_publication";
}

/// The PayloadType values (§2).
pub mod payload_type {
    /// Stream bytes.
    pub const OUTPUT: u32 = 1;
    /// The agent's handshake request.
    pub const HANDSHAKE_REQUEST: u32 = 5;
    /// The client's handshake response.
    pub const HANDSHAKE_RESPONSE: u32 = 6;
    /// The agent's handshake confirmation.
    pub const HANDSHAKE_COMPLETE: u32 = 7;
    /// The client's answer to an encryption challenge.
    pub const ENC_CHALLENGE_RESPONSE: u32 = 9;
    /// A 4-byte big-endian flag (see [`super::flag`]).
    pub const FLAG: u32 = 10;
}

/// The values a Flag payload carries (§2, PayloadTypeFlag).
pub mod flag {
    /// Basic mode: the client's local connection closed.
    pub const DISCONNECT_TO_PORT: u32 = 1;
    /// The client ends the session.
    pub const TERMINATE_SESSION: u32 = 2;
    /// The agent could not dial the target port.
    pub const CONNECT_TO_PORT_ERROR: u32 = 3;
}

/// Header Flags: bit 0 is SYN, bit 1 is FIN; acks and control messages carry both.
pub mod header_flags {
    /// The agent's first sequenced message.
    pub const SYN: u64 = 1;
    /// Acks and other control messages (SYN | FIN).
    pub const CONTROL: u64 = 3;
}

/// Why bytes are not a `ClientMessage`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the header (or its HeaderLength field) needs.
    #[error("ClientMessage of {length} bytes is truncated: its header needs {needed}")]
    Truncated {
        /// Bytes received.
        length: usize,
        /// Bytes the header needs.
        needed: usize,
    },
    /// A HeaderLength too small to hold the fixed header fields.
    #[error(
        "ClientMessage HeaderLength {header_length} is below the {MINIMUM_HEADER_LENGTH} bytes its fixed fields take"
    )]
    HeaderLength {
        /// The HeaderLength field.
        header_length: u32,
    },
    /// MessageType bytes that are not UTF-8.
    #[error("ClientMessage MessageType is not text")]
    MessageTypeNotText,
    /// A MessageType of only padding.
    #[error("ClientMessage MessageType is empty")]
    EmptyMessageType,
    /// A CreatedDate of zero, which the agent's validation rejects.
    #[error("ClientMessage {message_type} has a zero CreatedDate")]
    ZeroCreatedDate {
        /// The message's type.
        message_type: String,
    },
}

/// One data-channel message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// The HeaderLength it arrived with; [`ClientMessage::encode`] always writes [`HEADER_LENGTH`].
    pub header_length: u32,
    /// MessageType, without padding.
    pub message_type: String,
    /// Always 1 on the wire.
    pub schema_version: u32,
    /// Unix epoch milliseconds.
    pub created_date: u64,
    /// Per-direction sequence number; 0 for control messages.
    pub sequence_number: i64,
    /// Header flags (see [`header_flags`]).
    pub flags: u64,
    /// The canonical MessageId (its halves are swapped on the wire).
    pub message_id: Uuid,
    /// SHA-256 of the payload as the sender declared it.
    pub payload_digest: [u8; 32],
    /// PayloadType, or 0 when the header has no such field (HeaderLength below 116).
    pub payload_type: u32,
    /// PayloadLength as declared; the payload is everything after the header whatever this says.
    pub payload_length: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

impl ClientMessage {
    /// A message stamped now, with a random MessageId and the payload's digest and length.
    pub fn new(
        message_type: &str,
        sequence_number: i64,
        flags: u64,
        payload_type: u32,
        payload: Vec<u8>,
    ) -> Self {
        let created_date = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_millis() as u64);
        Self {
            header_length: HEADER_LENGTH,
            message_type: message_type.to_owned(),
            schema_version: 1,
            created_date,
            sequence_number,
            flags,
            message_id: Uuid::new_v4(),
            payload_digest: sha256(&payload),
            payload_type,
            payload_length: payload.len() as u32,
            payload,
        }
    }

    /// The standard layout: HeaderLength 116, MessageType padded with spaces.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_SIZE + self.payload.len());
        bytes.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
        self.put_fixed_fields(&mut bytes, b' ');
        bytes.extend_from_slice(&self.payload_type.to_be_bytes());
        bytes.extend_from_slice(&self.payload_length.to_be_bytes());
        bytes.extend_from_slice(&self.payload);
        bytes
    }

    /// The short layout the service has been seen to send `channel_closed` in: HeaderLength 112, no
    /// PayloadType field, MessageType padded with NUL bytes (§2, observed deviations).
    pub fn encode_short(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_SIZE - 4 + self.payload.len());
        bytes.extend_from_slice(&SHORT_HEADER_LENGTH.to_be_bytes());
        self.put_fixed_fields(&mut bytes, 0);
        bytes.extend_from_slice(&self.payload_length.to_be_bytes());
        bytes.extend_from_slice(&self.payload);
        bytes
    }

    /// MessageType through PayloadDigest, the fields both layouts share.
    fn put_fixed_fields(&self, bytes: &mut Vec<u8>, padding: u8) {
        let mut message_type = [padding; MESSAGE_TYPE_SIZE];
        let name = self.message_type.as_bytes();
        let length = name.len().min(MESSAGE_TYPE_SIZE);
        message_type[..length].copy_from_slice(&name[..length]);
        bytes.extend_from_slice(&message_type);
        bytes.extend_from_slice(&self.schema_version.to_be_bytes());
        bytes.extend_from_slice(&self.created_date.to_be_bytes());
        bytes.extend_from_slice(&self.sequence_number.to_be_bytes());
        bytes.extend_from_slice(&self.flags.to_be_bytes());
        bytes.extend_from_slice(&swap_halves(*self.message_id.as_bytes()));
        bytes.extend_from_slice(&self.payload_digest);
    }

    /// Whether the declared digest is the payload's SHA-256; a message with neither payload nor declared
    /// length has nothing to check (the plugin's rule, §2 "Validation on receive").
    pub fn digest_matches(&self) -> bool {
        (self.payload.is_empty() && self.payload_length == 0)
            || sha256(&self.payload) == self.payload_digest
    }

    /// Whether this is one of the two messages §2 exempts from validation.
    pub fn is_publication(&self) -> bool {
        self.message_type == message_type::START_PUBLICATION
            || self.message_type == message_type::PAUSE_PUBLICATION
    }
}

/// Decodes one `ClientMessage` by the robust rule of §2, with the agent's validation (a MessageType and a
/// non-zero CreatedDate) except for the publication messages. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<ClientMessage, FrameError> {
    let header_length = read_u32(bytes, 0).ok_or(FrameError::Truncated {
        length: bytes.len(),
        needed: 4,
    })?;
    if header_length < MINIMUM_HEADER_LENGTH {
        return Err(FrameError::HeaderLength { header_length });
    }
    let payload_start = header_length as usize + 4;
    if bytes.len() < payload_start {
        return Err(FrameError::Truncated {
            length: bytes.len(),
            needed: payload_start,
        });
    }
    let message_type = std::str::from_utf8(&bytes[4..4 + MESSAGE_TYPE_SIZE])
        .map_err(|_| FrameError::MessageTypeNotText)?
        .trim_matches(|character: char| character == '\0' || character.is_whitespace())
        .to_owned();
    let mut message_id = [0u8; 16];
    message_id.copy_from_slice(&bytes[64..80]);
    let mut payload_digest = [0u8; 32];
    payload_digest.copy_from_slice(&bytes[80..112]);
    let message = ClientMessage {
        header_length,
        schema_version: read_u32(bytes, 36).unwrap_or_default(),
        created_date: read_u64(bytes, 40).unwrap_or_default(),
        sequence_number: read_u64(bytes, 48).unwrap_or_default() as i64,
        flags: read_u64(bytes, 56).unwrap_or_default(),
        message_id: Uuid::from_bytes(swap_halves(message_id)),
        payload_digest,
        payload_type: if header_length >= HEADER_LENGTH {
            read_u32(bytes, 112).unwrap_or_default()
        } else {
            0
        },
        payload_length: read_u32(bytes, header_length as usize).unwrap_or_default(),
        payload: bytes[payload_start..].to_vec(),
        message_type,
    };
    if message.is_publication() {
        return Ok(message);
    }
    if message.message_type.is_empty() {
        return Err(FrameError::EmptyMessageType);
    }
    if message.created_date == 0 {
        return Err(FrameError::ZeroCreatedDate {
            message_type: message.message_type,
        });
    }
    Ok(message)
}

/// The MessageId byte order of §2: the canonical bytes `u[0..16]` travel as `u[8..16] ‖ u[0..8]`. The swap is
/// its own inverse.
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

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes(field.try_into().ok()?))
}

fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let field = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_be_bytes(field.try_into().ok()?))
}
