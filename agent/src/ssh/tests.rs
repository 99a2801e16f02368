//! The SSH server's pure parts: which keys it accepts, how requests become `exec` specifications, signal
//! names, and where `direct-tcpip` goes.

use super::*;
