//! YAML to [`Rule`]s, keeping every node's position (through `saphyr`'s marked YAML) so that each error points at
//! the value that is wrong.

use std::collections::HashMap;
use std::sync::Arc;

use kelemetry_core::LinkRole;
use kelemetry_core::resource_map::ResourceScope;
use saphyr::{LoadableYamlNode, MarkedYaml, Marker, Scalar, YamlData};
use serde_json_path::JsonPath;

use super::selector::{LabelSelector, SelectorOperator, SelectorRequirement};
use super::{ObjectMatch, Position, Query, Rule, RuleError, Target, ValueSource};

type Node<'a> = MarkedYaml<'a>;

const RULE_KEYS: &[&str] = &["name", "match", "target", "role", "class"];
const MATCH_KEYS: &[&str] = &["group", "resource", "labelSelector", "when", "unless"];
const TARGET_KEYS: &[&str] = &[
    "group",
    "resource",
    "version",
    "scope",
    "name",
    "namespace",
    "cluster",
    "reference",
];
const SOURCE_KEYS: &[&str] = &["path", "label", "annotation"];
const SELECTOR_KEYS: &[&str] = &["matchLabels", "matchExpressions"];
const REQUIREMENT_KEYS: &[&str] = &["key", "operator", "values"];

/// How deep the brackets of a JSONPath may nest. `serde_json_path`'s parser backtracks over nested filter queries
/// in a time exponential in their depth (16 levels of `[?@[?@.b` took minutes, found by fuzzing); paths over
/// Kubernetes objects nest two or three deep.
const MAX_PATH_NESTING: usize = 8;

/// How deep the brackets of `path` nest; a bracket never closed stays open to the end.
fn bracket_nesting(path: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for c in path.chars() {
        match c {
            '[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parses `text`; every error found, in file order, when there is any.
pub(super) fn parse(text: &str, origin: &Arc<str>) -> Result<Vec<Rule>, Vec<RuleError>> {
    let mut reader = Reader {
        origin: origin.clone(),
        errors: Vec::new(),
        rule: None,
    };
    let documents = match Node::load_from_str(text) {
        Ok(documents) => documents,
        Err(err) => {
            reader.fail_at(*err.marker(), format!("invalid YAML: {}", err.info()));
            return Err(reader.errors);
        }
    };
    let rules = reader.file(&documents);
    if reader.errors.is_empty() {
        Ok(rules)
    } else {
        reader
            .errors
            .sort_by_key(|e| (e.position.line, e.position.column));
        Err(reader.errors)
    }
}

struct Reader {
    origin: Arc<str>,
    errors: Vec<RuleError>,
    /// The rule being read: number and name.
    rule: Option<(usize, String)>,
}

/// The keys of a mapping, with their key and value nodes, in file order.
struct Fields<'n, 'a> {
    entries: Vec<(&'n str, &'n Node<'a>, &'n Node<'a>)>,
}

impl<'n, 'a> Fields<'n, 'a> {
    fn get(&self, key: &str) -> Option<&'n Node<'a>> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, value)| *value)
    }
}

impl Reader {
    fn fail_at(&mut self, marker: Marker, message: impl Into<String>) {
        let (rule_number, rule_name) = match &self.rule {
            Some((number, name)) => (Some(*number), Some(name.clone())),
            None => (None, None),
        };
        self.errors.push(RuleError {
            position: self.position(marker),
            rule_number,
            rule_name,
            message: message.into(),
        });
    }

    fn fail(&mut self, node: &Node<'_>, message: impl Into<String>) {
        self.fail_at(node.span.start, message);
    }

    fn position(&self, marker: Marker) -> Position {
        Position {
            origin: self.origin.clone(),
            line: marker.line(),
            column: marker.col() + 1,
        }
    }

    fn file(&mut self, documents: &[Node<'_>]) -> Vec<Rule> {
        let Some(document) = documents.first() else {
            self.fail_at(
                Marker::new(0, 1, 0),
                "the file is empty; expected `rules:` with a list of rules",
            );
            return Vec::new();
        };
        if let Some(extra) = documents.get(1) {
            self.fail(
                extra,
                "a second YAML document; put every rule in the one `rules:` list",
            );
        }
        let Some(top) = self.fields(document, "the file", &["rules"]) else {
            return Vec::new();
        };
        let Some(list) = top.get("rules") else {
            self.fail(document, "missing `rules:` (a list of rules)");
            return Vec::new();
        };
        let items = match &list.data {
            YamlData::Sequence(items) => items.as_slice(),
            YamlData::Value(Scalar::Null) => &[],
            _ => {
                self.fail(list, "`rules` must be a list of rules");
                return Vec::new();
            }
        };
        let mut rules: Vec<Rule> = Vec::new();
        let mut names: HashMap<String, (usize, usize)> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            let number = index + 1;
            let name = explicit_name(item).unwrap_or_else(|| derived_name(item));
            self.rule = Some((number, name.clone()));
            let errors_before = self.errors.len();
            let rule = self.rule_item(item, number, name.clone());
            if let Some((other, line)) = names.get(&name) {
                let at = item
                    .data
                    .as_mapping_get("name")
                    .map_or(item.span.start, |n| n.span.start);
                self.fail_at(
                    at,
                    format!("the name {name:?} is already used by rule {other} (line {line}); rule names must be unique"),
                );
            } else {
                names.insert(name, (number, item.span.start.line()));
            }
            if let Some(rule) = rule
                && self.errors.len() == errors_before
            {
                rules.push(rule);
            }
        }
        self.rule = None;
        rules
    }

    fn rule_item(&mut self, item: &Node<'_>, number: usize, name: String) -> Option<Rule> {
        let fields = self.fields(item, "a rule", RULE_KEYS)?;
        if let Some(node) = fields.get("name") {
            self.name_text(node, "the rule's name");
        }
        let matcher = match fields.get("match") {
            Some(node) => self.object_match(node),
            None => {
                self.fail(item, "missing `match` (which objects the rule applies to)");
                None
            }
        };
        let target = match fields.get("target") {
            Some(node) => self.target(node),
            None => {
                self.fail(item, "missing `target` (how the related object is found)");
                None
            }
        };
        let role = match fields.get("role") {
            Some(node) => self.role(node),
            None => {
                self.fail(
                    item,
                    "missing `role` (parent or child: the related object's role)",
                );
                None
            }
        };
        let class = match fields.get("class") {
            Some(node) => self.string(node, "`class`")?,
            None => String::new(),
        };
        Some(Rule {
            number,
            name,
            position: self.position(item.span.start),
            matcher: matcher?,
            target: target?,
            role: role?,
            class,
        })
    }

    fn object_match(&mut self, node: &Node<'_>) -> Option<ObjectMatch> {
        let fields = self.fields(node, "`match`", MATCH_KEYS)?;
        let group = match fields.get("group") {
            Some(node) => Some(self.group(node)?),
            None => None,
        };
        let resource = match fields.get("resource") {
            Some(node) => {
                let resource = self.string(node, "`match.resource`")?;
                if resource == "*" {
                    None
                } else {
                    Some(self.resource(node, resource)?)
                }
            }
            None => {
                self.fail(
                    node,
                    "missing `resource` (the lowercase plural, e.g. pods, or \"*\" for all)",
                );
                return None;
            }
        };
        let selector = match fields.get("labelSelector") {
            Some(node) => Some(self.selector(node)?),
            None => None,
        };
        let when = match fields.get("when") {
            Some(node) => Some(self.query(node)?),
            None => None,
        };
        let unless = match fields.get("unless") {
            Some(node) => Some(self.query(node)?),
            None => None,
        };
        Some(ObjectMatch {
            group,
            resource,
            selector,
            when,
            unless,
        })
    }

    fn target(&mut self, node: &Node<'_>) -> Option<Target> {
        let fields = self.fields(node, "`target`", TARGET_KEYS)?;
        let cluster = match fields.get("cluster") {
            Some(node) => Some(self.source(node)?),
            None => None,
        };
        if let Some(path) = fields.get("reference") {
            for (key, key_node, _) in &fields.entries {
                if !matches!(*key, "reference" | "cluster") {
                    self.fail(
                        key_node,
                        format!("`{key}` cannot be used with `reference` (the reference names the object)"),
                    );
                }
            }
            let path = self.query(path)?;
            return Some(Target::Reference { path, cluster });
        }
        let group = match fields.get("group") {
            Some(node) => self.group(node),
            None => {
                self.fail(
                    node,
                    "missing `group` (the target's API group; \"\" for the core group)",
                );
                None
            }
        };
        let resource = match fields.get("resource") {
            Some(node) => self
                .string(node, "`target.resource`")
                .and_then(|r| self.resource(node, r)),
            None => {
                self.fail(
                    node,
                    "missing `resource` (the target's lowercase plural resource), or use `reference`",
                );
                None
            }
        };
        let name = match fields.get("name") {
            Some(node) => self.source(node),
            None => {
                self.fail(
                    node,
                    "missing `name`: {path: ...}, {label: ...} or {annotation: ...}",
                );
                None
            }
        };
        let namespace = match fields.get("namespace") {
            Some(node) => Some(self.source(node)?),
            None => None,
        };
        let version = match fields.get("version") {
            Some(node) => Some(self.string(node, "`version`")?),
            None => None,
        };
        let scope = match fields.get("scope") {
            Some(node) => match self.string(node, "`scope`")?.as_str() {
                "namespaced" => Some(ResourceScope::Namespaced),
                "cluster" => Some(ResourceScope::Cluster),
                other => {
                    self.fail(
                        node,
                        format!("unknown scope {other:?} (expected namespaced or cluster)"),
                    );
                    return None;
                }
            },
            None => None,
        };
        Some(Target::Named {
            group: group?,
            resource: resource?,
            version,
            scope,
            name: name?,
            namespace,
            cluster,
        })
    }

    fn role(&mut self, node: &Node<'_>) -> Option<LinkRole> {
        let text = self.string(node, "`role`")?;
        let role = LinkRole::from_name(&text);
        if role.is_none() {
            self.fail(
                node,
                format!(
                    "unknown role {text:?} (expected parent or child: the related object's role)"
                ),
            );
        }
        role
    }

    /// `{path: ...}`, `{label: ...}`, `{annotation: ...}`, or a bare JSONPath string.
    fn source(&mut self, node: &Node<'_>) -> Option<ValueSource> {
        if let YamlData::Value(Scalar::String(_)) = &node.data {
            return Some(ValueSource::Path(self.query(node)?));
        }
        let fields = self.fields(node, "a value source", SOURCE_KEYS)?;
        match fields.entries.as_slice() {
            [("path", _, value)] => Some(ValueSource::Path(self.query(value)?)),
            [("label", _, value)] => Some(ValueSource::Label(self.label_key(value)?)),
            [("annotation", _, value)] => Some(ValueSource::Annotation(self.label_key(value)?)),
            _ => {
                self.fail(
                    node,
                    "expected exactly one of {path: ...}, {label: ...} or {annotation: ...}",
                );
                None
            }
        }
    }

    fn query(&mut self, node: &Node<'_>) -> Option<Query> {
        let text = self.string(node, "a JSONPath")?;
        let nesting = bracket_nesting(&text);
        if nesting > MAX_PATH_NESTING {
            self.fail(
                node,
                format!(
                    "JSONPath {text:?} nests brackets {nesting} deep; at most {MAX_PATH_NESTING} are allowed"
                ),
            );
            return None;
        }
        match JsonPath::parse(&text) {
            Ok(path) => Some(Query { text, path }),
            Err(err) => {
                let near: String = text.chars().skip(err.position()).take(40).collect();
                let hint = if text.contains('/') {
                    " (write keys with '/' or '.' in brackets: $.metadata.labels['example.com/name'])"
                } else {
                    ""
                };
                self.fail(
                    node,
                    format!(
                        "invalid JSONPath {text:?}: {} near {near:?}{hint}",
                        err.message()
                    ),
                );
                None
            }
        }
    }

    fn selector(&mut self, node: &Node<'_>) -> Option<LabelSelector> {
        let fields = self.fields(node, "`labelSelector`", SELECTOR_KEYS)?;
        let mut selector = LabelSelector::default();
        if let Some(labels) = fields.get("matchLabels") {
            let labels = self.fields(labels, "`matchLabels`", &[])?;
            for (key, key_node, value) in labels.entries {
                self.check_label_key(key_node, key);
                let value = self.scalar_text(value, "a label value")?;
                selector.match_labels.push((key.to_owned(), value));
            }
        }
        if let Some(list) = fields.get("matchExpressions") {
            let YamlData::Sequence(items) = &list.data else {
                self.fail(list, "`matchExpressions` must be a list");
                return None;
            };
            for item in items {
                selector.match_expressions.push(self.requirement(item)?);
            }
        }
        Some(selector)
    }

    fn requirement(&mut self, node: &Node<'_>) -> Option<SelectorRequirement> {
        let fields = self.fields(node, "a requirement", REQUIREMENT_KEYS)?;
        let Some(key) = fields.get("key") else {
            self.fail(node, "missing `key`");
            return None;
        };
        let key = self.label_key(key)?;
        let Some(operator_node) = fields.get("operator") else {
            self.fail(
                node,
                "missing `operator` (In, NotIn, Exists or DoesNotExist)",
            );
            return None;
        };
        let operator_name = self.string(operator_node, "`operator`")?;
        let Some(operator) = SelectorOperator::from_name(&operator_name) else {
            self.fail(
                operator_node,
                format!("unknown operator {operator_name:?} (expected In, NotIn, Exists or DoesNotExist)"),
            );
            return None;
        };
        let mut values = Vec::new();
        if let Some(list) = fields.get("values") {
            let YamlData::Sequence(items) = &list.data else {
                self.fail(list, "`values` must be a list");
                return None;
            };
            for item in items {
                values.push(self.scalar_text(item, "a label value")?);
            }
        }
        let needs_values = matches!(operator, SelectorOperator::In | SelectorOperator::NotIn);
        if needs_values && values.is_empty() {
            self.fail(
                operator_node,
                format!("{operator_name} needs a non-empty `values` list"),
            );
            return None;
        }
        if !needs_values && !values.is_empty() {
            self.fail(operator_node, format!("{operator_name} takes no `values`"));
            return None;
        }
        Some(SelectorRequirement {
            key,
            operator,
            values,
        })
    }

    /// The keys of a mapping; `allowed` empty allows any key.
    fn fields<'n, 'a>(
        &mut self,
        node: &'n Node<'a>,
        what: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n, 'a>> {
        let YamlData::Mapping(mapping) = &node.data else {
            self.fail(
                node,
                format!(
                    "{what} must be a mapping (key: value), found {}",
                    kind_of(node)
                ),
            );
            return None;
        };
        // Keys that are wrong are reported, and the others still read, so that one pass finds every mistake.
        let mut entries = Vec::with_capacity(mapping.len());
        for (key, value) in mapping.iter() {
            let YamlData::Value(Scalar::String(name)) = &key.data else {
                self.fail(key, format!("keys of {what} must be strings"));
                continue;
            };
            if !allowed.is_empty() && !allowed.contains(&name.as_ref()) {
                self.fail(
                    key,
                    format!(
                        "unknown key `{name}` in {what} (expected {})",
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            entries.push((name.as_ref(), key, value));
        }
        Some(Fields { entries })
    }

    fn string(&mut self, node: &Node<'_>, what: &str) -> Option<String> {
        match &node.data {
            YamlData::Value(Scalar::String(text)) => Some(text.to_string()),
            _ => {
                self.fail(
                    node,
                    format!("{what} must be a string, found {}", kind_of(node)),
                );
                None
            }
        }
    }

    /// A scalar as text (label values may be written as numbers or booleans).
    fn scalar_text(&mut self, node: &Node<'_>, what: &str) -> Option<String> {
        match &node.data {
            YamlData::Value(Scalar::String(text)) => Some(text.to_string()),
            YamlData::Value(Scalar::Integer(n)) => Some(n.to_string()),
            YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
            YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
            _ => {
                self.fail(
                    node,
                    format!("{what} must be a string, found {}", kind_of(node)),
                );
                None
            }
        }
    }

    /// An API group: a string, `""` (or an empty value) for the core group.
    fn group(&mut self, node: &Node<'_>) -> Option<String> {
        if let YamlData::Value(Scalar::Null) = &node.data {
            return Some(String::new());
        }
        let group = self.string(node, "`group`")?;
        if group.contains('/') {
            self.fail(
                node,
                format!("group {group:?} contains '/'; write the group without its version (apps, not apps/v1)"),
            );
            return None;
        }
        Some(group)
    }

    fn resource(&mut self, node: &Node<'_>, resource: String) -> Option<String> {
        let valid = !resource.is_empty()
            && resource
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if valid {
            return Some(resource);
        }
        self.fail(
            node,
            format!(
                "resource {resource:?} is not a resource name: write the lowercase plural (services, not Service)"
            ),
        );
        None
    }

    fn label_key(&mut self, node: &Node<'_>) -> Option<String> {
        let key = self.string(node, "a label or annotation key")?;
        self.check_label_key(node, &key).then_some(key)
    }

    fn check_label_key(&mut self, node: &Node<'_>, key: &str) -> bool {
        let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
        if name.is_empty() || key.contains(char::is_whitespace) {
            self.fail(node, format!("{key:?} is not a label or annotation key"));
            return false;
        }
        true
    }

    fn name_text(&mut self, node: &Node<'_>, what: &str) {
        if let Some(name) = self.string(node, what)
            && name.trim().is_empty()
        {
            self.fail(node, format!("{what} is empty"));
        }
    }
}

/// The rule's `name`, if it is a non-empty string.
fn explicit_name(item: &Node<'_>) -> Option<String> {
    match &item.data.as_mapping_get("name")?.data {
        YamlData::Value(Scalar::String(name)) if !name.trim().is_empty() => Some(name.to_string()),
        _ => None,
    }
}

/// `<match resource>→<target resource or reference path>`, with `?` for what is missing.
fn derived_name(item: &Node<'_>) -> String {
    let text = |node: Option<&Node<'_>>| match node.map(|n| &n.data) {
        Some(YamlData::Value(Scalar::String(text))) => Some(text.to_string()),
        _ => None,
    };
    let matched = item.data.as_mapping_get("match");
    let target = item.data.as_mapping_get("target");
    let from = text(matched.and_then(|m| m.data.as_mapping_get("resource")));
    let to = text(target.and_then(|t| t.data.as_mapping_get("resource")))
        .or_else(|| text(target.and_then(|t| t.data.as_mapping_get("reference"))));
    format!(
        "{}→{}",
        from.as_deref().unwrap_or("?"),
        to.as_deref().unwrap_or("?")
    )
}

fn kind_of(node: &Node<'_>) -> &'static str {
    match &node.data {
        YamlData::Value(Scalar::Null) => "nothing",
        YamlData::Value(Scalar::Boolean(_)) => "a boolean",
        YamlData::Value(Scalar::Integer(_) | Scalar::FloatingPoint(_)) => "a number",
        YamlData::Value(Scalar::String(_)) | YamlData::Representation(..) => "a string",
        YamlData::Sequence(_) => "a list",
        YamlData::Mapping(_) => "a mapping",
        YamlData::Tagged(..) => "a tagged value (YAML tags are not supported here)",
        YamlData::Alias(_) => "an alias (YAML aliases are not supported here)",
        YamlData::BadValue => "an invalid value",
    }
}
