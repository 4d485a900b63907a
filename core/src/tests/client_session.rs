//! The client side of a channel ([`crate::client`]) against the real server
//! side ([`crate::dispatch`] over a [`FixedRoomTable`]), on both wires and
//! in both roomwire encodings: whatever one side writes, the other reads
//! as meant. Includes Alepha's client behaviours 86 and 87 (reference §4)
//! and its handshake target (§1.2).
//!
//! The borrowed `Say<'a>` message is the no-alloc path (it runs without any
//! feature); the owned messages at the end need `std`.

use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use crate::alepha::{self, rooms_from_query};
use crate::channel::Channel;
use crate::client::{ClientError, ClientEvent, Opened, Requested, RoomClient, offered_protocols, write_target};
use crate::dispatch::{self, Inbound};
use crate::envelope::{self, ClientEnvelope};
use crate::frame::FrameHeader;
use crate::payload;
use crate::payload::EncodeError;
use crate::room::{FixedRoomTable, MAX_ROOM_ID_LEN, MemberId, RoomId, RoomSet, RoomTable};
use crate::target::{Directory, FrameKey, SeenBits, Target, resolve};
use crate::wire::{PROTOCOL_JSON, PROTOCOL_POSTCARD, PROTOCOL_PROBE, WireFormat};

// ---------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------

/// Both directions. `deny_unknown_fields` proves that a client never hands
/// a message on with the room marker still in it (behaviour 87).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Say<'a> {
    content: &'a str,
}

fn say(content: &str) -> Say<'_> {
    Say { content }
}

/// What the tests need from a channel on the server side.
trait TestChannel: Channel {
    fn content(message: &Self::Out<'_>) -> String;
}

/// The usual channel: default room ids, refuses empty messages.
struct Chat;

impl Channel for Chat {
    const PATH: &'static str = "/ws/chat";
    type In<'a> = Say<'a>;
    type Out<'a> = Say<'a>;

    fn validate(message: &Say<'_>) -> Result<(), &'static str> {
        if message.content.is_empty() { Err("content must not be empty") } else { Ok(()) }
    }
}

impl TestChannel for Chat {
    fn content(message: &Say<'_>) -> String {
        message.content.to_string()
    }
}

/// Stricter than [`Loose`]: lowercase room ids only, no empty messages.
struct Strict;

impl Channel for Strict {
    const PATH: &'static str = "/ws/chat";
    type In<'a> = Say<'a>;
    type Out<'a> = Say<'a>;

    fn validate_room_id(room: &str) -> bool {
        !room.is_empty() && room.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
    }

    fn validate(message: &Say<'_>) -> Result<(), &'static str> {
        Chat::validate(message)
    }
}

impl TestChannel for Strict {
    fn content(message: &Say<'_>) -> String {
        message.content.to_string()
    }
}

/// A client built against a laxer definition of the channel than the
/// server's, so the server's refusals can be exercised.
struct Loose;

impl Channel for Loose {
    const PATH: &'static str = "/ws/chat";
    type In<'a> = Say<'a>;
    type Out<'a> = Say<'a>;
}

// ---------------------------------------------------------------------------
// The server side, as an adapter drives it
// ---------------------------------------------------------------------------

const ME: MemberId = MemberId(1);

/// At most 4 rooms per connection, to provoke `TOO_MANY_ROOMS`.
type Table = FixedRoomTable<8, 4, 4, 4>;

/// What the server did with one client message.
#[derive(Debug, PartialEq)]
enum Served {
    /// The handler ran in `room` with a message of this content.
    Handled {
        room: String,
        content: String,
    },
    /// An answer for the sender.
    Reply(Vec<u8>),
    Ignored,
}

fn serve<S: TestChannel>(format: WireFormat, table: &mut Table, data: &[u8]) -> Served {
    let mut scratch = [0u8; 256];
    let mut out = [0u8; 256];
    match dispatch::handle_message::<S, _>(format, ME, table, &crate::dispatch::AnyRoom, data, &mut scratch, &mut out) {
        Inbound::Message { room, message } => Served::Handled { room: room.to_string(), content: S::content(&message) },
        Inbound::Answer { len, .. } => Served::Reply(out[..len].to_vec()),
        Inbound::Ignored => Served::Ignored,
    }
}

/// The handshake as the server sees it: the target's query, the protocols.
fn admit<S: Channel, C: Channel, const N: usize>(client: &RoomClient<C, N>, table: &mut Table) -> WireFormat {
    let mut target = [0u8; 512];
    let n = client.write_target(&mut target).unwrap();
    let target = core::str::from_utf8(&target[..n]).unwrap();
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    assert_eq!(path, S::PATH);
    let format = WireFormat::negotiate(client.protocols().iter().copied());
    dispatch::join_handshake_rooms::<S, _>(format, ME, query, None, &crate::dispatch::AnyRoom, table).unwrap();
    format
}

/// A server message as the client's connection delivers it: the body of
/// the complete frame `dispatch::encode_frame` writes.
fn push(format: WireFormat, label: Option<&str>, message: &impl Serialize) -> Vec<u8> {
    let mut payload = [0u8; 256];
    let n = payload::encode_payload(format, message, &mut payload).unwrap();
    let mut out = [0u8; 512];
    let range = dispatch::encode_frame(FrameKey { format, label }, &payload[..n], &mut out).unwrap();
    let frame = &out[range];
    let (header, header_len) = FrameHeader::parse(frame).unwrap().unwrap();
    assert_eq!(header.opcode, format.message_kind().opcode());
    assert_eq!(header.payload_len as usize, frame.len() - header_len);
    frame[header_len..].to_vec()
}

/// A client event, written out for comparisons.
fn describe<M: core::fmt::Debug>(event: ClientEvent<'_, M>) -> String {
    let room = |room: Option<RoomId>| room.map_or_else(|| "*".to_string(), |r| r.to_string());
    match event {
        ClientEvent::Joined(room) => format!("joined {room}"),
        ClientEvent::Left(room) => format!("left {room}"),
        ClientEvent::JoinFailed { room, code, text } => format!("join failed {room} {code} {text}"),
        ClientEvent::LeaveFailed { room, code, text } => format!("leave failed {room} {code} {text}"),
        ClientEvent::ServerError { code, text } => format!("error {code:?} {text}"),
        ClientEvent::Message { room: r, message } => format!("message {} {message:?}", room(r)),
        ClientEvent::DecodeFailed { room: r, .. } => format!("decode failed {}", room(r)),
    }
}

/// A client message through the server, and the server's answer (if any)
/// back through the client.
fn round_trip<C: Channel, S: TestChannel, const N: usize>(
    client: &mut RoomClient<C, N>,
    table: &mut Table,
    request: &[u8],
) -> Option<String>
where
    for<'a> C::In<'a>: core::fmt::Debug,
{
    match serve::<S>(client.format(), table, request) {
        Served::Reply(reply) => {
            let mut scratch = [0u8; 256];
            Some(describe(client.handle_message(&reply, &mut scratch).unwrap()))
        }
        Served::Ignored => None,
        handled => panic!("expected a reply, got {handled:?}"),
    }
}

/// Drains `poll_transmit` through the server; returns the client's events.
fn restore<C: Channel, S: TestChannel, const N: usize>(client: &mut RoomClient<C, N>, table: &mut Table) -> Vec<String>
where
    for<'a> C::In<'a>: core::fmt::Debug,
{
    let mut events = Vec::new();
    loop {
        let mut out = [0u8; 128];
        let n = client.poll_transmit(&mut out).unwrap();
        if n == 0 {
            return events;
        }
        events.push(round_trip::<C, S, N>(client, table, &out[..n]).unwrap());
    }
}

fn names<const N: usize>(rooms: &RoomSet<N>) -> Vec<&str> {
    rooms.iter().map(RoomId::as_str).collect()
}

fn server_rooms(table: &Table) -> Vec<String> {
    table.rooms_of(ME).map(|r| r.to_string()).collect()
}

const ROOMWIRE: [(WireFormat, &str); 2] =
    [(WireFormat::Json, PROTOCOL_JSON), (WireFormat::Postcard, PROTOCOL_POSTCARD)];

// ---------------------------------------------------------------------------
// roomwire wire
// ---------------------------------------------------------------------------

/// A server that answers with the first offered subprotocol whatever it is
/// (Node `ws` with no `handleProtocols`, as under Alepha) echoes the probe:
/// the client recognises the Alepha wire at the handshake, and the next
/// connection names its rooms in the query and offers nothing.
#[test]
fn an_echoing_server_is_recognised_as_alepha() {
    for (format, _) in ROOMWIRE {
        let mut client = RoomClient::<Chat, 4>::with_rooms(format, &["a", "b"]).unwrap();
        let first_offered = client.protocols()[0];
        assert_eq!(client.opened(Some(first_offered)), Ok(Opened::Reconnect));
        assert_eq!(client.format(), WireFormat::Alepha);
        assert!(client.is_joined("default"), "the echoing server put the connection in its default room");
        client.closed();
        let mut out = [0u8; 64];
        let n = client.connect_target(&mut out).unwrap();
        assert_eq!(&out[..n], b"/ws/chat?roomIds=a,b");
        assert!(client.protocols().is_empty());
        assert_eq!(client.opened(None), Ok(Opened::Ready));
        assert!(client.is_joined("a") && client.is_joined("b"));
    }
    // A roomwire server never selects the probe: it picks the real offer.
    let client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Postcard, &["a"]).unwrap();
    assert_eq!(WireFormat::negotiate(client.protocols().iter().copied()), WireFormat::Postcard);
    // On the Alepha wire nothing is offered, so a probe answer is foreign.
    let mut alepha = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["a"]).unwrap();
    assert_eq!(alepha.opened(Some(PROTOCOL_PROBE)), Err(ClientError::UnexpectedProtocol));
}

#[test]
fn roomwire_join_ack_leave_ack() {
    for (format, protocol) in ROOMWIRE {
        let mut table = Table::new();
        let mut client = RoomClient::<Chat, 4>::with_rooms(format, &["a", "b"]).unwrap();
        assert_eq!(client.protocols(), [PROTOCOL_PROBE, protocol]);
        assert_eq!(admit::<Chat, _, 4>(&client, &mut table), format);
        assert!(server_rooms(&table).is_empty(), "no room in the target");
        assert_eq!(client.opened(Some(protocol)), Ok(Opened::Ready));
        assert_eq!(client.message_kind(), format.message_kind());

        assert_eq!(restore::<_, Chat, 4>(&mut client, &mut table), ["joined a", "joined b"]);
        assert_eq!(names(client.rooms()), ["a", "b"]);
        assert_eq!(server_rooms(&table), ["a", "b"]);
        assert_eq!(client.pending_requests(), 0);

        let mut out = [0u8; 64];
        let Requested::Sent { reference, len } = client.leave("a", &mut out).unwrap() else { panic!() };
        assert_eq!(reference, 3);
        assert!(client.is_joined("a"), "joined until the server confirms");
        assert_eq!(names(client.wanted()), ["b"]);
        assert_eq!(round_trip::<_, Chat, 4>(&mut client, &mut table, &out[..len]).unwrap(), "left a");
        assert_eq!(names(client.rooms()), ["b"]);
        assert_eq!(server_rooms(&table), ["b"]);

        // Nothing to ask for: leaving a room not joined, joining one joined.
        assert_eq!(client.leave("a", &mut out), Ok(Requested::NotSent));
        assert_eq!(client.join("b", &mut out), Ok(Requested::NotSent));

        let Requested::Sent { reference, len } = client.join("c", &mut out).unwrap() else { panic!() };
        assert_eq!(reference, 4);
        // Asked twice before the answer: one request.
        assert_eq!(client.join("c", &mut out), Ok(Requested::NotSent));
        assert_eq!(client.pending_requests(), 1);
        let mut request = out[..len].to_vec();
        assert_eq!(round_trip::<_, Chat, 4>(&mut client, &mut table, &request).unwrap(), "joined c");
        assert_eq!(names(client.rooms()), ["b", "c"]);

        // A duplicate answer for a finished request is the server's bug.
        if let Served::Reply(ok) = serve::<Chat>(format, &mut table, &request) {
            let mut scratch = [0u8; 64];
            assert_eq!(client.handle_message(&ok, &mut scratch).unwrap_err(), ClientError::UnknownReference(4));
        }
        request.clear();
    }
}

#[test]
fn roomwire_join_refused_by_the_server() {
    for (format, protocol) in ROOMWIRE {
        // The server allows 4 rooms per connection.
        let mut table = Table::new();
        let mut client = RoomClient::<Loose, 8>::with_rooms(format, &["a", "b", "c", "d", "e"]).unwrap();
        admit::<Strict, _, 8>(&client, &mut table);
        client.opened(Some(protocol)).unwrap();
        let events = restore::<_, Strict, 8>(&mut client, &mut table);
        assert_eq!(
            events,
            ["joined a", "joined b", "joined c", "joined d", "join failed e 4002 Too many rooms for this connection"]
        );
        assert_eq!(names(client.rooms()), ["a", "b", "c", "d"]);
        assert_eq!(names(client.wanted()), ["a", "b", "c", "d"], "a refused room is no longer wanted");

        // An id the server's channel refuses (the client's is laxer).
        let mut out = [0u8; 64];
        let mut table = Table::new();
        let mut client = RoomClient::<Loose, 4>::new(format);
        client.opened(Some(protocol)).unwrap();
        let Requested::Sent { len, .. } = client.join("Upper", &mut out).unwrap() else { panic!() };
        assert_eq!(
            round_trip::<_, Strict, 4>(&mut client, &mut table, &out[..len]).unwrap(),
            "join failed Upper 4001 Invalid room id"
        );
        assert!(client.wanted().is_empty() && client.rooms().is_empty());
        assert_eq!(client.pending_requests(), 0);

        // A client built with the server's channel refuses it before sending.
        let mut strict = RoomClient::<Strict, 4>::new(format);
        strict.opened(Some(protocol)).unwrap();
        assert_eq!(strict.join("Upper", &mut out), Err(ClientError::InvalidRoomId));
        assert_eq!(strict.join(&"x".repeat(MAX_ROOM_ID_LEN + 1), &mut out), Err(ClientError::InvalidRoomId));
        assert!(strict.wanted().is_empty());
    }
}

#[test]
fn roomwire_bounds_are_errors() {
    for (format, protocol) in ROOMWIRE {
        let mut out = [0u8; 64];
        let mut client = RoomClient::<Chat, 2>::new(format);
        client.opened(Some(protocol)).unwrap();
        assert!(matches!(client.join("a", &mut out), Ok(Requested::Sent { .. })));
        assert!(matches!(client.join("b", &mut out), Ok(Requested::Sent { .. })));
        assert!(matches!(client.join("c", &mut out), Err(ClientError::TooManyRooms(_))));
        // Two requests in flight fill the queue: a leave must wait.
        assert_eq!(client.leave("a", &mut out), Err(ClientError::TooManyPending { capacity: 2 }));
        assert_eq!(names(client.wanted()), ["a", "b"], "a failed call changes nothing");
        // An undersized buffer changes nothing either.
        let mut client = RoomClient::<Chat, 2>::new(format);
        client.opened(Some(protocol)).unwrap();
        assert!(matches!(client.join("a", &mut [0u8; 2]), Err(ClientError::Encode(EncodeError::InsufficientSize(_)))));
        assert!(client.wanted().is_empty() && client.pending_requests() == 0);
        assert_eq!(client.join("a", &mut out).unwrap(), Requested::Sent { reference: 1, len: client_join_len(format) });
    }
}

fn client_join_len(format: WireFormat) -> usize {
    let mut out = [0u8; 64];
    envelope::encode_client(format, &ClientEnvelope::Join { reference: 1, room: RoomId::new("a").unwrap() }, &mut out)
        .unwrap()
}

#[test]
fn roomwire_send_reaches_the_handler_in_its_room() {
    for (format, protocol) in ROOMWIRE {
        let mut table = Table::new();
        let mut client = RoomClient::<Loose, 4>::with_rooms(format, &["a", "b"]).unwrap();
        let mut out = [0u8; 128];
        assert_eq!(client.send("a", &say("hi"), &mut out), Err(ClientError::NotOpen));
        client.opened(Some(protocol)).unwrap();
        assert_eq!(client.send("a", &say("hi"), &mut out), Err(ClientError::NotJoined), "not confirmed yet");
        restore::<_, Strict, 4>(&mut client, &mut table);

        let n = client.send("b", &say("hello b"), &mut out).unwrap();
        assert_eq!(
            serve::<Strict>(format, &mut table, &out[..n]),
            Served::Handled { room: "b".into(), content: "hello b".into() }
        );
        assert_eq!(client.send("c", &say("x"), &mut out), Err(ClientError::NotJoined));

        // The server refuses what its channel refuses: an error without ref.
        let n = client.send("a", &say(""), &mut out).unwrap();
        let event = round_trip::<_, Strict, 4>(&mut client, &mut table, &out[..n]).unwrap();
        assert!(event.starts_with("error Some(4005) Message validation failed: content must not be empty"), "{event}");
        // A client built with the server's channel refuses it itself.
        let mut strict = RoomClient::<Strict, 4>::with_rooms(format, &["a"]).unwrap();
        strict.opened(Some(protocol)).unwrap();
        restore::<_, Strict, 4>(&mut strict, &mut Table::new());
        assert_eq!(strict.send("a", &say(""), &mut out), Err(ClientError::Invalid("content must not be empty")));

        // A message to a room the server does not have this client in.
        table.leave(ME, "a");
        let n = client.send("a", &say("hi"), &mut out).unwrap();
        assert_eq!(
            round_trip::<_, Strict, 4>(&mut client, &mut table, &out[..n]).unwrap(),
            "error Some(4004) Not a member of that room"
        );
    }
}

#[test]
fn roomwire_pushes_decode_with_their_room() {
    for (format, protocol) in ROOMWIRE {
        let mut client = RoomClient::<Chat, 4>::with_rooms(format, &["a", "b"]).unwrap();
        client.opened(Some(protocol)).unwrap();
        restore::<_, Chat, 4>(&mut client, &mut Table::new());
        let mut scratch = [0u8; 64];
        let frame = push(format, Some("a"), &say("to a"));
        assert_eq!(
            describe(client.handle_message(&frame, &mut scratch).unwrap()),
            r#"message a Say { content: "to a" }"#
        );
        let frame = push(format, None, &say("to all"));
        assert_eq!(
            describe(client.handle_message(&frame, &mut scratch).unwrap()),
            r#"message * Say { content: "to all" }"#
        );
        // Payloads of another shape are reported, never a panic.
        #[derive(Serialize)]
        struct Other {
            n: u32,
        }
        let frame = push(format, Some("b"), &Other { n: 7 });
        assert_eq!(describe(client.handle_message(&frame, &mut scratch).unwrap()), "decode failed b");
        // A room the client did not ask for (one the server put it in, by
        // its admission hook or a join of its own): reported as labelled,
        // how the client learns of it; and after a leave, as before it.
        let frame = push(format, Some("c"), &say("to c"));
        assert_eq!(
            describe(client.handle_message(&frame, &mut scratch).unwrap()),
            r#"message c Say { content: "to c" }"#
        );
        let mut out = [0u8; 64];
        let Requested::Sent { len, .. } = client.leave("a", &mut out).unwrap() else { panic!() };
        assert_eq!(round_trip::<_, Chat, 4>(&mut client, &mut Table::new(), &out[..len]).as_deref(), Some("left a"));
        let frame = push(format, Some("a"), &say("after the leave"));
        assert_eq!(
            describe(client.handle_message(&frame, &mut scratch).unwrap()),
            r#"message a Say { content: "after the leave" }"#
        );
        // Broken envelopes are errors.
        let garbage: &[u8] = if format == WireFormat::Json { b"{\"type\":\"push\"" } else { b"\x07" };
        assert!(matches!(client.handle_message(garbage, &mut scratch), Err(ClientError::Envelope(_))));
    }
}

#[test]
fn roomwire_restores_every_wanted_room_after_a_reconnect() {
    for (format, protocol) in ROOMWIRE {
        let mut out = [0u8; 64];
        let mut client = RoomClient::<Chat, 4>::new(format);
        // Before the first connection: wanted, nothing sent.
        assert_eq!(client.join("a", &mut out), Ok(Requested::NotSent));
        assert_eq!(client.join("b", &mut out), Ok(Requested::NotSent));
        assert_eq!(client.poll_transmit(&mut out), Ok(0), "not open");

        let mut table = Table::new();
        client.opened(Some(protocol)).unwrap();
        assert_eq!(restore::<_, Chat, 4>(&mut client, &mut table), ["joined a", "joined b"]);
        let Requested::Sent { len, .. } = client.leave("a", &mut out).unwrap() else { panic!() };
        round_trip::<_, Chat, 4>(&mut client, &mut table, &out[..len]);
        let Requested::Sent { len, .. } = client.join("c", &mut out).unwrap() else { panic!() };
        round_trip::<_, Chat, 4>(&mut client, &mut table, &out[..len]);
        assert_eq!(names(client.rooms()), ["b", "c"]);

        // The connection drops with a request unanswered.
        assert!(matches!(client.join("d", &mut out), Ok(Requested::Sent { .. })));
        client.closed();
        assert!(client.rooms().is_empty() && !client.is_open());
        assert_eq!(client.pending_requests(), 0);
        assert_eq!(names(client.wanted()), ["b", "c", "d"]);

        // A new connection (a new server-side member) restores them all,
        // with fresh references; a join asked meanwhile is not sent twice.
        let mut table = Table::new();
        client.opened(Some(protocol)).unwrap();
        let first = client.poll_transmit(&mut out).unwrap();
        let first = out[..first].to_vec();
        let Requested::Sent { reference, len } = client.join("e", &mut out).unwrap() else { panic!() };
        assert_eq!(reference, 7);
        let explicit = out[..len].to_vec();
        let mut joins = vec![first];
        loop {
            let n = client.poll_transmit(&mut out).unwrap();
            if n == 0 {
                break;
            }
            joins.push(out[..n].to_vec());
        }
        joins.push(explicit);
        let decoded: Vec<(u32, String)> = joins
            .iter()
            .map(|j| match envelope::decode_client(format, j).unwrap() {
                ClientEnvelope::Join { reference, room } => (reference, room.to_string()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(decoded, [(6, "b".into()), (8, "c".into()), (9, "d".into()), (7, "e".into())]);
        // The server answers in the order it received them.
        for (i, join) in [&joins[0], &joins[3], &joins[1], &joins[2]].into_iter().enumerate() {
            let event = round_trip::<_, Chat, 4>(&mut client, &mut table, join).unwrap();
            assert_eq!(event, format!("joined {}", ["b", "e", "c", "d"][i]));
        }
        assert_eq!(names(client.rooms()), ["b", "e", "c", "d"]);
        assert_eq!(server_rooms(&table), names(client.rooms()));
    }
}

#[test]
fn a_server_without_roomwire_falls_back_to_the_alepha_wire() {
    let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Postcard, &["a", "b"]).unwrap();
    // An Alepha server ignores the subprotocol: no query, so "default".
    let mut table = Table::new();
    let mut target = [0u8; 64];
    let n = client.write_target(&mut target).unwrap();
    dispatch::join_handshake_rooms::<Chat, _>(
        WireFormat::Alepha,
        ME,
        None,
        None,
        &crate::dispatch::AnyRoom,
        &mut table,
    )
    .unwrap();
    assert_eq!(&target[..n], b"/ws/chat");
    assert_eq!(client.opened(None), Ok(Opened::Reconnect));
    assert_eq!(client.format(), WireFormat::Alepha);
    assert_eq!(names(client.rooms()), ["default"]);
    assert_eq!(server_rooms(&table), ["default"]);
    client.closed();
    let n = client.write_target(&mut target).unwrap();
    assert_eq!(&target[..n], b"/ws/chat?roomIds=a,b");
    assert!(client.protocols().is_empty());
    assert_eq!(client.opened(None), Ok(Opened::Ready));
    assert_eq!(names(client.rooms()), ["a", "b"]);
    // A protocol that was not offered.
    assert_eq!(client.opened(Some(PROTOCOL_JSON)), Err(ClientError::UnexpectedProtocol));
    let mut json = RoomClient::<Chat, 4>::new(WireFormat::Json);
    assert_eq!(json.opened(Some(PROTOCOL_POSTCARD)), Err(ClientError::UnexpectedProtocol));
}

// ---------------------------------------------------------------------------
// Alepha wire
// ---------------------------------------------------------------------------

#[test]
fn alepha_target_names_the_rooms() {
    let target = |rooms: &[&str]| {
        let client = RoomClient::<Chat, 8>::with_rooms(WireFormat::Alepha, rooms).unwrap();
        let mut out = [0u8; 512];
        let n = client.write_target(&mut out).unwrap();
        String::from_utf8(out[..n].to_vec()).unwrap()
    };
    assert_eq!(target(&["a", "b"]), "/ws/chat?roomIds=a,b");
    assert_eq!(target(&[]), "/ws/chat");
    assert_eq!(
        target(&["room 1", "caf\u{e9}", "a&b=c", "100%", "x+y"]),
        "/ws/chat?roomIds=room+1,caf%C3%A9,a%26b%3Dc,100%25,x%2By"
    );
    // Ids the comma list would split or trim go one by one.
    assert_eq!(target(&["a,b", "c"]), "/ws/chat?roomId=a%2Cb&roomId=c");
    assert_eq!(target(&[" pad", "c"]), "/ws/chat?roomId=+pad&roomId=c");
    assert_eq!(offered_protocols(WireFormat::Alepha), [] as [&str; 0]);
    assert_eq!(offered_protocols(WireFormat::Json), [PROTOCOL_PROBE, PROTOCOL_JSON]);

    // Too small a buffer: nothing written, the size needed.
    let client = RoomClient::<Chat, 8>::with_rooms(WireFormat::Alepha, &["a", "b"]).unwrap();
    let mut small = [0u8; 10];
    assert_eq!(client.write_target(&mut small).unwrap_err().required, 20);
    assert_eq!(small, [0; 10]);
}

/// Valid server frames of every wire, for mutation.
const SEEDS: [&[u8]; 8] = [
    br#"{"content":"hi","__alephaRoom":"a"}"#,
    br#"{"error":"boom"}"#,
    br#"{"type":"ok","ref":1}"#,
    br#"{"type":"error","ref":2,"code":4002,"text":"full"}"#,
    br#"{"type":"push","room":"a","data":{"content":"hi"}}"#,
    b"\x00\x01",
    b"\x01\x01\x02\xa2\x1f\x04full",
    b"\x02\x01\x01a\x02hi",
];

proptest! {
    /// Whatever the room ids, the server reads back exactly the wanted
    /// rooms, in order, from the target.
    #[test]
    fn alepha_target_round_trips_through_the_server(
        rooms in proptest::collection::vec("[ -~\u{a0}\u{3000}\u{e9}\u{1f600},%+&=#?]{1,16}", 1..6)
    ) {
        let mut wanted = RoomSet::<8>::new();
        for room in &rooms {
            wanted.join(RoomId::new(room).unwrap()).unwrap();
        }
        let mut out = [0u8; 2048];
        let n = write_target::<Chat>(WireFormat::Alepha, wanted.as_slice(), &mut out).unwrap();
        let target = core::str::from_utf8(&out[..n]).unwrap();
        let query = target.strip_prefix("/ws/chat?").unwrap();
        prop_assert!(query.bytes().all(|b| b.is_ascii_alphanumeric() || b"*-._+%,=&".contains(&b)), "{}", query);
        let mut parsed = RoomSet::<8>::new();
        rooms_from_query(Some(query), |_| true, &mut parsed).unwrap();
        prop_assert_eq!(parsed, wanted);
    }

    /// Nothing a server sends makes the client panic, on any wire: random
    /// bytes, and valid frames with one byte changed or cut short.
    #[test]
    fn arbitrary_server_messages_never_panic(
        data in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            (0..SEEDS.len(), any::<usize>(), any::<u8>(), any::<bool>()).prop_map(|(seed, at, byte, cut)| {
                let mut frame = SEEDS[seed].to_vec();
                let at = at % frame.len();
                if cut { frame.truncate(at) } else { frame[at] = byte }
                frame
            }),
        ],
        scratch_len in 0usize..80,
    ) {
        for (format, protocol) in [(WireFormat::Alepha, None), (WireFormat::Json, Some(PROTOCOL_JSON)), (WireFormat::Postcard, Some(PROTOCOL_POSTCARD))] {
            let mut client = RoomClient::<Chat, 2>::with_rooms(format, &["a", "b"]).unwrap();
            client.opened(protocol).unwrap();
            let mut out = [0u8; 64];
            while client.poll_transmit(&mut out).unwrap() > 0 {}
            let mut scratch = vec![0u8; scratch_len];
            let _ = client.handle_message(&data, &mut scratch);
            prop_assert!(client.rooms().len() <= 2);
        }
    }
}

#[test]
fn alepha_session_with_the_server() {
    let mut table = Table::new();
    let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["room-a", "room-b"]).unwrap();
    assert_eq!(admit::<Chat, _, 4>(&client, &mut table), WireFormat::Alepha);
    assert_eq!(server_rooms(&table), ["room-a", "room-b"]);
    assert_eq!(client.opened(None), Ok(Opened::Ready));
    assert_eq!(names(client.rooms()), ["room-a", "room-b"]);
    assert_eq!(client.poll_transmit(&mut [0u8; 64]), Ok(0), "the handshake joined them");

    // The frame of Alepha's browser client, handled in the room it names
    // (not the connection's first).
    let mut out = [0u8; 128];
    let n = client.send("room-b", &say("hi \"b\""), &mut out).unwrap();
    assert_eq!(&out[..n], br#"{"roomId":"room-b","message":{"content":"hi \"b\""}}"#);
    let frame = alepha::parse_client_frame(&out[..n]).unwrap();
    assert_eq!(frame.claimed_room.as_deref(), Some("room-b"));
    let n = client.send("room-b", &say("plain"), &mut out).unwrap();
    assert_eq!(
        serve::<Chat>(WireFormat::Alepha, &mut table, &out[..n]),
        Served::Handled { room: "room-b".into(), content: "plain".into() }
    );
    let n = client.send("room-a", &say("plain"), &mut out).unwrap();
    assert_eq!(
        serve::<Chat>(WireFormat::Alepha, &mut table, &out[..n]),
        Served::Handled { room: "room-a".into(), content: "plain".into() }
    );
    // Alepha's server would handle this one in room-a: refused here.
    assert_eq!(client.send("room-c", &say("x"), &mut out), Err(ClientError::NotJoined));

    // A message the server refuses comes back as an error frame.
    let mut loose = RoomClient::<Loose, 4>::with_rooms(WireFormat::Alepha, &["room-a"]).unwrap();
    loose.opened(None).unwrap();
    let n = loose.send("room-a", &say(""), &mut out).unwrap();
    let event = round_trip::<_, Chat, 4>(&mut loose, &mut table, &out[..n]).unwrap();
    assert_eq!(event, "error None Message validation failed: content must not be empty");
    // Non-JSON is dropped by the server; from the server it is an error.
    assert_eq!(serve::<Chat>(WireFormat::Alepha, &mut table, b"hello"), Served::Ignored);
    assert_eq!(client.handle_message(b"hello", &mut [0u8; 8]).unwrap_err(), ClientError::NotJson);
}

/// A channel whose messages can be falsy in JavaScript.
struct Counts;

impl Channel for Counts {
    const PATH: &'static str = "/ws/counts";
    type In<'a> = Option<u32>;
    type Out<'a> = Option<u32>;
}

#[test]
fn falsy_messages_are_refused_on_the_alepha_wire() {
    let mut client = RoomClient::<Counts, 4>::with_rooms(WireFormat::Alepha, &["a"]).unwrap();
    client.opened(None).unwrap();
    let mut out = [0u8; 64];
    // `None` is `null`, `Some(0)` is `0`: an Alepha server (and this one)
    // would take such a `message` for absent and read the whole frame.
    let frame = br#"{"roomId":"a","message":0}"#;
    assert_eq!(alepha::parse_client_frame(frame).unwrap().message, frame);
    for falsy in [None, Some(0)] {
        assert_eq!(client.send("a", &falsy, &mut out), Err(ClientError::FalsyOnAlepha), "{falsy:?}");
    }
    let n = client.send("a", &Some(7), &mut out).unwrap();
    assert_eq!(&out[..n], br#"{"roomId":"a","message":7}"#);
    for falsy in ["null", "0", "-0.0", "false", "\"\"", "0e3", " 0 "] {
        assert_eq!(client.send_encoded("a", falsy.as_bytes(), &mut out), Err(ClientError::FalsyOnAlepha), "{falsy}");
    }
    for truthy in ["7", "\"0\"", "[]", "{}", "true", "0.5"] {
        assert!(client.send_encoded("a", truthy.as_bytes(), &mut out).is_ok(), "{truthy}");
    }
}

/// A directory of members 1 and 2, for `target::resolve`.
struct Two;

impl Directory for Two {
    fn user_of(&self, _: MemberId) -> Option<&str> {
        None
    }
    fn for_each_connection_of_user(&self, _: &str, _: impl FnMut(MemberId)) {}
    fn for_each_connection(&self, mut f: impl FnMut(MemberId)) {
        f(MemberId(1));
        f(MemberId(2));
    }
    fn contains(&self, m: MemberId) -> bool {
        m.0 == 1 || m.0 == 2
    }
}

/// The frame each member receives for an emit to `target`.
fn emit(table: &Table, target: &Target<'_>, message: &Say<'_>) -> Vec<(MemberId, Vec<u8>)> {
    let mut frames = Vec::new();
    resolve(target, table, &Two, &mut SeenBits::<1>::new(), |member, label| {
        frames.push((member, push(WireFormat::Alepha, label, message)));
    });
    frames
}

#[test]
fn b86_a_push_labelled_room_a_is_for_room_a_only() {
    // One socket in room-a and room-b (`?roomIds=room-a,room-b`), another
    // in room-b only.
    let mut table = Table::new();
    let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["room-a", "room-b"]).unwrap();
    admit::<Chat, _, 4>(&client, &mut table);
    dispatch::join_handshake_rooms::<Chat, _>(
        WireFormat::Alepha,
        MemberId(2),
        Some("roomIds=room-b"),
        None,
        &crate::dispatch::AnyRoom,
        &mut table,
    )
    .unwrap();
    client.opened(None).unwrap();

    let frames = emit(&table, &Target { rooms: &["room-a"], ..Target::default() }, &say("for a"));
    assert_eq!(frames.len(), 1, "member 2 is not in room-a");
    let (member, frame) = &frames[0];
    assert_eq!(*member, ME);
    let mut scratch = [0u8; 128];
    match client.handle_message(frame, &mut scratch).unwrap() {
        ClientEvent::Message { room, message } => {
            assert_eq!(room.as_deref(), Some("room-a"), "reported for room-a, not room-b nor every room");
            assert_eq!(message, say("for a"));
        }
        other => panic!("{other:?}"),
    }

    // An emit to both rooms reaches the socket once, labelled with the
    // first targeted room; an unlabelled emit is for every room.
    let frames = emit(&table, &Target { rooms: &["room-b", "room-a"], ..Target::default() }, &say("both"));
    let mine: Vec<_> = frames.iter().filter(|(m, _)| *m == ME).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        describe(client.handle_message(&mine[0].1, &mut scratch).unwrap()),
        r#"message room-b Say { content: "both" }"#
    );
    let frames = emit(&table, &Target::default(), &say("all"));
    assert_eq!(frames.len(), 2);
    assert_eq!(
        describe(client.handle_message(&frames[0].1, &mut scratch).unwrap()),
        r#"message * Say { content: "all" }"#
    );
}

#[test]
fn b87_the_message_has_no_room_marker() {
    let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["room-a"]).unwrap();
    client.opened(None).unwrap();
    let frame = push(WireFormat::Alepha, Some("room-a"), &say("hello"));
    assert_eq!(frame, br#"{"content":"hello","__alephaRoom":"room-a"}"#);
    // `Say` denies unknown fields: the marker would not decode.
    assert!(payload::decode_payload::<Say<'_>>(WireFormat::Alepha, &frame, &mut [0u8; 64]).is_err());
    let mut scratch = [0u8; 64];
    match client.handle_message(&frame, &mut scratch).unwrap() {
        ClientEvent::Message { room, message } => {
            assert_eq!(room.as_deref(), Some("room-a"));
            assert_eq!(message, say("hello"));
        }
        other => panic!("{other:?}"),
    }
    // The marker anywhere, and with escapes in its name.
    let frame = br#"{ "\u005f_alephaRoom" : "room-a" , "content" : "x" }"#;
    let event = client.handle_message(frame, &mut scratch).unwrap();
    assert_eq!(describe(event), r#"message room-a Say { content: "x" }"#);
}

#[test]
fn alepha_frames_the_client_refuses_or_reports() {
    let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["a"]).unwrap();
    client.opened(None).unwrap();
    let mut scratch = [0u8; 64];
    let mut event = |frame: &[u8]| describe(client.handle_message(frame, &mut scratch).unwrap());
    // Error frames: exactly one member, `error`, a string.
    assert_eq!(event(br#"{"error":"handler \"boom\""}"#), r#"error None handler "boom""#);
    assert_eq!(event(br#"{"error":5}"#), "decode failed *");
    // Labelled, an `error` member is a message's (a server error frame
    // never carries a label).
    assert_eq!(event(br#"{"error":"x","__alephaRoom":"a"}"#), "decode failed a");
    assert_eq!(event(br#"{"content":"hi","error":"x"}"#), "decode failed *");
    assert_eq!(event(b"[1,2]"), "decode failed *");
    // A label that is not a room id.
    let mut scratch = [0u8; 128];
    for bad in [&br#"{"content":"x","__alephaRoom":5}"#[..], br#"{"content":"x","__alephaRoom":""}"#] {
        assert_eq!(client.handle_message(bad, &mut scratch).unwrap_err(), ClientError::InvalidLabel);
    }
    // Scratch: the frame without marker must fit.
    let frame = br#"{"content":"hi","__alephaRoom":"a"}"#;
    let mut small = [0u8; 15];
    assert!(matches!(client.handle_message(frame, &mut small), Err(ClientError::Scratch(e)) if e.required == 16));
    let mut exact = [0u8; 16];
    assert_eq!(describe(client.handle_message(frame, &mut exact).unwrap()), r#"message a Say { content: "hi" }"#);
    // An unlabelled frame needs none.
    assert_eq!(
        describe(client.handle_message(br#"{"content":"hi"}"#, &mut []).unwrap()),
        r#"message * Say { content: "hi" }"#
    );
    // A label for a room the connection was not opened with (an admission
    // hook chose the rooms, or the server joined it to one): reported.
    let frame = br#"{"content":"hi","__alephaRoom":"b"}"#;
    assert_eq!(describe(client.handle_message(frame, &mut scratch).unwrap()), r#"message b Say { content: "hi" }"#);
}

#[test]
fn alepha_room_changes_mean_a_reconnect() {
    let mut out = [0u8; 64];
    let mut table = Table::new();
    let mut client = RoomClient::<Chat, 4>::with_rooms(WireFormat::Alepha, &["a"]).unwrap();
    admit::<Chat, _, 4>(&client, &mut table);
    client.opened(None).unwrap();
    assert_eq!(client.join("a", &mut out), Ok(Requested::NotSent));
    assert_eq!(client.join("b", &mut out), Ok(Requested::Reconnect));
    assert_eq!(names(client.rooms()), ["a"], "the connection's rooms did not change");
    assert_eq!(client.send("b", &say("x"), &mut out), Err(ClientError::NotJoined));
    assert_eq!(client.leave("b", &mut out), Ok(Requested::NotSent), "undone");
    assert_eq!(client.join("b", &mut out), Ok(Requested::Reconnect));
    assert_eq!(client.leave("a", &mut out), Ok(Requested::Reconnect));
    assert_eq!(client.leave("zz", &mut out), Ok(Requested::Reconnect), "still needed");
    assert_eq!(client.join("c", &mut out), Ok(Requested::Reconnect));

    // Reconnect: the new target, the new rooms.
    client.closed();
    table.leave_all(ME);
    assert_eq!(admit::<Chat, _, 4>(&client, &mut table), WireFormat::Alepha);
    assert_eq!(server_rooms(&table), ["b", "c"]);
    client.opened(None).unwrap();
    assert_eq!(names(client.rooms()), ["b", "c"]);

    // No room wanted: the server's "default", as Alepha's.
    let mut client = RoomClient::<Chat, 4>::new(WireFormat::Alepha);
    let mut table = Table::new();
    admit::<Chat, _, 4>(&client, &mut table);
    client.opened(None).unwrap();
    assert_eq!(names(client.rooms()), server_rooms(&table));
    assert_eq!(names(client.rooms()), ["default"]);
    let n = client.send("default", &say("hi"), &mut out).unwrap();
    assert_eq!(
        serve::<Chat>(WireFormat::Alepha, &mut table, &out[..n]),
        Served::Handled { room: "default".into(), content: "hi".into() }
    );
}

// ---------------------------------------------------------------------------
// Owned messages (std)
// ---------------------------------------------------------------------------

#[cfg(feature = "std")]
mod owned {
    use super::*;

    /// Server → client: an externally tagged enum (postcard can decode
    /// it), with owned strings that may hold escapes.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase", deny_unknown_fields)]
    enum News {
        Append { content: String, username: String },
        System { message: String },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Post {
        content: String,
        tags: Vec<String>,
    }

    struct Feed;

    impl Channel for Feed {
        const PATH: &'static str = "/ws/feed";
        type In<'a> = News;
        type Out<'a> = Post;
    }

    impl TestChannel for Feed {
        fn content(message: &Post) -> String {
            format!("{}|{}", message.content, message.tags.join(","))
        }
    }

    #[test]
    fn owned_messages_on_every_wire() {
        let post = Post { content: "line\n\"quoted\" \u{e9}".into(), tags: vec!["a".into(), "b c".into()] };
        let news = [
            News::Append { content: "tab\there".into(), username: "ws-1".into() },
            News::System { message: "\u{1f600} \\ done".into() },
        ];
        for (format, protocol) in [
            (WireFormat::Alepha, None),
            (WireFormat::Json, Some(PROTOCOL_JSON)),
            (WireFormat::Postcard, Some(PROTOCOL_POSTCARD)),
        ] {
            let mut table = Table::new();
            let mut client = RoomClient::<Feed, 4>::with_rooms(format, &["feed", "other feed"]).unwrap();
            let mut target = [0u8; 64];
            let n = client.write_target(&mut target).unwrap();
            if format == WireFormat::Alepha {
                assert_eq!(&target[..n], b"/ws/feed?roomIds=feed,other+feed");
            }
            admit::<Feed, _, 4>(&client, &mut table);
            client.opened(protocol).unwrap();
            restore::<_, Feed, 4>(&mut client, &mut table);
            assert_eq!(server_rooms(&table), ["feed", "other feed"]);

            let mut out = [0u8; 256];
            let n = client.send("other feed", &post, &mut out).unwrap();
            assert_eq!(
                serve::<Feed>(format, &mut table, &out[..n]),
                Served::Handled { room: "other feed".into(), content: Feed::content(&post) }
            );

            let mut scratch = [0u8; 256];
            for (label, message) in [(Some("feed"), &news[0]), (None, &news[1])] {
                let frame = push(format, label, message);
                match client.handle_message(&frame, &mut scratch).unwrap() {
                    ClientEvent::Message { room, message: got } => {
                        assert_eq!(room.as_deref(), label);
                        assert_eq!(&got, message);
                    }
                    other => panic!("{format:?}: {other:?}"),
                }
            }
        }
    }
}
