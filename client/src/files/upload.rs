//! Sending a folder: packed as it is sent, over one `Upload` call, or, with several connections, dealt in stripes
//! of `STRIPE_SIZE` bytes to one `Upload` call per connection (stripe i to part i % parts), so N Session Manager
//! sessions carry it about N times as fast. The agent puts the stripes back in order and unpacks once; each call
//! answers when the whole upload is in place.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use skiff::api::{FileStamp, capability};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Entry, FilesError, Packed, pack, walk};
use crate::agent_client::{AgentClient, ArchiveCompression, UploadHeader, UploadPart};

/// Stripe i of the archive goes to connection i % connections; each stripe is one message.
pub const STRIPE_SIZE: usize = 256 * 1024;

/// How far an upload has got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Entries packed so far.
    pub entries: u64,
    /// Bytes of file content packed so far.
    pub bytes: u64,
    /// Compressed bytes handed to the connections so far.
    pub sent: u64,
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOutcome {
    /// The files folder on the agent's machine: `UpRequest.files_folder`.
    pub files_folder: String,
    /// Entries sent (files, folders, links).
    pub entries: u64,
    /// Files the agent wrote.
    pub files: u64,
    /// Bytes of file content the agent wrote.
    pub bytes: u64,
    /// Compressed bytes sent.
    pub compressed: u64,
    /// Paths the agent removed (sync).
    pub removed: u64,
    /// Paths the agent left as they were because they changed there after the sync decided (sync).
    pub conflicts: Vec<String>,
    /// How many connections carried it.
    pub parts: u32,
    /// How long it took, walking and packing included.
    pub elapsed: Duration,
}

/// Sends `folder` (as `walk` lists it) to the agent behind `clients`: over one call with one client, in stripes over
/// all of them with several (when the agent can take parts). Files already in the agent's files folder are
/// overwritten; others are left alone (`sync` removes what was deleted here).
pub async fn upload(
    clients: &mut [AgentClient],
    folder: &Path,
    progress: &(dyn Fn(&Transfer) + Sync),
) -> Result<UploadOutcome, FilesError> {
    let started = Instant::now();
    let owned = folder.to_owned();
    let entries = tokio::task::spawn_blocking(move || walk(&owned))
        .await
        .expect("the walk does not panic")?;
    let mut outcome = send(clients, entries, Vec::new(), Vec::new(), progress).await?;
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// Counters the packing thread updates and the progress ticker reads.
#[derive(Debug, Default)]
struct Counters {
    entries: AtomicU64,
    bytes: AtomicU64,
    sent: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Transfer {
        Transfer {
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
        }
    }
}

/// Packs `entries` and sends them, with `remove` for the agent to remove first and `expected` for it to check
/// each path against right before it writes or removes it.
pub(super) async fn send(
    clients: &mut [AgentClient],
    entries: Vec<Entry>,
    remove: Vec<String>,
    expected: Vec<(String, Option<FileStamp>)>,
    progress: &(dyn Fn(&Transfer) + Sync),
) -> Result<UploadOutcome, FilesError> {
    let started = Instant::now();
    let Some(first) = clients.first_mut() else {
        return Err(FilesError::Other(
            "an upload needs at least one connection to the agent".into(),
        ));
    };
    let version = first.version().await?;
    let can = |name: &str| version.capabilities.iter().any(|have| have == name);
    let compression = if can(capability::UPLOAD_TAR_ZSTD) {
        ArchiveCompression::Zstd
    } else {
        ArchiveCompression::Gzip
    };
    if !remove.is_empty() && !can(capability::UPLOAD_PARTS) {
        return Err(FilesError::Unsupported {
            agent_version: version.agent_version,
            what: "remove files on sync",
        });
    }
    let pooled = clients.len() > 1 && can(capability::UPLOAD_PARTS);
    let parts = if pooled { clients.len() } else { 1 };
    let upload_id = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos())
    );

    let counters = Arc::new(Counters::default());
    let mut senders = Vec::with_capacity(parts);
    let mut receivers = Vec::with_capacity(parts);
    for _ in 0..parts {
        let (sender, receiver) = mpsc::channel::<Vec<u8>>(4);
        senders.push(sender);
        receivers.push(receiver);
    }
    let packing = {
        let counters = counters.clone();
        tokio::task::spawn_blocking(move || {
            let sink = StripeSink {
                senders,
                buffer: Vec::with_capacity(STRIPE_SIZE),
                next: 0,
            };
            pack(&entries, compression, sink, |packed: &Packed| {
                counters.entries.store(packed.entries, Ordering::Relaxed);
                counters.bytes.store(packed.bytes, Ordering::Relaxed);
            })
        })
    };
    let calls = clients
        .iter_mut()
        .take(parts)
        .zip(receivers)
        .enumerate()
        .map(|(index, (client, receiver))| {
            let part = u32::try_from(index).expect("few parts");
            let header = UploadHeader {
                compression,
                size: 0,
                part: pooled.then(|| UploadPart {
                    upload_id: upload_id.clone(),
                    part,
                    parts: u32::try_from(parts).expect("few parts"),
                    stripe_size: STRIPE_SIZE as u64,
                    wait_seconds: 0,
                }),
                remove: if index == 0 {
                    remove.clone()
                } else {
                    Vec::new()
                },
                expected: if index == 0 {
                    expected.clone()
                } else {
                    Vec::new()
                },
            };
            let counters = counters.clone();
            let stream = ReceiverStream::new(receiver).inspect(move |chunk| {
                counters
                    .sent
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            });
            client.upload_with(header, stream)
        });
    let transfer = futures::future::try_join_all(calls);
    let mut transfer = std::pin::pin!(transfer);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let replies = loop {
        tokio::select! {
            replies = &mut transfer => break replies,
            _ = ticker.tick() => progress(&counters.snapshot()),
        }
    };
    let packed = packing.await.expect("packing does not panic");
    // A file that could not be read is the real cause; a closed connection shows up on both sides.
    let (replies, packed) = match (replies, packed) {
        (_, Err(error @ FilesError::Read { .. })) => return Err(error),
        (Err(error), _) => return Err(error.into()),
        (_, Err(error)) => return Err(error),
        (Ok(replies), Ok(packed)) => (replies, packed),
    };
    progress(&counters.snapshot());
    let reply = replies.into_iter().next().expect("at least one part");
    Ok(UploadOutcome {
        files_folder: reply.files_folder,
        entries: packed.entries,
        files: reply.files,
        bytes: reply.bytes,
        compressed: counters.sent.load(Ordering::Relaxed),
        removed: reply.removed,
        conflicts: reply.conflicts,
        parts: reply.parts,
        elapsed: started.elapsed(),
    })
}

/// Deals the compressed archive in stripes to the parts' channels, in turn.
struct StripeSink {
    senders: Vec<mpsc::Sender<Vec<u8>>>,
    buffer: Vec<u8>,
    next: usize,
}

impl StripeSink {
    fn deal(&mut self) -> std::io::Result<()> {
        let stripe = std::mem::replace(&mut self.buffer, Vec::with_capacity(STRIPE_SIZE));
        self.senders[self.next].blocking_send(stripe).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the connection carrying this part closed",
            )
        })?;
        self.next = (self.next + 1) % self.senders.len();
        Ok(())
    }
}

impl std::io::Write for StripeSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let take = (STRIPE_SIZE - self.buffer.len()).min(rest.len());
            self.buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buffer.len() == STRIPE_SIZE {
                self.deal()?;
            }
        }
        Ok(data.len())
    }

    /// Stripes must stay whole (the agent cuts the parts at stripe boundaries), so only the end sends a short one.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for StripeSink {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            // A failure here means the part's connection closed; that call reports it.
            let _ = self.deal();
        }
    }
}
