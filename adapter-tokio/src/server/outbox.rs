//! A connection's inbox of work from elsewhere: frames emitted to it,
//! bounded in bytes, and requests to close it.
//!
//! A plain TCP connection's outbox also holds its socket ([`DirectStream`]
//! is the connection's side of it). While the connection sleeps with
//! nothing of its own to write and nothing queued, an emitter writes a
//! frame straight into the socket instead of queuing it and waking the
//! connection's task; what the socket does not take at once is queued as
//! before, the rest of a frame cut short first.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use roomwire_core::CloseCode;
use roomwire_core::connection::MAX_CLOSE_REASON;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Queued frames, oldest first. One frame is kept inline: a connection
/// that keeps up has one frame waiting at a time, and queuing it then
/// allocates nothing (callgrind, fan-out at 10 k deliveries/s: the
/// deque's allocation and free were about 8 % of the server's
/// instructions per delivery). One enum rather than a frame beside a list:
/// 32 bytes, not 56, in every connection's outbox.
pub(crate) enum Frames {
    One(Bytes),
    /// Empty, or two frames and more. (Only pushed to and read in order: a
    /// `Vec`, a word smaller than a deque.)
    Many(Vec<Bytes>),
}

impl Default for Frames {
    fn default() -> Self {
        Self::Many(Vec::new())
    }
}

impl Frames {
    fn push(&mut self, frame: Bytes) {
        match self {
            Self::Many(frames) if frames.is_empty() => *self = Self::One(frame),
            Self::Many(frames) => frames.push(frame),
            Self::One(_) => {
                if let Self::One(first) = std::mem::take(self) {
                    *self = Self::Many(vec![first, frame]);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Self::Many(frames) if frames.is_empty())
    }

    /// How many frames wait.
    fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(frames) => frames.len(),
        }
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Bytes> {
        match self {
            Self::One(frame) => std::slice::from_ref(frame).iter(),
            Self::Many(frames) => frames.iter(),
        }
    }
}

/// Every connection's outbox holds one; its size counts in the memory of
/// every idle connection (32-bit counts and the seldom parts boxed keep it
/// at 72 bytes, and the whole shared outbox within glibc's 128-byte class:
/// `an_outboxs_state_stays_small`).
#[derive(Default)]
struct State {
    frames: Frames,
    /// Bytes of the frames queued.
    bytes: u32,
    /// The most bytes queued ([`Config::max_outbound`](crate::Config::max_outbound),
    /// at most 4 GiB).
    limit: u32,
    /// The bound was crossed: the connection is being closed; drop frames.
    overflowed: bool,
    abort: bool,
    /// Check that the peer is still there.
    check_alive: bool,
    /// Something was pushed or requested since the connection last looked.
    signalled: bool,
    /// How many more frames emitters may write to the socket themselves
    /// (0: none). Granted by the connection as it goes to sleep with
    /// nothing to write and nothing queued ([`Outbox::open_direct`]);
    /// withdrawn when it next writes or a message of its peer arrives, and
    /// by an emitter whose frame the socket did not take whole.
    direct: u8,
    /// The budget last granted: doubled each time the connection finds
    /// frames still come one at a time, none once they do not.
    granted: u8,
    /// Emitters may write to the socket at all (see [`Outbox::with_socket`]).
    writes_direct: bool,
    /// The connection task waiting for it. Kept under the same lock as the
    /// frames (rather than in a `tokio::sync::Notify`, which has a lock of
    /// its own): a push to one of a room's members takes one lock, not two.
    waker: Option<Waker>,
    /// What is seldom there, boxed together (`None` when neither is).
    seldom: Option<Box<Seldom>>,
}

/// The parts of an outbox's state that are seldom there.
#[derive(Default)]
struct Seldom {
    /// A close requested: code and reason.
    close: Option<(CloseCode, String)>,
    /// The end of a frame an emitter wrote in part: the connection writes
    /// it before anything else.
    rest: Option<Bytes>,
}

impl State {
    fn with_limit(limit: usize) -> Self {
        Self { limit: u32::try_from(limit).unwrap_or(u32::MAX), ..Self::default() }
    }

    fn rest(&self) -> Option<&Bytes> {
        self.seldom.as_ref().and_then(|seldom| seldom.rest.as_ref())
    }

    fn rest_mut(&mut self) -> Option<&mut Bytes> {
        self.seldom.as_mut().and_then(|seldom| seldom.rest.as_mut())
    }

    fn set_rest(&mut self, rest: Bytes) {
        self.seldom.get_or_insert_default().rest = Some(rest);
    }

    fn close_requested(&self) -> bool {
        self.seldom.as_ref().is_some_and(|seldom| seldom.close.is_some())
    }

    /// Take out the close request; the box goes once it holds nothing.
    fn take_close(&mut self) -> Option<(CloseCode, String)> {
        let close = self.seldom.as_mut().and_then(|seldom| seldom.close.take());
        self.drop_empty_seldom();
        close
    }

    fn clear_rest(&mut self) {
        if let Some(seldom) = self.seldom.as_mut() {
            seldom.rest = None;
        }
        self.drop_empty_seldom();
    }

    fn drop_empty_seldom(&mut self) {
        if self.seldom.as_ref().is_some_and(|seldom| seldom.close.is_none() && seldom.rest.is_none()) {
            self.seldom = None;
        }
    }
}

/// Mark work pending and wake the connection, once the lock is released.
fn signal(mut state: MutexGuard<'_, State>) {
    state.signalled = true;
    let waker = state.waker.take();
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
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

impl Taken {
    /// How many frames waited.
    pub(crate) fn batch(&self) -> usize {
        self.frames.len()
    }
}

/// The most frames emitters may write to a sleeping connection's socket
/// before it looks again (see [`Outbox::open_direct`]).
const MAX_DIRECT: u8 = 64;

pub(crate) struct Outbox {
    state: Mutex<State>,
    /// A plain TCP connection's socket, shared with its [`DirectStream`].
    socket: Option<TcpStream>,
}

impl Outbox {
    /// An outbox holding at most `limit` bytes of frames.
    pub(crate) fn new(limit: usize) -> Self {
        Self { state: Mutex::new(State::with_limit(limit)), socket: None }
    }

    /// An outbox holding `socket` too, and the stream its connection reads
    /// and writes through. `writes_direct`: emitters may write frames to
    /// the socket themselves ([`open_direct`](Self::open_direct)); without
    /// it the socket is only held here, where it costs no allocation.
    pub(crate) fn with_socket(limit: usize, socket: TcpStream, writes_direct: bool) -> (Arc<Self>, DirectStream) {
        let state = State { writes_direct, ..State::with_limit(limit) };
        let outbox = Arc::new(Self { state: Mutex::new(state), socket: Some(socket) });
        (outbox.clone(), DirectStream(outbox))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// Queue a frame. Over the bound, the outbox drops everything it holds,
    /// refuses further frames and tells the connection to close.
    pub(crate) fn push(&self, frame: Bytes) {
        let mut state = self.lock();
        if state.overflowed || state.abort {
            return;
        }
        if state.direct > 0
            && let Some(socket) = &self.socket
        {
            // Open only with nothing queued and nothing left over (see
            // `open_direct`), so the frame goes out in its turn.
            match socket.try_write(&frame) {
                Ok(n) if n == frame.len() => {
                    // Once the budget is spent, the next frame is queued
                    // and wakes the connection, which finds out whether
                    // frames now come faster than it would write them
                    // one by one.
                    state.direct -= 1;
                    return;
                }
                Ok(n) => {
                    state.direct = 0;
                    state.set_rest(frame.slice(n..));
                    signal(state);
                    return;
                }
                // Full, or failing: queued, for the connection to find out.
                Err(_) => state.direct = 0,
            }
        }
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if state.bytes.saturating_add(len) > state.limit && !state.frames.is_empty() {
            state.overflowed = true;
            state.frames = Frames::default();
            state.bytes = 0;
        } else {
            state.bytes = state.bytes.saturating_add(len);
            state.frames.push(frame);
        }
        signal(state);
    }

    /// Ask the connection to close with `code` and `reason` (cut to fit a
    /// close frame). The first request wins.
    pub(crate) fn request_close(&self, code: CloseCode, reason: &str) {
        let mut cut = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut state = self.lock();
        let seldom = state.seldom.get_or_insert_default();
        seldom.close.get_or_insert_with(|| (code, reason[..cut].to_owned()));
        signal(state);
    }

    /// Ask the connection to check that its peer is still there.
    pub(crate) fn request_check_alive(&self) {
        let mut state = self.lock();
        state.check_alive = true;
        signal(state);
    }

    /// Ask the connection to stop at once, without a closing handshake.
    pub(crate) fn abort(&self) {
        let mut state = self.lock();
        state.abort = true;
        signal(state);
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
        let close = state.take_close();
        Taken {
            frames,
            overflowed: state.overflowed,
            close,
            abort: state.abort,
            check_alive,
            rest: state.rest().is_some(),
        }
    }

    /// The connection goes to sleep (its waker registered by
    /// [`poll_notified`](Self::poll_notified)): if it has nothing of its own
    /// to write (`idle`), nothing is queued, and frames come to it one at a
    /// time, let emitters write the next few to its socket themselves.
    /// `batch`: how many frames it found waiting when it last looked.
    /// `true`: something came since; it should look again rather than sleep.
    ///
    /// Frames coming faster than its task runs are better queued: it then
    /// writes all that waits in one go, where emitters would make a write
    /// each (at the peak of the fan-out bench, ten times the CPU per
    /// delivery). So the budget is spent before it looks again, doubling
    /// (up to [`MAX_DIRECT`]) while it finds one frame at a time, and is
    /// withdrawn as soon as it finds more.
    pub(crate) fn open_direct(&self, idle: bool, batch: usize) -> bool {
        let mut state = self.lock();
        if state.signalled {
            return true;
        }
        match batch {
            // Woken for something else: nothing learnt.
            0 => {}
            1 => state.granted = state.granted.saturating_mul(2).clamp(1, MAX_DIRECT),
            _ => state.granted = 0,
        }
        let open = idle
            && state.writes_direct
            && self.socket.is_some()
            && state.frames.is_empty()
            && state.rest().is_none()
            && !state.overflowed
            && !state.abort
            && !state.close_requested();
        state.direct = if open { state.granted } else { 0 };
        false
    }

    /// A message of the peer arrived: what is emitted while the connection
    /// handles it is queued, for the connection to put in its place
    /// (frames emitted before its answer go out before it).
    pub(crate) fn close_direct(&self) {
        if self.socket.is_some() {
            self.lock().direct = 0;
        }
    }

    /// Before the connection writes: emitters stop writing to the socket,
    /// and the end of a frame one of them cut short goes out first.
    fn poll_claim(&self, socket: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        state.direct = 0;
        while let Some(rest) = state.rest_mut() {
            match poll_write_socket(socket, cx, rest) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) if n < rest.len() => {
                    let _ = rest.split_to(n);
                }
                Poll::Ready(Ok(_)) => state.clear_rest(),
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

impl Drop for DirectStream {
    /// The connection is done with its stream: shut the socket down now,
    /// as dropping a `TcpStream` would close it, rather than when the last
    /// holder of the outbox (a disconnect hook's, a room's) lets it go; and
    /// no emitter writes to it any more.
    fn drop(&mut self) {
        // Only the connection grants a budget, and it is gone with its
        // stream: none is granted again.
        self.0.lock().direct = 0;
        if let Ok(socket) = self.socket() {
            let _ = socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Both);
        }
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Every connection holds one outbox: its state (this), a lock word,
    /// the socket (tokio's, 24 bytes in a release build) and the `Arc`'s
    /// counts, 120 bytes, glibc's 128-byte class on x86_64 (BENCHMARKS,
    /// tenth pass). One more word of state and it is the 144-byte class.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_outboxs_state_stays_small() {
        let size = std::mem::size_of::<State>();
        assert!(size <= 72, "the outbox's state is {size} bytes");
    }

    /// A close request is handed over once, with what it said, and its box
    /// goes with it; the bound counts bytes in 32 bits, a larger limit
    /// taken as 4 GiB.
    #[test]
    fn seldom_parts_come_and_go() {
        let outbox = Outbox::new(usize::MAX);
        assert_eq!(outbox.lock().limit, u32::MAX);
        outbox.request_close(CloseCode::Normal, "bye");
        outbox.request_close(CloseCode::Away, "later");
        assert!(outbox.lock().seldom.is_some());
        let taken = outbox.take();
        assert_eq!(taken.close, Some((CloseCode::Normal, "bye".to_owned())), "the first request wins");
        assert!(outbox.lock().seldom.is_none(), "an empty box kept");
        assert_eq!(outbox.take().close, None);
        let small = Outbox::new(5);
        small.push(Bytes::from_static(b"abc"));
        small.push(Bytes::from_static(b"de"));
        assert!(!small.take().overflowed, "at the bound");
        small.push(Bytes::from_static(b"abcd"));
        small.push(Bytes::from_static(b"ef"));
        assert!(small.take().overflowed, "past the bound");
    }

    /// A connected pair: the server's side in an outbox (whose emitters may
    /// write to the socket), the peer's side.
    async fn pair() -> (Arc<Outbox>, DirectStream, TcpStream) {
        pair_writing_direct(true).await
    }

    async fn pair_writing_direct(writes_direct: bool) -> (Arc<Outbox>, DirectStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        let (outbox, stream) = Outbox::with_socket(usize::MAX, socket, writes_direct);
        (outbox, stream, peer)
    }

    /// Holding the socket without direct writes (a multi-threaded
    /// runtime's connections), emitters queue every frame.
    #[tokio::test]
    async fn without_direct_writes_every_frame_is_queued() {
        let (outbox, _stream, _peer) = pair_writing_direct(false).await;
        for _ in 0..4 {
            assert!(!outbox.open_direct(true, 1));
            assert_eq!(outbox.lock().direct, 0);
        }
        outbox.push(Bytes::from_static(b"frame"));
        assert_eq!(outbox.take().batch(), 1, "the frame was queued");
    }

    #[tokio::test]
    async fn the_budget_doubles_while_frames_come_one_at_a_time_and_goes_when_they_do_not() {
        let (outbox, _stream, _peer) = pair().await;
        let direct = |outbox: &Outbox| outbox.lock().direct;
        assert!(!outbox.open_direct(true, 0));
        assert_eq!(direct(&outbox), 0, "nothing learnt yet: nothing granted");
        for expected in [1, 2, 4, 8, 16, 32, 64, 64] {
            assert!(!outbox.open_direct(true, 1));
            assert_eq!(direct(&outbox), expected);
        }
        assert!(!outbox.open_direct(true, 0));
        assert_eq!(direct(&outbox), 64, "woken for something else: the grant stands");
        assert!(!outbox.open_direct(false, 1));
        assert_eq!(direct(&outbox), 0, "not idle: nothing granted");
        assert!(!outbox.open_direct(true, 3));
        assert_eq!(direct(&outbox), 0, "frames waited together: withdrawn");
        assert!(!outbox.open_direct(true, 1));
        assert_eq!(direct(&outbox), 1, "and grown again from one");
        // One frame written by an emitter spends a budget of one.
        outbox.push(Bytes::from_static(b"ab"));
        assert_eq!(direct(&outbox), 0);
        outbox.push(Bytes::from_static(b"cd"));
        assert!(!outbox.lock().frames.is_empty(), "past the budget, frames are queued");
        assert!(outbox.open_direct(true, 1), "and the connection is told to look");
    }

    /// Frames the peer does not read, written by emitters until the socket
    /// cuts one short: the rest of that frame goes out before anything the
    /// connection writes itself, and the peer reads every byte in order.
    #[tokio::test]
    async fn a_frame_cut_short_goes_out_whole_before_the_connections_own_bytes() {
        let (outbox, mut stream, mut peer) = pair().await;
        let mut sent = Vec::new();
        for i in 0u8.. {
            let state = outbox.lock();
            let (cut, direct) = (state.rest().is_some(), state.direct);
            drop(state);
            if cut {
                break;
            }
            if direct == 0 {
                assert!(!outbox.open_direct(true, 1));
            }
            let frame = Bytes::from(vec![i; 256 * 1024]);
            sent.extend_from_slice(&frame);
            outbox.push(frame);
            assert!(i < 200, "the socket took 50 MiB unread");
        }
        assert!(outbox.lock().signalled, "the connection is woken to write the rest");
        assert_eq!(outbox.lock().direct, 0, "and emitters stop writing");
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        stream.write_all(b"own bytes").await.unwrap();
        stream.shutdown().await.unwrap();
        sent.extend_from_slice(b"own bytes");
        let got = reader.await.unwrap();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "the bytes arrived out of order");
    }
}
