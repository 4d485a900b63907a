//! The messages nodes of a cluster send each other, byte for byte.
//!
//! One message is encoded once by the node that publishes it and carries
//! everything a receiving node needs to deliver it to its own connections:
//! the channel path, the whole target (rooms, users, connections and the
//! exclusions) and the payload already serialized (JSON always, postcard
//! when it has an encoding). A receiving node resolves the target against
//! its own connections only, so the same bytes serve every node.
//!
//! Layout (integers little-endian; `len` is an unsigned LEB128 of at most
//! five bytes; a string is `len` bytes of UTF-8; a list is a `len` count of
//! strings):
//!
//! ```text
//! "RWC" 0x01        magic and version
//! kind    u8        1 emit, 2 close a connection, 3 query, 4 answer,
//!                   6 stateful room, 7 membership
//! flags   u8        bit 0: published on more than one topic (deduplicate)
//!                   bit 1: a postcard payload follows the JSON one
//! origin  u64       the publishing node
//! seq     u64       the publisher's sequence number (of multi-topic
//!                   messages, for deduplication)
//! path    string    the channel
//! emit:   rooms, users, connections, except_connections, except_users
//!         (five lists), json (len + bytes), [postcard (len + bytes)]
//! close:  connection (string), code u16, reason (string)
//! membership: connection (string), room (string), join u8 (1 join, 0 leave)
//! query:  asker u64, query u64, reply_to u32 (the asker's node tag),
//!         about u8 (0 the channel, 1 a room, 2 a user), [room or user]
//! answer: asker u64, query u64, a count of connections, each:
//!         id (string), has_user u8, [user (string)], wire u8
//!         (0 Alepha, 1 JSON, 2 postcard), rooms (list)
//! room:   reply_to u32 (the asker's node tag), request u64, room (string),
//!         op u8, then by op:
//!         0 join:      connection (string), has_user u8, [user (string)],
//!                      wire u8, query (string)
//!         1 leave:     connection (string)
//!         2 message:   connection (string), wire u8, payload (len + bytes)
//!         3 call:      method (string), args (len + bytes)
//!         4 broadcast: except (list), json (len + bytes),
//!                      [postcard (len + bytes), if flag bit 1]
//!         5 members:   connections (list)
//!         6 outcome:   status u8 (0 failed, 1 done, 2 not the owner,
//!                      3 no such method), body (len + bytes)
//! ```
//!
//! Decoding borrows from the input, allocates nothing, and validates every
//! string up front; any other input is a [`DecodeError`].

use core::fmt;
use core::str;

use crate::close::CloseCode;
use crate::error::InsufficientSize;
use crate::wire::WireFormat;

const MAGIC: [u8; 4] = *b"RWC\x01";
const KIND_EMIT: u8 = 1;
const KIND_CLOSE: u8 = 2;
const KIND_QUERY: u8 = 3;
const KIND_ANSWER: u8 = 4;
const KIND_ROOM: u8 = 6;
const KIND_MEMBERSHIP: u8 = 7;
const FLAG_MULTI: u8 = 1;
const FLAG_POSTCARD: u8 = 2;

/// Who published a message and its place in the publisher's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The publishing node's id (random per process start).
    pub node: u64,
    /// Its sequence number. Only messages published on more than one
    /// topic need one (see [`SeqWindow`](super::SeqWindow)); others carry 0.
    pub seq: u64,
    /// Whether the message was published on more than one topic, so that
    /// a node may receive it more than once and must deduplicate it.
    pub multi: bool,
}

/// A cluster message, decoded (borrowing the input) or to encode.
///
/// `L` is a list of strings and `C` a list of connections: [`StrList`]
/// and [`ConnectionList`] when decoded, `&[impl AsRef<str>]` and
/// `&[Connection<&[impl AsRef<str>]>]` when encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterMessage<'a, L = StrList<'a>, C = ConnectionList<'a>> {
    /// Who published it.
    pub origin: Origin,
    /// The channel (endpoint path) it is for.
    pub path: &'a str,
    /// What it asks.
    pub body: Body<'a, L, C>,
}

/// Which connections a [`Body::Query`] asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum About<'a> {
    /// Every connection of the channel.
    Channel,
    /// The connections in a room.
    Room(&'a str),
    /// The connections of a user.
    User(&'a str),
}

/// One connection in a [`Body::Answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection<'a, L = StrList<'a>> {
    /// Its id.
    pub id: &'a str,
    /// Its user, if any.
    pub user: Option<&'a str>,
    /// The wire it speaks.
    pub wire: WireFormat,
    /// Its rooms, in join order.
    pub rooms: L,
}

/// A stateful room's traffic between the node that owns the room and the
/// nodes with members in it ([`crate::stateful`] across a cluster): sent
/// to one node's topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomBody<'a, L = StrList<'a>> {
    /// The asking node's tag: where an [`RoomOp::Outcome`] goes.
    pub reply_to: u32,
    /// The asker's number for this request (0: no outcome wanted).
    pub request: u64,
    /// The room.
    pub room: &'a str,
    /// What is asked or answered.
    pub op: RoomOp<'a, L>,
}

/// What a [`RoomBody`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomOp<'a, L = StrList<'a>> {
    /// A connection of the asker joins the room (answered).
    Join {
        /// Its id.
        connection: &'a str,
        /// Its user, if any.
        user: Option<&'a str>,
        /// The wire it speaks.
        wire: WireFormat,
        /// Its handshake query (without `?`).
        query: &'a str,
    },
    /// A connection of the asker left the room.
    Leave {
        /// Its id.
        connection: &'a str,
    },
    /// A client message, checked by the asker, for `on_message` (answered).
    Message {
        /// The sender.
        connection: &'a str,
        /// The wire it was sent on (how the payload is encoded).
        wire: WireFormat,
        /// The payload.
        payload: &'a [u8],
    },
    /// A method call (answered with its JSON result).
    Call {
        /// The method.
        method: &'a str,
        /// The JSON arguments.
        args: &'a [u8],
    },
    /// A server-side broadcast to the room's members.
    Broadcast {
        /// Connections not reached.
        except: L,
        /// The message as JSON.
        json: &'a [u8],
        /// The message as postcard, if it has that encoding.
        postcard: Option<&'a [u8]>,
    },
    /// Every connection the asker has in the room now: the owner drops the
    /// asker's others (leaves lost on the way), and answers which of them
    /// it does not know (joins lost on the way: the asker joins them again).
    Members {
        /// The connection ids.
        connections: L,
    },
    /// The answer to request `request` of the node `reply_to` names.
    Outcome {
        /// How it went.
        status: RoomStatus,
        /// A call's JSON result, a failure's text, the unknown method's
        /// name, or (to `members`) the listed connections the owner does
        /// not know, one per line.
        body: &'a [u8],
    },
}

/// How a room request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomStatus {
    /// It failed; the body is the error text.
    Failed,
    /// Done; the body is a call's result (empty otherwise).
    Done,
    /// The receiving node does not own the room: ask who does again.
    NotOwner,
    /// A call named a method the room does not have; the body is its name.
    UnknownMethod,
}

/// What a cluster message asks of the nodes that receive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a, L = StrList<'a>, C = ConnectionList<'a>> {
    /// Deliver a message to the matching connections.
    Emit(EmitBody<'a, L>),
    /// Close a connection, wherever it is.
    Close {
        /// The connection id.
        connection: &'a str,
        /// The close code: one a close frame may carry (decoding refuses
        /// any other).
        code: CloseCode,
        /// The close reason.
        reason: &'a str,
    },
    /// Put a connection in a room, or take it out: the application's
    /// server-side membership (Alepha's room manager), sent to the node
    /// holding the connection, in its publisher's order with emits and
    /// closes.
    Membership {
        /// The connection id.
        connection: &'a str,
        /// The room.
        room: &'a str,
        /// Join (true) or leave (false).
        join: bool,
    },
    /// Which of your connections match? Every node that hears it answers,
    /// with none if none match, on the asker's node topic.
    Query {
        /// The asking node's id.
        asker: u64,
        /// The asker's number for this query.
        query: u64,
        /// The asker's node tag (where answers go).
        reply_to: u32,
        /// What is asked.
        about: About<'a>,
    },
    /// One node's answer to a query.
    Answer {
        /// The asking node's id (another node with the same tag ignores it).
        asker: u64,
        /// The asker's number for the query.
        query: u64,
        /// The matching connections of the answering node.
        connections: C,
    },
    /// A stateful room's request or answer.
    Room(RoomBody<'a, L>),
}

/// An emit: its target and its payload, serialized once.
///
/// `L` is a list of strings: [`StrList`] when decoded, any
/// `&[impl AsRef<str>]` when encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmitBody<'a, L = StrList<'a>> {
    /// Rooms whose connections are reached, in label priority order.
    pub rooms: L,
    /// Users whose connections are reached.
    pub users: L,
    /// Connections reached, by id.
    pub connections: L,
    /// Connections never reached.
    pub except_connections: L,
    /// Users whose connections are never reached.
    pub except_users: L,
    /// The payload as JSON (both JSON wires share it).
    pub json: &'a [u8],
    /// The payload as postcard, if it has a postcard encoding.
    pub postcard: Option<&'a [u8]>,
}

/// A list of strings in a decoded message, already checked to be UTF-8.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StrList<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> StrList<'a> {
    /// How many strings.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The strings, in order.
    pub fn iter(&self) -> StrListIter<'a> {
        StrListIter { reader: Reader { bytes: self.bytes }, left: self.len }
    }
}

impl fmt::Debug for StrList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for StrList<'a> {
    type Item = &'a str;
    type IntoIter = StrListIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The strings of a [`StrList`].
#[derive(Debug, Clone)]
pub struct StrListIter<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for StrListIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Checked when the message was decoded.
        self.reader.string().ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// The connections of a decoded [`Body::Answer`], already checked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConnectionList<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> ConnectionList<'a> {
    /// How many connections.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The connections, in order.
    pub fn iter(&self) -> impl Iterator<Item = Connection<'a>> + use<'a> {
        let mut reader = Reader { bytes: self.bytes };
        // Checked when the message was decoded.
        (0..self.len).map_while(move |_| reader.connection().ok())
    }
}

impl fmt::Debug for ConnectionList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

fn wire_byte(wire: WireFormat) -> u8 {
    match wire {
        WireFormat::Alepha => 0,
        WireFormat::Json => 1,
        WireFormat::Postcard => 2,
    }
}

/// Why bytes are not a cluster message. Nothing is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not this format, or another version of it.
    Magic,
    /// A message kind this version does not know.
    Kind(u8),
    /// The input ends inside the message.
    Truncated,
    /// A length does not fit in 32 bits (or takes more than five bytes).
    Length,
    /// A string is not UTF-8.
    Utf8,
    /// Bytes follow the end of the message.
    Trailing,
    /// A field holds a value this version does not know.
    Value,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Magic => f.write_str("not a roomwire cluster message (magic or version)"),
            DecodeError::Kind(kind) => write!(f, "unknown cluster message kind {kind}"),
            DecodeError::Truncated => f.write_str("cluster message truncated"),
            DecodeError::Length => f.write_str("cluster message length out of range"),
            DecodeError::Utf8 => f.write_str("cluster message string is not UTF-8"),
            DecodeError::Trailing => f.write_str("bytes after the cluster message"),
            DecodeError::Value => f.write_str("cluster message field out of range"),
        }
    }
}

impl core::error::Error for DecodeError {}

#[derive(Debug, Clone)]
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.bytes.split_first().ok_or(DecodeError::Truncated)?;
        self.bytes = rest;
        Ok(b)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut le = [0u8; 8];
        le.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(le))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let mut value: u32 = 0;
        for shift in [0u32, 7, 14, 21, 28] {
            let b = self.byte()?;
            let bits = u32::from(b & 0x7f);
            if shift == 28 && bits > 0x0f {
                return Err(DecodeError::Length);
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(value as usize);
            }
        }
        Err(DecodeError::Length)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.take(n)
    }

    fn string(&mut self) -> Result<&'a str, DecodeError> {
        str::from_utf8(self.bytes()?).map_err(|_| DecodeError::Utf8)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut le = [0u8; 4];
        le.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(le))
    }

    fn optional_string(&mut self) -> Result<Option<&'a str>, DecodeError> {
        match self.byte()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            _ => Err(DecodeError::Value),
        }
    }

    fn wire(&mut self) -> Result<WireFormat, DecodeError> {
        match self.byte()? {
            0 => Ok(WireFormat::Alepha),
            1 => Ok(WireFormat::Json),
            2 => Ok(WireFormat::Postcard),
            _ => Err(DecodeError::Value),
        }
    }

    fn connection(&mut self) -> Result<Connection<'a>, DecodeError> {
        let id = self.string()?;
        let user = self.optional_string()?;
        let wire = self.wire()?;
        let rooms = self.list()?;
        Ok(Connection { id, user, wire, rooms })
    }

    /// A count, then that many items each read (and so checked) by
    /// `item`: the bytes they span and the count.
    fn counted<T>(&mut self, item: fn(&mut Self) -> Result<T, DecodeError>) -> Result<(&'a [u8], usize), DecodeError> {
        let len = self.len()?;
        let start = self.bytes;
        for _ in 0..len {
            item(self)?;
        }
        let used = start.len() - self.bytes.len();
        Ok((start.get(..used).ok_or(DecodeError::Truncated)?, len))
    }

    fn connections(&mut self) -> Result<ConnectionList<'a>, DecodeError> {
        let (bytes, len) = self.counted(Self::connection)?;
        Ok(ConnectionList { bytes, len })
    }

    fn list(&mut self) -> Result<StrList<'a>, DecodeError> {
        let (bytes, len) = self.counted(Self::string)?;
        Ok(StrList { bytes, len })
    }
}

/// Decode one cluster message.
///
/// ```
/// use roomwire_core::cluster::{Body, ClusterMessage, EmitBody, Origin, decode, encode, encoded_len};
/// let message = ClusterMessage {
///     origin: Origin { node: 7, seq: 0, multi: false },
///     path: "/ws/chat",
///     body: Body::Emit(EmitBody {
///         rooms: &["lobby"][..],
///         users: &[][..],
///         connections: &[][..],
///         except_connections: &["ws-1"][..],
///         except_users: &[][..],
///         json: br#"{"text":"hi"}"#,
///         postcard: None,
///     }),
/// };
/// let mut buf = vec![0; encoded_len(&message)];
/// let n = encode(&message, &mut buf).unwrap();
/// let decoded = decode(&buf[..n]).unwrap();
/// let Body::Emit(emit) = decoded.body else { unreachable!() };
/// assert_eq!(emit.rooms.iter().collect::<Vec<_>>(), ["lobby"]);
/// assert_eq!(emit.except_connections.iter().next(), Some("ws-1"));
/// assert_eq!(emit.json, br#"{"text":"hi"}"#);
/// ```
pub fn decode(input: &[u8]) -> Result<ClusterMessage<'_>, DecodeError> {
    let mut r = Reader { bytes: input };
    if r.take(4).map_err(|_| DecodeError::Magic)? != MAGIC {
        return Err(DecodeError::Magic);
    }
    let kind = r.byte()?;
    let flags = r.byte()?;
    let node = r.u64()?;
    let seq = r.u64()?;
    let origin = Origin { node, seq, multi: flags & FLAG_MULTI != 0 };
    let path = r.string()?;
    let body = match kind {
        KIND_EMIT => {
            let rooms = r.list()?;
            let users = r.list()?;
            let connections = r.list()?;
            let except_connections = r.list()?;
            let except_users = r.list()?;
            let json = r.bytes()?;
            let postcard = if flags & FLAG_POSTCARD != 0 { Some(r.bytes()?) } else { None };
            Body::Emit(EmitBody { rooms, users, connections, except_connections, except_users, json, postcard })
        }
        KIND_CLOSE => {
            let connection = r.string()?;
            let code = CloseCode::from(u16::from_le_bytes([r.byte()?, r.byte()?]));
            if !code.is_valid_on_wire() {
                return Err(DecodeError::Value);
            }
            let reason = r.string()?;
            Body::Close { connection, code, reason }
        }
        KIND_MEMBERSHIP => {
            let connection = r.string()?;
            let room = r.string()?;
            let join = match r.byte()? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::Value),
            };
            Body::Membership { connection, room, join }
        }
        KIND_QUERY => {
            let asker = r.u64()?;
            let query = r.u64()?;
            let reply_to = r.u32()?;
            let about = match r.byte()? {
                0 => About::Channel,
                1 => About::Room(r.string()?),
                2 => About::User(r.string()?),
                _ => return Err(DecodeError::Value),
            };
            Body::Query { asker, query, reply_to, about }
        }
        KIND_ANSWER => {
            let asker = r.u64()?;
            let query = r.u64()?;
            let connections = r.connections()?;
            Body::Answer { asker, query, connections }
        }
        KIND_ROOM => {
            let reply_to = r.u32()?;
            let request = r.u64()?;
            let room = r.string()?;
            let op = match r.byte()? {
                0 => {
                    let connection = r.string()?;
                    let user = r.optional_string()?;
                    let wire = r.wire()?;
                    let query = r.string()?;
                    RoomOp::Join { connection, user, wire, query }
                }
                1 => RoomOp::Leave { connection: r.string()? },
                2 => {
                    let connection = r.string()?;
                    let wire = r.wire()?;
                    RoomOp::Message { connection, wire, payload: r.bytes()? }
                }
                3 => {
                    let method = r.string()?;
                    RoomOp::Call { method, args: r.bytes()? }
                }
                4 => {
                    let except = r.list()?;
                    let json = r.bytes()?;
                    let postcard = if flags & FLAG_POSTCARD != 0 { Some(r.bytes()?) } else { None };
                    RoomOp::Broadcast { except, json, postcard }
                }
                5 => RoomOp::Members { connections: r.list()? },
                6 => {
                    let status = match r.byte()? {
                        0 => RoomStatus::Failed,
                        1 => RoomStatus::Done,
                        2 => RoomStatus::NotOwner,
                        3 => RoomStatus::UnknownMethod,
                        _ => return Err(DecodeError::Value),
                    };
                    RoomOp::Outcome { status, body: r.bytes()? }
                }
                _ => return Err(DecodeError::Value),
            };
            Body::Room(RoomBody { reply_to, request, room, op })
        }
        other => return Err(DecodeError::Kind(other)),
    };
    if !r.bytes.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(ClusterMessage { origin, path, body })
}

fn len_of_len(n: usize) -> usize {
    let mut bytes = 1;
    let mut n = n >> 7;
    while n > 0 {
        bytes += 1;
        n >>= 7;
    }
    bytes
}

fn len_of_bytes(b: &[u8]) -> usize {
    len_of_len(b.len()) + b.len()
}

fn len_of_list<S: AsRef<str>>(list: &[S]) -> usize {
    len_of_len(list.len()) + list.iter().map(|s| len_of_bytes(s.as_ref().as_bytes())).sum::<usize>()
}

/// A message to encode: lists of strings are slices of `S`.
pub type Encodable<'a, S> = ClusterMessage<'a, &'a [S], &'a [Connection<'a, &'a [S]>]>;

fn len_of_connection<S: AsRef<str>>(c: &Connection<'_, &[S]>) -> usize {
    len_of_bytes(c.id.as_bytes()) + 1 + c.user.map_or(0, |u| len_of_bytes(u.as_bytes())) + 1 + len_of_list(c.rooms)
}

/// The exact size of `message` encoded.
pub fn encoded_len<S: AsRef<str>>(message: &Encodable<'_, S>) -> usize {
    let head = MAGIC.len() + 2 + 16 + len_of_bytes(message.path.as_bytes());
    head + match &message.body {
        Body::Emit(e) => {
            len_of_list(e.rooms)
                + len_of_list(e.users)
                + len_of_list(e.connections)
                + len_of_list(e.except_connections)
                + len_of_list(e.except_users)
                + len_of_bytes(e.json)
                + e.postcard.map_or(0, len_of_bytes)
        }
        Body::Close { connection, reason, .. } => {
            len_of_bytes(connection.as_bytes()) + 2 + len_of_bytes(reason.as_bytes())
        }
        Body::Membership { connection, room, .. } => {
            len_of_bytes(connection.as_bytes()) + len_of_bytes(room.as_bytes()) + 1
        }
        Body::Query { about, .. } => {
            8 + 8
                + 4
                + 1
                + match about {
                    About::Channel => 0,
                    About::Room(s) | About::User(s) => len_of_bytes(s.as_bytes()),
                }
        }
        Body::Answer { connections, .. } => {
            16 + len_of_len(connections.len()) + connections.iter().map(len_of_connection).sum::<usize>()
        }
        Body::Room(room) => {
            let str_len = |s: &str| len_of_bytes(s.as_bytes());
            4 + 8
                + str_len(room.room)
                + 1
                + match &room.op {
                    RoomOp::Join { connection, user, query, .. } => {
                        str_len(connection) + 1 + user.map_or(0, str_len) + 1 + str_len(query)
                    }
                    RoomOp::Leave { connection } => str_len(connection),
                    RoomOp::Message { connection, payload, .. } => str_len(connection) + 1 + len_of_bytes(payload),
                    RoomOp::Call { method, args } => str_len(method) + len_of_bytes(args),
                    RoomOp::Broadcast { except, json, postcard } => {
                        len_of_list(except) + len_of_bytes(json) + postcard.map_or(0, len_of_bytes)
                    }
                    RoomOp::Members { connections } => len_of_list(connections),
                    RoomOp::Outcome { body, .. } => 1 + len_of_bytes(body),
                }
        }
    }
}

struct Writer<'o> {
    out: &'o mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), ()> {
        let end = self.at.checked_add(bytes.len()).ok_or(())?;
        self.out.get_mut(self.at..end).ok_or(())?.copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }

    fn len(&mut self, mut n: usize) -> Result<(), ()> {
        if u32::try_from(n).is_err() {
            return Err(());
        }
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                return self.put(&[low]);
            }
            self.put(&[low | 0x80])?;
        }
    }

    fn bytes(&mut self, b: &[u8]) -> Result<(), ()> {
        self.len(b.len())?;
        self.put(b)
    }

    fn list<S: AsRef<str>>(&mut self, list: &[S]) -> Result<(), ()> {
        self.len(list.len())?;
        list.iter().try_for_each(|s| self.bytes(s.as_ref().as_bytes()))
    }
}

/// Encode `message` into `out`; returns the bytes written. `out` must hold
/// [`encoded_len`] bytes. (Every length must fit in 32 bits.)
pub fn encode<S: AsRef<str>>(message: &Encodable<'_, S>, out: &mut [u8]) -> Result<usize, InsufficientSize> {
    let required = encoded_len(message);
    let short = InsufficientSize { required };
    let mut w = Writer { out, at: 0 };
    let mut flags = if message.origin.multi { FLAG_MULTI } else { 0 };
    let kind = match &message.body {
        Body::Emit(e) => {
            if e.postcard.is_some() {
                flags |= FLAG_POSTCARD;
            }
            KIND_EMIT
        }
        Body::Close { .. } => KIND_CLOSE,
        Body::Membership { .. } => KIND_MEMBERSHIP,
        Body::Query { .. } => KIND_QUERY,
        Body::Answer { .. } => KIND_ANSWER,
        Body::Room(room) => {
            if matches!(room.op, RoomOp::Broadcast { postcard: Some(_), .. }) {
                flags |= FLAG_POSTCARD;
            }
            KIND_ROOM
        }
    };
    let written = (|| {
        w.put(&MAGIC)?;
        w.put(&[kind, flags])?;
        w.put(&message.origin.node.to_le_bytes())?;
        w.put(&message.origin.seq.to_le_bytes())?;
        w.bytes(message.path.as_bytes())?;
        match &message.body {
            Body::Emit(e) => {
                w.list(e.rooms)?;
                w.list(e.users)?;
                w.list(e.connections)?;
                w.list(e.except_connections)?;
                w.list(e.except_users)?;
                w.bytes(e.json)?;
                if let Some(postcard) = e.postcard {
                    w.bytes(postcard)?;
                }
            }
            Body::Close { connection, code, reason } => {
                w.bytes(connection.as_bytes())?;
                w.put(&u16::from(*code).to_le_bytes())?;
                w.bytes(reason.as_bytes())?;
            }
            Body::Membership { connection, room, join } => {
                w.bytes(connection.as_bytes())?;
                w.bytes(room.as_bytes())?;
                w.put(&[u8::from(*join)])?;
            }
            Body::Query { asker, query, reply_to, about } => {
                w.put(&asker.to_le_bytes())?;
                w.put(&query.to_le_bytes())?;
                w.put(&reply_to.to_le_bytes())?;
                match about {
                    About::Channel => w.put(&[0])?,
                    About::Room(room) => {
                        w.put(&[1])?;
                        w.bytes(room.as_bytes())?;
                    }
                    About::User(user) => {
                        w.put(&[2])?;
                        w.bytes(user.as_bytes())?;
                    }
                }
            }
            Body::Answer { asker, query, connections } => {
                w.put(&asker.to_le_bytes())?;
                w.put(&query.to_le_bytes())?;
                w.len(connections.len())?;
                for c in connections.iter() {
                    w.bytes(c.id.as_bytes())?;
                    match c.user {
                        Some(user) => {
                            w.put(&[1])?;
                            w.bytes(user.as_bytes())?;
                        }
                        None => w.put(&[0])?,
                    }
                    w.put(&[wire_byte(c.wire)])?;
                    w.list(c.rooms)?;
                }
            }
            Body::Room(room) => {
                w.put(&room.reply_to.to_le_bytes())?;
                w.put(&room.request.to_le_bytes())?;
                w.bytes(room.room.as_bytes())?;
                match &room.op {
                    RoomOp::Join { connection, user, wire, query } => {
                        w.put(&[0])?;
                        w.bytes(connection.as_bytes())?;
                        match user {
                            Some(user) => {
                                w.put(&[1])?;
                                w.bytes(user.as_bytes())?;
                            }
                            None => w.put(&[0])?,
                        }
                        w.put(&[wire_byte(*wire)])?;
                        w.bytes(query.as_bytes())?;
                    }
                    RoomOp::Leave { connection } => {
                        w.put(&[1])?;
                        w.bytes(connection.as_bytes())?;
                    }
                    RoomOp::Message { connection, wire, payload } => {
                        w.put(&[2])?;
                        w.bytes(connection.as_bytes())?;
                        w.put(&[wire_byte(*wire)])?;
                        w.bytes(payload)?;
                    }
                    RoomOp::Call { method, args } => {
                        w.put(&[3])?;
                        w.bytes(method.as_bytes())?;
                        w.bytes(args)?;
                    }
                    RoomOp::Broadcast { except, json, postcard } => {
                        w.put(&[4])?;
                        w.list(except)?;
                        w.bytes(json)?;
                        if let Some(postcard) = postcard {
                            w.bytes(postcard)?;
                        }
                    }
                    RoomOp::Members { connections } => {
                        w.put(&[5])?;
                        w.list(connections)?;
                    }
                    RoomOp::Outcome { status, body } => {
                        let status = match status {
                            RoomStatus::Failed => 0,
                            RoomStatus::Done => 1,
                            RoomStatus::NotOwner => 2,
                            RoomStatus::UnknownMethod => 3,
                        };
                        w.put(&[6, status])?;
                        w.bytes(body)?;
                    }
                }
            }
        }
        Ok::<usize, ()>(w.at)
    })();
    written.map_err(|()| short)
}
