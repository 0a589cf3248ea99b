use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;

/// A log in `dir` bounded by `max_bytes`, in segments of `segment_bytes`.
fn config(dir: &Path, max_bytes: usize, segment_bytes: usize) -> WalConfig {
    WalConfig {
        max_bytes,
        segment_bytes,
        ..WalConfig::new(dir)
    }
}

/// Opens and starts the log of `config`.
fn start(config: &WalConfig) -> (WalHandle, Vec<ReplaySegment>, Arc<WebhookMetrics>) {
    let metrics = Arc::<WebhookMetrics>::default();
    let opened = open(config, Arc::clone(&metrics)).unwrap();
    let (handle, replay) = opened.start().unwrap();
    (handle, replay, metrics)
}

/// The segment files in `dir`: their number and length.
fn files(dir: &Path) -> Vec<(SegmentId, u64)> {
    segment_files(dir)
        .unwrap()
        .into_iter()
        .map(|(id, path)| (id, std::fs::metadata(path).unwrap().len()))
        .collect()
}

/// The bodies of the valid entries of the segment at `path`.
async fn bodies(path: &Path) -> Vec<Vec<u8>> {
    let (bytes, scan) = read_segment(path).await.unwrap();
    scan.entries
        .iter()
        .map(|range| format::decode(&bytes[range.clone()]).unwrap().body.to_vec())
        .collect()
}

fn body(n: usize, len: usize) -> Vec<u8> {
    let mut body = format!("body {n} ").into_bytes();
    body.resize(len, b'.');
    body
}

fn segment_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(segment_name(id))
}

#[tokio::test]
async fn entries_stay_until_acknowledged_and_are_replayed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20, 1 << 16);
    let (wal, replay, metrics) = start(&config);
    assert!(replay.is_empty());
    for n in 0..3 {
        assert_eq!(wal.append("prod", &body(n, 40)).await.unwrap(), 0);
    }
    assert_eq!(
        wal.close().await,
        Remaining {
            segments: 1,
            entries: 3
        }
    );
    assert_eq!(metrics.snapshot().wal_syncs, 3);

    // The next start finds them, in order, and new entries go to a new segment.
    let (wal, replay, _) = start(&config);
    assert_eq!(
        replay,
        [ReplaySegment {
            id: 0,
            path: segment_path(dir.path(), 0),
            entries: 3
        }]
    );
    assert_eq!(
        bodies(&replay[0].path).await,
        [body(0, 40), body(1, 40), body(2, 40)]
    );
    assert_eq!(wal.append("prod", &body(3, 40)).await.unwrap(), 1);
    for _ in 0..3 {
        wal.ack(0).await;
    }
    wal.ack(1).await;
    // Acknowledged and not being written: deleted. The current one goes when the log closes.
    assert_eq!(wal.close().await, Remaining::default());
    assert_eq!(files(dir.path()), []);
}

#[tokio::test]
async fn entries_waiting_together_are_synced_once() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::<WebhookMetrics>::default();
    let opened = open(&config(dir.path(), 1 << 20, 1 << 18), Arc::clone(&metrics)).unwrap();
    let (wal, start_writer, _) = opened.prepare();
    let mut appends = tokio::task::JoinSet::new();
    for n in 0..20 {
        let wal = wal.clone();
        appends.spawn(async move { wal.append("c", &body(n, 100)).await });
    }
    // Every append is waiting in the writer's queue before the writer starts.
    while wal.commands.capacity() > COMMANDS - 20 {
        tokio::task::yield_now().await;
    }
    start_writer().unwrap();
    let segments: Vec<SegmentId> = appends
        .join_all()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(segments, [0; 20]);
    let counts = metrics.snapshot();
    assert_eq!(counts.wal_syncs, 1, "one sync for the 20 entries");
    let entry = format::encoded_len("c", 100) as u64;
    assert_eq!(
        counts.wal_bytes,
        SEGMENT_HEADER_BYTES.len() as u64 + 20 * entry
    );
    assert_eq!(files(dir.path()), [(0, counts.wal_bytes)]);
}

#[tokio::test]
async fn segments_rotate_and_go_once_every_entry_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Two entries of 118 bytes fit a segment of 256 bytes with its header; a third starts the next one.
    let entry = format::encoded_len("c", 100);
    assert_eq!(entry, 118);
    let (wal, _, metrics) = start(&config(dir.path(), 4096, 256));
    let mut segments = Vec::new();
    for n in 0..5 {
        segments.push(wal.append("c", &body(n, 100)).await.unwrap());
    }
    assert_eq!(segments, [0, 0, 1, 1, 2]);
    let full = 8 + 2 * entry as u64;
    assert_eq!(
        files(dir.path()),
        [(0, full), (1, full), (2, 8 + entry as u64)]
    );

    // Segment 0, all acknowledged: deleted. Segment 2, acknowledged but still written to: kept.
    wal.ack(0).await;
    assert_eq!(files(dir.path()).len(), 3, "one entry of segment 0 waits");
    wal.ack(0).await;
    wal.ack(2).await;
    // A round trip through the writer makes sure the acknowledgements were handled.
    assert_eq!(wal.append("c", &body(5, 100)).await.unwrap(), 2);
    assert_eq!(
        files(dir.path()),
        [(1, full), (2, full)],
        "segment 0 deleted, segment 2 being written"
    );
    assert_eq!(metrics.snapshot().wal_bytes, 2 * full);
    assert_eq!(
        wal.close().await,
        Remaining {
            segments: 2,
            entries: 3
        }
    );
    assert_eq!(files(dir.path()), [(1, full), (2, full)]);
}

#[tokio::test]
async fn an_entry_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = start(&config(dir.path(), 4096, 256));
    assert_eq!(wal.append("c", &body(0, 10)).await.unwrap(), 0);
    assert_eq!(wal.append("c", &body(1, 1000)).await.unwrap(), 1);
    assert_eq!(wal.append("c", &body(2, 10)).await.unwrap(), 2);
    assert!(wal.could_fit("c", 4000));
    assert!(!wal.could_fit("c", 4096));
}

#[tokio::test]
async fn a_full_log_refuses_until_acknowledgements_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, metrics) = start(&config(dir.path(), 512, 256));
    let mut accepted = Vec::new();
    let refused = loop {
        match wal.append("c", &body(accepted.len(), 100)).await {
            Ok(segment) => accepted.push(segment),
            Err(error) => break error,
        }
    };
    // Two segments of two entries (2 × 244 bytes) fill 512 bytes: the fifth entry does not fit.
    assert_eq!(accepted, [0, 0, 1, 1]);
    assert!(
        matches!(
            refused,
            AppendError::Full {
                used: 488,
                max: 512
            }
        ),
        "{refused:?}"
    );
    assert_eq!(
        refused.to_string(),
        "the write-ahead log is full (488 of 512 bytes)"
    );
    assert_eq!(metrics.snapshot().wal_full, 1);
    assert!(
        !wal.is_full(),
        "488 of 512 bytes: a small batch is still read"
    );

    // Acknowledging the segment being written makes room too: it is sealed and deleted when room is needed.
    wal.ack(1).await;
    wal.ack(1).await;
    assert_eq!(wal.append("c", &body(9, 100)).await.unwrap(), 2);
    assert_eq!(
        files(dir.path()).iter().map(|f| f.0).collect::<Vec<_>>(),
        [0, 2]
    );
    wal.ack(0).await;
    wal.ack(0).await;
    assert_eq!(wal.append("c", &body(10, 100)).await.unwrap(), 2);
    assert_eq!(
        files(dir.path()).iter().map(|f| f.0).collect::<Vec<_>>(),
        [2]
    );
}

#[tokio::test]
async fn a_torn_tail_is_reported_cut_off_and_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20, 1 << 16);
    let (wal, _, _) = start(&config);
    wal.append("c", &body(0, 50)).await.unwrap();
    wal.append("c", &body(1, 50)).await.unwrap();
    wal.close().await;
    let path = segment_path(dir.path(), 0);
    let valid = std::fs::metadata(&path).unwrap().len();
    // A crash in the middle of writing a third entry.
    let torn = format::encode("c", &body(2, 50));
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&torn[..30]).unwrap();
    drop(file);

    let (_, replay, metrics) = start(&config);
    assert_eq!(metrics.snapshot().wal_damaged, 1);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), valid, "cut off");
    assert_eq!(replay[0].entries, 2);
    assert_eq!(bodies(&path).await, [body(0, 50), body(1, 50)]);
}

#[tokio::test]
async fn a_checksum_mismatch_is_reported_and_only_that_entry_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20, 1 << 16);
    let (wal, _, _) = start(&config);
    for n in 0..3 {
        wal.append("c", &body(n, 50)).await.unwrap();
    }
    wal.close().await;
    let path = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    let second_body = 8 + format::encoded_len("c", 50) + format::encoded_len("c", 0);
    bytes[second_body + 10] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();

    let (_, replay, metrics) = start(&config);
    assert_eq!(metrics.snapshot().wal_damaged, 1);
    assert_eq!(replay[0].entries, 2);
    assert_eq!(bodies(&path).await, [body(0, 50), body(2, 50)]);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        bytes.len() as u64,
        "a damaged stretch in the middle is skipped, not cut"
    );
}

#[tokio::test]
async fn segments_left_behind_are_replayed_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20, 256);
    let (wal, _, _) = start(&config);
    for n in 0..6 {
        wal.append("c", &body(n, 100)).await.unwrap();
    }
    wal.close().await;
    // A segment whose header never reached the disk holds nothing: it is removed.
    std::fs::write(segment_path(dir.path(), 3), b"KLW").unwrap();

    let (wal, replay, metrics) = start(&config);
    let ids: Vec<SegmentId> = replay.iter().map(|segment| segment.id).collect();
    assert_eq!(ids, [0, 1, 2]);
    let mut replayed = Vec::new();
    for segment in &replay {
        replayed.extend(bodies(&segment.path).await);
    }
    assert_eq!(replayed, (0..6).map(|n| body(n, 100)).collect::<Vec<_>>());
    assert_eq!(metrics.snapshot().wal_damaged, 1);
    assert!(!segment_path(dir.path(), 3).exists());
    assert_eq!(wal.append("c", &body(6, 10)).await.unwrap(), 4);
}

#[test]
fn a_folder_that_cannot_be_written_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let path = file.join("wal");
    let error = open(&WalConfig::new(&path), Arc::default()).unwrap_err();
    assert!(
        matches!(&error, WalError::Folder { path: p, .. } if *p == path),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with(&format!(
            "cannot use the write-ahead log folder {}: ",
            path.display()
        )),
        "{error}"
    );

    // A folder without write permission (not a test when running as root, who may write anyway).
    use std::os::unix::fs::PermissionsExt;
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o500)).unwrap();
    let writable = std::fs::write(read_only.join("probe"), b"").is_ok();
    let opened = open(&WalConfig::new(&read_only), Arc::default());
    if !writable {
        let error = opened.unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&read_only.join(LOCK_FILE).display().to_string()),
            "{error}"
        );
    }
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn one_folder_serves_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig::new(dir.path());
    let first = open(&config, Arc::default()).unwrap();
    let error = open(&config, Arc::default()).unwrap_err();
    assert!(matches!(error, WalError::InUse { .. }), "{error:?}");
    drop(first);
    assert!(
        open(&config, Arc::default()).is_ok(),
        "the lock goes with its holder"
    );
}

#[test]
fn sizes_and_folder_are_checked() {
    assert!(matches!(
        WalConfig::default().check(),
        Err(WalError::NoPath)
    ));
    let config = WalConfig {
        max_bytes: 300,
        segment_bytes: 200,
        ..WalConfig::new("wal")
    };
    assert_eq!(
        config.check().unwrap_err().to_string(),
        "the write-ahead log's maxBytes (300) must be at least twice its segmentBytes (200), and segmentBytes at \
         least 1"
    );
    assert!(WalConfig::new("wal").check().is_ok());
}
