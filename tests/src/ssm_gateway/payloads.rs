//! The JSON the data channel carries, field for field as `ssm/PROTOCOL.md` §1, §3, §4 and §5 give it: the
//! OpenDataChannelInput text frame, acknowledgements, the three handshake messages and `channel_closed`.
//! Field order follows the Go structs (serde keeps declaration order); the handshake's Properties are a Go
//! map, which Go marshals with sorted keys, as `serde_json::Map` does.

use serde::{Deserialize, Serialize};

/// The first (text) frame a client sends on a new WebSocket (§1). Only the token is required in practice;
/// MessageSchemaVersion and RequestId are not read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpenDataChannelInput {
    /// The session's current TokenValue.
    pub token_value: String,
    /// The client's id; `channel_closed` names it as DestinationId.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The plugin's version (newer plugins only).
    #[serde(default)]
    pub client_version: Option<String>,
}

/// An acknowledgement's payload (§3). The receiver uses only the sequence number.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AcknowledgeContent {
    /// The acknowledged message's MessageType.
    #[serde(rename = "AcknowledgedMessageType")]
    pub message_type: String,
    /// The acknowledged message's canonical (unswapped) MessageId.
    #[serde(rename = "AcknowledgedMessageId")]
    pub message_id: String,
    /// The acknowledged message's SequenceNumber.
    #[serde(rename = "AcknowledgedMessageSequenceNumber")]
    pub sequence_number: i64,
    /// Always true.
    #[serde(rename = "IsSequentialMessage")]
    pub is_sequential: bool,
}

/// The agent's HandshakeRequest (§4).
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeRequest {
    /// The SSM agent's version.
    #[serde(rename = "AgentVersion")]
    pub agent_version: String,
    /// What the client must do; for Port sessions only the SessionType action.
    #[serde(rename = "RequestedClientActions")]
    pub requested_client_actions: Vec<RequestedClientAction>,
}

/// One requested action.
#[derive(Debug, Clone, Serialize)]
pub struct RequestedClientAction {
    /// "SessionType".
    #[serde(rename = "ActionType")]
    pub action_type: String,
    /// `{"SessionType":"Port","Properties":{...}}`.
    #[serde(rename = "ActionParameters")]
    pub action_parameters: serde_json::Value,
}

impl HandshakeRequest {
    /// The request a Port session sends, with the document's properties after parameter substitution.
    pub fn port(
        agent_version: &str,
        properties: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        Self {
            agent_version: agent_version.to_owned(),
            requested_client_actions: vec![RequestedClientAction {
                action_type: "SessionType".to_owned(),
                action_parameters: serde_json::json!({
                    "SessionType": "Port",
                    "Properties": properties,
                }),
            }],
        }
    }
}

/// The client's HandshakeResponse (§4). Go clients write `null` for empty lists, Rust ones `[]`.
#[derive(Debug, Clone, Deserialize)]
pub struct HandshakeResponse {
    /// The client's version, which decides the port mode (§5).
    #[serde(rename = "ClientVersion", default)]
    pub client_version: String,
    /// One result per requested action.
    #[serde(rename = "ProcessedClientActions", default)]
    pub processed_client_actions: Option<Vec<ProcessedClientAction>>,
    /// Error strings for the operator.
    #[serde(rename = "Errors", default)]
    pub errors: Option<Vec<String>>,
}

/// One processed action.
#[derive(Debug, Clone, Deserialize)]
pub struct ProcessedClientAction {
    /// The action's type.
    #[serde(rename = "ActionType")]
    pub action_type: String,
    /// 1 Success, 2 Failed, 3 Unsupported.
    #[serde(rename = "ActionStatus")]
    pub action_status: i64,
    /// Why it failed.
    #[serde(rename = "Error", default)]
    pub error: Option<String>,
}

/// ActionStatus Success.
pub const ACTION_SUCCESS: i64 = 1;

/// The agent's HandshakeComplete (§4).
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeComplete {
    /// Nanoseconds from request to completion (a Go `time.Duration`).
    #[serde(rename = "HandshakeTimeToComplete")]
    pub handshake_time_to_complete: u64,
    /// A banner for the operator; empty for port sessions.
    #[serde(rename = "CustomerMessage")]
    pub customer_message: String,
}

/// The `channel_closed` payload (§5, session end).
#[derive(Debug, Clone, Serialize)]
pub struct ChannelClosed {
    /// The message's own id.
    #[serde(rename = "MessageId")]
    pub message_id: String,
    /// An RFC 3339 time, as a string.
    #[serde(rename = "CreatedDate")]
    pub created_date: String,
    /// The client the message goes to.
    #[serde(rename = "DestinationId")]
    pub destination_id: String,
    /// The ended session.
    #[serde(rename = "SessionId")]
    pub session_id: String,
    /// "channel_closed".
    #[serde(rename = "MessageType")]
    pub message_type: String,
    /// 1.
    #[serde(rename = "SchemaVersion")]
    pub schema_version: u32,
    /// What the plugin prints before it exits.
    #[serde(rename = "Output")]
    pub output: String,
}

/// `time` as RFC 3339 UTC with milliseconds (`2024-10-15T10:11:12.123Z`), without a date library.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    let since_epoch = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
