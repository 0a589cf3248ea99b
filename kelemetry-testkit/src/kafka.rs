//! A real Apache Kafka for tests, through `scripts/kafka/{build,up,down}`: one KRaft node (broker and controller)
//! on 127.0.0.1 from the jars `build` caches from Maven Central.
//!
//! Tests that need Kafka run only when `KELEMETRY_KAFKA=1` ([`KAFKA_ENV`], [`kafka_enabled`]); once it is set, a
//! broker that cannot be started or reached fails the test instead of skipping it. [`TestKafka::shared`] gives
//! every test of a test binary the same broker: the one named by `KELEMETRY_KAFKA_BOOTSTRAP`
//! ([`KAFKA_BOOTSTRAP_ENV`], e.g. one started by hand with `scripts/kafka/up`), else one it starts on first use in
//! a fresh run dir, which a watcher stops as soon as the test process is gone (passed, failed or aborted).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::cluster::{StderrTo, parse_env, run_command};
use crate::error::ClusterError;

/// The environment variable that turns on tests against a real Kafka: they run when it is `1`.
pub const KAFKA_ENV: &str = "KELEMETRY_KAFKA";

/// The environment variable naming a running broker (`host:port`) to use instead of starting one.
pub const KAFKA_BOOTSTRAP_ENV: &str = "KELEMETRY_KAFKA_BOOTSTRAP";

/// The environment variable naming the SASL_PLAINTEXT (PLAIN) listener of the broker named by
/// [`KAFKA_BOOTSTRAP_ENV`], whose user is [`SASL_USER`] with [`SASL_PASSWORD`] (as `scripts/kafka/up` makes it).
pub const KAFKA_SASL_BOOTSTRAP_ENV: &str = "KELEMETRY_KAFKA_SASL_BOOTSTRAP";

/// The user of the SASL listener `scripts/kafka/up` opens.
pub const SASL_USER: &str = "kelemetry";

/// The password of [`SASL_USER`].
pub const SASL_PASSWORD: &str = "kelemetry-test";

/// How long connecting to the broker may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether tests against a real Kafka should run (`KELEMETRY_KAFKA=1`).
pub fn kafka_enabled() -> bool {
    std::env::var(KAFKA_ENV).is_ok_and(|value| value == "1")
}

/// A Kafka broker for tests (see the module documentation). Dropping one that this value started stops it.
#[derive(Debug)]
pub struct TestKafka {
    bootstrap: String,
    /// The SASL_PLAINTEXT listener (PLAIN, [`SASL_USER`] / [`SASL_PASSWORD`]), when known.
    sasl_bootstrap: Option<String>,
    /// The run dir of a broker this value started (`None` for one named by [`KAFKA_BOOTSTRAP_ENV`]).
    run_dir: Option<PathBuf>,
}

static SHARED: OnceLock<Result<TestKafka, String>> = OnceLock::new();
static RUN_DIR_COUNTER: AtomicU32 = AtomicU32::new(0);

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka")
}

impl TestKafka {
    /// Fetches the jars if the cache lacks them, then starts a broker on free ports in a fresh run dir under the
    /// temp dir and waits until it serves (some seconds; a cold cache first downloads about 45 MiB of jars).
    pub fn start() -> Result<Self, ClusterError> {
        let scripts = scripts_dir();
        let run_dir = std::env::temp_dir().join(format!(
            "kelemetry-kafka-{}-{}",
            std::process::id(),
            RUN_DIR_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut command = Command::new(scripts.join("up"));
        command
            .env("KELEMETRY_KAFKA_RUN", &run_dir)
            .env("KELEMETRY_OWNER_PID", std::process::id().to_string());
        let printed = run_command(
            command,
            "scripts/kafka/up".to_owned(),
            None,
            StderrTo::Inherit,
        )?;
        let values = parse_env(&printed);
        let bootstrap =
            values
                .get("KAFKA_BOOTSTRAP")
                .cloned()
                .ok_or_else(|| ClusterError::MissingKey {
                    path: run_dir.join("kafka.env"),
                    key: "KAFKA_BOOTSTRAP",
                })?;
        let kafka = Self {
            bootstrap,
            sasl_bootstrap: values.get("KAFKA_SASL_BOOTSTRAP").cloned(),
            run_dir: Some(run_dir),
        };
        kafka.check_reachable()?;
        Ok(kafka)
    }

    /// The broker of this test binary: the one named by `KELEMETRY_KAFKA_BOOTSTRAP`, else one started by the
    /// first caller ([`TestKafka::start`]). Either way it must answer a TCP connection, or this is an error.
    pub fn shared() -> Result<&'static TestKafka, ClusterError> {
        let shared = SHARED.get_or_init(|| {
            let kafka = match std::env::var(KAFKA_BOOTSTRAP_ENV) {
                Ok(bootstrap) if !bootstrap.trim().is_empty() => {
                    let kafka = Self {
                        bootstrap: bootstrap.trim().to_owned(),
                        sasl_bootstrap: std::env::var(KAFKA_SASL_BOOTSTRAP_ENV)
                            .ok()
                            .map(|sasl| sasl.trim().to_owned())
                            .filter(|sasl| !sasl.is_empty()),
                        run_dir: None,
                    };
                    kafka.check_reachable().map(|()| kafka)
                }
                _ => Self::start(),
            };
            kafka.map_err(|error| error.to_string())
        });
        match shared {
            Ok(kafka) => Ok(kafka),
            Err(message) => Err(ClusterError::SharedKafka(message.clone())),
        }
    }

    /// The bootstrap address, `127.0.0.1:PORT` (or what `KELEMETRY_KAFKA_BOOTSTRAP` says).
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The address of the broker's SASL_PLAINTEXT listener, which takes the PLAIN mechanism with [`SASL_USER`]
    /// and [`SASL_PASSWORD`]: always there on a broker this value started, from `KELEMETRY_KAFKA_SASL_BOOTSTRAP`
    /// otherwise.
    pub fn sasl_bootstrap(&self) -> Option<&str> {
        self.sasl_bootstrap.as_deref()
    }

    /// The run dir (config, data, `kafka.log`) of a broker this value started.
    pub fn run_dir(&self) -> Option<&Path> {
        self.run_dir.as_deref()
    }

    /// The last `lines` lines of the broker's log (empty for a broker this value did not start), for assertion
    /// messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let Some(run_dir) = &self.run_dir else {
            return String::new();
        };
        let log = std::fs::read_to_string(run_dir.join("kafka.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The first bootstrap address must accept a TCP connection.
    fn check_reachable(&self) -> Result<(), ClusterError> {
        let first = self.bootstrap.split(',').next().unwrap_or_default().trim();
        let unreachable = |detail: String| ClusterError::Unreachable {
            what: "the Kafka broker".to_owned(),
            address: first.to_owned(),
            detail,
        };
        let addresses: Vec<SocketAddr> = first
            .to_socket_addrs()
            .map_err(|err| unreachable(err.to_string()))?
            .collect();
        let mut last = String::from("no address");
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(_) => return Ok(()),
                Err(err) => last = err.to_string(),
            }
        }
        Err(unreachable(last))
    }

    /// Stops a broker this value started (what dropping it does), reporting a failure of `down`.
    pub fn stop(mut self) -> Result<(), ClusterError> {
        self.run_down()
    }

    fn run_down(&mut self) -> Result<(), ClusterError> {
        let Some(run_dir) = self.run_dir.take() else {
            return Ok(());
        };
        let mut command = Command::new(scripts_dir().join("down"));
        command.env("KELEMETRY_KAFKA_RUN", &run_dir);
        run_command(
            command,
            "scripts/kafka/down".to_owned(),
            None,
            StderrTo::Inherit,
        )
        .map(drop)
    }
}

impl Drop for TestKafka {
    fn drop(&mut self) {
        if let Err(error) = self.run_down() {
            eprintln!("kelemetry-testkit: stopping the test Kafka failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_nobody_listens_on_is_unreachable() {
        let port = crate::free_loopback_port().unwrap();
        let kafka = TestKafka {
            bootstrap: format!("127.0.0.1:{port},127.0.0.1:1"),
            sasl_bootstrap: None,
            run_dir: None,
        };
        let error = kafka.check_reachable().unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "the Kafka broker at 127.0.0.1:{port} is unreachable"
            )),
            "{error}"
        );
    }
}
