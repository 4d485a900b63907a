//! The room client: one channel, a few rooms, over an embassy-net
//! [`TcpSocket`].
//!
//! A [`Client`] owns a TCP socket the firmware created (with its TCP
//! buffers), a [`RoomClient`] from the core (the rooms it wants and has
//! joined), and four buffers the firmware lends it ([`ClientBuffers`]). It
//! connects, keeps the connection alive, and when the connection ends for
//! any reason it waits a backoff and connects again, asking for the same
//! rooms. Nothing is allocated.
//!
//! Drive it by calling [`Client::next_event`] in a loop: it connects,
//! reads, answers pings, sends keepalive pings, and returns what happened.
//! Between two calls, [`Client::send`], [`Client::join`] and
//! [`Client::leave`] act on the current connection.
//! `next_event` is cancel safe, so it can be raced against the firmware's
//! own events with `embassy_futures::select`.
//!
//! ```no_run
//! # async fn run(stack: embassy_net::Stack<'static>) {
//! use core::cell::RefCell;
//! use embassy_net::tcp::TcpSocket;
//! use roomwire_embassy::client::{Client, ClientBuffers, ClientConfig, Event};
//! use roomwire_embassy::roomwire_core::client::ClientEvent;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! pub struct Reading<'a> { pub sensor: &'a str, pub value: i32 }
//! roomwire_embassy::roomwire_core::channel! { /// Telemetry.
//!     pub struct Telemetry { path: "/ws/telemetry", in: Reading<'a>, out: Reading<'a> } }
//!
//! let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
//! let (mut read, mut write, mut message, mut scratch) = ([0u8; 512], [0u8; 512], [0u8; 512], [0u8; 256]);
//! let mut seed = 1u32; // the firmware's TRNG, really
//! let keys = RefCell::new(move || { seed = seed.wrapping_mul(747796405).wrapping_add(1); seed.to_le_bytes() });
//! let socket = TcpSocket::new(stack, &mut rx, &mut tx);
//! let buffers = ClientBuffers { read: &mut read, write: &mut write, message: &mut message, scratch: &mut scratch };
//! let config = ClientConfig::new("192.0.2.1", 8080);
//! let mut client = Client::<Telemetry, 2, _>::new(stack, socket, &keys, buffers, config, &["plant-1"]).unwrap();
//! loop {
//!     match client.next_event().await {
//!         Event::Connected { .. } => {}
//!         Event::Room(ClientEvent::Message { room, message }) => { let _ = (room, message.value); }
//!         Event::Disconnected(_why) => {} // reconnects on the next call, after a backoff
//!         _ => {}
//!     }
//!     let _ = client.send("plant-1", &Reading { sensor: "t0", value: 21 }).await;
//! }
//! # }
//! ```

use core::fmt;

use embassy_futures::select::{Either, select};
use embassy_net::tcp::{self, State as TcpState, TcpSocket};
use embassy_net::{IpAddress, Ipv4Address, Stack};
use embassy_time::{Timer, with_timeout};
use roomwire_core::client::{ClientError, ClientEvent, Opened, Requested, RoomClient};
use roomwire_core::handshake::{ClientRequest, HandshakeError};
use roomwire_core::{
    Channel, CloseCode, Config, Connection, Duration, Event as WsEvent, Message, MessageKind, Received, State, Timeout,
    WireFormat,
};

use crate::keys::{KeyRef, KeySource};
use crate::time::{duration, now, to_embassy};

/// How long a finished connection may take to close its TCP side cleanly
/// before it is reset.
const LINGER: embassy_time::Duration = embassy_time::Duration::from_millis(500);

/// Where and how to connect.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig<'a> {
    /// The server: an IPv4 literal, or (feature `dns`) a name. Also the
    /// `Host` header.
    pub host: &'a str,
    /// The server's TCP port.
    pub port: u16,
    /// The wire to ask for: [`WireFormat::Postcard`] (the default) or
    /// [`WireFormat::Json`] (roomwire envelopes, joins at any time), or
    /// [`WireFormat::Alepha`] (JSON, rooms fixed by the handshake, for any
    /// Alepha-compatible server). A server that does not speak roomwire is
    /// answered on the Alepha wire.
    pub format: WireFormat,
    /// Extra handshake headers (`Authorization`, `Cookie`, `Origin` …).
    pub headers: &'a [(&'a str, &'a str)],
    /// The connection's limits and deadlines. `max_message_size` is capped
    /// at the reassembly buffer's length (a larger message is refused with
    /// 1009); `keepalive_interval` pings the server that often and drops
    /// it when a ping goes unanswered until the next one.
    pub websocket: Config,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// How long the server may leave written data unacknowledged before
    /// the connection is dropped.
    pub write_timeout: Duration,
    /// First wait before reconnecting; doubled after each failure.
    pub backoff_min: Duration,
    /// Longest wait before reconnecting.
    pub backoff_max: Duration,
}

impl<'a> ClientConfig<'a> {
    /// Connect to `host:port` on the postcard wire, with a 30 s keepalive,
    /// 10 s connect and write timeouts, and a backoff from 0.5 s to 30 s.
    pub fn new(host: &'a str, port: u16) -> Self {
        Self {
            host,
            port,
            format: WireFormat::Postcard,
            headers: &[],
            websocket: Config { keepalive_interval: Some(Duration::from_secs(30)), ..Config::default() },
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// The buffers a client works in, lent by the firmware for the client's
/// life. Sizes are the firmware's choice:
///
/// * `read`: bytes read from the socket. Must hold the server's whole
///   handshake response (a few hundred bytes); messages stream through it.
/// * `write`: frames waiting for the socket. Must hold the largest frame
///   sent (message plus 14 bytes) and the handshake request.
/// * `message`: one whole received message (reassembly). Larger messages
///   are refused with close code 1009.
/// * `scratch`: working memory: the handshake target, one outgoing message
///   while it is encoded, and decoding (a received Alepha message without
///   its room label, unescaped JSON strings).
#[derive(Debug)]
pub struct ClientBuffers<'b> {
    /// Socket input.
    pub read: &'b mut [u8],
    /// Socket output.
    pub write: &'b mut [u8],
    /// Whole-message reassembly.
    pub message: &'b mut [u8],
    /// Encoding and decoding.
    pub scratch: &'b mut [u8],
}

/// Why a connection ended (or never opened). The client reconnects on the
/// next [`Client::next_event`], after a backoff unless noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disconnect {
    /// The host is not an IPv4 literal (without feature `dns`), or its
    /// name did not resolve.
    Resolve,
    /// The TCP connection could not be made.
    Connect(tcp::ConnectError),
    /// The TCP connection was not made within
    /// [`ClientConfig::connect_timeout`].
    ConnectTimeout,
    /// The server refused the upgrade, or answered with an invalid one.
    Handshake(HandshakeError),
    /// The TCP connection was reset or closed without a close frame.
    Reset,
    /// Written data stayed unacknowledged for
    /// [`ClientConfig::write_timeout`].
    WriteTimeout,
    /// The closing handshake completed; the server's close code, if it
    /// sent one.
    Closed(Option<CloseCode>),
    /// The server broke RFC 6455, sent a message the client cannot read,
    /// or one larger than the reassembly buffer: the client closed with
    /// this code.
    Protocol(CloseCode),
    /// A deadline passed: the handshake, the closing handshake, or a
    /// keepalive ping went unanswered (a server that stopped answering).
    Timeout(Timeout),
    /// A buffer is too small for what had to go through it: this many
    /// bytes are needed.
    BufferTooSmall(usize),
    /// The rooms can only change with a new connection (Alepha wire, or a
    /// server that answered without roomwire): reconnecting at once.
    Reconnect,
    /// [`Client::close`] closed it.
    Local,
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve => f.write_str("host did not resolve"),
            Self::Connect(e) => write!(f, "TCP connect failed: {e:?}"),
            Self::ConnectTimeout => f.write_str("TCP connect timed out"),
            Self::Handshake(e) => fmt::Display::fmt(e, f),
            Self::Reset => f.write_str("connection reset"),
            Self::WriteTimeout => f.write_str("write timed out"),
            Self::Closed(Some(code)) => write!(f, "closed by the server ({})", u16::from(*code)),
            Self::Closed(None) => f.write_str("closed by the server"),
            Self::Protocol(code) => write!(f, "closed for a protocol error ({})", u16::from(*code)),
            Self::Timeout(t) => write!(f, "timed out: {t:?}"),
            Self::BufferTooSmall(n) => write!(f, "buffer too small: {n} bytes required"),
            Self::Reconnect => f.write_str("reconnecting for new rooms"),
            Self::Local => f.write_str("closed by the client"),
        }
    }
}

/// What [`Client::next_event`] reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a, M> {
    /// The connection is open, on this wire; on the roomwire wire the
    /// wanted rooms are being joined (each answer is a
    /// [`ClientEvent::Joined`] or [`ClientEvent::JoinFailed`]).
    Connected {
        /// The wire the server selected.
        format: WireFormat,
    },
    /// A room event or a typed message from the server (see
    /// [`ClientEvent`]).
    Room(ClientEvent<'a, M>),
    /// The server sent a message the client cannot read (not an envelope,
    /// not JSON, bigger than `scratch`): the client is closing the
    /// connection with 1002 (or 1009), except for an answer to an unknown
    /// request, which is only reported.
    Invalid(ClientError),
    /// The connection ended (or could not be made). The next call
    /// reconnects, after a backoff.
    Disconnected(Disconnect),
}

/// Why [`Client::send`], [`Client::join`] or [`Client::leave`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No open connection (connecting, or between connections).
    NotOpen,
    /// The core refused the call: not joined, invalid room or message,
    /// `scratch` too small for the encoded message, …
    Client(ClientError),
    /// The framed message does not fit the `write` buffer: this many
    /// bytes are needed.
    BufferTooSmall(usize),
    /// The connection failed while sending; [`Client::next_event`] reports
    /// why and reconnects.
    Disconnected,
}

impl From<ClientError> for SendError {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOpen => f.write_str("not connected"),
            Self::Client(e) => fmt::Display::fmt(e, f),
            Self::BufferTooSmall(n) => write!(f, "write buffer too small: {n} bytes required"),
            Self::Disconnected => f.write_str("connection lost"),
        }
    }
}

impl core::error::Error for SendError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection; connect at this time.
    Idle(embassy_time::Instant),
    /// Upgrade request sent, waiting for the response.
    Handshake,
    /// Open (or closing).
    Open,
}

/// Bytes `start..end` of a buffer are in use.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: usize,
    end: usize,
}

/// The message being reassembled in `ClientBuffers::message`.
#[derive(Debug, Clone, Copy, Default)]
struct Assembly {
    len: usize,
    /// A whole message is there, not yet handed out.
    ready: bool,
}

/// What one turn of the loop produced.
enum Step {
    Connected(WireFormat),
    Message,
    Disconnected(Disconnect),
    Continue,
}

/// A reconnecting room client of channel `C`, in at most `N` rooms: see
/// the [module docs](self).
///
/// The client's own state is the core's [`RoomClient`] (about 70 bytes per
/// room), its [`Connection`] (about 700 bytes) and a few words; the buffers
/// are the firmware's.
pub struct Client<'b, C: Channel, const N: usize, K: KeySource + ?Sized> {
    stack: Stack<'b>,
    socket: TcpSocket<'b>,
    keys: &'b K,
    config: ClientConfig<'b>,
    rooms: RoomClient<C, N>,
    conn: Option<Connection<KeyRef<'b, K>>>,
    bufs: ClientBuffers<'b>,
    read: Span,
    write: Span,
    message: Assembly,
    phase: Phase,
    backoff: embassy_time::Duration,
    /// Why the current connection is ending (the first cause wins).
    ending: Option<Disconnect>,
    /// The server's close code, once its close frame arrived.
    peer_close: Option<Option<CloseCode>>,
}

impl<'b, C: Channel, const N: usize, K: KeySource + ?Sized> fmt::Debug for Client<'b, C, N, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.config.host)
            .field("port", &self.config.port)
            .field("rooms", &self.rooms)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl<'b, C: Channel, const N: usize, K: KeySource + ?Sized> Client<'b, C, N, K> {
    /// A client that will connect to `config.host` on `socket` (a new,
    /// unconnected socket of `stack`), wanting `rooms`. Nothing happens
    /// until [`Client::next_event`] is called.
    ///
    /// Fails if a room id is invalid or there are more than `N` rooms.
    pub fn new(
        stack: Stack<'b>,
        socket: TcpSocket<'b>,
        keys: &'b K,
        buffers: ClientBuffers<'b>,
        config: ClientConfig<'b>,
        rooms: &[&str],
    ) -> Result<Self, ClientError> {
        Ok(Self {
            stack,
            socket,
            keys,
            rooms: RoomClient::with_rooms(config.format, rooms)?,
            config,
            conn: None,
            bufs: buffers,
            read: Span::default(),
            write: Span::default(),
            message: Assembly::default(),
            phase: Phase::Idle(embassy_time::Instant::from_ticks(0)),
            backoff: duration(config.backoff_min),
            ending: None,
            peer_close: None,
        })
    }

    /// The core room client: wanted and joined rooms, wire format.
    pub fn rooms(&self) -> &RoomClient<C, N> {
        &self.rooms
    }

    /// Whether a connection is open (typed messages can be sent).
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open && self.ending.is_none() && self.conn.as_ref().is_some_and(Connection::can_send)
    }

    /// Waits for the next event: connects (after the backoff, if the last
    /// attempt failed), reads, answers pings, keeps the connection alive,
    /// and returns what happened. Call it in a loop.
    ///
    /// Cancel safe: dropping the future before it completes loses nothing
    /// (bytes read stay buffered, bytes being written are written by the
    /// next call).
    pub async fn next_event(&mut self) -> Event<'_, C::In<'_>> {
        loop {
            match self.step().await {
                Step::Connected(format) => return Event::Connected { format },
                Step::Disconnected(why) => return Event::Disconnected(why),
                Step::Message => return self.take_message(),
                Step::Continue => {}
            }
        }
    }

    /// Sends a typed message to the server's handler in `room`, which must
    /// be joined. Returns once the frame is in the socket's buffer.
    pub async fn send(&mut self, room: &str, message: &C::Out<'_>) -> Result<(), SendError> {
        if !self.is_open() {
            return Err(SendError::NotOpen);
        }
        let n = self.rooms.send(room, message, self.bufs.scratch)?;
        self.send_scratch(n).await
    }

    /// Joins `room`; it is restored after every reconnect. On the roomwire
    /// wire a request is sent if the connection is open (its answer comes
    /// as [`ClientEvent::Joined`] or [`ClientEvent::JoinFailed`]); on the
    /// Alepha wire the client reconnects with the new rooms
    /// ([`Requested::Reconnect`]).
    pub async fn join(&mut self, room: &str) -> Result<Requested, SendError> {
        let requested = self.rooms.join(room, self.bufs.scratch)?;
        self.requested(requested).await
    }

    /// Leaves `room`, as [`Client::join`] joins it.
    pub async fn leave(&mut self, room: &str) -> Result<Requested, SendError> {
        let requested = self.rooms.leave(room, self.bufs.scratch)?;
        self.requested(requested).await
    }

    /// Starts the closing handshake (1000). [`Client::next_event`] finishes
    /// it, reports [`Disconnect::Local`], and on the call after that
    /// reconnects.
    pub async fn close(&mut self) {
        self.begin_close(CloseCode::Normal, "", Disconnect::Local);
        if self.transmit().await.is_err() {
            self.ending.get_or_insert(Disconnect::Reset);
        }
    }

    async fn requested(&mut self, requested: Requested) -> Result<Requested, SendError> {
        match requested {
            Requested::Sent { len, .. } => self.send_scratch(len).await?,
            Requested::Reconnect => self.begin_close(CloseCode::Normal, "", Disconnect::Reconnect),
            Requested::NotSent => {}
        }
        Ok(requested)
    }

    /// Frames the `n` bytes at the start of `scratch` as one message and
    /// writes it.
    async fn send_scratch(&mut self, n: usize) -> Result<(), SendError> {
        let result = match self.queue_scratch(n).await {
            Ok(()) => self.flush().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Ok(()),
            Err(Disconnect::BufferTooSmall(n)) => Err(SendError::BufferTooSmall(n)),
            Err(why) => {
                self.ending.get_or_insert(why);
                Err(SendError::Disconnected)
            }
        }
    }

    /// Queues a close frame; the connection ends when it completes.
    fn begin_close(&mut self, code: CloseCode, reason: &str, why: Disconnect) {
        let Some(conn) = self.conn.as_mut() else { return };
        if conn.close(now(), code, reason).is_ok() || conn.state() != State::Open {
            self.ending.get_or_insert(why);
        }
    }

    async fn step(&mut self) -> Step {
        match self.phase {
            Phase::Idle(at) => {
                Timer::at(at).await;
                match self.start().await {
                    Ok(()) => Step::Continue,
                    Err(why) => self.end(why).await,
                }
            }
            Phase::Handshake | Phase::Open => self.drive().await,
        }
    }

    /// One turn on a connection: handle buffered input, write what is
    /// owed, then wait for input or the next deadline.
    async fn drive(&mut self) -> Step {
        let step = self.process_input();
        if let Err(why) = self.transmit().await {
            return self.end(why).await;
        }
        if let Some(step) = step {
            return step;
        }
        if self.conn.as_ref().is_none_or(|c| c.state() == State::Closed) {
            let why = self.peer_close.map_or(Disconnect::Reset, Disconnect::Closed);
            return self.end(why).await;
        }
        match self.wait().await {
            Ok(()) => Step::Continue,
            Err(why) => self.end(why).await,
        }
    }

    /// Feeds buffered input to the connection until it needs more bytes or
    /// a whole message is ready.
    fn process_input(&mut self) -> Option<Step> {
        let conn = self.conn.as_mut()?;
        while self.read.start < self.read.end {
            let Some(input) = self.bufs.read.get_mut(self.read.start..self.read.end) else { break };
            let Received { consumed, event } = conn.handle_input(now(), input);
            self.read.start += consumed;
            let Some(event) = event else {
                if consumed == 0 {
                    break;
                }
                continue;
            };
            match event {
                WsEvent::Open { protocol } => {
                    let opened = self.rooms.opened(protocol);
                    self.phase = Phase::Open;
                    match opened {
                        Ok(Opened::Ready) => {
                            self.backoff = duration(self.config.backoff_min);
                            debug!("roomwire: connected");
                            return Some(Step::Connected(self.rooms.format()));
                        }
                        Ok(Opened::Reconnect) => {
                            // No roomwire on this server: ask again for the
                            // rooms on the Alepha wire.
                            let _ = conn.close(now(), CloseCode::Normal, "");
                            self.ending.get_or_insert(Disconnect::Reconnect);
                        }
                        Err(_) => {
                            let _ = conn.close(now(), CloseCode::Protocol, "subprotocol not offered");
                            self.ending.get_or_insert(Disconnect::Protocol(CloseCode::Protocol));
                        }
                    }
                }
                WsEvent::HandshakeFailed(e) => {
                    self.ending.get_or_insert(Disconnect::Handshake(e));
                }
                WsEvent::Data { payload, message_start, message_end, .. } => {
                    if message_start {
                        self.message.len = 0;
                    }
                    let at = self.message.len;
                    match self.bufs.message.get_mut(at..at + payload.len()) {
                        Some(dst) => {
                            dst.copy_from_slice(payload);
                            self.message.len += payload.len();
                        }
                        None => {
                            // Cannot happen: max_message_size is capped at
                            // the buffer's length, so the core refuses first.
                            let _ = conn.close(now(), CloseCode::MessageTooBig, "message too big");
                            self.ending.get_or_insert(Disconnect::Protocol(CloseCode::MessageTooBig));
                            self.message.len = 0;
                            continue;
                        }
                    }
                    if message_end {
                        self.message.ready = true;
                        return Some(Step::Message);
                    }
                }
                WsEvent::Close { code, .. } => {
                    self.peer_close = Some(code);
                }
                WsEvent::ProtocolError(e) => {
                    warn!("roomwire: protocol error, closing with {}", u16::from(e.code));
                    self.ending.get_or_insert(Disconnect::Protocol(e.code));
                }
                WsEvent::Ping(_) => {
                    // Answer each ping of a burst, not only the last: the
                    // core owes a pong for the latest ping only (RFC 6455
                    // allows that), so take it now while there is room.
                    // With the write buffer full, the pongs coalesce.
                    let free = self.bufs.write.get_mut(self.write.end..).unwrap_or(&mut []);
                    if let Ok(n) = conn.poll_transmit(free) {
                        self.write.end += n;
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Hands out the reassembled message, decoded by the core.
    fn take_message(&mut self) -> Event<'_, C::In<'_>> {
        self.message.ready = false;
        let Self { rooms, bufs, conn, ending, message, .. } = self;
        let data = bufs.message.get(..message.len).unwrap_or(&[]);
        match rooms.handle_message(data, bufs.scratch) {
            Ok(event) => Event::Room(event),
            Err(error) => {
                let code = match error {
                    ClientError::UnknownReference(_) => None,
                    ClientError::Scratch(_) => Some(CloseCode::MessageTooBig),
                    _ => Some(CloseCode::Protocol),
                };
                if let (Some(code), Some(conn)) = (code, conn.as_mut()) {
                    warn!("roomwire: unreadable message, closing with {}", u16::from(code));
                    if conn.close(now(), code, "unreadable message").is_ok() {
                        ending.get_or_insert(Disconnect::Protocol(code));
                    }
                }
                Event::Invalid(error)
            }
        }
    }

    /// Writes what the connection owes (pongs, keepalive pings, close
    /// frames) and, once open, the requests that restore the wanted rooms.
    async fn transmit(&mut self) -> Result<(), Disconnect> {
        loop {
            let Some(conn) = self.conn.as_mut() else { return Ok(()) };
            let free = self.bufs.write.get_mut(self.write.end..).unwrap_or(&mut []);
            match conn.poll_transmit(free) {
                Ok(0) => break,
                Ok(n) => self.write.end += n,
                Err(e) if self.write.start == self.write.end => return Err(Disconnect::BufferTooSmall(e.required)),
                Err(_) => self.flush().await?,
            }
        }
        while self.is_open() {
            match self.rooms.poll_transmit(self.bufs.scratch) {
                Ok(0) => break,
                Ok(n) => self.queue_scratch(n).await?,
                Err(e) => return Err(Disconnect::BufferTooSmall(e.required)),
            }
        }
        self.flush().await
    }

    /// Frames the first `n` bytes of `scratch` as one message (of the
    /// wire's kind) into the write buffer, flushing first if needed.
    async fn queue_scratch(&mut self, n: usize) -> Result<(), Disconnect> {
        for _ in 0..2 {
            let Some(conn) = self.conn.as_mut() else { return Err(Disconnect::Reset) };
            let payload = self.bufs.scratch.get(..n).unwrap_or(&[]);
            let message = match self.rooms.message_kind() {
                MessageKind::Text => match core::str::from_utf8(payload) {
                    Ok(text) => Message::Text(text),
                    Err(_) => Message::Binary(payload),
                },
                MessageKind::Binary => Message::Binary(payload),
            };
            let free = self.bufs.write.get_mut(self.write.end..).unwrap_or(&mut []);
            match conn.send(message, free) {
                Ok(len) => {
                    self.write.end += len;
                    return Ok(());
                }
                Err(roomwire_core::SendError::Buffer(e)) => {
                    if self.write.start == self.write.end {
                        return Err(Disconnect::BufferTooSmall(e.required));
                    }
                    self.flush().await?;
                }
                Err(_) => return Err(Disconnect::Reset),
            }
        }
        Err(Disconnect::BufferTooSmall(self.bufs.write.len() + 1))
    }

    /// Writes the write buffer out. Cancel safe: progress is recorded
    /// after every write.
    async fn flush(&mut self) -> Result<(), Disconnect> {
        let timeout = duration(self.config.write_timeout);
        while self.write.start < self.write.end {
            let pending = self.bufs.write.get(self.write.start..self.write.end).unwrap_or(&[]);
            match with_timeout(timeout, self.socket.write(pending)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(Disconnect::Reset),
                Ok(Ok(n)) => self.write.start += n,
                Err(_) => return Err(Disconnect::WriteTimeout),
            }
        }
        self.write = Span::default();
        Ok(())
    }

    /// Waits for bytes from the server or the connection's next deadline.
    async fn wait(&mut self) -> Result<(), Disconnect> {
        if self.read.start > 0 {
            self.bufs.read.copy_within(self.read.start..self.read.end, 0);
            self.read = Span { start: 0, end: self.read.end - self.read.start };
        }
        if self.read.end >= self.bufs.read.len() {
            // Only a handshake response can fill it: frames stream through.
            return Err(Disconnect::BufferTooSmall(self.bufs.read.len() + 1));
        }
        let Some(conn) = self.conn.as_mut() else { return Err(Disconnect::Reset) };
        let deadline = conn.poll_timeout().map_or(embassy_time::Instant::MAX, to_embassy);
        let free = self.bufs.read.get_mut(self.read.end..).unwrap_or(&mut []);
        match select(self.socket.read(free), Timer::at(deadline)).await {
            Either::First(Ok(0)) | Either::First(Err(_)) => {
                Err(self.peer_close.map_or(Disconnect::Reset, Disconnect::Closed))
            }
            Either::First(Ok(n)) => {
                self.read.end += n;
                Ok(())
            }
            Either::Second(()) => match conn.handle_timeout(now()) {
                Some(timeout) => {
                    warn!("roomwire: timeout");
                    Err(Disconnect::Timeout(timeout))
                }
                None => Ok(()),
            },
        }
    }

    /// Opens the TCP connection and sends the upgrade request.
    async fn start(&mut self) -> Result<(), Disconnect> {
        self.release_socket(false).await;
        let address = self.resolve().await?;
        self.socket.set_timeout(Some(duration(self.config.write_timeout)));
        match with_timeout(duration(self.config.connect_timeout), self.socket.connect((address, self.config.port)))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Disconnect::Connect(e)),
            Err(_) => return Err(Disconnect::ConnectTimeout),
        }
        self.socket.set_nagle_enabled(false);

        let mut websocket = self.config.websocket;
        websocket.max_message_size = websocket.max_message_size.min(self.bufs.message.len() as u64);
        let mut conn = Connection::client(websocket, now(), KeyRef(self.keys));
        // `Host` (host, or host:port) then the target, in scratch.
        let scratch = &mut *self.bufs.scratch;
        let host_len = write_host(self.config.host, self.config.port, scratch)?;
        let (host, rest) = scratch.split_at_mut(host_len);
        let target_len =
            self.rooms.write_target(rest).map_err(|e| Disconnect::BufferTooSmall(e.required + host_len))?;
        let host = core::str::from_utf8(host).map_err(|_| Disconnect::Resolve)?;
        let target = core::str::from_utf8(rest.get(..target_len).unwrap_or(&[])).map_err(|_| Disconnect::Resolve)?;
        let request = ClientRequest { host, target, protocols: self.rooms.protocols(), headers: self.config.headers };
        let n = match conn.write_request(&request, self.bufs.write) {
            Ok(n) => n,
            Err(roomwire_core::SendError::Buffer(e)) => return Err(Disconnect::BufferTooSmall(e.required)),
            Err(_) => return Err(Disconnect::BufferTooSmall(self.bufs.write.len() + 1)),
        };
        debug!("roomwire: connecting");
        self.write = Span { start: 0, end: n };
        self.read = Span::default();
        self.message = Assembly::default();
        self.conn = Some(conn);
        self.phase = Phase::Handshake;
        self.flush().await
    }

    async fn resolve(&self) -> Result<IpAddress, Disconnect> {
        if let Ok(ip) = self.config.host.parse::<Ipv4Address>() {
            return Ok(IpAddress::Ipv4(ip));
        }
        #[cfg(feature = "dns")]
        {
            let found = self
                .stack
                .dns_query(self.config.host, embassy_net::dns::DnsQueryType::A)
                .await
                .map_err(|_| Disconnect::Resolve)?;
            found.first().copied().ok_or(Disconnect::Resolve)
        }
        #[cfg(not(feature = "dns"))]
        {
            let _ = self.stack;
            Err(Disconnect::Resolve)
        }
    }

    /// Ends the current connection (the first recorded cause wins) and
    /// schedules the next one.
    async fn end(&mut self, why: Disconnect) -> Step {
        let why = self.ending.take().unwrap_or(why);
        let clean = self.conn.as_ref().is_some_and(|c| c.state() == State::Closed) && self.peer_close.is_some();
        self.release_socket(clean).await;
        self.conn = None;
        self.rooms.closed();
        self.read = Span::default();
        self.write = Span::default();
        self.message = Assembly::default();
        self.peer_close = None;
        let wait = if why == Disconnect::Reconnect {
            embassy_time::Duration::from_ticks(0)
        } else {
            // Full backoff, less up to half of it at random, so devices
            // that lost the same server do not come back in step.
            let jitter = u64::from(u32::from_le_bytes(self.keys.next_key()) % 512);
            let wait = self.backoff - self.backoff * (jitter as u32) / 1024;
            self.backoff = (self.backoff * 2).min(duration(self.config.backoff_max));
            wait
        };
        warn!("roomwire: disconnected, retrying in {} ms", wait.as_millis());
        self.phase = Phase::Idle(embassy_time::Instant::now() + wait);
        Step::Disconnected(why)
    }

    /// Brings the socket back to `Closed`, cleanly when the WebSocket
    /// closing handshake completed, else with a reset.
    async fn release_socket(&mut self, clean: bool) {
        if self.socket.state() == TcpState::Closed {
            return;
        }
        if clean {
            self.socket.close();
            let _ = with_timeout(LINGER, async {
                while !matches!(self.socket.state(), TcpState::Closed | TcpState::TimeWait) {
                    Timer::after_millis(10).await;
                }
            })
            .await;
        }
        if self.socket.state() != TcpState::Closed {
            self.socket.abort();
            let _ = with_timeout(LINGER, self.socket.flush()).await;
        }
    }
}

/// Writes the `Host` header value (`host`, or `host:port` unless 80) at
/// the start of `out`.
fn write_host(host: &str, port: u16, out: &mut [u8]) -> Result<usize, Disconnect> {
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
    let dst = out.get_mut(..total).ok_or(Disconnect::BufferTooSmall(total))?;
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
        assert_eq!(write_host("192.0.2.1", 8080, &mut out[..4]), Err(Disconnect::BufferTooSmall(14)));
    }
}
