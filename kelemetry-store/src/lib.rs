//! # kelemetry-store
//!
//! The embedded span store of Kelemetry (redb): written by the exporter, read by the query side.
