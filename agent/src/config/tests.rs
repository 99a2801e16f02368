//! Tests of reading `skiffd.toml`.

use super::*;

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";

fn text(extra: &str) -> String {
    format!(
        "workspace = \"app\"\nstate_dir = \"/tmp/s\"\nclient_certificate = '''{PEM}'''\n{extra}"
    )
}

#[test]
fn defaults_are_loopback_and_thirty_minutes() {
    let config = AgentConfig::parse(Path::new("skiffd.toml"), &text("")).unwrap();
    assert_eq!(config.listen, "127.0.0.1:0".parse().unwrap());
    assert_eq!(config.idle_timeout, Some(DEFAULT_IDLE_TIMEOUT));
    assert_eq!(config.idle_action, IdleAction::StopContainer);
}

#[test]
fn non_loopback_listen_is_refused_unless_allowed() {
    let error = AgentConfig::parse(Path::new("skiffd.toml"), &text("listen = \"0.0.0.0:7443\""))
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("0.0.0.0:7443 is not a loopback address"),
        "{message}"
    );
    assert!(message.contains("allow_non_loopback = true"), "{message}");
    let allowed = text("listen = \"0.0.0.0:7443\"\nallow_non_loopback = true");
    assert!(AgentConfig::parse(Path::new("skiffd.toml"), &allowed).is_ok());
}

#[test]
fn idle_timeout_forms() {
    for (written, expected) in [
        ("\"45m\"", Some(Duration::from_secs(2700))),
        ("\"2h\"", Some(Duration::from_secs(7200))),
        ("\"off\"", None),
        ("0", None),
        ("90", Some(Duration::from_secs(90))),
    ] {
        let config =
            AgentConfig::parse(Path::new("x"), &text(&format!("idle_timeout = {written}")))
                .unwrap();
        assert_eq!(config.idle_timeout, expected, "{written}");
    }
    let error =
        AgentConfig::parse(Path::new("x.toml"), &text("idle_timeout = \"soon\"")).unwrap_err();
    assert!(error.to_string().contains("not a duration"), "{error}");
}

#[test]
fn unknown_keys_are_errors_that_name_the_file() {
    let error = AgentConfig::parse(Path::new("/etc/skiffd.toml"), &text("colour = 1")).unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("agent configuration /etc/skiffd.toml:"),
        "{message}"
    );
    assert!(message.contains("colour"), "{message}");
}

#[test]
fn round_trips_through_toml() {
    let config = AgentConfig::parse(Path::new("x"), &text("idle_timeout = \"2h\"")).unwrap();
    let again = AgentConfig::parse(Path::new("x"), &config.to_toml()).unwrap();
    assert_eq!(again.idle_timeout, config.idle_timeout);
    assert_eq!(again.client_certificate, config.client_certificate);
}

#[test]
fn handshake_limits_default_and_parse() {
    let config = AgentConfig::parse(Path::new("skiffd.toml"), &text("")).unwrap();
    assert_eq!(config.handshake_timeout, Duration::from_secs(15));
    assert_eq!(config.max_handshakes, 64);
    let config = AgentConfig::parse(
        Path::new("skiffd.toml"),
        &text("handshake_timeout = \"500ms\"\nmax_handshakes = 4"),
    )
    .unwrap();
    assert_eq!(config.handshake_timeout, Duration::from_millis(500));
    assert_eq!(config.max_handshakes, 4);
    let round_trip = AgentConfig::parse(Path::new("skiffd.toml"), &config.to_toml()).unwrap();
    assert_eq!(round_trip.handshake_timeout, Duration::from_millis(500));
    let error = AgentConfig::parse(
        Path::new("skiffd.toml"),
        &text("handshake_timeout = \"0s\""),
    )
    .unwrap_err();
    assert!(error.to_string().contains("zero"), "{error}");
}
