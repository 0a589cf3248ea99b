//! How a request travels: [`Transport`] over gRPC ([`super::grpc`]) or HTTP/protobuf ([`super::http`]).

use kelemetry_core::ExportError;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tracing::warn;

use super::buffer::BufferedSpan;
use super::config::{OtlpConfig, OtlpConfigError, OtlpProtocol};
use super::grpc::GrpcTransport;
use super::http::HttpTransport;

/// A prepared request, cheap to send again: encoded, shared between retries (cloning it copies no bytes).
#[derive(Clone)]
pub(super) enum Prepared {
    /// The encoded message (tonic compresses it when asked).
    Grpc(prost::bytes::Bytes),
    /// The encoded (and maybe compressed) body.
    Http(prost::bytes::Bytes),
}

/// The client of one endpoint.
pub(super) enum Transport {
    Grpc(Box<GrpcTransport>),
    Http(HttpTransport),
}

impl Transport {
    /// The client `config` describes; nothing is connected yet.
    pub(super) fn new(config: &OtlpConfig) -> Result<Self, OtlpConfigError> {
        let endpoint = config.endpoint.as_str();
        let https = endpoint.starts_with("https://");
        if !(https || endpoint.starts_with("http://")) {
            return Err(endpoint_error(
                endpoint,
                "it must start with http:// or https://",
            ));
        }
        Ok(match config.protocol {
            OtlpProtocol::Grpc => Self::Grpc(Box::new(GrpcTransport::new(config, https)?)),
            OtlpProtocol::HttpProtobuf => Self::Http(HttpTransport::new(config)?),
        })
    }

    /// The request that carries `batch`.
    pub(super) fn request(&self, batch: Vec<BufferedSpan>) -> Prepared {
        match self {
            Self::Grpc(grpc) => Prepared::Grpc(grpc.request(batch)),
            Self::Http(http) => Prepared::Http(http.request(batch)),
        }
    }

    /// Sends one request; `Ok` carries how many spans the endpoint rejected in a partial success.
    pub(super) async fn send(&self, prepared: Prepared) -> Result<u64, ExportError> {
        match (self, prepared) {
            (Self::Grpc(grpc), Prepared::Grpc(message)) => grpc.send(message).await,
            (Self::Http(http), Prepared::Http(body)) => http.send(body).await,
            _ => Err(ExportError::permanent(
                "internal: a request prepared for another protocol",
            )),
        }
    }
}

/// How many spans a successful answer says were rejected (a partial success), logged when any.
pub(super) fn rejected_spans(response: &ExportTraceServiceResponse) -> u64 {
    match &response.partial_success {
        Some(partial) if partial.rejected_spans > 0 => {
            warn!(
                rejected = partial.rejected_spans,
                message = %partial.error_message,
                "OTLP endpoint rejected part of a request"
            );
            u64::try_from(partial.rejected_spans).unwrap_or(0)
        }
        _ => 0,
    }
}

pub(super) fn endpoint_error(endpoint: &str, reason: impl std::fmt::Display) -> OtlpConfigError {
    OtlpConfigError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_string(),
    }
}

pub(super) fn tls_error(endpoint: &str, reason: impl std::fmt::Display) -> OtlpConfigError {
    OtlpConfigError::Tls {
        endpoint: endpoint.to_owned(),
        reason: reason.to_string(),
    }
}

pub(super) fn header_error(name: &str, reason: impl std::fmt::Display) -> OtlpConfigError {
    OtlpConfigError::Header {
        name: name.to_owned(),
        reason: reason.to_string(),
    }
}

/// The message when a client certificate comes without its key, or a key without its certificate.
pub(super) const UNPAIRED_CLIENT_CERTIFICATE: &str =
    "a client certificate needs its key and a key needs its certificate";
