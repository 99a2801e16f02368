//! Property tests of the SFTP server's untrusted input: russh-sftp decodes the client's packets, so its decoder
//! is fed arbitrary bytes and mutated valid packets of every kind, and the server is fed garbage requests of the
//! kinds that change nothing on disk (the others are only decoded here, never run, so a mutation cannot turn a
//! test into a removal). Nothing panics, a packet over the library's limit is refused without being read, and
//! every request gets exactly one answer. `cargo xtask fuzz` runs them (every test under a `props` module) with
//! many more cases.

use std::time::Duration;

use bytes::{Buf as _, Bytes};
use proptest::prelude::*;
use russh_sftp::protocol::{
    Close, Data, Extended, FileAttributes, Init, Name, Open, OpenFlags, Packet, Read, Rename,
    SetStat, Stat, StatusCode, Write,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

use crate::procd::props::support::{config, mutate, mutations};

fn attributes() -> impl Strategy<Value = FileAttributes> {
    (
        proptest::option::of(any::<u64>()),
        proptest::option::of((any::<u32>(), any::<u32>())),
        proptest::option::of(any::<u32>()),
        proptest::option::of((any::<u32>(), any::<u32>())),
    )
        .prop_map(|(size, owner, permissions, times)| FileAttributes {
            size,
            uid: owner.map(|(uid, _)| uid),
            user: None,
            gid: owner.map(|(_, gid)| gid),
            group: None,
            permissions,
            atime: times.map(|(atime, _)| atime),
            mtime: times.map(|(_, mtime)| mtime),
        })
}

/// Valid packets of many kinds, as a client (or a server, for the answers) would encode them.
fn packet() -> impl Strategy<Value = Packet> {
    let id = any::<u32>();
    let path = ".{0,24}";
    let data = proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        (
            any::<u32>(),
            proptest::collection::hash_map(".{0,8}", ".{0,8}", 0..3)
        )
            .prop_map(|(version, extensions)| Packet::Init(Init {
                version,
                extensions
            })),
        (id, path, any::<u32>(), attributes()).prop_map(|(id, filename, flags, attrs)| {
            Packet::Open(Open {
                id,
                filename,
                pflags: OpenFlags::from_bits_truncate(flags),
                attrs,
            })
        }),
        (id, path).prop_map(|(id, handle)| Packet::Close(Close { id, handle })),
        (id, path, any::<u64>(), any::<u32>()).prop_map(|(id, handle, offset, len)| Packet::Read(
            Read {
                id,
                handle,
                offset,
                len
            }
        )),
        (id, path, any::<u64>(), data.clone()).prop_map(
            |(id, handle, offset, data)| Packet::Write(Write {
                id,
                handle,
                offset,
                data
            })
        ),
        (id, path).prop_map(|(id, path)| Packet::Stat(Stat { id, path })),
        (id, path, attributes()).prop_map(|(id, path, attrs)| Packet::SetStat(SetStat {
            id,
            path,
            attrs
        })),
        (id, path, path).prop_map(|(id, oldpath, newpath)| Packet::Rename(Rename {
            id,
            oldpath,
            newpath
        })),
        (id, path, data.clone()).prop_map(|(id, request, data)| Packet::Extended(Extended {
            id,
            request,
            data
        })),
        (id, data).prop_map(|(id, data)| Packet::Data(Data { id, data })),
        (id, proptest::collection::vec((path, attributes()), 0..3)).prop_map(|(id, files)| {
            let files = files
                .into_iter()
                .map(|(name, attributes)| russh_sftp::protocol::File::new(name, attributes))
                .collect();
            Packet::Name(Name { id, files })
        }),
        id.prop_map(|id| Packet::error(id, StatusCode::NoSuchFile)),
    ]
}

/// A packet's bytes after its length, as the library's decoder takes them.
fn body(packet: Packet) -> Vec<u8> {
    let mut bytes = Bytes::try_from(packet).unwrap();
    let length = bytes.get_u32() as usize;
    assert_eq!(length, bytes.len());
    bytes.to_vec()
}

/// Kinds of request the server may be fed with garbage in them: none writes, removes or renames anything.
const HARMLESS_KINDS: &[u8] = &[
    0, 1, 2, 4, 5, 7, 8, 11, 12, 16, 17, 19, 99, 101, 102, 103, 104, 105, 200, 201, 255,
];

/// Serves `requests` (each sent whole, with its length) then an init, and gives the answers' kinds in order.
fn serve_requests(requests: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, server) = tokio::io::duplex(1024 * 1024);
        let serving = tokio::spawn(serve(server));
        let mut sent = Vec::new();
        for (kind, body) in requests {
            sent.extend_from_slice(&(1 + body.len() as u32).to_be_bytes());
            sent.push(*kind);
            sent.extend_from_slice(body);
        }
        sent.extend_from_slice(&Bytes::try_from(Packet::Init(Init::new())).unwrap());
        let (mut reader, mut writer) = tokio::io::split(client);
        let writing = async move {
            writer.write_all(&sent).await.unwrap();
            writer
        };
        let answering = async {
            let mut kinds = Vec::new();
            // One answer per request, the init's last.
            for _ in 0..=requests.len() {
                let length = reader.read_u32().await.unwrap();
                assert!(length >= 1, "an empty answer");
                let mut answer = vec![0; length as usize];
                reader.read_exact(&mut answer).await.unwrap();
                kinds.push(answer[0]);
            }
            kinds
        };
        let (writer, kinds) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(writing, answering)
        })
        .await
        .expect("the SFTP server answered every request");
        let client = reader.unsplit(writer);
        drop(client);
        tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("the SFTP server ended with its stream")
            .unwrap();
        kinds
    })
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes never panic the packet decoder.
    #[test]
    fn prop_sftp_decoder_survives_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Packet::try_from(&mut Bytes::from(input));
    }

    /// Valid packets of every kind decode to the same kind, and mutated ones never panic the decoder.
    #[test]
    fn prop_sftp_decoder_survives_mutated_packets(packet in packet(), mutations in mutations()) {
        let mut bytes = body(packet);
        let kind = bytes[0];
        let decoded = Packet::try_from(&mut Bytes::from(bytes.clone()));
        prop_assert!(decoded.is_ok(), "a valid packet of kind {} did not decode: {:?}", kind, decoded.err());
        prop_assert_eq!(body(decoded.unwrap())[0], kind);
        mutate(&mut bytes, &mutations);
        let _ = Packet::try_from(&mut Bytes::from(bytes));
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Garbage requests of kinds that change nothing each get exactly one answer, the server still answers an
    /// init after them, and it ends when its stream does.
    #[test]
    fn prop_sftp_server_answers_every_garbage_request_once(
        requests in proptest::collection::vec(
            (proptest::sample::select(HARMLESS_KINDS), proptest::collection::vec(any::<u8>(), 0..48)),
            0..8,
        ),
    ) {
        let kinds = serve_requests(&requests);
        prop_assert_eq!(kinds.len(), requests.len() + 1);
        prop_assert_eq!(kinds.last().copied(), Some(2), "the init was not answered with a version");
    }
}

/// A packet claiming 4 GiB is refused from its length alone (russh-sftp's limit is 256 KiB), and the server
/// carries on: the next whole packet is answered.
#[test]
fn a_packet_claiming_4_gib_is_refused_without_reading_it() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(1024 * 1024);
        let serving = tokio::spawn(serve(server));
        client.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        client
            .write_all(&Bytes::try_from(Packet::Init(Init::new())).unwrap())
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            let length = client.read_u32().await.unwrap();
            let mut answer = vec![0; length as usize];
            client.read_exact(&mut answer).await.unwrap();
            answer
        })
        .await
        .expect("the server answered after a 4 GiB claim");
        assert_eq!(answer[0], 2, "the init was not answered with a version");
        drop(client);
        tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("the SFTP server ended with its stream")
            .unwrap();
    });
}
