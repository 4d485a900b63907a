//! The client side of a channel: which rooms to be in, the handshake target
//! that asks for them, join and leave requests, sending typed messages and
//! reading what the server sends. Sans-IO and allocation-free, shared by
//! the tokio and the embassy clients; it sits on top of a
//! [`Connection`](crate::Connection) and never sees a WebSocket frame, only
//! whole messages.
//!
//! A [`RoomClient`] keeps two room sets apart:
//!
//! * **wanted** rooms ([`RoomClient::wanted`]): what the application asked
//!   for. They outlive connections and are restored after every reconnect;
//! * **joined** rooms ([`RoomClient::rooms`]): what the server confirmed on
//!   the current connection (on the Alepha wire, what the handshake asked
//!   for, since that wire has no acknowledgements).
//!
//! ## Driving loop
//!
//! 1. Before connecting: [`RoomClient::write_target`] and
//!    [`RoomClient::protocols`] give the request target and the subprotocols
//!    of the [`ClientRequest`](crate::handshake::ClientRequest).
//! 2. When the handshake completes: [`RoomClient::opened`] with the
//!    subprotocol the server selected. Then call
//!    [`RoomClient::poll_transmit`] until it returns 0 and send each output
//!    as one message of kind [`RoomClient::message_kind`]: on the roomwire
//!    wire these are the joins that restore the wanted rooms.
//! 3. For each whole message received: [`RoomClient::handle_message`], then
//!    [`RoomClient::poll_transmit`] again (a request slot may have freed).
//! 4. At any time: [`RoomClient::join`], [`RoomClient::leave`] and
//!    [`RoomClient::send`]. On the Alepha wire a change of rooms returns
//!    [`Requested::Reconnect`]: close, reconnect with the new target, as
//!    Alepha's browser client does.
//! 5. When the connection ends: [`RoomClient::closed`].
//!
//! ## The two wires, from the client
//!
//! | | roomwire wire ([`WireFormat::Json`], [`WireFormat::Postcard`]) | Alepha wire ([`WireFormat::Alepha`]) |
//! |---|---|---|
//! | subprotocols offered | `roomwire.probe`, then `roomwire.v1.json` or `roomwire.v1.postcard` | none |
//! | target | `C::PATH` | `C::PATH?roomIds=a,b` |
//! | joining a room | a `join` envelope, answered `ok` or `error` | reconnect with a new target |
//! | sending | a `message` envelope | `{"roomId":"a","message":…}` |
//! | server messages | `push` envelopes, room or `None` | JSON, labelled with `__alephaRoom` or not |
//! | errors | `error` envelopes with a code | `{"error":"…"}` |
//!
//! ## Example
//!
//! A roomwire session, the server's frames written by hand:
//!
//! ```
//! use roomwire_core::client::{ClientEvent, Opened, Requested, RoomClient};
//! use roomwire_core::wire::WireFormat;
//!
//! #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! pub struct Say<'a> { pub content: &'a str }
//! roomwire_core::channel! { /// Chat.
//!     pub struct Chat { path: "/ws/chat", in: Say<'a>, out: Say<'a> } }
//!
//! let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Json, &["lobby"])?;
//! let mut target = [0u8; 64];
//! let n = client.write_target(&mut target)?;
//! assert_eq!(&target[..n], b"/ws/chat"); // rooms are joined after open
//! assert_eq!(client.protocols(), ["roomwire.probe", "roomwire.v1.json"]);
//!
//! // The server selected roomwire.v1.json: restore the wanted rooms.
//! assert_eq!(client.opened(Some("roomwire.v1.json"))?, Opened::Ready);
//! let mut out = [0u8; 128];
//! let n = client.poll_transmit(&mut out)?;
//! assert_eq!(&out[..n], br#"{"type":"join","ref":1,"room":"lobby"}"#);
//! assert_eq!(client.poll_transmit(&mut out)?, 0);
//!
//! let event = client.handle_message(br#"{"type":"ok","ref":1}"#, &mut [])?;
//! assert!(matches!(event, ClientEvent::Joined(room) if room == "lobby"));
//! assert!(client.is_joined("lobby"));
//!
//! let n = client.send("lobby", &Say { content: "hi" }, &mut out)?;
//! assert_eq!(&out[..n], br#"{"type":"message","room":"lobby","data":{"content":"hi"}}"#);
//!
//! let push = br#"{"type":"push","room":"lobby","data":{"content":"yo"}}"#;
//! match client.handle_message(push, &mut [])? {
//!     ClientEvent::Message { room, message } => {
//!         assert_eq!(room.as_deref(), Some("lobby"));
//!         assert_eq!(message, Say { content: "yo" });
//!     }
//!     other => panic!("{other:?}"),
//! }
//!
//! // Joining another room sends a request at once.
//! let Requested::Sent { reference, len } = client.join("game", &mut out)? else { panic!() };
//! assert_eq!((reference, &out[..len]), (2, &br#"{"type":"join","ref":2,"room":"game"}"#[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use core::marker::PhantomData;

use serde::Serialize;

use crate::MessageKind;
use crate::alepha::{self, DEFAULT_ROOM, SplitError};
use crate::channel::Channel;
use crate::envelope::{self, ClientEnvelope, EnvelopeError, ServerEnvelope, Text};
use crate::error::InsufficientSize;
use crate::json::{self, write_escaped_str};
use crate::payload;
use crate::payload::{DecodeError, EncodeError};
use crate::room::{CapacityError, RoomId, RoomSet};
use crate::wire::{PROTOCOL_JSON, PROTOCOL_POSTCARD, PROTOCOL_PROBE, WireFormat};
use crate::writer::{Writer, write_twice};

/// The close a client sends when it leaves on its own: the application
/// disconnects or reconnects, or the server speaks no roomwire (then the
/// client reconnects on the Alepha wire, [`Opened::Reconnect`]).
pub const CLOSE_LEAVING: crate::CloseCode = crate::CloseCode::Normal;

/// The close a client sends when the server leaves a join or leave
/// unanswered past the client's request timeout: the connection is
/// replaced (the reconnect policy decides when), not failed.
pub const CLOSE_REQUEST_TIMEOUT: crate::CloseCode = crate::CloseCode::Normal;

// ---------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------

/// The subprotocols a client offers to get `format`, in order: for the
/// roomwire wire, [`PROTOCOL_PROBE`] and then `roomwire.v1.postcard` or
/// `roomwire.v1.json`; none for the Alepha wire (Alepha's browser client
/// offers none).
///
/// The probe comes first so that a server that echoes the first offer
/// without understanding it (Node's `ws` with default options, as under
/// Alepha) is recognised at the handshake: see [`RoomClient::opened`].
///
/// ```
/// use roomwire_core::client::offered_protocols;
/// use roomwire_core::wire::{WireFormat, PROTOCOL_POSTCARD, PROTOCOL_PROBE};
/// assert_eq!(offered_protocols(WireFormat::Postcard), [PROTOCOL_PROBE, PROTOCOL_POSTCARD]);
/// assert!(offered_protocols(WireFormat::Alepha).is_empty());
/// ```
pub const fn offered_protocols(format: WireFormat) -> &'static [&'static str] {
    match format {
        WireFormat::Alepha => &[],
        WireFormat::Json => &[PROTOCOL_PROBE, PROTOCOL_JSON],
        WireFormat::Postcard => &[PROTOCOL_PROBE, PROTOCOL_POSTCARD],
    }
}

/// Writes the handshake request target of channel `C` into `out`: its
/// [`PATH`](Channel::PATH), plus, on the Alepha wire and if `rooms` is not
/// empty, the query naming them. Returns the length written; if `out` is
/// too small, nothing is written.
///
/// The query is Alepha's `?roomIds=a,b`, each room id encoded as
/// `application/x-www-form-urlencoded` like the browser's
/// `URLSearchParams` (ASCII letters, digits and `*-._` as is, space as
/// `+`, every other byte as `%XX`). The server splits `roomIds` at commas
/// *after* decoding and trims each item of whitespace, so a room id that
/// contains a comma, or starts or ends with whitespace, cannot travel in
/// that list: then every room is sent as a repeated `roomId=` instead,
/// which the server takes verbatim and in order.
///
/// On the roomwire wire the target is the path alone: rooms are joined
/// with envelopes once the connection is open. With no room, an Alepha
/// server puts the connection in the room `"default"`.
///
/// ```
/// use roomwire_core::client::write_target;
/// use roomwire_core::room::RoomId;
/// use roomwire_core::wire::WireFormat;
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
/// roomwire_core::channel! { /// Chat.
///     pub struct Chat { path: "/ws/chat", in: M, out: M } }
///
/// let rooms = [RoomId::new("a")?, RoomId::new("b c/d")?];
/// let mut out = [0u8; 64];
/// let n = write_target::<Chat>(WireFormat::Alepha, &rooms, &mut out)?;
/// assert_eq!(&out[..n], b"/ws/chat?roomIds=a,b+c%2Fd");
///
/// let rooms = [RoomId::new("x,y")?, RoomId::new("z")?];
/// let n = write_target::<Chat>(WireFormat::Alepha, &rooms, &mut out)?;
/// assert_eq!(&out[..n], b"/ws/chat?roomId=x%2Cy&roomId=z");
///
/// let n = write_target::<Chat>(WireFormat::Postcard, &rooms, &mut out)?;
/// assert_eq!(&out[..n], b"/ws/chat");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_target<C: Channel>(
    format: WireFormat,
    rooms: &[RoomId],
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    write_target_in::<C>(TargetBase::default(), format, rooms, out)
}

/// What a client's URL adds to every handshake target: a path prefix
/// before the channel's path, and a query of the application's (an auth
/// token, say) before the rooms.
///
/// ```
/// use roomwire_core::client::TargetBase;
/// use roomwire_core::url::WsUrl;
/// let url = WsUrl::parse("ws://h/api?token=t")?;
/// assert_eq!(TargetBase::from(&url), TargetBase { prefix: "/api", query: Some("token=t") });
/// # Ok::<(), roomwire_core::url::UrlError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TargetBase<'a> {
    /// Written before the channel's path, as is (no trailing `/`).
    pub prefix: &'a str,
    /// Written after `?`, as is, before the rooms of the Alepha wire.
    pub query: Option<&'a str>,
}

impl<'a> From<&crate::url::WsUrl<'a>> for TargetBase<'a> {
    fn from(url: &crate::url::WsUrl<'a>) -> Self {
        Self { prefix: url.prefix(), query: url.query }
    }
}

/// [`write_target`] under a URL's prefix and query: `prefix` + path, then
/// `?query`, then the rooms (joined to the query with `&`).
///
/// ```
/// use roomwire_core::client::{TargetBase, write_target_in};
/// use roomwire_core::room::RoomId;
/// use roomwire_core::wire::WireFormat;
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
/// roomwire_core::channel! { /// Chat.
///     pub struct Chat { path: "/ws/chat", in: M, out: M } }
///
/// let base = TargetBase { prefix: "/api", query: Some("token=t") };
/// let rooms = [RoomId::new("a")?];
/// let mut out = [0u8; 64];
/// let n = write_target_in::<Chat>(base, WireFormat::Alepha, &rooms, &mut out)?;
/// assert_eq!(&out[..n], b"/api/ws/chat?token=t&roomIds=a");
/// let n = write_target_in::<Chat>(base, WireFormat::Json, &rooms, &mut out)?;
/// assert_eq!(&out[..n], b"/api/ws/chat?token=t");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_target_in<C: Channel>(
    base: TargetBase<'_>,
    format: WireFormat,
    rooms: &[RoomId],
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    // Known at compile time for a channel without the Alepha wire, whose
    // image then has no room query writer.
    let query = C::WIRES.allows(WireFormat::Alepha) && format == WireFormat::Alepha && !rooms.is_empty();
    let as_list = query && rooms.iter().all(|room| fits_room_ids_list(room));
    write_twice(out, |w| {
        w.put(base.prefix.as_bytes());
        w.put(C::PATH.as_bytes());
        if let Some(own) = base.query {
            w.put(b"?");
            w.put(own.as_bytes());
        }
        if !query {
            return;
        }
        let first = if base.query.is_some() { b"&".as_slice() } else { b"?".as_slice() };
        for (i, room) in rooms.iter().enumerate() {
            match (as_list, i) {
                (true, 0) => {
                    w.put(first);
                    w.put(b"roomIds=");
                }
                (true, _) => w.put(b","),
                (false, 0) => {
                    w.put(first);
                    w.put(b"roomId=");
                }
                (false, _) => w.put(b"&roomId="),
            }
            put_form_encoded(w, room);
        }
    })
}

/// Whether `room` survives the server's `roomIds` parsing: split at
/// commas, items trimmed of JavaScript whitespace.
fn fits_room_ids_list(room: &str) -> bool {
    // Bytewise: `str::contains` would link a memchr for this one search.
    !room.bytes().any(|b| b == b',') && !room.starts_with(is_js_whitespace) && !room.ends_with(is_js_whitespace)
}

/// JavaScript's `String.prototype.trim` set: WhiteSpace and LineTerminator.
fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{FEFF}'
    )
}

/// `application/x-www-form-urlencoded` byte serialization (the URL
/// standard's, as `URLSearchParams.toString()` does it).
fn put_form_encoded(w: &mut Writer<'_>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => w.put(&[b]),
            b' ' => w.put(b"+"),
            _ => {
                let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(b & 0x0F)).copied().unwrap_or(b'0');
                w.put(&[b'%', hi, lo]);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Errors, events, outcomes
// ---------------------------------------------------------------------------

/// Why a [`RoomClient`] call failed. Nothing changed in the client when a
/// call fails, and nothing meaningful was written to `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The room id is empty, longer than
    /// [`MAX_ROOM_ID_LEN`](crate::room::MAX_ROOM_ID_LEN) bytes, or refused
    /// by the channel's [`validate_room_id`](Channel::validate_room_id):
    /// the server would refuse it too.
    InvalidRoomId,
    /// The wanted (or joined) room set is full.
    TooManyRooms(CapacityError),
    /// As many requests as the client tracks are waiting for an answer;
    /// handle the server's answers first.
    TooManyPending {
        /// How many requests the client tracks at most.
        capacity: usize,
    },
    /// The connection is not open ([`RoomClient::opened`] was not called,
    /// or [`RoomClient::closed`] was).
    NotOpen,
    /// Sending to a room the connection has not joined (or whose join is
    /// not confirmed yet). The roomwire server would answer
    /// [`NOT_A_MEMBER`](envelope::code::NOT_A_MEMBER); an Alepha server
    /// would silently handle the message in the connection's first room.
    NotJoined,
    /// The channel's [`validate`](Channel::validate) refused the message,
    /// with this reason: the server would refuse it too.
    Invalid(&'static str),
    /// The message or request could not be encoded into `out` (too small,
    /// or a value JSON or postcard cannot represent).
    Encode(EncodeError),
    /// A roomwire server message is not a valid envelope.
    Envelope(EnvelopeError),
    /// An Alepha server message is not JSON.
    NotJson,
    /// An Alepha server message carries an `__alephaRoom` member that is
    /// not a valid room id.
    InvalidLabel,
    /// `scratch` is too small to hold an Alepha message without its room
    /// marker.
    Scratch(InsufficientSize),
    /// An `ok` answers no request this client is waiting for.
    UnknownReference(u32),
    /// The server selected a subprotocol the client did not offer.
    UnexpectedProtocol,
    /// The server speaks a wire the channel's [`WIRES`](Channel::WIRES)
    /// do not allow (an Alepha server, to a client of a channel without
    /// the Alepha wire): trying again cannot help.
    WireNotAllowed(WireFormat),
    /// On the Alepha wire, a message whose JSON is `null`, `false`, `0` or
    /// `""` (a unit struct, `()`, `None`, ...): an Alepha server reads a
    /// falsy `message` as absent and takes the whole frame for the message
    /// (`parsed.message || parsed`), so it would refuse it, or worse.
    FalsyOnAlepha,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRoomId => f.write_str("invalid room id"),
            Self::TooManyRooms(e) => fmt::Display::fmt(e, f),
            Self::TooManyPending { capacity } => write!(f, "{capacity} requests already waiting for an answer"),
            Self::NotOpen => f.write_str("connection not open"),
            Self::NotJoined => f.write_str("not a member of that room"),
            Self::Invalid(reason) => write!(f, "Message validation failed: {reason}"),
            Self::Encode(e) => fmt::Display::fmt(e, f),
            Self::Envelope(e) => fmt::Display::fmt(e, f),
            Self::NotJson => fmt::Display::fmt(&alepha::NotJson, f),
            Self::InvalidLabel => f.write_str("invalid room label"),
            Self::Scratch(e) => write!(f, "scratch buffer too small: {e}"),
            Self::UnknownReference(reference) => write!(f, "answer to unknown request {reference}"),
            Self::UnexpectedProtocol => f.write_str("server selected a subprotocol that was not offered"),
            Self::WireNotAllowed(format) => {
                write!(f, "the server speaks the {format:?} wire, which this channel does not")
            }
            Self::FalsyOnAlepha => {
                f.write_str("the Alepha wire cannot carry a message whose JSON is null, false, 0 or \"\"")
            }
        }
    }
}

impl core::error::Error for ClientError {}

impl ClientError {
    /// The close code for a connection that must end because of this
    /// error (a failed [`RoomClient::opened`]): [`close_code`](Self::close_code),
    /// else 1002.
    ///
    /// ```
    /// use roomwire_core::client::ClientError;
    /// use roomwire_core::{CloseCode, WireFormat};
    /// assert_eq!(ClientError::UnexpectedProtocol.failure_code(WireFormat::Json), CloseCode::Protocol);
    /// ```
    pub fn failure_code(&self, format: WireFormat) -> crate::CloseCode {
        self.close_code(format).unwrap_or(crate::CloseCode::Protocol)
    }

    /// What a client does when [`RoomClient::handle_message`] or
    /// [`RoomClient::opened`] fails with this error on a connection of
    /// `format`: close the connection with
    /// the returned code, or, for `None`, drop the message and go on. The
    /// one mapping every adapter uses.
    ///
    /// | error | roomwire wire | Alepha wire |
    /// |---|---|---|
    /// | [`Envelope`](Self::Envelope): not an envelope | 1002 | (cannot occur) |
    /// | [`NotJson`](Self::NotJson), [`InvalidLabel`](Self::InvalidLabel) | (cannot occur) | dropped, as Alepha's browser client logs and drops such frames |
    /// | [`Scratch`](Self::Scratch): the message does not fit the client's memory | 1009 | 1009 |
    /// | [`UnknownReference`](Self::UnknownReference): a late answer | dropped | (cannot occur) |
    /// | [`UnexpectedProtocol`](Self::UnexpectedProtocol), from [`RoomClient::opened`] | 1002 | 1002 |
    /// | [`WireNotAllowed`](Self::WireNotAllowed), from [`RoomClient::opened`] | 1003 | 1003 |
    /// | anything else | dropped | dropped |
    ///
    /// ```
    /// use roomwire_core::client::ClientError;
    /// use roomwire_core::{CloseCode, WireFormat};
    /// assert_eq!(ClientError::NotJson.close_code(WireFormat::Alepha), None);
    /// assert_eq!(ClientError::UnknownReference(9).close_code(WireFormat::Json), None);
    /// ```
    pub fn close_code(&self, format: WireFormat) -> Option<crate::CloseCode> {
        use crate::CloseCode;
        match (self, format) {
            (Self::Scratch(_), _) => Some(CloseCode::MessageTooBig),
            (Self::UnexpectedProtocol, _) => Some(CloseCode::Protocol),
            (Self::WireNotAllowed(_), _) => Some(CloseCode::Unsupported),
            (Self::Envelope(_), WireFormat::Json | WireFormat::Postcard) => Some(CloseCode::Protocol),
            _ => None,
        }
    }
}

impl From<EncodeError> for ClientError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

impl From<InsufficientSize> for ClientError {
    fn from(e: InsufficientSize) -> Self {
        Self::Encode(EncodeError::InsufficientSize(e))
    }
}

impl From<CapacityError> for ClientError {
    fn from(e: CapacityError) -> Self {
        Self::TooManyRooms(e)
    }
}

/// What [`RoomClient::opened`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opened {
    /// Ready: call [`RoomClient::poll_transmit`] to restore the wanted
    /// rooms (roomwire wire; on the Alepha wire the handshake did).
    Ready,
    /// The client asked for the roomwire wire but the server answered with
    /// no subprotocol, or echoed [`PROTOCOL_PROBE`]: it only speaks the Alepha wire, and put this
    /// connection in the room `"default"`. The client switched to the
    /// Alepha wire; reconnect with the new [`RoomClient::write_target`] to
    /// be in the wanted rooms.
    Reconnect,
}

/// The outcome of [`RoomClient::join`] or [`RoomClient::leave`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Requested {
    /// Roomwire wire: a request of `len` bytes was written at the start of
    /// `out`; send it. Its answer is reported by
    /// [`RoomClient::handle_message`] as [`ClientEvent::Joined`],
    /// [`ClientEvent::Left`], [`ClientEvent::JoinFailed`] or
    /// [`ClientEvent::LeaveFailed`].
    Sent {
        /// The request's reference, echoed in its answer.
        reference: u32,
        /// Bytes written to `out`.
        len: usize,
    },
    /// Nothing to send now. The wanted rooms are updated; either the
    /// connection is not open (the next one asks for them), or the room
    /// already is (or is being made) joined or left.
    NotSent,
    /// Alepha wire, connection open: rooms are fixed by the handshake, and
    /// the wanted rooms are no longer the connection's (they are compared
    /// in order, as the first is the default room; undoing a change before
    /// reconnecting gives [`Requested::NotSent`] again). Close it and
    /// reconnect with the new [`RoomClient::write_target`], as Alepha's
    /// browser client does (when no room is wanted any more, Alepha's
    /// client just disconnects: an Alepha server would put a connection
    /// without rooms in `"default"`).
    Reconnect,
}

/// What a server message means for the application
/// ([`RoomClient::handle_message`]).
#[derive(Debug)]
pub enum ClientEvent<'a, M> {
    /// A join was confirmed: the connection is in this room.
    Joined(RoomId),
    /// A leave was confirmed: the connection is no longer in this room.
    Left(RoomId),
    /// A join was refused; the room is no longer wanted.
    JoinFailed {
        /// The room.
        room: RoomId,
        /// One of the [error codes](envelope::code).
        code: u16,
        /// The server's explanation.
        text: Text<'a>,
    },
    /// A leave was refused; the room is still joined (but not wanted, so
    /// it is not restored after a reconnect).
    LeaveFailed {
        /// The room.
        room: RoomId,
        /// One of the [error codes](envelope::code).
        code: u16,
        /// The server's explanation.
        text: Text<'a>,
    },
    /// The server reports an error not tied to a join or leave: a message
    /// of this client was refused or its handler failed. The connection
    /// stays open.
    ServerError {
        /// One of the [error codes](envelope::code) on the roomwire wire;
        /// `None` on the Alepha wire, whose `{"error": "…"}` frames have no
        /// code.
        code: Option<u16>,
        /// The server's explanation.
        text: Text<'a>,
    },
    /// A typed message from the server.
    Message {
        /// The room it was sent to. `None` when it was not sent because of
        /// a room (addressed to this connection, to a user, or to the whole
        /// channel): Alepha's client hands such messages to **every**
        /// room's handlers. A room is reported as labelled, also one the
        /// client did not ask for: a server may put a connection in rooms
        /// of its own choosing (its admission hook, or a join made on the
        /// server's side), and the label is how the client learns of them.
        room: Option<RoomId>,
        /// The message, without any room marker.
        message: M,
    },
    /// A message arrived but does not decode as the channel's
    /// [`In`](Channel::In) type (Alepha's client logs and drops such
    /// frames).
    DecodeFailed {
        /// The room it was labelled with, as in [`ClientEvent::Message`].
        room: Option<RoomId>,
        /// Why it did not decode.
        error: DecodeError,
    },
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Join,
    Leave,
}

/// A join or leave waiting for its answer.
#[derive(Debug, Clone)]
struct Pending {
    reference: u32,
    kind: Kind,
    room: RoomId,
}

/// The client side of channel `C`, in at most `N` rooms with at most `N`
/// requests waiting for an answer: see the [module docs](self).
///
/// Everything is inline (about 70 bytes per room and per pending request),
/// so a client can live in a `static` ([`RoomClient::new`] is `const`).
pub struct RoomClient<C: Channel, const N: usize> {
    format: WireFormat,
    open: bool,
    wanted: RoomSet<N>,
    /// Alepha wire: the rooms the target of the connection being opened
    /// named (see [`RoomClient::connect_target`]).
    targeted: Option<RoomSet<N>>,
    joined: RoomSet<N>,
    /// In the order sent, which is the order the server answers in.
    pending: heapless::Vec<Pending, N>,
    next_reference: u32,
    channel: PhantomData<fn() -> C>,
}

/// `room` as a room id a client of channel `C` may name on `format`:
/// 1 to 64 bytes that the channel's [`validate_room_id`](Channel::validate_room_id)
/// allows, except the Alepha wire's implicit `"default"` room, which is
/// never validated (as on the server).
///
/// ```
/// use roomwire_core::client::client_room_id;
/// use roomwire_core::wire::WireFormat;
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
/// roomwire_core::channel! { pub struct Match { path: "/ws/match", room_id: Uuid, in: M, out: M } }
/// assert!(client_room_id::<Match>(WireFormat::Alepha, "default").is_ok());
/// assert!(client_room_id::<Match>(WireFormat::Json, "default").is_err());
/// assert!(client_room_id::<Match>(WireFormat::Json, "0b5c3c2e-6a4f-4f0e-9d1e-3f8a2b7c9d10").is_ok());
/// ```
pub fn client_room_id<C: Channel>(format: WireFormat, room: &str) -> Result<RoomId, ClientError> {
    let id = RoomId::new(room).map_err(|_| ClientError::InvalidRoomId)?;
    let allowed = match format {
        WireFormat::Alepha => alepha::is_room_of::<C>(room),
        _ => C::validate_room_id(room),
    };
    if !allowed {
        return Err(ClientError::InvalidRoomId);
    }
    Ok(id)
}

impl<C: Channel, const N: usize> fmt::Debug for RoomClient<C, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomClient")
            .field("path", &C::PATH)
            .field("format", &self.format)
            .field("open", &self.open)
            .field("wanted", &self.wanted)
            .field("joined", &self.joined)
            .field("pending", &self.pending)
            .finish()
    }
}

impl<C: Channel, const N: usize> Default for RoomClient<C, N> {
    /// A client of the Alepha wire wanting no room.
    fn default() -> Self {
        Self::new(WireFormat::Alepha)
    }
}

impl<C: Channel, const N: usize> RoomClient<C, N> {
    /// A client that will ask for `format`, wanting no room yet.
    ///
    /// ```
    /// use roomwire_core::client::RoomClient;
    /// use roomwire_core::wire::WireFormat;
    /// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
    /// roomwire_core::channel! { /// Chat.
    ///     pub struct Chat { path: "/ws/chat", in: M, out: M } }
    ///
    /// static CLIENT: RoomClient<Chat, 4> = RoomClient::new(WireFormat::Postcard);
    /// assert!(CLIENT.wanted().is_empty());
    /// ```
    pub const fn new(format: WireFormat) -> Self {
        Self {
            // A wire the channel does not allow is replaced by one it does.
            format: C::WIRES.choose(format),
            open: false,
            wanted: RoomSet::new(),
            targeted: None,
            joined: RoomSet::new(),
            pending: heapless::Vec::new(),
            next_reference: 1,
            channel: PhantomData,
        }
    }

    /// A client that will ask for `format` and wants `rooms` (in that
    /// order; duplicates count once).
    ///
    /// ```
    /// use roomwire_core::client::{ClientError, RoomClient};
    /// use roomwire_core::wire::WireFormat;
    /// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
    /// roomwire_core::channel! { /// Chat.
    ///     pub struct Chat { path: "/ws/chat", in: M, out: M } }
    ///
    /// let client = RoomClient::<Chat, 2>::with_rooms(WireFormat::Alepha, &["a", "b", "a"])?;
    /// assert_eq!(client.wanted().len(), 2);
    /// assert!(matches!(RoomClient::<Chat, 2>::with_rooms(WireFormat::Alepha, &["a", "b", "c"]),
    ///     Err(ClientError::TooManyRooms(_))));
    /// assert_eq!(RoomClient::<Chat, 2>::with_rooms(WireFormat::Alepha, &[""]).unwrap_err(), ClientError::InvalidRoomId);
    /// # Ok::<(), ClientError>(())
    /// ```
    pub fn with_rooms(format: WireFormat, rooms: &[&str]) -> Result<Self, ClientError> {
        let mut client = Self::new(format);
        for room in rooms {
            client.wanted.join(Self::room_id(client.wire(), room)?)?;
        }
        Ok(client)
    }

    fn room_id(format: WireFormat, room: &str) -> Result<RoomId, ClientError> {
        client_room_id::<C>(format, room)
    }

    /// The wire format: the one asked for (or, if the channel's
    /// [`WIRES`](Channel::WIRES) do not allow it, the one
    /// [`Wires::choose`](crate::wire::Wires::choose) gives) until
    /// [`opened`](Self::opened), then the one the server selected.
    pub fn format(&self) -> WireFormat {
        self.wire()
    }

    /// The wire, read through the channel's [`WIRES`](Channel::WIRES):
    /// a constant when they allow one, so that the code of the other wires
    /// is never reached and not linked.
    fn wire(&self) -> WireFormat {
        C::WIRES.narrow(self.format)
    }

    /// The kind of WebSocket message to send this client's outputs in (and
    /// that the server's arrive in): binary for postcard, text otherwise.
    pub fn message_kind(&self) -> MessageKind {
        self.wire().message_kind()
    }

    /// The subprotocols to offer in the handshake: [`offered_protocols`] of
    /// [`format`](Self::format).
    pub fn protocols(&self) -> &'static [&'static str] {
        // The probe is offered whatever the channel's wires: it is how an
        // Alepha server that echoes the first offer is told apart, to fall
        // back to it or, without the Alepha wire, to refuse it.
        offered_protocols(self.wire())
    }

    /// Writes the handshake request target for the wanted rooms:
    /// [`write_target`] of [`format`](Self::format) and
    /// [`wanted`](Self::wanted).
    ///
    /// ```
    /// use roomwire_core::client::RoomClient;
    /// use roomwire_core::wire::WireFormat;
    /// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
    /// roomwire_core::channel! { /// Chat.
    ///     pub struct Chat { path: "/ws/chat", in: M, out: M } }
    ///
    /// let client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["a", "b"])?;
    /// let mut out = [0u8; 32];
    /// let n = client.write_target(&mut out)?;
    /// assert_eq!(&out[..n], b"/ws/chat?roomIds=a,b");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_target(&self, out: &mut [u8]) -> Result<usize, InsufficientSize> {
        write_target::<C>(self.wire(), self.wanted.as_slice(), out)
    }

    /// [`RoomClient::write_target`] for the connection about to be opened,
    /// remembering the rooms it names: on the Alepha wire those, not the
    /// rooms wanted when [`RoomClient::opened`] runs, are the connection's
    /// rooms (a join or leave in between asks for another reconnect).
    ///
    /// ```
    /// use roomwire_core::client::{Opened, RoomClient};
    /// use roomwire_core::wire::WireFormat;
    /// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
    /// roomwire_core::channel! { /// Chat.
    ///     pub struct Chat { path: "/ws/chat", in: M, out: M } }
    ///
    /// let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["a"])?;
    /// let mut out = [0u8; 32];
    /// client.connect_target(&mut out)?;
    /// client.join("b", &mut out)?; // while connecting
    /// assert_eq!(client.opened(None)?, Opened::Reconnect);
    /// assert!(client.is_joined("a") && !client.is_joined("b"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_target(&mut self, out: &mut [u8]) -> Result<usize, InsufficientSize> {
        self.connect_target_in(TargetBase::default(), out)
    }

    /// [`RoomClient::connect_target`] under a URL's prefix and query
    /// ([`write_target_in`]).
    pub fn connect_target_in(&mut self, base: TargetBase<'_>, out: &mut [u8]) -> Result<usize, InsufficientSize> {
        let n = write_target_in::<C>(base, self.wire(), self.wanted.as_slice(), out)?;
        self.targeted = Some(self.wanted.clone());
        Ok(n)
    }

    /// The rooms the application wants, in the order asked: restored after
    /// each reconnect.
    pub fn wanted(&self) -> &RoomSet<N> {
        &self.wanted
    }

    /// The rooms the current connection is in, in the order confirmed.
    /// Empty when the connection is not open.
    ///
    /// On the Alepha wire these are the rooms the handshake asked for (or
    /// `"default"`), assumed joined once the connection opens: that wire
    /// has no acknowledgement, and a server that refuses a room closes the
    /// connection instead (1008 "Invalid room id").
    pub fn rooms(&self) -> &RoomSet<N> {
        &self.joined
    }

    /// Whether the current connection is in `room`.
    pub fn is_joined(&self, room: &str) -> bool {
        self.joined.contains(room)
    }

    /// Whether the connection is open (between [`opened`](Self::opened)
    /// and [`closed`](Self::closed)).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// How many join or leave requests are waiting for an answer.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// The handshake completed and the server selected `protocol` (its
    /// `Sec-WebSocket-Protocol` answer, `None` if it sent none).
    ///
    /// * roomwire wire: the connection starts in no room; call
    ///   [`poll_transmit`](Self::poll_transmit) to join the wanted ones.
    /// * Alepha wire: the connection is in the rooms of the target, which
    ///   are now [`rooms`](Self::rooms) (`"default"` if none was wanted).
    /// * Asked for the roomwire wire, got none, or got
    ///   [`PROTOCOL_PROBE`] back (a server that echoes the first offer,
    ///   such as Alepha's on Node `ws`): see [`Opened::Reconnect`].
    ///
    /// A protocol that was not offered is
    /// [`ClientError::UnexpectedProtocol`] (the connection layer refuses
    /// such a handshake anyway).
    ///
    /// ```
    /// use roomwire_core::client::{Opened, RoomClient};
    /// use roomwire_core::wire::WireFormat;
    /// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
    /// roomwire_core::channel! { /// Chat.
    ///     pub struct Chat { path: "/ws/chat", in: M, out: M } }
    ///
    /// let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["a"])?;
    /// assert_eq!(client.opened(None)?, Opened::Ready);
    /// assert!(client.is_joined("a"));
    ///
    /// // A server that does not speak roomwire.
    /// let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Json, &["a"])?;
    /// assert_eq!(client.opened(None)?, Opened::Reconnect);
    /// assert_eq!(client.format(), WireFormat::Alepha);
    /// assert!(client.is_joined("default"));
    ///
    /// // A server that echoed the probe: the Alepha wire too.
    /// let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Postcard, &["a"])?;
    /// assert_eq!(client.opened(Some("roomwire.probe"))?, Opened::Reconnect);
    /// assert_eq!(client.format(), WireFormat::Alepha);
    /// # Ok::<(), roomwire_core::client::ClientError>(())
    /// ```
    pub fn opened(&mut self, protocol: Option<&str>) -> Result<Opened, ClientError> {
        let format = match protocol {
            // No subprotocol, or the probe echoed back: an Alepha server.
            None => WireFormat::Alepha,
            Some(PROTOCOL_PROBE) if self.wire() != WireFormat::Alepha => WireFormat::Alepha,
            Some(p) if self.protocols().contains(&p) => WireFormat::negotiate(core::iter::once(p)),
            Some(_) => return Err(ClientError::UnexpectedProtocol),
        };
        if !C::WIRES.allows(format) {
            // An Alepha server, and a channel without the Alepha wire.
            return Err(ClientError::WireNotAllowed(format));
        }
        let fell_back = format != self.wire();
        self.format = format;
        self.open = true;
        self.pending.clear();
        self.joined.clear();
        if format != WireFormat::Alepha {
            return Ok(Opened::Ready);
        }
        // The rooms the connection was opened with: those its target named.
        let rooms = self.targeted.take().unwrap_or_else(|| self.wanted.clone());
        if fell_back || rooms.is_empty() {
            // No room in the target: the server's "default".
            if let Ok(default) = RoomId::new(DEFAULT_ROOM) {
                let _ = self.joined.join(default);
            }
            return Ok(if self.wanted.is_empty() { Opened::Ready } else { Opened::Reconnect });
        }
        self.joined = rooms;
        Ok(if self.joined.as_slice() == self.wanted.as_slice() { Opened::Ready } else { Opened::Reconnect })
    }

    /// The connection ended: no room is joined and unanswered requests are
    /// forgotten. The wanted rooms stay, for the next connection.
    pub fn closed(&mut self) {
        self.open = false;
        self.targeted = None;
        self.pending.clear();
        self.joined.clear();
    }

    /// Whether `room` will be joined once every pending request is
    /// answered (as requested).
    fn expected_joined(&self, room: &str) -> bool {
        match self.pending.iter().rev().find(|p| p.room.as_str() == room) {
            Some(p) => p.kind == Kind::Join,
            None => self.joined.contains(room),
        }
    }

    /// Encodes a join or leave of `room` into `out` and records it.
    fn request(&mut self, kind: Kind, room: RoomId, out: &mut [u8]) -> Result<(u32, usize), ClientError> {
        if self.pending.is_full() {
            return Err(ClientError::TooManyPending { capacity: N });
        }
        let reference = self.next_reference;
        let envelope = match kind {
            Kind::Join => ClientEnvelope::Join { reference, room: room.clone() },
            Kind::Leave => ClientEnvelope::Leave { reference, room: room.clone() },
        };
        let len = envelope::encode_client(self.wire(), &envelope, out)?;
        // Cannot fail: checked above.
        let _ = self.pending.push(Pending { reference, kind, room });
        self.next_reference = self.next_reference.wrapping_add(1);
        Ok((reference, len))
    }

    /// Join `room`: add it to the wanted rooms and, on an open roomwire
    /// connection, write a `join` request into `out` (see [`Requested`]).
    ///
    /// No request is written when the room is already joined or being
    /// joined. If the call fails, nothing changes (in particular, a full
    /// `out` or a full request queue leaves the room unwanted).
    ///
    /// ```
    /// use roomwire_core::client::{Requested, RoomClient};
    /// use roomwire_core::wire::WireFormat;
    /// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
    /// roomwire_core::channel! { /// Chat.
    ///     pub struct Chat { path: "/ws/chat", in: M, out: M } }
    ///
    /// let mut out = [0u8; 32];
    /// let mut client = RoomClient::<Chat, 4>::new(WireFormat::Postcard);
    /// assert_eq!(client.join("a", &mut out)?, Requested::NotSent); // not open yet
    /// client.opened(Some("roomwire.v1.postcard"))?;
    /// assert_eq!(client.join("b", &mut out)?, Requested::Sent { reference: 1, len: 4 });
    /// assert_eq!(&out[..4], b"\x00\x01\x01b");
    /// assert_eq!(client.join("b", &mut out)?, Requested::NotSent); // already being joined
    ///
    /// let mut alepha = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["a"])?;
    /// alepha.opened(None)?;
    /// assert_eq!(alepha.join("b", &mut out)?, Requested::Reconnect);
    /// # Ok::<(), roomwire_core::client::ClientError>(())
    /// ```
    pub fn join(&mut self, room: &str, out: &mut [u8]) -> Result<Requested, ClientError> {
        let id = Self::room_id(self.wire(), room)?;
        if !self.wanted.contains(room) && self.wanted.is_full() {
            return Err(ClientError::TooManyRooms(CapacityError { capacity: N }));
        }
        let outcome = match (self.open, self.wire()) {
            (false, _) => Requested::NotSent,
            (true, WireFormat::Alepha) => {
                self.wanted.join(id)?;
                return Ok(self.alepha_outcome());
            }
            (true, _) if self.expected_joined(room) => Requested::NotSent,
            (true, _) => {
                let (reference, len) = self.request(Kind::Join, id.clone(), out)?;
                Requested::Sent { reference, len }
            }
        };
        self.wanted.join(id)?;
        Ok(outcome)
    }

    /// Leave `room`: remove it from the wanted rooms and, on an open
    /// roomwire connection, write a `leave` request into `out` (see
    /// [`Requested`]).
    ///
    /// No request is written when the room is not joined nor being joined.
    /// If the call fails, nothing changes.
    ///
    /// ```
    /// use roomwire_core::client::{ClientEvent, Requested, RoomClient};
    /// use roomwire_core::wire::WireFormat;
    /// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
    /// roomwire_core::channel! { /// Chat.
    ///     pub struct Chat { path: "/ws/chat", in: M, out: M } }
    ///
    /// let mut out = [0u8; 64];
    /// let mut client = RoomClient::<Chat, 4>::new(WireFormat::Json);
    /// client.opened(Some("roomwire.v1.json"))?;
    /// client.join("a", &mut out)?;
    /// client.handle_message(br#"{"type":"ok","ref":1}"#, &mut [])?;
    /// let Requested::Sent { len, .. } = client.leave("a", &mut out)? else { panic!() };
    /// assert_eq!(&out[..len], br#"{"type":"leave","ref":2,"room":"a"}"#);
    /// let event = client.handle_message(br#"{"type":"ok","ref":2}"#, &mut [])?;
    /// assert!(matches!(event, ClientEvent::Left(room) if room == "a"));
    /// assert!(client.rooms().is_empty() && client.wanted().is_empty());
    /// # Ok::<(), roomwire_core::client::ClientError>(())
    /// ```
    pub fn leave(&mut self, room: &str, out: &mut [u8]) -> Result<Requested, ClientError> {
        let outcome = match (self.open, self.wire()) {
            (false, _) => Requested::NotSent,
            (true, WireFormat::Alepha) => {
                self.wanted.leave(room);
                return Ok(self.alepha_outcome());
            }
            (true, _) if !self.expected_joined(room) => Requested::NotSent,
            (true, _) => {
                let id = RoomId::new(room).map_err(|_| ClientError::InvalidRoomId)?;
                let (reference, len) = self.request(Kind::Leave, id, out)?;
                Requested::Sent { reference, len }
            }
        };
        self.wanted.leave(room);
        Ok(outcome)
    }

    /// Alepha wire: a reconnect is needed while the wanted rooms are not
    /// the connection's (same rooms, same order: the first is the
    /// connection's default room).
    fn alepha_outcome(&self) -> Requested {
        if self.wanted.as_slice() == self.joined.as_slice() { Requested::NotSent } else { Requested::Reconnect }
    }

    /// Writes into `out` the next request needed to bring the connection's
    /// rooms in line with the wanted ones: after [`opened`](Self::opened),
    /// a `join` for each wanted room, one per call. Returns its length, or
    /// 0 when there is nothing to send (always on the Alepha wire, whose
    /// handshake names the rooms, and while every request slot is taken:
    /// call again after [`handle_message`](Self::handle_message)).
    ///
    /// ```
    /// use roomwire_core::client::RoomClient;
    /// use roomwire_core::wire::WireFormat;
    /// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
    /// roomwire_core::channel! { /// Chat.
    ///     pub struct Chat { path: "/ws/chat", in: M, out: M } }
    ///
    /// let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Postcard, &["a", "b"])?;
    /// client.opened(Some("roomwire.v1.postcard"))?;
    /// let mut out = [0u8; 16];
    /// let mut sent = Vec::new();
    /// loop {
    ///     let n = client.poll_transmit(&mut out)?;
    ///     if n == 0 { break; }
    ///     sent.push(out[..n].to_vec());
    /// }
    /// assert_eq!(sent, [b"\x00\x01\x01a".to_vec(), b"\x00\x02\x01b".to_vec()]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<usize, InsufficientSize> {
        if !self.open || self.wire() == WireFormat::Alepha || self.pending.is_full() {
            return Ok(0);
        }
        let Some(room) = self.wanted.iter().find(|room| !self.expected_joined(room)).cloned() else {
            return Ok(0);
        };
        match self.request(Kind::Join, room, out) {
            Ok((_, len)) => Ok(len),
            Err(ClientError::Encode(EncodeError::InsufficientSize(e))) => Err(e),
            // The queue has room (checked above) and joins encode to a
            // known size: nothing else can fail.
            Err(_) => Ok(0),
        }
    }

    /// Writes into `out` a message for the server's handler in `room`;
    /// returns its length. Send it as one message of kind
    /// [`message_kind`](Self::message_kind).
    ///
    /// * roomwire wire: a `message` envelope with the typed payload
    ///   (postcard or JSON).
    /// * Alepha wire: `{"roomId":"<room>","message":<JSON>}`, the frame of
    ///   Alepha's browser client. (Alepha's server reads `message` only when
    ///   it is truthy in JavaScript: keep payloads objects, as channel
    ///   schemas are.)
    ///
    /// The room must be [joined](Self::rooms), else
    /// [`ClientError::NotJoined`]: the roomwire server would refuse the
    /// message, and an Alepha server would handle it in another room (its
    /// connection's first), which is never what the caller meant. The
    /// message must pass [`Channel::validate`]. Without `std`, JSON is
    /// encoded by `serde-json-core` (see [`payload::encode_payload`]).
    ///
    /// ```
    /// use roomwire_core::client::{ClientError, RoomClient};
    /// use roomwire_core::wire::WireFormat;
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// pub struct Say<'a> { pub content: &'a str }
    /// roomwire_core::channel! { /// Chat.
    ///     pub struct Chat { path: "/ws/chat", in: Say<'a>, out: Say<'a> } }
    ///
    /// let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["a"])?;
    /// client.opened(None)?;
    /// let mut out = [0u8; 64];
    /// let n = client.send("a", &Say { content: "hi" }, &mut out)?;
    /// assert_eq!(&out[..n], br#"{"roomId":"a","message":{"content":"hi"}}"#);
    /// assert_eq!(client.send("b", &Say { content: "hi" }, &mut out), Err(ClientError::NotJoined));
    /// # Ok::<(), ClientError>(())
    /// ```
    pub fn send(&self, room: &str, message: &C::Out<'_>, out: &mut [u8]) -> Result<usize, ClientError> {
        if !self.open {
            return Err(ClientError::NotOpen);
        }
        let Some(room) = self.joined.iter().find(|r| r.as_str() == room) else {
            return Err(ClientError::NotJoined);
        };
        C::validate(message).map_err(ClientError::Invalid)?;
        let format = self.wire();
        match format {
            WireFormat::Alepha => {
                let head = write_twice(out, |w| {
                    w.put(br#"{"roomId":"#);
                    write_escaped_str(room, w);
                    w.put(br#","message":"#);
                })
                .map_err(|e| InsufficientSize { required: e.required + ALEPHA_SUFFIX.len() });
                let start = head.as_ref().map_or(0, |&at| at);
                let total = finish_frame(format, head, ALEPHA_SUFFIX, message, out)?;
                wire_carries(format, out.get(start..total.saturating_sub(ALEPHA_SUFFIX.len())).unwrap_or(&[]))?;
                Ok(total)
            }
            WireFormat::Json | WireFormat::Postcard => {
                // The envelope with an empty payload is the head and the
                // suffix: `data` (the payload) is last in both encodings.
                let suffix = message_suffix(format);
                let empty = ClientEnvelope::Message { room: room.clone(), payload: &[] };
                let head = envelope::encode_client(format, &empty, out).map(|n| n.saturating_sub(suffix.len()));
                Ok(finish_frame(format, head, suffix, message, out)?)
            }
        }
    }

    /// [`RoomClient::send`] for a payload already encoded (and validated)
    /// in this client's payload encoding: JSON on the Alepha and JSON wires
    /// ([`WireFormat::is_json`]), postcard otherwise. Lets an adapter keep
    /// queued messages as bytes and frame them without re-encoding. A JSON
    /// payload that is not valid JSON is refused; a postcard payload is
    /// framed as given.
    ///
    /// ```
    /// use roomwire_core::client::RoomClient;
    /// use roomwire_core::wire::WireFormat;
    /// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
    /// roomwire_core::channel! { /// Chat.
    ///     pub struct Chat { path: "/ws/chat", in: M, out: M } }
    ///
    /// let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["a"])?;
    /// client.opened(None)?;
    /// let mut out = [0u8; 64];
    /// let n = client.send_encoded("a", br#"{"content":"hi"}"#, &mut out)?;
    /// assert_eq!(&out[..n], br#"{"roomId":"a","message":{"content":"hi"}}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_encoded(&self, room: &str, payload: &[u8], out: &mut [u8]) -> Result<usize, ClientError> {
        if !self.open {
            return Err(ClientError::NotOpen);
        }
        let Some(room) = self.joined.iter().find(|r| r.as_str() == room) else {
            return Err(ClientError::NotJoined);
        };
        let format = self.wire();
        if format.is_json() && crate::json::validate(payload).is_err() {
            return Err(ClientError::NotJson);
        }
        wire_carries(format, payload)?;
        let n = match format {
            WireFormat::Alepha => write_twice(out, |w| {
                w.put(br#"{"roomId":"#);
                write_escaped_str(room, w);
                w.put(br#","message":"#);
                w.put(payload);
                w.put(ALEPHA_SUFFIX);
            })?,
            format => envelope::encode_client(format, &ClientEnvelope::Message { room: room.clone(), payload }, out)?,
        };
        Ok(n)
    }

    /// Reads one whole message from the server (see [`ClientEvent`]) and
    /// updates the joined rooms.
    ///
    /// `scratch` is working memory. On the Alepha wire, a labelled frame
    /// is rebuilt there without its `__alephaRoom` member, so the message
    /// decodes exactly as it was sent (at most the frame's length is
    /// needed). Without `std`, JSON strings with escapes are unescaped into
    /// what remains of it (see [`payload::decode_payload`]); with `std`,
    /// or for postcard, nothing more is needed. A `scratch` of the
    /// frame's length plus the longest escaped string is always enough.
    ///
    /// Never panics: bad input is a [`ClientError`], a message of the
    /// wrong shape a [`ClientEvent::DecodeFailed`].
    ///
    /// ```
    /// use roomwire_core::client::{ClientEvent, RoomClient};
    /// use roomwire_core::wire::WireFormat;
    ///
    /// #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    /// #[serde(deny_unknown_fields)]
    /// pub struct Say<'a> { pub content: &'a str }
    /// roomwire_core::channel! { /// Chat.
    ///     pub struct Chat { path: "/ws/chat", in: Say<'a>, out: Say<'a> } }
    ///
    /// let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["a", "b"])?;
    /// client.opened(None)?;
    /// let mut scratch = [0u8; 64];
    /// let frame = br#"{"content":"hi","__alephaRoom":"a"}"#;
    /// match client.handle_message(frame, &mut scratch)? {
    ///     ClientEvent::Message { room, message } => {
    ///         assert_eq!(room.as_deref(), Some("a"));
    ///         assert_eq!(message, Say { content: "hi" });
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// let error = client.handle_message(br#"{"error":"boom"}"#, &mut scratch)?;
    /// assert!(matches!(error, ClientEvent::ServerError { code: None, text } if text.eq_str("boom")));
    /// # Ok::<(), roomwire_core::client::ClientError>(())
    /// ```
    pub fn handle_message<'a>(
        &mut self,
        data: &'a [u8],
        scratch: &'a mut [u8],
    ) -> Result<ClientEvent<'a, C::In<'a>>, ClientError> {
        match self.wire() {
            WireFormat::Alepha => Self::handle_alepha(data, scratch),
            format => self.handle_envelope(format, data, scratch),
        }
    }

    fn handle_envelope<'a>(
        &mut self,
        format: WireFormat,
        data: &'a [u8],
        scratch: &'a mut [u8],
    ) -> Result<ClientEvent<'a, C::In<'a>>, ClientError> {
        match envelope::decode_server(format, data).map_err(ClientError::Envelope)? {
            ServerEnvelope::Ok { reference } => {
                let pending = self.take_pending(reference).ok_or(ClientError::UnknownReference(reference))?;
                match pending.kind {
                    Kind::Join => {
                        self.joined.join(pending.room.clone())?;
                        Ok(ClientEvent::Joined(pending.room))
                    }
                    Kind::Leave => {
                        self.joined.leave(&pending.room);
                        Ok(ClientEvent::Left(pending.room))
                    }
                }
            }
            ServerEnvelope::Error { reference, code, text } => {
                let Some(pending) = reference.and_then(|r| self.take_pending(r)) else {
                    return Ok(ClientEvent::ServerError { code: Some(code), text });
                };
                let room = pending.room;
                match pending.kind {
                    Kind::Join => {
                        // Unless asked again since, the room cannot be
                        // joined: stop wanting it (else every reconnect
                        // would fail the same way).
                        if !self.pending.iter().any(|p| p.room == room) && !self.joined.contains(&room) {
                            self.wanted.leave(&room);
                        }
                        Ok(ClientEvent::JoinFailed { room, code, text })
                    }
                    Kind::Leave => Ok(ClientEvent::LeaveFailed { room, code, text }),
                }
            }
            ServerEnvelope::Push { room, payload } => {
                Ok(match payload::decode_payload::<C::In<'a>>(format, payload, scratch) {
                    Ok(message) => ClientEvent::Message { room, message },
                    Err(error) => ClientEvent::DecodeFailed { room, error },
                })
            }
        }
    }

    fn take_pending(&mut self, reference: u32) -> Option<Pending> {
        let index = self.pending.iter().position(|p| p.reference == reference)?;
        Some(self.pending.remove(index))
    }

    fn handle_alepha<'a>(data: &'a [u8], scratch: &'a mut [u8]) -> Result<ClientEvent<'a, C::In<'a>>, ClientError> {
        if let Some(text) = alepha_error(data)? {
            return Ok(ClientEvent::ServerError { code: None, text });
        }
        // The frame without its marker needs at most the frame's length;
        // the rest of `scratch` is for unescaping.
        let (frame_buf, unescape) = scratch.split_at_mut(data.len().min(scratch.len()));
        let (room, payload) = alepha::split_server_frame(data, frame_buf).map_err(|e| match e {
            SplitError::NotJson => ClientError::NotJson,
            SplitError::InsufficientSize(e) => ClientError::Scratch(e),
        })?;
        let stripped = !core::ptr::eq(payload.as_ptr(), data.as_ptr());
        if stripped && room.is_none() {
            return Err(ClientError::InvalidLabel);
        }
        Ok(match payload::decode_payload::<C::In<'a>>(WireFormat::Alepha, payload, unescape) {
            Ok(message) => ClientEvent::Message { room, message },
            Err(error) => ClientEvent::DecodeFailed { room, error },
        })
    }
}

/// What follows the payload of an Alepha client frame.
const ALEPHA_SUFFIX: &[u8] = b"}";

/// What follows the payload of a `message` envelope.
const fn message_suffix(format: WireFormat) -> &'static [u8] {
    match format {
        WireFormat::Postcard => b"",
        WireFormat::Json | WireFormat::Alepha => b"}",
    }
}

/// Completes a frame whose head (`Ok(len)`, already at the start of `out`,
/// or `Err` with the size of head and suffix) precedes the payload
/// `value`, followed by `suffix`.
/// Whether `format` can carry a message whose payload (as encoded for it)
/// is `payload`: not on the Alepha wire when its JSON is falsy
/// ([`ClientError::FalsyOnAlepha`]: an Alepha server would take the whole
/// frame for the message). [`RoomClient::send`] and
/// [`RoomClient::send_encoded`] check it; an adapter that encodes
/// messages ahead (an offline queue) can refuse them up front with it.
///
/// ```
/// use roomwire_core::client::{ClientError, wire_carries};
/// use roomwire_core::wire::WireFormat;
/// assert_eq!(wire_carries(WireFormat::Alepha, b"null"), Err(ClientError::FalsyOnAlepha));
/// assert_eq!(wire_carries(WireFormat::Alepha, br#"{"n":0}"#), Ok(()));
/// assert_eq!(wire_carries(WireFormat::Json, b"null"), Ok(()));
/// ```
pub fn wire_carries(format: WireFormat, payload: &[u8]) -> Result<(), ClientError> {
    if format == WireFormat::Alepha && crate::json::is_falsy_as_written(payload) {
        return Err(ClientError::FalsyOnAlepha);
    }
    Ok(())
}

fn finish_frame<T: Serialize + ?Sized>(
    format: WireFormat,
    head: Result<usize, InsufficientSize>,
    suffix: &[u8],
    value: &T,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let overhead = |head: usize| head + suffix.len();
    let grow = |e: EncodeError, extra: usize| match e {
        EncodeError::InsufficientSize(e) => {
            EncodeError::InsufficientSize(InsufficientSize { required: e.required + extra })
        }
        other => other,
    };
    let head = match head {
        Ok(head) => head,
        // Measure the payload for an exact answer where the encoder can.
        Err(e) => {
            return Err(match payload::encode_payload(format, value, &mut []) {
                Ok(n) => EncodeError::InsufficientSize(InsufficientSize { required: e.required + n }),
                Err(payload) => grow(payload, e.required),
            });
        }
    };
    let end = out.len().checked_sub(suffix.len()).filter(|&end| end >= head);
    let Some(body) = end.and_then(|end| out.get_mut(head..end)) else {
        return Err(grow(
            payload::encode_payload(format, value, &mut [])
                .map_or_else(|e| e, |n| EncodeError::InsufficientSize(InsufficientSize { required: n })),
            overhead(head),
        ));
    };
    let n = payload::encode_payload(format, value, body).map_err(|e| grow(e, overhead(head)))?;
    let total = overhead(head) + n;
    let tail =
        out.get_mut(head + n..total).ok_or(EncodeError::InsufficientSize(InsufficientSize { required: total }))?;
    tail.copy_from_slice(suffix);
    Ok(total)
}

/// If an Alepha frame is an error frame, `{"error": "<text>"}` (an object
/// whose only member is `error`, a string), its text.
///
/// A channel whose server messages could themselves be exactly such an
/// object cannot tell them apart; roomwire reports them as errors (a
/// labelled frame is always a message).
fn alepha_error(data: &[u8]) -> Result<Option<Text<'_>>, ClientError> {
    let Some(mut members) = json::object_members(data).map_err(|_| ClientError::NotJson)? else {
        return Ok(None);
    };
    let (Some((key, value)), None) = (members.next(), members.next()) else {
        return Ok(None);
    };
    if !key.eq_str("error") {
        return Ok(None);
    }
    Ok(json::as_string(value).map(|raw| raw.as_borrowed().map_or(Text::Json(raw), Text::Plain)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Say<'a> {
        content: &'a str,
    }

    crate::channel! {
        struct PostcardOnly { path: "/ws/chat", wires: Wires::POSTCARD, in: Say<'a>, out: Say<'a> }
    }

    crate::channel! {
        struct AlephaOnly { path: "/ws/chat", wires: Wires::ALEPHA, in: Say<'a>, out: Say<'a> }
    }

    /// A channel with one wire: the client speaks it whatever it is asked
    /// for, offers no probe (nothing to fall back to), and refuses a server
    /// that answers on another wire.
    #[test]
    fn a_channel_with_one_wire_speaks_it_alone() {
        let mut client = RoomClient::<PostcardOnly, 2>::with_rooms(WireFormat::Alepha, &["a"]).unwrap();
        assert_eq!(client.format(), WireFormat::Postcard);
        // The probe still comes first: it tells an echoing Alepha server.
        assert_eq!(client.protocols(), [PROTOCOL_PROBE, PROTOCOL_POSTCARD]);
        assert_eq!(client.message_kind(), MessageKind::Binary);
        let not_allowed = ClientError::WireNotAllowed(WireFormat::Alepha);
        assert_eq!(client.opened(None), Err(not_allowed), "an Alepha server");
        assert_eq!(client.opened(Some(PROTOCOL_PROBE)), Err(not_allowed), "an Alepha server echoing the probe");
        assert_eq!(not_allowed.close_code(WireFormat::Postcard), Some(crate::CloseCode::Unsupported));
        assert_eq!(client.opened(Some(PROTOCOL_JSON)), Err(ClientError::UnexpectedProtocol));
        assert_eq!(client.opened(Some(PROTOCOL_POSTCARD)), Ok(Opened::Ready));
        let mut out = [0u8; 64];
        assert_eq!(client.join("b", &mut out), Ok(Requested::Sent { reference: 1, len: 4 }));
        assert_eq!(&out[..4], b"\x00\x01\x01b", "a postcard join");

        let mut alepha = RoomClient::<AlephaOnly, 2>::with_rooms(WireFormat::Postcard, &["a"]).unwrap();
        assert_eq!(alepha.format(), WireFormat::Alepha);
        assert!(alepha.protocols().is_empty());
        assert_eq!(alepha.opened(None), Ok(Opened::Ready));
        let n = alepha.send("a", &Say { content: "hi" }, &mut out).unwrap();
        assert_eq!(&out[..n], br#"{"roomId":"a","message":{"content":"hi"}}"#);
        assert_eq!(alepha.opened(Some(PROTOCOL_POSTCARD)), Err(ClientError::UnexpectedProtocol), "not offered");
    }

    struct Chat;

    impl Channel for Chat {
        const PATH: &'static str = "/ws/chat";
        type In<'a> = Say<'a>;
        type Out<'a> = Say<'a>;
    }

    #[test]
    fn form_encoding_matches_url_search_params() {
        // new URLSearchParams({roomIds: "a b+c/é~!'()*-._"}).toString()
        let mut out = [0u8; 128];
        let n =
            write_target::<Chat>(WireFormat::Alepha, &[RoomId::new("a b+c/é~!'()*-._").unwrap()], &mut out).unwrap();
        assert_eq!(&out[..n], b"/ws/chat?roomIds=a+b%2Bc%2F%C3%A9%7E%21%27%28%29*-._");
        assert!(!fits_room_ids_list(" a"));
        assert!(!fits_room_ids_list("a\u{3000}"));
        assert!(fits_room_ids_list("a b"));
        assert_eq!(write_target::<Chat>(WireFormat::Alepha, &[], &mut out), Ok(8));
        assert_eq!(
            write_target::<Chat>(WireFormat::Alepha, &[RoomId::new("a").unwrap()], &mut [0; 4]).unwrap_err().required,
            18
        );
    }

    #[test]
    fn send_sizes() {
        for format in [WireFormat::Alepha, WireFormat::Json, WireFormat::Postcard] {
            let mut client = RoomClient::<Chat, 2>::with_rooms(format, &["room"]).unwrap();
            client.opened(format.protocol()).unwrap();
            if format != WireFormat::Alepha {
                let mut out = [0u8; 64];
                let n = client.poll_transmit(&mut out).unwrap();
                assert!(n > 0);
                client
                    .handle_message(
                        if format == WireFormat::Json { br#"{"type":"ok","ref":1}"# } else { b"\x00\x01" },
                        &mut [],
                    )
                    .unwrap();
            }
            let say = Say { content: "hello" };
            let mut big = [0u8; 128];
            let full = client.send("room", &say, &mut big).unwrap();
            // Same bytes as the envelope encoder with a pre-encoded payload.
            if format != WireFormat::Alepha {
                let mut payload = [0u8; 64];
                let p = payload::encode_payload(format, &say, &mut payload).unwrap();
                let mut expected = [0u8; 128];
                let e = envelope::encode_client(
                    format,
                    &ClientEnvelope::Message { room: RoomId::new("room").unwrap(), payload: &payload[..p] },
                    &mut expected,
                )
                .unwrap();
                assert_eq!(&big[..full], &expected[..e]);
            }
            // Every smaller buffer fails cleanly, with the exact size when known.
            for len in 0..full {
                let mut small = [0u8; 128];
                match client.send("room", &say, &mut small[..len]) {
                    Err(ClientError::Encode(EncodeError::InsufficientSize(e))) => {
                        assert_eq!(e.required, full, "{format:?} {len}")
                    }
                    Err(ClientError::Encode(EncodeError::BufferFull)) if cfg!(not(feature = "std")) => {}
                    other => panic!("{format:?} {len}: {other:?}"),
                }
            }
        }
    }
}
