//! The labels that identify a dev container (`id_labels`) and the `${devcontainerId}` derived from them (`devcontainer_id`).

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Label holding the local workspace folder; with `LABEL_CONFIG_FILE` it finds the container of a workspace again.
pub const LABEL_LOCAL_FOLDER: &str = "devcontainer.local_folder";
/// Label holding the path of the config file the container was made from.
pub const LABEL_CONFIG_FILE: &str = "devcontainer.config_file";
/// Label holding the merged config metadata (a JSON array) on images and containers.
pub const LABEL_METADATA: &str = "devcontainer.metadata";

/// The default id labels of a container: the local workspace folder and the config file, as given (not canonicalised).
pub fn id_labels(local_folder: &Path, config_file: &Path) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            LABEL_LOCAL_FOLDER.to_string(),
            local_folder.to_string_lossy().into_owned(),
        ),
        (
            LABEL_CONFIG_FILE.to_string(),
            config_file.to_string_lossy().into_owned(),
        ),
    ])
}

/// The `${devcontainerId}` of a container with these id labels, as the spec defines it.
///
/// The labels are written as compact JSON with sorted keys, hashed with SHA-256, and the hash is written as a base-32 number
/// (digits `0-9a-v`) left-padded with `0` to 52 digits.
/// Keys are sorted by UTF-8 bytes, where the reference sorts by UTF-16 units; the two differ only for keys mixing characters
/// above U+FFFF with ones in U+E000..U+FFFF.
pub fn devcontainer_id(id_labels: &BTreeMap<String, String>) -> String {
    // A `BTreeMap` serialises with sorted keys and no whitespace, which is what `JSON.stringify(labels, sortedKeys)` writes.
    let json = serde_json::to_string(id_labels).unwrap_or_default();
    let hash: [u8; 32] = Sha256::digest(json.as_bytes()).into();
    base32_padded(&hash)
}

/// Writes a 256-bit big-endian number in base 32 with 52 digits; 52 five-bit digits hold 260 bits, so the top digit is 0 or 1.
fn base32_padded(number: &[u8; 32]) -> String {
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    const LENGTH: usize = 52;
    let mut text = vec![b'0'; LENGTH];
    for (position, slot) in text.iter_mut().rev().enumerate() {
        // Digit `position` (counting from the least significant) holds bits 5*position .. 5*position+4.
        let mut digit = 0;
        for bit in 0..5 {
            let bit_index = position * 5 + bit;
            if bit_index >= 256 {
                break;
            }
            let byte = number[31 - bit_index / 8];
            digit |= ((byte >> (bit_index % 8)) & 1) << bit;
        }
        *slot = DIGITS[usize::from(digit)];
    }
    String::from_utf8(text).unwrap_or_default()
}
