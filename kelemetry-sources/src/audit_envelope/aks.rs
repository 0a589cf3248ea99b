//! AKS: Azure diagnostic records of the categories `kube-audit` and `kube-audit-admin`, whose `properties.log`
//! holds the apiserver's audit event (as a JSON string, or as an object), as a storage account (JSON lines),
//! Event Hubs (`{"records":[...]}`) or Log Analytics' `AzureDiagnostics` table (`Category`, `log_s`,
//! `ResourceId`) deliver them.
//!
//! An audit event without any timestamp takes the record's `time` (or `TimeGenerated`) as its stage timestamp.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Envelope, EnvelopeSkip, Enveloped, embedded_events, missing};
use crate::audit_intake::RecordRejection;

const AKS: Envelope = Envelope::Aks;

/// The audit categories; the other categories of AKS diagnostic settings (`kube-apiserver`, `guard`...) are
/// skipped.
const AUDIT_CATEGORIES: [&str; 2] = ["kube-audit", "kube-audit-admin"];

/// The first of `keys` that `object` has.
fn first<'a>(object: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|key| object.get(*key))
}

/// Whether `object` is an Azure diagnostic record: a string `category` with `properties`, `log_s` or a
/// `resourceId`.
pub(super) fn is_record(object: &Map<String, Value>) -> bool {
    first(object, &["category", "Category"]).is_some_and(Value::is_string)
        && (object.get("properties").is_some_and(Value::is_object)
            || first(
                object,
                &["log_s", "resourceId", "ResourceId", "_ResourceId"],
            )
            .is_some())
}

/// The cluster of a resource id: the segment after `managedClusters` (any case), else the last one, in lower case
/// (Azure names are case-insensitive, and diagnostic records write the id in upper case).
pub(super) fn cluster_of(resource_id: &str) -> Option<Arc<str>> {
    let segments: Vec<&str> = resource_id
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let name = segments
        .iter()
        .position(|segment| segment.eq_ignore_ascii_case("managedClusters"))
        .and_then(|at| segments.get(at + 1))
        .or(segments.last())?;
    Some(Arc::from(name.to_lowercase()))
}

/// The entries of one AKS record: its audit events, a skip for another category, or the rejection naming the
/// missing field.
pub(super) fn entries(
    object: &Map<String, Value>,
) -> Result<Vec<Enveloped<'static>>, RecordRejection> {
    let cluster = first(object, &["resourceId", "ResourceId", "_ResourceId"])
        .and_then(Value::as_str)
        .and_then(cluster_of);
    let category = first(object, &["category", "Category"])
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !AUDIT_CATEGORIES
        .iter()
        .any(|audit| category.eq_ignore_ascii_case(audit))
    {
        return Ok(vec![Enveloped::skipped(
            AKS,
            cluster,
            EnvelopeSkip::OtherLog,
        )]);
    }
    let (field, log) = match object
        .get("properties")
        .and_then(|properties| properties.get("log"))
    {
        Some(log) => ("properties.log", log),
        None => match object.get("log_s") {
            Some(log) => ("log_s", log),
            None => return Err(missing(AKS, "properties.log")),
        },
    };
    let events = match log {
        Value::String(text) => embedded_events(AKS, field, text.as_bytes())?,
        Value::Object(_) => embedded_events(AKS, field, log.to_string().as_bytes())?,
        _ => {
            return Err(super::invalid(
                AKS,
                field,
                "is neither a JSON string nor an object",
            ));
        }
    };
    let record_time = first(object, &["time", "TimeGenerated"])
        .and_then(Value::as_str)
        .and_then(|time| time.parse().ok());
    Ok(events
        .into_iter()
        .map(|event| {
            let event = super::with_fallback_time(event, record_time);
            Enveloped::event(AKS, cluster.clone(), event)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_of_resource_ids() {
        let id = "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/Prod-AKS";
        assert_eq!(cluster_of(id).as_deref(), Some("prod-aks"));
        let id = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/web";
        assert_eq!(cluster_of(id).as_deref(), Some("web"));
        assert_eq!(cluster_of("something/else").as_deref(), Some("else"));
        assert_eq!(cluster_of("//").as_deref(), None);
    }
}
