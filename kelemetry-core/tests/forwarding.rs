//! A forwarding pipeline (the `ingest` role): records are filtered, redacted and handed to the forwarder in
//! order; a delivery settles only with the forwarder's acknowledgement; a refused record fails the run.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kelemetry_core::forward::{Acknowledgement, MemoryForwarder, RecordForwarder};
use kelemetry_core::{
    Activity, BoxError, CancellationToken, Delivery, Filter, NotDelivered, Object, ObjectKey,
    ObjectRef, Pipeline, Record, SourceKind, wire,
};
use tokio::sync::Semaphore;

fn record(resource: &str, name: &str, n: usize) -> Record {
    let key = ObjectKey::new("c", "", resource, "ns", name);
    let body = serde_json::json!({"kind": "Secret", "metadata": {"name": name}, "data": {"password": "aHVudGVyMg=="}});
    Record::from(Activity::new(
        Object::with_body(ObjectRef::new(key, "v1", None), Arc::new(body)),
        SourceKind::Audit,
        format!("2026-05-01T12:00:{:02}Z", n % 60).parse().unwrap(),
        format!("update {name} {n}"),
        format!("{name}-{n}"),
    ))
}

#[tokio::test]
async fn records_are_filtered_redacted_and_forwarded_in_order() {
    let forwarder = Arc::new(MemoryForwarder::default());
    let pipeline = Pipeline::builder()
        .filter(Filter::default().exclude_resource("leases"))
        .forward(forwarder.clone())
        .build();
    let sink = pipeline.sink();
    let (delivery, receipt) = Delivery::new();
    for n in 0..200 {
        sink.send_tracked(record("secrets", &format!("s{}", n % 7), n), &delivery)
            .await
            .unwrap();
        sink.send_tracked(record("leases", "l", n), &delivery)
            .await
            .unwrap();
    }
    drop((sink, delivery));
    let report = pipeline.run(CancellationToken::new()).await;
    assert_eq!(receipt.await, Ok(()));
    assert_eq!((report.forwarded, report.filtered), (200, 200));
    assert_eq!(report.spans(), 0, "a forwarding pipeline makes no spans");
    report.check().unwrap();
    let records = forwarder.records();
    assert_eq!(records.len(), 200);
    for (n, record) in records.iter().enumerate() {
        let Record::Activity(activity) = record else {
            panic!("{record:?}")
        };
        assert_eq!(activity.dedup_key, format!("s{}-{n}", n % 7), "in order");
        let body = activity.object.body.as_ref().unwrap();
        assert_eq!(body["data"]["password"], "<redacted>");
        // And the wire carries it unchanged.
        assert_eq!(&wire::decode(&wire::encode(record)).unwrap(), record);
    }
}

#[tokio::test]
async fn a_refused_record_is_lost_loudly() {
    let forwarder = Arc::new(MemoryForwarder::default());
    forwarder.refuse(true);
    let pipeline = Pipeline::builder().forward(forwarder.clone()).build();
    let sink = pipeline.sink();
    let (delivery, receipt) = Delivery::new();
    for n in 0..3 {
        sink.send_tracked(record("secrets", "s", n), &delivery)
            .await
            .unwrap();
    }
    drop((sink, delivery));
    let report = pipeline.run(CancellationToken::new()).await;
    assert_eq!(receipt.await, Err(NotDelivered { records: 3 }));
    assert_eq!((report.forwarded, report.forward_failed), (0, 3));
    let failed = report.check().unwrap_err();
    assert_eq!(failed.forward_failed, 3);
    assert!(
        failed.to_string().contains("3 records not forwarded"),
        "{failed}"
    );
}

/// Acknowledges a record only when the test lets it (one permit each).
struct GatedForwarder {
    gate: Arc<Semaphore>,
}

#[async_trait]
impl RecordForwarder for GatedForwarder {
    fn name(&self) -> &str {
        "gated"
    }

    async fn forward(&self, _record: Record) -> Acknowledgement {
        let gate = self.gate.clone();
        Box::pin(async move {
            gate.acquire().await?.forget();
            Ok::<(), BoxError>(())
        })
    }

    async fn flush(&self, _timeout: Duration) -> Result<(), BoxError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_delivery_waits_for_the_acknowledgement_and_a_hard_stop_loses_what_waits() {
    let gate = Arc::new(Semaphore::new(0));
    let pipeline = Pipeline::builder()
        .forward(Arc::new(GatedForwarder { gate: gate.clone() }))
        .build();
    let stats = pipeline.stats();
    let sink = pipeline.sink();
    let (shutdown, hard_stop) = (CancellationToken::new(), CancellationToken::new());
    let run = tokio::spawn(pipeline.run_until(shutdown.clone(), hard_stop.clone()));

    let (delivery, mut first) = Delivery::new();
    sink.send_tracked(record("secrets", "a", 0), &delivery)
        .await
        .unwrap();
    drop(delivery);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        first.try_settled(),
        None,
        "not settled before the acknowledgement"
    );
    gate.add_permits(1);
    assert_eq!(first.await, Ok(()));

    let (delivery, second) = Delivery::new();
    for n in 1..4 {
        sink.send_tracked(record("secrets", "a", n), &delivery)
            .await
            .unwrap();
    }
    drop((sink, delivery));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        stats
            .queued_records
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    shutdown.cancel();
    hard_stop.cancel();
    let report = run.await.unwrap();
    assert_eq!(second.await, Err(NotDelivered { records: 3 }));
    assert_eq!(report.forwarded, 1);
    assert_eq!(report.abandoned, 3);
    assert!(report.check().is_err());
}
