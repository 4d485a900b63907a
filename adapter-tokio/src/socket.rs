//! [`WebSocket`]: one connection, driven over a tokio stream.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use roomwire_core::message::{Assembled, Incoming, MessageReader, VecStorage};
use roomwire_core::{
    CloseCode, Connection, Event, InsufficientSize, MaskKeySource, MessageKind, Role, SendError, State, Timeout,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant as TokioInstant, Sleep};
use tracing::{Span, debug, trace};

use crate::budget::ProcessBudget;
use crate::config::Config;
use crate::deflate::{Codec, plain_message};
use crate::error::Error;
use crate::message::{CloseFrame, Message, MessageRef};
use roomwire_core::deflate::Deflate;

/// First size of the read buffer.
const INITIAL_READ_BUFFER: usize = 4 * 1024;
/// Capacity the write buffer keeps once drained; more is released.
const WRITE_BUFFER_KEEP: usize = 64 * 1024;
/// Capacity the reassembly buffer keeps between messages.
const REASSEMBLY_KEEP: usize = 64 * 1024;
/// Room reserved for one `poll_transmit` output; the core promises 256.
const TRANSMIT_ROOM: usize = 256;
/// Longest frame header, with masking key.
const MAX_FRAME_HEADER: usize = 14;

/// The process's bound on bytes queued for sending beyond each connection's
/// first 64 KiB, until [`set_outbound_limit`] sets another: 1 GiB.
pub const DEFAULT_OUTBOUND_LIMIT: usize = 1 << 30;

/// What outbound queues hold beyond their first 64 KiB, process-wide.
static OUTBOUND: ProcessBudget = ProcessBudget::new(DEFAULT_OUTBOUND_LIMIT);

/// Sets the process's bound on bytes queued for sending and not yet
/// written, over every [`WebSocket`] of the process, server or client
/// ([`DEFAULT_OUTBOUND_LIMIT`] until set).
///
/// A connection's first 64 KiB queued are its own; beyond them each byte
/// counts against this bound until it is written. A message that would
/// pass it is refused ([`Error::OutboundLimit`](crate::Error::OutboundLimit),
/// even into an empty queue; a server closes the reader with 1013),
/// whatever the connection's own [`Config::max_outbound`]. A reader
/// closed so keeps its share until its connection ends (the close timeout
/// at most): meanwhile, readers whose queues pass 64 KiB are refused too.
/// The room [`Client`](crate::Client) keeps its own buffers, outside it.
///
/// It is the memory readers that do not read can pin: a room's frame is
/// encoded once, but each reader's queue holds its own copy, so a crowd
/// of connections that never read, in a room that carries large messages,
/// would otherwise hold the per-connection bound each. Size it to what
/// the machine can spare, and above the largest frame. Lowering it below
/// what is held now takes nothing back.
///
/// ```standalone_crate
/// // A small machine: at most 64 MiB queued beyond each connection's first 64 KiB.
/// // (A doctest of its own process: the bound is the process's.)
/// roomwire_tokio::set_outbound_limit(64 << 20);
/// assert_eq!(roomwire_tokio::outbound_limit(), 64 << 20);
/// ```
pub fn set_outbound_limit(bytes: usize) {
    OUTBOUND.set_limit(bytes);
}

/// The process's bound on bytes queued for sending beyond each
/// connection's first 64 KiB (see [`set_outbound_limit`]).
pub fn outbound_limit() -> usize {
    OUTBOUND.limit()
}

/// Bytes queued for sending now against [`outbound_limit`], over the
/// process (each connection's first 64 KiB not counted): for metrics.
pub fn outbound_held() -> usize {
    OUTBOUND.held()
}

/// The bytes of a connection's outbound queue that [`OUTBOUND`] covers
/// (what is beyond their own share is taken from it): grown before a frame
/// is queued, shrunk as the queue is written, given back when the
/// connection goes. 32 bits, beside the 32-bit read chunk: one word with
/// it in every connection (a queue past 4 GiB is refused).
#[derive(Debug, Default)]
struct OutboundCharge(u32);

impl OutboundCharge {
    /// Cover a queue of `queued` bytes; false, and nothing taken, if the
    /// budget has no room.
    fn cover(&mut self, queued: usize) -> bool {
        let covered = self.0 as usize;
        if queued <= covered {
            return true;
        }
        let Ok(charge) = u32::try_from(queued) else { return false };
        if !OUTBOUND.resize(covered, queued) {
            return false;
        }
        self.0 = charge;
        true
    }

    /// Give back what a queue of `queued` bytes no longer needs.
    fn shrink_to(&mut self, queued: usize) {
        let covered = self.0 as usize;
        if queued < covered {
            OUTBOUND.resize(covered, queued);
            // Below what was covered, so within 32 bits.
            self.0 = u32::try_from(queued).unwrap_or(self.0);
        }
    }
}

impl Drop for OutboundCharge {
    fn drop(&mut self) {
        OUTBOUND.resize(self.0 as usize, 0);
    }
}

thread_local! {
    /// A read buffer and a write buffer given back by connections of this
    /// thread that went idle, for the next one with bytes to read or write.
    /// An idle connection holds no buffer (see `release_idle_buffers`), yet
    /// a busy thread does not allocate, zero and grow a fresh buffer for
    /// every message: measured with `scripts/bench.sh` (echo of 500 × 16 KiB
    /// messages), fresh buffers cost several reads per message (4, 8, 16 KiB
    /// …) plus the zeroing, and most of the gap to fastwebsockets.
    static SPARE_READ: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    static SPARE_WRITE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Keep the larger of `buf` and the spare in `slot`.
fn give_back(slot: &'static std::thread::LocalKey<std::cell::Cell<Vec<u8>>>, buf: Vec<u8>) {
    if buf.capacity() == 0 {
        return;
    }
    let _ = slot.try_with(|spare| {
        let current = spare.take();
        spare.set(if current.capacity() >= buf.capacity() { current } else { buf });
    });
}

/// The spare in `slot`, if any (empty otherwise).
fn take_spare(slot: &'static std::thread::LocalKey<std::cell::Cell<Vec<u8>>>) -> Vec<u8> {
    slot.try_with(std::cell::Cell::take).unwrap_or_default()
}

/// Before queuing into a released (capacity 0) write buffer: reuse the spare.
fn reuse_write_buffer(wbuf: &mut Vec<u8>) {
    if wbuf.capacity() == 0 {
        *wbuf = take_spare(&SPARE_WRITE);
        wbuf.clear();
    }
}

/// Client masking keys and handshake nonces from the operating system's
/// CSPRNG (RFC 6455 §10.3), fetched 256 bytes at a time. A server's source
/// is empty and stays so: servers never mask.
pub(crate) struct RandomKeys(Option<Box<KeyBuffer>>);

/// Random bytes fetched ahead, and how many are used.
struct KeyBuffer {
    bytes: [u8; 256],
    used: usize,
}

impl KeyBuffer {
    /// A buffer with no bytes left (the next key fills it).
    fn used_up() -> Box<Self> {
        Box::new(Self { bytes: [0; 256], used: 256 })
    }
}

impl RandomKeys {
    /// A client's source, filled now so that a failing generator is an
    /// error at connect time rather than a panic later.
    pub(crate) fn new() -> io::Result<Self> {
        let mut buf = KeyBuffer::used_up();
        getrandom::fill(&mut buf.bytes).map_err(|e| io::Error::other(format!("random number generator: {e}")))?;
        buf.used = 0;
        Ok(Self(Some(buf)))
    }

    /// A server's source: no allocation, no randomness drawn (a first use
    /// would fill it), one word in every connection.
    pub(crate) const fn unused() -> Self {
        Self(None)
    }
}

impl MaskKeySource for RandomKeys {
    fn next_key(&mut self) -> [u8; 4] {
        let buf = self.0.get_or_insert_with(KeyBuffer::used_up);
        if buf.used + 4 > buf.bytes.len() {
            // The source worked when the connection was created; a later
            // failure of the OS generator leaves no safe key to use.
            #[allow(clippy::expect_used)]
            getrandom::fill(&mut buf.bytes).expect("operating system random number generator failed");
            buf.used = 0;
        }
        let mut key = [0u8; 4];
        key.copy_from_slice(&buf.bytes[buf.used..buf.used + 4]);
        buf.used += 4;
        key
    }
}

/// The core connection of either role (the role is a value of it).
pub(crate) type Conn = Connection<RandomKeys>;

/// A server's core connection, waiting for the Upgrade request.
pub(crate) fn server_conn(config: roomwire_core::Config, now: roomwire_core::Instant) -> Conn {
    Connection::with_role(Role::Server, config, now, RandomKeys::unused())
}

/// `at` on a core clock started at `origin` (in microseconds, saturating).
pub(crate) fn core_clock(origin: TokioInstant, at: TokioInstant) -> roomwire_core::Instant {
    let micros = at.saturating_duration_since(origin).as_micros();
    roomwire_core::Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// Where the adapter is in the life of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The core is driven: frames in, frames out.
    Running,
    /// The core is closed: write what is queued, then (client) wait for the
    /// server to close TCP, then go on to `ShuttingDown`, all before
    /// `deadline`.
    Finishing { deadline: TokioInstant, awaiting_eof: bool },
    /// Shutting the stream down, until `deadline` at most.
    ShuttingDown { deadline: TokioInstant },
    /// Nothing more to do.
    Done,
}

/// What one round of I/O did.
#[derive(Debug)]
pub(crate) enum Io {
    /// Bytes were read (0: end of stream).
    Read(usize),
    /// Everything queued was written and flushed.
    Written,
    /// The deadline passed.
    Timer,
}

/// One WebSocket connection over a tokio stream (`TcpStream`, a TLS stream,
/// a `DuplexStream` …), server or client.
///
/// The adapter moves bytes and time between the stream and the
/// [`roomwire_core::Connection`], which makes every protocol decision.
///
/// # Receiving
///
/// [`recv`](Self::recv) returns whole messages and, while waiting, answers
/// pings, sends keepalive pings and enforces the close and keepalive
/// deadlines. It returns `None` once the connection has ended normally: the
/// closing handshake completed (see [`peer_close`](Self::peer_close) for the
/// peer's code and reason) or the close timeout passed. An abnormal end
/// (protocol error, I/O error, keepalive timeout, connection dropped without
/// a close frame) is reported once as `Some(Err(_))`, then `None` follows.
///
/// # Sending
///
/// [`feed`](Self::feed) encodes a message into the outbound queue without
/// writing; [`flush`](Self::flush) writes the whole queue, in as few write
/// calls as the stream allows; [`send`](Self::send) does both. The queue is
/// bounded by [`Config::max_outbound`]: `feed` fails with
/// [`Error::QueueFull`] rather than grow it further.
///
/// # Cancel safety
///
/// All state (read buffer, queued output, partial messages, deadlines) lives
/// in this struct. [`recv`](Self::recv), [`flush`](Self::flush),
/// [`send`](Self::send) and [`close`](Self::close) are cancel safe: dropping
/// their future (in `tokio::select!`, `tokio::time::timeout` …) loses no
/// received bytes and no queued output; calling again continues where the
/// dropped call stopped. (A cancelled `send` has queued its message, which
/// the next `flush`, `send` or `recv` writes.)
///
/// # Example
///
/// An echo server:
///
/// ```no_run
/// use roomwire_tokio::{Config, WebSocket};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// loop {
///     let (stream, _) = listener.accept().await?;
///     tokio::spawn(async move {
///         let Ok((mut ws, _info)) = WebSocket::accept(stream, Config::default()).await else { return };
///         while let Some(Ok(message)) = ws.recv().await {
///             // An error here (the peer closed first) ends the loop at the next recv.
///             let _ = ws.send(&message).await;
///         }
///     });
/// }
/// # }
/// ```
pub struct WebSocket<S> {
    pub(crate) stream: S,
    pub(crate) conn: Conn,
    /// [`Config::max_outbound`] (the rest of the configuration is the
    /// core's, kept once, in `conn`).
    max_outbound: usize,
    /// [`Config::max_read_chunk`] (at most 4 GiB: 32 bits, in one word
    /// with the outbound charge).
    max_read_chunk: u32,
    /// Origin of the core's clock.
    origin: TokioInstant,
    /// Read buffer, fully initialised; bytes `rstart..rend` are unprocessed.
    pub(crate) rbuf: Vec<u8>,
    pub(crate) rstart: usize,
    pub(crate) rend: usize,
    /// Outbound queue; bytes `wpos..` are not written yet.
    pub(crate) wbuf: Vec<u8>,
    wpos: usize,
    /// What the queue holds of the process's outbound bound.
    outbound: OutboundCharge,
    /// Written bytes not yet flushed.
    need_flush: bool,
    /// See [`WebSocket::hold_close`].
    hold_close: bool,
    reader: MessageReader<VecStorage>,
    /// permessage-deflate, once negotiated and first used.
    codec: Option<Box<Codec>>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A wake-up asked for besides the core's deadlines
    /// ([`wake_after`](Self::wake_after)), on the same timer.
    wake_at: Option<TokioInstant>,
    phase: Phase,
    /// The abnormal end to report from `recv`, once. (This and the peer's
    /// close are boxed: seldom there, where every idle connection would
    /// hold their room.)
    pending: Option<Box<Error>>,
    peer_close: Option<Box<CloseFrame>>,
    pub(crate) span: Span,
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.role())
            .field("state", &self.state())
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl<S> WebSocket<S> {
    pub(crate) fn new(stream: S, conn: Conn, config: Config, origin: TokioInstant, span: Span) -> Self {
        let limit = usize::try_from(config.core.max_message_size).unwrap_or(usize::MAX);
        Self {
            stream,
            conn,
            max_outbound: config.max_outbound,
            max_read_chunk: u32::try_from(config.max_read_chunk).unwrap_or(u32::MAX),
            origin,
            // Allocated (or taken from the thread's spare) at the first read.
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            wbuf: Vec::new(),
            wpos: 0,
            outbound: OutboundCharge(0),
            need_flush: false,
            hold_close: false,
            reader: MessageReader::new(VecStorage::new(limit, REASSEMBLY_KEEP)),
            codec: None,
            sleep: None,
            wake_at: None,
            phase: Phase::Running,
            pending: None,
            peer_close: None,
            span,
        }
    }

    /// Server or client.
    pub fn role(&self) -> Role {
        self.conn.role()
    }

    /// The core's view of the connection: `Open` while messages flow,
    /// `Closing` during the closing handshake, `Closed` after.
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// The configuration.
    pub fn config(&self) -> Config {
        Config { core: *self.conn.config(), max_outbound: self.max_outbound, max_read_chunk: self.max_read_chunk() }
    }

    /// The close frame the peer sent, once received: its code and reason.
    /// After our own [`close`](Self::close), this is the peer's echo.
    pub fn peer_close(&self) -> Option<&CloseFrame> {
        self.peer_close.as_deref()
    }

    /// The largest single read.
    fn max_read_chunk(&self) -> usize {
        self.max_read_chunk as usize
    }

    /// Bytes queued for sending and not yet written.
    pub fn queued(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The core's clock: microseconds since this connection's origin.
    pub(crate) fn now(&self) -> roomwire_core::Instant {
        core_clock(self.origin, TokioInstant::now())
    }

    /// Its clock's origin.
    #[cfg(test)]
    pub(crate) fn origin(&self) -> TokioInstant {
        self.origin
    }

    /// The core's next deadline on tokio's clock.
    pub(crate) fn core_deadline(&self) -> Option<TokioInstant> {
        self.conn.poll_timeout().map(|at| on_tokio_clock(self.origin, at))
    }

    /// Let the core handle its deadline.
    pub(crate) fn handle_timeout(&mut self) -> Option<Timeout> {
        let now = self.now();
        self.conn.handle_timeout(now)
    }

    /// Move everything the core wants sent (pongs, keepalive pings, close
    /// frames, handshake refusals) into the outbound queue.
    #[inline]
    pub(crate) fn pump_transmit(&mut self) {
        // Checked here, inlined, since it is called on every turn of the
        // read loop and the core seldom owes anything.
        if self.conn.wants_transmit() {
            self.pump_owed();
        }
    }

    /// [`pump_transmit`](Self::pump_transmit)'s work, once something is owed.
    fn pump_owed(&mut self) {
        let Self { conn, wbuf, .. } = self;
        while conn.wants_transmit() {
            let written = encode_into(wbuf, TRANSMIT_ROOM, |out| Ok(conn.poll_transmit(out)?));
            if !matches!(written, Ok(n) if n > 0) {
                break;
            }
        }
    }

    /// Queue one message as a single frame, without writing it.
    ///
    /// Fails with [`Error::Closed`] once the closing handshake has started,
    /// with [`Error::QueueFull`] when the queue is not empty and this
    /// message would take it over [`Config::max_outbound`] (nothing is
    /// queued then: [`flush`](Self::flush) and retry), and with
    /// [`Error::Send`] while a fragmented message is in progress.
    ///
    /// ```no_run
    /// # async fn f(ws: &mut roomwire_tokio::WebSocket<tokio::net::TcpStream>) -> Result<(), roomwire_tokio::Error> {
    /// use roomwire_tokio::{Message, MessageRef};
    /// ws.feed(MessageRef::Text("one"))?;
    /// ws.feed(&Message::Binary(vec![2]))?;
    /// ws.flush().await?; // both frames, one write
    /// # Ok(()) }
    /// ```
    pub fn feed<'m>(&mut self, message: impl Into<MessageRef<'m>>) -> Result<(), Error> {
        let message = message.into();
        self.check_room(message.payload().len())?;
        if let Some(agreed) = self.conn.deflate().copied().filter(|agreed| agreed.compresses(message.payload().len())) {
            return self.feed_compressed(&agreed, message.kind(), message.payload());
        }
        let Self { conn, wbuf, .. } = self;
        let room = message.payload().len() + MAX_FRAME_HEADER;
        let encoded = encode_into(wbuf, room, |out| conn.send(message, out));
        self.settle_outbound();
        encoded?;
        Ok(())
    }

    /// After an encode, what was covered ahead beyond what the frame took
    /// (a compressed frame, a failed encode) is given back.
    fn settle_outbound(&mut self) {
        self.outbound.shrink_to(self.queued());
    }

    /// Compress `payload` as one message, as `agreed` says, and queue it.
    fn feed_compressed(&mut self, agreed: &Deflate, kind: MessageKind, payload: &[u8]) -> Result<(), Error> {
        let Self { conn, wbuf, codec, .. } = self;
        let codec = codec.get_or_insert_with(|| Box::new(Codec::new()));
        let queued = codec.compress(agreed, payload, |deflated| {
            encode_into(wbuf, deflated.len() + MAX_FRAME_HEADER, |out| conn.send_deflated(kind, deflated, out))
        });
        if queued.is_err() {
            codec.forget_context();
        }
        self.settle_outbound();
        queued?;
        Ok(())
    }

    /// Queue one frame of a fragmented message, without writing it: the
    /// first call starts a `kind` message, later calls continue it (their
    /// `kind` is ignored) and `fin` ends it. For text, the concatenated
    /// payloads must be valid UTF-8. Pings, pongs and the close frame may go
    /// out between fragments. Same queue bound as [`feed`](Self::feed).
    pub fn feed_fragment(&mut self, kind: MessageKind, payload: &[u8], fin: bool) -> Result<(), Error> {
        self.check_room(payload.len())?;
        let Self { conn, wbuf, .. } = self;
        let room = payload.len() + MAX_FRAME_HEADER;
        let encoded = encode_into(wbuf, room, |out| conn.send_fragment(kind, payload, fin, out));
        self.settle_outbound();
        encoded?;
        Ok(())
    }

    /// Queue a ping carrying `payload` (at most 125 bytes), without writing
    /// it. The peer's pong is handled by [`recv`](Self::recv) and not
    /// reported. Pings are not subject to the queue bound.
    pub fn feed_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        let Self { conn, wbuf, .. } = self;
        let room = payload.len() + MAX_FRAME_HEADER;
        encode_into(wbuf, room, |out| conn.ping(payload, out))?;
        Ok(())
    }

    /// Queue one complete, pre-encoded data frame, without writing it: the
    /// bytes go to the stream as they are. This is how a server sends a frame
    /// encoded once for many recipients (e.g. by
    /// [`roomwire_core::dispatch::encode_frame`]) without encoding it again
    /// per connection.
    ///
    /// `frame` must be exactly one whole frame as a server sends it: FIN
    /// set, no RSV bits, text or binary opcode, unmasked, and as long as its
    /// header says; anything else is refused with
    /// [`Error::Send`]`(`[`SendError::InvalidState`]`)` and nothing is queued.
    /// It must not be fed while a fragmented message is being sent (see
    /// [`feed_fragment`](Self::feed_fragment)). Client connections (which
    /// must mask) refuse it the same way. Same queue bound and closing rule
    /// as [`feed`](Self::feed).
    pub fn feed_frame(&mut self, frame: &[u8]) -> Result<(), Error> {
        let whole = matches!(
            roomwire_core::FrameHeader::parse(frame),
            Ok(Some((h, len))) if h.fin && h.rsv == 0 && h.mask.is_none()
                && matches!(h.opcode, roomwire_core::Opcode::Text | roomwire_core::Opcode::Binary)
                && (len as u64).checked_add(h.payload_len) == Some(frame.len() as u64)
        );
        if !whole || self.role() != Role::Server {
            return Err(Error::Send(SendError::InvalidState));
        }
        self.check_room(frame.len().saturating_sub(MAX_FRAME_HEADER))?;
        reuse_write_buffer(&mut self.wbuf);
        self.wbuf.extend_from_slice(frame);
        Ok(())
    }

    /// [`feed_frame`](Self::feed_frame) for a frame the core encoded
    /// (`roomwire_core::dispatch::encode_frame`, shared by a room's
    /// recipients): valid by construction, so its header is not parsed
    /// again for every recipient (measured: 2 % of the server's CPU per
    /// delivery in the fan-out cells of `scripts/bench.sh`).
    pub(crate) fn feed_encoded_frame(&mut self, frame: &[u8]) -> Result<(), Error> {
        // (An empty frame, which the emitter never makes, would queue nothing.)
        debug_assert!(
            frame.is_empty()
                || matches!(
                    roomwire_core::FrameHeader::parse(frame),
                    Ok(Some((h, len))) if h.fin && h.mask.is_none() && (len as u64).checked_add(h.payload_len) == Some(frame.len() as u64)
                )
        );
        if self.role() != Role::Server {
            return Err(Error::Send(SendError::InvalidState));
        }
        self.check_room(frame.len().saturating_sub(MAX_FRAME_HEADER))?;
        // A connection that agreed to keep its compression context cannot
        // take a frame compressed for many: it compresses a plain one itself.
        if let Some(agreed) = self.conn.deflate().copied().filter(|agreed| !agreed.takes_shared_frames())
            && let Some((kind, payload)) = plain_message(frame).filter(|(_, p)| agreed.compresses(p.len()))
        {
            return self.feed_compressed(&agreed, kind, payload);
        }
        reuse_write_buffer(&mut self.wbuf);
        self.wbuf.extend_from_slice(frame);
        Ok(())
    }

    /// Whether a frame of `payload` bytes may be queued: under the
    /// connection's bound (any frame into an empty queue), and within the
    /// process's ([`set_outbound_limit`]), whose share it then holds.
    fn check_room(&mut self, payload: usize) -> Result<(), Error> {
        if !self.conn.can_send() {
            return Err(Error::Closed);
        }
        let queued = self.queued();
        let after = queued.saturating_add(payload).saturating_add(MAX_FRAME_HEADER);
        if queued > 0 && after > self.max_outbound {
            return Err(Error::QueueFull);
        }
        if !self.outbound.cover(after) {
            return Err(Error::OutboundLimit);
        }
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Queue `message` and write the whole queue: [`feed`](Self::feed) then
    /// [`flush`](Self::flush).
    ///
    /// ```no_run
    /// # async fn f(ws: &mut roomwire_tokio::WebSocket<tokio::net::TcpStream>) -> Result<(), roomwire_tokio::Error> {
    /// use roomwire_tokio::MessageRef;
    /// ws.send(MessageRef::Text("hello")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send<'m>(&mut self, message: impl Into<MessageRef<'m>>) -> Result<(), Error> {
        self.feed(message)?;
        self.flush().await
    }

    /// Send a ping carrying `payload` (at most 125 bytes):
    /// [`feed_ping`](Self::feed_ping) then [`flush`](Self::flush).
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.feed_ping(payload)?;
        self.flush().await
    }

    /// Write everything queued (messages, and pongs or close frames the
    /// connection owes) and flush the stream. Only writes: incoming data
    /// waits for the next [`recv`](Self::recv). Cancel safe.
    ///
    /// After an I/O error the connection is unusable: `recv` returns `None`.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.pump_transmit();
        if self.phase == Phase::Done {
            return if self.queued() == 0 { Ok(()) } else { Err(Error::Closed) };
        }
        match poll_fn(|cx| self.poll_write_pending(cx)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                debug!(parent: &self.span, error = %e, "write failed");
                self.phase = Phase::Done;
                Err(Error::Io(e))
            }
        }
    }

    /// Start the closing handshake with `code` and `reason` (at most 123
    /// bytes) and write the close frame. Keep calling [`recv`](Self::recv)
    /// until it returns `None`: messages the peer sent before its close
    /// frame still arrive, and the connection ends when the peer answers or
    /// [`close_timeout`](roomwire_core::Config::close_timeout) passes.
    ///
    /// Fails with [`Error::Closed`] if the closing handshake has already
    /// started (by either side), and with [`Error::Send`] for a code that
    /// may not be sent (1005, 1006, 1015, reserved ranges) or a long reason.
    ///
    /// ```no_run
    /// # async fn f(mut ws: roomwire_tokio::WebSocket<tokio::net::TcpStream>) -> Result<(), roomwire_tokio::Error> {
    /// use roomwire_tokio::roomwire_core::CloseCode;
    /// ws.close(CloseCode::Normal, "bye").await?;
    /// while let Some(_) = ws.recv().await {}
    /// # Ok(()) }
    /// ```
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let now = self.now();
        self.conn.close(now, code, reason)?;
        debug!(parent: &self.span, code = u16::from(code), reason, "closing");
        self.flush().await
    }

    /// The next whole message, `None` once the connection has ended
    /// normally, or the reason it ended abnormally (reported once, then
    /// `None`). See the [type docs](Self) for the details. Cancel safe.
    ///
    /// Messages are reassembled up to
    /// [`max_message_size`](roomwire_core::Config::max_message_size); the
    /// core fails larger ones with close code 1009.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`recv`](Self::recv) into `message`, reusing its buffer: a loop that
    /// receives into the same `Message` allocates nothing once the buffer
    /// has grown to its messages' size (`recv` allocates one per message).
    /// `Some(Ok(()))`: `message` is the next whole message (text or binary
    /// as that message is, whatever it was before). Ended, or failed: as
    /// `recv`, and `message` is left as it was; cancelled before it
    /// completes, too (it is changed only once a whole message is there).
    /// Cancel safe as `recv` is. The buffer keeps the size of the largest
    /// message it held (up to
    /// [`max_message_size`](roomwire_core::Config::max_message_size)):
    /// replace the message to give it back.
    ///
    /// ```no_run
    /// # async fn f(mut ws: roomwire_tokio::WebSocket<tokio::net::TcpStream>) -> Result<(), roomwire_tokio::Error> {
    /// use roomwire_tokio::Message;
    /// // An echo that allocates nothing per message.
    /// let mut message = Message::Binary(Vec::new());
    /// while let Some(received) = ws.recv_into(&mut message).await {
    ///     received?;
    ///     ws.send(&message).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn recv_into(&mut self, message: &mut Message) -> Option<Result<(), Error>> {
        poll_fn(|cx| {
            self.poll_recv_with(cx, &mut |assembled| {
                let last = std::mem::replace(message, Message::Binary(Vec::new()));
                *message = owned_message(assembled, Some(last));
            })
        })
        .await
    }

    /// [`recv`](Self::recv) as a poll: for a caller that waits on the
    /// connection inside a future of its own, with no `recv` future to keep
    /// (the room server's connection loop waits on it and its outbox so,
    /// which keeps every idle connection's task small). Every call picks up
    /// where the last one left off; the waker of the latest call is woken.
    /// Once the connection has ended it returns `Ready(None)` on every call
    /// (after the abnormal end's error, once), as `recv` does.
    ///
    /// ```no_run
    /// # async fn f(ws: &mut roomwire_tokio::WebSocket<tokio::net::TcpStream>, other: &tokio::sync::Notify) {
    /// use std::future::poll_fn;
    /// use std::task::Poll;
    /// enum Woken<T> { Socket(T), Other }
    /// let notified = other.notified();
    /// tokio::pin!(notified);
    /// // The connection's next step (a message, its end), or `other`'s notice.
    /// match poll_fn(|cx| match ws.poll_recv(cx) {
    ///     Poll::Ready(received) => Poll::Ready(Woken::Socket(received)),
    ///     Poll::Pending => notified.as_mut().poll(cx).map(|()| Woken::Other),
    /// })
    /// .await
    /// {
    ///     Woken::Socket(Some(Ok(message))) => { /* a message */ }
    ///     Woken::Socket(Some(Err(error))) => { /* ended abnormally */ }
    ///     Woken::Socket(None) => { /* ended */ }
    ///     Woken::Other => { /* notified first */ }
    /// }
    /// # }
    /// ```
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        self.poll_recv_with(cx, &mut |assembled| owned_message(assembled, None))
    }

    /// [`poll_recv`](Self::poll_recv), a whole message handed to `make`.
    fn poll_recv_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        make: &mut impl FnMut(Assembled<'_>) -> T,
    ) -> Poll<Option<Result<T, Error>>> {
        loop {
            match self.phase {
                Phase::Done => return Poll::Ready(self.pending.take().map(|error| Err(*error))),
                Phase::Finishing { deadline, awaiting_eof } => {
                    ready!(self.poll_finish_step(cx, deadline, awaiting_eof));
                    continue;
                }
                Phase::ShuttingDown { deadline } => {
                    ready!(self.poll_shutdown_until(cx, deadline));
                    continue;
                }
                Phase::Running => {}
            }
            let message = self.process_input(make);
            // Over the queue's bound, no pong is queued (the core keeps the
            // one owed) and nothing more is read: a peer that does not read
            // is held back by TCP, not buffered for. Once closing, what the
            // core owes (the close frame) goes out whatever the queue holds.
            let queued = self.queued();
            let over = queued > 0 && queued >= self.max_outbound;
            if !over || self.state() != State::Open {
                self.pump_transmit();
            }
            if let Some(message) = message {
                return Poll::Ready(Some(Ok(message)));
            }
            if self.state() == State::Closed {
                let deadline = TokioInstant::now() + close_timeout(self.conn.config());
                trace!(parent: &self.span, "closed; finishing");
                self.phase = Phase::Finishing { deadline, awaiting_eof: false };
                continue;
            }
            let deadline = match (self.core_deadline(), self.wake_at) {
                (Some(core), Some(wake)) => Some(core.min(wake)),
                (core, wake) => core.or(wake),
            };
            // While the application is busy with a message, a close from the
            // peer waits unread, so that the answer goes out before the
            // closing handshake (RFC 6455 §5.5.1 lets the echo wait).
            let close_waits = self.hold_close && self.close_is_next();
            let read = !over && !close_waits;
            match ready!(self.poll_drive(cx, read, deadline)) {
                Ok(Io::Read(0)) => {
                    debug!(parent: &self.span, "peer closed the stream without a close handshake");
                    self.fail(Error::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(Io::Read(_) | Io::Written) => {}
                Ok(Io::Timer) => {
                    // The wake asked for has come (the core's deadline may
                    // have too: it is handled in any case).
                    if self.wake_at.is_some_and(|at| at <= TokioInstant::now()) {
                        self.wake_at = None;
                        if self.conn.poll_timeout().is_none() {
                            // No deadline of the core's (keepalive off):
                            // the timer was only for this wake.
                            self.sleep = None;
                        }
                    }
                    match self.handle_timeout() {
                        Some(Timeout::Close) => debug!(parent: &self.span, "close timeout"),
                        Some(timeout) => {
                            debug!(parent: &self.span, ?timeout, "timeout");
                            self.pending.get_or_insert_with(|| Box::new(Error::Timeout(timeout)));
                        }
                        None => {}
                    }
                }
                Err(e) => {
                    debug!(parent: &self.span, error = %e, "I/O error");
                    self.fail(Error::Io(e));
                }
            }
        }
    }

    /// The stream ended or failed while the core was running.
    fn fail(&mut self, error: Error) {
        if self.peer_close.is_none() {
            self.pending.get_or_insert_with(|| Box::new(error));
        }
        self.phase = Phase::Done;
    }

    /// A flush is due even with nothing queued (the stream holds bytes of
    /// its own to write).
    pub(crate) fn want_flush(&mut self) {
        self.need_flush = true;
    }

    /// Whether a flush is due (see [`want_flush`](Self::want_flush)).
    pub(crate) fn wants_flush(&self) -> bool {
        self.need_flush
    }

    /// Whether frames encoded for many ([`feed_encoded_frame`](Self::feed_encoded_frame))
    /// may be written to its stream by others while it waits: open and
    /// running, nothing queued or unflushed, no message of its own begun
    /// (the server sends whole messages only), and no compression context
    /// of its own that such a frame would bypass.
    pub(crate) fn takes_direct_frames(&self) -> bool {
        matches!(self.phase, Phase::Running)
            && self.role() == Role::Server
            && self.queued() == 0
            && !self.need_flush
            && self.conn.can_send()
            && self.conn.deflate().is_none_or(|agreed| agreed.takes_shared_frames())
    }

    /// Whether the next buffered byte starts a close frame: the decoder is
    /// between frames, and the low nibble of a frame's first byte is its
    /// opcode.
    fn close_is_next(&self) -> bool {
        !self.conn.is_mid_frame() && self.rbuf.get(self.rstart).is_some_and(|b| b & 0x0f == 0x8)
    }

    /// While `hold` (the application is busy with a message, such as a
    /// server's handler), [`recv`](Self::recv) leaves a close from the peer
    /// unread: pings are still answered and deadlines kept.
    pub(crate) fn hold_close(&mut self, hold: bool) {
        self.hold_close = hold;
    }

    /// Feed buffered input to the core until a whole message is ready or the
    /// input is used up; a whole message is handed to `make`.
    fn process_input<T>(&mut self, make: &mut impl FnMut(Assembled<'_>) -> T) -> Option<T> {
        while self.rstart < self.rend {
            if self.hold_close && self.close_is_next() {
                break;
            }
            let now = self.now();
            let input = &mut self.rbuf[self.rstart..self.rend];
            let read = match self.conn.deflate() {
                Some(_) => {
                    let codec = self.codec.get_or_insert_with(|| Box::new(Codec::new()));
                    self.reader.read_inflating(&mut self.conn, now, input, codec.inflater())
                }
                None => self.reader.read(&mut self.conn, now, input),
            };
            let consumed = read.consumed;
            let mut message = None;
            let mut ping = false;
            match read.incoming {
                None => {
                    self.rstart += consumed;
                    if consumed == 0 {
                        break;
                    }
                    continue;
                }
                Some(Incoming::Message(assembled)) => message = Some(make(assembled)),
                Some(Incoming::Event(Event::Ping(_))) => ping = true,
                Some(Incoming::Event(Event::Close { code, reason })) => {
                    let span = &self.span; // not `self`, which the macro's closure would take whole
                    debug!(parent: span, code = code.map(u16::from), reason, "peer closed");
                    self.peer_close = Some(Box::new(CloseFrame { code, reason: reason.to_owned() }));
                }
                Some(Incoming::Event(Event::ProtocolError(error))) => {
                    let span = &self.span;
                    debug!(parent: span, %error, "protocol error");
                    self.pending.get_or_insert_with(|| Box::new(Error::Protocol(error)));
                }
                Some(_) => {}
            }
            self.rstart += consumed;
            if ping && self.queued() < self.max_outbound {
                // The core keeps only the latest pong owed (RFC 6455 §5.5.3
                // allows that); taking each one out as its ping arrives
                // answers every ping while the queue has room, and lets the
                // core coalesce them when a peer pings faster than it reads.
                self.pump_transmit();
            }
            if message.is_some() {
                // Copied out: a reassembly buffer grown for a large
                // fragmented message shrinks back now, not with the next
                // fragmented one.
                self.reader.reset();
                return message;
            }
        }
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        None
    }

    /// One step of the end of the connection: write what is queued, let a
    /// client wait for the server to close TCP, then shut down.
    fn poll_finish_step(&mut self, cx: &mut Context<'_>, deadline: TokioInstant, awaiting_eof: bool) -> Poll<()> {
        let client = self.role() == Role::Client;
        if !awaiting_eof && self.queued() == 0 && !self.need_flush {
            self.phase = if client {
                // RFC 6455 §7.1.1: the server closes the TCP connection first.
                Phase::Finishing { deadline, awaiting_eof: true }
            } else {
                Phase::ShuttingDown { deadline }
            };
            return Poll::Ready(());
        }
        match ready!(self.poll_drive(cx, true, Some(deadline))) {
            Ok(Io::Read(0)) | Ok(Io::Timer) | Err(_) => self.phase = Phase::ShuttingDown { deadline },
            Ok(Io::Read(_)) => {
                // Nothing after the close frame is processed (§5.5.1).
                self.rstart = 0;
                self.rend = 0;
            }
            Ok(Io::Written) => {}
        }
        Poll::Ready(())
    }

    /// Shut the stream down, giving up at `deadline`; then done.
    fn poll_shutdown_until(&mut self, cx: &mut Context<'_>, deadline: TokioInstant) -> Poll<()> {
        if Pin::new(&mut self.stream).poll_shutdown(cx).is_ready() {
            trace!(parent: &self.span, "stream shut down");
        } else if self.poll_sleep(cx, deadline) {
            trace!(parent: &self.span, "stream shutdown abandoned at the close timeout");
        } else {
            return Poll::Pending;
        }
        self.phase = Phase::Done;
        Poll::Ready(())
    }

    /// Whether `deadline` has passed, on the connection's one timer (armed
    /// for it, and `cx` woken then, if not).
    fn poll_sleep(&mut self, cx: &mut Context<'_>, deadline: TokioInstant) -> bool {
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx).is_ready()
    }

    /// Write queued output, and read (if `read`) or wait for `deadline`,
    /// whichever happens first.
    pub(crate) async fn drive(&mut self, read: bool, deadline: Option<TokioInstant>) -> io::Result<Io> {
        poll_fn(|cx| self.poll_drive(cx, read, deadline)).await
    }

    fn poll_drive(&mut self, cx: &mut Context<'_>, read: bool, deadline: Option<TokioInstant>) -> Poll<io::Result<Io>> {
        let mut written = false;
        if self.queued() > 0 || self.need_flush {
            match self.poll_write_pending(cx) {
                Poll::Ready(Ok(())) => written = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if read {
            self.prepare_read();
            let mut buf = ReadBuf::new(&mut self.rbuf[self.rend..]);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    self.rend += n;
                    if self.rend == self.rbuf.len() && self.rbuf.len() < self.max_read_chunk() {
                        // Reads fill the buffer: let the next ones be bigger.
                        let len = (self.rbuf.len() * 2).min(self.max_read_chunk());
                        self.rbuf.resize(len, 0);
                    }
                    return Poll::Ready(Ok(Io::Read(n)));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => self.release_idle_buffers(),
            }
        }
        if written {
            return Poll::Ready(Ok(Io::Written));
        }
        if let Some(deadline) = deadline
            && self.poll_sleep(cx, deadline)
        {
            return Poll::Ready(Ok(Io::Timer));
        }
        Poll::Pending
    }

    /// Nothing to read and nothing unprocessed or unwritten: give the read and
    /// write buffers back, so an idle connection holds no buffer (they are
    /// allocated again, at their initial size, when bytes arrive or a frame
    /// is queued).
    /// (They go to the thread's spares, for the next connection with work.)
    fn release_idle_buffers(&mut self) {
        if self.rstart == self.rend && self.queued() == 0 && !self.need_flush {
            self.rstart = 0;
            self.rend = 0;
            give_back(&SPARE_READ, std::mem::take(&mut self.rbuf));
            let mut wbuf = std::mem::take(&mut self.wbuf);
            wbuf.clear();
            give_back(&SPARE_WRITE, wbuf);
            self.wpos = 0;
        }
    }

    /// Make room after the unprocessed bytes for the next read.
    fn prepare_read(&mut self) {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        } else if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.rbuf.is_empty() {
            // Released while idle: take the thread's spare, if it suits.
            let spare = take_spare(&SPARE_READ);
            if !spare.is_empty() && spare.len() <= self.max_read_chunk().max(INITIAL_READ_BUFFER) {
                self.rbuf = spare;
            } else {
                give_back(&SPARE_READ, spare);
            }
        }
        if self.rend == self.rbuf.len() {
            // The buffer was released while idle, or unprocessed bytes fill
            // it: only an incomplete handshake does that, bounded by
            // `max_handshake_size`.
            let initial = INITIAL_READ_BUFFER.min(self.max_read_chunk().max(1));
            let len = if self.rbuf.is_empty() { initial } else { (self.rbuf.len() * 2).max(INITIAL_READ_BUFFER) };
            self.rbuf.resize(len, 0);
        }
    }

    /// Write the whole outbound queue, then flush the stream.
    fn poll_write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.wbuf[self.wpos..]) {
                Poll::Pending => {
                    self.drop_written();
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.wpos += n;
                    self.need_flush = true;
                    self.outbound.shrink_to(self.wbuf.len() - self.wpos);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        self.outbound.shrink_to(0);
        if self.wbuf.capacity() > WRITE_BUFFER_KEEP {
            self.wbuf.shrink_to(WRITE_BUFFER_KEEP);
        }
        if self.need_flush {
            ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
            self.need_flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// A peer reading slightly behind never lets the queue empty, so the
    /// buffer would keep every byte ever sent to it: once the written
    /// prefix is as long as what is left, drop it. Each byte is moved at
    /// most once per byte written before it, and the buffer stays under
    /// twice the queue's bound ([`Config::max_outbound`] plus one frame).
    fn drop_written(&mut self) {
        if self.wpos > 0 && self.wpos >= self.wbuf.len() - self.wpos {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
    }

    /// Write everything queued, giving up at `deadline` (used for handshake
    /// answers, which are small).
    pub(crate) async fn flush_until(&mut self, deadline: TokioInstant) -> Result<(), Error> {
        match tokio::time::timeout_at(deadline, poll_fn(|cx| self.poll_write_pending(cx))).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Error::Io(io::ErrorKind::TimedOut.into())),
        }
    }

    /// Shut the stream down after a failed handshake, bounded by the close
    /// timeout.
    pub(crate) async fn abandon(&mut self) {
        let deadline = TokioInstant::now() + close_timeout(self.conn.config());
        let _ = self.flush_until(deadline).await;
        poll_fn(|cx| self.poll_shutdown_until(cx, deadline)).await;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Have the task that receives from it woken `after` from now, even if
    /// nothing else happens by then (on the connection's one timer, beside
    /// the core's deadlines), unless such a wake is already due; a wake
    /// that has come is cleared. The room server's cue to look again
    /// whether a connection that had traffic has gone quiet and may rest.
    pub(crate) fn wake_after(&mut self, after: std::time::Duration) {
        if self.wake_at.is_none() {
            self.wake_at = Some(TokioInstant::now() + after);
        }
    }

    /// Whether a wake asked for by [`wake_after`](Self::wake_after) is
    /// still to come.
    pub(crate) fn wake_pending(&self) -> bool {
        self.wake_at.is_some()
    }

    /// Whether [`rest`](Self::rest) would take it.
    pub(crate) fn can_rest(&self) -> bool {
        matches!(self.phase, Phase::Running)
            && self.rstart == self.rend
            && self.queued() == 0
            && !self.need_flush
            && !self.hold_close
            && self.pending.is_none()
            && self.peer_close.is_none()
            && self.conn.is_at_rest()
    }

    /// The connection at rest, if it is idle: running, nothing unread,
    /// queued or unflushed, no message half read, no close or error
    /// pending, and its core [at rest](roomwire_core::Connection::is_at_rest).
    /// Otherwise itself, unchanged. What it was waiting for (its stream's
    /// readiness, its timer) stays registered: the task is woken as it
    /// would have been.
    #[allow(clippy::result_large_err)] // given back whole, not an error to propagate
    pub(crate) fn rest(mut self) -> Result<Resting<S>, Self> {
        if !self.can_rest() {
            return Err(self);
        }
        self.release_idle_buffers();
        // The core's part first: if it were refused (not reached: checked
        // above), it goes back in place and the socket is given back whole.
        let rest = match self.conn.rest() {
            Ok(rest) => rest,
            Err(conn) => {
                self.conn = conn;
                return Err(self);
            }
        };
        // The span is the task's: the one current when it wakes.
        Ok(Resting { stream: self.stream, rest, codec: self.codec, sleep: self.sleep })
    }
}

/// An idle [`WebSocket`] in its resting form: the stream, the core's
/// [`Rest`](roomwire_core::Rest), the compression context and the timer,
/// about a tenth of the whole. Woken by [`Resting::wake`] with the
/// configuration and the clock's origin it had (not kept: the room server's
/// connections share both), in the task (and tracing span) that runs it.
pub(crate) struct Resting<S> {
    stream: S,
    rest: roomwire_core::Rest<RandomKeys>,
    codec: Option<Box<Codec>>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> Resting<S> {
    /// Whether it keeps a timer (it has a deadline, or had one).
    #[cfg(test)]
    pub(crate) fn holds_timer(&self) -> bool {
        self.sleep.is_some()
    }

    /// Its next deadline, its timer dropped: for a connection that waits
    /// where something else keeps time for it (the room server's parked
    /// connections). Woken, it arms a timer again. `origin`: its clock's.
    pub(crate) fn take_deadline(&mut self, origin: TokioInstant) -> Option<TokioInstant> {
        self.sleep = None;
        self.rest.poll_timeout().map(|at| on_tokio_clock(origin, at))
    }

    /// The connection again, as it went to rest. `config` and `origin`
    /// must be those it was made with; its span is the current one (the
    /// task's, which was its span when it went to rest).
    pub(crate) fn wake(self, config: Config, origin: TokioInstant) -> WebSocket<S> {
        let Self { stream, rest, codec, sleep } = self;
        let mut ws = WebSocket::new(stream, rest.wake(config.core), config, origin, Span::current());
        ws.codec = codec;
        ws.sleep = sleep;
        ws
    }
}

/// `at`, an instant of a core clock started at `origin`, on tokio's clock.
pub(crate) fn on_tokio_clock(origin: TokioInstant, at: roomwire_core::Instant) -> TokioInstant {
    origin + std::time::Duration::from_micros(at.as_micros())
}

/// The close timeout on tokio's clock.
pub(crate) fn close_timeout(config: &roomwire_core::Config) -> std::time::Duration {
    std::time::Duration::from_micros(config.close_timeout.as_micros())
}

/// Let `write` encode into the end of `wbuf`, starting with `room` bytes of
/// space and growing to what the core says it needs.
pub(crate) fn encode_into(
    wbuf: &mut Vec<u8>,
    room: usize,
    write: impl FnMut(&mut [u8]) -> Result<usize, SendError>,
) -> Result<usize, SendError> {
    reuse_write_buffer(wbuf);
    let needs = |e: &SendError| match e {
        SendError::Buffer(InsufficientSize { required }) => Some(*required),
        _ => None,
    };
    append_with(wbuf, room, needs, write)
}

/// Append to `out` what `write` puts into spare room: `room` bytes at
/// first, then as many as an error says are needed (`needs`), until it
/// fits. On another error nothing is appended.
pub(crate) fn append_with<E>(
    out: &mut Vec<u8>,
    room: usize,
    needs: impl Fn(&E) -> Option<usize>,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<usize, E> {
    let start = out.len();
    let mut room = room;
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(n);
            }
            Err(e) => match needs(&e) {
                Some(required) if required > room => room = required,
                _ => {
                    out.truncate(start);
                    return Err(e);
                }
            },
        }
    }
}

/// `assembled` as a `Message`, in `spare`'s buffer if there is one (a text
/// buffer becomes binary and back without a copy or a second check: the
/// core checked the text, and an emptied buffer is valid UTF-8).
fn owned_message(assembled: Assembled<'_>, spare: Option<Message>) -> Message {
    let Some(spare) = spare else {
        return match assembled {
            Assembled::Text(text) => Message::Text(text.to_owned()),
            Assembled::Binary(bytes) => Message::Binary(bytes.to_vec()),
        };
    };
    let mut buffer = spare.into_bytes();
    buffer.clear();
    match assembled {
        Assembled::Text(text) => {
            let mut string = String::from_utf8(buffer).unwrap_or_default();
            string.push_str(text);
            Message::Text(string)
        }
        Assembled::Binary(bytes) => {
            buffer.extend_from_slice(bytes);
            Message::Binary(buffer)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_server_connection_draws_no_randomness_and_a_client_fresh_keys() {
        let mut server = server_conn(roomwire_core::Config::default(), roomwire_core::Instant::ZERO);
        assert_eq!(server.role(), Role::Server);
        assert!(server.keys_mut().0.is_none(), "a server's key source holds nothing");

        let mut keys = RandomKeys::unused();
        let drawn: Vec<[u8; 4]> = (0..130).map(|_| keys.next_key()).collect();
        assert!(keys.0.is_some(), "first use fills the source");
        // 130 keys span two refills of 64; the OS generator does not repeat
        // 520 bytes.
        assert!(drawn.windows(2).any(|w| w[0] != w[1]));
        assert_ne!(drawn[..64], drawn[64..128]);
    }

    /// A peer reading slightly behind, never letting the queue empty: the
    /// write buffer holds what is unwritten (under twice the queue's
    /// bound), not every byte ever sent.
    #[tokio::test]
    async fn a_reader_that_stays_behind_cannot_grow_the_write_buffer() {
        use tokio::io::AsyncReadExt;
        let config = Config { max_outbound: 32 * 1024, ..Config::default() };
        let (mut ws, mut peer) = accepted(config).await;
        let payload = [7u8; 1000];
        let mut sent = 0usize;
        let mut most = 0usize;
        let mut chunk = [0u8; 1004];
        // Eight frames of backlog (the pipe holds one), then one frame out
        // for one frame in: the queue never empties.
        for _ in 0..8 {
            ws.feed(MessageRef::Binary(&payload)).unwrap();
        }
        for round in 0..1500 {
            ws.feed(MessageRef::Binary(&payload)).unwrap();
            sent += 1004;
            let _ = tokio::time::timeout(std::time::Duration::from_millis(1), ws.flush()).await;
            peer.read_exact(&mut chunk).await.unwrap();
            assert!(ws.queued() > 0, "the queue emptied (round {round})");
            most = most.max(ws.wbuf.len());
        }
        assert!(sent > 1_500_000);
        assert!(most < 2 * (32 * 1024 + 1004), "write buffer grew to {most} B");
    }

    /// A server socket after the upgrade on a small pipe, and the peer.
    async fn accepted(config: Config) -> (WebSocket<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        accepted_as(config, |stream| stream).await
    }

    /// [`accepted`], its stream made into `S` by `wrap` first.
    pub(crate) async fn accepted_as<S, W>(config: Config, wrap: W) -> (WebSocket<S>, tokio::io::DuplexStream)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        W: FnOnce(tokio::io::DuplexStream) -> S,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut peer, stream) = tokio::io::duplex(1024);
        let server = tokio::spawn(WebSocket::accept(wrap(stream), config));
        peer.write_all(
            b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let (ws, _) = server.await.unwrap().unwrap();
        let mut response = Vec::new();
        while !response.ends_with(b"\r\n\r\n") {
            response.push(peer.read_u8().await.unwrap());
        }
        (ws, peer)
    }

    /// A masked client frame (zero key: the payload as is).
    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![b0];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(payload);
        frame
    }

    /// A peer that never reads its input and never answers our close, but
    /// keeps sending: the connection still ends at its deadlines (the
    /// core's close timeout, then the adapter's own), not whenever the
    /// peer stops: input that keeps coming does not keep the deadline from
    /// being looked at.
    #[tokio::test]
    async fn a_peer_that_floods_after_our_close_cannot_keep_the_connection() {
        use tokio::io::AsyncWriteExt;
        let mut config = Config::default();
        config.core.close_timeout = roomwire_core::Duration::from_millis(200);
        let (mut ws, mut peer) = accepted(config).await;
        // More than the pipe holds: the close frame waits behind it.
        ws.feed(MessageRef::Binary(&[1; 8 * 1024])).unwrap();
        ws.start_close(CloseCode::Normal, "bye").unwrap();
        let frame = client_frame(0x82, &[2; 512]);
        let flood = tokio::spawn(async move { while peer.write_all(&frame).await.is_ok() {} });
        let started = std::time::Instant::now();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while let Some(received) = ws.recv().await {
                if received.is_err() {
                    break;
                }
            }
        })
        .await;
        flood.abort();
        assert!(ended.is_ok(), "still open after 5 s of flooding");
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }

    /// A peer that never reads and keeps sending pings between messages:
    /// each message handed out used to queue the pong owed, past the
    /// queue's bound, so the write buffer grew with every pair. Over the
    /// bound the socket stops reading and sending pongs; TCP holds the
    /// peer back.
    #[tokio::test]
    async fn pings_from_a_peer_that_never_reads_cannot_grow_the_write_buffer() {
        use tokio::io::AsyncWriteExt;
        let config = Config { max_outbound: 32 * 1024, ..Config::default() };
        let (mut ws, mut peer) = accepted(config).await;
        let mut pair = client_frame(0x81, b"");
        pair.extend(client_frame(0x89, &[5; 125]));
        let writer = tokio::spawn(async move {
            for _ in 0..20_000 {
                if peer.write_all(&pair).await.is_err() {
                    break;
                }
            }
            peer
        });
        let mut most = 0;
        for _ in 0..20_000 {
            match tokio::time::timeout(std::time::Duration::from_millis(20), ws.recv()).await {
                Ok(Some(Ok(_))) => most = most.max(ws.wbuf.len()),
                _ => break,
            }
        }
        assert!(most < 2 * (32 * 1024 + 1004), "write buffer grew to {most} B");
        writer.abort();
    }

    /// A socket put to rest between messages wakes as it was: it reads on,
    /// answers pings, keeps its keepalive; one with half a frame read, or a
    /// pong owed, does not rest.
    #[tokio::test(start_paused = true)]
    async fn a_resting_socket_wakes_as_it_was() {
        use std::future::poll_fn;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut config = Config::default();
        config.core.keepalive_interval = Some(roomwire_core::Duration::from_secs(30));
        let (mut ws, mut peer) = accepted(config).await;
        let origin = ws.origin();
        peer.write_all(&client_frame(0x81, b"one")).await.unwrap();
        assert!(matches!(ws.recv().await, Some(Ok(Message::Text(ref t))) if t == "one"));
        // Waiting for more: nothing read, the read registered.
        assert!(poll_fn(|cx| Poll::Ready(ws.poll_recv(cx).is_pending())).await);
        let resting = ws.rest().map_err(|_| "an idle socket did not rest").unwrap();
        assert!(std::mem::size_of_val(&resting) * 4 < std::mem::size_of::<WebSocket<tokio::io::DuplexStream>>());
        let mut ws = resting.wake(config, origin);

        // Half a ping: not at rest until it is whole and answered.
        let ping = client_frame(0x89, b"still?");
        peer.write_all(&ping[..4]).await.unwrap();
        tokio::task::yield_now().await;
        assert!(poll_fn(|cx| Poll::Ready(ws.poll_recv(cx).is_pending())).await);
        let mut ws = ws.rest().map(|_| ()).expect_err("rested with half a frame read");
        peer.write_all(&ping[4..]).await.unwrap();
        peer.write_all(&client_frame(0x82, b"two")).await.unwrap();
        assert!(matches!(ws.recv().await, Some(Ok(Message::Binary(ref b))) if b == b"two"));
        // The pong is queued; it goes out as the socket waits again.
        assert!(!ws.can_rest());
        assert!(poll_fn(|cx| Poll::Ready(ws.poll_recv(cx).is_pending())).await);
        let mut pong = [0u8; 8];
        peer.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, *b"\x8a\x06still?");

        // At rest across the keepalive: woken by its timer, it pings.
        let resting = ws.rest().map_err(|_| "an idle socket did not rest").unwrap();
        tokio::time::advance(std::time::Duration::from_secs(31)).await;
        let mut ws = resting.wake(config, origin);
        assert!(poll_fn(|cx| Poll::Ready(ws.poll_recv(cx).is_pending())).await);
        let mut ping = [0u8; 6];
        peer.read_exact(&mut ping).await.unwrap();
        assert_eq!(ping, [0x89, 4, 0, 0, 0, 1], "the first keepalive ping");
    }

    /// A bound of zero still reads (an empty queue is never over it).
    #[tokio::test]
    async fn a_zero_queue_bound_still_reads() {
        use tokio::io::AsyncWriteExt;
        let (mut ws, mut peer) = accepted(Config { max_outbound: 0, ..Config::default() }).await;
        peer.write_all(&client_frame(0x81, b"hi")).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), ws.recv()).await.expect("not read");
        assert!(matches!(got, Some(Ok(Message::Text(ref t))) if t == "hi"), "{got:?}");
    }

    /// After a large fragmented message the reassembly buffer shrinks back
    /// to what it keeps between messages, without waiting for the next
    /// fragmented one.
    #[tokio::test]
    async fn the_reassembly_buffer_shrinks_after_a_large_fragmented_message() {
        use tokio::io::AsyncWriteExt;
        let (mut ws, mut peer) = accepted(Config::default()).await;
        let half = vec![b'a'; 512 * 1024];
        let writer = tokio::spawn(async move {
            peer.write_all(&client_frame(0x01, &half)).await.unwrap();
            peer.write_all(&client_frame(0x80, &half)).await.unwrap();
            peer
        });
        match ws.recv().await {
            Some(Ok(Message::Text(text))) => assert_eq!(text.len(), 1024 * 1024),
            other => panic!("{other:?}"),
        }
        let _peer = writer.await.unwrap();
        let kept = ws.reader.storage_mut().capacity();
        assert!(kept <= REASSEMBLY_KEEP, "the reassembly buffer kept {kept} B");
    }
}
