//! Dialling the data channel's WebSocket: our own TCP connection (with `TCP_NODELAY`, since every message and
//! acknowledgement is a small write that Nagle's algorithm would hold back for the previous one's ack), TLS
//! by rustls with ring and the system's root certificates (the roots the SDK's own HTTPS client trusts), the
//! WebSocket handshake by tokio-tungstenite over that stream, and the OpenDataChannelInput text frame.
//!
//! The endpoint policy: the stream URL the service returns must be an AWS `wss://ssmmessages.…` address, unless
//! `allow_any` (tests against a local gateway, `SKIFF_SSM_ALLOW_ANY_ENDPOINT=1`) lets any `ws://` or `wss://`
//! one through. Proxies (`HTTPS_PROXY`) are not supported here; `--tunnel plugin` is the way through one.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::SinkExt as _;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::handshake::OpenDataChannelInput;
use crate::tunnel::BoxIo;

/// A data-channel WebSocket.
pub type WebSocket = WebSocketStream<BoxIo>;

/// The longest a dial (TCP, TLS and the WebSocket handshake) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest message the client takes from the service; the agent sends at most 1 KiB of data per message.
const MAX_MESSAGE: usize = 1 << 20;

/// Dials `url` and opens the data channel with `token`.
pub async fn open(
    url: &str,
    token: &str,
    client_id: &str,
    allow_any: bool,
) -> Result<WebSocket, String> {
    let endpoint = Endpoint::parse(url, allow_any)?;
    let dialled = tokio::time::timeout(DIAL_TIMEOUT, dial(url, &endpoint))
        .await
        .map_err(|_| {
            format!(
                "dialling the data channel at {} took over {}s",
                endpoint.host,
                DIAL_TIMEOUT.as_secs()
            )
        })??;
    let mut websocket = dialled;
    websocket
        .send(Frame::text(OpenDataChannelInput::json(token, client_id)))
        .await
        .map_err(|error| format!("opening the data channel at {}: {error}", endpoint.host))?;
    Ok(websocket)
}

async fn dial(url: &str, endpoint: &Endpoint) -> Result<WebSocket, String> {
    let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|error| {
            format!(
                "connecting to the data channel at {}:{}: {error}",
                endpoint.host, endpoint.port
            )
        })?;
    tcp.set_nodelay(true)
        .map_err(|error| format!("setting TCP_NODELAY on the data channel's socket: {error}"))?;
    let io: BoxIo = if endpoint.tls {
        let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
            .map_err(|error| format!("the data channel's host {}: {error}", endpoint.host))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|error| format!("TLS with the data channel at {}: {error}", endpoint.host))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_MESSAGE);
    config.max_frame_size = Some(MAX_MESSAGE);
    let (websocket, _) = tokio_tungstenite::client_async_with_config(url, io, Some(config))
        .await
        .map_err(|error| {
            format!(
                "the WebSocket handshake with the data channel at {}: {error}",
                endpoint.host
            )
        })?;
    Ok(websocket)
}

/// rustls with ring and the system's roots, made once.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "no root certificates found on this system to check the data channel's TLS certificate ({} errors reading them)",
                    found.errors.len()
                ));
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|error| format!("TLS settings for the data channel: {error}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// Where a stream URL points.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
    tls: bool,
}

impl Endpoint {
    /// Parses `url` and applies the endpoint policy.
    fn parse(url: &str, allow_any: bool) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|error| format!("the data channel's stream URL is not a URL: {error}"))?;
        let tls = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") if allow_any => false,
            _ => {
                return Err(format!(
                    "the data channel's stream URL {} is not a wss:// address",
                    redact(url)
                ));
            }
        };
        let host = uri.host().unwrap_or_default().to_owned();
        // ssmmessages.<region>.amazonaws.com[.cn], or its FIPS twin ssmmessages-fips.<region>.amazonaws.com.
        let aws = (host.starts_with("ssmmessages.") || host.starts_with("ssmmessages-fips."))
            && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"));
        if !aws && !allow_any {
            return Err(format!(
                "the data channel's stream URL points at {host}, not an AWS ssmmessages endpoint; set {}=1 only to test against a local gateway",
                super::super::ALLOW_ANY_ENDPOINT
            ));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { host, port, tls })
    }
}

/// A URL without its query, for messages.
fn redact(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn only_aws_wss_endpoints_pass_unless_any_is_allowed() {
        let aws =
            "wss://ssmmessages.eu-west-1.amazonaws.com/v1/data-channel/s-1?role=publish_subscribe";
        assert_eq!(
            Endpoint::parse(aws, false).unwrap(),
            Endpoint {
                host: "ssmmessages.eu-west-1.amazonaws.com".into(),
                port: 443,
                tls: true
            }
        );
        assert!(Endpoint::parse("wss://ssmmessages.cn-north-1.amazonaws.com.cn/x", false).is_ok());
        let local = "ws://127.0.0.1:4000/v1/data-channel/s-1";
        assert!(Endpoint::parse(local, false).is_err());
        assert!(Endpoint::parse("wss://evil.example.com/v1/data-channel/s", false).is_err());
        assert!(Endpoint::parse("wss://ssmmessages.amazonaws.com.evil.com/", false).is_err());
        assert_eq!(
            Endpoint::parse(local, true).unwrap(),
            Endpoint {
                host: "127.0.0.1".into(),
                port: 4000,
                tls: false
            }
        );
        assert!(Endpoint::parse("https://ssmmessages.eu-west-1.amazonaws.com/", true).is_err());
    }
}
