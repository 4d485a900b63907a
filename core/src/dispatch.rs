//! The server side of a channel: admitting a connection to its rooms,
//! handling each whole client message, and encoding frames for recipients.
//!
//! Adapters call these three steps and only move the bytes:
//!
//! 1. [`join_handshake_rooms`] at the handshake: on the Alepha wire the rooms come from
//!    the query (`roomId`, `roomIds`, else `"default"`), or from an
//!    authorization hook's override; on the roomwire wire a connection
//!    starts in no room and joins with envelopes.
//! 2. [`handle_message`] for each whole message: it returns the typed
//!    message for the handler with the room it is handled in, or the answer
//!    for the sender alone (join/leave acknowledgements, error frames), or
//!    nothing (non-JSON text on the Alepha wire is dropped).
//! 3. [`encode_frame`] for each (wire format, room label) an emit reaches
//!    (see [`crate::target`]): one complete WebSocket frame shared by every
//!    recipient with that key.
//!
//! A client can never make this code allocate, nor loop beyond the length
//! of its own message and the configured capacities.

use core::ops::Range;

use crate::alepha;
use crate::channel::Channel;
use crate::close::CloseCode;
use crate::envelope::{self, ClientEnvelope, code};
use crate::error::InsufficientSize;
use crate::frame::FrameHeader;
use crate::payload;
#[cfg(not(feature = "alloc"))]
use crate::room::RoomSet;
use crate::room::{JoinError, MemberId, RoomId, RoomTable, TableAccess};
use crate::target::FrameKey;
use crate::wire::WireFormat;

/// Room for the longest server frame header (64-bit length, no mask).
pub const MAX_SERVER_HEADER: usize = 10;

/// A handshake the channel cannot admit: the connection is accepted, then
/// closed with this code and reason (as Alepha does for its limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The close code (1008).
    pub code: CloseCode,
    /// The close reason.
    pub reason: &'static str,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "closed with {}: {}", u16::from(self.code), self.reason)
    }
}

impl core::error::Error for Refusal {}

/// Join `member` to the rooms its handshake asks for.
///
/// * Alepha wire: `room_override` (from an authorization hook) if given,
///   else the query's `roomId` / `roomIds`, else `"default"`. Room ids
///   other than `"default"` (implicit or named, as in Alepha) must pass
///   [`Channel::validate_room_id`].
/// * roomwire wire: `room_override` if given (the connection starts in it),
///   else no room.
///
/// On refusal the member is in no room.
///
/// ```
/// use roomwire_core::dispatch::join_handshake_rooms;
/// use roomwire_core::room::{FixedRoomTable, MemberId, RoomTable};
/// use roomwire_core::wire::WireFormat;
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
/// roomwire_core::channel! { /// A channel.
///     pub struct Chat { path: "/ws/chat", in: M, out: M } }
///
/// let mut table = FixedRoomTable::<8, 4, 4, 4>::new();
/// join_handshake_rooms::<Chat, _>(WireFormat::Alepha, MemberId(1), Some("roomIds=a,b"), None, &roomwire_core::dispatch::AnyRoom, &mut table).unwrap();
/// assert_eq!(table.rooms_of(MemberId(1)).map(|r| r.as_str()).collect::<Vec<_>>(), ["a", "b"]);
/// join_handshake_rooms::<Chat, _>(WireFormat::Alepha, MemberId(2), None, None, &roomwire_core::dispatch::AnyRoom, &mut table).unwrap();
/// assert!(table.is_in_room(MemberId(2), "default"));
/// ```
pub fn join_handshake_rooms<C: Channel, A: TableAccess>(
    format: WireFormat,
    member: MemberId,
    query: Option<&str>,
    room_override: Option<&str>,
    gate: &impl RoomGate,
    mut table: A,
) -> Result<(), Refusal> {
    let single = match (format, room_override) {
        (_, Some(room)) => {
            let room = RoomId::new(room).map_err(|_| INVALID_ROOM_ID)?;
            if !alepha::is_room_of::<C>(&room) {
                return Err(INVALID_ROOM_ID);
            }
            Some(room)
        }
        (WireFormat::Alepha, None) => None,
        (_, None) => return Ok(()),
    };
    // The distinct rooms, in the query's order, before the gate is asked
    // or the table locked: a query naming one room thousands of times
    // costs one pass, and one naming more rooms than the connection may
    // hold is refused before anything else is done.
    let limit = table.with(|table| table.limits().max_rooms_per_member);
    let mut rooms = HandshakeRooms::new();
    match single {
        Some(room) => rooms.add(room, limit)?,
        None => {
            let named = alepha::for_each_query_room(query, |room| {
                if !alepha::is_room_of::<C>(&room) {
                    return Err(INVALID_ROOM_ID);
                }
                rooms.add(room, limit)
            })?;
            if !named {
                rooms.add(RoomId::new(alepha::DEFAULT_ROOM).map_err(|_| INVALID_ROOM_ID)?, limit)?;
            }
        }
    }
    // Every room is checked before any is joined: a refusal leaves no trace.
    if rooms.iter().any(|room| !gate.allows(room)) {
        return Err(ROOM_NOT_ALLOWED);
    }
    // All the rooms in one step: another connection never sees half of them.
    table.with(|table| {
        for room in rooms.iter() {
            if let Err(e) = table.join(member, room) {
                table.leave_all(member);
                return Err(Refusal { code: CloseCode::Policy, reason: join_error_text(e) });
            }
        }
        Ok(())
    })
}

/// More rooms than a connection may be in: the table's own reason.
const TOO_MANY_ROOMS: Refusal = Refusal { code: CloseCode::Policy, reason: join_error_text(JoinError::MemberFull) };

/// The distinct rooms a handshake names, in order, at most the table's
/// rooms per connection: growable with `alloc` (a hash set finds repeats
/// in one pass), [`MAX_HANDSHAKE_ROOMS`] without.
struct HandshakeRooms {
    #[cfg(feature = "alloc")]
    order: alloc::vec::Vec<RoomId>,
    #[cfg(feature = "alloc")]
    seen: hashbrown::HashSet<RoomId>,
    #[cfg(not(feature = "alloc"))]
    set: RoomSet<MAX_HANDSHAKE_ROOMS>,
}

/// Without `alloc`, the most rooms a handshake may name (a fixed table's
/// rooms per connection is usually far fewer).
pub const MAX_HANDSHAKE_ROOMS: usize = 32;

impl HandshakeRooms {
    fn new() -> Self {
        Self {
            #[cfg(feature = "alloc")]
            order: alloc::vec::Vec::new(),
            #[cfg(feature = "alloc")]
            seen: hashbrown::HashSet::new(),
            #[cfg(not(feature = "alloc"))]
            set: RoomSet::new(),
        }
    }

    /// Add `room` unless it is there; more than `limit` rooms are refused.
    fn add(&mut self, room: RoomId, limit: usize) -> Result<(), Refusal> {
        #[cfg(feature = "alloc")]
        {
            if self.seen.contains(&room) {
                return Ok(());
            }
            if self.order.len() >= limit {
                return Err(TOO_MANY_ROOMS);
            }
            self.seen.insert(room.clone());
            self.order.push(room);
            Ok(())
        }
        #[cfg(not(feature = "alloc"))]
        {
            if !self.set.contains(&room) && self.set.len() >= limit {
                return Err(TOO_MANY_ROOMS);
            }
            self.set.join(room).map(|_| ()).map_err(|_| TOO_MANY_ROOMS)
        }
    }

    fn iter(&self) -> core::slice::Iter<'_, RoomId> {
        #[cfg(feature = "alloc")]
        return self.order.iter();
        #[cfg(not(feature = "alloc"))]
        return self.set.iter();
    }
}

/// A room id of the handshake is not a valid room id of the channel.
pub const INVALID_ROOM_ID: Refusal = Refusal { code: CloseCode::Policy, reason: "Invalid room id" };

/// Only [`QueryRoomsError::InvalidRoomId`](alepha::QueryRoomsError) comes
/// from reading a query with [`alepha::for_each_query_room`].
impl From<alepha::QueryRoomsError> for Refusal {
    fn from(error: alepha::QueryRoomsError) -> Self {
        match error {
            alepha::QueryRoomsError::InvalidRoomId => INVALID_ROOM_ID,
            alepha::QueryRoomsError::TooManyRooms => TOO_MANY_ROOMS,
        }
    }
}

/// The application, not the client, puts `member` in `room`: the
/// server-side membership of Alepha's room manager (`joinRoom`). The room
/// must be a valid room id of the channel ([`Channel::validate_room_id`];
/// the implicit `"default"` room excepted) and the table's limits hold (refused with the handshake's reasons);
/// the [`RoomGate`] is not asked, since the application is the one
/// deciding. Returns whether the member was not in the room before.
///
/// ```
/// use roomwire_core::dispatch::{join_for_application, leave_for_application};
/// use roomwire_core::room::{FixedRoomTable, MemberId, RoomTable};
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
/// roomwire_core::channel! { pub struct Chat { path: "/ws/chat", in: M, out: M } }
///
/// let mut table = FixedRoomTable::<8, 4, 4, 4>::new();
/// assert_eq!(join_for_application::<Chat, _>(MemberId(1), "lobby", &mut table), Ok(true));
/// assert_eq!(join_for_application::<Chat, _>(MemberId(1), "lobby", &mut table), Ok(false));
/// assert_eq!(join_for_application::<Chat, _>(MemberId(1), "", &mut table).unwrap_err().reason, "Invalid room id");
/// assert!(leave_for_application(MemberId(1), "lobby", &mut table));
/// assert!(!table.is_in_room(MemberId(1), "lobby"));
/// ```
pub fn join_for_application<C: Channel, A: TableAccess>(
    member: MemberId,
    room: &str,
    mut table: A,
) -> Result<bool, Refusal> {
    let room = RoomId::new(room).map_err(|_| INVALID_ROOM_ID)?;
    if !alepha::is_room_of::<C>(&room) {
        return Err(INVALID_ROOM_ID);
    }
    match table.with(|table| table.join(member, &room)) {
        Ok(joined) => Ok(joined == crate::room::Joined::Added),
        Err(e) => Err(Refusal { code: CloseCode::Policy, reason: join_error_text(e) }),
    }
}

/// The application takes `member` out of `room` (Alepha's `leaveRoom`);
/// whether it was in it. An empty room is deleted.
pub fn leave_for_application<A: TableAccess>(member: MemberId, room: &str, mut table: A) -> bool {
    table.with(|table| table.leave(member, room))
}

fn join_error_code(e: JoinError) -> u16 {
    match e {
        JoinError::MemberFull => code::TOO_MANY_ROOMS,
        _ => code::ROOM_FULL,
    }
}

/// The application's rule on which rooms a connection may be in, beyond the
/// channel's [`validate_room_id`](Channel::validate_room_id) (which knows the
/// room id alone): an adapter builds one per connection from what it knows
/// of it (its user, its id). It is asked for every room a connection would
/// join: those its handshake names, on both wires, and every `join` on the
/// roomwire wire. A refused handshake room closes the connection with 1008
/// [`ROOM_NOT_ALLOWED`]; a refused `join` is answered with
/// [`code::ROOM_NOT_ALLOWED`] and the connection stays.
///
/// Any `Fn(&RoomId) -> bool` is a gate; [`AnyRoom`] allows every room.
///
/// ```
/// use roomwire_core::dispatch::RoomGate;
/// use roomwire_core::RoomId;
/// let user = "alice";
/// let own_inbox = |room: &RoomId| room.as_str().strip_prefix("inbox:") == Some(user);
/// assert!(own_inbox.allows(&RoomId::new("inbox:alice").unwrap()));
/// assert!(!own_inbox.allows(&RoomId::new("inbox:bob").unwrap()));
/// ```
pub trait RoomGate {
    /// Whether the connection may be in `room`.
    fn allows(&self, room: &RoomId) -> bool;
}

impl<F: Fn(&RoomId) -> bool> RoomGate for F {
    fn allows(&self, room: &RoomId) -> bool {
        self(room)
    }
}

/// The gate of an application with no rule of its own: every room.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyRoom;

impl RoomGate for AnyRoom {
    fn allows(&self, _: &RoomId) -> bool {
        true
    }
}

/// A room its handshake named is not allowed to the connection.
pub const ROOM_NOT_ALLOWED: Refusal = Refusal { code: CloseCode::Policy, reason: "Room not allowed" };

const fn join_error_text(e: JoinError) -> &'static str {
    match e {
        JoinError::MemberFull => "Too many rooms for this connection",
        JoinError::RoomFull => "Room full",
        JoinError::TooManyRooms => "Too many rooms on this server",
        JoinError::TooManyMembers => "Server full",
    }
}

/// A change of membership made by [`handle_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// The connection joined this room (not reported for a repeated join).
    Joined(RoomId),
    /// The connection left this room (not reported if it was not in it).
    Left(RoomId),
}

/// What to do with one client message.
#[derive(Debug)]
pub enum Inbound<M> {
    /// Run the channel handler with this typed message, in `room`.
    Message {
        /// The room the message is handled in: the one it names if the
        /// connection joined it, else (Alepha wire) the connection's first
        /// room, else `"default"`.
        room: RoomId,
        /// The validated message.
        message: M,
    },
    /// Send the `len` bytes written at the start of `out` to the sender
    /// only, as one WebSocket message of kind
    /// [`WireFormat::message_kind`]: an acknowledgement or an error frame.
    /// The connection stays open.
    Answer {
        /// Bytes written to `out`.
        len: usize,
        /// The membership change acknowledged, if any.
        membership: Option<Membership>,
    },
    /// Nothing to send: the Alepha wire drops text that is not JSON, and
    /// frames of a connection in no room.
    Ignored,
}

/// Handle one whole message from `member`, speaking `format`, for channel
/// `C`. `scratch` is room for unescaping JSON strings on the no-`std` path
/// (its size bounds the longest escaped string a message may borrow);
/// `out` receives any reply and must hold at least 256 bytes.
///
/// ```
/// use roomwire_core::dispatch::{join_handshake_rooms, handle_message, Inbound};
/// use roomwire_core::room::{FixedRoomTable, MemberId};
/// use roomwire_core::wire::WireFormat;
///
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// pub struct Say<'a> { pub content: &'a str }
/// roomwire_core::channel! { /// Chat.
///     pub struct Chat { path: "/ws/chat", in: Say<'a>, out: Say<'a> } }
///
/// let mut table = FixedRoomTable::<8, 4, 4, 4>::new();
/// join_handshake_rooms::<Chat, _>(WireFormat::Alepha, MemberId(1), Some("roomId=lobby"), None, &roomwire_core::dispatch::AnyRoom, &mut table).unwrap();
/// let mut out = [0u8; 256];
/// let frame = br#"{"roomId":"elsewhere","message":{"content":"hi"}}"#;
/// match handle_message::<Chat, _>(WireFormat::Alepha, MemberId(1), &mut table, &roomwire_core::dispatch::AnyRoom, frame, &mut [0; 64], &mut out) {
///     // A room the connection did not join is never honoured.
///     Inbound::Message { room, message } => assert_eq!((room.as_str(), message.content), ("lobby", "hi")),
///     other => panic!("{other:?}"),
/// }
/// let bad = br#"{"message":{"nope":1}}"#;
/// match handle_message::<Chat, _>(WireFormat::Alepha, MemberId(1), &mut table, &roomwire_core::dispatch::AnyRoom, bad, &mut [0; 64], &mut out) {
///     Inbound::Answer { len, .. } => assert!(out[..len].starts_with(br#"{"error":"Message validation failed: "#)),
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn handle_message<'a, C: Channel, A: TableAccess>(
    format: WireFormat,
    member: MemberId,
    table: A,
    gate: &impl RoomGate,
    data: &'a [u8],
    scratch: &'a mut [u8],
    out: &mut [u8],
) -> Inbound<C::Out<'a>> {
    match format {
        WireFormat::Alepha => handle_alepha::<C, A>(member, table, data, scratch, out),
        WireFormat::Json | WireFormat::Postcard => {
            handle_envelope::<C, A>(format, member, table, gate, data, scratch, out)
        }
    }
}

fn handle_alepha<'a, C: Channel, A: TableAccess>(
    member: MemberId,
    mut table: A,
    data: &'a [u8],
    scratch: &'a mut [u8],
    out: &mut [u8],
) -> Inbound<C::Out<'a>> {
    let Ok(frame) = alepha::parse_client_frame(data) else {
        return Inbound::Ignored;
    };
    // A connection the application took out of every room has no room to
    // act in: its frames are dropped, never handled in a room it is not in
    // (Alepha's `"default"` is the room it joins at the handshake when its
    // query names none, not a room to fall back to later).
    let room = table.with(|table| {
        frame
            .claimed_room
            .filter(|claimed| table.is_in_room(member, claimed))
            .or_else(|| table.first_room(member).cloned())
    });
    let Some(room) = room else {
        return Inbound::Ignored;
    };
    match alepha::decode_message::<C>(frame.message, scratch) {
        Ok(message) => Inbound::Message { room, message },
        Err(error) => Inbound::Answer {
            len: error_frame(WireFormat::Alepha, None, code::VALIDATION_FAILED, &error, out),
            membership: None,
        },
    }
}

fn handle_envelope<'a, C: Channel, A: TableAccess>(
    format: WireFormat,
    member: MemberId,
    mut table: A,
    gate: &impl RoomGate,
    data: &'a [u8],
    scratch: &'a mut [u8],
    out: &mut [u8],
) -> Inbound<C::Out<'a>> {
    let reply = |len, membership| Inbound::Answer { len, membership };
    let envelope = match envelope::decode_client(format, data) {
        Ok(envelope) => envelope,
        Err(e) => return reply(error_frame(format, e.reference, e.code, e.reason, out), None),
    };
    match envelope {
        ClientEnvelope::Join { reference, room } => {
            if !C::validate_room_id(&room) {
                return reply(
                    error_frame(format, Some(reference), code::INVALID_ROOM_ID, "Invalid room id", out),
                    None,
                );
            }
            // A member already in the room is answered from this one step:
            // were its membership read here and the join made in a later
            // step, a leave between the two (the application revoking it)
            // would be undone without the gate being asked.
            if table.with(|table| table.is_in_room(member, &room)) {
                return reply(ok_frame(format, reference, out), None);
            }
            // The application's gate runs outside the table step: it is
            // the application's code, and may take its time.
            if !gate.allows(&room) {
                let text = ROOM_NOT_ALLOWED.reason;
                return reply(error_frame(format, Some(reference), code::ROOM_NOT_ALLOWED, text, out), None);
            }
            match table.with(|table| table.join(member, &room)) {
                Ok(joined) => {
                    let membership = matches!(joined, crate::room::Joined::Added).then_some(Membership::Joined(room));
                    reply(ok_frame(format, reference, out), membership)
                }
                Err(e) => {
                    reply(error_frame(format, Some(reference), join_error_code(e), join_error_text(e), out), None)
                }
            }
        }
        ClientEnvelope::Leave { reference, room } => {
            let membership = table.with(|table| table.leave(member, &room)).then_some(Membership::Left(room));
            reply(ok_frame(format, reference, out), membership)
        }
        ClientEnvelope::Message { room, payload } => {
            if !table.with(|table| table.is_in_room(member, &room)) {
                return reply(error_frame(format, None, code::NOT_A_MEMBER, "Not a member of that room", out), None);
            }
            match payload::decode_message::<C>(format, payload, scratch) {
                Ok(message) => Inbound::Message { room, message },
                Err(error) => reply(error_frame(format, None, code::VALIDATION_FAILED, &error, out), None),
            }
        }
    }
}

/// The text of a handler failure that has none of its own: a handler that
/// panicked, or an error whose message is empty (Alepha sends the same for
/// a thrown value that is not an `Error`). A panic's message stays in the
/// server's logs.
pub const UNKNOWN_ERROR: &str = "Unknown error";

/// The text of a handler failure when the handler did not finish within
/// the server's handler deadline (it was cancelled).
pub const HANDLER_TIMED_OUT: &str = "Handler timed out";

/// What a sender is told of a handler failure whose message is `text`
/// (empty for a panic): `text`, or [`UNKNOWN_ERROR`] when it is empty or
/// only whitespace.
///
/// ```
/// use roomwire_core::dispatch::handler_error_text;
/// assert_eq!(handler_error_text("boom"), "boom");
/// assert_eq!(handler_error_text(" "), "Unknown error");
/// ```
pub fn handler_error_text(text: &str) -> &str {
    if text.trim().is_empty() { UNKNOWN_ERROR } else { text }
}

/// Write the frame telling a sender that the handler failed on its
/// message: `{"error":"<text>"}` on the Alepha wire (as Alepha does), an
/// error envelope with [`code::HANDLER_ERROR`] on the roomwire wire. The
/// connection stays open.
///
/// ```
/// use roomwire_core::dispatch::write_handler_error;
/// use roomwire_core::wire::WireFormat;
/// let mut out = [0u8; 64];
/// let n = write_handler_error(WireFormat::Alepha, "boom", &mut out).unwrap();
/// assert_eq!(&out[..n], br#"{"error":"boom"}"#);
/// let n = write_handler_error(WireFormat::Json, "boom", &mut out).unwrap();
/// assert_eq!(&out[..n], br#"{"type":"error","code":4006,"text":"boom"}"#);
/// ```
pub fn write_handler_error<E: core::fmt::Display + ?Sized>(
    format: WireFormat,
    text: &E,
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    match format {
        WireFormat::Alepha => alepha::write_error_frame(text, out),
        _ => envelope::write_error(format, None, code::HANDLER_ERROR, text, out),
    }
}

fn ok_frame(format: WireFormat, reference: u32, out: &mut [u8]) -> usize {
    envelope::encode_server(format, &envelope::ServerEnvelope::Ok { reference }, out).unwrap_or(0)
}

/// Write an error frame; if the detail does not fit `out`, fall back to the
/// code's default text so the sender still learns what failed.
fn error_frame<E: core::fmt::Display + ?Sized>(
    format: WireFormat,
    reference: Option<u32>,
    code: u16,
    text: &E,
    out: &mut [u8],
) -> usize {
    let written = match format {
        WireFormat::Alepha => alepha::write_error_frame(text, out),
        _ => envelope::write_error(format, reference, code, text, out),
    };
    written
        .or_else(|_| match format {
            WireFormat::Alepha => alepha::write_error_frame(code::default_text(code), out),
            _ => envelope::write_error(format, reference, code, code::default_text(code), out),
        })
        .unwrap_or(0)
}

/// Encode the complete WebSocket frame (unmasked server header and body)
/// that every recipient with `key` receives for a message whose payload is
/// `payload`, encoded in the key's format's encoding (JSON for
/// [`WireFormat::Alepha`] and [`WireFormat::Json`], postcard for
/// [`WireFormat::Postcard`]).
///
/// The frame is written somewhere inside `out`; the returned range locates
/// it. `out` needs the body length plus [`MAX_SERVER_HEADER`] bytes.
///
/// ```
/// use roomwire_core::dispatch::encode_frame;
/// use roomwire_core::target::FrameKey;
/// use roomwire_core::wire::WireFormat;
///
/// let mut out = [0u8; 64];
/// let key = FrameKey { format: WireFormat::Alepha, label: Some("lobby") };
/// let frame = encode_frame(key, br#"{"n":1}"#, &mut out).unwrap();
/// assert_eq!(&out[frame], b"\x81\x1e{\"n\":1,\"__alephaRoom\":\"lobby\"}");
/// ```
pub fn encode_frame(key: FrameKey<'_>, payload: &[u8], out: &mut [u8]) -> Result<Range<usize>, InsufficientSize> {
    let grow = |e: InsufficientSize| InsufficientSize { required: e.required + MAX_SERVER_HEADER };
    let body = out.get_mut(MAX_SERVER_HEADER..).ok_or(InsufficientSize { required: MAX_SERVER_HEADER })?;
    let len = match key.format {
        WireFormat::Alepha => alepha::write_server_frame(payload, key.label, body),
        format => envelope::write_push(format, key.label, payload, body),
    }
    .map_err(grow)?;
    let header = FrameHeader::new(key.format.message_kind().opcode(), len as u64);
    let start = MAX_SERVER_HEADER - header.encoded_len();
    let head = out.get_mut(start..MAX_SERVER_HEADER).ok_or(InsufficientSize { required: MAX_SERVER_HEADER })?;
    header.encode(head)?;
    Ok(start..MAX_SERVER_HEADER + len)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use core::cell::Cell;

    use super::{AnyRoom, join_handshake_rooms};
    use crate::RoomId;
    use crate::room::{GrowableRoomTable, MemberId, RoomTable, TableLimits};
    use crate::wire::WireFormat;

    crate::channel! { pub struct Chat { path: "/ws/chat", in: (), out: () } }

    /// A query that repeats a room thousands of times costs one gate call
    /// per distinct room; one naming more distinct rooms than a connection
    /// may hold is refused before the gate is asked or anything joined.
    #[test]
    fn handshake_rooms_are_distinct_and_bounded_before_the_gate() {
        let limits = TableLimits { max_rooms_per_member: 3, ..TableLimits::UNLIMITED };
        let mut table = GrowableRoomTable::with_limits(limits);
        let asked = Cell::new(0);
        let gate = |_: &RoomId| {
            asked.set(asked.get() + 1);
            true
        };
        let repeated = std::format!("roomIds={}b", "a,".repeat(5000));
        join_handshake_rooms::<Chat, _>(WireFormat::Alepha, MemberId(1), Some(&repeated), None, &gate, &mut table)
            .unwrap();
        assert_eq!(asked.get(), 2);
        assert_eq!(table.rooms_of(MemberId(1)).map(|r| r.as_str()).collect::<std::vec::Vec<_>>(), ["a", "b"]);

        asked.set(0);
        let over = "roomIds=a,b,c,d";
        let refused =
            join_handshake_rooms::<Chat, _>(WireFormat::Alepha, MemberId(2), Some(over), None, &gate, &mut table);
        assert_eq!(refused.unwrap_err().reason, "Too many rooms for this connection");
        assert_eq!((asked.get(), table.room_count_of(MemberId(2))), (0, 0));
        join_handshake_rooms::<Chat, _>(
            WireFormat::Alepha,
            MemberId(3),
            Some("roomIds=a,b,c,a"),
            None,
            &AnyRoom,
            &mut table,
        )
        .unwrap();
        assert_eq!(table.room_count_of(MemberId(3)), 3);
    }

    crate::channel! { pub struct Games { path: "/ws/games", room_id: Pattern("game-*"), in: (), out: () } }

    /// Alepha never checks the literal `"default"` against the channel's
    /// room id rule, named in the query or not.
    #[test]
    fn default_is_a_room_of_every_channel_named_or_implicit() {
        let mut table = GrowableRoomTable::with_limits(TableLimits::UNLIMITED);
        let rooms = |table: &GrowableRoomTable, m| {
            table.rooms_of(MemberId(m)).map(|r| r.as_str().into()).collect::<std::vec::Vec<std::string::String>>()
        };
        for (member, query, joined) in [
            (1, None, &["default"][..]),
            (2, Some("roomId=default"), &["default"]),
            (3, Some("roomIds=game-1,default"), &["game-1", "default"]),
            (4, Some("roomId=game-2&roomId=default"), &["game-2", "default"]),
        ] {
            join_handshake_rooms::<Games, _>(WireFormat::Alepha, MemberId(member), query, None, &AnyRoom, &mut table)
                .unwrap();
            assert_eq!(rooms(&table, member), joined, "{query:?}");
        }
        let refused = join_handshake_rooms::<Games, _>(
            WireFormat::Alepha,
            MemberId(5),
            Some("roomId=lobby"),
            None,
            &AnyRoom,
            &mut table,
        );
        assert_eq!(refused.unwrap_err().reason, "Invalid room id");
    }
}
