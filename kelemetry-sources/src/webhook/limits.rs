//! [`ConnectionLimits`]: how long the webhook waits for a slow or silent client, and how many connections one
//! client may hold; [`ConnectionCounts`]: what those limits cut, by reason.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::WebhookError;

/// Default most connections open from one client address.
const DEFAULT_PER_PEER: usize = 64;
/// Default time a new connection has to send its first request head.
const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may stay open without a request in flight, once it has made one.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time for the TLS handshake.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default slowest rate a request body may arrive at once its grace is over, in bytes per second.
const DEFAULT_MIN_BODY_RATE: usize = 1024;
/// Default time a request body may take before it must keep up with the minimum rate.
const DEFAULT_BODY_GRACE: Duration = Duration::from_secs(5);
/// Default time a request waits for a read slot before it is answered 429.
const DEFAULT_READ_SLOT_WAIT: Duration = Duration::from_secs(10);

/// How the audit webhook treats slow, silent and greedy clients (`sources.webhook.connections` in `kelemetry run`'s
/// file, camelCase keys). [`WebhookConfig::max_connections`](super::WebhookConfig::max_connections) bounds the
/// connections of all clients together.
///
/// - A connection over [`per_peer`](Self::per_peer) or over the total closes the connection that has been idle
///   the longest (of that client, or of anyone) to take its place; when none is idle it is closed at once.
/// - A new connection that has not sent a complete request head within [`head_timeout`](Self::head_timeout)
///   (after the TLS handshake; with HTTP/2, its preface and first request) is closed; so is a connection without
///   a request in flight for [`idle_timeout`](Self::idle_timeout) once it has made one.
/// - A request body must keep arriving: after [`body_grace`](Self::body_grace) it must have sent at least
///   [`min_body_rate`](Self::min_body_rate) bytes for each further second, or it is answered 408.
/// - The bodies read at once are bounded ([`WebhookConfig::concurrent_reads`](super::WebhookConfig)); a slot is
///   taken once the head has arrived and its token checked, and a request waits
///   [`read_slot_wait`](Self::read_slot_wait) at most for one (in arrival order) before it is answered 429.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// Most connections open from one client address.
    pub per_peer: usize,
    /// Time a new connection has to send its first request head.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub head_timeout: Duration,
    /// Time a connection may stay without a request in flight once it has made one (HTTP/1.1 keep-alive,
    /// HTTP/2 between streams).
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub idle_timeout: Duration,
    /// Time for the TLS handshake.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub handshake_timeout: Duration,
    /// Slowest rate, in bytes per second, a request body may arrive at once its grace is over.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::size"))]
    pub min_body_rate: usize,
    /// Time a request body may take before it must keep up with [`min_body_rate`](Self::min_body_rate).
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub body_grace: Duration,
    /// Longest wait for a read slot; then 429.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub read_slot_wait: Duration,
}

impl Default for ConnectionLimits {
    /// 64 connections per client; a head timeout of 10 s, an idle timeout of 60 s, a TLS handshake timeout of
    /// 10 s; bodies at 1 KiB/s at least after a grace of 5 s; a wait of 10 s at most for a read slot.
    fn default() -> Self {
        Self {
            per_peer: DEFAULT_PER_PEER,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            min_body_rate: DEFAULT_MIN_BODY_RATE,
            body_grace: DEFAULT_BODY_GRACE,
            read_slot_wait: DEFAULT_READ_SLOT_WAIT,
        }
    }
}

impl ConnectionLimits {
    /// No count, rate or timeout may be zero.
    pub(super) fn check(&self) -> Result<(), WebhookError> {
        for (zero, what, field) in [
            (
                self.per_peer == 0,
                "connections per client",
                "connections.perPeer",
            ),
            (
                self.min_body_rate == 0,
                "minimum body rate",
                "connections.minBodyRate",
            ),
            (
                self.head_timeout.is_zero(),
                "head timeout",
                "connections.headTimeout",
            ),
            (
                self.idle_timeout.is_zero(),
                "idle timeout",
                "connections.idleTimeout",
            ),
            (
                self.handshake_timeout.is_zero(),
                "TLS handshake timeout",
                "connections.handshakeTimeout",
            ),
            (
                self.body_grace.is_zero(),
                "body grace",
                "connections.bodyGrace",
            ),
        ] {
            if zero {
                return Err(WebhookError::Zero { what, field });
            }
        }
        Ok(())
    }
}

/// The connection counters inside [`WebhookMetrics`](super::WebhookMetrics).
#[derive(Debug, Default)]
pub(super) struct ConnectionMetrics {
    pub(super) accepted: AtomicU64,
    pub(super) head_timeouts: AtomicU64,
    pub(super) idle_timeouts: AtomicU64,
    pub(super) handshake_failures: AtomicU64,
    pub(super) slow_bodies: AtomicU64,
    pub(super) peer_limit_closed_idle: AtomicU64,
    pub(super) peer_limit_refused: AtomicU64,
    pub(super) total_limit_closed_idle: AtomicU64,
    pub(super) total_limit_refused: AtomicU64,
    pub(super) read_slot_timeouts: AtomicU64,
}

impl ConnectionMetrics {
    pub(super) fn snapshot(&self) -> ConnectionCounts {
        ConnectionCounts {
            accepted: self.accepted.load(Relaxed),
            head_timeouts: self.head_timeouts.load(Relaxed),
            idle_timeouts: self.idle_timeouts.load(Relaxed),
            handshake_failures: self.handshake_failures.load(Relaxed),
            slow_bodies: self.slow_bodies.load(Relaxed),
            peer_limit_closed_idle: self.peer_limit_closed_idle.load(Relaxed),
            peer_limit_refused: self.peer_limit_refused.load(Relaxed),
            total_limit_closed_idle: self.total_limit_closed_idle.load(Relaxed),
            total_limit_refused: self.total_limit_refused.load(Relaxed),
            read_slot_timeouts: self.read_slot_timeouts.load(Relaxed),
        }
    }
}

/// What the [`ConnectionLimits`] cut, by reason (in [`WebhookCounts::connections`](super::WebhookCounts)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionCounts {
    /// Connections accepted (admitted within the limits, or in the place of an idle one).
    pub accepted: u64,
    /// Connections closed because no complete request head came within the head timeout.
    pub head_timeouts: u64,
    /// Connections closed after the idle timeout without a request in flight.
    pub idle_timeouts: u64,
    /// TLS handshakes that failed or timed out.
    pub handshake_failures: u64,
    /// Request bodies cut with 408 because they arrived slower than the minimum rate.
    pub slow_bodies: u64,
    /// Idle connections closed to make room for another connection of the same client.
    pub peer_limit_closed_idle: u64,
    /// Connections refused (closed at once) because the client had its most, all with a request in flight.
    pub peer_limit_refused: u64,
    /// Idle connections closed to make room when all connections were taken.
    pub total_limit_closed_idle: u64,
    /// Connections refused (closed at once) because all were taken by requests in flight.
    pub total_limit_refused: u64,
    /// Requests answered 429 because no read slot freed within the wait.
    pub read_slot_timeouts: u64,
}

/// One line: `N accepted; closed: ... head timeout, ... idle, ...`.
impl std::fmt::Display for ConnectionCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connections accepted; closed {} for the head timeout, {} idle, {} in the TLS handshake, {} to make \
             room for the same client and {} for another; refused {} over the per-client limit and {} over the \
             total; {} slow bodies cut, {} requests waited too long for a read slot",
            self.accepted,
            self.head_timeouts,
            self.idle_timeouts,
            self.handshake_failures,
            self.peer_limit_closed_idle,
            self.total_limit_closed_idle,
            self.peer_limit_refused,
            self.total_limit_refused,
            self.slow_bodies,
            self.read_slot_timeouts,
        )
    }
}
