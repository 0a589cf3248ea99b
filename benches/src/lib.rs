//! Benchmarks and the throughput harness of Kelemetry for Rust.
