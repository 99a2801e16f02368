//! Which hosts name the dev container itself.

use super::is_loopback;

#[test]
fn every_spelling_of_loopback_is_the_container_itself() {
    for host in [
        "",
        "localhost",
        "LOCALHOST",
        "127.0.0.1",
        "127.9.9.9",
        "::1",
        "[::1]",
        "0.0.0.0",
        "::",
        "::ffff:127.0.0.1",
        "[::ffff:127.0.0.1]",
    ] {
        assert!(is_loopback(host), "{host:?}");
    }
    for host in [
        "db",
        "10.0.0.1",
        "169.254.169.254",
        "::ffff:10.0.0.1",
        "localhost.example",
    ] {
        assert!(!is_loopback(host), "{host:?}");
    }
}
