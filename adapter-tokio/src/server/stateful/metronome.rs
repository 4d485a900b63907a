//! Beats on time: waking room tasks at their beats to within a fraction of
//! a millisecond.
//!
//! tokio's timers have a resolution of one millisecond, and a runtime
//! parks with a timeout in whole milliseconds: a task sleeping until an
//! instant wakes 0–2 ms after it, at random, so that the time between two
//! beats varies by up to a millisecond or more (measured: BENCHMARKS.md,
//! stateful rooms). A metronome is one thread, per room endpoint, started on
//! its first use, that sleeps on a condition variable (nanosecond timeout)
//! until the earliest beat any room waits for and wakes the rooms whose
//! beats are due. A room waits for its beat on both the metronome and a
//! tokio timer, whichever comes first: the tokio timer alone decides under
//! a paused clock (tests), where the metronome, on real time, never comes
//! first. It wakes every room whose beat falls within the core's
//! [`BEAT_EARLY`] together, which the core's schedule allows.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use roomwire_core::stateful::BEAT_EARLY;
use tokio::time::Instant;

/// The rooms waiting for beats, and the thread waking them.
#[derive(Default)]
pub(crate) struct Metronome {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Real (`std`) instants and the waiting beat's number, earliest first;
    /// an entry whose number has no waker left is skipped.
    due: BinaryHeap<Reverse<(std::time::Instant, u64)>>,
    wakers: HashMap<u64, Waker>,
    next: u64,
    running: bool,
    stopped: bool,
}

fn lock(inner: &Inner) -> MutexGuard<'_, State> {
    crate::lock(&inner.state)
}

impl Drop for Metronome {
    fn drop(&mut self) {
        lock(&self.inner).stopped = true;
        self.inner.changed.notify_all();
    }
}

impl Metronome {
    /// Wait until `deadline` (on tokio's clock).
    pub(crate) async fn until(&self, deadline: Instant) {
        let beat = Beat { inner: &self.inner, deadline, number: None };
        tokio::select! {
            () = beat => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// One wait for a beat.
struct Beat<'a> {
    inner: &'a Arc<Inner>,
    deadline: Instant,
    number: Option<u64>,
}

impl Future for Beat<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        let early = Duration::from(BEAT_EARLY);
        if now + early >= self.deadline {
            return Poll::Ready(());
        }
        // On real time, tokio's instant is `std`'s; the real instant is
        // taken as the time left from now, so that a paused tokio clock
        // never makes the metronome fire before the beat.
        let at = std::time::Instant::now() + (self.deadline - now);
        let inner = self.inner.clone();
        let mut state = lock(&inner);
        if state.stopped {
            // The tokio timer beside it still comes.
            return Poll::Pending;
        }
        if let Some(number) = self.number {
            match state.wakers.get_mut(&number) {
                // Still waiting (woken by something else): keep its place.
                Some(waker) => {
                    if !waker.will_wake(cx.waker()) {
                        waker.clone_from(cx.waker());
                    }
                    return Poll::Pending;
                }
                // Woken early (a paused clock): wait again.
                None => self.number = None,
            }
        }
        let number = state.next;
        state.next += 1;
        let earliest = state.due.peek().is_none_or(|Reverse((first, _))| at < *first);
        state.due.push(Reverse((at, number)));
        state.wakers.insert(number, cx.waker().clone());
        self.number = Some(number);
        let start = !state.running;
        state.running = true;
        drop(state);
        if start {
            let ticking = inner.clone();
            let spawned = std::thread::Builder::new().name("roomwire-metronome".into()).spawn(move || run(&ticking));
            if spawned.is_err() {
                // No thread: tokio's timer alone wakes the rooms.
                lock(&inner).stopped = true;
            }
        } else if earliest {
            inner.changed.notify_one();
        }
        Poll::Pending
    }
}

impl Drop for Beat<'_> {
    fn drop(&mut self) {
        if let Some(number) = self.number.take() {
            lock(self.inner).wakers.remove(&number);
        }
    }
}

/// The metronome's thread: wake what is due, sleep until the next.
fn run(inner: &Inner) {
    let mut state = lock(inner);
    loop {
        if state.stopped {
            return;
        }
        let now = std::time::Instant::now();
        let mut due = Vec::new();
        // Everything due within the window goes in one wake-up.
        let horizon = now + Duration::from(BEAT_EARLY);
        while let Some(&Reverse((at, number))) = state.due.peek() {
            if at > horizon {
                break;
            }
            state.due.pop();
            due.extend(state.wakers.remove(&number));
        }
        if !due.is_empty() {
            drop(state);
            due.into_iter().for_each(Waker::wake);
            state = lock(inner);
            continue;
        }
        // Entries left by waits that ended otherwise (an input came, the
        // tokio timer fired first) are dropped as they come due: a room
        // waits anew only when its next deadline changes, so the heap holds
        // a few entries per room at most.
        state = match state.due.peek() {
            Some(&Reverse((at, _))) => {
                let wait = at.saturating_duration_since(now).max(Duration::from_micros(1));
                inner.changed.wait_timeout(state, wait).map_or_else(|e| e.into_inner().0, |(s, _)| s)
            }
            None => inner.changed.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner),
        };
    }
}
