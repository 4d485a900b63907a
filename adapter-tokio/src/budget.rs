//! Process-wide bounds on memory that peers can make the process hold: a
//! count of bytes held against a limit the application may change. Two
//! use it, each with its own: what unfinished compressed messages hold
//! (`deflate`) and what outbound queues hold (`socket`).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes each holder (a message being inflated, a connection's outbound
/// queue) has of its own: only what it holds beyond them counts against a
/// budget, so most holders never touch the count.
pub(crate) const OWN_SHARE: usize = 64 * 1024;

/// Bytes held across the process, and the most there may be.
pub(crate) struct ProcessBudget {
    held: AtomicUsize,
    limit: AtomicUsize,
}

impl ProcessBudget {
    pub(crate) const fn new(limit: usize) -> Self {
        Self { held: AtomicUsize::new(0), limit: AtomicUsize::new(limit) }
    }

    /// Take `n` bytes, unless that goes past the limit.
    pub(crate) fn take(&self, n: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut held = self.held.load(Ordering::Relaxed);
        loop {
            let Some(after) = held.checked_add(n).filter(|&after| after <= limit) else { return false };
            match self.held.compare_exchange_weak(held, after, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => held = now,
            }
        }
    }

    /// Give back `n` bytes taken.
    pub(crate) fn give_back(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
    }

    /// A holder of `from` bytes comes to hold `to`: what changes of its
    /// part beyond [`OWN_SHARE`] is taken or given back. False, and
    /// nothing taken, if it grows past the limit.
    pub(crate) fn resize(&self, from: usize, to: usize) -> bool {
        let (was, will) = (from.saturating_sub(OWN_SHARE), to.saturating_sub(OWN_SHARE));
        if will > was {
            return self.take(will - was);
        }
        if was > will {
            self.give_back(was - will);
        }
        true
    }

    pub(crate) fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}
