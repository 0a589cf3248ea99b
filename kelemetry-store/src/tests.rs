use jiff::Timestamp;
use kelemetry_core::span::{activity_span, link_span, object_span};
use kelemetry_core::{
    Activity, Link, LogKind, LogLine, Object, ObjectKey, ObjectRef, ObjectSelector, SourceKind,
    SpanRecord, TraceId, Window, Windowing,
};

use redb::{ReadableDatabase, TableHandle};

use crate::{PreparedBatch, STORE_FILE_NAME, SpanStore, StoreError, StoreOptions, WriteDurability};

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn window(text: &str) -> Window {
    Windowing::default().window_of(at(text))
}

fn object(cluster: &str, group: &str, resource: &str, ns: &str, name: &str) -> ObjectRef {
    ObjectRef::new(
        ObjectKey::new(cluster, group, resource, ns, name),
        "v1",
        Some("uid-1".into()),
    )
}

/// An object span, a link span and two activity spans (one with logs) in one window of one deployment.
fn trace_of(object_ref: &ObjectRef, when: &str) -> Vec<SpanRecord> {
    let w = window(when);
    let link = Link::child(object("prod", "apps", "replicasets", "default", "nginx-1"))
        .with_class("children")
        .with_dedup_id("ownerReference");
    let mut update = Activity::new(
        Object::new(object_ref.clone()),
        SourceKind::Audit,
        at(when),
        "alice update",
        format!("audit-{when}"),
    );
    update.attribute("username", "alice");
    update.attribute("custom.attribute", "not in the dictionary");
    update
        .logs
        .push(LogLine::new(LogKind::ObjectDiff, "spec.replicas 1 -> 3"));
    let event = Activity::new(
        Object::new(object_ref.clone()),
        SourceKind::Event,
        at(when),
        "ScalingReplicaSet",
        format!("event-{when}"),
    );
    vec![
        object_span(object_ref, w),
        link_span(object_ref, w, &link),
        activity_span(&update, w),
        activity_span(&event, w),
    ]
}

fn sorted(mut spans: Vec<SpanRecord>) -> Vec<SpanRecord> {
    spans.sort_by_key(|s| (s.trace_id, s.span_id));
    spans
}

fn all(store: &SpanStore) -> Vec<SpanRecord> {
    store.spans().unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn spans_round_trip_through_a_reopened_store() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = object("prod", "apps", "deployments", "default", "nginx");
    let spans = trace_of(&nginx, "2024-05-01T12:34:56.5Z");
    let trace = spans[0].trace_id;
    {
        let store = SpanStore::create(dir.path()).unwrap();
        store.write_spans(&spans).unwrap();
    }
    assert!(dir.path().join(STORE_FILE_NAME).is_file());
    let store = SpanStore::open(dir.path()).unwrap();
    assert_eq!(store.spans_of_trace(trace).unwrap(), sorted(spans.clone()));
    assert_eq!(
        store.span(trace, spans[2].span_id).unwrap().as_ref(),
        Some(&spans[2])
    );
    assert_eq!(store.span_count().unwrap(), 4);
    assert_eq!(store.trace_count().unwrap(), 1);
    assert_eq!(store.object_count().unwrap(), 1);
    let other = TraceId::from_u128(7).unwrap();
    assert!(store.spans_of_trace(other).unwrap().is_empty());
    assert_eq!(store.span(other, spans[0].span_id).unwrap(), None);
}

#[test]
fn writing_the_same_spans_twice_keeps_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::create(dir.path()).unwrap();
    let nginx = object("prod", "apps", "deployments", "default", "nginx");
    let mut spans = trace_of(&nginx, "2024-05-01T12:00:00Z");
    spans.extend(trace_of(&nginx, "2024-05-01T12:45:00Z"));
    // Duplicates inside one batch, then the whole replay again in other batch sizes.
    let mut first = spans.clone();
    first.extend(spans[..3].iter().cloned());
    store.write_spans(&first).unwrap();
    let after_one = all(&store);
    for chunk in spans.chunks(3) {
        store
            .write(&PreparedBatch::new(chunk), WriteDurability::Deferred)
            .unwrap();
    }
    store.sync().unwrap();
    assert_eq!(all(&store), after_one);
    assert_eq!(after_one, sorted(spans));
    assert_eq!(store.span_count().unwrap(), 8);
    assert_eq!(store.trace_count().unwrap(), 2);
    let key = &nginx.key;
    assert_eq!(
        store
            .windows_of(key, at("2024-05-01T00:00:00Z"), at("2024-05-02T00:00:00Z"))
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn windows_of_returns_overlapping_windows_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::create(dir.path()).unwrap();
    let nginx = object("prod", "apps", "deployments", "default", "nginx");
    let times = [
        "2024-05-01T10:10:00Z",
        "2024-05-01T11:10:00Z",
        "2024-05-01T11:40:00Z",
        "2024-05-01T14:00:00Z",
    ];
    for when in times {
        store.write_spans(&trace_of(&nginx, when)).unwrap();
    }
    // Another object sharing a prefix of the key must not leak in.
    store
        .write_spans(&trace_of(
            &object("prod", "apps", "deployments", "default", "nginx2"),
            times[1],
        ))
        .unwrap();
    let key = &nginx.key;
    let starts = |from: &str, to: &str| -> Vec<String> {
        store
            .windows_of(key, at(from), at(to))
            .unwrap()
            .iter()
            .map(|w| w.start.to_string())
            .collect()
    };
    assert_eq!(
        starts("2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z").len(),
        4
    );
    // 10:30 is the end of the 10:00 window (exclusive); 11:30 is the start of the third window (inclusive).
    assert_eq!(
        starts("2024-05-01T10:30:00Z", "2024-05-01T11:30:00Z"),
        ["2024-05-01T11:00:00Z", "2024-05-01T11:30:00Z"]
    );
    assert_eq!(
        starts("2024-05-01T10:29:59Z", "2024-05-01T11:05:00Z"),
        ["2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"]
    );
    assert!(starts("2024-05-01T12:00:00Z", "2024-05-01T13:59:59Z").is_empty());
    assert!(starts("2024-05-01T12:00:00Z", "2024-05-01T10:00:00Z").is_empty());
    let found = store
        .windows_of(key, at("2024-05-01T14:15:00Z"), at("2024-05-01T14:15:00Z"))
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].trace_id,
        TraceId::for_object(key, window(times[3]))
    );
    assert_eq!(found[0].end.to_string(), "2024-05-01T14:30:00Z");
}

/// `windows_of_many` sweeps the index in key order: the same windows as asking for each key alone, in the order
/// asked, whether it reads past other entries or seeks (an object with many windows before the range), for
/// repeated and unknown keys too.
#[test]
fn windows_of_many_answers_each_key_as_windows_of_would() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::create(dir.path()).unwrap();
    let first = at("2024-05-01T00:10:00Z");
    let half_hour = jiff::SignedDuration::from_mins(30);
    let long_lived = object("prod", "apps", "deployments", "default", "long");
    let mut spans = Vec::new();
    let mut starts: Vec<(ObjectKey, Timestamp)> = Vec::new();
    for k in 0..40 {
        let w = Windowing::default().window_of(first + half_hour * k);
        spans.push(object_span(&long_lived, w));
        starts.push((long_lived.key.clone(), w.start()));
    }
    let mut keys = vec![long_lived.key.clone()];
    for i in 0..30 {
        let pod = object("prod", "", "pods", "default", &format!("long-{i:02}"));
        for k in [3, 4, 20] {
            let w = Windowing::default().window_of(first + half_hour * k);
            spans.push(object_span(&pod, w));
            starts.push((pod.key.clone(), w.start()));
        }
        if i % 7 == 0 {
            keys.push(pod.key.clone());
        }
    }
    store.write_spans(&spans).unwrap();
    keys.insert(1, ObjectKey::new("prod", "", "pods", "default", "unknown"));
    keys.push(long_lived.key.clone());
    keys.reverse();
    for (from, to) in [
        (Timestamp::MIN, Timestamp::MAX),
        (first + half_hour * 3, first + half_hour * 4),
        (first + half_hour * 19, first + half_hour * 21),
        (first + half_hour * 39, first + half_hour * 45),
    ] {
        let many = store.windows_of_many(&keys, from, to).unwrap();
        assert_eq!(many.len(), keys.len());
        for (key, windows) in keys.iter().zip(&many) {
            let expected: Vec<Timestamp> = starts
                .iter()
                .filter(|(k, start)| k == key && *start <= to && *start + half_hour > from)
                .map(|(_, start)| *start)
                .collect();
            let found: Vec<Timestamp> = windows.iter().map(|w| w.start).collect();
            assert_eq!(found, expected, "{key} between {from} and {to}");
            assert_eq!(store.windows_of(key, from, to).unwrap(), *windows);
        }
    }
}

#[test]
fn find_objects_without_group_or_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::create(dir.path()).unwrap();
    let when = "2024-05-01T12:00:00Z";
    let objects = [
        object("prod", "apps", "deployments", "default", "nginx"),
        object("staging", "apps", "deployments", "default", "nginx"),
        object("prod", "example.com", "deployments", "default", "nginx"),
        object("prod", "apps", "deployments", "default", "nginx-canary"),
        object("prod", "apps", "deployments", "other", "nginx"),
        object("prod", "", "pods", "default", "nginx"),
    ];
    for o in &objects {
        store.write_spans(&trace_of(o, when)).unwrap();
    }
    let names = |selector: ObjectSelector| -> Vec<String> {
        let found = store.find_objects(&selector, usize::MAX).unwrap();
        found.iter().map(ToString::to_string).collect()
    };
    let nginx: ObjectSelector = "deployments/default/nginx".parse().unwrap();
    assert_eq!(
        names(nginx.clone()),
        [
            "prod/apps/deployments/default/nginx",
            "prod/example.com/deployments/default/nginx",
            "staging/apps/deployments/default/nginx",
        ]
    );
    assert_eq!(
        names(nginx.clone().with_cluster("prod")),
        [
            "prod/apps/deployments/default/nginx",
            "prod/example.com/deployments/default/nginx"
        ]
    );
    assert_eq!(
        names("deployments.apps/default/nginx".parse().unwrap()),
        [
            "prod/apps/deployments/default/nginx",
            "staging/apps/deployments/default/nginx"
        ]
    );
    assert!(names("deployments/default/ngin".parse().unwrap()).is_empty());
    assert_eq!(names(ObjectSelector::any()).len(), objects.len());
    let in_default = ObjectSelector::any()
        .with_resource("deployments")
        .with_namespace("default");
    assert_eq!(names(in_default.clone()).len(), 4);
    assert_eq!(store.find_objects(&in_default, 2).unwrap().len(), 2);
    assert_eq!(names(ObjectSelector::any().with_name("nginx")).len(), 5);
    assert_eq!(names("pods/*/nginx".parse().unwrap()).len(), 1);
}

#[test]
fn readers_see_a_snapshot_while_a_writer_writes() {
    let dir = tempfile::tempdir().unwrap();
    let shared = StoreOptions {
        shared_with_readers: true,
        ..StoreOptions::default()
    };
    let store = SpanStore::create_with(dir.path(), &shared).unwrap();
    let nginx = object("prod", "apps", "deployments", "default", "nginx");
    store
        .write_spans(&trace_of(&nginx, "2024-05-01T12:00:00Z"))
        .unwrap();
    let snapshot = store.spans().unwrap();
    let reader = store.clone();
    let writer = std::thread::spawn(move || {
        for hour in 13..20 {
            let batch = PreparedBatch::new(&trace_of(&nginx, &format!("2024-05-01T{hour}:00:00Z")));
            // Deferred acts as immediate in a shared store.
            store.write(&batch, WriteDurability::Deferred).unwrap();
        }
    });
    writer.join().unwrap();
    assert_eq!(snapshot.count(), 4, "the iterator keeps its snapshot");
    assert_eq!(reader.span_count().unwrap(), 32);
    let read_only = SpanStore::open_read_only(dir.path()).unwrap();
    assert_eq!(read_only.trace_count().unwrap(), 8);
    let err = read_only.write_spans(&[]).unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");
}

#[test]
fn opening_a_missing_store_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = SpanStore::open(dir.path().join("nothing")).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }));
    assert!(err.to_string().contains(STORE_FILE_NAME), "{err}");
}

#[test]
fn corrupt_chunk_and_wrong_layout_are_reported_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = object("prod", "apps", "deployments", "default", "nginx");
    let spans = trace_of(&nginx, "2024-05-01T12:00:00Z");
    let first = sorted(spans.clone())[0].span_id;
    SpanStore::create(dir.path())
        .unwrap()
        .write_spans(&spans)
        .unwrap();
    let path = dir.path().join(STORE_FILE_NAME);
    let raw_chunks: redb::TableDefinition<'_, (u128, u64), &[u8]> =
        redb::TableDefinition::new("span_chunks");
    let raw_meta: redb::TableDefinition<'_, &str, u32> = redb::TableDefinition::new("meta");
    let trace = spans[0].trace_id.to_u128();
    // A stored chunk cut short, then one whose compressed bytes are damaged.
    let stored = {
        let raw = redb::Database::open(&path).unwrap();
        let txn = raw.begin_read().unwrap();
        let table = txn.open_table(raw_chunks).unwrap();
        table
            .get((trace, first.to_u64()))
            .unwrap()
            .unwrap()
            .value()
            .to_vec()
    };
    let mut damaged = stored.clone();
    let last = damaged.len() - 3;
    damaged[last] ^= 0xff;
    for bad in [
        stored[..stored.len() / 2].to_vec(),
        damaged,
        vec![9, 0, 1, 0],
    ] {
        let raw = redb::Database::open(&path).unwrap();
        let txn = raw.begin_write().unwrap();
        txn.open_table(raw_chunks)
            .unwrap()
            .insert((trace, first.to_u64()), bad.as_slice())
            .unwrap();
        txn.commit().unwrap();
        drop(raw);

        let store = SpanStore::open(dir.path()).unwrap();
        let err = store.spans_of_trace(spans[0].trace_id).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::CorruptChunk { .. } | StoreError::Corrupt { .. }
            ),
            "{err}"
        );
        let parts_err = store.contents_of_traces(&[spans[0].trace_id]).unwrap_err();
        assert_eq!(parts_err.to_string(), err.to_string());
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains(&first.to_string()), "{err}");
        assert!(SpanStore::check(dir.path()).is_err());
        assert!(store.spans().unwrap().any(|span| span.is_err()));
    }

    let raw = redb::Database::open(&path).unwrap();
    let txn = raw.begin_write().unwrap();
    txn.open_table(raw_meta)
        .unwrap()
        .insert("layout", 99)
        .unwrap();
    txn.commit().unwrap();
    drop(raw);
    let err = SpanStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::UnsupportedLayout { found: 99, .. }),
        "{err}"
    );
}

/// A store of layout version 1 (one entry per span in the table `spans`, written here as that layout's build
/// wrote it) is refused by every open, with a message naming the file and both versions, and is left unchanged.
#[test]
fn a_store_of_the_old_layout_is_refused_with_both_versions_and_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE_NAME);
    let nginx = object("prod", "apps", "deployments", "default", "nginx");
    let spans = trace_of(&nginx, "2024-05-01T12:00:00Z");
    let v1_meta: redb::TableDefinition<'_, &str, u32> = redb::TableDefinition::new("meta");
    let v1_spans: redb::TableDefinition<'_, (u128, u64), &[u8]> =
        redb::TableDefinition::new("spans");
    let v1_traces: redb::TableDefinition<'_, u128, ()> = redb::TableDefinition::new("traces");
    {
        let raw = redb::Database::create(&path).unwrap();
        let txn = raw.begin_write().unwrap();
        txn.open_table(v1_meta)
            .unwrap()
            .insert("layout", 1)
            .unwrap();
        let mut table = txn.open_table(v1_spans).unwrap();
        for span in &spans {
            let mut bytes = Vec::new();
            crate::codec::encode_span(span, &mut bytes);
            table
                .insert(
                    (span.trace_id.to_u128(), span.span_id.to_u64()),
                    bytes.as_slice(),
                )
                .unwrap();
        }
        drop(table);
        txn.open_table(v1_traces)
            .unwrap()
            .insert(spans[0].trace_id.to_u128(), ())
            .unwrap();
        txn.commit().unwrap();
    }
    type Open = fn(&std::path::Path) -> Result<SpanStore, StoreError>;
    let opens: [(&str, Open); 3] = [
        ("open", |dir| SpanStore::open(dir)),
        ("create", |dir| SpanStore::create(dir)),
        ("open_read_only", |dir| SpanStore::open_read_only(dir)),
    ];
    for (how, open) in opens {
        let err = open(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::UnsupportedLayout {
                    found: 1,
                    supported: crate::LAYOUT_VERSION,
                    ..
                }
            ),
            "{how}: {err}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()),
            "{how}: {message}"
        );
        assert!(message.contains("layout version 1,"), "{how}: {message}");
        assert!(
            message.contains(&format!("layout version {} only", crate::LAYOUT_VERSION)),
            "{how}: {message}"
        );
    }
    assert_eq!(crate::LAYOUT_VERSION, 2);
    let err = SpanStore::check(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::UnsupportedLayout { found: 1, .. }),
        "{err}"
    );
    // Left as it was: the old tables, no table of the new layout.
    let raw = redb::Database::open(&path).unwrap();
    let txn = raw.begin_read().unwrap();
    let tables: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|table| table.name().to_owned())
        .collect();
    assert_eq!(tables, ["meta", "spans", "traces"]);
    let layout = txn.open_table(v1_meta).unwrap().get("layout").unwrap();
    assert_eq!(layout.map(|v| v.value()), Some(1));
}

/// Enough spans to train the dictionary: later chunks name it, a reader opened before it was written and a
/// reopened store read them, and spans written before it stay readable.
#[test]
fn spans_compressed_with_the_trained_dictionary_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        shared_with_readers: true,
        ..StoreOptions::default()
    };
    let store = SpanStore::create_with(dir.path(), &options).unwrap();
    let reader = SpanStore::open_read_only(dir.path()).unwrap();
    let mut written = Vec::new();
    for round in 0..24 {
        let mut batch = Vec::new();
        for i in 0..50 {
            let pod = object("prod", "", "pods", "default", &format!("web-{i}"));
            let mut spans = trace_of(&pod, &format!("2024-05-01T{:02}:10:{:02}Z", round, i % 60));
            batch.append(&mut spans);
        }
        store.write_spans(&batch).unwrap();
        written.extend(batch);
    }
    let dictionaries: redb::TableDefinition<'_, u32, &[u8]> =
        redb::TableDefinition::new("dictionaries");
    let expected = {
        let mut unique = sorted(written);
        unique.dedup_by_key(|s| (s.trace_id, s.span_id));
        unique
    };
    assert_eq!(store.span_count().unwrap(), expected.len() as u64);
    assert_eq!(all(&store), expected);
    assert_eq!(all(&reader), expected);
    drop((store, reader));
    {
        let raw = redb::Database::open(dir.path().join(STORE_FILE_NAME)).unwrap();
        let txn = raw.begin_read().unwrap();
        use redb::ReadableTableMetadata;
        assert_eq!(
            txn.open_table(dictionaries).unwrap().len().unwrap(),
            1,
            "a dictionary was trained"
        );
    }
    let store = SpanStore::open_read_only(dir.path()).unwrap();
    assert_eq!(all(&store), expected);
    let one = &expected[expected.len() / 2];
    assert_eq!(
        store.span(one.trace_id, one.span_id).unwrap().as_ref(),
        Some(one)
    );
}

/// A trace with more spans than a chunk holds is split into chunks; spans added to it later, in any order, and
/// copies of spans already stored, land in the right chunk.
#[test]
fn a_large_trace_is_split_into_chunks_and_grows_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::create(dir.path()).unwrap();
    let nginx = object("prod", "apps", "deployments", "default", "nginx");
    let w = window("2024-05-01T12:00:00Z");
    let make = |i: usize| {
        let mut a = Activity::new(
            Object::new(nginx.clone()),
            SourceKind::Audit,
            w.start(),
            "update",
            format!("audit-{i}"),
        );
        a.attribute("username", format!("user-{}", i % 7));
        activity_span(&a, w)
    };
    let spans: Vec<SpanRecord> = (0..1_000).map(make).collect();
    let trace = spans[0].trace_id;
    for part in spans.chunks(97).rev() {
        store.write_spans(part).unwrap();
    }
    store.write_spans(&spans[10..20]).unwrap();
    assert_eq!(store.span_count().unwrap(), 1_000);
    assert_eq!(store.trace_count().unwrap(), 1);
    assert_eq!(store.spans_of_trace(trace).unwrap(), sorted(spans.clone()));
    assert_eq!(all(&store), sorted(spans.clone()));
    for span in spans.iter().step_by(37) {
        assert_eq!(
            store.span(trace, span.span_id).unwrap().as_ref(),
            Some(span)
        );
    }
    let chunks: redb::TableDefinition<'_, (u128, u64), &[u8]> =
        redb::TableDefinition::new("span_chunks");
    drop(store);
    let raw = redb::Database::open(dir.path().join(STORE_FILE_NAME)).unwrap();
    let txn = raw.begin_read().unwrap();
    use redb::ReadableTableMetadata;
    let count = txn.open_table(chunks).unwrap().len().unwrap();
    assert!((8..=40).contains(&count), "{count} chunks for 1,000 spans");
}

/// `contents_of_traces` gives what `spans_of_traces` gives, its link spans read as links: over several traces, one
/// of several chunks, an unknown one, and link spans that stand for no link.
#[test]
fn contents_of_traces_are_the_spans_of_traces_with_links_read_as_links() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::create(dir.path()).unwrap();
    let nginx = object("prod", "apps", "deployments", "default", "nginx");
    let w = window("2024-05-01T12:00:00Z");
    let mut spans = trace_of(&nginx, "2024-05-01T12:00:00Z");
    spans.extend(trace_of(&nginx, "2024-05-01T13:00:00Z"));
    for i in 0..300 {
        let pod = object("prod", "", "pods", "default", &format!("nginx-{i}"));
        let link = Link::child(pod.clone()).with_class(if i % 2 == 0 { "children" } else { "" });
        let mut span = link_span(&nginx, w, &link);
        if i % 50 == 7 {
            // No role: a link span that stands for no link.
            span.attributes.retain(|(name, _)| name != "linkRole");
        }
        spans.push(span);
        spans.push(object_span(&pod, w));
    }
    store.write_spans(&spans).unwrap();
    let mut traces: Vec<TraceId> = spans.iter().map(|s| s.trace_id).collect();
    traces.sort();
    traces.dedup();
    traces.insert(1, TraceId::from_u128(12345).unwrap());
    let whole = store.spans_of_traces(&traces).unwrap();
    let parts = store.contents_of_traces(&traces).unwrap();
    assert_eq!(parts.len(), traces.len());
    let mut links = 0;
    for (spans, parts) in whole.into_iter().zip(parts) {
        let mut expected = crate::TraceContents::default();
        for span in spans {
            if span.kind == kelemetry_core::SpanKind::Link {
                match crate::codec::StoredLink::of_span(&span) {
                    Some(link) => expected.links.push(link),
                    None => expected.unusable_links += 1,
                }
            } else {
                expected.spans.push(span);
            }
        }
        links += expected.links.len();
        assert_eq!(parts, expected);
    }
    assert_eq!(links, 2 + 300 - 6);
    // Some of them, out of order and one twice: the sweep reads past the others (gaps of 2) or seeks (gaps of 12).
    for step in [3, 13] {
        let some: Vec<TraceId> = traces
            .iter()
            .rev()
            .step_by(step)
            .copied()
            .chain([traces[5], traces[5]])
            .collect();
        let one_by_one: Vec<crate::TraceContents> = some
            .iter()
            .map(|trace| store.contents_of_traces(&[*trace]).unwrap().remove(0))
            .collect();
        assert_eq!(store.contents_of_traces(&some).unwrap(), one_by_one);
        assert!(
            one_by_one
                .iter()
                .all(|c| !c.spans.is_empty() || c.links.is_empty())
        );
        // The whole spans asked for the same way are the spans the store holds of each trace, as a scan of
        // every stored span reads them.
        let mut held: std::collections::HashMap<TraceId, Vec<SpanRecord>> = Default::default();
        for span in store.spans().unwrap() {
            let span = span.unwrap();
            held.entry(span.trace_id).or_default().push(span);
        }
        let whole = store.spans_of_traces(&some).unwrap();
        assert_eq!(whole.len(), some.len());
        for (trace, spans) in some.iter().zip(whole) {
            assert_eq!(
                spans,
                held.get(trace).cloned().unwrap_or_default(),
                "{trace}"
            );
        }
    }
    // The windows and the chunks of several objects at once (one unknown, one twice) are their windows, and the
    // contents of those windows' traces.
    let mut keys: Vec<ObjectKey> = (0..300)
        .step_by(7)
        .map(|i| object("prod", "", "pods", "default", &format!("nginx-{i}")).key)
        .collect();
    keys.push(nginx.key.clone());
    keys.push(ObjectKey::new("prod", "", "pods", "default", "unknown"));
    keys.push(keys[3].clone());
    let (from, to) = (Timestamp::MIN, Timestamp::MAX);
    let (windows, chunks) = store.windows_and_chunks_of_many(&keys, from, to).unwrap();
    assert_eq!(windows, store.windows_of_many(&keys, from, to).unwrap());
    let traces: Vec<TraceId> = windows.iter().flatten().map(|w| w.trace_id).collect();
    assert_eq!(traces.len(), 43 + 2 + 1, "{windows:?}");
    assert_eq!(
        chunks.contents().unwrap(),
        store.contents_of_traces(&traces).unwrap()
    );
}

#[test]
fn a_large_batch_is_written_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::create(dir.path()).unwrap();
    let nginx = object("prod", "apps", "deployments", "default", "nginx");
    let w = window("2024-05-01T12:00:00Z");
    let spans: Vec<SpanRecord> = (0..20_000)
        .map(|i| {
            let activity = Activity::new(
                Object::new(nginx.clone()),
                SourceKind::Audit,
                w.start(),
                "get",
                format!("audit-{i}"),
            );
            activity_span(&activity, w)
        })
        .collect();
    let batch = PreparedBatch::new(&spans);
    assert_eq!(batch.len(), 20_000);
    store.write(&batch, WriteDurability::Immediate).unwrap();
    assert_eq!(store.span_count().unwrap(), 20_000);
    assert_eq!(store.trace_count().unwrap(), 1);
    // Activity spans alone do not make an object known to the index.
    assert_eq!(store.object_count().unwrap(), 0);
}

#[test]
fn a_writer_that_has_the_store_to_itself_refuses_other_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::create(dir.path()).unwrap();
    let err = SpanStore::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    drop(store);
    let read_only = SpanStore::open_read_only(dir.path()).unwrap();
    assert_eq!(read_only.span_count().unwrap(), 0);
}

#[test]
fn a_reader_opened_before_the_writes_sees_each_later_commit() {
    let dir = tempfile::tempdir().unwrap();
    let shared = StoreOptions {
        shared_with_readers: true,
        ..StoreOptions::default()
    };
    let writer = SpanStore::create_with(dir.path(), &shared).unwrap();
    let reader = SpanStore::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.span_count().unwrap(), 0);
    let nginx = object("prod", "apps", "deployments", "default", "nginx");
    for (hour, expected) in [(12, 4), (13, 8), (14, 12)] {
        let spans = trace_of(&nginx, &format!("2024-05-01T{hour}:00:00Z"));
        writer.write_spans(&spans).unwrap();
        assert_eq!(reader.span_count().unwrap(), expected, "after hour {hour}");
        assert_eq!(
            sorted(reader.spans_of_trace(spans[0].trace_id).unwrap()),
            sorted(spans)
        );
    }
    // A second writer is refused while the first one is open, shared or not.
    let err = SpanStore::open_with(dir.path(), &shared).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    let err = SpanStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
}

/// Set in the child process of [`a_store_whose_writer_was_killed_is_repaired_by_the_next_writer`]: the store
/// folder it writes into before aborting.
const CRASH_CHILD_ENV: &str = "KELEMETRY_STORE_TEST_CRASH_DIR";

/// Written by the child of [`store_of_a_killed_writer`] once it has written, when asked to wait.
const WRITTEN_MARK: &str = "written";
/// Created by the parent to let a waiting child abort.
const ABORT_MARK: &str = "abort";

/// Writes a store shared with readers and aborts the process with the store open, as a `kill -9` would. When the
/// folder holds a file `wait`, it first says it has written ([`WRITTEN_MARK`]) and waits for [`ABORT_MARK`].
fn write_then_abort(dir: &std::path::Path) -> ! {
    let shared = StoreOptions {
        shared_with_readers: true,
        ..StoreOptions::default()
    };
    let store = SpanStore::create_with(dir, &shared).unwrap();
    for hour in 10..20 {
        let nginx = object("prod", "apps", "deployments", "default", "nginx");
        store
            .write_spans(&trace_of(&nginx, &format!("2024-05-01T{hour}:00:00Z")))
            .unwrap();
    }
    if dir.join("wait").exists() {
        std::fs::write(dir.join(WRITTEN_MARK), "").unwrap();
        while !dir.join(ABORT_MARK).exists() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    std::process::abort();
}

/// A store folder whose writer was killed: a child process (this test binary, running
/// [`a_store_whose_writer_was_killed_is_repaired_by_the_next_writer`] with [`CRASH_CHILD_ENV`] set) writes 40 spans
/// into a store shared with readers and aborts with it open.
fn store_of_a_killed_writer() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::a_store_whose_writer_was_killed_is_repaired_by_the_next_writer",
        ])
        .env(CRASH_CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the writer was meant to abort");
    dir
}

#[test]
fn a_store_whose_writer_was_killed_is_repaired_by_the_next_writer() {
    if let Some(dir) = std::env::var_os(CRASH_CHILD_ENV) {
        write_then_abort(std::path::Path::new(&dir));
    }
    let dir = store_of_a_killed_writer();
    let err = SpanStore::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NeedsRepair { .. }), "{err}");
    assert!(err.to_string().contains(STORE_FILE_NAME), "{err}");
    let err = SpanStore::check(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NeedsRepair { .. }), "{err}");

    let report = SpanStore::repair(dir.path()).unwrap();
    assert!(report.repaired_on_open, "{report:?}");
    assert!(!report.repaired_by_check, "{report:?}");
    assert_eq!(report.spans, 40, "every committed write survives");
    let check = SpanStore::check(dir.path()).unwrap();
    assert_eq!((check.spans, check.traces, check.objects), (40, 10, 1));

    // Repaired and closed cleanly: the next writable open repairs nothing.
    let again = SpanStore::open(dir.path()).unwrap();
    assert_eq!(again.repaired_on_open(), None);
    // The repair of a clean store changes nothing.
    drop(again);
    let report = SpanStore::repair(dir.path()).unwrap();
    assert!(
        !report.repaired_on_open && !report.repaired_by_check,
        "{report:?}"
    );
}

#[test]
fn a_reader_open_when_its_writer_is_killed_keeps_reading_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wait"), "").unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::a_store_whose_writer_was_killed_is_repaired_by_the_next_writer",
        ])
        .env(CRASH_CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !dir.path().join(WRITTEN_MARK).exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the writer never wrote"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let reader = SpanStore::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.span_count().unwrap(), 40);
    std::fs::write(dir.path().join(ABORT_MARK), "").unwrap();
    assert!(
        !child.wait().unwrap().success(),
        "the writer was meant to abort"
    );
    assert_eq!(reader.span_count().unwrap(), 40);
    assert_eq!(all(&reader).len(), 40);
    // A new reader is refused until a writer repairs the store.
    let err = SpanStore::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NeedsRepair { .. }), "{err}");

    // The next writer repairs the store beside the old reader, which then follows its commits.
    let shared = StoreOptions {
        shared_with_readers: true,
        ..StoreOptions::default()
    };
    let writer = SpanStore::open_with(dir.path(), &shared).unwrap();
    assert!(writer.repaired_on_open().is_some());
    let nginx = object("prod", "apps", "deployments", "default", "nginx");
    writer
        .write_spans(&trace_of(&nginx, "2024-05-01T21:00:00Z"))
        .unwrap();
    assert_eq!(reader.span_count().unwrap(), 44);
    assert_eq!(
        SpanStore::open_read_only(dir.path())
            .unwrap()
            .span_count()
            .unwrap(),
        44
    );
}

#[test]
fn a_killed_writer_is_repaired_by_the_next_writable_open() {
    let dir = store_of_a_killed_writer();
    let shared = StoreOptions {
        shared_with_readers: true,
        ..StoreOptions::default()
    };
    let store = SpanStore::open_with(dir.path(), &shared).unwrap();
    assert!(store.repaired_on_open().is_some());
    assert_eq!(store.span_count().unwrap(), 40);
    // Readers join the repaired store while its writer has it open.
    let reader = SpanStore::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.trace_count().unwrap(), 10);
    let err = SpanStore::repair(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
}

/// Throughput check, not part of the normal run:
/// `cargo test -p kelemetry-store --release -- --ignored --nocapture million`.
#[test]
#[ignore = "slow; run by hand in release mode"]
fn a_million_spans() {
    let durability = if std::env::var_os("IMMEDIATE").is_some() {
        WriteDurability::Immediate
    } else {
        WriteDurability::Deferred
    };
    let mut encoded = 0usize;
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::create(dir.path()).unwrap();
    let objects: Vec<ObjectRef> = (0..10_000)
        .map(|i| object("prod", "", "pods", "default", &format!("pod-{i}")))
        .collect();
    let started = std::time::Instant::now();
    let mut written = 0usize;
    let mut batch = Vec::with_capacity(1000);
    for (i, o) in objects.iter().enumerate() {
        let w = window("2024-05-01T12:00:00Z");
        batch.push(object_span(o, w));
        for j in 0..99 {
            let mut a = Activity::new(
                Object::new(o.clone()),
                SourceKind::Audit,
                w.start(),
                "update",
                format!("{i}-{j}"),
            );
            a.attribute(
                "username",
                "system:serviceaccount:kube-system:replicaset-controller",
            );
            a.attribute("userAgent", "kube-controller-manager/v1.34.0");
            batch.push(activity_span(&a, w));
        }
        if batch.len() >= 1000 {
            let prepared = PreparedBatch::new(&batch);
            encoded += prepared.encoded_bytes();
            store.write(&prepared, durability).unwrap();
            written += batch.len();
            batch.clear();
        }
    }
    store.sync().unwrap();
    let elapsed = started.elapsed();
    let size = std::fs::metadata(store.path()).unwrap().len();
    println!(
        "{written} spans in {elapsed:?} ({:.0} spans/s), file {} MiB",
        written as f64 / elapsed.as_secs_f64(),
        size / (1024 * 1024)
    );
    assert_eq!(store.span_count().unwrap(), written as u64);
    println!("encoded {} bytes per span", encoded / written);
    let read_started = std::time::Instant::now();
    let read = store.spans().unwrap().count();
    println!("read back {read} spans in {:?}", read_started.elapsed());
}

/// Different spans with the same ids (audit records that share an audit id): the later written stays, whether
/// they come in one batch or in two, so where a batch is cut never decides what a store keeps.
#[test]
fn of_two_copies_of_a_span_the_later_stays_in_one_batch_as_in_two() {
    let deployment = object("prod", "apps", "deployments", "default", "nginx");
    let copy = |n: usize, user: &str| {
        let activity = Activity::new(
            Object::new(deployment.clone()),
            SourceKind::Audit,
            at("2024-05-01T12:00:00Z"),
            format!("{user} create"),
            format!("audit id {n}"),
        );
        activity_span(&activity, window("2024-05-01T12:00:00Z"))
    };
    // 200 pairs, the later copy of each after every first copy: enough for an unstable sort to swap some.
    let firsts: Vec<SpanRecord> = (0..200).map(|n| copy(n, "some-user")).collect();
    let laters: Vec<SpanRecord> = (0..200).map(|n| copy(n, "system:anonymous")).collect();
    assert_eq!(
        (firsts[7].trace_id, firsts[7].span_id),
        (laters[7].trace_id, laters[7].span_id)
    );
    let one_batch = vec![[firsts.clone(), laters.clone()].concat()];
    let two_batches = vec![firsts, laters.clone()];
    for batches in [one_batch, two_batches] {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::create(dir.path()).unwrap();
        for batch in &batches {
            store.write_spans(batch).unwrap();
        }
        assert_eq!(
            all(&store),
            sorted(laters.clone()),
            "{} batch(es)",
            batches.len()
        );
    }
}

/// Writes `rounds` batches of 40 Pod traces as deferred writes, each written to the file by a read (one transaction
/// per batch, as a bulk load larger than the held memory writes, leaving free pages behind); what was written.
fn bulk_load(store: &SpanStore, rounds: usize) -> Vec<SpanRecord> {
    let mut written = Vec::new();
    for round in 0..rounds {
        let mut batch = Vec::new();
        for i in 0..40 {
            let pod = object("prod", "", "pods", "default", &format!("web-{i}"));
            batch.extend(trace_of(&pod, &format!("2024-05-01T12:{round:02}:{i:02}Z")));
        }
        store
            .write(&PreparedBatch::new(&batch), WriteDurability::Deferred)
            .unwrap();
        assert!(store.span_count().unwrap() > 0);
        written.extend(batch);
    }
    written
}

/// A bulk load (deferred writes) ends, at its sync, with a compaction that gives the free pages back: the file
/// shrinks and every span reads back.
#[test]
fn the_sync_after_deferred_writes_compacts_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::create(dir.path()).unwrap();
    let written = bulk_load(&store, 60);
    let before = std::fs::metadata(store.path()).unwrap().len();
    store.sync().unwrap();
    let after = std::fs::metadata(store.path()).unwrap().len();
    assert!(
        after < before,
        "{after} bytes after the sync, {before} before"
    );
    let mut expected = sorted(written);
    expected.dedup_by_key(|s| (s.trace_id, s.span_id));
    assert_eq!(all(&store), expected);
    // Nothing deferred since: the next sync does not compact, and a store shared with readers never does.
    store.sync().unwrap();
    assert!(
        !SpanStore::create_with(
            tempfile::tempdir().unwrap().path(),
            &StoreOptions {
                shared_with_readers: true,
                ..StoreOptions::default()
            }
        )
        .unwrap()
        .compact()
        .unwrap()
    );
    drop(store);
    assert_eq!(all(&SpanStore::open(dir.path()).unwrap()), expected);
}

/// A store opened with a small page cache compacts on the store opened again with a larger one, and is its own
/// writable self after; while a snapshot of this process is open ([`AllSpans`]) nothing is closed under it and no
/// compaction runs.
#[test]
fn a_store_with_a_small_cache_compacts_and_stays_writable_but_not_under_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        cache_bytes: 1024 * 1024,
        ..StoreOptions::default()
    };
    let store = SpanStore::create_with(dir.path(), &options).unwrap();
    let written = bulk_load(&store, 30);
    let mut expected = sorted(written);
    expected.dedup_by_key(|s| (s.trace_id, s.span_id));

    let snapshot = store.spans().unwrap();
    assert!(!store.compact().unwrap(), "compacted under a snapshot");
    let read: Vec<_> = snapshot.map(Result::unwrap).collect();
    assert_eq!(read, expected);

    let before = std::fs::metadata(store.path()).unwrap().len();
    assert!(store.compact().unwrap());
    let after = std::fs::metadata(store.path()).unwrap().len();
    assert!(
        after < before,
        "{after} bytes after the compaction, {before} before"
    );
    assert_eq!(all(&store), expected);
    // Open again with its own options: writes go on, durably, and a second open of the file is refused as before.
    let later = trace_of(
        &object("prod", "", "pods", "default", "late"),
        "2024-05-01T13:00:00Z",
    );
    store.write_spans(&later).unwrap();
    assert!(matches!(
        SpanStore::open(dir.path()),
        Err(StoreError::InUse { .. })
    ));
    drop(store);
    assert_eq!(
        all(&SpanStore::open(dir.path()).unwrap()),
        sorted([expected, later].concat())
    );
}

/// Deferred writes are held in memory and written together: reads see them at once, the file holds them after
/// the sync, and after the store is dropped without one (as closing the database makes deferred commits durable).
#[test]
fn held_deferred_writes_are_read_at_once_and_kept_by_a_sync_or_a_drop() {
    let nginx = object("prod", "apps", "deployments", "default", "nginx");
    let spans = trace_of(&nginx, "2024-05-01T12:00:00Z");
    for end in ["sync", "drop"] {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::create(dir.path()).unwrap();
        let file_before = std::fs::metadata(store.path()).unwrap().len();
        store
            .write(&PreparedBatch::new(&spans), WriteDurability::Deferred)
            .unwrap();
        // Held, not written: the file has not grown.
        assert_eq!(std::fs::metadata(store.path()).unwrap().len(), file_before);
        let reader = store.clone();
        assert_eq!(reader.span_count().unwrap(), 4, "{end}");
        assert_eq!(
            reader.spans_of_trace(spans[0].trace_id).unwrap(),
            sorted(spans.clone())
        );
        store
            .write(
                &PreparedBatch::new(&trace_of(&nginx, "2024-05-01T13:00:00Z")),
                WriteDurability::Deferred,
            )
            .unwrap();
        if end == "sync" {
            store.sync().unwrap();
        }
        drop((store, reader));
        let store = SpanStore::open(dir.path()).unwrap();
        assert_eq!(store.span_count().unwrap(), 8, "{end}");
        assert_eq!(store.trace_count().unwrap(), 2, "{end}");
        assert_eq!(
            store
                .windows_of(
                    &nginx.key,
                    at("2024-05-01T00:00:00Z"),
                    at("2024-05-02T00:00:00Z")
                )
                .unwrap()
                .len(),
            2,
            "{end}"
        );
    }
}

/// Of two copies of a span, the later written stays whether either of them was held: an `Immediate` write after a
/// held one, and a held one after an `Immediate` one.
#[test]
fn of_a_held_copy_and_a_written_copy_the_later_stays() {
    let deployment = object("prod", "apps", "deployments", "default", "nginx");
    let copy = |user: &str| {
        let activity = Activity::new(
            Object::new(deployment.clone()),
            SourceKind::Audit,
            at("2024-05-01T12:00:00Z"),
            format!("{user} create"),
            "audit id 1",
        );
        activity_span(&activity, window("2024-05-01T12:00:00Z"))
    };
    let (first, later) = (copy("some-user"), copy("system:anonymous"));
    assert_eq!(first.span_id, later.span_id);
    for order in [
        [WriteDurability::Deferred, WriteDurability::Immediate],
        [WriteDurability::Immediate, WriteDurability::Deferred],
        [WriteDurability::Deferred, WriteDurability::Deferred],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::create(dir.path()).unwrap();
        store
            .write(&PreparedBatch::new(std::slice::from_ref(&first)), order[0])
            .unwrap();
        store
            .write(&PreparedBatch::new(std::slice::from_ref(&later)), order[1])
            .unwrap();
        assert_eq!(all(&store), vec![later.clone()], "{order:?}");
        store.sync().unwrap();
        drop(store);
        assert_eq!(
            all(&SpanStore::open(dir.path()).unwrap()),
            vec![later.clone()],
            "{order:?}"
        );
    }
}

/// Deferred writes beyond the memory bound are written in pieces as they come (each piece sorted and merged into
/// the chunks the earlier pieces wrote), and the store holds every span once, as one write of everything would.
#[test]
fn a_bulk_load_beyond_the_held_bound_is_written_in_pieces() {
    let make_batches = || {
        (0..30).map(|round| {
            let mut batch = Vec::new();
            for i in 0..20 {
                let pod = object(
                    "prod",
                    "",
                    "pods",
                    "default",
                    &format!("web-{}", (i * 7 + round) % 25),
                );
                batch.extend(trace_of(
                    &pod,
                    &format!("2024-05-01T12:{:02}:00Z", round % 3),
                ));
            }
            batch
        })
    };
    let dir = tempfile::tempdir().unwrap();
    // About 3 batches of encoded spans held at most: 10 or so pieces.
    let store = SpanStore::create(dir.path())
        .unwrap()
        .with_held_bytes(60_000);
    let mut written = Vec::new();
    let mut pieces = 0;
    for batch in make_batches() {
        let prepared = PreparedBatch::new(&batch);
        let held_before = store.held_now();
        store.write(&prepared, WriteDurability::Deferred).unwrap();
        let held = store.held_now();
        if held == 0 {
            pieces += 1;
        } else {
            assert_eq!(held, held_before + prepared.encoded_bytes());
            assert!(held < 60_000, "{held} bytes held");
        }
        written.extend(batch);
    }
    assert!(pieces >= 5, "written in {pieces} pieces");
    store.sync().unwrap();
    assert_eq!(store.held_now(), 0);
    let expected = {
        let mut unique = sorted(written.clone());
        unique.dedup_by_key(|s| (s.trace_id, s.span_id));
        unique
    };
    assert_eq!(all(&store), expected);
    assert_eq!(store.span_count().unwrap(), expected.len() as u64);
    // The same spans written in one batch, durably, make the same store contents.
    let one_dir = tempfile::tempdir().unwrap();
    let one = SpanStore::create(one_dir.path()).unwrap();
    one.write_spans(&written).unwrap();
    assert_eq!(all(&one), expected);
    assert_eq!(one.trace_count().unwrap(), store.trace_count().unwrap());
    assert_eq!(one.object_count().unwrap(), store.object_count().unwrap());
}
