//! [`LabelSelector`]: Kubernetes' label selector (`matchLabels` and `matchExpressions`), over an object's body.

use serde_json::Value;

use crate::body::label_of;

/// An operator of a `matchExpressions` requirement.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SelectorOperator {
    /// The label's value is one of the values.
    In,
    /// The label is absent, or its value is none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl SelectorOperator {
    /// Parses the operator's name as Kubernetes spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "In" => Some(Self::In),
            "NotIn" => Some(Self::NotIn),
            "Exists" => Some(Self::Exists),
            "DoesNotExist" => Some(Self::DoesNotExist),
            _ => None,
        }
    }
}

/// One requirement of `matchExpressions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorRequirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub operator: SelectorOperator,
    /// The values (`In`, `NotIn`); empty for `Exists`, `DoesNotExist`.
    pub values: Vec<String>,
}

/// A Kubernetes label selector: every `matchLabels` pair and every requirement must hold. An empty selector
/// matches everything (as in Kubernetes).
///
/// ```
/// use kelemetry_linkers::rules::LabelSelector;
///
/// let selector = LabelSelector::default().with_label("owner", "helm");
/// assert!(selector.matches(&serde_json::json!({"metadata": {"labels": {"owner": "helm"}}})));
/// assert!(!selector.matches(&serde_json::json!({"metadata": {}})));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Labels that must have exactly these values.
    pub match_labels: Vec<(String, String)>,
    /// Further requirements.
    pub match_expressions: Vec<SelectorRequirement>,
}

impl LabelSelector {
    /// The selector with one more `matchLabels` pair.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.match_labels.push((key.into(), value.into()));
        self
    }

    /// Whether the labels of `body` satisfy the selector.
    pub fn matches(&self, body: &Value) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| label_of(body, key) == Some(value.as_str()))
            && self.match_expressions.iter().all(|requirement| {
                let label = label_of(body, &requirement.key);
                let listed = || label.is_some_and(|v| requirement.values.iter().any(|x| x == v));
                match requirement.operator {
                    SelectorOperator::In => listed(),
                    SelectorOperator::NotIn => !listed(),
                    SelectorOperator::Exists => label.is_some(),
                    SelectorOperator::DoesNotExist => label.is_none(),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operators() {
        let body = json!({"metadata": {"labels": {"tier": "web", "env": "prod"}}});
        let requirement = |key: &str, operator, values: &[&str]| LabelSelector {
            match_labels: vec![],
            match_expressions: vec![SelectorRequirement {
                key: key.into(),
                operator,
                values: values.iter().map(|v| (*v).to_owned()).collect(),
            }],
        };
        use SelectorOperator::*;
        assert!(requirement("tier", In, &["web", "db"]).matches(&body));
        assert!(!requirement("tier", In, &["db"]).matches(&body));
        assert!(requirement("tier", NotIn, &["db"]).matches(&body));
        assert!(requirement("missing", NotIn, &["db"]).matches(&body));
        assert!(requirement("env", Exists, &[]).matches(&body));
        assert!(!requirement("env", DoesNotExist, &[]).matches(&body));
        assert!(requirement("missing", DoesNotExist, &[]).matches(&body));
        assert!(LabelSelector::default().matches(&json!({})));
        assert!(
            !LabelSelector::default()
                .with_label("tier", "web")
                .with_label("env", "dev")
                .matches(&body)
        );
        assert_eq!(SelectorOperator::from_name("in"), None);
    }
}
