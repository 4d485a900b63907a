//! A connection's inbox of work from elsewhere: frames emitted to it,
//! bounded in bytes, and requests to close it.
//!
//! A plain TCP connection's outbox also holds its socket ([`DirectStream`]
//! is the connection's side of it). While the connection sleeps with
//! nothing of its own to write and nothing queued, an emitter writes a
//! frame straight into the socket instead of queuing it and waking the
//! connection's task; what the socket does not take at once is queued as
//! before, the rest of a frame cut short first.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use roomwire_core::CloseCode;
use roomwire_core::connection::MAX_CLOSE_REASON;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

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
    /// Emitters may write to the socket themselves: the connection sleeps
    /// with nothing to write and nothing queued. Set by the connection
    /// ([`Outbox::open_direct`]); cleared by it before it writes, and by an
    /// emitter whose frame the socket did not take whole.
    direct: bool,
    /// The end of a frame an emitter wrote in part: the connection writes
    /// it before anything else.
    rest: Option<Bytes>,
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
    /// The end of a frame an emitter cut short waits: flush.
    pub(crate) rest: bool,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    limit: usize,
    /// A plain TCP connection's socket, shared with its [`DirectStream`].
    socket: Option<TcpStream>,
}

impl Outbox {
    /// An outbox holding at most `limit` bytes of frames.
    pub(crate) fn new(limit: usize) -> Self {
        Self { state: Mutex::new(State::default()), limit, socket: None }
    }

    /// An outbox holding `socket` too, and the stream its connection reads
    /// and writes through.
    pub(crate) fn with_socket(limit: usize, socket: TcpStream) -> (Arc<Self>, DirectStream) {
        let outbox = Arc::new(Self { state: Mutex::new(State::default()), limit, socket: Some(socket) });
        (outbox.clone(), DirectStream(outbox))
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
        if state.direct
            && let Some(socket) = &self.socket
        {
            // Open only with nothing queued and nothing left over (see
            // `open_direct`), so the frame goes out in its turn.
            match socket.try_write(&frame) {
                Ok(n) if n == frame.len() => return,
                Ok(n) => {
                    state.direct = false;
                    state.rest = Some(frame.slice(n..));
                    let waker = state.signal();
                    drop(state);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return;
                }
                // Full, or failing: queued, for the connection to find out.
                Err(_) => state.direct = false,
            }
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
        Taken {
            frames,
            overflowed: state.overflowed,
            close: state.close.take(),
            abort: state.abort,
            check_alive,
            rest: state.rest.is_some(),
        }
    }

    /// The connection goes to sleep (its waker registered by
    /// [`poll_notified`](Self::poll_notified)): if it has nothing of its own
    /// to write (`idle`) and nothing is queued, let emitters write to its
    /// socket meanwhile. `true`: something came since it last looked; it
    /// should look again rather than sleep.
    pub(crate) fn open_direct(&self, idle: bool) -> bool {
        let mut state = self.lock();
        if state.signalled {
            return true;
        }
        state.direct = idle
            && self.socket.is_some()
            && state.frames.is_empty()
            && state.rest.is_none()
            && !state.overflowed
            && !state.abort
            && state.close.is_none();
        false
    }

    /// The connection is awake and handling a message: what is emitted now
    /// is queued behind what the handling writes.
    pub(crate) fn close_direct(&self) {
        if self.socket.is_some() {
            self.lock().direct = false;
        }
    }

    /// Before the connection writes: emitters stop writing to the socket,
    /// and the end of a frame one of them cut short goes out first.
    fn poll_claim(&self, socket: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        state.direct = false;
        while let Some(rest) = state.rest.as_mut() {
            match poll_write_socket(socket, cx, rest) {
                Poll::Ready(Ok(n)) if n < rest.len() => {
                    let _ = rest.split_to(n);
                }
                Poll::Ready(Ok(_)) => state.rest = None,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
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

/// One write to `socket`, once it is writable.
fn poll_write_socket(socket: &TcpStream, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
    loop {
        ready!(socket.poll_write_ready(cx))?;
        match socket.try_write(bytes) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            done => return Poll::Ready(done),
        }
    }
}

/// A plain TCP connection's stream, its socket shared with its
/// [`Outbox`]: every write first claims the socket back from emitters.
pub(crate) struct DirectStream(Arc<Outbox>);

impl DirectStream {
    fn socket(&self) -> io::Result<&TcpStream> {
        self.0.socket.as_ref().ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl AsyncRead for DirectStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let socket = self.socket()?;
        loop {
            ready!(socket.poll_read_ready(cx))?;
            match socket.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for DirectStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let socket = self.socket()?;
        ready!(self.0.poll_claim(socket, cx))?;
        poll_write_socket(socket, cx, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = self.socket()?;
        self.0.poll_claim(socket, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = self.socket()?;
        ready!(self.0.poll_claim(socket, cx))?;
        Poll::Ready(socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Write))
    }
}
