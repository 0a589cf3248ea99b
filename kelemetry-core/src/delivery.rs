//! [`Delivery`] and [`Receipt`]: a source learns when what it handed over has been exported.
//!
//! A source that must not lose what it acknowledged (a webhook that answered 200, a follower that moves a
//! checkpoint, a watch that moves a watermark) creates a [`Delivery`] for a unit of its input, sends that unit's
//! records with [`ActivitySink::send_tracked`], drops its handle and awaits the [`Receipt`]:
//!
//! - `Ok(())` once every record sent with it was processed and every span made from those records was exported by
//!   every exporter (a record that made no span, e.g. one the filter dropped, counts once it was processed);
//! - `Err(NotDelivered)` when any of them was lost: an exporter gave up on a batch holding its spans, or the
//!   pipeline stopped (a hard stop) before exporting them.
//!
//! "Exported" means the exporter's [`Exporter::export`](crate::Exporter::export) returned `Ok`, so it means what
//! that exporter promises: the store exporter's default durability makes a batch durable before it returns.
//!
//! A sink that does not track deliveries (such as [`CollectingSink`](crate::CollectingSink)) takes the record as
//! delivered when it accepts it.
//!
//! ```
//! use kelemetry_core::{Delivery, NotDelivered};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let (delivery, receipt) = Delivery::new();
//! let pending = delivery.pending(); // what a pipeline holds while it works on one record
//! drop(delivery);
//! pending.delivered();
//! assert_eq!(receipt.await, Ok(()));
//!
//! let (delivery, receipt) = Delivery::new();
//! let pending = delivery.pending();
//! drop(delivery);
//! drop(pending); // dropped without being delivered: lost
//! assert_eq!(receipt.await, Err(NotDelivered { records: 1 }));
//! # });
//! ```
//!
//! [`ActivitySink::send_tracked`]: crate::ActivitySink::send_tracked

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::oneshot;

/// Some records handed over with a [`Delivery`] were not exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{records} record(s) handed over were not exported")]
pub struct NotDelivered {
    /// How many records were lost.
    pub records: u64,
}

#[derive(Debug)]
struct State {
    lost: AtomicU64,
    settled: Mutex<Option<oneshot::Sender<Result<(), NotDelivered>>>>,
}

impl Drop for State {
    fn drop(&mut self) {
        let lost = *self.lost.get_mut();
        let outcome = match lost {
            0 => Ok(()),
            records => Err(NotDelivered { records }),
        };
        let sender = self
            .settled
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            // The receipt may have been dropped: nobody is waiting, which is fine.
            let _ = sender.send(outcome);
        }
    }
}

/// One unit of a source's input (a webhook batch, a stretch of a file) whose records are tracked until exported.
/// Clones share the unit; the [`Receipt`] settles when the last clone and the last [`PendingRecord`] are gone.
#[derive(Clone, Debug)]
pub struct Delivery {
    state: Arc<State>,
}

impl Delivery {
    /// A new unit and the receipt that settles when all of it is exported or lost.
    pub fn new() -> (Self, Receipt) {
        let (sender, receiver) = oneshot::channel();
        let state = Arc::new(State {
            lost: AtomicU64::new(0),
            settled: Mutex::new(Some(sender)),
        });
        (Self { state }, Receipt { receiver })
    }

    /// One record of this unit, as a pipeline tracks it: call [`PendingRecord::delivered`] once its spans are
    /// exported; dropping it otherwise counts the record as lost.
    pub fn pending(&self) -> PendingRecord {
        PendingRecord {
            state: Some(self.state.clone()),
        }
    }
}

/// One record of a [`Delivery`] in flight. Lost unless [`PendingRecord::delivered`] is called.
#[derive(Debug)]
#[must_use = "a pending record dropped without `delivered()` counts as lost"]
pub struct PendingRecord {
    state: Option<Arc<State>>,
}

impl PendingRecord {
    /// The record was processed and its spans exported.
    pub fn delivered(mut self) {
        self.state = None;
    }

    /// Whether this record belongs to the same [`Delivery`] as `other` (a pipeline keeps one per unit and batch).
    pub fn same_delivery(&self, other: &PendingRecord) -> bool {
        match (&self.state, &other.state) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            state.lost.fetch_add(1, Relaxed);
        }
    }
}

/// Settles when every record of a [`Delivery`] was exported (`Ok`) or some were lost (`Err`).
#[derive(Debug)]
#[must_use = "a receipt does nothing unless awaited"]
pub struct Receipt {
    receiver: oneshot::Receiver<Result<(), NotDelivered>>,
}

impl Receipt {
    /// The outcome if settled by now, without waiting: for a source that keeps several receipts in order and looks
    /// at the oldest now and then. Call it again after `Some` and it says `Err` with 0 records.
    pub fn try_settled(&mut self) -> Option<Result<(), NotDelivered>> {
        match self.receiver.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(NotDelivered { records: 0 })),
        }
    }
}

impl Future for Receipt {
    type Output = Result<(), NotDelivered>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The sender lives in the shared state and always sends before it is dropped.
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|settled| settled.unwrap_or(Err(NotDelivered { records: 0 })))
    }
}
