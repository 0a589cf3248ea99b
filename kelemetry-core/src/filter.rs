//! [`Filter`]: which records the pipeline drops before they become spans (docs/behaviour/pipeline.md#filter).

use serde::{Deserialize, Serialize};

use crate::activity::Record;
use crate::key::ObjectKey;
use crate::vocabulary as v;

/// Drops records by resource, namespace, user or user agent. The default keeps everything.
///
/// ```
/// use kelemetry_core::{Filter, ObjectKey};
/// let filter = Filter { exclude_resources: vec!["leases.coordination.k8s.io".into(), "events".into()], ..Filter::default() };
/// assert!(!filter.admits_object(&ObjectKey::new("c", "coordination.k8s.io", "leases", "ns", "l")));
/// assert!(filter.admits_object(&ObjectKey::new("c", "apps", "deployments", "ns", "d")));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Filter {
    /// Resources to drop, as `resource` (any group) or `resource.group` (`""` group: just `resource`).
    pub exclude_resources: Vec<String>,
    /// Namespaces to drop.
    pub exclude_namespaces: Vec<String>,
    /// Users whose requests are dropped (exact names).
    pub exclude_users: Vec<String>,
    /// Requests whose user agent contains one of these texts are dropped.
    pub exclude_user_agents: Vec<String>,
}

impl Filter {
    /// Also drops everything of `resource` (`resource` of any group, or `resource.group`).
    pub fn exclude_resource(mut self, resource: impl Into<String>) -> Self {
        self.exclude_resources.push(resource.into());
        self
    }

    /// Whether records about `key` may pass.
    pub fn admits_object(&self, key: &ObjectKey) -> bool {
        let resource_excluded =
            self.exclude_resources
                .iter()
                .any(|excluded| match excluded.split_once('.') {
                    Some((resource, group)) => resource == key.resource && group == key.group,
                    None => *excluded == key.resource,
                });
        !resource_excluded && !self.exclude_namespaces.iter().any(|n| *n == key.namespace)
    }

    /// Whether `record` may pass.
    pub fn admits(&self, record: &Record) -> bool {
        match record {
            Record::Observation(observation) => self.admits_object(observation.object.key()),
            Record::Activity(activity) => {
                if !self.admits_object(activity.object.key()) {
                    return false;
                }
                if let Some(user) = activity.attribute_value(v::USERNAME)
                    && self.exclude_users.iter().any(|u| u == user)
                {
                    return false;
                }
                if let Some(agent) = activity.attribute_value(v::USER_AGENT)
                    && self
                        .exclude_user_agents
                        .iter()
                        .any(|a| agent.contains(a.as_str()))
                {
                    return false;
                }
                true
            }
        }
    }

    /// Whether this filter drops nothing (lets the pipeline skip it).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activity, Object, ObjectRef, SourceKind};

    fn activity(user: &str, agent: &str) -> Record {
        let key = ObjectKey::new("c", "", "pods", "ns", "p");
        let mut a = Activity::new(
            Object::new(ObjectRef::new(key, "v1", None)),
            SourceKind::Audit,
            jiff::Timestamp::UNIX_EPOCH,
            "t",
            "k",
        );
        a.attribute(v::USERNAME, user);
        a.attribute(v::USER_AGENT, agent);
        a.into()
    }

    #[test]
    fn users_agents_and_namespaces_are_dropped() {
        let filter = Filter {
            exclude_users: vec!["system:kube-scheduler".into()],
            exclude_user_agents: vec!["kube-probe".into()],
            exclude_namespaces: vec!["kube-system".into()],
            ..Filter::default()
        };
        assert!(filter.admits(&activity("alice", "kubectl/1.30")));
        assert!(!filter.admits(&activity("system:kube-scheduler", "x")));
        assert!(!filter.admits(&activity("alice", "kube-probe/1.30")));
        assert!(!filter.admits_object(&ObjectKey::new("c", "", "pods", "kube-system", "p")));
        assert!(Filter::default().is_empty());
    }
}
