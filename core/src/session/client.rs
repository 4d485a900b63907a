//! The client session: a reconnecting room client.
//!
//! A [`ClientSession`] owns the WebSocket [`Connection`], the whole-message
//! [`MessageReader`], the [`RoomClient`] (the rooms wanted and joined) and
//! the [`Reconnector`]. An adapter moves bytes, time and randomness in and
//! carries out what comes back; it decides nothing:
//!
//! | the adapter | the session |
//! |---|---|
//! | opens a transport when [`poll`](ClientSession::poll) says [`Output::Connect`], then calls [`start`](ClientSession::start) and writes the upgrade request | writes the request target (rooms, prefix, query) and the subprotocols; gives up at the connect deadline |
//! | passes bytes read to [`handle_input`](ClientSession::handle_input), and takes each whole message with [`take_message`](ClientSession::take_message) | answers the handshake, detects an Alepha server, restores the rooms, reassembles and decodes messages, closes with the right code for whatever the server broke |
//! | writes what [`poll_transmit`](ClientSession::poll_transmit) returns | frames room requests, pongs, keepalive pings and closes |
//! | sleeps until [`poll_timeout`](ClientSession::poll_timeout), then calls [`handle_timeout`](ClientSession::handle_timeout) | handshake, keepalive, close and request deadlines |
//! | reports a broken transport with [`transport_failed`](ClientSession::transport_failed) | |
//! | drops the transport on [`Output::Disconnected`] | why it ended, and when to connect again (the reconnect policy, with jitter from the key source) |
//!
//! The tokio and the embassy clients are both such loops, so they behave
//! the same on every input.
//!
//! ```
//! use roomwire_core::session::{ClientSession, Output, SessionConfig};
//! use roomwire_core::{Instant, RoomClient, WireFormat};
//! # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
//! roomwire_core::channel! { /// Chat.
//!     pub struct Chat { path: "/ws/chat", in: M, out: M } }
//!
//! let now = Instant::ZERO;
//! let rooms = RoomClient::<Chat, 4>::with_rooms(WireFormat::Json, &["lobby"])?;
//! let mut seed = 7u32;
//! let keys = move || { seed = seed.wrapping_mul(747796405).wrapping_add(1); seed.to_le_bytes() };
//! let mut session = ClientSession::new(SessionConfig::default(), rooms, keys, [0u8; 512], now);
//! assert_eq!(session.poll(now), Some(Output::Connect));
//! // The transport is up: the upgrade request goes out first.
//! let mut out = [0u8; 512];
//! let n = session.start(now, &Default::default(), "example.com", &[], &mut out)?;
//! assert!(out[..n].starts_with(b"GET /ws/chat HTTP/1.1\r\nHost: example.com\r\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use crate::channel::Channel;
use crate::client::{
    CLOSE_LEAVING, CLOSE_REQUEST_TIMEOUT, ClientError, ClientEvent, Opened, Requested, RoomClient, TargetBase,
};
use crate::close::CloseCode;
use crate::connection::{Config, Connection, Control, Event, MaskKeySource, SendError, State, Timeout};
use crate::decoder::MessageKind;
use crate::deflate::Inflate;
use crate::error::{InsufficientSize, ProtocolError};
use crate::frame::apply_mask;
use crate::handshake::{ClientRequest, HandshakeError};
use crate::message::{MessageReader, ReadStep, Scratch, Storage};
use crate::payload::EncodeError;
use crate::reconnect::{Ending, Reconnect, ReconnectPolicy, Reconnector, Stop};
use crate::time::{Duration, Instant};
use crate::wire::WireFormat;

/// The longest frame header a client writes: 2 bytes, 8 of length, 4 of
/// mask. Messages are encoded this far into the output, then framed in
/// place.
const HEADER_ROOM: usize = 14;

/// The longest close reason kept (RFC 6455 §5.5: 123 bytes).
const MAX_REASON: usize = 123;

/// A session's limits, deadlines and reconnect policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// The WebSocket connection's limits and deadlines (handshake, close,
    /// keepalive). The default pings every 30 s.
    pub websocket: Config,
    /// How long opening the transport (TCP, and TLS) may take. Default 10 s.
    pub connect_timeout: Duration,
    /// How long the server may leave a join or leave unanswered before the
    /// connection is replaced ([`Disconnect::RequestTimeout`]); `None`:
    /// forever. Default 10 s.
    pub request_timeout: Option<Duration>,
    /// When to connect again.
    pub reconnect: ReconnectPolicy,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            websocket: super::connection_config(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(10)),
            reconnect: ReconnectPolicy::default(),
        }
    }
}

/// What an adapter saw go wrong with its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportError {
    /// The host name did not resolve.
    Resolve,
    /// The transport could not be opened (refused, unreachable, TLS
    /// failed).
    Connect,
    /// The transport broke: reset, or ended without a closing handshake.
    Reset,
    /// The transport ended in the middle of a frame from the server (a
    /// server gone mid-write, a cut link). Adapters report
    /// [`Reset`](Self::Reset); the session tells the two apart.
    Truncated,
    /// Written data stayed unacknowledged too long.
    WriteTimeout,
    /// A buffer of the adapter is too small for what had to go through it:
    /// this many bytes are needed.
    BufferTooSmall(usize),
}

/// Why a connection ended, or never opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disconnect {
    /// The transport failed ([`ClientSession::transport_failed`]).
    Transport(TransportError),
    /// The transport did not open within [`SessionConfig::connect_timeout`].
    ConnectTimeout,
    /// The server refused the upgrade, or answered with an invalid one.
    Handshake(HandshakeError),
    /// A deadline passed: the handshake, the closing handshake, or a
    /// keepalive ping left unanswered (a server that stopped answering).
    Timeout(Timeout),
    /// The server left a join or leave unanswered past
    /// [`SessionConfig::request_timeout`]; the client closed with
    /// [`CLOSE_REQUEST_TIMEOUT`].
    RequestTimeout,
    /// The server broke RFC 6455, or sent a message larger than the
    /// reader's storage: the client closed with this error's code.
    Protocol(ProtocolError),
    /// The server broke the rooms protocol: the client closed with
    /// [`ClientError::failure_code`] (1002, or 1009 for a message it
    /// cannot hold).
    Rooms(ClientError),
    /// The server closed the connection, with this code if it sent one
    /// (its reason: [`ClientSession::close_reason`]).
    Closed(Option<CloseCode>),
    /// The client closed the connection to open another at once: the rooms
    /// changed on the Alepha wire, the server turned out to speak only the
    /// Alepha wire, or [`ClientSession::reconnect`].
    Replaced,
    /// [`ClientSession::disconnect`] closed it.
    Local,
}

impl Disconnect {
    /// How the connection ended, as the reconnect policy reads it.
    ///
    /// ```
    /// use roomwire_core::reconnect::Ending;
    /// use roomwire_core::session::Disconnect;
    /// use roomwire_core::CloseCode;
    /// assert_eq!(Disconnect::Closed(Some(CloseCode::Policy)).ending(), Ending::Closed(Some(CloseCode::Policy)));
    /// assert_eq!(Disconnect::RequestTimeout.ending(), Ending::Broken);
    /// // A server on a wire the channel does not speak: no retry.
    /// let alepha = roomwire_core::client::ClientError::WireNotAllowed(roomwire_core::WireFormat::Alepha);
    /// assert!(Disconnect::Rooms(alepha).ending().is_final());
    /// ```
    pub fn ending(self) -> Ending {
        match self {
            Self::Handshake(HandshakeError::Rejected { status }) => Ending::Refused(status),
            // A server on a wire the channel cannot speak: as the close
            // the client sends for it (1003), final.
            Self::Rooms(ClientError::WireNotAllowed(_)) => Ending::Closed(Some(CloseCode::Unsupported)),
            Self::Protocol(_) | Self::Rooms(_) | Self::RequestTimeout => Ending::Broken,
            Self::Closed(code) => Ending::Closed(code),
            Self::Replaced | Self::Local => Ending::Replaced,
            Self::Transport(_) | Self::ConnectTimeout | Self::Handshake(_) | Self::Timeout(_) => Ending::Failed,
        }
    }
}

impl Disconnect {
    /// Whether a close frame ended the connection (sent, or exchanged):
    /// close the transport gracefully so that it is delivered, with what
    /// was sent before it. Otherwise reset it.
    ///
    /// ```
    /// use roomwire_core::session::{Disconnect, TransportError};
    /// assert!(Disconnect::Closed(None).is_clean());
    /// assert!(!Disconnect::Transport(TransportError::Reset).is_clean());
    /// ```
    pub fn is_clean(self) -> bool {
        matches!(
            self,
            Self::Closed(_) | Self::Protocol(_) | Self::Rooms(_) | Self::RequestTimeout | Self::Replaced | Self::Local
        )
    }
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(TransportError::Resolve) => f.write_str("host did not resolve"),
            Self::Transport(TransportError::Connect) => f.write_str("connect failed"),
            Self::Transport(TransportError::Reset) => f.write_str("connection reset"),
            Self::Transport(TransportError::Truncated) => f.write_str("connection ended mid-frame"),
            Self::Transport(TransportError::WriteTimeout) => f.write_str("write timed out"),
            Self::Transport(TransportError::BufferTooSmall(n)) => write!(f, "buffer too small: {n} bytes required"),
            Self::ConnectTimeout => f.write_str("connect timed out"),
            Self::Handshake(e) => fmt::Display::fmt(e, f),
            Self::Timeout(Timeout::Handshake) => f.write_str("opening handshake timed out"),
            Self::Timeout(Timeout::Close) => f.write_str("closing handshake timed out"),
            Self::Timeout(Timeout::Keepalive) => f.write_str("server stopped answering pings"),
            Self::Timeout(Timeout::Message) => f.write_str("server did not finish a message in time"),
            Self::RequestTimeout => f.write_str("server did not answer a room request in time"),
            Self::Protocol(e) => write!(f, "server broke the WebSocket protocol ({e})"),
            Self::Rooms(e) => write!(f, "server broke the rooms protocol: {e}"),
            Self::Closed(Some(code)) => write!(f, "server closed the connection ({})", u16::from(*code)),
            Self::Closed(None) => f.write_str("server closed the connection"),
            Self::Replaced => f.write_str("reconnecting"),
            Self::Local => f.write_str("closed by the client"),
        }
    }
}

/// What the session does after a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Connect again after this delay ([`Duration::ZERO`]: at once).
    After(Duration),
    /// Stay disconnected until [`ClientSession::reconnect`]
    /// ([`ClientSession::disconnect`] was called).
    Offline,
    /// The reconnect policy stopped: the ending was final (a full room,
    /// refused credentials, an application close) or the retries ran out.
    /// Report it; if the session is driven on anyway, it connects again
    /// after the policy's longest delay.
    Stopped(Stop),
}

/// What the adapter must do, or may report ([`ClientSession::poll`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Open a transport to the server now, then call
    /// [`ClientSession::start`] (or [`ClientSession::transport_failed`]).
    Connect,
    /// The connection is open on this wire; the requests restoring the
    /// wanted rooms come from [`ClientSession::poll_transmit`].
    Connected {
        /// The wire the server selected.
        format: WireFormat,
    },
    /// The connection ended (or never opened): close the transport, if
    /// any.
    Disconnected {
        /// Why.
        why: Disconnect,
        /// What happens next.
        next: Next,
    },
}

/// What a server message meant ([`ClientSession::handle_input`]).
#[derive(Debug)]
pub enum SessionEvent<'a, M> {
    /// A room answer or a typed message.
    Room(ClientEvent<'a, M>),
    /// A message the client cannot read. It was dropped, or, when the
    /// error has a [`close_code`](ClientError::close_code) on this wire,
    /// the connection is closing with it.
    Invalid(ClientError),
}

/// What [`ClientSession::handle_input`] did with its input.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    /// Bytes used; drop them from the front of the buffer. `0` with no
    /// message: read more.
    pub consumed: usize,
    /// A whole message arrived: [`ClientSession::take_message`] decodes it.
    pub message: bool,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connect again at this time.
    Waiting(Instant),
    /// Disconnected until [`ClientSession::reconnect`].
    Offline,
    /// The adapter is opening a transport; give up at this time.
    Connecting(Instant),
    /// A connection exists (handshake, open or closing).
    Live,
}

/// The connection, or the key source between connections.
// Inline on purpose: the core has no heap to box the connection in, and
// the idle variant is only held between connections.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Link<K> {
    Idle(K),
    Live(Connection<K>),
    /// Only while one is turned into the other.
    Moving,
}

/// The request deadline, stopped while the adapter is not reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestClock {
    Idle,
    Running(Instant),
    /// Paused this long before the deadline.
    Paused(Duration),
}

/// A reconnecting room client of channel `C` in at most `N` rooms, sans
/// IO: see the [module docs](self). `K` supplies masking keys, handshake
/// nonces and reconnect jitter; `S` holds a fragmented message while it is
/// reassembled.
pub struct ClientSession<C: Channel, const N: usize, K, S> {
    config: SessionConfig,
    link: Link<K>,
    reader: MessageReader<S>,
    rooms: RoomClient<C, N>,
    reconnector: Reconnector,
    phase: Phase,
    /// Why the current connection is ending (the first cause wins).
    ending: Option<Disconnect>,
    /// The server's close reason.
    reason: heapless::String<MAX_REASON>,
    /// Something to report from [`ClientSession::poll`].
    output: Option<Output>,
    /// Open: report [`Output::Connected`] once the restoring requests are
    /// out.
    announce: bool,
    /// [`ClientSession::disconnect`] was called, [`ClientSession::reconnect`]
    /// not since.
    offline: bool,
    requests: RequestClock,
    /// [`ClientSession::handle_input`] completed a message not yet taken.
    message_ready: bool,
}

impl<C: Channel, const N: usize, K, S> fmt::Debug for ClientSession<C, N, K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSession")
            .field("phase", &self.phase)
            .field("rooms", &self.rooms)
            .field("ending", &self.ending)
            .finish_non_exhaustive()
    }
}

impl<C: Channel, const N: usize, K: MaskKeySource, S: Storage> ClientSession<C, N, K, S> {
    /// A session wanting `rooms`' rooms on its wire; the first
    /// [`poll`](Self::poll) asks for a transport. `storage` bounds the
    /// largest message received (a larger one closes with 1009).
    pub fn new(config: SessionConfig, rooms: RoomClient<C, N>, keys: K, storage: S, now: Instant) -> Self {
        let mut config = config;
        let limit = u64::try_from(storage.limit()).unwrap_or(u64::MAX);
        config.websocket.max_message_size = config.websocket.max_message_size.min(limit);
        Self {
            config,
            link: Link::Idle(keys),
            reader: MessageReader::copying(storage),
            reconnector: Reconnector::new(config.reconnect),
            rooms,
            phase: Phase::Connecting(now + config.connect_timeout),
            ending: None,
            reason: heapless::String::new(),
            output: Some(Output::Connect),
            announce: false,
            offline: false,
            requests: RequestClock::Idle,
            message_ready: false,
        }
    }

    /// The rooms wanted and joined, and the wire.
    pub fn rooms(&self) -> &RoomClient<C, N> {
        &self.rooms
    }

    /// The wire of the current (or next) connection.
    pub fn format(&self) -> WireFormat {
        self.rooms.format()
    }

    /// The configuration (its `max_message_size` capped at the storage).
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The reconnect policy's state (failures in a row).
    pub fn reconnector(&self) -> &Reconnector {
        &self.reconnector
    }

    /// Whether typed messages can be sent now.
    pub fn is_open(&self) -> bool {
        self.ending.is_none() && self.rooms.is_open() && matches!(&self.link, Link::Live(conn) if conn.can_send())
    }

    /// Whether a transport is wanted now: connecting or connected.
    pub fn wants_transport(&self) -> bool {
        matches!(self.phase, Phase::Connecting(_) | Phase::Live)
    }

    /// Whether the session stays disconnected until
    /// [`reconnect`](Self::reconnect) ([`disconnect`](Self::disconnect)
    /// was called and the connection is over).
    pub fn is_offline(&self) -> bool {
        self.phase == Phase::Offline
    }

    /// Whether the transport is open and carrying the handshake or a
    /// connection ([`ClientSession::start`] was called).
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// The server's close reason for the last [`Disconnect::Closed`].
    pub fn close_reason(&self) -> &str {
        &self.reason
    }

    /// The key source: masking keys, nonces, jitter. Adapters that need
    /// randomness of their own draw it here too.
    pub fn keys_mut(&mut self) -> Option<&mut K> {
        match &mut self.link {
            Link::Idle(keys) => Some(keys),
            Link::Live(conn) => Some(conn.keys_mut()),
            Link::Moving => None,
        }
    }

    /// What to do or report next, in order; call after every input and
    /// timeout (and after writing [`poll_transmit`](Self::poll_transmit)'s
    /// output) until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<Output> {
        if let Some(output) = self.output.take() {
            return Some(output);
        }
        match self.phase {
            Phase::Waiting(at) if now >= at => {
                self.phase = Phase::Connecting(now + self.config.connect_timeout);
                Some(Output::Connect)
            }
            Phase::Live => {
                let closed = matches!(&self.link, Link::Live(conn) if conn.state() == State::Closed);
                if closed {
                    self.finish(now);
                    return self.output.take();
                }
                if self.announce && self.ending.is_none() {
                    self.announce = false;
                    return Some(Output::Connected { format: self.rooms.format() });
                }
                None
            }
            Phase::Waiting(_) | Phase::Offline | Phase::Connecting(_) => None,
        }
    }

    /// The transport is open: writes the upgrade request into `out` (send
    /// it first). `host` is the `Host` header (`host` or `host:port`),
    /// `base` the URL's path prefix and query, `headers` extra header
    /// lines (`Authorization`, `Cookie`, `Origin` …).
    ///
    /// On [`InsufficientSize`] nothing changed: grow `out` and call again,
    /// or give up with [`TransportError::BufferTooSmall`].
    pub fn start(
        &mut self,
        now: Instant,
        base: &TargetBase<'_>,
        host: &str,
        headers: &[(&str, &str)],
        out: &mut [u8],
    ) -> Result<usize, InsufficientSize> {
        if !matches!(self.phase, Phase::Connecting(_)) {
            return Ok(0);
        }
        // The target is written at the end of `out`, the request before it.
        let target_len = self.rooms.connect_target_in(*base, out)?.min(out.len());
        let split = out.len() - target_len;
        out.copy_within(..target_len, split);
        let (head, tail) = out.split_at_mut(split);
        let target = core::str::from_utf8(tail).unwrap_or("/");
        let Link::Idle(keys) = core::mem::replace(&mut self.link, Link::Moving) else {
            return Ok(0);
        };
        let mut conn = Connection::client(self.config.websocket, now, keys);
        let request = ClientRequest { host, target, protocols: self.rooms.protocols(), headers };
        match conn.write_request(&request, head) {
            Ok(n) => {
                self.link = Link::Live(conn);
                self.phase = Phase::Live;
                self.reader.reset();
                Ok(n)
            }
            Err(error) => {
                self.link = Link::Idle(conn.into_keys());
                let required = match error {
                    SendError::Buffer(e) => e.required,
                    _ => 0,
                };
                Err(InsufficientSize { required: required.saturating_add(target_len).max(out.len() + 1) })
            }
        }
    }

    /// The transport failed, or ended. Ends the connection (or the
    /// attempt) unless it already ended for another reason.
    pub fn transport_failed(&mut self, now: Instant, error: TransportError) {
        if !self.wants_transport() {
            return;
        }
        let error = match (&self.link, error) {
            (Link::Live(conn), TransportError::Reset) if conn.is_mid_frame() => TransportError::Truncated,
            (_, error) => error,
        };
        self.ending.get_or_insert(Disconnect::Transport(error));
        self.finish(now);
    }

    /// Feed bytes read from the transport: the handshake's answer, frames.
    /// Drop `consumed` bytes from the front of the buffer and call again on
    /// the rest while `consumed > 0`; when [`Input::message`] is set, take
    /// the message with [`take_message`](Self::take_message) first.
    pub fn handle_input(&mut self, now: Instant, input: &mut [u8]) -> Input {
        self.read(now, input, None)
    }

    /// [`handle_input`](Self::handle_input) on a connection that agreed to
    /// permessage-deflate ([`deflate`](Self::deflate)): compressed
    /// messages go through `inflater` (feature `deflate`).
    #[cfg(feature = "deflate")]
    pub fn handle_input_inflating(&mut self, now: Instant, input: &mut [u8], inflater: &mut dyn Inflate) -> Input {
        self.read(now, input, Some(inflater))
    }

    /// permessage-deflate as agreed on the open connection, if it was.
    pub fn deflate(&self) -> Option<&crate::deflate::Deflate> {
        match &self.link {
            Link::Live(conn) => conn.deflate(),
            _ => None,
        }
    }

    fn read(&mut self, now: Instant, input: &mut [u8], inflater: Option<&mut dyn Inflate>) -> Input {
        // A message not taken by now is dropped.
        self.message_ready = false;
        let Self { link, reader, rooms, ending, reason, announce, .. } = self;
        let Link::Live(conn) = link else {
            return Input { consumed: 0, message: false };
        };
        let (consumed, step) = reader.step(conn, now, input, inflater);
        let mut message = false;
        match step {
            None => {}
            Some(ReadStep::Control(Control::Close)) => {
                if let Event::Close { code, reason: text } = conn.control_event(Control::Close) {
                    reason.clear();
                    let _ = reason.push_str(text);
                    ending.get_or_insert(Disconnect::Closed(code));
                }
            }
            Some(ReadStep::Control(Control::Ping | Control::Pong)) => {}
            Some(ReadStep::Event(Event::Open { protocol })) => match rooms.opened(protocol) {
                Ok(Opened::Ready) => *announce = true,
                Ok(Opened::Reconnect) => {
                    // No roomwire on this server: ask again for the rooms
                    // on the Alepha wire.
                    let _ = conn.close(now, CLOSE_LEAVING, "");
                    ending.get_or_insert(Disconnect::Replaced);
                }
                Err(error) => {
                    let reason = match error {
                        ClientError::WireNotAllowed(_) => "wire not spoken by this channel",
                        _ => "subprotocol not offered",
                    };
                    let _ = conn.close(now, error.failure_code(rooms.format()), reason);
                    ending.get_or_insert(Disconnect::Rooms(error));
                }
            },
            Some(ReadStep::Event(Event::HandshakeFailed(error))) => {
                ending.get_or_insert(Disconnect::Handshake(error));
            }
            Some(ReadStep::Event(Event::ProtocolError(error))) => {
                ending.get_or_insert(Disconnect::Protocol(error));
            }
            Some(ReadStep::Event(_)) => {}
            // Copied into the reader's storage: the input can be compacted
            // before the message is taken.
            Some(ReadStep::Message(_)) => message = true,
        }
        self.message_ready = message;
        Input { consumed, message }
    }

    /// The size of the message [`handle_input`](Self::handle_input)
    /// reported, as it arrived (after any inflating), while it waits to be
    /// taken: what an adapter that queues decoded messages counts them by.
    pub fn message_len(&self) -> Option<usize> {
        self.message_ready.then(|| self.reader.last_message().map(|m| m.bytes().len())).flatten()
    }

    /// Decode the message [`handle_input`](Self::handle_input) reported,
    /// with `scratch` as working memory (a `Vec<u8>` grows as needed; a
    /// slice too small for the message closes the connection with 1009).
    /// `None` if there is none, or it was taken.
    pub fn take_message<'a, T: Scratch + ?Sized>(
        &'a mut self,
        now: Instant,
        scratch: &'a mut T,
    ) -> Option<SessionEvent<'a, C::In<'a>>> {
        if !core::mem::take(&mut self.message_ready) {
            return None;
        }
        let Self { link, reader, rooms, ending, requests, config, .. } = self;
        let data = reader.last_message()?.bytes();
        let format = rooms.format();
        Some(match rooms.handle_message(data, scratch.space(data.len())) {
            Ok(event) => {
                let answer = matches!(
                    event,
                    ClientEvent::Joined(_)
                        | ClientEvent::Left(_)
                        | ClientEvent::JoinFailed { .. }
                        | ClientEvent::LeaveFailed { .. }
                );
                if answer {
                    // Each answer gives the server a new period for the rest.
                    *requests = RequestClock::Idle;
                    if rooms.pending_requests() > 0 {
                        start_clock(requests, config.request_timeout, now);
                    }
                }
                SessionEvent::Room(event)
            }
            Err(error) => {
                if let (Some(code), Link::Live(conn)) = (error.close_code(format), link)
                    && conn.close(now, code, "unreadable message").is_ok()
                {
                    ending.get_or_insert(Disconnect::Rooms(error));
                }
                SessionEvent::Invalid(error)
            }
        })
    }

    /// Write the next bytes to send into `out` (a buffer of 256 bytes
    /// holds any control frame; room requests need up to about 300 on the
    /// JSON wires): pongs, pings and closes first, then the requests that
    /// restore the wanted rooms. `Ok(0)`: nothing to send. Call until
    /// `Ok(0)` after every input, timeout and call that changes rooms.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Result<usize, InsufficientSize> {
        let Link::Live(conn) = &mut self.link else { return Ok(0) };
        let n = conn.poll_transmit(out)?;
        if n > 0 || !conn.can_send() || self.ending.is_some() {
            return Ok(n);
        }
        let rooms = &mut self.rooms;
        match frame_with(conn, rooms.message_kind(), out, &mut |body| Ok(rooms.poll_transmit(body)?)) {
            Ok(0) => Ok(0),
            Ok(n) => {
                if self.requests == RequestClock::Idle {
                    start_clock(&mut self.requests, self.config.request_timeout, now);
                }
                Ok(n)
            }
            Err(ClientError::Encode(EncodeError::InsufficientSize(e))) => Err(e),
            // Nothing else can fail: the connection can send.
            Err(_) => Ok(0),
        }
    }

    /// The next deadline, if any: call [`handle_timeout`](Self::handle_timeout)
    /// then.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting(at) | Phase::Connecting(at) => Some(at),
            Phase::Offline => None,
            Phase::Live => {
                let conn = match &self.link {
                    Link::Live(conn) => conn.poll_timeout(),
                    _ => None,
                };
                let request = match self.requests {
                    RequestClock::Running(at) if self.ending.is_none() => Some(at),
                    _ => None,
                };
                match (conn, request) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Let time pass: deadlines that are due fire. Early or repeated calls
    /// do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Connecting(at) if now >= at => {
                self.ending.get_or_insert(Disconnect::ConnectTimeout);
                self.finish(now);
            }
            Phase::Live => {
                let Link::Live(conn) = &mut self.link else { return };
                if let Some(timeout) = conn.handle_timeout(now) {
                    self.ending.get_or_insert(Disconnect::Timeout(timeout));
                }
                if let RequestClock::Running(at) = self.requests
                    && now >= at
                    && self.ending.is_none()
                {
                    self.requests = RequestClock::Idle;
                    if conn.close(now, CLOSE_REQUEST_TIMEOUT, "request timed out").is_ok() {
                        self.ending = Some(Disconnect::RequestTimeout);
                    }
                }
            }
            Phase::Waiting(_) | Phase::Connecting(_) | Phase::Offline => {}
        }
    }

    /// Whether the adapter is reading: while it is not (its application
    /// is not keeping up), answers may be waiting unread, so the request
    /// deadline stands still.
    pub fn set_reading(&mut self, now: Instant, reading: bool) {
        self.requests = match (self.requests, reading) {
            (RequestClock::Running(at), false) => RequestClock::Paused(at.saturating_duration_since(now)),
            (RequestClock::Paused(left), true) => RequestClock::Running(now + left),
            (clock, _) => clock,
        };
    }

    /// Frame a typed message to the server's handler in `room` (which must
    /// be joined) into `out`, returning its length.
    pub fn send(&mut self, room: &str, message: &C::Out<'_>, out: &mut [u8]) -> Result<usize, ClientError> {
        let (conn, rooms) = self.open_parts()?;
        frame_with(conn, rooms.message_kind(), out, &mut |body| rooms.send(room, message, body))
    }

    /// [`send`](Self::send) for a payload already encoded as the
    /// channel's `Out` on this wire's encoding (see
    /// [`RoomClient::send_encoded`]).
    pub fn send_encoded(&mut self, room: &str, payload: &[u8], out: &mut [u8]) -> Result<usize, ClientError> {
        let (conn, rooms) = self.open_parts()?;
        frame_with(conn, rooms.message_kind(), out, &mut |body| rooms.send_encoded(room, payload, body))
    }

    /// Join `room`; it is restored after every reconnect. On the roomwire
    /// wire, if the connection is open, the request is framed into `out`
    /// ([`Requested::Sent`], `len` bytes to send); on the Alepha wire the
    /// connection closes to reconnect with the new rooms
    /// ([`Requested::Reconnect`]).
    pub fn join(&mut self, now: Instant, room: &str, out: &mut [u8]) -> Result<Requested, ClientError> {
        self.request(now, out, |rooms, body| rooms.join(room, body))
    }

    /// Leave `room`, as [`join`](Self::join) joins it.
    pub fn leave(&mut self, now: Instant, room: &str, out: &mut [u8]) -> Result<Requested, ClientError> {
        self.request(now, out, |rooms, body| rooms.leave(room, body))
    }

    /// Close the connection (1000) and stay disconnected until
    /// [`reconnect`](Self::reconnect). An attempt in progress is abandoned:
    /// [`poll`](Self::poll) reports [`Output::Disconnected`] with
    /// [`Next::Offline`] when the closing handshake is done (at once if
    /// there is no connection).
    pub fn disconnect(&mut self, now: Instant) {
        self.offline = true;
        match self.phase {
            Phase::Live => self.close_for(now, Disconnect::Local),
            Phase::Connecting(_) => {
                self.ending.get_or_insert(Disconnect::Local);
                self.finish(now);
            }
            Phase::Waiting(_) => {
                self.phase = Phase::Offline;
                self.output = Some(Output::Disconnected { why: Disconnect::Local, next: Next::Offline });
            }
            Phase::Offline => {}
        }
    }

    /// Connect again now: close the open connection (1000) and open
    /// another, or skip the wait before the next attempt, or end
    /// [`disconnect`](Self::disconnect). The failure count starts over.
    pub fn reconnect(&mut self, now: Instant) {
        self.offline = false;
        self.reconnector.restart();
        match self.phase {
            Phase::Live => self.close_for(now, Disconnect::Replaced),
            Phase::Waiting(_) | Phase::Offline => {
                self.phase = Phase::Connecting(now + self.config.connect_timeout);
                self.output = Some(Output::Connect);
            }
            Phase::Connecting(_) => {}
        }
    }

    /// The connection and the room client, if messages can be sent.
    fn open_parts(&mut self) -> Result<(&mut Connection<K>, &mut RoomClient<C, N>), ClientError> {
        match &mut self.link {
            Link::Live(conn) if conn.can_send() && self.ending.is_none() && self.rooms.is_open() => {
                Ok((conn, &mut self.rooms))
            }
            _ => Err(ClientError::NotOpen),
        }
    }

    fn request(
        &mut self,
        now: Instant,
        out: &mut [u8],
        mut request: impl FnMut(&mut RoomClient<C, N>, &mut [u8]) -> Result<Requested, ClientError>,
    ) -> Result<Requested, ClientError> {
        let live = match &mut self.link {
            Link::Live(conn) if conn.can_send() && self.ending.is_none() => Some(conn),
            _ => None,
        };
        let Some(conn) = live else {
            // Not open: the wanted rooms change; the next connection asks
            // for them.
            return request(&mut self.rooms, &mut []);
        };
        let rooms = &mut self.rooms;
        let mut outcome = Requested::NotSent;
        let len = frame_with(conn, rooms.message_kind(), out, &mut |body| {
            outcome = request(rooms, body)?;
            Ok(match outcome {
                Requested::Sent { len, .. } => len,
                Requested::NotSent | Requested::Reconnect => 0,
            })
        })?;
        match outcome {
            Requested::Sent { reference, .. } => {
                if self.requests == RequestClock::Idle {
                    start_clock(&mut self.requests, self.config.request_timeout, now);
                }
                Ok(Requested::Sent { reference, len })
            }
            Requested::Reconnect => {
                self.close_for(now, Disconnect::Replaced);
                Ok(Requested::Reconnect)
            }
            Requested::NotSent => Ok(Requested::NotSent),
        }
    }

    /// Start the closing handshake for `why`.
    fn close_for(&mut self, now: Instant, why: Disconnect) {
        let Link::Live(conn) = &mut self.link else { return };
        // Not open yet (or closing already): the transport is dropped.
        if conn.close(now, CLOSE_LEAVING, "").is_ok() || conn.state() != State::Closing {
            self.ending.get_or_insert(why);
        }
        if conn.state() != State::Open && conn.state() != State::Closing {
            self.finish(now);
        }
    }

    /// The connection (or attempt) is over: decide what comes next.
    fn finish(&mut self, now: Instant) {
        let why = self.ending.take().unwrap_or(Disconnect::Transport(TransportError::Reset));
        if !matches!(why, Disconnect::Closed(_)) {
            self.reason.clear();
        }
        self.link = match core::mem::replace(&mut self.link, Link::Moving) {
            Link::Live(conn) => Link::Idle(conn.into_keys()),
            other => other,
        };
        self.rooms.closed();
        self.reader.reset();
        self.message_ready = false;
        self.announce = false;
        self.requests = RequestClock::Idle;
        let random = match &mut self.link {
            Link::Idle(keys) => u32::from_le_bytes(keys.next_key()),
            _ => 0,
        };
        let decision = self.reconnector.ended(now, why.ending(), random);
        let next = if self.offline {
            self.phase = Phase::Offline;
            Next::Offline
        } else {
            match decision {
                Reconnect::Now => {
                    self.phase = Phase::Waiting(now);
                    Next::After(Duration::ZERO)
                }
                Reconnect::After(wait) => {
                    self.phase = Phase::Waiting(now + wait);
                    Next::After(wait)
                }
                Reconnect::Stop(stop) => {
                    self.phase = Phase::Waiting(now + self.reconnector.resume_after_stop());
                    Next::Stopped(stop)
                }
            }
        };
        self.output = Some(Output::Disconnected { why, next });
    }
}

/// Note when the server's answers are due, if requests time out.
fn start_clock(clock: &mut RequestClock, timeout: Option<Duration>, now: Instant) {
    if let Some(timeout) = timeout {
        *clock = RequestClock::Running(now + timeout);
    }
}

/// Frame as one message (of `kind`) the payload `encode` writes, in `out`
/// itself: the payload is encoded [`HEADER_ROOM`] bytes in, then moved
/// behind its header and masked. `Ok(0)` if `encode` wrote nothing.
///
/// `encode` is a trait object so that a firmware links one copy of this
/// for its messages and its requests, not one per payload.
fn frame_with<K: MaskKeySource>(
    conn: &mut Connection<K>,
    kind: MessageKind,
    out: &mut [u8],
    encode: &mut dyn FnMut(&mut [u8]) -> Result<usize, ClientError>,
) -> Result<usize, ClientError> {
    let shifted = |e: ClientError| match e {
        ClientError::Encode(EncodeError::InsufficientSize(e)) => {
            ClientError::from(InsufficientSize { required: e.required.saturating_add(HEADER_ROOM) })
        }
        other => other,
    };
    let Some(body) = out.get_mut(HEADER_ROOM..) else {
        // Measure what the payload needs with an empty body.
        let _ = encode(&mut []).map_err(shifted)?;
        return Err(InsufficientSize { required: HEADER_ROOM + 1 }.into());
    };
    let len = encode(body).map_err(shifted)?;
    if len == 0 || len > body.len() {
        return Ok(0);
    }
    let mut header = [0u8; HEADER_ROOM];
    let (header_len, mask) = conn.send_header(kind, len as u64, true, &mut header).map_err(|e| match e {
        SendError::Buffer(e) => ClientError::from(e),
        _ => ClientError::NotOpen,
    })?;
    out.copy_within(HEADER_ROOM..HEADER_ROOM + len, header_len);
    let (head, rest) = out.split_at_mut(header_len);
    if let Some(header) = header.get(..header_len) {
        head.copy_from_slice(header);
    }
    if let (Some(mask), Some(payload)) = (mask, rest.get_mut(..len)) {
        apply_mask(payload, mask, 0);
    }
    Ok(header_len + len)
}
