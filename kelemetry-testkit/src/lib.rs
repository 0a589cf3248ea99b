//! # kelemetry-testkit
//!
//! Test support for Kelemetry: a real Kubernetes control plane on 127.0.0.1 that a test starts, uses and tears
//! down. It drives the scripts under `scripts/cluster/` of this workspace:
//!
//! - `build` builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and kwok from their
//!   published Go modules once per version and caches them outside the work tree (a warm cache does nothing);
//! - `up` generates certificates, starts etcd, the apiserver (audit policy, audit log file, optional audit
//!   webhook), the controller manager, the scheduler and kwok with fake nodes, and waits until Pods would run;
//! - `down` stops all of it and removes the run dir.
//!
//! The API:
//! - [`TestCluster::start`] / [`TestCluster::start_with`] ([`ClusterOptions`]) start a cluster in a fresh run dir
//!   with free ports; [`TestCluster::kubeconfig`], [`TestCluster::audit_log`], [`TestCluster::apiserver_url`] say
//!   where it is; dropping the value runs `down`.
//! - [`TestCluster::shared`] starts one cluster per test binary on first use and hands every test the same one.
//!   A static is never dropped, so the cluster is given the test process's pid and a watcher beside it runs `down`
//!   as soon as the process is gone (whether the tests passed, failed or aborted).
//! - [`TestCluster::kubectl`], [`TestCluster::kubectl_json`], [`TestCluster::kubectl_with_input`] run the cached
//!   kubectl against the cluster; [`TestCluster::audit_entries`] reads the audit log; [`wait_until`] polls.
//! - [`e2e_enabled`]: tests that need a cluster run only when `KELEMETRY_E2E=1` ([`E2E_ENV`]) and otherwise print
//!   a line and return, so a plain `cargo test` on a machine without Go still passes.
//! - [`KelemetryProcess`]: a `kelemetry run` child process, started and stopped as an operator would.
//!
//! The helpers every suite needs, written once:
//! - [`fixtures`] and [`fixture`]: where the shared recorded data is (`KELEMETRY_FIXTURES`, else
//!   `../shared/fixtures`); a test without it skips itself, unless `KELEMETRY_REQUIRE_FIXTURES=1` (as in CI);
//! - [`LoopbackCertificates`]: a test CA and a serving certificate for 127.0.0.1, for TLS tests;
//! - [`http_get`] and [`http_post`]: one plain HTTP/1.1 request, for the servers the binary starts;
//! - [`TestKafka`] (module [`kafka`]): a real Apache Kafka broker on loopback (`scripts/kafka`), one per test
//!   binary, for tests gated on `KELEMETRY_KAFKA=1` ([`kafka_enabled`]);
//! - [`release_binary`] and [`fault_line`]: the release binary the fault suite attacks, and its one summary line
//!   per attack;
//! - [`scrape`]: Prometheus exposition text parsed back, and one sample's value, for the metrics tests;
//! - [`TraceOnFailure`]: when a test fails, the HTML trace of the objects it touched, written to
//!   [`artifacts_dir`] (docs/e2e-tests.md).
//!
//! ```no_run
//! use kelemetry_testkit::{TestCluster, e2e_enabled};
//!
//! # fn main() -> Result<(), kelemetry_testkit::ClusterError> {
//! if !e2e_enabled() {
//!     eprintln!("skipped: set KELEMETRY_E2E=1 to run against a test cluster");
//!     return Ok(());
//! }
//! // One cluster for every test of this binary:
//! let cluster = TestCluster::shared()?;
//! cluster.kubectl(["create", "deployment", "demo", "--image=alpine:3.16", "--replicas=2"])?;
//! let pods = cluster.kubectl_json(["get", "pods", "--selector=app=demo"])?;
//! println!("{} pods", pods["items"].as_array().map_or(0, Vec::len));
//! # Ok(())
//! # }
//! ```

mod certificates;
mod cluster;
mod error;
mod faults;
mod fixtures;
mod http;
pub mod kafka;
mod process;
pub mod scrape;
mod trace_on_failure;

pub use certificates::{CertificateError, LoopbackCertificates};
pub use cluster::{
    ClusterOptions, E2E_ENV, TestCluster, e2e_enabled, free_loopback_port, wait_until,
};
pub use error::ClusterError;
pub use faults::{BIN_ENV, FAULT_SUMMARY_ENV, fault_line, release_binary};
pub use fixtures::{FIXTURES_ENV, REQUIRE_FIXTURES_ENV, fixture, fixtures};
pub use http::{http_get, http_post};
pub use kafka::{TestKafka, kafka_enabled};
pub use process::KelemetryProcess;
pub use trace_on_failure::{ARTIFACTS_ENV, TraceOnFailure, artifacts_dir};
