//! Automatic diagnosis (docs/diagnose.md): known failure patterns found in what the store holds about objects, each
//! returned as a [`Finding`] with its evidence (the activities that show it), a plain-language explanation and what
//! to check next.
//!
//! - [`Diagnoser`]: the trait; one object's history at a time, with the [`Context`] (the Leases of the cluster and
//!   their writers, the [`Thresholds`]);
//! - the built-in diagnosers ([`builtin`]): creates the owner never counts, an elected holder whose objects go
//!   stale, hot loops and controller fights, stuck deletions, repeated failed requests, bursts of Warning Events;
//! - [`DeclaredRule`]: simple diagnosers declared in YAML (match activities, count them, name the finding);
//! - [`Diagnosis`]: the set of diagnosers and thresholds, run over a [`TraceView`] ([`Diagnosis::view`]) or over
//!   every object the store holds ([`Diagnosis::all`]).

pub mod builtin;
mod declared;
mod facts;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kelemetry_core::{ObjectKey, ObjectSelector};
use serde::{Deserialize, Serialize};

pub use declared::{DeclaredRule, DiagnoseConfig, DiagnoseConfigError};

use crate::assemble::{ObjectHistory, TraceView, read_histories};
use crate::reader::{ReadError, Reader};

/// One activity that shows a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Evidence {
    /// The object it happened to.
    pub object: String,
    /// The activity's span id (16 hex digits), as the views show it; empty when the evidence is no one activity.
    pub span_id: String,
    /// When.
    pub time: Timestamp,
    /// The activity's source and title (`audit alice patch (Forbidden)`).
    pub activity: String,
    /// Why it is evidence.
    pub note: String,
}

/// A known failure pattern found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Finding {
    /// The diagnoser that found it (`stuck-deletion`).
    pub diagnoser: String,
    /// One line: what is wrong with what.
    pub title: String,
    /// The object it is about (`configmaps default/stuck`).
    pub object: String,
    /// When it starts.
    pub from: Timestamp,
    /// When it ends (the last record seen, when it still goes on).
    pub to: Timestamp,
    /// The activities that show it, by time.
    pub evidence: Vec<Evidence>,
    /// What it means, in plain language.
    pub explanation: String,
    /// What to check next.
    pub next_steps: Vec<String>,
}

impl fmt::Display for Finding {
    /// The text `kelemetry diagnose` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "finding: {}", self.title)?;
        writeln!(
            f,
            "  {} · {} · {} .. {}",
            self.diagnoser, self.object, self.from, self.to
        )?;
        for line in textwrap(&self.explanation, 100) {
            writeln!(f, "  {line}")?;
        }
        writeln!(f, "  evidence:")?;
        for evidence in &self.evidence {
            writeln!(
                f,
                "    {}  {}  {}  [{}]{}",
                evidence.time.strftime("%H:%M:%S%.3f"),
                evidence.object,
                evidence.activity,
                evidence.span_id,
                if evidence.note.is_empty() {
                    String::new()
                } else {
                    format!("  {}", evidence.note)
                }
            )?;
        }
        if !self.next_steps.is_empty() {
            writeln!(f, "  check next:")?;
            for step in &self.next_steps {
                writeln!(f, "    - {step}")?;
            }
        }
        Ok(())
    }
}

/// Words into lines of at most `width` characters.
fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The thresholds of the built-in diagnosers. Every field has a default; YAML names are camelCase.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct Thresholds {
    /// A deletion is stuck when finalizers still hold the object this long after the delete (default 30 s).
    #[serde(with = "humantime_serde")]
    pub stuck_deletion_after: Duration,
    /// Failed requests (401, 403, 422, 5xx, and 409s not followed by the writer's success) by one user on one
    /// object that make a finding (default 3).
    pub failed_requests: usize,
    /// A 409 Conflict followed by a successful write of the same user within this time is optimistic concurrency
    /// at work, not a failure (default 60 s).
    #[serde(with = "humantime_serde")]
    pub conflict_retry_within: Duration,
    /// Successful writes (update, patch) by one writer to one object within a minute that make a hot loop (default
    /// 60; a healthy rollout of the recorded Deployment had 22 status writes in 15 s).
    pub hot_loop_writes_per_minute: usize,
    /// Times two writers take a field from each other that make a controller fight (default 3).
    pub fight_flips: usize,
    /// Occurrences of one Warning Event reason on one object that make a burst (default 3).
    pub warning_burst: u64,
    /// Pods (or other children) created beyond the most the owner ever wanted that make a finding (default 2).
    pub unobserved_creates_excess: usize,
    /// Writes a holder must have made to an object, at a regular pace, before silence counts (default 3).
    pub stale_min_writes: usize,
    /// Silence counts when it lasts this many of the writer's usual intervals (default 3)...
    pub stale_intervals: u32,
    /// ...and at least this long (default 30 s).
    #[serde(with = "humantime_serde")]
    pub stale_min_silence: Duration,
    /// Lease renewals by the writer during the silence that make it "alive and elected" (default 2).
    pub stale_lease_renewals: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            stuck_deletion_after: Duration::from_secs(30),
            failed_requests: 3,
            conflict_retry_within: Duration::from_secs(60),
            hot_loop_writes_per_minute: 60,
            fight_flips: 3,
            warning_burst: 3,
            unobserved_creates_excess: 2,
            stale_min_writes: 3,
            stale_intervals: 3,
            stale_min_silence: Duration::from_secs(30),
            stale_lease_renewals: 2,
        }
    }
}

/// What a diagnoser may look at besides the object itself.
#[derive(Debug)]
#[non_exhaustive]
pub struct Context {
    /// The thresholds.
    pub thresholds: Thresholds,
    /// The Leases of the clusters concerned, with their activities in the range.
    pub leases: Vec<ObjectHistory>,
    /// The last time anything was recorded in what is diagnosed: "still so at the end" means until then.
    pub last_seen: Timestamp,
}

/// A diagnoser: looks at one object's history and says what is wrong with it.
pub trait Diagnoser: Send + Sync + fmt::Debug {
    /// Its name (`stuck-deletion`), in every finding it returns.
    fn name(&self) -> &str;

    /// Whether it reads [`Context::leases`] (the runner reads them only when one does).
    fn needs_leases(&self) -> bool {
        false
    }

    /// The findings about `object`.
    fn diagnose(&self, object: &ObjectHistory, context: &Context) -> Vec<Finding>;
}

/// The diagnosers and their thresholds.
#[derive(Clone, Debug)]
pub struct Diagnosis {
    diagnosers: Vec<Arc<dyn Diagnoser>>,
    thresholds: Thresholds,
}

impl Default for Diagnosis {
    /// The built-in diagnosers with the default thresholds.
    fn default() -> Self {
        Self::new(builtin::all(), Thresholds::default())
    }
}

/// How many Leases are read for the context at most.
const MAX_LEASES: usize = 2_000;

impl Diagnosis {
    /// These diagnosers with these thresholds.
    pub fn new(diagnosers: Vec<Arc<dyn Diagnoser>>, thresholds: Thresholds) -> Self {
        Self {
            diagnosers,
            thresholds,
        }
    }

    /// Adds a diagnoser.
    pub fn with(mut self, diagnoser: Arc<dyn Diagnoser>) -> Self {
        self.diagnosers.push(diagnoser);
        self
    }

    /// The diagnosers.
    pub fn diagnosers(&self) -> &[Arc<dyn Diagnoser>] {
        &self.diagnosers
    }

    /// The findings about every object of `view`, by time.
    pub async fn view(
        &self,
        reader: &dyn Reader,
        view: &TraceView,
    ) -> Result<Vec<Finding>, ReadError> {
        let histories: Vec<&ObjectHistory> = view
            .root
            .walk()
            .into_iter()
            .map(|(_, node)| &node.history)
            .collect();
        let clusters: Vec<&str> = histories.iter().map(|h| h.key.cluster.as_str()).collect();
        let context = self
            .context(reader, &clusters, view.from, view.to, &histories)
            .await?;
        Ok(self.run(histories, &context))
    }

    /// The findings about every object in `reader` with activities between `from` and `to` (at most `limit`
    /// objects), by time; also how many objects were looked at.
    pub async fn all(
        &self,
        reader: &dyn Reader,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<(Vec<Finding>, usize), ReadError> {
        let keys = reader.find_objects(&ObjectSelector::any(), limit).await?;
        let mut histories = Vec::new();
        for chunk in keys.chunks(200) {
            histories.extend(
                read_histories(reader, chunk, from, to)
                    .await?
                    .into_iter()
                    .flatten(),
            );
        }
        let refs: Vec<&ObjectHistory> = histories.iter().collect();
        let clusters: Vec<&str> = refs.iter().map(|h| h.key.cluster.as_str()).collect();
        let context = self.context(reader, &clusters, from, to, &refs).await?;
        let count = refs.len();
        Ok((self.run(refs, &context), count))
    }

    fn run(&self, histories: Vec<&ObjectHistory>, context: &Context) -> Vec<Finding> {
        let mut findings: Vec<Finding> = histories
            .into_iter()
            .flat_map(|history| {
                self.diagnosers
                    .iter()
                    .flat_map(move |d| d.diagnose(history, context))
            })
            .collect();
        findings.sort_by(|a, b| {
            (a.from, &a.diagnoser, &a.object).cmp(&(b.from, &b.diagnoser, &b.object))
        });
        findings
    }

    async fn context(
        &self,
        reader: &dyn Reader,
        clusters: &[&str],
        from: Timestamp,
        to: Timestamp,
        histories: &[&ObjectHistory],
    ) -> Result<Context, ReadError> {
        let mut last_seen = histories
            .iter()
            .flat_map(|h| h.activities.iter().map(|a| a.end.max(a.start)))
            .max()
            .unwrap_or(from);
        let mut leases = Vec::new();
        if self.diagnosers.iter().any(|d| d.needs_leases()) {
            let mut seen = std::collections::BTreeSet::new();
            for cluster in clusters {
                if !seen.insert(*cluster) {
                    continue;
                }
                let selector = ObjectSelector::any()
                    .with_cluster(*cluster)
                    .with_resource("leases");
                let keys: Vec<ObjectKey> = reader
                    .find_objects(&selector, MAX_LEASES)
                    .await?
                    .into_iter()
                    .filter(|k| k.group == "coordination.k8s.io")
                    .collect();
                for chunk in keys.chunks(200) {
                    leases.extend(
                        read_histories(reader, chunk, from, to)
                            .await?
                            .into_iter()
                            .flatten(),
                    );
                }
            }
            if let Some(latest) = leases
                .iter()
                .flat_map(|h| h.activities.iter().map(|a| a.end.max(a.start)))
                .max()
            {
                last_seen = last_seen.max(latest);
            }
        }
        Ok(Context {
            thresholds: self.thresholds.clone(),
            leases,
            last_seen,
        })
    }
}

/// An object as findings name it: `configmaps default/stuck` (with the group and the cluster when they say more).
pub(crate) fn object_name(key: &ObjectKey) -> String {
    let resource = key.group_resource();
    let name = if key.namespace.is_empty() {
        key.name.to_string()
    } else {
        format!("{}/{}", key.namespace, key.name)
    };
    format!("{resource} {name} ({})", key.cluster)
}

/// Counts by a key, in key order.
pub(crate) fn tally<K: Ord, I: IntoIterator<Item = K>>(items: I) -> BTreeMap<K, usize> {
    let mut out = BTreeMap::new();
    for item in items {
        *out.entry(item).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests;
