//! Deterministic trace and span ids (docs/architecture.md#deterministic-ids).
//!
//! The ids are a storage format: any replica, restart or replay computes the same ids for the same input, and the
//! read side computes which traces hold an object's windows without searching. **Changing anything here changes every
//! id ever written**, so the algorithm is versioned by the domain strings below and pinned by tests.
//!
//! The hash is XXH3 (the 128-bit variant for trace ids, the 64-bit one for span ids, seed 0). Every variable-length
//! field is written as its length (`u32`, little endian) followed by its UTF-8 bytes, so no two inputs share an
//! encoding:
//!
//! - trace id = `xxh3_128("kelemetry.trace.v1" ‖ field(cluster) ‖ field(group) ‖ field(resource) ‖
//!   field(namespace) ‖ field(name) ‖ i64_le(window start, Unix seconds) ‖ u64_le(window length, seconds))`
//! - span id = `xxh3_64("kelemetry.span.v1" ‖ u128_be(trace id) ‖ field(kind) ‖ field(discriminator))`, where
//!   kind is `object` (discriminator empty), `link` (discriminator: linker dedup id, `\n`, the other object's
//!   canonical key) or `activity` (discriminator: the activity's dedup key).
//!
//! A zero id is invalid in OpenTelemetry; the one input in 2^64 (or 2^128) that hashes to zero is mapped to 1.

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::key::ObjectKey;
use crate::window::Window;

const TRACE_DOMAIN: &[u8] = b"kelemetry.trace.v1";
const SPAN_DOMAIN: &[u8] = b"kelemetry.span.v1";

/// The bytes an id is hashed from, on the stack unless they are long (ids are computed several times per
/// record, and a heap buffer each time showed in profiles). Appending is a copy: `SmallVec::extend_from_slice`,
/// which this replaced, inserts (moving the bytes after the end, of which there are none), and its dozen calls
/// per id were 4% of the pipeline's instructions.
struct HashInput {
    /// The bytes while they fit.
    inline: [u8; HashInput::INLINE],
    /// How many of `inline` are written.
    len: usize,
    /// All the bytes, once they outgrew `inline`.
    spilled: Vec<u8>,
}

impl HashInput {
    const INLINE: usize = 256;

    fn new() -> Self {
        Self {
            inline: [0; Self::INLINE],
            len: 0,
            spilled: Vec::new(),
        }
    }

    // Inlined, so that the fixed-size parts (lengths, ids, times) are copied without a call to `memcpy`.
    #[inline(always)]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        if self.spilled.is_empty() {
            let end = self.len + bytes.len();
            if let Some(free) = self.inline.get_mut(self.len..end) {
                free.copy_from_slice(bytes);
                self.len = end;
                return;
            }
            self.spilled.reserve(end.max(2 * Self::INLINE));
            self.spilled.extend_from_slice(&self.inline[..self.len]);
        }
        self.spilled.extend_from_slice(bytes);
    }

    #[inline(always)]
    fn push(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }

    fn as_bytes(&self) -> &[u8] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}

/// A 128-bit trace id, never zero. Printed as 32 lowercase hex digits.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(u128);

/// A 64-bit span id, never zero. Printed as 16 lowercase hex digits.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(u64);

impl TraceId {
    /// The trace of `key` in `window`: the trace whose root is the object span of that window.
    pub fn for_object(key: &ObjectKey, window: Window) -> Self {
        let mut buf = HashInput::new();
        buf.extend_from_slice(TRACE_DOMAIN);
        for field in key.fields() {
            push_field(&mut buf, field.as_bytes());
        }
        buf.extend_from_slice(&window.start_secs().to_le_bytes());
        buf.extend_from_slice(&window.length_secs().to_le_bytes());
        Self(nonzero_u128(xxh3_128(buf.as_bytes())))
    }

    /// Wraps a raw value; zero becomes `None`.
    pub fn from_u128(value: u128) -> Option<Self> {
        (value != 0).then_some(Self(value))
    }

    /// The raw value.
    pub fn to_u128(self) -> u128 {
        self.0
    }

    /// Big-endian bytes, as OTLP carries them.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The id of the object span of this trace.
    pub fn object_span(self) -> SpanId {
        self.span_id("object", b"")
    }

    /// The id of a link span in this trace: written by the linker `dedup_id` and pointing at `other`.
    pub fn link_span(self, dedup_id: &str, other: &ObjectKey) -> SpanId {
        // `dedup_id`, a newline and the canonical text of `other` (its five fields joined by `/`).
        let mut discriminator = HashInput::new();
        discriminator.extend_from_slice(dedup_id.as_bytes());
        discriminator.push(b'\n');
        for (i, field) in other.fields().into_iter().enumerate() {
            if i > 0 {
                discriminator.push(b'/');
            }
            discriminator.extend_from_slice(field.as_bytes());
        }
        self.span_id("link", discriminator.as_bytes())
    }

    /// The id of the activity span with the given dedup key in this trace.
    pub fn activity_span(self, dedup_key: &str) -> SpanId {
        self.span_id("activity", dedup_key.as_bytes())
    }

    /// A private marker id in this trace: "the linkers ran with the object's body in this window". Never
    /// exported; only a [`SpanLedger`](crate::SpanLedger) key.
    pub(crate) fn body_marker(self) -> SpanId {
        self.span_id("marker", b"linked-with-body")
    }

    fn span_id(self, kind: &str, discriminator: &[u8]) -> SpanId {
        let mut buf = HashInput::new();
        buf.extend_from_slice(SPAN_DOMAIN);
        buf.extend_from_slice(&self.0.to_be_bytes());
        push_field(&mut buf, kind.as_bytes());
        push_field(&mut buf, discriminator);
        SpanId(nonzero_u64(xxh3_64(buf.as_bytes())))
    }
}

impl SpanId {
    /// Wraps a raw value; zero becomes `None`.
    pub fn from_u64(value: u64) -> Option<Self> {
        (value != 0).then_some(Self(value))
    }

    /// The raw value.
    pub fn to_u64(self) -> u64 {
        self.0
    }

    /// Big-endian bytes, as OTLP carries them.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

fn push_field(buf: &mut HashInput, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn nonzero_u128(v: u128) -> u128 {
    if v == 0 { 1 } else { v }
}

fn nonzero_u64(v: u64) -> u64 {
    if v == 0 { 1 } else { v }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// A text is not a valid hex id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{text:?} is not a valid {what}: expected {digits} hex digits, not all zero")]
pub struct ParseIdError {
    /// The text.
    pub text: String,
    /// `trace id` or `span id`.
    pub what: &'static str,
    /// The number of hex digits expected.
    pub digits: usize,
}

impl std::str::FromStr for TraceId {
    type Err = ParseIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ParseIdError {
            text: text.to_owned(),
            what: "trace id",
            digits: 32,
        };
        // `from_str_radix` also takes a leading `+`, which is no hex digit and would not render back.
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        u128::from_str_radix(text, 16)
            .ok()
            .and_then(Self::from_u128)
            .ok_or_else(err)
    }
}

impl std::str::FromStr for SpanId {
    type Err = ParseIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ParseIdError {
            text: text.to_owned(),
            what: "span id",
            digits: 16,
        };
        // `from_str_radix` also takes a leading `+`, which is no hex digit and would not render back.
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        u64::from_str_radix(text, 16)
            .ok()
            .and_then(Self::from_u64)
            .ok_or_else(err)
    }
}

macro_rules! hex_serde {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
hex_serde!(TraceId);
hex_serde!(SpanId);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Windowing;
    use proptest::prelude::*;

    fn window_at(secs: i64) -> Window {
        Windowing::default().window_of(jiff::Timestamp::from_second(secs).unwrap())
    }

    /// These values are the storage format. If this test fails, ids changed: do not update the values without a
    /// new domain version and a migration note.
    #[test]
    fn known_ids_are_pinned() {
        let key = ObjectKey::new("tracetest", "apps", "deployments", "default", "demo");
        let trace = TraceId::for_object(&key, window_at(1_684_000_000));
        assert_eq!(trace.to_string(), PINNED_TRACE);
        assert_eq!(trace.object_span().to_string(), PINNED_OBJECT_SPAN);
        assert_eq!(
            trace.activity_span("audit:abc").to_string(),
            PINNED_ACTIVITY_SPAN
        );
        let rs = ObjectKey::new("tracetest", "apps", "replicasets", "default", "demo-1");
        assert_eq!(
            trace.link_span("ownerReference", &rs).to_string(),
            PINNED_LINK_SPAN
        );
    }

    const PINNED_TRACE: &str = "41a889b2b708ffd2038c1a4fef841c7e";
    const PINNED_OBJECT_SPAN: &str = "045c44c0a5a5b7b5";
    const PINNED_ACTIVITY_SPAN: &str = "dcfbf81877ebf1ab";
    const PINNED_LINK_SPAN: &str = "b03c873ffab6cc7c";

    /// The ids are the formulas of the module documentation, written out here with a plain `Vec`, for keys whose
    /// hash input fits the stack buffer and keys whose input outgrows it (at every length around its size).
    #[test]
    fn ids_are_the_documented_hashes_of_short_and_long_inputs() {
        fn field(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_le_bytes());
            out.extend_from_slice(bytes);
        }
        // A span id by the formula.
        let span_id = |trace: TraceId, kind: &str, discriminator: &str| {
            let mut input = SPAN_DOMAIN.to_vec();
            input.extend_from_slice(&trace.to_u128().to_be_bytes());
            field(&mut input, kind.as_bytes());
            field(&mut input, discriminator.as_bytes());
            nonzero_u64(xxh3_64(&input))
        };
        let window = window_at(1_684_000_000);
        for name_len in (1..40).chain(150..260).chain([600, 5_000]) {
            let name = "n".repeat(name_len);
            let key = ObjectKey::new("cluster-a", "apps", "deployments", "default", &name);
            let mut input = TRACE_DOMAIN.to_vec();
            for part in key.fields() {
                field(&mut input, part.as_bytes());
            }
            input.extend_from_slice(&window.start_secs().to_le_bytes());
            input.extend_from_slice(&window.length_secs().to_le_bytes());
            let trace = TraceId::for_object(&key, window);
            assert_eq!(
                trace.to_u128(),
                nonzero_u128(xxh3_128(&input)),
                "{name_len}"
            );

            let dedup = format!("dedup-{name}");
            let expected = span_id(trace, "activity", &dedup);
            assert_eq!(trace.activity_span(&dedup).to_u64(), expected, "{name_len}");

            let other = ObjectKey::new("c", "", "pods", "ns", &name);
            let expected = span_id(trace, "link", &format!("owner\nc//pods/ns/{name}"));
            assert_eq!(
                trace.link_span("owner", &other).to_u64(),
                expected,
                "{name_len}"
            );
        }
    }

    #[test]
    fn hex_round_trip() {
        let key = ObjectKey::new("c", "", "pods", "ns", "p");
        let trace = TraceId::for_object(&key, window_at(0));
        assert_eq!(trace.to_string().parse::<TraceId>().unwrap(), trace);
        let span = trace.object_span();
        assert_eq!(span.to_string().parse::<SpanId>().unwrap(), span);
        assert!("0".repeat(32).parse::<TraceId>().is_err());
        assert!("xyz".parse::<SpanId>().is_err());
    }

    /// Found by fuzzing (fuzz/regressions/id_codec): a leading `+` parsed, and the id rendered without it.
    #[test]
    fn only_hex_digits_parse() {
        assert!("+000000000000001".parse::<SpanId>().is_err());
        assert!(
            format!("+{}", "0".repeat(30) + "1")
                .parse::<TraceId>()
                .is_err()
        );
        assert!("-000000000000001".parse::<SpanId>().is_err());
        let upper = "0123456789ABCDEF".parse::<SpanId>();
        assert_eq!(
            upper.map(|id| id.to_string()),
            Ok("0123456789abcdef".to_owned())
        );
    }

    fn arb_key() -> impl Strategy<Value = ObjectKey> {
        (
            "[a-z]{0,6}",
            "[a-z.]{0,6}",
            "[a-z]{1,6}",
            "[a-z-]{0,6}",
            "[a-z0-9-]{1,8}",
        )
            .prop_map(|(c, g, r, ns, n)| ObjectKey::new(c, g, r, ns, n))
    }

    proptest! {
        #[test]
        fn ids_are_stable_and_nonzero(key in arb_key(), secs in -10_000_000_000i64..10_000_000_000i64) {
            let w = window_at(secs);
            let a = TraceId::for_object(&key, w);
            let b = TraceId::for_object(&key.clone(), w);
            prop_assert_eq!(a, b);
            prop_assert_ne!(a.to_u128(), 0);
            prop_assert_ne!(a.object_span().to_u64(), 0);
            prop_assert_eq!(a.activity_span("k"), b.activity_span("k"));
        }

        #[test]
        fn ids_differ_when_any_field_or_window_differs(key in arb_key(), field in 0usize..6, secs in 0i64..4_000_000_000i64) {
            let w = window_at(secs);
            let mut other = key.clone();
            let mut other_window = w;
            match field {
                0 => other.cluster = format!("{}x", other.cluster).into(),
                1 => other.group = format!("{}x", other.group).into(),
                2 => other.resource = format!("{}x", other.resource).into(),
                3 => other.namespace = format!("{}x", other.namespace).into(),
                4 => other.name = format!("{}x", other.name).into(),
                _ => other_window = w.next(),
            }
            let a = TraceId::for_object(&key, w);
            let b = TraceId::for_object(&other, other_window);
            prop_assert_ne!(a, b);
            prop_assert_ne!(a.object_span(), b.object_span());
        }

        #[test]
        fn moving_text_between_fields_changes_the_id(a in "[a-z]{1,5}", b in "[a-z]{1,5}") {
            // "ab" + "" and "a" + "b" must not collide thanks to length prefixes.
            let w = window_at(0);
            let one = ObjectKey::new("c", "", "pods", format!("{a}{b}"), "");
            let two = ObjectKey::new("c", "", "pods", a, b);
            prop_assert_ne!(TraceId::for_object(&one, w), TraceId::for_object(&two, w));
        }
    }
}
