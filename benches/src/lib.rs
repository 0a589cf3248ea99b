//! Benchmarks and the throughput harness of Kelemetry for Rust.
//!
//! - [`corpus`]: builds a large apiserver audit log (by default a million events about a hundred thousand
//!   objects) from the real recorded audit events in `../shared/fixtures/audit`;
//! - [`counting_alloc`]: a global allocator that counts live bytes, for measuring retained memory;
//! - the binary `throughput` (`cargo run --release -p kelemetry-benches --bin throughput`): plain `serde_json`
//!   parsing against the full pipeline on the same file, and the memory kept per tracked object-window;
//! - the binary `shards` (`cargo run --release -p kelemetry-benches --bin shards`): the same pipeline on a
//!   multi-threaded runtime with 1 shard and with 2 (`PipelineLimits::shards`);
//! - the binary `latency` (`cargo run --release -p kelemetry-benches --bin latency`): a load generator posting
//!   audit batches at fixed rates to real `kelemetry run` processes, all-in-one or split around Kafka, and the
//!   time from each batch's 200 to its spans being written;
//! - the criterion benches in `benches/` (`cargo bench -p kelemetry-benches`): the hot pieces, each beside a
//!   baseline measured in the same run.
//!
//! See `benches/README.md` for how to run them and the figures measured.

pub mod corpus;
pub mod counting_alloc;
