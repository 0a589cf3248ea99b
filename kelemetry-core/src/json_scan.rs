//! Finding the parts of JSON text that is already known to be valid (checked by `serde_json` when it was read),
//! without parsing it: where each field of an object is, where a value ends. Strings are skipped eight bytes at a
//! time up to their first quote or backslash (most of a Kubernetes body is strings), everything else by counting
//! brackets. What the scan cannot make sense of
//! gives `None`, never a panic, so that text that was not checked after all is refused rather than misread.
//!
//! Text that `serde_json` checks without building anything (`IgnoredAny`, `RawValue`) may still be text it will not
//! read into a `Value`: a number beyond the range of `f64`, a `\u` escape of half a surrogate pair, nesting deeper
//! than its recursion limit. The scan refuses those too (`None`), so that a body it accepted always parses.

use std::borrow::Cow;
use std::ops::Range;

/// One field of an object: its name (unescaped) and where its value is, as a range of the object's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Field<'t> {
    pub(crate) name: Cow<'t, str>,
    pub(crate) value: Range<usize>,
}

/// An object's fields sorted by name, as (name, raw value text) slices of its text: what the diff walks.
pub(crate) type SortedFields<'t> = Vec<(Cow<'t, str>, &'t str)>;

/// The fields of `text` in their order, if it is a JSON object; `None` if it is another value (or not JSON).
pub(crate) fn object_fields(text: &str) -> Option<Vec<Field<'_>>> {
    let at = skip_whitespace(text.as_bytes(), 0);
    Some(scan_object(text, at, None, MAX_FIELD_VALUE_DEPTH)?.fields)
}

/// Whether the object `text` has a field named `name`, found without collecting its fields; `None` if `text` is
/// another value (or not JSON).
pub(crate) fn object_has_field(text: &str, name: &str) -> Option<bool> {
    let bytes = text.as_bytes();
    let walked = walk_fields(text, skip_whitespace(bytes, 0), |field, start| {
        if field == name {
            return Some(Step::Stop);
        }
        Some(Step::Next(value_end_within(
            bytes,
            start,
            MAX_FIELD_VALUE_DEPTH,
        )?))
    })?;
    Some(walked.is_none())
}

/// Where the value of the field `name` of the object `text` is, found without collecting its fields: of the last
/// such field when the name repeats, as `serde_json` keeps the last. `Some(None)` when the object has no such
/// field; `None` when `text` is another value (or does not scan).
pub(crate) fn object_field(text: &str, name: &str) -> Option<Option<Range<usize>>> {
    let bytes = text.as_bytes();
    let mut found = None;
    walk_fields(text, skip_whitespace(bytes, 0), |field, start| {
        let end = value_end_within(bytes, start, MAX_FIELD_VALUE_DEPTH)?;
        if field == name {
            found = Some(start..end);
        }
        Some(Step::Next(end))
    })?;
    Some(found)
}

/// The fields of `text` as [`object_fields`], and the fields of the object that is the value of the field named
/// `nested` (of the last, if the name repeats), found in the same pass, their ranges of `text` too. `None` if
/// `text` is not an object or a field named `nested` is not one.
pub(crate) fn object_and_nested_fields<'t>(
    text: &'t str,
    nested: &str,
) -> Option<(Vec<Field<'t>>, Option<Vec<Field<'t>>>)> {
    let at = skip_whitespace(text.as_bytes(), 0);
    let scanned = scan_object(text, at, Some(nested), MAX_FIELD_VALUE_DEPTH)?;
    Some((scanned.fields, scanned.nested))
}

/// What [`scan_object`] found.
struct ScannedObject<'t> {
    fields: Vec<Field<'t>>,
    nested: Option<Vec<Field<'t>>>,
    /// Just past the closing brace.
    end: usize,
}

/// The object at `at` in `text`: its fields (ranges of `text`), those of its field `nested` when asked, and its
/// end. Its fields' values may nest `depth` levels of arrays and objects.
fn scan_object<'t>(
    text: &'t str,
    at: usize,
    nested: Option<&str>,
    depth: usize,
) -> Option<ScannedObject<'t>> {
    let mut fields = Vec::new();
    let mut nested_fields = None;
    let end = walk_fields(text, at, |name, start| {
        let end = if nested.is_some_and(|nested| name == nested) {
            // The nested object's own fields are one level deeper.
            let inner = scan_object(text, start, None, depth.checked_sub(1)?)?;
            nested_fields = Some(inner.fields);
            inner.end
        } else {
            value_end_within(text.as_bytes(), start, depth)?
        };
        if fields.is_empty() {
            // Room for the fields of most Kubernetes objects and of their `metadata` at once, rather than growing
            // the list three or four times; an empty object (or not an object) allocates nothing.
            fields.reserve(16);
        }
        fields.push(Field {
            name,
            value: start..end,
        });
        Some(Step::Next(end))
    })?;
    Some(ScannedObject {
        fields,
        nested: nested_fields,
        // `visit` never stops this walk.
        end: end?,
    })
}

/// What the visitor of [`walk_fields`] says after a field.
enum Step {
    /// Go on after the field's value, which ends here.
    Next(usize),
    /// Stop the walk.
    Stop,
}

/// Walks the fields of the object whose opening brace is at `at`, in their order, handing `visit` each name and
/// where its value starts. Returns `Some(Some(end))`, just past the closing brace, once every field was visited;
/// `Some(None)` when `visit` stopped the walk; `None` when there is no object at `at`, its text does not scan, or
/// `visit` returned `None`.
fn walk_fields<'t>(
    text: &'t str,
    at: usize,
    mut visit: impl FnMut(Cow<'t, str>, usize) -> Option<Step>,
) -> Option<Option<usize>> {
    let bytes = text.as_bytes();
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    let mut at = skip_whitespace(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return Some(Some(at + 1));
    }
    loop {
        let name_end = string_end(bytes, at)?;
        let name = field_name(text.get(at..name_end)?)?;
        at = skip_whitespace(bytes, name_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let end = match visit(name, skip_whitespace(bytes, at + 1))? {
            Step::Next(end) => end,
            Step::Stop => return Some(None),
        };
        at = skip_whitespace(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_whitespace(bytes, at + 1),
            Some(b'}') => return Some(Some(at + 1)),
            _ => return None,
        }
    }
}

/// Sorts `fields` by name and keeps the last of each name, as `serde_json` keeps the last of a repeated field:
/// the kept fields are the first ones, their count is returned (for the caller to truncate to).
pub(crate) fn sort_keeping_last<N: Ord, V>(fields: &mut [(N, V)]) -> usize {
    // Stable: of the fields with one name, the last in the text comes last.
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let mut kept = 0;
    for at in 0..fields.len() {
        if kept > 0 && fields[kept - 1].0 == fields[at].0 {
            // A later field of the same name: its value replaces the one kept.
            fields.swap(kept - 1, at);
        } else {
            fields.swap(kept, at);
            kept += 1;
        }
    }
    kept
}

/// The content of a JSON string literal (`"..."`) without its quotes, if it holds no escape.
pub(crate) fn plain_string(literal: &str) -> Option<&str> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// A field name from its literal: borrowed when it holds no escape, else unescaped by `serde_json`.
fn field_name(literal: &str) -> Option<Cow<'_, str>> {
    match plain_string(literal) {
        Some(name) => Some(Cow::Borrowed(name)),
        None => serde_json::from_str::<String>(literal).ok().map(Cow::Owned),
    }
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while bytes
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// The index just past the string literal that starts at `at` (on its opening quote); `None` also for a `\u`
/// escape `serde_json` refuses to read: half a surrogate pair.
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut at = at + 1;
    // Eight bytes at a time while neither a quote nor a backslash is among them: most of a body is strings.
    while let Some(word) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(word.try_into().ok()?);
        let found = bytes_equal_to(word, b'"') | bytes_equal_to(word, b'\\');
        if found != 0 {
            at += (found.trailing_zeros() / 8) as usize;
            break;
        }
        at += 8;
    }
    if bytes.get(at) == Some(&b'"') {
        return Some(at + 1);
    }
    escaped_string_end(bytes, at)
}

/// A mask with the high bit set in the lowest byte of `word` equal to `byte` (and perhaps in bytes above it, but
/// never below): the word-at-a-time search for a byte.
fn bytes_equal_to(word: u64, byte: u8) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_where_equal = word ^ (ONES * u64::from(byte));
    zero_where_equal.wrapping_sub(ONES) & !zero_where_equal & HIGH
}

/// The rest of [`string_end`] from `at`, inside the string, with `memchr` (escapes included).
fn escaped_string_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let found = at + memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        match bytes[found] {
            b'"' => return Some(found + 1),
            // An escape: the next byte is escaped (`\"`, `\\`, `\u`...), never the end.
            _ if bytes.get(found + 1) == Some(&b'u') => at = unicode_escape_end(bytes, found)?,
            _ => at = found + 2,
        }
    }
}

/// The index just past the `\uXXXX` escape at `at`, or past the pair of them that encodes one character beyond
/// the Basic Multilingual Plane; `None` for half a pair (a surrogate not in one), which `serde_json` refuses.
fn unicode_escape_end(bytes: &[u8], at: usize) -> Option<usize> {
    let unit = |at: usize| {
        let digits = std::str::from_utf8(bytes.get(at + 2..at + 6)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    match unit(at)? {
        0xD800..=0xDBFF if bytes.get(at + 6..at + 8) == Some(b"\\u") => (0xDC00..=0xDFFF)
            .contains(&unit(at + 6)?)
            .then_some(at + 12),
        0xD800..=0xDFFF => None,
        _ => Some(at + 6),
    }
}

/// How deep arrays and objects may nest in the value of a field: `serde_json` reads at most 127 levels into a
/// `Value`, one of them the object the field is in.
const MAX_FIELD_VALUE_DEPTH: usize = 126;

/// The index just past the value that starts at `at`, which may nest `max_depth` levels of arrays and objects;
/// `None` for one `serde_json` reads no `Value` from (see the module's documentation).
fn value_end_within(bytes: &[u8], at: usize, max_depth: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut at = at;
            loop {
                match bytes.get(at)? {
                    b'"' => {
                        at = string_end(bytes, at)?;
                        continue;
                    }
                    // Outside strings only a number has digits (and may start with `-`).
                    b'-' | b'0'..=b'9' => {
                        at = scalar_end(bytes, at)?;
                        continue;
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        if depth > max_depth {
                            return None;
                        }
                    }
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        _ => scalar_end(bytes, at),
    }
}

/// The index just past the number, `true`, `false` or `null` at `at`; `None` for a number beyond the range of
/// `f64`, which `serde_json` refuses to read.
fn scalar_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut end = at;
    while bytes
        .get(end)
        .is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
    {
        end += 1;
    }
    let literal = bytes.get(at..end).filter(|literal| !literal.is_empty())?;
    // Only a number with an exponent or more than 300 digits can leave the range (about 1.8e308); those
    // `serde_json` itself reads, since where it rounds to infinity differs from the standard library.
    let number = matches!(literal[0], b'-' | b'0'..=b'9');
    if number && (literal.len() > 300 || literal.iter().any(|b| matches!(b, b'e' | b'E'))) {
        serde_json::from_slice::<serde_json::Value>(literal).ok()?;
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Option<Vec<(String, String)>> {
        object_fields(text).map(|fields| {
            fields
                .into_iter()
                .map(|f| (f.name.into_owned(), text[f.value].to_owned()))
                .collect()
        })
    }

    #[test]
    fn finds_each_field_and_its_raw_value() {
        let text = r#" { "a" : 1 , "b\"c":{"x":["}",{"y":"\\"}]}, "d":"e\"f" ,"g":[ ], "h":-1.5e3,"i":null} "#;
        let found = fields(text).unwrap();
        let expected = [
            ("a", "1"),
            ("b\"c", r#"{"x":["}",{"y":"\\"}]}"#),
            ("d", r#""e\"f""#),
            ("g", "[ ]"),
            ("h", "-1.5e3"),
            ("i", "null"),
        ];
        assert_eq!(found.len(), expected.len());
        for ((name, value), (want_name, want_value)) in found.iter().zip(expected) {
            assert_eq!((name.as_str(), value.as_str()), (want_name, want_value));
        }
        assert_eq!(fields("{}").unwrap().len(), 0);
        for (name, _) in expected {
            assert_eq!(object_has_field(text, name), Some(true), "{name}");
        }
        assert_eq!(
            object_has_field(text, "x"),
            Some(false),
            "a field of a nested object"
        );
        assert_eq!(object_has_field(" { } ", "a"), Some(false));
        for (name, value) in expected {
            let found = object_field(text, name).unwrap().unwrap();
            assert_eq!(&text[found], value, "{name}");
        }
        assert_eq!(object_field(text, "x"), Some(None));
        assert_eq!(object_field(" { } ", "a"), Some(None));
        // A repeated name: the last value, as serde_json keeps it.
        let repeated = r#"{"a":1,"b":2,"a":[3]}"#;
        assert_eq!(
            &repeated[object_field(repeated, "a").unwrap().unwrap()],
            "[3]"
        );
    }

    #[test]
    fn other_values_and_broken_text_give_none() {
        for text in [
            "[1]",
            "\"s\"",
            "1",
            "",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1",
            "{\"a\":[1}",
            "{\"a\" 1}",
            "{\"a\":\"x}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":1]}",
        ] {
            assert!(object_fields(text).is_none(), "{text}");
            assert_eq!(object_has_field(text, "b"), None, "{text}");
            assert_eq!(object_field(text, "b"), None, "{text}");
        }
    }

    #[test]
    fn values_serde_json_reads_no_value_from_give_none() {
        let deep = |depth: usize| format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
        for text in [
            r#"{"a":1e400}"#,
            r#"{"a":[-1E+309]}"#,
            r#"{"a":{"b":1.7976931348623159e308}}"#,
            &format!(r#"{{"a":[{}]}}"#, "9".repeat(400)),
            r#"{"a":"\ud800"}"#,
            r#"{"a":["x\uDC00"]}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"a":"\ud800x"}"#,
            &deep(127),
        ] {
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text}"
            );
            assert!(object_fields(text).is_none(), "{text}");
            assert_eq!(object_has_field(text, "b"), None, "{text}");
        }
        for text in [
            r#"{"a":1e308,"b":-1e-400,"c":[1.5E3,true,false,null]}"#,
            &format!(r#"{{"a":[{}]}}"#, "9".repeat(300)),
            r#"{"a":"\ud83d\ude00 \u00e9 \u0041"}"#,
            &deep(126),
        ] {
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "{text}"
            );
            assert!(object_fields(text).is_some(), "{text}");
        }
    }

    #[test]
    fn string_ends_are_found_at_every_length_and_offset() {
        for length in 0..40 {
            for (pad, escape) in [(0, ""), (3, ""), (0, "\\\""), (5, "\\\\"), (9, "\\u00e9")] {
                let content = format!("{}{escape}{}", "x".repeat(pad), "y".repeat(length));
                let text = format!("{{\"k\":\"{content}\",\"z\":1}}");
                let found = fields(&text).unwrap();
                assert_eq!(found[0].1, format!("\"{content}\""), "{text}");
                assert_eq!(found[1].1, "1", "{text}");
            }
        }
        let word = u64::from_le_bytes(*b"ab\"cd\"ef");
        assert_eq!(bytes_equal_to(word, b'"').trailing_zeros() / 8, 2);
        assert_eq!(bytes_equal_to(word, b'q'), 0);
        // A byte of 0x80 or more next to a match does not move it.
        let word = u64::from_le_bytes([0xff, 0x22, 0x80, 0x00, b'a', b'b', b'c', b'd']);
        assert_eq!(bytes_equal_to(word, b'"').trailing_zeros() / 8, 1);
        assert_eq!(bytes_equal_to(word, 0).trailing_zeros() / 8, 3);
    }

    #[test]
    fn a_repeated_name_keeps_its_last_value() {
        let mut fields = [("b", 1), ("a", 2), ("b", 3), ("c", 4), ("b", 5), ("a", 6)];
        let kept = sort_keeping_last(&mut fields);
        assert_eq!(fields[..kept], [("a", 6), ("b", 5), ("c", 4)]);
        let mut three = [("x", 1), ("w", 0), ("x", 2), ("x", 3)];
        let kept = sort_keeping_last(&mut three);
        assert_eq!(three[..kept], [("w", 0), ("x", 3)]);
        let mut once = [("z", 1), ("y", 2)];
        assert_eq!(sort_keeping_last(&mut once), 2);
        assert_eq!(once, [("y", 2), ("z", 1)]);
        let mut none: [(&str, u8); 0] = [];
        assert_eq!(sort_keeping_last(&mut none), 0);
        assert!(none.is_empty());
    }

    #[test]
    fn plain_strings_are_those_without_escapes() {
        assert_eq!(plain_string(r#""web""#), Some("web"));
        assert_eq!(plain_string(r#""w\"b""#), None);
        assert_eq!(plain_string("7"), None);
    }
}
