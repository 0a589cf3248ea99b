//! One store, many readers: `kelemetry serve`, `show` and `store check` read the store a running `kelemetry run`
//! writes, and a `serve` started before the writes sees each of them (docs/store.md).

#![allow(clippy::unwrap_used)]

mod store_support;

use std::path::Path;
use std::time::Duration;

use kelemetry_testkit::wait_until;
use store_support::{
    Serve, append_audit, checked_spans, command, follower_config, object_of, start_run,
};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kelemetry"))
}

#[test]
fn serve_show_and_check_read_the_store_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let store = dir.path().join("store");
    append_audit(&log, 0..1);
    let run = start_run(binary(), &follower_config(dir.path()));
    let serve = Serve::start(binary(), &store);
    assert!(serve.search(0).is_ok(), "serve answers beside run");

    // Each round is written after serve opened the store.
    for round in 0..5 {
        let first = 1 + round * 10;
        append_audit(&log, first..first + 10);
        let last = first + 9;
        wait_until(
            &format!("serve finds cm-{last}"),
            Duration::from_secs(30),
            || Ok((serve.search(last) == Ok(1)).then_some(())),
        )
        .unwrap();
        assert_eq!(serve.search(first), Ok(1));
    }
    assert_eq!(serve.search(0), Ok(1));
    assert_eq!(serve.search(51), Ok(0), "never written");

    // `show` and `store check` open the store while run has it open for writing.
    let out = command(
        binary(),
        &["show", &object_of(17), "--store", &store.to_string_lossy()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("audit alice create"), "{stdout}");
    // 51 ConfigMaps, each an object span and an activity span.
    assert_eq!(checked_spans(binary(), &store), Ok(102));

    // Another writer is refused while run writes, saying why.
    let out = command(binary(), &["store", "repair", &store.to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is in use by another process"), "{stderr}");

    let (stopped, stdout, stderr) = run.terminate();
    assert!(stopped, "{stdout}{stderr}");
    // The reader outlives the writer.
    assert_eq!(serve.search(42), Ok(1));
}
