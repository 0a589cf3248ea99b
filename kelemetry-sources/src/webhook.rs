//! [`AuditWebhook`]: the apiserver's audit webhook backend, an HTTP(S) server that takes `EventList` batches.
//!
//! The apiserver (`--audit-webhook-config-file`) POSTs batches of audit events to `/audit/{cluster}` (or `/audit`,
//! which uses the configured default cluster). Unlike the original, which always answered 200 and queued without
//! bound (docs/behaviour/audit.md#webhook), this server:
//!
//! - answers **200 only once every activity of the batch is in its bounded queue**, from where a forwarder hands
//!   them to the pipeline's sink in order: an accepted event is never dropped, even when the pipeline is slow;
//! - with a write-ahead log ([`WebhookConfig::wal`]), answers **200 only once the batch's body is also synced to
//!   disk**, keeps it there until the pipeline's [`Receipt`](kelemetry_core::Receipt) says every span made from it
//!   was exported, and replays what it holds at the next start before any new batch: a batch answered 200
//!   survives `kill -9` (docs/durability.md). Concurrent batches share one sync; a full log answers 429, a failed
//!   write 503;
//! - with [`WebhookConfig::acknowledge`] `delivered` (and no write-ahead log), answers **200 only once the pipeline
//!   delivered every record of the batch**: exported, or in the `ingest` role forwarded and acknowledged by Kafka;
//!   503 when some were lost. What was answered 200 survives `kill -9` without a disk;
//! - answers **429** (`Retry-After: 1`) when the queue has no room for the batch, without keeping the body when it
//!   is already full or when [`WebhookConfig::memory_pressure`] says so; the apiserver's webhook backend retries
//!   with backoff. A batch already read and parsed first waits up to [`WebhookConfig::queue_wait`] for room, so
//!   that a queue a little short of room does not make the client send, and this server parse, the same batch
//!   again. The queue is bounded twice: by
//!   activities ([`WebhookConfig::queue_events`]) and by the bytes of the request bodies they came from
//!   ([`WebhookConfig::queue_bytes`]), an estimate of the memory they hold;
//! - answers **413** for a body over [`WebhookConfig::body_limit`], **400** for a body that is not an audit
//!   `Event`/`EventList`, **401** without the bearer token, **503** while shutting down;
//! - requires a bearer token unless it listens on a loopback address (binding elsewhere without one is refused),
//!   and serves TLS from PEM certificate and key files when configured;
//! - keeps one client from starving the others ([`ConnectionLimits`]): connections bounded in all and per client
//!   (an idle one makes room for a newcomer, nothing waits in a queue), closed when silent past a head or idle
//!   timeout, bodies slower than a minimum rate cut with 408, the bodies read at once bounded;
//! - answers `GET /healthz` with `ok`, and `GET /readyz` with `ready` or 503 and the reason (no token needed).
//!
//! Bodies go through the same [`AuditIntake`](crate::audit_intake::AuditIntake) as the file sources: a body that
//! is not an audit document gets 400 naming its [`RejectReason`](crate::audit_intake::RejectReason); well-formed
//! events that are not traced (reads, intermediate stages) are counted as skipped; malformed events are reported as
//! rejections through the sink, with the same reasons as the file sources. [`WebhookMetrics`] counts it all.
//!
//! A request goes through small steps: admission (shutting down, bearer token, declared length, room in the queue
//! and the log, a read slot), reading the body, the intake, room in the queue, the write-ahead log, the queue; each
//! step that says no answers with its status.
//!
//! ```no_run
//! use kelemetry_core::{CancellationToken, Pipeline};
//! use kelemetry_sources::webhook::{AuditWebhook, WebhookConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = WebhookConfig::new("127.0.0.1:8087".parse()?, "prod");
//! let webhook = AuditWebhook::bind(config)?;
//! println!("listening on {}", webhook.local_addr());
//! let metrics = webhook.metrics();
//! let pipeline = Pipeline::builder().source(Box::new(webhook)).build();
//! // Cancel `shutdown` (e.g. on SIGTERM) to stop: what was accepted is delivered first.
//! let shutdown = CancellationToken::new();
//! pipeline.run(shutdown).await;
//! println!("accepted {} events", metrics.snapshot().events_accepted);
//! # Ok(()) }
//! ```

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener as StdTcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::HeaderValue;
use kelemetry_core::audit::AuditMapping;
use kelemetry_core::{ActivitySink, CancellationToken, Source, SourceError};
use tokio::sync::oneshot;
use tracing::info;

pub use self::limits::{ConnectionCounts, ConnectionLimits};
use self::queue::{BatchQueue, forward};
pub use self::readiness::ReadinessCheck;
use self::receive::{Shared, router};
use self::server::Server;
use self::tls::load_tls;
use self::wal::OpenedWal;
use self::wal::replay::Durable;
pub use self::wal::{DEFAULT_WAL_MAX_BYTES, DEFAULT_WAL_SEGMENT_BYTES, WalConfig, WalError};

mod admission;
mod body_rate;
mod limits;
mod queue;
mod readiness;
mod receive;
mod server;
mod tls;
mod wal;

#[doc(hidden)]
pub use self::receive::take_body;

/// Default largest request body: 16 MiB (the apiserver's batches are at most 400 events by default).
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Default queue room, in activities.
pub const DEFAULT_QUEUE_EVENTS: usize = 10_000;
/// Default queue room, in bytes of the request bodies the queued activities came from.
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// Default longest wait of a batch, read and parsed, for room in the queue.
pub const DEFAULT_QUEUE_WAIT: Duration = Duration::from_secs(1);
/// Default largest number of open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default largest number of request bodies read and parsed at the same time.
pub const DEFAULT_CONCURRENT_READS: usize = 8;

/// PEM files of the server's certificate chain and private key (`tls: {cert, key}` in a configuration file).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(rename_all = "camelCase", deny_unknown_fields)
)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The address an [`AuditWebhook`] listens on by default: `127.0.0.1:8087`.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8087));

/// How an [`AuditWebhook`] listens and how much it holds; [`WebhookConfig::build`] makes the webhook.
///
/// [`Default`] holds the defaults. With the feature `config` it is read from configuration files (the
/// `sources.webhook` section of `kelemetry run`'s file): camelCase keys, unknown keys refused, sizes like `16MiB`,
/// durations like `30s`; `defaultCluster`, `mapping` and `memoryPressure` are not read, the program sets them.
#[derive(Clone, Debug)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Cluster of batches posted to `/audit` (without a cluster in the path).
    #[cfg_attr(feature = "config", serde(skip))]
    pub default_cluster: String,
    /// The bearer token clients must send; required unless `listen` is a loopback address.
    pub token: Option<String>,
    /// A file holding the bearer token (surrounding white space is ignored), read when the webhook is bound; give
    /// either this or [`WebhookConfig::token`].
    pub token_file: Option<PathBuf>,
    /// Serve HTTPS with these files; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Largest request body, in bytes; larger ones get 413.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::size"))]
    pub body_limit: usize,
    /// Queue room in activities; a batch that does not fit gets 429.
    pub queue_events: usize,
    /// Queue room in bytes of request bodies; a batch that does not fit gets 429.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::size"))]
    pub queue_bytes: usize,
    /// Longest wait of a batch, once read and parsed, for room in the queue; then 429. Batches wait in the order
    /// they asked, each holding its read slot ([`WebhookConfig::concurrent_reads`]), so no more of them wait than
    /// there are slots. Zero answers 429 at once.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub queue_wait: Duration,
    /// Open connections at most; a further one takes the place of the connection idle the longest, or is closed
    /// at once ([`ConnectionLimits`]).
    pub max_connections: usize,
    /// Request bodies read and parsed at once at most; further requests get 429.
    pub concurrent_reads: usize,
    /// Longest time to receive a request body (which must also keep up with
    /// [`ConnectionLimits::min_body_rate`]); heads have [`ConnectionLimits::head_timeout`].
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub read_timeout: Duration,
    /// How audit events become activities.
    #[cfg_attr(feature = "config", serde(skip))]
    pub mapping: AuditMapping,
    /// Memory pressure: while it reads `true` and activities wait in the queue, new batches get 429 without their
    /// body being read into memory. Whoever watches the process's memory sets it (the `kelemetry` binary does,
    /// with `limits.memory`).
    #[cfg_attr(feature = "config", serde(skip))]
    pub memory_pressure: Option<Arc<AtomicBool>>,
    /// The write-ahead log: with it, a batch is answered 200 only once its body is synced to disk, and kept there
    /// until every span made from it is exported; it is replayed at the next start if the process dies first.
    /// Without it (or with [`WalConfig::enabled`] off), accepted batches wait in memory only.
    pub wal: Option<WalConfig>,
    /// When a batch without a write-ahead log is answered 200: once queued (the default), or once every record
    /// of it was delivered by the pipeline (exported, or forwarded and acknowledged by Kafka in the `ingest` role);
    /// a batch some of whose records were lost is then answered 503, and the apiserver sends it again.
    pub acknowledge: Acknowledge,
    /// Limits on slow, silent and greedy clients (`connections:`): per-client connections, head and idle
    /// timeouts, the TLS handshake timeout, the minimum body rate, the wait for a read slot.
    pub connections: ConnectionLimits,
    /// What `GET /readyz` reports besides shutting down: `Err(reason)` answers 503 with the reason. The program
    /// sets it (`kelemetry run` reports spans lost by its exporters).
    #[cfg_attr(feature = "config", serde(skip))]
    pub readiness: Option<ReadinessCheck>,
}

impl Default for WebhookConfig {
    /// Listening on [`DEFAULT_LISTEN`] without a token or TLS, with the `DEFAULT_*` bounds and a read timeout of
    /// 30 s; [`WebhookConfig::default_cluster`] is empty.
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            default_cluster: String::new(),
            token: None,
            token_file: None,
            tls: None,
            body_limit: DEFAULT_BODY_LIMIT,
            queue_events: DEFAULT_QUEUE_EVENTS,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            queue_wait: DEFAULT_QUEUE_WAIT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            concurrent_reads: DEFAULT_CONCURRENT_READS,
            read_timeout: Duration::from_secs(30),
            mapping: AuditMapping::default(),
            memory_pressure: None,
            wal: None,
            acknowledge: Acknowledge::Queued,
            connections: ConnectionLimits::default(),
            readiness: None,
        }
    }
}

/// When [`WebhookConfig::acknowledge`] answers a batch 200 (with a write-ahead log: once synced, whatever this says).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(rename_all = "camelCase")
)]
#[non_exhaustive]
pub enum Acknowledge {
    /// Once the batch is in the bounded queue: fast; what was queued is lost if the process dies.
    #[default]
    Queued,
    /// Once the pipeline delivered every record of the batch: survives the process's death without a disk,
    /// costs the pipeline's latency per batch (the apiserver sends the next batch meanwhile).
    Delivered,
}

impl WebhookConfig {
    /// The defaults, listening on `listen`, naming batches without a cluster `default_cluster`.
    pub fn new(listen: SocketAddr, default_cluster: impl Into<String>) -> Self {
        Self {
            listen,
            default_cluster: default_cluster.into(),
            ..Self::default()
        }
    }

    /// Binds the webhook: [`AuditWebhook::bind`].
    pub fn build(self) -> Result<AuditWebhook, WebhookError> {
        AuditWebhook::bind(self)
    }

    /// Reads [`WebhookConfig::token_file`] into [`WebhookConfig::token`].
    /// The checks that need no file and no socket: one token at most, a token off loopback, a usable inline token,
    /// no zero bounds. [`AuditWebhook::bind`] makes them too; a configuration reader calls this to place the error
    /// at its field ([`WebhookError::field`]).
    pub fn check(&self) -> Result<(), WebhookError> {
        if self.token.is_some() && self.token_file.is_some() {
            return Err(WebhookError::TwoTokens);
        }
        if self.token.is_none() && self.token_file.is_none() && !self.listen.ip().is_loopback() {
            return Err(WebhookError::TokenRequired {
                listen: self.listen,
            });
        }
        if let Some(token) = &self.token
            && !usable_token(token)
        {
            return Err(WebhookError::BadToken);
        }
        for (value, what, field) in [
            (self.body_limit, "body limit", "bodyLimit"),
            (self.queue_events, "queue size in events", "queueEvents"),
            (self.queue_bytes, "queue size in bytes", "queueBytes"),
            (self.max_connections, "connection limit", "maxConnections"),
            (self.concurrent_reads, "concurrent reads", "concurrentReads"),
        ] {
            if value == 0 {
                return Err(WebhookError::Zero { what, field });
            }
        }
        if let Some(wal) = self.durable() {
            wal.check()?;
        }
        self.connections.check()?;
        Ok(())
    }

    /// The write-ahead log, when one is configured and enabled.
    pub fn durable(&self) -> Option<&WalConfig> {
        self.wal.as_ref().filter(|wal| wal.enabled)
    }

    fn read_token_file(mut self) -> Result<Self, WebhookError> {
        let Some(path) = self.token_file.take() else {
            return Ok(self);
        };
        if self.token.is_some() {
            return Err(WebhookError::TwoTokens);
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|source| WebhookError::TokenFile { path, source })?;
        self.token = Some(text.trim().to_owned());
        Ok(self)
    }
}

/// Why an [`AuditWebhook`] cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// Listening on a non-loopback address without a token would let anyone write into the traces.
    #[error(
        "the audit webhook listens on {listen}, which is not a loopback address, but has no bearer token: \
         configure a token (the apiserver's webhook kubeconfig sends it), or listen on 127.0.0.1"
    )]
    TokenRequired {
        /// The address configured.
        listen: SocketAddr,
    },
    /// The token is empty or not usable in an HTTP header.
    #[error("the audit webhook's bearer token must be non-empty visible ASCII")]
    BadToken,
    /// Both a token and a token file were given.
    #[error("give the audit webhook's bearer token either inline or as a file, not both")]
    TwoTokens,
    /// The token file could not be read.
    #[error("cannot read the audit webhook's bearer token file {}: {source}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A size or count is zero.
    #[error("the audit webhook's {what} must be at least 1")]
    Zero {
        /// What it is, in words.
        what: &'static str,
        /// Its configuration key.
        field: &'static str,
    },
    /// The address could not be bound.
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        /// The address.
        listen: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file could not be read or used.
    #[error("TLS {what} {}: {detail}", path.display())]
    Tls {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The write-ahead log is misconfigured or cannot be opened.
    #[error(transparent)]
    Wal(#[from] WalError),
}

impl WebhookError {
    /// The configuration key (camelCase, in the webhook's section) the error is about, when it is about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::TokenRequired { .. } => Some("listen"),
            Self::BadToken => Some("token"),
            Self::TwoTokens | Self::TokenFile { .. } => Some("tokenFile"),
            Self::Zero { field, .. } => Some(field),
            Self::Bind { .. } => Some("listen"),
            Self::Tls { .. } => Some("tls"),
            Self::Wal(_) => Some("wal"),
        }
    }

    /// The error said of its [`field`](WebhookError::field), for messages that name the field already
    /// (`file:line: sources.webhook.queueEvents: must be at least 1`).
    pub fn of_field(&self) -> String {
        match self {
            Self::TokenRequired { listen } => {
                format!(
                    "{listen} is not a loopback address: a bearer token (token or tokenFile) is required"
                )
            }
            Self::TwoTokens => "give either token or tokenFile, not both".to_owned(),
            Self::Zero { .. } => "must be at least 1".to_owned(),
            other => other.to_string(),
        }
    }
}

/// Whether `token` can be sent in an `Authorization` header: non-empty visible ASCII.
fn usable_token(token: &str) -> bool {
    !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_graphic())
        && HeaderValue::from_str(token).is_ok()
}

/// What the webhook did, counted while it runs. Read with [`WebhookMetrics::snapshot`].
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    requests: AtomicU64,
    batches_accepted: AtomicU64,
    events_received: AtomicU64,
    events_accepted: AtomicU64,
    events_skipped: AtomicU64,
    events_invalid: AtomicU64,
    events_delivered: AtomicU64,
    events_lost: AtomicU64,
    throttled: AtomicU64,
    unauthorized: AtomicU64,
    too_large: AtomicU64,
    malformed: AtomicU64,
    unavailable: AtomicU64,
    queued_events: AtomicU64,
    durable: AtomicBool,
    wal_batches: AtomicU64,
    wal_syncs: AtomicU64,
    wal_full: AtomicU64,
    wal_failed: AtomicU64,
    wal_damaged: AtomicU64,
    wal_bytes: AtomicU64,
    replayed_batches: AtomicU64,
    replayed_events: AtomicU64,
    batches_not_delivered: AtomicU64,
    events_not_delivered: AtomicU64,
    connections: limits::ConnectionMetrics,
}

/// One line: requests, batches and events by outcome, then the refusals by status; with a write-ahead log, what it
/// did after a semicolon; then what the connection limits cut.
impl std::fmt::Display for WebhookCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests, {} batches accepted, {} events received, {} accepted, {} delivered, {} lost, {} skipped, \
             {} invalid; answered 429 {} times, 413 {}, 401 {}, 400/408 {}, 503 {}",
            self.requests,
            self.batches_accepted,
            self.events_received,
            self.events_accepted,
            self.events_delivered,
            self.events_lost,
            self.events_skipped,
            self.events_invalid,
            self.throttled,
            self.too_large,
            self.unauthorized,
            self.malformed,
            self.unavailable,
        )?;
        if self.durable {
            write!(
                f,
                "; write-ahead log: {} batches written, {} syncs, {} replayed ({} events), {} not delivered \
                 ({} events, kept for the next start), {} full, {} failed writes, {} damaged, {} bytes on disk",
                self.wal_batches,
                self.wal_syncs,
                self.replayed_batches,
                self.replayed_events,
                self.batches_not_delivered,
                self.events_not_delivered,
                self.wal_full,
                self.wal_failed,
                self.wal_damaged,
                self.wal_bytes,
            )?;
        }
        write!(f, "; {}", self.connections)
    }
}

/// A copy of the [`WebhookMetrics`] counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookCounts {
    /// Requests to `/audit` and `/audit/{cluster}`.
    pub requests: u64,
    /// Batches answered 200.
    pub batches_accepted: u64,
    /// Audit events in the bodies read.
    pub events_received: u64,
    /// Activities put into the queue (of batches answered 200).
    pub events_accepted: u64,
    /// Well-formed events not traced (reads, intermediate stages...).
    pub events_skipped: u64,
    /// Malformed events (reported as rejections).
    pub events_invalid: u64,
    /// Activities handed to the pipeline.
    pub events_delivered: u64,
    /// Accepted activities the pipeline did not take because it had closed (only at shutdown).
    pub events_lost: u64,
    /// Requests answered 429 (queue full, or too many bodies being read).
    pub throttled: u64,
    /// Requests answered 401.
    pub unauthorized: u64,
    /// Requests answered 413.
    pub too_large: u64,
    /// Requests answered 400 or 408.
    pub malformed: u64,
    /// Requests answered 503 (shutting down).
    pub unavailable: u64,
    /// Activities in the queue now.
    pub queued_events: u64,
    /// Whether a write-ahead log is in use (the counters below count only then).
    pub durable: bool,
    /// Batches written to the write-ahead log (each answered 200 once synced).
    pub wal_batches: u64,
    /// Syncs of the write-ahead log: each made one or more batches durable at once.
    pub wal_syncs: u64,
    /// Batches refused (429) because the write-ahead log had no room.
    pub wal_full: u64,
    /// Batches refused (503) because writing or syncing the write-ahead log failed.
    pub wal_failed: u64,
    /// Damaged stretches (torn tails, checksum mismatches) found in the write-ahead log at start.
    pub wal_damaged: u64,
    /// Bytes the write-ahead log holds on disk now.
    pub wal_bytes: u64,
    /// Batches read back from the write-ahead log at start and handed to the pipeline again.
    pub replayed_batches: u64,
    /// Activities of those batches.
    pub replayed_events: u64,
    /// Batches the pipeline did not export (an exporter gave up, or it stopped first); they stay in the
    /// write-ahead log for the next start.
    pub batches_not_delivered: u64,
    /// Activities of those batches that were lost.
    pub events_not_delivered: u64,
    /// What the connection limits cut, by reason.
    pub connections: ConnectionCounts,
}

impl WebhookMetrics {
    /// A copy of the counters.
    pub fn snapshot(&self) -> WebhookCounts {
        WebhookCounts {
            requests: self.requests.load(Relaxed),
            batches_accepted: self.batches_accepted.load(Relaxed),
            events_received: self.events_received.load(Relaxed),
            events_accepted: self.events_accepted.load(Relaxed),
            events_skipped: self.events_skipped.load(Relaxed),
            events_invalid: self.events_invalid.load(Relaxed),
            events_delivered: self.events_delivered.load(Relaxed),
            events_lost: self.events_lost.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            unauthorized: self.unauthorized.load(Relaxed),
            too_large: self.too_large.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            unavailable: self.unavailable.load(Relaxed),
            queued_events: self.queued_events.load(Relaxed),
            durable: self.durable.load(Relaxed),
            wal_batches: self.wal_batches.load(Relaxed),
            wal_syncs: self.wal_syncs.load(Relaxed),
            wal_full: self.wal_full.load(Relaxed),
            wal_failed: self.wal_failed.load(Relaxed),
            wal_damaged: self.wal_damaged.load(Relaxed),
            wal_bytes: self.wal_bytes.load(Relaxed),
            replayed_batches: self.replayed_batches.load(Relaxed),
            replayed_events: self.replayed_events.load(Relaxed),
            batches_not_delivered: self.batches_not_delivered.load(Relaxed),
            events_not_delivered: self.events_not_delivered.load(Relaxed),
            connections: self.connections.snapshot(),
        }
    }
}

/// The audit webhook, bound to its address and ready to run as a [`Source`]. See the module documentation.
pub struct AuditWebhook {
    listener: StdTcpListener,
    local_addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: WebhookConfig,
    metrics: Arc<WebhookMetrics>,
    wal: Option<OpenedWal>,
}

impl std::fmt::Debug for AuditWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWebhook")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .field("wal", &self.wal)
            .finish_non_exhaustive()
    }
}

impl AuditWebhook {
    /// Checks the configuration, reads the token file, loads the TLS files, opens the write-ahead log (checking
    /// what the previous process left in it) and binds the address. Refuses a non-loopback address without a
    /// token.
    pub fn bind(config: WebhookConfig) -> Result<Self, WebhookError> {
        config.check()?;
        let config = config.read_token_file()?;
        if let Some(token) = &config.token
            && !usable_token(token)
        {
            return Err(WebhookError::BadToken);
        }
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        let metrics = Arc::<WebhookMetrics>::default();
        let wal = match config.durable() {
            Some(wal_config) => {
                metrics.durable.store(true, Relaxed);
                Some(wal::open(wal_config, Arc::clone(&metrics))?)
            }
            None => None,
        };
        let bind_error = |source| WebhookError::Bind {
            listen: config.listen,
            source,
        };
        let listener = StdTcpListener::bind(config.listen).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            local_addr,
            tls,
            config,
            metrics,
            wal,
        })
    }

    /// The address it listens on (with the actual port when port 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The folder of its write-ahead log, when it writes ahead.
    pub fn write_ahead_log(&self) -> Option<&std::path::Path> {
        self.config.durable().map(|wal| wal.path.as_path())
    }

    /// The counters; read them while it runs or after.
    pub fn metrics(&self) -> Arc<WebhookMetrics> {
        Arc::clone(&self.metrics)
    }
}

#[async_trait]
impl Source for AuditWebhook {
    fn name(&self) -> &str {
        "audit-webhook"
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let AuditWebhook {
            listener,
            local_addr,
            tls,
            config,
            metrics,
            wal,
        } = *self;
        let origin = format!("audit webhook {local_addr}");
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|error| SourceError::io(origin.clone(), error))?;
        let durable = match wal {
            Some(wal) => {
                let (handle, replay) = wal
                    .start()
                    .map_err(|error| SourceError::other(origin.clone(), error))?;
                Some(Durable::new(handle, replay, &config, Arc::clone(&metrics)))
            }
            None => None,
        };
        let (queue, receiver) = BatchQueue::new(config.queue_events, config.queue_bytes);
        let wal_handle = durable.as_ref().map(|durable| durable.wal.clone());
        let shared = Arc::new(Shared::new(
            &config,
            queue,
            wal_handle,
            Arc::clone(&metrics),
        ));
        let (stop_forwarding, stop) = oneshot::channel();
        let forwarder = tokio::spawn(forward(receiver, sink, Arc::clone(&metrics), stop, durable));
        info!(address = %local_addr, tls = tls.is_some(), durable = metrics.durable.load(Relaxed), "audit webhook listening");
        let server = Server::new(
            listener,
            tls,
            router(Arc::clone(&shared)),
            &config,
            Arc::clone(&metrics),
        );
        server.accept_until(&shutdown).await;
        // Stop: no new connections; requests still in flight finish (and may still be accepted) within the grace.
        shared.stop_accepting();
        server.close().await;
        let _ = stop_forwarding.send(());
        forwarder
            .await
            .map_err(|error| SourceError::other(origin, error))?;
        let counts = metrics.snapshot();
        info!(
            accepted = counts.events_accepted,
            delivered = counts.events_delivered,
            throttled = counts.throttled,
            "audit webhook stopped"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_without_token_is_refused() {
        let config = WebhookConfig::new(
            "0.0.0.0:0"
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            "c",
        );
        assert!(matches!(
            AuditWebhook::bind(config),
            Err(WebhookError::TokenRequired { .. })
        ));
        let mut config = WebhookConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), "c");
        config.token = Some("has space".into());
        assert!(matches!(
            AuditWebhook::bind(config),
            Err(WebhookError::BadToken)
        ));
        let mut config = WebhookConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), "c");
        config.queue_events = 0;
        assert!(matches!(
            AuditWebhook::bind(config),
            Err(WebhookError::Zero { .. })
        ));
    }
}
