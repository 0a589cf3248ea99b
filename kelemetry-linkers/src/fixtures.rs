//! Test access to the shared recorded data (`../shared/fixtures`, or `KELEMETRY_FIXTURES`).

#![allow(clippy::unwrap_used)]

/// The first response body of a recorded apiserver replay (a JSON array of request/response pairs), parsed.
pub(crate) fn replay_body(relative: &str) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(kelemetry_testkit::fixture(relative)?).unwrap();
    let pairs: serde_json::Value = serde_json::from_str(&text).unwrap();
    let body = pairs[0]["response_body"].as_str().unwrap();
    Some(serde_json::from_str(body).unwrap())
}
