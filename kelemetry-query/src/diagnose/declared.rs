//! Diagnosers declared in YAML ([`DeclaredRule`]) and the diagnose configuration ([`DiagnoseConfig`]): thresholds
//! and rules.
//!
//! ```yaml
//! thresholds:
//!   stuckDeletionAfter: 2m
//! rules:
//!   - name: probe-failures
//!     match: {source: event, title: Unhealthy}
//!     atLeast: 5
//!     within: 10m
//!     title: "{count} probe failures on {object}"
//!     explanation: A liveness or readiness probe keeps failing.
//!     nextSteps: [Check the probe's path and timeouts.]
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use super::facts::Fact;
use super::{Context, Diagnoser, Diagnosis, Evidence, Finding, Thresholds, builtin, object_name};
use crate::assemble::ObjectHistory;
use crate::patterns::FieldPatterns;

/// A diagnose configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiagnoseConfigError {
    /// A rule's pattern is not a regular expression.
    #[error("rule {rule:?}: match.{field}: {source}")]
    Pattern {
        /// The rule.
        rule: String,
        /// The field.
        field: String,
        /// The parser's complaint.
        #[source]
        source: regex::Error,
    },
    /// A rule is inconsistent.
    #[error("rule {rule:?}: {message}")]
    Rule {
        /// The rule.
        rule: String,
        /// What is wrong.
        message: String,
    },
}

/// Thresholds for the built-in diagnosers, rules of one's own, and which built-ins to leave out.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct DiagnoseConfig {
    /// The built-in diagnosers' thresholds.
    pub thresholds: Thresholds,
    /// Built-in diagnosers not to run, by name.
    pub disable: Vec<String>,
    /// Diagnosers declared here.
    pub rules: Vec<RuleConfig>,
}

/// One declared rule, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct RuleConfig {
    /// Its name, in its findings.
    pub name: String,
    /// Regular expressions (whole-value) over an activity's fields: `source` (`audit`, `event`, ...), `title`, and
    /// its attributes (`responseCode`, `username`, `type`, `tag` (the verb) ...). All must match.
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, String>,
    /// Matching activities are counted apart per value of these fields (e.g. `[username]`).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// How many matching activities within `within` make a finding.
    pub at_least: usize,
    /// The window (default: the whole range).
    #[serde(default, with = "humantime_serde")]
    pub within: Option<Duration>,
    /// The finding's title; `{count}`, `{object}` and the `group_by` fields are filled in.
    pub title: String,
    /// What it means.
    pub explanation: String,
    /// What to check next.
    #[serde(default)]
    pub next_steps: Vec<String>,
}

impl DiagnoseConfig {
    /// The built-in diagnosers not disabled, and the declared rules, with the thresholds.
    pub fn build(&self) -> Result<Diagnosis, DiagnoseConfigError> {
        let mut diagnosers: Vec<Arc<dyn Diagnoser>> = builtin::all()
            .into_iter()
            .filter(|d| !self.disable.iter().any(|name| name == d.name()))
            .collect();
        for rule in &self.rules {
            diagnosers.push(Arc::new(DeclaredRule::new(rule)?));
        }
        Ok(Diagnosis::new(diagnosers, self.thresholds.clone()))
    }
}

/// A diagnoser declared in YAML: count the activities of one object that match, per group, within a window.
#[derive(Debug)]
pub struct DeclaredRule {
    config: RuleConfig,
    patterns: FieldPatterns,
}

impl DeclaredRule {
    /// The rule `config` describes.
    pub fn new(config: &RuleConfig) -> Result<Self, DiagnoseConfigError> {
        if config.at_least == 0 {
            return Err(DiagnoseConfigError::Rule {
                rule: config.name.clone(),
                message: "atLeast must be 1 or more".into(),
            });
        }
        if config.matches.is_empty() {
            return Err(DiagnoseConfigError::Rule {
                rule: config.name.clone(),
                message: "needs at least one field in match".into(),
            });
        }
        let patterns = FieldPatterns::compile(&config.matches).map_err(|(field, source)| {
            DiagnoseConfigError::Pattern {
                rule: config.name.clone(),
                field,
                source,
            }
        })?;
        Ok(Self {
            config: config.clone(),
            patterns,
        })
    }

    fn field<'a>(fact: Fact<'a>, name: &str) -> Option<&'a str> {
        match name {
            "source" => Some(fact.source()),
            "title" => Some(&fact.span.name),
            other => fact.attribute(other),
        }
    }
}

impl Diagnoser for DeclaredRule {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn diagnose(&self, history: &ObjectHistory, _: &Context) -> Vec<Finding> {
        let mut groups: BTreeMap<Vec<String>, Vec<Fact<'_>>> = BTreeMap::new();
        for fact in history.activities.iter().map(Fact::new) {
            let matched = self.patterns.matches(|field| Self::field(fact, field));
            if matched {
                let key = self
                    .config
                    .group_by
                    .iter()
                    .map(|field| Self::field(fact, field).unwrap_or("").to_owned())
                    .collect();
                groups.entry(key).or_default().push(fact);
            }
        }
        let within = self
            .config
            .within
            .and_then(|w| SignedDuration::try_from(w).ok())
            .unwrap_or(SignedDuration::MAX);
        let mut out = Vec::new();
        for (key, facts) in groups {
            // The densest window: the most matches starting at one of them.
            let mut best = (0, 0);
            for start in 0..facts.len() {
                let until = facts[start]
                    .time()
                    .saturating_add(within)
                    .unwrap_or(Timestamp::MAX);
                let end = start
                    + facts[start..]
                        .iter()
                        .take_while(|f| f.time() <= until)
                        .count();
                if end - start > best.1 - best.0 {
                    best = (start, end);
                }
            }
            let hits = &facts[best.0..best.1];
            if hits.len() < self.config.at_least {
                continue;
            }
            let object = object_name(&history.key);
            let mut title = self
                .config
                .title
                .replace("{count}", &hits.len().to_string())
                .replace("{object}", &object);
            for (field, value) in self.config.group_by.iter().zip(&key) {
                title = title.replace(&format!("{{{field}}}"), value);
            }
            out.push(Finding {
                diagnoser: self.config.name.clone(),
                title,
                object: object.clone(),
                from: hits[0].time(),
                to: hits[hits.len() - 1].time(),
                evidence: hits
                    .iter()
                    .take(12)
                    .map(|f| Evidence {
                        object: object.clone(),
                        span_id: format!("{:016x}", f.display_id()),
                        time: f.time(),
                        activity: format!("{} {}", f.source(), f.span.name),
                        note: String::new(),
                    })
                    .collect(),
                explanation: self.config.explanation.clone(),
                next_steps: self.config.next_steps.clone(),
            });
        }
        out
    }
}
