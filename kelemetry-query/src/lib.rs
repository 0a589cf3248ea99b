//! # kelemetry-query
//!
//! The read side of Kelemetry: readers, trace assembly, display modes and renderers.
