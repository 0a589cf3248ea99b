//! # kelemetry-sources
//!
//! Sources of activities for Kelemetry: audit logs and webhooks, Kubernetes Events, recorded object streams.
