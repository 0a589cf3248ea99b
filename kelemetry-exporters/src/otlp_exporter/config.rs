//! [`OtlpConfig`]: where and how an `OtlpExporter` sends spans.

use std::time::Duration;

#[cfg(doc)]
use kelemetry_core::Exporter;

use super::OtlpExporter;

/// How spans travel (`grpc`, or `http` for HTTP/protobuf, in a configuration file).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "config", derive(serde::Deserialize))]
pub enum OtlpProtocol {
    /// OTLP/gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`), usually port 4317.
    #[default]
    #[cfg_attr(feature = "config", serde(rename = "grpc"))]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`POST /v1/traces`), usually port 4318.
    #[cfg_attr(feature = "config", serde(rename = "http", alias = "http/protobuf"))]
    HttpProtobuf,
}

impl std::fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        })
    }
}

/// TLS settings beyond the defaults (the web PKI roots, the endpoint's host name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtlpTls {
    /// A PEM bundle of certificate authorities to trust in addition to the web PKI roots.
    pub ca_certificate_pem: Option<Vec<u8>>,
    /// The client certificate chain (PEM), for mutual TLS; needs [`OtlpTls::client_key_pem`].
    pub client_certificate_pem: Option<Vec<u8>>,
    /// The client's private key (PEM), for mutual TLS.
    pub client_key_pem: Option<Vec<u8>>,
    /// The name to verify the server certificate against instead of the endpoint's host (gRPC only).
    pub server_name: Option<String>,
}

/// Where and how an [`OtlpExporter`] sends spans; [`OtlpConfig::build`] makes the exporter.
///
/// [`Default`] holds the defaults (its endpoint is empty: give one). With the feature `config` it is read from
/// configuration files (the `exporters.otlp` section of `kelemetry run`'s file): camelCase keys, unknown keys
/// refused, headers and resource attributes as maps, durations like `10s`; `tls` is not read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// The endpoint URL (see the [module documentation](super)).
    pub endpoint: String,
    /// gRPC or HTTP/protobuf.
    pub protocol: OtlpProtocol,
    /// Headers sent with every request, e.g. `("authorization", "Bearer ...")`.
    #[cfg_attr(feature = "config", serde(deserialize_with = "pairs_from_map"))]
    pub headers: Vec<(String, String)>,
    /// Compress request bodies with gzip.
    pub gzip: bool,
    /// TLS settings; `https` endpoints use TLS even when this is `None`.
    #[cfg_attr(feature = "config", serde(skip))]
    pub tls: Option<OtlpTls>,
    /// Timeout of one request (and of connecting).
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub timeout: Duration,
    /// At most this many spans wait for delivery; a batch that does not fit is dropped and counted.
    pub buffer_spans: usize,
    /// At most this many bytes of spans wait for delivery, whatever their count: the spans wait encoded, and each
    /// counts its encoding's length and a few dozen bytes of bookkeeping. A batch that does not fit is dropped
    /// and counted, unless the buffer is empty (so a batch larger than this still goes, alone).
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::size"))]
    pub buffer_bytes: usize,
    /// At most this many spans per request.
    pub max_batch_spans: usize,
    /// At most this many requests in flight at once (at least 1), and as many batches in
    /// [`Exporter::export`] at once: with confirmed delivery each batch waits for
    /// the endpoint's answer, so one request at a time would bound the spans per second by the round trip.
    /// Requests may then arrive out of order, which OTLP allows.
    pub concurrent_requests: usize,
    /// First wait after a retryable failure.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub initial_backoff: Duration,
    /// Longest wait between retries.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub max_backoff: Duration,
    /// How long [`Exporter::flush`] waits for the buffer to drain.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub flush_timeout: Duration,
    /// Resource attributes added after `service.name` to every resource (e.g. `k8s.cluster.name`).
    #[cfg_attr(feature = "config", serde(deserialize_with = "pairs_from_map"))]
    pub resource_attributes: Vec<(String, String)>,
    /// [`Exporter::export`] returns only once the endpoint confirmed the batch (`true`, the default), so that the
    /// pipeline's acknowledgements to sources mean "delivered"; with `false` it returns once the batch is in the
    /// buffer, which is faster but acknowledges spans that may still be lost.
    pub confirm_delivery: bool,
}

impl Default for OtlpConfig {
    /// No endpoint yet, over gRPC: no headers, no gzip, 10 s timeout, a buffer of 65,536 spans and 256 MiB,
    /// requests of at most 512 spans and 4 of them at once, backoff from 200 ms to 30 s, 30 s to flush, exports
    /// confirmed by the endpoint.
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            protocol: OtlpProtocol::default(),
            headers: Vec::new(),
            gzip: false,
            tls: None,
            timeout: Duration::from_secs(10),
            buffer_spans: 65_536,
            buffer_bytes: 256 << 20,
            max_batch_spans: 512,
            concurrent_requests: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(30),
            resource_attributes: Vec::new(),
            confirm_delivery: true,
        }
    }
}

/// A map (`{name: value}`) as name-value pairs, in name order.
#[cfg(feature = "config")]
fn pairs_from_map<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, String)>, D::Error> {
    let map: std::collections::BTreeMap<String, String> =
        serde::Deserialize::deserialize(deserializer)?;
    Ok(map.into_iter().collect())
}

impl OtlpConfig {
    /// OTLP/gRPC to `endpoint` (e.g. `http://127.0.0.1:4317`), with the default limits.
    pub fn grpc(endpoint: impl Into<String>) -> Self {
        Self::new(endpoint, OtlpProtocol::Grpc)
    }

    /// OTLP/HTTP with protobuf bodies to `endpoint` (e.g. `http://127.0.0.1:4318`), with the default limits.
    pub fn http(endpoint: impl Into<String>) -> Self {
        Self::new(endpoint, OtlpProtocol::HttpProtobuf)
    }

    /// `endpoint` over `protocol` with the [`Default`]s: no headers, no gzip, 10 s timeout, a buffer of 65,536
    /// spans, requests of at most 512 spans and 4 of them at once, backoff from 200 ms to 30 s, 30 s to flush.
    pub fn new(endpoint: impl Into<String>, protocol: OtlpProtocol) -> Self {
        Self {
            endpoint: endpoint.into(),
            protocol,
            ..Self::default()
        }
    }

    /// Starts the exporter: [`OtlpExporter::new`]. Must be called inside a Tokio runtime.
    pub fn build(self) -> Result<OtlpExporter, OtlpConfigError> {
        OtlpExporter::new(self)
    }

    /// Adds a header sent with every request.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Compresses request bodies with gzip.
    pub fn with_gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// Uses these TLS settings.
    pub fn with_tls(mut self, tls: OtlpTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Keeps at most `spans` spans waiting (at least one).
    pub fn with_buffer_spans(mut self, spans: usize) -> Self {
        self.buffer_spans = spans.max(1);
        self
    }

    /// Keeps at most `bytes` bytes of spans waiting (see [`OtlpConfig::buffer_bytes`]).
    pub fn with_buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes;
        self
    }

    /// Sends at most `spans` spans per request (at least one).
    pub fn with_max_batch_spans(mut self, spans: usize) -> Self {
        self.max_batch_spans = spans.max(1);
        self
    }

    /// Keeps at most `requests` requests in flight at once (at least one; see
    /// [`OtlpConfig::concurrent_requests`]).
    pub fn with_concurrent_requests(mut self, requests: usize) -> Self {
        self.concurrent_requests = requests.max(1);
        self
    }

    /// Waits `initial` after the first retryable failure, doubling up to `max`.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Times out one request after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether [`Exporter::export`] waits until the endpoint confirmed the batch ([`OtlpConfig::confirm_delivery`]).
    pub fn with_confirm_delivery(mut self, confirm: bool) -> Self {
        self.confirm_delivery = confirm;
        self
    }

    /// Waits at most `timeout` in [`Exporter::flush`].
    pub fn with_flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// Adds a resource attribute to every resource.
    pub fn with_resource_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.resource_attributes.push((key.into(), value.into()));
        self
    }
}

/// An [`OtlpConfig`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OtlpConfigError {
    /// The endpoint is not a usable URL.
    #[error("OTLP endpoint {endpoint:?} is not usable: {reason}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value cannot be sent.
    #[error("OTLP header {name:?} cannot be sent: {reason}")]
    Header {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS settings cannot be used.
    #[error("OTLP TLS settings for {endpoint:?} are not usable: {reason}")]
    Tls {
        /// The endpoint.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// No Tokio runtime is running; the exporter needs one for its delivery task.
    #[error("an OTLP exporter must be created inside a Tokio runtime")]
    NoRuntime,
}
