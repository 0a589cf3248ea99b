#![allow(clippy::unwrap_used)]

use super::*;
use kelemetry_core::NoLookup;
use serde_json::json;

fn object(group: &str, resource: &str, namespace: &str, name: &str, body: Value) -> Object {
    let key = ObjectKey::new("kind", group, resource, namespace, name);
    Object::with_body(ObjectRef::new(key, "v1", None), Arc::new(body))
}

/// The links every default rule finds for `object`.
async fn default_links(object: &Object) -> Vec<Link> {
    let resources = Arc::new(ResourceMap::builtin());
    let mut links = Vec::new();
    for linker in RuleSet::default_rules().linkers(resources) {
        links.extend(linker.link(object, &NoLookup).await.unwrap());
    }
    links
}

fn keys(links: &[Link]) -> Vec<(String, LinkRole, &str)> {
    links
        .iter()
        .map(|l| (l.object.key.to_string(), l.role, l.class.as_str()))
        .collect()
}

fn errors(text: &str) -> Vec<String> {
    match RuleSet::parse(text, "rules.yaml") {
        Ok(rules) => panic!("accepted {} rules", rules.len()),
        Err(RuleSetError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn the_default_rules_are_valid() {
    let rules = RuleSet::parse(DEFAULT_RULES, "default.yaml").unwrap();
    assert_eq!(rules.len(), RuleSet::default_rules().len());
    let names: Vec<&str> = rules.rules().iter().map(|r| r.name()).collect();
    for expected in [
        "endpointslices→services",
        "endpoints→services",
        "persistentvolumeclaims→persistentvolumes",
        "pods→persistentvolumeclaims",
        "pods→serviceaccounts",
        "jobs→cronjobs",
        "horizontalpodautoscalers→target",
        "helm-release-members",
        "helm-release-revisions",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    // The file in the repository is the embedded one.
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/default.yaml"))
        .unwrap();
    assert_eq!(file, DEFAULT_RULES);
    let summary = rules.rules()[0].to_string();
    assert_eq!(
        summary,
        "endpointslices.discovery.k8s.io with labels unless $.metadata.ownerReferences[?@.controller == true] → \
         services named by label kubernetes.io/service-name, as parent (class endpoints)"
    );
}

#[tokio::test]
async fn endpointslice_without_owner_is_a_child_of_its_service() {
    let slice = object(
        "discovery.k8s.io",
        "endpointslices",
        "default",
        "web-mirror-x2k",
        json!({"metadata": {"name": "web-mirror-x2k", "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4", "endpoints": []}),
    );
    assert_eq!(
        keys(&default_links(&slice).await),
        [(
            "kind//services/default/web".to_owned(),
            LinkRole::Parent,
            "endpoints"
        )]
    );
    // A slice the EndpointSlice controller made has a controller owner: the owner linker links it, not the rule.
    let owned = object(
        "discovery.k8s.io",
        "endpointslices",
        "default",
        "web-abcde",
        json!({"metadata": {"labels": {"kubernetes.io/service-name": "web"},
               "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "u", "controller": true}]}}),
    );
    assert!(default_links(&owned).await.is_empty());
}

#[tokio::test]
async fn storage_chain() {
    let pod = object(
        "",
        "pods",
        "db",
        "pg-0",
        json!({"spec": {"serviceAccountName": "pg", "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "data-pg-0"}},
            {"name": "cfg", "configMap": {"name": "pg"}},
            {"name": "wal", "persistentVolumeClaim": {"claimName": "wal-pg-0"}}
        ]}}),
    );
    assert_eq!(
        keys(&default_links(&pod).await),
        [
            (
                "kind//persistentvolumeclaims/db/data-pg-0".to_owned(),
                LinkRole::Child,
                "volume"
            ),
            (
                "kind//persistentvolumeclaims/db/wal-pg-0".to_owned(),
                LinkRole::Child,
                "volume"
            ),
            (
                "kind//serviceaccounts/db/pg".to_owned(),
                LinkRole::Parent,
                "serviceaccount"
            ),
        ]
    );
    let claim = object(
        "",
        "persistentvolumeclaims",
        "db",
        "data-pg-0",
        json!({"spec": {"volumeName": "pvc-6f1c"}}),
    );
    let links = default_links(&claim).await;
    // Volumes are cluster-scoped: no namespace.
    assert_eq!(
        keys(&links),
        [(
            "kind//persistentvolumes//pvc-6f1c".to_owned(),
            LinkRole::Child,
            "volume"
        )]
    );
    assert_eq!(links[0].object.version, "v1");
    assert_eq!(
        links[0].dedup_id,
        "persistentvolumeclaims→persistentvolumes"
    );
    let pending = object(
        "",
        "persistentvolumeclaims",
        "db",
        "x",
        json!({"spec": {"volumeName": ""}}),
    );
    assert!(default_links(&pending).await.is_empty());
    let volume = object(
        "",
        "persistentvolumes",
        "",
        "pvc-6f1c",
        json!({"spec": {"claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "namespace": "db", "name": "data-pg-0", "uid": "c-1"}}}),
    );
    let links = default_links(&volume).await;
    assert_eq!(
        keys(&links),
        [(
            "kind//persistentvolumeclaims/db/data-pg-0".to_owned(),
            LinkRole::Parent,
            "volume"
        )]
    );
    assert_eq!(links[0].object.uid.as_deref(), Some("c-1"));
}

#[tokio::test]
async fn manual_job_from_an_old_kubectl_links_to_its_cronjob() {
    let manual = object(
        "batch",
        "jobs",
        "ops",
        "backup-manual-1",
        json!({"metadata": {"annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
               "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "backup", "uid": "u"}]}}),
    );
    assert_eq!(
        keys(&default_links(&manual).await),
        [(
            "kind/batch/cronjobs/ops/backup".to_owned(),
            LinkRole::Parent,
            "children"
        )]
    );
    let scheduled = object(
        "batch",
        "jobs",
        "ops",
        "backup-29012345",
        json!({"metadata": {"ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "CronJob", "name": "backup", "uid": "u", "controller": true}]}}),
    );
    assert!(default_links(&scheduled).await.is_empty());
}

#[tokio::test]
async fn autoscaler_target_through_the_resource_map() {
    let hpa = object(
        "autoscaling",
        "horizontalpodautoscalers",
        "default",
        "web",
        json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
               "minReplicas": 1, "maxReplicas": 5}}),
    );
    let links = default_links(&hpa).await;
    assert_eq!(
        keys(&links),
        [(
            "kind/apps/deployments/default/web".to_owned(),
            LinkRole::Child,
            "scale"
        )]
    );
    assert_eq!(links[0].object.version, "v1");
    let custom = object(
        "autoscaling",
        "horizontalpodautoscalers",
        "default",
        "r",
        json!({"spec": {"scaleTargetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "r"}}}),
    );
    assert_eq!(
        keys(&default_links(&custom).await),
        [(
            "kind/argoproj.io/rollouts/default/r".to_owned(),
            LinkRole::Child,
            "scale"
        )]
    );
    let broken = object(
        "autoscaling",
        "horizontalpodautoscalers",
        "default",
        "b",
        json!({"spec": {"scaleTargetRef": {"kind": "Deployment"}}}),
    );
    let linker = RuleSet::default_rules()
        .linkers(Arc::new(ResourceMap::builtin()))
        .into_iter()
        .find(|l| l.name() == "rule horizontalpodautoscalers→target")
        .unwrap();
    let err = linker
        .link(&broken, &NoLookup)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kind/autoscaling/horizontalpodautoscalers/default/b"),
        "{err}"
    );
    assert!(
        err.contains("reference $.spec.scaleTargetRef lacks kind or name"),
        "{err}"
    );
    assert!(err.contains("default.yaml:"), "{err}");
}

#[tokio::test]
async fn helm_release_members_and_revisions() {
    let annotations =
        json!({"meta.helm.sh/release-name": "shop", "meta.helm.sh/release-namespace": "apps"});
    let role = object(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "",
        "shop-reader",
        json!({"metadata": {"annotations": annotations, "labels": {"app.kubernetes.io/managed-by": "Helm"}}}),
    );
    let links = default_links(&role).await;
    assert_eq!(
        keys(&links),
        [(
            "kind/helm.sh/releases/apps/shop".to_owned(),
            LinkRole::Parent,
            "release"
        )]
    );
    assert_eq!(links[0].object.version, "v3");
    // A ReplicaSet inherits its Deployment's annotations but belongs to the Deployment.
    let replica_set = object(
        "apps",
        "replicasets",
        "apps",
        "shop-7d9",
        json!({"metadata": {"annotations": annotations,
               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop", "uid": "u", "controller": true}]}}),
    );
    assert!(default_links(&replica_set).await.is_empty());
    let revision = object(
        "",
        "secrets",
        "apps",
        "sh.helm.release.v1.shop.v2",
        json!({"type": "helm.sh/release.v1",
               "metadata": {"labels": {"owner": "helm", "name": "shop", "version": "2", "status": "deployed"}}}),
    );
    assert_eq!(
        keys(&default_links(&revision).await),
        [(
            "kind/helm.sh/releases/apps/shop".to_owned(),
            LinkRole::Parent,
            "revision"
        )]
    );
    let plain = object(
        "",
        "secrets",
        "apps",
        "token",
        json!({"metadata": {"labels": {"name": "x"}}}),
    );
    assert!(default_links(&plain).await.is_empty());
}

/// The serviceAccountName of real Pods from a Kubernetes 1.36 kind cluster.
#[tokio::test]
async fn recorded_pods_link_to_their_service_accounts() {
    let Some(list) =
        crate::fixtures::replay_body("apiserver-replays/k8s-openapi-v1-36/pod-list.json")
    else {
        return;
    };
    let mut accounts = std::collections::BTreeSet::new();
    for item in list["items"].as_array().unwrap() {
        let name = item["metadata"]["name"].as_str().unwrap();
        let pod = object("", "pods", "kube-system", name, item.clone());
        for link in default_links(&pod).await {
            if link.class == "serviceaccount" {
                assert_eq!(link.role, LinkRole::Parent);
                accounts.insert(link.object.key.name.clone());
            }
        }
    }
    assert!(accounts.contains("coredns"), "{accounts:?}");
    assert!(accounts.contains("kube-proxy"), "{accounts:?}");
}

#[test]
fn errors_point_at_the_rule_and_say_what_is_wrong() {
    let text = "\
rules:
  - name: ok
    match: {group: '', resource: pods}
    target: {group: '', resource: nodes, name: $.spec.nodeName}
    role: parent
  - match:
      group: discovery.k8s.io
      resource: endpointslices
    target:
      group: ''
      resource: services
      name: {path: '$.metadata.labels[kubernetes.io/service-name'}
    role: parent
  - match: {resource: Service}
    target: {group: '', resource: endpoints, name: {label: a, annotation: b}}
    role: sibling
    colour: red
  - name: ok
    match: {resource: pods}
    target: {reference: $.spec.x, name: $.y}
    role: child
";
    let errors = errors(text);
    assert_eq!(
        errors,
        [
            "rules.yaml:12:20: rule 2 (endpointslices→services): invalid JSONPath \
             \"$.metadata.labels[kubernetes.io/service-name\": parser error near \"[kubernetes.io/service-name\" (write keys with '/' or '.' in brackets: \
             $.metadata.labels['example.com/name'])",
            "rules.yaml:14:23: rule 3 (Service→endpoints): resource \"Service\" is not a resource name: write the \
             lowercase plural (services, not Service)",
            "rules.yaml:15:52: rule 3 (Service→endpoints): expected exactly one of {path: ...}, {label: ...} or \
             {annotation: ...}",
            "rules.yaml:16:11: rule 3 (Service→endpoints): unknown role \"sibling\" (expected parent or child: the \
             related object's role)",
            "rules.yaml:17:5: rule 3 (Service→endpoints): unknown key `colour` in a rule (expected name, match, \
             target, role, class)",
            "rules.yaml:18:11: rule 4 (ok): the name \"ok\" is already used by rule 1 (line 2); rule names must be \
             unique",
            "rules.yaml:20:35: rule 4 (ok): `name` cannot be used with `reference` (the reference names the object)",
        ]
    );
}

/// Found by fuzzing (fuzz/regressions/rules): a path of unclosed nested filters took minutes to parse; it is
/// refused at once. Eight levels still parse.
#[test]
fn deeply_nested_paths_are_refused_quickly() {
    let rule = |path: &str| {
        format!(
            "rules:\n  - match: {{resource: pods}}\n    target: {{group: '', resource: configmaps, name: {{path: \"{path}\"}}}}\n    role: parent\n"
        )
    };
    let deep = format!("$.a{}", "[?@[?@.b".repeat(16));
    let started = std::time::Instant::now();
    let errors = errors(&rule(&deep));
    assert_eq!(
        errors,
        [format!(
            "rules.yaml:3:60: rule 1 (pods→configmaps): JSONPath {deep:?} nests brackets 32 deep; at most 8 are \
             allowed"
        )]
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let eight = format!("$.a{}{}", "[?@[?@.b".repeat(4), "]".repeat(8));
    let eight_deep = RuleSet::parse(&rule(&eight), "rules.yaml").map(|rules| rules.len());
    assert_eq!(eight_deep.ok(), Some(1), "eight levels are allowed");
    let fine = "$.spec.containers[?@.name == 'web'].env[?@.name == 'CONFIG'].value";
    assert_eq!(
        RuleSet::parse(&rule(fine), "rules.yaml")
            .map(|rules| rules.len())
            .ok(),
        Some(1)
    );
}

#[test]
fn yaml_and_shape_errors() {
    assert_eq!(
        errors("rules:\n  - match: {resource: pods\n"),
        [
            "rules.yaml:3:1: invalid YAML: while parsing a flow mapping, did not find expected ',' or '}'"
        ]
    );
    assert_eq!(
        errors(""),
        ["rules.yaml:1:1: the file is empty; expected `rules:` with a list of rules"]
    );
    assert_eq!(
        errors("rule:\n  - {}\n"),
        [
            "rules.yaml:1:1: unknown key `rule` in the file (expected rules)",
            "rules.yaml:1:1: missing `rules:` (a list of rules)"
        ]
    );
    assert_eq!(
        errors("rules:\n  match: {}\n"),
        ["rules.yaml:2:3: `rules` must be a list of rules"]
    );
    assert_eq!(
        errors(
            "rules:\n  - match: {resource: pods}\n    target: {group: '', resource: x, name: $.a}\n"
        ),
        [
            "rules.yaml:2:5: rule 1 (pods→x): missing `role` (parent or child: the related object's role)"
        ]
    );
    let errors = errors(
        "rules:\n  - match:\n      resource: pods\n      labelSelector:\n        matchExpressions:\n          \
         - {key: a, operator: In}\n    target: {group: apps/v1, resource: x, name: $.a}\n    role: child\n",
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0]
            .starts_with("rules.yaml:6:32: rule 1 (pods→x): In needs a non-empty `values` list"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("rules.yaml:7:21: rule 1 (pods→x): group \"apps/v1\" contains '/'"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn a_path_that_finds_no_name_is_an_error_naming_the_rule() {
    let rules = RuleSet::parse(
        "rules:\n  - name: by-replicas\n    match: {group: apps, resource: deployments}\n    \
         target: {group: '', resource: configmaps, name: $.spec.replicas}\n    role: child\n",
        "custom.yaml",
    )
    .unwrap();
    let linker = &rules.linkers(Arc::new(ResourceMap::builtin()))[0];
    assert_eq!(linker.name(), "rule by-replicas");
    let deployment = object(
        "apps",
        "deployments",
        "default",
        "web",
        json!({"spec": {"replicas": 3}}),
    );
    let err = linker.link(&deployment, &NoLookup).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "linker rule by-replicas failed on kind/apps/deployments/default/web: path $.spec.replicas found a number 3 \
         where a name was expected (rule 1 at custom.yaml:2:5)"
    );
    // Other resources are not looked at.
    let pod = object("", "pods", "default", "p", json!({"spec": {"replicas": 3}}));
    assert!(linker.link(&pod, &NoLookup).await.unwrap().is_empty());
}

#[tokio::test]
async fn cluster_and_namespace_from_the_body_and_conditions() {
    let rules = RuleSet::parse(
        r#"rules:
  - name: mirror-of
    match:
      group: ""
      resource: configmaps
      labelSelector:
        matchLabels: {mirror: "true"}
      when: "$.metadata.annotations['example.com/source']"
    target:
      group: ""
      resource: configmaps
      cluster: {annotation: example.com/source-cluster}
      namespace: {annotation: example.com/source-namespace}
      name: {annotation: example.com/source}
    role: parent
"#,
        "mirror.yaml",
    )
    .unwrap();
    let linker = &rules.linkers(Arc::new(ResourceMap::builtin()))[0];
    let mirrored = object(
        "",
        "configmaps",
        "team",
        "settings",
        json!({"metadata": {"labels": {"mirror": "true"}, "annotations": {
            "example.com/source": "settings", "example.com/source-cluster": "hub",
            "example.com/source-namespace": "platform"}}}),
    );
    let links = linker.link(&mirrored, &NoLookup).await.unwrap();
    assert_eq!(
        keys(&links),
        [(
            "hub//configmaps/platform/settings".to_owned(),
            LinkRole::Parent,
            ""
        )]
    );
    let unlabelled = object(
        "",
        "configmaps",
        "team",
        "settings",
        json!({"metadata": {"annotations": {"example.com/source": "settings"}}}),
    );
    assert!(
        linker
            .link(&unlabelled, &NoLookup)
            .await
            .unwrap()
            .is_empty()
    );
    // Without the cluster and namespace annotations, the object's own.
    let local = object(
        "",
        "configmaps",
        "team",
        "copy",
        json!({"metadata": {"labels": {"mirror": "true"}, "annotations": {"example.com/source": "settings"}}}),
    );
    assert_eq!(
        keys(&linker.link(&local, &NoLookup).await.unwrap()),
        [(
            "kind//configmaps/team/settings".to_owned(),
            LinkRole::Parent,
            ""
        )]
    );
}

#[test]
fn a_query_reads_from_where_its_leading_names_lead() {
    let path = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        query_starts("$.spec.volumes[*].persistentVolumeClaim.claimName"),
        Some(vec![path(&["spec", "volumes"])])
    );
    assert_eq!(
        query_starts(
            "$.metadata.ownerReferences[?@.kind == 'CronJob' && @.controller != true].name"
        ),
        Some(vec![path(&["metadata", "ownerReferences"])])
    );
    // An absolute query inside a filter reads the body too.
    assert_eq!(
        query_starts("$.spec.x[?@.name == $.metadata.name]"),
        Some(vec![path(&["spec", "x"]), path(&["metadata", "name"])])
    );
    assert_eq!(query_starts("$.spec..name"), Some(vec![path(&["spec"])]));
    assert_eq!(query_starts("$.a_1.b2.*"), Some(vec![path(&["a_1", "b2"])]));
    // Anything that may read the whole body, or a name this does not read to its end.
    for whole in [
        "$",
        "$..name",
        "$.*",
        "$['spec']",
        "$.spéc",
        "$.spec[?@ == '$x']",
        "$.2x",
    ] {
        assert_eq!(query_starts(whole), None, "{whole}");
    }
}

/// Bodies for the equivalence test: every object body of the recorded scenarios, recorded Pods and Deployments
/// when the shared data is there, and bodies written for the rules (labels, annotations, references, odd text).
fn bodies_for_rules() -> Vec<String> {
    let mut bodies = Vec::new();
    let recorded = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/recorded");
    for scenario in std::fs::read_dir(recorded).unwrap() {
        let log = scenario.unwrap().path().join("audit.log");
        let Ok(text) = std::fs::read_to_string(&log) else {
            continue;
        };
        for line in text.lines() {
            let event: Value = serde_json::from_str(line).unwrap();
            for field in ["requestObject", "responseObject"] {
                if event[field].is_object() {
                    bodies.push(event[field].to_string());
                }
            }
        }
    }
    for list in ["pod-list.json", "deployment-list.json"] {
        let relative = format!("apiserver-replays/k8s-openapi-v1-36/{list}");
        if let Some(list) = crate::fixtures::replay_body(&relative) {
            bodies.extend(
                list["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(Value::to_string),
            );
        }
    }
    bodies.extend(
        [
            r#"{"metadata":{"name":"s1","labels":{"kubernetes.io/service-name":"web","owner":"helm","name":"r"},
               "annotations":{"meta.helm.sh/release-name":"rel","meta.helm.sh/release-namespace":"apps"},
               "ownerReferences":[{"kind":"CronJob","name":"nightly","controller":false}]},
               "spec":{"volumeName":"pv-1","claimRef":{"kind":"PersistentVolumeClaim","name":"c","namespace":"ns"},
               "scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},
               "volumes":[{"persistentVolumeClaim":{"claimName":"data"}},{"emptyDir":{}}],
               "serviceAccountName":"runner"}}"#,
            r#" { "metadata" : { "labels" : { "owner" : "helm" , "owner" : "someone" } ,
               "annotations" : { "meta.helm.sh/release-name" : "a" , "meta.helm.sh/release-name" : "b" } } ,
               "spec" : { "volumeName" : "x" } , "spec" : { "volumeName" : "y" } } "#,
            r#"{"metadata":{"lab\u0065ls":{"owner":"helm","name":"esc"},"ownerReferences":[{"controller":true}],
               "annotations":{"meta.helm.sh/release-name":"r"}},"spec":"not an object"}"#,
            r#"{"metadata":{"labels":null,"annotations":[]},"spec":{"volumes":null,"scaleTargetRef":{}}}"#,
            r#"{"metadata":{"name":"cfg"},"spec":{"volumes":[{"name":"cfg","configMap":{"name":"settings"}}]}}"#,
            r#"{"metadata":{"annotations":{"meta.helm.sh/release-name":3}},"spec":{"volumeName":["a"]}}"#,
            r#"{"metadata":{"managedFields":[{"manager":"m"}],"name":"n"},"spec":{"serviceAccountName":"a/b"}}"#,
        ]
        .map(str::to_owned),
    );
    bodies
}

/// What a linker gave, comparable: the links' keys, roles, classes and uids, or the error's message.
fn outcome(result: Result<Vec<Link>, LinkError>) -> Result<Vec<String>, String> {
    result
        .map(|links| {
            links
                .iter()
                .map(|l| {
                    format!(
                        "{} {:?} {} {:?}",
                        l.object.key, l.role, l.class, l.object.uid
                    )
                })
                .collect()
        })
        .map_err(|err| err.to_string())
}

/// A rule reads only the parts of a body it names, parsed alone; it must link exactly as it does over the whole
/// parsed body, on every body and for every rule, the default ones and rules with conditions and filters that
/// read elsewhere in the body.
#[tokio::test]
async fn a_rule_links_the_same_from_what_it_reads_as_from_the_whole_body() {
    let custom = RuleSet::parse(
        r#"rules:
  - name: same-name-volumes
    match: {group: "", resource: pods, when: "$.spec.volumes[?@.name == $.metadata.name]"}
    target: {group: "", resource: configmaps, name: "$.spec.volumes[*].configMap.name"}
    role: child
  - name: anywhere
    match: {group: "", resource: pods, unless: "$..hostNetwork"}
    target: {group: "", resource: serviceaccounts, name: "$.spec.serviceAccountName"}
    role: parent
  - name: bracketed
    match: {resource: "*"}
    target: {group: "", resource: secrets, name: "$['metadata']['labels']['name']", namespace: {label: owner}}
    role: parent
"#,
        "custom.yaml",
    )
    .unwrap();
    let resources = Arc::new(ResourceMap::builtin());
    let rules: Vec<Arc<Rule>> = RuleSet::default_rules()
        .rules
        .into_iter()
        .chain(custom.rules)
        .collect();
    assert!(rules.iter().filter(|rule| rule.reads().is_some()).count() >= 10);
    assert!(rules.iter().any(|rule| rule.reads().is_none()));
    let mut compared = 0;
    let mut linked = 0;
    for text in bodies_for_rules() {
        let value: Value = serde_json::from_str(&text).unwrap();
        for rule in &rules {
            let linker = RuleLinker::new(rule.clone(), resources.clone());
            let group = rule.matcher.group.as_deref().unwrap_or("");
            let resource = rule.matcher.resource.as_deref().unwrap_or("pods");
            let key = ObjectKey::new("kind", group, resource, "default", "o");
            let parsed = Object::with_body(
                ObjectRef::new(key.clone(), "v1", None),
                Arc::new(value.clone()),
            );
            let body = Arc::new(kelemetry_core::body::Body::from_text(text.as_str()).unwrap());
            let from_text = Object::with_body(ObjectRef::new(key, "v1", None), body.clone());
            let expected = outcome(linker.link(&parsed, &NoLookup).await);
            assert_eq!(
                outcome(linker.link(&from_text, &NoLookup).await),
                expected,
                "{} on {text}",
                rule.name
            );
            assert_eq!(body.is_parsed(), linker.reads.is_none(), "{}", rule.name);
            compared += 1;
            linked += usize::from(matches!(&expected, Ok(links) if !links.is_empty()));
        }
    }
    assert!(compared > 3_000, "{compared}");
    assert!(linked > 20, "{linked}");
}
