//! Benchmarks and the throughput harness of Kelemetry for Rust.
//!
//! - [`corpus`]: builds a large apiserver audit log (by default a million events about a hundred thousand
//!   objects) from the real recorded audit events in `../shared/fixtures/audit`;
//! - [`counting_alloc`]: a global allocator that counts live bytes, for measuring retained memory;
//! - [`audit_batches`]: audit `EventList` batches made of copies of a recorded audit log, and the CPU time and
//!   memory of a process read from `/proc`, for the load generators;
//! - [`harness`]: what the load generators share besides their events: a `kelemetry run` child watched through its
//!   standard error, keep-alive HTTP/1.1 posts to an audit webhook, the default paths and their error;
//! - the binary `throughput` (`cargo run --release -p kelemetry-benches --bin throughput`): plain `serde_json`
//!   parsing against the full pipeline on the same file, and the memory kept per tracked object-window;
//! - the binary `shards` (`cargo run --release -p kelemetry-benches --bin shards`): the same pipeline on a
//!   multi-threaded runtime with 1 shard and with 2 (`PipelineLimits::shards`);
//! - the binary `latency` (`cargo run --release -p kelemetry-benches --bin latency`): a load generator posting
//!   audit batches at fixed rates to real `kelemetry run` processes, all-in-one or split around Kafka, and the
//!   time from each batch's 200 to its spans being written;
//! - the binary `side_by_side` (`cargo run --release -p kelemetry-benches --bin side_by_side`): the same batches
//!   posted to a webhook, ours or the original Kelemetry's, with an OTLP sink counting the spans, and each
//!   side's events per second, CPU time per event and memory;
//! - the criterion benches in `benches/` (`cargo bench -p kelemetry-benches`): the hot pieces, each beside a
//!   baseline measured in the same run.
//!
//! See `benches/README.md` for how to run them and the figures measured.

pub mod audit_batches;
pub mod corpus;
pub mod counting_alloc;
pub mod harness;
