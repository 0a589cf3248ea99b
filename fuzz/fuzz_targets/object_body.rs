//! Object bodies kept as text (`Body::from_text`) and the diff of two of them on their text: the input is two
//! bodies separated by a `0xFF` byte (never part of UTF-8 text). Checks: text accepted as a body parses (as
//! `parse_object_body`, which is how the body parses when read whole); a body from text answers its metadata,
//! kind, labels and any one metadata field as the same body parsed does, its text without `metadata.managedFields` parses to its value,
//! and the text diff of two bodies gives the lines of the diff of
//! their parsed values.

#![no_main]

use kelemetry_core::ListKeys;
use kelemetry_core::body::{
    Body, BodyMetadata, metadata_field, metadata_str, metadata_value, parse_object_body,
};
use kelemetry_core::diff::{AUDIT_EXCLUDED_FIELDS, audit_diff_bodies, keyed_diff};
use libfuzzer_sys::fuzz_target;

fn body(bytes: &[u8]) -> Option<Body> {
    let text = std::str::from_utf8(bytes).ok()?;
    let body = Body::from_text(text).ok()?;
    if let Err(error) = parse_object_body(text) {
        panic!("a body accepted from text does not parse: {error}");
    }
    // One field of the metadata read alone, before anything parses the body or its metadata.
    let fresh = Body::from_text(text).ok()?;
    let parsed = Body::from_value(body.value().clone());
    for field in ["ownerReferences", "labels", "name", "managedFields"] {
        assert_eq!(
            metadata_field(&fresh, field).as_deref(),
            metadata_value(&parsed, field),
            "{field} alone"
        );
    }
    assert_eq!(body.kind(), parsed.kind(), "kind");
    assert_eq!(body.has_metadata(), parsed.has_metadata(), "has_metadata");
    for field in ["name", "namespace", "uid", "resourceVersion", "labels"] {
        assert_eq!(
            metadata_str(&body, field),
            metadata_str(&parsed, field),
            "{field}"
        );
        assert_eq!(
            metadata_value(&body, field),
            metadata_value(&parsed, field),
            "{field}"
        );
    }
    let labels = metadata_value(&parsed, "labels").and_then(|l| l.as_object());
    for label in labels.into_iter().flat_map(|l| l.keys()) {
        assert!(body.has_label(label), "label {label}");
    }
    assert!(!body.has_label("\u{0}not-a-label"));
    if let Some(cut) = body.text_without_managed_fields() {
        let value: serde_json::Value = serde_json::from_str(&cut).expect("the cut text parses");
        assert_eq!(&value, body.value(), "the text without managedFields");
    }
    Some(Body::from_text(text).ok()?)
}

fuzz_target!(|data: &[u8]| {
    let (old, new) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let (Some(old), Some(new)) = (body(old), body(new)) else {
        return;
    };
    let keys = ListKeys::builtin();
    let by_text = audit_diff_bodies(keys, "apps", "deployments", &old, &new);
    let lists = keys.for_resource("apps", "deployments");
    let by_value: Vec<String> = keyed_diff(old.value(), new.value(), lists, AUDIT_EXCLUDED_FIELDS)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(by_text, by_value.join("\n"));
});
