//! Finding the parts of JSON text that is already known to be valid (checked by `serde_json` when it was read),
//! without parsing it: where each field of an object is, where a value ends. Strings are skipped with `memchr`
//! (most of a Kubernetes body is strings), everything else by counting brackets. What the scan cannot make sense of
//! gives `None`, never a panic, so that text that was not checked after all is refused rather than misread.

use std::borrow::Cow;
use std::ops::Range;

/// One field of an object: its name (unescaped) and where its value is, as a range of the object's text.
#[derive(Debug)]
pub(crate) struct Field<'t> {
    pub(crate) name: Cow<'t, str>,
    pub(crate) value: Range<usize>,
}

/// The fields of `text` in their order, if it is a JSON object; `None` if it is another value (or not JSON).
pub(crate) fn object_fields(text: &str) -> Option<Vec<Field<'_>>> {
    let bytes = text.as_bytes();
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_whitespace(bytes, at + 1);
    let mut fields = Vec::new();
    if bytes.get(at) == Some(&b'}') {
        return Some(fields);
    }
    loop {
        let name_end = string_end(bytes, at)?;
        let name = field_name(text.get(at..name_end)?)?;
        at = skip_whitespace(bytes, name_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_whitespace(bytes, at + 1);
        let end = value_end(bytes, start)?;
        fields.push(Field {
            name,
            value: start..end,
        });
        at = skip_whitespace(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_whitespace(bytes, at + 1),
            Some(b'}') => return Some(fields),
            _ => return None,
        }
    }
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

/// The index just past the string literal that starts at `at` (on its opening quote).
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut at = at + 1;
    loop {
        let found = at + memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        match bytes[found] {
            b'"' => return Some(found + 1),
            // An escape: the next byte is escaped (`\"`, `\\`, `\u`...), never the end.
            _ => at = found + 2,
        }
    }
}

/// The index just past the value that starts at `at`.
pub(crate) fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
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
                    b'{' | b'[' => depth += 1,
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
        _ => {
            let mut end = at;
            while bytes
                .get(end)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                end += 1;
            }
            (end > at).then_some(end)
        }
    }
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
        }
    }

    #[test]
    fn plain_strings_are_those_without_escapes() {
        assert_eq!(plain_string(r#""web""#), Some("web"));
        assert_eq!(plain_string(r#""w\"b""#), None);
        assert_eq!(plain_string("7"), None);
    }
}
