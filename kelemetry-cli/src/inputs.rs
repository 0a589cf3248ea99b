//! Which files to replay, and what each holds.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::CliError;

/// What a recorded file holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum InputKind {
    /// Decide by looking at the file.
    Auto,
    /// apiserver audit events (JSON lines or `EventList` documents).
    Audit,
    /// Kubernetes objects and Events (YAML or JSON streams, lists, watch events).
    Objects,
    /// An audit policy: configuration, not a recording; skipped.
    #[value(skip)]
    AuditPolicy,
}

/// File name endings skipped when a folder is expanded: documentation, not recordings. A file named on the
/// command line is always read.
const NOT_RECORDINGS: &[&str] = &[".md", ".txt", ".sh"];

/// Files named on the command line; a folder stands for every file below it, in name order.
pub(crate) fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| CliError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Hidden files and notes beside the recordings (a README) are not recordings.
        if name.starts_with('.') || NOT_RECORDINGS.iter().any(|ext| name.ends_with(ext)) {
            continue;
        }
        if entry.file_type().map_err(io)?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Decides what `path` holds from its first 64 KiB: audit events carry `auditID`.
pub(crate) fn detect(path: &Path) -> Result<InputKind, CliError> {
    let mut head = Vec::with_capacity(64 * 1024);
    std::fs::File::open(path)
        .and_then(|file| file.take(64 * 1024).read_to_end(&mut head))
        .map_err(|source| CliError::Io {
            path: path.to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&head);
    let audit_group = text.contains("audit.k8s.io/");
    if text.contains("\"auditID\"") {
        Ok(InputKind::Audit)
    } else if audit_group && (text.contains("kind: Policy") || text.contains("\"kind\":\"Policy\""))
    {
        Ok(InputKind::AuditPolicy)
    } else if audit_group {
        Ok(InputKind::Audit)
    } else {
        Ok(InputKind::Objects)
    }
}
