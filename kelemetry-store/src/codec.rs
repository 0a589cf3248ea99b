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
//!
//! [`decode_span_or_link`] reads the same bytes but keeps of a link span only what the read side follows links
//! by ([`StoredLink`]). It checks the structure of every byte as [`decode_span`] does (lengths, counts, codes,
//! times, trailing bytes) and the UTF-8 of the strings it keeps; the strings it skips are not checked for UTF-8, so
//! a link span damaged only there still gives its link, and fails when read in full.
//!
//! [`SpanDecoder`] reads many spans with the answers of those two functions, sharing the attribute values that
//! repeat from one span to the next instead of building each again.

use std::borrow::Cow;

use jiff::Timestamp;
use kelemetry_core::{
    Attributes, LinkRole, ObjectKey, SmolStr, SpanId, SpanKind, SpanLog, SpanRecord, TraceId,
    vocabulary as v,
};

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

/// The attributes a [`StoredLink`] is made of, in the order of [`LinkAttributes::slot_at`].
const LINK_NAMES: [&str; 7] = [
    v::LINKED_CLUSTER,
    v::LINKED_GROUP,
    v::LINKED_RESOURCE,
    v::LINKED_NAMESPACE,
    v::LINKED_NAME,
    v::LINK_ROLE,
    v::LINK_CLASS,
];

/// Their codes in [`ATTRIBUTE_NAMES`].
const LINK_CODES: [u64; 7] = {
    let mut codes = [0; 7];
    let mut index = 0;
    while index < LINK_NAMES.len() {
        codes[index] = match attribute_code(LINK_NAMES[index]) {
            Some(code) => code,
            None => panic!("a link's attribute is not in ATTRIBUTE_NAMES"),
        };
        index += 1;
    }
    codes
};

/// The code of `name` (its index in [`ATTRIBUTE_NAMES`] plus one), if the vocabulary has it; also at compile time.
const fn attribute_code(name: &str) -> Option<u64> {
    let wanted = name.as_bytes();
    let mut index = 0;
    while index < ATTRIBUTE_NAMES.len() {
        let known = ATTRIBUTE_NAMES[index].as_bytes();
        if known.len() == wanted.len() {
            let mut at = 0;
            while at < known.len() && known[at] == wanted[at] {
                at += 1;
            }
            if at == known.len() {
                return Some(index as u64 + 1);
            }
        }
        index += 1;
    }
    None
}

/// The byte that stores an object span's kind.
const KIND_OBJECT: u8 = 0;
/// The byte of a link span.
const KIND_LINK: u8 = 1;
/// The byte of an activity span (its source follows).
const KIND_ACTIVITY: u8 = 2;

/// Appends the stored form of `span` (without its ids) to `out`.
pub fn encode_span(span: &SpanRecord, out: &mut Vec<u8>) {
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&span.parent_span_id.map_or(0, SpanId::to_u64).to_le_bytes());
    match &span.kind {
        SpanKind::Object => out.push(KIND_OBJECT),
        SpanKind::Link => out.push(KIND_LINK),
        SpanKind::Activity(source) => {
            out.push(KIND_ACTIVITY);
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
        self.text_ref(field).map(str::to_owned)
    }

    /// A `text`, borrowed from the bytes.
    fn text_ref(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.text_bytes(field)?).map_err(|_| DecodeError::Invalid { field })
    }

    /// A `text`'s bytes, its length checked but not its UTF-8: for a string that is skipped.
    fn text_bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.count(field, 1)?;
        self.take(len, field)
    }

    fn time(&mut self, field: &'static str) -> Result<Timestamp, DecodeError> {
        let secs = i64::from_le_bytes(self.array(field)?);
        let nanos = i32::from_le_bytes(self.array(field)?);
        Timestamp::new(secs, nanos).map_err(|_| DecodeError::Invalid { field })
    }

    fn attributes(&mut self, values: &mut SpanDecoder) -> Result<Attributes, DecodeError> {
        let count = self.count("attribute count", 2)?;
        let mut attributes = Vec::with_capacity(count);
        for _ in 0..count {
            let code = self.varint("attribute name")?;
            if code == 0 {
                let name = Cow::Owned(self.text_ref("attribute name")?.to_owned());
                attributes.push((name, SmolStr::new(self.text_ref("attribute value")?)));
            } else {
                let name = known_attribute_name(code)?;
                let value = values.value(code, self.text_bytes("attribute value")?)?;
                attributes.push((Cow::Borrowed(name), value));
            }
        }
        Ok(attributes)
    }

    /// The attributes of a link span: the value of each the link keeps is checked and kept (the other object's
    /// identity through `values`), the others are skipped.
    fn link_attributes(
        &mut self,
        values: &mut SpanDecoder,
    ) -> Result<LinkAttributes<'a>, DecodeError> {
        let count = self.count("attribute count", 2)?;
        let mut link = LinkAttributes::default();
        for _ in 0..count {
            // A name from the vocabulary is known by its code; only a spelled-out one is compared as bytes.
            let code = self.varint("attribute name")?;
            let index = if code == 0 {
                let name = self.text_bytes("attribute name")?;
                LINK_NAMES.iter().position(|known| known.as_bytes() == name)
            } else {
                known_attribute_name(code)?;
                LINK_CODES.iter().position(|known| *known == code)
            };
            match index {
                Some(index @ 0..=4) if link.key[index].is_none() => {
                    let value = if code == 0 {
                        SmolStr::new(self.text_ref("attribute value")?)
                    } else {
                        values.value(code, self.text_bytes("attribute value")?)?
                    };
                    link.key[index] = Some(value);
                }
                Some(5) if link.role.is_none() => {
                    link.role = Some(self.text_ref("attribute value")?)
                }
                Some(6) if link.class.is_none() => {
                    link.class = Some(self.text_ref("attribute value")?);
                }
                _ => {
                    self.text_bytes("attribute value")?;
                }
            }
        }
        Ok(link)
    }

    /// An attribute name as bytes: [`Cursor::attribute_name`] without the UTF-8 check of a spelled-out name (a
    /// name a link keeps is compared byte for byte, so it is text if it matches).
    fn attribute_name_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let code = self.varint("attribute name")?;
        if code == 0 {
            return self.text_bytes("attribute name");
        }
        known_attribute_name(code).map(str::as_bytes)
    }

    /// The logs of a span, their structure checked, skipped.
    fn skip_logs(&mut self) -> Result<(), DecodeError> {
        let log_count = self.count("log count", 14)?;
        for _ in 0..log_count {
            self.time("log time")?;
            self.text_bytes("log message")?;
            let count = self.count("attribute count", 2)?;
            for _ in 0..count {
                self.attribute_name_bytes()?;
                self.text_bytes("attribute value")?;
            }
        }
        Ok(())
    }

    /// The end of a span: nothing may follow it.
    fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.bytes.len()))
        }
    }
}

/// The vocabulary's name of a nonzero name code.
fn known_attribute_name(code: u64) -> Result<&'static str, DecodeError> {
    usize::try_from(code - 1)
        .ok()
        .and_then(|index| ATTRIBUTE_NAMES.get(index))
        .copied()
        .ok_or(DecodeError::Invalid {
            field: "attribute name code",
        })
}

/// What the read side follows links by, read from a link span's attributes (the first of each name, as
/// [`SpanRecord::attribute`] reads them): the other object, its role and the class of the relation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoredLink {
    /// The other object ([`SpanRecord::linked_key`]).
    pub other: ObjectKey,
    /// The role of the other object ([`SpanRecord::link_role`]).
    pub role: LinkRole,
    /// The class of the relation, empty when the span has none.
    pub class: String,
}

impl StoredLink {
    /// The link a link span stands for; `None` when the span lacks the other object's identity or a valid role
    /// (such a span is not followed).
    pub fn of_span(span: &SpanRecord) -> Option<Self> {
        Some(Self {
            other: span.linked_key()?,
            role: span.link_role()?,
            class: span.attribute(v::LINK_CLASS).unwrap_or_default().to_owned(),
        })
    }
}

/// A stored span as [`decode_span_or_link`] reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum DecodedSpan {
    /// An object or activity span, in full.
    Span(SpanRecord),
    /// A link span, as the link it stands for; `None` when it lacks the fields of one ([`StoredLink::of_span`]).
    Link(Option<StoredLink>),
}

/// The attributes of a link span that [`StoredLink`] is made of, each the first of its name, in the order of
/// [`LINK_NAMES`].
#[derive(Default)]
struct LinkAttributes<'a> {
    /// Cluster, group, resource, namespace, name of the other object.
    key: [Option<SmolStr>; 5],
    role: Option<&'a str>,
    class: Option<&'a str>,
}

impl LinkAttributes<'_> {
    fn link(self) -> Option<StoredLink> {
        let [
            Some(cluster),
            Some(group),
            Some(resource),
            Some(namespace),
            Some(name),
        ] = self.key
        else {
            return None;
        };
        Some(StoredLink {
            other: ObjectKey {
                cluster,
                group,
                resource,
                namespace,
                name,
            },
            role: LinkRole::from_name(self.role?)?,
            class: self.class.unwrap_or_default().to_owned(),
        })
    }
}

/// The part of a stored span before its kind's fields.
struct Head {
    parent_span_id: Option<SpanId>,
    kind: u8,
}

fn decode_head(cursor: &mut Cursor<'_>) -> Result<Head, DecodeError> {
    let version = cursor.byte("format version")?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion { found: version });
    }
    let parent_span_id = SpanId::from_u64(u64::from_le_bytes(cursor.array("parent span id")?));
    let kind = cursor.byte("kind")?;
    Ok(Head {
        parent_span_id,
        kind,
    })
}

/// Reads a span stored by [`encode_span`] under the key (`trace_id`, `span_id`).
pub fn decode_span(
    trace_id: TraceId,
    span_id: SpanId,
    bytes: &[u8],
) -> Result<SpanRecord, DecodeError> {
    SpanDecoder::new().decode_span(trace_id, span_id, bytes)
}

/// Reads a span stored by [`encode_span`], a link span only as far as the link it stands for: what
/// [`decode_span`] and then [`StoredLink::of_span`] give for a link span, with the same checks of the bytes, at
/// the cost of the link's strings only. Other spans are read in full.
pub fn decode_span_or_link(
    trace_id: TraceId,
    span_id: SpanId,
    bytes: &[u8],
) -> Result<DecodedSpan, DecodeError> {
    SpanDecoder::new().decode_span_or_link(trace_id, span_id, bytes)
}

/// Reads many stored spans ([`decode_span`], [`decode_span_or_link`]), sharing the attribute values that repeat
/// from one span to the next.
///
/// The spans of one read repeat most of their values: every span of an object names its cluster, resource and
/// namespace again, a link span names the same kind of object as the last. The decoder keeps the last value of
/// each attribute name of the vocabulary ([`ATTRIBUTE_NAMES`]). A value whose bytes are the same is a clone of
/// it (an inline copy, or the same shared text), neither checked for UTF-8 again nor built again; a different
/// value takes its place. So it holds at most one value per name, and its answers are those of the free
/// functions, byte for byte and error for error.
///
/// ```
/// use kelemetry_core::{ObjectKey, ObjectRef, Windowing};
/// use kelemetry_core::span::object_span;
/// use kelemetry_store::codec::{SpanDecoder, encode_span};
///
/// let window = Windowing::default().window_of("2024-05-01T12:00:00Z".parse()?);
/// let mut decoder = SpanDecoder::new();
/// for name in ["web-1", "web-2"] {
///     let pod = ObjectRef::new(ObjectKey::new("prod", "", "pods", "default", name), "v1", None);
///     let span = object_span(&pod, window);
///     let mut bytes = Vec::new();
///     encode_span(&span, &mut bytes);
///     assert_eq!(decoder.decode_span(span.trace_id, span.span_id, &bytes)?, span);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SpanDecoder {
    /// The last value decoded of each name of the vocabulary, by its code minus one.
    last: [Option<SmolStr>; ATTRIBUTE_NAMES.len()],
}

impl Default for SpanDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SpanDecoder {
    /// A decoder that has read nothing yet.
    pub fn new() -> Self {
        Self {
            last: std::array::from_fn(|_| None),
        }
    }

    /// The value `bytes` of the attribute with the vocabulary code `code`: a clone of the last value of that name
    /// when the bytes are the same (they are then known to be UTF-8), else the bytes checked and kept as the last.
    fn value(&mut self, code: u64, bytes: &[u8]) -> Result<SmolStr, DecodeError> {
        let checked = |bytes| {
            std::str::from_utf8(bytes).map_err(|_| DecodeError::Invalid {
                field: "attribute value",
            })
        };
        let Some(last) = usize::try_from(code - 1)
            .ok()
            .and_then(|index| self.last.get_mut(index))
        else {
            return checked(bytes).map(SmolStr::new);
        };
        if let Some(value) = last
            && value.as_bytes() == bytes
        {
            return Ok(value.clone());
        }
        let value = SmolStr::new(checked(bytes)?);
        *last = Some(value.clone());
        Ok(value)
    }

    /// [`decode_span`], sharing values with the spans read before.
    pub fn decode_span(
        &mut self,
        trace_id: TraceId,
        span_id: SpanId,
        bytes: &[u8],
    ) -> Result<SpanRecord, DecodeError> {
        let mut cursor = Cursor { bytes };
        let head = decode_head(&mut cursor)?;
        decode_rest(&mut cursor, self, trace_id, span_id, head)
    }

    /// [`decode_span_or_link`], sharing values with the spans read before.
    pub fn decode_span_or_link(
        &mut self,
        trace_id: TraceId,
        span_id: SpanId,
        bytes: &[u8],
    ) -> Result<DecodedSpan, DecodeError> {
        let mut cursor = Cursor { bytes };
        let head = decode_head(&mut cursor)?;
        if head.kind != KIND_LINK {
            return decode_rest(&mut cursor, self, trace_id, span_id, head).map(DecodedSpan::Span);
        }
        cursor.text_bytes("name")?;
        cursor.time("start")?;
        cursor.time("end")?;
        let link = cursor.link_attributes(self)?;
        cursor.skip_logs()?;
        cursor.finish()?;
        Ok(DecodedSpan::Link(link.link()))
    }
}

/// The fields after the head of a span.
fn decode_rest(
    cursor: &mut Cursor<'_>,
    values: &mut SpanDecoder,
    trace_id: TraceId,
    span_id: SpanId,
    head: Head,
) -> Result<SpanRecord, DecodeError> {
    let kind = match head.kind {
        KIND_OBJECT => SpanKind::Object,
        KIND_LINK => SpanKind::Link,
        KIND_ACTIVITY => SpanKind::Activity(cursor.text_ref("activity source")?.into()),
        _ => return Err(DecodeError::Invalid { field: "kind" }),
    };
    let name = cursor.text("name")?;
    let start = cursor.time("start")?;
    let end = cursor.time("end")?;
    let attributes = cursor.attributes(values)?;
    let log_count = cursor.count("log count", 14)?;
    let mut logs = Vec::with_capacity(log_count);
    for _ in 0..log_count {
        let time = cursor.time("log time")?;
        let message = cursor.text("log message")?;
        let attributes = cursor.attributes(values)?;
        logs.push(SpanLog {
            time,
            message,
            attributes,
        });
    }
    cursor.finish()?;
    Ok(SpanRecord {
        trace_id,
        span_id,
        parent_span_id: head.parent_span_id,
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
                (Cow::Owned("custom.attr".into()), "x".repeat(300).into()),
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

    /// A link span of `attributes` (names in the vocabulary are coded as the encoder codes them).
    fn link_with(attributes: &[(&'static str, &str)]) -> SpanRecord {
        SpanRecord {
            kind: SpanKind::Link,
            attributes: attributes
                .iter()
                .map(|(name, value)| (Cow::Borrowed(*name), SmolStr::new(value)))
                .collect(),
            logs: Vec::new(),
            ..sample()
        }
    }

    const LINKED: [(&str, &str); 7] = [
        (v::LINKED_CLUSTER, "prod"),
        (v::LINKED_GROUP, "apps"),
        (v::LINKED_RESOURCE, "replicasets"),
        (v::LINKED_NAMESPACE, "default"),
        (v::LINKED_NAME, "web-1"),
        (v::LINK_ROLE, "parent"),
        (v::LINK_CLASS, "children"),
    ];

    /// What `decode_span_or_link` must give: `decode_span`, then the link of a link span.
    fn expected(span: &SpanRecord, bytes: &[u8]) -> Result<DecodedSpan, DecodeError> {
        decode_span(span.trace_id, span.span_id, bytes).map(|decoded| {
            if decoded.kind == SpanKind::Link {
                DecodedSpan::Link(StoredLink::of_span(&decoded))
            } else {
                DecodedSpan::Span(decoded)
            }
        })
    }

    fn check_span_or_link(span: &SpanRecord) -> Result<DecodedSpan, DecodeError> {
        let mut bytes = Vec::new();
        encode_span(span, &mut bytes);
        let decoded = decode_span_or_link(span.trace_id, span.span_id, &bytes);
        assert_eq!(decoded, expected(span, &bytes), "{span:?}");
        decoded
    }

    #[test]
    fn a_link_span_is_read_as_its_link() {
        let mut attributes = vec![(v::CLUSTER, "prod"), ("custom.attr", "x")];
        attributes.extend(LINKED);
        let decoded = check_span_or_link(&link_with(&attributes));
        assert_eq!(
            decoded,
            Ok(DecodedSpan::Link(Some(StoredLink {
                other: ObjectKey::new("prod", "apps", "replicasets", "default", "web-1"),
                role: LinkRole::Parent,
                class: "children".into(),
            })))
        );
        // Other spans are read in full.
        let span = sample();
        assert_eq!(check_span_or_link(&span), Ok(DecodedSpan::Span(span)));
    }

    #[test]
    fn a_link_span_without_a_link_reads_as_none() {
        for (missing, (name, _)) in LINKED.iter().enumerate().take(6) {
            let mut attributes = LINKED.to_vec();
            attributes.remove(missing);
            assert_eq!(
                check_span_or_link(&link_with(&attributes)),
                Ok(DecodedSpan::Link(None)),
                "without {name}"
            );
        }
        let mut attributes = LINKED.to_vec();
        attributes[5].1 = "sibling";
        assert_eq!(
            check_span_or_link(&link_with(&attributes)),
            Ok(DecodedSpan::Link(None))
        );
        // Without a class, the class is empty.
        let decoded = check_span_or_link(&link_with(&LINKED[..6]));
        assert!(matches!(decoded, Ok(DecodedSpan::Link(Some(link))) if link.class.is_empty()));
    }

    #[test]
    fn the_first_attribute_of_a_name_counts_and_spelled_out_names_too() {
        let mut attributes = LINKED.to_vec();
        attributes.push((v::LINK_CLASS, "second"));
        attributes.insert(0, (v::LINKED_NAME, "first"));
        let decoded = check_span_or_link(&link_with(&attributes));
        assert!(
            matches!(&decoded, Ok(DecodedSpan::Link(Some(link))) if link.class == "children" && link.other.name == "first"),
            "{decoded:?}"
        );
        // The same attributes with every name spelled out (code 0) rather than coded.
        let span = link_with(&LINKED);
        let mut bytes = Vec::new();
        encode_span(&link_with(&[]), &mut bytes);
        // The empty attribute list and the empty log list end the bytes: put the spelled-out list there.
        bytes.truncate(bytes.len() - 2);
        put_varint(&mut bytes, LINKED.len() as u64);
        for (name, value) in LINKED {
            put_varint(&mut bytes, 0);
            put_text(&mut bytes, name);
            put_text(&mut bytes, value);
        }
        put_varint(&mut bytes, 0);
        let decoded = decode_span_or_link(span.trace_id, span.span_id, &bytes);
        assert_eq!(decoded, expected(&span, &bytes));
        assert!(
            matches!(decoded, Ok(DecodedSpan::Link(Some(_)))),
            "{decoded:?}"
        );
    }

    #[test]
    fn a_link_span_is_checked_for_structure_and_its_links_strings_for_utf8() {
        let mut span = link_with(&LINKED);
        span.logs = sample().logs;
        let mut bytes = Vec::new();
        encode_span(&span, &mut bytes);
        for len in 0..bytes.len() {
            let decoded = decode_span_or_link(span.trace_id, span.span_id, &bytes[..len]);
            assert!(decoded.is_err(), "prefix {len}");
            assert_eq!(decoded, expected(&span, &bytes[..len]), "prefix {len}");
        }
        // Bytes that are not UTF-8 in an attribute the link does not keep: skipped, read in full they fail.
        let mut bad = link_with(&LINKED);
        bad.attributes
            .push((Cow::Borrowed(v::LINKER), "\u{7f}".into()));
        let mut bytes = Vec::new();
        encode_span(&bad, &mut bytes);
        let at = bytes.iter().rposition(|b| *b == 0x7f).unwrap();
        bytes[at] = 0xff;
        assert!(
            matches!(
                decode_span_or_link(bad.trace_id, bad.span_id, &bytes),
                Ok(DecodedSpan::Link(Some(_)))
            ),
            "an unkept string is skipped"
        );
        assert_eq!(
            decode_span(bad.trace_id, bad.span_id, &bytes),
            Err(DecodeError::Invalid {
                field: "attribute value"
            })
        );
        bytes.push(0);
        bytes[at] = b'x';
        assert_eq!(
            decode_span_or_link(bad.trace_id, bad.span_id, &bytes),
            Err(DecodeError::TrailingBytes(1))
        );
        // In an attribute the link keeps, they fail.
        let mut kept = LINKED.to_vec();
        kept[4].1 = "\u{7f}";
        let bad = link_with(&kept);
        let mut bytes = Vec::new();
        encode_span(&bad, &mut bytes);
        let at = bytes.iter().rposition(|b| *b == 0x7f).unwrap();
        bytes[at] = 0xff;
        assert_eq!(
            decode_span_or_link(bad.trace_id, bad.span_id, &bytes),
            Err(DecodeError::Invalid {
                field: "attribute value"
            })
        );
    }

    /// A small deterministic generator for the randomised round trip.
    struct Xorshift(u64);

    impl Xorshift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn text(&mut self) -> String {
            const PIECES: [&str; 6] = ["", "a", "web-1", "ü", "children", "parent"];
            (0..self.below(3))
                .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn random_spans_read_the_same_either_way() {
        let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
        let names: Vec<&'static str> = ATTRIBUTE_NAMES
            .iter()
            .copied()
            .chain(["custom", "linkedName2"])
            .collect();
        let mut links = 0;
        for _ in 0..3_000 {
            let attributes = |random: &mut Xorshift| -> Attributes {
                (0..random.below(12))
                    .map(|_| {
                        // Mostly the link attributes, so that many spans hold a whole link.
                        let name = if random.below(3) == 0 {
                            names[random.below(names.len() as u64) as usize]
                        } else {
                            LINKED[random.below(LINKED.len() as u64) as usize].0
                        };
                        let value = match name {
                            v::LINK_ROLE => {
                                ["parent", "child", "other"][random.below(3) as usize].to_owned()
                            }
                            _ => random.text(),
                        };
                        (Cow::Borrowed(name), SmolStr::from(value))
                    })
                    .collect()
            };
            let mut span = sample();
            span.kind = match random.below(4) {
                0 => SpanKind::Object,
                1 => SpanKind::Activity(random.text().into()),
                _ => SpanKind::Link,
            };
            span.name = random.text();
            span.attributes = attributes(&mut random);
            if random.below(2) == 0 {
                // A whole link, at random places among the others.
                for (name, value) in LINKED {
                    let at = random.below(span.attributes.len() as u64 + 1) as usize;
                    span.attributes
                        .insert(at, (Cow::Borrowed(name), SmolStr::new(value)));
                }
            }
            span.logs = (0..random.below(3))
                .map(|_| SpanLog {
                    time: Timestamp::new(random.below(1 << 37) as i64, 0).unwrap(),
                    message: random.text(),
                    attributes: attributes(&mut random),
                })
                .collect();
            if let Ok(DecodedSpan::Link(Some(_))) = check_span_or_link(&span) {
                links += 1;
            }
        }
        assert!(links > 50, "only {links} spans held a whole link");
    }

    #[test]
    fn a_decoder_that_read_other_spans_reads_each_as_a_fresh_one_does() {
        // Spans whose values repeat, almost repeat (one byte more or less, a different last byte), are empty,
        // longer than an inline value, or not ASCII; each also damaged at every byte, so that a value the decoder
        // kept meets bytes that differ from it only where they are no longer UTF-8.
        let mut random = Xorshift(0x2545_f491_4f6c_dd1d);
        let long = "a-uid-of-thirty-six-bytes-0123456789";
        let values = [
            "", "prod", "prod", "prod2", "pro", "prox", long, long, "ü", "üx", "web-1",
        ];
        let mut spans = Vec::new();
        for _ in 0..200 {
            let mut attributes: Vec<(&'static str, &str)> = (0..random.below(10))
                .map(|_| {
                    let name = ATTRIBUTE_NAMES[random.below(ATTRIBUTE_NAMES.len() as u64) as usize];
                    (name, values[random.below(values.len() as u64) as usize])
                })
                .collect();
            if random.below(2) == 0 {
                attributes.extend(LINKED);
            }
            let mut span = link_with(&attributes);
            if random.below(2) == 0 {
                span.kind = SpanKind::Object;
            }
            spans.push(span);
        }
        let mut decoder = SpanDecoder::new();
        let (mut compared, mut shared) = (0, 0);
        for span in &spans {
            let mut bytes = Vec::new();
            encode_span(span, &mut bytes);
            let mut damaged = vec![bytes.clone()];
            for at in 0..bytes.len() {
                let mut copy = bytes.clone();
                copy[at] = 0xff;
                damaged.push(copy);
            }
            for bytes in &damaged {
                let (trace_id, span_id) = (span.trace_id, span.span_id);
                assert_eq!(
                    decoder.decode_span(trace_id, span_id, bytes),
                    decode_span(trace_id, span_id, bytes)
                );
                assert_eq!(
                    decoder.decode_span_or_link(trace_id, span_id, bytes),
                    decode_span_or_link(trace_id, span_id, bytes)
                );
                compared += 1;
            }
            // A long value read again under the same name is the same text, not a copy of it (when the name
            // is not used again in between).
            let first = decoder
                .decode_span(span.trace_id, span.span_id, &bytes)
                .unwrap();
            let again = decoder
                .decode_span(span.trace_id, span.span_id, &bytes)
                .unwrap();
            for ((name, a), (_, b)) in first.attributes.iter().zip(&again.attributes) {
                let once = first.attributes.iter().filter(|(n, _)| n == name).count() == 1;
                if a.len() > 23 && once {
                    assert_eq!(a.as_ptr(), b.as_ptr(), "{a}");
                    shared += 1;
                }
            }
        }
        assert!(compared > 10_000, "{compared}");
        assert!(shared > 50, "{shared}");
    }
}
