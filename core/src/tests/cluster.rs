//! The cluster protocol: message bytes, deduplication, interest.

use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use proptest::prelude::*;

use crate::close::CloseCode;
use crate::cluster::*;
use crate::room::{GrowableRoomTable, MemberId, RoomId, RoomTable};

fn emit<'a>(lists: &'a [Vec<String>; 5], json: &'a [u8], postcard: Option<&'a [u8]>) -> Encodable<'a, String> {
    ClusterMessage {
        origin: Origin { node: 0x0102_0304_0506_0708, seq: 42, multi: true },
        path: "/ws/chat",
        body: Body::Emit(EmitBody {
            rooms: &lists[0],
            users: &lists[1],
            connections: &lists[2],
            except_connections: &lists[3],
            except_users: &lists[4],
            json,
            postcard,
        }),
    }
}

fn encoded<S: AsRef<str>>(message: &Encodable<'_, S>) -> Vec<u8> {
    let mut buf = vec![0; encoded_len(message)];
    let n = encode(message, &mut buf).unwrap();
    assert_eq!(n, buf.len(), "encoded_len is exact");
    buf
}

fn strings(list: StrList<'_>) -> Vec<String> {
    list.iter().map(str::to_string).collect()
}

#[test]
fn an_emit_round_trips_with_every_list_and_both_payloads() {
    let lists = [
        vec!["a".to_string(), "b:c".to_string()],
        vec!["alice".to_string()],
        vec!["ws-1".to_string()],
        vec![],
        vec!["bob".to_string(), "é".to_string()],
    ];
    let bytes = encoded(&emit(&lists, br#"{"x":1}"#, Some(&[1, 2, 3])));
    assert_eq!(&bytes[..4], b"RWC\x01");
    let m = decode(&bytes).unwrap();
    assert_eq!(m.origin, Origin { node: 0x0102_0304_0506_0708, seq: 42, multi: true });
    assert_eq!(m.path, "/ws/chat");
    let Body::Emit(e) = m.body else { panic!("not an emit") };
    assert_eq!(
        [
            strings(e.rooms),
            strings(e.users),
            strings(e.connections),
            strings(e.except_connections),
            strings(e.except_users)
        ],
        lists
    );
    assert_eq!(e.json, br#"{"x":1}"#);
    assert_eq!(e.postcard, Some(&[1u8, 2, 3][..]));
}

#[test]
fn a_close_round_trips() {
    let m: Encodable<'_, &str> = ClusterMessage {
        origin: Origin { node: 9, seq: 0, multi: false },
        path: "/ws/chat",
        body: Body::Close {
            connection: "ws-1b4e28ba-ffff-4fff-bfff-ffffffffffff",
            code: CloseCode::from(4000),
            reason: "kicked",
        },
    };
    let bytes = encoded(&m);
    let d = decode(&bytes).unwrap();
    assert_eq!(
        d.body,
        Body::Close {
            connection: "ws-1b4e28ba-ffff-4fff-bfff-ffffffffffff",
            code: CloseCode::from(4000),
            reason: "kicked"
        }
    );
    assert!(!d.origin.multi);
    // A code no close frame may carry is refused, as a malformed message.
    let m: Encodable<'_, &str> =
        ClusterMessage { body: Body::Close { connection: "ws-1", code: CloseCode::from(1005), reason: "" }, ..m };
    assert_eq!(decode(&encoded(&m)), Err(DecodeError::Value));
}

#[test]
fn a_membership_round_trips_and_its_flag_is_strict() {
    for join in [true, false] {
        let m: Encodable<'_, &str> = ClusterMessage {
            origin: Origin { node: 9, seq: 0, multi: false },
            path: "/ws/chat",
            body: Body::Membership { connection: "ws-1b4e28ba-ffff-4fff-bfff-ffffffffffff", room: "lobby", join },
        };
        let mut bytes = encoded(&m);
        assert_eq!(bytes[4], 7, "kind 7");
        let d = decode(&bytes).unwrap();
        assert_eq!(
            d.body,
            Body::Membership { connection: "ws-1b4e28ba-ffff-4fff-bfff-ffffffffffff", room: "lobby", join }
        );
        // The flag is 0 or 1, nothing else; a cut message is refused.
        *bytes.last_mut().unwrap() = 2;
        assert!(decode(&bytes).is_err());
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}

#[test]
fn every_room_operation_round_trips() {
    use crate::wire::WireFormat;
    let except = ["ws-1", "ws-2"];
    let ops: [RoomOp<'_, &[&str]>; 8] = [
        RoomOp::Join { connection: "ws-1", user: Some("ann"), wire: WireFormat::Postcard, query: "roomId=r&name=x" },
        RoomOp::Join { connection: "ws-1", user: None, wire: WireFormat::Alepha, query: "" },
        RoomOp::Leave { connection: "ws-1" },
        RoomOp::Message { connection: "ws-1", wire: WireFormat::Json, payload: br#"{"by":1}"# },
        RoomOp::Call { method: "reset", args: b"null" },
        RoomOp::Broadcast { except: &except, json: b"{}", postcard: Some(&[0]) },
        RoomOp::Members { connections: &except },
        RoomOp::Outcome { status: RoomStatus::NotOwner, body: b"why" },
    ];
    for op in ops {
        let m: Encodable<'_, &str> = ClusterMessage {
            origin: Origin { node: 3, seq: 0, multi: false },
            path: "/ws/counter",
            body: Body::Room(RoomBody { reply_to: 0xdead_beef, request: 42, room: "r", op }),
        };
        let bytes = encoded(&m);
        let Body::Room(back) = decode(&bytes).unwrap().body else { panic!("not a room message") };
        assert_eq!((back.reply_to, back.request, back.room), (0xdead_beef, 42, "r"));
        assert_eq!(format!("{:?}", back.op).replace("StrList", ""), format!("{op:?}").replace("StrList", ""), "{op:?}");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} decoded");
        }
    }
}

#[test]
fn every_cut_of_a_message_is_refused_and_so_are_extra_bytes() {
    let lists = [vec!["room".to_string()], vec![], vec![], vec!["ws-2".to_string()], vec![]];
    let bytes = encoded(&emit(&lists, b"{}", Some(b"pc")));
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} decoded");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(decode(&longer), Err(DecodeError::Trailing));
    let mut other_version = bytes.clone();
    other_version[3] = 2;
    assert_eq!(decode(&other_version), Err(DecodeError::Magic));
    let mut other_kind = bytes;
    other_kind[4] = 9;
    assert_eq!(decode(&other_kind), Err(DecodeError::Kind(9)));
}

#[test]
fn bad_strings_and_lengths_are_refused() {
    let lists = [vec!["ab".to_string()], vec![], vec![], vec![], vec![]];
    let bytes = encoded(&emit(&lists, b"{}", None));
    // The room's bytes follow magic (4), kind and flags (2), origin (16),
    // the path (1 + 8) and the rooms' count (1) and length (1).
    let room_at = 4 + 2 + 16 + 9 + 2;
    assert_eq!(&bytes[room_at..room_at + 2], b"ab");
    let mut not_utf8 = bytes.clone();
    not_utf8[room_at] = 0xff;
    assert_eq!(decode(&not_utf8), Err(DecodeError::Utf8));
    // A length of six LEB128 bytes, or one over 32 bits.
    let mut head = bytes[..22].to_vec();
    head.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]);
    assert_eq!(decode(&head), Err(DecodeError::Length));
    let mut head = bytes[..22].to_vec();
    head.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x1f]);
    assert_eq!(decode(&head), Err(DecodeError::Length));
    // A count far beyond the input ends in Truncated, not in a long loop
    // or an allocation.
    let mut huge = bytes[..31].to_vec();
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert_eq!(decode(&huge), Err(DecodeError::Truncated));
}

#[test]
fn encoding_into_a_short_buffer_says_how_much_it_needs() {
    let lists = [vec!["a".to_string()], vec![], vec![], vec![], vec![]];
    let m = emit(&lists, b"{}", None);
    let need = encoded_len(&m);
    let mut short = vec![0; need - 1];
    assert_eq!(encode(&m, &mut short).unwrap_err().required, need);
}

proptest! {
    #[test]
    fn any_bytes_decode_to_a_message_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
        let mut framed = b"RWC\x01".to_vec();
        framed.extend_from_slice(&bytes);
        if let Ok(m) = decode(&framed) {
            // What decodes, encodes to bytes that decode the same (the
            // lengths in the input need not be minimal).
            if let Body::Emit(e) = m.body {
                let lists: [Vec<&str>; 5] = [e.rooms, e.users, e.connections, e.except_connections, e.except_users]
                    .map(|l| l.iter().collect());
                let again: Encodable<'_, &str> = ClusterMessage {
                    origin: m.origin,
                    path: m.path,
                    body: Body::Emit(EmitBody {
                        rooms: &lists[0][..], users: &lists[1][..], connections: &lists[2][..],
                        except_connections: &lists[3][..], except_users: &lists[4][..],
                        json: e.json, postcard: e.postcard,
                    }),
                };
                let bytes = encoded(&again);
                let back = decode(&bytes).unwrap();
                prop_assert_eq!((back.origin, back.path), (m.origin, m.path));
                let Body::Emit(b) = back.body else { panic!("not an emit") };
                prop_assert_eq!((strings(b.rooms), b.json, b.postcard), (strings(e.rooms), e.json, e.postcard));
            }
        }
    }

    #[test]
    fn emits_round_trip(
        lists in proptest::array::uniform5(proptest::collection::vec(".{0,12}", 0..4)),
        json in proptest::collection::vec(any::<u8>(), 0..300),
        node in any::<u64>(), seq in any::<u64>(), multi in any::<bool>(),
    ) {
        let mut m = emit(&lists, &json, None);
        m.origin = Origin { node, seq, multi };
        let bytes = encoded(&m);
        let d = decode(&bytes).unwrap();
        prop_assert_eq!(d.origin, m.origin);
        let Body::Emit(e) = d.body else { panic!("not an emit") };
        prop_assert_eq!(strings(e.rooms), lists[0].clone());
        prop_assert_eq!(strings(e.except_users), lists[4].clone());
        prop_assert_eq!(e.json, &json[..]);
    }

    #[test]
    fn the_window_says_fresh_once_per_sequence_number(seqs in proptest::collection::vec(0u64..3000, 1..400)) {
        let mut window = SeqWindow::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut top = 0u64;
        for seq in seqs {
            let verdict = window.accept(seq);
            let first = seen.insert(seq);
            top = top.max(seq);
            match verdict {
                Seen::Fresh => prop_assert!(first, "{} fresh twice", seq),
                Seen::Duplicate => prop_assert!(!first, "{} new but called a duplicate", seq),
                Seen::Stale => prop_assert!(top - seq >= window::WINDOW),
            }
        }
    }
}

proptest! {
    /// An id and its text are one value: the text parses back to the id,
    /// and a text that parses is the text of what it parsed to (so ids
    /// compare as their texts would).
    #[test]
    fn connection_ids_and_their_texts_round_trip(tag in any::<u32>(), random in any::<[u8; 16]>()) {
        let id = ConnectionId::new(tag, random);
        let text = id.text();
        prop_assert_eq!(ConnectionId::parse(&text), Some(id));
        prop_assert_eq!(id.node_tag(), tag);
        prop_assert_eq!(node_tag_of(&text), Some(tag));
        prop_assert_eq!(id.to_string(), text.as_str());
    }

    #[test]
    fn a_text_that_parses_is_its_ids_text(text in "(ws-)?[0-9a-fA-F-]{30,40}|.{0,45}") {
        if let Some(id) = ConnectionId::parse(&text) {
            let again = id.text();
            prop_assert_eq!(again.as_str(), text.as_str());
        }
    }

    /// Any one byte of a valid text changed to another gives no id or
    /// another id.
    #[test]
    fn a_changed_text_is_not_the_same_id(random in any::<[u8; 16]>(), at in 0usize..39, to in any::<u8>()) {
        let id = ConnectionId::new(7, random);
        let mut bytes = id.text().as_bytes().to_vec();
        prop_assume!(bytes[at] != to);
        bytes[at] = to;
        if let Ok(text) = std::str::from_utf8(&bytes) {
            prop_assert_ne!(ConnectionId::parse(text), Some(id));
        }
    }
}

#[test]
fn connection_id_texts_of_other_forms_are_no_id() {
    let good = "ws-deadbeef-1111-4111-9111-111111111111";
    assert!(ConnectionId::parse(good).is_some());
    for other in [
        "",
        "ws-",
        "WS-deadbeef-1111-4111-9111-111111111111",
        "ws-DEADBEEF-1111-4111-9111-111111111111",
        "ws-deadbeef-1111-4111-9111-1111111111111",
        "ws-deadbeef-1111-4111-9111-11111111111",
        "ws-deadbeef11111-4111-9111-111111111111",
        "ws-deadbeef-1111-4111-9111-11111111111g",
        "xs-deadbeef-1111-4111-9111-111111111111",
        "ws-deadbeef-1111-4111-9111-1111111111é",
    ] {
        assert_eq!(ConnectionId::parse(other), None, "{other}");
    }
}

#[test]
fn node_tags_survive_in_connection_ids_and_other_ids_have_none() {
    let id = connection_id(0xdead_beef, [0x11; 16]);
    assert_eq!(id.as_str(), "ws-deadbeef-1111-4111-9111-111111111111");
    assert_eq!(node_tag_of(&id), Some(0xdead_beef));
    for other in ["ws-", "ws-DEADBEEF-x", "ws-deadbee", "conn-deadbeef", "ws-+eadbeef"] {
        assert_eq!(node_tag_of(other), None, "{other}");
    }
}

#[test]
fn topics_of_different_paths_and_rooms_never_share_a_name() {
    let a = Topic::Room { path: "/x:r:y", room: "z" }.to_string();
    let b = Topic::Room { path: "/x", room: "y:r:z" }.to_string();
    assert_ne!(a, b);
    assert_ne!(Topic::User { path: "/p", user: "r" }.to_string(), Topic::Room { path: "/p", room: "r" }.to_string());
    assert_eq!(Topic::User { path: "/p", user: "u" }.to_string(), "rw:2:/p:u:u");
}

#[derive(Default)]
struct Log(Vec<String>);

impl RoomWatcher for Log {
    fn opened(&mut self, room: &RoomId) {
        self.0.push(format!("+{}", room.as_str()));
    }
    fn closed(&mut self, room: &RoomId) {
        self.0.push(format!("-{}", room.as_str()));
    }
}

#[test]
fn a_watched_table_reports_each_room_opening_and_closing_once() {
    let mut t = WatchedTable::new(GrowableRoomTable::new(), Log::default());
    let (a, b) = (RoomId::new("a").unwrap(), RoomId::new("b").unwrap());
    t.join(MemberId(1), &a).unwrap();
    t.join(MemberId(1), &a).unwrap();
    t.join(MemberId(2), &a).unwrap();
    t.join(MemberId(2), &b).unwrap();
    assert!(!t.leave(MemberId(3), "a"));
    t.leave_all(MemberId(1));
    t.leave_all(MemberId(2));
    t.join(MemberId(1), &b).unwrap();
    assert!(t.leave(MemberId(1), "b"));
    assert_eq!(t.watcher().0, ["+a", "+b", "-a", "-b", "+b", "-b"]);
    assert_eq!(t.room_count(), 0);
}

#[test]
fn queries_and_answers_round_trip_and_every_cut_is_refused() {
    use crate::wire::WireFormat;
    for about in [About::Channel, About::Room("lobby"), About::User("alice")] {
        let m: Encodable<'_, &str> = ClusterMessage {
            origin: Origin { node: 1, seq: 0, multi: false },
            path: "/ws/chat",
            body: Body::Query { asker: 1, query: 77, reply_to: 0xabcd_ef01, about },
        };
        let bytes = encoded(&m);
        assert_eq!(decode(&bytes).unwrap().body, Body::Query { asker: 1, query: 77, reply_to: 0xabcd_ef01, about });
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
    }
    let rooms: &[&str] = &["a", "b"];
    let connections = [
        Connection { id: "ws-1", user: Some("alice"), wire: WireFormat::Alepha, rooms },
        Connection { id: "ws-2", user: None, wire: WireFormat::Postcard, rooms: &[] },
    ];
    let m: Encodable<'_, &str> = ClusterMessage {
        origin: Origin { node: 2, seq: 0, multi: false },
        path: "/ws/chat",
        body: Body::Answer { asker: 1, query: 77, connections: &connections },
    };
    let bytes = encoded(&m);
    let Body::Answer { asker, query, connections: got } = decode(&bytes).unwrap().body else { panic!("not an answer") };
    assert_eq!((asker, query, got.len()), (1, 77, 2));
    let got: Vec<(String, Option<String>, WireFormat, Vec<String>)> =
        got.iter().map(|c| (c.id.to_string(), c.user.map(str::to_string), c.wire, strings(c.rooms))).collect();
    assert_eq!(
        got,
        [
            ("ws-1".to_string(), Some("alice".to_string()), WireFormat::Alepha, vec!["a".to_string(), "b".to_string()]),
            ("ws-2".to_string(), None, WireFormat::Postcard, vec![]),
        ]
    );
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err());
    }
    // A wire or user flag this version does not know.
    let mut bad = bytes.clone();
    let last_wire = bad.len() - 2;
    assert_eq!(bad[last_wire], 2, "ws-2's wire (postcard), then its empty room list");
    bad[last_wire] = 9;
    assert_eq!(decode(&bad), Err(DecodeError::Value));
}

#[test]
fn alepha_broadcasts_decode_as_alepha_publishes_them_and_round_trip() {
    let heard = br#"{"payload":{"channelPath":"/ws/chat","roomIds":["a","b\"c"],"userIds":null,"exceptUserIds":["al\u0069ce"],"message":{"type":"append","content":"hi"}}}"#;
    let b = decode_alepha(heard).unwrap();
    assert_eq!(b.channel_path, "/ws/chat");
    assert_eq!(b.rooms.iter().map(|s| s.to_string()).collect::<Vec<_>>(), ["a", "b\"c"]);
    assert!(b.users.is_empty() && b.connections.is_empty() && b.except_connections.is_empty());
    assert!(b.except_users.iter().next().unwrap().eq_str("alice"));
    assert_eq!(b.message, br#"{"type":"append","content":"hi"}"#);
    // Encoded back, it decodes the same.
    let rooms: Vec<String> = b.rooms.iter().map(|s| s.to_string()).collect();
    let except_users: Vec<String> = b.except_users.iter().map(|s| s.to_string()).collect();
    let none: &[String] = &[];
    let again = AlephaBroadcast {
        channel_path: b.channel_path,
        rooms: &rooms[..],
        users: none,
        connections: none,
        except_connections: none,
        except_users: &except_users[..],
        message: b.message,
    };
    let mut out = vec![0; encode_alepha_max_len(&again)];
    let n = encode_alepha(&again, &mut out).unwrap();
    let back = decode_alepha(&out[..n]).unwrap();
    assert_eq!(back.rooms.iter().map(|s| s.to_string()).collect::<Vec<_>>(), rooms);
    assert_eq!(back.message, b.message);
}

#[test]
fn alepha_broadcasts_that_cannot_be_delivered_say_why() {
    assert!(matches!(decode_alepha(b"{\"payload\":"), Err(AlephaTopicError::Json(_))));
    let cases: [(&[u8], AlephaTopicError); 5] = [
        (br#"{"other":{}}"#, AlephaTopicError::NoPayload),
        (br#"{"payload":[]}"#, AlephaTopicError::NoPayload),
        (br#"{"payload":{"message":1}}"#, AlephaTopicError::ChannelPath),
        (br#"{"payload":{"channelPath":"/p","roomIds":["a",1],"message":1}}"#, AlephaTopicError::List),
        (br#"{"payload":{"channelPath":"/p"}}"#, AlephaTopicError::NoMessage),
    ];
    for (input, error) in cases {
        assert_eq!(decode_alepha(input).map(|_| ()), Err(error), "{}", String::from_utf8_lossy(input));
    }
}

mod order {
    use std::collections::BTreeSet;
    use std::vec::Vec;

    use proptest::prelude::*;

    use crate::cluster::order::{Copy, HOLD_LIMIT, Sequencer};
    use crate::time::Instant;

    const TOPICS: [&str; 3] = ["a", "b", "c"];

    /// Messages 0..n, each to a non-empty subset of the topics (a bit
    /// mask), and an interleaving of the three topics' streams.
    fn scenario() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        proptest::collection::vec(1u8..8, 1..40).prop_flat_map(|masks| {
            let copies: usize = masks.iter().map(|m| m.count_ones() as usize).sum();
            (Just(masks), proptest::collection::vec(0u8..3, copies * 3))
        })
    }

    proptest! {
        #[test]
        fn every_message_once_in_publish_order_on_every_topic((masks, picks) in scenario()) {
            // Each topic's stream, in publish order.
            let mut streams: Vec<Vec<usize>> = TOPICS.iter().enumerate()
                .map(|(t, _)| (0..masks.len()).filter(|&m| masks[m] & (1 << t) != 0).collect())
                .collect();
            for s in &mut streams { s.reverse(); }
            // Message m weighs m + 1: what waits is weighed exactly.
            let mut seq = Sequencer::weighed(|m: &usize| m + 1);
            let mut out: Vec<usize> = Vec::new();
            let now = Instant::from_micros(0);
            let feed = |t: usize, streams: &mut Vec<Vec<usize>>, seq: &mut Sequencer<usize>, out: &mut Vec<usize>| {
                if let Some(m) = streams[t].pop() {
                    let expected: Vec<&str> = (0..3).filter(|&u| masks[m] & (1 << u) != 0).map(|u| TOPICS[u]).collect();
                    let copy = if expected.len() == 1 { Copy::Single } else { Copy::Multi { seq: m as u64, expected: &expected, release_by: None } };
                    seq.heard(now, 7, TOPICS[t], copy, m, &mut |d| out.push(d));
                }
            };
            for &p in &picks {
                feed(p as usize, &mut streams, &mut seq, &mut out);
            }
            for t in 0..3 {
                while !streams[t].is_empty() {
                    feed(t, &mut streams, &mut seq, &mut out);
                }
            }
            prop_assert_eq!(seq.held(), 0, "all copies heard: nothing waits");
            prop_assert_eq!(seq.held_bytes(), 0, "nothing waits, nothing weighs");
            let unique: BTreeSet<usize> = out.iter().copied().collect();
            prop_assert_eq!(unique.len(), out.len(), "delivered twice: {:?}", out);
            prop_assert_eq!(out.len(), masks.len(), "not all delivered: {:?}", out);
            for (t, name) in TOPICS.iter().enumerate() {
                let on_t: Vec<usize> = out.iter().copied().filter(|&m| masks[m] & (1 << t) != 0).collect();
                prop_assert!(on_t.windows(2).all(|w| w[0] < w[1]), "topic {} out of order: {:?}", name, on_t);
            }
        }
    }

    #[test]
    fn a_copy_that_never_comes_holds_its_message_no_longer_than_the_hold_limit() {
        let mut seq = Sequencer::new();
        let mut out = Vec::new();
        let t0 = Instant::from_micros(0);
        // m1 to a and b is heard on a only (its node left b meanwhile); m2
        // to a waits behind it.
        let both = Copy::Multi { seq: 1, expected: &["a", "b"], release_by: None };
        seq.heard(t0, 7, "a", both, 1, &mut |d| out.push(d));
        seq.heard(t0, 7, "a", Copy::Single, 2, &mut |d| out.push(d));
        assert!(out.is_empty());
        assert!(seq.is_queued(7, "a") && !seq.is_queued(7, "b") && !seq.is_queued(8, "a"));
        seq.expire(Instant::from_micros(HOLD_LIMIT.as_micros() - 1), &mut |d| out.push(d));
        assert!(out.is_empty());
        seq.expire(Instant::from_micros(HOLD_LIMIT.as_micros()), &mut |d| out.push(d));
        assert_eq!(out, [1, 2]);
        // Its copy on b, late: a duplicate.
        seq.heard(t0, 7, "b", both, 1, &mut |d| out.push(d));
        assert_eq!(out, [1, 2]);
        assert_eq!(seq.held(), 0);
    }

    /// What waits is weighed as it comes and goes, whichever way it goes
    /// (in order, released by time, by a forgotten topic, or early, past
    /// the byte bound, oldest first).
    #[test]
    fn waiting_messages_are_weighed_in_and_out() {
        use crate::cluster::order::MAX_WAITING_BYTES;
        let mut seq = Sequencer::weighed(|m: &usize| *m);
        let mut out = Vec::new();
        let t0 = Instant::from_micros(0);
        let multi = |n: u64| Copy::Multi { seq: n, expected: &["a", "b"], release_by: None };
        // 100 waits for its copy on b, 30 queues behind it on a.
        seq.heard(t0, 7, "a", multi(1), 100, &mut |d| out.push(d));
        seq.heard(t0, 7, "a", Copy::Single, 30, &mut |d| out.push(d));
        assert_eq!((seq.held_bytes(), out.len()), (130, 0));
        seq.heard(t0, 7, "b", multi(1), 100, &mut |d| out.push(d));
        assert_eq!((seq.held_bytes(), &out[..]), (0, &[100, 30][..]));
        // Released by time, and by a forgotten topic.
        seq.heard(t0, 7, "a", multi(2), 5, &mut |d| out.push(d));
        seq.heard(t0, 8, "a", multi(1), 7, &mut |d| out.push(d));
        assert_eq!(seq.held_bytes(), 12);
        seq.expire(Instant::from_micros(HOLD_LIMIT.as_micros()), &mut |d| out.push(d));
        assert_eq!(seq.held_bytes(), 0);
        seq.heard(t0, 9, "a", multi(1), 9, &mut |d| out.push(d));
        seq.forget_topic("b", &mut |d| out.push(d));
        assert_eq!((seq.held_bytes(), out.len()), (0, 5));
        // Past the bound, the oldest held message goes out first (heard
        // first, from the publisher with the higher number).
        let t1 = Instant::from_micros(1);
        seq.heard(t0, 11, "a", multi(1), MAX_WAITING_BYTES - 1, &mut |d| out.push(d));
        seq.heard(t1, 10, "a", multi(1), 1, &mut |d| out.push(d));
        assert_eq!((seq.held_bytes(), out.len()), (MAX_WAITING_BYTES, 5), "at the bound, nothing out yet");
        seq.heard(t1, 12, "a", multi(1), 2, &mut |d| out.push(d));
        assert_eq!(out[5..], [MAX_WAITING_BYTES - 1]);
        assert_eq!(seq.held_bytes(), 3);
    }

    /// A node subscribed to `t` only just (within its grace) hears m2 (to
    /// `t` and `u`) on `u` first: m2 waits for its copy on `t`, so m1,
    /// published on `t` before it, goes out first; a copy that never comes
    /// there (published before the subscription) holds it until the grace
    /// ends, not the hold limit.
    #[test]
    fn a_copy_on_a_topic_in_its_grace_is_waited_for_until_the_grace_ends() {
        let t0 = Instant::from_micros(0);
        let grace_end = Instant::from_micros(200_000);
        let m2 = Copy::Multi { seq: 2, expected: &["t", "u"], release_by: Some(grace_end) };
        let (mut seq, mut out) = (Sequencer::new(), Vec::new());
        assert_eq!(seq.heard(t0, 7, "u", m2, 2, &mut |d| out.push(d)), crate::cluster::order::Heard::Held);
        seq.heard(t0, 7, "t", Copy::Single, 1, &mut |d| out.push(d));
        seq.heard(t0, 7, "t", m2, 2, &mut |d| out.push(d));
        assert_eq!(out, [1, 2], "the order on t");
        // Its copy on t never comes.
        let (mut seq, mut out) = (Sequencer::new(), Vec::new());
        seq.heard(t0, 7, "u", m2, 2, &mut |d| out.push(d));
        seq.expire(Instant::from_micros(199_999), &mut |d| out.push(d));
        assert!(out.is_empty());
        seq.expire(grace_end, &mut |d| out.push(d));
        assert_eq!(out, [2], "held past the grace");
        // A release after the hold limit changes nothing.
        let late = Copy::Multi { seq: 3, expected: &["t", "u"], release_by: Some(Instant::from_micros(9_000_000)) };
        seq.heard(t0, 7, "u", late, 3, &mut |d| out.push(d));
        seq.expire(Instant::from_micros(HOLD_LIMIT.as_micros()), &mut |d| out.push(d));
        assert_eq!(out, [2, 3]);
    }

    #[test]
    fn a_topic_the_node_leaves_is_no_longer_waited_for() {
        let mut seq = Sequencer::new();
        let mut out = Vec::new();
        let t0 = Instant::from_micros(0);
        seq.heard(t0, 7, "a", Copy::Multi { seq: 1, expected: &["a", "b"], release_by: None }, 1, &mut |d| out.push(d));
        seq.heard(t0, 7, "a", Copy::Single, 2, &mut |d| out.push(d));
        assert!(out.is_empty());
        seq.forget_topic("b", &mut |d| out.push(d));
        assert_eq!(out, [1, 2], "out at once, not at the hold limit");
    }

    #[test]
    fn expiry_is_by_age_whatever_the_numbers() {
        let mut seq = Sequencer::new();
        let mut out = Vec::new();
        // 5 is heard first, 3 later: 5 expires first.
        seq.heard(
            Instant::from_micros(0),
            7,
            "a",
            Copy::Multi { seq: 5, expected: &["a", "b"], release_by: None },
            5,
            &mut |d| out.push(d),
        );
        let later = Instant::from_micros(HOLD_LIMIT.as_micros() - 100);
        seq.heard(later, 7, "c", Copy::Multi { seq: 3, expected: &["c", "d"], release_by: None }, 3, &mut |d| {
            out.push(d)
        });
        seq.expire(Instant::from_micros(HOLD_LIMIT.as_micros()), &mut |d| out.push(d));
        assert_eq!(out, [5]);
    }
}
