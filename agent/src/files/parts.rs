//! Uploads in parts: a client with several connections (one Session Manager session each moves about 1 MB/s)
//! deals the compressed archive to them in stripes, stripe i to part i % parts, and sends each part as its own
//! `Upload` call. Each part is written to `uploads/<upload id>/part-<n>` in the state folder as it arrives; the call
//! that brings the last part reads the stripes back in order and unpacks them once (`crate::upload`). Every part's
//! call answers with the same outcome, so a missing part fails all of them: after `wait` without a byte from any
//! part, the upload fails with a message naming the missing parts, and what arrived is removed.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use skiff::api::Compression;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::upload::{self, Target, Unpacked, UploadError};

/// How long to wait for a missing part when the client does not say.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(120);
/// The longest wait a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// The largest stripe a client may ask for.
pub const MAX_STRIPE: u64 = 64 * 1024 * 1024;
/// The most parts an upload may have.
pub const MAX_PARTS: u32 = 64;

/// One part's description, from its `UploadStart`.
#[derive(Debug, Clone)]
pub struct PartSpec {
    /// The upload's id, shared by its parts.
    pub upload_id: String,
    /// Which part, from 0.
    pub part: u32,
    /// How many parts.
    pub parts: u32,
    /// The stripe size in bytes.
    pub stripe_size: u64,
    /// How long to wait for a missing part after the last byte of any part.
    pub wait: Duration,
    /// How the archive is compressed.
    pub compression: Compression,
    /// Paths to remove before unpacking (from the part that carries them).
    pub remove: Vec<String>,
    /// How the paths a sync writes or removes looked when it decided (from the part that carries them).
    pub expected: crate::upload::Expected,
}

impl PartSpec {
    fn check(&self) -> Result<(), UploadError> {
        let invalid = |what: String| Err(UploadError::Invalid(format!("UploadStart: {what}")));
        if self.upload_id.len() > 64
            || !self
                .upload_id
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || "-_".contains(character))
        {
            return invalid(format!(
                "field upload_id has invalid value {:?}; use up to 64 letters, digits, - and _",
                self.upload_id
            ));
        }
        if self.parts == 0 || self.parts > MAX_PARTS || self.part >= self.parts {
            return invalid(format!(
                "part {} of {} parts is out of range (at most {MAX_PARTS} parts)",
                self.part, self.parts
            ));
        }
        if self.stripe_size == 0 || self.stripe_size > MAX_STRIPE {
            return invalid(format!(
                "field stripe_size has invalid value {}; use 1 to {MAX_STRIPE}",
                self.stripe_size
            ));
        }
        Ok(())
    }
}

/// The outcome every part's call answers with.
type Outcome = Option<Result<Unpacked, String>>;

/// One upload in parts being received.
#[derive(Debug)]
struct Assembly {
    upload_id: String,
    parts: u32,
    stripe_size: u64,
    compression: Compression,
    wait: Duration,
    folder: PathBuf,
    state: Mutex<AssemblyState>,
    outcome: watch::Sender<Outcome>,
}

#[derive(Debug)]
struct AssemblyState {
    started: BTreeSet<u32>,
    arrived: BTreeSet<u32>,
    remove: Vec<String>,
    expected: crate::upload::Expected,
    last_bytes: Instant,
    unpacking: bool,
}

impl Assembly {
    fn part_file(&self, part: u32) -> PathBuf {
        self.folder.join(format!("part-{part}"))
    }

    fn touch(&self) {
        self.state.lock().expect("not poisoned").last_bytes = Instant::now();
    }

    fn finished(&self) -> bool {
        self.outcome.borrow().is_some()
    }

    /// Ends the upload with `outcome` (the first outcome wins) and removes its parts.
    fn finish(&self, outcome: Result<Unpacked, String>) {
        let mut first = false;
        self.outcome.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(outcome);
                first = true;
            }
            first
        });
        if first {
            let _ = std::fs::remove_dir_all(&self.folder);
        }
    }

    fn missing(&self) -> Vec<u32> {
        let state = self.state.lock().expect("not poisoned");
        (0..self.parts)
            .filter(|part| !state.arrived.contains(part))
            .collect()
    }
}

/// The uploads in parts an agent is receiving.
#[derive(Debug, Default)]
pub struct Uploads {
    active: Mutex<HashMap<String, Arc<Assembly>>>,
}

impl Uploads {
    /// Receives one part: writes `chunks` under `parts_root`, and once every part has arrived unpacks the whole
    /// into `target`. Answers when the whole upload has ended, with its outcome.
    pub async fn receive(
        &self,
        spec: PartSpec,
        parts_root: &Path,
        target: &Target,
        chunks: impl Stream<Item = Result<Vec<u8>, String>>,
    ) -> Result<Unpacked, UploadError> {
        spec.check()?;
        let upload_id = spec.upload_id.clone();
        let failed = |reason: String| UploadError::Parts {
            upload_id: upload_id.clone(),
            reason,
        };
        let assembly = self.join(&spec, parts_root).map_err(&failed)?;
        let mut outcome = assembly.outcome.subscribe();

        // Write this part as it comes.
        let written = write_part(&assembly, spec.part, chunks).await;
        if let Err(reason) = written {
            let reason = format!("part {} of {} broke off: {reason}", spec.part, spec.parts);
            assembly.finish(Err(reason));
            self.forget(&assembly);
        } else {
            let complete = {
                let mut state = assembly.state.lock().expect("not poisoned");
                state.arrived.insert(spec.part);
                state.last_bytes = Instant::now();
                let complete = state.arrived.len() == assembly.parts as usize && !state.unpacking;
                if complete {
                    state.unpacking = true;
                }
                complete
            };
            if complete {
                let result = unpack_parts(&assembly, target).await;
                assembly.finish(result.map_err(|error| error.to_string()));
                self.forget(&assembly);
            }
        }

        // Wait for the outcome, failing the upload when no part brought a byte for `wait`.
        loop {
            if let Some(result) = outcome.borrow_and_update().clone() {
                return result.map_err(&failed);
            }
            let deadline = {
                let state = assembly.state.lock().expect("not poisoned");
                (!state.unpacking).then(|| state.last_bytes + assembly.wait)
            };
            let timeout = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = outcome.changed() => {
                    if changed.is_err() {
                        return Err(failed("the upload was abandoned".into()));
                    }
                }
                () = timeout => {
                    let expired = {
                        let state = assembly.state.lock().expect("not poisoned");
                        !state.unpacking && state.last_bytes.elapsed() >= assembly.wait
                    };
                    if expired {
                        let missing = assembly.missing();
                        let arrived = assembly.parts as usize - missing.len();
                        assembly.finish(Err(format!(
                            "part{} {} of {} did not arrive within {}s of the last bytes; the {arrived} part{} that came {} removed",
                            if missing.len() == 1 { "" } else { "s" },
                            missing.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
                            assembly.parts,
                            assembly.wait.as_secs(),
                            if arrived == 1 { "" } else { "s" },
                            if arrived == 1 { "was" } else { "were" },
                        )));
                        self.forget(&assembly);
                    }
                }
            }
        }
    }

    /// The assembly of `spec`'s upload, made on its first part; refuses a part that does not fit it.
    fn join(&self, spec: &PartSpec, parts_root: &Path) -> Result<Arc<Assembly>, String> {
        let mut active = self.active.lock().expect("not poisoned");
        let assembly = match active.get(&spec.upload_id) {
            Some(assembly) => assembly.clone(),
            None => {
                // Parts left by an earlier life of the agent can never complete.
                if let Ok(entries) = std::fs::read_dir(parts_root) {
                    for entry in entries.flatten() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        if !active.contains_key(&name) {
                            let _ = std::fs::remove_dir_all(entry.path());
                        }
                    }
                }
                let folder = parts_root.join(&spec.upload_id);
                std::fs::create_dir_all(&folder)
                    .map_err(|error| format!("making {}: {error}", folder.display()))?;
                let assembly = Arc::new(Assembly {
                    upload_id: spec.upload_id.clone(),
                    parts: spec.parts,
                    stripe_size: spec.stripe_size,
                    compression: spec.compression,
                    wait: spec.wait,
                    folder,
                    state: Mutex::new(AssemblyState {
                        started: BTreeSet::new(),
                        arrived: BTreeSet::new(),
                        remove: Vec::new(),
                        expected: crate::upload::Expected::new(),
                        last_bytes: Instant::now(),
                        unpacking: false,
                    }),
                    outcome: watch::Sender::new(None),
                });
                active.insert(spec.upload_id.clone(), assembly.clone());
                assembly
            }
        };
        if assembly.parts != spec.parts
            || assembly.stripe_size != spec.stripe_size
            || assembly.compression != spec.compression
        {
            return Err(format!(
                "part {} says {} parts of {} bytes ({:?}) but an earlier part said {} parts of {} bytes ({:?})",
                spec.part,
                spec.parts,
                spec.stripe_size,
                spec.compression,
                assembly.parts,
                assembly.stripe_size,
                assembly.compression
            ));
        }
        let mut state = assembly.state.lock().expect("not poisoned");
        if !state.started.insert(spec.part) {
            return Err(format!("part {} arrived twice", spec.part));
        }
        state.remove.extend(spec.remove.iter().cloned());
        state.expected.extend(
            spec.expected
                .iter()
                .map(|(path, stamp)| (path.clone(), stamp.clone())),
        );
        state.last_bytes = Instant::now();
        drop(state);
        Ok(assembly)
    }

    fn forget(&self, assembly: &Assembly) {
        let mut active = self.active.lock().expect("not poisoned");
        if active
            .get(&assembly.upload_id)
            .is_some_and(|current| std::ptr::eq(current.as_ref(), assembly))
        {
            active.remove(&assembly.upload_id);
        }
    }
}

/// Writes one part's chunks to its file; an error says why the part is incomplete.
async fn write_part(
    assembly: &Assembly,
    part: u32,
    chunks: impl Stream<Item = Result<Vec<u8>, String>>,
) -> Result<(), String> {
    let path = assembly.part_file(part);
    let write_error = |error: std::io::Error| {
        if error.kind() == std::io::ErrorKind::StorageFull {
            let folder = path.parent().unwrap_or(&path);
            format!("{} while receiving it", upload::disk_full_message(folder))
        } else {
            format!("writing {}: {error}", path.display())
        }
    };
    let file = tokio::fs::File::create(&path).await.map_err(write_error)?;
    let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, file);
    let mut chunks = std::pin::pin!(chunks);
    while let Some(chunk) = chunks.next().await {
        if assembly.finished() {
            return Err("the upload already ended".into());
        }
        let chunk = chunk?;
        file.write_all(&chunk).await.map_err(write_error)?;
        assembly.touch();
    }
    file.flush().await.map_err(write_error)?;
    Ok(())
}

/// Reads the parts back as one archive and unpacks it.
async fn unpack_parts(assembly: &Assembly, target: &Target) -> Result<Unpacked, UploadError> {
    let files: Vec<PathBuf> = (0..assembly.parts)
        .map(|part| assembly.part_file(part))
        .collect();
    let stripe_size = assembly.stripe_size;
    let compression = assembly.compression;
    let (remove, expected) = {
        let state = assembly.state.lock().expect("not poisoned");
        (state.remove.clone(), state.expected.clone())
    };
    let target = target.clone();
    tokio::task::spawn_blocking(move || {
        let reader =
            StripedReader::open(&files, stripe_size).map_err(|source| UploadError::Unpack {
                folder: target.folder.clone(),
                source,
            })?;
        upload::unpack_reader(
            &target.folder,
            Some(&target.record),
            compression,
            reader,
            &remove,
            &expected,
        )
    })
    .await
    .expect("the unpack task does not panic")
}

/// The archive read back from its part files: stripe i from part i % parts, until a part runs out.
pub struct StripedReader {
    parts: Vec<std::io::BufReader<std::fs::File>>,
    stripe_size: u64,
    current: usize,
    left_in_stripe: u64,
    ended: bool,
}

impl StripedReader {
    /// Opens the part files, in part order.
    pub fn open(files: &[PathBuf], stripe_size: u64) -> std::io::Result<Self> {
        let parts = files
            .iter()
            .map(|file| {
                std::fs::File::open(file)
                    .map(|file| std::io::BufReader::with_capacity(256 * 1024, file))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            parts,
            stripe_size,
            current: 0,
            left_in_stripe: stripe_size,
            ended: false,
        })
    }
}

impl Read for StripedReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.ended || buffer.is_empty() {
            return Ok(0);
        }
        if self.left_in_stripe == 0 {
            self.current = (self.current + 1) % self.parts.len();
            self.left_in_stripe = self.stripe_size;
        }
        let wanted = buffer
            .len()
            .min(usize::try_from(self.left_in_stripe).unwrap_or(usize::MAX));
        let read = self.parts[self.current].read(&mut buffer[..wanted])?;
        if read == 0 {
            // Only the archive's last stripe is short, so a part that runs out ends the archive.
            self.ended = true;
        }
        self.left_in_stripe -= read as u64;
        Ok(read)
    }
}
