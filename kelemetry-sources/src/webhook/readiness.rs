//! [`ReadinessCheck`]: what `GET /readyz` asks besides whether the webhook is shutting down.

use std::sync::Arc;

/// A check `GET /readyz` runs: `Ok(())` when ready, `Err(reason)` for a 503 that gives the reason (for example
/// spans an exporter lost). Cheap to clone; it is called on every `/readyz` request, so it should only read.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use kelemetry_sources::webhook::ReadinessCheck;
///
/// let lost = Arc::new(AtomicU64::new(0));
/// let seen = Arc::clone(&lost);
/// let check = ReadinessCheck::new(move || match seen.load(Ordering::Relaxed) {
///     0 => Ok(()),
///     n => Err(format!("{n} spans lost")),
/// });
/// assert_eq!(check.check(), Ok(()));
/// lost.store(3, Ordering::Relaxed);
/// assert_eq!(check.check(), Err("3 spans lost".to_owned()));
/// ```
#[derive(Clone)]
pub struct ReadinessCheck(Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl ReadinessCheck {
    /// A check that calls `check`.
    pub fn new(check: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(check))
    }

    /// Runs the check.
    pub fn check(&self) -> Result<(), String> {
        (self.0)()
    }
}

impl std::fmt::Debug for ReadinessCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReadinessCheck").finish_non_exhaustive()
    }
}
