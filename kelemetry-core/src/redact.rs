//! Keeping secret values out of traces (docs/architecture.md#redaction-first).
//!
//! A [`Redactor`] rewrites object bodies before they are cached, diffed or written as snapshots:
//!
//! - by default, every value under `data` and `stringData` of a core `Secret` becomes `"<redacted>"` (the keys stay,
//!   so a diff still shows which key was added or removed), and so does the annotation
//!   `kubectl.kubernetes.io/last-applied-configuration`, which `kubectl apply` fills with the whole Secret;
//! - configured [`FieldRedaction`]s replace further fields, e.g. `data.*` of ConfigMaps or
//!   `spec.template.spec.containers.*.env` of Deployments;
//! - an object labelled [`REDACTED_LABEL`] is redacted whole: only `apiVersion`, `kind` and `metadata` (without
//!   `managedFields`) remain.
//!
//! ```
//! use kelemetry_core::{ObjectKey, redact::Redactor};
//! use serde_json::json;
//!
//! let redactor = Redactor::default();
//! let key = ObjectKey::new("c", "", "secrets", "default", "db");
//! let mut body = json!({"kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}});
//! assert!(redactor.applies_to(&key, &body));
//! assert!(redactor.redact(&key, &mut body));
//! assert_eq!(body["data"]["password"], "<redacted>");
//! ```

use serde_json::{Map, Value};

use crate::body::BodyMetadata;
use crate::key::ObjectKey;

/// What replaces a redacted value.
pub const REDACTED: &str = "<redacted>";

/// Objects carrying this label (any value) are redacted whole.
pub const REDACTED_LABEL: &str = "kelemetry.kubewharf.io/diff-redacted";

/// The annotation in which `kubectl apply` keeps the whole applied object, secret values included.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A configured rule: in objects of `group`/`resource`, replace the value at `path` by `"<redacted>"`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldRedaction {
    /// API group (`""` for core); `None` matches every group.
    #[serde(default)]
    pub group: Option<String>,
    /// Plural resource, or `*` for every resource.
    pub resource: String,
    /// Field path: segments separated by `.`; `*` matches any one segment (any field of an object, any element
    /// of an array); a segment holding dots is written `["..."]` as a JSON string, e.g.
    /// `metadata.annotations["example.com/token"]`.
    pub path: String,
}

/// Why a [`FieldRedaction`] cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedactionRuleError {
    /// The path is empty or has an empty segment.
    #[error(
        "redaction path {path:?} has an empty segment (paths look like `data.*` or `spec.containers.*.env`)"
    )]
    EmptySegment {
        /// The path as configured.
        path: String,
    },
    /// A bracketed segment is not a closed JSON string.
    #[error(
        "redaction path {path:?}: bracketed segment at byte {at} must be a JSON string like [\"a.b\"]"
    )]
    BadBracket {
        /// The path as configured.
        path: String,
        /// Byte offset of the `[`.
        at: usize,
    },
    /// The resource is empty.
    #[error("redaction rule for path {path:?} names no resource (use `*` for every resource)")]
    NoResource {
        /// The path as configured.
        path: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Any,
    Field(String),
}

#[derive(Clone, Debug)]
struct Rule {
    group: Option<String>,
    resource: Option<String>,
    path: Vec<Segment>,
}

impl Rule {
    fn matches(&self, key: &ObjectKey) -> bool {
        self.group.as_ref().is_none_or(|g| *g == key.group)
            && self.resource.as_ref().is_none_or(|r| *r == key.resource)
    }
}

/// Rewrites object bodies so that secret values never reach a trace. See the module documentation.
#[derive(Clone, Debug)]
pub struct Redactor {
    rules: Vec<Rule>,
}

impl Default for Redactor {
    /// The Secret rules only.
    fn default() -> Self {
        Self {
            rules: secret_rules(),
        }
    }
}

impl Redactor {
    /// The Secret rules plus `extra` rules.
    pub fn new(extra: &[FieldRedaction]) -> Result<Self, RedactionRuleError> {
        let mut rules = secret_rules();
        for rule in extra {
            rules.push(compile(rule)?);
        }
        Ok(Self { rules })
    }

    /// Whether [`Redactor::redact`] could change `body` of `key`: a rule names its group and resource, or the body
    /// carries [`REDACTED_LABEL`]. Cheap (no walk of the body), so callers can skip cloning shared bodies.
    pub fn applies_to<B: BodyMetadata + ?Sized>(&self, key: &ObjectKey, body: &B) -> bool {
        self.rules.iter().any(|r| r.matches(key)) || is_redacted_whole(body)
    }

    /// Redacts `body` of `key` in place; returns whether anything changed. Idempotent.
    pub fn redact(&self, key: &ObjectKey, body: &mut Value) -> bool {
        if is_redacted_whole(body) {
            return redact_whole(body);
        }
        let mut changed = false;
        for rule in self.rules.iter().filter(|r| r.matches(key)) {
            changed |= redact_path(body, &rule.path);
        }
        changed
    }
}

/// Whether `body` carries [`REDACTED_LABEL`], i.e. only its `apiVersion`, `kind` and `metadata` may be shown.
pub fn is_redacted_whole<B: BodyMetadata + ?Sized>(body: &B) -> bool {
    body.has_label(REDACTED_LABEL)
}

fn secret_rules() -> Vec<Rule> {
    let secret = |path: Vec<Segment>| Rule {
        group: Some(String::new()),
        resource: Some("secrets".to_owned()),
        path,
    };
    let field = |name: &str| Segment::Field(name.to_owned());
    vec![
        secret(vec![field("data"), Segment::Any]),
        secret(vec![field("stringData"), Segment::Any]),
        secret(vec![
            field("metadata"),
            field("annotations"),
            field(LAST_APPLIED_ANNOTATION),
        ]),
    ]
}

fn compile(rule: &FieldRedaction) -> Result<Rule, RedactionRuleError> {
    if rule.resource.is_empty() {
        return Err(RedactionRuleError::NoResource {
            path: rule.path.clone(),
        });
    }
    Ok(Rule {
        group: rule.group.clone(),
        resource: (rule.resource != "*").then(|| rule.resource.clone()),
        path: parse_path(&rule.path)?,
    })
}

fn parse_path(path: &str) -> Result<Vec<Segment>, RedactionRuleError> {
    let empty = || RedactionRuleError::EmptySegment {
        path: path.to_owned(),
    };
    let mut segments = Vec::new();
    let mut rest = path;
    let mut offset = 0;
    loop {
        if rest.starts_with('[') {
            let at = offset;
            let bad = || RedactionRuleError::BadBracket {
                path: path.to_owned(),
                at,
            };
            // A JSON string, then `]`.
            let mut stream = serde_json::Deserializer::from_str(&rest[1..]).into_iter::<String>();
            let name = match stream.next() {
                Some(Ok(name)) => name,
                _ => return Err(bad()),
            };
            let end = 1 + stream.byte_offset();
            if !rest[end..].starts_with(']') {
                return Err(bad());
            }
            segments.push(Segment::Field(name));
            rest = &rest[end + 1..];
            offset += end + 1;
            // After a bracket: end, `.` or another bracket.
            if rest.is_empty() {
                break;
            }
            if let Some(after) = rest.strip_prefix('.') {
                rest = after;
                offset += 1;
                if rest.is_empty() {
                    return Err(empty());
                }
            } else if !rest.starts_with('[') {
                return Err(bad());
            }
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let name = &rest[..end];
        if name.is_empty() {
            return Err(empty());
        }
        segments.push(if name == "*" {
            Segment::Any
        } else {
            Segment::Field(name.to_owned())
        });
        rest = &rest[end..];
        offset += end;
        if rest.is_empty() {
            break;
        }
        if let Some(after) = rest.strip_prefix('.') {
            rest = after;
            offset += 1;
            if rest.is_empty() {
                return Err(empty());
            }
        }
    }
    if segments.is_empty() {
        return Err(empty());
    }
    Ok(segments)
}

/// Replaces every value reached by `path` under `value`.
fn redact_path(value: &mut Value, path: &[Segment]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return replace(value);
    };
    match (first, value) {
        (Segment::Field(name), Value::Object(map)) => {
            map.get_mut(name).is_some_and(|v| redact_path(v, rest))
        }
        (Segment::Any, Value::Object(map)) => map
            .values_mut()
            .fold(false, |c, v| redact_path(v, rest) | c),
        (Segment::Any, Value::Array(items)) => items
            .iter_mut()
            .fold(false, |c, v| redact_path(v, rest) | c),
        (Segment::Field(name), Value::Array(items)) => name
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get_mut(i))
            .is_some_and(|v| redact_path(v, rest)),
        _ => false,
    }
}

fn replace(value: &mut Value) -> bool {
    if value.as_str() == Some(REDACTED) {
        return false;
    }
    *value = Value::String(REDACTED.to_owned());
    true
}

fn redact_whole(body: &mut Value) -> bool {
    let Value::Object(map) = body else {
        return false;
    };
    let before = map.len();
    map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
    let mut changed = map.len() != before;
    if let Some(Value::Object(metadata)) = map.get_mut("metadata") {
        changed |= metadata.remove("managedFields").is_some();
        if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
            changed |= redact_annotation(annotations);
        }
    }
    changed
}

fn redact_annotation(annotations: &mut Map<String, Value>) -> bool {
    annotations
        .get_mut(LAST_APPLIED_ANNOTATION)
        .is_some_and(replace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret_key() -> ObjectKey {
        ObjectKey::new("c", "", "secrets", "default", "db")
    }

    #[test]
    fn secret_values_are_replaced_and_keys_kept() {
        let mut body = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "annotations": {LAST_APPLIED_ANNOTATION: "{\"data\":{\"password\":\"c2VjcmV0\"}}"}},
            "data": {"password": "c2VjcmV0", "user": "YWRtaW4="},
            "stringData": {"token": "plain-token"},
            "type": "Opaque"
        });
        assert!(Redactor::default().redact(&secret_key(), &mut body));
        let text = body.to_string();
        for secret in ["c2VjcmV0", "YWRtaW4=", "plain-token"] {
            assert!(!text.contains(secret), "{secret} survived in {text}");
        }
        assert_eq!(
            body["data"],
            json!({"password": REDACTED, "user": REDACTED})
        );
        assert_eq!(body["stringData"]["token"], REDACTED);
        assert_eq!(body["type"], "Opaque");
        // A second pass has nothing left to do.
        assert!(!Redactor::default().redact(&secret_key(), &mut body));
    }

    #[test]
    fn secrets_of_other_groups_and_other_resources_are_untouched() {
        let redactor = Redactor::default();
        let body = json!({"data": {"k": "v"}});
        for key in [
            ObjectKey::new("c", "example.com", "secrets", "ns", "x"),
            ObjectKey::new("c", "", "configmaps", "ns", "x"),
        ] {
            assert!(!redactor.applies_to(&key, &body));
            let mut copy = body.clone();
            assert!(!redactor.redact(&key, &mut copy));
            assert_eq!(copy, body);
        }
    }

    #[test]
    fn configured_rules_match_one_segment_per_star() {
        let redactor = Redactor::new(&[
            FieldRedaction {
                group: Some(String::new()),
                resource: "configmaps".into(),
                path: "data.*".into(),
            },
            FieldRedaction {
                group: None,
                resource: "*".into(),
                path: "spec.template.spec.containers.*.env".into(),
            },
        ])
        .unwrap();
        let cm = ObjectKey::new("c", "", "configmaps", "ns", "x");
        let mut body = json!({"data": {"access.properties": "aws_secret_access_key = MY-KEY"}, "binaryData": {"b": "AA=="}});
        assert!(redactor.redact(&cm, &mut body));
        assert_eq!(
            body,
            json!({"data": {"access.properties": REDACTED}, "binaryData": {"b": "AA=="}})
        );

        let deploy = ObjectKey::new("c", "apps", "deployments", "ns", "web");
        assert!(redactor.applies_to(&deploy, &json!({})));
        let mut body = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "env": [{"name": "PASSWORD", "value": "hunter2"}]},
            {"name": "b"}
        ]}}}});
        assert!(redactor.redact(&deploy, &mut body));
        assert_eq!(
            body["spec"]["template"]["spec"]["containers"][0]["env"],
            REDACTED
        );
        assert_eq!(
            body["spec"]["template"]["spec"]["containers"][1],
            json!({"name": "b"})
        );
    }

    #[test]
    fn labelled_objects_are_redacted_whole() {
        let key = ObjectKey::new("c", "apps", "deployments", "ns", "web");
        let mut body = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {REDACTED_LABEL: "true"}, "managedFields": [{"manager": "kubectl"}]},
            "spec": {"replicas": 3}, "status": {}
        });
        let redactor = Redactor::default();
        assert!(redactor.applies_to(&key, &body));
        assert!(redactor.redact(&key, &mut body));
        assert_eq!(
            body,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {REDACTED_LABEL: "true"}}})
        );
        assert!(is_redacted_whole(&body));
        assert!(!redactor.redact(&key, &mut body));
    }

    #[test]
    fn bracketed_segments_name_fields_with_dots() {
        let redactor = Redactor::new(&[FieldRedaction {
            group: None,
            resource: "*".into(),
            path: r#"metadata.annotations["example.com/token"]"#.into(),
        }])
        .unwrap();
        let key = ObjectKey::new("c", "", "pods", "ns", "p");
        let mut body =
            json!({"metadata": {"annotations": {"example.com/token": "t0k3n", "other": "x"}}});
        assert!(redactor.redact(&key, &mut body));
        assert_eq!(
            body["metadata"]["annotations"],
            json!({"example.com/token": REDACTED, "other": "x"})
        );
    }

    #[test]
    fn bad_paths_are_refused_with_the_path_named() {
        for bad in ["", "data.", ".data", "a..b", r#"a["b"#, r#"a["b"]c"#] {
            let rule = FieldRedaction {
                group: None,
                resource: "*".into(),
                path: bad.into(),
            };
            let err = Redactor::new(&[rule]).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let rule = FieldRedaction {
            group: None,
            resource: String::new(),
            path: "data".into(),
        };
        assert!(matches!(
            Redactor::new(&[rule]),
            Err(RedactionRuleError::NoResource { .. })
        ));
    }

    #[test]
    fn path_parser_accepts_mixed_forms() {
        assert_eq!(
            parse_path(r#"a.*["b.c"]["d"].e"#).unwrap(),
            vec![
                Segment::Field("a".into()),
                Segment::Any,
                Segment::Field("b.c".into()),
                Segment::Field("d".into()),
                Segment::Field("e".into())
            ]
        );
    }
}
