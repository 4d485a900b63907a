//! A connection's inbox of work from elsewhere: frames emitted to it,
//! bounded in bytes, and requests to close it.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use roomwire_core::CloseCode;
use roomwire_core::connection::MAX_CLOSE_REASON;
use tokio::sync::Notify;

#[derive(Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// The bound was crossed: the connection is being closed; drop frames.
    overflowed: bool,
    close: Option<(CloseCode, String)>,
    abort: bool,
}

/// What the connection task takes out of its outbox in one go.
#[derive(Default)]
pub(crate) struct Taken {
    pub(crate) frames: VecDeque<Bytes>,
    pub(crate) overflowed: bool,
    pub(crate) close: Option<(CloseCode, String)>,
    pub(crate) abort: bool,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    limit: usize,
}

impl Outbox {
    /// An outbox holding at most `limit` bytes of frames.
    pub(crate) fn new(limit: usize) -> Self {
        Self { state: Mutex::new(State::default()), notify: Notify::new(), limit }
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
            state.frames = VecDeque::new();
            state.bytes = 0;
        } else {
            state.bytes += frame.len();
            state.frames.push_back(frame);
        }
        drop(state);
        self.notify.notify_one();
    }

    /// Ask the connection to close with `code` and `reason` (cut to fit a
    /// close frame). The first request wins.
    pub(crate) fn request_close(&self, code: CloseCode, reason: &str) {
        let mut cut = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        self.lock().close.get_or_insert_with(|| (code, reason[..cut].to_owned()));
        self.notify.notify_one();
    }

    /// Ask the connection to stop at once, without a closing handshake.
    pub(crate) fn abort(&self) {
        self.lock().abort = true;
        self.notify.notify_one();
    }

    /// Take everything pending. Close requests and overflow stay reported
    /// until handled once.
    pub(crate) fn take(&self) -> Taken {
        let mut state = self.lock();
        let frames = std::mem::take(&mut state.frames);
        state.bytes = 0;
        Taken { frames, overflowed: state.overflowed, close: state.close.take(), abort: state.abort }
    }

    /// Mark the outbox as over its bound (the connection's own write buffer
    /// overflowed): later frames are dropped.
    pub(crate) fn set_overflowed(&self) {
        let mut state = self.lock();
        state.overflowed = true;
        state.frames = VecDeque::new();
        state.bytes = 0;
    }

    /// Wait until something is pushed or requested (returns at once if that
    /// happened since the last wait).
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }
}
