//! What every crate's property tests (`props` modules) share: the case count (`PROPTEST_CASES`, which
//! `cargo xtask fuzz` raises) and mutations of valid encodings (bits flipped, bytes replaced, inserted, deleted,
//! the end cut off). Each `props` module includes this file (`#[path]`), since the crates share no test crate.

use proptest::prelude::*;
use proptest::sample::Index;

/// Cases per property: `PROPTEST_CASES` when set (`cargo xtask fuzz` raises it), else `default`, small enough for CI.
pub fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// One change to an encoding.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(Index, u8),
    Replace(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let mutation = prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Replace(at, byte)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
    ];
    proptest::collection::vec(mutation, 1..4)
}

pub fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for mutation in mutations {
        let length = bytes.len();
        match *mutation {
            Mutation::Insert(ref at, byte) => bytes.insert(at.index(length + 1), byte),
            Mutation::Truncate(ref at) => bytes.truncate(at.index(length + 1)),
            _ if length == 0 => {}
            Mutation::Flip(ref at, bit) => bytes[at.index(length)] ^= 1 << bit,
            Mutation::Replace(ref at, byte) => bytes[at.index(length)] = byte,
            Mutation::Delete(ref at) => {
                bytes.remove(at.index(length));
            }
        }
    }
}
