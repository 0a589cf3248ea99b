//! [`SpanLedger`]: remembers which spans were already emitted, so each is written once per process.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use crate::ids::SpanId;

/// Remembers which object and link spans were emitted. It only saves work: ids are deterministic, so a forgotten
/// entry makes a span be written again, identical.
pub trait SpanLedger: Send + Sync {
    /// Records `id`; `true` when it was not known yet (the caller should emit the span).
    fn first_sighting(&self, id: SpanId) -> bool;
}

/// An in-memory ledger holding at most `capacity` ids; the oldest are forgotten first.
///
/// ```
/// use kelemetry_core::{BoundedLedger, SpanId, SpanLedger};
/// let ledger = BoundedLedger::new(1);
/// let a = SpanId::from_u64(1).unwrap();
/// let b = SpanId::from_u64(2).unwrap();
/// assert!(ledger.first_sighting(a));
/// assert!(!ledger.first_sighting(a));
/// assert!(ledger.first_sighting(b)); // forgets a
/// assert!(ledger.first_sighting(a));
/// ```
#[derive(Debug)]
pub struct BoundedLedger {
    capacity: usize,
    inner: Mutex<LedgerInner>,
}

#[derive(Debug, Default)]
struct LedgerInner {
    known: HashSet<u64, BuildHasherDefault<IdHasher>>,
    order: VecDeque<u64>,
}

/// Span ids are already uniform hashes: the set uses them as they are instead of hashing them again.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl BoundedLedger {
    /// A ledger remembering at most `capacity` ids (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(LedgerInner::default()),
        }
    }

    /// How many ids it holds now.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.known.len()).unwrap_or(0)
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SpanLedger for BoundedLedger {
    fn first_sighting(&self, id: SpanId) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return true;
        };
        let raw = id.to_u64();
        if !inner.known.insert(raw) {
            return false;
        }
        inner.order.push_back(raw);
        if inner.order.len() > self.capacity
            && let Some(oldest) = inner.order.pop_front()
        {
            inner.known.remove(&oldest);
        }
        true
    }
}
