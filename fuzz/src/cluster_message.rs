//! The cluster message decoder (what one node reads of another's bytes,
//! or of anything else on the bus) and the deduplication window.
//!
//! Asserts:
//! * decoding never panics, and what decodes re-encodes to bytes that
//!   decode to the same message;
//! * decoding the same bytes as an Alepha broadcast never panics;
//! * the window, fed the input's bytes as sequence numbers, calls each
//!   number fresh at most once.

use std::collections::HashSet;

use roomwire_core::cluster::{
    self, Body, ClusterMessage, Connection, EmitBody, Encodable, RoomBody, RoomOp, Seen, SeqWindow,
};

/// Run one input.
pub fn run(data: &[u8]) {
    if let Ok(message) = cluster::decode(data) {
        check_round_trip(&message);
    }
    // The same bytes as heard on Alepha's topic.
    if let Ok(b) = cluster::decode_alepha(data) {
        let _ = b.rooms.iter().chain(b.users.iter()).map(|s| s.to_string()).count();
    }
    let mut window = SeqWindow::new();
    let mut fresh = HashSet::new();
    for pair in data.chunks(2) {
        let seq = pair.iter().fold(0u64, |n, &b| n << 8 | u64::from(b)) * 7;
        if window.accept(seq) == Seen::Fresh {
            assert!(fresh.insert(seq), "{seq} fresh twice");
        }
    }
}

fn check_round_trip(message: &ClusterMessage<'_>) {
    let lists: [Vec<&str>; 5];
    let rooms: Vec<Vec<&str>>;
    let connections: Vec<Connection<'_, &[&str]>>;
    let room_list: Vec<&str>;
    let again: Encodable<'_, &str> = ClusterMessage {
        origin: message.origin,
        path: message.path,
        body: match message.body {
            Body::Emit(e) => {
                lists =
                    [e.rooms, e.users, e.connections, e.except_connections, e.except_users].map(|l| l.iter().collect());
                let [rooms, users, connections, except_connections, except_users] = &lists;
                Body::Emit(EmitBody {
                    rooms,
                    users,
                    connections,
                    except_connections,
                    except_users,
                    json: e.json,
                    postcard: e.postcard,
                })
            }
            Body::Close { connection, code, reason } => Body::Close { connection, code, reason },
            Body::Membership { connection, room, join } => Body::Membership { connection, room, join },
            Body::Query { asker, query, reply_to, about } => Body::Query { asker, query, reply_to, about },
            Body::Answer { asker, query, connections: list } => {
                rooms = list.iter().map(|c| c.rooms.iter().collect()).collect();
                connections = list
                    .iter()
                    .zip(&rooms)
                    .map(|(c, rooms)| Connection { id: c.id, user: c.user, wire: c.wire, rooms: &rooms[..] })
                    .collect();
                Body::Answer { asker, query, connections: &connections }
            }
            Body::Room(room) => {
                let op = match room.op {
                    RoomOp::Join { connection, user, wire, query } => RoomOp::Join { connection, user, wire, query },
                    RoomOp::Leave { connection } => RoomOp::Leave { connection },
                    RoomOp::Message { connection, wire, payload } => RoomOp::Message { connection, wire, payload },
                    RoomOp::Call { method, args } => RoomOp::Call { method, args },
                    RoomOp::Broadcast { except, json, postcard } => {
                        room_list = except.iter().collect();
                        RoomOp::Broadcast { except: &room_list[..], json, postcard }
                    }
                    RoomOp::Members { connections } => {
                        room_list = connections.iter().collect();
                        RoomOp::Members { connections: &room_list[..] }
                    }
                    RoomOp::Outcome { status, body } => RoomOp::Outcome { status, body },
                };
                Body::Room(RoomBody { reply_to: room.reply_to, request: room.request, room: room.room, op })
            }
        },
    };
    let mut bytes = vec![0; cluster::encoded_len(&again)];
    let n = cluster::encode(&again, &mut bytes).unwrap_or_else(|e| panic!("re-encoding: {e}"));
    assert_eq!(n, bytes.len());
    let back = cluster::decode(&bytes).unwrap_or_else(|e| panic!("re-decoding: {e}"));
    assert_eq!(format!("{back:?}"), format!("{message:?}"));
}
