//! Object bodies: reading the `metadata` fields every stage asks for, and parsing a body without the field
//! ownership nothing shows ([`parse_object_body`]).
//!
//! These walk the two levels with `get` rather than a JSON pointer: `Value::pointer` allocates two strings per
//! path segment (to unescape `~0` and `~1`), which showed in the pipeline's profile, as it runs several times
//! per activity.
//!
//! ```
//! use kelemetry_core::body::{metadata_str, resource_version};
//! use serde_json::json;
//!
//! let body = json!({"metadata": {"name": "web", "resourceVersion": ""}});
//! assert_eq!(metadata_str(&body, "name"), Some("web"));
//! assert_eq!(resource_version(&body), None);
//! ```

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// `body.metadata.<field>`, if present.
pub fn metadata_value<'a>(body: &'a Value, field: &str) -> Option<&'a Value> {
    body.get("metadata")?.get(field)
}

/// `body.metadata.<field>`, if it is a string.
pub fn metadata_str<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    metadata_value(body, field)?.as_str()
}

/// `body.metadata.resourceVersion`, if it is a non-empty string.
pub fn resource_version(body: &Value) -> Option<&str> {
    metadata_str(body, "resourceVersion").filter(|rv| !rv.is_empty())
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
struct ObjectFields {
    metadata: bool,
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
                (true, "managedFields") => {
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

    #[test]
    fn any_body_parses_as_serde_json_would_apart_from_managed_fields() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/recorded/deployment-lifecycle/audit.log"
        ))
        .unwrap();
        let mut bodies = 0;
        for line in text.lines() {
            let event: Value = serde_json::from_str(line).unwrap();
            let Some(body) = event
                .get("responseObject")
                .filter(|b| b.get("metadata").is_some())
            else {
                continue;
            };
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
