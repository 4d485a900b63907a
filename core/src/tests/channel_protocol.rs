//! Alepha's protocol-layer behaviours (reference §4: 2–4, 90, 99–113) and
//! the roomwire wire, on an in-memory hub: real client and server
//! `Connection`s joined by the pair harness, the server side doing exactly
//! what an adapter does with `dispatch` and `target`.

use std::string::String;
use std::vec::Vec;

use serde::{Deserialize, Serialize};

use super::pair::{Pair, Seen};
use crate::dispatch::{self, Inbound};
use crate::envelope::{self, ClientEnvelope};
use crate::payload;
use crate::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
use crate::target::{Directory, FrameKey, SeenBits, Target, resolve};
use crate::wire::{PROTOCOL_JSON, PROTOCOL_POSTCARD, WireFormat};
use crate::{CloseCode, Config, MessageKind};

/// Client → server (Alepha's `out`).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatOut<'a> {
    pub content: &'a str,
}

/// Server → client (Alepha's `in`): a `t.union` tagged by `type`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChatIn<'a> {
    Append { content: &'a str, username: &'a str },
    System { message: &'a str },
}

crate::channel! {
    /// The seed's chat channel.
    pub struct Chat {
        path: "/ws/chat",
        in: ChatIn<'a>,
        out: ChatOut<'a>,
    }
}

struct Member {
    pair: Pair,
    format: WireFormat,
    user: Option<String>,
    open: bool,
}

/// What the handler decided for one message (Alepha's `reply` options).
#[derive(Clone, Default)]
struct ReplyOptions {
    room: Option<String>,
    except_self: bool,
}

/// The server: one room table, the members, and counters that prove frames
/// are encoded per (format, label) and not per recipient.
struct Hub {
    table: FixedRoomTable<16, 16, 16, 16>,
    members: Vec<Member>,
    handled: Vec<(usize, String, String)>,
    encodes: usize,
    reply: ReplyOptions,
}

impl Directory for Hub {
    fn user_of(&self, member: MemberId) -> Option<&str> {
        self.members.get(member.0 as usize).and_then(|m| m.user.as_deref())
    }
    fn for_each_connection_of_user(&self, user: &str, mut f: impl FnMut(MemberId)) {
        for (i, m) in self.members.iter().enumerate() {
            if m.open && m.user.as_deref() == Some(user) {
                f(MemberId(i as u32));
            }
        }
    }
    fn for_each_connection(&self, mut f: impl FnMut(MemberId)) {
        for (i, m) in self.members.iter().enumerate() {
            if m.open {
                f(MemberId(i as u32));
            }
        }
    }
    fn contains(&self, member: MemberId) -> bool {
        self.members.get(member.0 as usize).is_some_and(|m| m.open)
    }
}

impl Hub {
    fn new() -> Self {
        Self {
            table: FixedRoomTable::new(),
            members: Vec::new(),
            handled: Vec::new(),
            encodes: 0,
            reply: ReplyOptions::default(),
        }
    }

    /// Connect a client: Alepha wire with `query`, or the roomwire wire
    /// when `protocol` is given.
    fn connect(&mut self, query: &str, protocol: Option<&str>, user: Option<&str>) -> usize {
        let mut pair = Pair::new(Config::default(), 7);
        let protocols: Vec<&str> = protocol.into_iter().collect();
        pair.connect_with(&protocols);
        let format = WireFormat::negotiate(protocols.iter().copied());
        let id = self.members.len();
        let query = (!query.is_empty()).then_some(query);
        dispatch::join_handshake_rooms::<Chat, _>(
            format,
            MemberId(id as u32),
            query,
            None,
            &crate::dispatch::AnyRoom,
            &mut self.table,
        )
        .unwrap();
        self.members.push(Member { pair, format, user: user.map(String::from), open: true });
        id
    }

    fn disconnect(&mut self, id: usize) {
        self.members[id].open = false;
        self.table.leave_all(MemberId(id as u32));
    }

    /// Client `id` sends a raw text (or binary) message; the server handles it.
    fn client_sends(&mut self, id: usize, kind: MessageKind, data: &[u8]) {
        self.members[id].pair.client_send(kind, data);
        self.run();
    }

    /// Deliver everything, handle every message the servers received.
    fn run(&mut self) {
        for _ in 0..100 {
            let mut work = Vec::new();
            for (i, m) in self.members.iter_mut().enumerate() {
                m.pair.drive();
                for seen in m.pair.server_in.events.drain(..) {
                    match seen {
                        Seen::Text(t) => work.push((i, t.into_bytes())),
                        Seen::Binary(b) => work.push((i, b)),
                        other => panic!("unexpected server event {other:?}"),
                    }
                }
            }
            if work.is_empty() {
                return;
            }
            for (i, data) in work {
                self.server_handles(i, &data);
            }
        }
        panic!("hub never went idle");
    }

    /// The adapter's job for one message: dispatch, then the chat handler
    /// (reply `append` with username = user id or connection id).
    fn server_handles(&mut self, id: usize, data: &[u8]) {
        let format = self.members[id].format;
        let mut scratch = [0u8; 256];
        let mut out = [0u8; 512];
        let inbound = dispatch::handle_message::<Chat, _>(
            format,
            MemberId(id as u32),
            &mut self.table,
            &crate::dispatch::AnyRoom,
            data,
            &mut scratch,
            &mut out,
        );
        match inbound {
            Inbound::Message { room, message } => {
                self.handled.push((id, String::from(room.as_str()), String::from(message.content)));
                let username = self.members[id].user.clone().unwrap_or_else(|| std::format!("ws-{id}"));
                let content = String::from(message.content);
                let reply = ChatIn::Append { content: &content, username: &username };
                let options = self.reply.clone();
                let mut one = [""];
                let target = Target::reply(
                    &mut one,
                    MemberId(id as u32),
                    room.as_str(),
                    options.room.as_deref(),
                    options.except_self,
                );
                self.emit(&target, &reply);
            }
            Inbound::Answer { len, .. } => {
                let frame = out[..len].to_vec();
                let m = &mut self.members[id];
                let mut buf = std::vec![0u8; frame.len() + 14];
                let n = m.pair.server.send_fragment(format.message_kind(), &frame, true, &mut buf).unwrap();
                m.pair.to_client.extend_from_slice(&buf[..n]);
            }
            Inbound::Ignored => {}
        }
    }

    /// `emit`: resolve, encode once per (format, label), queue raw frames.
    fn emit(&mut self, target: &Target<'_>, message: &ChatIn<'_>) {
        let mut json = [0u8; 512];
        let json_len = payload::encode_payload(WireFormat::Json, message, &mut json).unwrap();
        let mut postcard = [0u8; 512];
        let postcard_len = payload::encode_payload(WireFormat::Postcard, message, &mut postcard).unwrap();
        let mut deliveries: Vec<(MemberId, Option<String>)> = Vec::new();
        resolve(target, &self.table, &*self, &mut SeenBits::<1>::new(), |m, label| {
            deliveries.push((m, label.map(String::from)))
        });
        let mut frames: Vec<(WireFormat, Option<String>, Vec<u8>)> = Vec::new();
        for (member, label) in deliveries {
            let format = self.members[member.0 as usize].format;
            let frame = match frames.iter().find(|(f, l, _)| *f == format && *l == label) {
                Some((_, _, frame)) => frame.clone(),
                None => {
                    let payload =
                        if format == WireFormat::Postcard { &postcard[..postcard_len] } else { &json[..json_len] };
                    let mut out = [0u8; 600];
                    let range = dispatch::encode_frame(FrameKey { format, label: label.as_deref() }, payload, &mut out)
                        .unwrap();
                    self.encodes += 1;
                    frames.push((format, label.clone(), out[range.clone()].to_vec()));
                    out[range].to_vec()
                }
            };
            self.members[member.0 as usize].pair.to_client.extend(frame);
        }
        self.run();
    }

    /// Everything client `id` received, as text (postcard shown as hex).
    fn inbox(&mut self, id: usize) -> Vec<String> {
        self.members[id].pair.drive();
        self.members[id]
            .pair
            .client_in
            .events
            .drain(..)
            .map(|seen| match seen {
                Seen::Text(t) => t,
                Seen::Binary(b) => b.iter().map(|x| std::format!("{x:02x}")).collect(),
                other => std::format!("{other:?}"),
            })
            .collect()
    }

    fn rooms_of(&self, id: usize) -> Vec<&str> {
        self.table.rooms_of(MemberId(id as u32)).map(|r| r.as_str()).collect()
    }
}

fn alepha_frame(room: &str, content: &str) -> Vec<u8> {
    std::format!(r#"{{"roomId":"{room}","message":{{"content":"{content}"}}}}"#).into_bytes()
}

#[test]
fn b99_to_101_rooms_come_from_the_handshake_query() {
    let mut hub = Hub::new();
    let lobby = hub.connect("roomId=lobby", None, None);
    let none = hub.connect("", None, None);
    let abc = hub.connect("roomIds=a,b,c", None, None);
    let mixed = hub.connect("roomId=x&roomIds=%20a,,b&roomId=y", None, None);
    assert_eq!(hub.rooms_of(lobby), ["lobby"]);
    assert_eq!(hub.rooms_of(none), ["default"]);
    assert_eq!(hub.rooms_of(abc), ["a", "b", "c"]);
    assert_eq!(hub.rooms_of(mixed), ["x", "y", "a", "b"]);
}

#[test]
fn b102_closing_removes_the_connection_from_its_rooms() {
    let mut hub = Hub::new();
    let a = hub.connect("roomId=lobby", None, None);
    let b = hub.connect("roomId=lobby", None, None);
    hub.disconnect(a);
    assert_eq!(hub.table.members("lobby"), [MemberId(b as u32)]);
    hub.disconnect(b);
    assert_eq!(hub.table.room_count(), 0);
}

#[test]
fn b2_reply_except_self_reaches_the_others_once() {
    let mut hub = Hub::new();
    hub.reply.except_self = true;
    let c1 = hub.connect("roomId=room-1", None, None);
    let c2 = hub.connect("roomId=room-1", None, None);
    hub.client_sends(c1, MessageKind::Text, &alepha_frame("room-1", "Hello from client 1!"));
    assert_eq!(hub.inbox(c1), Vec::<String>::new());
    assert_eq!(
        hub.inbox(c2),
        [r#"{"type":"append","content":"Hello from client 1!","username":"ws-0","__alephaRoom":"room-1"}"#]
    );
}

#[test]
fn b103_handler_sees_room_and_message() {
    let mut hub = Hub::new();
    let c = hub.connect("roomId=lobby", None, None);
    hub.client_sends(c, MessageKind::Text, br#"{"content":"hello"}"#);
    assert_eq!(hub.handled, [(c, "lobby".into(), "hello".into())]);
}

#[test]
fn b90_a_frame_naming_an_unjoined_room_is_handled_in_the_first_room() {
    let mut hub = Hub::new();
    let spy = hub.connect("roomIds=a,b", None, None);
    let victim = hub.connect("roomId=secret", None, None);
    let neighbour = hub.connect("roomId=a", None, None);
    hub.client_sends(spy, MessageKind::Text, &alepha_frame("secret", "sneaky"));
    assert_eq!(hub.handled, [(spy, "a".into(), "sneaky".into())]);
    assert!(hub.inbox(victim).is_empty(), "delivered into a room the sender never joined");
    assert_eq!(hub.inbox(neighbour).len(), 1);
    // A joined room named in the frame is honoured.
    hub.client_sends(spy, MessageKind::Text, &alepha_frame("b", "ok"));
    assert_eq!(hub.handled[1], (spy, "b".into(), "ok".into()));
}

#[test]
fn b104_b105_invalid_messages_answer_an_error_and_non_json_is_dropped() {
    let mut hub = Hub::new();
    let c = hub.connect("roomId=lobby", None, None);
    let other = hub.connect("roomId=lobby", None, None);
    hub.client_sends(c, MessageKind::Text, br#"{"message":{"content":42}}"#);
    let inbox = hub.inbox(c);
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].starts_with(r#"{"error":"Message validation failed: "#), "{inbox:?}");
    hub.client_sends(c, MessageKind::Text, b"not json at all");
    assert!(hub.inbox(c).is_empty());
    assert!(hub.handled.is_empty());
    assert!(hub.inbox(other).is_empty(), "errors go to the sender only");
    // The connection stays open and usable.
    assert_eq!(hub.members[c].pair.server.state(), crate::State::Open);
    hub.client_sends(c, MessageKind::Text, br#"{"content":"fine"}"#);
    assert_eq!(hub.handled.len(), 1);
}

fn three_rooms() -> (Hub, [usize; 4]) {
    let mut hub = Hub::new();
    let a1 = hub.connect("roomId=a", None, None);
    let a2 = hub.connect("roomId=a", None, Some("alice"));
    let b = hub.connect("roomId=b", None, Some("bob"));
    let c = hub.connect("roomId=c", None, Some("alice"));
    (hub, [a1, a2, b, c])
}

fn system(text: &str) -> ChatIn<'_> {
    ChatIn::System { message: text }
}

fn received(hub: &mut Hub, ids: &[usize]) -> Vec<usize> {
    ids.iter().map(|&id| hub.inbox(id).len()).collect()
}

#[test]
fn b106_channel_wide_emit_reaches_every_room_unlabelled() {
    let (mut hub, ids) = three_rooms();
    hub.emit(&Target::default(), &system("global"));
    for id in ids {
        assert_eq!(hub.inbox(id), [r#"{"type":"system","message":"global"}"#]);
    }
}

#[test]
fn b3_b4_b107_b108_room_emits_reach_exactly_those_rooms() {
    let (mut hub, [a1, a2, b, c]) = three_rooms();
    hub.emit(&Target { rooms: &["a"], ..Target::default() }, &system("to a"));
    assert_eq!(received(&mut hub, &[a1, a2, b, c]), [1, 1, 0, 0]);
    hub.emit(&Target { rooms: &["a", "c"], ..Target::default() }, &system("to a and c"));
    assert_eq!(received(&mut hub, &[a1, a2, b, c]), [1, 1, 0, 1]);
}

#[test]
fn b109_b110_connection_and_user_targeting_and_exclusions() {
    let (mut hub, [a1, a2, b, c]) = three_rooms();
    let except = [MemberId(a1 as u32)];
    hub.emit(&Target { rooms: &["a"], except_connections: &except, ..Target::default() }, &system("x"));
    assert_eq!(received(&mut hub, &[a1, a2, b, c]), [0, 1, 0, 0]);
    let only = [MemberId(b as u32)];
    hub.emit(&Target { connections: &only, ..Target::default() }, &system("direct"));
    assert_eq!(hub.inbox(b), [r#"{"type":"system","message":"direct"}"#], "connection targets are unlabelled");
    hub.emit(&Target { users: &["alice"], ..Target::default() }, &system("to alice"));
    assert_eq!(received(&mut hub, &[a1, a2, b, c]), [0, 1, 0, 1]);
    hub.emit(&Target { rooms: &["a", "b", "c"], except_users: &["alice"], ..Target::default() }, &system("not alice"));
    assert_eq!(received(&mut hub, &[a1, a2, b, c]), [1, 0, 1, 0]);
}

#[test]
fn b111_b112_b113_reply_targets() {
    let mut hub = Hub::new();
    let a1 = hub.connect("roomId=room-a", None, None);
    let a2 = hub.connect("roomId=room-a", None, None);
    let b1 = hub.connect("roomId=room-b", None, None);
    // 111: without exceptSelf the sender gets its own reply.
    hub.client_sends(a1, MessageKind::Text, br#"{"content":"1"}"#);
    assert_eq!(received(&mut hub, &[a1, a2, b1]), [1, 1, 0]);
    // 112: exceptSelf.
    hub.reply.except_self = true;
    hub.client_sends(a1, MessageKind::Text, br#"{"content":"2"}"#);
    assert_eq!(received(&mut hub, &[a1, a2, b1]), [0, 1, 0]);
    // 113: reply to another room, one the sender never joined.
    hub.reply = ReplyOptions { room: Some("room-b".into()), except_self: false };
    hub.client_sends(a1, MessageKind::Text, br#"{"content":"3"}"#);
    assert_eq!(hub.inbox(b1), [r#"{"type":"append","content":"3","username":"ws-0","__alephaRoom":"room-b"}"#]);
    assert_eq!(received(&mut hub, &[a1, a2]), [0, 0]);
}

#[test]
fn first_targeted_room_labels_and_frames_are_encoded_once_per_label() {
    let mut hub = Hub::new();
    let both = hub.connect("roomIds=x,y", None, None);
    let mut ys = Vec::new();
    for _ in 0..5 {
        ys.push(hub.connect("roomId=y", None, None));
    }
    hub.emit(&Target { rooms: &["y", "x"], ..Target::default() }, &system("hi"));
    // Labelled with the first targeted room it is in: y, not x.
    assert_eq!(hub.inbox(both), [r#"{"type":"system","message":"hi","__alephaRoom":"y"}"#]);
    for id in ys {
        assert_eq!(hub.inbox(id).len(), 1);
    }
    assert_eq!(hub.encodes, 1, "six recipients, one (format, label): one encode");
}

#[test]
fn roomwire_wire_joins_leaves_and_pushes_in_both_encodings() {
    for (protocol, format) in [(PROTOCOL_JSON, WireFormat::Json), (PROTOCOL_POSTCARD, WireFormat::Postcard)] {
        let mut hub = Hub::new();
        let alepha = hub.connect("roomId=lobby", None, None);
        let rw = hub.connect("", Some(protocol), None);
        assert_eq!(hub.members[rw].format, format);
        assert!(hub.rooms_of(rw).is_empty(), "the roomwire wire starts in no room");
        let send = |hub: &mut Hub, envelope: ClientEnvelope<'_>| {
            let mut out = [0u8; 256];
            let n = envelope::encode_client(format, &envelope, &mut out).unwrap();
            hub.client_sends(rw, format.message_kind(), &out[..n]);
        };
        let lobby = RoomId::new("lobby").unwrap();
        send(&mut hub, ClientEnvelope::Join { reference: 1, room: lobby.clone() });
        send(&mut hub, ClientEnvelope::Join { reference: 2, room: lobby.clone() });
        assert_eq!(hub.rooms_of(rw), ["lobby"], "a duplicate join is idempotent");
        let acks = hub.inbox(rw);
        assert_eq!(acks.len(), 2);
        // A message in the joined room reaches the Alepha client, labelled.
        let mut payload = [0u8; 64];
        let n = payload::encode_payload(format, &ChatOut { content: "from rw" }, &mut payload).unwrap();
        send(&mut hub, ClientEnvelope::Message { room: lobby.clone(), payload: &payload[..n] });
        assert_eq!(hub.handled.last().unwrap(), &(rw, "lobby".into(), "from rw".into()));
        assert_eq!(
            hub.inbox(alepha),
            [r#"{"type":"append","content":"from rw","username":"ws-1","__alephaRoom":"lobby"}"#]
        );
        // The push to the roomwire client decodes back to the typed message.
        let pushes = hub.inbox(rw);
        let expected = match format {
            WireFormat::Json => {
                r#"{"type":"push","room":"lobby","data":{"type":"append","content":"from rw","username":"ws-1"}}"#
                    .into()
            }
            // 02 push, 01 05 "lobby", then the postcard payload. serde writes
            // an internally tagged enum as a struct whose first field is the
            // tag, so postcard carries "append" as a string (06 "append"),
            // then "from rw", "ws-1". (Postcard cannot *decode* such enums:
            // it is not self-describing. See channel.rs.)
            _ => String::from("0201056c6f62627906617070656e640766726f6d2072770477732d31"),
        };
        assert_eq!(pushes, [expected]);
        // A message to a room not joined answers 4004; leave answers ok even twice.
        send(&mut hub, ClientEnvelope::Message { room: RoomId::new("elsewhere").unwrap(), payload: &payload[..n] });
        assert_eq!(hub.inbox(rw).len(), 1);
        send(&mut hub, ClientEnvelope::Leave { reference: 3, room: lobby.clone() });
        send(&mut hub, ClientEnvelope::Leave { reference: 4, room: lobby.clone() });
        assert_eq!(hub.inbox(rw).len(), 2);
        assert!(hub.rooms_of(rw).is_empty());
        // Malformed envelopes answer an error and keep the connection.
        let garbage: &[u8] = if format == WireFormat::Json { br#"{"type":"#.as_slice() } else { b"\xff\xff garbage" };
        hub.client_sends(rw, format.message_kind(), garbage);
        assert_eq!(hub.inbox(rw).len(), 1);
        assert_eq!(hub.members[rw].pair.server.state(), crate::State::Open);
        if format == WireFormat::Json {
            assert_eq!(acks, [r#"{"type":"ok","ref":1}"#, r#"{"type":"ok","ref":2}"#]);
        }
    }
}

#[test]
fn too_many_rooms_in_the_query_is_refused_with_1008() {
    let mut table = FixedRoomTable::<4, 4, 2, 2>::new();
    let refusal = dispatch::join_handshake_rooms::<Chat, _>(
        WireFormat::Alepha,
        MemberId(0),
        Some("roomIds=a,b,c"),
        None,
        &crate::dispatch::AnyRoom,
        &mut table,
    )
    .unwrap_err();
    assert_eq!(refusal.code, CloseCode::Policy);
    assert_eq!(table.room_count(), 0, "a refused connection holds no room");
}

/// A server that shares its table behind a lock holds it for membership
/// steps only: a client's message is decoded, and the application's room
/// gate asked, outside every step, on both wires and at the handshake.
#[test]
fn messages_are_decoded_and_gates_asked_outside_the_table_step() {
    use crate::room::TableAccess;
    use core::cell::Cell;

    std::thread_local! { static IN_STEP: Cell<bool> = const { Cell::new(false) }; }
    fn outside() -> bool {
        !IN_STEP.with(Cell::get)
    }
    /// Counts the steps; flags the time inside one.
    struct Watched<'a>(&'a mut FixedRoomTable<8, 4, 4, 4>, usize);
    impl TableAccess for &mut Watched<'_> {
        type Table = FixedRoomTable<8, 4, 4, 4>;
        fn with<R>(&mut self, step: impl FnOnce(&mut Self::Table) -> R) -> R {
            self.1 += 1;
            IN_STEP.with(|s| s.set(true));
            let result = step(self.0);
            IN_STEP.with(|s| s.set(false));
            result
        }
    }
    /// A message whose decoding reports whether it ran inside a step.
    #[derive(Debug)]
    pub struct Probe(bool);
    impl<'de> Deserialize<'de> for Probe {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            serde::de::IgnoredAny::deserialize(d)?;
            Ok(Probe(outside()))
        }
    }
    impl Serialize for Probe {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_unit()
        }
    }
    crate::channel! { /// Probe.
    pub struct Probed { path: "/p", in: ChatOut<'a>, out: Probe } }
    let gate = |_: &RoomId| outside();
    let mut table = FixedRoomTable::<8, 4, 4, 4>::new();
    let mut watched = Watched(&mut table, 0);
    let mut out = [0u8; 256];
    dispatch::join_handshake_rooms::<Probed, _>(
        WireFormat::Alepha,
        MemberId(0),
        Some("roomId=a"),
        None,
        &gate,
        &mut watched,
    )
    .expect("the gate ran inside the table step");
    let alepha = dispatch::handle_message::<Probed, _>(
        WireFormat::Alepha,
        MemberId(0),
        &mut watched,
        &gate,
        &alepha_frame("a", "x"),
        &mut [0; 64],
        &mut out,
    );
    assert!(matches!(alepha, Inbound::Message { message: Probe(true), .. }), "{alepha:?}");
    let join = br#"{"type":"join","room":"b","ref":1}"#;
    let joined = dispatch::handle_message::<Probed, _>(
        WireFormat::Json,
        MemberId(1),
        &mut watched,
        &gate,
        join,
        &mut [0; 64],
        &mut out,
    );
    assert!(
        matches!(joined, Inbound::Answer { membership: Some(_), .. }),
        "the gate ran inside the table step: {joined:?}"
    );
    let say = br#"{"type":"message","room":"b","data":{"content":"x"}}"#;
    let said = dispatch::handle_message::<Probed, _>(
        WireFormat::Json,
        MemberId(1),
        &mut watched,
        &gate,
        say,
        &mut [0; 64],
        &mut out,
    );
    assert!(matches!(said, Inbound::Message { message: Probe(true), .. }), "{said:?}");
    assert!(watched.1 >= 4, "memberships were read and changed through the accessor");
}

/// A table on which another task's step (`between`) lands after the
/// dispatcher's first step: before its second, if it takes one, else after
/// its last ([`Interleaved::finish`]).
struct Interleaved<'a, F: FnOnce(&mut FixedRoomTable<8, 4, 4, 4>)> {
    table: &'a mut FixedRoomTable<8, 4, 4, 4>,
    steps: usize,
    between: Option<F>,
}
impl<F: FnOnce(&mut FixedRoomTable<8, 4, 4, 4>)> Interleaved<'_, F> {
    fn finish(&mut self) {
        if let Some(between) = self.between.take() {
            between(self.table);
        }
    }
}
impl<F: FnOnce(&mut FixedRoomTable<8, 4, 4, 4>)> crate::room::TableAccess for &mut Interleaved<'_, F> {
    type Table = FixedRoomTable<8, 4, 4, 4>;
    fn with<R>(&mut self, step: impl FnOnce(&mut Self::Table) -> R) -> R {
        self.steps += 1;
        if self.steps == 2 {
            self.finish();
        }
        step(self.table)
    }
}

/// The application put a member in a room its gate forbids, then takes it
/// out while the member's `join` of that room is being handled: the join
/// is not made past the gate on the strength of a membership that is gone.
#[test]
fn a_revoked_membership_is_not_rejoined_past_the_gate() {
    let mods = RoomId::new("mods").unwrap();
    let deny_mods = |room: &RoomId| room.as_str() != "mods";
    let mut table = FixedRoomTable::<8, 4, 4, 4>::new();
    table.join(MemberId(0), &mods).unwrap();
    let revoke = |table: &mut FixedRoomTable<8, 4, 4, 4>| {
        table.leave(MemberId(0), &RoomId::new("mods").unwrap());
    };
    let mut interleaved = Interleaved { table: &mut table, steps: 0, between: Some(revoke) };
    let (mut out, mut scratch) = ([0u8; 256], [0u8; 64]);
    let join = br#"{"type":"join","room":"mods","ref":1}"#;
    let answer = dispatch::handle_message::<Chat, _>(
        WireFormat::Json,
        MemberId(0),
        &mut interleaved,
        &deny_mods,
        join,
        &mut scratch,
        &mut out,
    );
    assert!(matches!(answer, Inbound::Answer { membership: None, .. }), "{answer:?}");
    interleaved.finish();
    assert!(!table.is_in_room(MemberId(0), &mods), "the revoked member is back in the room");
    // Asked again, now that it is out, the gate refuses.
    let answer = dispatch::handle_message::<Chat, _>(
        WireFormat::Json,
        MemberId(0),
        &mut table,
        &deny_mods,
        join,
        &mut scratch,
        &mut out,
    );
    let Inbound::Answer { len, membership: None } = answer else { panic!("{answer:?}") };
    let text = std::str::from_utf8(&out[..len]).unwrap();
    assert!(text.contains("4007"), "{text}");
}

/// On the Alepha wire a connection the application took out of every room
/// acts in none: its frames are dropped, not handled in `"default"`.
#[test]
fn an_alepha_connection_in_no_room_acts_in_none() {
    /// The room member 0's Alepha frame is handled in; `None`: dropped.
    fn handled_in(table: &mut FixedRoomTable<8, 4, 4, 4>, frame: &[u8]) -> Option<String> {
        let (mut out, mut scratch) = ([0u8; 256], [0u8; 64]);
        let any = &crate::dispatch::AnyRoom;
        match dispatch::handle_message::<Chat, _>(
            WireFormat::Alepha,
            MemberId(0),
            table,
            any,
            frame,
            &mut scratch,
            &mut out,
        ) {
            Inbound::Message { room, .. } => Some(room.as_str().into()),
            Inbound::Ignored => None,
            other => panic!("{other:?}"),
        }
    }
    let mut table = FixedRoomTable::<8, 4, 4, 4>::new();
    dispatch::join_handshake_rooms::<Chat, _>(
        WireFormat::Alepha,
        MemberId(0),
        None,
        None,
        &crate::dispatch::AnyRoom,
        &mut table,
    )
    .unwrap();
    assert_eq!(handled_in(&mut table, &alepha_frame("default", "hi")).as_deref(), Some("default"));
    // Kicked from its only room.
    table.leave(MemberId(0), &RoomId::new("default").unwrap());
    for frame in [alepha_frame("default", "hi"), br#"{"message":{"content":"hi"}}"#.to_vec()] {
        assert_eq!(handled_in(&mut table, &frame), None);
    }
}
