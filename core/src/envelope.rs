//! The roomwire wire: one envelope model, two encodings.
//!
//! A client that offers the subprotocol `roomwire.v1.postcard` or
//! `roomwire.v1.json` ([`crate::wire`]) speaks in envelopes: it joins and
//! leaves rooms whenever it likes, each request answered by an `ok` or an
//! `error` carrying the request's reference, and it sends messages to a
//! room it is in. The server pushes messages, labelled with their room.
//!
//! | direction | envelope | postcard (binary) | JSON (text) |
//! |---|---|---|---|
//! | client → server | [`Join`](ClientEnvelope::Join) | `00 ref room` | `{"type":"join","ref":1,"room":"a"}` |
//! | client → server | [`Leave`](ClientEnvelope::Leave) | `01 ref room` | `{"type":"leave","ref":2,"room":"a"}` |
//! | client → server | [`Message`](ClientEnvelope::Message) | `02 room payload…` | `{"type":"message","room":"a","data":…}` |
//! | server → client | [`Ok`](ServerEnvelope::Ok) | `00 ref` | `{"type":"ok","ref":1}` |
//! | server → client | [`Error`](ServerEnvelope::Error) | `01 option<ref> code text` | `{"type":"error","ref":1,"code":4001,"text":"…"}` |
//! | server → client | [`Push`](ServerEnvelope::Push) | `02 option<room> payload…` | `{"type":"push","room":"a","data":…}` |
//!
//! The postcard encoding is exactly what `postcard` produces for the
//! equivalent serde enums (variant index, integers and string lengths as
//! LEB128 varints, `Option` as `00` or `01` + value), except that the
//! payload is *the rest of the frame*, without a length prefix: a push to
//! a room is then a small per-room prefix ([`write_push_prefix`]) in front
//! of a payload encoded once. The payload itself is the postcard (or JSON)
//! encoding of the channel's typed message ([`encode_payload`](crate::payload::encode_payload)).
//!
//! The JSON encoding puts members in the order shown (so `data` comes
//! last); a decoder accepts them in any order, ignores unknown members,
//! keeps the last of repeated ones (like `JSON.parse`) and reads `null`
//! as an absent optional member.
//!
//! Decoding never panics: bad input is an [`EnvelopeError`] with the
//! [error code](code) to answer with, and the request's reference when it
//! could be read. `PROTOCOL.md` at the repository root is the byte-level
//! specification, with an example of every frame.
//!
//! ```
//! use roomwire_core::envelope::{self, ClientEnvelope, ServerEnvelope};
//! use roomwire_core::wire::WireFormat;
//! use roomwire_core::RoomId;
//!
//! let join = ClientEnvelope::Join { reference: 1, room: RoomId::new("lobby")? };
//! let mut buf = [0u8; 64];
//! let n = envelope::encode_client(WireFormat::Postcard, &join, &mut buf)?;
//! assert_eq!(&buf[..n], b"\x00\x01\x05lobby");
//! assert_eq!(envelope::decode_client(WireFormat::Postcard, &buf[..n])?, join);
//!
//! let n = envelope::encode_server(WireFormat::Json, &ServerEnvelope::Ok { reference: 1 }, &mut buf)?;
//! assert_eq!(&buf[..n], br#"{"type":"ok","ref":1}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use crate::error::InsufficientSize;
use crate::json::{self, EscapingWriter, RawStr, write_escaped_str};
use crate::room::{MAX_ROOM_ID_LEN, RoomId, RoomIdError};
use crate::wire::WireFormat;
use crate::writer::{Writer, write_twice};

/// Error codes of [`ServerEnvelope::Error`].
///
/// They live in the 4000–4999 range that RFC 6455 leaves to applications,
/// so the same number can also serve as a close code.
pub mod code {
    /// The envelope could not be decoded: not JSON or not an object,
    /// unknown `type` or discriminant, missing or mistyped member,
    /// truncated frame, bad varint, invalid UTF-8, trailing bytes.
    pub const MALFORMED: u16 = 4000;
    /// The room id is empty, longer than
    /// [`MAX_ROOM_ID_LEN`](crate::room::MAX_ROOM_ID_LEN) bytes, or refused
    /// by the channel's [`validate_room_id`](crate::channel::Channel::validate_room_id).
    pub const INVALID_ROOM_ID: u16 = 4001;
    /// Joining would exceed the rooms allowed per connection.
    pub const TOO_MANY_ROOMS: u16 = 4002;
    /// The room is full, or the server cannot hold another room.
    pub const ROOM_FULL: u16 = 4003;
    /// A message names a room this connection has not joined.
    pub const NOT_A_MEMBER: u16 = 4004;
    /// The message does not have the channel's shape, or the channel's
    /// [`validate`](crate::channel::Channel::validate) refused it.
    pub const VALIDATION_FAILED: u16 = 4005;
    /// The server's handler failed on this message.
    pub const HANDLER_ERROR: u16 = 4006;
    /// The application does not let this connection into that room (its
    /// user may be confined to some rooms, e.g. its own inbox).
    pub const ROOM_NOT_ALLOWED: u16 = 4007;
    /// Reserved: too many requests or messages.
    pub const RATE_LIMITED: u16 = 4029;

    /// A short English description of a code, for an error's `text` when
    /// there is nothing more specific to say.
    ///
    /// ```
    /// use roomwire_core::envelope::code;
    /// assert_eq!(code::default_text(code::NOT_A_MEMBER), "not a member of that room");
    /// assert_eq!(code::default_text(4999), "error");
    /// ```
    pub const fn default_text(code: u16) -> &'static str {
        match code {
            MALFORMED => "malformed envelope",
            INVALID_ROOM_ID => "invalid room id",
            TOO_MANY_ROOMS => "too many rooms for this connection",
            ROOM_FULL => "room full",
            NOT_A_MEMBER => "not a member of that room",
            VALIDATION_FAILED => "message validation failed",
            HANDLER_ERROR => "handler error",
            ROOM_NOT_ALLOWED => "room not allowed",
            RATE_LIMITED => "rate limited",
            _ => "error",
        }
    }
}

/// Postcard discriminants.
mod tag {
    pub const JOIN: u32 = 0;
    pub const LEAVE: u32 = 1;
    pub const MESSAGE: u32 = 2;
    pub const OK: u32 = 0;
    pub const ERROR: u32 = 1;
    pub const PUSH: u32 = 2;
}

/// The encoding envelopes and payloads use on a connection of `format`.
/// The Alepha wire has no envelopes; its payloads are JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Postcard,
    Json,
}

impl From<WireFormat> for Encoding {
    fn from(format: WireFormat) -> Self {
        match format {
            WireFormat::Postcard => Encoding::Postcard,
            WireFormat::Json | WireFormat::Alepha => Encoding::Json,
        }
    }
}

// ---------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------

/// A client → server envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEnvelope<'a> {
    /// Join `room`; answered by `Ok { reference }` or `Error { reference }`.
    Join {
        /// Chosen by the client, echoed in the answer.
        reference: u32,
        /// The room to join.
        room: RoomId,
    },
    /// Leave `room`; answered like a join. Leaving a room one is not in
    /// succeeds.
    Leave {
        /// Chosen by the client, echoed in the answer.
        reference: u32,
        /// The room to leave.
        room: RoomId,
    },
    /// A message to the server's handler, in `room` (which the connection
    /// must have joined, else [`code::NOT_A_MEMBER`]). Not answered unless
    /// it fails (an `Error` without reference).
    Message {
        /// The room the message is for.
        room: RoomId,
        /// The encoded typed message: postcard bytes, or raw JSON text.
        payload: &'a [u8],
    },
}

/// A server → client envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEnvelope<'a> {
    /// A join or leave succeeded.
    Ok {
        /// The request's reference.
        reference: u32,
    },
    /// A request or a message failed.
    Error {
        /// The failed request's reference; `None` for messages and for
        /// envelopes too broken to read one from.
        reference: Option<u32>,
        /// One of the [`code`]s.
        code: u16,
        /// Human-readable detail.
        text: Text<'a>,
    },
    /// A message from the server.
    Push {
        /// The room it was sent to; `None` when it was addressed to the
        /// connection itself rather than to a room.
        room: Option<RoomId>,
        /// The encoded typed message: postcard bytes, or raw JSON text.
        payload: &'a [u8],
    },
}

/// The text of an [`ServerEnvelope::Error`]: a plain string, or a JSON
/// string still escaped as decoded from a JSON frame (unescaped on demand,
/// without allocation). Equality compares the text itself.
///
/// ```
/// use roomwire_core::envelope::Text;
/// let text = Text::from("room full");
/// assert_eq!(text.to_string(), "room full");
/// assert!(text.eq_str("room full"));
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Text<'a> {
    /// Plain text.
    Plain(&'a str),
    /// A JSON string with escapes, as found in a frame.
    Json(RawStr<'a>),
}

impl<'a> Text<'a> {
    /// The text, if it needs no unescaping.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Text::Plain(s) => Some(s),
            Text::Json(raw) => raw.as_borrowed(),
        }
    }

    /// Whether the text equals `s`.
    pub fn eq_str(&self, s: &str) -> bool {
        match self {
            Text::Plain(p) => *p == s,
            Text::Json(raw) => raw.eq_str(s),
        }
    }

    /// Length of the text in bytes (unescaped).
    pub fn len(&self) -> usize {
        match self {
            Text::Plain(s) => s.len(),
            Text::Json(raw) => raw.unescaped_len(),
        }
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Text::Plain(s)
    }
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Text::Plain(a), b) | (b, Text::Plain(a)) => b.eq_str(a),
            (Text::Json(a), Text::Json(b)) => a == b,
        }
    }
}

impl Eq for Text<'_> {}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Text::Plain(s) => f.write_str(s),
            Text::Json(raw) => fmt::Display::fmt(raw, f),
        }
    }
}

/// An envelope could not be decoded. Answer with
/// `Error { reference, code, text: reason }`, or close with `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnvelopeError {
    /// [`code::MALFORMED`] or [`code::INVALID_ROOM_ID`].
    pub code: u16,
    /// The request's reference, if it was read before the error.
    pub reference: Option<u32>,
    /// What was wrong.
    pub reason: &'static str,
}

impl EnvelopeError {
    const fn malformed(reason: &'static str) -> Self {
        Self { code: code::MALFORMED, reference: None, reason }
    }

    fn with_reference(mut self, reference: u32) -> Self {
        self.reference = Some(reference);
        self
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl core::error::Error for EnvelopeError {}

fn room_error(e: RoomIdError) -> EnvelopeError {
    let reason = match e {
        RoomIdError::Empty => "room id is empty",
        RoomIdError::TooLong { .. } => "room id is longer than 64 bytes",
    };
    EnvelopeError { code: code::INVALID_ROOM_ID, reference: None, reason }
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Encodes a client envelope into `out`; returns its length. If `out` is
/// too small, nothing is written. ([`WireFormat::Alepha`] is treated as
/// JSON; it has no envelopes.)
///
/// ```
/// use roomwire_core::envelope::{encode_client, ClientEnvelope};
/// use roomwire_core::{wire::WireFormat, RoomId};
///
/// let msg = ClientEnvelope::Message { room: RoomId::new("a")?, payload: br#"{"content":"hi"}"# };
/// let mut out = [0u8; 64];
/// let n = encode_client(WireFormat::Json, &msg, &mut out)?;
/// assert_eq!(&out[..n], br#"{"type":"message","room":"a","data":{"content":"hi"}}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
// Inlined, and the wire chosen before any writing closure is made: a
// caller on one wire (a channel whose `WIRES` name one) links the other
// wire's encoder not at all.
#[inline]
pub fn encode_client(
    format: WireFormat,
    envelope: &ClientEnvelope<'_>,
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    match (Encoding::from(format), envelope) {
        (Encoding::Postcard, ClientEnvelope::Join { reference, room }) => write_twice(out, |w| {
            w.put_varint(tag::JOIN);
            w.put_varint(*reference);
            put_postcard_str(w, room);
        }),
        (Encoding::Postcard, ClientEnvelope::Leave { reference, room }) => write_twice(out, |w| {
            w.put_varint(tag::LEAVE);
            w.put_varint(*reference);
            put_postcard_str(w, room);
        }),
        (Encoding::Postcard, ClientEnvelope::Message { room, payload }) => write_twice(out, |w| {
            w.put_varint(tag::MESSAGE);
            put_postcard_str(w, room);
            w.put(payload);
        }),
        (Encoding::Json, ClientEnvelope::Join { reference, room }) => write_twice(out, |w| {
            w.put(br#"{"type":"join","ref":"#);
            w.put_decimal(u64::from(*reference));
            w.put(br#","room":"#);
            write_escaped_str(room, w);
            w.put(b"}");
        }),
        (Encoding::Json, ClientEnvelope::Leave { reference, room }) => write_twice(out, |w| {
            w.put(br#"{"type":"leave","ref":"#);
            w.put_decimal(u64::from(*reference));
            w.put(br#","room":"#);
            write_escaped_str(room, w);
            w.put(b"}");
        }),
        (Encoding::Json, ClientEnvelope::Message { room, payload }) => write_twice(out, |w| {
            w.put(br#"{"type":"message","room":"#);
            write_escaped_str(room, w);
            w.put(br#","data":"#);
            w.put(payload);
            w.put(b"}");
        }),
    }
}

/// Encodes a server envelope into `out`; returns its length. If `out` is
/// too small, nothing is written. ([`WireFormat::Alepha`] is treated as
/// JSON; it has no envelopes.)
///
/// ```
/// use roomwire_core::envelope::{code, encode_server, ServerEnvelope};
/// use roomwire_core::wire::WireFormat;
///
/// let error = ServerEnvelope::Error { reference: Some(1), code: code::INVALID_ROOM_ID, text: "invalid room id".into() };
/// let mut out = [0u8; 64];
/// let n = encode_server(WireFormat::Postcard, &error, &mut out)?;
/// assert_eq!(&out[..n], b"\x01\x01\x01\xa1\x1f\x0finvalid room id");
/// # Ok::<(), roomwire_core::InsufficientSize>(())
/// ```
pub fn encode_server(
    format: WireFormat,
    envelope: &ServerEnvelope<'_>,
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    let encoding = Encoding::from(format);
    write_twice(out, |w| match envelope {
        ServerEnvelope::Ok { reference } => match encoding {
            Encoding::Postcard => {
                w.put_varint(tag::OK);
                w.put_varint(*reference);
            }
            Encoding::Json => {
                w.put(br#"{"type":"ok","ref":"#);
                w.put_decimal(u64::from(*reference));
                w.put(b"}");
            }
        },
        ServerEnvelope::Error { reference, code, text } => match (encoding, text) {
            (Encoding::Json, Text::Json(raw)) => {
                put_json_error_head(w, *reference, *code);
                w.put(b"\"");
                w.put(raw.raw().as_bytes());
                w.put(b"\"}");
            }
            _ => put_error(w, encoding, *reference, *code, text),
        },
        ServerEnvelope::Push { room, payload } => {
            put_push_prefix(w, encoding, room.as_deref());
            w.put(payload);
            w.put(push_suffix(format));
        }
    })
}

/// Encodes an error envelope whose text is anything `Display` (such as a
/// [`MessageError`](crate::payload::MessageError)), without allocating. If `out` is too small, nothing
/// is written. `text` is formatted twice (to measure, then to write), so
/// its `Display` must be deterministic.
///
/// ```
/// use roomwire_core::envelope::{code, write_error};
/// use roomwire_core::wire::WireFormat;
///
/// let mut out = [0u8; 80];
/// let n = write_error(WireFormat::Json, None, code::NOT_A_MEMBER, "not in \"a\"", &mut out)?;
/// assert_eq!(&out[..n], br#"{"type":"error","code":4004,"text":"not in \"a\""}"#);
/// # Ok::<(), roomwire_core::InsufficientSize>(())
/// ```
pub fn write_error<T: fmt::Display + ?Sized>(
    format: WireFormat,
    reference: Option<u32>,
    code: u16,
    text: &T,
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    let encoding = Encoding::from(format);
    write_twice(out, |w| put_error(w, encoding, reference, code, text))
}

fn put_json_error_head(w: &mut Writer<'_>, reference: Option<u32>, code: u16) {
    w.put(br#"{"type":"error","#);
    if let Some(reference) = reference {
        w.put(br#""ref":"#);
        w.put_decimal(u64::from(reference));
        w.put(b",");
    }
    w.put(br#""code":"#);
    w.put_decimal(u64::from(code));
    w.put(br#","text":"#);
}

fn put_error<T: fmt::Display + ?Sized>(
    w: &mut Writer<'_>,
    encoding: Encoding,
    reference: Option<u32>,
    code: u16,
    text: &T,
) {
    match encoding {
        Encoding::Postcard => {
            w.put_varint(tag::ERROR);
            match reference {
                None => w.put(&[0x00]),
                Some(reference) => {
                    w.put(&[0x01]);
                    w.put_varint(reference);
                }
            }
            w.put_varint(u32::from(code));
            let mut counter = CountingWriter(0);
            let _ = fmt::write(&mut counter, format_args!("{text}"));
            w.put_varint(u32::try_from(counter.0).unwrap_or(u32::MAX));
            let _ = fmt::write(&mut PlainWriter(w), format_args!("{text}"));
        }
        Encoding::Json => {
            put_json_error_head(w, reference, code);
            w.put(b"\"");
            let _ = fmt::write(&mut EscapingWriter(w), format_args!("{text}"));
            w.put(b"\"}");
        }
    }
}

/// Encodes a whole push frame: [`write_push_prefix`], then `payload`, then
/// [`push_suffix`]. If `out` is too small, nothing is written.
///
/// ```
/// use roomwire_core::envelope::write_push;
/// use roomwire_core::wire::WireFormat;
///
/// let mut out = [0u8; 64];
/// let n = write_push(WireFormat::Json, Some("a"), br#"{"n":1}"#, &mut out)?;
/// assert_eq!(&out[..n], br#"{"type":"push","room":"a","data":{"n":1}}"#);
/// let n = write_push(WireFormat::Postcard, None, &[0x2a], &mut out)?;
/// assert_eq!(&out[..n], [0x02, 0x00, 0x2a]);
/// # Ok::<(), roomwire_core::InsufficientSize>(())
/// ```
pub fn write_push(
    format: WireFormat,
    room: Option<&str>,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    let encoding = Encoding::from(format);
    write_twice(out, |w| {
        put_push_prefix(w, encoding, room);
        w.put(payload);
        w.put(push_suffix(format));
    })
}

/// Encodes what comes before the payload in a push frame: with
/// [`push_suffix`] after the payload, a push to many rooms encodes the
/// payload once and writes it with vectored I/O. If `out` is too small,
/// nothing is written.
///
/// ```
/// use roomwire_core::envelope::{push_suffix, write_push_prefix};
/// use roomwire_core::wire::WireFormat;
///
/// let mut prefix = [0u8; 80];
/// let n = write_push_prefix(WireFormat::Postcard, Some("lobby"), &mut prefix)?;
/// assert_eq!(&prefix[..n], b"\x02\x01\x05lobby");
/// assert_eq!(push_suffix(WireFormat::Postcard), b"");
///
/// let n = write_push_prefix(WireFormat::Json, Some("lobby"), &mut prefix)?;
/// assert_eq!(&prefix[..n], br#"{"type":"push","room":"lobby","data":"#);
/// assert_eq!(push_suffix(WireFormat::Json), b"}");
/// # Ok::<(), roomwire_core::InsufficientSize>(())
/// ```
pub fn write_push_prefix(format: WireFormat, room: Option<&str>, out: &mut [u8]) -> Result<usize, InsufficientSize> {
    let encoding = Encoding::from(format);
    write_twice(out, |w| put_push_prefix(w, encoding, room))
}

/// What follows the payload in a push frame: `}` in JSON, nothing in
/// postcard.
pub const fn push_suffix(format: WireFormat) -> &'static [u8] {
    match format {
        WireFormat::Postcard => b"",
        WireFormat::Json | WireFormat::Alepha => b"}",
    }
}

fn put_push_prefix(w: &mut Writer<'_>, encoding: Encoding, room: Option<&str>) {
    match encoding {
        Encoding::Postcard => {
            w.put_varint(tag::PUSH);
            match room {
                None => w.put(&[0x00]),
                Some(room) => {
                    w.put(&[0x01]);
                    put_postcard_str(w, room);
                }
            }
        }
        Encoding::Json => {
            w.put(br#"{"type":"push","#);
            if let Some(room) = room {
                w.put(br#""room":"#);
                write_escaped_str(room, w);
                w.put(b",");
            }
            w.put(br#""data":"#);
        }
    }
}

fn put_postcard_str(w: &mut Writer<'_>, s: &str) {
    w.put_varint(u32::try_from(s.len()).unwrap_or(u32::MAX));
    w.put(s.as_bytes());
}

/// Counts formatted bytes.
struct CountingWriter(usize);

impl fmt::Write for CountingWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.saturating_add(s.len());
        Ok(())
    }
}

/// Formats straight into a [`Writer`].
struct PlainWriter<'w, 'a>(&'w mut Writer<'a>);

impl fmt::Write for PlainWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.put(s.as_bytes());
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// Decodes a client envelope (as the server does). The payload of a
/// message borrows from `bytes`.
///
/// ```
/// use roomwire_core::envelope::{code, decode_client, ClientEnvelope};
/// use roomwire_core::wire::WireFormat;
///
/// let env = decode_client(WireFormat::Json, br#"{"room":"a","ref":7,"type":"leave","v":2}"#)?;
/// assert!(matches!(env, ClientEnvelope::Leave { reference: 7, ref room } if room == "a"));
///
/// let err = decode_client(WireFormat::Json, br#"{"type":"join","ref":8,"room":""}"#).unwrap_err();
/// assert_eq!((err.code, err.reference), (code::INVALID_ROOM_ID, Some(8)));
/// # Ok::<(), roomwire_core::envelope::EnvelopeError>(())
/// ```
pub fn decode_client(format: WireFormat, bytes: &[u8]) -> Result<ClientEnvelope<'_>, EnvelopeError> {
    match Encoding::from(format) {
        Encoding::Postcard => decode_client_postcard(bytes),
        Encoding::Json => decode_client_json(bytes),
    }
}

/// Decodes a server envelope (as a client does). The payload of a push,
/// and the text of an error, borrow from `bytes`.
///
/// ```
/// use roomwire_core::envelope::{decode_server, ServerEnvelope};
/// use roomwire_core::wire::WireFormat;
///
/// let env = decode_server(WireFormat::Postcard, b"\x02\x01\x01a\x2a")?;
/// assert!(matches!(env, ServerEnvelope::Push { room: Some(ref r), payload: b"\x2a" } if r == "a"));
/// # Ok::<(), roomwire_core::envelope::EnvelopeError>(())
/// ```
pub fn decode_server(format: WireFormat, bytes: &[u8]) -> Result<ServerEnvelope<'_>, EnvelopeError> {
    match Encoding::from(format) {
        Encoding::Postcard => decode_server_postcard(bytes),
        Encoding::Json => decode_server_json(bytes),
    }
}

/// A cursor over a postcard frame.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, EnvelopeError> {
        let (&b, rest) = self.rest.split_first().ok_or(EnvelopeError::malformed("truncated envelope"))?;
        self.rest = rest;
        Ok(b)
    }

    /// An unsigned LEB128 varint of at most `max_bytes` bytes whose last
    /// byte is at most `max_last` (postcard's rule: no bits beyond the
    /// type's width). Non-minimal encodings are accepted, as by postcard.
    fn varint(&mut self, max_bytes: u32, max_last: u8) -> Result<u32, EnvelopeError> {
        let mut value: u32 = 0;
        for i in 0..max_bytes {
            let b = self.byte()?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if i == max_bytes - 1 && b > max_last {
                    break;
                }
                return Ok(value);
            }
        }
        Err(EnvelopeError::malformed("varint overflow"))
    }

    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        self.varint(5, 0x0F)
    }

    fn u16(&mut self) -> Result<u16, EnvelopeError> {
        // At most 3 bytes, the last one carrying 2 bits: always fits.
        self.varint(3, 0x03).map(|v| u16::try_from(v).unwrap_or(u16::MAX))
    }

    fn option_tag(&mut self) -> Result<bool, EnvelopeError> {
        match self.byte()? {
            0x00 => Ok(false),
            0x01 => Ok(true),
            _ => Err(EnvelopeError::malformed("invalid option tag")),
        }
    }

    fn str(&mut self) -> Result<&'a str, EnvelopeError> {
        let len = self.u32()?;
        let len = usize::try_from(len).map_err(|_| EnvelopeError::malformed("truncated envelope"))?;
        if len > self.rest.len() {
            return Err(EnvelopeError::malformed("truncated envelope"));
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        core::str::from_utf8(bytes).map_err(|_| EnvelopeError::malformed("invalid UTF-8 in string"))
    }

    fn room(&mut self) -> Result<RoomId, EnvelopeError> {
        RoomId::new(self.str()?).map_err(room_error)
    }

    fn end(&self) -> Result<(), EnvelopeError> {
        if self.rest.is_empty() { Ok(()) } else { Err(EnvelopeError::malformed("trailing bytes after envelope")) }
    }
}

fn decode_client_postcard(bytes: &[u8]) -> Result<ClientEnvelope<'_>, EnvelopeError> {
    let mut r = Reader { rest: bytes };
    match r.u32()? {
        t @ (tag::JOIN | tag::LEAVE) => {
            let reference = r.u32()?;
            let room = r.room().map_err(|e| e.with_reference(reference))?;
            r.end().map_err(|e| e.with_reference(reference))?;
            Ok(if t == tag::JOIN {
                ClientEnvelope::Join { reference, room }
            } else {
                ClientEnvelope::Leave { reference, room }
            })
        }
        tag::MESSAGE => {
            let room = r.room()?;
            Ok(ClientEnvelope::Message { room, payload: r.rest })
        }
        _ => Err(EnvelopeError::malformed("unknown envelope type")),
    }
}

fn decode_server_postcard(bytes: &[u8]) -> Result<ServerEnvelope<'_>, EnvelopeError> {
    let mut r = Reader { rest: bytes };
    match r.u32()? {
        tag::OK => {
            let reference = r.u32()?;
            r.end()?;
            Ok(ServerEnvelope::Ok { reference })
        }
        tag::ERROR => {
            let reference = if r.option_tag()? { Some(r.u32()?) } else { None };
            let code = r.u16()?;
            let text = r.str()?;
            r.end()?;
            Ok(ServerEnvelope::Error { reference, code, text: Text::Plain(text) })
        }
        tag::PUSH => {
            let room = if r.option_tag()? { Some(r.room()?) } else { None };
            Ok(ServerEnvelope::Push { room, payload: r.rest })
        }
        _ => Err(EnvelopeError::malformed("unknown envelope type")),
    }
}

/// The members of a JSON envelope this crate knows (last occurrence wins).
#[derive(Default)]
struct JsonMembers<'a> {
    kind: Option<&'a [u8]>,
    reference: Option<&'a [u8]>,
    room: Option<&'a [u8]>,
    data: Option<&'a [u8]>,
    code: Option<&'a [u8]>,
    text: Option<&'a [u8]>,
}

impl<'a> JsonMembers<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        let members = json::object_members(bytes)
            .map_err(|_| EnvelopeError::malformed("not JSON"))?
            .ok_or(EnvelopeError::malformed("not a JSON object"))?;
        let mut found = Self::default();
        for (key, value) in members {
            let slot = match key.raw() {
                "type" => &mut found.kind,
                "ref" => &mut found.reference,
                "room" => &mut found.room,
                "data" => &mut found.data,
                "code" => &mut found.code,
                "text" => &mut found.text,
                _ if key.as_borrowed().is_some() => continue,
                // An escaped key can still spell a known name.
                _ => match ["type", "ref", "room", "data", "code", "text"].iter().position(|k| key.eq_str(k)) {
                    Some(0) => &mut found.kind,
                    Some(1) => &mut found.reference,
                    Some(2) => &mut found.room,
                    Some(3) => &mut found.data,
                    Some(4) => &mut found.code,
                    Some(5) => &mut found.text,
                    _ => continue,
                },
            };
            *slot = Some(value);
        }
        Ok(found)
    }

    /// The `type` member, which must be a string.
    fn kind(&self) -> Result<RawStr<'a>, EnvelopeError> {
        self.kind.and_then(json::as_string).ok_or(EnvelopeError::malformed("missing or non-string \"type\""))
    }

    fn reference(&self) -> Result<u32, EnvelopeError> {
        self.reference.and_then(json::as_u32).ok_or(EnvelopeError::malformed("missing or invalid \"ref\""))
    }

    fn optional_reference(&self) -> Result<Option<u32>, EnvelopeError> {
        match self.reference {
            None => Ok(None),
            Some(v) if json::trim(v) == b"null" => Ok(None),
            Some(v) => json::as_u32(v).map(Some).ok_or(EnvelopeError::malformed("invalid \"ref\"")),
        }
    }

    fn room(&self) -> Result<RoomId, EnvelopeError> {
        let value = self.room.ok_or(EnvelopeError::malformed("missing \"room\""))?;
        json_room(value)
    }

    fn optional_room(&self) -> Result<Option<RoomId>, EnvelopeError> {
        match self.room {
            None => Ok(None),
            Some(v) if json::trim(v) == b"null" => Ok(None),
            Some(v) => json_room(v).map(Some),
        }
    }

    fn data(&self) -> Result<&'a [u8], EnvelopeError> {
        self.data.ok_or(EnvelopeError::malformed("missing \"data\""))
    }
}

fn json_room(value: &[u8]) -> Result<RoomId, EnvelopeError> {
    let raw = json::as_string(value).ok_or(EnvelopeError::malformed("\"room\" is not a string"))?;
    room_from_raw(raw).map_err(room_error)
}

/// A [`RoomId`] from a JSON string, unescaped on the stack.
pub(crate) fn room_from_raw(raw: RawStr<'_>) -> Result<RoomId, RoomIdError> {
    let mut buf = [0u8; MAX_ROOM_ID_LEN];
    match raw.unescape_into(&mut buf) {
        Ok(room) => RoomId::new(room),
        Err(_) => Err(RoomIdError::TooLong { len: raw.unescaped_len() }),
    }
}

fn decode_client_json(bytes: &[u8]) -> Result<ClientEnvelope<'_>, EnvelopeError> {
    let m = JsonMembers::read(bytes)?;
    let kind = m.kind()?;
    if kind.eq_str("message") {
        let room = m.room()?;
        return Ok(ClientEnvelope::Message { room, payload: m.data()? });
    }
    let join = kind.eq_str("join");
    if !join && !kind.eq_str("leave") {
        return Err(EnvelopeError::malformed("unknown envelope type"));
    }
    let reference = m.reference()?;
    let room = m.room().map_err(|e| e.with_reference(reference))?;
    Ok(if join { ClientEnvelope::Join { reference, room } } else { ClientEnvelope::Leave { reference, room } })
}

fn decode_server_json(bytes: &[u8]) -> Result<ServerEnvelope<'_>, EnvelopeError> {
    let m = JsonMembers::read(bytes)?;
    let kind = m.kind()?;
    if kind.eq_str("push") {
        Ok(ServerEnvelope::Push { room: m.optional_room()?, payload: m.data()? })
    } else if kind.eq_str("ok") {
        Ok(ServerEnvelope::Ok { reference: m.reference()? })
    } else if kind.eq_str("error") {
        let reference = m.optional_reference()?;
        let code = m
            .code
            .and_then(json::as_u32)
            .and_then(|c| u16::try_from(c).ok())
            .ok_or(EnvelopeError::malformed("missing or invalid \"code\""))?;
        let raw = m.text.and_then(json::as_string).ok_or(EnvelopeError::malformed("missing or non-string \"text\""))?;
        let text = raw.as_borrowed().map_or(Text::Json(raw), Text::Plain);
        Ok(ServerEnvelope::Error { reference, code, text })
    } else {
        Err(EnvelopeError::malformed("unknown envelope type"))
    }
}
