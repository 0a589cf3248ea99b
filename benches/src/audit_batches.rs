//! Recorded-shape audit batches for the load generators, and what `/proc` tells about the process under test.
//!
//! The events are copies of a recorded apiserver audit log (by default
//! `fixtures/recorded/deployment-lifecycle/audit.log`): copy `k` gets audit ids of its own (a prefix and the event's
//! number), the namespace `bench-k` instead of `default`, and uids of its own, so every copy writes objects of its
//! own. Each recorded line is serialised once with placeholders and cut at them ([`Templates::load`]), so an event
//! is a concatenation ([`Templates::write_event`]) and an `EventList` of many is cheap to make
//! ([`Templates::event_list`]).
//!
//! [`cpu_seconds`] and [`memory_kib`] read `/proc/PID/stat` and `/proc/PID/status` of another process.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Placeholders cut out of the serialised template lines (none occurs in a recording).
const AUDIT_ID_TOKEN: &str = "@@BENCH_AUDIT_ID@@";
const NAMESPACE_TOKEN: &str = "@@BENCH_NAMESPACE@@";
const COPY_TOKEN: &str = "@@BENCH_COPY@@";
/// The recorded namespace that every copy replaces with its own.
const RECORDED_NAMESPACE: &str = "default";

/// Why a recording could not be made into templates.
#[derive(Debug, thiserror::Error)]
pub enum BatchesError {
    /// The recording could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The recording's path.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A line of the recording is no JSON, or could not be written back.
    #[error("{path} line {line}: {source}")]
    Json {
        /// The recording's path.
        path: String,
        /// The line's number, from 1.
        line: usize,
        /// Why it failed.
        source: serde_json::Error,
    },
    /// A line of the recording is JSON but no object.
    #[error("{path} line {line}: not a JSON object")]
    NotAnObject {
        /// The recording's path.
        path: String,
        /// The line's number, from 1.
        line: usize,
    },
    /// The recording holds no event.
    #[error("{0} holds no audit events")]
    Empty(String),
}

/// A piece of a serialised template line.
#[derive(Debug, Clone)]
enum Piece {
    /// Text copied as is.
    Text(String),
    /// The event's audit id.
    AuditId,
    /// The copy's namespace.
    Namespace,
    /// The copy's number as 12 hexadecimal digits (the end of the copy's uids).
    Copy,
}

/// The recorded lines, each serialised once with placeholders and cut at them, so a copy is a concatenation.
#[derive(Debug)]
pub struct Templates {
    /// One entry per recorded line.
    lines: Vec<Vec<Piece>>,
    /// What every audit id starts with; the event's number follows.
    audit_id_prefix: String,
}

impl Templates {
    /// Reads the recording and makes each line a template: `auditID` becomes `audit_id_prefix` and the event's
    /// number, every `"namespace": "default"` and `/namespaces/default` in URIs and links become the copy's
    /// namespace, and each 36-character `uid` keeps its first 24 characters and ends in the copy's number.
    pub fn load(path: &Path, audit_id_prefix: &str) -> Result<Self, BatchesError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| BatchesError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut lines = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let json_error = |source| BatchesError::Json {
                path: shown.clone(),
                line: number + 1,
                source,
            };
            let mut event: Value = serde_json::from_str(line).map_err(json_error)?;
            let Some(fields) = event.as_object_mut() else {
                return Err(BatchesError::NotAnObject {
                    path: shown,
                    line: number + 1,
                });
            };
            fields.insert("auditID".to_owned(), Value::from(AUDIT_ID_TOKEN));
            rewrite_for_copy(&mut event);
            let serialised = serde_json::to_string(&event).map_err(json_error)?;
            lines.push(cut_at_placeholders(&serialised));
        }
        if lines.is_empty() {
            return Err(BatchesError::Empty(shown));
        }
        Ok(Self {
            lines,
            audit_id_prefix: audit_id_prefix.to_owned(),
        })
    }

    /// How many events one copy of the recording has.
    pub fn events_per_copy(&self) -> usize {
        self.lines.len()
    }

    /// Event number `event` (line `event % lines` of copy `event / lines`) appended to `out` as JSON.
    pub fn write_event(&self, event: u64, out: &mut String) {
        let count = self.lines.len() as u64;
        let copy = event / count;
        let Some(pieces) = usize::try_from(event % count)
            .ok()
            .and_then(|line| self.lines.get(line))
        else {
            return;
        };
        for piece in pieces {
            // Writing into a String cannot fail.
            let _ = match piece {
                Piece::Text(text) => {
                    out.push_str(text);
                    Ok(())
                }
                Piece::AuditId => write!(out, "{}{event}", self.audit_id_prefix),
                Piece::Namespace => write!(out, "bench-{copy}"),
                Piece::Copy => write!(out, "{copy:012x}"),
            };
        }
    }

    /// The `EventList` (audit.k8s.io/v1) of events `first..first + count`, as the apiserver's webhook posts it.
    pub fn event_list(&self, first: u64, count: u64) -> String {
        let mut body = String::with_capacity(4096 * count as usize + 64);
        body.push_str(r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":["#);
        for event in first..first + count {
            if event > first {
                body.push(',');
            }
            self.write_event(event, &mut body);
        }
        body.push_str("]}");
        body
    }

    /// The event number in an audit id that these templates made.
    pub fn event_of_audit_id(&self, audit_id: &str) -> Option<u64> {
        audit_id
            .strip_prefix(self.audit_id_prefix.as_str())?
            .parse()
            .ok()
    }
}

/// Puts the placeholders into one event (see [`Templates::load`]).
fn rewrite_for_copy(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                match (key.as_str(), &mut *field) {
                    ("namespace", Value::String(text)) if text == RECORDED_NAMESPACE => {
                        *text = NAMESPACE_TOKEN.to_owned();
                    }
                    ("uid", Value::String(text))
                        if text.len() == 36 && text.is_char_boundary(24) =>
                    {
                        *text = format!("{}{COPY_TOKEN}", &text[..24]);
                    }
                    _ => rewrite_for_copy(field),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_for_copy),
        Value::String(text) => {
            if let Some(rewritten) = namespace_paths_to_placeholder(text) {
                *text = rewritten;
            }
        }
        _ => {}
    }
}

/// `/namespaces/default` in a URI or link (followed by `/`, `?` or nothing) with the namespace placeholder; `None`
/// when there is none.
fn namespace_paths_to_placeholder(text: &str) -> Option<String> {
    let recorded = format!("/namespaces/{RECORDED_NAMESPACE}");
    let mut rewritten = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find(&recorded) {
        let after = &rest[at + recorded.len()..];
        rewritten.push_str(&rest[..at]);
        if after.is_empty() || after.starts_with(['/', '?']) {
            rewritten.push_str("/namespaces/");
            rewritten.push_str(NAMESPACE_TOKEN);
            changed = true;
        } else {
            rewritten.push_str(&recorded);
        }
        rest = after;
    }
    rewritten.push_str(rest);
    changed.then_some(rewritten)
}

/// A serialised line cut into text and placeholders.
fn cut_at_placeholders(mut text: &str) -> Vec<Piece> {
    let tokens = [
        (AUDIT_ID_TOKEN, Piece::AuditId),
        (NAMESPACE_TOKEN, Piece::Namespace),
        (COPY_TOKEN, Piece::Copy),
    ];
    let mut pieces = Vec::new();
    loop {
        let next = tokens
            .iter()
            .filter_map(|(token, piece)| text.find(token).map(|at| (at, *token, piece)))
            .min_by_key(|(at, _, _)| *at);
        match next {
            Some((at, token, piece)) => {
                if at > 0 {
                    pieces.push(Piece::Text(text[..at].to_owned()));
                }
                pieces.push(piece.clone());
                text = &text[at + token.len()..];
            }
            None => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(text.to_owned()));
                }
                return pieces;
            }
        }
    }
}

/// User plus system CPU seconds of a process (every thread), from `/proc/PID/stat`; `None` once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / clock_ticks_per_second())
}

/// `getconf CLK_TCK` (100 on Linux unless told otherwise).
pub fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
            .filter(|ticks: &f64| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// A process's memory from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub resident_kib: u64,
    /// `VmHWM`: the most it was ever resident.
    pub peak_resident_kib: u64,
}

/// `VmRSS` and `VmHWM` of a process; `None` once it is gone.
pub fn memory_kib(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|line| {
            line.strip_prefix(name)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
    };
    Some(Memory {
        resident_kib: field("VmRSS:")?,
        peak_resident_kib: field("VmHWM:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"kind":"Event","auditID":"x","objectRef":{"namespace":"default","uid":"01234567-89ab-cdef-0123-456789abcdef"},"requestURI":"/api/v1/namespaces/default/pods?watch=1","user":{"username":"default-user"}}"#;

    fn templates() -> Templates {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("audit.log");
        std::fs::write(&path, format!("{LINE}\n\n{LINE}\n")).expect("the recording is written");
        Templates::load(&path, "side-").expect("the recording loads")
    }

    #[test]
    fn copies_get_their_own_ids_namespaces_and_uids() {
        let templates = templates();
        assert_eq!(templates.events_per_copy(), 2);
        let mut out = String::new();
        templates.write_event(5, &mut out);
        let event: Value = serde_json::from_str(&out).expect("an event is JSON");
        assert_eq!(event["auditID"], "side-5");
        assert_eq!(event["objectRef"]["namespace"], "bench-2");
        assert_eq!(
            event["objectRef"]["uid"],
            "01234567-89ab-cdef-0123-000000000002"
        );
        assert_eq!(
            event["requestURI"],
            "/api/v1/namespaces/bench-2/pods?watch=1"
        );
        assert_eq!(event["user"]["username"], "default-user");
        assert_eq!(templates.event_of_audit_id("side-5"), Some(5));
        assert_eq!(templates.event_of_audit_id("other-5"), None);
    }

    #[test]
    fn an_event_list_holds_the_events_asked_for() {
        let templates = templates();
        let list: Value =
            serde_json::from_str(&templates.event_list(3, 4)).expect("an EventList is JSON");
        assert_eq!(list["kind"], "EventList");
        let ids: Vec<_> = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| item["auditID"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(ids, ["side-3", "side-4", "side-5", "side-6"]);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some());
        let memory = memory_kib(pid).expect("/proc/self/status is readable");
        assert!(memory.resident_kib > 0);
        assert!(memory.peak_resident_kib >= memory.resident_kib);
    }
}
