//! # kelemetry-linkers
//!
//! Linkers for Kelemetry: how Kubernetes objects relate (owner references, annotations, rules).
