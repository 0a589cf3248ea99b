//! Against a live test cluster (only with `KELEMETRY_E2E=1`): a Deployment's Pods are scheduled onto the kwok
//! nodes and reported Running, and the apiserver's audit log holds the Deployment's create.

use std::time::Duration;

use kelemetry_testkit::{ClusterError, E2E_ENV, TestCluster, e2e_enabled, wait_until};
use serde_json::Value;

const NAME: &str = "testkit-demo";

#[test]
fn deployment_pods_run_and_the_audit_log_has_the_create() -> Result<(), ClusterError> {
    if !e2e_enabled() {
        eprintln!("skipped: set {E2E_ENV}=1 to run against a test cluster (scripts/cluster)");
        return Ok(());
    }
    // The one cluster of this test binary; further tests here would share it.
    let cluster = TestCluster::shared()?;
    cluster.kubectl([
        "create",
        "deployment",
        NAME,
        "--image=alpine:3.16",
        "--replicas=2",
    ])?;

    let running = wait_until(
        "2 Running pods of the deployment",
        Duration::from_secs(90),
        || {
            let pods = cluster.kubectl_json([
                "get",
                "pods",
                "--namespace=default",
                &format!("--selector=app={NAME}"),
            ])?;
            let phases: Vec<&str> = pods["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|pod| pod["status"]["phase"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let running = phases.iter().filter(|phase| **phase == "Running").count();
            Ok((running == 2 && phases.len() == 2).then_some(running))
        },
    )?;
    assert_eq!(running, 2);

    let is_the_create = |entry: &Value| {
        entry["verb"] == "create"
            && entry["stage"] == "ResponseComplete"
            && entry["objectRef"]["resource"] == "deployments"
            && entry["objectRef"]["namespace"] == "default"
            && entry["responseObject"]["metadata"]["name"] == NAME
            && entry["responseStatus"]["code"] == 201
    };
    let create = wait_until(
        "the deployment's create in the audit log",
        Duration::from_secs(20),
        || Ok(cluster.audit_entries()?.into_iter().find(is_the_create)),
    )?;
    // Logged at level RequestResponse: the request body is there, with what kubectl sent.
    assert_eq!(create["level"], "RequestResponse");
    assert_eq!(create["requestObject"]["spec"]["replicas"], 2);
    assert_eq!(
        create["requestObject"]["spec"]["template"]["spec"]["containers"][0]["image"],
        "alpine:3.16"
    );

    cluster.kubectl([
        "delete",
        "deployment",
        NAME,
        "--namespace=default",
        "--wait=false",
    ])?;
    Ok(())
}
