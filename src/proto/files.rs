//! Conversions of the messages about the workspace's files: `Upload`'s start and answer, `Manifest`,
//! `CloneRepository`, `ReadConfig` and `GitState`. (An upload's chunks are bytes, carried as they are.)

use super::{ProtoError, v1};
use crate::api;

impl From<api::FileKind> for v1::FileKind {
    fn from(kind: api::FileKind) -> Self {
        match kind {
            api::FileKind::File => Self::File,
            api::FileKind::Directory => Self::Directory,
            api::FileKind::Symlink => Self::Symlink,
        }
    }
}

impl From<api::FileStamp> for v1::FileStamp {
    fn from(stamp: api::FileStamp) -> Self {
        Self {
            kind: v1::FileKind::from(stamp.kind).into(),
            size: stamp.size,
            mtime_unix_seconds: stamp.mtime,
            mode: stamp.mode,
            link_target: stamp.link_target,
        }
    }
}

impl TryFrom<v1::FileStamp> for api::FileStamp {
    type Error = ProtoError;

    fn try_from(stamp: v1::FileStamp) -> Result<Self, ProtoError> {
        let kind = match v1::FileKind::try_from(stamp.kind) {
            Ok(v1::FileKind::File) => api::FileKind::File,
            Ok(v1::FileKind::Directory) => api::FileKind::Directory,
            Ok(v1::FileKind::Symlink) => api::FileKind::Symlink,
            _ => {
                return Err(ProtoError::Invalid {
                    message: "FileStamp",
                    field: "kind",
                    value: stamp.kind.to_string(),
                });
            }
        };
        Ok(Self {
            kind,
            size: stamp.size,
            mtime: stamp.mtime_unix_seconds,
            mode: stamp.mode,
            link_target: stamp.link_target,
        })
    }
}

impl From<api::ManifestEntry> for v1::ManifestEntry {
    fn from(entry: api::ManifestEntry) -> Self {
        Self {
            path: entry.path,
            current: entry.current.map(Into::into),
            uploaded: entry.uploaded.map(Into::into),
            sha256: entry.sha256.map(|hash| hash.to_vec()).unwrap_or_default(),
        }
    }
}

impl TryFrom<v1::ManifestEntry> for api::ManifestEntry {
    type Error = ProtoError;

    fn try_from(entry: v1::ManifestEntry) -> Result<Self, ProtoError> {
        let sha256 = match entry.sha256.len() {
            0 => None,
            32 => Some(<[u8; 32]>::try_from(entry.sha256.as_slice()).expect("32 bytes")),
            length => {
                return Err(ProtoError::Invalid {
                    message: "ManifestEntry",
                    field: "sha256",
                    value: format!("{length} bytes"),
                });
            }
        };
        if entry.path.is_empty() {
            return Err(ProtoError::Missing {
                message: "ManifestEntry",
                field: "path",
            });
        }
        Ok(Self {
            path: entry.path,
            current: entry.current.map(TryInto::try_into).transpose()?,
            uploaded: entry.uploaded.map(TryInto::try_into).transpose()?,
            sha256,
        })
    }
}

impl From<api::CloneEvent> for v1::CloneRepositoryResponse {
    fn from(event: api::CloneEvent) -> Self {
        use v1::clone_repository_response::Event;
        Self {
            event: Some(match event {
                api::CloneEvent::Output(data) => Event::Output(data),
                api::CloneEvent::Done(cloned) => Event::Done(v1::CloneRepositoryResult {
                    files_folder: cloned.files_folder,
                    cloned: cloned.cloned,
                    head: cloned.head.unwrap_or_default(),
                }),
            }),
        }
    }
}

impl TryFrom<v1::CloneRepositoryResponse> for api::CloneEvent {
    type Error = ProtoError;

    fn try_from(response: v1::CloneRepositoryResponse) -> Result<Self, ProtoError> {
        use v1::clone_repository_response::Event;
        match response.event {
            Some(Event::Output(data)) => Ok(Self::Output(data)),
            Some(Event::Done(done)) => Ok(Self::Done(api::Cloned {
                files_folder: done.files_folder,
                cloned: done.cloned,
                head: super::non_empty(done.head),
            })),
            None => Err(ProtoError::Missing {
                message: "CloneRepositoryResponse",
                field: "event",
            }),
        }
    }
}

impl From<api::RemoteConfig> for v1::ReadConfigResponse {
    fn from(config: api::RemoteConfig) -> Self {
        Self {
            files_folder: config.files_folder,
            config_path: config.config_path,
            text: config.text,
        }
    }
}

impl From<v1::ReadConfigResponse> for api::RemoteConfig {
    fn from(response: v1::ReadConfigResponse) -> Self {
        Self {
            files_folder: response.files_folder,
            config_path: response.config_path,
            text: response.text,
        }
    }
}

impl From<api::GitState> for v1::GitStateResponse {
    fn from(state: api::GitState) -> Self {
        Self {
            repository: state.repository,
            uncommitted: state.uncommitted,
            uncommitted_paths: state.uncommitted_paths,
            unpushed: state
                .unpushed
                .into_iter()
                .map(|branch| v1::UnpushedBranch {
                    branch: branch.branch,
                    commits: branch.commits,
                    upstream: branch.upstream.unwrap_or_default(),
                })
                .collect(),
            stashes: state.stashes,
        }
    }
}

impl From<v1::GitStateResponse> for api::GitState {
    fn from(response: v1::GitStateResponse) -> Self {
        Self {
            repository: response.repository,
            uncommitted: response.uncommitted,
            uncommitted_paths: response.uncommitted_paths,
            unpushed: response
                .unpushed
                .into_iter()
                .map(|branch| api::UnpushedBranch {
                    branch: branch.branch,
                    commits: branch.commits,
                    upstream: super::non_empty(branch.upstream),
                })
                .collect(),
            stashes: response.stashes,
        }
    }
}

impl From<api::Compression> for v1::Compression {
    fn from(compression: api::Compression) -> Self {
        match compression {
            api::Compression::None => Self::None,
            api::Compression::Gzip => Self::Gzip,
            api::Compression::Zstd => Self::Zstd,
        }
    }
}

impl From<api::UploadHeader> for v1::UploadStart {
    fn from(header: api::UploadHeader) -> Self {
        let part = header.part.unwrap_or(api::UploadPart {
            upload_id: String::new(),
            part: 0,
            parts: 0,
            stripe_size: 0,
            wait_seconds: 0,
        });
        Self {
            compression: v1::Compression::from(header.compression).into(),
            size: header.size,
            upload_id: part.upload_id,
            part: part.part,
            parts: part.parts,
            stripe_size: part.stripe_size,
            wait_seconds: part.wait_seconds,
            remove: header.remove,
            expected: header
                .expected
                .into_iter()
                .map(|(path, current)| v1::ExpectedPath {
                    path,
                    current: current.map(Into::into),
                })
                .collect(),
        }
    }
}

impl From<api::UploadHeader> for v1::UploadRequest {
    fn from(header: api::UploadHeader) -> Self {
        Self {
            message: Some(v1::upload_request::Message::Start(header.into())),
        }
    }
}

/// An upload's start; an empty `upload_id` means the whole archive comes in this one call.
impl TryFrom<v1::UploadStart> for api::UploadHeader {
    type Error = ProtoError;

    fn try_from(start: v1::UploadStart) -> Result<Self, ProtoError> {
        let compression = match v1::Compression::try_from(start.compression) {
            Ok(v1::Compression::None) => api::Compression::None,
            Ok(v1::Compression::Gzip) => api::Compression::Gzip,
            Ok(v1::Compression::Zstd) => api::Compression::Zstd,
            _ => {
                return Err(ProtoError::Invalid {
                    message: "UploadStart",
                    field: "compression",
                    value: start.compression.to_string(),
                });
            }
        };
        let expected = start
            .expected
            .into_iter()
            .map(|path| {
                let stamp = path.current.map(api::FileStamp::try_from).transpose()?;
                Ok((path.path, stamp))
            })
            .collect::<Result<_, ProtoError>>()?;
        Ok(Self {
            compression,
            size: start.size,
            part: (!start.upload_id.is_empty()).then_some(api::UploadPart {
                upload_id: start.upload_id,
                part: start.part,
                parts: start.parts,
                stripe_size: start.stripe_size,
                wait_seconds: start.wait_seconds,
            }),
            remove: start.remove,
            expected,
        })
    }
}

impl From<api::UploadReply> for v1::UploadResponse {
    fn from(reply: api::UploadReply) -> Self {
        Self {
            files_folder: reply.files_folder,
            files: reply.files,
            bytes: reply.bytes,
            removed: reply.removed,
            parts: reply.parts,
            conflicts: reply.conflicts,
        }
    }
}

/// An older agent reports no parts: its uploads came in one.
impl From<v1::UploadResponse> for api::UploadReply {
    fn from(response: v1::UploadResponse) -> Self {
        Self {
            files_folder: response.files_folder,
            files: response.files,
            bytes: response.bytes,
            removed: response.removed,
            parts: response.parts.max(1),
            conflicts: response.conflicts,
        }
    }
}
