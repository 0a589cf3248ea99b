//! [`CheckpointFile`]: where a file-following source stores how far it got, so a restart resumes there.
//!
//! The checkpoint is a small JSON document ([`FileCheckpoint`]: the followed path, the inode of the file that was
//! being read, the byte offset just past the last line the pipeline accepted, and that line's number). It is
//! replaced atomically (written to a temporary file beside it, synced, then renamed), so a crash leaves either
//! the old or the new checkpoint, never a torn one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How far a follower got in a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    /// The followed path (the name; after a rotation the data may be in a renamed file with the same inode).
    pub path: PathBuf,
    /// The inode of the file that was being read.
    pub inode: u64,
    /// Bytes of that file fully handled: the offset just past the last line the pipeline accepted.
    pub offset: u64,
    /// Lines of that file fully handled (the next line read is `line + 1`).
    pub line: u64,
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoint {}: {source}", path.display())]
    Io {
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a checkpoint.
    #[error("checkpoint {}: not a checkpoint written by kelemetry: {source}", path.display())]
    Malformed {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
}

/// A checkpoint stored in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    /// The checkpoint kept at `path` (its folder must exist; the file is created on the first store).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where it is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored checkpoint, or `None` when none was stored yet.
    pub async fn load(&self) -> Result<Option<FileCheckpoint>, CheckpointError> {
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| CheckpointError::Malformed {
                path: self.path.clone(),
                source,
            })
    }

    /// Replaces the stored checkpoint atomically.
    pub async fn store(&self, checkpoint: &FileCheckpoint) -> Result<(), CheckpointError> {
        use tokio::io::AsyncWriteExt;

        let io = |source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        };
        let mut text =
            serde_json::to_vec(checkpoint).map_err(|source| CheckpointError::Malformed {
                path: self.path.clone(),
                source,
            })?;
        text.push(b'\n');
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut file = tokio::fs::File::create(&temporary).await.map_err(io)?;
        file.write_all(&text).await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        drop(file);
        tokio::fs::rename(&temporary, &self.path).await.map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_and_loads() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = CheckpointFile::new(dir.path().join("audit.checkpoint"));
        assert_eq!(file.load().await.expect("loads"), None);
        let checkpoint = FileCheckpoint {
            path: "/var/log/audit.log".into(),
            inode: 42,
            offset: 1234,
            line: 7,
        };
        file.store(&checkpoint).await.expect("stores");
        assert_eq!(file.load().await.expect("loads"), Some(checkpoint));
        std::fs::write(file.path(), "{\"path\": 3}").expect("writes");
        let err = file.load().await.expect_err("malformed");
        assert!(err.to_string().contains("not a checkpoint"), "{err}");
    }
}
