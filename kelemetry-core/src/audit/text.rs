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

use jiff::Timestamp;
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
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

/// An RFC 3339 timestamp field that may be absent or `null`: `None` then. The shape apiservers write
/// (`2024-05-01T12:00:00.100000Z`) is read by [`utc_timestamp`]; any other is left to jiff's parser, which also
/// words the error for one that is not a timestamp.
pub(super) fn timestamp<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Timestamp>, D::Error> {
    let Some(Text(text)) = Option::<Text<'_>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    match utc_timestamp(&text) {
        Some(timestamp) => Ok(Some(timestamp)),
        None => text.parse().map(Some).map_err(D::Error::custom),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` with an optional fraction of one to nine digits before the `Z`, read without jiff's
/// general parser (about 290 instructions against its 780; an audit event has two or three timestamps). `None` for
/// any other text, and for a day after the 28th (which the general parser checks against the month): the caller
/// then asks jiff.
fn utc_timestamp(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    let (date_time, rest) = bytes.split_at_checked(19)?;
    let [
        y0,
        y1,
        y2,
        y3,
        b'-',
        m0,
        m1,
        b'-',
        d0,
        d1,
        b'T',
        h0,
        h1,
        b':',
        i0,
        i1,
        b':',
        s0,
        s1,
    ] = *date_time
    else {
        return None;
    };
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0i64, |value, &digit| {
            digit
                .is_ascii_digit()
                .then(|| value * 10 + i64::from(digit - b'0'))
        })
    };
    let year = number(&[y0, y1, y2, y3])?;
    let month = number(&[m0, m1])?;
    let day = number(&[d0, d1])?;
    let (hour, minute, second) = (number(&[h0, h1])?, number(&[i0, i1])?, number(&[s0, s1])?);
    if !(1..=12).contains(&month)
        || !(1..=28).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let nanos = match rest {
        [b'Z'] => 0,
        [b'.', fraction @ .., b'Z'] if (1..=9).contains(&fraction.len()) => {
            // Scaled to nanoseconds: `.1` is 100,000,000 of them.
            number(fraction)? * 10i64.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    let seconds = days_since_epoch(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    // jiff adds the fraction to the seconds whatever their sign: before 1970 too.
    Timestamp::new(seconds, i32::try_from(nanos).ok()?).ok()
}

/// Days from 1970-01-01 to the given day of the proleptic Gregorian calendar. The year is counted from March, so
/// that February, the month of varying length, comes last; a 400-year cycle has 146,097 days.
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let cycle = year.div_euclid(400);
    let year_of_cycle = year - cycle * 400;
    // Days before the month, March being month 0: 31, 30, 31, 30, 31 repeating (153 days every five months).
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_cycle = year_of_cycle * 365 + year_of_cycle / 4 - year_of_cycle / 100 + day_of_year;
    // 719,468 days from 0000-03-01 to 1970-01-01.
    cycle * 146_097 + day_of_cycle - 719_468
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

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use proptest::prelude::*;

    use super::utc_timestamp;

    /// What jiff's own parser makes of `text`, if it accepts it.
    fn by_jiff(text: &str) -> Option<Timestamp> {
        text.parse().ok()
    }

    #[test]
    fn every_day_of_four_centuries_is_the_day_jiff_reads() {
        // 1900 to 2300: a non-leap century year, a leap one (2000), and every month's 28 first days.
        let mut day = jiff::civil::date(1900, 1, 1);
        let end = jiff::civil::date(2300, 1, 1);
        let mut checked = 0;
        while day < end {
            let text = format!("{day}T23:59:58.5Z");
            if day.day() <= 28 {
                assert_eq!(utc_timestamp(&text), by_jiff(&text), "{text}");
                checked += 1;
            } else {
                assert_eq!(utc_timestamp(&text), None, "{text}: left to jiff");
            }
            day = day.tomorrow().unwrap();
        }
        assert!(checked > 130_000, "{checked}");
    }

    #[test]
    fn the_shapes_apiservers_write_are_read_as_jiff_reads_them() {
        for text in [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.1Z",
            "2024-05-01T12:00:00.100000Z",
            "2024-05-01T12:00:00.123456789Z",
            "1970-01-01T00:00:00Z",
            "1969-12-28T23:59:59.999999999Z",
            "1900-02-28T00:00:00.5Z",
            "0001-01-01T00:00:00Z",
            "9999-12-28T23:59:59Z",
            "2000-02-28T00:00:00.000000001Z",
        ] {
            assert_eq!(utc_timestamp(text), by_jiff(text), "{text}");
            assert!(utc_timestamp(text).is_some(), "{text}");
        }
    }

    #[test]
    fn other_shapes_are_left_to_jiff() {
        for text in [
            "",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00z",
            "2024-05-01t12:00:00Z",
            "2024-05-01 12:00:00Z",
            "2024-05-01T12:00:00+00:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00.1234567890Z",
            "2024-05-01T12:00:00,5Z",
            "2024-05-01T12:00:60Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:60:00Z",
            "2024-13-01T12:00:00Z",
            "2024-00-01T12:00:00Z",
            "2024-05-00T12:00:00Z",
            "2024-02-29T12:00:00Z",
            "2023-02-29T12:00:00Z",
            "2024-05-31T12:00:00Z",
            "+002024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.1Z ",
            "2024-05-01T12:00:00ZZ",
            "2024-0a-01T12:00:00Z",
            "２024-05-01T12:00:00Z",
        ] {
            assert_eq!(utc_timestamp(text), None, "{text:?}");
        }
    }

    proptest! {
        /// Whatever the fast path reads, jiff reads the same: texts one byte away from the apiservers' shape (a
        /// byte replaced by a digit or one of the shape's separators, or taken out), where most are still read by
        /// the fast path and the others are near misses.
        #[test]
        fn what_the_fast_path_reads_jiff_reads_the_same(
            seconds in -62_000_000_000i64..=253_000_000_000,
            nanos in 0u32..1_000_000_000,
            at in 0usize..32,
            byte in proptest::sample::select(b"0123456789Tt:.Zz+- ".to_vec()),
            remove in proptest::bool::weighted(0.2),
        ) {
            let written = Timestamp::new(seconds, 0).unwrap().to_string();
            let mut text = format!("{}.{nanos:09}Z", written.trim_end_matches('Z')).into_bytes();
            let at = at % text.len();
            if remove {
                text.remove(at);
            } else {
                text[at] = byte;
            }
            let text = String::from_utf8(text).unwrap();
            if let Some(timestamp) = utc_timestamp(&text) {
                prop_assert_eq!(Some(timestamp), by_jiff(&text), "{}", text);
            }
        }

        #[test]
        fn well_formed_timestamps_read_as_jiff_reads_them(
            year in 0u32..=9999,
            month in 0u32..=13,
            day in 0u32..=32,
            hour in 0u32..=25,
            minute in 0u32..=61,
            second in 0u32..=61,
            fraction in proptest::option::of("[0-9]{0,10}"),
        ) {
            let fraction = fraction.map(|digits| format!(".{digits}")).unwrap_or_default();
            let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z");
            match utc_timestamp(&text) {
                Some(timestamp) => prop_assert_eq!(Some(timestamp), by_jiff(&text), "{}", text),
                // Left to jiff: only a day after the 28th of a valid month, a leap second, or what jiff
                // refuses too.
                None => prop_assert!(
                    (29..=31).contains(&day) || second == 60 || by_jiff(&text).is_none(),
                    "{} was left to jiff, which reads it",
                    text
                ),
            }
        }
    }
}
