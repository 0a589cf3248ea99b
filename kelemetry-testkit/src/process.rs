//! [`KelemetryProcess`]: a `kelemetry run` child process for end-to-end tests.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A `kelemetry run --config FILE` child process, killed on drop. Test support: it panics, with what the process
/// printed, when the process does not start, fails or does not stop.
#[derive(Debug)]
pub struct KelemetryProcess {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl KelemetryProcess {
    /// Starts `binary run --config CONFIG` with `KELEMETRY_LOG` set to `log` and waits (60 s at most) until it says
    /// `kelemetry: running`.
    pub fn start(binary: &Path, config: &Path, log: &str) -> Self {
        let mut child = Command::new(binary)
            .args(["run", "--config"])
            .arg(config)
            .env("KELEMETRY_LOG", log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let collected = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut text = collected.lock().unwrap_or_else(PoisonError::into_inner);
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        let mut process = Self { child, stderr };
        let started = Instant::now();
        while !process.stderr().contains("kelemetry: running") {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "kelemetry did not start:\n{}",
                process.stderr()
            );
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("kelemetry exited with {status}:\n{}", process.stderr());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        process
    }

    /// What the process wrote to its standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, waits (90 s at most) for a successful exit, and returns the summary it printed.
    pub fn stop(self) -> String {
        self.stop_within(Duration::from_secs(90))
    }

    /// Sends SIGTERM, waits (`timeout` at most) for a successful exit, and returns the summary it printed.
    pub fn stop_within(mut self, timeout: Duration) -> String {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(
            killed.as_ref().is_ok_and(|s| s.success()),
            "kill -TERM {pid}: {killed:?}"
        );
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stdout = String::new();
                if let Some(mut pipe) = self.child.stdout.take() {
                    let _ = pipe.read_to_string(&mut stdout);
                }
                assert!(
                    status.success(),
                    "kelemetry failed: {status}\n{stdout}\n{}",
                    self.stderr()
                );
                return stdout;
            }
            assert!(
                started.elapsed() < timeout,
                "kelemetry did not stop within {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for KelemetryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
