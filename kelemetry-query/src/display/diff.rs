//! Diff classes and collapsed activities: how an activity's logs become the fields of a display log.

use kelemetry_core::{LogKind, SpanLog, SpanRecord, vocabulary as v};

use super::trace::{DisplayLog, Field};

/// A diff class (docs/behaviour/display-modes.md#diff-classes): lines of an object diff are classified by their
/// path; each class becomes one field of the log.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DiffClass {
    /// What changed in the object (`diff`).
    Diff,
    /// Bookkeeping that changes with every write: `metadata.resourceVersion`, `metadata.generation`
    /// (`verbose diff`).
    Verbose,
    /// Not shown: `metadata.managedFields`.
    Hidden,
}

impl DiffClass {
    /// The class of one diff line (`path old -> new`): the longest configured prefix of its path decides.
    pub fn of_line(line: &str) -> Self {
        let path = line.split_once(' ').map_or(line, |(path, _)| path);
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        };
        if under("metadata.managedFields") {
            Self::Hidden
        } else if under("metadata.resourceVersion") || under("metadata.generation") {
            Self::Verbose
        } else {
            Self::Diff
        }
    }

    /// The field name of the class, `None` when hidden.
    pub fn field_name(self) -> Option<&'static str> {
        match self {
            Self::Diff => Some("diff"),
            Self::Verbose => Some("verbose diff"),
            Self::Hidden => None,
        }
    }
}

/// The fields of one log line of an activity, by its log type: diffs split into classes (in ascending priority:
/// `diff`, then `verbose diff`), `event/message` → `message`, `audit/objectSnapshot` → `snapshot`, `realError`
/// → `error`, `realVerbose` → `""`, `kelemetryError` → `_debug`; unknown types are dropped.
pub(super) fn log_fields(log: &SpanLog) -> Vec<Field> {
    let kind = log
        .attributes
        .iter()
        .find(|(k, _)| k == v::LOG_TYPE)
        .and_then(|(_, value)| LogKind::from_name(value));
    let name = match kind {
        Some(LogKind::ObjectDiff) => {
            let mut diff = Vec::new();
            let mut verbose = Vec::new();
            for line in log.message.lines() {
                match DiffClass::of_line(line) {
                    DiffClass::Diff => diff.push(line),
                    DiffClass::Verbose => verbose.push(line),
                    DiffClass::Hidden => {}
                }
            }
            let mut fields = Vec::new();
            if !diff.is_empty() {
                fields.push(("diff".to_owned(), diff.join("\n")));
            }
            if !verbose.is_empty() {
                fields.push(("verbose diff".to_owned(), verbose.join("\n")));
            }
            return fields;
        }
        Some(LogKind::EventMessage) => "message",
        Some(LogKind::ObjectSnapshot) => "snapshot",
        Some(LogKind::RealError) => "error",
        Some(LogKind::RealVerbose) => "",
        Some(LogKind::KelemetryError) => "_debug",
        None => return Vec::new(),
    };
    vec![(name.to_owned(), log.message.clone())]
}

/// An activity span collapsed into one log (the original's `CollapseNestingVisitor`;
/// docs/behaviour/display-modes.md#activities-as-logs): `<source>: <title>`, the mapped tags, the diff classes
/// (`diff` before `verbose diff`), the other log lines by type.
pub(super) fn collapse(activity: &SpanRecord) -> DisplayLog {
    let source = activity.service_name().to_owned();
    let mut fields: Vec<Field> = vec![(source.clone(), activity.name.clone())];
    let mapped: &[&str] = match source.as_str() {
        "audit" => &[v::USER_AGENT, v::SOURCE_IP, v::RESPONSE_CODE],
        "event" => &[
            v::EVENT_ACTION,
            v::EVENT_SOURCE,
            v::EVENT_TYPE,
            v::EVENT_COUNT,
        ],
        _ => &[],
    };
    for name in mapped {
        if let Some(value) = activity.attribute(name).filter(|value| !value.is_empty()) {
            fields.push(((*name).to_owned(), value.to_owned()));
        }
    }
    let mut diffs: Vec<Field> = Vec::new();
    let mut others: Vec<Field> = Vec::new();
    for log in &activity.logs {
        for field in log_fields(log) {
            if field.0 == "diff" || field.0 == "verbose diff" {
                diffs.push(field);
            } else {
                others.push(field);
            }
        }
    }
    // Diff classes in ascending priority, each class one field even when several diff logs exist.
    for class in ["diff", "verbose diff"] {
        let lines: Vec<&str> = diffs
            .iter()
            .filter(|(k, _)| k == class)
            .map(|(_, value)| value.as_str())
            .collect();
        if !lines.is_empty() {
            fields.push((class.to_owned(), lines.join("\n")));
        }
    }
    fields.extend(others);
    DisplayLog {
        time: activity.start,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    #[test]
    fn diff_lines_are_classified() {
        assert_eq!(DiffClass::of_line("spec.replicas 2 -> 4"), DiffClass::Diff);
        assert_eq!(
            DiffClass::of_line("metadata.generation 1 -> 2"),
            DiffClass::Verbose
        );
        assert_eq!(
            DiffClass::of_line("metadata.managedFields[0].time \"a\" -> \"b\""),
            DiffClass::Hidden
        );
        assert_eq!(
            DiffClass::of_line("metadata.generationX 1 -> 2"),
            DiffClass::Diff,
            "a prefix matches whole path components only"
        );
    }

    #[test]
    fn collapsed_diffs_split_into_classes() {
        let key = kelemetry_core::ObjectKey::new("c", "apps", "deployments", "ns", "d");
        let at: Timestamp = "2024-01-01T10:00:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let window = kelemetry_core::Windowing::default().window_of(at);
        let mut activity = kelemetry_core::Activity::new(
            kelemetry_core::Object::new(kelemetry_core::ObjectRef::new(key, "v1", None)),
            kelemetry_core::SourceKind::Audit,
            at,
            "alice update",
            "a1",
        );
        activity.logs.push(kelemetry_core::LogLine {
            kind: LogKind::ObjectDiff,
            message: "metadata.generation 1 -> 2\nspec.replicas 2 -> 4\nmetadata.managedFields[0].time a -> b"
                .into(),
        });
        let span = kelemetry_core::span::activity_span(&activity, window);
        let log = collapse(&span);
        assert_eq!(log.fields[0], ("audit".into(), "alice update".into()));
        assert_eq!(log.field("diff"), Some("spec.replicas 2 -> 4"));
        assert_eq!(
            log.field("verbose diff"),
            Some("metadata.generation 1 -> 2")
        );
        assert!(!log.fields.iter().any(|(_, v)| v.contains("managedFields")));
    }
}
