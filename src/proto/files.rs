//! Conversions of the messages about the workspace's files: `Manifest`, `CloneRepository`, `ReadConfig`
//! and `GitState`. (`Upload` is carried as bytes and read by `agent::service` and `client::agent_client`.)

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
