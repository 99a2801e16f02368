//! An exclusive lock on a file (`flock`), held while its value lives: one process at a time does what it
//! guards (one agent per state folder, one command starting a workspace's agent). The kernel drops it when the
//! process ends however it ends, so a crash never leaves it held.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct Lock {
    _held: Flock<File>,
    path: PathBuf,
}

impl Lock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the lock at `path` (making the file if needed) if nobody holds it; `None` if another holds it.
pub fn try_lock(path: &Path) -> io::Result<Option<Lock>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(Some(Lock {
            _held: held,
            path: path.to_owned(),
        })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(io::Error::from(errno)),
    }
}

/// Takes the lock at `path`, waiting up to `timeout` for whoever holds it; a `TimedOut` error after that.
pub async fn lock(path: &Path, timeout: Duration) -> io::Result<Lock> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(lock) = try_lock(path)? {
            return Ok(lock);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} is still held by another process after {timeout:?}",
                    path.display()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn one_holder_at_a_time_and_free_again_once_dropped() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("agent.lock");
        let first = super::try_lock(&path).unwrap().expect("free at first");
        assert!(
            super::try_lock(&path).unwrap().is_none(),
            "held by the first"
        );
        drop(first);
        assert!(super::try_lock(&path).unwrap().is_some(), "free again");
    }

    #[tokio::test]
    async fn a_waiter_gets_it_when_the_holder_lets_go_and_times_out_otherwise() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("start.lock");
        let held = super::try_lock(&path).unwrap().unwrap();
        let error = super::lock(&path, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        let taken = super::lock(&path, Duration::from_secs(5))
            .await
            .expect("taken once released");
        assert_eq!(taken.path(), path);
        releaser.join().unwrap();
    }
}
