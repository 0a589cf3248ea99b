//! Time windows: an object has one object span per window it was active in.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The default window length: 30 minutes, as in the original.
pub const DEFAULT_WINDOW_SECS: u64 = 30 * 60;

/// How time is cut into windows: fixed slices of `length_secs` seconds aligned to the Unix epoch.
///
/// ```
/// use kelemetry_core::Windowing;
/// let windowing = Windowing::default();
/// let t: jiff::Timestamp = "2021-05-19T09:42:58.64Z".parse().unwrap();
/// let window = windowing.window_of(t);
/// assert_eq!(window.start().to_string(), "2021-05-19T09:30:00Z");
/// assert_eq!(window.end().to_string(), "2021-05-19T10:00:00Z");
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Windowing {
    length_secs: u64,
}

impl Default for Windowing {
    fn default() -> Self {
        Self {
            length_secs: DEFAULT_WINDOW_SECS,
        }
    }
}

/// A window length of zero seconds was asked for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a window must last at least one second")]
pub struct ZeroWindowError;

impl Windowing {
    /// Windows of the given length in seconds.
    pub fn new(length_secs: u64) -> Result<Self, ZeroWindowError> {
        if length_secs == 0 {
            return Err(ZeroWindowError);
        }
        Ok(Self { length_secs })
    }

    /// Length of one window in seconds.
    pub fn length_secs(&self) -> u64 {
        self.length_secs
    }

    /// The window that contains `t`.
    pub fn window_of(&self, t: Timestamp) -> Window {
        let len = self.length_secs as i64;
        let secs = t.as_second();
        Window {
            start_secs: secs.div_euclid(len) * len,
            length_secs: self.length_secs,
        }
    }

    /// Every window that overlaps `[from, to]`, oldest first. Empty when `to < from`.
    pub fn windows_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Iterator<Item = Window> + use<> {
        let first = self.window_of(from);
        let last = self.window_of(to);
        let len = self.length_secs as i64;
        let count = if to < from {
            0
        } else {
            (last.start_secs - first.start_secs) / len + 1
        };
        (0..count).map(move |i| Window {
            start_secs: first.start_secs + i * len,
            length_secs: first.length_secs,
        })
    }
}

/// One window: a start aligned to the Unix epoch and a length.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    start_secs: i64,
    length_secs: u64,
}

impl Window {
    /// Start as Unix seconds.
    pub fn start_secs(&self) -> i64 {
        self.start_secs
    }

    /// Length in seconds.
    pub fn length_secs(&self) -> u64 {
        self.length_secs
    }

    /// Start instant; [`Timestamp::MIN`] for the first window, which starts before the earliest time a
    /// [`Timestamp`] holds.
    pub fn start(&self) -> Timestamp {
        Timestamp::from_second(self.start_secs).unwrap_or(Timestamp::MIN)
    }

    /// End instant (exclusive); [`Timestamp::MAX`] for the last window, which ends after the latest time a
    /// [`Timestamp`] holds.
    pub fn end(&self) -> Timestamp {
        let end = self.start_secs.saturating_add_unsigned(self.length_secs);
        Timestamp::from_second(end).unwrap_or(if end < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        })
    }

    /// The window right after this one.
    pub fn next(&self) -> Window {
        Window {
            start_secs: self.start_secs + self.length_secs as i64,
            length_secs: self.length_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the window check of the audit fuzz target (fuzz/regressions/audit_document): the window of the
    /// earliest timestamp starts before it, and its start read as 1970.
    #[test]
    fn the_earliest_and_latest_times_are_in_their_windows() {
        let w = Windowing::default();
        let window = w.window_of(Timestamp::MIN);
        assert_eq!(window.start(), Timestamp::MIN);
        assert!(Timestamp::MIN < window.end());
        assert_eq!(window.end(), window.next().start());
        let last = w.window_of(Timestamp::MAX);
        assert!(last.start() <= Timestamp::MAX);
        assert_eq!(
            last.end(),
            Timestamp::MAX,
            "the last window ends at the latest time, saturated"
        );
    }

    #[test]
    fn windows_are_epoch_aligned_and_cover_the_range() {
        let w = Windowing::new(1800).unwrap();
        let from: Timestamp = "2024-01-01T10:29:59Z".parse().unwrap();
        let to: Timestamp = "2024-01-01T11:00:00Z".parse().unwrap();
        let windows: Vec<_> = w.windows_between(from, to).collect();
        assert_eq!(windows.len(), 3);
        assert_eq!(windows[0].start().to_string(), "2024-01-01T10:00:00Z");
        assert_eq!(windows[2].start().to_string(), "2024-01-01T11:00:00Z");
        assert_eq!(w.windows_between(to, from).count(), 0);
    }

    #[test]
    fn times_before_the_epoch_floor_downwards() {
        let w = Windowing::new(60).unwrap();
        let t: Timestamp = "1969-12-31T23:59:30Z".parse().unwrap();
        assert_eq!(w.window_of(t).start_secs(), -60);
    }

    #[test]
    fn zero_length_is_rejected() {
        assert_eq!(Windowing::new(0), Err(ZeroWindowError));
    }
}
