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
//! The server looks when it has reason to (traffic, and every few
//! milliseconds while it holds a sender back), so the time between two
//! looks counts only when both found the reader the same way: a reader
//! seen short, then nothing for a while, then seen with room, was not
//! short all that while (its buffer may have drained at once), and is not
//! charged for it.
//!
//! ```
//! use roomwire_core::slow_reader::SlowReader;
//! use roomwire_core::{Duration, Instant};
//!
//! // Looked at every 5 ms (as while a sender is held back): short for
//! // 4.9 s, then room for 10 ms, again and again. Timed stretch by stretch
//! // it would never be reset; the tally resets it in the second stretch.
//! let mut reader = SlowReader::new();
//! let mut ms = 0;
//! let reset = loop {
//!     let short = ms % 4_910 < 4_900;
//!     if reader.observe(Instant::from_millis(ms), short) {
//!         break ms;
//!     }
//!     ms += 5;
//! };
//! assert!((4_910..9_820).contains(&reset), "{reset}");
//! ```

use crate::time::{Duration, Instant};

/// How long a reader may be short in all, net of its recovery, before it
/// is reset: also the longest one stretch can hold the room.
pub const GRACE: Duration = Duration::from_secs(5);

/// How many times slower the tally falls while the reader has room than
/// it grows while it is short.
pub const RECOVERY: u64 = 4;

/// Whether a connection's deadlines may be judged now
/// ([`Connection::handle_timeout`](crate::Connection::handle_timeout): the
/// pong its keepalive waits for, the rest of a message). Not while the
/// server holds its input back (`held`: its readers lack room) and its
/// peer's bytes wait `unread`: the pong may be among them, and the peer
/// would be closed as dead for a backlog not its own (a few stallers
/// taking turns could hold the room past a keepalive interval). They are
/// judged once the input is read. A held connection whose peer sent
/// nothing is judged as any other, so a dead peer still goes. One that
/// sends while held (a byte of a frame, say) escapes its deadlines only
/// as long as the hold lasts, which is while some reader is short: a
/// peer that can keep a reader short can stall the room anyway.
///
/// ```
/// use roomwire_core::slow_reader::may_judge_deadlines;
///
/// assert!(may_judge_deadlines(false, true));
/// assert!(may_judge_deadlines(true, false));
/// assert!(!may_judge_deadlines(true, true));
/// ```
pub const fn may_judge_deadlines(held: bool, unread: bool) -> bool {
    !(held && unread)
}

/// One reader's tally: see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlowReader {
    /// Time short, net of recovery, in microseconds times [`RECOVERY`]
    /// (so that recovery, a quarter of the time with room, is counted
    /// exactly however often the reader is looked at).
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
    /// a frame) at `now`; the time since the last observation counts if the
    /// reader was found the same way then (short: against it; with room:
    /// for it, [`RECOVERY`] times slower). Returns whether the reader has
    /// been short too long: reset it. Only ever true when `short`.
    pub fn observe(&mut self, now: Instant, short: bool) -> bool {
        if let Some((then, was_short)) = self.last {
            let elapsed = now.saturating_duration_since(then).as_micros();
            self.owed = match (was_short, short) {
                (true, true) => self.owed.saturating_add(elapsed.saturating_mul(RECOVERY)),
                (false, false) => self.owed.saturating_sub(elapsed),
                _ => self.owed,
            };
        }
        self.last = Some((now, short));
        short && self.owed >= GRACE.as_micros().saturating_mul(RECOVERY)
    }

    /// The time short, net of recovery, as of the last observation.
    pub fn owed(&self) -> Duration {
        Duration::from_micros(self.owed / RECOVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `pattern` (stretches short or with room, in milliseconds) over
    /// and over for at most `limit_ms`, looking every `every_ms`; returns
    /// when the reader was reset.
    fn reset_after(pattern: &[(bool, u64)], every_ms: u64, limit_ms: u64) -> Option<u64> {
        let period: u64 = pattern.iter().map(|&(_, ms)| ms).sum();
        let mut reader = SlowReader::new();
        let mut at = 0;
        while at <= limit_ms {
            let mut into = at % period;
            let short = pattern
                .iter()
                .find(|&&(_, ms)| {
                    into < ms || {
                        into -= ms;
                        false
                    }
                })
                .is_some_and(|&(s, _)| s);
            if reader.observe(Instant::from_millis(at), short) {
                return Some(at);
            }
            at += every_ms;
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
        assert_eq!(reset_after(&[(true, 4_900), (false, 10)], 5, 60_000), Some(4_910 + 110));
        assert_eq!(reset_after(&[(true, 4_900), (false, 1_000)], 5, 60_000), Some(5_900 + 355));
        // Short two thirds of the time, in stretches of a second.
        assert!(reset_after(&[(true, 1_000), (false, 500)], 5, 60_000).is_some_and(|at| at <= 10_000));
    }

    #[test]
    fn readers_short_now_and_then_are_never_reset() {
        // A fifth of the time short, or less: the tally never grows.
        assert_eq!(reset_after(&[(true, 1_000), (false, 4_000)], 5, 600_000), None);
        assert_eq!(reset_after(&[(true, 200), (false, 2_000)], 5, 600_000), None);
        // Just under the grace, then room long enough to recover it all.
        assert_eq!(reset_after(&[(true, 4_995), (false, 20_000)], 5, 600_000), None);
    }

    /// Seen short, then not looked at for a while, then seen with room:
    /// the reader may have drained at once, and is not charged for the
    /// while (nor is one seen with room, then short).
    #[test]
    fn a_quiet_spell_between_two_looks_that_disagree_counts_for_nothing() {
        let mut reader = SlowReader::new();
        assert!(!reader.observe(Instant::from_millis(0), true));
        assert!(!reader.observe(Instant::from_millis(4_000), true));
        assert!(!reader.observe(Instant::from_millis(60_000), false), "room now: never reset");
        assert_eq!(reader.owed(), Duration::from_millis(4_000));
        assert!(!reader.observe(Instant::from_millis(120_000), true));
        assert_eq!(reader.owed(), Duration::from_millis(4_000));
        // Seen short at both ends of a quiet spell: short all along, as far
        // as anyone can tell.
        assert!(reader.observe(Instant::from_millis(121_000), true));
    }

    #[test]
    fn recovery_is_counted_exactly_however_often_the_reader_is_looked_at() {
        let mut reader = SlowReader::new();
        reader.observe(Instant::from_micros(0), true);
        reader.observe(Instant::from_micros(4_000_000), true);
        // 4 s of room seen every 3 µs: 1 s of recovery, to the microsecond.
        let mut at = 4_000_000;
        while at < 8_000_000 {
            at += 3;
            reader.observe(Instant::from_micros(at), false);
        }
        assert_eq!(reader.owed(), Duration::from_micros(3_000_000 - (at - 8_000_000) / RECOVERY));
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
