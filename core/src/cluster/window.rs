//! Deduplication of messages a node may receive on more than one topic.

/// How far behind the newest sequence number of an origin a message may
/// arrive and still be told apart from a duplicate.
pub const WINDOW: u64 = 1024;

/// Whether a message is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: deliver it.
    Fresh,
    /// Already received on another topic: drop it.
    Duplicate,
    /// More than [`WINDOW`] behind the newest: it cannot be told apart
    /// from a duplicate, so it is dropped (and should be counted).
    Stale,
}

/// The sequence numbers seen from one origin, over a sliding window.
///
/// A message published on several topics (an emit to two rooms) reaches a
/// node with members in both twice; the first copy is delivered to every
/// local connection it targets and later copies are dropped. Fixed size:
/// 136 bytes per origin.
///
/// ```
/// use roomwire_core::cluster::{SeqWindow, Seen};
/// let mut w = SeqWindow::new();
/// assert_eq!(w.accept(5), Seen::Fresh);
/// assert_eq!(w.accept(7), Seen::Fresh);
/// assert_eq!(w.accept(6), Seen::Fresh);
/// assert_eq!(w.accept(7), Seen::Duplicate);
/// assert_eq!(w.accept(5 + 2000), Seen::Fresh);
/// assert_eq!(w.accept(6), Seen::Stale);
/// ```
#[derive(Debug, Clone)]
pub struct SeqWindow {
    /// The newest sequence number seen; `None` before the first.
    top: Option<u64>,
    /// Bit `seq % WINDOW` is set if `seq` (within the window) was seen.
    bits: [u64; (WINDOW / 64) as usize],
}

impl Default for SeqWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqWindow {
    /// Nothing seen yet.
    pub const fn new() -> Self {
        Self { top: None, bits: [0; (WINDOW / 64) as usize] }
    }

    fn bit(&mut self, seq: u64) -> Option<(&mut u64, u64)> {
        let index = (seq % WINDOW) as usize;
        Some((self.bits.get_mut(index / 64)?, 1u64 << (index % 64)))
    }

    /// Record `seq`; say whether it is new.
    pub fn accept(&mut self, seq: u64) -> Seen {
        match self.top {
            Some(top) if seq <= top => {
                if top - seq >= WINDOW {
                    return Seen::Stale;
                }
                match self.bit(seq) {
                    Some((word, mask)) if *word & mask != 0 => Seen::Duplicate,
                    Some((word, mask)) => {
                        *word |= mask;
                        Seen::Fresh
                    }
                    None => Seen::Stale,
                }
            }
            top => {
                // Forget what slides out of the window.
                match top {
                    Some(top) if seq - top < WINDOW => {
                        for gone in top + 1..=seq {
                            if let Some((word, mask)) = self.bit(gone) {
                                *word &= !mask;
                            }
                        }
                    }
                    _ => self.bits = [0; (WINDOW / 64) as usize],
                }
                self.top = Some(seq);
                if let Some((word, mask)) = self.bit(seq) {
                    *word |= mask;
                }
                Seen::Fresh
            }
        }
    }
}
