//! The store attacks of the fault suite, against the release binary, each printing one summary line
//! ([`fault_line`]): a replay into a full filesystem, readers of a store whose writer was killed, and `serve`
//! reading while `run` writes (docs/store.md).
//!
//! The full filesystem is a 2 MiB tmpfs when this process may mount one (root); otherwise the replay runs with a
//! 2 MiB file size limit (`ulimit -f`, SIGXFSZ ignored), under which the store's writes fail with `EFBIG` as they
//! would with `ENOSPC`. The summary line says which.

#![allow(clippy::unwrap_used)]

mod store_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kelemetry_testkit::http_get;
use kelemetry_testkit::{fault_line, release_binary, wait_until};
use store_support::{
    Serve, append_audit, checked_spans, command, event_list, follower_config, http_post, object_of,
    start_run,
};

/// ConfigMaps in the recording the full-filesystem attack replays: 8,000 objects, 16,000 spans, a store of
/// about 12 MiB.
const RECORDED: u32 = 8_000;

/// A 2 MiB tmpfs mounted on a folder, unmounted on drop.
struct SmallFilesystem {
    mount_point: PathBuf,
}

impl SmallFilesystem {
    /// Mounts it on `mount_point` (created), or `None` when mounting is not allowed here.
    fn mount(mount_point: &Path) -> Option<Self> {
        std::fs::create_dir_all(mount_point).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(mount_point)
            .output()
            .ok()?;
        mounted.status.success().then(|| Self {
            mount_point: mount_point.to_owned(),
        })
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
    }
}

/// `kelemetry replay --quiet --store STORE RECORDING`, with a 2 MiB file size limit when `limit_file_size`.
fn replay(binary: &Path, store: &Path, recording: &Path, limit_file_size: bool) -> Output {
    let mut replay = if limit_file_size {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -f 4096; exec \"$0\" \"$@\"")
            .arg(binary);
        shell
    } else {
        Command::new(binary)
    };
    replay
        .args(["replay", "--quiet", "--store"])
        .arg(store)
        .arg(recording)
        .output()
        .unwrap()
}

/// `N of M spans were not written to the store`: (N, M).
fn spans_not_written(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr
        .lines()
        .find(|line| line.contains("spans were not written to the store"))?;
    let text = line.strip_prefix("kelemetry: ")?;
    let mut words = text.split(' ');
    let lost = words.next()?.parse().ok()?;
    let of = words.next()?;
    let total = words.next()?.parse().ok()?;
    (of == "of").then_some((lost, total))
}

#[test]
fn a_replay_into_a_full_filesystem_fails_and_counts_the_spans_not_written() {
    let binary = release_binary();
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("audit.log");
    append_audit(&recording, 0..RECORDED);
    let filesystem = SmallFilesystem::mount(&dir.path().join("small"));
    let (store, how) = match &filesystem {
        Some(small) => (small.mount_point.join("store"), "a 2 MiB tmpfs"),
        None => (
            dir.path().join("store"),
            "a 2 MiB file size limit (tmpfs could not be mounted)",
        ),
    };
    let mut figures = Vec::new();
    for attempt in 1..=3 {
        let out = replay(&binary, &store, &recording, filesystem.is_none());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "replay {attempt} into a full store succeeded:\n{stdout}{stderr}"
        );
        let (lost, total) = spans_not_written(&stderr).unwrap_or_else(|| {
            panic!("replay {attempt} did not count its losses:\n{stdout}{stderr}")
        });
        assert_eq!(total, u64::from(RECORDED) * 2, "{stdout}{stderr}");
        assert!(lost > 0 && lost <= total, "{stdout}{stderr}");
        assert!(
            stdout.contains(&format!("spans that could not be stored: {lost}\n")),
            "{stdout}"
        );
        figures.push(format!("{lost} of {total}"));
    }
    fault_line(
        "disk full (store)",
        &format!(
            "3 of 3 replays into {how} exited non-zero, spans reported not written: {}",
            figures.join(", ")
        ),
    );
}

#[test]
fn a_store_whose_writer_was_killed_is_refused_with_a_hint_then_repaired() {
    let binary = release_binary();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let store = dir.path().join("store");
    let store_arg = store.to_string_lossy().into_owned();
    let config = follower_config(dir.path());

    // kill -9 of a writer in the middle of its writes: 20,000 events to follow, killed once it stored the first
    // object (the shards export independently: other objects' spans may reach the store before its own).
    append_audit(&log, 0..20_000);
    let run = start_run(&binary, &config);
    let stored_before_kill = wait_until(
        "run stores the first object's spans",
        Duration::from_secs(60),
        || {
            let shown = command(&binary, &["show", &object_of(0), "--store", &store_arg]);
            if !shown.status.success() {
                return Ok(None);
            }
            Ok(checked_spans(&binary, &store)
                .ok()
                .filter(|&spans| spans > 0))
        },
    )
    .unwrap();
    run.kill_9();

    let out = command(&binary, &["show", &object_of(0), "--store", &store_arg]);
    let refused = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "show read a store that needs repair");
    let hint = format!("repair it with `kelemetry store repair {store_arg}`");
    assert!(refused.contains(&hint), "{refused}");
    assert!(
        refused.contains("spans.redb was not closed cleanly"),
        "{refused}"
    );

    let out = command(&binary, &["store", "repair", &store_arg]);
    let repaired = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        repaired.starts_with(&format!(
            "store {store_arg}: repaired (it had not been closed cleanly); "
        )),
        "{repaired}"
    );
    let kept = checked_spans(&binary, &store).unwrap();
    assert!(kept >= stored_before_kill, "{kept} < {stored_before_kill}");
    let out = command(&binary, &["show", &object_of(0), "--store", &store_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit alice create"));

    // The other way: a writer killed again, and the next `run` repairs the store as it opens it.
    let run = start_run(&binary, &config);
    wait_until("run stores more spans", Duration::from_secs(60), || {
        Ok(checked_spans(&binary, &store)
            .ok()
            .filter(|&spans| spans > kept))
    })
    .unwrap();
    run.kill_9();
    let started = Instant::now();
    let run = start_run(&binary, &config);
    let announced = run.stderr();
    assert!(
        announced.contains("had not been closed cleanly (its writer stopped in the middle of a write); repaired when opened, in "),
        "{announced}"
    );
    let repair_on_open = announced
        .split("repaired when opened, in ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|ms| ms.parse::<u64>().ok())
        .unwrap();
    let until_running = started.elapsed();
    let (stopped, stdout, stderr) = run.terminate();
    assert!(stopped, "{stdout}{stderr}");
    fault_line(
        "crashed-store readers",
        &format!(
            "after kill -9 of run ({stored_before_kill} spans stored), show refused with the repair hint; store \
             repair: {}; show works; a restarted run repaired on open in {repair_on_open} ms (running after {} ms)",
            repaired.trim_end().split(": ").nth(1).unwrap_or_default(),
            until_running.as_millis()
        ),
    );
}

#[test]
fn serve_answers_while_run_writes_the_same_store() {
    let binary = release_binary();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let store = dir.path().join("store");
    append_audit(&log, 0..1);
    let run = start_run(&binary, &follower_config(dir.path()));
    let serve = Serve::start(&binary, &store);

    let (mut answered, mut searches) = (0u32, 0u32);
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        let first = 1 + round * 500;
        append_audit(&log, first..first + 500);
        let last = first + 499;
        // Search while run follows the new events, until serve sees the last one.
        wait_until(
            &format!("serve finds cm-{last}"),
            Duration::from_secs(60),
            || {
                let asked = Instant::now();
                let found = serve.search(last);
                slowest = slowest.max(asked.elapsed());
                searches += 1;
                answered += u32::from(found.is_ok());
                Ok((found == Ok(1)).then_some(()))
            },
        )
        .unwrap();
    }
    assert_eq!(answered, searches, "every search answered 200");
    let (stopped, stdout, stderr) = run.terminate();
    assert!(stopped, "{stdout}{stderr}");
    assert_eq!(serve.search(10_000), Ok(1));
    fault_line(
        "serve beside run",
        &format!(
            "serve answered {answered} of {searches} searches while run wrote 10,001 objects into the same store, \
             found each round's last object (slowest answer {} ms)",
            slowest.as_millis()
        ),
    );
}

/// Fills the filesystem of `folder` with one file, `filler`, until it has no room left.
fn fill(folder: &Path) -> PathBuf {
    use std::io::Write;
    let filler = folder.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    // Whatever a partial block left.
    while file.write_all(&block[..512]).is_ok() {}
    filler
}

#[test]
fn run_on_a_full_disk_is_unready_says_how_many_spans_it_lost_and_recovers() {
    let binary = release_binary();
    let dir = tempfile::tempdir().unwrap();
    let Some(small) = SmallFilesystem::mount(&dir.path().join("small")) else {
        fault_line("disk full (run)", "skipped: tmpfs cannot be mounted here");
        return;
    };
    let port = kelemetry_testkit::free_loopback_port().unwrap();
    let address = format!("127.0.0.1:{port}");
    let config = dir.path().join("run.yaml");
    std::fs::write(
        &config,
        format!(
            "cluster: local\nsources:\n  webhook:\n    listen: {address}\n    wal:\n      path: {}\n\
             exporters:\n  store:\n    path: {}\n",
            // The write-ahead log on another disk: this attack is on the store.
            dir.path().join("wal").display(),
            small.mount_point.join("store").display()
        ),
    )
    .unwrap();
    let run = start_run(&binary, &config);
    assert_eq!(
        http_get(&address, "/readyz").0,
        200,
        "ready before any loss"
    );
    assert_eq!(http_post(&address, "/audit", &event_list(0..20)), 200);
    wait_until("the first batch is stored", Duration::from_secs(30), || {
        Ok((checked_spans(&binary, &small.mount_point.join("store")) == Ok(40)).then_some(()))
    })
    .unwrap();

    let filler = fill(&small.mount_point);
    let mut next = 20;
    // Batches until the store cannot take them: each lost batch is retried, then counted.
    let unready = wait_until("run says it is not ready", Duration::from_secs(120), || {
        let status = http_post(&address, "/audit", &event_list(next..next + 20));
        assert!(status == 200 || status == 429, "POST answered {status}");
        next += 20;
        let (status, _, body) = http_get(&address, "/readyz");
        Ok((status == 503).then_some(body))
    })
    .unwrap();
    assert!(unready.starts_with("not ready: "), "{unready}");
    assert!(
        unready.contains(" spans were not exported since the start"),
        "{unready}"
    );
    // Logged with the count, within a second of the loss.
    let logged = wait_until("run logs the loss", Duration::from_secs(10), || {
        let logged = run.stderr();
        Ok(logged
            .contains("spans were not exported (")
            .then_some(logged))
    })
    .unwrap();
    assert!(logged.contains("No space left on device"), "{logged}");

    // Room again: the store opens its database again and takes the next batches, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let first_after = next;
    assert_eq!(
        http_post(&address, "/audit", &event_list(next..next + 20)),
        200
    );
    let store_arg = small
        .mount_point
        .join("store")
        .to_string_lossy()
        .into_owned();
    let written_again = wait_until(
        "the store takes writes again",
        Duration::from_secs(60),
        || {
            let shown = command(
                &binary,
                &["show", &object_of(first_after + 19), "--store", &store_arg],
            );
            Ok(shown.status.success().then_some(()))
        },
    );
    let recovered = written_again.is_ok();
    assert_eq!(
        http_get(&address, "/readyz").0,
        503,
        "unready for 5 minutes after the loss"
    );
    let (stopped, stdout, stderr) = run.terminate();
    assert!(
        !stopped,
        "a run that lost spans must fail:\n{stdout}{stderr}"
    );
    let summary = stdout
        .lines()
        .find_map(|line| line.strip_prefix("pipeline: "))
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    let lost: u64 = summary
        .split([',', ';'])
        .find_map(|part| part.trim().strip_suffix(" not exported"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no loss count in {summary:?}"));
    assert!(lost > 0 && lost.is_multiple_of(2), "{summary}");
    assert!(
        recovered,
        "the store did not take writes again once there was room"
    );
    fault_line(
        "disk full (run)",
        &format!(
            "run on a full 2 MiB tmpfs: /readyz 503 ({}), {lost} spans counted not exported, exit non-zero; wrote \
             again once room was freed, without a restart",
            unready.trim_end()
        ),
    );
}
