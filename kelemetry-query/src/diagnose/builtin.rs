//! The built-in diagnosers (docs/diagnose.md#built-in-diagnosers), each over one object's history.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::facts::Fact;
use super::{Context, Diagnoser, Evidence, Finding, object_name};
use crate::assemble::ObjectHistory;
use crate::display::{CONFLICT_RETRY_WINDOW, retried_conflicts};

/// Every built-in diagnoser.
pub fn all() -> Vec<Arc<dyn Diagnoser>> {
    vec![
        Arc::new(UnobservedCreates),
        Arc::new(StaleHolder),
        Arc::new(HotLoop),
        Arc::new(ControllerFight),
        Arc::new(StuckDeletion),
        Arc::new(FailedRequests),
        Arc::new(WarningBurst),
    ]
}

/// At most this many evidence lines per finding (the first ones and the last one).
const MAX_EVIDENCE: usize = 12;

fn evidence(history: &ObjectHistory, fact: Fact<'_>, note: impl Into<String>) -> Evidence {
    Evidence {
        object: object_name(&history.key),
        span_id: format!("{:016x}", fact.display_id()),
        time: fact.time(),
        activity: format!("{} {}", fact.source(), fact.span.name),
        note: note.into(),
    }
}

/// Keeps the first `MAX_EVIDENCE - 1` and the last.
fn capped(mut evidence: Vec<Evidence>) -> Vec<Evidence> {
    evidence.sort_by_key(|e| e.time);
    if evidence.len() > MAX_EVIDENCE {
        let last = evidence.pop();
        evidence.truncate(MAX_EVIDENCE - 1);
        evidence.extend(last);
    }
    evidence
}

fn facts(history: &ObjectHistory) -> impl Iterator<Item = Fact<'_>> {
    history.activities.iter().map(Fact::new)
}

fn since(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

/// A duration as people say it: `45 s`, `5 min 3 s`, `2 h 10 min`.
pub(crate) fn spoken(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs < 1 {
        return format!("{} ms", duration.as_millis());
    }
    if secs < 60 {
        let tenths = duration.as_millis() / 100;
        return if tenths.is_multiple_of(10) || secs >= 10 {
            format!("{secs} s")
        } else {
            format!("{}.{} s", tenths / 10, tenths % 10)
        };
    }
    if secs < 3600 {
        return match secs % 60 {
            0 => format!("{} min", secs / 60),
            s => format!("{} min {s} s", secs / 60),
        };
    }
    match (secs % 3600) / 60 {
        0 => format!("{} h", secs / 3600),
        m => format!("{} h {m} min", secs / 3600),
    }
}

fn median(mut values: Vec<Duration>) -> Option<Duration> {
    values.sort();
    values.get(values.len() / 2).copied()
}

/// The JSON text of a diff value as a string, when it is one.
fn json_string(text: &str) -> Option<String> {
    serde_json::from_str::<String>(text).ok()
}

// ---------------------------------------------------------------------------------------------------------------

/// A deletion held by finalizers: the delete was accepted and the object marked, but the finalizers named in it
/// were still there `stuckDeletionAfter` later.
#[derive(Debug)]
pub struct StuckDeletion;

impl Diagnoser for StuckDeletion {
    fn name(&self) -> &str {
        "stuck-deletion"
    }

    fn diagnose(&self, history: &ObjectHistory, context: &Context) -> Vec<Finding> {
        let mut marked: Option<(Fact<'_>, BTreeSet<String>)> = None;
        let mut releases: Vec<Evidence> = Vec::new();
        for fact in facts(history) {
            if marked.is_none() {
                if fact.verb() == Some("delete") && fact.succeeded() {
                    let held = fact.snapshots().find_map(|snapshot| {
                        let metadata = &snapshot["metadata"];
                        metadata.get("deletionTimestamp")?;
                        let finalizers: BTreeSet<String> = metadata["finalizers"]
                            .as_array()?
                            .iter()
                            .filter_map(|f| f.as_str().map(str::to_owned))
                            .collect();
                        (!finalizers.is_empty()).then_some(finalizers)
                    });
                    if let Some(finalizers) = held {
                        marked = Some((fact, finalizers));
                    }
                }
                continue;
            }
            let Some((_, finalizers)) = marked.as_mut() else {
                continue;
            };
            if fact.verb() == Some("delete") && fact.code() == Some(404) {
                finalizers.clear();
            }
            if !fact.is_successful_write() {
                continue;
            }
            for line in fact.diff_lines() {
                let Some(rest) = line.path.strip_prefix("metadata.finalizers") else {
                    continue;
                };
                if rest.is_empty() {
                    *finalizers = serde_json::from_str::<Vec<String>>(line.new)
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                } else {
                    if let Some(old) = json_string(line.old) {
                        finalizers.remove(&old);
                    }
                    if let Some(new) = json_string(line.new) {
                        finalizers.insert(new);
                    }
                }
                releases.push(evidence(
                    history,
                    fact,
                    format!("finalizers now: {}", list(finalizers)),
                ));
            }
            if finalizers.is_empty() {
                return Vec::new();
            }
        }
        let Some((delete, finalizers)) = marked else {
            return Vec::new();
        };
        let held_for = since(delete.time(), context.last_seen);
        if held_for < context.thresholds.stuck_deletion_after {
            return Vec::new();
        }
        let names = list(&finalizers);
        let mut shown = vec![evidence(
            history,
            delete,
            format!("delete accepted; marked for deletion, held by {names}"),
        )];
        shown.extend(releases);
        vec![Finding {
            diagnoser: self.name().to_owned(),
            title: format!(
                "deletion stuck: {} still held by {names} {} after its delete",
                object_name(&history.key),
                spoken(held_for)
            ),
            object: object_name(&history.key),
            from: delete.time(),
            to: context.last_seen,
            evidence: capped(shown),
            explanation: format!(
                "The object was deleted at {} and given a deletionTimestamp, but it cannot go until every finalizer \
                 is removed, and {names} {} still there at the last record, {} later. A finalizer is removed by \
                 the controller that added it, once its clean-up is done: that controller is not running, not \
                 watching this object, or failing its clean-up.",
                delete.time(),
                if finalizers.len() == 1 { "was" } else { "were" },
                spoken(held_for)
            ),
            next_steps: vec![
                format!("find the controller that owns the finalizer {names} and read its logs for this object"),
                "check that controller is running and has RBAC to update this resource".to_owned(),
                "only when the clean-up is known to be done or unneeded: remove the finalizer by hand \
                 (kubectl patch ... --type=merge -p '{\"metadata\":{\"finalizers\":null}}')"
                    .to_owned(),
            ],
        }]
    }
}

fn list(items: &BTreeSet<String>) -> String {
    items.iter().cloned().collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------------------------------

/// Repeated failed requests on one object by one user: 401, 403, 422, 429, 5xx, and 409s the writer did not make
/// good (see [`retried_conflicts`]).
#[derive(Debug)]
pub struct FailedRequests;

fn failure_meaning(code: u16) -> (&'static str, &'static str, &'static str) {
    match code {
        401 => (
            "Unauthorized",
            "the apiserver did not accept the client's credentials",
            "check the client's token or certificate (expired? rotated?)",
        ),
        403 => (
            "Forbidden",
            "RBAC (or another authorizer) refused the request",
            "check the user's Roles and RoleBindings for this verb and resource: kubectl auth can-i --as=USER VERB RESOURCE",
        ),
        409 => (
            "Conflict",
            "the request lost a race (stale resourceVersion) or the object already exists, and the writer never succeeded after",
            "check whether the writer re-reads the object before retrying, and what else writes it",
        ),
        422 => (
            "Invalid",
            "validation refused the object the client sent",
            "read the error message of one of the requests: it names the invalid field",
        ),
        429 => (
            "TooManyRequests",
            "API Priority and Fairness (or a rate limit) throttled the client",
            "check the client's request rate and the apiserver's flow-control metrics",
        ),
        _ => (
            "server error",
            "the apiserver, an admission webhook or etcd failed the request",
            "check the apiserver's logs and the admission webhooks on this resource",
        ),
    }
}

impl Diagnoser for FailedRequests {
    fn name(&self) -> &str {
        "failed-requests"
    }

    fn diagnose(&self, history: &ObjectHistory, context: &Context) -> Vec<Finding> {
        let thresholds = &context.thresholds;
        let within = SignedDuration::try_from(thresholds.conflict_retry_within)
            .unwrap_or(CONFLICT_RETRY_WINDOW);
        let retried = retried_conflicts(&history.activities, within);
        let mut groups: BTreeMap<(String, u16), Vec<Fact<'_>>> = BTreeMap::new();
        for fact in facts(history) {
            let Some(code) = fact.code() else { continue };
            let failing = matches!(code, 401 | 403 | 409 | 422 | 429) || code >= 500;
            if !fact.is_audit() || !failing {
                continue;
            }
            if retried.contains(&fact.span.span_id) {
                continue;
            }
            let user = fact.user().unwrap_or("(unknown user)").to_owned();
            groups.entry((user, code)).or_default().push(fact);
        }
        let mut out = Vec::new();
        for ((user, code), failed) in groups {
            if failed.len() < thresholds.failed_requests.max(1) {
                continue;
            }
            let (name, meaning, next) = failure_meaning(code);
            let verbs: Vec<String> = super::tally(failed.iter().filter_map(|f| f.verb()))
                .into_iter()
                .map(|(verb, n)| format!("{verb} ×{n}"))
                .collect();
            let first = failed[0].time();
            let last = failed[failed.len() - 1].time();
            let message = failed
                .iter()
                .find_map(|f| f.logs(kelemetry_core::LogKind::RealError).next())
                .unwrap_or("");
            out.push(Finding {
                diagnoser: self.name().to_owned(),
                title: format!(
                    "{user}: {} requests failed with {code} {name} on {}",
                    failed.len(),
                    object_name(&history.key)
                ),
                object: object_name(&history.key),
                from: first,
                to: last,
                evidence: capped(
                    failed
                        .iter()
                        .map(|f| evidence(history, *f, format!("{code} {name}")))
                        .collect(),
                ),
                explanation: format!(
                    "{user} made {} requests ({}) on this object between {first} and {last}, and each was answered \
                     {code}: {meaning}. A client that repeats a refused request does not learn from the answer{}",
                    failed.len(),
                    verbs.join(", "),
                    if message.is_empty() {
                        ".".to_owned()
                    } else {
                        format!(". The apiserver said: {message}")
                    }
                ),
                next_steps: vec![
                    next.to_owned(),
                    format!("find the client by its user ({user}) and user agent, and why it retries"),
                ],
            });
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------------------------

/// A burst of one Warning Event reason on one object.
#[derive(Debug)]
pub struct WarningBurst;

fn warning_advice(reason: &str) -> (&'static str, &'static str) {
    match reason {
        "FailedScheduling" => (
            "the scheduler found no node for the Pod: not enough CPU or memory, taints, affinity, or volume topology",
            "read the Event's message (it counts the nodes per reason) and compare the Pod's requests with the nodes' allocatable",
        ),
        "BackOff" => (
            "a container keeps failing (CrashLoopBackOff) or its image keeps failing to pull (ImagePullBackOff)",
            "kubectl logs --previous for crashes; the image name, tag and pull secret for pulls",
        ),
        "Failed" | "ErrImagePull" | "InspectFailed" => (
            "the kubelet could not pull or start a container image",
            "check the image name and tag, the registry's reachability and the pull secret",
        ),
        "FailedMount" | "FailedAttachVolume" => (
            "a volume could not be attached or mounted",
            "check the PersistentVolumeClaim's status, the CSI driver's Pods and the node's volume limits",
        ),
        "Unhealthy" => (
            "a liveness or readiness probe keeps failing",
            "check the probe's path, port and timeouts against what the container serves",
        ),
        "FailedCreate" => (
            "a controller could not create the objects it owns (quota, admission, RBAC)",
            "read the Event's message; check ResourceQuotas and admission webhooks in the namespace",
        ),
        _ => (
            "the component that reports it keeps hitting the same problem",
            "read the Event's message and the reporting component's logs",
        ),
    }
}

impl Diagnoser for WarningBurst {
    fn name(&self) -> &str {
        "warning-burst"
    }

    fn diagnose(&self, history: &ObjectHistory, context: &Context) -> Vec<Finding> {
        let mut by_reason: BTreeMap<&str, Vec<Fact<'_>>> = BTreeMap::new();
        for fact in facts(history).filter(|f| f.is_warning_event()) {
            by_reason.entry(fact.reason()).or_default().push(fact);
        }
        let mut out = Vec::new();
        for (reason, events) in by_reason {
            // One Event object counts its repeats; several Event objects add up.
            let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
            let mut unnamed = 0u64;
            for event in &events {
                match event.attribute(kelemetry_core::vocabulary::EVENT_NAME) {
                    Some(name) => {
                        let count = counts.entry(name).or_insert(0);
                        *count = (*count).max(event.event_count());
                    }
                    None => unnamed += event.event_count(),
                }
            }
            let occurrences = counts.values().sum::<u64>() + unnamed;
            if occurrences < context.thresholds.warning_burst.max(1) {
                continue;
            }
            let (meaning, next) = warning_advice(reason);
            let first = events[0].time();
            let last = events[events.len() - 1].time();
            let message = events.iter().rev().find_map(|e| e.message()).unwrap_or("");
            out.push(Finding {
                diagnoser: self.name().to_owned(),
                title: format!(
                    "{occurrences} {reason} warnings on {}",
                    object_name(&history.key)
                ),
                object: object_name(&history.key),
                from: first,
                to: last,
                evidence: capped(
                    events
                        .iter()
                        .map(|e| evidence(history, *e, format!("count {}", e.event_count())))
                        .collect(),
                ),
                explanation: format!(
                    "{reason} was reported {occurrences} times between {first} and {last}: {meaning}. \
                     The latest message: {message}"
                ),
                next_steps: vec![next.to_owned()],
            });
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------------------------

/// One writer updating one object more than `hotLoopWritesPerMinute` times within a minute.
#[derive(Debug)]
pub struct HotLoop;

impl Diagnoser for HotLoop {
    fn name(&self) -> &str {
        "hot-loop"
    }

    fn diagnose(&self, history: &ObjectHistory, context: &Context) -> Vec<Finding> {
        let limit = context.thresholds.hot_loop_writes_per_minute.max(2);
        let mut by_user: BTreeMap<&str, Vec<Fact<'_>>> = BTreeMap::new();
        for fact in facts(history) {
            if fact.is_successful_write() && matches!(fact.verb(), Some("update" | "patch")) {
                by_user
                    .entry(fact.user().unwrap_or(""))
                    .or_default()
                    .push(fact);
            }
        }
        let minute = SignedDuration::from_mins(1);
        let mut out = Vec::new();
        for (user, writes) in by_user {
            // The busiest minute: the most writes in any window of 60 s starting at a write.
            let mut best = (0usize, 0usize);
            let mut end = 0;
            for start in 0..writes.len() {
                let until = writes[start]
                    .time()
                    .saturating_add(minute)
                    .unwrap_or(Timestamp::MAX);
                end = end.max(start);
                while end + 1 < writes.len() && writes[end + 1].time() < until {
                    end += 1;
                }
                if end + 1 - start > best.1 - best.0 {
                    best = (start, end + 1);
                }
            }
            let busiest = &writes[best.0..best.1];
            if busiest.len() < limit {
                continue;
            }
            let fields = super::tally(
                busiest
                    .iter()
                    .flat_map(|w| w.diff_lines().map(|l| l.path.to_owned()))
                    .filter(|path| {
                        !path.starts_with("metadata.resourceVersion")
                            && !path.starts_with("metadata.generation")
                            && !path.starts_with("metadata.managedFields")
                    }),
            );
            let mut top: Vec<(String, usize)> = fields.into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let changed = top
                .iter()
                .take(3)
                .map(|(path, n)| format!("{path} ({n}×)"))
                .collect::<Vec<_>>()
                .join(", ");
            let first = busiest[0].time();
            let last = busiest[busiest.len() - 1].time();
            out.push(Finding {
                diagnoser: self.name().to_owned(),
                title: format!(
                    "hot loop: {user} wrote {} {} times in {}",
                    object_name(&history.key),
                    busiest.len(),
                    spoken(since(first, last).max(Duration::from_secs(1)))
                ),
                object: object_name(&history.key),
                from: first,
                to: last,
                evidence: capped(busiest.iter().map(|w| evidence(history, *w, "")).collect()),
                explanation: format!(
                    "{user} wrote this object {} times between {first} and {last}{}. A controller that writes the \
                     same object this often usually reacts to its own writes (each write is an event that queues \
                     the object again) or never reaches a steady state.",
                    busiest.len(),
                    if changed.is_empty() {
                        " without changing anything".to_owned()
                    } else {
                        format!(", changing {changed}")
                    }
                ),
                next_steps: vec![
                    "check whether the writer compares the desired state with the current one before writing".to_owned(),
                    "check for a field that changes on every write (a timestamp, a counter, an unordered list)".to_owned(),
                ],
            });
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------------------------

/// Two writers taking the same field from each other: each sets it back to what it was before the other's write.
#[derive(Debug)]
pub struct ControllerFight;

/// Paths that change with every write and say nothing about who wants what.
fn bookkeeping(path: &str) -> bool {
    [
        "metadata.resourceVersion",
        "metadata.generation",
        "metadata.managedFields",
        "status.observedGeneration",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix))
        || path.ends_with("Time")
        || path.ends_with("Timestamp")
}

impl Diagnoser for ControllerFight {
    fn name(&self) -> &str {
        "controller-fight"
    }

    fn diagnose(&self, history: &ObjectHistory, context: &Context) -> Vec<Finding> {
        // Per field: its changes in order, (write, user, old, new).
        type Change<'a> = (Fact<'a>, &'a str, &'a str, &'a str);
        let mut by_path: BTreeMap<&str, Vec<Change<'_>>> = BTreeMap::new();
        for fact in facts(history).filter(|f| f.is_successful_write()) {
            let user = fact.user().unwrap_or("");
            for line in fact.diff_lines() {
                if !bookkeeping(line.path) {
                    by_path
                        .entry(line.path)
                        .or_default()
                        .push((fact, user, line.old, line.new));
                }
            }
        }
        type Fought<'a> = Vec<(&'a str, Vec<Change<'a>>)>;
        let mut fights: BTreeMap<(&str, &str), Fought<'_>> = BTreeMap::new();
        for (path, changes) in by_path {
            // A flip: another writer than the previous one puts back the value the previous one replaced.
            let flips: Vec<Change<'_>> = changes
                .windows(2)
                .filter(|pair| pair[1].1 != pair[0].1 && pair[1].3 == pair[0].2)
                .map(|pair| pair[1])
                .collect();
            if flips.len() < context.thresholds.fight_flips.max(1) {
                continue;
            }
            let mut writers: Vec<&str> = changes.iter().map(|c| c.1).collect();
            writers.sort_unstable();
            writers.dedup();
            let (a, b) = match writers.as_slice() {
                [a, b, ..] => (*a, *b),
                _ => continue,
            };
            fights.entry((a, b)).or_default().push((path, changes));
        }
        let mut out = Vec::new();
        for ((a, b), fields) in fights {
            let paths: Vec<&str> = fields.iter().map(|(p, _)| *p).collect();
            let changes: Vec<Change<'_>> =
                fields.iter().flat_map(|(_, c)| c.iter().copied()).collect();
            let first = changes
                .iter()
                .map(|c| c.0.time())
                .min()
                .unwrap_or(Timestamp::UNIX_EPOCH);
            let last = changes.iter().map(|c| c.0.time()).max().unwrap_or(first);
            let values: BTreeMap<&str, BTreeSet<&str>> =
                changes.iter().fold(BTreeMap::new(), |mut m, c| {
                    m.entry(c.1).or_insert_with(BTreeSet::new).insert(c.3);
                    m
                });
            let wants = |user: &str| {
                values
                    .get(user)
                    .map(|v| v.iter().copied().collect::<Vec<_>>().join(" or "))
                    .unwrap_or_default()
            };
            out.push(Finding {
                diagnoser: self.name().to_owned(),
                title: format!(
                    "controller fight: {a} and {b} keep changing {} of {}",
                    paths.join(", "),
                    object_name(&history.key)
                ),
                object: object_name(&history.key),
                from: first,
                to: last,
                evidence: capped(
                    changes
                        .iter()
                        .map(|(fact, _, old, new)| evidence(history, *fact, format!("{old} -> {new}")))
                        .collect(),
                ),
                explanation: format!(
                    "Between {first} and {last}, {a} sets {field} to {} and {b} sets it to {}, each undoing the \
                     other ({} changes). Two controllers (or a controller and a person, or a GitOps tool) own the \
                     same field; neither will win, and every write wakes the other.",
                    wants(a),
                    wants(b),
                    changes.len(),
                    field = paths.join(", "),
                ),
                next_steps: vec![
                    format!("decide which of {a} and {b} owns {}; stop the other from writing it", paths.join(", ")),
                    "with server-side apply, the field's manager in metadata.managedFields names the current owner".to_owned(),
                ],
            });
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------------------------

/// Creates the owner never counts (the original's first incident): a controller creates more children than it
/// ever wanted, while the replicas it reports never grow. Its informer does not see (or does not count) the
/// children it created.
#[derive(Debug)]
pub struct UnobservedCreates;

/// Timeouts of controllers that recreate on their own when they never observe what they created.
const KNOWN_TIMEOUTS: &[(Duration, &str)] = &[(
    Duration::from_secs(300),
    "the controller expectations timeout of the ReplicaSet, Job and DaemonSet controllers (5 min)",
)];

impl Diagnoser for UnobservedCreates {
    fn name(&self) -> &str {
        "unobserved-creates"
    }

    fn diagnose(&self, history: &ObjectHistory, context: &Context) -> Vec<Finding> {
        let creates: Vec<Fact<'_>> = facts(history)
            .filter(|f| f.is_event() && f.reason() == "SuccessfulCreate")
            .collect();
        if creates.is_empty() {
            return Vec::new();
        }
        let deletes = facts(history)
            .filter(|f| f.is_event() && f.reason() == "SuccessfulDelete")
            .map(Fact::event_count)
            .sum::<u64>();
        // What the owner wanted, and what it reported having, from its snapshots and diffs.
        let mut desired: Option<u64> = None;
        let mut reported: u64 = 0;
        for fact in facts(history) {
            for snapshot in fact.snapshots() {
                if let Some(n) = snapshot["spec"]["replicas"].as_u64() {
                    desired = Some(desired.map_or(n, |d| d.max(n)));
                }
                if let Some(n) = snapshot["status"]["replicas"].as_u64() {
                    reported = reported.max(n);
                }
            }
            for line in fact.diff_lines() {
                let value = line.new.parse::<u64>().ok();
                match (line.path, value) {
                    ("spec.replicas", Some(n)) => desired = Some(desired.map_or(n, |d| d.max(n))),
                    ("status.replicas", Some(n)) => reported = reported.max(n),
                    _ => {}
                }
            }
        }
        let Some(desired) = desired else {
            return Vec::new();
        };
        // Repeats of one Event object count once per occurrence.
        let mut occurrences: BTreeMap<&str, u64> = BTreeMap::new();
        let mut unnamed = 0;
        for create in &creates {
            match create.attribute(kelemetry_core::vocabulary::EVENT_NAME) {
                Some(name) => {
                    let n = occurrences.entry(name).or_insert(0);
                    *n = (*n).max(create.event_count());
                }
                None => unnamed += create.event_count(),
            }
        }
        let created = occurrences.values().sum::<u64>() + unnamed;
        let excess = created.saturating_sub(deletes).saturating_sub(desired);
        if excess < context.thresholds.unobserved_creates_excess.max(1) as u64 || reported > desired
        {
            return Vec::new();
        }
        let first = creates[0].time();
        let last = creates[creates.len() - 1].time();
        // The average interval between creates: Event times have a resolution of one second, and one Event
        // object counts its repeats, so the gaps between Event activities say less than the span over the count.
        let period = u32::try_from(created.saturating_sub(1))
            .ok()
            .filter(|n| *n > 0)
            .map(|n| since(first, last) / n);
        let known = period.and_then(|p| {
            KNOWN_TIMEOUTS.iter().find(|(timeout, _)| {
                let (p, t) = (p.as_secs_f64(), timeout.as_secs_f64());
                (p - t).abs() <= t * 0.15
            })
        });
        let period_text = match (period, known) {
            (Some(p), Some((_, name))) => {
                format!(
                    " A new one every {} matches {name}: the controller waited for the creates it never observed, gave up and created again.",
                    spoken(p)
                )
            }
            (Some(p), None) if p >= Duration::from_secs(1) => {
                format!(" A new one about every {}.", spoken(p))
            }
            (Some(_), None) => format!(
                " All {created} within {}: the controller created again as soon as it looked.",
                spoken(since(first, last).max(Duration::from_secs(1)))
            ),
            (None, _) => String::new(),
        };
        vec![Finding {
            diagnoser: self.name().to_owned(),
            title: format!(
                "{} created {created} children but never counted more than {reported} (it wants {desired})",
                object_name(&history.key)
            ),
            object: object_name(&history.key),
            from: first,
            to: last,
            evidence: capped(
                creates
                    .iter()
                    .map(|c| evidence(history, *c, c.message().unwrap_or("").to_owned()))
                    .collect(),
            ),
            explanation: format!(
                "Between {first} and {last} the controller reported {created} successful creates (and {deletes} \
                 deletes) for an object that wants {desired}, while the replicas it reports never went above \
                 {reported}. The creates succeed, so the apiserver has the children; the controller does not count \
                 them: its informer does not see them (a failing list-watch), or they no longer match its selector \
                 (their labels changed after creation, e.g. by a mutating admission webhook or policy).{period_text}"
            ),
            next_steps: vec![
                "list the children it created (by owner reference) and compare their labels with its selector".to_owned(),
                "check the controller's logs for list/watch errors on the children's resource".to_owned(),
                "check mutating admission webhooks and policies that match the children".to_owned(),
            ],
        }]
    }
}

// ---------------------------------------------------------------------------------------------------------------

/// An elected holder that renews its Lease while an object it used to write at a steady pace goes stale (the
/// original's second incident): alive, elected, and not doing its work.
#[derive(Debug)]
pub struct StaleHolder;

impl Diagnoser for StaleHolder {
    fn name(&self) -> &str {
        "stale-holder"
    }

    fn needs_leases(&self) -> bool {
        true
    }

    fn diagnose(&self, history: &ObjectHistory, context: &Context) -> Vec<Finding> {
        let thresholds = &context.thresholds;
        if history.key.resource == "leases" || context.leases.is_empty() {
            return Vec::new();
        }
        let mut by_user: BTreeMap<&str, Vec<Fact<'_>>> = BTreeMap::new();
        for fact in facts(history) {
            if fact.is_successful_write()
                && fact.verb() != Some("delete")
                && let Some(user) = fact.user()
            {
                by_user.entry(user).or_default().push(fact);
            }
        }
        let mut out = Vec::new();
        for (user, writes) in by_user {
            if writes.len() < thresholds.stale_min_writes.max(2) {
                continue;
            }
            let gaps: Vec<Duration> = writes
                .windows(2)
                .map(|pair| since(pair[0].time(), pair[1].time()))
                .collect();
            let Some(period) = median(gaps.clone()) else {
                continue;
            };
            // A steady pace: every interval within half a period of the usual one.
            let steady =
                period > Duration::ZERO && gaps.iter().all(|g| g.abs_diff(period) <= period / 2);
            if !steady {
                continue;
            }
            let last_write = writes[writes.len() - 1];
            let silence = since(last_write.time(), context.last_seen);
            let needed = (period * thresholds.stale_intervals).max(thresholds.stale_min_silence);
            if silence < needed {
                continue;
            }
            for lease in &context.leases {
                if lease.key.cluster != history.key.cluster {
                    continue;
                }
                let renewals: Vec<Fact<'_>> = lease
                    .activities
                    .iter()
                    .map(Fact::new)
                    .filter(|f| {
                        f.is_successful_write()
                            && matches!(f.verb(), Some("update" | "patch"))
                            && f.user() == Some(user)
                            && f.time() > last_write.time()
                    })
                    .collect();
                if renewals.len() < thresholds.stale_lease_renewals.max(1) {
                    continue;
                }
                let lease_name = object_name(&lease.key);
                let mut shown: Vec<Evidence> = writes
                    .iter()
                    .rev()
                    .take(3)
                    .map(|w| evidence(history, *w, "a regular write"))
                    .collect();
                shown[0].note = "the last write".to_owned();
                let renewal_evidence: Vec<Evidence> = renewals
                    .iter()
                    .map(|r| evidence(lease, *r, "Lease renewed"))
                    .collect();
                let keep = renewal_evidence.len().min(3);
                shown.extend(renewal_evidence[..keep].iter().cloned());
                if renewal_evidence.len() > keep {
                    shown.extend(renewal_evidence.last().cloned());
                }
                out.push(Finding {
                    diagnoser: self.name().to_owned(),
                    title: format!(
                        "{user} renews {lease_name} but has not written {} for {} (it wrote every {} before)",
                        object_name(&history.key),
                        spoken(silence),
                        spoken(period)
                    ),
                    object: object_name(&history.key),
                    from: last_write.time(),
                    to: context.last_seen,
                    evidence: shown,
                    explanation: format!(
                        "{user} wrote this object {} times at a steady pace of one write every {}, the last at {}. \
                         Since then, {} without a write, while the same user renewed the Lease {lease_name} {} \
                         times: the process is alive and holds its leadership, but its work loop is not running \
                         for this object (stuck on a lock or a slow call, a dead worker, or a full queue).",
                        writes.len(),
                        spoken(period),
                        last_write.time(),
                        spoken(silence),
                        renewals.len()
                    ),
                    next_steps: vec![
                        "take a goroutine/thread dump of the holder, or read its logs since the last write".to_owned(),
                        "check the controller's work queue depth and its reconcile errors".to_owned(),
                        "as a stopgap, restart the holder: another replica takes the Lease over".to_owned(),
                    ],
                });
            }
        }
        out
    }
}
