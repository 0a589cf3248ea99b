//! [`LeaderElected`]: sources that run on one replica at a time, the one holding a `coordination.k8s.io/v1`
//! Lease (docs/scaling.md#leader-election).
//!
//! Several `kelemetry run` processes may watch the same cluster (for availability, or behind one Service for the
//! audit webhook), but the Events source and the object watch must run once per cluster: twice, every Event would
//! be read twice and the two watermarks would race. [`LeaderElected`] wraps them: it takes part in an election
//! through a Lease and runs what it wraps only while this process holds the Lease.
//!
//! - **Terms**: a [`Source`] is consumed by its run, so each term of leadership gets new sources from the
//!   [`TermSource`]s given (a closure `FnMut() -> Box<dyn Source>` is one). When the term ends, they are cancelled
//!   like at shutdown (the Events source stores its watermark), each [`TermSource::stopped`] is called, and the
//!   process follows again.
//! - **The election**, as client-go's: every [`LeaderElection::renew_period`] the process reads the Lease; it takes
//!   it when it is free (no holder: released), when it is its own, or when its record has not changed for
//!   [`LeaderElection::lease_duration`] *as measured on this process's clock since it saw the record change* (so
//!   the clocks of the replicas need not agree). Every write is an update with the resource version read
//!   (optimistic concurrency): of two replicas that try at once, one gets a conflict and follows.
//! - **Holding**: the holder renews every renew period. When it cannot renew for `lease duration − 2 × renew
//!   period` (the apiserver unreachable, a conflict), it stops its sources, before any other replica may take the
//!   Lease.
//! - **Handing over**: at shutdown the sources stop first (the Events source stores its watermark), then the Lease
//!   is released (its holder cleared), and the next replica takes it at its next read, within one renew period.
//!   When the holder dies instead, the others take the Lease once its record has been still for the lease
//!   duration: at most `lease duration + 2 × renew period` after the death.
//!
//! Losing or gaining the Lease never loses an Event: the Events source resumes from the watermark its predecessor
//! stored, and the Events handled after the predecessor's last store are handled again, with the same span ids
//! (docs/durability.md), so a store keeps one copy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kelemetry_core::{ActivitySink, CancellationToken, Source, SourceError};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// How a replica takes part in the election: which Lease, under which identity, and how fast.
///
/// [`Default`] holds the defaults. With the feature `config` it is read from configuration files (the
/// `sources.leaderElection` section of `kelemetry run`'s file): camelCase keys, unknown keys refused, durations
/// like `15s`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize),
    serde(default, rename_all = "camelCase", deny_unknown_fields)
)]
#[non_exhaustive]
pub struct LeaderElection {
    /// The name of the Lease (default `kelemetry`). Replicas of one cluster share it; another cluster's replicas
    /// use another.
    pub lease: String,
    /// Its namespace (default `default`).
    pub namespace: String,
    /// This replica's name in the Lease (`holderIdentity`); empty (the default): the host name and the process
    /// id. Two live replicas must not share one.
    pub identity: String,
    /// How long the Lease holds without a renewal (default 15 s): the longest a dead holder's sources stay
    /// unattended, less the renew period. Whole seconds (the Lease keeps seconds).
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub lease_duration: Duration,
    /// How often the holder renews and the others read the Lease (default 2 s); at most a third of the lease
    /// duration.
    #[cfg_attr(feature = "config", serde(with = "kelemetry_core::config::duration"))]
    pub renew_period: Duration,
}

impl Default for LeaderElection {
    /// The Lease `default/kelemetry`, the identity from the host name and process id, 15 s, renewed every 2 s.
    fn default() -> Self {
        Self {
            lease: "kelemetry".to_owned(),
            namespace: "default".to_owned(),
            identity: String::new(),
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(2),
        }
    }
}

/// A [`LeaderElection`] setting that cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct InvalidElection {
    /// The setting (its configuration-file key: `lease`, `namespace`, `leaseDuration`, `renewPeriod`).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidElection {
    InvalidElection {
        field,
        message: message.into(),
    }
}

/// Whether `name` is a Kubernetes DNS subdomain name (lowercase letters, digits, `-` and `.`, starting and ending
/// with a letter or digit, at most `max` characters).
fn is_dns_name(name: &str, max: usize, dots: bool) -> bool {
    let fits =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= max
        && name.chars().all(fits)
        && name.starts_with(alphanumeric)
        && name.ends_with(alphanumeric)
}

impl LeaderElection {
    /// Checks the settings: a valid Lease name and namespace, a lease duration of whole seconds (at least 1 s), a
    /// renew period of at least 100 ms and at most a third of the lease duration.
    pub fn check(&self) -> Result<(), InvalidElection> {
        if !is_dns_name(&self.lease, 253, true) {
            return Err(invalid(
                "lease",
                format!(
                    "{:?} is no Lease name (lowercase letters, digits, - and ., at most 253)",
                    self.lease
                ),
            ));
        }
        if !is_dns_name(&self.namespace, 63, false) {
            return Err(invalid(
                "namespace",
                format!(
                    "{:?} is no namespace name (lowercase letters, digits and -, at most 63)",
                    self.namespace
                ),
            ));
        }
        let seconds = self.lease_duration.as_secs();
        if seconds == 0
            || self.lease_duration.subsec_nanos() != 0
            || i32::try_from(seconds).is_err()
        {
            return Err(invalid(
                "leaseDuration",
                "must be whole seconds, at least 1s (the Lease keeps seconds)",
            ));
        }
        if self.renew_period < Duration::from_millis(100)
            || self.renew_period * 3 > self.lease_duration
        {
            return Err(invalid(
                "renewPeriod",
                format!(
                    "must be at least 100ms and at most a third of leaseDuration ({:?})",
                    self.lease_duration / 3
                ),
            ));
        }
        Ok(())
    }

    /// The identity this replica holds the Lease under: [`LeaderElection::identity`], or `HOST-PID`.
    pub fn identity(&self) -> String {
        if !self.identity.trim().is_empty() {
            return self.identity.trim().to_owned();
        }
        format!("{}-{}", host_name(), std::process::id())
    }

    /// How long the holder may go without renewing before it stops its sources: `lease duration − 2 × renew
    /// period`, which leaves it two renew periods to stop before another replica may take the Lease.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration
            .saturating_sub(self.renew_period * 2)
            .max(self.renew_period)
    }
}

/// The host name (the pod's name in Kubernetes), or `kelemetry` when it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "kelemetry".to_owned())
}

/// Makes the source of each term of leadership: a [`Source`] is consumed by its run, so every term needs a new
/// one. A closure `FnMut() -> Box<dyn Source>` is a `TermSource`.
pub trait TermSource: Send {
    /// The source for a new term.
    fn build(&mut self) -> Box<dyn Source>;

    /// The source of the term has returned (the Lease was lost, or shutdown): undo what only makes sense while
    /// it runs. Called before the Lease is released. Does nothing by default.
    fn stopped(&mut self) {}
}

impl<F> TermSource for F
where
    F: FnMut() -> Box<dyn Source> + Send,
{
    fn build(&mut self) -> Box<dyn Source> {
        self()
    }
}

/// Where a replica is in the election, readable while it runs (for logs, summaries and metrics).
#[derive(Debug, Default)]
pub struct Leadership {
    leading: AtomicBool,
    terms: AtomicU64,
    holder: Mutex<Option<String>>,
}

impl Leadership {
    /// Whether this replica holds the Lease and runs the sources now.
    pub fn is_leading(&self) -> bool {
        self.leading.load(Relaxed)
    }

    /// How many terms this replica has led (started the sources).
    pub fn terms(&self) -> u64 {
        self.terms.load(Relaxed)
    }

    /// The holder of the Lease last read (this replica's identity while it leads), if any.
    pub fn holder(&self) -> Option<String> {
        self.holder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_holder(&self, holder: Option<&str>) -> bool {
        let mut known = self.holder.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = known.as_deref() != holder;
        *known = holder.map(str::to_owned);
        changed
    }
}

/// One line: `leading (term N)`, or `following HOLDER, led N terms`.
impl std::fmt::Display for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_leading() {
            return write!(f, "leading (term {})", self.terms());
        }
        match self.holder() {
            Some(holder) => write!(f, "following {holder}, led {} terms", self.terms()),
            None => write!(f, "no holder, led {} terms", self.terms()),
        }
    }
}

/// Runs the sources of its [`TermSource`]s only while this process holds a Lease. See the module documentation.
///
/// ```no_run
/// # async fn example(client: kube::Client, events: kelemetry_sources::KubeEventOptions,
/// #     resources: std::sync::Arc<kelemetry_core::ResourceMap>) {
/// use kelemetry_core::Source;
/// use kelemetry_sources::leader::{LeaderElected, LeaderElection};
///
/// let mut election = LeaderElection::default();
/// election.lease = "kelemetry-prod".into();
/// let events_client = client.clone();
/// let elected = LeaderElected::new(client, election).source(move || {
///     Box::new(events.clone().build(events_client.clone(), "prod", resources.clone())) as Box<dyn Source>
/// });
/// // Add `elected` to the pipeline's sources like any other source.
/// # }
/// ```
pub struct LeaderElected {
    client: Client,
    election: LeaderElection,
    identity: String,
    terms: Vec<Box<dyn TermSource>>,
    status: Arc<Leadership>,
}

impl std::fmt::Debug for LeaderElected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElected")
            .field("election", &self.election)
            .field("identity", &self.identity)
            .field("sources", &self.terms.len())
            .finish_non_exhaustive()
    }
}

impl LeaderElected {
    /// Takes part in `election` through `client`; add the sources with [`LeaderElected::source`].
    pub fn new(client: Client, election: LeaderElection) -> Self {
        Self {
            client,
            identity: election.identity(),
            election,
            terms: Vec::new(),
            status: Arc::default(),
        }
    }

    /// Also runs the sources `term` makes, while leading.
    pub fn source(mut self, term: impl TermSource + 'static) -> Self {
        self.terms.push(Box::new(term));
        self
    }

    /// The identity it holds the Lease under.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Where it is in the election, while and after it runs.
    pub fn status(&self) -> Arc<Leadership> {
        Arc::clone(&self.status)
    }
}

/// Why a term ended.
enum TermEnd {
    /// Shutdown was asked.
    Shutdown,
    /// The Lease was lost, or could not be renewed in time.
    Lost,
    /// A source returned by itself (its input ended, or it failed).
    SourceEnded(Result<(), SourceError>),
}

#[async_trait]
impl Source for LeaderElected {
    fn name(&self) -> &str {
        "leader-elected"
    }

    async fn run(
        mut self: Box<Self>,
        sink: Arc<dyn ActivitySink>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        self.election
            .check()
            .map_err(|err| SourceError::other("leader election", err))?;
        let mut lock = LeaseLock::new(&self.client, &self.election, self.identity.clone());
        info!(
            lease = %lock.display_name(),
            identity = %self.identity,
            "leader election: waiting for the Lease"
        );
        loop {
            if !self.follow(&mut lock, &shutdown).await {
                return Ok(());
            }
            let end = self.lead(&mut lock, &sink, &shutdown).await;
            let result = match end {
                TermEnd::Lost => continue,
                TermEnd::Shutdown => Ok(()),
                TermEnd::SourceEnded(result) => result,
            };
            match lock.release().await {
                Ok(()) => {
                    info!(lease = %lock.display_name(), "leader election: released the Lease")
                }
                Err(err) => warn!(
                    lease = %lock.display_name(),
                    %err,
                    "leader election: could not release the Lease; the next replica takes it when it expires"
                ),
            }
            self.status.set_holder(None);
            return result;
        }
    }
}

impl LeaderElected {
    /// Reads the Lease every renew period until this process holds it (`true`) or shutdown is asked (`false`).
    async fn follow(&mut self, lock: &mut LeaseLock, shutdown: &CancellationToken) -> bool {
        let mut tick = tokio::time::interval(self.election.renew_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return false,
                _ = tick.tick() => {}
            }
            match lock.try_acquire_or_renew().await {
                Ok(Attempt::Held) => return true,
                Ok(Attempt::HeldBy(holder)) => {
                    failing = false;
                    if self.status.set_holder(Some(&holder)) {
                        info!(lease = %lock.display_name(), %holder, "leader election: following");
                    }
                }
                Ok(Attempt::Contended) => failing = false,
                Err(err) => {
                    // Said once per outage, not every renew period.
                    if !failing {
                        warn!(lease = %lock.display_name(), %err, "leader election: cannot read or take the Lease; retrying");
                    }
                    failing = true;
                }
            }
        }
    }

    /// One term: starts the sources, renews the Lease every renew period, and stops the sources when the Lease
    /// is lost, shutdown is asked or a source ends by itself.
    async fn lead(
        &mut self,
        lock: &mut LeaseLock,
        sink: &Arc<dyn ActivitySink>,
        shutdown: &CancellationToken,
    ) -> TermEnd {
        let term = self.status.terms.fetch_add(1, Relaxed) + 1;
        self.status.leading.store(true, Relaxed);
        self.status.set_holder(Some(&self.identity));
        let mut renewed = lock.last_written.unwrap_or_else(Instant::now);
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut names = Vec::with_capacity(self.terms.len());
        for factory in &mut self.terms {
            let source = factory.build();
            let name = source.name().to_owned();
            names.push(name.clone());
            let (sink, stop) = (Arc::clone(sink), stop.clone());
            tasks.spawn(async move { (name, source.run(sink, stop).await) });
        }
        info!(
            lease = %lock.display_name(),
            identity = %self.identity,
            term,
            sources = %names.join(", "),
            "leader election: leading; sources started"
        );
        let deadline_after = self.election.renew_deadline();
        let period = self.election.renew_period;
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            tokio::select! {
                () = shutdown.cancelled() => break TermEnd::Shutdown,
                Some(joined) = tasks.join_next() => break TermEnd::SourceEnded(source_result(joined)),
                _ = tick.tick() => {
                    let deadline = renewed + deadline_after;
                    let started = Instant::now();
                    let attempt = tokio::time::timeout_at(deadline, lock.try_acquire_or_renew()).await;
                    match attempt {
                        Ok(Ok(Attempt::Held)) => renewed = started,
                        Ok(Ok(Attempt::HeldBy(holder))) => {
                            warn!(lease = %lock.display_name(), %holder, "leader election: the Lease was taken; stopping the sources");
                            self.status.set_holder(Some(&holder));
                            break TermEnd::Lost;
                        }
                        Ok(outcome) => {
                            let why = match outcome {
                                Err(err) => err.to_string(),
                                _ => "another write came first".to_owned(),
                            };
                            // Another try must fit before the deadline, else stop now.
                            if Instant::now() + period >= deadline {
                                error!(lease = %lock.display_name(), %why, "leader election: could not renew the Lease in time; stopping the sources");
                                break TermEnd::Lost;
                            }
                            warn!(lease = %lock.display_name(), %why, "leader election: could not renew the Lease; retrying");
                        }
                        Err(_) => {
                            error!(lease = %lock.display_name(), "leader election: renewing the Lease took past the deadline; stopping the sources");
                            break TermEnd::Lost;
                        }
                    }
                }
            }
        };
        stop.cancel();
        let mut end = end;
        while let Some(joined) = tasks.join_next().await {
            let result = source_result(joined);
            match (&mut end, result) {
                (_, Ok(())) => {}
                (TermEnd::Shutdown, Err(err)) => end = TermEnd::SourceEnded(Err(err)),
                (TermEnd::SourceEnded(first @ Ok(())), Err(err)) => *first = Err(err),
                (_, Err(err)) => warn!(%err, "leader election: a source failed while stopping"),
            }
        }
        for factory in &mut self.terms {
            factory.stopped();
        }
        self.status.leading.store(false, Relaxed);
        info!(lease = %lock.display_name(), term, "leader election: sources stopped");
        end
    }
}

/// What a source task returned: its result, or its panic as a failure.
fn source_result(
    joined: Result<(String, Result<(), SourceError>), tokio::task::JoinError>,
) -> Result<(), SourceError> {
    match joined {
        Ok((_, result)) => result,
        Err(err) => Err(SourceError::other(
            "leader election",
            format!("a source task failed: {err}"),
        )),
    }
}

/// The outcome of one try to take or renew the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// This process holds it (taken or renewed).
    Held,
    /// Another replica holds it, and its record is fresh.
    HeldBy(String),
    /// Another write came first (a conflict): read again at the next try.
    Contended,
}

/// The Lease record as last read, and when (on this process's clock) it was last seen to change.
#[derive(Debug, Clone)]
struct Observed {
    resource_version: Option<String>,
    changed_at: Instant,
    duration: Duration,
}

/// Whether the holder `holder` of a Lease whose record has not changed for `still_for` (and holds for `duration`)
/// must be left alone by `me`: it is someone else and its record is fresh.
fn must_wait_for(holder: Option<&str>, me: &str, still_for: Duration, duration: Duration) -> bool {
    match holder {
        Some(holder) if !holder.is_empty() && holder != me => still_for < duration,
        _ => false,
    }
}

/// The spec that says `identity` holds the Lease for `duration_secs` from `now`, continuing `previous`: taking it
/// over counts a transition and sets the acquire time; renewing keeps both.
fn held_spec(
    identity: &str,
    duration_secs: i32,
    previous: &LeaseSpec,
    now: MicroTime,
) -> LeaseSpec {
    let mine = previous.holder_identity.as_deref() == Some(identity);
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(duration_secs),
        renew_time: Some(now.clone()),
        acquire_time: if mine {
            previous.acquire_time.clone().or(Some(now))
        } else {
            Some(now)
        },
        lease_transitions: if mine {
            previous.lease_transitions.or(Some(0))
        } else {
            Some(previous.lease_transitions.unwrap_or(0).saturating_add(1))
        },
        ..previous.clone()
    }
}

/// The Lease, read and written with optimistic concurrency.
struct LeaseLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    duration_secs: i32,
    observed: Option<Observed>,
    /// When the last successful write was sent.
    last_written: Option<Instant>,
}

impl LeaseLock {
    fn new(client: &Client, election: &LeaderElection, identity: String) -> Self {
        Self {
            api: Api::namespaced(client.clone(), &election.namespace),
            namespace: election.namespace.clone(),
            name: election.lease.clone(),
            identity,
            duration_secs: i32::try_from(election.lease_duration.as_secs()).unwrap_or(i32::MAX),
            observed: None,
            last_written: None,
        }
    }

    fn display_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Notes the record read or written: when its resource version differs from the last one seen, it changed
    /// now.
    fn observe(&mut self, lease: &Lease) {
        let resource_version = lease.metadata.resource_version.clone();
        let seconds = lease
            .spec
            .as_ref()
            .and_then(|spec| spec.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(u64::try_from(self.duration_secs).unwrap_or(15));
        let duration = Duration::from_secs(seconds);
        match &mut self.observed {
            Some(observed) if observed.resource_version == resource_version => {
                observed.duration = duration
            }
            _ => {
                self.observed = Some(Observed {
                    resource_version,
                    changed_at: Instant::now(),
                    duration,
                });
            }
        }
    }

    /// Takes the Lease when it is free, expired or ours (renewing it), else says who holds it.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let sent = Instant::now();
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(held_spec(
                    &self.identity,
                    self.duration_secs,
                    &LeaseSpec::default(),
                    now,
                )),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    self.last_written = Some(sent);
                    Ok(Attempt::Held)
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Contended),
                Err(err) => Err(err),
            };
        };
        self.observe(&current);
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref();
        let (still_for, duration) = self
            .observed
            .as_ref()
            .map_or((Duration::ZERO, Duration::MAX), |o| {
                (o.changed_at.elapsed(), o.duration)
            });
        if must_wait_for(holder, &self.identity, still_for, duration) {
            return Ok(Attempt::HeldBy(holder.unwrap_or_default().to_owned()));
        }
        let mut updated = current.clone();
        updated.spec = Some(held_spec(&self.identity, self.duration_secs, &spec, now));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(written) => {
                self.observe(&written);
                self.last_written = Some(sent);
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Contended),
            Err(err) => Err(err),
        }
    }

    /// Clears the holder when it is this process, so that the next replica takes the Lease at once.
    async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut current) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        current.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..spec
        });
        match self
            .api
            .replace(&self.name, &PostParams::default(), &current)
            .await
        {
            Ok(_) => Ok(()),
            // Someone else wrote it meanwhile: it is not ours to clear any more.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_their_own_check() {
        let election = LeaderElection::default();
        assert_eq!(election.check(), Ok(()));
        assert_eq!(election.renew_deadline(), Duration::from_secs(11));
        let identity = election.identity();
        assert!(
            identity.ends_with(&format!("-{}", std::process::id())),
            "{identity}"
        );
        let named = LeaderElection {
            identity: " replica-a ".into(),
            ..LeaderElection::default()
        };
        assert_eq!(named.identity(), "replica-a");
    }

    #[test]
    fn bad_settings_name_their_field() {
        let field = |election: LeaderElection| election.check().map_err(|err| err.field);
        let with = |f: fn(&mut LeaderElection)| {
            let mut election = LeaderElection::default();
            f(&mut election);
            election
        };
        assert_eq!(field(with(|e| e.lease = String::new())), Err("lease"));
        assert_eq!(field(with(|e| e.lease = "Kelemetry".into())), Err("lease"));
        assert_eq!(field(with(|e| e.lease = "kelemetry.prod-1".into())), Ok(()));
        assert_eq!(
            field(with(|e| e.namespace = "a.b".into())),
            Err("namespace")
        );
        assert_eq!(
            field(with(|e| e.lease_duration = Duration::from_millis(1500))),
            Err("leaseDuration")
        );
        assert_eq!(
            field(with(|e| e.lease_duration = Duration::ZERO)),
            Err("leaseDuration")
        );
        assert_eq!(
            field(with(|e| e.renew_period = Duration::from_secs(6))),
            Err("renewPeriod")
        );
        assert_eq!(
            field(with(|e| e.renew_period = Duration::from_millis(10))),
            Err("renewPeriod")
        );
        assert_eq!(
            field(with(|e| e.renew_period = Duration::from_secs(5))),
            Ok(())
        );
    }

    #[test]
    fn a_fresh_record_of_another_holder_is_respected_until_it_is_still_for_a_lease_duration() {
        let duration = Duration::from_secs(15);
        let fresh = Duration::from_secs(14);
        let still = Duration::from_secs(15);
        assert!(must_wait_for(Some("b"), "a", fresh, duration));
        assert!(!must_wait_for(Some("b"), "a", still, duration));
        // Free (released or never held) and own Leases are taken at once.
        assert!(!must_wait_for(None, "a", Duration::ZERO, duration));
        assert!(!must_wait_for(Some(""), "a", Duration::ZERO, duration));
        assert!(!must_wait_for(Some("a"), "a", Duration::ZERO, duration));
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let epoch = MicroTime(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let held_by_b = LeaseSpec {
            holder_identity: Some("b".into()),
            lease_transitions: Some(3),
            acquire_time: Some(epoch.clone()),
            preferred_holder: Some("b".into()),
            ..LeaseSpec::default()
        };
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let taken = held_spec("a", 15, &held_by_b, now.clone());
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(now.clone()));
        assert_eq!(taken.lease_duration_seconds, Some(15));
        // Fields it does not manage are kept.
        assert_eq!(taken.preferred_holder.as_deref(), Some("b"));
        let later = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let renewed = held_spec("a", 15, &taken, later.clone());
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, Some(now));
        assert_eq!(renewed.renew_time, Some(later));
        // A first holder of a new Lease: no transition before it.
        let first = held_spec("a", 15, &LeaseSpec::default(), epoch);
        assert_eq!(first.lease_transitions, Some(1));
    }

    #[test]
    fn leadership_says_where_it_is() {
        let status = Leadership::default();
        assert_eq!(status.to_string(), "no holder, led 0 terms");
        status.set_holder(Some("b"));
        assert_eq!(status.to_string(), "following b, led 0 terms");
        status.terms.fetch_add(1, Relaxed);
        status.leading.store(true, Relaxed);
        assert_eq!(status.to_string(), "leading (term 1)");
        assert!(!status.set_holder(Some("b")));
        assert!(status.set_holder(Some("a")));
    }
}
