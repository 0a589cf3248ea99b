//! Admission of one request to the audit webhook, in small steps: [`authenticate`], [`check_declared_length`],
//! the queue and memory check ([`check_room`]), a read slot, then [`read_body`]. Each step either lets the request
//! on or says why not as a [`Refusal`], which knows its status, its counter and whether the body is drained.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::WebhookMetrics;

/// Why a request is answered without its batch being taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// 503 with `Retry-After`: the webhook is shutting down.
    ShuttingDown,
    /// 401: no bearer token, or a wrong one.
    Unauthorized,
    /// 413: the body is over the limit (declared or read), or the batch is larger than the whole queue.
    TooLarge(String),
    /// 429 with `Retry-After`: no room for the batch now.
    Throttled(&'static str),
    /// 408: the body took too long to arrive.
    BodyTimeout,
    /// 400: the body could not be read, or is not an audit `Event`/`EventList`.
    Malformed(String),
    /// 503 with `Retry-After`: the batch could not be written to the write-ahead log (a disk error).
    NotDurable(String),
    /// 503 with `Retry-After`: with `acknowledge: delivered`, some of the batch's records were not delivered.
    NotDelivered(String),
}

impl Refusal {
    /// Counts the refusal in its counter.
    pub(super) fn count(&self, metrics: &WebhookMetrics) {
        let counter = match self {
            Self::ShuttingDown | Self::NotDurable(_) | Self::NotDelivered(_) => {
                &metrics.unavailable
            }
            Self::Unauthorized => &metrics.unauthorized,
            Self::TooLarge(_) => &metrics.too_large,
            Self::Throttled(_) => &metrics.throttled,
            Self::BodyTimeout | Self::Malformed(_) => &metrics.malformed,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Whether a body still unread is read and dropped before answering, so that the refusal reaches a client
    /// still sending it. A body declared over the limit is not: reading it would be the work the limit saves.
    pub(super) fn drains_body(&self) -> bool {
        !matches!(self, Self::TooLarge(_))
    }

    /// The answer.
    pub(super) fn into_response(self) -> Response {
        match self {
            Self::ShuttingDown => retry_later(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
            Self::Unauthorized => {
                let mut response = plain(StatusCode::UNAUTHORIZED, "a bearer token is required");
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            Self::TooLarge(text) => plain(StatusCode::PAYLOAD_TOO_LARGE, text),
            Self::Throttled(text) => retry_later(StatusCode::TOO_MANY_REQUESTS, text),
            Self::BodyTimeout => plain(StatusCode::REQUEST_TIMEOUT, "the body took too long"),
            Self::Malformed(text) => plain(StatusCode::BAD_REQUEST, text),
            Self::NotDurable(text) => retry_later(StatusCode::SERVICE_UNAVAILABLE, &text),
            Self::NotDelivered(text) => retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not delivered: {text}"),
            ),
        }
    }
}

/// A plain-text answer, ending in a line end.
pub(super) fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut text = text.into();
    text.push('\n');
    (status, text).into_response()
}

fn retry_later(status: StatusCode, text: &str) -> Response {
    let mut response = plain(status, text);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Compares without an early exit, so response times do not tell how much of a guess was right.
pub(super) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        difference |= usize::from(given.get(i).copied().unwrap_or(0) ^ byte);
    }
    difference == 0
}

/// Whether `headers` carry `Authorization: Bearer TOKEN` (the scheme in any case).
pub(super) fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some(scheme) = value.get(..7) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer ")
        && same_secret(value[7..].trim_ascii(), token.as_bytes())
}

/// Authentication: with a configured token, the request must carry it.
pub(super) fn authenticate(token: Option<&str>, headers: &HeaderMap) -> Result<(), Refusal> {
    match token {
        Some(token) if !authorized(headers, token) => Err(Refusal::Unauthorized),
        _ => Ok(()),
    }
}

/// A `Content-Length` over the limit is refused before anything is read.
pub(super) fn check_declared_length(headers: &HeaderMap, body_limit: usize) -> Result<(), Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > body_limit as u64) {
        return Err(body_over_limit(body_limit));
    }
    Ok(())
}

fn body_over_limit(body_limit: usize) -> Refusal {
    Refusal::TooLarge(format!("body over the limit of {body_limit} bytes"))
}

/// Whether the queue may take a batch now, seen before its body is read: not when it is full already, nor under
/// memory pressure while something waits in it (memory that draining cannot give back, since the allocator may
/// keep what was freed, must not keep the webhook refusing forever).
pub(super) fn check_room(
    queue_full: bool,
    memory_pressed: bool,
    queued: u64,
) -> Result<(), Refusal> {
    if queue_full || (memory_pressed && queued > 0) {
        return Err(Refusal::Throttled("queue full"));
    }
    Ok(())
}

/// Reads the whole body, at most `limit` bytes, within `timeout`.
pub(super) async fn read_body(
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Refusal> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(Refusal::BodyTimeout),
        Ok(Err(err)) => {
            let error = err.into_inner();
            if error.is::<http_body_util::LengthLimitError>() {
                Err(body_over_limit(limit))
            } else if super::body_rate::is_too_slow(&*error) {
                Err(Refusal::BodyTimeout)
            } else {
                Err(Refusal::Malformed(format!("cannot read the body: {error}")))
            }
        }
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// Reads and drops a request body (at most `limit` bytes, within `timeout`), so that a refusal reaches a client
/// still sending it and the connection stays usable; memory use does not grow with the body.
pub(super) async fn discard(mut body: Body, limit: usize, timeout: Duration) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    let _ = tokio::time::timeout(timeout, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len();
                if seen > limit {
                    break;
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"abcd", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }

    #[test]
    fn bearer_header_is_checked() {
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers, "t0ken"));
        assert_eq!(
            authenticate(Some("t0ken"), &headers),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(authenticate(None, &headers), Ok(()));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0ken"),
        );
        assert!(authorized(&headers, "t0ken"));
        assert_eq!(authenticate(Some("t0ken"), &headers), Ok(()));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  t0ken "),
        );
        assert!(authorized(&headers, "t0ken"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic t0ken"),
        );
        assert!(!authorized(&headers, "t0ken"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0ke"),
        );
        assert!(!authorized(&headers, "t0ken"));
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_without_draining() {
        let mut headers = HeaderMap::new();
        assert_eq!(check_declared_length(&headers, 10), Ok(()));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert_eq!(check_declared_length(&headers, 10), Ok(()));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        let refusal = check_declared_length(&headers, 10).unwrap_err();
        assert!(!refusal.drains_body());
        assert_eq!(
            refusal.into_response().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn memory_pressure_refuses_only_while_something_is_queued() {
        assert_eq!(check_room(false, true, 0), Ok(()));
        assert_eq!(
            check_room(false, true, 1),
            Err(Refusal::Throttled("queue full"))
        );
        assert_eq!(
            check_room(true, false, 0),
            Err(Refusal::Throttled("queue full"))
        );
        assert_eq!(check_room(false, false, 5), Ok(()));
    }

    #[test]
    fn refusals_answer_and_count() {
        let metrics = WebhookMetrics::default();
        for (refusal, status, retry_after) in [
            (Refusal::ShuttingDown, 503, true),
            (Refusal::Unauthorized, 401, false),
            (Refusal::TooLarge("big".into()), 413, false),
            (Refusal::Throttled("queue full"), 429, true),
            (Refusal::BodyTimeout, 408, false),
            (Refusal::Malformed("bad".into()), 400, false),
            (Refusal::NotDurable("disk".into()), 503, true),
        ] {
            refusal.count(&metrics);
            let response = refusal.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(
                response.headers().contains_key(header::RETRY_AFTER),
                retry_after
            );
        }
        let counts = metrics.snapshot();
        assert_eq!(
            (
                counts.unavailable,
                counts.unauthorized,
                counts.too_large,
                counts.throttled,
                counts.malformed
            ),
            (2, 1, 1, 1, 2)
        );
    }

    #[tokio::test]
    async fn bodies_are_read_within_the_limit() {
        let read = read_body(Body::from("0123456789"), 10, Duration::from_secs(1)).await;
        assert_eq!(read, Ok(Bytes::from_static(b"0123456789")));
        let read = read_body(Body::from("0123456789a"), 10, Duration::from_secs(1)).await;
        assert_eq!(
            read,
            Err(Refusal::TooLarge(
                "body over the limit of 10 bytes".to_owned()
            ))
        );
    }
}
