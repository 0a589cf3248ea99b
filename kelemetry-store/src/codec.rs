//! The stored form of a [`SpanRecord`]: a small, versioned binary encoding.
//!
//! The trace id and span id are the table key, so the value holds everything else. Format version 1, all
//! integers little endian, `varint` = unsigned LEB128, `text` = `varint` byte length + UTF-8 bytes,
//! `time` = `i64` Unix seconds + `i32` nanoseconds (12 bytes):
//!
//! ```text
//! u8      format version (1)
//! u64     parent span id, 0 when there is none
//! u8      kind: 0 object, 1 link, 2 activity (followed by `text` source)
//! text    name
//! time    start
//! time    end
//! attrs   attributes: varint count, then per attribute a name and a `text` value
//! varint  log count, then per log: time, text message, attrs
//! ```
//!
//! An attribute name is a `varint` code: `0` followed by a `text`, or `n > 0` for entry `n - 1` of
//! [`ATTRIBUTE_NAMES`], the vocabulary that nearly every span repeats. That table is part of the format: entries
//! may be appended in a new version, never reordered or removed.

use std::borrow::Cow;

use jiff::Timestamp;
use kelemetry_core::{Attributes, SpanId, SpanKind, SpanLog, SpanRecord, TraceId};

/// The format version written in front of every stored span.
pub const FORMAT_VERSION: u8 = 1;

/// Attribute names coded as one byte (format version 1). Append only.
pub const ATTRIBUTE_NAMES: [&str; 41] = [
    "cluster",
    "group",
    "version",
    "resource",
    "namespace",
    "name",
    "uid",
    "timeStamp",
    "zzz-traceSource",
    "zzz-pseudoType",
    "zzz-notPseudo",
    "zzz-logType",
    "linkedCluster",
    "linkedGroup",
    "linkedResource",
    "linkedNamespace",
    "linkedName",
    "linkRole",
    "linkClass",
    "linker",
    "auditId",
    "username",
    "impersonatedBy",
    "userAgent",
    "responseCode",
    "resourceVersion",
    "newResourceVersion",
    "tag",
    "sourceIP",
    "proxy",
    "subresource",
    "requestURI",
    "source",
    "action",
    "type",
    "count",
    "eventName",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.uid",
];

fn attribute_code(name: &str) -> Option<u64> {
    ATTRIBUTE_NAMES
        .iter()
        .position(|known| *known == name)
        .map(|index| index as u64 + 1)
}

/// Appends the stored form of `span` (without its ids) to `out`.
pub fn encode_span(span: &SpanRecord, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&span.parent_span_id.map_or(0, SpanId::to_u64).to_le_bytes());
    match &span.kind {
        SpanKind::Object => out.push(0),
        SpanKind::Link => out.push(1),
        SpanKind::Activity(source) => {
            out.push(2);
            put_text(out, source);
        }
    }
    put_text(out, &span.name);
    put_time(out, span.start);
    put_time(out, span.end);
    put_attributes(out, &span.attributes);
    put_varint(out, span.logs.len() as u64);
    for log in &span.logs {
        put_time(out, log.time);
        put_text(out, &log.message);
        put_attributes(out, &log.attributes);
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn put_time(out: &mut Vec<u8>, time: Timestamp) {
    out.extend_from_slice(&time.as_second().to_le_bytes());
    out.extend_from_slice(&time.subsec_nanosecond().to_le_bytes());
}

fn put_attributes(out: &mut Vec<u8>, attributes: &Attributes) {
    put_varint(out, attributes.len() as u64);
    for (name, value) in attributes {
        match attribute_code(name) {
            Some(code) => put_varint(out, code),
            None => {
                put_varint(out, 0);
                put_text(out, name);
            }
        }
        put_text(out, value);
    }
}

/// Why stored bytes are not a span.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes were written by a format this build does not know.
    #[error("format version {found} is not supported (this build reads version {FORMAT_VERSION})")]
    UnknownVersion {
        /// The version byte found.
        found: u8,
    },
    /// The bytes end before the span does.
    #[error("truncated while reading {field}")]
    Truncated {
        /// What was being read.
        field: &'static str,
    },
    /// A value is out of its range.
    #[error("invalid {field}")]
    Invalid {
        /// What was being read.
        field: &'static str,
    },
    /// Bytes are left after the span.
    #[error("{0} unexpected bytes after the span")]
    TrailingBytes(usize),
    /// A chunk of spans (layout version 2, [`crate::LAYOUT_VERSION`]) was written in a chunk format this build
    /// does not know.
    #[error("chunk format {found} is not supported (this build reads chunk format 1)")]
    UnknownChunkFormat {
        /// The format byte found.
        found: u8,
    },
    /// A chunk names a compression dictionary the store does not hold.
    #[error("the chunk names compression dictionary {id}, which the store does not hold")]
    UnknownDictionary {
        /// The dictionary id.
        id: u32,
    },
    /// A chunk's compressed bytes do not decompress.
    #[error("the chunk does not decompress: {0}")]
    Decompress(&'static str),
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < len {
            return Err(DecodeError::Truncated { field });
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn byte(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte(field)?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Invalid { field })
    }

    /// A count of items that each take at least `min_item_bytes`, checked against what is left so a corrupt
    /// count cannot make the decoder reserve unbounded memory.
    fn count(&mut self, field: &'static str, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let count =
            usize::try_from(self.varint(field)?).map_err(|_| DecodeError::Invalid { field })?;
        if count.saturating_mul(min_item_bytes) > self.bytes.len() {
            return Err(DecodeError::Truncated { field });
        }
        Ok(count)
    }

    fn text(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.count(field, 1)?;
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Invalid { field })
    }

    fn time(&mut self, field: &'static str) -> Result<Timestamp, DecodeError> {
        let secs = i64::from_le_bytes(self.array(field)?);
        let nanos = i32::from_le_bytes(self.array(field)?);
        Timestamp::new(secs, nanos).map_err(|_| DecodeError::Invalid { field })
    }

    fn attributes(&mut self) -> Result<Attributes, DecodeError> {
        let count = self.count("attribute count", 2)?;
        let mut attributes = Vec::with_capacity(count);
        for _ in 0..count {
            let code = self.varint("attribute name")?;
            let name = if code == 0 {
                Cow::Owned(self.text("attribute name")?)
            } else {
                let known = usize::try_from(code - 1)
                    .ok()
                    .and_then(|index| ATTRIBUTE_NAMES.get(index))
                    .ok_or(DecodeError::Invalid {
                        field: "attribute name code",
                    })?;
                Cow::Borrowed(*known)
            };
            attributes.push((name, self.text("attribute value")?));
        }
        Ok(attributes)
    }
}

/// Reads a span stored by [`encode_span`] under the key (`trace_id`, `span_id`).
pub fn decode_span(
    trace_id: TraceId,
    span_id: SpanId,
    bytes: &[u8],
) -> Result<SpanRecord, DecodeError> {
    let mut cursor = Cursor { bytes };
    let version = cursor.byte("format version")?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion { found: version });
    }
    let parent_span_id = SpanId::from_u64(u64::from_le_bytes(cursor.array("parent span id")?));
    let kind = match cursor.byte("kind")? {
        0 => SpanKind::Object,
        1 => SpanKind::Link,
        2 => SpanKind::Activity(cursor.text("activity source")?),
        _ => return Err(DecodeError::Invalid { field: "kind" }),
    };
    let name = cursor.text("name")?;
    let start = cursor.time("start")?;
    let end = cursor.time("end")?;
    let attributes = cursor.attributes()?;
    let log_count = cursor.count("log count", 14)?;
    let mut logs = Vec::with_capacity(log_count);
    for _ in 0..log_count {
        let time = cursor.time("log time")?;
        let message = cursor.text("log message")?;
        let attributes = cursor.attributes()?;
        logs.push(SpanLog {
            time,
            message,
            attributes,
        });
    }
    if !cursor.bytes.is_empty() {
        return Err(DecodeError::TrailingBytes(cursor.bytes.len()));
    }
    Ok(SpanRecord {
        trace_id,
        span_id,
        parent_span_id,
        kind,
        name,
        start,
        end,
        attributes,
        logs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SpanRecord {
        let trace_id = TraceId::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788).unwrap();
        SpanRecord {
            trace_id,
            span_id: SpanId::from_u64(42).unwrap(),
            parent_span_id: SpanId::from_u64(u64::MAX),
            kind: SpanKind::Activity("audit".into()),
            name: "alice update ünïcode".into(),
            start: Timestamp::new(1_700_000_000, 123_456_789).unwrap(),
            end: Timestamp::new(1_700_000_001, 0).unwrap(),
            attributes: vec![
                (Cow::Borrowed("cluster"), "prod".into()),
                (Cow::Owned("custom.attr".into()), "x".repeat(300)),
            ],
            logs: vec![SpanLog {
                time: Timestamp::new(-5, 1).unwrap(),
                message: "spec.replicas 1 -> 2".into(),
                attributes: vec![(Cow::Borrowed("zzz-logType"), "audit/objectDiff".into())],
            }],
        }
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let span = sample();
        let mut bytes = Vec::new();
        encode_span(&span, &mut bytes);
        assert_eq!(bytes[0], FORMAT_VERSION);
        let back = decode_span(span.trace_id, span.span_id, &bytes).unwrap();
        assert_eq!(back, span);
        assert!(matches!(back.attributes[0].0, Cow::Borrowed("cluster")));
    }

    #[test]
    fn every_prefix_is_rejected_not_panicking() {
        let span = sample();
        let mut bytes = Vec::new();
        encode_span(&span, &mut bytes);
        for len in 0..bytes.len() {
            assert!(
                decode_span(span.trace_id, span.span_id, &bytes[..len]).is_err(),
                "prefix {len}"
            );
        }
        bytes.push(0);
        assert_eq!(
            decode_span(span.trace_id, span.span_id, &bytes),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn unknown_version_is_named() {
        let span = sample();
        let mut bytes = Vec::new();
        encode_span(&span, &mut bytes);
        bytes[0] = 9;
        assert_eq!(
            decode_span(span.trace_id, span.span_id, &bytes),
            Err(DecodeError::UnknownVersion { found: 9 })
        );
    }

    #[test]
    fn dictionary_has_no_duplicates() {
        for (i, name) in ATTRIBUTE_NAMES.iter().enumerate() {
            assert_eq!(attribute_code(name), Some(i as u64 + 1), "{name}");
        }
    }
}
