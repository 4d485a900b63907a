//! When a reader that cannot keep up is cut off.
//!
//! A server with fixed buffers (the embassy room server) holds every sender
//! back until each reader's send buffer can take a frame, so the room goes
//! at the pace of its slowest reader. A reader that stopped reading would
//! hold the room for ever: one whose buffer stays short for [`GRACE`] is
//! reset. Timing that alone would let a reader take a little just before
//! each grace ends and hold the room almost as long, so the time short is
//! a tally, not a stretch: it grows with every moment short and falls only
//! [`RECOVERY`] times slower while the reader has room. A reader short for
//! more than a fifth of the time is reset sooner or later; one short for a
//! moment after a burst, now and then, never is.
//!
//! ```
//! use roomwire_core::slow_reader::{SlowReader, GRACE};
//! use roomwire_core::{Duration, Instant};
//!
//! let mut reader = SlowReader::new();
//! let mut now = Instant::ZERO;
//! // Short for 4.9 s, then room for 10 ms, again and again: reset at the
//! // second round, where timing each stretch alone never would.
//! let mut rounds = 0;
//! loop {
//!     rounds += 1;
//!     assert!(!reader.observe(now, true));
//!     now = now + Duration::from_millis(4_900);
//!     if reader.observe(now, false) { break; }
//!     now = now + Duration::from_millis(10);
//! }
//! assert_eq!(rounds, 2);
//! # let _ = GRACE;
//! ```

use crate::time::{Duration, Instant};

/// How long a reader may be short in all, net of its recovery, before it
/// is reset: also the longest one stretch can hold the room.
pub const GRACE: Duration = Duration::from_secs(5);

/// How many times slower the tally falls while the reader has room than
/// it grows while it is short.
pub const RECOVERY: u64 = 4;

/// One reader's tally: see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlowReader {
    /// Time short, net of recovery, in microseconds.
    owed: u64,
    /// The last observation: when, and whether the reader was short.
    last: Option<(Instant, bool)>,
}

impl SlowReader {
    /// A reader with nothing owed (a new connection).
    pub const fn new() -> Self {
        Self { owed: 0, last: None }
    }

    /// Records whether the reader is `short` (its send buffer cannot take
    /// a frame) at `now`; the time since the last observation counts as it
    /// was then. Returns whether the reader has been short too long: reset
    /// it.
    pub fn observe(&mut self, now: Instant, short: bool) -> bool {
        if let Some((then, was_short)) = self.last {
            let elapsed = now.saturating_duration_since(then).as_micros();
            self.owed = if was_short {
                self.owed.saturating_add(elapsed)
            } else {
                self.owed.saturating_sub(elapsed / RECOVERY)
            };
        }
        self.last = Some((now, short));
        self.owed >= GRACE.as_micros()
    }

    /// The time short, net of recovery, as of the last observation.
    pub fn owed(&self) -> Duration {
        Duration::from_micros(self.owed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `pattern` (stretches short or with room, in milliseconds) over
    /// and over for at most `limit_ms`; returns when the reader was reset.
    fn reset_after(pattern: &[(bool, u64)], limit_ms: u64) -> Option<u64> {
        let mut reader = SlowReader::new();
        let mut at = 0;
        while at <= limit_ms {
            for &(short, ms) in pattern {
                if reader.observe(Instant::from_millis(at), short) {
                    return Some(at);
                }
                at += ms;
            }
        }
        None
    }

    #[test]
    fn one_stretch_short_is_reset_at_the_grace_not_before() {
        let mut reader = SlowReader::new();
        for ms in (0..5_000).step_by(5) {
            assert!(!reader.observe(Instant::from_millis(ms), true), "{ms} ms");
        }
        assert!(reader.observe(Instant::from_millis(5_000), true));
        assert_eq!(reader.owed(), GRACE);
    }

    #[test]
    fn reading_a_little_before_each_grace_is_reset_soon_after_it() {
        // Room for a moment (10 ms, or a whole second) after 4.9 s short.
        assert_eq!(reset_after(&[(true, 4_900), (false, 10)], 60_000), Some(9_810));
        assert_eq!(reset_after(&[(true, 4_900), (false, 1_000)], 60_000), Some(10_800));
        // Short two thirds of the time, in stretches of a second.
        assert!(reset_after(&[(true, 1_000), (false, 500)], 60_000).is_some_and(|at| at <= 10_000));
    }

    #[test]
    fn readers_short_now_and_then_are_never_reset() {
        // A fifth of the time short, or less: the tally never grows.
        assert_eq!(reset_after(&[(true, 1_000), (false, 4_000)], 600_000), None);
        assert_eq!(reset_after(&[(true, 200), (false, 2_000)], 600_000), None);
        // Just under the grace, then room long enough to recover it all.
        assert_eq!(reset_after(&[(true, 4_999), (false, 20_000)], 600_000), None);
    }

    #[test]
    fn a_new_connection_owes_nothing_and_time_never_runs_backwards() {
        let mut reader = SlowReader::new();
        assert!(!reader.observe(Instant::from_millis(10_000), true));
        assert!(!reader.observe(Instant::from_millis(9_000), true), "an earlier now counts as no time");
        assert_eq!(reader.owed(), Duration::ZERO);
        reader = SlowReader::new();
        assert_eq!(reader.owed(), Duration::ZERO);
    }
}
