//! The Alepha wire: what Alepha's browser client and Node server say,
//! byte for byte.
//!
//! A client that offers no roomwire subprotocol ([`crate::wire`]) speaks
//! Alepha's protocol, which has no control messages at all:
//!
//! * **Rooms are fixed at the handshake**, from the query string
//!   ([`rooms_from_query`]): every `roomId=` value, then the comma list of
//!   the first `roomIds=`; none means the room `"default"`.
//! * **Client frames** are JSON text, either `{"roomId": "r", "message":
//!   <payload>}` or a bare payload ([`parse_client_frame`]). A frame that
//!   is not JSON is dropped silently. A `roomId` the connection did not
//!   join is ignored: the frame is handled in the connection's first room
//!   ([`resolve_room`]).
//! * **Server frames** are the payload itself, JSON, with
//!   `"__alephaRoom": "<room>"` added as the last member when the frame
//!   went out because of a room ([`write_server_frame`]). A handler that
//!   fails answers `{"error": "<text>"}` ([`write_error_frame`]); the
//!   connection stays open.
//! * A client strips the marker before handing the payload on
//!   ([`split_server_frame`]).
//!
//! Typed messages are JSON ([`decode_message`](crate::payload::decode_message), [`encode_payload`](crate::payload::encode_payload)).
//! `PROTOCOL.md` at the repository root specifies the wire in full.
//!
//! ```
//! use roomwire_core::alepha;
//! use roomwire_core::room::RoomSet;
//!
//! // Handshake: GET /ws/chat?roomIds=lobby,game
//! let mut rooms = RoomSet::<4>::new();
//! alepha::rooms_from_query(Some("roomIds=lobby,game"), |_| true, &mut rooms)?;
//!
//! // A client frame naming a joined room.
//! let frame = alepha::parse_client_frame(br#"{"roomId":"game","message":{"content":"hi"}}"#)?;
//! assert_eq!(frame.message, br#"{"content":"hi"}"#);
//! let room = alepha::resolve_room(frame.claimed_room.as_deref(), &rooms);
//! assert_eq!(room, Some("game"));
//!
//! // The reply to that room.
//! let mut out = [0u8; 64];
//! let n = alepha::write_server_frame(br#"{"content":"hi"}"#, room, &mut out)?;
//! assert_eq!(&out[..n], br#"{"content":"hi","__alephaRoom":"game"}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use crate::channel::Channel;
use crate::envelope::room_from_raw;
use crate::error::InsufficientSize;
use crate::json::{self, EscapingWriter, RawStr, write_escaped_str};
use crate::payload;
use crate::room::{MAX_ROOM_ID_LEN, RoomId, RoomSet};
use crate::wire::WireFormat;
use crate::writer::write_twice;

pub use crate::payload::{DecodeError, EncodeError, MessageError};

/// The room of a connection whose handshake names none.
pub const DEFAULT_ROOM: &str = "default";

/// Whether `room` is a room of channel `C`: one its
/// [`validate_room_id`](Channel::validate_room_id) allows, or the implicit
/// [`DEFAULT_ROOM`], which is never validated (as in Alepha).
///
/// ```
/// use roomwire_core::alepha::is_room_of;
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
/// roomwire_core::channel! { pub struct Match { path: "/ws/match", room_id: Uuid, in: M, out: M } }
/// assert!(is_room_of::<Match>("default"));
/// assert!(!is_room_of::<Match>("lobby"));
/// ```
pub fn is_room_of<C: Channel>(room: &str) -> bool {
    room == DEFAULT_ROOM || C::validate_room_id(room)
}

/// The member a server adds to frames sent because of a room, naming it.
pub const ROOM_MARKER: &str = "__alephaRoom";

// ---------------------------------------------------------------------------
// Handshake query
// ---------------------------------------------------------------------------

/// Why the rooms of a handshake query were refused. Alepha (on
/// Cloudflare) closes such a connection with 1008 "Invalid room id".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryRoomsError {
    /// A room id is empty or longer than [`MAX_ROOM_ID_LEN`] bytes once
    /// decoded, or the validation function refused it.
    InvalidRoomId,
    /// The connection's [`RoomSet`] is full.
    TooManyRooms,
}

impl fmt::Display for QueryRoomsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidRoomId => "Invalid room id",
            Self::TooManyRooms => "Too many rooms",
        })
    }
}

impl core::error::Error for QueryRoomsError {}

/// Joins the rooms named by a handshake query, as Alepha's Node server
/// does: every `roomId` value in order, then the comma-separated list of
/// the first `roomIds` value (items trimmed of whitespace, empty items
/// dropped). If the query names no room, the connection joins
/// [`DEFAULT_ROOM`], which is never validated. Rooms already in `rooms`
/// count as joined (joining is idempotent); other keys are ignored.
///
/// `query` is the part of the request target after `?` (a leading `?` and
/// anything from `#` on are ignored). It is parsed like the browser's
/// `URLSearchParams`: `&`-separated pairs, `+` is a space, `%XX` escapes
/// are decoded (an invalid escape stays as is), and bytes that are not
/// UTF-8 become U+FFFD. Each room id is decoded into a stack buffer of
/// [`MAX_ROOM_ID_LEN`] bytes, then checked with `validate` (e.g.
/// [`Channel::validate_room_id`]).
///
/// On error, `rooms` may hold the rooms joined before the bad one: refuse
/// the connection.
///
/// ```
/// use roomwire_core::alepha::{rooms_from_query, QueryRoomsError};
/// use roomwire_core::room::RoomSet;
///
/// let names = |rooms: &RoomSet<8>| rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>();
///
/// let mut rooms = RoomSet::<8>::new();
/// rooms_from_query(Some("roomIds=a,%20b%2Cc,,&roomId=x+y&token=t"), |_| true, &mut rooms)?;
/// assert_eq!(names(&rooms), ["x y", "a", "b", "c"]);
///
/// let mut rooms = RoomSet::<8>::new();
/// rooms_from_query(None, |_| false, &mut rooms)?;
/// assert_eq!(names(&rooms), ["default"]);
///
/// let mut rooms = RoomSet::<8>::new();
/// let only_lowercase = |r: &str| r.bytes().all(|b| b.is_ascii_lowercase());
/// assert_eq!(rooms_from_query(Some("roomId=A"), only_lowercase, &mut rooms), Err(QueryRoomsError::InvalidRoomId));
/// # Ok::<(), QueryRoomsError>(())
/// ```
pub fn rooms_from_query<const N: usize>(
    query: Option<&str>,
    validate: impl Fn(&str) -> bool,
    rooms: &mut RoomSet<N>,
) -> Result<(), QueryRoomsError> {
    let named = for_each_query_room(query, |room| {
        if !validate(&room) {
            return Err(QueryRoomsError::InvalidRoomId);
        }
        rooms.join(room).map(|_| ()).map_err(|_| QueryRoomsError::TooManyRooms)
    })?;
    if !named {
        let default = RoomId::new(DEFAULT_ROOM).map_err(|_| QueryRoomsError::InvalidRoomId)?;
        rooms.join(default).map_err(|_| QueryRoomsError::TooManyRooms)?;
    }
    Ok(())
}

/// Hands `visit` each room a handshake query names, decoded, in the order
/// of [`rooms_from_query`] (repeats included, the implicit
/// [`DEFAULT_ROOM`] not), without keeping them: a caller that reads the
/// query more than once needs no buffer of rooms. Returns whether the
/// query named a room. A room id that does not decode (empty, longer than
/// [`MAX_ROOM_ID_LEN`]) stops the walk with
/// [`QueryRoomsError::InvalidRoomId`]; an error from `visit` stops it too.
///
/// ```
/// use roomwire_core::alepha::{for_each_query_room, QueryRoomsError};
/// let mut seen = Vec::new();
/// let named = for_each_query_room(Some("roomIds=b,a&roomId=c"), |room| {
///     seen.push(room.to_string());
///     Ok::<(), QueryRoomsError>(())
/// })?;
/// assert!(named);
/// assert_eq!(seen, ["c", "b", "a"]);
/// assert!(!for_each_query_room(Some("token=t"), |_| Ok::<(), QueryRoomsError>(()))?);
/// # Ok::<(), QueryRoomsError>(())
/// ```
pub fn for_each_query_room<E: From<QueryRoomsError>>(
    query: Option<&str>,
    mut visit: impl FnMut(RoomId) -> Result<(), E>,
) -> Result<bool, E> {
    let query = query.unwrap_or("");
    let query = query.strip_prefix('?').unwrap_or(query);
    let query = query.split_once('#').map_or(query, |(before, _)| before);
    let mut named = false;
    for (name, value) in query_pairs(query) {
        if decoded_eq(name, b"roomId") {
            visit(decode_room(value, false)?.ok_or(QueryRoomsError::InvalidRoomId)?)?;
            named = true;
        }
    }
    if let Some((_, list)) = query_pairs(query).find(|(name, _)| decoded_eq(name, b"roomIds")) {
        let mut rest = list;
        loop {
            let (item, next) = split_decoded_comma(rest);
            if let Some(room) = decode_room(item, true)? {
                visit(room)?;
                named = true;
            }
            match next {
                Some(next) => rest = next,
                None => break,
            }
        }
    }
    Ok(named)
}

/// The `name=value` pairs of a query, raw (still encoded). Empty pairs are
/// skipped; a pair without `=` has an empty value.
fn query_pairs(query: &str) -> impl Iterator<Item = (&[u8], &[u8])> {
    query.split('&').filter(|pair| !pair.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (name.as_bytes(), value.as_bytes())
    })
}

/// The bytes of a form-urlencoded string, decoded (`+` is a space, `%XX`
/// a byte, anything else itself).
#[derive(Clone)]
struct FormDecoded<'a> {
    raw: &'a [u8],
}

impl<'a> FormDecoded<'a> {
    /// The next decoded byte and the raw bytes after it.
    fn step(raw: &'a [u8]) -> Option<(u8, &'a [u8])> {
        match raw {
            [] => None,
            [b'%', hi, lo, rest @ ..] if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                let hex = |d: u8| (d as char).to_digit(16).unwrap_or(0) as u8;
                Some((hex(*hi) << 4 | hex(*lo), rest))
            }
            [b'+', rest @ ..] => Some((b' ', rest)),
            [b, rest @ ..] => Some((*b, rest)),
        }
    }
}

impl Iterator for FormDecoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (b, rest) = Self::step(self.raw)?;
        self.raw = rest;
        Some(b)
    }
}

fn decoded_eq(raw: &[u8], expected: &[u8]) -> bool {
    // Bytes that are not UTF-8 decode to U+FFFD, never to ASCII, so
    // comparing decoded bytes to an ASCII name is comparing strings.
    FormDecoded { raw }.eq(expected.iter().copied())
}

/// Splits raw form-encoded text at its first *decoded* comma (a `,` or a
/// `%2C`): the raw item before it, and the raw rest after it if any.
fn split_decoded_comma(raw: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut rest = raw;
    while let Some((b, after)) = FormDecoded::step(rest) {
        if b == b',' {
            let item = raw.get(..raw.len() - rest.len()).unwrap_or(&[]);
            return (item, Some(after));
        }
        rest = after;
    }
    (raw, None)
}

/// Length of the JavaScript whitespace (`String.prototype.trim`'s
/// WhiteSpace and LineTerminator) encoded in UTF-8 at the start of
/// `bytes`, or 0.
fn js_whitespace_len(bytes: [Option<u8>; 3]) -> usize {
    match bytes {
        [Some(0x09..=0x0D | 0x20), ..] => 1,
        [Some(0xC2), Some(0xA0), _] => 2,
        [Some(0xE1), Some(0x9A), Some(0x80)]            // U+1680
        | [Some(0xE2), Some(0x80), Some(0x80..=0x8A)]   // U+2000..U+200A
        | [Some(0xE2), Some(0x80), Some(0xA8 | 0xA9)]   // U+2028, U+2029
        | [Some(0xE2), Some(0x80), Some(0xAF)]          // U+202F
        | [Some(0xE2), Some(0x81), Some(0x9F)]          // U+205F
        | [Some(0xE3), Some(0x80), Some(0x80)]          // U+3000
        | [Some(0xEF), Some(0xBB), Some(0xBF)] => 3,    // U+FEFF
        _ => 0,
    }
}

/// Decodes one room id from raw form-encoded text, trimmed of JavaScript
/// whitespace if `trim`. `Ok(None)` if it is empty.
///
/// Works on decoded *bytes*: a whitespace character is a complete UTF-8
/// sequence starting with a non-continuation byte, so it decodes the same
/// whatever bytes surround it, and trimming bytes then replacing invalid
/// sequences with U+FFFD equals replacing then trimming characters.
fn decode_room(raw: &[u8], trim: bool) -> Result<Option<RoomId>, QueryRoomsError> {
    // Pass 1: the decoded range [start, end) without surrounding whitespace.
    let (mut start, mut end) = (None, 0usize);
    let mut it = FormDecoded { raw };
    let mut pos = 0usize;
    loop {
        let mut look = it.clone();
        let Some(first) = look.next() else { break };
        let ws = if trim { js_whitespace_len([Some(first), look.next(), look.next()]) } else { 0 };
        let step = ws.max(1);
        for _ in 0..step {
            it.next();
        }
        if ws == 0 {
            start.get_or_insert(pos);
            end = pos + 1;
        }
        pos += step;
    }
    let Some(start) = start else { return Ok(None) };
    let len = end - start;
    if len > MAX_ROOM_ID_LEN {
        // Replacing invalid bytes never shortens the text.
        return Err(QueryRoomsError::InvalidRoomId);
    }
    // Pass 2: those bytes, then UTF-8 with replacement.
    let mut bytes = [0u8; MAX_ROOM_ID_LEN];
    for (slot, b) in bytes.iter_mut().zip(FormDecoded { raw }.skip(start).take(len)) {
        *slot = b;
    }
    let mut text = heapless::String::<MAX_ROOM_ID_LEN>::new();
    for chunk in bytes.get(..len).unwrap_or(&[]).utf8_chunks() {
        text.push_str(chunk.valid()).map_err(|_| QueryRoomsError::InvalidRoomId)?;
        if !chunk.invalid().is_empty() {
            text.push(char::REPLACEMENT_CHARACTER).map_err(|_| QueryRoomsError::InvalidRoomId)?;
        }
    }
    RoomId::new(&text).map(Some).map_err(|_| QueryRoomsError::InvalidRoomId)
}

// ---------------------------------------------------------------------------
// Client frames
// ---------------------------------------------------------------------------

/// A frame is not JSON (or not UTF-8, or nested deeper than
/// [`json::MAX_DEPTH`]): Alepha drops it without answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NotJson;

impl fmt::Display for NotJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Received non-JSON message")
    }
}

impl core::error::Error for NotJson {}

/// A client frame, split into its claimed room and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame<'a> {
    /// The frame's `roomId` member, if it is a string that makes a valid
    /// [`RoomId`]. Only a claim: see [`resolve_room`].
    pub claimed_room: Option<RoomId>,
    /// The payload's raw JSON: the `message` member if it is truthy, else
    /// the whole frame (without surrounding whitespace).
    pub message: &'a [u8],
}

/// Reads a client frame as Alepha's Node `$websocket` does.
///
/// * Not JSON: [`NotJson`] (drop the frame, send nothing).
/// * The payload is `parsed.message || parsed`: the `message` member when
///   the frame is an object whose `message` is truthy in JavaScript
///   ([`json::is_falsy`]), otherwise the whole frame, `roomId` included.
/// * The claimed room is the `roomId` member when it is a string; a
///   non-string, empty or over-long `roomId` is no claim.
/// * As in `JSON.parse`, the last of repeated members counts.
///
/// ```
/// use roomwire_core::alepha::{parse_client_frame, NotJson};
///
/// let f = parse_client_frame(br#"{"roomId":"r","message":{"a":1}}"#)?;
/// assert_eq!((f.claimed_room.as_deref(), f.message), (Some("r"), &br#"{"a":1}"#[..]));
///
/// let f = parse_client_frame(br#"{"content":"hi"}"#)?;
/// assert_eq!((f.claimed_room, f.message), (None, &br#"{"content":"hi"}"#[..]));
///
/// let f = parse_client_frame(br#"{"message":0,"roomId":5}"#)?;
/// assert_eq!((f.claimed_room, f.message), (None, &br#"{"message":0,"roomId":5}"#[..]));
///
/// assert_eq!(parse_client_frame(b"hello"), Err(NotJson));
/// # Ok::<(), NotJson>(())
/// ```
pub fn parse_client_frame(frame: &[u8]) -> Result<ClientFrame<'_>, NotJson> {
    let whole = json::trim(frame);
    let Some(members) = json::object_members(frame).map_err(|_| NotJson)? else {
        return Ok(ClientFrame { claimed_room: None, message: whole });
    };
    let (mut message, mut room) = (None, None);
    for (key, value) in members {
        if key.eq_str("message") {
            message = Some(value);
        } else if key.eq_str("roomId") {
            room = Some(value);
        }
    }
    let claimed_room = room.and_then(json::as_string).and_then(|raw| room_from_raw(raw).ok());
    let message = message.filter(|value| !json::is_falsy(value)).unwrap_or(whole);
    Ok(ClientFrame { claimed_room, message })
}

/// The room a client frame is handled in: the claimed room if the
/// connection joined it, otherwise the connection's first room. A frame can
/// never act in a room its connection is not in: for a connection in no
/// room (one the server took out of every room; the handshake puts one
/// whose query names none in [`DEFAULT_ROOM`]) there is none, and the frame
/// is dropped.
///
/// ```
/// use roomwire_core::alepha::resolve_room;
/// use roomwire_core::room::{RoomId, RoomSet};
///
/// let mut rooms = RoomSet::<2>::new();
/// rooms.join(RoomId::new("a")?)?;
/// rooms.join(RoomId::new("b")?)?;
/// assert_eq!(resolve_room(Some("b"), &rooms), Some("b"));
/// assert_eq!(resolve_room(Some("spoofed"), &rooms), Some("a"));
/// assert_eq!(resolve_room(None, &rooms), Some("a"));
/// assert_eq!(resolve_room(Some("a"), &RoomSet::<2>::new()), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn resolve_room<'r, const N: usize>(claimed: Option<&str>, joined: &'r RoomSet<N>) -> Option<&'r str> {
    claimed
        .and_then(|claimed| joined.iter().find(|room| room.as_str() == claimed))
        .or_else(|| joined.first())
        .map(RoomId::as_str)
}

/// Decodes and validates a client message of channel `C` from the raw
/// JSON of [`ClientFrame::message`]; on error, answer with
/// [`write_error_frame`] of the error's `Display`
/// (`Message validation failed: ...`).
///
/// With `std`, `serde_json` decodes; without, `serde-json-core`, which
/// unescapes strings into `scratch` (see [`payload::decode_payload`]).
///
/// ```
/// use roomwire_core::alepha::decode_message;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// pub struct Say<'a> { pub content: &'a str }
///
/// roomwire_core::channel! {
///     /// Chat.
///     pub struct Chat { path: "/ws/chat", in: Say<'a>, out: Say<'a> }
/// }
///
/// let say = decode_message::<Chat>(br#"{"content":"hello"}"#, &mut [])?;
/// assert_eq!(say.content, "hello");
/// # Ok::<(), roomwire_core::alepha::MessageError>(())
/// ```
pub fn decode_message<'a, C: Channel>(raw: &'a [u8], scratch: &mut [u8]) -> Result<C::Out<'a>, MessageError> {
    payload::decode_message::<C>(WireFormat::Alepha, raw, scratch)
}

/// Encodes a server message of channel `C` as JSON (the payload for
/// [`write_server_frame`]); returns its length.
///
/// ```
/// use roomwire_core::alepha::encode_payload;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// pub struct Say<'a> { pub content: &'a str }
///
/// roomwire_core::channel! {
///     /// Chat.
///     pub struct Chat { path: "/ws/chat", in: Say<'a>, out: Say<'a> }
/// }
///
/// let mut out = [0u8; 32];
/// let n = encode_payload::<Chat>(&Say { content: "hi" }, &mut out)?;
/// assert_eq!(&out[..n], br#"{"content":"hi"}"#);
/// # Ok::<(), roomwire_core::alepha::EncodeError>(())
/// ```
pub fn encode_payload<C: Channel>(message: &C::In<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    payload::encode_payload(WireFormat::Alepha, message, out)
}

// ---------------------------------------------------------------------------
// Server frames
// ---------------------------------------------------------------------------

/// Writes a server frame: `payload_json` as is, plus, when `label` is
/// `Some(room)` and the payload is a JSON object, the member
/// `"__alephaRoom":"<room>"` added last (`{}` gives
/// `{"__alephaRoom":"r"}`). Other payloads are sent unlabelled.
///
/// Label frames that went out because of a room (a room emit, every
/// reply); a connection in several targeted rooms gets one frame, labelled
/// with the first targeted room ("first room wins"). Frames addressed to
/// a connection or to the whole channel carry no label.
///
/// `payload_json` is trusted to be valid JSON (it comes from
/// [`encode_payload`](crate::payload::encode_payload)): only its outer braces are looked at. If `out` is
/// too small, nothing is written.
///
/// ```
/// use roomwire_core::alepha::write_server_frame;
///
/// let mut out = [0u8; 64];
/// let n = write_server_frame(br#"{"a":1}"#, Some("r"), &mut out)?;
/// assert_eq!(&out[..n], br#"{"a":1,"__alephaRoom":"r"}"#);
/// let n = write_server_frame(b"{}", Some("r"), &mut out)?;
/// assert_eq!(&out[..n], br#"{"__alephaRoom":"r"}"#);
/// let n = write_server_frame(b"[1]", Some("r"), &mut out)?;
/// assert_eq!(&out[..n], b"[1]");
/// let n = write_server_frame(br#"{"a":1}"#, None, &mut out)?;
/// assert_eq!(&out[..n], br#"{"a":1}"#);
/// # Ok::<(), roomwire_core::InsufficientSize>(())
/// ```
pub fn write_server_frame(payload_json: &[u8], label: Option<&str>, out: &mut [u8]) -> Result<usize, InsufficientSize> {
    let insert = label.and_then(|room| object_close(payload_json).map(|(close, empty)| (room, close, empty)));
    write_twice(out, |w| match insert {
        None => w.put(payload_json),
        Some((room, close, empty)) => {
            let (head, tail) = payload_json.split_at(close);
            w.put(head);
            if !empty {
                w.put(b",");
            }
            w.put(b"\"");
            w.put(ROOM_MARKER.as_bytes());
            w.put(b"\":");
            write_escaped_str(room, w);
            w.put(tail);
        }
    })
}

/// If `payload` looks like an object (`{` first and `}` last, ignoring
/// whitespace), the index of its closing brace and whether it is empty.
fn object_close(payload: &[u8]) -> Option<(usize, bool)> {
    let open = json::skip_ws(payload, 0);
    if payload.get(open) != Some(&b'{') {
        return None;
    }
    let last_non_ws =
        |end: usize| (open..end).rev().find(|&i| !matches!(payload.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')));
    let close = last_non_ws(payload.len())?;
    if close == open || payload.get(close) != Some(&b'}') {
        return None;
    }
    let before = last_non_ws(close)?;
    Some((close, before == open))
}

/// Writes Alepha's error frame, `{"error":"<text>"}`, with `text`
/// JSON-escaped. `text` can be any `Display` (a `&str`, a
/// [`MessageError`]); it is formatted twice (to measure, then to write).
/// If `out` is too small, nothing is written.
///
/// ```
/// use roomwire_core::alepha::write_error_frame;
///
/// let mut out = [0u8; 64];
/// let n = write_error_frame("handler \"boom\"", &mut out)?;
/// assert_eq!(&out[..n], br#"{"error":"handler \"boom\""}"#);
/// # Ok::<(), roomwire_core::InsufficientSize>(())
/// ```
pub fn write_error_frame<T: fmt::Display + ?Sized>(text: &T, out: &mut [u8]) -> Result<usize, InsufficientSize> {
    write_twice(out, |w| {
        w.put(b"{\"error\":\"");
        let _ = fmt::write(&mut EscapingWriter(w), format_args!("{text}"));
        w.put(b"\"}");
    })
}

// ---------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------

/// Why [`split_server_frame`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// The frame is not JSON.
    NotJson,
    /// `out` is too small for the payload without its marker (at most the
    /// frame's length is ever needed).
    InsufficientSize(InsufficientSize),
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson => fmt::Display::fmt(&NotJson, f),
            Self::InsufficientSize(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl core::error::Error for SplitError {}

impl From<NotJson> for SplitError {
    fn from(_: NotJson) -> Self {
        Self::NotJson
    }
}

/// On a client: splits a server frame into its room label and its payload
/// *without* the `__alephaRoom` member, so a handler sees exactly the
/// message that was sent.
///
/// A frame without the marker (not an object, or an object without it) is
/// returned as is, without copying. Otherwise the payload is rebuilt in
/// `out` from the other members, raw (only whitespace between members
/// may change). The label is the marker's value when it is a string that
/// makes a valid [`RoomId`].
///
/// ```
/// use roomwire_core::alepha::split_server_frame;
///
/// let mut out = [0u8; 64];
/// let (room, payload) = split_server_frame(br#"{"type":"chat","__alephaRoom":"room-a"}"#, &mut out)?;
/// assert_eq!(room.as_deref(), Some("room-a"));
/// assert_eq!(payload, br#"{"type":"chat"}"#);
/// # Ok::<(), roomwire_core::alepha::SplitError>(())
/// ```
pub fn split_server_frame<'a>(frame: &'a [u8], out: &'a mut [u8]) -> Result<(Option<RoomId>, &'a [u8]), SplitError> {
    let Some(members) = json::object_members(frame).map_err(|_| NotJson)? else {
        return Ok((None, frame));
    };
    let is_marker = |key: &RawStr<'_>| key.eq_str(ROOM_MARKER);
    let Some(label) = members.clone().filter(|(key, _)| is_marker(key)).map(|(_, value)| value).last() else {
        return Ok((None, frame));
    };
    let room = json::as_string(label).and_then(|raw| room_from_raw(raw).ok());
    let n = write_twice(out, |w| {
        w.put(b"{");
        let mut first = true;
        for (key, value) in members.clone().filter(|(key, _)| !is_marker(key)) {
            if !first {
                w.put(b",");
            }
            first = false;
            w.put(b"\"");
            w.put(key.raw().as_bytes());
            w.put(b"\":");
            w.put(value);
        }
        w.put(b"}");
    })
    .map_err(SplitError::InsufficientSize)?;
    let out: &'a [u8] = out;
    Ok((room, out.get(..n).unwrap_or(&[])))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use std::string::{String, ToString};
    use std::vec::Vec;

    use super::*;

    fn rooms(query: &str) -> Result<Vec<String>, QueryRoomsError> {
        let mut set = RoomSet::<16>::new();
        rooms_from_query(Some(query), |_| true, &mut set)?;
        Ok(set.iter().map(|r| r.to_string()).collect())
    }

    #[test]
    fn form_decoding_like_url_search_params() {
        assert_eq!(rooms("roomId=a%2Fb").unwrap(), ["a/b"]);
        assert_eq!(rooms("roomId=a+b").unwrap(), ["a b"]);
        assert_eq!(rooms("roomId=a%2bb").unwrap(), ["a+b"]);
        assert_eq!(rooms("roomId=100%").unwrap(), ["100%"]);
        assert_eq!(rooms("roomId=%zz%4").unwrap(), ["%zz%4"]);
        assert_eq!(rooms("roomId=caf%C3%A9").unwrap(), ["café"]);
        assert_eq!(rooms("roomId=caf\u{e9}").unwrap(), ["café"]);
        assert_eq!(rooms("roomId=%FF").unwrap(), ["\u{FFFD}"]);
        // Maximal subparts: F0 80 80 is three errors, E2 82 one.
        assert_eq!(rooms("roomId=%F0%80%80").unwrap(), ["\u{FFFD}\u{FFFD}\u{FFFD}"]);
        assert_eq!(rooms("roomId=%E2%82x").unwrap(), ["\u{FFFD}x"]);
        // Encoded names, `=` in values, pairs without `=`.
        assert_eq!(rooms("room%49d=x").unwrap(), ["x"]);
        assert_eq!(rooms("roomId=a=b").unwrap(), ["a=b"]);
        assert_eq!(rooms("roomId").unwrap_err(), QueryRoomsError::InvalidRoomId);
        assert_eq!(rooms("roomid=x&ROOMID=y&&=z").unwrap(), ["default"]);
        assert_eq!(rooms("?roomId=a#roomId=b").unwrap(), ["a"]);
    }

    #[test]
    fn room_ids_list_and_trimming() {
        // Only the first `roomIds` counts (`URLSearchParams.get`).
        assert_eq!(rooms("roomIds=a&roomIds=b").unwrap(), ["a"]);
        assert_eq!(rooms("roomIds=a%2Cb").unwrap(), ["a", "b"]);
        assert_eq!(rooms("roomIds=,,").unwrap(), ["default"]);
        assert_eq!(rooms("roomIds=").unwrap(), ["default"]);
        // JavaScript whitespace is trimmed, inner whitespace kept.
        assert_eq!(rooms("roomIds=%09a b%0A,%C2%A0c%E3%80%80,%EF%BB%BFd%E2%80%A8").unwrap(), ["a b", "c", "d"]);
        // U+0085 (NEL) and U+200B are not JavaScript whitespace.
        assert_eq!(rooms("roomIds=%C2%85a,%E2%80%8Bb").unwrap(), ["\u{85}a", "\u{200B}b"]);
        // Whitespace after an invalid byte is still whitespace.
        assert_eq!(rooms("roomIds=%E2%E3%80%80").unwrap(), ["\u{FFFD}"]);
        // `roomId` values are not trimmed.
        assert_eq!(rooms("roomId=+a+").unwrap(), [" a "]);
    }

    #[test]
    fn lengths() {
        let max = "x".repeat(MAX_ROOM_ID_LEN);
        assert_eq!(rooms(&format!("roomId={max}")).unwrap(), [max.as_str()]);
        assert_eq!(rooms(&format!("roomId={max}x")), Err(QueryRoomsError::InvalidRoomId));
        // Encoded length does not count, decoded does.
        let encoded = "%78".repeat(MAX_ROOM_ID_LEN);
        assert_eq!(rooms(&format!("roomId={encoded}")).unwrap(), [max.as_str()]);
        // Surrounding whitespace of any length is trimmed before the check.
        let padded = format!("roomIds={}{max}{}", "+".repeat(500), "%20".repeat(500));
        assert_eq!(rooms(&padded).unwrap(), [max.as_str()]);
        // Replacement characters count (3 bytes each).
        let invalid = "%FF".repeat(22);
        assert_eq!(rooms(&format!("roomId={invalid}")), Err(QueryRoomsError::InvalidRoomId));
        assert_eq!(rooms(&format!("roomId={}", "%FF".repeat(21))).unwrap().len(), 1);
        assert_eq!(rooms("roomId="), Err(QueryRoomsError::InvalidRoomId));
    }

    #[test]
    fn capacity_and_duplicates() {
        let mut set = RoomSet::<2>::new();
        rooms_from_query(Some("roomId=a&roomId=a&roomIds=a,b,b"), |_| true, &mut set).unwrap();
        assert_eq!(set.len(), 2);
        let mut set = RoomSet::<2>::new();
        assert_eq!(rooms_from_query(Some("roomIds=a,b,c"), |_| true, &mut set), Err(QueryRoomsError::TooManyRooms));
        let mut set = RoomSet::<0>::new();
        assert_eq!(rooms_from_query(None, |_| true, &mut set), Err(QueryRoomsError::TooManyRooms));
    }

    #[test]
    fn object_close_cases() {
        assert_eq!(object_close(b"{}"), Some((1, true)));
        assert_eq!(object_close(b" { \n} \n"), Some((4, true)));
        assert_eq!(object_close(b"{\"a\":{}}"), Some((7, false)));
        assert_eq!(object_close(b"{"), None);
        assert_eq!(object_close(b"}"), None);
        assert_eq!(object_close(b""), None);
        assert_eq!(object_close(b"\"{}\""), None);
        assert_eq!(object_close(b"[{}]"), None);
    }

    #[test]
    fn split_rebuilds_without_marker() {
        let mut out = [0u8; 128];
        let (room, payload) =
            split_server_frame(br#"{ "__alephaRoom" : "x", "a" : [1, 2], "\u005f_alephaRoom":"y" }"#, &mut out)
                .unwrap();
        assert_eq!(room.as_deref(), Some("y"));
        assert_eq!(payload, br#"{"a":[1, 2]}"#);
        let (room, payload) = split_server_frame(br#"{"__alephaRoom":5}"#, &mut out).unwrap();
        assert_eq!((room, payload), (None, &b"{}"[..]));
        let (room, payload) = split_server_frame(b" [1] ", &mut out).unwrap();
        assert_eq!((room, payload), (None, &b" [1] "[..]));
        assert_eq!(split_server_frame(b"{", &mut out), Err(SplitError::NotJson));
        let mut small = [0u8; 4];
        assert_eq!(
            split_server_frame(br#"{"a":1,"__alephaRoom":"r"}"#, &mut small),
            Err(SplitError::InsufficientSize(InsufficientSize { required: 7 }))
        );
    }

    use std::format;
}
