//! Reading an object's body: where a linker gets it ([`body_of`]) and the metadata it reads most ([`label_of`],
//! [`annotation_of`]).

use kelemetry_core::body::metadata_value;
use serde_json::Value;

/// The body of `object`, from itself or from `lookup` (see [`kelemetry_core::link::body_of`]).
///
/// The pipeline hands a linker the body whenever it has one (it asked its lookup already), so inside a pipeline
/// the lookup here mostly hears about bodies nobody has; put a slow lookup behind a
/// [`CachingLookup`](crate::CachingLookup), which remembers absences too.
pub use kelemetry_core::link::body_of;

/// The value of label `key` in `body.metadata.labels`, if it is a string.
pub fn label_of<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    metadata_value(body, "labels")?.get(key)?.as_str()
}

/// The value of annotation `key` in `body.metadata.annotations`, if it is a string.
pub fn annotation_of<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    metadata_value(body, "annotations")?.get(key)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_lookups() {
        let body = json!({"metadata": {"labels": {"a": "1", "n": 2}, "annotations": {"x": "y"}}});
        assert_eq!(label_of(&body, "a"), Some("1"));
        assert_eq!(label_of(&body, "n"), None);
        assert_eq!(label_of(&body, "missing"), None);
        assert_eq!(annotation_of(&body, "x"), Some("y"));
        assert_eq!(annotation_of(&json!({}), "x"), None);
    }
}
