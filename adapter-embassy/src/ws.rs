//! The raw WebSocket client: one connection at a time over an embassy-net
//! [`TcpSocket`], whole text and binary messages, no rooms.
//!
//! A [`WebSocket`] owns a TCP socket the firmware created (with its TCP
//! buffers) and three buffers the firmware lends it ([`Buffers`]). It opens
//! a connection ([`WebSocket::connect`]), hands out each whole message
//! ([`WebSocket::recv`], borrowed from the `message` buffer), sends
//! messages ([`WebSocket::send`]) and closes ([`WebSocket::close`]).
//! Meanwhile it answers every ping (one pong per ping, also in a burst),
//! sends keepalive pings, and enforces the handshake, close and keepalive
//! deadlines of the core's [`Connection`]. Nothing is allocated.
//!
//! When a connection ends (the closing handshake completed, or an error),
//! the socket is released: the same `WebSocket` can connect again. The
//! room client ([`Client`](crate::client::Client)) is this loop plus the
//! core's room logic and a reconnect with backoff.
//!
//! ```no_run
//! # async fn run(stack: embassy_net::Stack<'static>) -> Result<(), roomwire_embassy::ws::Error> {
//! use core::cell::RefCell;
//! use embassy_net::tcp::TcpSocket;
//! use roomwire_embassy::roomwire_core::Message;
//! use roomwire_embassy::ws::{Buffers, Event, Options, WebSocket};
//!
//! let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
//! let (mut read, mut write, mut message) = ([0u8; 512], [0u8; 512], [0u8; 512]);
//! let mut seed = 1u32; // the firmware's TRNG, really
//! let keys = RefCell::new(move || { seed = seed.wrapping_mul(747796405).wrapping_add(1); seed.to_le_bytes() });
//! let socket = TcpSocket::new(stack, &mut rx, &mut tx);
//! let buffers = Buffers { read: &mut read, write: &mut write, message: &mut message };
//! let mut ws = WebSocket::new(stack, socket, &keys, buffers, Options::default());
//! ws.connect("192.0.2.1", 8080, "/echo", &[], &[]).await?;
//! ws.send(Message::Text("hello")).await?;
//! loop {
//!     match ws.recv().await? {
//!         Event::Message(Message::Text(text)) => { let _ = text; }
//!         Event::Message(Message::Binary(bytes)) => { let _ = bytes; }
//!         Event::Closed(_code) => return Ok(()),
//!         _ => {}
//!     }
//! }
//! # }
//! ```

use core::fmt;

use embassy_net::Stack;
use embassy_net::tcp::{self, TcpSocket};
use roomwire_core::handshake::{ClientRequest, HandshakeError};
use roomwire_core::message::{Assembled, Incoming, MessageReader, Read};
use roomwire_core::{CloseCode, Config, Connection, Duration, Event as WsEvent, Message, State, Timeout};

use crate::keys::{KeyRef, KeySource};
use crate::time::{duration, now, to_embassy};
use crate::transport::{Transport, Woke};

/// The buffers a [`WebSocket`] works in, lent by the firmware for its
/// life. Sizes are the firmware's choice:
///
/// * `read`: bytes read from the socket. Must hold the server's whole
///   handshake response (a few hundred bytes); messages stream through it.
/// * `write`: frames waiting for the socket. Must hold the largest frame
///   sent (message plus 14 bytes) and the handshake request.
/// * `message`: one whole received message (reassembly); larger messages
///   are refused with close code 1009. Also holds the `Host` header while
///   the request is written, and the subprotocol the server selected when
///   the handshake ends: it must hold the longest subprotocol offered.
#[derive(Debug)]
pub struct Buffers<'b> {
    /// Socket input.
    pub read: &'b mut [u8],
    /// Socket output.
    pub write: &'b mut [u8],
    /// Whole-message reassembly.
    pub message: &'b mut [u8],
}

/// A connection's limits and deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The core connection's limits and deadlines. `max_message_size` is
    /// capped at the `message` buffer's length (a larger message is refused
    /// with 1009); `keepalive_interval` pings the server that often and
    /// drops it when a ping goes unanswered until the next one.
    pub websocket: Config,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// How long the server may leave written data unacknowledged before
    /// the connection is dropped.
    pub write_timeout: Duration,
}

impl Default for Options {
    /// The core's defaults (no keepalive), 10 s connect and write timeouts.
    fn default() -> Self {
        Self {
            websocket: Config::default(),
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// What [`WebSocket::recv`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'m> {
    /// The server accepted the upgrade, selecting this subprotocol. Only
    /// after [`WebSocket::start`] (or a [`WebSocket::connect`] cancelled
    /// after its request went out): `connect` returns it itself.
    Open {
        /// The subprotocol the server selected (one of those offered).
        protocol: Option<&'m str>,
    },
    /// A whole text or binary message, borrowed from the `message` buffer
    /// until the next call.
    Message(Message<'m>),
    /// The closing handshake completed (started by either side); the
    /// server's close code, if it sent one. The connection is over.
    Closed(Option<CloseCode>),
}

/// Why a connection ended or a call failed. Every error but
/// [`Error::BufferTooSmall`] from [`WebSocket::send`] or
/// [`WebSocket::feed`], [`Error::NotOpen`] and [`Error::Invalid`] ends the
/// connection: the socket is released and [`WebSocket::connect`] may be
/// called again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The host is not an IPv4 literal (without feature `dns`), or its
    /// name did not resolve.
    Resolve,
    /// The TCP connection could not be made.
    Connect(tcp::ConnectError),
    /// The TCP connection was not made within [`Options::connect_timeout`].
    ConnectTimeout,
    /// The server refused the upgrade, or answered with an invalid one.
    Handshake(HandshakeError),
    /// The TCP connection was reset or closed without a close frame.
    Reset,
    /// Written data stayed unacknowledged for [`Options::write_timeout`].
    WriteTimeout,
    /// The server broke RFC 6455 or a limit (a message larger than the
    /// `message` buffer: 1009): the connection closed with this code.
    Protocol(CloseCode),
    /// A deadline passed: the handshake, the closing handshake, or a
    /// keepalive ping went unanswered (a server that stopped answering).
    Timeout(Timeout),
    /// A buffer is too small for what had to go through it: this many
    /// bytes are needed.
    BufferTooSmall(usize),
    /// No open connection: not connected, still connecting, or closing.
    NotOpen,
    /// The core refused the call (a close code that may not be sent, a
    /// close reason over 123 bytes).
    Invalid(roomwire_core::SendError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve => f.write_str("host did not resolve"),
            Self::Connect(e) => write!(f, "TCP connect failed: {e:?}"),
            Self::ConnectTimeout => f.write_str("TCP connect timed out"),
            Self::Handshake(e) => fmt::Display::fmt(e, f),
            Self::Reset => f.write_str("connection reset"),
            Self::WriteTimeout => f.write_str("write timed out"),
            Self::Protocol(code) => write!(f, "closed for a protocol error ({})", u16::from(*code)),
            Self::Timeout(t) => write!(f, "timed out: {t:?}"),
            Self::BufferTooSmall(n) => write!(f, "buffer too small: {n} bytes required"),
            Self::NotOpen => f.write_str("connection not open"),
            Self::Invalid(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl core::error::Error for Error {}

/// What one turn of the loop produced (borrowing nothing, so that callers
/// can go on using the socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The handshake completed; [`WebSocket::protocol`] holds the
    /// subprotocol, to be read before anything else is (a message takes
    /// its place in the message buffer).
    Open,
    /// A whole message is in the `message` buffer
    /// ([`MessageReader::last_message`]).
    Message,
    /// The closing handshake completed; the connection is over.
    Closed(Option<CloseCode>),
}

/// A WebSocket client connection over an embassy-net [`TcpSocket`]: see
/// the [module docs](self).
///
/// Its own state is the core's [`Connection`] (about 620 bytes on a 32-bit
/// target) and a few words; the buffers are the firmware's.
pub struct WebSocket<'a, K: KeySource + ?Sized> {
    link: Transport<'a>,
    keys: &'a K,
    options: Options,
    conn: Option<Connection<KeyRef<'a, K>>>,
    /// Whole messages, reassembled (and 1009 decided) by the core.
    reader: MessageReader<&'a mut [u8]>,
    /// An event produced but not yet returned (a call was cancelled while
    /// writing what the connection owed).
    pending: Option<Next>,
    /// The server's close code, once its close frame arrived.
    peer_close: Option<Option<CloseCode>>,
    /// Why the connection is failing (the first cause wins).
    failure: Option<Error>,
    /// The connection is over: release the socket and report.
    ended: bool,
    /// The subprotocol the server selected, held at the start of the
    /// message buffer (idle then) from the handshake's end until the first
    /// message: its length.
    protocol_len: Option<u8>,
}

impl<K: KeySource + ?Sized> fmt::Debug for WebSocket<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("state", &self.state())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<'a, K: KeySource + ?Sized> WebSocket<'a, K> {
    /// A WebSocket that will connect on `socket` (a new, unconnected socket
    /// of `stack`), masking with keys from `keys`. Nothing happens until
    /// [`WebSocket::connect`] (or [`WebSocket::start`]) is called.
    pub fn new(stack: Stack<'a>, socket: TcpSocket<'a>, keys: &'a K, buffers: Buffers<'a>, options: Options) -> Self {
        let Buffers { read, write, message } = buffers;
        Self {
            link: Transport::new(stack, socket, read, write, duration(options.write_timeout)),
            keys,
            options,
            conn: None,
            reader: MessageReader::copying(message),
            pending: None,
            peer_close: None,
            failure: None,
            ended: false,
            protocol_len: None,
        }
    }

    /// The limits and deadlines of the next connection.
    pub fn options_mut(&mut self) -> &mut Options {
        &mut self.options
    }

    /// The TCP socket (endpoints, state).
    pub fn socket(&self) -> &TcpSocket<'a> {
        self.link.socket()
    }

    /// The connection's state; `None` without a connection (never
    /// connected, or it ended).
    pub fn state(&self) -> Option<State> {
        self.conn.as_ref().map(Connection::state)
    }

    /// Whether messages can be sent now: open, and not closing.
    pub fn can_send(&self) -> bool {
        !self.ended && self.conn.as_ref().is_some_and(Connection::can_send)
    }

    /// Connects to `host:port` and opens a WebSocket on `target` (path and
    /// query), offering `protocols` (most preferred first) and adding
    /// `headers` (`Authorization`, `Cookie`, `Origin` …) to the request.
    /// Returns the subprotocol the server selected. Fails with
    /// [`Error::BufferTooSmall`] when the `message` buffer cannot hold the
    /// longest subprotocol offered (it holds the one selected).
    ///
    /// `host` is an IPv4 literal or (feature `dns`) a name; the `Host`
    /// header is `host:port` (`host` alone for port 80). A connection
    /// already open is dropped first.
    ///
    /// Cancel safety: [`WebSocket::start`], then waits for
    /// [`Event::Open`]. Cancelled before the request went out, the attempt
    /// is abandoned (the next `connect` starts over); after that,
    /// [`WebSocket::recv`] finishes the handshake and returns
    /// [`Event::Open`].
    pub async fn connect(
        &mut self,
        host: &str,
        port: u16,
        target: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
    ) -> Result<Option<&str>, Error> {
        self.start(host, port, target, protocols, headers).await?;
        loop {
            if self.advance().await? == Next::Open {
                return Ok(self.protocol());
            }
        }
    }

    /// Connects as [`WebSocket::connect`] does, but returns once the
    /// upgrade request is written: [`WebSocket::recv`] then returns
    /// [`Event::Open`] when the server answers. For callers that race the
    /// handshake against other work.
    ///
    /// Cancel safety: cancelled before the TCP connection is made, the
    /// attempt is abandoned (the next `start` starts over); once the
    /// request is being written, `recv` writes the rest.
    pub async fn start(
        &mut self,
        host: &str,
        port: u16,
        target: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
    ) -> Result<(), Error> {
        self.abort().await;
        let result = self.open(host, port, target, protocols, headers).await;
        if result.is_err() {
            self.link.release(false).await;
            self.reset();
        }
        result
    }

    async fn open(
        &mut self,
        host: &str,
        port: u16,
        target: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
    ) -> Result<(), Error> {
        self.link.set_write_timeout(duration(self.options.write_timeout));
        let deadline = embassy_time::Instant::now() + duration(self.options.connect_timeout);
        self.link.open(host, port, deadline).await?;

        let mut websocket = self.options.websocket;
        let message = self.reader.storage_mut();
        // The selected subprotocol is kept there once the handshake ends.
        if let Some(longest) = protocols.iter().map(|p| p.len()).max().filter(|&n| n > message.len()) {
            return Err(Error::BufferTooSmall(longest));
        }
        websocket.max_message_size = websocket.max_message_size.min(message.len() as u64);
        let mut conn = Connection::client(websocket, now(), KeyRef(self.keys));
        // `Host` (host, or host:port) in the message buffer, idle until open.
        let host_len = write_host(host, port, message)?;
        let host = core::str::from_utf8(message.get(..host_len).unwrap_or(&[])).map_err(|_| Error::Resolve)?;
        let request = ClientRequest { host, target, protocols, headers };
        let n = match conn.write_request(&request, self.link.spare()) {
            Ok(n) => n,
            Err(roomwire_core::SendError::Buffer(e)) => return Err(Error::BufferTooSmall(e.required)),
            Err(e) => return Err(Error::Invalid(e)),
        };
        debug!("roomwire: connecting");
        self.link.wrote(n);
        self.conn = Some(conn);
        self.write_out().await
    }

    /// Waits for the next whole message (or the handshake's end, after
    /// [`WebSocket::start`]): reads, answers pings (one pong per ping),
    /// sends keepalive pings, writes what [`WebSocket::feed`] queued, and
    /// enforces the connection's deadlines.
    ///
    /// [`Event::Closed`] and every error end the connection (the socket is
    /// released); a later call returns [`Error::NotOpen`] until the next
    /// connect.
    ///
    /// Cancel safety: dropping the future before it completes loses
    /// nothing (bytes read stay buffered, bytes being written are written
    /// by the next call, an event produced is returned by the next call).
    pub async fn recv(&mut self) -> Result<Event<'_>, Error> {
        Ok(match self.advance().await? {
            Next::Open => Event::Open { protocol: self.protocol() },
            Next::Message => Event::Message(self.message()),
            Next::Closed(code) => Event::Closed(code),
        })
    }

    /// Frames `message` into the write buffer, writing the buffer out
    /// first if the frame does not fit behind what is queued. The frame
    /// goes out with the next [`WebSocket::flush`], `send` or `recv`.
    ///
    /// Cancel safety: cancelled while the buffer is written out, the
    /// message is not queued (what was written stays written).
    pub async fn feed(&mut self, message: Message<'_>) -> Result<(), Error> {
        for _ in 0..2 {
            let Some(conn) = self.conn.as_mut().filter(|_| !self.ended) else { return Err(Error::NotOpen) };
            match conn.send(message, self.link.spare()) {
                Ok(len) => {
                    self.link.wrote(len);
                    return Ok(());
                }
                Err(roomwire_core::SendError::Buffer(e)) => {
                    if !self.link.has_output() {
                        return Err(Error::BufferTooSmall(e.required));
                    }
                    self.write_out().await?;
                }
                Err(roomwire_core::SendError::NotOpen) => return Err(Error::NotOpen),
                Err(e) => return Err(Error::Invalid(e)),
            }
        }
        Err(Error::BufferTooSmall(self.link.spare().len() + 1))
    }

    /// Sends `message` (as one frame): [`WebSocket::feed`] then
    /// [`WebSocket::flush`]. Returns once the frame is in the socket's
    /// buffer.
    pub async fn send(&mut self, message: Message<'_>) -> Result<(), Error> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Writes out what is queued: fed messages, and what the connection
    /// owes (pongs, keepalive pings, a close frame).
    ///
    /// Cancel safety: progress is recorded after every write; the next
    /// call (or `recv`) writes the rest.
    pub async fn flush(&mut self) -> Result<(), Error> {
        if self.ended {
            return Err(self.failure.unwrap_or(Error::NotOpen));
        }
        loop {
            let Some(conn) = self.conn.as_mut() else { return Ok(()) };
            let full = match conn.poll_transmit(self.link.spare()) {
                Ok(0) => false,
                Ok(n) => {
                    self.link.wrote(n);
                    continue;
                }
                Err(e) if !self.link.has_output() => {
                    return Err(self.fail(Error::BufferTooSmall(e.required)));
                }
                Err(_) => true,
            };
            self.write_out().await?;
            if !full {
                return Ok(());
            }
        }
    }

    /// Starts the closing handshake with `code` and `reason` (at most 123
    /// bytes) and writes the close frame. [`WebSocket::recv`] finishes it
    /// (returning [`Event::Closed`] with the server's code) or fails after
    /// the core's `close_timeout`.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        match self.queue_close(code, reason) {
            Ok(()) => self.flush().await,
            Err(roomwire_core::SendError::NotOpen) => Err(Error::NotOpen),
            Err(e) => Err(Error::Invalid(e)),
        }
    }

    /// Drops the connection without a closing handshake (a TCP reset), if
    /// there is one. The socket is then free for the next connect.
    pub async fn abort(&mut self) {
        self.link.release(false).await;
        self.reset();
    }

    /// Queues a close frame (written by the next flush).
    fn queue_close(&mut self, code: CloseCode, reason: &str) -> Result<(), roomwire_core::SendError> {
        match self.conn.as_mut().filter(|_| !self.ended) {
            Some(conn) => conn.close(now(), code, reason),
            None => Err(roomwire_core::SendError::NotOpen),
        }
    }

    /// The subprotocol the server selected (read when the handshake ends,
    /// before any message takes its place).
    fn protocol(&self) -> Option<&str> {
        let len = usize::from(self.protocol_len?);
        core::str::from_utf8(self.reader.storage().get(..len)?).ok()
    }

    /// The last [`Next::Message`].
    fn message(&self) -> Message<'_> {
        match self.reader.last_message() {
            Some(Assembled::Text(text)) => Message::Text(text),
            Some(Assembled::Binary(bytes)) => Message::Binary(bytes),
            None => Message::Binary(&[]),
        }
    }

    /// One connection's loop, up to its next event: handle buffered input,
    /// write what is owed, then wait for input or the next deadline.
    async fn advance(&mut self) -> Result<Next, Error> {
        loop {
            if self.ended {
                // TCP closes cleanly (what was written is delivered first)
                // once the closing handshake completed, or once the close
                // frame that fails the connection went out: a reset would
                // drop it, and what was sent before it.
                let closed = self.conn.as_ref().is_some_and(|c| c.state() == State::Closed);
                let clean = closed && (self.peer_close.is_some() || matches!(self.failure, Some(Error::Protocol(_))));
                self.link.release(clean).await;
                let outcome = match (self.failure, self.peer_close) {
                    (Some(error), _) => Err(error),
                    (None, Some(code)) => Ok(Next::Closed(code)),
                    (None, None) => Err(Error::Reset),
                };
                self.reset();
                return outcome;
            }
            if self.conn.is_none() {
                return Err(Error::NotOpen);
            }
            if self.pending.is_none() {
                self.pending = self.process_input();
            }
            if self.flush().await.is_err() {
                continue; // ended
            }
            if let Some(next) = self.pending.take() {
                return Ok(next);
            }
            if self.conn.as_ref().is_none_or(|c| c.state() == State::Closed) {
                self.ended = true;
                continue;
            }
            let _ = self.wait().await; // an error ends the connection
        }
    }

    /// Records why the connection is failing (the first cause wins) and
    /// ends it.
    fn fail(&mut self, error: Error) -> Error {
        self.ended = true;
        *self.failure.get_or_insert(error)
    }

    /// Feeds buffered input to the connection until it needs more bytes or
    /// produces an event to report.
    fn process_input(&mut self) -> Option<Next> {
        loop {
            let conn = self.conn.as_mut()?;
            let input = self.link.input();
            if input.is_empty() {
                return None;
            }
            let input_start = input.as_ptr() as usize;
            let Read { consumed, incoming } = self.reader.read(conn, now(), input);
            let seen = incoming.map(|incoming| match incoming {
                // Copied into the message buffer: the input can move.
                Incoming::Message(_) => Seen::Message,
                // The selected subprotocol lies in the input: where, so that
                // it is copied once the reader lets go of the input.
                Incoming::Event(WsEvent::Open { protocol }) => {
                    Seen::Open(protocol.map(|name| ((name.as_ptr() as usize).wrapping_sub(input_start), name.len())))
                }
                Incoming::Event(WsEvent::HandshakeFailed(e)) => Seen::Failed(Error::Handshake(e)),
                Incoming::Event(WsEvent::Close { code, .. }) => Seen::Close(code),
                Incoming::Event(WsEvent::ProtocolError(e)) => Seen::Failed(Error::Protocol(e.code)),
                Incoming::Event(WsEvent::Ping(_)) => Seen::Ping,
                Incoming::Event(_) => Seen::Other,
            });
            if let Some(Seen::Open(at)) = seen {
                let name = at.and_then(|(start, len)| self.link.input().get(start..start.checked_add(len)?));
                self.protocol_len = keep_protocol(self.reader.storage_mut(), name);
            }
            self.link.consume(consumed);
            match seen {
                None if consumed == 0 => return None,
                None | Some(Seen::Other) => {}
                Some(Seen::Message) => {
                    self.protocol_len = None;
                    return Some(Next::Message);
                }
                Some(Seen::Open(_)) => return Some(Next::Open),
                Some(Seen::Close(code)) => self.peer_close = Some(code),
                Some(Seen::Failed(error)) => {
                    if let Error::Protocol(code) = error {
                        warn!("roomwire: protocol error, closing with {}", u16::from(code));
                    }
                    self.failure.get_or_insert(error);
                }
                Some(Seen::Ping) => {
                    // Answer each ping of a burst, not only the last: the
                    // core owes a pong for the latest ping only (RFC 6455
                    // allows that), so take it now while there is room.
                    // With the write buffer full, the pongs coalesce.
                    if let Some(conn) = self.conn.as_mut()
                        && let Ok(n) = conn.poll_transmit(self.link.spare())
                    {
                        self.link.wrote(n);
                    }
                }
            }
        }
    }

    /// Writes the write buffer out. Cancel safe: progress is recorded
    /// after every write. A failure ends the connection.
    async fn write_out(&mut self) -> Result<(), Error> {
        match self.link.write_out().await {
            Ok(()) => Ok(()),
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Waits for bytes from the server or the connection's next deadline.
    /// A failure (or the server's end of TCP) ends the connection.
    async fn wait(&mut self) -> Result<(), Error> {
        let Some(conn) = self.conn.as_ref() else { return Err(Error::NotOpen) };
        let deadline = conn.poll_timeout().map_or(embassy_time::Instant::MAX, to_embassy);
        match self.link.read(deadline).await {
            Ok(Woke::Input) => Ok(()),
            Ok(Woke::Deadline) => match self.conn.as_mut().and_then(|conn| conn.handle_timeout(now())) {
                Some(timeout) => {
                    warn!("roomwire: timeout");
                    Err(self.fail(Error::Timeout(timeout)))
                }
                None => Ok(()),
            },
            Err(Error::Reset) if self.peer_close.is_some() => {
                self.ended = true;
                Ok(())
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Forgets the connection (after its socket was released).
    fn reset(&mut self) {
        self.conn = None;
        self.link.clear();
        self.reader.reset();
        self.pending = None;
        self.peer_close = None;
        self.failure = None;
        self.ended = false;
        self.protocol_len = None;
    }
}

/// Keeps the selected subprotocol `name` at the start of `buffer` (the
/// message buffer, idle when the handshake ends); its length, or `None`
/// for no subprotocol (or a buffer too short to hold it, which `open`
/// refuses beforehand).
fn keep_protocol(buffer: &mut [u8], name: Option<&[u8]>) -> Option<u8> {
    let name = name?;
    buffer.get_mut(..name.len())?.copy_from_slice(name);
    u8::try_from(name.len()).ok()
}

/// What one step of the input was, borrowing nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Message,
    /// Where the selected subprotocol is in the input (start, length).
    Open(Option<(usize, usize)>),
    Close(Option<CloseCode>),
    Failed(Error),
    Ping,
    Other,
}

/// Writes the `Host` header value (`host`, or `host:port` unless 80) at
/// the start of `out`.
pub(crate) fn write_host(host: &str, port: u16, out: &mut [u8]) -> Result<usize, Error> {
    let mut digits = [0u8; 5];
    let mut n = 0;
    let mut p = port;
    loop {
        if let Some(d) = digits.get_mut(n) {
            *d = b'0' + (p % 10) as u8;
        }
        n += 1;
        p /= 10;
        if p == 0 {
            break;
        }
    }
    let port_len = if port == 80 { 0 } else { 1 + n };
    let total = host.len() + port_len;
    let dst = out.get_mut(..total).ok_or(Error::BufferTooSmall(total))?;
    let (name, tail) = dst.split_at_mut(host.len());
    name.copy_from_slice(host.as_bytes());
    if let Some((colon, rest)) = tail.split_first_mut() {
        *colon = b':';
        for (dst, src) in rest.iter_mut().zip(digits.iter().take(n).rev()) {
            *dst = *src;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn host_header() {
        let mut out = [0u8; 32];
        let n = write_host("192.0.2.1", 8080, &mut out).unwrap();
        assert_eq!(&out[..n], b"192.0.2.1:8080");
        let n = write_host("example.org", 80, &mut out).unwrap();
        assert_eq!(&out[..n], b"example.org");
        let n = write_host("h", 7, &mut out).unwrap();
        assert_eq!(&out[..n], b"h:7");
        assert_eq!(write_host("192.0.2.1", 8080, &mut out[..4]), Err(Error::BufferTooSmall(14)));
    }

    #[test]
    fn the_selected_protocol_is_kept_in_the_idle_message_buffer() {
        let mut buffer = [0u8; 16];
        assert_eq!(keep_protocol(&mut buffer, Some(b"roomwire.v1.json")), Some(16));
        assert_eq!(&buffer, b"roomwire.v1.json");
        assert_eq!(keep_protocol(&mut buffer, None), None);
        // Too long for the buffer: none rather than a cut name.
        assert_eq!(keep_protocol(&mut buffer, Some(b"roomwire.v1.postcard")), None);
    }
}
