//! The test cluster: start through `scripts/cluster/{build,up}`, use through kubectl, stop through `down`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::ClusterError;

/// The environment variable that turns on tests against a live cluster: they run when it is `1`.
pub const E2E_ENV: &str = "KELEMETRY_E2E";

/// Environment variable naming the folder of the cluster scripts, for a testkit used outside this workspace.
const SCRIPTS_ENV: &str = "KELEMETRY_CLUSTER_SCRIPTS";

/// How much of a failed command's stderr an error keeps (its end, where the reason usually is).
const STDERR_TAIL_BYTES: usize = 4000;

/// Whether tests against a live cluster should run (`KELEMETRY_E2E=1`).
pub fn e2e_enabled() -> bool {
    std::env::var(E2E_ENV).is_ok_and(|value| value == "1")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it), for example for an audit webhook
/// receiver that the apiserver of a [`TestCluster`] should send to.
pub fn free_loopback_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Polls `check` every 250 ms until it returns `Some`, an error, or `timeout` passes
/// ([`ClusterError::Timeout`] naming `what`).
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, ClusterError>,
) -> Result<T, ClusterError> {
    let started = Instant::now();
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if started.elapsed() >= timeout {
            return Err(ClusterError::Timeout {
                what: what.to_owned(),
                seconds: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// How to start a [`TestCluster`]. The default: no audit webhook, two fake nodes, run dir removed on stop.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Where the apiserver sends audit event batches (a loopback URL such as
    /// `http://127.0.0.1:PORT/audit/tracetest`); `None` starts the apiserver without a webhook backend. The
    /// audit log file is always written.
    pub audit_webhook_url: Option<String>,
    /// Bearer token the apiserver sends to the webhook; needs an `https://` URL (client-go sends no credentials
    /// over plain http, and `up` refuses the combination).
    pub audit_webhook_token: Option<String>,
    /// PEM file of the CA that signed an `https://` webhook's serving certificate.
    pub audit_webhook_ca_file: Option<PathBuf>,
    /// How many kwok-managed fake nodes to create (`None`: 2).
    pub fake_nodes: Option<u32>,
    /// Keep the run dir (logs, audit log, certificates) after stopping, for a look after a failure.
    pub keep_run_dir: bool,
    /// An OTLP gRPC `host:port` (a test Jaeger's) the kube-apiserver sends its own spans to, every request
    /// sampled; `None`: no apiserver tracing.
    pub apiserver_tracing: Option<String>,
}

/// A running Kubernetes control plane on 127.0.0.1 (see the crate doc). Dropping it stops the cluster.
#[derive(Debug)]
pub struct TestCluster {
    scripts: PathBuf,
    run_dir: PathBuf,
    kubeconfig: PathBuf,
    audit_log: PathBuf,
    apiserver_url: String,
    kubectl: PathBuf,
    kube_version: String,
    keep_run_dir: bool,
}

static SHARED: OnceLock<Result<TestCluster, String>> = OnceLock::new();
static RUN_DIR_COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestCluster {
    /// Builds the binaries if the cache lacks them, then starts a cluster with [`ClusterOptions::default`] in a
    /// fresh run dir under the temp dir. Takes some seconds with a warm cache; a cold build takes many minutes.
    pub fn start() -> Result<Self, ClusterError> {
        Self::start_with(ClusterOptions::default())
    }

    /// Like [`TestCluster::start`], with options.
    pub fn start_with(options: ClusterOptions) -> Result<Self, ClusterError> {
        let scripts = scripts_dir();
        run_script(&scripts.join("build"), &[])?;

        let run_dir = std::env::temp_dir().join(format!(
            "kelemetry-cluster-{}-{}",
            std::process::id(),
            RUN_DIR_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let owner_pid = std::process::id().to_string();
        let mut env: Vec<(&str, String)> = vec![
            ("KELEMETRY_RUN", run_dir.display().to_string()),
            ("KELEMETRY_OWNER_PID", owner_pid),
            (
                "KELEMETRY_AUDIT_WEBHOOK_URL",
                options
                    .audit_webhook_url
                    .clone()
                    .unwrap_or_else(|| "off".to_owned()),
            ),
        ];
        if let Some(token) = &options.audit_webhook_token {
            env.push(("KELEMETRY_AUDIT_WEBHOOK_TOKEN", token.clone()));
        }
        if let Some(ca_file) = &options.audit_webhook_ca_file {
            env.push((
                "KELEMETRY_AUDIT_WEBHOOK_CA_FILE",
                ca_file.display().to_string(),
            ));
        }
        if let Some(endpoint) = &options.apiserver_tracing {
            env.push(("KELEMETRY_APISERVER_TRACING", endpoint.clone()));
        }
        if let Some(nodes) = options.fake_nodes {
            env.push(("KELEMETRY_FAKE_NODES", nodes.to_string()));
        }
        if let Err(error) = run_script(&scripts.join("up"), &env) {
            // `up` stops what it started when it fails; remove the run dir unless asked to keep it.
            if !options.keep_run_dir {
                let _ = std::fs::remove_dir_all(&run_dir);
            }
            return Err(error);
        }

        let env_file = run_dir.join("cluster.env");
        let values = read_env_file(&env_file)?;
        let value = |key: &'static str| {
            values
                .get(key)
                .cloned()
                .ok_or_else(|| ClusterError::MissingKey {
                    path: env_file.clone(),
                    key,
                })
        };
        Ok(Self {
            kubeconfig: PathBuf::from(value("KUBECONFIG")?),
            audit_log: PathBuf::from(value("AUDIT_LOG")?),
            apiserver_url: value("APISERVER_URL")?,
            kubectl: PathBuf::from(value("KUBECTL")?),
            kube_version: value("KUBE_VERSION")?,
            run_dir,
            scripts,
            keep_run_dir: options.keep_run_dir,
        })
    }

    /// The one cluster of this test binary, started with [`ClusterOptions::default`] by the first caller; every
    /// later caller (any thread) gets the same. It stops when the test process exits (see the crate doc).
    pub fn shared() -> Result<&'static TestCluster, ClusterError> {
        match SHARED.get_or_init(|| Self::start().map_err(|error| error.to_string())) {
            Ok(cluster) => Ok(cluster),
            Err(message) => Err(ClusterError::SharedStart(message.clone())),
        }
    }

    /// The admin kubeconfig (a `system:masters` client certificate, the CA embedded), for kubectl and kube-rs.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The apiserver's audit log (JSON lines, one `audit.k8s.io/v1` Event each).
    pub fn audit_log(&self) -> &Path {
        &self.audit_log
    }

    /// The apiserver's URL, `https://127.0.0.1:PORT`.
    pub fn apiserver_url(&self) -> &str {
        &self.apiserver_url
    }

    /// The run dir: certificates, configs, etcd data, each component's log under `logs/`.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The Kubernetes release the control plane was built from, e.g. `v1.34.4`.
    pub fn kube_version(&self) -> &str {
        &self.kube_version
    }

    /// The original kelemetry's `e2e/deployment` scenario, with `pause` between its steps: create the Deployment
    /// `default/demo` with 2 replicas, scale it to 4, give it a new image, scale it to 2, delete it.
    pub fn deployment_scenario(&self, pause: std::time::Duration) -> Result<(), ClusterError> {
        let steps: [&[&str]; 5] = [
            &[
                "create",
                "deployment",
                "demo",
                "--image=alpine:3.16",
                "--replicas=2",
            ],
            &["scale", "deployment", "demo", "--replicas=4"],
            &["set", "image", "deployment/demo", "alpine=alpine:3.17"],
            &["scale", "deployment", "demo", "--replicas=2"],
            &["delete", "deployment", "demo"],
        ];
        for (n, step) in steps.iter().enumerate() {
            if n > 0 {
                std::thread::sleep(pause);
            }
            self.kubectl(step.iter())?;
        }
        Ok(())
    }

    /// Runs kubectl with `args` against this cluster and returns its stdout.
    pub fn kubectl<I, S>(&self, args: I) -> Result<String, ClusterError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_kubectl(args, None)
    }

    /// The holder of the `coordination.k8s.io` Lease `namespace/name`: `None` while there is no such Lease, or it
    /// has no holder (released).
    pub fn lease_holder(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, ClusterError> {
        let selector = format!("--field-selector=metadata.name={name}");
        let list = self.kubectl_json([
            "get",
            "leases.coordination.k8s.io",
            "-n",
            namespace,
            &selector,
        ])?;
        Ok(list["items"][0]["spec"]["holderIdentity"]
            .as_str()
            .filter(|holder| !holder.is_empty())
            .map(str::to_owned))
    }

    /// Runs kubectl with `args` and `--output=json` and parses what it prints.
    pub fn kubectl_json<I, S>(&self, args: I) -> Result<serde_json::Value, ClusterError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> = args
            .into_iter()
            .map(|arg| arg.as_ref().to_owned())
            .chain(std::iter::once("--output=json".into()))
            .collect();
        let what = format!("the output of kubectl {}", display_args(&args));
        let text = self.run_kubectl(&args, None)?;
        serde_json::from_str(&text).map_err(|source| ClusterError::Json { what, source })
    }

    /// Runs kubectl with `args`, writing `input` to its stdin (for `apply -f -`), and returns its stdout.
    pub fn kubectl_with_input<I, S>(&self, args: I, input: &str) -> Result<String, ClusterError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_kubectl(args, Some(input))
    }

    /// Every entry of the audit log so far, parsed. A line that is not JSON is an error naming file and line.
    pub fn audit_entries(&self) -> Result<Vec<serde_json::Value>, ClusterError> {
        let text =
            std::fs::read_to_string(&self.audit_log).map_err(|source| ClusterError::Read {
                path: self.audit_log.clone(),
                source,
            })?;
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(index, line)| {
                serde_json::from_str(line).map_err(|source| ClusterError::Json {
                    what: format!("{}:{}", self.audit_log.display(), index + 1),
                    source,
                })
            })
            .collect()
    }

    /// Stops the cluster now (what dropping it does), reporting a failure of `down`.
    pub fn stop(mut self) -> Result<(), ClusterError> {
        let result = self.run_down();
        // Already stopped: make the drop a no-op.
        self.run_dir = PathBuf::new();
        result
    }

    fn run_down(&self) -> Result<(), ClusterError> {
        if self.run_dir.as_os_str().is_empty() {
            return Ok(());
        }
        let mut command = Command::new(self.scripts.join("down"));
        command.env("KELEMETRY_RUN", &self.run_dir);
        if self.keep_run_dir {
            command.arg("--keep");
        }
        run_command(
            command,
            "scripts/cluster/down".to_owned(),
            None,
            StderrTo::Inherit,
        )?;
        Ok(())
    }

    fn run_kubectl<I, S>(&self, args: I, input: Option<&str>) -> Result<String, ClusterError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> = args
            .into_iter()
            .map(|arg| arg.as_ref().to_owned())
            .collect();
        let mut command = Command::new(&self.kubectl);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(&args);
        run_command(
            command,
            format!("kubectl {}", display_args(&args)),
            input,
            StderrTo::Capture,
        )
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Err(error) = self.run_down() {
            eprintln!(
                "kelemetry-testkit: stopping the test cluster in {} failed: {error}",
                self.run_dir.display()
            );
        }
    }
}

/// `scripts/cluster` of this workspace, or `$KELEMETRY_CLUSTER_SCRIPTS`.
fn scripts_dir() -> PathBuf {
    match std::env::var_os(SCRIPTS_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster"),
    }
}

/// Runs a cluster script with extra environment; its stderr (progress, build output) goes to the test's stderr.
fn run_script(script: &Path, env: &[(&str, String)]) -> Result<String, ClusterError> {
    let mut command = Command::new(script);
    command.envs(env.iter().map(|(key, value)| (*key, value)));
    run_command(
        command,
        script.display().to_string(),
        None,
        StderrTo::Inherit,
    )
}

/// Where a command's stderr goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StderrTo {
    /// Kept, for the error when the command fails.
    Capture,
    /// Shown as it comes (build progress, cluster logs).
    Inherit,
}

/// Runs `command`, feeding `input` to its stdin, and returns its stdout; a non-zero exit is an error carrying the
/// end of its stderr (when captured).
pub(crate) fn run_command(
    mut command: Command,
    display: String,
    input: Option<&str>,
    stderr: StderrTo,
) -> Result<String, ClusterError> {
    command.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped());
    command.stderr(match stderr {
        StderrTo::Capture => Stdio::piped(),
        StderrTo::Inherit => Stdio::inherit(),
    });
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(source) => {
            return Err(ClusterError::Spawn {
                command: display,
                source,
            });
        }
    };
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|source| ClusterError::Spawn {
                command: display.clone(),
                source,
            })?;
    }
    let output = child
        .wait_with_output()
        .map_err(|source| ClusterError::Spawn {
            command: display.clone(),
            source,
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let captured = String::from_utf8_lossy(&output.stderr);
    let stderr = if captured.trim().is_empty() {
        "see its output above".to_owned()
    } else {
        let start = captured.len().saturating_sub(STDERR_TAIL_BYTES);
        let start = (start..captured.len())
            .find(|at| captured.is_char_boundary(*at))
            .unwrap_or(0);
        captured[start..].trim().to_owned()
    };
    Err(ClusterError::CommandFailed {
        command: display,
        status: output.status.to_string(),
        stderr,
    })
}

/// Parses the `KEY=VALUE` lines that `scripts/cluster/up` writes.
fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, ClusterError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClusterError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(parse_env(&text))
}

pub(crate) fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.to_owned()))
        .collect()
}

fn display_args(args: &[std::ffi::OsString]) -> String {
    args.iter()
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_parse_into_keys_and_values() {
        let values = parse_env(
            "# comment\nKUBECONFIG=/run/kubeconfig\nAPISERVER_URL=https://127.0.0.1:1234\nnoise\n",
        );
        assert_eq!(
            values.get("KUBECONFIG").map(String::as_str),
            Some("/run/kubeconfig")
        );
        assert_eq!(
            values.get("APISERVER_URL").map(String::as_str),
            Some("https://127.0.0.1:1234")
        );
        assert_eq!(values.len(), 2);
    }

    #[test]
    fn wait_until_returns_the_value_or_times_out() {
        let mut calls = 0;
        let value = wait_until("the third call", Duration::from_secs(5), || {
            calls += 1;
            Ok((calls == 3).then_some(calls))
        });
        assert_eq!(value.ok(), Some(3));
        let timed_out = wait_until::<()>("never", Duration::from_millis(300), || Ok(None));
        assert!(
            matches!(timed_out, Err(ClusterError::Timeout { ref what, .. }) if what == "never")
        );
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo oops >&2; exit 3"]);
        let error = run_command(command, "sh -c oops".to_owned(), None, StderrTo::Capture);
        match error {
            Err(ClusterError::CommandFailed {
                command, stderr, ..
            }) => {
                assert_eq!(command, "sh -c oops");
                assert_eq!(stderr, "oops");
            }
            other => panic!("expected CommandFailed, got {other:?}"),
        }
        let mut echo = Command::new("cat");
        echo.arg("-");
        let output = run_command(echo, "cat".to_owned(), Some("hello"), StderrTo::Capture);
        assert_eq!(output.ok().as_deref(), Some("hello"));
    }

    #[test]
    fn a_free_loopback_port_can_be_bound() {
        // Between the probe and the bind another process may take the port (an outgoing connection of a cluster
        // still shutting down uses the same ephemeral range), so a few tries are allowed; a broken probe fails all.
        let bound = (0..5).any(|_| {
            free_loopback_port().is_ok_and(|port| {
                port != 0 && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
            })
        });
        assert!(bound);
    }

    #[test]
    fn the_scripts_pick_distinct_ports_in_their_range() {
        // One call of free_ports must never hand out a port twice (the services bind them all at once); half of a
        // 100-port range makes a repeat near certain if the check is broken.
        let lib = scripts_dir().join("../lib/ports.sh");
        let mut command = Command::new("bash");
        command.arg("-c").arg(format!(
            "set -eu; source '{}'; free_ports 16000 16100 50; echo \"${{FREE_PORTS[*]}}\"",
            lib.display()
        ));
        let output = run_command(command, "free_ports".to_owned(), None, StderrTo::Capture)
            .expect("free_ports runs");
        let ports: Vec<u16> = output
            .split_whitespace()
            .map(|port| port.parse().expect("a port number"))
            .collect();
        assert_eq!(ports.len(), 50, "{output}");
        assert!(
            ports.iter().all(|port| (16000..16100).contains(port)),
            "{output}"
        );
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), 50, "{output}");
    }
}
