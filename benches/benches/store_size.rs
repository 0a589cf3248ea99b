//! Bytes per span of the embedded store filled from the recorded-shape corpus (issue 17: at most 200).
//!
//! The audit log is built by `kelemetry_benches::corpus` and replayed the way `kelemetry replay FILE --store DIR`
//! fills a store: `AuditFileSource` → `Pipeline` with `DiffDecorator` and `OwnerLinker` → each batch encoded
//! ([`PreparedBatch`]) and written with [`WriteDurability::Deferred`], one sync at the end (what the CLI's
//! `StoreExporter` does; the exporter crate is not a dependency of the benches). Then the store file's size is
//! divided by the spans it holds, and every span is read back once (the time of that is printed beside the
//! time of reading the same file's bytes, as a baseline of the same run).
//!
//! ```text
//! taskset -c 1 cargo bench -p kelemetry-benches --bench store_size
//! KELEMETRY_BENCH_EVENTS=1000000 KELEMETRY_BENCH_OBJECTS=100000 \
//!     taskset -c 1 cargo bench -p kelemetry-benches --bench store_size
//! ```
//!
//! The corpus defaults to 200,000 events about 20,000 objects (`KELEMETRY_BENCH_EVENTS`, `KELEMETRY_BENCH_OBJECTS`
//! change it), which gives about 233,000 spans.
//!
//! ```text
//! ```

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use kelemetry_benches::corpus::{CorpusSpec, Templates, fixtures_dir, write_corpus_to_temp};
use kelemetry_core::decorate::DiffDecorator;
use kelemetry_core::{
    CancellationToken, ExportError, Exporter, Pipeline, ResourceMap, SpanKind, SpanRecord,
};
use kelemetry_linkers::OwnerLinker;
use kelemetry_sources::AuditFileSource;
use kelemetry_store::{PreparedBatch, SpanStore, WriteDurability};

/// Writes each batch into the store, deferred, and syncs at flush: the replay's `StoreExporter`.
struct DeferredStoreExporter {
    store: SpanStore,
}

type Boxed<'a> = Pin<Box<dyn Future<Output = Result<(), ExportError>> + Send + 'a>>;

impl Exporter for DeferredStoreExporter {
    fn name(&self) -> &str {
        "store"
    }

    fn export<'a, 'b, 'c>(&'a self, batch: &'b [SpanRecord]) -> Boxed<'c>
    where
        'a: 'c,
        'b: 'c,
    {
        Box::pin(async move {
            let prepared = PreparedBatch::new(batch);
            self.store
                .write(&prepared, WriteDurability::Deferred)
                .map_err(ExportError::permanent)
        })
    }

    fn flush<'a, 'c>(&'a self) -> Boxed<'c>
    where
        'a: 'c,
    {
        Box::pin(async move { self.store.sync().map_err(ExportError::permanent) })
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter given after `--` that does not name this bench skips it.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|arg| !arg.starts_with('-') && !"store_size".contains(arg.as_str()))
    {
        return;
    }
    let events = env_number("KELEMETRY_BENCH_EVENTS", 200_000);
    let objects = env_number("KELEMETRY_BENCH_OBJECTS", 20_000);
    let templates = Templates::load(&fixtures_dir()).expect("the recorded templates");
    let (corpus, summary) = write_corpus_to_temp(&CorpusSpec::sized(events, objects), &templates)
        .expect("write the corpus");
    println!(
        "corpus: {} events ({} writes, {} reads) about {} objects, {} bytes",
        summary.events, summary.writes, summary.reads, summary.objects, summary.bytes
    );

    // `KELEMETRY_BENCH_STORE_DIR` keeps the store in that (new) folder, for a look at it afterwards.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store_dir = std::env::var_os("KELEMETRY_BENCH_STORE_DIR")
        .map_or_else(|| dir.path().to_owned(), std::path::PathBuf::from);
    let store = SpanStore::create(&store_dir).expect("create the store");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    let report = runtime.block_on(async {
        Pipeline::builder()
            .decorator(Arc::new(DiffDecorator))
            .linker(Arc::new(OwnerLinker::new(Arc::new(ResourceMap::builtin()))))
            .exporter(Arc::new(DeferredStoreExporter {
                store: store.clone(),
            }))
            .source(Box::new(AuditFileSource::new(corpus.path(), "bench")))
            .build()
            .run(CancellationToken::new())
            .await
    });
    let replay = started.elapsed();
    let spans = store.span_count().expect("count spans");
    assert_eq!(
        spans,
        report.spans(),
        "every span the pipeline made is stored"
    );
    let file_bytes = std::fs::metadata(store.path())
        .expect("the store file")
        .len();
    println!(
        "replayed into the store in {:.2} s: {spans} spans, {} traces, {} objects",
        replay.as_secs_f64(),
        store.trace_count().expect("count traces"),
        store.object_count().expect("count objects"),
    );
    println!(
        "store file: {file_bytes} bytes, {:.1} bytes per span ({:.1} MiB per million spans)",
        file_bytes as f64 / spans as f64,
        file_bytes as f64 / spans as f64 * 1e6 / (1024.0 * 1024.0)
    );
    let mut kinds = [0u64; 3];
    let mut encoded = 0usize;
    let mut scratch = Vec::new();
    let read_started = Instant::now();
    for span in store.spans().expect("read every span") {
        let span = span.expect("a stored span");
        kinds[match span.kind {
            SpanKind::Object => 0,
            SpanKind::Link => 1,
            SpanKind::Activity(_) => 2,
        }] += 1;
        scratch.clear();
        kelemetry_store::codec::encode_span(&span, &mut scratch);
        encoded += scratch.len();
    }
    let read_all = read_started.elapsed();
    let raw_started = Instant::now();
    let mut raw = Vec::new();
    std::fs::File::open(store.path())
        .and_then(|mut file| file.read_to_end(&mut raw))
        .expect("read the store file");
    let raw_read = raw_started.elapsed();
    println!(
        "spans: {} object, {} link, {} activity; {:.1} bytes per span in the codec's uncompressed form",
        kinds[0],
        kinds[1],
        kinds[2],
        encoded as f64 / spans as f64
    );
    println!(
        "read back and decode every span: {:.3} s; baseline, read the file's bytes: {:.3} s (ratio {:.1})",
        read_all.as_secs_f64(),
        raw_read.as_secs_f64(),
        read_all.as_secs_f64() / raw_read.as_secs_f64()
    );
}
