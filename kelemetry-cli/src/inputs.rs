//! Which files to replay, and what each holds.
//!
//! A folder stands for the regular files below it. The walk takes what it can: an entry it cannot use (a symlink
//! loop, a dangling link, an unreadable file or folder, a FIFO, socket or device, a file or folder reached a second
//! time through a link) is skipped and reported, and the walk goes on. A path named on the command line is
//! different: the user asked for it, so a missing one, or one that is not a file or a folder (a FIFO would block the
//! replay until something writes to it), is an error naming it.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

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

/// Why a folder entry was left out of a replay.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum SkipKind {
    /// A link that leads back to a folder the walk is inside.
    SymlinkLoop,
    /// A link to nothing.
    DanglingLink,
    /// A file or folder that cannot be opened (permissions, I/O error).
    Unreadable,
    /// A FIFO, socket or device: not a recording, and reading a FIFO would wait for a writer.
    SpecialFile,
    /// A file or folder already taken through another path (a link to it): read once.
    ReachedTwice,
}

impl SkipKind {
    /// The words that name it on its own line.
    pub(crate) fn label(self) -> &'static str {
        match self {
            SkipKind::SymlinkLoop => "symlink loop",
            SkipKind::DanglingLink => "dangling link",
            SkipKind::Unreadable => "unreadable",
            SkipKind::SpecialFile => "special file",
            SkipKind::ReachedTwice => "reached twice",
        }
    }
    /// The words the summary counts it by, after the count (`2 special files`).
    pub(crate) fn counted(self) -> &'static str {
        match self {
            SkipKind::SymlinkLoop => "symlink loops",
            SkipKind::DanglingLink => "dangling links",
            SkipKind::Unreadable => "unreadable",
            SkipKind::SpecialFile => "special files",
            SkipKind::ReachedTwice => "reached twice",
        }
    }
}

/// A folder entry left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SkippedEntry {
    /// The entry as the walk reached it.
    pub(crate) path: PathBuf,
    /// The class of the problem.
    pub(crate) kind: SkipKind,
    /// What exactly.
    pub(crate) detail: String,
}

impl fmt::Display for SkippedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skipping {}: {} ({})",
            self.path.display(),
            self.kind.label(),
            self.detail
        )
    }
}

/// The files to replay, in order, and the folder entries left out.
#[derive(Clone, Debug, Default)]
pub(crate) struct Expansion {
    /// Regular files, each once.
    pub(crate) files: Vec<PathBuf>,
    /// Entries skipped on the way.
    pub(crate) skipped: Vec<SkippedEntry>,
}

/// The identity of a file or folder, to take each once however many links lead to it.
#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// What a file that is neither a regular file nor a folder is, in words.
fn special_kind(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "a device";
        }
    }
    let _ = file_type;
    "not a regular file"
}

/// Files named on the command line; a folder stands for every file below it, in name order, links followed (each
/// file and folder taken once).
pub(crate) fn expand(paths: &[PathBuf]) -> Result<Expansion, CliError> {
    let mut expansion = Expansion::default();
    let mut seen = HashSet::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| CliError::Io {
            path: path.clone(),
            source,
        })?;
        let first_time = identity(&meta).is_none_or(|id| seen.insert(id));
        if meta.is_dir() {
            if first_time {
                walk(path, &mut seen, &mut expansion);
            }
        } else if !meta.is_file() {
            return Err(CliError::Usage(format!(
                "{} is {}, not a file or a folder: replay reads recordings from files (save the stream to a \
                 file first)",
                path.display(),
                special_kind(meta.file_type())
            )));
        } else if first_time {
            expansion.files.push(path.clone());
        }
    }
    Ok(expansion)
}

/// Whether a folder entry's name says it is no recording: hidden files and folders, notes beside the recordings.
fn not_a_recording(entry: &walkdir::DirEntry) -> bool {
    let name = entry.file_name().to_string_lossy();
    entry.depth() > 0
        && (name.starts_with('.') || NOT_RECORDINGS.iter().any(|ext| name.ends_with(ext)))
}

fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>, out: &mut Expansion) {
    let mut entries = WalkDir::new(dir)
        .follow_links(true)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = entries.next() {
        let entry = match entry {
            Ok(entry) if not_a_recording(&entry) => {
                if entry.file_type().is_dir() {
                    entries.skip_current_dir();
                }
                continue;
            }
            Ok(entry) => entry,
            Err(error) => {
                out.skipped.push(walk_error(dir, error));
                continue;
            }
        };
        let path = entry.path().to_owned();
        let skip = |kind, detail: String| SkippedEntry {
            path: path.clone(),
            kind,
            detail,
        };
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(error) => {
                out.skipped.push(walk_error(dir, error));
                continue;
            }
        };
        let first_time = identity(&meta).is_none_or(|id| seen.insert(id));
        let file_type = entry.file_type();
        if !first_time {
            if file_type.is_dir() {
                entries.skip_current_dir();
            }
            out.skipped.push(skip(
                SkipKind::ReachedTwice,
                "already taken through another path".to_owned(),
            ));
        } else if file_type.is_dir() {
            // Walked into by the iterator.
        } else if !file_type.is_file() {
            out.skipped.push(skip(
                SkipKind::SpecialFile,
                special_kind(file_type).to_owned(),
            ));
        } else if let Err(error) = std::fs::File::open(&path) {
            out.skipped
                .push(skip(SkipKind::Unreadable, error.to_string()));
        } else {
            out.files.push(path);
        }
    }
}

/// A walk error as a skipped entry: a loop, a dangling link, or something unreadable.
fn walk_error(dir: &Path, error: walkdir::Error) -> SkippedEntry {
    let path = error.path().unwrap_or(dir).to_owned();
    if let Some(ancestor) = error.loop_ancestor() {
        let detail = format!("leads back to {}", ancestor.display());
        return SkippedEntry {
            path,
            kind: SkipKind::SymlinkLoop,
            detail,
        };
    }
    let is_link = std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink());
    let dangling = is_link && std::fs::metadata(&path).is_err();
    let detail = match error.io_error() {
        Some(io) => io.to_string(),
        None => error.to_string(),
    };
    if dangling {
        let target = std::fs::read_link(&path)
            .map(|target| format!("points to {}, which does not exist", target.display()))
            .unwrap_or(detail);
        SkippedEntry {
            path,
            kind: SkipKind::DanglingLink,
            detail: target,
        }
    } else {
        SkippedEntry {
            path,
            kind: SkipKind::Unreadable,
            detail,
        }
    }
}

/// Decides what `path` holds from its first 64 KiB: audit events carry `auditID` (JSON or YAML), or come in a
/// managed cluster's envelope (see [`holds_audit_envelope`]); an audit policy names `audit.k8s.io` and `kind:
/// Policy`; anything else is objects.
pub(crate) fn detect(path: &Path) -> Result<InputKind, CliError> {
    let mut head = Vec::with_capacity(64 * 1024);
    std::fs::File::open(path)
        .and_then(|file| file.take(64 * 1024).read_to_end(&mut head))
        .map_err(|source| CliError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok(kind_of_head(&head))
}

/// What a file whose first bytes are `head` holds.
fn kind_of_head(head: &[u8]) -> InputKind {
    let text = String::from_utf8_lossy(head);
    let audit_group = text.contains("audit.k8s.io/");
    let yaml_audit_id = text
        .lines()
        .any(|line| line.trim_start().starts_with("auditID:"));
    if text.contains("\"auditID\"") || yaml_audit_id || holds_audit_envelope(&text, head) {
        InputKind::Audit
    } else if audit_group && (text.contains("kind: Policy") || text.contains("\"kind\":\"Policy\""))
    {
        InputKind::AuditPolicy
    } else if audit_group {
        InputKind::Audit
    } else {
        InputKind::Objects
    }
}

/// Whether the start of a file shows a managed cluster's audit envelope (`kelemetry_sources::audit_envelope`):
/// a GKE LogEntry of the Kubernetes API (`protoPayload` and `k8s.io`, JSON or YAML), an AKS record of a
/// `kube-audit` category, an EKS subscription-filter record (`messageType` and `logEvents`) or audit log stream
/// (`kube-apiserver-audit`), a Lambda subscription event (`awslogs`), or gzip or base64 data (how Kinesis and
/// Firehose deliver subscription records; no object file is written so).
fn holds_audit_envelope(text: &str, head: &[u8]) -> bool {
    let gke = text.contains("protoPayload") && text.contains("k8s.io");
    let aks =
        text.contains("kube-audit") && (text.contains("category") || text.contains("Category"));
    let eks = (text.contains("messageType") && text.contains("logEvents"))
        || text.contains("kube-apiserver-audit")
        || text.contains("\"awslogs\"");
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let first_line = text.lines().next().unwrap_or_default().trim();
    let base64 = first_line.len() >= 64
        && first_line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    gke || aks || eks || gzip || base64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn audit_envelopes_and_yaml_audit_files_are_audit() {
        let audit = [
            "{\"protoPayload\":{\"serviceName\":\"k8s.io\",\"methodName\":\"io.k8s.core.v1.pods.create\"}}",
            "insertId: x\nprotoPayload:\n  serviceName: k8s.io\n",
            "{\"category\":\"kube-audit\",\"properties\":{\"log\":\"{\\\"kind\\\":\\\"Event\\\"}\"}}",
            "{\"messageType\":\"DATA_MESSAGE\",\"logGroup\":\"/aws/eks/c/cluster\",\"logEvents\":[]}",
            "{\"logStreamName\":\"kube-apiserver-audit-1\",\"message\":\"{}\"}",
            "apiVersion: audit.k8s.io/v1\nkind: Event\nauditID: a1\n",
            "kind: Event\nauditID: a1\nverb: get\n",
            "H4sIAAAAAAACA+1bC0/bShb+KyjaXe1KTOL3I1K1okB7WZUWEVqtWlA1nhmDF8f2tZ1Aivjve+ZhZ5I4EFqgvSqtBHhe58x5fuc4uemNWVXhc3YyK1hv2Nvb\n",
        ];
        for head in audit {
            assert_eq!(kind_of_head(head.as_bytes()), InputKind::Audit, "{head}");
        }
        assert_eq!(kind_of_head(&[0x1f, 0x8b, 8, 0, 0]), InputKind::Audit);
        let objects = [
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-audit-settings}\n",
            "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\",\"labels\":{\"app\":\"k8s.io\"}}}",
            "---\n# {\"time\": \"2024-05-01T12:00:00Z\"}\nkind: Event\nreason: Scheduled\n",
        ];
        for head in objects {
            assert_eq!(kind_of_head(head.as_bytes()), InputKind::Objects, "{head}");
        }
        assert_eq!(
            kind_of_head(b"apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n"),
            InputKind::AuditPolicy
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_walk_takes_what_it_can() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rec");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.yaml"), "x").unwrap();
        std::fs::write(root.join("sub/b.yaml"), "x").unwrap();
        std::fs::write(root.join("README.md"), "x").unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("c.yaml"), "x").unwrap();
        symlink(&outside, root.join("linked")).unwrap();
        symlink(&outside, root.join("linked-again")).unwrap();
        symlink(&root, root.join("sub/loop")).unwrap();
        symlink(dir.path().join("nowhere"), root.join("dangling.yaml")).unwrap();
        symlink(root.join("a.yaml"), root.join("z-alias.yaml")).unwrap();
        let fifo = root.join("pipe.yaml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());

        let expansion = expand(std::slice::from_ref(&root)).unwrap();
        let names: Vec<String> = expansion
            .files
            .iter()
            .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.yaml", "linked/c.yaml", "sub/b.yaml"]);
        let skipped: Vec<(String, SkipKind)> = expansion
            .skipped
            .iter()
            .map(|s| {
                let name = s.path.strip_prefix(&root).unwrap().display().to_string();
                (name, s.kind)
            })
            .collect();
        assert_eq!(
            skipped,
            [
                ("dangling.yaml".to_owned(), SkipKind::DanglingLink),
                ("linked-again".to_owned(), SkipKind::ReachedTwice),
                ("pipe.yaml".to_owned(), SkipKind::SpecialFile),
                ("sub/loop".to_owned(), SkipKind::SymlinkLoop),
                ("z-alias.yaml".to_owned(), SkipKind::ReachedTwice),
            ]
        );

        let named = expand(std::slice::from_ref(&fifo)).unwrap_err().to_string();
        assert!(
            named.starts_with(&format!("{} is a FIFO (named pipe)", fifo.display())),
            "{named}"
        );
    }
}
