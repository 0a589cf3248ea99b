//! The providers that ask over HTTP: [`JaegerProvider`] (Jaeger's search, `GET /api/traces`) and [`HttpProvider`]
//! (a templated URL answered with Jaeger-shaped JSON). Both read at most `maxResponseBytes` of an answer.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::SignedDuration;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::config::{ConfigError, HttpConfig, JaegerConfig, ProviderConfig, TargetFilter};
use super::template::Template;
use super::{ExtensionError, ExtensionProvider, ExtensionTarget};
use crate::jaeger_json::{self, micros};

/// What a value filled into a URL is encoded as: all but RFC 3986's unreserved characters (letters, digits,
/// `-`, `.`, `_`, `~`).
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How long one request may take at most (the view's budget usually ends it first).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn client(provider: &ProviderConfig) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|err| ConfigError::Provider {
            provider: provider.name.clone(),
            message: format!("cannot build its HTTP client: {err}"),
        })
}

/// `GET url` and decode `{"data": [traces]}`, reading at most `max_bytes`; at most `limit` traces.
async fn get_traces(
    client: &reqwest::Client,
    request: reqwest::RequestBuilder,
    max_bytes: usize,
    limit: usize,
) -> Result<Vec<jaeger_json::Trace>, ExtensionError> {
    let request = request.build().map_err(|err| ExtensionError::Request {
        url: "(unbuilt request)".into(),
        message: err.to_string(),
    })?;
    let url = request.url().to_string();
    let failed = |message: String| ExtensionError::Request {
        url: url.clone(),
        message,
    };
    let mut response = client
        .execute(request)
        .await
        .map_err(|err| failed(error_chain(&err)))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| failed(error_chain(&err)))?
    {
        if body.len() + chunk.len() > max_bytes {
            return Err(ExtensionError::TooLarge {
                url,
                limit: max_bytes,
            });
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(failed(format!("HTTP {status}: {}", text.trim())));
    }
    let answer: jaeger_json::Response<Vec<jaeger_json::Trace>> = serde_json::from_slice(&body)
        .map_err(|source| ExtensionError::Decode {
            url: url.clone(),
            source,
        })?;
    if let Some(first) = answer.errors.as_ref().and_then(|errors| errors.first()) {
        return Err(failed(format!("error {}: {}", first.code, first.msg)));
    }
    let mut traces = answer.data.unwrap_or_default();
    traces.truncate(limit);
    Ok(traces)
}

/// An error with its sources, as one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// A Jaeger query service searched for each target: the configured service (and operation), the templated tags,
/// within the target's interval widened by a margin. Jaeger's own API: `GET /api/traces?service=&operation=&tags=
/// &start=&end=&limit=`.
#[derive(Debug)]
pub struct JaegerProvider {
    name: String,
    client: reqwest::Client,
    url: String,
    service: Template,
    operation: Option<Template>,
    tags: BTreeMap<String, Template>,
    limit: usize,
    margin: SignedDuration,
    filter: TargetFilter,
    max_bytes: usize,
}

impl JaegerProvider {
    /// The provider `provider` describes, with its `jaeger` part and filter.
    pub fn new(
        provider: &ProviderConfig,
        config: &JaegerConfig,
        filter: TargetFilter,
    ) -> Result<Self, ConfigError> {
        let url = config.url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&url).map_err(|err| ConfigError::Provider {
            provider: provider.name.clone(),
            message: format!("jaeger.url {url:?}: {err}"),
        })?;
        Ok(Self {
            name: provider.name.clone(),
            client: client(provider)?,
            url,
            service: config.service.clone(),
            operation: config.operation.clone(),
            tags: config.tags.clone(),
            limit: config.limit.unwrap_or(5).max(1),
            margin: SignedDuration::try_from(config.margin.unwrap_or(Duration::from_secs(60)))
                .unwrap_or(SignedDuration::from_mins(1)),
            filter,
            max_bytes: provider.max_response_bytes(),
        })
    }

    fn query(&self, target: &ExtensionTarget) -> Option<Vec<(&'static str, String)>> {
        let same = str::to_owned;
        let mut tags = serde_json::Map::new();
        for (key, template) in &self.tags {
            tags.insert(key.clone(), template.fill(&target.fields, same)?.into());
        }
        let start = target
            .start
            .saturating_sub(self.margin)
            .unwrap_or(target.start);
        let end = target.end.saturating_add(self.margin).unwrap_or(target.end);
        let mut query = vec![
            ("service", self.service.fill(&target.fields, same)?),
            ("start", micros(start).to_string()),
            ("end", micros(end).to_string()),
            ("limit", self.limit.to_string()),
        ];
        if let Some(operation) = &self.operation {
            query.push(("operation", operation.fill(&target.fields, same)?));
        }
        if !tags.is_empty() {
            query.push(("tags", serde_json::Value::Object(tags).to_string()));
        }
        Some(query)
    }
}

#[async_trait::async_trait]
impl ExtensionProvider for JaegerProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, target: &ExtensionTarget) -> bool {
        self.filter.matches(target) && self.query(target).is_some()
    }

    async fn fetch(
        &self,
        target: &ExtensionTarget,
    ) -> Result<Vec<jaeger_json::Trace>, ExtensionError> {
        let Some(query) = self.query(target) else {
            return Ok(Vec::new());
        };
        let request = self
            .client
            .get(format!("{}/api/traces", self.url))
            .query(&query);
        get_traces(&self.client, request, self.max_bytes, self.limit).await
    }
}

/// Any service answering `GET <templated URL>` with `{"data": [Jaeger traces]}`; the values filled into the URL
/// are percent-encoded.
#[derive(Debug)]
pub struct HttpProvider {
    name: String,
    client: reqwest::Client,
    url: Template,
    limit: usize,
    filter: TargetFilter,
    max_bytes: usize,
}

impl HttpProvider {
    /// The provider `provider` describes, with its `http` part and filter.
    pub fn new(
        provider: &ProviderConfig,
        config: &HttpConfig,
        filter: TargetFilter,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            name: provider.name.clone(),
            client: client(provider)?,
            url: config.url.clone(),
            limit: config.limit.unwrap_or(5).max(1),
            filter,
            max_bytes: provider.max_response_bytes(),
        })
    }

    fn url(&self, target: &ExtensionTarget) -> Option<String> {
        self.url.fill(&target.fields, |value| {
            utf8_percent_encode(value, URL_VALUE).to_string()
        })
    }
}

#[async_trait::async_trait]
impl ExtensionProvider for HttpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, target: &ExtensionTarget) -> bool {
        self.filter.matches(target) && self.url(target).is_some()
    }

    async fn fetch(
        &self,
        target: &ExtensionTarget,
    ) -> Result<Vec<jaeger_json::Trace>, ExtensionError> {
        let Some(url) = self.url(target) else {
            return Ok(Vec::new());
        };
        let request = self.client.get(&url);
        get_traces(&self.client, request, self.max_bytes, self.limit).await
    }
}
