//! Deserialising the strings and bodies of an audit event borrowed from the input where they can be: a string
//! without escapes, and a body as its raw JSON text. Each string the parse would copy is an allocation, and most
//! of an event's strings are dropped once it is mapped (see `benches/README.md`).
//!
//! `serde`'s own `Cow<str>` borrows only as a field of its own (`#[serde(borrow)]`), not inside an `Option`, a
//! `Vec` or a map, hence these functions for `deserialize_with`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::walk::{BODY, BODY_WITH_FIELDS};
use crate::body::RawBody;

/// A map keyed by strings of the input.
type TextMap<'a, V> = BTreeMap<Cow<'a, str>, V>;

/// A string of the input: borrowed unless it has escapes (or the input cannot lend it).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

/// A string field that may be absent or `null`: `None` then.
pub(super) fn optional<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<Text<'a>>::deserialize(deserializer)?.map(|text| text.0))
}

/// A string field where `null` means empty.
pub(super) fn or_empty<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Cow<'a, str>, D::Error> {
    Ok(optional(deserializer)?.unwrap_or(Cow::Borrowed("")))
}

/// A list of strings where `null` means empty.
pub(super) fn list<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Cow<'a, str>>, D::Error> {
    let texts = Option::<Vec<Text<'a>>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(texts.into_value())
}

/// A map of strings to strings where `null` means empty.
pub(super) fn map<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<TextMap<'a, Cow<'a, str>>, D::Error> {
    deserializer.deserialize_option(MapVisitor::<'a, Text<'a>>(PhantomData))
}

/// A map of strings to lists of strings where `null` means empty (a user's `extra`); a value that is `null`
/// rather than a list is refused.
pub(super) fn map_of_lists<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<TextMap<'a, Vec<Cow<'a, str>>>, D::Error> {
    deserializer.deserialize_option(MapVisitor::<'a, Vec<Text<'a>>>(PhantomData))
}

/// A body, borrowed as its raw JSON text. It is asked for as the newtype [`BODY`]: the one-pass walk
/// ([`super::walk`]) answers with the text it has checked; `serde_json` (as any other deserializer) hands over the
/// newtype's content, read as a `RawValue`. A deserializer that answers the newtype with a borrowed string vouches
/// that the string is one checked JSON value; only the walk does (the names are private to this crate).
pub(super) fn raw<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<RawBody<'a>>, D::Error> {
    Ok(Option::<Raw<'a, false>>::deserialize(deserializer)?.map(|raw| raw.0))
}

/// A body as [`raw`], whose fields the walk also notes on its way ([`BODY_WITH_FIELDS`]): the response body, which
/// the mapping reads.
pub(super) fn raw_with_fields<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<RawBody<'a>>, D::Error> {
    Ok(Option::<Raw<'a, true>>::deserialize(deserializer)?.map(|raw| raw.0))
}

/// A body of the input (see [`raw`]), its fields noted by the walk when `FIELDS`.
struct Raw<'a, const FIELDS: bool>(RawBody<'a>);

impl<'de: 'a, 'a, const FIELDS: bool> Deserialize<'de> for Raw<'a, FIELDS> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor<const FIELDS: bool>;

        impl<'de, const FIELDS: bool> Visitor<'de> for RawVisitor<FIELDS> {
            type Value = Raw<'de, FIELDS>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }

            /// The walk's answer: the value's text, checked.
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                text: &'de str,
            ) -> Result<Raw<'de, FIELDS>, E> {
                Ok(Raw(RawBody::checked(Cow::Borrowed(text))))
            }

            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<Raw<'de, FIELDS>, D::Error> {
                <&'de RawValue>::deserialize(deserializer).map(|raw| Raw(RawBody::from(raw)))
            }
        }

        let name = if FIELDS { BODY_WITH_FIELDS } else { BODY };
        deserializer.deserialize_newtype_struct(name, RawVisitor::<FIELDS>)
    }
}

/// What a map's values become.
trait MapValue<'a> {
    type Value;
    fn into_value(self) -> Self::Value;
}

impl<'a> MapValue<'a> for Text<'a> {
    type Value = Cow<'a, str>;
    fn into_value(self) -> Cow<'a, str> {
        self.0
    }
}

impl<'a> MapValue<'a> for Vec<Text<'a>> {
    type Value = Vec<Cow<'a, str>>;
    fn into_value(self) -> Vec<Cow<'a, str>> {
        // The same layout, so this reuses the vector.
        self.into_iter().map(|text| text.0).collect()
    }
}

/// Reads a map with string keys (or `null`) straight into a `BTreeMap`, borrowing keys and values.
struct MapVisitor<'a, V>(PhantomData<(&'a (), V)>);

impl<'de: 'a, 'a, V> Visitor<'de> for MapVisitor<'a, V>
where
    V: Deserialize<'de> + MapValue<'a>,
{
    type Value = TextMap<'a, V::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<Text<'a>, V>()? {
            out.insert(key.0, value.into_value());
        }
        Ok(out)
    }
}

/// The string, owned.
pub(super) fn owned(text: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(text.into_owned())
}

/// The string if any, owned.
pub(super) fn owned_optional(text: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    text.map(owned)
}

/// The strings, owned.
pub(super) fn owned_list(texts: Vec<Cow<'_, str>>) -> Vec<Cow<'static, str>> {
    texts.into_iter().map(owned).collect()
}
