//! The room client: one channel, a few rooms, over an embassy-net
//! [`TcpSocket`].
//!
//! A [`Client`] owns a TCP socket the firmware created (with its TCP
//! buffers), the core's [`ClientSession`] (the connection, the rooms it
//! wants and has joined, the reconnect policy), and four buffers the
//! firmware lends it ([`ClientBuffers`]). It is a loop that moves bytes,
//! time and randomness between the socket and the session: every decision
//! (the handshake, the rooms restored after a reconnect, the close code for
//! what the server broke, when to connect again) is the session's, the
//! same as in the tokio client. Nothing is allocated.
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
use embassy_net::tcp::TcpSocket;
use embassy_time::Timer;
use roomwire_core::client::{ClientError, ClientEvent, Requested, RoomClient, TargetBase};
use roomwire_core::payload::EncodeError;
use roomwire_core::reconnect::ReconnectPolicy;
use roomwire_core::session::{ClientSession, Next, Output, SessionConfig, SessionEvent, TransportError};
use roomwire_core::{Channel, Config, Duration, WireFormat};

pub use roomwire_core::session::Disconnect;

use crate::keys::{KeyRef, KeySource};
use crate::time::{duration, now, to_embassy};
use crate::transport::{Transport, Woke};
use crate::ws::{self, write_host};

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
    /// A query carried by every handshake before the rooms (`token=…`).
    pub query: Option<&'a str>,
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
    /// How long the server may leave a join or leave unanswered before the
    /// connection is replaced (`None`: forever).
    pub request_timeout: Option<Duration>,
    /// When to reconnect: the core's policy (exponential from 0.5 s to
    /// 30 s, full jitter drawn from the key source, unlimited).
    pub reconnect: ReconnectPolicy,
}

impl<'a> ClientConfig<'a> {
    /// Connect to `host:port` on the postcard wire, with the core's
    /// [`SessionConfig::default`] (a 30 s keepalive, 10 s connect and
    /// request timeouts, [`ReconnectPolicy::default`]) and a 10 s write
    /// timeout.
    pub fn new(host: &'a str, port: u16) -> Self {
        let session = SessionConfig::default();
        Self {
            host,
            port,
            format: WireFormat::Postcard,
            query: None,
            headers: &[],
            websocket: session.websocket,
            connect_timeout: session.connect_timeout,
            write_timeout: Duration::from_secs(10),
            request_timeout: session.request_timeout,
            reconnect: session.reconnect,
        }
    }
}

/// The buffers a client works in, lent by the firmware for the client's
/// life. Sizes are the firmware's choice:
///
/// * `read`: bytes read from the socket. Must hold the server's whole
///   handshake response (a few hundred bytes); messages stream through it.
/// * `write`: frames waiting for the socket. Must hold the handshake
///   request twice over (its target is built there) and the largest
///   message sent plus 14 bytes (messages are encoded in place).
/// * `message`: one whole received message (reassembly). Larger messages
///   are refused with close code 1009.
/// * `scratch`: decoding (a received Alepha message without its room
///   label, unescaped JSON strings), and the `Host` header while the
///   request is written.
#[derive(Debug)]
pub struct ClientBuffers<'b> {
    /// Socket input.
    pub read: &'b mut [u8],
    /// Socket output.
    pub write: &'b mut [u8],
    /// Whole-message reassembly.
    pub message: &'b mut [u8],
    /// Decoding.
    pub scratch: &'b mut [u8],
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
    /// The server sent a message the client cannot read: dropped, or, as
    /// [`ClientError::close_code`] decides, the connection closes (1002 on
    /// the roomwire wire, 1009 for one larger than `scratch`).
    Invalid(ClientError),
    /// The connection ended (or could not be made). The next call
    /// reconnects, after the delay the reconnect policy decides (after
    /// [`Client::close`]: once [`Client::reconnect`] is called).
    Disconnected(Disconnect),
    /// The connection ended in a way that retrying cannot help (a full
    /// room, refused credentials, an application close code: see
    /// [`Ending::is_final`](roomwire_core::reconnect::Ending::is_final)),
    /// or the policy's [`max_retries`](ReconnectPolicy::max_retries) ran
    /// out. The firmware decides: calling [`Client::next_event`] again
    /// starts over after the policy's longest delay.
    Stopped(Disconnect),
}

/// Why [`Client::send`], [`Client::join`] or [`Client::leave`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No open connection (connecting, or between connections).
    NotOpen,
    /// The core refused the call: not joined, invalid room or message, …
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
        match e {
            ClientError::NotOpen => Self::NotOpen,
            ClientError::Encode(EncodeError::InsufficientSize(e)) => Self::BufferTooSmall(e.required),
            e => Self::Client(e),
        }
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

/// What one turn of the loop produced, borrowing nothing.
enum Step {
    Report(Report),
    /// A whole message waits in the session.
    Message,
    Continue,
}

#[derive(Clone, Copy)]
enum Report {
    Connected(WireFormat),
    Disconnected(Disconnect),
    Stopped(Disconnect),
}

/// A reconnecting room client of channel `C`, in at most `N` rooms: see
/// the [module docs](self).
///
/// Its own state is the core's [`ClientSession`] (the
/// [`Connection`](roomwire_core::Connection), about 620 bytes, and the
/// [`RoomClient`], about 70 bytes per room) and a few words; the buffers
/// are the firmware's.
pub struct Client<'b, C: Channel, const N: usize, K: KeySource + ?Sized> {
    link: Transport<'b>,
    session: ClientSession<C, N, KeyRef<'b, K>, &'b mut [u8]>,
    host: &'b str,
    port: u16,
    query: Option<&'b str>,
    headers: &'b [(&'b str, &'b str)],
    scratch: &'b mut [u8],
    /// A connection ended: release the socket (cleanly or not), then
    /// report. Kept until reported, so a cancelled call loses nothing.
    ended: Option<(Report, bool)>,
}

impl<'b, C: Channel, const N: usize, K: KeySource + ?Sized> fmt::Debug for Client<'b, C, N, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("session", &self.session)
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
        let session = SessionConfig {
            websocket: config.websocket,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            reconnect: config.reconnect,
        };
        let rooms = RoomClient::with_rooms(config.format, rooms)?;
        Ok(Self {
            link: Transport::new(stack, socket, read, write, duration(config.write_timeout)),
            session: ClientSession::new(session, rooms, KeyRef(keys), message, now()),
            host: config.host,
            port: config.port,
            query: config.query,
            headers: config.headers,
            scratch,
            ended: None,
        })
    }

    /// The core room client: wanted and joined rooms, wire format.
    pub fn rooms(&self) -> &RoomClient<C, N> {
        self.session.rooms()
    }

    /// The server's close reason, after [`Disconnect::Closed`].
    pub fn close_reason(&self) -> &str {
        self.session.close_reason()
    }

    /// Whether a connection is open (typed messages can be sent).
    pub fn is_open(&self) -> bool {
        self.session.is_open()
    }

    /// Waits for the next event: connects (after the backoff, if the last
    /// attempt failed), reads, answers pings, keeps the connection alive,
    /// and returns what happened. Call it in a loop.
    ///
    /// Cancel safe: dropping the future before it completes loses nothing
    /// (bytes read stay buffered, bytes being written are written by the
    /// next call; a connect attempt in progress starts over).
    pub async fn next_event(&mut self) -> Event<'_, C::In<'_>> {
        loop {
            match self.step().await {
                Step::Report(Report::Connected(format)) => return Event::Connected { format },
                Step::Report(Report::Disconnected(why)) => return Event::Disconnected(why),
                Step::Report(Report::Stopped(why)) => return Event::Stopped(why),
                Step::Message => break,
                Step::Continue => {}
            }
        }
        match self.session.take_message(now(), &mut *self.scratch) {
            Some(SessionEvent::Room(event)) => Event::Room(event),
            Some(SessionEvent::Invalid(error)) => {
                warn!("roomwire: unreadable message");
                Event::Invalid(error)
            }
            // `Step::Message` means one is there.
            None => Event::Invalid(ClientError::NotOpen),
        }
    }

    /// Sends a typed message to the server's handler in `room`, which must
    /// be joined. Returns once the frame is in the socket's buffer.
    pub async fn send(&mut self, room: &str, message: &C::Out<'_>) -> Result<(), SendError> {
        let n = match self.session.send(room, message, self.link.spare()) {
            Err(ClientError::Encode(EncodeError::InsufficientSize(_))) if self.link.has_output() => {
                self.write_out().await?;
                self.session.send(room, message, self.link.spare())?
            }
            other => other?,
        };
        self.link.wrote(n);
        self.write_out().await
    }

    /// Joins `room`; it is restored after every reconnect. On the roomwire
    /// wire a request is sent if the connection is open (its answer comes
    /// as [`ClientEvent::Joined`] or [`ClientEvent::JoinFailed`]); on the
    /// Alepha wire the client reconnects with the new rooms
    /// ([`Requested::Reconnect`]).
    pub async fn join(&mut self, room: &str) -> Result<Requested, SendError> {
        self.write_out().await?;
        let requested = self.session.join(now(), room, self.link.spare())?;
        self.requested(requested).await
    }

    /// Leaves `room`, as [`Client::join`] joins it.
    pub async fn leave(&mut self, room: &str) -> Result<Requested, SendError> {
        self.write_out().await?;
        let requested = self.session.leave(now(), room, self.link.spare())?;
        self.requested(requested).await
    }

    /// Closes the connection (1000) and stays disconnected:
    /// [`Client::next_event`] finishes the closing handshake, reports
    /// [`Disconnect::Local`], and then only waits until
    /// [`Client::reconnect`].
    pub async fn close(&mut self) {
        self.session.disconnect(now());
        let _ = self.transmit().await;
    }

    /// Connects again now: closes the open connection (1000) and opens
    /// another, or skips the wait before the next attempt, or ends
    /// [`Client::close`].
    pub async fn reconnect(&mut self) {
        self.session.reconnect(now());
        let _ = self.transmit().await;
    }

    async fn requested(&mut self, requested: Requested) -> Result<Requested, SendError> {
        if let Requested::Sent { len, .. } = requested {
            self.link.wrote(len);
        }
        self.transmit().await?;
        Ok(requested)
    }

    /// Writes the write buffer out; a failure ends the connection.
    async fn write_out(&mut self) -> Result<(), SendError> {
        match self.link.write_out().await {
            Ok(()) => Ok(()),
            Err(error) => {
                self.session.transport_failed(now(), transport_error(error));
                Err(SendError::Disconnected)
            }
        }
    }

    /// Writes what the session owes: pongs, pings, closes, the requests
    /// that restore the rooms.
    async fn transmit(&mut self) -> Result<(), SendError> {
        loop {
            match self.session.poll_transmit(now(), self.link.spare()) {
                Ok(0) => break,
                Ok(n) => self.link.wrote(n),
                Err(_) if self.link.has_output() => self.write_out().await?,
                Err(e) => {
                    self.session.transport_failed(now(), TransportError::BufferTooSmall(e.required));
                    return Err(SendError::BufferTooSmall(e.required));
                }
            }
        }
        self.write_out().await
    }

    /// One turn: write what is owed, report what the session decided, read
    /// what arrived, else wait for bytes or the next deadline.
    async fn step(&mut self) -> Step {
        if let Some((report, clean)) = self.ended {
            self.link.release(clean).await;
            self.link.clear();
            self.ended = None;
            return Step::Report(report);
        }
        if self.session.is_live() {
            let _ = self.transmit().await;
        }
        if let Some(output) = self.session.poll(now()) {
            return match output {
                // Opened below.
                Output::Connect => Step::Continue,
                Output::Connected { format } => {
                    debug!("roomwire: connected");
                    Step::Report(Report::Connected(format))
                }
                Output::Disconnected { why, next } => {
                    let report = match next {
                        Next::Stopped(_) => Report::Stopped(why),
                        Next::After(wait) => {
                            warn!("roomwire: disconnected, retrying in {} ms", wait.as_millis());
                            Report::Disconnected(why)
                        }
                        Next::Offline => Report::Disconnected(why),
                    };
                    // Reported by the next turn, once the socket is released.
                    self.ended = Some((report, why.is_clean()));
                    Step::Continue
                }
            };
        }
        if self.session.wants_transport() && !self.session.is_live() {
            self.connect().await;
            return Step::Continue;
        }
        if self.session.is_live() && !self.link.input().is_empty() {
            let input = self.session.handle_input(now(), self.link.input());
            self.link.consume(input.consumed);
            if input.message {
                return Step::Message;
            }
            if input.consumed > 0 {
                return Step::Continue;
            }
        }
        let deadline = self.session.poll_timeout().map_or(embassy_time::Instant::MAX, to_embassy);
        if self.session.is_live() {
            match self.link.read(deadline).await {
                Ok(Woke::Input) => {}
                Ok(Woke::Deadline) => self.session.handle_timeout(now()),
                Err(error) => self.session.transport_failed(now(), transport_error(error)),
            }
        } else {
            Timer::at(deadline).await;
            self.session.handle_timeout(now());
        }
        Step::Continue
    }

    /// Opens the TCP connection (by the session's connect deadline) and
    /// writes the upgrade request.
    async fn connect(&mut self) {
        let deadline = self.session.poll_timeout().map_or(embassy_time::Instant::MAX, to_embassy);
        match self.link.open(self.host, self.port, deadline).await {
            Ok(()) => {}
            Err(ws::Error::ConnectTimeout) => return self.session.handle_timeout(now()),
            Err(error) => {
                warn!("roomwire: connect failed");
                return self.session.transport_failed(now(), transport_error(error));
            }
        }
        let base = TargetBase { prefix: "", query: self.query };
        let written = match write_host(self.host, self.port, self.scratch) {
            Ok(n) => {
                let host = core::str::from_utf8(self.scratch.get(..n).unwrap_or(&[])).unwrap_or("");
                self.session.start(now(), &base, host, self.headers, self.link.spare()).map_err(|e| e.required)
            }
            Err(ws::Error::BufferTooSmall(n)) => Err(n),
            Err(_) => Err(self.scratch.len() + 1),
        };
        match written {
            Ok(n) => self.link.wrote(n),
            Err(required) => self.session.transport_failed(now(), TransportError::BufferTooSmall(required)),
        }
    }
}

/// A transport failure as the session reads it.
fn transport_error(error: ws::Error) -> TransportError {
    match error {
        ws::Error::Resolve => TransportError::Resolve,
        ws::Error::Connect(_) | ws::Error::ConnectTimeout => TransportError::Connect,
        ws::Error::WriteTimeout => TransportError::WriteTimeout,
        ws::Error::BufferTooSmall(n) => TransportError::BufferTooSmall(n),
        _ => TransportError::Reset,
    }
}
