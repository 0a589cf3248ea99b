//! The trace-id and display-mode codec: bytes as text → `TraceId`, `SpanId`, `DisplayMode`, `BaseMode`,
//! `Modifier`, `ObjectKey` and `ObjectSelector` parsing; the first 16 bytes as a number → `TraceId::from_u128`,
//! `DisplayMode::from_trace_id`, `DisplayMode::from_id`. Checks that parse and render agree both ways: what
//! parses renders back to the same text (ids in lowercase hex; names without the `"* "` mark and surrounding
//! space) and parses again to the same value; a mode found in a trace id gives that trace id back.

#![no_main]

use kelemetry_core::{ObjectKey, ObjectSelector, SpanId, TraceId};
use kelemetry_query::display::{BaseMode, DisplayMode, Modifier};
use libfuzzer_sys::fuzz_target;

fn text_round_trips(text: &str) {
    if let Ok(id) = text.parse::<TraceId>() {
        assert_eq!(
            id.to_string(),
            text.to_ascii_lowercase(),
            "trace id {text:?}"
        );
        assert_eq!(id.to_string().parse::<TraceId>(), Ok(id));
        assert_eq!(TraceId::from_u128(id.to_u128()), Some(id));
    }
    if let Ok(id) = text.parse::<SpanId>() {
        assert_eq!(
            id.to_string(),
            text.to_ascii_lowercase(),
            "span id {text:?}"
        );
        assert_eq!(id.to_string().parse::<SpanId>(), Ok(id));
        assert_eq!(SpanId::from_u64(id.to_u64()), Some(id));
    }
    if let Ok(mode) = text.parse::<DisplayMode>() {
        let name = text.trim();
        assert_eq!(mode.to_string(), name.strip_prefix("* ").unwrap_or(name));
        assert_eq!(DisplayMode::from_name(&mode.to_string()), Some(mode));
        assert_eq!(DisplayMode::from_id(mode.id()), Some(mode));
    }
    if let Ok(base) = text.parse::<BaseMode>() {
        assert_eq!(base.to_string(), text.trim());
    }
    if let Ok(modifier) = text.parse::<Modifier>() {
        assert_eq!(modifier.to_string(), text.trim());
    }
    if let Ok(key) = text.parse::<ObjectKey>() {
        assert_eq!(key.to_string(), text, "object key");
    }
    if let Ok(selector) = text.parse::<ObjectSelector>() {
        let rendered = selector.to_string();
        let again = rendered.parse::<ObjectSelector>();
        assert_eq!(
            again.as_ref(),
            Ok(&selector),
            "{text:?} renders as {rendered:?}"
        );
        assert_eq!(again.map(|s| s.to_string()), Ok(rendered));
    }
}

fn number_round_trips(value: u128) {
    if let Some(id) = TraceId::from_u128(value) {
        assert_eq!(id.to_u128(), value);
        assert_eq!(id.to_string().parse::<TraceId>(), Ok(id));
    }
    if let Some((mode, low)) = DisplayMode::from_trace_id(value) {
        assert_eq!(mode.trace_id(low), value, "{mode} in {value:032x}");
    }
    let id = (value >> 96) as u32;
    if let Some(mode) = DisplayMode::from_id(id) {
        assert_eq!(mode.id(), id);
        let low = value as u64;
        assert_eq!(
            DisplayMode::from_trace_id(mode.trace_id(low)),
            Some((mode, low))
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        text_round_trips(text);
    }
    if let Some(bytes) = data.first_chunk::<16>() {
        number_round_trips(u128::from_be_bytes(*bytes));
    }
});
