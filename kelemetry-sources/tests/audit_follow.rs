//! `AuditLogFollower` on real files: appends, partial lines, rotation by rename and by copytruncate, resuming from
//! the checkpoint (also across a rotation that happened while stopped), and no loss when the pipeline is slow.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelemetry_core::{
    ActivitySink, CancellationToken, Record, Rejection, SinkClosed, Source, SourceError,
};
use kelemetry_sources::{AuditLogFollower, CheckpointFile, FileCheckpoint, StartPosition};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Keeps the dedup keys of what it is sent; takes at most as many records as it has permits.
struct Collect {
    keys: Mutex<Vec<String>>,
    rejections: Mutex<Vec<Rejection>>,
    room: Semaphore,
}

impl Collect {
    fn new(room: usize) -> Arc<Self> {
        Arc::new(Self {
            keys: Mutex::default(),
            rejections: Mutex::default(),
            room: Semaphore::new(room),
        })
    }

    fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl ActivitySink for Collect {
    async fn send(&self, record: Record) -> Result<(), SinkClosed> {
        let permit = self.room.acquire().await.map_err(|_| SinkClosed)?;
        permit.forget();
        if let Record::Activity(activity) = record {
            self.keys.lock().unwrap().push(activity.dedup_key.clone());
        }
        Ok(())
    }

    fn reject(&self, rejection: Rejection) {
        self.rejections.lock().unwrap().push(rejection);
    }
}

fn line(id: &str) -> String {
    format!(
        concat!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{}","#,
            r#""stage":"ResponseComplete","verb":"update","user":{{"username":"alice"}},"#,
            r#""objectRef":{{"resource":"configmaps","namespace":"default","name":"cm-{}","apiVersion":"v1"}},"#,
            r#""responseStatus":{{"code":200}},"requestReceivedTimestamp":"2024-05-01T12:00:00.000000Z","#,
            r#""stageTimestamp":"2024-05-01T12:00:00.010000Z"}}"#,
            "\n"
        ),
        id, id
    )
}

fn keys(ids: impl IntoIterator<Item = String>) -> Vec<String> {
    ids.into_iter().map(|id| format!("audit:{id}")).collect()
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn append_lines(path: &Path, prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    let mut text = String::new();
    let mut ids = Vec::new();
    for i in range {
        let id = format!("{prefix}{i}");
        text.push_str(&line(&id));
        ids.push(id);
    }
    append(path, &text);
    ids
}

struct Following {
    trigger: CancellationToken,
    task: JoinHandle<Result<(), SourceError>>,
}

fn follow(follower: AuditLogFollower, sink: Arc<Collect>) -> Following {
    let trigger = CancellationToken::new();
    let shutdown = trigger.clone();
    let task = tokio::spawn(Box::new(follower).run(sink, shutdown));
    Following { trigger, task }
}

async fn stop(following: Following) {
    following.trigger.cancel();
    tokio::time::timeout(Duration::from_secs(10), following.task)
        .await
        .expect("the follower stops")
        .unwrap()
        .unwrap();
}

/// Follows `path` (with `checkpoint`) into a sink that takes all it is sent.
fn follow_all(path: &Path, checkpoint: Option<&PathBuf>) -> (Arc<Collect>, Following) {
    let sink = Collect::new(usize::MAX >> 4);
    let following = follow(follower(path, checkpoint), sink.clone());
    (sink, following)
}

/// The checkpoint stored at `path`.
async fn stored(path: &Path) -> FileCheckpoint {
    CheckpointFile::new(path).load().await.unwrap().unwrap()
}

async fn wait_for(sink: &Collect, count: usize) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while sink.keys().len() < count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "waited for {count} records, got {}: {:?}",
        sink.keys().len(),
        sink.keys()
    );
}

/// Appends one more line and waits until it arrives: anything the follower would still send from before it (a
/// line read twice) has arrived by then. Positive evidence instead of a pause before stopping.
async fn settle(path: &Path, sink: &Collect, expected: &mut Vec<String>) {
    expected.extend(append_lines(path, "settled", 0..1));
    wait_for(sink, expected.len()).await;
}

fn follower(path: &Path, checkpoint: Option<&PathBuf>) -> AuditLogFollower {
    let follower = AuditLogFollower::new(path, "c").with_poll_interval(Duration::from_millis(20));
    match checkpoint {
        Some(file) => follower
            .with_checkpoint(CheckpointFile::new(file))
            .with_checkpoint_interval(Duration::from_millis(10)),
        None => follower,
    }
}

#[tokio::test]
async fn follows_appends_and_waits_for_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let sink = Collect::new(usize::MAX >> 4);
    // The file does not exist yet: the follower waits for it.
    let following = follow(follower(&path, None), sink.clone());
    // Pacing (the file appears while the follower polls for it), not readiness.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut expected = append_lines(&path, "a", 0..3);
    wait_for(&sink, 3).await;
    // Half a line is not handled until its end arrives.
    let whole = line("half");
    let (first, second) = whole.split_at(40);
    append(&path, first);
    // The thing under test: in five polls, half a line is not taken for a line.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sink.keys().len(), 3);
    append(&path, second);
    expected.push("half".into());
    wait_for(&sink, 4).await;
    // A bad line is rejected with its line number; reading goes on.
    append(&path, "{not json\n");
    expected.extend(append_lines(&path, "b", 0..2));
    wait_for(&sink, 6).await;
    stop(following).await;
    assert_eq!(sink.keys(), keys(expected));
    let rejections = sink.rejections.lock().unwrap().clone();
    assert_eq!(rejections.len(), 1);
    assert!(
        rejections[0].origin.ends_with("audit.log:5"),
        "{}",
        rejections[0]
    );
    assert_eq!(rejections[0].reason, "invalid JSON");
}

#[tokio::test]
async fn follows_rotation_by_rename() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut expected = append_lines(&path, "old", 0..5);
    let (sink, following) = follow_all(&path, None);
    wait_for(&sink, 5).await;
    // The apiserver renames the file, finishes writing to the old one, then opens a new one.
    let rotated = dir.path().join("audit-2024-05-01T12-00-00.000.log");
    std::fs::rename(&path, &rotated).unwrap();
    expected.extend(append_lines(&rotated, "late", 0..3));
    // Pacing: the new file appears a few polls after the rename, as it would from the apiserver.
    tokio::time::sleep(Duration::from_millis(60)).await;
    expected.extend(append_lines(&path, "new", 0..4));
    wait_for(&sink, 12).await;
    // And once more.
    std::fs::rename(&path, dir.path().join("audit.log.2")).unwrap();
    expected.extend(append_lines(&path, "newer", 0..2));
    wait_for(&sink, 14).await;
    stop(following).await;
    assert_eq!(sink.keys(), keys(expected));
}

#[tokio::test]
async fn follows_copytruncate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut expected = append_lines(&path, "before", 0..6);
    let (sink, following) = follow_all(&path, None);
    wait_for(&sink, 6).await;
    // logrotate copytruncate: copy, then truncate in place (same inode), then the writer goes on.
    std::fs::copy(&path, dir.path().join("audit.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    // Pacing: the writer goes on a few polls after the truncation.
    tokio::time::sleep(Duration::from_millis(60)).await;
    expected.extend(append_lines(&path, "after", 0..2));
    wait_for(&sink, 8).await;
    settle(&path, &sink, &mut expected).await;
    stop(following).await;
    assert_eq!(sink.keys(), keys(expected));
}

#[tokio::test]
async fn resumes_from_the_checkpoint_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let checkpoint = dir.path().join("audit.checkpoint");
    let first = append_lines(&path, "one", 0..4);
    let (sink, following) = follow_all(&path, Some(&checkpoint));
    wait_for(&sink, 4).await;
    stop(following).await;
    assert_eq!(sink.keys(), keys(first));
    let stored = stored(&checkpoint).await;
    assert_eq!(stored.line, 4);
    assert_eq!(stored.offset, std::fs::metadata(&path).unwrap().len());

    // Written while stopped.
    let mut second = append_lines(&path, "two", 0..3);
    let (sink, following) = follow_all(&path, Some(&checkpoint));
    wait_for(&sink, 3).await;
    settle(&path, &sink, &mut second).await;
    stop(following).await;
    assert_eq!(sink.keys(), keys(second));
}

#[tokio::test]
async fn resumes_across_a_rotation_that_happened_while_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let checkpoint = dir.path().join("audit.checkpoint");
    append_lines(&path, "seen", 0..3);
    let (sink, following) = follow_all(&path, Some(&checkpoint));
    wait_for(&sink, 3).await;
    stop(following).await;

    // While stopped: more lines in the old file, rotation, lines in the new file.
    let mut expected = append_lines(&path, "unseen-old", 0..2);
    std::fs::rename(&path, dir.path().join("audit-1.log")).unwrap();
    expected.extend(append_lines(&path, "unseen-new", 0..3));

    let (sink, following) = follow_all(&path, Some(&checkpoint));
    wait_for(&sink, 5).await;
    settle(&path, &sink, &mut expected).await;
    stop(following).await;
    assert_eq!(sink.keys(), keys(expected));
    let stored = stored(&checkpoint).await;
    assert_eq!(stored.inode, {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&path).unwrap().ino()
    });
    assert_eq!(stored.line, 4);
}

#[tokio::test]
async fn the_checkpoint_only_covers_what_the_pipeline_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let checkpoint = dir.path().join("audit.checkpoint");
    let all = append_lines(&path, "x", 0..10);
    // A pipeline that takes 4 records and then stalls.
    let sink = Collect::new(4);
    let follower = follower(&path, Some(&checkpoint));
    let counters = follower.counters();
    let following = follow(follower, sink.clone());
    wait_for(&sink, 4).await;
    // The follower has read the fifth line and waits for the pipeline to take it.
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while counters.snapshot().records < 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{}", counters.snapshot());
    stop(following).await;
    assert_eq!(sink.keys(), keys(all[..4].to_vec()));
    let stored = stored(&checkpoint).await;
    assert_eq!(stored.line, 4);

    let (sink, following) = follow_all(&path, Some(&checkpoint));
    wait_for(&sink, 6).await;
    stop(following).await;
    assert_eq!(sink.keys(), keys(all[4..].to_vec()));
}

#[tokio::test]
async fn starting_at_the_end_reads_only_new_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    append_lines(&path, "history", 0..5);
    // A half-written line at the end is not taken for a line.
    append(&path, "{\"kind\":\"Ev");
    let sink = Collect::new(usize::MAX >> 4);
    let following = follow(
        follower(&path, None).with_start(StartPosition::End),
        sink.clone(),
    );
    // Pacing: the rest of the half-written line comes a few polls after the start (nothing shows when the
    // follower has placed itself at the end).
    tokio::time::sleep(Duration::from_millis(60)).await;
    append(&path, "ent\"}\n");
    let mut expected = append_lines(&path, "fresh", 0..2);
    wait_for(&sink, 2).await;
    settle(&path, &sink, &mut expected).await;
    stop(following).await;
    assert_eq!(sink.keys(), keys(expected));
    assert!(sink.rejections.lock().unwrap().is_empty());
}
