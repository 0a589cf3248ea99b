//! [`ByteBudget`]: the bytes a queue bounded by size may hold, waited for by what enters it.

use std::sync::Arc;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// The bytes a queue may hold, whatever the count of its entries: an entry waits until its estimated size is free
/// and holds it until dropped. An entry larger than the whole budget takes all of it, so it waits until the queue
/// is empty and then goes alone: nothing is refused or stuck for its size.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use kelemetry_core::budget::ByteBudget;
///
/// let budget = ByteBudget::new(1000);
/// let first = budget.hold(600).await?;
/// assert_eq!(budget.free(), 400);
/// drop(first);
/// let huge = budget.hold(1_000_000).await?; // all of it, alone
/// assert_eq!(budget.free(), 0);
/// # drop(huge);
/// # Ok::<(), tokio::sync::AcquireError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct ByteBudget {
    room: Arc<Semaphore>,
    bytes: usize,
}

/// Bytes held of a [`ByteBudget`], given back when dropped.
#[derive(Debug)]
pub struct HeldBytes {
    _permit: OwnedSemaphorePermit,
}

impl ByteBudget {
    /// A budget of `bytes` (at least one).
    pub fn new(bytes: usize) -> Self {
        let bytes = bytes.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            room: Arc::new(Semaphore::new(bytes)),
            bytes,
        }
    }

    /// The budget, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The bytes not held now.
    pub fn free(&self) -> usize {
        self.room.available_permits()
    }

    /// Waits until `bytes` (at most the whole budget) are free and holds them. Cancelling the wait holds nothing.
    /// The error is tokio's for a closed semaphore, which a budget never is.
    pub async fn hold(&self, bytes: usize) -> Result<HeldBytes, AcquireError> {
        let permits = u32::try_from(bytes.min(self.bytes)).unwrap_or(u32::MAX);
        let permit = Arc::clone(&self.room).acquire_many_owned(permits).await?;
        Ok(HeldBytes { _permit: permit })
    }
}
