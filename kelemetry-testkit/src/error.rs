//! Errors of the test cluster.

use std::io;
use std::path::PathBuf;

/// What went wrong while starting, using or stopping a [`TestCluster`](crate::TestCluster).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A script or kubectl could not be started at all.
    #[error("could not run {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: io::Error,
    },
    /// A script or kubectl ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of what it printed on stderr (or "see the output above" when stderr was not captured).
        stderr: String,
    },
    /// A file of the cluster (its env file, its audit log) could not be read.
    #[error("could not read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The cluster's env file lacks a key that `scripts/cluster/up` always writes.
    #[error("{path} has no {key}= line")]
    MissingKey {
        /// The env file.
        path: PathBuf,
        /// The missing key.
        key: &'static str,
    },
    /// Output that should be JSON is not.
    #[error("{what} is not JSON: {source}")]
    Json {
        /// Where the text came from (a command line, or file:line).
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A condition polled with [`wait_until`](crate::wait_until) did not hold in time.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        seconds: u64,
    },
    /// A service that should be running does not accept connections.
    #[error("{what} at {address} is unreachable: {detail}")]
    Unreachable {
        /// The service.
        what: String,
        /// Its address.
        address: String,
        /// Why connecting failed.
        detail: String,
    },
    /// The Kafka broker shared by this test binary could not be started or reached (the first caller saw the full
    /// error).
    #[error("the shared test Kafka is not there: {0}")]
    SharedKafka(String),
    /// The cluster shared by this test binary failed to start (the first caller saw the full error).
    #[error("the shared test cluster could not start: {0}")]
    SharedStart(String),
}
