//! # kelemetry-exporters
//!
//! Exporters for Kelemetry: the embedded store, OTLP/JSON lines, OTLP.
