//! [`ExtensionsConfig`]: the extension providers of the read side as YAML (docs/extension-traces.md), each
//! provider's config beside it, and [`ExtensionsConfig::build`].
//!
//! ```yaml
//! timeout: 3s            # wall time of all the fetches of one view
//! maxConcurrency: 8      # fetches in flight at once
//! providers:
//!   - name: apiserver
//!     for: activities    # objects | activities | both
//!     when: {source: audit}
//!     jaeger:
//!       url: http://jaeger-query:16686
//!       service: apiserver
//!       tags: {audit-id: "{auditId}"}
//!   - name: node-traces
//!     for: objects
//!     when: {resource: pods}
//!     http:
//!       url: "http://node-traces/api/traces?pod={namespace}/{name}&start={startMicros}&end={endMicros}"
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::template::Template;
use super::{ExtensionLimits, ExtensionProvider, ExtensionTarget, Extensions, TargetKind};
use crate::patterns::FieldPatterns;

/// An extensions config that cannot be used; names the provider and what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A provider's config is inconsistent.
    #[error("extension provider {provider:?}: {message}")]
    Provider {
        /// The provider's name.
        provider: String,
        /// What is wrong.
        message: String,
    },
    /// A `when` pattern is not a regular expression.
    #[error("extension provider {provider:?}: when.{field}: {source}")]
    Pattern {
        /// The provider's name.
        provider: String,
        /// The field the pattern is for.
        field: String,
        /// The parser's complaint.
        #[source]
        source: regex::Error,
    },
}

/// The extensions of the read side: limits per view and the providers.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ExtensionsConfig {
    /// Wall time for all the fetches of one view (default 3 s).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Fetches in flight at once (default 8).
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Targets asked about per view (default 1,000).
    #[serde(default)]
    pub max_fetches: Option<usize>,
    /// Spans grafted per view (default 10,000).
    #[serde(default)]
    pub max_spans: Option<usize>,
    /// The providers, asked in this order.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
}

/// Which targets a provider is asked about.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TargetKinds {
    /// Objects only.
    Objects,
    /// Activities only (the default).
    #[default]
    Activities,
    /// Both.
    Both,
}

/// One provider.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct ProviderConfig {
    /// Its name, in warnings and on the grafted spans.
    pub name: String,
    /// `false` keeps it configured but never asks it (default `true`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Objects, activities or both.
    #[serde(default, rename = "for")]
    pub targets: TargetKinds,
    /// Regular expressions (whole-value matches) a target's fields must all match.
    #[serde(default)]
    pub when: BTreeMap<String, String>,
    /// Largest answer read, bytes (default 8 MiB).
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// A Jaeger query service.
    #[serde(default)]
    pub jaeger: Option<JaegerConfig>,
    /// A service answering with Jaeger-shaped JSON.
    #[serde(default)]
    pub http: Option<HttpConfig>,
}

fn yes() -> bool {
    true
}

/// A provider of the kind `jaeger`: traces found by Jaeger's search (`GET /api/traces`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct JaegerConfig {
    /// The query service's base URL (`http://jaeger-query:16686`).
    pub url: String,
    /// The service searched.
    pub service: Template,
    /// The operation searched (default: any).
    #[serde(default)]
    pub operation: Option<Template>,
    /// Tags every span found must carry (Jaeger's tag search), values templated.
    #[serde(default)]
    pub tags: BTreeMap<String, Template>,
    /// Most traces per target (default 5).
    #[serde(default)]
    pub limit: Option<usize>,
    /// How far before the target's start and after its end to search (default 1 min).
    #[serde(default, with = "humantime_serde")]
    pub margin: Option<Duration>,
}

/// A provider of the kind `http`: `GET` a templated URL answered with `{"data": [Jaeger traces]}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[non_exhaustive]
pub struct HttpConfig {
    /// The URL; values filled in are URL-encoded.
    pub url: Template,
    /// Most traces per target (default 5).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The targets a provider is asked about: kinds and `when` patterns.
#[derive(Clone, Debug)]
pub struct TargetFilter {
    kinds: TargetKinds,
    when: FieldPatterns,
}

impl TargetFilter {
    /// Whether `target` is of the kinds and every `when` field is present and matches.
    pub fn matches(&self, target: &ExtensionTarget) -> bool {
        let kind = match (self.kinds, target.kind) {
            (TargetKinds::Both, _)
            | (TargetKinds::Objects, TargetKind::Object)
            | (TargetKinds::Activities, TargetKind::Activity) => true,
            (TargetKinds::Objects | TargetKinds::Activities, _) => false,
        };
        kind && self.when.matches(|field| target.field(field))
    }
}

impl ProviderConfig {
    /// The filter its `for` and `when` give.
    pub fn filter(&self) -> Result<TargetFilter, ConfigError> {
        let when =
            FieldPatterns::compile(&self.when).map_err(|(field, source)| ConfigError::Pattern {
                provider: self.name.clone(),
                field,
                source,
            })?;
        Ok(TargetFilter {
            kinds: self.targets,
            when,
        })
    }

    /// Most bytes of one answer.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes.unwrap_or(8 << 20)
    }

    fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Provider {
            provider: self.name.clone(),
            message: message.into(),
        }
    }

    /// The provider this config describes.
    pub fn build(&self) -> Result<Arc<dyn ExtensionProvider>, ConfigError> {
        if self.name.trim().is_empty() {
            return Err(self.error("needs a name"));
        }
        let filter = self.filter()?;
        match (&self.jaeger, &self.http) {
            (Some(jaeger), None) => self.build_jaeger(jaeger, filter),
            (None, Some(http)) => self.build_http(http, filter),
            (None, None) => Err(self.error("needs one of `jaeger` or `http`")),
            (Some(_), Some(_)) => Err(self.error("has both `jaeger` and `http`; choose one")),
        }
    }

    #[cfg(feature = "extensions")]
    fn build_jaeger(
        &self,
        config: &JaegerConfig,
        filter: TargetFilter,
    ) -> Result<Arc<dyn ExtensionProvider>, ConfigError> {
        Ok(Arc::new(super::JaegerProvider::new(self, config, filter)?))
    }

    #[cfg(feature = "extensions")]
    fn build_http(
        &self,
        config: &HttpConfig,
        filter: TargetFilter,
    ) -> Result<Arc<dyn ExtensionProvider>, ConfigError> {
        Ok(Arc::new(super::HttpProvider::new(self, config, filter)?))
    }

    #[cfg(not(feature = "extensions"))]
    fn build_jaeger(
        &self,
        _: &JaegerConfig,
        _: TargetFilter,
    ) -> Result<Arc<dyn ExtensionProvider>, ConfigError> {
        Err(self.error("kelemetry-query was built without the `extensions` feature"))
    }

    #[cfg(not(feature = "extensions"))]
    fn build_http(
        &self,
        _: &HttpConfig,
        _: TargetFilter,
    ) -> Result<Arc<dyn ExtensionProvider>, ConfigError> {
        Err(self.error("kelemetry-query was built without the `extensions` feature"))
    }
}

impl ExtensionsConfig {
    /// The enabled providers and the limits; an error names the first provider that cannot be built.
    pub fn build(&self) -> Result<Extensions, ConfigError> {
        let defaults = ExtensionLimits::default();
        let limits = ExtensionLimits {
            timeout: self.timeout.unwrap_or(defaults.timeout),
            max_concurrency: self
                .max_concurrency
                .unwrap_or(defaults.max_concurrency)
                .max(1),
            max_fetches: self.max_fetches.unwrap_or(defaults.max_fetches),
            max_spans: self.max_spans.unwrap_or(defaults.max_spans),
        };
        let mut names = std::collections::HashSet::new();
        if let Some(twice) = self
            .providers
            .iter()
            .find(|p| !names.insert(p.name.as_str()))
        {
            return Err(twice.error("is configured twice"));
        }
        let mut providers = Vec::new();
        for provider in &self.providers {
            let built = provider.build()?;
            if provider.enabled {
                providers.push(built);
            }
        }
        Ok(Extensions::new(providers, limits))
    }
}
