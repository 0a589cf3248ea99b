//! Reading the `metadata` of an object body, the fields every stage asks for.
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

use serde_json::Value;

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
