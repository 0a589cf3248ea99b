//! Field-level differences between two versions of an object (docs/behaviour/diffs-and-redaction.md#diff-algorithm).
//!
//! [`diff`] compares two JSON documents structurally and returns one [`DiffEntry`] per leaf that differs:
//!
//! - `null` equals `null`; `null` against anything else is one entry;
//! - strings, booleans and numbers are compared by value;
//! - two objects: the sorted union of their keys; a key only in the old side gives `(old, None)`, only in the new
//!   side `(None, new)`, in both a recursive comparison;
//! - two arrays: index by index up to the longer length, the missing side is `None` (no move detection: a reordered
//!   array gives one entry per index that changed);
//! - any other pair of types (an object against an array, a string against a number...) is one entry holding both.
//!
//! Paths are rendered as in the original: the root is `""`, an object field is appended as `.field` (without the
//! dot at the root) when the name has only ASCII letters, digits and underscores, else as `["field"]` with the name
//! written as a JSON string (so `"` and `\` are escaped); an array index is `[i]`.
//!
//! ```
//! use kelemetry_core::diff::diff;
//! use serde_json::json;
//!
//! let old = json!({"spec": {"replicas": 2}, "metadata": {"labels": {"app.kubernetes.io/name": "a"}}});
//! let new = json!({"spec": {"replicas": 4}, "metadata": {"labels": {"app.kubernetes.io/name": "b"}}});
//! let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
//! assert_eq!(lines, [r#"metadata.labels["app.kubernetes.io/name"] "a" -> "b""#, "spec.replicas 2 -> 4"]);
//! ```

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

/// One difference between two documents: where, and the value on each side (`None` when the side lacks it). The
/// values are borrowed from the documents compared: a diff costs no copy of what changed.
#[derive(Clone, Debug, PartialEq)]
pub struct DiffEntry<'a> {
    /// The rendered path of the field, e.g. `spec.template.spec.containers[0].image`.
    pub path: String,
    /// The old value, `None` when the old document did not have the field.
    pub old: Option<&'a Value>,
    /// The new value, `None` when the new document does not have the field.
    pub new: Option<&'a Value>,
}

impl fmt::Display for DiffEntry<'_> {
    /// `<path> <old JSON or null> -> <new JSON or null>`, e.g. `spec.replicas 2 -> 4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            self.path,
            self.old.unwrap_or(&Value::Null),
            self.new.unwrap_or(&Value::Null)
        )
    }
}

/// Fields left out of [`audit_diff`]: they change on every write and would drown the interesting lines.
pub const AUDIT_EXCLUDED_FIELDS: &[&[&str]] = &[
    &["metadata", "managedFields"],
    &["metadata", "resourceVersion"],
];

/// Every difference between `old` and `new`, in path order (see the module documentation for the rules).
pub fn diff<'a>(old: &'a Value, new: &'a Value) -> Vec<DiffEntry<'a>> {
    diff_excluding(old, new, &[])
}

/// The differences shown on an audit activity: [`diff`] without the subtrees named in
/// [`AUDIT_EXCLUDED_FIELDS`] (`metadata.managedFields` and `metadata.resourceVersion`), which never appear.
/// `metadata.generation` and `status` are kept.
pub fn audit_diff<'a>(old: &'a Value, new: &'a Value) -> Vec<DiffEntry<'a>> {
    diff_excluding(old, new, AUDIT_EXCLUDED_FIELDS)
}

/// [`diff`] without the given subtrees. Each excluded field is a list of object field names from the root
/// (array elements cannot be named).
pub fn diff_excluding<'a>(
    old: &'a Value,
    new: &'a Value,
    excluded: &[&[&str]],
) -> Vec<DiffEntry<'a>> {
    let mut walk = Walk {
        excluded,
        out: Vec::new(),
    };
    let mut path = String::new();
    // Field names are tracked only when something can be excluded.
    let mut fields = (!excluded.is_empty()).then(Vec::new);
    walk.value(old, new, &mut path, &mut fields);
    walk.out
}

/// Appends the rendering of object field `name` to `path`.
pub fn push_field(path: &mut String, name: &str) {
    let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(name);
    } else {
        path.push('[');
        // Serialising a string to JSON cannot fail; fall back to a plain quote just in case.
        match serde_json::to_string(name) {
            Ok(quoted) => path.push_str(&quoted),
            Err(_) => {
                path.push('"');
                path.push_str(name);
                path.push('"');
            }
        }
        path.push(']');
    }
}

struct Walk<'e, 'v> {
    excluded: &'e [&'e [&'e str]],
    out: Vec<DiffEntry<'v>>,
}

impl<'e, 'v> Walk<'e, 'v> {
    /// Compares two values at `path`. `fields` is the list of object field names from the root while the path has
    /// gone only through objects (so exclusions can match), `None` once it went through an array.
    fn value(
        &mut self,
        old: &'v Value,
        new: &'v Value,
        path: &mut String,
        fields: &mut Option<Vec<&'v str>>,
    ) {
        match (old, new) {
            // Most of an updated object is unchanged: an equality check is much cheaper than a walk that renders
            // paths, so equal subtrees are skipped before descending.
            (Value::Object(a), Value::Object(b)) if a == b => {}
            (Value::Array(a), Value::Array(b)) if a == b => {}
            (Value::Object(old), Value::Object(new)) => self.objects(old, new, path, fields),
            (Value::Array(old), Value::Array(new)) => self.arrays(old, new, path),
            (Value::Null, Value::Null) => {}
            (Value::Bool(a), Value::Bool(b)) if a == b => {}
            (Value::String(a), Value::String(b)) if a == b => {}
            (Value::Number(a), Value::Number(b)) if a == b => {}
            _ => self.push(path, Some(old), Some(new)),
        }
    }

    fn objects(
        &mut self,
        old: &'v Map<String, Value>,
        new: &'v Map<String, Value>,
        path: &mut String,
        fields: &mut Option<Vec<&'v str>>,
    ) {
        let keys: BTreeSet<&'v str> = old.keys().chain(new.keys()).map(String::as_str).collect();
        let base = path.len();
        for key in keys {
            if let Some(list) = fields.as_mut() {
                list.push(key);
                let skip = self.excluded.contains(&list.as_slice());
                if skip {
                    list.pop();
                    continue;
                }
            }
            push_field(path, key);
            match (old.get(key), new.get(key)) {
                (Some(a), Some(b)) => self.value(a, b, path, fields),
                (a, b) => self.push(path, a, b),
            }
            path.truncate(base);
            if let Some(list) = fields.as_mut() {
                list.pop();
            }
        }
    }

    fn arrays(&mut self, old: &'v [Value], new: &'v [Value], path: &mut String) {
        let base = path.len();
        for index in 0..old.len().max(new.len()) {
            use fmt::Write as _;
            let _ = write!(path, "[{index}]");
            match (old.get(index), new.get(index)) {
                // Exclusions name object fields only, so nothing below an array is excluded.
                (Some(a), Some(b)) => self.value(a, b, path, &mut None),
                (a, b) => self.push(path, a, b),
            }
            path.truncate(base);
        }
    }

    fn push(&mut self, path: &str, old: Option<&'v Value>, new: Option<&'v Value>) {
        self.out.push(DiffEntry {
            path: path.to_owned(),
            old,
            new,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(old: Value, new: Value) -> Vec<String> {
        diff(&old, &new).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn equal_documents_have_no_differences() {
        let doc = json!({"a": [1, {"b": null}], "c": "x", "d": true, "e": 1.5});
        assert!(diff(&doc, &doc.clone()).is_empty());
        assert!(diff(&Value::Null, &Value::Null).is_empty());
    }

    #[test]
    fn changed_scalar_at_root_has_empty_path() {
        assert_eq!(lines(json!(1), json!(2)), [" 1 -> 2"]);
        assert_eq!(diff(&json!("a"), &json!("b"))[0].path, "");
    }

    #[test]
    fn nested_objects_give_dotted_paths_sorted_by_key() {
        let old =
            json!({"spec": {"replicas": 2, "paused": false}, "status": {"observedGeneration": 1}});
        let new =
            json!({"spec": {"replicas": 4, "paused": false}, "status": {"observedGeneration": 2}});
        assert_eq!(
            lines(old, new),
            ["spec.replicas 2 -> 4", "status.observedGeneration 1 -> 2"]
        );
    }

    #[test]
    fn keys_on_one_side_only_render_the_other_side_as_null() {
        let old = json!({"gone": {"deep": 1}, "kept": 0});
        let new = json!({"kept": 0, "added": [1, 2]});
        let entries = diff(&old, &new);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0],
            DiffEntry {
                path: "added".into(),
                old: None,
                new: Some(&json!([1, 2]))
            }
        );
        assert_eq!(entries[1].to_string(), r#"gone {"deep":1} -> null"#);
    }

    #[test]
    fn arrays_compare_by_index_and_pad_the_shorter_side() {
        let old = json!({"items": ["a", "b"]});
        let new = json!({"items": ["a", "c", "d"]});
        assert_eq!(
            lines(old.clone(), new.clone()),
            [r#"items[1] "b" -> "c""#, r#"items[2] null -> "d""#]
        );
        assert_eq!(
            lines(new, old),
            [r#"items[1] "c" -> "b""#, r#"items[2] "d" -> null"#]
        );
    }

    #[test]
    fn reordering_an_array_is_reported_per_index() {
        assert_eq!(
            lines(json!([1, 2]), json!([2, 1])),
            ["[0] 1 -> 2", "[1] 2 -> 1"]
        );
    }

    #[test]
    fn objects_inside_arrays_recurse() {
        let old = json!({"containers": [{"name": "web", "image": "nginx:1"}]});
        let new = json!({"containers": [{"name": "web", "image": "nginx:2"}]});
        assert_eq!(
            lines(old, new),
            [r#"containers[0].image "nginx:1" -> "nginx:2""#]
        );
    }

    #[test]
    fn type_mismatch_is_one_entry_with_both_values() {
        assert_eq!(
            lines(json!({"a": {"x": 1}}), json!({"a": [1]})),
            [r#"a {"x":1} -> [1]"#]
        );
        assert_eq!(lines(json!({"a": "1"}), json!({"a": 1})), [r#"a "1" -> 1"#]);
        assert_eq!(lines(json!({"a": 1}), json!({"a": 1.0})), ["a 1 -> 1.0"]);
    }

    #[test]
    fn null_against_a_value_is_a_difference_but_null_against_null_is_not() {
        assert_eq!(lines(json!({"a": null}), json!({"a": 3})), ["a null -> 3"]);
        let (old, new) = (json!({"a": null}), json!({"a": 3}));
        let entries = diff(&old, &new);
        // The old side had the field, holding null: that is not the same as not having it.
        assert_eq!(entries[0].old, Some(&Value::Null));
        assert!(diff(&json!({"a": null}), &json!({"a": null})).is_empty());
    }

    #[test]
    fn unusual_field_names_are_bracketed_and_escaped() {
        let old = json!({"metadata": {"labels": {"app.kubernetes.io/name": "a", "say \"hi\"": 1, "": 0, "back\\slash": 0, "snake_case9": 0}}});
        let new = json!({"metadata": {"labels": {"app.kubernetes.io/name": "b", "say \"hi\"": 2, "": 1, "back\\slash": 1, "snake_case9": 1}}});
        assert_eq!(
            lines(old, new),
            [
                r#"metadata.labels[""] 0 -> 1"#,
                r#"metadata.labels["app.kubernetes.io/name"] "a" -> "b""#,
                r#"metadata.labels["back\\slash"] 0 -> 1"#,
                r#"metadata.labels["say \"hi\""] 1 -> 2"#,
                "metadata.labels.snake_case9 0 -> 1",
            ]
        );
    }

    #[test]
    fn bracketed_field_at_root_has_no_leading_dot() {
        assert_eq!(
            lines(json!({"a-b": 1}), json!({"a-b": 2})),
            [r#"["a-b"] 1 -> 2"#]
        );
    }

    #[test]
    fn audit_view_never_shows_managed_fields_or_resource_version() {
        let old = json!({"metadata": {"resourceVersion": "1", "generation": 1, "managedFields": [{"manager": "a"}]}});
        let new = json!({"metadata": {"resourceVersion": "2", "generation": 2, "managedFields": [{"manager": "b"}]}});
        let all = lines(old.clone(), new.clone());
        assert_eq!(all.len(), 3);
        let shown: Vec<String> = audit_diff(&old, &new)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["metadata.generation 1 -> 2"]);
        // Added or removed wholesale, they are still hidden.
        let added = json!({"metadata": {"resourceVersion": "3", "managedFields": []}});
        assert!(audit_diff(&json!({"metadata": {}}), &added).is_empty());
        assert!(audit_diff(&added, &json!({"metadata": {}})).is_empty());
    }

    #[test]
    fn exclusions_match_only_from_the_root() {
        let old = json!({"spec": {"metadata": {"resourceVersion": "1"}}});
        let new = json!({"spec": {"metadata": {"resourceVersion": "2"}}});
        assert_eq!(audit_diff(&old, &new).len(), 1);
        let old = json!({"items": [{"metadata": {"resourceVersion": "1"}}]});
        let new = json!({"items": [{"metadata": {"resourceVersion": "2"}}]});
        assert_eq!(
            audit_diff(&old, &new)[0].path,
            "items[0].metadata.resourceVersion"
        );
    }
}
