//! Reading an audit document in one pass over its text: a `serde` [`Deserializer`] that checks the JSON as it
//! walks it, hands each body over as its text (checked in the same pass, so nothing reads the body again to
//! validate it) and leaves scalars to `serde_json`.
//!
//! Parsing with `serde_json` alone reads every body twice: once as a `RawValue` (which checks it, a pass over
//! every byte of it) and once more when the mapping scans the response body for its fields. The bodies are most
//! of an audit event's bytes. This walker checks each byte once; a body's text is then handed over through the
//! newtype [`BODY`], which `serde_json` (any other deserializer) treats as an ordinary newtype.
//!
//! The walk is an optimisation, not a second parser to trust: anything it does not take (text that is not JSON,
//! a field of the wrong type, an escaped field name it cannot borrow, nesting deeper than [`MAX_DEPTH`]) ends it
//! with [`Unwalked`], and the caller parses the document again with `serde_json`, whose result and error then
//! stand. What the walk accepts, `serde_json` accepts too, with the same values (tests check both on the recorded
//! corpus and on random damage to it).

use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::de::StrRead;
use wide::u8x16;

use crate::body::FoundFields;
use crate::json_scan::Field;

/// The newtype name through which a body asks for its JSON text (see [`crate::body::RawBody`]).
pub(crate) const BODY: &str = "$kelemetry::RawBody";

/// The same for a body whose fields the walk also notes (see [`Walker::into_found_fields`]).
pub(crate) const BODY_WITH_FIELDS: &str = "$kelemetry::RawBody+fields";

/// How deep a body's values may nest for the walk to note its fields: well within the depth at which
/// [`crate::json_scan`] refuses a body (126), so that a body the walk notes is one it would have scanned alike.
const MAX_NOTED_DEPTH: usize = 100;

/// How deep arrays and objects may nest before the walk gives up (and `serde_json` decides).
const MAX_DEPTH: usize = 128;

/// The walk stopped: the document is to be parsed by `serde_json`, whose answer stands.
#[derive(Debug)]
pub(super) struct Unwalked;

impl fmt::Display for Unwalked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the document is left to serde_json")
    }
}

impl std::error::Error for Unwalked {}

impl de::Error for Unwalked {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Unwalked
    }
}

/// The walk over one document's text.
pub(super) struct Walker<'de> {
    text: &'de str,
    at: usize,
    /// The fields of the bodies asked for as [`BODY_WITH_FIELDS`], by where each body starts in the text.
    found: Vec<(usize, FoundFields<'de>)>,
    /// Whether the walk met, since this was last cleared, what [`crate::json_scan`] treats on its own terms: a `\u`
    /// escape of a surrogate, a number with an exponent or of more than 300 characters, nesting deeper than
    /// [`MAX_NOTED_DEPTH`].
    unusual: bool,
}

impl<'de> Walker<'de> {
    pub(super) fn new(text: &'de str) -> Self {
        Self {
            text,
            at: 0,
            found: Vec::new(),
            unusual: false,
        }
    }

    /// The fields noted of the bodies asked for as [`BODY_WITH_FIELDS`], each with where its body starts in the
    /// text, in the order of the text: what [`crate::json_scan::object_and_nested_fields`] would find of the body and of
    /// its `metadata`. A body that is not an object, or holds what the scan treats on its own terms (see
    /// [`Walker::unusual`]) or a field name with escapes, has none: it is scanned when it is read.
    pub(super) fn into_found_fields(self) -> Vec<(usize, FoundFields<'de>)> {
        self.found
    }

    /// The body at the cursor, checked, the cursor moved past it, its fields noted when it is an object without
    /// anything unusual.
    fn body_with_fields(&mut self) -> Result<&'de str, Unwalked> {
        self.peek();
        let start = self.at;
        self.unusual = false;
        let noted = match self.bytes().get(start) {
            Some(b'{') => self.object_fields(start, true)?,
            _ => None,
        };
        match noted {
            Some(fields) if !self.unusual => {
                self.found.push((start, fields));
                self.text.get(start..self.at).ok_or(Unwalked)
            }
            _ => {
                self.at = start;
                self.value_text()
            }
        }
    }

    /// The fields of the object at the cursor (on its brace), checked, their ranges counted from `base`; with
    /// those of its field `metadata` when `nested`. `None` (the walk somewhere inside) when a name has escapes or
    /// `metadata` is not an object: the caller walks the body again from its start.
    fn object_fields(
        &mut self,
        base: usize,
        nested: bool,
    ) -> Result<Option<FoundFields<'de>>, Unwalked> {
        self.at += 1;
        let mut top = Vec::new();
        let mut metadata = None;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Some(FoundFields { top, metadata }));
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(Unwalked);
            }
            let name_start = self.at;
            if self.skip_string()? {
                return Ok(None);
            }
            let name = self.text.get(name_start + 1..self.at - 1).ok_or(Unwalked)?;
            self.expect(b':')?;
            let value_start = match self.peek() {
                Some(_) => self.at,
                None => return Err(Unwalked),
            };
            if nested && name == "metadata" {
                if self.bytes().get(value_start) != Some(&b'{') {
                    return Ok(None);
                }
                match self.object_fields(base, false)? {
                    Some(inner) => metadata = Some(inner.top),
                    None => return Ok(None),
                }
            } else {
                self.skip_value()?;
            }
            top.push(Field {
                name: std::borrow::Cow::Borrowed(name),
                value: value_start - base..self.at - base,
            });
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Some(FoundFields { top, metadata }));
                }
                _ => return Err(Unwalked),
            }
        }
    }

    /// After the document: only whitespace may follow it.
    pub(super) fn end(&mut self) -> Result<(), Unwalked> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Unwalked),
        }
    }

    fn bytes(&self) -> &'de [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not whitespace, the cursor moved to it.
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        while let Some(&byte) = bytes.get(self.at) {
            if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(byte);
            }
            self.at += 1;
        }
        None
    }

    /// Moves past `byte`, which must come next (after whitespace).
    fn expect(&mut self, byte: u8) -> Result<(), Unwalked> {
        if self.peek() != Some(byte) {
            return Err(Unwalked);
        }
        self.at += 1;
        Ok(())
    }

    /// The text of the value at the cursor, checked, the cursor moved past it.
    fn value_text(&mut self) -> Result<&'de str, Unwalked> {
        self.peek();
        let start = self.at;
        self.skip_value()?;
        self.text.get(start..self.at).ok_or(Unwalked)
    }

    /// Checks the value at the cursor and moves past it, without recursion: the kinds of the open containers are
    /// bits of one integer (set for an object).
    fn skip_value(&mut self) -> Result<(), Unwalked> {
        let mut objects: u128 = 0;
        let mut depth = 0usize;
        'value: loop {
            match self.peek().ok_or(Unwalked)? {
                open @ (b'{' | b'[') => {
                    self.at += 1;
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.at += 1;
                    } else {
                        if depth == MAX_DEPTH {
                            return Err(Unwalked);
                        }
                        objects = (objects << 1) | u128::from(open == b'{');
                        depth += 1;
                        self.unusual |= depth > MAX_NOTED_DEPTH;
                        if open == b'{' {
                            self.skip_name()?;
                        }
                        continue 'value;
                    }
                }
                b'"' => {
                    self.skip_string()?;
                }
                b'-' | b'0'..=b'9' => self.skip_number()?,
                b't' => self.skip_literal(b"true")?,
                b'f' => self.skip_literal(b"false")?,
                b'n' => self.skip_literal(b"null")?,
                _ => return Err(Unwalked),
            }
            // After a value: close containers until one goes on.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                let in_object = objects & 1 == 1;
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        if in_object {
                            self.skip_name()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if in_object => {}
                    Some(b']') if !in_object => {}
                    _ => return Err(Unwalked),
                }
                self.at += 1;
                objects >>= 1;
                depth -= 1;
            }
        }
    }

    /// A field name and its colon.
    fn skip_name(&mut self) -> Result<(), Unwalked> {
        if self.peek() != Some(b'"') {
            return Err(Unwalked);
        }
        self.skip_string()?;
        self.expect(b':')
    }

    /// Checks the string at the cursor (on its opening quote) and moves past it; whether it has escapes. Refused:
    /// control characters, unknown escapes, `\u` without four hex digits (as `serde_json` refuses them).
    #[inline(always)]
    fn skip_string(&mut self) -> Result<bool, Unwalked> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let bytes = self.bytes();
        let mut at = self.at + 1;
        let mut escaped = false;
        let (quote, backslash, control) =
            (u8x16::splat(b'"'), u8x16::splat(b'\\'), u8x16::splat(0x1f));
        loop {
            // Sixteen bytes at a time up to a quote, a backslash or a control character (at most 0x1f), then
            // eight (each mask is exact at its lowest set byte, which is all that is used), then one.
            'scan: {
                while let Some(block) = bytes.get(at..at + 16) {
                    let mut array = [0u8; 16];
                    array.copy_from_slice(block);
                    let block = u8x16::from(array);
                    let found = (block.simd_eq(quote)
                        | block.simd_eq(backslash)
                        | block.max(control).simd_eq(control))
                    .to_bitmask();
                    if found != 0 {
                        at += found.trailing_zeros() as usize;
                        break 'scan;
                    }
                    at += 16;
                }
                while let Some(word) = bytes.get(at..at + 8) {
                    let mut chunk = [0u8; 8];
                    chunk.copy_from_slice(word);
                    let word = u64::from_le_bytes(chunk);
                    let quote = word ^ (ONES * u64::from(b'"'));
                    let backslash = word ^ (ONES * u64::from(b'\\'));
                    let found = (quote.wrapping_sub(ONES) & !quote)
                        | (backslash.wrapping_sub(ONES) & !backslash)
                        | (word.wrapping_sub(ONES * 0x20) & !word);
                    let found = found & HIGH;
                    if found != 0 {
                        at += (found.trailing_zeros() / 8) as usize;
                        break 'scan;
                    }
                    at += 8;
                }
            }
            match bytes.get(at) {
                Some(b'"') => {
                    self.at = at + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    match bytes.get(at + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at += 2,
                        Some(b'u') => {
                            let digits = bytes.get(at + 2..at + 6).ok_or(Unwalked)?;
                            if !digits.iter().all(u8::is_ascii_hexdigit) {
                                return Err(Unwalked);
                            }
                            // `d800` to `dfff`: half of a pair, which the body scan checks itself.
                            self.unusual |= matches!(digits[0], b'd' | b'D')
                                && matches!(digits[1], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F');
                            at += 6;
                        }
                        _ => return Err(Unwalked),
                    }
                }
                Some(&byte) if byte < 0x20 => return Err(Unwalked),
                Some(_) => at += 1,
                None => return Err(Unwalked),
            }
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn skip_number(&mut self) -> Result<(), Unwalked> {
        let bytes = self.bytes();
        let mut at = self.at;
        let digits = |at: usize| {
            bytes.get(at..).map_or(0, |rest| {
                rest.iter().take_while(|b| b.is_ascii_digit()).count()
            })
        };
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        match bytes.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => at += digits(at),
            _ => return Err(Unwalked),
        }
        if bytes.get(at) == Some(&b'.') {
            let fraction = digits(at + 1);
            if fraction == 0 {
                return Err(Unwalked);
            }
            at += 1 + fraction;
        }
        if matches!(bytes.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(bytes.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            let exponent = digits(at);
            if exponent == 0 {
                return Err(Unwalked);
            }
            at += exponent;
            self.unusual = true;
        }
        self.unusual |= at - self.at > 300;
        self.at = at;
        Ok(())
    }

    fn skip_literal(&mut self, literal: &[u8]) -> Result<(), Unwalked> {
        if self.bytes().get(self.at..self.at + literal.len()) != Some(literal) {
            return Err(Unwalked);
        }
        self.at += literal.len();
        Ok(())
    }

    /// A string at the cursor without escapes, its content borrowed; `None` (the cursor unmoved) otherwise.
    fn plain_string(&mut self) -> Result<Option<&'de str>, Unwalked> {
        if self.peek() != Some(b'"') {
            return Ok(None);
        }
        let start = self.at;
        if self.skip_string()? {
            self.at = start;
            return Ok(None);
        }
        self.text
            .get(start + 1..self.at - 1)
            .ok_or(Unwalked)
            .map(Some)
    }
}

/// Runs `read` on a `serde_json` deserializer of `text` (a value the walk checked), which must read all of it.
fn with_json<'de, T>(
    text: &'de str,
    read: impl FnOnce(&mut serde_json::Deserializer<StrRead<'de>>) -> serde_json::Result<T>,
) -> Result<T, Unwalked> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = read(&mut deserializer).map_err(|_| Unwalked)?;
    deserializer.end().map_err(|_| Unwalked)?;
    Ok(value)
}

/// Deserializer methods answered by `serde_json` reading the value's text.
macro_rules! leave_to_json {
    ($($method:ident $(($($arg:ident: $ty:ty),*))?;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($($arg: $ty,)*)? visitor: V) -> Result<V::Value, Unwalked> {
                let text = self.value_text()?;
                with_json(text, |json| json.$method($($($arg,)*)? visitor))
            }
        )*
    };
}

impl<'de> Deserializer<'de> for &mut Walker<'de> {
    type Error = Unwalked;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unwalked> {
        match self.peek() {
            Some(b'{') => self.deserialize_map(visitor),
            Some(b'[') => self.deserialize_seq(visitor),
            Some(b'"') => self.deserialize_str(visitor),
            _ => {
                let text = self.value_text()?;
                with_json(text, |json| json.deserialize_any(visitor))
            }
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unwalked> {
        match self.plain_string()? {
            Some(text) => visitor.visit_borrowed_str(text),
            None => {
                let text = self.value_text()?;
                with_json(text, |json| json.deserialize_str(visitor))
            }
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unwalked> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unwalked> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unwalked> {
        if self.peek() == Some(b'n') {
            self.skip_literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Unwalked> {
        if name == BODY {
            let text = self.value_text()?;
            visitor.visit_borrowed_str(text)
        } else if name == BODY_WITH_FIELDS {
            let text = self.body_with_fields()?;
            visitor.visit_borrowed_str(text)
        } else {
            visitor.visit_newtype_struct(self)
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unwalked> {
        Entries::visit(self, b'[', b']', |items| visitor.visit_seq(items))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unwalked> {
        Entries::visit(self, b'{', b'}', |fields| visitor.visit_map(fields))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Unwalked> {
        self.deserialize_map(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unwalked> {
        self.skip_value()?;
        visitor.visit_unit()
    }

    leave_to_json! {
        deserialize_bool;
        deserialize_i8;
        deserialize_i16;
        deserialize_i32;
        deserialize_i64;
        deserialize_i128;
        deserialize_u8;
        deserialize_u16;
        deserialize_u32;
        deserialize_u64;
        deserialize_u128;
        deserialize_f32;
        deserialize_f64;
        deserialize_char;
        deserialize_bytes;
        deserialize_byte_buf;
        deserialize_unit;
        deserialize_unit_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }
}

/// The entries of an object (its fields) or of an array (its items), after the opening brace or bracket.
struct Entries<'w, 'de> {
    walker: &'w mut Walker<'de>,
    /// The closing brace or bracket.
    close: u8,
    first: bool,
    /// Whether the closing byte was reached.
    done: bool,
}

impl<'w, 'de> Entries<'w, 'de> {
    /// Reads the object or array at the cursor with `visit`, which must read it to its end (a visitor that stops
    /// before would leave the walk inside it; `serde_json` refuses that too).
    fn visit<T>(
        walker: &'w mut Walker<'de>,
        open: u8,
        close: u8,
        visit: impl FnOnce(&mut Self) -> Result<T, Unwalked>,
    ) -> Result<T, Unwalked> {
        walker.expect(open)?;
        let mut entries = Self {
            walker,
            close,
            first: true,
            done: false,
        };
        let value = visit(&mut entries)?;
        if entries.done {
            Ok(value)
        } else {
            Err(Unwalked)
        }
    }

    /// Moves to the next entry (past its comma): `false` once past the closing byte. What follows is not checked
    /// here: the entry's own read refuses what is not one.
    fn advance(&mut self) -> Result<bool, Unwalked> {
        match self.walker.peek() {
            Some(byte) if byte == self.close => {
                self.walker.at += 1;
                self.done = true;
                Ok(false)
            }
            Some(b',') if !self.first => {
                self.walker.at += 1;
                Ok(true)
            }
            Some(_) if self.first => {
                self.first = false;
                Ok(true)
            }
            _ => Err(Unwalked),
        }
    }
}

impl<'de> MapAccess<'de> for Entries<'_, 'de> {
    type Error = Unwalked;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Unwalked> {
        if !self.advance()? {
            return Ok(None);
        }
        let walker = &mut *self.walker;
        let key = match walker.plain_string()? {
            Some(name) => seed.deserialize(BorrowedStrDeserializer::<Unwalked>::new(name))?,
            None => {
                if walker.peek() != Some(b'"') {
                    return Err(Unwalked);
                }
                let text = walker.value_text()?;
                with_json(text, |json| seed.deserialize(json))?
            }
        };
        walker.expect(b':')?;
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Unwalked> {
        seed.deserialize(&mut *self.walker)
    }
}

impl<'de> SeqAccess<'de> for Entries<'_, 'de> {
    type Error = Unwalked;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Unwalked> {
        if !self.advance()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.walker).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use serde::de::IgnoredAny;

    use super::super::{AuditEvent, Document, walked};
    use crate::json_scan;

    /// Every line of the recorded audit logs of the repository.
    fn recorded_lines() -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/recorded");
        let mut lines = Vec::new();
        let mut folders: Vec<_> = std::fs::read_dir(dir)
            .expect("the recorded fixtures")
            .map(|entry| entry.expect("an entry").path())
            .collect();
        folders.sort();
        for folder in folders {
            let Ok(text) = std::fs::read_to_string(folder.join("audit.log")) else {
                continue;
            };
            lines.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned),
            );
        }
        assert!(lines.len() > 500, "{} recorded lines", lines.len());
        lines
    }

    /// A document's events as text, to compare two parses.
    fn events_of(document: Document<'_>) -> String {
        let events: Vec<AuditEvent<'_>> = match document.items {
            Some(items) => items,
            None => vec![document.into_event()],
        };
        format!("{events:?}")
    }

    /// What `serde_json` alone makes of `text`.
    fn by_json(text: &str) -> Option<String> {
        serde_json::from_str::<Document<'_>>(text)
            .ok()
            .map(events_of)
    }

    /// The walk's answer for `text` must be `serde_json`'s whenever the walk gives one, and the fields it noted
    /// of a response body those the body scan finds; returns whether it gave one, and how many bodies it noted.
    fn check(text: &str) -> Option<usize> {
        let document = walked(text)?;
        assert!(
            serde_json::from_str::<IgnoredAny>(text).is_ok(),
            "the walk took text that is not JSON: {text}"
        );
        let events: Vec<&AuditEvent<'_>> = match &document.items {
            Some(items) => items.iter().collect(),
            None => Vec::new(),
        };
        let single = document
            .items
            .is_none()
            .then_some(&document.response_object);
        let mut noted = 0;
        for body in events
            .iter()
            .map(|event| &event.response_object)
            .chain(single)
            .flatten()
        {
            if let Some(found) = body.found_fields() {
                let scanned = json_scan::object_and_nested_fields(body.get(), "metadata");
                assert_eq!(
                    Some((found.top.clone(), found.metadata.clone())),
                    scanned,
                    "{text}"
                );
                noted += 1;
            }
        }
        assert_eq!(Some(events_of(document)), by_json(text), "{text}");
        Some(noted)
    }

    #[test]
    fn the_walk_reads_every_recorded_line_as_serde_json_does() {
        let lines = recorded_lines();
        let (mut noted, mut bodies) = (0, 0);
        for line in &lines {
            let Some(found) = check(line) else {
                panic!("the walk gave up on a recorded line: {line}");
            };
            noted += found;
            bodies += usize::from(line.contains(r#""responseObject":{"#));
        }
        // Every response body that is an object has its fields noted.
        assert!(bodies > 100 && noted == bodies, "{noted} of {bodies}");
        // An EventList of them, as a webhook receives it.
        let list = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
            lines.join(",")
        );
        assert_eq!(check(&list), Some(noted));
    }

    /// Damage to recorded lines (a byte replaced, removed or repeated, with the bytes JSON gives meaning to): the
    /// walk either gives up or answers as `serde_json` does, and never takes text that is not JSON.
    #[test]
    fn damaged_lines_are_read_as_serde_json_reads_them_or_left_to_it() {
        let lines = recorded_lines();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let specials = b"{}[]\",:\\ \t\n0123456789-+.eEtrufalsn\x01\x1f\x7fu";
        let (mut taken, mut given_up) = (0, 0);
        for round in 0..20_000u64 {
            let line = &lines[(next() % lines.len() as u64) as usize];
            let mut bytes = line.as_bytes().to_vec();
            for _ in 0..=(round % 3) {
                let at = (next() % bytes.len() as u64) as usize;
                let special = specials[(next() % specials.len() as u64) as usize];
                match next() % 3 {
                    0 => bytes[at] = special,
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, special),
                }
            }
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            if check(text).is_some() {
                taken += 1;
            } else {
                given_up += 1;
                // Given up, it is serde_json's to parse: nothing to compare.
            }
        }
        assert!(
            taken > 1_000 && given_up > 1_000,
            "{taken} taken, {given_up} left"
        );
    }

    #[test]
    fn text_that_is_not_json_is_left_to_serde_json() {
        let event = |body: &str| {
            format!(r#"{{"kind":"Event","auditID":"a","verb":"create","responseObject":{body}}}"#)
        };
        for body in [
            r#"{"a":"tab	inside"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u12g4"}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":1e+}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":[1}"#,
            r#"{"a":{]}"#,
            r#"{1:2}"#,
            r#"{"a":"unterminated}"#,
        ] {
            let text = event(body);
            assert!(walked(&text).is_none(), "{text}");
            assert!(serde_json::from_str::<IgnoredAny>(&text).is_err(), "{text}");
        }
        // A control character anywhere in a long string (read sixteen bytes, then eight, then one at a time) is
        // refused; DEL and any character beyond ASCII anywhere are taken.
        for at in 0..40 {
            for (inserted, refused) in [
                ("\u{0}", true),
                ("\t", true),
                ("\u{1f}", true),
                ("\u{7f}", false),
                ("é", false),
            ] {
                let mut long = "x".repeat(40);
                long.insert_str(at, inserted);
                let text = event(&format!(r#"{{"name":"{long}","other":"{long}"}}"#));
                assert_eq!(walked(&text).is_none(), refused, "{inserted:?} at {at}");
                assert_eq!(
                    serde_json::from_str::<IgnoredAny>(&text).is_err(),
                    refused,
                    "{inserted:?} at {at}"
                );
            }
        }
        // Trailing text after the document.
        assert!(walked(r#"{"kind":"Event","auditID":"a"} x"#).is_none());
        assert!(walked(" {\"kind\":\"Event\",\"auditID\":\"a\"}\n ").is_some());
    }

    #[test]
    fn what_serde_json_accepts_in_a_body_the_walk_takes_or_leaves_alike() {
        let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
        for body in [
            r#"{"a":"\ud800"}"#.to_owned(),
            r#"{"a":1e999,"b":-0.0e-5,"c":[true,false,null,"\"\\\/\b\f\n\r\t\u00e9"]}"#.to_owned(),
            " { \"a\" : [ ] , \"b\" : { } } ".to_owned(),
            r#"[{"op":"replace","path":"/spec","value":1}]"#.to_owned(),
            format!(r#"{{"deep":{deep}}}"#),
        ] {
            let text = format!(
                r#"{{"kind":"Event","auditID":"a","verb":"patch","requestObject":{body},"responseObject":{body}}}"#
            );
            let events =
                super::super::parse_document(text.as_bytes()).expect("serde_json takes it");
            assert_eq!(
                events[0].request_object.as_ref().map(|b| b.get().trim()),
                Some(body.trim()),
                "{text}"
            );
            // The deep one is left to serde_json; the others are walked.
            assert_eq!(walked(&text).is_some(), !body.contains(&deep), "{text}");
            check(&text);
        }
    }

    /// A visitor that stops before the end of an array or object leaves the walk inside it: refused, as
    /// `serde_json` refuses it.
    #[test]
    fn a_container_not_read_to_its_end_is_refused() {
        use serde::Deserialize;
        let read = |text: &str| <(String,)>::deserialize(&mut super::Walker::new(text));
        assert_eq!(read(r#"["a"]"#).ok(), Some(("a".to_owned(),)));
        assert!(read(r#"["a","b"]"#).is_err());
        assert!(serde_json::from_str::<(String,)>(r#"["a","b"]"#).is_err());
    }

    #[test]
    fn fields_of_the_wrong_type_are_left_to_serde_json_and_its_error_stands() {
        for text in [
            r#"{"kind":"Event","auditID":5}"#,
            r#"{"kind":"Event","auditID":"a","auditID":"b"}"#,
            r#"{"kind":"Event","auditID":"a","responseStatus":{"code":"x"}}"#,
            r#"{"kind":"Event","auditID":"a","stage":7}"#,
        ] {
            assert!(walked(text).is_none(), "{text}");
            let error = super::super::parse_document(text.as_bytes()).unwrap_err();
            assert!(
                error.to_string().starts_with("invalid audit JSON"),
                "{error}"
            );
        }
    }
}
