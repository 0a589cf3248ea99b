//! Recorded-shape audit batches for the load generators, and what `/proc` tells about the process under test.
//!
//! The events are copies of a recorded apiserver audit log (by default
//! `fixtures/recorded/deployment-lifecycle/audit.log`): copy `k` gets audit ids of its own (a prefix and the event's
//! number), the namespace `bench-k` instead of `default`, and uids of its own, so every copy writes objects of its
//! own. Each recorded line is serialised once with placeholders and cut at them ([`Templates::load`]), so an event
//! is a concatenation ([`Templates::write_event`]) and an `EventList` of many is cheap to make
//! ([`Templates::event_list`]).
//!
//! [`Templates::verbatim`] instead posts a log's lines as they are, once each, and tells the events apart by their
//! own audit ids: to feed a webhook the very lines another harness read (e.g. a log written by `throughput
//! --write-corpus`).
//!
//! [`cpu_seconds`] and [`memory_kib`] read `/proc/PID/stat` and `/proc/PID/status` of another process.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use kelemetry_core::audit::{self, AuditOutcome};
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
    /// A line of a log posted verbatim is no audit event this project reads.
    #[error("{path} line {line}: {source}")]
    Audit {
        /// The log's path.
        path: String,
        /// The line's number, from 1.
        line: usize,
        /// Why it failed.
        source: audit::AuditParseError,
    },
    /// A line of a log posted verbatim is not one event, or has an audit id an earlier line has too.
    #[error("{path} line {line}: {problem}")]
    AuditId {
        /// The log's path.
        path: String,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        problem: &'static str,
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

/// The recorded lines, each serialised once with placeholders and cut at them, so a copy is a concatenation; or a
/// log's lines as they are ([`Templates::verbatim`]).
#[derive(Debug)]
pub struct Templates {
    /// One entry per recorded line.
    lines: Vec<Vec<Piece>>,
    /// How an audit id names an event.
    ids: EventIds,
}

/// How the events' audit ids are made and read back.
#[derive(Debug)]
enum EventIds {
    /// Copies: a prefix, then the event's number.
    Numbered { prefix: String },
    /// The lines' own audit ids, each naming its line; `traced[line]` says whether the project's audit mapping
    /// makes the line an activity (a span is owed for it).
    Recorded {
        line_of: HashMap<String, u64>,
        traced: Vec<bool>,
    },
}

impl Templates {
    /// Reads the recording and makes each line a template: `auditID` becomes `audit_id_prefix` and the event's
    /// number, every `"namespace": "default"` and `/namespaces/default` in URIs and links become the copy's
    /// namespace, and each 36-character `uid` keeps its first 24 characters and ends in the copy's number.
    pub fn load(path: &Path, audit_id_prefix: &str) -> Result<Self, BatchesError> {
        let (shown, text) = read_log(path)?;
        let mut lines = Vec::new();
        for (number, line) in event_lines(&text) {
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
            ids: EventIds::Numbered {
                prefix: audit_id_prefix.to_owned(),
            },
        })
    }

    /// Reads an audit log (one event per line) to post its lines once each, byte for byte: event `n` is line `n`
    /// (blank lines left out), named by its own audit id, which must be unique in the log. Each line is read
    /// with the project's audit mapping once here, to know which lines owe a span ([`Templates::traced`]).
    pub fn verbatim(path: &Path) -> Result<Self, BatchesError> {
        let (shown, text) = read_log(path)?;
        let mut lines = Vec::new();
        let mut line_of = HashMap::new();
        let mut traced = Vec::new();
        for (number, line) in event_lines(&text) {
            let audit_error = |source| BatchesError::Audit {
                path: shown.clone(),
                line: number + 1,
                source,
            };
            let id_error = |problem| BatchesError::AuditId {
                path: shown.clone(),
                line: number + 1,
                problem,
            };
            let mut events = audit::parse_document(line.as_bytes()).map_err(audit_error)?;
            let (Some(event), None) = (events.pop(), events.pop()) else {
                return Err(id_error("not one audit event"));
            };
            if line_of
                .insert(event.audit_id.to_string(), lines.len() as u64)
                .is_some()
            {
                return Err(id_error("an auditID an earlier line has"));
            }
            traced.push(matches!(
                audit::map_event(event, "verbatim"),
                Ok(AuditOutcome::Activity(_))
            ));
            lines.push(vec![Piece::Text(line.to_owned())]);
        }
        if lines.is_empty() {
            return Err(BatchesError::Empty(shown));
        }
        Ok(Self {
            lines,
            ids: EventIds::Recorded { line_of, traced },
        })
    }

    /// How many events one copy of the recording has.
    pub fn events_per_copy(&self) -> usize {
        self.lines.len()
    }

    /// The most events these templates make: one copy of a log posted verbatim, no limit for copies.
    pub fn max_events(&self) -> Option<u64> {
        match self.ids {
            EventIds::Numbered { .. } => None,
            EventIds::Recorded { .. } => Some(self.lines.len() as u64),
        }
    }

    /// Whether event `event` owes a span: every copy does; a line posted verbatim does if the project's audit
    /// mapping makes it an activity (not a read, for example).
    pub fn traced(&self, event: u64) -> bool {
        match &self.ids {
            EventIds::Numbered { .. } => true,
            EventIds::Recorded { traced, .. } => usize::try_from(event)
                .ok()
                .and_then(|line| traced.get(line))
                .is_some_and(|traced| *traced),
        }
    }

    /// Event number `event` (line `event % lines` of copy `event / lines`) appended to `out` as JSON; nothing past
    /// [`Templates::max_events`].
    pub fn write_event(&self, event: u64, out: &mut String) {
        let count = self.lines.len() as u64;
        let copy = event / count;
        if self.max_events().is_some_and(|max| event >= max) {
            return;
        }
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
                Piece::AuditId => match &self.ids {
                    EventIds::Numbered { prefix } => write!(out, "{prefix}{event}"),
                    EventIds::Recorded { .. } => Ok(()),
                },
                Piece::Namespace => write!(out, "bench-{copy}"),
                Piece::Copy => write!(out, "{copy:012x}"),
            };
        }
    }

    /// The `EventList` (audit.k8s.io/v1) of events `first..first + count`, as the apiserver's webhook posts it
    /// (for a log posted verbatim, only those up to [`Templates::max_events`]).
    pub fn event_list(&self, first: u64, count: u64) -> String {
        let mut body = String::with_capacity(4096 * count as usize + 64);
        body.push_str(r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":["#);
        let end = self
            .max_events()
            .map_or(first + count, |max| max.min(first + count));
        for event in first..end {
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
        match &self.ids {
            EventIds::Numbered { prefix } => audit_id.strip_prefix(prefix.as_str())?.parse().ok(),
            EventIds::Recorded { line_of, .. } => line_of.get(audit_id).copied(),
        }
    }
}

/// The path as errors name it, and the text of the file there.
fn read_log(path: &Path) -> Result<(String, String), BatchesError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((shown, text)),
        Err(source) => Err(BatchesError::Read {
            path: shown,
            source,
        }),
    }
}

/// The lines of a log that are not blank, each with its number from 0.
fn event_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
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

    /// A create of a ConfigMap, then a read of it, as an apiserver logs them.
    const WRITE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"write-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/configmaps","verb":"create","user":{"username":"admin"},"objectRef":{"resource":"configmaps","namespace":"default","name":"settings","apiVersion":"v1"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.010000Z"}"#;
    const READ: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"read-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/configmaps/settings","verb":"get","user":{"username":"admin"},"objectRef":{"resource":"configmaps","namespace":"default","name":"settings","apiVersion":"v1"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-01T00:00:01.000000Z","stageTimestamp":"2026-01-01T00:00:01.010000Z"}"#;

    fn write_log(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("audit.log");
        std::fs::write(&path, text).expect("the log is written");
        (dir, path)
    }

    #[test]
    fn a_log_posted_verbatim_keeps_its_lines_and_ids() {
        let (_dir, path) = write_log(&format!("{WRITE}\n\n{READ}\n"));
        let templates = Templates::verbatim(&path).expect("the log loads");
        assert_eq!(templates.events_per_copy(), 2);
        assert_eq!(templates.max_events(), Some(2));
        let list = templates.event_list(0, 50);
        assert_eq!(
            list,
            format!(
                r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{WRITE},{READ}]}}"#
            )
        );
        assert_eq!(templates.event_of_audit_id("write-1"), Some(0));
        assert_eq!(templates.event_of_audit_id("read-1"), Some(1));
        assert_eq!(templates.event_of_audit_id("other"), None);
        assert!(templates.traced(0), "a create owes a span");
        assert!(!templates.traced(1), "a read does not");
        assert!(!templates.traced(2), "past the log nothing is owed");
        let mut out = String::new();
        templates.write_event(2, &mut out);
        assert!(out.is_empty(), "no event past the log");
    }

    #[test]
    fn a_log_posted_verbatim_must_name_each_event_once() {
        let (_dir, path) = write_log(&format!("{WRITE}\n{READ}\n{WRITE}\n"));
        let err = Templates::verbatim(&path).expect_err("a repeated audit id is refused");
        assert!(
            err.to_string()
                .ends_with("line 3: an auditID an earlier line has"),
            "{err}"
        );
        let (_dir, path) = write_log(&format!("{WRITE}\n{{\"kind\":\"Event\"}}\n"));
        let err = Templates::verbatim(&path).expect_err("an event without an id is refused");
        assert!(err.to_string().contains("line 2: "), "{err}");
        let (_dir, path) = write_log("\n");
        assert!(matches!(
            Templates::verbatim(&path),
            Err(BatchesError::Empty(_))
        ));
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
