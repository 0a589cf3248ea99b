//! `kelemetry replay` takes what it can (issue 16): bad folder entries are skipped and reported, a FIFO named on
//! the command line is an error rather than a hang, a replay that accepted nothing fails, and memory stays bounded
//! whatever the input's size (the last two against the release binary, as fault-suite attacks).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{ReplaySummary, counts, kelemetry, line_after};

fn recording() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recorded/deployment-lifecycle")
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// A folder of two real recordings and every kind of bad entry: a symlink loop, a dangling link, a FIFO, a
/// socket, a second link to a folder already read, a link to a file already read.
fn hostile_folder(root: &Path) -> PathBuf {
    use std::os::unix::fs::symlink;
    let folder = root.join("recordings");
    std::fs::create_dir_all(folder.join("nested")).unwrap();
    let other = root.join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(
        recording().join("events.watch.yaml"),
        other.join("events.watch.yaml"),
    )
    .unwrap();
    std::fs::copy(
        recording().join("objects.watch.yaml"),
        folder.join("nested/objects.watch.yaml"),
    )
    .unwrap();
    symlink(&other, folder.join("events")).unwrap();
    symlink(&other, folder.join("events-again")).unwrap();
    symlink(&folder, folder.join("nested/loop")).unwrap();
    symlink(root.join("gone.yaml"), folder.join("dangling.yaml")).unwrap();
    symlink(
        folder.join("nested/objects.watch.yaml"),
        folder.join("same-objects.yaml"),
    )
    .unwrap();
    mkfifo(&folder.join("pipe.yaml"));
    let _socket = std::os::unix::net::UnixListener::bind(folder.join("socket.yaml")).unwrap();
    folder
}

/// Waits for `child` at most `limit`; kills it and fails when it is still running then.
fn wait_or_kill(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let waited = kelemetry_testkit::wait_until("kelemetry to exit", limit, || {
        Ok(child.try_wait().unwrap().map(|_| ()))
    });
    if let Err(err) = waited {
        let _ = child.kill();
        panic!("{err}");
    }
    child.wait_with_output().unwrap()
}

/// Attack: a folder of recordings with every kind of bad entry, against the release binary.
#[test]
fn a_hostile_folder_is_replayed_with_every_bad_entry_reported() {
    let dir = tempfile::tempdir().unwrap();
    let folder = hostile_folder(dir.path());
    let store = dir.path().join("store");
    let started = Instant::now();
    let child = Command::new(kelemetry_testkit::release_binary())
        .args(["replay", "--quiet", "--store"])
        .arg(&store)
        .arg(&folder)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_or_kill(child, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let summary = ReplaySummary::parse(&stdout);
    assert_eq!(summary.count("file"), 2, "{stdout}");
    // 33 Event watch events and 111 object watch events.
    assert_eq!(summary.count("records read"), 144, "{stdout}");
    assert_eq!(summary.count("rejected"), 0, "{stdout}");
    let skipped = counts(line_after(&stdout, "folder entries skipped: "));
    let expected: std::collections::BTreeMap<String, u64> = [
        ("", 6),
        ("dangling links", 1),
        ("reached twice", 2),
        ("special files", 2),
        ("symlink loops", 1),
    ]
    .into_iter()
    .map(|(label, count)| (label.to_owned(), count))
    .collect();
    // `counts` labels the total (the number before the parenthesis) with the empty string.
    assert_eq!(skipped, expected, "{stdout}");
    let reported: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("skipping "))
        .collect();
    assert_eq!(reported.len(), 6, "{stderr}");
    for name in [
        "dangling.yaml: dangling link",
        "events-again: reached twice",
        "pipe.yaml: special file (a FIFO (named pipe))",
        "socket.yaml: special file (a socket)",
        "loop: symlink loop",
        "same-objects.yaml: reached twice",
    ] {
        assert_eq!(
            reported.iter().filter(|line| line.contains(name)).count(),
            1,
            "{name}: {stderr}"
        );
    }
    kelemetry_testkit::fault_line(
        "hostile replay folder",
        &format!(
            "{} bad entries skipped and reported one line each, {} files replayed ({} records), exit 0 in {:.1} s",
            reported.len(),
            summary.count("file"),
            summary.count("records read"),
            started.elapsed().as_secs_f64()
        ),
    );
}

#[test]
fn a_fifo_named_on_the_command_line_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stream.json");
    mkfifo(&fifo);
    let child = Command::new(env!("CARGO_BIN_EXE_kelemetry"))
        .args(["replay", "--quiet", "--store"])
        .arg(dir.path().join("store"))
        .arg(&fifo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_or_kill(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{} is a FIFO (named pipe)", fifo.display())),
        "{stderr}"
    );
}

#[test]
fn a_replay_that_accepted_nothing_fails_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.json");
    std::fs::write(&file, "{\"kind\": \"Pod\"}\n[1, 2]\n").unwrap();
    let store = dir.path().join("store");
    let name = file.display().to_string();
    let (ok, stdout, stderr) = kelemetry(&["replay", "--quiet", &name], &store);
    assert!(!ok, "{stdout}");
    assert_eq!(
        ReplaySummary::parse(&stdout).count("rejected"),
        3,
        "{stdout}"
    );
    let message = line_after(&stderr, "kelemetry: nothing accepted: ");
    let said = counts(message);
    assert_eq!(said["file"], 1, "{message}");
    assert_eq!(said["records"], 3, "{message}");
    assert_eq!(said["rejected"], 3, "{message}");
    assert!(message.contains("--allow-empty"), "{message}");

    let (ok, stdout, stderr) = kelemetry(&["replay", "--quiet", "--allow-empty", &name], &store);
    assert!(ok, "{stdout}\n{stderr}");

    // A folder holding nothing to read.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("README.md"), "notes").unwrap();
    let (ok, _, stderr) = kelemetry(&["replay", "--quiet", &empty.display().to_string()], &store);
    assert!(!ok);
    assert_eq!(
        counts(line_after(&stderr, "kelemetry: nothing accepted: "))["file"],
        0,
        "{stderr}"
    );
}

/// An audit log of `lines` lines: the recorded deployment lifecycle's 152 audit events again and again, each copy
/// an hour after the one before, its objects, uids and audit ids renamed.
fn large_audit_log(path: &Path, lines: usize) {
    let recorded = std::fs::read_to_string(recording().join("audit.log")).unwrap();
    let events: Vec<&str> = recorded.lines().filter(|l| !l.trim().is_empty()).collect();
    let start: jiff::Timestamp = "2026-11-28T01:00:00Z".parse().unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for (i, event) in events.iter().cycle().take(lines).enumerate() {
        let copy = i / events.len();
        let hour = start + jiff::SignedDuration::from_hours(copy as i64);
        let line = event
            .replace("2026-11-28T01:", &hour.strftime("%Y-%m-%dT%H:").to_string())
            .replace("demo", &format!("demo{copy}"))
            .replace("\"auditID\":\"", &format!("\"auditID\":\"{copy}-"))
            .replace("\"uid\":\"", &format!("\"uid\":\"{copy}-"));
        writeln!(out, "{line}").unwrap();
    }
    out.flush().unwrap();
}

/// The highest resident memory of the process `pid` so far (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What a replay of ordinary objects stays under, whatever the input's size: docs/behaviour/replay.md adds its
/// bounds up to about 650 MiB, and logs of ordinary objects stay well under that (506-558 MiB at 1,000,000 lines).
const REPLAY_MEMORY_BOUND_MIB: u64 = 600;

/// The disk a large replay takes per audit line: the generated log (about 3.8 KB a line) and the store it fills
/// (about 1 KB a line), measured at 100,000 lines (468 MiB at the peak), with a margin.
const REPLAY_DISK_BYTES_PER_LINE: u64 = 6 * 1024;

/// The fewest lines the large replay runs with: below this, the memory figure says nothing about size.
const REPLAY_MIN_LINES: usize = 20_000;

/// The space free for an unprivileged writer in the file system holding `dir`, from POSIX `df`, in bytes.
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Attack: a large replay. The release binary replays a generated audit log (`KELEMETRY_REPLAY_LINES`, default
/// 100,000 lines, about 380 MB) and its peak resident memory stays under the stated bound. On a disk with less
/// room than that takes, the log is cut to fit (never below [`REPLAY_MIN_LINES`]) and the fault line says so: a
/// full disk would fail the replay for a reason this test is not about.
#[test]
fn a_large_replay_stays_within_its_memory_bound() {
    let wanted: usize = std::env::var("KELEMETRY_REPLAY_LINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let binary = kelemetry_testkit::release_binary();
    let dir = tempfile::tempdir().unwrap();
    let free = free_bytes(dir.path());
    let fits = free.map_or(wanted, |free| {
        usize::try_from(free / 2 / REPLAY_DISK_BYTES_PER_LINE).unwrap_or(usize::MAX)
    });
    let lines = wanted.min(fits);
    assert!(
        lines >= REPLAY_MIN_LINES,
        "the large replay needs {} MiB free in {} for {REPLAY_MIN_LINES} lines; df says {} MiB",
        (REPLAY_MIN_LINES as u64 * REPLAY_DISK_BYTES_PER_LINE * 2) >> 20,
        dir.path().display(),
        free.unwrap_or(0) >> 20
    );
    let cut = if lines < wanted {
        format!(
            " (cut from {wanted}: {} MiB free on the temporary disk)",
            free.unwrap_or(0) >> 20
        )
    } else {
        String::new()
    };
    let log = dir.path().join("audit.log");
    large_audit_log(&log, lines);
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["replay", "--quiet", "--store"])
        .arg(dir.path().join("store"))
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let exited =
        kelemetry_testkit::wait_until("the replay to end", Duration::from_secs(1800), || {
            // Read while the process is alive: its status goes with it.
            peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
            Ok(child.try_wait().unwrap().map(|_| ()))
        });
    if let Err(err) = exited {
        let _ = child.kill();
        panic!("{err}");
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ReplaySummary::parse(&stdout).count("records read"),
        lines as u64,
        "{stdout}"
    );
    let peak_mib = peak / 1024;
    kelemetry_testkit::fault_line(
        "large replay",
        &format!(
            "{lines} audit lines{cut} replayed in {:.0} s, peak resident memory {peak_mib} MiB (bound \
             {REPLAY_MEMORY_BOUND_MIB} MiB)",
            started.elapsed().as_secs_f64()
        ),
    );
    assert!(peak > 0, "no memory figure read for pid {pid}");
    assert!(
        peak_mib <= REPLAY_MEMORY_BOUND_MIB,
        "peak {peak_mib} MiB over {REPLAY_MEMORY_BOUND_MIB} MiB"
    );
}
