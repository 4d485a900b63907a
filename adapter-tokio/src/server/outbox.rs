//! A connection's inbox of work from elsewhere: frames emitted to it,
//! bounded in bytes, and requests to close it.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use roomwire_core::CloseCode;
use roomwire_core::connection::MAX_CLOSE_REASON;

/// Queued frames, oldest first. The first is kept inline: a connection
/// that keeps up has one frame waiting at a time, and queuing it then
/// allocates nothing (callgrind, fan-out at 10 k deliveries/s: the
/// deque's allocation and free were about 8 % of the server's
/// instructions per delivery).
#[derive(Default)]
pub(crate) struct Frames {
    first: Option<Bytes>,
    /// Empty while `first` is.
    rest: VecDeque<Bytes>,
}

impl Frames {
    fn push(&mut self, frame: Bytes) {
        if self.first.is_none() {
            self.first = Some(frame);
        } else {
            self.rest.push_back(frame);
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.first.iter().chain(self.rest.iter())
    }
}

#[derive(Default)]
struct State {
    frames: Frames,
    bytes: usize,
    /// The bound was crossed: the connection is being closed; drop frames.
    overflowed: bool,
    close: Option<(CloseCode, String)>,
    abort: bool,
    /// Check that the peer is still there.
    check_alive: bool,
    /// Something was pushed or requested since the connection last looked.
    signalled: bool,
    /// The connection task waiting for it. Kept under the same lock as the
    /// frames (rather than in a `tokio::sync::Notify`, which has a lock of
    /// its own): a push to one of a room's members takes one lock, not two.
    waker: Option<Waker>,
}

impl State {
    /// Mark work pending; the waker to wake once the lock is released.
    fn signal(&mut self) -> Option<Waker> {
        self.signalled = true;
        self.waker.take()
    }
}

/// What the connection task takes out of its outbox in one go.
#[derive(Default)]
pub(crate) struct Taken {
    pub(crate) frames: Frames,
    pub(crate) overflowed: bool,
    pub(crate) close: Option<(CloseCode, String)>,
    pub(crate) abort: bool,
    pub(crate) check_alive: bool,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    limit: usize,
}

impl Outbox {
    /// An outbox holding at most `limit` bytes of frames.
    pub(crate) fn new(limit: usize) -> Self {
        Self { state: Mutex::new(State::default()), limit }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queue a frame. Over the bound, the outbox drops everything it holds,
    /// refuses further frames and tells the connection to close.
    pub(crate) fn push(&self, frame: Bytes) {
        let mut state = self.lock();
        if state.overflowed || state.abort {
            return;
        }
        if state.bytes.saturating_add(frame.len()) > self.limit && !state.frames.is_empty() {
            state.overflowed = true;
            state.frames = Frames::default();
            state.bytes = 0;
        } else {
            state.bytes += frame.len();
            state.frames.push(frame);
        }
        let waker = state.signal();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ask the connection to close with `code` and `reason` (cut to fit a
    /// close frame). The first request wins.
    pub(crate) fn request_close(&self, code: CloseCode, reason: &str) {
        let mut cut = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut state = self.lock();
        state.close.get_or_insert_with(|| (code, reason[..cut].to_owned()));
        let waker = state.signal();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ask the connection to check that its peer is still there.
    pub(crate) fn request_check_alive(&self) {
        let mut state = self.lock();
        state.check_alive = true;
        let waker = state.signal();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ask the connection to stop at once, without a closing handshake.
    pub(crate) fn abort(&self) {
        let mut state = self.lock();
        state.abort = true;
        let waker = state.signal();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Take everything pending. Close requests and overflow stay reported
    /// until handled once.
    pub(crate) fn take(&self) -> Taken {
        let mut state = self.lock();
        let frames = std::mem::take(&mut state.frames);
        state.bytes = 0;
        // Everything pending is taken: nothing left to wake up for.
        state.signalled = false;
        let check_alive = std::mem::take(&mut state.check_alive);
        Taken { frames, overflowed: state.overflowed, close: state.close.take(), abort: state.abort, check_alive }
    }

    /// Mark the outbox as over its bound (the connection's own write buffer
    /// overflowed): later frames are dropped.
    pub(crate) fn set_overflowed(&self) {
        let mut state = self.lock();
        state.overflowed = true;
        state.frames = Frames::default();
        state.bytes = 0;
    }

    /// Wait until something is pushed or requested (returns at once if that
    /// happened since the last wait or [`take`](Self::take)).
    pub(crate) async fn notified(&self) {
        poll_fn(|cx| self.poll_notified(cx)).await;
    }

    pub(crate) fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if state.signalled {
            state.signalled = false;
            return Poll::Ready(());
        }
        if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}
