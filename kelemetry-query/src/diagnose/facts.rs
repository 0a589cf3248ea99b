//! What the diagnosers read off an activity span: its source, verb, writer, answer, diff lines and snapshots.

use jiff::Timestamp;
use kelemetry_core::{LogKind, SpanRecord, vocabulary as v};

/// An activity span, read for diagnosis.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Fact<'a> {
    pub(crate) span: &'a SpanRecord,
}

/// The verbs that write.
const WRITES: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

impl<'a> Fact<'a> {
    pub(crate) fn new(span: &'a SpanRecord) -> Self {
        Self { span }
    }

    pub(crate) fn time(self) -> Timestamp {
        self.span.start
    }

    /// `audit`, `event`, or another source's name.
    pub(crate) fn source(self) -> &'a str {
        self.span.service_name()
    }

    pub(crate) fn attribute(self, name: &str) -> Option<&'a str> {
        self.span.attribute(name)
    }

    pub(crate) fn is_audit(self) -> bool {
        self.source() == "audit"
    }

    pub(crate) fn is_event(self) -> bool {
        self.source() == "event"
    }

    /// The audit verb (`create`, `patch`, ...).
    pub(crate) fn verb(self) -> Option<&'a str> {
        self.is_audit().then(|| self.attribute(v::TAG)).flatten()
    }

    /// The user who made the request (the impersonated one when impersonating).
    pub(crate) fn user(self) -> Option<&'a str> {
        self.attribute(v::USERNAME).filter(|u| !u.is_empty())
    }

    pub(crate) fn code(self) -> Option<u16> {
        self.attribute(v::RESPONSE_CODE)?.parse().ok()
    }

    pub(crate) fn is_write(self) -> bool {
        self.verb().is_some_and(|verb| WRITES.contains(&verb))
    }

    pub(crate) fn succeeded(self) -> bool {
        self.code().is_some_and(|code| (200..300).contains(&code))
    }

    /// A write that was answered 2xx.
    pub(crate) fn is_successful_write(self) -> bool {
        self.is_write() && self.succeeded()
    }

    /// The reason of an Event (its title).
    pub(crate) fn reason(self) -> &'a str {
        &self.span.name
    }

    /// Whether this is a Warning Event.
    pub(crate) fn is_warning_event(self) -> bool {
        self.is_event() && self.attribute(v::EVENT_TYPE) == Some("Warning")
    }

    /// How many times the Event happened (its `count`, at least 1).
    pub(crate) fn event_count(self) -> u64 {
        self.attribute(v::EVENT_COUNT)
            .and_then(|c| c.parse().ok())
            .unwrap_or(1)
            .max(1)
    }

    /// The messages of logs of `kind`.
    pub(crate) fn logs(self, kind: LogKind) -> impl Iterator<Item = &'a str> {
        self.span
            .logs
            .iter()
            .filter(move |log| {
                log.attributes
                    .iter()
                    .any(|(k, value)| k == v::LOG_TYPE && value == kind.as_str())
            })
            .map(|log| log.message.as_str())
    }

    /// The diff lines: `(path, old, new)`.
    pub(crate) fn diff_lines(self) -> impl Iterator<Item = DiffLine<'a>> {
        self.logs(LogKind::ObjectDiff)
            .flat_map(str::lines)
            .filter_map(DiffLine::parse)
    }

    /// The object snapshots (JSON), parsed; unparsable ones are skipped.
    pub(crate) fn snapshots(self) -> impl Iterator<Item = serde_json::Value> + 'a {
        self.logs(LogKind::ObjectSnapshot)
            .filter_map(|text| serde_json::from_str(text).ok())
    }

    /// The Event's message.
    pub(crate) fn message(self) -> Option<&'a str> {
        self.logs(LogKind::EventMessage).next()
    }

    /// The span id as the views show it.
    pub(crate) fn display_id(self) -> u64 {
        self.span.span_id.to_u64()
    }
}

/// One line of a diff: `path old -> new`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct DiffLine<'a> {
    pub(crate) path: &'a str,
    pub(crate) old: &'a str,
    pub(crate) new: &'a str,
}

impl<'a> DiffLine<'a> {
    pub(crate) fn parse(line: &'a str) -> Option<Self> {
        let (path, rest) = line.split_once(' ')?;
        let (old, new) = rest.split_once(" -> ")?;
        Some(Self { path, old, new })
    }
}
