//! Object bodies: [`Body`], the JSON text a source received, parsed only as far as a stage asks; reading the
//! `metadata` fields every stage asks for ([`metadata_value`], of a [`Body`] or a parsed [`Value`] alike); and
//! parsing a body without the field ownership nothing shows ([`parse_object_body`]).
//!
//! These walk the two levels with `get` rather than a JSON pointer: `Value::pointer` allocates two strings per
//! path segment (to unescape `~0` and `~1`), which showed in the pipeline's profile, as it runs several times
//! per activity.
//!
//! ```
//! use kelemetry_core::body::{metadata_str, resource_version, Body};
//! use serde_json::json;
//!
//! let body = json!({"metadata": {"name": "web", "resourceVersion": ""}});
//! assert_eq!(metadata_str(&body, "name"), Some("web"));
//! assert_eq!(resource_version(&body), None);
//!
//! // The same from text: only `metadata` is parsed to answer.
//! let body = Body::from_text(r#"{"kind":"Pod","metadata":{"name":"web","resourceVersion":"7"},"spec":{}}"#).unwrap();
//! assert_eq!(metadata_str(&body, "name"), Some("web"));
//! assert_eq!(resource_version(&body), Some("7"));
//! assert_eq!(body.kind(), Some("Pod"));
//! // Anything else parses the whole body once (without `metadata.managedFields`).
//! assert_eq!(body["spec"], json!({}));
//! ```

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, Range};
use std::sync::{Arc, OnceLock};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use smallvec::SmallVec;

use crate::json_scan;

/// What has an object's `metadata`: a parsed [`Value`], a [`Body`], or an `Arc` of either. The functions of this
/// module take a reference to any of them, so that a [`Body`] answers from its metadata alone.
pub trait BodyMetadata {
    /// The body's `metadata`, if present.
    fn metadata(&self) -> Option<&Value>;

    /// `metadata.<field>`, if it is a string.
    fn metadata_string(&self, field: &str) -> Option<&str> {
        self.metadata()?.get(field)?.as_str()
    }

    /// Whether `metadata.labels` has the label `key`.
    fn has_label(&self, key: &str) -> bool {
        metadata_value(self, "labels")
            .and_then(Value::as_object)
            .is_some_and(|labels| labels.contains_key(key))
    }

    /// `metadata.<field>`, if present: borrowed from the parsed `metadata`, or (a [`Body`] whose `metadata` is
    /// not parsed yet) that one field's value parsed alone, leaving the rest of `metadata` unparsed.
    fn metadata_field(&self, field: &str) -> Option<Cow<'_, Value>> {
        self.metadata()?.get(field).map(Cow::Borrowed)
    }
}

impl BodyMetadata for Value {
    fn metadata(&self) -> Option<&Value> {
        self.get("metadata")
    }
}

impl<T: BodyMetadata + ?Sized> BodyMetadata for Arc<T> {
    fn metadata(&self) -> Option<&Value> {
        (**self).metadata()
    }

    fn metadata_string(&self, field: &str) -> Option<&str> {
        (**self).metadata_string(field)
    }

    fn has_label(&self, key: &str) -> bool {
        (**self).has_label(key)
    }

    fn metadata_field(&self, field: &str) -> Option<Cow<'_, Value>> {
        (**self).metadata_field(field)
    }
}

/// `body.metadata.<field>`, if present. This parses the whole of a [`Body`]'s `metadata` on first use (and keeps
/// it); to read one field of it, [`metadata_field`] parses that field alone.
pub fn metadata_value<'a, B: BodyMetadata + ?Sized>(body: &'a B, field: &str) -> Option<&'a Value> {
    body.metadata()?.get(field)
}

/// `body.metadata.<field>`, if present; of a [`Body`] whose `metadata` is not parsed yet, that field's value is
/// parsed alone and not kept (see [`BodyMetadata::metadata_field`]).
///
/// ```
/// use kelemetry_core::body::{Body, metadata_field};
/// use serde_json::json;
///
/// let body = Body::from_text(r#"{"metadata":{"name":"web","ownerReferences":[{"kind":"ReplicaSet"}]}}"#).unwrap();
/// let owners = metadata_field(&body, "ownerReferences").unwrap();
/// assert_eq!(*owners, json!([{"kind": "ReplicaSet"}]));
/// assert!(metadata_field(&body, "labels").is_none());
/// ```
pub fn metadata_field<'a, B: BodyMetadata + ?Sized>(
    body: &'a B,
    field: &str,
) -> Option<Cow<'a, Value>> {
    body.metadata_field(field)
}

/// `body.metadata.<field>`, if it is a string.
pub fn metadata_str<'a, B: BodyMetadata + ?Sized>(body: &'a B, field: &str) -> Option<&'a str> {
    body.metadata_string(field)
}

/// `body.metadata.resourceVersion`, if it is a non-empty string.
pub fn resource_version<B: BodyMetadata + ?Sized>(body: &B) -> Option<&str> {
    metadata_str(body, "resourceVersion").filter(|rv| !rv.is_empty())
}

/// A body as the JSON text it was written in, checked to be JSON but not read: what an
/// [`AuditEvent`](crate::audit::AuditEvent) holds of its request and response, borrowed from the document it was
/// parsed from when it can be. [`Body::from_raw`] reads it as a body.
///
/// ```
/// use kelemetry_core::body::RawBody;
/// use serde_json::value::RawValue;
///
/// let raw: Box<RawValue> = serde_json::from_str(r#"{"kind":"Pod"}"#).unwrap();
/// let body = RawBody::from(raw);
/// assert_eq!(body.get(), r#"{"kind":"Pod"}"#);
/// ```
#[derive(Clone)]
pub struct RawBody<'a> {
    text: Cow<'a, str>,
    /// The fields of the object and of its `metadata`, when the parse that checked the text found them on the way
    /// (as [`json_scan::object_and_nested_fields`] finds them): the body is then not scanned again.
    fields: Option<FoundFields<'a>>,
}

/// The fields of a body's object and of its `metadata`, their ranges of the body's text.
#[derive(Clone, Debug)]
pub(crate) struct FoundFields<'a> {
    pub(crate) top: Vec<json_scan::Field<'a>>,
    pub(crate) metadata: Option<Vec<json_scan::Field<'a>>>,
}

impl<'a> RawBody<'a> {
    /// Text known to be one JSON value.
    pub(crate) fn checked(text: Cow<'a, str>) -> Self {
        Self { text, fields: None }
    }

    /// The fields the parse found in the (borrowed) text.
    pub(crate) fn with_fields(mut self, fields: FoundFields<'a>) -> Self {
        if self.is_borrowed() {
            self.fields = Some(fields);
        }
        self
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.text
    }

    /// The fields the parse found, if it did.
    #[cfg(test)]
    pub(crate) fn found_fields(&self) -> Option<&FoundFields<'a>> {
        self.fields.as_ref()
    }

    /// Whether the text is borrowed from the input rather than owned.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.text, Cow::Borrowed(_))
    }

    /// The same body, owning its text.
    pub fn into_owned(self) -> RawBody<'static> {
        RawBody::checked(Cow::Owned(self.text.into_owned()))
    }
}

impl fmt::Debug for RawBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawBody").field(&self.get()).finish()
    }
}

/// Two bodies are equal when their texts are.
impl PartialEq for RawBody<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawBody<'_> {}

impl<'a> From<&'a RawValue> for RawBody<'a> {
    fn from(raw: &'a RawValue) -> Self {
        Self::checked(Cow::Borrowed(raw.get()))
    }
}

impl From<Box<RawValue>> for RawBody<'static> {
    fn from(raw: Box<RawValue>) -> Self {
        Self::checked(Cow::Owned(String::from(Box::<str>::from(raw))))
    }
}

/// An object body as a source received it: compact JSON text, parsed when first read as a [`Value`] (through
/// [`Deref`], without `metadata.managedFields`, as [`parse_object_body`]); its `metadata` alone is parsed when
/// only that is asked for ([`BodyMetadata`]), and `metadata.name`, `namespace`, `uid` and `resourceVersion` are
/// read from the text without parsing. A body made from a [`Value`] (a watch event, a test) has no text.
///
/// Most of what the pipeline does with a body needs no tree of it: the diff of two versions compares their text
/// field by field and descends only where the text differs ([`crate::diff::audit_diff_bodies`]); the body cache
/// keeps the text, about a fifth of the memory of the tree. A parsed Kubernetes body is hundreds of small
/// allocations, and building them was the largest cost of the pipeline.
#[derive(Clone, Debug, Default)]
pub struct Body {
    /// The JSON text, `None` for a body made from a value or changed in place ([`Body::make_mut`]).
    text: Option<Box<str>>,
    /// Where the value of the top-level `metadata` field is in `text`.
    metadata_at: Option<Range<usize>>,
    /// The top-level `kind` as found in `text`.
    kind_at: Skimmed,
    /// `metadata`'s [`SKIMMED_FIELDS`] as found in `text`.
    skimmed: [Skimmed; 4],
    /// Where `metadata.labels` is in `text`, when it is an object.
    labels_at: Option<Range<usize>>,
    /// The top-level fields in `text`, sorted by name (for the diff); `None` if a name has escapes.
    top_fields: Option<Arc<[FieldSpan]>>,
    /// The fields of `metadata` likewise.
    metadata_fields: Option<Arc<[FieldSpan]>>,
    /// The whole body, parsed on first use (or given).
    value: OnceLock<Value>,
    /// `metadata` alone, parsed on first use while `value` is not.
    metadata: OnceLock<Value>,
}

/// The field of `metadata` a parsed body leaves out: field ownership, often most of a body's bytes.
const MANAGED_FIELDS: &str = "managedFields";

/// The fields of `metadata` a body answers from its text.
const SKIMMED_FIELDS: [&str; 4] = ["name", "namespace", "uid", "resourceVersion"];

/// One of [`SKIMMED_FIELDS`] in a body's text.
#[derive(Clone, Debug, Default)]
enum Skimmed {
    /// Not there.
    #[default]
    Absent,
    /// A string without escapes; where its content is in the text.
    Plain(Range<usize>),
    /// Something else: the parsed metadata answers.
    Other,
}

impl Body {
    /// A body from JSON text, which must be an object whose `metadata`, if present, is an object. The text is
    /// checked whole (so that parsing it later cannot fail) but nothing is built from it.
    pub fn from_text(text: impl Into<Box<str>>) -> serde_json::Result<Self> {
        let text: Box<str> = text.into();
        serde_json::from_str::<IgnoredAny>(&text)?;
        Self::from_checked(text).ok_or_else(|| {
            serde::de::Error::custom(
                "not an object body (a JSON object whose metadata, if any, is an object)",
            )
        })
    }

    /// A body from its checked JSON text (an audit event's body), borrowed from its input (then copied) or owned:
    /// `None` if it is not an object body.
    pub fn from_raw(raw: RawBody<'_>) -> Option<Self> {
        match raw.text {
            // Scanned where it is (unless the parse found its fields already), copied only when it is an object body.
            Cow::Borrowed(text) => {
                let mut body = match raw.fields {
                    Some(found) => Self::of_fields(text, found.top, found.metadata)?,
                    None => Self::scanned(text)?,
                };
                body.text = Some(text.into());
                Some(body)
            }
            Cow::Owned(text) => Self::from_checked(text.into()),
        }
    }

    /// A body from text known to be JSON: finds `metadata`, `kind` and the [`SKIMMED_FIELDS`].
    fn from_checked(text: Box<str>) -> Option<Self> {
        let mut body = Self::scanned(&text)?;
        body.text = Some(text);
        Some(body)
    }

    /// What [`Body::from_checked`] finds in `text`, all but the text itself.
    fn scanned(text: &str) -> Option<Self> {
        // One pass finds the top-level fields and those of `metadata`.
        let (fields, metadata) = json_scan::object_and_nested_fields(text, "metadata")?;
        Self::of_fields(text, fields, metadata)
    }

    /// What [`Body::scanned`] makes of the fields of `text` and of its `metadata`, however they were found.
    fn of_fields(
        text: &str,
        fields: Vec<json_scan::Field<'_>>,
        metadata: Option<Vec<json_scan::Field<'_>>>,
    ) -> Option<Self> {
        let top_fields = sorted_field_spans(text, &fields);
        let (mut metadata_at, mut kind_at) = (None, Skimmed::Absent);
        for field in fields {
            match &*field.name {
                "metadata" => metadata_at = Some(field.value),
                "kind" => {
                    kind_at = match json_scan::plain_string(text.get(field.value.clone())?) {
                        Some(_) => Skimmed::Plain(field.value.start + 1..field.value.end - 1),
                        None => Skimmed::Other,
                    };
                }
                _ => {}
            }
        }
        let mut skimmed: [Skimmed; 4] = Default::default();
        let mut labels_at = None;
        let mut metadata_fields = None;
        if let Some(fields) = metadata {
            metadata_fields = sorted_field_spans(text, &fields);
            for field in fields {
                let literal = text.get(field.value.clone())?;
                if field.name == "labels" {
                    labels_at = literal.starts_with('{').then_some(field.value);
                    continue;
                }
                let Some(i) = SKIMMED_FIELDS.iter().position(|name| *name == field.name) else {
                    continue;
                };
                skimmed[i] = match json_scan::plain_string(literal) {
                    Some(_) => Skimmed::Plain(field.value.start + 1..field.value.end - 1),
                    None => Skimmed::Other,
                };
            }
        }
        Some(Self {
            text: None,
            metadata_at,
            kind_at,
            skimmed,
            labels_at,
            top_fields,
            metadata_fields,
            value: OnceLock::new(),
            metadata: OnceLock::new(),
        })
    }

    /// A body already parsed.
    pub fn from_value(value: Value) -> Self {
        Self {
            value: OnceLock::from(value),
            ..Self::default()
        }
    }

    /// Whether the body has a `metadata` object.
    pub fn has_metadata(&self) -> bool {
        match &self.text {
            Some(_) => self.metadata_at.is_some(),
            None => self.value().get("metadata").is_some_and(Value::is_object),
        }
    }

    /// The JSON text the body was made from, `None` if it was made from a value or changed since.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The top-level `kind`, when it is a string.
    pub fn kind(&self) -> Option<&str> {
        match (&self.text, &self.kind_at) {
            (Some(_), Skimmed::Absent) => None,
            (Some(text), Skimmed::Plain(range)) => text.get(range.clone()),
            _ => self.value().get("kind")?.as_str(),
        }
    }

    /// The value at `path` in the body, field names from the top (`["spec", "nodeName"]`), if there is one: what
    /// following those names through [`Body::value`] gives (so never `metadata.managedFields`), at the cost of
    /// that one value. Of a body read from text and not parsed yet, the objects on the way are scanned and only
    /// the value found is parsed; otherwise it is borrowed from what is parsed. An empty path, or `["metadata"]`
    /// alone, parses the whole body.
    ///
    /// ```
    /// use kelemetry_core::body::Body;
    /// use serde_json::json;
    ///
    /// let body = Body::from_text(r#"{"spec":{"nodeName":"n1","volumes":[{"name":"v"}]},"status":{}}"#).unwrap();
    /// assert_eq!(*body.field_at(&["spec", "nodeName"]).unwrap(), json!("n1"));
    /// assert_eq!(*body.field_at(&["spec", "volumes"]).unwrap(), json!([{"name": "v"}]));
    /// assert!(body.field_at(&["spec", "missing"]).is_none());
    /// assert!(body.field_at(&["spec", "nodeName", "deeper"]).is_none());
    /// assert!(!body.is_parsed());
    /// ```
    pub fn field_at(&self, path: &[&str]) -> Option<Cow<'_, Value>> {
        if let Some(found) = self.text_field_at(path) {
            return found.map(Cow::Owned);
        }
        // Below `metadata`, the metadata alone is parsed (or borrowed from the parsed body).
        let (mut value, rest) = match path {
            ["metadata", rest @ ..] if !rest.is_empty() => (self.metadata()?, rest),
            _ => (self.value(), path),
        };
        for name in rest {
            value = value.get(*name)?;
        }
        Some(Cow::Borrowed(value))
    }

    /// [`Body::field_at`] answered from the text: `Some(None)` when the path is not in the body, `None` when the
    /// text does not answer (a body made from a value or already parsed, a name with escapes on the way, a value
    /// the scan leaves to `serde_json`).
    fn text_field_at(&self, path: &[&str]) -> Option<Option<Value>> {
        let text = self.text.as_deref()?;
        if self.value.get().is_some() || self.metadata.get().is_some() {
            return None;
        }
        let (mut range, rest) = match path {
            ["metadata", MANAGED_FIELDS, ..] => return Some(None),
            ["metadata", field, rest @ ..] if self.metadata_fields.is_some() => {
                let spans = self.metadata_fields.as_deref()?;
                let Some(span) = find_span(text, spans, field) else {
                    return Some(None);
                };
                (span.value, rest)
            }
            // `metadata` whole is parsed without `managedFields`: the parse answers.
            ["metadata"] | [] => return None,
            [first, rest @ ..] => {
                let Some(span) = find_span(text, self.top_fields.as_deref()?, first) else {
                    return Some(None);
                };
                (span.value, rest)
            }
        };
        for name in rest {
            let value = text.get(range.0 as usize..range.1 as usize)?;
            if !value.starts_with('{') {
                // Not an object: it has no fields.
                return Some(None);
            }
            let Some(found) = json_scan::object_field(value, name)? else {
                return Some(None);
            };
            let start = range.0 + u32::try_from(found.start).ok()?;
            range = (start, start + u32::try_from(found.len()).ok()?);
        }
        let value = text.get(range.0 as usize..range.1 as usize)?;
        serde_json::from_str(value).ok().map(Some)
    }

    /// The whole body (without `metadata.managedFields` when made from text), parsed on first use.
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| self.parsed_text())
    }

    /// Whether the whole body has been parsed (or was given parsed).
    pub fn is_parsed(&self) -> bool {
        self.value.get().is_some()
    }

    /// The body to change in place. Its text is dropped: from now on it is its value.
    pub fn make_mut(&mut self) -> &mut Value {
        let value = match self.value.take() {
            Some(value) => value,
            None => self.parsed_text(),
        };
        *self = Self::from_value(value);
        self.value
            .get_mut()
            .expect("make_mut has just stored the value")
    }

    /// The text parsed (see [`Body::value`]).
    fn parsed_text(&self) -> Value {
        // The text was checked when the body was made, so this parses; `Null` is never reached.
        self.text
            .as_deref()
            .and_then(|text| parse_object_body(text).ok())
            .unwrap_or(Value::Null)
    }

    /// The whole body as a value, parsed if it was not.
    pub fn into_value(mut self) -> Value {
        match self.value.take() {
            Some(value) => value,
            None => self.parsed_text(),
        }
    }

    /// The same body holding only its text, nothing parsed: how the body cache keeps a version no longer the
    /// newest. `None` for a body without text.
    pub fn text_only(&self) -> Option<Self> {
        Some(Self {
            text: Some(self.text.clone()?),
            metadata_at: self.metadata_at.clone(),
            kind_at: self.kind_at.clone(),
            skimmed: self.skimmed.clone(),
            labels_at: self.labels_at.clone(),
            top_fields: self.top_fields.clone(),
            metadata_fields: self.metadata_fields.clone(),
            value: OnceLock::new(),
            metadata: OnceLock::new(),
        })
    }

    /// An estimate of the memory the body takes: its text and the field positions found in it, and what of it
    /// has been parsed (see [`crate::body_cache::approximate_size`]).
    pub fn approximate_size(&self) -> usize {
        const BODY: usize = std::mem::size_of::<Body>();
        let spans = |spans: &Option<Arc<[FieldSpan]>>| {
            spans
                .as_ref()
                .map_or(0, |spans| 16 + std::mem::size_of_val(&**spans))
        };
        BODY + self.text.as_ref().map_or(0, |text| text.len())
            + spans(&self.top_fields)
            + spans(&self.metadata_fields)
            + self
                .value
                .get()
                .map_or(0, crate::body_cache::approximate_size)
            + self
                .metadata
                .get()
                .map_or(0, crate::body_cache::approximate_size)
    }
}

impl Deref for Body {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.value()
    }
}

impl BodyMetadata for Body {
    fn metadata(&self) -> Option<&Value> {
        if let Some(value) = self.value.get() {
            return value.get("metadata");
        }
        let Some(text) = &self.text else {
            return self.value().get("metadata");
        };
        let range = self.metadata_at.clone()?;
        let metadata = self.metadata.get_or_init(|| {
            let mut deserializer =
                serde_json::Deserializer::from_str(text.get(range).unwrap_or("{}"));
            ObjectFields { metadata: true }
                .deserialize(&mut deserializer)
                .unwrap_or(Value::Null)
        });
        Some(metadata)
    }

    fn metadata_string(&self, field: &str) -> Option<&str> {
        if let (Some(text), None) = (&self.text, self.value.get())
            && let Some(i) = SKIMMED_FIELDS.iter().position(|name| *name == field)
        {
            match &self.skimmed[i] {
                Skimmed::Absent => return None,
                Skimmed::Plain(range) => return text.get(range.clone()),
                Skimmed::Other => {}
            }
        }
        self.metadata()?.get(field)?.as_str()
    }

    fn has_label(&self, key: &str) -> bool {
        if let (Some(text), None) = (&self.text, self.value.get()) {
            let Some(labels) = self.labels_at.clone().and_then(|range| text.get(range)) else {
                return false;
            };
            // Without a backslash in the labels every name is written as it is, so a name that does not occur
            // in their text is not there (nearly every lookup: the redaction label on an object without it).
            let written_plainly = memchr::memchr(b'\\', labels.as_bytes()).is_none();
            if written_plainly && !occurs_in(labels.as_bytes(), key.as_bytes()) {
                return false;
            }
            return json_scan::object_has_field(labels, key).unwrap_or(false);
        }
        metadata_value(self, "labels")
            .and_then(Value::as_object)
            .is_some_and(|labels| labels.contains_key(key))
    }

    fn metadata_field(&self, field: &str) -> Option<Cow<'_, Value>> {
        self.field_at(&["metadata", field])
    }
}

/// One field of an object in a body's text: where its name (without quotes) and its value are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FieldSpan {
    name: (u32, u32),
    value: (u32, u32),
}

/// `fields` (of an object in `text`, their ranges of `text`) as [`FieldSpan`]s, sorted by name, a repeated name
/// keeping its last value; `None` when a name has escapes or the text is too long for the spans.
fn sorted_field_spans(text: &str, fields: &[json_scan::Field<'_>]) -> Option<Arc<[FieldSpan]>> {
    let span = |range: Range<usize>| {
        Some((
            u32::try_from(range.start).ok()?,
            u32::try_from(range.end).ok()?,
        ))
    };
    let mut spans: SmallVec<[(&str, FieldSpan); 16]> = SmallVec::with_capacity(fields.len());
    for field in fields {
        let std::borrow::Cow::Borrowed(name) = &field.name else {
            return None;
        };
        spans.push((
            *name,
            FieldSpan {
                name: span(content_range(text, name))?,
                value: span(field.value.clone())?,
            },
        ));
    }
    let kept = json_scan::sort_keeping_last(&mut spans);
    Some(spans[..kept].iter().map(|(_, span)| *span).collect())
}

impl Body {
    /// The top-level fields, sorted by name, as (name, raw value) slices of the text; `None` without text or
    /// when a name has escapes.
    pub(crate) fn sorted_top_fields(&self) -> Option<json_scan::SortedFields<'_>> {
        resolve_spans(self.text.as_deref()?, self.top_fields.as_deref()?)
    }

    /// The fields of `metadata` likewise.
    pub(crate) fn sorted_metadata_fields(&self) -> Option<json_scan::SortedFields<'_>> {
        resolve_spans(self.text.as_deref()?, self.metadata_fields.as_deref()?)
    }

    /// The body as JSON text without `metadata.managedFields` (the same value as [`Body::value`]), cut from its
    /// text: the text itself, or the text less that one field. `None` for a body without text, and for text this
    /// does not cut: written over several lines, a field name with escapes, `managedFields` more than once.
    ///
    /// ```
    /// use kelemetry_core::body::Body;
    ///
    /// let body = Body::from_text(r#"{"kind":"Pod","metadata":{"name":"web","managedFields":[{"manager":"k"}]}}"#)
    ///     .unwrap();
    /// assert_eq!(body.text_without_managed_fields().unwrap(), r#"{"kind":"Pod","metadata":{"name":"web"}}"#);
    /// ```
    pub fn text_without_managed_fields(&self) -> Option<std::borrow::Cow<'_, str>> {
        let text = self.text.as_deref()?;
        let spans = self.metadata_fields.as_deref().unwrap_or_default();
        if memchr::memchr(b'\n', text.as_bytes()).is_some()
            || (self.metadata_at.is_some() && self.metadata_fields.is_none())
        {
            return None;
        }
        let Some(field) = find_span(text, spans, MANAGED_FIELDS) else {
            return Some(std::borrow::Cow::Borrowed(text));
        };
        if memchr::memmem::find_iter(text.as_bytes(), MANAGED_FIELDS)
            .nth(1)
            .is_some()
        {
            // Perhaps a second `managedFields` field, of which the spans keep only the last.
            return None;
        }
        let bytes = text.as_bytes();
        // From the name's opening quote to the end of the value, with the comma on one side of it.
        let start = (field.name.0 as usize).checked_sub(1)?;
        let end = field.value.1 as usize;
        let after = end
            + bytes
                .get(end..)?
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        let (cut_start, cut_end) = if bytes.get(after) == Some(&b',') {
            (start, after + 1)
        } else {
            let before = bytes
                .get(..start)?
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())?;
            if bytes.get(before) == Some(&b',') {
                (before, end)
            } else {
                (start, end)
            }
        };
        let mut cut = String::with_capacity(text.len() - (cut_end - cut_start));
        cut.push_str(text.get(..cut_start)?);
        cut.push_str(text.get(cut_end..)?);
        Some(std::borrow::Cow::Owned(cut))
    }
}

/// Whether `needle` occurs in `haystack`: a short search (a few hundred bytes of labels), without the set-up of a
/// general substring finder.
fn occurs_in(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    memchr::memchr_iter(first, haystack).any(|at| {
        haystack
            .get(at + 1..)
            .is_some_and(|after| after.starts_with(rest))
    })
}

/// The field `name` among `spans`, fields of `text` sorted by name.
fn find_span(text: &str, spans: &[FieldSpan], name: &str) -> Option<FieldSpan> {
    let name_of = |span: &FieldSpan| text.get(span.name.0 as usize..span.name.1 as usize);
    let at = spans
        .binary_search_by(|span| name_of(span).unwrap_or_default().cmp(name))
        .ok()?;
    spans.get(at).copied()
}

fn resolve_spans<'t>(text: &'t str, spans: &[FieldSpan]) -> Option<json_scan::SortedFields<'t>> {
    let slice = |(start, end): (u32, u32)| text.get(start as usize..end as usize);
    // Sized once: collecting into an `Option` does not know the length.
    let mut fields = json_scan::SortedFields::with_capacity(spans.len());
    for span in spans {
        fields.push((
            std::borrow::Cow::Borrowed(slice(span.name)?),
            slice(span.value)?,
        ));
    }
    Some(fields)
}

/// Where `part`, a slice of `text`, is in it.
fn content_range(text: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    start..start + part.len()
}

/// What [`crate::Object::with_body`] takes: a [`Body`], a parsed [`Value`], or either in an `Arc` (shared, not
/// copied, when it is an `Arc<Body>`).
pub trait IntoBody {
    /// The body, shared.
    fn into_body(self) -> Arc<Body>;
}

impl IntoBody for Arc<Body> {
    fn into_body(self) -> Arc<Body> {
        self
    }
}

impl IntoBody for Body {
    fn into_body(self) -> Arc<Body> {
        Arc::new(self)
    }
}

impl IntoBody for Value {
    fn into_body(self) -> Arc<Body> {
        Arc::new(Body::from_value(self))
    }
}

impl IntoBody for Arc<Value> {
    fn into_body(self) -> Arc<Body> {
        Arc::new(Body::from(self))
    }
}

impl From<Value> for Body {
    fn from(value: Value) -> Self {
        Self::from_value(value)
    }
}

impl From<Arc<Value>> for Body {
    fn from(value: Arc<Value>) -> Self {
        Self::from_value(Arc::unwrap_or_clone(value))
    }
}

impl fmt::Display for Body {
    /// The body as compact JSON: its text when it has one, else its value written out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.text {
            Some(text) => f.write_str(text),
            None => fmt::Display::fmt(self.value(), f),
        }
    }
}

impl PartialEq for Body {
    /// Bodies are equal when their values are (which parses both).
    fn eq(&self, other: &Self) -> bool {
        match (&self.text, &other.text) {
            (Some(a), Some(b)) if a == b => true,
            _ => self.value() == other.value(),
        }
    }
}

impl PartialEq<Value> for Body {
    fn eq(&self, other: &Value) -> bool {
        self.value() == other
    }
}

impl Serialize for Body {
    /// The text as it is when there is one (so `metadata.managedFields` travels), else the value.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Borrowing the text as a raw value scans it once more, without building anything.
        match self.text.as_deref().map(serde_json::from_str::<&RawValue>) {
            Some(Ok(raw)) => raw.serialize(serializer),
            _ => self.value().serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Body {
    /// Kept as text when it is an object body ([`Body::from_text`]), else parsed.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text: Box<str> = raw.into();
        match Body::from_text(&*text) {
            Ok(body) => Ok(body),
            Err(_) => serde_json::from_str(&text)
                .map(Body::from_value)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses an object body from JSON text, leaving out `metadata.managedFields`.
///
/// Field ownership is about 40% of a body written by a recent apiserver, and nothing Kelemetry makes of a body
/// shows it: diffs and snapshots leave it out, linkers read other fields. Not building it saves its parsing, its
/// memory in the body cache and the walk over it in every diff. A body that is not a JSON object, or whose
/// `metadata` is not one, is an error here (it is not an object body).
///
/// ```
/// use kelemetry_core::body::parse_object_body;
///
/// let body = parse_object_body(
///     r#"{"kind":"Pod","metadata":{"name":"web","managedFields":[{"manager":"kubectl"}]},"spec":{}}"#,
/// )
/// .unwrap();
/// assert_eq!(body["metadata"], serde_json::json!({"name": "web"}));
/// assert!(parse_object_body("[1]").is_err());
/// ```
pub fn parse_object_body(text: &str) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let body = ObjectFields { metadata: false }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(body)
}

/// The fields of an object body (`metadata: false`) or of its metadata (`true`, which leaves out
/// `managedFields`).
pub(crate) struct ObjectFields {
    pub(crate) metadata: bool,
}

impl<'de> DeserializeSeed<'de> for ObjectFields {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectFields {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.metadata {
            "an object's metadata (a JSON object)"
        } else {
            "an object body (a JSON object)"
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = fields.next_key::<String>()? {
            let value = match (self.metadata, key.as_str()) {
                (false, "metadata") => fields.next_value_seed(ObjectFields { metadata: true })?,
                (true, MANAGED_FIELDS) => {
                    fields.next_value::<IgnoredAny>()?;
                    continue;
                }
                _ => fields.next_value::<Value>()?,
            };
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_metadata_loses_its_managed_fields() {
        let text = r#"{"metadata":{"name":"a","managedFields":[{"manager":"x"}],"labels":{"managedFields":"kept"}},
            "spec":{"managedFields":[1]},"managedFields":2}"#;
        let expected = json!({"metadata": {"name": "a", "labels": {"managedFields": "kept"}},
            "spec": {"managedFields": [1]}, "managedFields": 2});
        assert_eq!(parse_object_body(text).unwrap(), expected);
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        for text in [
            "[]",
            "\"pod\"",
            "null",
            r#"{"metadata":"web"}"#,
            r#"{"metadata":{}} x"#,
        ] {
            assert!(parse_object_body(text).is_err(), "{text}");
        }
        let without_metadata = parse_object_body(r#"{"kind":"Status"}"#).unwrap();
        assert_eq!(without_metadata, json!({"kind": "Status"}));
    }

    /// Found by fuzzing (fuzz/regressions/object_body/number-out-of-range): `serde_json` checks a number beyond
    /// the range of `f64` without complaint but will not read it into a `Value`, so a body holding one was taken
    /// as text and then parsed to nothing, and its text and its value answered differently. Such text, and the
    /// other text `serde_json` checks but does not read (half a surrogate pair, nesting past its limit), is now
    /// refused as a body, from text and from a raw value alike.
    #[test]
    fn text_that_checks_but_does_not_parse_is_refused() {
        let regression = include_bytes!("../../fuzz/regressions/object_body/number-out-of-range");
        let second = regression.iter().position(|&b| b == 0xFF).unwrap() + 1;
        let deep = format!(
            r#"{{"metadata":{{}},"spec":{}{}}}"#,
            "[".repeat(127),
            "]".repeat(127)
        );
        let nest = |depth: usize| {
            format!(
                r#"{{"metadata":{{"name":"a","labels":{}1{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        let deep_in_metadata = nest(126);
        let deepest_accepted = nest(125);
        parse_object_body(&deepest_accepted).unwrap();
        assert_eq!(
            Body::from_text(deepest_accepted)
                .unwrap()
                .metadata_string("name"),
            Some("a")
        );
        for text in [
            std::str::from_utf8(&regression[second..]).unwrap(),
            r#"{"metadata":{"name":"a"},"spec":{"x":1e999}}"#,
            r#"{"metadata":{"name":"\ud800"}}"#,
            &deep,
            &deep_in_metadata,
        ] {
            serde_json::from_str::<IgnoredAny>(text).unwrap();
            assert!(parse_object_body(text).is_err(), "{text}");
            assert!(Body::from_text(text).is_err(), "{text}");
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            assert!(Body::from_raw(RawBody::from(raw)).is_none(), "{text}");
        }
    }

    /// Found by fuzzing (fuzz/regressions/object_body/repeated-metadata): `metadata` twice, first a string and then
    /// an object. `serde_json` keeps the last of a repeated field but refuses the body (each `metadata` is read as
    /// an object); so must a body from text.
    #[test]
    fn a_repeated_metadata_must_be_an_object_each_time() {
        let regression = include_bytes!("../../fuzz/regressions/object_body/repeated-metadata");
        let end = regression.iter().position(|&b| b == 0xFF).unwrap();
        let text = std::str::from_utf8(&regression[..end]).unwrap();
        assert!(parse_object_body(text).is_err());
        assert!(Body::from_text(text).is_err());
        let last_is_text = r#"{"metadata":{"name":"a"},"metadata":"b"}"#;
        assert!(Body::from_text(last_is_text).is_err());
        let twice =
            Body::from_text(r#"{"metadata":{"name":"a"},"metadata":{"name":"b"}}"#).unwrap();
        assert_eq!(twice.metadata_string("name"), Some("b"));
    }

    #[test]
    fn the_text_without_managed_fields_is_the_parsed_value() {
        let cases = [
            r#"{"metadata":{"managedFields":[{"m":"a"}],"name":"a"},"spec":{}}"#,
            r#"{"metadata":{"name":"a","managedFields":[{"m":"a"}]},"spec":{}}"#,
            r#"{"metadata":{"name":"a","managedFields":[],"uid":"u"}}"#,
            r#"{"metadata":{"managedFields":{"x":1}}}"#,
            r#"{ "metadata" : { "name" : "a" , "managedFields" : [ 1 ] } , "spec" : { } }"#,
            r#"{"metadata":{"name":"a"},"spec":{"managedFields":[1]},"managedFields":2}"#,
            r#"{"kind":"Status"}"#,
        ];
        for text in cases {
            let body = Body::from_text(text).unwrap();
            let cut = body.text_without_managed_fields().unwrap();
            let value: Value = serde_json::from_str(&cut).unwrap();
            assert_eq!(&value, body.value(), "{text} -> {cut}");
            assert!(
                !cut.contains("managedFields\":[{") && !cut.contains(r#""managedFields":{"x""#),
                "{cut}"
            );
        }
        for (text, why) in [
            (
                "{\"metadata\":{\"name\":\"a\",\n\"managedFields\":[]}}",
                "lines",
            ),
            (
                r#"{"metadata":{"n\u0061me":"a","managedFields":[]}}"#,
                "escapes",
            ),
            (
                r#"{"metadata":{"managedFields":[1],"managedFields":[2]}}"#,
                "twice",
            ),
        ] {
            let body = Body::from_text(text).unwrap();
            assert!(body.text_without_managed_fields().is_none(), "{why}");
        }
        assert!(
            Body::from_value(json!({}))
                .text_without_managed_fields()
                .is_none()
        );
        let mut recorded = 0;
        for body in recorded_response_bodies() {
            let text = serde_json::to_string(&body).unwrap();
            let from_text = Body::from_text(text).unwrap();
            let cut = from_text.text_without_managed_fields().unwrap();
            let value: Value = serde_json::from_str(&cut).unwrap();
            assert_eq!(&value, from_text.value());
            recorded += usize::from(body["metadata"].get("managedFields").is_some());
        }
        assert!(
            recorded > 10,
            "the recorded bodies have managedFields: {recorded}"
        );
    }

    /// The response bodies with `metadata` of the recorded deployment scenario.
    fn recorded_response_bodies() -> Vec<Value> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/recorded/deployment-lifecycle/audit.log"
        ))
        .unwrap();
        text.lines()
            .filter_map(|line| {
                let mut event: Value = serde_json::from_str(line).unwrap();
                Some(event.get_mut("responseObject")?.take())
                    .filter(|body| body.get("metadata").is_some())
            })
            .collect()
    }

    #[test]
    fn a_body_from_text_answers_as_its_parsed_value_does() {
        let mut bodies = 0;
        for body in recorded_response_bodies() {
            let body = &body;
            let from_text = Body::from_text(body.to_string()).unwrap();
            let raw: Box<RawValue> = serde_json::from_str(&body.to_string()).unwrap();
            let from_raw = Body::from_raw(RawBody::from(raw)).unwrap();
            let parsed = Body::from_value(body.clone());
            for lazy in [&from_text, &from_raw] {
                assert_eq!(lazy.kind(), parsed.kind());
                assert_eq!(lazy.has_metadata(), parsed.has_metadata());
                for field in [
                    "name",
                    "namespace",
                    "uid",
                    "resourceVersion",
                    "generateName",
                    "missing",
                ] {
                    assert_eq!(
                        metadata_str(lazy, field),
                        metadata_str(&parsed, field),
                        "{field}"
                    );
                }
                let labels = metadata_value(&parsed, "labels").and_then(Value::as_object);
                for label in labels.into_iter().flat_map(|l| l.keys()) {
                    assert!(lazy.has_label(label), "{label}");
                }
                assert!(!lazy.has_label("no/such-label"));
                // As the body reads when parsed: without `metadata.managedFields`.
                let stripped = Body::from_value(parse_object_body(&body.to_string()).unwrap());
                for field in parsed
                    .metadata()
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|m| m.keys())
                    .map(String::as_str)
                    .chain(["managedFields", "missing"])
                {
                    assert_eq!(
                        metadata_field(lazy, field).as_deref(),
                        metadata_value(&stripped, field),
                        "{field}"
                    );
                }
                assert!(
                    !lazy.is_parsed(),
                    "answering the metadata parsed the whole body"
                );
            }
            assert_eq!(
                from_text.value(),
                &parse_object_body(&body.to_string()).unwrap()
            );
            bodies += 1;
        }
        assert!(bodies > 50, "only {bodies} bodies");
    }

    /// Every path of up to three names in `value` (and one missing name below each), as owned strings.
    fn paths_of(value: &Value) -> Vec<Vec<String>> {
        let mut paths = vec![vec!["missing".to_owned()]];
        let mut level = vec![(Vec::<String>::new(), value)];
        for _ in 0..3 {
            let mut next = Vec::new();
            for (path, value) in level {
                let Some(object) = value.as_object() else {
                    continue;
                };
                for (name, inner) in object {
                    let mut deeper = path.clone();
                    deeper.push(name.clone());
                    let mut missing = deeper.clone();
                    missing.push("missing".to_owned());
                    paths.push(missing);
                    paths.push(deeper.clone());
                    next.push((deeper, inner));
                }
            }
            level = next;
        }
        paths
    }

    /// `field_at` of a body from `text` against the same path followed through its parsed value.
    fn check_field_at(text: &str) -> usize {
        let parsed = parse_object_body(text).unwrap();
        let mut checked = 0;
        for path in paths_of(&serde_json::from_str(text).unwrap()) {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            let expected = path
                .iter()
                .try_fold(&parsed, |value, name| value.get(*name));
            let lazy = Body::from_text(text).unwrap();
            assert_eq!(
                lazy.field_at(&path).as_deref(),
                expected,
                "{path:?} in {text}"
            );
            assert_eq!(
                lazy.is_parsed(),
                matches!(path.as_slice(), [] | ["metadata"]),
                "{path:?} parsed the whole body"
            );
            // And from what is parsed already: the metadata alone, or the whole body.
            let metadata_parsed = Body::from_text(text).unwrap();
            metadata_parsed.metadata();
            assert_eq!(
                metadata_parsed.field_at(&path).as_deref(),
                expected,
                "{path:?}"
            );
            assert_eq!(
                Body::from_value(parsed.clone()).field_at(&path).as_deref(),
                expected
            );
            checked += 1;
        }
        checked
    }

    #[test]
    fn a_field_at_a_path_is_the_value_there_in_the_parsed_body() {
        let mut checked = 0;
        for body in recorded_response_bodies() {
            checked += check_field_at(&body.to_string());
        }
        assert!(checked > 5_000, "only {checked} paths");
        // Written unusually: whitespace, escaped names, repeated names (the last counts), values that are not
        // objects on the way, `managedFields` (left out as the parse leaves it out).
        let odd: usize = [
            r#" { "spec" : { "node\u004eame" : "n1" , "a" : [ 1 , { "b" : 2 } ] } , "kind" : "Pod" } "#,
            r#"{"spec":{"x":1,"x":{"y":2}},"spec":{"x":{"z":3}},"metadata":{"name":"a","name":"b"}}"#,
            r#"{"metadata":{"na\"me":"q","managedFields":[{"m":1}],"labels":{"a":"b"}},"status":"s"}"#,
            r#"{"metadata":{"managedFields":[],"uid":"u"},"spec":null,"data":{"k":"\ud83d\ude00"}}"#,
            r#"{"spec":{"n":1e300,"m":-0.5E-3,"big":123456789012345678901234567890}}"#,
            r#"{}"#,
        ]
        .into_iter()
        .map(check_field_at)
        .sum();
        assert!(odd > 40, "only {odd} paths of the odd bodies");
        let body = Body::from_text(r#"{"metadata":{"managedFields":[1]}}"#).unwrap();
        assert!(body.field_at(&["metadata", "managedFields"]).is_none());
        assert!(body.field_at(&["metadata", "managedFields", "x"]).is_none());
    }

    #[test]
    fn a_label_is_found_by_its_name_not_by_text_that_holds_it() {
        let body = Body::from_text(
            r#"{"metadata":{"labels":{"app":"team/redact","team/redact-not":"x"},"annotations":{"team/redact":"1"}}}"#,
        )
        .unwrap();
        assert!(!body.has_label("team/redact"));
        assert!(body.has_label("team/redact-not"));
        assert!(body.has_label("app"));
        assert!(!body.has_label("ap"));
        assert!(!body.is_parsed());
    }

    #[test]
    fn escapes_and_odd_metadata_are_answered_from_the_parsed_metadata() {
        let body = Body::from_text(
            r#"{"kind":"P\u006fd","metadata":{"name":"a\"b","uid":7,"labels":{"x\/y":"1"},"namespace":"n","namespace":"m"}}"#,
        )
        .unwrap();
        assert_eq!(body.kind(), Some("Pod"));
        assert_eq!(metadata_str(&body, "name"), Some("a\"b"));
        assert_eq!(metadata_str(&body, "uid"), None);
        assert_eq!(metadata_str(&body, "namespace"), Some("m"));
        assert!(body.has_label("x/y"));
        assert_eq!(
            metadata_field(&body, "namespace").as_deref(),
            Some(&json!("m"))
        );
        let with_owned = Body::from_text(
            r#"{"metadata":{"ownerReferences":[{"kind":"ReplicaSet","name":"r"}],"managedFields":[{"manager":"m"}]}}"#,
        )
        .unwrap();
        assert!(matches!(
            metadata_field(&with_owned, "ownerReferences"),
            Some(Cow::Owned(_))
        ));
        assert_eq!(
            metadata_field(&with_owned, "managedFields"),
            None,
            "left out, as when parsed"
        );
        // Once the metadata is parsed, it answers.
        assert!(metadata_value(&with_owned, "ownerReferences").is_some());
        assert!(matches!(
            metadata_field(&with_owned, "ownerReferences"),
            Some(Cow::Borrowed(_))
        ));
        for text in ["[]", r#"{"metadata":[]}"#, r#"{"metadata":{}"#, "{} x"] {
            assert!(Body::from_text(text).is_err(), "{text}");
        }
    }

    #[test]
    fn any_body_parses_as_serde_json_would_apart_from_managed_fields() {
        let mut bodies = 0;
        for body in recorded_response_bodies() {
            let body = &body;
            let mut expected = body.clone();
            if let Some(metadata) = expected["metadata"].as_object_mut() {
                metadata.remove("managedFields");
            }
            assert_eq!(parse_object_body(&body.to_string()).unwrap(), expected);
            bodies += 1;
        }
        assert!(bodies > 50, "only {bodies} bodies in the recording");
    }
}
