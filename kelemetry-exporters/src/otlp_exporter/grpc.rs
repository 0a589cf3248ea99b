//! OTLP/gRPC: the `TraceService/Export` call over tonic, with TLS, headers as metadata and gzip. A request is
//! encoded once, when it is made; a retry sends the same bytes.

use std::time::Duration;

use kelemetry_core::ExportError;
use kelemetry_core::otlp::encode_export_request;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::bytes::{BufMut, Bytes};
use tonic::client::Grpc;
use tonic::codec::{Codec, CompressionEncoding, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::buffer::BufferedSpan;
use super::config::{OtlpConfig, OtlpConfigError, OtlpTls};
use super::transport::{
    UNPAIRED_CLIENT_CERTIFICATE, endpoint_error, header_error, rejected_spans, tls_error,
};

/// The method OTLP/gRPC exports traces with.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A lazily connected gRPC client of one endpoint.
pub(super) struct GrpcTransport {
    client: Grpc<Channel>,
    headers: MetadataMap,
    timeout: Duration,
    resource_attributes: Vec<(String, String)>,
}

impl GrpcTransport {
    /// The client of `config`'s endpoint, with TLS when `https` or when TLS settings are given.
    pub(super) fn new(config: &OtlpConfig, https: bool) -> Result<Self, OtlpConfigError> {
        let endpoint = config.endpoint.as_str();
        let mut channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| endpoint_error(endpoint, e))?
            .connect_timeout(config.timeout)
            .timeout(config.timeout);
        if https || config.tls.is_some() {
            channel = channel
                .tls_config(grpc_tls(endpoint, config.tls.as_ref())?)
                .map_err(|e| tls_error(endpoint, e))?;
        }
        let mut client =
            Grpc::new(channel.connect_lazy()).max_decoding_message_size(4 * 1024 * 1024);
        if config.gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        let mut headers = MetadataMap::new();
        for (name, value) in &config.headers {
            let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|e| header_error(name, e))?;
            let value =
                MetadataValue::try_from(value.as_str()).map_err(|e| header_error(name, e))?;
            headers.insert(key, value);
        }
        Ok(Self {
            client,
            headers,
            timeout: config.timeout,
            resource_attributes: config.resource_attributes.clone(),
        })
    }

    /// The `ExportTraceServiceRequest` of `batch`, encoded.
    pub(super) fn request(&self, batch: Vec<BufferedSpan>) -> Bytes {
        let spans = batch
            .into_iter()
            .map(|buffered| (buffered.service, buffered.encoded));
        Bytes::from(encode_export_request(spans, &self.resource_attributes))
    }

    /// Sends one encoded request; `Ok` carries how many spans the endpoint rejected.
    pub(super) async fn send(&self, message: Bytes) -> Result<u64, ExportError> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.headers.clone();
        request.set_timeout(self.timeout);
        let mut client = self.client.clone();
        client.ready().await.map_err(|error| {
            grpc_error(&tonic::Status::unavailable(format!(
                "the channel is not ready: {error}"
            )))
        })?;
        let response = client
            .unary(
                request,
                PathAndQuery::from_static(EXPORT_PATH),
                EncodedCodec,
            )
            .await
            .map_err(|status| grpc_error(&status))?;
        Ok(rejected_spans(response.get_ref()))
    }
}

/// The codec of an export: the request goes as the bytes it was encoded to, the answer is decoded by prost.
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = EncodedEncoder;
    type Decoder = tonic_prost::ProstDecoder<ExportTraceServiceResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

/// Writes a message already encoded.
struct EncodedEncoder;

impl Encoder for EncodedEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

fn grpc_tls(endpoint: &str, tls: Option<&OtlpTls>) -> Result<ClientTlsConfig, OtlpConfigError> {
    let mut config = ClientTlsConfig::new().with_webpki_roots();
    let Some(tls) = tls else {
        return Ok(config);
    };
    if let Some(ca) = &tls.ca_certificate_pem {
        config = config.ca_certificate(Certificate::from_pem(ca));
    }
    match (&tls.client_certificate_pem, &tls.client_key_pem) {
        (Some(certificate), Some(key)) => {
            config = config.identity(Identity::from_pem(certificate, key));
        }
        (None, None) => {}
        _ => return Err(tls_error(endpoint, UNPAIRED_CLIENT_CERTIFICATE)),
    }
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

/// Which gRPC statuses are worth retrying (the OTLP specification's list, plus `RESOURCE_EXHAUSTED` and
/// `UNKNOWN`, which tonic reports for broken connections).
pub fn grpc_code_is_retryable(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Cancelled
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    )
}

fn grpc_error(status: &tonic::Status) -> ExportError {
    let message = format!("gRPC {:?}: {}", status.code(), status.message());
    if grpc_code_is_retryable(status.code()) {
        ExportError::retryable(message)
    } else {
        ExportError::permanent(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes_follow_the_specification() {
        assert!(grpc_code_is_retryable(tonic::Code::Unavailable));
        assert!(grpc_code_is_retryable(tonic::Code::DeadlineExceeded));
        assert!(!grpc_code_is_retryable(tonic::Code::InvalidArgument));
        assert!(!grpc_code_is_retryable(tonic::Code::Unauthenticated));
    }
}
