//! The room client: one channel, a few rooms, over an embassy-net
//! [`TcpSocket`].
//!
//! A [`Client`] owns a TCP socket the firmware created (with its TCP
//! buffers), a [`RoomClient`] from the core (the rooms it wants and has
//! joined), and four buffers the firmware lends it ([`ClientBuffers`]). It
//! connects, keeps the connection alive, and when the connection ends it
//! connects again after the delay the core's
//! [`Reconnector`](roomwire_core::reconnect::Reconnector) decides, asking
//! for the same rooms: the same decisions as the tokio client. Nothing is
//! allocated.
//!
//! The connection itself is a [`WebSocket`] (the raw layer in [`crate::ws`]):
//! this module adds the core's room logic (handshake target and
//! subprotocols, typed messages, room requests) and the reconnects.
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

use embassy_net::Stack;
use embassy_net::tcp::{self, TcpSocket};
use embassy_time::Timer;
use roomwire_core::client::{CLOSE_LEAVING, ClientError, ClientEvent, Opened, Requested, RoomClient};
use roomwire_core::handshake::HandshakeError;
use roomwire_core::reconnect::{Ending, Reconnect, ReconnectPolicy, Reconnector};
use roomwire_core::{Channel, CloseCode, Config, Duration, Message, MessageKind, State, Timeout, WireFormat};

use crate::keys::KeySource;
use crate::time::{duration, now};
use crate::ws::{self, Next, Options, WebSocket};

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
    /// When to reconnect: the core's policy (exponential from 0.5 s to
    /// 30 s, full jitter drawn from the key source, unlimited).
    pub reconnect: ReconnectPolicy,
}

impl<'a> ClientConfig<'a> {
    /// Connect to `host:port` on the postcard wire, with a 30 s keepalive,
    /// 10 s connect and write timeouts, and [`ReconnectPolicy::default`].
    pub fn new(host: &'a str, port: u16) -> Self {
        Self {
            host,
            port,
            format: WireFormat::Postcard,
            headers: &[],
            websocket: Config { keepalive_interval: Some(Duration::from_secs(30)), ..Config::default() },
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            reconnect: ReconnectPolicy::default(),
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
///   are refused with close code 1009. Also holds the `Host` header while
///   the request is written.
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
/// next [`Client::next_event`], after the reconnect policy's delay unless
/// noted.
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
    /// The closing handshake completed; the server's close code, if it
    /// sent one.
    Closed(Option<CloseCode>),
    /// The rooms can only change with a new connection (Alepha wire, or a
    /// server that answered without roomwire): reconnecting at once.
    Reconnect,
    /// [`Client::close`] closed it.
    Local,
}

impl From<ws::Error> for Disconnect {
    fn from(e: ws::Error) -> Self {
        match e {
            ws::Error::Resolve => Self::Resolve,
            ws::Error::Connect(e) => Self::Connect(e),
            ws::Error::ConnectTimeout => Self::ConnectTimeout,
            ws::Error::Handshake(e) => Self::Handshake(e),
            ws::Error::WriteTimeout => Self::WriteTimeout,
            ws::Error::Protocol(code) => Self::Protocol(code),
            ws::Error::Timeout(t) => Self::Timeout(t),
            ws::Error::BufferTooSmall(n) => Self::BufferTooSmall(n),
            // Not open: the connection was lost under the call.
            ws::Error::Reset | ws::Error::NotOpen | ws::Error::Invalid(_) => Self::Reset,
        }
    }
}

impl Disconnect {
    /// How the connection ended, as the core's reconnect policy reads it.
    pub fn ending(self) -> Ending {
        match self {
            Self::Handshake(HandshakeError::Rejected { status }) => Ending::Refused(status),
            Self::Protocol(_) => Ending::Broken,
            Self::Closed(code) => Ending::Closed(code),
            Self::Reconnect | Self::Local => Ending::Replaced,
            Self::Resolve
            | Self::Connect(_)
            | Self::ConnectTimeout
            | Self::Handshake(_)
            | Self::Reset
            | Self::WriteTimeout
            | Self::Timeout(_)
            | Self::BufferTooSmall(_) => Ending::Failed,
        }
    }
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
    /// reconnects, after the delay the reconnect policy decides.
    Disconnected(Disconnect),
    /// The connection ended in a way that retrying cannot help (a full
    /// room, refused credentials, an application close code: see
    /// [`Ending::is_final`]), or the policy's
    /// [`max_retries`](ReconnectPolicy::max_retries) ran out. The firmware
    /// decides: calling [`Client::next_event`] again starts over after the
    /// policy's longest delay.
    Stopped(Disconnect),
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

/// What one turn of the loop produced.
enum Step {
    Connected(WireFormat),
    Message,
    Disconnected(Disconnect),
    Stopped(Disconnect),
    Continue,
}

/// A reconnecting room client of channel `C`, in at most `N` rooms: see
/// the [module docs](self).
///
/// The client's own state is the core's [`RoomClient`] (about 70 bytes per
/// room), its [`Connection`](roomwire_core::Connection) (about 800 bytes,
/// in the [`WebSocket`]) and a few words; the buffers are the firmware's.
pub struct Client<'b, C: Channel, const N: usize, K: KeySource + ?Sized> {
    ws: WebSocket<'b, K>,
    host: &'b str,
    port: u16,
    headers: &'b [(&'b str, &'b str)],
    reconnector: Reconnector,
    rooms: RoomClient<C, N>,
    scratch: &'b mut [u8],
    phase: Phase,
    /// Why the current connection is ending (the first cause wins).
    ending: Option<Disconnect>,
    /// The connection opened; report it once the rooms are requested.
    announce: bool,
}

impl<'b, C: Channel, const N: usize, K: KeySource + ?Sized> fmt::Debug for Client<'b, C, N, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("port", &self.port)
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
        let ClientBuffers { read, write, message, scratch } = buffers;
        let options = Options {
            websocket: config.websocket,
            connect_timeout: config.connect_timeout,
            write_timeout: config.write_timeout,
        };
        Ok(Self {
            ws: WebSocket::new(stack, socket, keys, ws::Buffers { read, write, message }, options),
            host: config.host,
            port: config.port,
            headers: config.headers,
            reconnector: Reconnector::new(config.reconnect),
            rooms: RoomClient::with_rooms(config.format, rooms)?,
            scratch,
            phase: Phase::Idle(embassy_time::Instant::from_ticks(0)),
            ending: None,
            announce: false,
        })
    }

    /// The core room client: wanted and joined rooms, wire format.
    pub fn rooms(&self) -> &RoomClient<C, N> {
        &self.rooms
    }

    /// Whether a connection is open (typed messages can be sent).
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open && self.ending.is_none() && self.ws.can_send()
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
                Step::Stopped(why) => return Event::Stopped(why),
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
        let n = self.rooms.send(room, message, self.scratch)?;
        self.send_scratch(n).await
    }

    /// Joins `room`; it is restored after every reconnect. On the roomwire
    /// wire a request is sent if the connection is open (its answer comes
    /// as [`ClientEvent::Joined`] or [`ClientEvent::JoinFailed`]); on the
    /// Alepha wire the client reconnects with the new rooms
    /// ([`Requested::Reconnect`]).
    pub async fn join(&mut self, room: &str) -> Result<Requested, SendError> {
        let requested = self.rooms.join(room, self.scratch)?;
        self.requested(requested).await
    }

    /// Leaves `room`, as [`Client::join`] joins it.
    pub async fn leave(&mut self, room: &str) -> Result<Requested, SendError> {
        let requested = self.rooms.leave(room, self.scratch)?;
        self.requested(requested).await
    }

    /// Starts the closing handshake (1000). [`Client::next_event`] finishes
    /// it, reports [`Disconnect::Local`], and on the call after that
    /// reconnects.
    pub async fn close(&mut self) {
        self.begin_close(CLOSE_LEAVING, "", Disconnect::Local);
        if self.ws.flush().await.is_err() {
            self.ending.get_or_insert(Disconnect::Reset);
        }
    }

    async fn requested(&mut self, requested: Requested) -> Result<Requested, SendError> {
        match requested {
            Requested::Sent { len, .. } => self.send_scratch(len).await?,
            Requested::Reconnect => self.begin_close(CLOSE_LEAVING, "", Disconnect::Reconnect),
            Requested::NotSent => {}
        }
        Ok(requested)
    }

    /// Frames the `n` bytes at the start of `scratch` as one message and
    /// writes it.
    async fn send_scratch(&mut self, n: usize) -> Result<(), SendError> {
        let result = match self.feed_scratch(n).await {
            Ok(()) => self.ws.flush().await.map_err(Disconnect::from),
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
        let Some(state) = self.ws.state() else { return };
        if self.ws.queue_close(code, reason).is_ok() || state != State::Open {
            self.ending.get_or_insert(why);
        }
    }

    async fn step(&mut self) -> Step {
        let step = match self.phase {
            Phase::Idle(at) => {
                Timer::at(at).await;
                self.start().await.map(|()| Step::Continue)
            }
            Phase::Handshake | Phase::Open => self.drive().await,
        };
        match step {
            Ok(step) => step,
            Err(why) => self.end(why).await,
        }
    }

    /// One turn on a connection: the room requests owed (the ones that
    /// restore the wanted rooms first, before the connection is reported),
    /// then the WebSocket's loop up to its next event.
    async fn drive(&mut self) -> Result<Step, Disconnect> {
        self.transmit().await?;
        if self.announce {
            self.announce = false;
            return Ok(Step::Connected(self.rooms.format()));
        }
        Ok(match self.ws.advance().await? {
            Next::Open => {
                self.opened();
                Step::Continue
            }
            Next::Message => Step::Message,
            Next::Closed(code) => return Err(Disconnect::Closed(code)),
        })
    }

    /// The server accepted the upgrade.
    fn opened(&mut self) {
        self.reconnector.opened(now());
        let opened = self.rooms.opened(self.ws.protocol());
        self.phase = Phase::Open;
        match opened {
            Ok(Opened::Ready) => {
                self.announce = true;
                debug!("roomwire: connected");
            }
            Ok(Opened::Reconnect) => {
                // No roomwire on this server: ask again for the rooms on
                // the Alepha wire.
                let _ = self.ws.queue_close(CLOSE_LEAVING, "");
                self.ending.get_or_insert(Disconnect::Reconnect);
            }
            Err(error) => {
                let code = error.failure_code(self.rooms.format());
                let _ = self.ws.queue_close(code, "subprotocol not offered");
                self.ending.get_or_insert(Disconnect::Protocol(code));
            }
        }
    }

    /// Hands out the reassembled message, decoded by the core.
    fn take_message(&mut self) -> Event<'_, C::In<'_>> {
        let Self { rooms, ws, scratch, ending, .. } = self;
        let (data, conn) = ws.message_and_connection();
        match rooms.handle_message(data, scratch) {
            Ok(event) => Event::Room(event),
            Err(error) => {
                if let (Some(code), Some(conn)) = (error.close_code(rooms.format()), conn) {
                    warn!("roomwire: unreadable message, closing with {}", u16::from(code));
                    if conn.close(now(), code, "unreadable message").is_ok() {
                        ending.get_or_insert(Disconnect::Protocol(code));
                    }
                }
                Event::Invalid(error)
            }
        }
    }

    /// Writes, once open, the requests that restore the wanted rooms.
    async fn transmit(&mut self) -> Result<(), Disconnect> {
        let mut queued = false;
        while self.is_open() {
            match self.rooms.poll_transmit(self.scratch) {
                Ok(0) => break,
                Ok(n) => self.feed_scratch(n).await?,
                Err(e) => return Err(Disconnect::BufferTooSmall(e.required)),
            }
            queued = true;
        }
        if queued {
            self.ws.flush().await?;
        }
        Ok(())
    }

    /// Frames the first `n` bytes of `scratch` as one message (of the
    /// wire's kind) into the write buffer, flushing first if needed.
    async fn feed_scratch(&mut self, n: usize) -> Result<(), Disconnect> {
        let payload = self.scratch.get(..n).unwrap_or(&[]);
        let message = match self.rooms.message_kind() {
            MessageKind::Text => match core::str::from_utf8(payload) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(payload),
            },
            MessageKind::Binary => Message::Binary(payload),
        };
        Ok(self.ws.feed(message).await?)
    }

    /// Opens the TCP connection and sends the upgrade request.
    async fn start(&mut self) -> Result<(), Disconnect> {
        let n = self.rooms.connect_target(self.scratch).map_err(|e| Disconnect::BufferTooSmall(e.required))?;
        let target = core::str::from_utf8(self.scratch.get(..n).unwrap_or(&[])).map_err(|_| Disconnect::Resolve)?;
        self.ws.start(self.host, self.port, target, self.rooms.protocols(), self.headers).await?;
        self.phase = Phase::Handshake;
        Ok(())
    }

    /// Ends the current connection (the first recorded cause wins) and
    /// schedules the next one.
    async fn end(&mut self, why: Disconnect) -> Step {
        // Released first: cancelled there, the next call ends it again.
        self.ws.abort().await;
        let why = self.ending.take().unwrap_or(why);
        self.announce = false;
        self.rooms.closed();
        let random = u32::from_le_bytes(self.ws.keys().next_key());
        let (wait, step) = match self.reconnector.ended(now(), why.ending(), random) {
            Reconnect::Now => (Duration::ZERO, Step::Disconnected(why)),
            Reconnect::After(wait) => (wait, Step::Disconnected(why)),
            // Reported to the firmware; calling again goes on slowly.
            Reconnect::Stop(_) => (self.reconnector.resume_after_stop(), Step::Stopped(why)),
        };
        warn!("roomwire: disconnected, retrying in {} ms", wait.as_millis());
        self.phase = Phase::Idle(embassy_time::Instant::now() + duration(wait));
        step
    }
}
