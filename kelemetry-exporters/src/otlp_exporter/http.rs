//! OTLP/HTTP with protobuf bodies: `POST /v1/traces` over reqwest, with TLS, headers and gzip.

use prost::bytes::Bytes;

use kelemetry_core::ExportError;
use kelemetry_core::otlp::encode_export_request;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

use super::buffer::BufferedSpan;
use super::config::{OtlpConfig, OtlpConfigError, OtlpTls};
use super::transport::{
    UNPAIRED_CLIENT_CERTIFICATE, endpoint_error, header_error, rejected_spans, tls_error,
};

/// An HTTP client of one endpoint's traces URL.
pub(super) struct HttpTransport {
    client: reqwest::Client,
    url: String,
    gzip: bool,
    resource_attributes: Vec<(String, String)>,
}

impl HttpTransport {
    /// The client of `config`'s endpoint.
    pub(super) fn new(config: &OtlpConfig) -> Result<Self, OtlpConfigError> {
        let endpoint = config.endpoint.as_str();
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &config.headers {
            let key = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| header_error(name, e))?;
            let value =
                reqwest::header::HeaderValue::from_str(value).map_err(|e| header_error(name, e))?;
            headers.insert(key, value);
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .default_headers(headers);
        if let Some(tls) = &config.tls {
            builder = with_tls(builder, endpoint, tls)?;
        }
        let client = builder.build().map_err(|e| endpoint_error(endpoint, e))?;
        Ok(Self {
            client,
            url: http_traces_url(endpoint),
            gzip: config.gzip,
            resource_attributes: config.resource_attributes.clone(),
        })
    }

    /// The encoded (and maybe compressed) body carrying `batch`.
    pub(super) fn request(&self, batch: Vec<BufferedSpan>) -> Bytes {
        let spans = batch
            .into_iter()
            .map(|buffered| (buffered.service, buffered.encoded));
        let body = encode_export_request(spans, &self.resource_attributes);
        Bytes::from(if self.gzip { gzip_bytes(&body) } else { body })
    }

    /// Sends one request; `Ok` carries how many spans the endpoint rejected.
    pub(super) async fn send(&self, body: Bytes) -> Result<u64, ExportError> {
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body);
        if self.gzip {
            request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        let response = request.send().await.map_err(http_send_error)?;
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            let parsed: Option<ExportTraceServiceResponse> =
                prost::Message::decode(bytes.as_ref()).ok();
            return Ok(parsed.as_ref().map(rejected_spans).unwrap_or(0));
        }
        let text = String::from_utf8_lossy(&bytes);
        let text: String = text.chars().take(300).collect();
        Err(http_status_error(status.as_u16(), &text))
    }
}

fn with_tls(
    mut builder: reqwest::ClientBuilder,
    endpoint: &str,
    tls: &OtlpTls,
) -> Result<reqwest::ClientBuilder, OtlpConfigError> {
    if let Some(ca) = &tls.ca_certificate_pem {
        for certificate in
            reqwest::Certificate::from_pem_bundle(ca).map_err(|e| tls_error(endpoint, e))?
        {
            builder = builder.add_root_certificate(certificate);
        }
    }
    match (&tls.client_certificate_pem, &tls.client_key_pem) {
        (Some(certificate), Some(key)) => {
            let mut pem = certificate.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| tls_error(endpoint, e))?;
            Ok(builder.identity(identity))
        }
        (None, None) => Ok(builder),
        _ => Err(tls_error(endpoint, UNPAIRED_CLIENT_CERTIFICATE)),
    }
}

/// The HTTP URL of the traces signal: the endpoint with `/v1/traces` appended unless it already ends with it.
pub fn http_traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

/// Which HTTP statuses are worth retrying (the OTLP specification's list: 429, 502, 503, 504, and 408).
pub fn http_status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 502 | 503 | 504)
}

fn http_status_error(status: u16, body: &str) -> ExportError {
    let message = format!("HTTP {status}: {body}");
    if http_status_is_retryable(status) {
        ExportError::retryable(message)
    } else {
        ExportError::permanent(message)
    }
}

fn http_send_error(error: reqwest::Error) -> ExportError {
    if error.is_builder() {
        ExportError::permanent(error)
    } else {
        // Connecting, timing out, a reset connection: the endpoint may come back.
        ExportError::retryable(error)
    }
}

fn gzip_bytes(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    match encoder.write_all(body).and_then(|()| encoder.finish()) {
        Ok(compressed) => compressed,
        Err(_) => body.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses_follow_the_specification() {
        for status in [408, 429, 502, 503, 504] {
            assert!(http_status_is_retryable(status), "{status}");
        }
        for status in [400, 401, 403, 404, 413, 500] {
            assert!(!http_status_is_retryable(status), "{status}");
        }
    }

    #[test]
    fn http_url_gets_the_signal_path_once() {
        assert_eq!(
            http_traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("https://vendor.example/otlp/v1/traces"),
            "https://vendor.example/otlp/v1/traces"
        );
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let body = b"hello hello hello hello".repeat(20);
        let compressed = gzip_bytes(&body);
        assert!(compressed.len() < body.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }
}
