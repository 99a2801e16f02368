//! Tests of reading the kernel's socket tables.

use super::*;

const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0200A8C0:0016 0100A8C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
";
const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F41 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
   1: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0 100 0 0 10 0
";

#[test]
fn listening_ports_and_loopback_only_ones() {
    let ports = parse_listening(&format!("{TCP}{TCP6}"));
    assert_eq!(
        ports,
        vec![
            // 3000 listens on 127.0.0.1 and on [::], so it is reachable from outside.
            Listening {
                port: 3000,
                loopback_only: false
            },
            Listening {
                port: 8001,
                loopback_only: true
            },
            Listening {
                port: 8080,
                loopback_only: false
            },
        ]
    );
}

#[test]
fn changes_between_samples() {
    let before = vec![Listening {
        port: 80,
        loopback_only: false,
    }];
    let after = vec![Listening {
        port: 3000,
        loopback_only: true,
    }];
    assert_eq!(
        changes(&before, &after),
        vec![
            (
                Listening {
                    port: 3000,
                    loopback_only: true
                },
                true
            ),
            (
                Listening {
                    port: 80,
                    loopback_only: false
                },
                false
            )
        ]
    );
}
