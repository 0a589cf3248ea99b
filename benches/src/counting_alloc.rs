//! [`CountingAllocator`]: mimalloc (the allocator the `kelemetry` binary uses), counting the bytes currently
//! allocated.
//!
//! The throughput harness installs it as the global allocator to measure how much memory the pipeline keeps per
//! tracked object-window. Counting is off until [`CountingAllocator::start_counting`], so that timed runs do not
//! pay for it (two atomic operations per allocation); bytes freed while counting that were allocated before it
//! started make the count lower, so compare counts taken within one counting period. It counts the sizes Rust asks for (`Layout::size`), not what the system allocator
//! spends on top of that (per-block headers, rounding to size classes), so real resident memory is somewhat
//! higher.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};

/// Wraps [`MiMalloc`] and counts live bytes and the peak of live bytes.
///
/// ```
/// use kelemetry_benches::counting_alloc::CountingAllocator;
/// // In a binary: #[global_allocator] static ALLOCATOR: CountingAllocator = CountingAllocator::new();
/// let allocator = CountingAllocator::new();
/// assert_eq!(allocator.live_bytes(), 0);
/// ```
#[derive(Debug, Default)]
pub struct CountingAllocator {
    counting: AtomicBool,
    live: AtomicIsize,
    peak: AtomicIsize,
}

impl CountingAllocator {
    /// An allocator that has counted nothing yet.
    pub const fn new() -> Self {
        Self {
            counting: AtomicBool::new(false),
            live: AtomicIsize::new(0),
            peak: AtomicIsize::new(0),
        }
    }

    /// Starts counting (from zero).
    pub fn start_counting(&self) {
        self.live.store(0, Relaxed);
        self.peak.store(0, Relaxed);
        self.counting.store(true, Relaxed);
    }

    /// Stops counting.
    pub fn stop_counting(&self) {
        self.counting.store(false, Relaxed);
    }

    /// Bytes allocated and not yet freed while counting.
    pub fn live_bytes(&self) -> isize {
        self.live.load(Relaxed)
    }

    /// The most bytes that were live at once since the last [`CountingAllocator::reset_peak`].
    pub fn peak_bytes(&self) -> isize {
        self.peak.load(Relaxed)
    }

    /// Starts a new peak from the bytes live now.
    pub fn reset_peak(&self) {
        self.peak.store(self.live_bytes(), Relaxed);
    }

    fn grew(&self, bytes: usize) {
        if self.counting.load(Relaxed) {
            let bytes = bytes as isize;
            let live = self.live.fetch_add(bytes, Relaxed) + bytes;
            self.peak.fetch_max(live, Relaxed);
        }
    }

    fn shrank(&self, bytes: usize) {
        if self.counting.load(Relaxed) {
            self.live.fetch_sub(bytes as isize, Relaxed);
        }
    }
}

// SAFETY: every method forwards to `MiMalloc` with the caller's arguments unchanged, so its guarantees hold;
// the counting only reads sizes and touches atomics, and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { MiMalloc.alloc(layout) };
        if !ptr.is_null() {
            self.grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        let ptr = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !ptr.is_null() {
            self.grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; `ptr` was allocated by this allocator (so by `MiMalloc`) with `layout`.
        unsafe { MiMalloc.dealloc(ptr, layout) };
        self.shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::realloc`'s contract.
        let new = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                self.grew(new_size - layout.size());
            } else {
                self.shrank(layout.size() - new_size);
            }
        }
        new
    }
}
