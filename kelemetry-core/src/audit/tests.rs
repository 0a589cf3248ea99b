use serde_json::{Value, json};

use super::*;
use crate::activity::{Activity, ChangeKind, LogKind, SourceKind};
use crate::vocabulary;

fn event(value: Value) -> AuditEvent<'static> {
    let text = value.to_string();
    let mut events = parse_document(text.as_bytes()).expect("test event parses");
    assert_eq!(events.len(), 1);
    events.remove(0).into_owned()
}

fn base() -> Value {
    json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": "id-1",
        "stage": "ResponseComplete",
        "requestURI": "/apis/apps/v1/namespaces/default/deployments/web",
        "verb": "update",
        "user": {"username": "alice", "groups": ["devs"]},
        "sourceIPs": ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
        "userAgent": "kubectl/v1.30",
        "objectRef": {"resource": "deployments", "namespace": "default", "name": "web", "apiGroup": "apps",
                      "apiVersion": "v1", "resourceVersion": "41"},
        "responseStatus": {"metadata": {}, "code": 200},
        "responseObject": {"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "42"},
                           "spec": {"replicas": 3}},
        "requestReceivedTimestamp": "2024-05-01T12:00:00.100000Z",
        "stageTimestamp": "2024-05-01T12:00:00.250000Z"
    })
}

fn activity(value: Value) -> Activity {
    match map_event(event(value), "prod") {
        Ok(AuditOutcome::Activity(activity)) => *activity,
        other => panic!("expected an activity, got {other:?}"),
    }
}

fn skipped(value: Value) -> SkipReason {
    match map_event(event(value), "prod") {
        Ok(AuditOutcome::Skipped(reason)) => reason,
        other => panic!("expected a skip, got {other:?}"),
    }
}

#[test]
fn parses_both_versions_into_one_type() {
    let mut v1beta1 = base();
    v1beta1["apiVersion"] = json!("audit.k8s.io/v1beta1");
    v1beta1["timestamp"] = json!("2024-05-01T12:00:00Z");
    v1beta1["somethingNew"] = json!({"ignored": true});
    let parsed = event(v1beta1);
    assert_eq!(
        parsed.timestamp,
        Some("2024-05-01T12:00:00Z".parse().unwrap())
    );
    assert_eq!(parsed.level, Some(Level::RequestResponse));
    assert_eq!(parsed.stage, Some(Stage::ResponseComplete));
    assert_eq!(
        parsed.object_ref.unwrap().api_group.as_deref(),
        Some("apps")
    );
    assert!(
        parsed
            .response_object
            .unwrap()
            .get()
            .contains("\"replicas\":3")
    );
}

#[test]
fn parses_an_event_list() {
    let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
                      "items": [base(), {"auditID": "id-2", "verb": "get", "stage": "ResponseComplete"}]});
    let text = list.to_string();
    let events = parse_document(text.as_bytes()).unwrap();
    assert_eq!(
        events.iter().map(|e| &*e.audit_id).collect::<Vec<_>>(),
        ["id-1", "id-2"]
    );
    let empty =
        parse_document(br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":null}"#)
            .unwrap();
    assert!(empty.is_empty());
}

#[test]
fn null_lists_and_unknown_enum_values_are_tolerated() {
    let mut value = base();
    value["sourceIPs"] = Value::Null;
    value["annotations"] = Value::Null;
    value["level"] = json!("Verbose");
    value["user"]["groups"] = Value::Null;
    let parsed = event(value);
    assert!(parsed.source_ips.is_empty());
    assert_eq!(parsed.level, Some(Level::Unknown));
}

#[test]
fn wrong_documents_are_explained() {
    let cases: [(&[u8], &str); 6] = [
        (
            br#"{"kind": 0}"#,
            "kind 0 is not an audit Event or EventList",
        ),
        (
            br#"{"kind": "Pod", "apiVersion": "audit.k8s.io/v1"}"#,
            r#"kind "Pod" is not an audit Event or EventList"#,
        ),
        (
            br#"{"auditID": "x"}"#,
            "the document has no kind (expected an audit Event or EventList)",
        ),
        (
            br#"{"kind": "Event", "apiVersion": "v1"}"#,
            r#"apiVersion "v1" is not a version of audit.k8s.io"#,
        ),
        (br#"{"kind": "Event", "verb": "get"}"#, "missing auditID"),
        (
            br#"{"kind": "EventList", "items": [{"auditID": "a"}, {"verb": "get"}]}"#,
            "EventList item 1: missing auditID",
        ),
    ];
    for (input, message) in cases {
        let err = parse_document(input).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    let err = parse_document(b"{not json").unwrap_err();
    assert!(matches!(err, AuditParseError::Json(_)), "{err}");
    let err = parse_document(br#"{"kind":"Event","auditID":"a","stageTimestamp":"yesterday"}"#)
        .unwrap_err();
    assert!(err.to_string().starts_with("invalid audit JSON"), "{err}");
}

#[test]
fn update_maps_to_an_activity_with_attributes() {
    let a = activity(base());
    assert_eq!(a.source, SourceKind::Audit);
    assert_eq!(
        a.object.key().to_string(),
        "prod/apps/deployments/default/web"
    );
    assert_eq!(a.object.object_ref.version, "v1");
    assert_eq!(a.object.object_ref.uid.as_deref(), Some("u-1"));
    assert_eq!(a.object.body.as_ref().unwrap()["spec"]["replicas"], 3);
    assert_eq!(a.title, "alice update");
    assert_eq!(a.dedup_key, "audit:id-1");
    assert_eq!(a.start, "2024-05-01T12:00:00.1Z".parse().unwrap());
    assert_eq!(a.end, Some("2024-05-01T12:00:00.25Z".parse().unwrap()));
    for (name, value) in [
        (vocabulary::AUDIT_ID, "id-1"),
        (vocabulary::USERNAME, "alice"),
        (vocabulary::USER_AGENT, "kubectl/v1.30"),
        (vocabulary::RESPONSE_CODE, "200"),
        (vocabulary::RESOURCE_VERSION, "41"),
        (vocabulary::TAG, "update"),
        (vocabulary::SOURCE_IP, "10.0.0.1"),
        (vocabulary::PROXY, "10.0.0.2,10.0.0.3"),
    ] {
        assert_eq!(a.attribute_value(name), Some(value), "{name}");
    }
    assert_eq!(a.attribute_value(vocabulary::SUBRESOURCE), None);
    assert!(a.logs.is_empty());
    let change = a.change.unwrap();
    assert_eq!(change.kind, ChangeKind::Update);
    assert_eq!(change.old_resource_version.as_deref(), Some("41"));
    assert_eq!(change.subresource, None);
}

#[test]
fn patch_is_an_update_and_delete_a_delete() {
    let mut value = base();
    value["verb"] = json!("patch");
    assert_eq!(activity(value).change.unwrap().kind, ChangeKind::Update);
    let mut value = base();
    value["verb"] = json!("delete");
    value["responseObject"] =
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    let a = activity(value);
    assert_eq!(a.change.unwrap().kind, ChangeKind::Delete);
    assert!(a.object.body.is_none(), "a Status is not the object");
}

#[test]
fn reads_other_stages_and_non_resource_requests_are_skipped() {
    for verb in ["get", "list", "watch", "deletecollection", "proxy"] {
        let mut value = base();
        value["verb"] = json!(verb);
        assert_eq!(skipped(value), SkipReason::UnsupportedVerb);
    }
    for stage in ["RequestReceived", "ResponseStarted", "Panic"] {
        let mut value = base();
        value["stage"] = json!(stage);
        assert_eq!(skipped(value), SkipReason::IncompleteStage);
    }
    let mut value = base();
    value.as_object_mut().unwrap().remove("objectRef");
    assert_eq!(skipped(value), SkipReason::NoObjectRef);
    let mut value = base();
    value["objectRef"].as_object_mut().unwrap().remove("name");
    assert_eq!(skipped(value), SkipReason::NoObjectName);
}

#[test]
fn malformed_events_are_errors_naming_the_audit_id() {
    let cases: [(&str, Value, &str); 4] = [
        ("verb", Value::Null, "audit event id-1: missing verb"),
        (
            "stage",
            json!("Sometime"),
            "audit event id-1: missing or unknown stage",
        ),
        (
            "user",
            Value::Null,
            "audit event id-1: missing user.username",
        ),
        (
            "objectRef",
            json!({"name": "web"}),
            "audit event id-1: objectRef has no resource",
        ),
    ];
    for (field, replacement, message) in cases {
        let mut value = base();
        value[field] = replacement;
        let err = map_event(event(value), "prod").unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    let mut value = base();
    for field in ["requestReceivedTimestamp", "stageTimestamp"] {
        value.as_object_mut().unwrap().remove(field);
    }
    let err = map_event(event(value), "prod").unwrap_err();
    assert!(matches!(err, AuditMappingError::MissingTimestamp { .. }));
    let err = map_event(AuditEvent::default(), "prod").unwrap_err();
    assert_eq!(err, AuditMappingError::MissingAuditId);
}

#[test]
fn missing_response_status_is_not_an_error() {
    let mut value = base();
    value.as_object_mut().unwrap().remove("responseStatus");
    let a = activity(value);
    assert_eq!(a.attribute_value(vocabulary::RESPONSE_CODE), None);
    assert_eq!(a.title, "alice update");
}

#[test]
fn start_falls_back_to_stage_timestamp_then_v1beta1_timestamp() {
    let mut value = base();
    value
        .as_object_mut()
        .unwrap()
        .remove("requestReceivedTimestamp");
    assert_eq!(
        activity(value.clone()).start,
        "2024-05-01T12:00:00.25Z".parse().unwrap()
    );
    value.as_object_mut().unwrap().remove("stageTimestamp");
    value["timestamp"] = json!("2024-05-01T11:59:59Z");
    let a = activity(value);
    assert_eq!(a.start, "2024-05-01T11:59:59Z".parse().unwrap());
    assert_eq!(a.end, None);
}

#[test]
fn impersonation_names_the_impersonated_user() {
    let mut value = base();
    value["impersonatedUser"] = json!({"username": "bob", "groups": ["system:authenticated"]});
    let a = activity(value.clone());
    assert_eq!(a.title, "bob update");
    assert_eq!(a.attribute_value(vocabulary::USERNAME), Some("bob"));
    assert_eq!(
        a.attribute_value(vocabulary::IMPERSONATED_BY),
        Some("alice")
    );
    let mapping = AuditMapping {
        use_impersonated_user: false,
        ..AuditMapping::default()
    };
    let AuditOutcome::Activity(a) = mapping.map(event(value), "prod").unwrap() else {
        panic!()
    };
    assert_eq!(a.title, "alice update");
    assert_eq!(a.attribute_value(vocabulary::IMPERSONATED_BY), None);
}

#[test]
fn failures_get_a_status_suffix_and_error_logs() {
    let mut value = base();
    value["objectRef"]["subresource"] = json!("status");
    value["responseStatus"] = json!({
        "metadata": {}, "status": "Failure", "reason": "Invalid", "code": 422,
        "message": "Deployment.apps \"web\" is invalid",
        "details": {"name": "web", "group": "apps", "kind": "Deployment", "causes": [
            {"reason": "FieldValueInvalid", "message": "must be >= 0", "field": "spec.replicas"},
            {"type": "FieldValueRequired", "message": "required"}
        ]}
    });
    value["responseObject"] =
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "code": 422});
    let a = activity(value);
    assert_eq!(a.title, "alice update status (Unprocessable Entity)");
    assert_eq!(a.attribute_value(vocabulary::SUBRESOURCE), Some("status"));
    assert!(a.object.body.is_none());
    let logs: Vec<(LogKind, &str)> = a
        .logs
        .iter()
        .map(|l| (l.kind, l.message.as_str()))
        .collect();
    assert_eq!(
        logs,
        [
            (
                LogKind::RealError,
                "Invalid: Deployment.apps \"web\" is invalid"
            ),
            (LogKind::RealError, "FieldValueInvalid: must be >= 0"),
            (LogKind::RealError, "FieldValueRequired: required"),
        ]
    );
}

#[test]
fn titles_use_known_status_texts_or_the_code() {
    assert_eq!(
        activity_title("u", "delete", None, Some(404)),
        "u delete (Not Found)"
    );
    assert_eq!(
        activity_title("u", "update", None, Some(409)),
        "u update (Conflict)"
    );
    assert_eq!(
        activity_title("u", "create", Some(""), Some(403)),
        "u create (Forbidden)"
    );
    assert_eq!(activity_title("u", "create", None, Some(299)), "u create");
    assert_eq!(
        activity_title("u", "create", None, Some(599)),
        "u create (599)"
    );
    assert_eq!(activity_title("u", "create", None, None), "u create");
}

#[test]
fn generate_name_create_takes_identity_from_the_response() {
    let mut value = base();
    value["verb"] = json!("create");
    value["objectRef"] = json!({"resource": "pods", "namespace": "default", "apiVersion": "v1"});
    value["responseObject"] = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-x7k2p", "generateName": "web-", "namespace": "default", "uid": "u-9",
                     "resourceVersion": "7"}});
    let a = activity(value.clone());
    assert_eq!(a.object.key().to_string(), "prod//pods/default/web-x7k2p");
    assert_eq!(a.object.object_ref.uid.as_deref(), Some("u-9"));
    assert!(a.object.body.is_some());
    assert_eq!(a.change.unwrap().old_resource_version, None);

    value["level"] = json!("Metadata");
    value.as_object_mut().unwrap().remove("responseObject");
    assert_eq!(skipped(value), SkipReason::UnnamedCreate);
}

#[test]
fn only_the_object_itself_becomes_the_body() {
    // The scale subresource answers with a Scale, which is not the Deployment.
    let mut value = base();
    value["objectRef"]["subresource"] = json!("scale");
    value["responseObject"] = json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                                     "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let a = activity(value);
    assert!(a.object.body.is_none());
    assert_eq!(a.title, "alice update scale");
    // A response about another name is not this object.
    let mut value = base();
    value["responseObject"]["metadata"]["name"] = json!("other");
    assert!(activity(value).object.body.is_none());
    // The status subresource answers with the whole object.
    let mut value = base();
    value["objectRef"]["subresource"] = json!("status");
    assert!(activity(value).object.body.is_some());
}

/// The input of fuzz/regressions/audit_document/earliest-timestamp.json: a delete at the earliest time a timestamp
/// holds. Its activity lies in its window, whose start read as 1970.
#[test]
fn an_activity_at_the_earliest_time_is_in_its_window() {
    let text = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"b1","stage":"ResponseComplete","verb":"delete","user":{"username":"carol"},"objectRef":{"resource":"nodes","name":"node-1"},"requestReceivedTimestamp":"-009999-01-02T01:59:59Z"}"#;
    let mut events = parse_document(text.as_bytes()).expect("the event parses");
    let Ok(AuditOutcome::Activity(a)) = map_event(events.remove(0), "c") else {
        panic!("a delete of a node is an activity");
    };
    assert_eq!(a.start, jiff::Timestamp::MIN);
    let window = crate::Windowing::default().window_of(a.start);
    assert!(window.start() <= a.start && a.start < window.end());
    let span = crate::span::activity_span(&a, window);
    assert_eq!(
        span.trace_id,
        crate::TraceId::for_object(a.object.key(), window)
    );
}

#[test]
fn strings_and_bodies_borrow_from_the_document_unless_escaped() {
    let text = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","verb":"create",
        "user":{"username":"al\"ice","groups":["g"],"extra":{"scope":["x","y\n"]}},"sourceIPs":null,
        "annotations":{"k":"v","e\u00e9":"w"},"responseObject":{"kind":"Pod","metadata":{"name":"p"}}}"#;
    let event = parse_document(text.as_bytes()).unwrap().remove(0);
    assert!(matches!(event.audit_id, Cow::Borrowed("a")));
    assert!(matches!(event.verb, Cow::Borrowed("create")));
    let user = event.user.as_ref().unwrap();
    assert!(matches!(&user.username, Cow::Owned(name) if name == "al\"ice"));
    assert!(matches!(user.groups[..], [Cow::Borrowed("g")]));
    assert!(matches!(
        user.extra["scope"][..],
        [Cow::Borrowed("x"), Cow::Owned(_)]
    ));
    assert!(event.source_ips.is_empty());
    assert!(matches!(
        event.annotations.get("k"),
        Some(Cow::Borrowed("v"))
    ));
    assert!(matches!(
        event.annotations.get("eé"),
        Some(Cow::Borrowed("w"))
    ));
    let Some(body) = event
        .response_object
        .as_ref()
        .filter(|body| body.is_borrowed())
    else {
        panic!("the body is borrowed: {:?}", event.response_object);
    };
    assert_eq!(body.get(), r#"{"kind":"Pod","metadata":{"name":"p"}}"#);

    // The owned event holds the same, and maps the same.
    let owned: AuditEvent<'static> = event.clone().into_owned();
    assert!(matches!(owned.audit_id, Cow::Owned(_)));
    assert_eq!(owned.user, event.user);
    assert_eq!(owned.annotations, event.annotations);
    assert_eq!(
        owned.response_object.as_ref().map(RawBody::get),
        Some(body.get())
    );
    assert_eq!(
        map_event(owned, "c").map_err(|e| e.to_string()),
        map_event(event, "c").map_err(|e| e.to_string())
    );
}

#[test]
fn string_maps_and_lists_refuse_other_values() {
    for bad in [
        r#""annotations":{"k":1}"#,
        r#""annotations":["k"]"#,
        r#""sourceIPs":[1]"#,
        r#""user":{"username":"u","extra":{"k":"v"}}"#,
        r#""user":{"username":"u","extra":{"k":null}}"#,
    ] {
        let text =
            format!(r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a",{bad}}}"#);
        let error = parse_document(text.as_bytes()).unwrap_err();
        assert!(matches!(error, AuditParseError::Json(_)), "{bad}: {error}");
    }
}
