//! A real Jaeger v2 for tests, started and stopped through `scripts/jaeger/{up,down}` (which build it from its Go
//! module when it is not cached). Tests that use it run only when `KELEMETRY_JAEGER=1`; otherwise they print why
//! and return.
//!
//! Shared by the Jaeger tests of several crates (included with `#[path]`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the Jaeger tests should run; prints a line saying why not when they should not.
pub(crate) fn enabled(test: &str) -> bool {
    if std::env::var("KELEMETRY_JAEGER").as_deref() == Ok("1") {
        return true;
    }
    println!(
        "{test}: skipped, set KELEMETRY_JAEGER=1 to run it against a real Jaeger (scripts/jaeger/build)"
    );
    false
}

/// The workspace root (this file's crate is one level below it).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// One running Jaeger; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Jaeger {
    /// The `--name` of its run dir.
    pub(crate) name: String,
    /// The `--remote-storage` address it reads from, if any.
    pub(crate) remote_storage: Option<String>,
    ports: HashMap<String, String>,
}

fn script(name: &str) -> PathBuf {
    workspace_root().join("scripts/jaeger").join(name)
}

fn run_dir(name: &str) -> PathBuf {
    let base =
        std::env::var("KELEMETRY_JAEGER_RUN").unwrap_or_else(|_| "/tmp/kelemetry-jaeger".into());
    PathBuf::from(format!("{base}-{name}"))
}

impl Jaeger {
    /// Starts a Jaeger with in-memory storage in its own run dir `name` (stopping one left over there).
    pub(crate) fn start(name: &str) -> Self {
        Self::start_with(name, None)
    }

    /// Starts a Jaeger whose query side reads from the remote storage service at `address`.
    pub(crate) fn start_with(name: &str, remote_storage: Option<&str>) -> Self {
        let _ = Command::new(script("down")).args(["--name", name]).status();
        let mut jaeger = Self {
            name: name.to_owned(),
            remote_storage: remote_storage.map(str::to_owned),
            ports: HashMap::new(),
        };
        jaeger.up(false);
        jaeger
    }

    fn up(&mut self, keep_ports: bool) {
        let mut command = Command::new(script("up"));
        command.args(["--name", &self.name]);
        if let Some(address) = &self.remote_storage {
            command.args(["--remote-storage", address]);
        }
        if keep_ports {
            command.arg("--keep-ports");
        }
        let status = command.status().expect("scripts/jaeger/up runs");
        assert!(
            status.success(),
            "scripts/jaeger/up --name {} failed",
            self.name
        );
        let env = std::fs::read_to_string(run_dir(&self.name).join("ports.env"))
            .expect("ports.env written by up");
        self.ports = env
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    }

    /// Stops it (the ports stay reserved in its run dir for [`Jaeger::restart`]).
    pub(crate) fn stop(&self) {
        let status = Command::new(script("down"))
            .args(["--name", &self.name])
            .status()
            .expect("down runs");
        assert!(status.success());
    }

    /// Starts it again on the same ports (its in-memory storage starts empty).
    pub(crate) fn restart(&mut self) {
        self.up(true);
    }

    fn port(&self, name: &str) -> &str {
        self.ports
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{name} missing in ports.env"))
    }

    /// `http://127.0.0.1:P` of the OTLP/gRPC receiver.
    pub(crate) fn otlp_grpc(&self) -> String {
        format!("http://{}", self.port("JAEGER_OTLP_GRPC"))
    }

    /// `http://127.0.0.1:P` of the OTLP/HTTP receiver.
    pub(crate) fn otlp_http(&self) -> String {
        format!("http://{}", self.port("JAEGER_OTLP_HTTP"))
    }

    /// `http://127.0.0.1:P` of Jaeger Query's HTTP API.
    pub(crate) fn query_http(&self) -> String {
        format!("http://{}", self.port("JAEGER_QUERY_HTTP"))
    }

    /// The tail of its log, for assertion messages.
    pub(crate) fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(run_dir(&self.name).join("jaeger.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = Command::new(script("down"))
            .args(["--name", &self.name])
            .status();
    }
}
