//! Diff classes and collapsed activities: how an activity's logs become the fields of a display log.

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use kelemetry_core::{LogKind, SmolStr, SpanId, SpanLog, SpanRecord, vocabulary as v};

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
                fields.push((SmolStr::new_static("diff"), diff.join("\n").into()));
            }
            if !verbose.is_empty() {
                fields.push((
                    SmolStr::new_static("verbose diff"),
                    verbose.join("\n").into(),
                ));
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
    vec![(SmolStr::new_static(name), SmolStr::new(&log.message))]
}

/// The field (in `tracing` and `grouped`) or tag (in `tree` and `timeline`) that classifies a failed request
/// that is not a real failure.
pub(crate) const OUTCOME: &str = "outcome";

/// The [`OUTCOME`] of a retried conflict (see [`retried_conflicts`]).
pub(crate) const CONFLICT_RETRIED: &str = "conflict, retried";

/// How long after a 409 Conflict a successful write by the same writer still counts as its retry, in the views
/// (the diagnosers take theirs from their thresholds).
pub const CONFLICT_RETRY_WINDOW: SignedDuration = SignedDuration::from_secs(60);

/// The verbs of writes that optimistic concurrency can refuse with a 409 and that retry it.
const CONCURRENT_WRITE_VERBS: [&str; 2] = ["update", "patch"];

/// The audit activities among one object's `activities` that are expected optimistic concurrency
/// (docs/behaviour/display-modes.md#retried-conflicts): an `update` or `patch` answered 409 Conflict that the
/// same user follows with a successful (2xx) `update` or `patch` of the same object, starting no earlier than
/// the conflict and at most `within` after it (the views use [`CONFLICT_RETRY_WINDOW`]). A 409 on a create
/// (already exists), or one never followed by a success, stays a failure.
pub fn retried_conflicts(activities: &[SpanRecord], within: SignedDuration) -> HashSet<SpanId> {
    let concurrent_write = |activity: &SpanRecord| {
        activity.service_name() == "audit"
            && activity
                .attribute(v::TAG)
                .is_some_and(|verb| CONCURRENT_WRITE_VERBS.contains(&verb))
    };
    let code = |activity: &SpanRecord| {
        activity
            .attribute(v::RESPONSE_CODE)
            .and_then(|code| code.parse::<u16>().ok())
    };
    // When each user's writes succeeded, in time order.
    let mut successes: HashMap<&str, Vec<Timestamp>> = HashMap::new();
    for activity in activities.iter().filter(|a| concurrent_write(a)) {
        if let (Some(200..=299), Some(user)) = (code(activity), activity.attribute(v::USERNAME)) {
            successes.entry(user).or_default().push(activity.start);
        }
    }
    for times in successes.values_mut() {
        times.sort_unstable();
    }
    activities
        .iter()
        .filter(|a| concurrent_write(a) && code(a) == Some(409))
        .filter(|conflict| {
            let Some(times) = conflict
                .attribute(v::USERNAME)
                .and_then(|user| successes.get(user))
            else {
                return false;
            };
            let first_after = times.partition_point(|t| *t < conflict.start);
            let deadline = conflict.start.checked_add(within).unwrap_or(Timestamp::MAX);
            times.get(first_after).is_some_and(|t| *t <= deadline)
        })
        .map(|conflict| conflict.span_id)
        .collect()
}

/// An activity span collapsed into one log (the original's `CollapseNestingVisitor`;
/// docs/behaviour/display-modes.md#activities-as-logs): `<source>: <title>`, the mapped tags, [`OUTCOME`] when
/// the activity is in `retried` (see [`retried_conflicts`]), the diff classes (`diff` before `verbose diff`), the
/// other log lines by type.
pub(super) fn collapse(activity: &SpanRecord, retried: &HashSet<SpanId>) -> DisplayLog {
    let source = activity.service_name();
    let mut fields: Vec<Field> = vec![(SmolStr::new(source), SmolStr::new(&activity.name))];
    let mapped: &[&'static str] = match source {
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
            fields.push((SmolStr::new_static(name), SmolStr::new(value)));
        }
    }
    if retried.contains(&activity.span_id) {
        fields.push((
            SmolStr::new_static(OUTCOME),
            SmolStr::new_static(CONFLICT_RETRIED),
        ));
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
            fields.push((SmolStr::new_static(class), lines.join("\n").into()));
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
        let log = collapse(&span, &HashSet::new());
        assert_eq!(log.fields[0], ("audit".into(), "alice update".into()));
        assert_eq!(log.field("diff"), Some("spec.replicas 2 -> 4"));
        assert_eq!(
            log.field("verbose diff"),
            Some("metadata.generation 1 -> 2")
        );
        assert!(!log.fields.iter().any(|(_, v)| v.contains("managedFields")));
    }

    /// An audit write on one Deployment, `secs` seconds after 10:00.
    fn write(user: &str, verb: &str, code: u16, secs: i64) -> SpanRecord {
        let key = kelemetry_core::ObjectKey::new("c", "apps", "deployments", "ns", "d");
        let at = "2024-01-01T10:00:00Z"
            .parse::<Timestamp>()
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .checked_add(SignedDuration::from_secs(secs))
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let window = kelemetry_core::Windowing::default().window_of(at);
        let mut activity = kelemetry_core::Activity::new(
            kelemetry_core::Object::new(kelemetry_core::ObjectRef::new(key, "v1", None)),
            kelemetry_core::SourceKind::Audit,
            at,
            format!("{user} {verb} status"),
            format!("{user}/{verb}/{code}/{secs}"),
        );
        activity.attribute(v::USERNAME, user.to_owned());
        activity.attribute(v::TAG, verb.to_owned());
        activity.attribute(v::RESPONSE_CODE, code.to_string());
        kelemetry_core::span::activity_span(&activity, window)
    }

    /// The indexes of `activities` that [`retried_conflicts`] classifies.
    fn retried(activities: &[SpanRecord]) -> Vec<usize> {
        let set = retried_conflicts(activities, CONFLICT_RETRY_WINDOW);
        (0..activities.len())
            .filter(|&i| set.contains(&activities[i].span_id))
            .collect()
    }

    #[test]
    fn a_conflict_the_same_user_retries_successfully_within_a_minute_is_retried() {
        let ctl = "system:serviceaccount:kube-system:deployment-controller";
        assert_eq!(
            retried(&[write(ctl, "update", 409, 0), write(ctl, "update", 200, 1)]),
            [0]
        );
        // Patch and update are one family; two conflicts before one success are both retried.
        assert_eq!(
            retried(&[
                write(ctl, "patch", 409, 0),
                write(ctl, "update", 409, 10),
                write(ctl, "update", 200, 60),
            ]),
            [0, 1]
        );
        // The window is inclusive: exactly 60 s later still counts, 61 s does not.
        assert_eq!(
            retried(&[write(ctl, "update", 409, 0), write(ctl, "patch", 201, 60)]),
            [0]
        );
        assert!(retried(&[write(ctl, "update", 409, 0), write(ctl, "update", 200, 61)]).is_empty());
    }

    #[test]
    fn other_failures_stay_failures() {
        let ctl = "ctl";
        // Another user's success, a success before the conflict, a failed retry, a non-write success.
        assert!(
            retried(&[
                write(ctl, "update", 409, 5),
                write("other", "update", 200, 6)
            ])
            .is_empty()
        );
        assert!(retried(&[write(ctl, "update", 200, 4), write(ctl, "update", 409, 5)]).is_empty());
        assert!(retried(&[write(ctl, "update", 409, 5), write(ctl, "update", 409, 6)]).is_empty());
        assert!(retried(&[write(ctl, "update", 409, 5), write(ctl, "delete", 200, 6)]).is_empty());
        // A create that found the object already there is no optimistic concurrency, nor is a 422.
        assert!(retried(&[write(ctl, "create", 409, 5), write(ctl, "update", 200, 6)]).is_empty());
        assert!(retried(&[write(ctl, "update", 422, 5), write(ctl, "update", 200, 6)]).is_empty());
        // Only audit activities are requests.
        let mut not_audit = write(ctl, "update", 409, 5);
        not_audit.kind = kelemetry_core::SpanKind::Activity("event".into());
        assert!(retried(&[not_audit, write(ctl, "update", 200, 6)]).is_empty());
    }

    #[test]
    fn collapsed_retried_conflicts_carry_the_outcome() {
        let conflict = write("ctl", "update", 409, 0);
        let activities = [conflict, write("ctl", "update", 200, 1)];
        let set = retried_conflicts(&activities, CONFLICT_RETRY_WINDOW);
        let logs: Vec<DisplayLog> = activities.iter().map(|a| collapse(a, &set)).collect();
        assert_eq!(logs[0].field(OUTCOME), Some(CONFLICT_RETRIED));
        assert_eq!(logs[0].field(v::RESPONSE_CODE), Some("409"));
        assert_eq!(logs[1].field(OUTCOME), None);
    }
}
