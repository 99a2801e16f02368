//! Listening ports inside the dev container, found the way VS Code and Codespaces find them: by reading
//! the kernel's socket tables (`/proc/net/tcp`, `/proc/net/tcp6`) of the container's network namespace.

use std::collections::BTreeMap;

/// A listening port and whether only the container's loopback address has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// The TCP port.
    pub port: u16,
    /// True when every listener on it is bound to a loopback address.
    pub loopback_only: bool,
}

/// The listening TCP ports in the text of `/proc/net/tcp` and `/proc/net/tcp6` (concatenated).
pub fn parse_listening(text: &str) -> Vec<Listening> {
    let mut ports: BTreeMap<u16, bool> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st …; the header line has "local_address" in the field.
        let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
            continue;
        };
        if *state != "0A" {
            continue;
        }
        let Some((address, port)) = local.split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port, 16) else {
            continue;
        };
        let loopback = is_loopback(address);
        let entry = ports.entry(port).or_insert(true);
        *entry = *entry && loopback;
    }
    ports
        .into_iter()
        .map(|(port, loopback_only)| Listening {
            port,
            loopback_only,
        })
        .collect()
}

/// Whether a hex address from `/proc/net/tcp{,6}` (little-endian words) is a loopback address.
fn is_loopback(hex: &str) -> bool {
    match hex.len() {
        // IPv4: one little-endian word, so 127.x.y.z ends in "7F".
        8 => hex.ends_with("7F"),
        // IPv6: ::1, or ::ffff:127.x.y.z.
        32 => {
            hex == "00000000000000000000000001000000"
                || (hex.starts_with("0000000000000000FFFF0000") && hex.ends_with("7F"))
        }
        _ => false,
    }
}

/// The changes between two sets of listening ports: (port, now listening, loopback only).
pub fn changes(before: &[Listening], after: &[Listening]) -> Vec<(Listening, bool)> {
    let mut changes: Vec<(Listening, bool)> = after
        .iter()
        .filter(|port| !before.iter().any(|old| old.port == port.port))
        .map(|port| (*port, true))
        .collect();
    changes.extend(
        before
            .iter()
            .filter(|port| !after.iter().any(|new| new.port == port.port))
            .map(|port| (*port, false)),
    );
    changes
}

#[cfg(test)]
mod tests;
