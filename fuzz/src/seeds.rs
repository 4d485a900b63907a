//! The seed corpus: `fuzz/corpus/<target>/seed-*`, written by
//! `cargo +nightly run --example gen_seeds` (from `fuzz/`), which also
//! replays each seed through its harness.

use roomwire_core::cluster::{
    self, About, Body, ClusterMessage, Connection, EmitBody, Encodable, Origin, RoomBody, RoomOp,
};
use roomwire_core::frame::apply_mask;
use roomwire_core::handshake::{self, write_accept, write_refusal};
use roomwire_core::wire::WireFormat;
use roomwire_core::{FrameHeader, Opcode};

/// RFC 6455 §5.7: a single-frame unmasked text message "Hello".
pub const UNMASKED_HELLO: &[u8] = &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
/// RFC 6455 §5.7: a single-frame masked text message "Hello".
pub const MASKED_HELLO: &[u8] = &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// RFC 6455 §5.7: a fragmented unmasked text message "Hel" + "lo".
pub const FRAGMENTED_HELLO: &[u8] = &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
/// RFC 6455 §5.7: an unmasked ping "Hello".
pub const UNMASKED_PING: &[u8] = &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
/// RFC 6455 §5.7: a masked pong "Hello".
pub const MASKED_PONG: &[u8] = &[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// Autobahn 6.3.1: "κόσμε" followed by a UTF-16 surrogate, then "edited".
pub const INVALID_UTF8: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64";
/// A complete request (the one in the core's handshake tests).
pub const GOOD_REQUEST: &[u8] = b"GET /chat?roomId=a&roomId=b HTTP/1.1\r\nHost: server.example.com\r\n\
Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\nAuthorization: Bearer t0k\r\nCookie: sid=1\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol: other\r\nSec-WebSocket-Version: 13\r\n\r\n";

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame: header with the given bits, payload masked with `mask`.
pub fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = FrameHeader { fin, rsv: 0, opcode: Opcode::from(opcode), mask, payload_len: payload.len() as u64 };
    let mut out = vec![0u8; 14];
    let n = header.encode(&mut out).unwrap_or_else(|e| panic!("{e:?}"));
    out.truncate(n);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
    out
}

/// A masked (client-to-server) frame.
pub fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, opcode, payload, Some(KEY))
}

/// An unmasked (server-to-client) frame.
pub fn unmasked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, opcode, payload, None)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Close payload: code and reason.
fn close(code: u16, reason: &str) -> Vec<u8> {
    cat(&[&code.to_be_bytes(), reason.as_bytes()])
}

/// A frame stream exercising most frame rules, in either direction.
fn conversation(f: fn(bool, u8, &[u8]) -> Vec<u8>) -> Vec<u8> {
    cat(&[
        &f(true, 0x1, b"Hello"),
        &f(false, 0x1, "Hel κό".as_bytes()),
        &f(true, 0x9, b"ping!"),
        &f(false, 0x0, "σμε ".as_bytes()),
        &f(true, 0x0, b"lo"),
        &f(true, 0x2, &[0u8, 1, 2, 3, 255]),
        &f(true, 0xA, b""),
        &f(true, 0x2, &[7u8; 200]),
        &f(true, 0x8, &close(1000, "bye")),
    ])
}

/// Every seed, as (target, name, bytes).
pub fn all() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut seeds: Vec<(&'static str, &'static str, Vec<u8>)> = Vec::new();
    let mut add = |target, name, bytes: Vec<u8>| seeds.push((target, name, bytes));

    // frame_decoder: byte 0 = role (bit 7 client) | limits (bits 5-6) | chunk size - 1.
    let client = 0x80;
    add("frame_decoder", "rfc-masked-hello", cat(&[&[0x02], MASKED_HELLO]));
    add("frame_decoder", "rfc-unmasked-hello", cat(&[&[client], UNMASKED_HELLO]));
    add("frame_decoder", "rfc-fragmented", cat(&[&[client | 0x01], FRAGMENTED_HELLO]));
    add("frame_decoder", "rfc-ping-pong", cat(&[&[client | 0x03], UNMASKED_PING, &unmasked(true, 0xA, b"Hello")]));
    add("frame_decoder", "rfc-256-binary", cat(&[&[client | 0x1F], &unmasked(true, 0x2, &[0x5A; 256])]));
    add("frame_decoder", "conversation-server", cat(&[&[0x04], &conversation(masked)]));
    add("frame_decoder", "conversation-client", cat(&[&[client | 0x06], &conversation(unmasked)]));
    add("frame_decoder", "invalid-utf8", cat(&[&[0x01], &masked(true, 0x1, INVALID_UTF8)]));
    add(
        "frame_decoder",
        "text-ends-mid-char",
        cat(&[&[client], &unmasked(false, 0x1, b"ab\xe2\x82"), &unmasked(true, 0x0, b"")]),
    );
    add("frame_decoder", "too-big", cat(&[&[client | 0x20 | 0x07], &unmasked(true, 0x2, &[1; 100])]));
    add(
        "frame_decoder",
        "violations",
        cat(&[&[client | 0x02], &[0xC1, 0x01, b'x'], &unmasked(true, 0x3, b""), &unmasked(true, 0x1, b"x")]),
    );
    add(
        "frame_decoder",
        "long-lengths",
        cat(&[&[client | 0x60 | 0x09], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0], &[9; 40]]),
    );
    add("frame_decoder", "close-1001", cat(&[&[0x05], &masked(true, 0x8, &close(1001, "going away"))]));

    // frame_header: arbitrary bytes.
    add("frame_header", "rfc-masked-hello", MASKED_HELLO.to_vec());
    add("frame_header", "rfc-unmasked-hello", UNMASKED_HELLO.to_vec());
    add("frame_header", "len16", vec![0x82, 0x7E, 0x01, 0x00, 1, 2, 3, 4, 5, 6, 7, 8]);
    add("frame_header", "len64-masked", vec![0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4, 9, 9, 9, 9, 9]);
    add("frame_header", "len16-not-minimal", vec![0x02, 0xFE, 0x00, 0x05, 0xAA, 0xBB, 0xCC, 0xDD, 1, 2, 3, 4, 5]);
    add("frame_header", "len64-high-bit", vec![0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]);

    // handshake_request: byte 0 = limit selector (0: 8 KiB).
    add("handshake_request", "rfc-request", cat(&[&[0], GOOD_REQUEST]));
    add("handshake_request", "written-request", cat(&[&[0], &crate::server_connection::upgrade_request()]));
    add("handshake_request", "small-limit", cat(&[&[0x01 | (8 << 2)], GOOD_REQUEST]));
    add("handshake_request", "exact-limit", cat(&[&[0x03], GOOD_REQUEST]));
    add("handshake_request", "post", cat(&[&[0], &replace(GOOD_REQUEST, b"GET", b"POST")]));
    add("handshake_request", "version-8", cat(&[&[0], &replace(GOOD_REQUEST, b"Version: 13", b"Version: 8")]));
    add("handshake_request", "partial", cat(&[&[0], &GOOD_REQUEST[..GOOD_REQUEST.len() - 3]]));

    // handshake_response: byte 0 = limit | offered << 2, byte 1 = nonce byte.
    for (name, sel, protocol) in [("no-protocol", 0u8, None), ("superchat", 2 << 2, Some("superchat"))] {
        let accept = crate::handshake_response::expected_accept(0x42);
        let mut out = vec![0u8; 512];
        let n = write_accept(&accept, protocol, &[("X-Extra", "1")], &mut out).unwrap_or_else(|e| panic!("{e:?}"));
        add("handshake_response", name, cat(&[&[sel, 0x42], &out[..n]]));
    }
    let accept = crate::handshake_response::expected_accept(0x42);
    let mut out = vec![0u8; 512];
    let n = write_accept(&accept, Some("nope"), &[], &mut out).unwrap_or_else(|e| panic!("{e:?}"));
    add("handshake_response", "unoffered-protocol", cat(&[&[1 << 2, 0x42], &out[..n]]));
    let n = write_refusal(401, &[("WWW-Authenticate", "Bearer")], "who?", &mut out).unwrap_or_else(|e| panic!("{e:?}"));
    add("handshake_response", "refused-401", cat(&[&[0, 0x42], &out[..n]]));
    let n = write_accept(&handshake::accept_key(b"x"), None, &[], &mut out).unwrap_or_else(|e| panic!("{e:?}"));
    add("handshake_response", "wrong-accept", cat(&[&[0, 0x42], &out[..n]]));

    // server_connection: flags, 4 chunk lengths, wire (see its docs).
    let lens: &[u8] = &[0, 6, 31, 200];
    let server = |flags: u8, wire: &[u8]| cat(&[&[flags], lens, wire]);
    add("server_connection", "conversation", server(0x01, &conversation(masked)));
    add("server_connection", "raw-request", server(0x00, &cat(&[GOOD_REQUEST, &masked(true, 0x1, b"hi")])));
    add(
        "server_connection",
        "keepalive-timeouts-protocol",
        server(0x01 | 0x04 | 0x08 | 0x40, &cat(&[&masked(true, 0x9, b"a"), &masked(true, 0x9, b"b")])),
    );
    add("server_connection", "invalid-utf8", server(0x01, &masked(true, 0x1, INVALID_UTF8)));
    add("server_connection", "unmasked", server(0x01, UNMASKED_HELLO));
    add("server_connection", "refuse", server(0x03, MASKED_HELLO));
    add("server_connection", "small-limits", server(0x11, &conversation(masked)));
    add("server_connection", "handshake-too-large", server(0x21, b""));
    add("server_connection", "bad-request", server(0x00, &replace(GOOD_REQUEST, b"GET", b"PUT")));
    add("server_connection", "bad-close", server(0x01, &masked(true, 0x8, &[0x03, 0xED])));
    add("server_connection", "late-answer", server(0x81, MASKED_HELLO));
    // Preset 3 accepts permessage-deflate: a compressed "Hello" (RFC 7692 §7.2.3.1), then RSV1 on a continuation.
    let offering = replace(
        GOOD_REQUEST,
        b"Sec-WebSocket-Version: 13\r\n",
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
    );
    let mut compressed = masked(true, 0x1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    compressed[0] |= 0x40;
    let mut continuation = masked(true, 0x0, b"x");
    continuation[0] |= 0x40;
    add("server_connection", "deflate", server(0x30, &cat(&[&offering, &compressed, &continuation])));

    // client_connection: flags, 4 chunk lengths, wire (see its docs).
    let client = |flags: u8, wire: &[u8]| cat(&[&[flags], lens, wire]);
    add("client_connection", "conversation", client(0x01, &conversation(unmasked)));
    add("client_connection", "protocol", client(0x01 | 0x02 | 0x04, UNMASKED_HELLO));
    add("client_connection", "unoffered-protocol", client(0x01 | 0x04, UNMASKED_HELLO));
    add("client_connection", "keepalive-timeouts", client(0x01 | 0x08 | 0x40, UNMASKED_PING));
    add("client_connection", "masked", client(0x01, MASKED_HELLO));
    add("client_connection", "close-1001", client(0x01, &unmasked(true, 0x8, &close(1001, "bye"))));
    add("client_connection", "invalid-utf8", client(0x01, &unmasked(true, 0x1, INVALID_UTF8)));
    let n = write_refusal(401, &[], "no", &mut out).unwrap_or_else(|e| panic!("{e:?}"));
    add("client_connection", "refused", client(0x00, &out[..n]));
    add("client_connection", "no-answer", client(0x00, b""));

    // client_session: flags (bits 0-1: the 101; bit 2: Alepha wire; bit 3:
    // a join during the handshake), 4 chunk lengths, wire.
    let session = |flags: u8, wire: &[u8]| cat(&[&[flags], lens, wire]);
    let ok = |reference: u8| unmasked(true, 0x1, format!(r#"{{"type":"ok","ref":{reference}}}"#).as_bytes());
    let push = unmasked(true, 0x1, br#"{"type":"push","room":"a","data":{"content":"hi"}}"#);
    add("client_session", "json-joins", session(0x01 | 0x08, &cat(&[&ok(1), &ok(2), &ok(3), &push])));
    add("client_session", "json-not-an-envelope", session(0x01, &unmasked(true, 0x1, b"nope")));
    add(
        "client_session",
        "alepha",
        session(0x02 | 0x04, &unmasked(true, 0x1, br#"{"content":"hi","__alephaRoom":"a"}"#)),
    );
    add("client_session", "alepha-not-json", session(0x02 | 0x04, &unmasked(true, 0x1, b"not json")));
    add("client_session", "probe-echoed", session(0x03, &unmasked(true, 0x8, &close(1000, ""))));
    add("client_session", "close-1008", session(0x02 | 0x04, &unmasked(true, 0x8, &close(1008, "Room full"))));
    add("client_session", "no-answer", session(0x00, b""));

    // cluster_message: an emit to two rooms with exclusions and both
    // payloads, and a close.
    let rooms: &[&str] = &["lobby", "b"];
    let emit = ClusterMessage {
        origin: Origin { node: 0x1b4e_28ba_0000_0001, seq: 3, multi: true },
        path: "/ws/chat",
        body: Body::Emit(EmitBody {
            rooms,
            users: &["alice"],
            connections: &[],
            except_connections: &["ws-1b4e28ba-ffff-4fff-bfff-ffffffffffff"],
            except_users: &[],
            json: br#"{"type":"append","content":"hi"}"#,
            postcard: Some(b"\x00\x02hi"),
        }),
    };
    let close: Encodable<'_, &str> = ClusterMessage {
        origin: Origin { node: 7, seq: 0, multi: false },
        path: "/ws/chat",
        body: Body::Close { connection: "ws-1b4e28ba-ffff-4fff-bfff-ffffffffffff", code: roomwire_core::CloseCode::from(4000), reason: "kicked" },
    };
    let query: Encodable<'_, &str> = ClusterMessage {
        origin: Origin { node: 7, seq: 0, multi: false },
        path: "/ws/chat",
        body: Body::Query { asker: 7, query: 1, reply_to: 0x1b4e_28ba, about: About::Room("lobby") },
    };
    let answered = [Connection {
        id: "ws-1b4e28ba-ffff-4fff-bfff-ffffffffffff",
        user: Some("alice"),
        wire: WireFormat::Json,
        rooms,
    }];
    let answer: Encodable<'_, &str> = ClusterMessage {
        origin: Origin { node: 8, seq: 0, multi: false },
        path: "/ws/chat",
        body: Body::Answer { asker: 7, query: 1, connections: &answered },
    };
    // cluster_order: 8 messages to mixed topics, interleaved; then lossy.
    add("cluster_order", "interleaved", vec![8, 1, 3, 7, 2, 6, 4, 5, 1, 2, 0, 1, 2, 2, 1, 0, 0, 1, 2, 2]);
    add("cluster_order", "lossy", vec![0x88, 3, 3, 7, 6, 5, 1, 2, 4, 0xf0, 1, 2, 0xf2, 1, 0]);
    // stateful_room: 20 Hz; a counter message; joins, time, beats, leaves.
    // deflate_negotiation: byte 0 = settings, the rest one or more header lines.
    add("deflate_negotiation", "chromium", cat(&[&[0xff], b"permessage-deflate; client_max_window_bits"]));
    add("deflate_negotiation", "firefox", cat(&[&[0x03], b"permessage-deflate"]));
    add(
        "deflate_negotiation",
        "two-offers",
        cat(&[&[0x5a], b"permessage-deflate; server_max_window_bits=10; client_max_window_bits=8\npermessage-deflate; server_no_context_takeover"]),
    );
    add(
        "deflate_negotiation",
        "answer",
        cat(&[&[0xfe], b"permessage-deflate; server_no_context_takeover; client_max_window_bits=\"9\""]),
    );
    add("stateful_room", "inc", cat(&[&[20], br#"{"type":"inc","by":3}"#]));
    add("stateful_room", "envelope", cat(&[&[10], br#"{"type":"message","room":"r","data":{"by":1}}"#]));
    add("stateful_room", "schedule", vec![20, 0, 0, 0x1b, 0x2b, 1, 0x47, 1, 2, 0xff, 0xff, 0x03, 0]);
    let members = ["ws-1", "ws-2"];
    let room: Encodable<'_, &str> = ClusterMessage {
        origin: Origin { node: 8, seq: 0, multi: false },
        path: "/ws/counter",
        body: Body::Room(RoomBody {
            reply_to: 7,
            request: 3,
            room: "r",
            op: RoomOp::Broadcast { except: &members[..], json: b"{}", postcard: Some(b"\x00") },
        }),
    };
    let join: Encodable<'_, &str> = ClusterMessage {
        origin: Origin { node: 8, seq: 0, multi: false },
        path: "/ws/counter",
        body: Body::Room(RoomBody {
            reply_to: 7,
            request: 4,
            room: "r",
            op: RoomOp::Join { connection: "ws-1", user: Some("ann"), wire: WireFormat::Alepha, query: "roomId=r" },
        }),
    };
    let membership: Encodable<'_, &str> = ClusterMessage {
        origin: Origin { node: 8, seq: 0, multi: false },
        path: "/ws/chat",
        body: Body::Membership { connection: "ws-1b4e28ba-ffff-4fff-bfff-ffffffffffff", room: "lobby", join: true },
    };
    for (name, message) in [
        ("emit", emit),
        ("close", close),
        ("query", query),
        ("answer", answer),
        ("room", room),
        ("room-join", join),
        ("membership", membership),
    ] {
        let mut bytes = vec![0; cluster::encoded_len(&message)];
        let n = cluster::encode(&message, &mut bytes).unwrap_or_else(|e| panic!("{e}"));
        bytes.truncate(n);
        add("cluster_message", name, bytes);
    }
    seeds
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = haystack.windows(from.len()).position(|w| w == from).unwrap_or_else(|| panic!("{from:?} not found"));
    cat(&[&haystack[..at], to, &haystack[at + from.len()..]])
}

/// Run `data` through the harness of `target`.
pub fn replay(target: &str, data: &[u8]) {
    match target {
        "frame_decoder" => crate::frame_decoder::run(data),
        "frame_header" => crate::frame_header::run(data),
        "handshake_request" => crate::handshake_request::run(data),
        "handshake_response" => crate::handshake_response::run(data),
        "server_connection" => crate::server_connection::run(data),
        "client_connection" => crate::client_connection::run(data),
        "client_session" => crate::client_session::run(data),
        "cluster_message" => crate::cluster_message::run(data),
        "cluster_order" => crate::cluster_order::run(data),
        "stateful_room" => crate::stateful_room::run(data),
        "deflate_negotiation" => crate::deflate_negotiation::run(data),
        other => panic!("unknown target {other}"),
    }
}
