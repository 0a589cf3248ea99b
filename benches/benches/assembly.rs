//! Assembling a full-tree view of a Deployment with 1,000 Pods over two windows from the embedded store (issue 4:
//! the target is 20 ms), beside a baseline measured in the same run: reading the same spans trace by trace
//! through the same reader, without assembling.
//!
//! The store is built in a temporary folder from spans made by the core's span builders: a Deployment, two
//! ReplicaSets of 500 Pods each, owner links written both ways, one Kubernetes Event per object per window.
//!
//! The same view is also asked of the viewer's HTTP API (`GET /api/traces/{id}`, what the web viewer fetches to
//! show a trace; issue 17: at most 50 ms), served by `kelemetry_query::http::serve` (the server of
//! `kelemetry serve`) on a loopback port, over one kept-alive HTTP/1.1 connection, with the trace id a search
//! (`GET /api/traces?service=...`) gave.
//!
//! The bench runs with mimalloc as its global allocator, the allocator of the `kelemetry` binary that serves
//! views. (Before issue 17 it ran on the system allocator, glibc's malloc, on which allocating and freeing the
//! decoded spans was about a third of the time; benches/README.md gives the figures of both.)
//!
//! ```text
//! cargo bench -p kelemetry-benches --bench assembly
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use kelemetry_core::span::{activity_span, link_span, object_span};
use kelemetry_core::{
    Activity, Link, Object, ObjectKey, ObjectRef, SourceKind, SpanRecord, Windowing,
};
use kelemetry_query::display::{BaseMode, DisplayMode, Modifier};
use kelemetry_query::{Reader, TraceQuery, ViewRequest, assemble, display};
use kelemetry_store::{SpanStore, ViewLimits};

/// The allocator of the `kelemetry` binary, whose `serve` answers the viewer.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PODS: usize = 1_000;

fn owner_links(
    child: &ObjectRef,
    parent: &ObjectRef,
    window: kelemetry_core::Window,
) -> [SpanRecord; 2] {
    let up = Link::parent(parent.clone())
        .with_class("children")
        .with_dedup_id("owner");
    let down = Link::child(child.clone())
        .with_class("children")
        .with_dedup_id("owner");
    [
        link_span(child, window, &up),
        link_span(parent, window, &down),
    ]
}

fn event(
    object: &ObjectRef,
    at: Timestamp,
    window: kelemetry_core::Window,
    title: &str,
) -> SpanRecord {
    let activity = Activity::new(
        Object::new(object.clone()),
        SourceKind::Event,
        at,
        title,
        format!("{}-{at}-{title}", object.key),
    );
    activity_span(&activity, window)
}

/// The store and the Deployment's key.
fn build_store(dir: &std::path::Path) -> (SpanStore, ObjectKey) {
    let store = SpanStore::create(dir).expect("create the store");
    let windowing = Windowing::default();
    let deployment = ObjectRef::new(
        ObjectKey::new("bench", "apps", "deployments", "default", "web"),
        "v1",
        None,
    );
    let first: Timestamp = "2024-05-01T12:10:00Z".parse().expect("a time");
    for (w, at) in [first, first + SignedDuration::from_mins(30)]
        .into_iter()
        .enumerate()
    {
        let window = windowing.window_of(at);
        let mut spans = vec![
            object_span(&deployment, window),
            event(&deployment, at, window, "ScalingReplicaSet"),
        ];
        for r in 0..2 {
            let rs = ObjectRef::new(
                ObjectKey::new(
                    "bench",
                    "apps",
                    "replicasets",
                    "default",
                    format!("web-{r}"),
                ),
                "v1",
                None,
            );
            spans.push(object_span(&rs, window));
            spans.push(event(&rs, at, window, "SuccessfulCreate"));
            spans.extend(owner_links(&rs, &deployment, window));
            for p in 0..PODS / 2 {
                let pod = ObjectRef::new(
                    ObjectKey::new("bench", "", "pods", "default", format!("web-{r}-{p:04}")),
                    "v1",
                    None,
                );
                let at = at + SignedDuration::from_millis(i64::try_from(p).unwrap_or(0));
                spans.push(object_span(&pod, window));
                spans.push(event(
                    &pod,
                    at,
                    window,
                    if w == 0 { "Scheduled" } else { "Killing" },
                ));
                spans.extend(owner_links(&pod, &rs, window));
            }
        }
        store.write_spans(&spans).expect("write spans");
    }
    (store, deployment.key)
}

fn assembly(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (store, deployment) = build_store(dir.path());
    let reader = store;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mode = DisplayMode {
        base: BaseMode::Tracing,
        modifier: Some(Modifier::FullTree),
    };
    let mut request = ViewRequest::new(deployment.clone());
    request.selector = mode.selector();

    // Sanity: the view holds every object.
    let view = runtime
        .block_on(assemble(&reader, &request))
        .expect("assemble");
    let trace = display(&view, mode);
    assert_eq!(trace.spans.len(), 1 + 2 + PODS, "every object is a span");
    let keys: Vec<ObjectKey> = view
        .root
        .walk()
        .into_iter()
        .map(|(_, n)| n.history.key.clone())
        .collect();

    let mut group = c.benchmark_group("assembly");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function(
        "full tree of 1,000 pods, 2 windows: assemble + display",
        |b| {
            b.iter(|| {
                let view = runtime
                    .block_on(assemble(&reader, &request))
                    .expect("assemble");
                black_box(display(&view, mode))
            })
        },
    );
    for base in [BaseMode::Tree, BaseMode::Grouped] {
        let mode = DisplayMode {
            base,
            modifier: Some(Modifier::FullTree),
        };
        group.bench_function(format!("display only: {mode}"), |b| {
            b.iter(|| black_box(display(&view, mode)))
        });
    }
    group.bench_function("baseline: read the same traces, no assembly", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let (from, to) = (Timestamp::MIN, Timestamp::MAX);
                let mut spans = 0;
                for key in &keys {
                    for trace in reader.object_traces(key, from, to).await.expect("windows") {
                        spans += reader.trace(trace).await.expect("spans").len();
                    }
                }
                black_box(spans)
            })
        })
    });
    group.finish();
    api_answer(c, &runtime, &reader, mode);
}

type Client = hyper::client::conn::http1::SendRequest<Empty<&'static [u8]>>;

/// `GET path` on the connection: the status and the body.
async fn get(client: &mut Client, path: &str) -> (u16, Vec<u8>) {
    let request = hyper::Request::builder()
        .uri(path)
        .header(hyper::header::HOST, "127.0.0.1")
        .body(Empty::new())
        .expect("a request");
    client.ready().await.expect("the connection is ready");
    let response = client.send_request(request).await.expect("an answer");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    (status, body.to_vec())
}

/// The viewer's HTTP API over loopback: the server `kelemetry serve` runs, on the same store.
fn api_answer(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    store: &SpanStore,
    mode: DisplayMode,
) {
    let views = store.views(ViewLimits::default()).expect("the views file");
    let query = Arc::new(TraceQuery::new(Arc::new(store.clone()), Arc::new(views)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (address, server) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        let server = tokio::spawn(kelemetry_query::http::serve(listener, query, async {
            let _ = stopped.await;
        }));
        (address, server)
    });
    let mut client = runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let (client, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("an HTTP/1.1 connection");
        tokio::spawn(connection);
        client
    });
    let service: String = mode
        .to_string()
        .bytes()
        .map(|b| match b {
            b' ' => "%20".to_owned(),
            b'[' => "%5B".to_owned(),
            b']' => "%5D".to_owned(),
            other => char::from(other).to_string(),
        })
        .collect();
    let search = format!(
        "/api/traces?service={service}&operation=bench&tags=%7B%22resource%22%3A%22deployments%22%2C\
         %22namespace%22%3A%22default%22%2C%22name%22%3A%22web%22%7D&limit=1"
    );
    let (status, body) = runtime.block_on(get(&mut client, &search));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let found: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let trace_id = found["data"][0]["traceID"]
        .as_str()
        .expect("a trace id")
        .to_owned();
    let path = format!("/api/traces/{trace_id}");
    let (status, body) = runtime.block_on(get(&mut client, &path));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let trace: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let spans = trace["data"][0]["spans"].as_array().map_or(0, Vec::len);
    assert_eq!(spans, 1 + 2 + PODS, "every object is a span");
    println!(
        "API answer for the view: {} bytes of JSON, {spans} spans",
        body.len()
    );

    let mut group = c.benchmark_group("api");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function(
        "GET /api/traces/{id}: full tree of 1,000 pods, 2 windows",
        |b| b.iter(|| black_box(runtime.block_on(get(&mut client, &path)))),
    );
    group.bench_function("GET /api/traces?service=...: the search for it", |b| {
        b.iter(|| black_box(runtime.block_on(get(&mut client, &search))))
    });
    group.finish();
    drop(client);
    let _ = stop.send(());
    runtime
        .block_on(server)
        .expect("the server task")
        .expect("the server");
}

criterion_group!(benches, assembly);
criterion_main!(benches);
