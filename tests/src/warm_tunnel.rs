//! A warm tunnel served in the test's process the way `skiff tunnel-daemon` serves it (`warm::serve` with
//! sessions from `Tunnel::open`), and a dial through its socket, for the tunnel tests and the benchmark.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use skiff_client::tunnel::ssm::{Target, Tunnel};
use skiff_client::tunnel::warm::{self, Carrier, Opener};
use skiff_client::tunnel::{BoxIo, Dial};

/// The daemon's folder and socket; the daemon is a task of the test's runtime and ends with it.
pub struct WarmTunnel {
    _folder: tempfile::TempDir,
    socket: PathBuf,
}

impl WarmTunnel {
    /// Serves `first` as lane 0 and opens any other session (a pool lane, or a lane whose session ended)
    /// to `target` through `sdk`'s endpoint.
    pub fn start(sdk: &aws_config::SdkConfig, target: &Target, first: Tunnel) -> Self {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let socket = warm::socket_path(folder.path());
        let listener = warm::bind(&socket).expect("binding the warm tunnel's socket");
        let opener: Opener = {
            let sdk = sdk.clone();
            let target = target.clone();
            Arc::new(move |_lane| {
                let sdk = sdk.clone();
                let target = target.clone();
                Box::pin(async move {
                    Ok(Box::new(Tunnel::open(&sdk, &target, true).await?) as Box<dyn Carrier>)
                })
            })
        };
        tokio::spawn(warm::serve(
            listener,
            opener,
            Box::new(first),
            Duration::from_secs(600),
        ));
        Self {
            _folder: folder,
            socket,
        }
    }

    /// Streams to the agent on `lane` of the daemon, as a command makes them.
    pub fn dial(&self, lane: u8) -> Dial {
        let socket = self.socket.clone();
        Arc::new(move || {
            let socket = socket.clone();
            Box::pin(async move {
                let stream = warm::connect(&socket, lane)
                    .await?
                    .ok_or_else(|| std::io::Error::other("no warm tunnel daemon"))?;
                Ok(Box::new(stream) as BoxIo)
            })
        })
    }
}
