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
//! [`keyed_diff`] (and [`audit_diff_of`], what activities show) matches the elements of lists by their keys
//! instead of their index (docs/behaviour/diffs-and-redaction.md#lists-matched-by-key): the keys a
//! [`ListKeys`] table names for the list (conditions by `type`, containers by `name` ...), else the **general
//! rule**: a list whose elements are all objects with a string `name` field, unique on each side, is keyed by
//! `name`; else, the same with `type`; else the list is compared by index. An element is then written
//! `list[key]`; a reordering alone is no difference; an element on one side only is one entry holding it whole.
//!
//! Paths are rendered as in the original: the root is `""`, an object field is appended as `.field` (without the
//! dot at the root) when the name has only ASCII letters, digits and underscores, else as `["field"]` with the name
//! written as a JSON string (so `"` and `\` are escaped); an array index is `[i]`; a keyed element `[value]`
//! (see [`keyed_diff`]).
//!
//! ```
//! use kelemetry_core::diff::{audit_diff_of, diff};
//! use serde_json::json;
//!
//! let old = json!({"spec": {"replicas": 2}, "metadata": {"labels": {"app.kubernetes.io/name": "a"}}});
//! let new = json!({"spec": {"replicas": 4}, "metadata": {"labels": {"app.kubernetes.io/name": "b"}}});
//! let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
//! assert_eq!(lines, [r#"metadata.labels["app.kubernetes.io/name"] "a" -> "b""#, "spec.replicas 2 -> 4"]);
//!
//! let old = json!({"status": {"conditions": [
//!     {"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]}});
//! let new = json!({"status": {"conditions": [
//!     {"type": "Progressing", "status": "True"}, {"type": "Available", "status": "True"}]}});
//! let lines: Vec<String> = audit_diff_of("apps", "deployments", &old, &new).iter().map(ToString::to_string).collect();
//! assert_eq!(lines, [r#"status.conditions[Available].status "False" -> "True""#]);
//! ```

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::OnceLock;

use serde::de::DeserializeSeed as _;
use serde_json::{Map, Value};

use crate::body::{Body, ObjectFields};
use crate::json_scan;

use crate::list_keys::{ListKeys, ListMatching, ResourceListKeys};

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

/// Every difference between `old` and `new`, in path order, lists compared by index (see the module
/// documentation for the rules).
pub fn diff<'a>(old: &'a Value, new: &'a Value) -> Vec<DiffEntry<'a>> {
    diff_excluding(old, new, &[])
}

/// The differences shown on an audit activity of an object whose resource is not known: lists keyed by the
/// general rule only (see [`keyed_diff`]), without the subtrees named in [`AUDIT_EXCLUDED_FIELDS`]
/// (`metadata.managedFields` and `metadata.resourceVersion`), which never appear. `metadata.generation` and
/// `status` are kept. Prefer [`audit_diff_of`], which also knows the lists Kubernetes keys.
pub fn audit_diff<'a>(old: &'a Value, new: &'a Value) -> Vec<DiffEntry<'a>> {
    keyed_diff(
        old,
        new,
        ResourceListKeys::GENERAL_RULE_ONLY,
        AUDIT_EXCLUDED_FIELDS,
    )
}

/// The differences shown on an audit activity of an object of `group`/`resource`: [`keyed_diff`] with the
/// built-in table ([`ListKeys::builtin`]), without [`AUDIT_EXCLUDED_FIELDS`].
pub fn audit_diff_of<'a>(
    group: &str,
    resource: &str,
    old: &'a Value,
    new: &'a Value,
) -> Vec<DiffEntry<'a>> {
    audit_diff_with(ListKeys::builtin(), group, resource, old, new)
}

/// [`audit_diff_of`] with a table of your own (e.g. the built-in one extended with the keys of custom
/// resources).
pub fn audit_diff_with<'a>(
    keys: &ListKeys,
    group: &str,
    resource: &str,
    old: &'a Value,
    new: &'a Value,
) -> Vec<DiffEntry<'a>> {
    keyed_diff(
        old,
        new,
        keys.for_resource(group, resource),
        AUDIT_EXCLUDED_FIELDS,
    )
}

/// [`diff`] without the given subtrees. Each excluded field is a list of object field names from the root
/// (array elements cannot be named).
pub fn diff_excluding<'a>(
    old: &'a Value,
    new: &'a Value,
    excluded: &[&[&str]],
) -> Vec<DiffEntry<'a>> {
    keyed_diff(old, new, ResourceListKeys::BY_INDEX, excluded)
}

/// The differences between `old` and `new` with the elements of lists matched as `lists` says, without the
/// subtrees `excluded` (as [`diff_excluding`]).
///
/// For each list (two arrays at the same path), in this order:
///
/// 1. the table's key fields for its list path (the path with every list element written `[*]`, e.g.
///    `spec.template.spec.containers[*].ports`), when it has a rule; a rule without fields means "by index";
/// 2. else, when `lists` applies the general rule: `name` when every element on both sides is an object whose
///    `name` is a string, unique on its side; else `type` under the same conditions;
/// 3. else by index, as [`diff`].
///
/// With keys, when two elements on one side have the same key value, the whole list is compared by index. An
/// element has a key value when it is an object holding every key field with a string, number or boolean; one
/// without (on either side) is compared with the element at its index on the other side when that one has none
/// either, and is otherwise added or removed whole at `[index]`.
///
/// Entries come in the old list's order (changed and removed elements), then the added elements in the new
/// list's order. A keyed element is written `[value]`, or `[k1=v1,k2=v2]` with several key fields. A string
/// value is written as is when it is not empty, not `true`, `false`, `null` or a number, and has none of
/// `[ ] , = " \`, whitespace or control characters; else as a JSON string (spaces as `\u0020`). A number or
/// boolean is written as JSON, and with a single key field as `field=value` (`[port=80]`), so that it never reads
/// as an index.
pub fn keyed_diff<'a>(
    old: &'a Value,
    new: &'a Value,
    lists: ResourceListKeys<'_>,
    excluded: &[&[&str]],
) -> Vec<DiffEntry<'a>> {
    walk_diff(old, new, lists, excluded, map_keys_sorted())
}

/// [`keyed_diff`], walking objects' fields side by side when `sorted_maps` (maps iterate in key order), else by
/// their union of keys.
fn walk_diff<'a>(
    old: &'a Value,
    new: &'a Value,
    lists: ResourceListKeys<'_>,
    excluded: &[&[&str]],
    sorted_maps: bool,
) -> Vec<DiffEntry<'a>> {
    let mut walk = Walk {
        excluded,
        lists,
        track_lists: lists.has_rules(),
        sorted_maps,
        out: Vec::new(),
    };
    let mut path = String::new();
    let mut list_path = String::new();
    // Field names are tracked only when something can be excluded.
    let mut fields = (!excluded.is_empty()).then(Vec::new);
    walk.value(old, new, &mut path, &mut list_path, &mut fields);
    walk.out
}

/// The bytes a diff's path buffers start with: a path such as
/// `spec.template.spec.containers[name="app"].resources.limits.memory` fits.
const PATH_CAPACITY: usize = 96;

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
        push_json_string(path, name);
        path.push(']');
    }
}

/// Appends `text` as a JSON string.
fn push_json_string(out: &mut String, text: &str) {
    // Most names need no escape (`app.kubernetes.io/name`): quoted as they are, without a string of their own.
    if !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push('"');
        out.push_str(text);
        out.push('"');
        return;
    }
    // Serialising a string to JSON cannot fail; fall back to a plain quote just in case.
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => {
            out.push('"');
            out.push_str(text);
            out.push('"');
        }
    }
}

/// The key value of a list element under `keys`, rendered as in its path (without the brackets); `None` when
/// the element is not an object or lacks a key field or holds something else than a scalar there.
fn element_key(element: &Value, keys: &[String]) -> Option<String> {
    let object = element.as_object()?;
    let mut out = String::new();
    if let [key] = keys {
        let value = object.get(key)?;
        if !value.is_string() {
            out.push_str(key);
            out.push('=');
        }
        push_key_value(&mut out, value)?;
        return Some(out);
    }
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        push_key_value(&mut out, object.get(key)?)?;
    }
    Some(out)
}

/// Appends a scalar key value; `None` for null, objects and arrays.
fn push_key_value(out: &mut String, value: &Value) -> Option<()> {
    match value {
        Value::String(text) => {
            let plain = !text.is_empty()
                && !matches!(text.as_str(), "true" | "false" | "null")
                && text.parse::<f64>().is_err()
                && !text.chars().any(|c| {
                    matches!(c, '[' | ']' | ',' | '=' | '"' | '\\')
                        || c.is_whitespace()
                        || c.is_control()
                });
            if plain {
                out.push_str(text);
            } else {
                let start = out.len();
                push_json_string(out, text);
                // Diff lines are `path old -> new`: a path holds no space.
                if out[start..].contains(' ') {
                    let escaped = out[start..].replace(' ', "\\u0020");
                    out.truncate(start);
                    out.push_str(&escaped);
                }
            }
        }
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Null | Value::Object(_) | Value::Array(_) => return None,
    }
    Some(())
}

/// Where each key value is in a list.
fn positions(keys: &[Option<String>]) -> HashMap<&str, usize> {
    keys.iter()
        .enumerate()
        .filter_map(|(i, key)| Some((key.as_deref()?, i)))
        .collect()
}

/// The key values of each element, `None` when two elements have the same one.
fn element_keys(list: &[Value], keys: &[String]) -> Option<Vec<Option<String>>> {
    let out: Vec<Option<String>> = list.iter().map(|e| element_key(e, keys)).collect();
    let mut seen = HashSet::with_capacity(out.len());
    out.iter()
        .flatten()
        .all(|key| seen.insert(key.as_str()))
        .then_some(out)
}

/// The fields the general rule tries, in order.
const GENERAL_RULE_FIELDS: [&str; 2] = ["name", "type"];

/// The key values of the old and the new list's elements.
type KeyedSides = (Vec<Option<String>>, Vec<Option<String>>);

/// The key values of both lists under the general rule, `None` when it does not apply.
fn general_rule_keys(old: &[Value], new: &[Value]) -> Option<KeyedSides> {
    GENERAL_RULE_FIELDS.iter().find_map(|field| {
        let all_named = old
            .iter()
            .chain(new)
            .all(|e| e.get(field).is_some_and(Value::is_string));
        if !all_named {
            return None;
        }
        let keys = [(*field).to_owned()];
        Some((element_keys(old, &keys)?, element_keys(new, &keys)?))
    })
}

/// Whether `serde_json::Map` iterates in key order, as it does unless serde_json's `preserve_order` feature is on
/// (which any crate of a program can turn on); checked once.
fn map_keys_sorted() -> bool {
    static SORTED: OnceLock<bool> = OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut map = Map::new();
        map.insert("b".to_owned(), Value::Null);
        map.insert("a".to_owned(), Value::Null);
        map.keys().next().is_some_and(|first| first == "a")
    })
}

struct Walk<'e, 'k, 'v> {
    excluded: &'e [&'e [&'e str]],
    lists: ResourceListKeys<'k>,
    /// Whether list paths are tracked (only when the table has rules to look them up in).
    track_lists: bool,
    /// Whether `Map`s iterate in key order ([`map_keys_sorted`]), so two can be walked side by side.
    sorted_maps: bool,
    out: Vec<DiffEntry<'v>>,
}

impl<'v> Walk<'_, '_, 'v> {
    /// Compares two values at `path`. `list_path` is `path` with list elements as `[*]` (tracked only when
    /// `track_lists`). `fields` is the list of object field names from the root while the path has gone only
    /// through objects (so exclusions can match), `None` once it went through an array.
    fn value(
        &mut self,
        old: &'v Value,
        new: &'v Value,
        path: &mut String,
        list_path: &mut String,
        fields: &mut Option<Vec<&'v str>>,
    ) {
        match (old, new) {
            // Most of an updated object is unchanged: an equality check is much cheaper than a walk that renders
            // paths, so equal subtrees are skipped before descending.
            (Value::Object(a), Value::Object(b)) if a == b => {}
            (Value::Array(a), Value::Array(b)) if a == b => {}
            (Value::Object(old), Value::Object(new)) => {
                self.objects(old, new, path, list_path, fields)
            }
            (Value::Array(old), Value::Array(new)) => self.arrays(old, new, path, list_path),
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
        list_path: &mut String,
        fields: &mut Option<Vec<&'v str>>,
    ) {
        if !self.sorted_maps {
            let keys: BTreeSet<&'v str> =
                old.keys().chain(new.keys()).map(String::as_str).collect();
            for key in keys {
                self.field(key, old.get(key), new.get(key), path, list_path, fields);
            }
            return;
        }
        // Both maps iterate in key order: walk them side by side, without collecting or looking up keys.
        let mut old_entries = old.iter().peekable();
        let mut new_entries = new.iter().peekable();
        loop {
            let order = match (old_entries.peek(), new_entries.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((a, _)), Some((b, _))) => a.as_str().cmp(b.as_str()),
            };
            let (key, a, b) = match order {
                Ordering::Less => {
                    let Some((key, a)) = old_entries.next() else {
                        break;
                    };
                    (key, Some(a), None)
                }
                Ordering::Greater => {
                    let Some((key, b)) = new_entries.next() else {
                        break;
                    };
                    (key, None, Some(b))
                }
                Ordering::Equal => {
                    let (Some((key, a)), Some((_, b))) = (old_entries.next(), new_entries.next())
                    else {
                        break;
                    };
                    (key, Some(a), Some(b))
                }
            };
            self.field(key, a, b, path, list_path, fields);
        }
    }

    /// Compares field `key` of two objects, either side possibly absent.
    fn field(
        &mut self,
        key: &'v str,
        old: Option<&'v Value>,
        new: Option<&'v Value>,
        path: &mut String,
        list_path: &mut String,
        fields: &mut Option<Vec<&'v str>>,
    ) {
        if let Some(list) = fields.as_mut() {
            list.push(key);
            let skip = self.excluded.contains(&list.as_slice());
            if skip {
                list.pop();
                return;
            }
        }
        let base = path.len();
        let list_base = list_path.len();
        push_field(path, key);
        if self.track_lists {
            push_field(list_path, key);
        }
        match (old, new) {
            (Some(a), Some(b)) => self.value(a, b, path, list_path, fields),
            (a, b) => self.push(path, a, b),
        }
        path.truncate(base);
        list_path.truncate(list_base);
        if let Some(list) = fields.as_mut() {
            list.pop();
        }
    }

    fn arrays(
        &mut self,
        old: &'v [Value],
        new: &'v [Value],
        path: &mut String,
        list_path: &mut String,
    ) {
        // Without rules the list path is not tracked (it stays empty) and no lookup finds a rule.
        let keyed = match self.lists.matching(list_path) {
            ListMatching::Keys(keys) => element_keys(old, keys).zip(element_keys(new, keys)),
            ListMatching::GeneralRule => general_rule_keys(old, new),
            ListMatching::Index => None,
        };
        let list_base = list_path.len();
        if self.track_lists {
            list_path.push_str("[*]");
        }
        match keyed {
            Some((old_keys, new_keys)) => {
                self.keyed_elements(old, new, &old_keys, &new_keys, path, list_path);
            }
            None => self.indexed_elements(old, new, path, list_path),
        }
        list_path.truncate(list_base);
    }

    fn indexed_elements(
        &mut self,
        old: &'v [Value],
        new: &'v [Value],
        path: &mut String,
        list_path: &mut String,
    ) {
        for index in 0..old.len().max(new.len()) {
            self.element(index, old.get(index), new.get(index), path, list_path);
        }
    }

    /// Matches elements by key (see [`keyed_diff`]); `old_keys` and `new_keys` are unique per side.
    fn keyed_elements(
        &mut self,
        old: &'v [Value],
        new: &'v [Value],
        old_keys: &[Option<String>],
        new_keys: &[Option<String>],
        path: &mut String,
        list_path: &mut String,
    ) {
        let (old_at, new_at) = (positions(old_keys), positions(new_keys));
        let unkeyed =
            |keys: &[Option<String>], index: usize| keys.get(index).is_some_and(Option::is_none);
        for (index, element) in old.iter().enumerate() {
            match &old_keys[index] {
                Some(key) => {
                    let other = new_at.get(key.as_str()).map(|&j| &new[j]);
                    self.keyed_element(key, Some(element), other, path, list_path);
                }
                None => {
                    let other = new.get(index).filter(|_| unkeyed(new_keys, index));
                    self.element(index, Some(element), other, path, list_path);
                }
            }
        }
        for (index, element) in new.iter().enumerate() {
            match &new_keys[index] {
                Some(key) if !old_at.contains_key(key.as_str()) => {
                    self.keyed_element(key, None, Some(element), path, list_path);
                }
                Some(_) => {}
                None if !unkeyed(old_keys, index) => {
                    self.element(index, None, Some(element), path, list_path);
                }
                None => {}
            }
        }
    }

    fn keyed_element(
        &mut self,
        key: &str,
        old: Option<&'v Value>,
        new: Option<&'v Value>,
        path: &mut String,
        list_path: &mut String,
    ) {
        let base = path.len();
        path.push('[');
        path.push_str(key);
        path.push(']');
        self.pair(old, new, path, list_path);
        path.truncate(base);
    }

    fn element(
        &mut self,
        index: usize,
        old: Option<&'v Value>,
        new: Option<&'v Value>,
        path: &mut String,
        list_path: &mut String,
    ) {
        use fmt::Write as _;
        let base = path.len();
        let _ = write!(path, "[{index}]");
        self.pair(old, new, path, list_path);
        path.truncate(base);
    }

    fn pair(
        &mut self,
        old: Option<&'v Value>,
        new: Option<&'v Value>,
        path: &mut String,
        list_path: &mut String,
    ) {
        match (old, new) {
            // Exclusions name object fields only, so nothing below an array is excluded.
            (Some(a), Some(b)) => self.value(a, b, path, list_path, &mut None),
            (a, b) => self.push(path, a, b),
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

/// [`audit_diff_with`] of two bodies, rendered: one line per entry (as [`DiffEntry`] displays it), joined by
/// `\n`; empty when nothing differs.
///
/// When both bodies have their JSON text ([`Body::text`]), the text is compared field by field and only what
/// differs is parsed: an object is read as its field names and the raw text of each value, a field whose text is
/// the same on both sides is skipped (the same text is the same value), one that differs is compared again one
/// level down, and where a side is not an object the two values are parsed and compared as [`keyed_diff`] does.
/// A body whose text changed in few places (a status update) is so diffed without building either tree. Bodies
/// without text are compared as values. Either way the lines are those of [`audit_diff_with`] on the values.
///
/// ```
/// use kelemetry_core::body::Body;
/// use kelemetry_core::diff::audit_diff_bodies;
/// use kelemetry_core::ListKeys;
///
/// let old = Body::from_text(r#"{"metadata":{"name":"web","resourceVersion":"1"},"spec":{"replicas":2,"x":[1]}}"#).unwrap();
/// let new = Body::from_text(r#"{"metadata":{"name":"web","resourceVersion":"2"},"spec":{"replicas":3,"x":[1]}}"#).unwrap();
/// assert_eq!(audit_diff_bodies(ListKeys::builtin(), "apps", "deployments", &old, &new), "spec.replicas 2 -> 3");
/// assert!(!old.is_parsed() && !new.is_parsed());
/// ```
pub fn audit_diff_bodies(
    keys: &ListKeys,
    group: &str,
    resource: &str,
    old: &Body,
    new: &Body,
) -> String {
    let lists = keys.for_resource(group, resource);
    if old.text().is_some() && new.text().is_some() {
        let mut walk = TextWalk {
            excluded: AUDIT_EXCLUDED_FIELDS,
            lists,
            track_lists: lists.has_rules(),
            sorted_maps: map_keys_sorted(),
            out: String::new(),
            metadata_fields: None,
        };
        // Texts of bodies were checked when the bodies were made; should one not read, the values decide.
        if walk.root(old, new).is_ok() {
            return walk.out;
        }
    }
    let mut out = String::new();
    for entry in keyed_diff(old, new, lists, AUDIT_EXCLUDED_FIELDS) {
        push_line(&mut out, &entry);
    }
    out
}

/// Appends `entry` to `out` as a line of [`audit_diff_bodies`].
fn push_line(out: &mut String, entry: &DiffEntry<'_>) {
    use fmt::Write as _;
    if !out.is_empty() {
        out.push('\n');
    }
    let _ = write!(out, "{entry}");
}

/// The fields of the object `text`, sorted by name, a name that repeats holding its last value (as in a parsed
/// `Map`); `None` when `text` is another value.
fn sorted_fields(text: &str) -> Option<json_scan::SortedFields<'_>> {
    let scanned = json_scan::object_fields(text)?;
    let mut fields = json_scan::SortedFields::with_capacity(scanned.len());
    for field in scanned {
        fields.push((field.name, text.get(field.value)?));
    }
    let kept = json_scan::sort_keeping_last(&mut fields);
    fields.truncate(kept);
    Some(fields)
}

/// Whether `raw` (valid JSON) is written the way `serde_json` would write its value back: `true`, `false`,
/// `null`, a string without escapes, or a non-negative integer of at most 18 digits.
fn is_plain_scalar(raw: &str) -> bool {
    matches!(raw, "true" | "false" | "null")
        || (raw.starts_with('"') && !raw.contains('\\'))
        || (!raw.is_empty()
            && raw.len() <= 18
            && raw.bytes().all(|b| b.is_ascii_digit())
            && (raw.len() == 1 || !raw.starts_with('0')))
}

/// Appends a line of [`audit_diff_bodies`] for two values written as they are (see [`is_plain_scalar`]).
fn push_raw_line(out: &mut String, path: &str, old: Option<&str>, new: Option<&str>) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(path);
    out.push(' ');
    out.push_str(old.unwrap_or("null"));
    out.push_str(" -> ");
    out.push_str(new.unwrap_or("null"));
}

/// The walk of [`audit_diff_bodies`] over two texts; where a side is not an object it hands over to [`Walk`].
struct TextWalk<'e, 'k, 't> {
    excluded: &'e [&'e [&'e str]],
    lists: ResourceListKeys<'k>,
    track_lists: bool,
    sorted_maps: bool,
    out: String,
    /// The fields of both bodies' `metadata`, as the bodies found them, for when the walk gets there.
    metadata_fields: Option<SidesFields<'t>>,
}

/// The sorted fields of the old and the new object (see [`sorted_fields`]).
type SidesFields<'t> = (json_scan::SortedFields<'t>, json_scan::SortedFields<'t>);

impl<'t> TextWalk<'_, '_, 't> {
    fn root(&mut self, old: &'t Body, new: &'t Body) -> serde_json::Result<()> {
        let (Some(old_text), Some(new_text)) = (old.text(), new.text()) else {
            return Err(serde::de::Error::custom("a body without text"));
        };
        // Room for most paths at once, rather than growing from nothing on every diff.
        let mut path = String::with_capacity(PATH_CAPACITY);
        let mut list_path = String::with_capacity(if self.track_lists { PATH_CAPACITY } else { 0 });
        let mut fields = (!self.excluded.is_empty()).then(Vec::new);
        self.metadata_fields = old
            .sorted_metadata_fields()
            .zip(new.sorted_metadata_fields());
        let known = old.sorted_top_fields().zip(new.sorted_top_fields());
        self.value(
            old_text,
            new_text,
            known,
            &mut path,
            &mut list_path,
            &mut fields,
        )
    }

    /// Compares two raw values at `path` (the arguments as in [`Walk::value`], field names owned), with the
    /// sorted fields of both when `known`.
    fn value(
        &mut self,
        old: &'t str,
        new: &'t str,
        known: Option<SidesFields<'t>>,
        path: &mut String,
        list_path: &mut String,
        fields: &mut Option<Vec<Cow<'t, str>>>,
    ) -> serde_json::Result<()> {
        if old == new {
            return Ok(());
        }
        if is_plain_scalar(old) && is_plain_scalar(new) {
            push_raw_line(&mut self.out, path, Some(old), Some(new));
            return Ok(());
        }
        let sides = known.or_else(|| sorted_fields(old).zip(sorted_fields(new)));
        let Some((old_fields, new_fields)) = sides else {
            let old: Value = serde_json::from_str(old)?;
            let new: Value = serde_json::from_str(new)?;
            let mut walk = Walk {
                excluded: self.excluded,
                lists: self.lists,
                track_lists: self.track_lists,
                sorted_maps: self.sorted_maps,
                out: Vec::new(),
            };
            // Not two objects, so no field below is named from the root: nothing can be excluded.
            walk.value(&old, &new, path, list_path, &mut None);
            for entry in &walk.out {
                push_line(&mut self.out, entry);
            }
            return Ok(());
        };
        let mut old_entries = old_fields.iter().peekable();
        let mut new_entries = new_fields.iter().peekable();
        loop {
            let order = match (old_entries.peek(), new_entries.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((a, _)), Some((b, _))) => a.cmp(b),
            };
            let (name, a, b) = match order {
                Ordering::Less => match old_entries.next() {
                    Some((name, a)) => (name, Some(*a), None),
                    None => break,
                },
                Ordering::Greater => match new_entries.next() {
                    Some((name, b)) => (name, None, Some(*b)),
                    None => break,
                },
                Ordering::Equal => match (old_entries.next(), new_entries.next()) {
                    (Some((name, a)), Some((_, b))) => (name, Some(*a), Some(*b)),
                    _ => break,
                },
            };
            // Cheap: a name borrowed from the text is a pointer; only names with escapes are owned.
            self.field(name.clone(), a, b, path, list_path, fields)?;
        }
        Ok(())
    }

    /// Compares field `name` of two objects, either side possibly absent.
    fn field(
        &mut self,
        name: Cow<'t, str>,
        old: Option<&'t str>,
        new: Option<&'t str>,
        path: &mut String,
        list_path: &mut String,
        fields: &mut Option<Vec<Cow<'t, str>>>,
    ) -> serde_json::Result<()> {
        // Most fields of two versions are the same text: nothing to do, not even the path.
        if let (Some(a), Some(b)) = (old, new)
            && a == b
        {
            return Ok(());
        }
        // The names from the root are kept only as deep as an excluded path goes.
        let mut below_excluded = None;
        let fields = match fields {
            Some(list)
                if !self
                    .excluded
                    .iter()
                    .any(|excluded| excluded.len() > list.len()) =>
            {
                &mut below_excluded
            }
            fields => fields,
        };
        if let Some(list) = fields.as_mut() {
            list.push(name.clone());
            let excluded = self.excluded.iter().any(|excluded| {
                excluded.len() == list.len()
                    && excluded.iter().zip(list.iter()).all(|(a, b)| a == b)
            });
            if excluded {
                list.pop();
                return Ok(());
            }
        }
        let base = path.len();
        let list_base = list_path.len();
        push_field(path, &name);
        if self.track_lists {
            push_field(list_path, &name);
        }
        let result = match (old, new) {
            (Some(a), Some(b)) => {
                let known = if fields.as_deref().is_some_and(|f| f == ["metadata"]) {
                    self.metadata_fields.take()
                } else {
                    None
                };
                self.value(a, b, known, path, list_path, fields)
            }
            (a, b) if a.is_none_or(is_plain_scalar) && b.is_none_or(is_plain_scalar) => {
                push_raw_line(&mut self.out, path, a, b);
                Ok(())
            }
            (a, b) => {
                // A whole `metadata` is shown as its parsed value would be: without `managedFields`.
                let top_metadata = fields.as_deref().is_some_and(|f| f == ["metadata"]);
                let parse = |raw: Option<&str>| -> serde_json::Result<Option<Value>> {
                    raw.map(|raw| {
                        if top_metadata {
                            let mut deserializer = serde_json::Deserializer::from_str(raw);
                            ObjectFields { metadata: true }.deserialize(&mut deserializer)
                        } else {
                            serde_json::from_str(raw)
                        }
                    })
                    .transpose()
                };
                let (a, b) = (parse(a)?, parse(b)?);
                push_line(
                    &mut self.out,
                    &DiffEntry {
                        path: path.clone(),
                        old: a.as_ref(),
                        new: b.as_ref(),
                    },
                );
                Ok(())
            }
        };
        path.truncate(base);
        list_path.truncate(list_base);
        if let Some(list) = fields.as_mut() {
            list.pop();
        }
        result
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

    fn keyed(group: &str, resource: &str, old: Value, new: Value) -> Vec<String> {
        audit_diff_of(group, resource, &old, &new)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn condition(kind: &str, status: &str, reason: &str) -> Value {
        json!({"type": kind, "status": status, "reason": reason, "lastTransitionTime": "2024-01-01T00:00:00Z"})
    }

    #[test]
    fn conditions_are_matched_by_type_whatever_their_order() {
        let old = json!({"status": {"conditions": [
            condition("Available", "False", "MinimumReplicasUnavailable"),
            condition("Progressing", "True", "NewReplicaSetAvailable"),
        ]}});
        let new = json!({"status": {"conditions": [
            condition("Progressing", "True", "NewReplicaSetAvailable"),
            condition("Available", "True", "MinimumReplicasAvailable"),
        ]}});
        assert_eq!(
            keyed("apps", "deployments", old.clone(), new.clone()),
            [
                r#"status.conditions[Available].reason "MinimumReplicasUnavailable" -> "MinimumReplicasAvailable""#,
                r#"status.conditions[Available].status "False" -> "True""#,
            ]
        );
        // By index, the same change reads as every field that differs between the two conditions.
        assert_eq!(lines(old, new).len(), 5);
    }

    #[test]
    fn added_and_removed_elements_are_one_line_each() {
        let ready = condition("Ready", "True", "r");
        let scheduled = condition("PodScheduled", "True", "s");
        let old = json!({"status": {"conditions": [scheduled.clone()]}});
        let new = json!({"status": {"conditions": [ready.clone(), scheduled]}});
        assert_eq!(
            keyed("", "pods", old.clone(), new.clone()),
            [format!("status.conditions[Ready] null -> {ready}")]
        );
        assert_eq!(
            keyed("", "pods", new, old),
            [format!("status.conditions[Ready] {ready} -> null")]
        );
    }

    #[test]
    fn nested_lists_are_keyed_at_every_level_with_several_key_fields() {
        let old = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "image": "s:1"},
            {"name": "web", "image": "w:1",
             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
             "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}],
             "volumeMounts": [{"mountPath": "/data", "name": "data"}]},
        ]}}}});
        let new = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "w:2",
             "env": [{"name": "B", "value": "3"}, {"name": "A", "value": "1"}],
             "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"}, {"containerPort": 80, "protocol": "TCP"}],
             "volumeMounts": [{"mountPath": "/data", "name": "data2"}]},
            {"name": "sidecar", "image": "s:1"},
        ]}}}});
        assert_eq!(
            keyed("apps", "deployments", old, new),
            [
                r#"spec.template.spec.containers[web].env[B].value "2" -> "3""#,
                r#"spec.template.spec.containers[web].image "w:1" -> "w:2""#,
                r#"spec.template.spec.containers[web].ports[containerPort=53,protocol=UDP].name null -> "dns""#,
                r#"spec.template.spec.containers[web].volumeMounts[/data].name "data" -> "data2""#,
            ]
        );
    }

    #[test]
    fn the_table_is_per_resource_and_the_general_rule_covers_the_rest() {
        // `volumeMounts` are keyed by `mountPath` only where the table says so: in an unknown resource the general
        // rule keys them by `name`.
        let old = json!({"spec": {"mounts": [{"mountPath": "/a", "name": "x"}, {"mountPath": "/b", "name": "y"}]}});
        let new = json!({"spec": {"mounts": [{"mountPath": "/b", "name": "y"}, {"mountPath": "/c", "name": "x"}]}});
        assert_eq!(
            keyed("example.io", "widgets", old, new),
            [r#"spec.mounts[x].mountPath "/a" -> "/c""#]
        );
        // Owner references are keyed by uid in every resource.
        let owner = |uid: &str, controller: bool| json!({"apiVersion": "v1", "kind": "Thing", "name": "same", "uid": uid, "controller": controller});
        let old =
            json!({"metadata": {"ownerReferences": [owner("u1", false), owner("u2", false)]}});
        let new = json!({"metadata": {"ownerReferences": [owner("u2", false), owner("u1", true)]}});
        assert_eq!(
            keyed("example.io", "widgets", old, new),
            ["metadata.ownerReferences[u1].controller false -> true"]
        );
    }

    #[test]
    fn general_rule_prefers_name_then_type_and_needs_unique_strings() {
        let by_type = json!([{"type": "A", "v": 1}, {"type": "B", "v": 1}]);
        let reordered = json!([{"type": "B", "v": 1}, {"type": "A", "v": 2}]);
        let general = |old: &Value, new: &Value| -> Vec<String> {
            audit_diff(old, new)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(general(&by_type, &reordered), ["[A].v 1 -> 2"]);
        let named = json!([{"name": "x", "type": "A"}, {"name": "y", "type": "A"}]);
        let renamed = json!([{"name": "y", "type": "A"}, {"name": "x", "type": "B"}]);
        assert_eq!(general(&named, &renamed), [r#"[x].type "A" -> "B""#]);
        // A duplicate name and a duplicate type: by index.
        let twins = json!([{"name": "x", "type": "A"}, {"name": "x", "type": "A", "v": 1}]);
        let swapped = json!([{"name": "x", "type": "A", "v": 1}, {"name": "x", "type": "A"}]);
        assert_eq!(
            general(&twins, &swapped),
            ["[0].v null -> 1", "[1].v 1 -> null"]
        );
        // A numeric name, or an element without one: not the general rule.
        let numeric = json!([{"name": 1, "v": 1}, {"name": 2, "v": 1}]);
        let numeric_swapped = json!([{"name": 2, "v": 1}, {"name": 1, "v": 1}]);
        assert_eq!(general(&numeric, &numeric_swapped).len(), 2);
        let partly = json!([{"name": "x"}, {"v": 1}]);
        let partly_swapped = json!([{"v": 1}, {"name": "x"}]);
        assert_eq!(general(&partly, &partly_swapped).len(), 4);
        // Scalars are never keyed, and the plain diff never keys anything.
        assert_eq!(general(&json!(["a", "b"]), &json!(["b", "a"])).len(), 2);
        assert_eq!(lines(by_type, reordered).len(), 3);
    }

    #[test]
    fn elements_without_a_key_value_fall_back_to_their_index() {
        let old = json!({"status": {"conditions": [{"status": "True"}, condition("Ready", "False", "r")]}});
        let new = json!({"status": {"conditions": [
            {"status": "False"}, condition("Ready", "True", "r"), {"type": null, "status": "x"}]}});
        assert_eq!(
            keyed("", "pods", old.clone(), new),
            [
                r#"status.conditions[0].status "True" -> "False""#,
                r#"status.conditions[Ready].status "False" -> "True""#,
                r#"status.conditions[2] null -> {"status":"x","type":null}"#,
            ]
        );
        // An unkeyed element facing a keyed one at its index is removed, the other added.
        let new = json!({"status": {"conditions": [condition("Ready", "False", "r"), {"status": "True"}]}});
        assert_eq!(
            keyed("", "pods", old, new),
            [
                r#"status.conditions[0] {"status":"True"} -> null"#,
                r#"status.conditions[1] null -> {"status":"True"}"#,
            ]
        );
    }

    #[test]
    fn duplicate_key_values_compare_the_list_by_index() {
        let env = |a: &str, b: &str| json!({"spec": {"containers": [{"name": "c", "env": [{"name": "X", "value": a}, {"name": "X", "value": b}]}]}});
        assert_eq!(
            keyed("", "pods", env("1", "2"), env("2", "1")),
            [
                r#"spec.containers[c].env[0].value "1" -> "2""#,
                r#"spec.containers[c].env[1].value "2" -> "1""#,
            ]
        );
    }

    #[test]
    fn key_values_that_could_be_misread_are_quoted_or_named() {
        let mut keys = ListKeys::new();
        keys.insert("g", "r", "items", &["id"]).unwrap_or_default();
        let render = |id: Value| -> String {
            let old = json!({"items": []});
            let new = json!({"items": [{"id": id}]});
            let entries = audit_diff_with(&keys, "g", "r", &old, &new);
            entries.first().map(|e| e.path.clone()).unwrap_or_default()
        };
        assert_eq!(
            render(json!("plain-Value_1.2/x")),
            "items[plain-Value_1.2/x]"
        );
        assert_eq!(render(json!(80)), "items[id=80]");
        assert_eq!(render(json!(true)), "items[id=true]");
        assert_eq!(render(json!("80")), r#"items["80"]"#);
        assert_eq!(render(json!("1e3")), r#"items["1e3"]"#);
        assert_eq!(render(json!("true")), r#"items["true"]"#);
        assert_eq!(render(json!("")), r#"items[""]"#);
        assert_eq!(render(json!("a b")), r#"items["a\u0020b"]"#);
        assert_eq!(render(json!("a]b")), r#"items["a]b"]"#);
        assert_eq!(render(json!("a=b,c")), r#"items["a=b,c"]"#);
        assert_eq!(render(json!("say \"hi\"")), r#"items["say\u0020\"hi\""]"#);
        assert_eq!(render(json!(null)), "items[0]", "null is no key value");
        assert_eq!(render(json!({"x": 1})), "items[0]", "nor is an object");
        // A key value and an index never collide: an element keyed 0 is not the element at index 0.
        let old = json!({"items": [{"id": "0", "v": 1}]});
        let new = json!({"items": [{"id": 0, "v": 1}]});
        let paths: Vec<String> = audit_diff_with(&keys, "g", "r", &old, &new)
            .iter()
            .map(|e| e.path.clone())
            .collect();
        assert_eq!(paths, [r#"items["0"]"#, "items[id=0]"]);
    }

    #[test]
    fn a_rule_without_keys_keeps_a_list_by_index() {
        let mut keys = ListKeys::new();
        keys.insert("g", "r", "spec.steps", &[]).unwrap_or_default();
        let old = json!({"spec": {"steps": [{"name": "a"}, {"name": "b"}]}});
        let new = json!({"spec": {"steps": [{"name": "b"}, {"name": "a"}]}});
        assert_eq!(audit_diff_with(&keys, "g", "r", &old, &new).len(), 2);
        assert!(audit_diff_of("g", "r", &old, &new).is_empty());
    }

    #[test]
    fn exclusions_still_apply_with_keyed_lists() {
        let old = json!({"metadata": {"resourceVersion": "1", "managedFields": [{"manager": "a"}]},
            "status": {"conditions": [condition("A", "True", "x")]}});
        let new = json!({"metadata": {"resourceVersion": "2", "managedFields": [{"manager": "b"}]},
            "status": {"conditions": [condition("A", "False", "x")]}});
        assert_eq!(
            keyed("apps", "deployments", old, new),
            [r#"status.conditions[A].status "True" -> "False""#]
        );
    }

    mod walking_maps {
        use super::*;
        use proptest::prelude::*;

        /// JSON values whose objects share field names often, so that both sides have common and own fields.
        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                (0..4i64).prop_map(Value::from),
                "[ab]{0,2}".prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 48, 5, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    proptest::collection::btree_map("[a-e]|metadata|managedFields", inner, 0..5)
                        .prop_map(|map| Value::Object(map.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn side_by_side_and_by_key_set_find_the_same_entries(old in json(), new in json()) {
                let keys = ListKeys::builtin();
                let lists = keys.for_resource("apps", "deployments");
                let excluded = AUDIT_EXCLUDED_FIELDS;
                let by_key_set: Vec<String> =
                    walk_diff(&old, &new, lists, excluded, false).iter().map(ToString::to_string).collect();
                let side_by_side: Vec<String> =
                    walk_diff(&old, &new, lists, excluded, true).iter().map(ToString::to_string).collect();
                prop_assert_eq!(by_key_set, side_by_side);
            }
        }
    }

    mod text_walk {
        use super::*;
        use crate::body::parse_object_body;
        use proptest::prelude::*;

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                (0..4i64).prop_map(Value::from),
                Just(json!(1.5)),
                "[ab\"\\\\é]{0,2}".prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 48, 5, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    proptest::collection::btree_map(
                        "[a-e]|name|type|metadata|managedFields|resourceVersion|a\\.b",
                        inner,
                        0..5
                    )
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
                ]
            })
        }

        /// Object bodies: a few fields, `metadata` an object when present.
        fn body() -> impl Strategy<Value = Value> {
            (
                proptest::collection::btree_map("[a-e]|spec|status", json(), 0..4),
                proptest::option::of(proptest::collection::btree_map(
                    "[a-c]|name|managedFields|resourceVersion|labels",
                    json(),
                    0..4,
                )),
            )
                .prop_map(|(fields, metadata)| {
                    let mut map: Map<String, Value> = fields.into_iter().collect();
                    if let Some(metadata) = metadata {
                        map.insert(
                            "metadata".to_owned(),
                            Value::Object(metadata.into_iter().collect()),
                        );
                    }
                    Value::Object(map)
                })
        }

        /// `value` as JSON with every object's fields in reverse order and spaces around: other text, same value.
        fn reversed(value: &Value) -> String {
            match value {
                Value::Object(map) => {
                    let fields: Vec<String> = map
                        .iter()
                        .rev()
                        .map(|(k, v)| format!("{} : {}", Value::from(k.as_str()), reversed(v)))
                        .collect();
                    format!("{{ {} }}", fields.join(" , "))
                }
                Value::Array(items) => {
                    let items: Vec<String> = items.iter().map(reversed).collect();
                    format!("[ {} ]", items.join(", "))
                }
                other => other.to_string(),
            }
        }

        fn by_values(old: &Value, new: &Value) -> String {
            let old = parse_object_body(&old.to_string()).unwrap();
            let new = parse_object_body(&new.to_string()).unwrap();
            audit_diff_with(ListKeys::builtin(), "apps", "deployments", &old, &new)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        }

        fn by_text(old: &str, new: &str) -> String {
            let old = Body::from_text(old).unwrap();
            let new = Body::from_text(new).unwrap();
            audit_diff_bodies(ListKeys::builtin(), "apps", "deployments", &old, &new)
        }

        proptest! {
            #[test]
            fn the_text_walk_finds_what_the_value_walk_finds(old in body(), new in body()) {
                let expected = by_values(&old, &new);
                prop_assert_eq!(&by_text(&old.to_string(), &new.to_string()), &expected);
                prop_assert_eq!(&by_text(&old.to_string(), &reversed(&new)), &expected);
                prop_assert_eq!(&by_text(&reversed(&old), &old.to_string()), "");
            }

            #[test]
            fn one_changed_field_in_equal_bodies(old in body(), field in "[a-e]|spec|status", value in json()) {
                let mut new = old.clone();
                if let Some(map) = new.as_object_mut() {
                    map.insert(field, value);
                }
                prop_assert_eq!(by_text(&old.to_string(), &new.to_string()), by_values(&old, &new));
            }
        }

        #[test]
        fn numbers_and_strings_written_otherwise_diff_as_their_values() {
            let cases = [
                (
                    r#"{"a":1.0,"b":1e3,"c":-0,"d":"x\u0041","e":12345678901234567890}"#,
                    r#"{"a":1,"b":1000.0,"c":0,"d":"xA","e":12345678901234567891}"#,
                ),
                (
                    r#"{"a":[1,2],"b":"\/","c":{"x":1}}"#,
                    r#"{"a":[1,3],"b":"/","c":{"x":1.5}}"#,
                ),
                (r#"{"a":true}"#, r#"{"b":null}"#),
            ];
            for (old, new) in cases {
                let values = |text: &str| -> Value { serde_json::from_str(text).unwrap() };
                assert_eq!(
                    by_text(old, new),
                    by_values(&values(old), &values(new)),
                    "{old} {new}"
                );
            }
        }

        #[test]
        fn recorded_versions_diff_the_same_by_text_and_by_value() {
            let text = std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../fixtures/recorded/deployment-lifecycle/audit.log"
            ))
            .unwrap();
            let mut latest: HashMap<String, String> = HashMap::new();
            let (mut pairs, mut with_lines) = (0, 0);
            for line in text.lines() {
                let event: Value = serde_json::from_str(line).unwrap();
                let Some(body) = event.get("responseObject").filter(|b| {
                    b.get("metadata").is_some_and(Value::is_object)
                        && b.get("kind") != Some(&json!("Status"))
                }) else {
                    continue;
                };
                let resource = event["objectRef"]["resource"].as_str().unwrap_or_default();
                let name = body["metadata"]["name"].as_str().unwrap_or_default();
                let namespace = body["metadata"]["namespace"].as_str().unwrap_or_default();
                let object = format!("{resource}/{namespace}/{name}");
                let body_text = body.to_string();
                if let Some(previous) = latest.insert(object, body_text.clone()) {
                    let old = Body::from_text(previous.as_str()).unwrap();
                    let new = Body::from_text(body_text.as_str()).unwrap();
                    let by_text = audit_diff_bodies(ListKeys::builtin(), "", resource, &old, &new);
                    let expected: Vec<String> = audit_diff_with(
                        ListKeys::builtin(),
                        "",
                        resource,
                        old.value(),
                        new.value(),
                    )
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                    assert_eq!(by_text, expected.join("\n"));
                    pairs += 1;
                    with_lines += usize::from(!by_text.is_empty());
                }
            }
            assert!(
                pairs > 30 && with_lines > 20,
                "{pairs} pairs, {with_lines} with lines"
            );
        }
    }

    mod reordering {
        use super::*;
        use proptest::prelude::*;

        /// A Deployment-like body whose keyed lists hold the given elements, in the given orders.
        fn body(conditions: &[Value], containers: &[Value], volumes: &[Value]) -> Value {
            json!({"metadata": {"name": "d", "ownerReferences": []},
                "spec": {"template": {"spec": {"containers": containers, "volumes": volumes}}},
                "status": {"conditions": conditions}})
        }

        fn condition_list() -> impl Strategy<Value = Vec<Value>> {
            proptest::sample::subsequence(vec!["Available", "Progressing", "ReplicaFailure", "Custom"], 0..=4)
                .prop_flat_map(|types| {
                    let n = types.len();
                    (Just(types), proptest::collection::vec(("True|False|Unknown", "[a-zA-Z]{0,8}"), n))
                })
                .prop_map(|(types, fields)| {
                    types.into_iter().zip(fields)
                        .map(|(kind, (status, reason))| json!({"type": kind, "status": status, "reason": reason}))
                        .collect()
                })
        }

        fn container() -> impl Strategy<Value = (String, Value)> {
            (
                "[a-z]{1,6}",
                "[a-z]{1,5}:[0-9]",
                proptest::collection::btree_map("[A-Z]{1,4}", "[a-z0-9]{0,4}", 0..4),
                proptest::collection::btree_set((1u16..200, prop_oneof!["TCP", "UDP"]), 0..4),
            )
                .prop_map(|(name, image, env, ports)| {
                    let env: Vec<Value> = env
                        .into_iter()
                        .map(|(k, v)| json!({"name": k, "value": v}))
                        .collect();
                    let ports: Vec<Value> = ports
                        .into_iter()
                        .map(
                            |(port, protocol)| json!({"containerPort": port, "protocol": protocol}),
                        )
                        .collect();
                    (
                        name.clone(),
                        json!({"name": name, "image": image, "env": env, "ports": ports}),
                    )
                })
        }

        fn containers() -> impl Strategy<Value = Vec<Value>> {
            proptest::collection::btree_map("[a-z]{1,6}", container(), 0..4).prop_map(|named| {
                named
                    .into_iter()
                    .map(|(name, (_, mut c))| {
                        c["name"] = json!(name);
                        c
                    })
                    .collect()
            })
        }

        /// Shuffles every keyed list of a container.
        fn shuffled_container(container: Value) -> impl Strategy<Value = Value> {
            let env = container["env"].as_array().cloned().unwrap_or_default();
            let ports = container["ports"].as_array().cloned().unwrap_or_default();
            (Just(env).prop_shuffle(), Just(ports).prop_shuffle()).prop_map(move |(env, ports)| {
                let mut c = container.clone();
                c["env"] = json!(env);
                c["ports"] = json!(ports);
                c
            })
        }

        fn original_and_reordered() -> impl Strategy<Value = (Value, Value, Vec<Value>, Vec<Value>)>
        {
            (
                condition_list(),
                containers(),
                proptest::collection::btree_set("[a-z]{1,4}", 0..4),
            )
                .prop_flat_map(|(conditions, containers, volumes)| {
                    let volumes: Vec<Value> = volumes
                        .into_iter()
                        .map(|name| json!({"name": name, "emptyDir": {}}))
                        .collect();
                    let original = body(&conditions, &containers, &volumes);
                    let inner: Vec<_> =
                        containers.iter().cloned().map(shuffled_container).collect();
                    (
                        Just(original),
                        Just(conditions).prop_shuffle(),
                        inner.prop_shuffle(),
                        Just(volumes).prop_shuffle(),
                        Just(containers),
                    )
                })
                .prop_map(|(original, conditions, containers, volumes, before)| {
                    let reordered = body(&conditions, &containers, &volumes);
                    (original, reordered, before, containers)
                })
        }

        proptest! {
            #[test]
            fn a_pure_reordering_is_no_change((old, new, _, _) in original_and_reordered()) {
                prop_assert!(audit_diff_of("apps", "deployments", &old, &new).is_empty());
                prop_assert!(audit_diff_of("apps", "deployments", &new, &old).is_empty());
            }

            #[test]
            fn one_change_in_a_reordered_body_is_one_keyed_line(
                (old, mut new, _, containers) in original_and_reordered(),
                pick in any::<prop::sample::Index>(),
            ) {
                prop_assume!(!containers.is_empty());
                let index = pick.index(containers.len());
                let name = containers[index]["name"].as_str().unwrap_or_default().to_owned();
                if let Some(list) = new.pointer_mut("/spec/template/spec/containers").and_then(Value::as_array_mut) {
                    for c in list.iter_mut().filter(|c| c["name"] == json!(name)) {
                        c["image"] = json!("changed:1");
                    }
                }
                let entries = audit_diff_of("apps", "deployments", &old, &new);
                prop_assert_eq!(entries.len(), 1);
                prop_assert_eq!(
                    &entries[0].path,
                    &format!("spec.template.spec.containers[{name}].image")
                );
            }
        }

        #[test]
        fn every_permutation_of_four_conditions_is_no_change() {
            let all: Vec<Value> = ["A", "B", "C", "D"]
                .iter()
                .map(|t| condition(t, "True", t))
                .collect();
            let old = body(&all, &[], &[]);
            let mut count = 0;
            for a in 0..4 {
                for b in 0..4 {
                    for c in 0..4 {
                        for d in 0..4 {
                            let order = [a, b, c, d];
                            if (0..4).all(|i| order.contains(&i)) {
                                let permuted: Vec<Value> =
                                    order.iter().map(|&i| all[i].clone()).collect();
                                let new = body(&permuted, &[], &[]);
                                assert!(
                                    audit_diff_of("apps", "deployments", &old, &new).is_empty(),
                                    "{order:?}"
                                );
                                count += 1;
                            }
                        }
                    }
                }
            }
            assert_eq!(count, 24);
        }
    }
}
