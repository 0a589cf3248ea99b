//! What the Helm chart's tests share: the cached helm binary (`scripts/helm/build`), rendering the chart
//! `deploy/helm/kelemetry`, reading the rendered manifests, and the `kelemetry run` file the chart renders.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The root of the workspace.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kelemetry-cli sits in the workspace")
        .to_path_buf()
}

/// The chart's folder.
pub(crate) fn chart() -> PathBuf {
    workspace().join("deploy/helm/kelemetry")
}

/// The helm binary, built from its Go module and cached (`scripts/helm/build`; a warm cache builds nothing), with
/// its cache, configuration and data folders in a temporary folder of its own.
pub(crate) struct Helm {
    binary: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    /// Builds helm if the cache lacks it; panics with the script's output when that fails.
    pub(crate) fn new() -> Self {
        let script = workspace().join("scripts/helm/build");
        let built = Command::new(&script)
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|err| panic!("{}: {err}", script.display()));
        assert!(built.success(), "{} failed: {built}", script.display());
        let printed = Command::new(&script).arg("--print-bin").output().unwrap();
        let binary = PathBuf::from(String::from_utf8_lossy(&printed.stdout).trim());
        assert!(binary.is_file(), "no helm at {}", binary.display());
        Self {
            binary,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `helm ARGS`: whether it succeeded, its standard output and its standard error.
    pub(crate) fn run<I, S>(&self, args: I) -> (bool, String, String)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let home = self.home.path();
        let out = Command::new(&self.binary)
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("{}: {err}", self.binary.display()));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `helm template RELEASE CHART --namespace NAMESPACE --set KEY=VALUE...`; panics with helm's error on failure.
    pub(crate) fn render(&self, release: &str, namespace: &str, sets: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(template_args(release, namespace, sets));
        assert!(ok, "helm template {sets:?} failed:\n{stderr}");
        stdout
    }

    /// Like [`Helm::render`], for a render that must fail: helm's error.
    pub(crate) fn render_error(&self, release: &str, namespace: &str, sets: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(template_args(release, namespace, sets));
        assert!(!ok, "helm template {sets:?} succeeded:\n{stdout}");
        stderr
    }
}

fn template_args(release: &str, namespace: &str, sets: &[&str]) -> Vec<String> {
    let mut args = vec![
        "template".to_owned(),
        release.to_owned(),
        chart().display().to_string(),
        "--namespace".to_owned(),
        namespace.to_owned(),
    ];
    for set in sets {
        args.push("--set".to_owned());
        args.push((*set).to_owned());
    }
    args
}

/// The manifests of a multi-document YAML text, as JSON values (empty documents left out).
pub(crate) fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|document| {
            let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(document).unwrap();
            serde_json::to_value(value).unwrap()
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// The manifest of `kind` named `name`; panics naming what there is when there is none.
pub(crate) fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", kinds_and_names(documents)))
}

/// `Kind/name` of every manifest, in order.
pub(crate) fn kinds_and_names(documents: &[Value]) -> Vec<String> {
    documents
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// The `kelemetry run` file of the release's ConfigMap, parsed.
pub(crate) fn run_config(documents: &[Value], release: &str) -> serde_yaml_ng::Value {
    let text =
        find(documents, "ConfigMap", &format!("{release}-kelemetry"))["data"]["kelemetry.yaml"]
            .as_str()
            .expect("the ConfigMap holds kelemetry.yaml");
    serde_yaml_ng::from_str(text).unwrap()
}

/// The value of `key` in the Secret `name` (`data` base64-decoded, or `stringData`).
pub(crate) fn secret_value(documents: &[Value], name: &str, key: &str) -> String {
    let secret = find(documents, "Secret", name);
    if let Some(text) = secret["stringData"][key].as_str() {
        return text.to_owned();
    }
    let encoded = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("Secret {name} has no {key}"));
    String::from_utf8(base64_decode(encoded)).unwrap()
}

/// Standard base64 (with padding), as Kubernetes writes Secret data.
pub(crate) fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap_or_else(|err| panic!("not base64 ({err}): {text:?}"))
}
