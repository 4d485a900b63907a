//! The connection state machine, both roles.
//!
//! [`Connection`] owns no socket, no clock and no buffer of payload. It is
//! driven by four kinds of calls:
//!
//! * **inputs**: [`Connection::handle_input`] (bytes read from the peer)
//!   and [`Connection::handle_timeout`] (time passed);
//! * **outputs**: [`Connection::poll_transmit`] (control frames and
//!   handshake refusals the connection wants sent) and
//!   [`Connection::poll_timeout`] (the next deadline);
//! * **actions**: [`Connection::accept`], [`Connection::refuse`],
//!   [`Connection::write_request`], [`Connection::send`],
//!   [`Connection::send_fragment`], [`Connection::ping`],
//!   [`Connection::close`]; each writes into a buffer the caller owns and
//!   reports [`InsufficientSize`] (leaving it untouched) when too small;
//! * **getters**: [`Connection::state`], [`Connection::role`], …
//!
//! # The driving loop
//!
//! After every input, drain outputs before waiting again:
//!
//! 1. Read bytes from the socket and append them to your read buffer.
//! 2. Call `handle_input(now, &mut buf[..])` and handle its event; drop
//!    `consumed` bytes from the front of the buffer. Repeat while it returns
//!    an event. `event: None` means the connection needs more bytes: keep
//!    the unconsumed rest (during the handshake it is an incomplete header
//!    section) and read again.
//! 3. Call `poll_transmit` until it returns `Ok(0)`; write what it gave.
//!    The connection owes a pong only for the latest ping (RFC 6455
//!    §5.5.3), so a burst of pings handled in one go is answered once; to
//!    answer every ping, drain `poll_transmit` after each [`Event::Ping`].
//! 4. When [`Connection::state`] is [`State::Closed`], close the socket.
//! 5. Sleep until bytes arrive or [`Connection::poll_timeout`] passes; on the
//!    timeout call `handle_timeout(now)` and go to 3. Spurious or early
//!    calls are harmless.
//!
//! `now` must never go backwards. Masking keys (client role) come from the
//! [`MaskKeySource`] the adapter supplies: RFC 6455 §10.3 requires them to
//! be unpredictable, so there is no default generator.
//!
//! ```
//! use roomwire_core::{Config, Connection, Event, Instant, Message, MessageKind, State};
//! use roomwire_core::handshake::ClientRequest;
//!
//! let now = Instant::ZERO;
//! let mut rng = 0x1234_5678u32;
//! let keys = move || { rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223); rng.to_le_bytes() };
//! let mut client = Connection::client(Config::default(), now, keys);
//! let mut server = Connection::server(Config::default(), now);
//! let mut wire = [0u8; 512];
//!
//! // Client → server: the Upgrade request.
//! let req = ClientRequest { host: "localhost", target: "/chat", protocols: &[], headers: &[] };
//! let n = client.write_request(&req, &mut wire).unwrap();
//! let got = server.handle_input(now, &mut wire[..n]);
//! assert!(matches!(got.event, Some(Event::Request(r)) if r.path() == "/chat"));
//!
//! // Server → client: 101.
//! let n = server.accept(now, None, &[], &mut wire).unwrap();
//! let got = client.handle_input(now, &mut wire[..n]);
//! assert!(matches!(got.event, Some(Event::Open { protocol: None })));
//!
//! // A message, masked by the client, unmasked in place by the server.
//! let n = client.send(Message::Text("hi"), &mut wire).unwrap();
//! let got = server.handle_input(now, &mut wire[..n]);
//! assert_eq!(got.event, Some(Event::Data {
//!     kind: MessageKind::Text, payload: b"hi", message_start: true, message_end: true, compressed: false,
//! }));
//! assert_eq!(server.state(), State::Open);
//! ```

use crate::close::{CloseCode, parse_close_payload};
use crate::decoder::{Decoded, DecoderLimits, FrameDecoder, MessageKind, Role};
use crate::deflate::Deflate;
use crate::error::{InsufficientSize, ProtocolError};
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, Opcode, apply_mask};
use crate::handshake::{self, ClientRequest, HandshakeError, Request};
use crate::time::{Duration, Instant};
use core::fmt;

/// Longest close reason that fits a control frame with its code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Room for the subprotocols a client offers, comma-joined.
pub const MAX_OFFERED_PROTOCOLS: usize = 192;

/// Limits and deadlines of one connection. Every field has a safe default.
/// A timeout so long that its deadline would pass the end of
/// [`Instant`]'s range (about 584 000 years) is no deadline at all.
///
/// ```
/// use roomwire_core::{Config, Duration};
/// let config = Config { keepalive_interval: Some(Duration::from_secs(30)), ..Config::default() };
/// assert_eq!(config.max_message_size, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Largest message accepted, in bytes; larger ones close with 1009.
    /// Default 1 MiB (as Alepha).
    pub max_message_size: u64,
    /// Most frames one message may span; more close with 1009. Default 4096.
    pub max_fragments: u32,
    /// Largest handshake header section, in bytes. Default 8 KiB.
    pub max_handshake_size: usize,
    /// How long the opening handshake may take. Default 10 s.
    pub handshake_timeout: Option<Duration>,
    /// Server: how long to wait for the first byte of the request; a
    /// client silent that long is answered 408 as at `handshake_timeout`.
    /// Shorter than the whole handshake, so connections that never speak
    /// free their place soon. Default 3 s.
    pub first_byte_timeout: Option<Duration>,
    /// How long to wait for the peer's close frame after sending ours.
    /// Default 5 s.
    pub close_timeout: Duration,
    /// How long a message may take from its first byte to its last; a
    /// peer that starts a message and does not finish it in time (holding
    /// its reassembly buffer) is failed with 1008. Default off; room
    /// servers set it ([`session::server_connection_config`](crate::session::server_connection_config):
    /// 60 s), where many idle connections could each hold a message begun.
    pub message_timeout: Option<Duration>,
    /// Send a ping this often once open; a peer that has not answered the
    /// previous ping by the next one is dropped. Default off.
    pub keepalive_interval: Option<Duration>,
    /// permessage-deflate (RFC 7692, feature `deflate`): a server accepts
    /// the first offer these settings allow, a client offers them. The
    /// adapter compresses and inflates ([`crate::deflate`]). Default off.
    #[cfg(feature = "deflate")]
    pub deflate: Option<crate::deflate::DeflateConfig>,
}

impl Config {
    /// The defaults, as a constant (see each field).
    pub const DEFAULT: Config = Config {
        max_message_size: 1 << 20,
        max_fragments: 4096,
        max_handshake_size: 8 * 1024,
        handshake_timeout: Some(Duration::from_secs(10)),
        first_byte_timeout: Some(Duration::from_secs(3)),
        close_timeout: Duration::from_secs(5),
        message_timeout: None,
        keepalive_interval: None,
        #[cfg(feature = "deflate")]
        deflate: None,
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Where a connection is in its life (RFC 6455 §4, §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// The opening handshake is in progress.
    Connecting,
    /// Messages flow both ways.
    Open,
    /// A close frame has been queued or sent; waiting for the other side.
    Closing,
    /// Done: close the transport.
    Closed,
}

/// Why a deadline ended the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timeout {
    /// The opening handshake did not finish in time.
    Handshake,
    /// The peer did not answer our close frame in time.
    Close,
    /// The peer did not answer a keepalive ping before the next one was due.
    Keepalive,
    /// The peer did not finish a message within
    /// [`Config::message_timeout`]: failed with 1008.
    Message,
}

/// The steps only a server takes, reached through one pointer
/// ([`Connection::server_step`] for a server, a do-nothing step for a
/// client) so that a program that only makes clients (firmware) links none
/// of them.
type ServerStepFn<K> = for<'a> fn(&mut Connection<K>, ServerStep<'a>) -> ServerStepDone<'a>;

/// A step only a server takes.
enum ServerStep<'a> {
    /// Read an Upgrade request (see `Connection::read_request`).
    ReadRequest(&'a [u8]),
    /// Write the refusal of a request it could not read (400, 408, 431 …).
    WriteRefusal(HandshakeError, &'a mut [u8]),
}

/// What a [`ServerStep`] did.
enum ServerStepDone<'a> {
    Read(Received<'a>),
    Written(Result<usize, InsufficientSize>),
}

/// The close of a message not finished in time.
const MESSAGE_TOO_SLOW: ProtocolError = ProtocolError::new(CloseCode::Policy, "Message not completed in time");

/// Supplies client masking keys (RFC 6455 §5.3). Any `FnMut() -> [u8; 4]`
/// is one. Keys must be unpredictable: use a cryptographic RNG.
pub trait MaskKeySource {
    /// The next key.
    fn next_key(&mut self) -> [u8; 4];
}

impl<F: FnMut() -> [u8; 4]> MaskKeySource for F {
    fn next_key(&mut self) -> [u8; 4] {
        self()
    }
}

/// The key source of a server connection: servers never mask.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMasking;

impl MaskKeySource for NoMasking {
    fn next_key(&mut self) -> [u8; 4] {
        [0; 4]
    }
}

/// A whole message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// Its type.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }

    /// Its payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }
}

/// Something the peer did, borrowed from the input (or from the
/// connection's 125-byte control buffer).
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Server: a valid Upgrade request. Answer with [`Connection::accept`]
    /// or [`Connection::refuse`].
    Request(Request<'a>),
    /// Client: the server accepted; the connection is open.
    Open {
        /// The subprotocol the server selected: reported here only, and
        /// borrowing the input, so a caller that needs it later copies it.
        protocol: Option<&'a str>,
    },
    /// The handshake failed. A server has queued a refusal (send it with
    /// [`Connection::poll_transmit`]); a client is closed.
    HandshakeFailed(HandshakeError),
    /// Payload of a text or binary message, in order. Text is valid UTF-8 so
    /// far (a character may be cut between chunks; the whole message is
    /// valid when `message_end`). Reassemble with
    /// [`crate::message::Reassembler`] or stream it.
    Data {
        /// Text or binary.
        kind: MessageKind,
        /// The next bytes of the message (possibly empty).
        payload: &'a [u8],
        /// These are the message's first bytes.
        message_start: bool,
        /// The message is complete.
        message_end: bool,
        /// The message is compressed (permessage-deflate was negotiated):
        /// `payload` is deflate data, to inflate before use (what
        /// [`crate::message::MessageReader::read_inflating`] does).
        compressed: bool,
    },
    /// A ping; the pong is queued automatically.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame. If we had not closed, the echo (same code)
    /// is queued; nothing the peer sends after it is processed.
    Close {
        /// The peer's code, `None` for an empty close frame.
        code: Option<CloseCode>,
        /// The peer's reason, valid UTF-8.
        reason: &'a str,
    },
    /// The peer broke the protocol or a limit; a close frame with
    /// [`ProtocolError::code`] is queued and the connection then closes.
    ProtocolError(ProtocolError),
}

/// What [`Connection::handle_input`] did with its input.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub struct Received<'a> {
    /// Bytes of the input used; drop them from the front of your buffer.
    pub consumed: usize,
    /// What happened, or `None` when more input is needed (keep the
    /// unconsumed rest and append to it).
    pub event: Option<Event<'a>>,
}

/// A call that the connection's state does not allow, or an output buffer
/// too small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The output buffer is too small; nothing was written.
    Buffer(InsufficientSize),
    /// The connection is not open (still connecting, closing or closed).
    NotOpen,
    /// The call does not fit the handshake stage (e.g. `accept` twice).
    InvalidState,
    /// A control payload over 125 bytes, or a close reason over 123.
    ControlTooLong,
    /// A close code that may not be sent (1005, 1006, 1015, reserved).
    InvalidCloseCode,
    /// The offered subprotocols exceed [`MAX_OFFERED_PROTOCOLS`].
    TooManyProtocols,
    /// An offered subprotocol is not an HTTP token (RFC 6455 §4.1): empty,
    /// or holding a space, a comma, a control byte …
    InvalidProtocol,
    /// `send` while a fragmented message is still being sent.
    FragmentInProgress,
    /// A compressed message, and permessage-deflate was not negotiated.
    NotNegotiated,
}

impl From<InsufficientSize> for SendError {
    fn from(e: InsufficientSize) -> Self {
        SendError::Buffer(e)
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Buffer(e) => e.fmt(f),
            SendError::NotOpen => f.write_str("connection is not open"),
            SendError::InvalidState => f.write_str("not allowed at this stage of the handshake"),
            SendError::ControlTooLong => f.write_str("control payload too long"),
            SendError::InvalidCloseCode => f.write_str("close code may not be sent"),
            SendError::TooManyProtocols => f.write_str("offered subprotocols too long"),
            SendError::InvalidProtocol => f.write_str("offered subprotocol is not an HTTP token"),
            SendError::FragmentInProgress => f.write_str("a fragmented message is being sent"),
            SendError::NotNegotiated => f.write_str("permessage-deflate was not negotiated"),
        }
    }
}

impl core::error::Error for SendError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    ServerAwaitingRequest(SectionScan),
    ServerAwaitingDecision,
    ServerRefusing(HandshakeError),
    ClientUnsent,
    ClientAwaitingResponse(SectionScan),
    Done,
}

/// How much of an incomplete handshake header section has been looked at.
///
/// The adapter hands the connection every byte held so far on each read;
/// the section is parsed only once its end has arrived or it reached the
/// size limit (or at once when its first byte cannot begin one, which the
/// parser refuses on that byte: TLS sent to a plain port is answered on
/// the spot), so a peer that trickles its
/// request a byte at a time costs one scan of each byte rather than a
/// parse of the whole section per byte. Whether to parse is a function of
/// the bytes alone, which once true stays true, never of how they were
/// split into reads: the verdict (the parser's) cannot depend on the split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct SectionScan {
    /// Bytes already searched.
    scanned: u32,
    /// A byte other than CR and LF was seen: the section has begun (the
    /// parser skips empty lines before it, so a blank line there is no end).
    begun: bool,
    /// Worth parsing from now on.
    ready: bool,
}

impl SectionScan {
    /// Whether `input` (the whole section so far) is worth parsing: its
    /// end (`\n\n` or `\n\r\n` after its first line has begun: httparse
    /// takes bare LF line ends too) is among the bytes, it holds `max_len`
    /// bytes, or its first byte after any empty lines is not one `starts`
    /// allows: a byte the parser refuses at once, so that an early parse
    /// is a final one (a request method is a token; a status line starts
    /// with `H`).
    fn worth_parsing(&mut self, input: &[u8], max_len: usize, starts: fn(u8) -> bool) -> bool {
        if !self.ready {
            // Once begun, the last two bytes searched are searched again:
            // an end may straddle two reads.
            let from = if self.begun { (self.scanned as usize).saturating_sub(2) } else { self.scanned as usize };
            let mut at = from;
            while let Some(&byte) = input.get(at) {
                if !self.begun {
                    if byte != b'\r' && byte != b'\n' {
                        self.begun = true;
                        if !starts(byte) {
                            self.ready = true;
                            break;
                        }
                    }
                } else if byte == b'\n' && matches!(input.get(at + 1..), Some([b'\n', ..] | [b'\r', b'\n', ..])) {
                    self.ready = true;
                    break;
                }
                at += 1;
            }
            self.scanned = u32::try_from(input.len()).unwrap_or(u32::MAX);
        }
        self.ready || input.len() >= max_len
    }
}

/// An HTTP token byte (RFC 9110 `tchar`): what a request method is made of.
fn is_token_byte(byte: u8) -> bool {
    // A `match`, not a search of the list: a client firmware links no memchr for it.
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// A server's refusal of a request it could not read: the status the
/// error calls for, and a 400's reason as its body.
fn write_refusal(error: HandshakeError, out: &mut [u8]) -> Result<usize, InsufficientSize> {
    let body = match error {
        HandshakeError::BadRequest(why) => why,
        _ => "",
    };
    handshake::write_refusal(error.status(), &[], body, out)
}

/// Bytes a connection needs in one stage only, sharing their room: the
/// handshake's until the connection is open, then the control frames it
/// owes (which only an open connection can owe).
#[derive(Debug, Clone, Copy)]
enum StageBytes {
    /// Server: the accept value for the request, until it is answered.
    /// Client: the accept value expected, and the subprotocols offered
    /// (tokens joined by commas, `offered_len` bytes), until the response.
    Handshake { accept: [u8; 28], offered: [u8; MAX_OFFERED_PROTOCOLS], offered_len: u8 },
    /// Open or closing: the pong owed for the latest ping, and our close
    /// frame's payload (code and reason), queued.
    Open { pong_out: Option<ControlBuf>, close_out: Option<ControlBuf> },
}

impl StageBytes {
    const HANDSHAKE: Self = Self::Handshake { accept: [0; 28], offered: [0; MAX_OFFERED_PROTOCOLS], offered_len: 0 };
}

/// A deadline or none, in 8 bytes (an `Option<Instant>` takes 16): the end
/// of time stands for none, as a deadline that never comes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Deadline(Instant);

impl fmt::Debug for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

impl Deadline {
    const NONE: Self = Self(Instant::from_micros(u64::MAX));

    fn at(at: Instant) -> Self {
        Self(at)
    }

    fn get(self) -> Option<Instant> {
        (self != Self::NONE).then_some(self.0)
    }

    /// Whether it has come by `now` (none never does).
    fn is_due(self, now: Instant) -> bool {
        self.get().is_some_and(|at| now >= at)
    }
}

impl From<Option<Instant>> for Deadline {
    fn from(at: Option<Instant>) -> Self {
        at.map_or(Self::NONE, Self)
    }
}

/// A control payload held by the connection (at most 125 bytes).
#[derive(Clone, Copy)]
struct ControlBuf {
    bytes: [u8; MAX_CONTROL_PAYLOAD],
    len: u8,
}

impl ControlBuf {
    const EMPTY: Self = Self { bytes: [0; MAX_CONTROL_PAYLOAD], len: 0 };

    fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    fn set(&mut self, parts: &[&[u8]]) {
        self.len = 0;
        for part in parts {
            self.push(part);
        }
    }

    /// Append, dropping what does not fit (callers bound lengths first).
    fn push(&mut self, part: &[u8]) {
        let at = usize::from(self.len);
        let n = part.len().min(MAX_CONTROL_PAYLOAD - at);
        if let (Some(dst), Some(src)) = (self.bytes.get_mut(at..at + n), part.get(..n)) {
            dst.copy_from_slice(src);
            self.len += n as u8;
        }
    }
}

impl fmt::Debug for ControlBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// One step of [`Connection::read_step`].
pub(crate) enum Step<'i> {
    /// An event borrowing the input only.
    Event(Event<'i>),
    /// A control frame arrived; its event borrows the connection
    /// ([`Connection::control_event`]).
    Control(Control),
}

/// A complete control frame held by the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Ping,
    Pong,
    Close,
}

/// One WebSocket connection, server or client. See the [module docs](self)
/// for the driving loop.
#[derive(Debug)]
pub struct Connection<K = NoMasking> {
    role: Role,
    /// A server's steps, or a client's do-nothing one.
    server_step: ServerStepFn<K>,
    config: Config,
    keys: K,
    state: State,
    handshake: Handshake,
    decoder: FrameDecoder,
    /// The handshake's bytes, then the control frames owed.
    stage: StageBytes,
    /// Incoming control frame being assembled.
    control_in: ControlBuf,
    /// A keepalive ping is due.
    ping_out: bool,
    close_sent: bool,
    close_received: bool,
    /// Closed as soon as our close frame is out (protocol failure).
    fail_fast: bool,
    /// A fragmented outgoing message is in progress.
    sending: bool,
    handshake_deadline: Deadline,
    /// Server, until the request's first byte: the deadline for it.
    first_byte_deadline: Deadline,
    /// A message has begun: when it must be complete.
    message_deadline: Deadline,
    close_deadline: Deadline,
    next_ping: Deadline,
    awaiting_pong: bool,
    /// The payload of our latest keepalive ping: only a pong that echoes
    /// it answers (RFC 6455 §5.5.3; a peer may send pongs unasked).
    ping_nonce: u32,
    /// permessage-deflate as agreed (server: from the request, until
    /// accepted; then for the connection).
    deflate: Agreement,
}

/// permessage-deflate as agreed: nothing at all without the `deflate`
/// feature, so that a firmware's connection does not carry it.
#[derive(Debug, Clone, Copy, Default)]
struct Agreement(#[cfg(feature = "deflate")] Option<Deflate>);

impl Agreement {
    fn get(&self) -> Option<&Deflate> {
        #[cfg(feature = "deflate")]
        return self.0.as_ref();
        #[cfg(not(feature = "deflate"))]
        None
    }
}

/// An open connection at rest: between messages, owing the peer nothing,
/// with no deadline but its keepalive. What it must remember while it
/// waits fits in a few words (its role, keepalive, deflate agreement and
/// key source); the rest of a [`Connection`] (its control-frame buffers,
/// its decoder, its configuration) is the same for every connection at
/// rest and is made again by [`Rest::wake`].
///
/// An adapter holding many idle connections keeps them in this form and
/// wakes one when its socket has bytes, it has something to send, or
/// [`Rest::poll_timeout`] passes. Whether a connection may rest is the
/// core's decision ([`Connection::is_at_rest`]); resting and waking never
/// change what the connection does next.
///
/// ```
/// use roomwire_core::{Config, Connection, Event, Instant, Message, State};
/// use roomwire_core::handshake::ClientRequest;
///
/// let now = Instant::ZERO;
/// let config = Config::default();
/// let mut client = Connection::client(config, now, || [7, 7, 7, 7]);
/// let mut server = Connection::server(config, now);
/// let mut wire = [0u8; 512];
/// let request = ClientRequest { host: "h", target: "/", protocols: &[], headers: &[] };
/// let n = client.write_request(&request, &mut wire).unwrap();
/// server.handle_input(now, &mut wire[..n]);
/// let n = server.accept(now, None, &[], &mut wire).unwrap();
/// client.handle_input(now, &mut wire[..n]);
///
/// // Open and idle: it rests, and wakes as it was.
/// let rest = server.rest().unwrap();
/// let mut server = rest.wake(config);
/// let n = client.send(Message::Text("hi"), &mut wire).unwrap();
/// let got = server.handle_input(now, &mut wire[..n]);
/// assert!(matches!(got.event, Some(Event::Data { payload: b"hi", .. })));
/// assert_eq!(server.state(), State::Open);
/// ```
#[derive(Debug)]
pub struct Rest<K = NoMasking> {
    keys: K,
    next_ping: Deadline,
    ping_nonce: u32,
    deflate: Agreement,
    role: Role,
    awaiting_pong: bool,
}

impl<K: MaskKeySource> Rest<K> {
    /// The connection again, as it was when it went to rest. `config` must
    /// be the configuration it had (an adapter keeps one per endpoint).
    pub fn wake(self, config: Config) -> Connection<K> {
        let Self { keys, next_ping, ping_nonce, deflate, role, awaiting_pong } = self;
        let mut connection = Connection::with_role(role, config, Instant::ZERO, keys);
        connection.deflate = deflate;
        connection.open_at(next_ping);
        connection.ping_nonce = ping_nonce;
        connection.awaiting_pong = awaiting_pong;
        connection
    }

    /// The deadline at which it must wake (its keepalive: the next ping,
    /// or the pong it waits for), if any: [`Connection::poll_timeout`] of
    /// the connection it was.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_ping.get()
    }

    /// Server or client.
    pub fn role(&self) -> Role {
        self.role
    }

    /// permessage-deflate as agreed with the peer ([`Connection::deflate`]).
    pub fn deflate(&self) -> Option<&Deflate> {
        self.deflate.get()
    }
}

impl Connection<NoMasking> {
    /// A server connection waiting for the client's Upgrade request.
    pub fn server(config: Config, now: Instant) -> Self {
        Self::with_role(Role::Server, config, now, NoMasking)
    }
}

impl<K: MaskKeySource> Connection<K> {
    /// A client connection; send the Upgrade request with
    /// [`Connection::write_request`]. `keys` supplies masking keys and the
    /// handshake nonce.
    pub fn client(config: Config, now: Instant, keys: K) -> Self {
        Self::build(Role::Client, config, now, keys, Self::no_server_step)
    }

    /// A connection whose role is a value, for an adapter that keeps
    /// connections of both roles in one type. A server never draws from
    /// `keys` (servers do not mask), so a key source that fetches its
    /// randomness on first use costs a server nothing.
    ///
    /// ```
    /// use roomwire_core::{Config, Connection, Instant, Role};
    /// let keys = || [1, 2, 3, 4];
    /// let server = Connection::with_role(Role::Server, Config::default(), Instant::ZERO, keys);
    /// let client = Connection::with_role(Role::Client, Config::default(), Instant::ZERO, keys);
    /// assert_eq!((server.role(), client.role()), (Role::Server, Role::Client));
    /// ```
    pub fn with_role(role: Role, config: Config, now: Instant, keys: K) -> Self {
        match role {
            Role::Server => Self::build(role, config, now, keys, Self::server_step),
            Role::Client => Self::build(role, config, now, keys, Self::no_server_step),
        }
    }

    fn build(role: Role, config: Config, now: Instant, keys: K, server_step: ServerStepFn<K>) -> Self {
        let handshake = match role {
            Role::Server => Handshake::ServerAwaitingRequest(SectionScan::default()),
            Role::Client => Handshake::ClientUnsent,
        };
        let limits = DecoderLimits { max_message_size: config.max_message_size, max_fragments: config.max_fragments };
        Self {
            role,
            server_step,
            config,
            keys,
            state: State::Connecting,
            handshake,
            decoder: FrameDecoder::new(role, limits),
            stage: StageBytes::HANDSHAKE,
            control_in: ControlBuf::EMPTY,
            ping_out: false,
            close_sent: false,
            close_received: false,
            fail_fast: false,
            sending: false,
            handshake_deadline: config.handshake_timeout.map(|t| now + t).into(),
            first_byte_deadline: match role {
                Role::Server => config.first_byte_timeout.map(|t| now + t).into(),
                Role::Client => Deadline::NONE,
            },
            message_deadline: Deadline::NONE,
            close_deadline: Deadline::NONE,
            next_ping: Deadline::NONE,
            awaiting_pong: false,
            ping_nonce: 0,
            deflate: Agreement::default(),
        }
    }

    /// The masking key source, e.g. to reseed it.
    pub fn keys_mut(&mut self) -> &mut K {
        &mut self.keys
    }

    /// End the connection and take back its key source, so one random
    /// generator can serve connection after connection.
    pub fn into_keys(self) -> K {
        self.keys
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Server or client.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// permessage-deflate as agreed with the peer, once open: `None` when
    /// not negotiated. The adapter sizes its compressor and inflater by it.
    pub fn deflate(&self) -> Option<&Deflate> {
        self.deflate.get().filter(|_| matches!(self.handshake, Handshake::Done))
    }

    /// Whether messages can be sent now.
    pub fn can_send(&self) -> bool {
        self.state == State::Open && self.close_out().is_none() && !self.close_sent
    }

    /// Our close frame's payload, queued.
    fn close_out(&self) -> Option<&ControlBuf> {
        match &self.stage {
            StageBytes::Open { close_out, .. } => close_out.as_ref(),
            StageBytes::Handshake { .. } => None,
        }
    }

    /// The control frames owed (the pong for the latest ping, our close
    /// frame): once open only, before that there are none.
    fn owed_mut(&mut self) -> Option<(&mut Option<ControlBuf>, &mut Option<ControlBuf>)> {
        match &mut self.stage {
            StageBytes::Open { pong_out, close_out } => Some((pong_out, close_out)),
            StageBytes::Handshake { .. } => None,
        }
    }

    /// Whether the peer's close frame has been received.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// Feed bytes read from the peer. See [`Received`] for the contract.
    /// Never panics, whatever `input` holds.
    pub fn handle_input<'a>(&'a mut self, now: Instant, input: &'a mut [u8]) -> Received<'a> {
        let (consumed, step) = self.read_step(now, input);
        let event = match step {
            None => None,
            Some(Step::Event(event)) => Some(event),
            Some(Step::Control(control)) => Some(self.control_event(control)),
        };
        Received { consumed, event }
    }

    /// [`Connection::handle_input`], with the events whose bytes the
    /// connection holds (control frames) left for [`Self::control_event`]:
    /// what it returns borrows `input` only, so the caller can still act on
    /// the connection (close it) while it holds a message's payload.
    #[inline]
    pub(crate) fn read_step<'i>(&mut self, now: Instant, input: &'i mut [u8]) -> (usize, Option<Step<'i>>) {
        let received = match self.handshake {
            Handshake::ServerAwaitingRequest(_) => match (self.server_step)(self, ServerStep::ReadRequest(input)) {
                ServerStepDone::Read(received) => received,
                ServerStepDone::Written(_) => Received { consumed: 0, event: None },
            },
            Handshake::ClientAwaitingResponse(_) => self.read_response(now, input),
            Handshake::ServerAwaitingDecision | Handshake::ServerRefusing(_) | Handshake::ClientUnsent => {
                Received { consumed: 0, event: None }
            }
            Handshake::Done => return self.read_frames(now, input),
        };
        (received.consumed, received.event.map(Step::Event))
    }

    #[inline]
    fn read_frames<'i>(&mut self, now: Instant, input: &'i mut [u8]) -> (usize, Option<Step<'i>>) {
        // The close deadline holds whatever the peer sends: one that keeps
        // the input full cannot keep an adapter that reads before it looks
        // at its timer from ever ending the connection.
        self.close_if_past_deadline(now);
        if self.state == State::Closed || self.close_received || self.fail_fast {
            // RFC 6455 §5.5.1: nothing after a close frame is processed.
            return (input.len(), None);
        }
        let (consumed, decoded) = self.decoder.decode(input);
        let step = match decoded {
            None => None,
            Some(Decoded::Data { kind, payload, message_start, message_end, compressed }) => {
                if message_end {
                    self.message_deadline = Deadline::NONE;
                } else if message_start {
                    let compressed_limit = compressed.then_some(crate::deflate::MESSAGE_TIMEOUT);
                    self.message_deadline = self.config.message_timeout.or(compressed_limit).map(|t| now + t).into();
                }
                Some(Step::Event(Event::Data { kind, payload, message_start, message_end, compressed }))
            }
            Some(Decoded::Control { opcode, payload, frame_start, frame_end }) => {
                if frame_start {
                    self.control_in.len = 0;
                }
                self.control_in.push(payload);
                if frame_end { Some(self.control_frame(now, opcode)) } else { None }
            }
            Some(Decoded::Violation(error)) => {
                self.fail(now, error);
                Some(Step::Event(Event::ProtocolError(error)))
            }
        };
        (consumed, step)
    }

    /// The event of a control frame [`Self::read_step`] completed.
    pub(crate) fn control_event(&self, control: Control) -> Event<'_> {
        match control {
            Control::Ping => Event::Ping(self.control_in.as_slice()),
            Control::Pong => Event::Pong(self.control_in.as_slice()),
            Control::Close => {
                let (code, reason) = parse_close_payload(self.control_in.as_slice()).unwrap_or((None, ""));
                Event::Close { code, reason }
            }
        }
    }

    fn control_frame<'i>(&mut self, now: Instant, opcode: Opcode) -> Step<'i> {
        match opcode {
            Opcode::Ping => {
                let ping = self.control_in;
                if self.can_send()
                    && let Some((pong_out, _)) = self.owed_mut()
                {
                    // Only the latest ping needs an answer (§5.5.3).
                    *pong_out = Some(ping);
                }
                Step::Control(Control::Ping)
            }
            Opcode::Pong => {
                if self.control_in.as_slice() == self.ping_nonce.to_be_bytes() {
                    self.awaiting_pong = false;
                }
                Step::Control(Control::Pong)
            }
            _ => match parse_close_payload(self.control_in.as_slice()) {
                Err(e) => {
                    let error = ProtocolError::new(
                        e.close_code(),
                        match e.close_code() {
                            CloseCode::Invalid => "close reason is not UTF-8",
                            _ => "invalid close payload",
                        },
                    );
                    self.fail(now, error);
                    Step::Event(Event::ProtocolError(error))
                }
                Ok((code, _)) => {
                    self.close_received = true;
                    self.ping_out = false;
                    self.drop_pong_owed();
                    if self.close_sent {
                        self.state = State::Closed;
                    } else if self.close_out().is_none() {
                        // Echo the code (§5.5.1), then we are done. The echo
                        // may not get out (a peer that stopped reading): the
                        // connection ends at the close timeout anyway.
                        self.queue_close(now, code, "");
                    }
                    Step::Control(Control::Close)
                }
            },
        }
    }

    /// A server's own steps (see [`ServerStepFn`]).
    fn server_step<'a>(&mut self, step: ServerStep<'a>) -> ServerStepDone<'a> {
        match step {
            ServerStep::ReadRequest(input) => ServerStepDone::Read(self.read_request(input)),
            ServerStep::WriteRefusal(error, out) => ServerStepDone::Written(write_refusal(error, out)),
        }
    }

    /// A client never awaits a request nor refuses one (never called: only
    /// a server reaches those stages).
    fn no_server_step<'a>(&mut self, step: ServerStep<'a>) -> ServerStepDone<'a> {
        match step {
            ServerStep::ReadRequest(_) => ServerStepDone::Read(Received { consumed: 0, event: None }),
            ServerStep::WriteRefusal(..) => ServerStepDone::Written(Ok(0)),
        }
    }

    fn read_request<'a>(&mut self, input: &'a [u8]) -> Received<'a> {
        if !input.is_empty() {
            self.first_byte_deadline = Deadline::NONE;
        }
        let max_len = self.config.max_handshake_size;
        if let Handshake::ServerAwaitingRequest(scan) = &mut self.handshake
            && !scan.worth_parsing(input, max_len, is_token_byte)
        {
            return Received { consumed: 0, event: None };
        }
        match handshake::parse_request(input, max_len) {
            Ok(None) => Received { consumed: 0, event: None },
            Ok(Some((request, len))) => {
                if let StageBytes::Handshake { accept, .. } = &mut self.stage {
                    *accept = request.accept_key();
                }
                self.handshake = Handshake::ServerAwaitingDecision;
                #[cfg(feature = "deflate")]
                if let Some(config) = &self.config.deflate {
                    let offers =
                        request.headers().filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"));
                    self.deflate = Agreement(crate::deflate::negotiate(offers.map(|(_, value)| value), config));
                }
                Received { consumed: len, event: Some(Event::Request(request)) }
            }
            Err(error) => {
                self.handshake = Handshake::ServerRefusing(error);
                Received { consumed: input.len(), event: Some(Event::HandshakeFailed(error)) }
            }
        }
    }

    fn read_response<'a>(&mut self, now: Instant, input: &'a [u8]) -> Received<'a> {
        if let Handshake::ClientAwaitingResponse(scan) = &mut self.handshake
            && !scan.worth_parsing(input, self.config.max_handshake_size, |b| b == b'H')
        {
            return Received { consumed: 0, event: None };
        }
        #[cfg(feature = "deflate")]
        let (deflate, offer) = (&mut self.deflate, self.config.deflate);
        let extensions = |values: &mut dyn Iterator<Item = &[u8]>| {
            #[cfg(feature = "deflate")]
            if let Some(offer) = &offer {
                *deflate = Agreement(crate::deflate::accept_response(values, offer)?);
                return Ok(());
            }
            handshake::no_extension(values)
        };
        let parsed = match &self.stage {
            StageBytes::Handshake { accept, offered, offered_len } => {
                let offered = offered.get(..usize::from(*offered_len)).unwrap_or(&[]);
                let offered = core::str::from_utf8(offered).unwrap_or("");
                handshake::parse_response_with(input, self.config.max_handshake_size, accept, offered, extensions)
            }
            // Not reached: the stage is the handshake's until `open`.
            StageBytes::Open { .. } => Err(HandshakeError::BadResponse("connection state")),
        };
        match parsed {
            Ok(None) => Received { consumed: 0, event: None },
            Ok(Some((response, len))) => {
                self.open(now);
                Received { consumed: len, event: Some(Event::Open { protocol: response.protocol }) }
            }
            Err(error) => {
                self.handshake = Handshake::Done;
                self.state = State::Closed;
                Received { consumed: input.len(), event: Some(Event::HandshakeFailed(error)) }
            }
        }
    }

    fn open(&mut self, now: Instant) {
        self.open_at(self.config.keepalive_interval.map(|i| now + i).into());
    }

    /// Open, the next keepalive ping due at `next_ping`.
    fn open_at(&mut self, next_ping: Deadline) {
        // The handshake's bytes are done with: their room holds the
        // control frames owed from now on.
        self.stage = StageBytes::Open { pong_out: None, close_out: None };
        self.decoder.allow_compressed(self.deflate.get().is_some());
        self.handshake = Handshake::Done;
        self.state = State::Open;
        self.handshake_deadline = Deadline::NONE;
        self.first_byte_deadline = Deadline::NONE;
        self.next_ping = next_ping;
    }

    /// Whether the connection can go to [`Rest`]: open, between messages
    /// (no frame or fragmented message half received, none half sent), and
    /// owing the peer nothing (no pong, ping or close to write).
    pub fn is_at_rest(&self) -> bool {
        self.state == State::Open
            && matches!(self.handshake, Handshake::Done)
            && self.decoder.is_between_messages()
            && !self.sending
            && !self.wants_transmit()
            && self.message_deadline == Deadline::NONE
    }

    /// The connection in its resting form, if it [is at
    /// rest](Self::is_at_rest); otherwise itself, unchanged.
    #[allow(clippy::result_large_err)] // given back whole, not an error to propagate
    pub fn rest(self) -> Result<Rest<K>, Self> {
        if !self.is_at_rest() {
            return Err(self);
        }
        let Self { keys, next_ping, ping_nonce, deflate, role, awaiting_pong, .. } = self;
        Ok(Rest { keys, next_ping, ping_nonce, deflate, role, awaiting_pong })
    }

    /// Queue a close frame for a protocol failure; the connection closes
    /// once it is sent.
    pub(crate) fn fail(&mut self, now: Instant, error: ProtocolError) {
        self.fail_fast = true;
        self.ping_out = false;
        if self.close_sent || self.owed_mut().is_none() {
            // Our close is out already (or the connection never opened:
            // then it never will).
            self.handshake = Handshake::Done;
            self.state = State::Closed;
            return;
        }
        self.drop_pong_owed();
        self.queue_close(now, Some(error.code), error.reason);
    }

    /// Queue our close frame (`code`, if any, then `reason`) and wait for
    /// the peer's until the close timeout.
    fn queue_close(&mut self, now: Instant, code: Option<CloseCode>, reason: &str) {
        let mut payload = ControlBuf::EMPTY;
        if let Some(code) = code {
            payload.set(&[&u16::from(code).to_be_bytes(), reason.as_bytes()]);
        }
        if let Some((_, close_out)) = self.owed_mut() {
            *close_out = Some(payload);
        }
        self.state = State::Closing;
        self.close_deadline = Deadline::at(now + self.config.close_timeout);
    }

    /// No pong is owed any more (the connection is closing for good).
    fn drop_pong_owed(&mut self) {
        if let Some((pong_out, _)) = self.owed_mut() {
            *pong_out = None;
        }
    }

    /// Server: accept the request reported by [`Event::Request`], selecting
    /// `protocol` (which should be one the client offered) and adding
    /// `headers` to the 101 response written into `out`.
    pub fn accept(
        &mut self,
        now: Instant,
        protocol: Option<&str>,
        headers: &[(&str, &str)],
        out: &mut [u8],
    ) -> Result<usize, SendError> {
        if !matches!(self.handshake, Handshake::ServerAwaitingDecision) {
            return Err(SendError::InvalidState);
        }
        let deflate = self.deflate.get().copied();
        let put = |w: &mut crate::writer::Writer<'_>| {
            if let Some(agreed) = &deflate {
                agreed.put_response(w);
            }
        };
        let extension: handshake::PutExtension<'_> = if deflate.is_some() { Some(&put) } else { None };
        let StageBytes::Handshake { accept, .. } = &self.stage else {
            return Err(SendError::InvalidState);
        };
        let n = handshake::write_accept_with(accept, protocol, extension, headers, out)?;
        self.open(now);
        Ok(n)
    }

    /// Server: refuse the request reported by [`Event::Request`] with an
    /// HTTP `status` (401, 403, 404, 503 …), extra `headers` and a text
    /// `body`, written into `out`. The connection is then closed.
    pub fn refuse(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
        out: &mut [u8],
    ) -> Result<usize, SendError> {
        if !matches!(self.handshake, Handshake::ServerAwaitingDecision) {
            return Err(SendError::InvalidState);
        }
        let n = handshake::write_refusal(status, headers, body, out)?;
        self.handshake = Handshake::Done;
        self.state = State::Closed;
        Ok(n)
    }

    /// Client: write the Upgrade request into `out`. The nonce is drawn from
    /// the key source.
    pub fn write_request(&mut self, request: &ClientRequest<'_>, out: &mut [u8]) -> Result<usize, SendError> {
        if !matches!(self.handshake, Handshake::ClientUnsent) {
            return Err(SendError::InvalidState);
        }
        // Tokens only: a name holding a comma, a space or a line end would
        // break the header (or add one), and the server's choice is found
        // in this list by exact comparison.
        if request.protocols.iter().any(|p| p.is_empty() || !p.bytes().all(is_token_byte)) {
            return Err(SendError::InvalidProtocol);
        }
        let StageBytes::Handshake { accept, offered, offered_len: offered_stored } = &mut self.stage else {
            return Err(SendError::InvalidState);
        };
        let mut offered_len = 0usize;
        for (i, p) in request.protocols.iter().enumerate() {
            let sep = usize::from(i > 0);
            let Some(dst) = offered.get_mut(offered_len..offered_len + sep + p.len()) else {
                return Err(SendError::TooManyProtocols);
            };
            if let Some((first, rest)) = dst.split_first_mut().filter(|_| sep == 1) {
                *first = b',';
                rest.copy_from_slice(p.as_bytes());
            } else {
                dst.copy_from_slice(p.as_bytes());
            }
            offered_len += sep + p.len();
        }
        let mut nonce = [0u8; 16];
        for chunk in nonce.chunks_mut(4) {
            chunk.copy_from_slice(&self.keys.next_key());
        }
        let key = handshake::client_key(nonce);
        #[cfg(feature = "deflate")]
        let offer = self.config.deflate;
        #[cfg(feature = "deflate")]
        let put = |w: &mut crate::writer::Writer<'_>| {
            if let Some(config) = &offer {
                config.put_offer(w);
            }
        };
        #[cfg(feature = "deflate")]
        let extension: handshake::PutExtension<'_> = if offer.is_some() { Some(&put) } else { None };
        #[cfg(not(feature = "deflate"))]
        let extension: handshake::PutExtension<'_> = None;
        let n = handshake::write_request_with(request, &key, extension, out)?;
        *offered_stored = offered_len as u8;
        *accept = handshake::accept_key(&key);
        self.handshake = Handshake::ClientAwaitingResponse(SectionScan::default());
        Ok(n)
    }

    /// Write a whole message as one frame into `out`.
    pub fn send(&mut self, message: Message<'_>, out: &mut [u8]) -> Result<usize, SendError> {
        if self.sending {
            return Err(SendError::FragmentInProgress);
        }
        self.send_fragment(message.kind(), message.payload(), true, out)
    }

    /// Write one frame of a fragmented message into `out`: the first call
    /// starts a `kind` message, later ones continue it (their `kind` is
    /// ignored), and `fin` ends it. For text, the concatenated payloads must
    /// be UTF-8. Control frames may be sent between fragments.
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        fin: bool,
        out: &mut [u8],
    ) -> Result<usize, SendError> {
        if !self.can_send() {
            return Err(SendError::NotOpen);
        }
        let opcode = if self.sending { Opcode::Continuation } else { kind.opcode() };
        let n = self.write_frame(opcode, fin, payload, out)?;
        self.sending = !fin;
        Ok(n)
    }

    /// Write a whole compressed message as one frame (RSV1 set) into
    /// `out`. `deflated` is the compressor's sync-flushed output without
    /// its tail ([`crate::deflate::strip_tail`]), made as
    /// [`Connection::deflate`] says (window, context takeover).
    pub fn send_deflated(&mut self, kind: MessageKind, deflated: &[u8], out: &mut [u8]) -> Result<usize, SendError> {
        if self.sending {
            return Err(SendError::FragmentInProgress);
        }
        if !self.can_send() {
            return Err(SendError::NotOpen);
        }
        if self.deflate.get().is_none() {
            return Err(SendError::NotNegotiated);
        }
        Ok(self.encode_frame(
            FrameHeader { fin: true, rsv: 0b100, opcode: kind.opcode(), mask: None, payload_len: 0 },
            deflated,
            out,
        )?)
    }

    /// Write only the header of a data frame of `len` bytes, for callers
    /// that place the payload themselves (zero-copy). Returns the header
    /// length and, for a client, the key the payload must be masked with
    /// ([`crate::frame::apply_mask`] at phase 0).
    pub fn send_header(
        &mut self,
        kind: MessageKind,
        len: u64,
        fin: bool,
        out: &mut [u8],
    ) -> Result<(usize, Option<[u8; 4]>), SendError> {
        if !self.can_send() {
            return Err(SendError::NotOpen);
        }
        let opcode = if self.sending { Opcode::Continuation } else { kind.opcode() };
        let mask = self.next_mask();
        let header = FrameHeader { fin, rsv: 0, opcode, mask, payload_len: len };
        let n = header.encode(out)?;
        self.sending = !fin;
        Ok((n, mask))
    }

    /// Write a ping carrying `payload` (at most 125 bytes) into `out`.
    pub fn ping(&mut self, payload: &[u8], out: &mut [u8]) -> Result<usize, SendError> {
        if !self.can_send() {
            return Err(SendError::NotOpen);
        }
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong);
        }
        Ok(self.write_frame(Opcode::Ping, true, payload, out)?)
    }

    /// Whether part of a frame has been received and not the rest: a
    /// transport that ends now ends mid-frame.
    pub fn is_mid_frame(&self) -> bool {
        !self.decoder.is_idle()
    }

    /// Make sure the peer is still there, sooner than keepalive would: a
    /// ping now (unless one is already unanswered), and the connection
    /// closes with [`Timeout::Keepalive`] if no pong comes `within`. A
    /// server uses it when a connection that may be dead stands in a live
    /// one's way (see [`admission::USER_CAP_PROBE`](crate::admission::USER_CAP_PROBE)).
    /// Does nothing unless open.
    pub fn check_alive(&mut self, now: Instant, within: Duration) {
        if self.state != State::Open {
            return;
        }
        if !self.awaiting_pong {
            self.start_ping();
        }
        let deadline = now + within;
        self.next_ping = Deadline::at(self.next_ping.get().map_or(deadline, |at| at.min(deadline)));
    }

    /// Start the closing handshake: queue a close frame with `code` and
    /// `reason` (at most 123 bytes), sent by [`Connection::poll_transmit`].
    /// The connection is closed when the peer answers or
    /// [`Config::close_timeout`] passes.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if reason.len() > MAX_CLOSE_REASON {
            return Err(SendError::ControlTooLong);
        }
        if !code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode);
        }
        if self.state != State::Open || self.close_out().is_some() || self.close_sent {
            return Err(SendError::NotOpen);
        }
        self.queue_close(now, Some(code), reason);
        Ok(())
    }

    /// Write the next frame (or handshake refusal) the connection wants
    /// sent into `out`. `Ok(0)`: nothing pending. Call until `Ok(0)` after
    /// every input. A buffer of 256 bytes always suffices.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<usize, InsufficientSize> {
        if let Handshake::ServerRefusing(error) = self.handshake {
            let n = match (self.server_step)(self, ServerStep::WriteRefusal(error, out)) {
                ServerStepDone::Written(written) => written?,
                ServerStepDone::Read(_) => 0,
            };
            self.handshake = Handshake::Done;
            self.state = State::Closed;
            return Ok(n);
        }
        if !self.wants_transmit() {
            return Ok(0);
        }
        let (pong, close) = match &self.stage {
            StageBytes::Open { pong_out, close_out } => (*pong_out, *close_out),
            StageBytes::Handshake { .. } => (None, None),
        };
        if let Some(pong) = pong {
            let n = self.write_frame(Opcode::Pong, true, pong.as_slice(), out)?;
            if let Some((pong_out, _)) = self.owed_mut() {
                *pong_out = None;
            }
            return Ok(n);
        }
        if self.ping_out {
            let nonce = self.ping_nonce.to_be_bytes();
            let n = self.write_frame(Opcode::Ping, true, &nonce, out)?;
            self.ping_out = false;
            return Ok(n);
        }
        if let Some(close) = close {
            let n = self.write_frame(Opcode::Close, true, close.as_slice(), out)?;
            if let Some((_, close_out)) = self.owed_mut() {
                *close_out = None;
            }
            self.close_sent = true;
            if self.close_received || self.fail_fast {
                self.state = State::Closed;
            }
            return Ok(n);
        }
        Ok(0)
    }

    /// Whether [`Connection::poll_transmit`] has something to write: a
    /// cheap check, so that an adapter need not lend it a buffer for
    /// nothing after every input.
    ///
    /// ```
    /// use roomwire_core::{Config, Connection, Instant};
    /// let server = Connection::server(Config::default(), Instant::ZERO);
    /// assert!(!server.wants_transmit()); // nothing until the request has come
    /// ```
    #[must_use]
    #[inline]
    pub fn wants_transmit(&self) -> bool {
        match self.handshake {
            Handshake::ServerRefusing(_) => true,
            Handshake::Done => {
                self.state != State::Closed
                    && (self.ping_out
                        || matches!(
                            self.stage,
                            StageBytes::Open { pong_out: Some(_), .. } | StageBytes::Open { close_out: Some(_), .. }
                        ))
            }
            _ => false,
        }
    }

    /// The next deadline, if any: call [`Connection::handle_timeout`] then.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Connecting => match (self.handshake_deadline.get(), self.first_byte_deadline.get()) {
                (Some(whole), Some(first)) => Some(whole.min(first)),
                (whole, first) => whole.or(first),
            },
            State::Open => match (self.next_ping.get(), self.message_deadline.get()) {
                (Some(ping), Some(message)) => Some(ping.min(message)),
                (ping, message) => ping.or(message),
            },
            State::Closing => self.close_deadline.get(),
            State::Closed => None,
        }
    }

    /// Let time pass. Returns the deadline that closed the connection, if
    /// one did; a keepalive ping may be queued instead. Early or repeated
    /// calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Timeout> {
        match self.state {
            State::Connecting if self.handshake_deadline.is_due(now) || self.first_byte_deadline.is_due(now) => {
                if matches!(self.handshake, Handshake::ServerAwaitingRequest(_)) {
                    // Answer slow or silent clients with 408, then close.
                    self.handshake = Handshake::ServerRefusing(HandshakeError::Timeout);
                } else {
                    self.handshake = Handshake::Done; // a closed connection never reopens
                    self.state = State::Closed;
                }
                Some(Timeout::Handshake)
            }
            State::Open if self.message_deadline.is_due(now) => {
                self.message_deadline = Deadline::NONE;
                self.fail(now, MESSAGE_TOO_SLOW);
                Some(Timeout::Message)
            }
            State::Open if self.next_ping.is_due(now) => {
                if self.awaiting_pong {
                    self.state = State::Closed;
                    return Some(Timeout::Keepalive);
                }
                self.start_ping();
                self.next_ping = self.config.keepalive_interval.map(|i| now + i).into();
                None
            }
            State::Closing => self.close_if_past_deadline(now).then_some(Timeout::Close),
            _ => None,
        }
    }

    /// Queue a keepalive ping with a fresh payload, and wait for its pong.
    fn start_ping(&mut self) {
        self.ping_nonce = self.ping_nonce.wrapping_add(1);
        self.ping_out = true;
        self.awaiting_pong = true;
    }

    /// Closing, and the peer's close did not come in time: closed. Returns
    /// whether it closed now.
    fn close_if_past_deadline(&mut self, now: Instant) -> bool {
        let past = self.state == State::Closing && self.close_deadline.is_due(now);
        if past {
            self.state = State::Closed;
        }
        past
    }

    fn next_mask(&mut self) -> Option<[u8; 4]> {
        match self.role {
            Role::Client => Some(self.keys.next_key()),
            Role::Server => None,
        }
    }

    fn write_frame(
        &mut self,
        opcode: Opcode,
        fin: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, InsufficientSize> {
        self.encode_frame(FrameHeader { fin, rsv: 0, opcode, mask: None, payload_len: 0 }, payload, out)
    }

    /// Write `header` (its length and mask filled in here) and `payload`.
    fn encode_frame(
        &mut self,
        mut header: FrameHeader,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, InsufficientSize> {
        header.payload_len = payload.len() as u64;
        let required = header.encoded_len() + if self.role == Role::Client { 4 } else { 0 } + payload.len();
        if out.len() < required {
            return Err(InsufficientSize { required });
        }
        header.mask = self.next_mask();
        let n = header.encode(out)?;
        let Some(body) = out.get_mut(n..n + payload.len()) else {
            return Err(InsufficientSize { required });
        };
        body.copy_from_slice(payload);
        if let Some(key) = header.mask {
            apply_mask(body, key, 0);
        }
        Ok(n + payload.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::{SectionScan, is_token_byte};

    /// Every idle connection of a server, and a firmware's client, carries
    /// one: the handshake's bytes and the control frames owed share their
    /// room (`StageBytes`), so the size is the larger of the two, not the sum.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_connection_stays_small() {
        let size = core::mem::size_of::<super::Connection>();
        assert!(size <= 680, "Connection grew to {size} bytes");
    }

    /// RFC 9110 §5.6.2's `tchar`, every byte.
    #[test]
    fn token_bytes_are_tchar() {
        let tchar = |b: u8| b.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".bytes().any(|t| t == b);
        for byte in 0..=u8::MAX {
            assert_eq!(is_token_byte(byte), tchar(byte), "{byte:#04x}");
        }
        assert_eq!((0..=u8::MAX).filter(|&b| is_token_byte(b)).count(), 62 + 15);
    }

    #[test]
    fn a_section_is_parsed_at_its_end_or_its_limit_only() {
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut scan = SectionScan::default();
        let worth: std::vec::Vec<usize> =
            (1..=request.len()).filter(|&n| scan.worth_parsing(&request[..n], 1024, is_token_byte)).collect();
        assert_eq!(worth, [request.len()]);
        // Bare LF line ends, and an end split across reads.
        let mut scan = SectionScan::default();
        assert!(!scan.worth_parsing(b"GET / HTTP/1.1\nHost: x\n", 1024, is_token_byte));
        assert!(scan.worth_parsing(b"GET / HTTP/1.1\nHost: x\n\n", 1024, is_token_byte));
        let mut scan = SectionScan::default();
        assert!(!scan.worth_parsing(b"Host: x\r\n\r", 1024, is_token_byte));
        assert!(scan.worth_parsing(b"Host: x\r\n\r\n", 1024, is_token_byte));
        // No end at all: parsed at the limit (431), not before.
        let mut scan = SectionScan::default();
        assert!(!scan.worth_parsing(&[b'x'; 63], 64, is_token_byte));
        assert!(scan.worth_parsing(&[b'x'; 64], 64, is_token_byte));
        // A method may start with a digit: no early parse for it, so a
        // trickled `1 / HTTP/1.1 …` is not parsed per byte either.
        let mut scan = SectionScan::default();
        assert!(!scan.worth_parsing(b"1", 1024, is_token_byte));
        assert!(!scan.worth_parsing(b"1 / HTTP/1.1\r\nX: aaaa", 1024, is_token_byte));
        // A status line starts with H, and only H.
        assert!(!SectionScan::default().worth_parsing(b"HTTP/1.1 1", 1024, |b| b == b'H'));
        assert!(SectionScan::default().worth_parsing(b"GTTP/1.1 1", 1024, |b| b == b'H'));
        // What cannot start a request line is parsed (and refused) at once.
        assert!(SectionScan::default().worth_parsing(b"\x16\x03\x01", 1024, is_token_byte));
        assert!(SectionScan::default().worth_parsing(b"\r\n\x04", 1024, is_token_byte));
        // Empty lines before the section are no end of it, however split.
        let mut scan = SectionScan::default();
        assert!(!scan.worth_parsing(b"\n\n", 1024, is_token_byte));
        assert!(!scan.worth_parsing(b"\n\n\r\nGET / HTTP/1.1\r\n", 1024, is_token_byte));
        assert!(scan.worth_parsing(b"\n\n\r\nGET / HTTP/1.1\r\n\r\n", 1024, is_token_byte));
        assert!(scan.worth_parsing(b"\n\n\r\nGET / HTTP/1.1\r\n\r\nmore", 1024, is_token_byte), "once true, true");
    }
}
