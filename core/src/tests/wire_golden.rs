//! Both wires, byte for byte: golden frames for every envelope in both
//! encodings, the Alepha wire's behaviours (query rooms, client frames,
//! labels, errors), malformed input, round trips, and the examples of
//! `PROTOCOL.md`, which are generated from the real encoders here and
//! checked against the file.
//!
//! To regenerate the examples after a deliberate change:
//! `ROOMWIRE_BLESS=1 cargo test -p roomwire-core --lib wire_golden`.

use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use crate::alepha::{
    self, ClientFrame, DEFAULT_ROOM, NotJson, QueryRoomsError, ROOM_MARKER, SplitError, parse_client_frame,
    resolve_room, rooms_from_query, split_server_frame, write_error_frame, write_server_frame,
};
use crate::envelope::{
    ClientEnvelope, EnvelopeError, ServerEnvelope, Text, code, decode_client, decode_server, encode_client,
    encode_server, push_suffix, write_error, write_push, write_push_prefix,
};
use crate::payload;
use crate::payload::{EncodeError, decode_payload, encode_payload};
use crate::room::{MAX_ROOM_ID_LEN, RoomId, RoomSet};
use crate::wire::{PROTOCOL_JSON, PROTOCOL_POSTCARD, WireFormat};
use crate::{InsufficientSize, json};

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// The typed message of the examples.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Chat<'a> {
    content: &'a str,
}

const HI: Chat<'static> = Chat { content: "hi" };

/// The channel of the examples: refuses empty messages.
struct ChatChannel;

impl crate::channel::Channel for ChatChannel {
    const PATH: &'static str = "/ws/chat";
    type In<'a> = Chat<'a>;
    type Out<'a> = Chat<'a>;

    fn validate(message: &Chat<'_>) -> Result<(), &'static str> {
        if message.content.is_empty() { Err("content must not be empty") } else { Ok(()) }
    }
}

fn rid(s: &str) -> RoomId {
    RoomId::new(s).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace().map(|h| u8::from_str_radix(h, 16).unwrap()).collect()
}

fn payload(format: WireFormat) -> Vec<u8> {
    let mut out = [0u8; 64];
    let n = encode_payload(format, &HI, &mut out).unwrap();
    out[..n].to_vec()
}

fn enc_client(format: WireFormat, env: &ClientEnvelope<'_>) -> Vec<u8> {
    let mut out = vec![0u8; 256];
    let n = encode_client(format, env, &mut out).unwrap();
    out.truncate(n);
    out
}

fn enc_server(format: WireFormat, env: &ServerEnvelope<'_>) -> Vec<u8> {
    let mut out = vec![0u8; 256];
    let n = encode_server(format, env, &mut out).unwrap();
    out.truncate(n);
    out
}

/// One golden frame: the postcard bytes as annotated segments, the JSON
/// text, and what it means.
struct Golden {
    name: &'static str,
    meaning: &'static str,
    postcard: Vec<(&'static str, &'static str)>,
    json: &'static str,
}

impl Golden {
    fn postcard_bytes(&self) -> Vec<u8> {
        self.postcard.iter().flat_map(|(h, _)| unhex(h)).collect()
    }
}

/// Builds a golden's envelope around the payload of its encoding
/// (payloads differ: postcard vs JSON of the same [`Chat`]).
type BuildClient = fn(WireFormat, &[u8]) -> ClientEnvelope<'_>;
type BuildServer = fn(WireFormat, &[u8]) -> ServerEnvelope<'_>;

/// Client → server envelopes.
fn client_goldens() -> Vec<(Golden, BuildClient)> {
    vec![
        (
            Golden {
                name: "join",
                meaning: "join room `lobby`, reference 1",
                postcard: vec![
                    ("00", "variant 0: `join`"),
                    ("01", "`ref` = 1"),
                    ("05 6c 6f 62 62 79", "`room`: length 5, then `lobby`"),
                ],
                json: r#"{"type":"join","ref":1,"room":"lobby"}"#,
            },
            |_, _| ClientEnvelope::Join { reference: 1, room: rid("lobby") },
        ),
        (
            Golden {
                name: "join (multi-byte varint, non-ASCII room)",
                meaning: "join room `é`, reference 300",
                postcard: vec![
                    ("00", "variant 0: `join`"),
                    ("ac 02", "`ref` = 300 = 0x2c + (0x02 << 7)"),
                    ("02 c3 a9", "`room`: length 2, then `é` in UTF-8"),
                ],
                json: r#"{"type":"join","ref":300,"room":"é"}"#,
            },
            |_, _| ClientEnvelope::Join { reference: 300, room: rid("é") },
        ),
        (
            Golden {
                name: "leave",
                meaning: "leave room `lobby`, reference 2",
                postcard: vec![
                    ("01", "variant 1: `leave`"),
                    ("02", "`ref` = 2"),
                    ("05 6c 6f 62 62 79", "`room`: length 5, then `lobby`"),
                ],
                json: r#"{"type":"leave","ref":2,"room":"lobby"}"#,
            },
            |_, _| ClientEnvelope::Leave { reference: 2, room: rid("lobby") },
        ),
        (
            Golden {
                name: "message",
                meaning: "message `{content: \"hi\"}` to room `lobby`",
                postcard: vec![
                    ("02", "variant 2: `message`"),
                    ("05 6c 6f 62 62 79", "`room`: length 5, then `lobby`"),
                    ("02 68 69", "payload, to the end: postcard of `Chat { content: \"hi\" }`"),
                ],
                json: r#"{"type":"message","room":"lobby","data":{"content":"hi"}}"#,
            },
            |_, payload| ClientEnvelope::Message { room: rid("lobby"), payload },
        ),
    ]
}

/// Server → client envelopes.
fn server_goldens() -> Vec<(Golden, BuildServer)> {
    vec![
        (
            Golden {
                name: "ok",
                meaning: "request 1 succeeded",
                postcard: vec![("00", "variant 0: `ok`"), ("01", "`ref` = 1")],
                json: r#"{"type":"ok","ref":1}"#,
            },
            |_, _| ServerEnvelope::Ok { reference: 1 },
        ),
        (
            Golden {
                name: "error (answering a request)",
                meaning: "request 1 failed: invalid room id (4001)",
                postcard: vec![
                    ("01", "variant 1: `error`"),
                    ("01 01", "`ref` = Some(1)"),
                    ("a1 1f", "`code` = 4001 = 0x21 + (0x1f << 7)"),
                    ("0f 69 6e 76 61 6c 69 64 20 72 6f 6f 6d 20 69 64", "`text`: length 15, then `invalid room id`"),
                ],
                json: r#"{"type":"error","ref":1,"code":4001,"text":"invalid room id"}"#,
            },
            |_, _| ServerEnvelope::Error {
                reference: Some(1),
                code: code::INVALID_ROOM_ID,
                text: "invalid room id".into(),
            },
        ),
        (
            Golden {
                name: "error (about a message)",
                meaning: "a message was refused: its room is not joined (4004)",
                postcard: vec![
                    ("01", "variant 1: `error`"),
                    ("00", "`ref` = None"),
                    ("a4 1f", "`code` = 4004"),
                    (
                        "19 6e 6f 74 20 61 20 6d 65 6d 62 65 72 20 6f 66 20 74 68 61 74 20 72 6f 6f 6d",
                        "`text`: length 25, then `not a member of that room`",
                    ),
                ],
                json: r#"{"type":"error","code":4004,"text":"not a member of that room"}"#,
            },
            |_, _| ServerEnvelope::Error {
                reference: None,
                code: code::NOT_A_MEMBER,
                text: "not a member of that room".into(),
            },
        ),
        (
            Golden {
                name: "push (to a room)",
                meaning: "message `{content: \"hi\"}` sent to room `lobby`",
                postcard: vec![
                    ("02", "variant 2: `push`"),
                    ("01 05 6c 6f 62 62 79", "`room` = Some: length 5, then `lobby`"),
                    ("02 68 69", "payload, to the end: postcard of `Chat { content: \"hi\" }`"),
                ],
                json: r#"{"type":"push","room":"lobby","data":{"content":"hi"}}"#,
            },
            |_, payload| ServerEnvelope::Push { room: Some(rid("lobby")), payload },
        ),
        (
            Golden {
                name: "push (to the connection)",
                meaning: "message `{content: \"hi\"}` addressed to this connection, no room",
                postcard: vec![
                    ("02", "variant 2: `push`"),
                    ("00", "`room` = None"),
                    ("02 68 69", "payload, to the end: postcard of `Chat { content: \"hi\" }`"),
                ],
                json: r#"{"type":"push","data":{"content":"hi"}}"#,
            },
            |_, payload| ServerEnvelope::Push { room: None, payload },
        ),
    ]
}

// ---------------------------------------------------------------------------
// Goldens: encode, decode, round trip
// ---------------------------------------------------------------------------

#[test]
fn client_goldens_encode_and_decode() {
    for (golden, build) in client_goldens() {
        let pc_payload = payload(WireFormat::Postcard);
        let env = build(WireFormat::Postcard, &pc_payload);
        let bytes = golden.postcard_bytes();
        assert_eq!(hex(&enc_client(WireFormat::Postcard, &env)), hex(&bytes), "{}", golden.name);
        assert_eq!(decode_client(WireFormat::Postcard, &bytes).unwrap(), env, "{}", golden.name);

        let json_payload = payload(WireFormat::Json);
        let env = build(WireFormat::Json, &json_payload);
        assert_eq!(String::from_utf8(enc_client(WireFormat::Json, &env)).unwrap(), golden.json, "{}", golden.name);
        assert_eq!(decode_client(WireFormat::Json, golden.json.as_bytes()).unwrap(), env, "{}", golden.name);
        assert!(json::validate(golden.json.as_bytes()).is_ok());
    }
}

#[test]
fn server_goldens_encode_and_decode() {
    for (golden, build) in server_goldens() {
        let pc_payload = payload(WireFormat::Postcard);
        let env = build(WireFormat::Postcard, &pc_payload);
        let bytes = golden.postcard_bytes();
        assert_eq!(hex(&enc_server(WireFormat::Postcard, &env)), hex(&bytes), "{}", golden.name);
        assert_eq!(decode_server(WireFormat::Postcard, &bytes).unwrap(), env, "{}", golden.name);

        let json_payload = payload(WireFormat::Json);
        let env = build(WireFormat::Json, &json_payload);
        assert_eq!(String::from_utf8(enc_server(WireFormat::Json, &env)).unwrap(), golden.json, "{}", golden.name);
        assert_eq!(decode_server(WireFormat::Json, golden.json.as_bytes()).unwrap(), env, "{}", golden.name);
        assert!(json::validate(golden.json.as_bytes()).is_ok());
    }
}

#[test]
fn typed_payloads_of_goldens() {
    let pc = payload(WireFormat::Postcard);
    assert_eq!(pc, [0x02, b'h', b'i']);
    assert_eq!(decode_payload::<Chat>(WireFormat::Postcard, &pc, &mut []).unwrap(), HI);
    let js = payload(WireFormat::Json);
    assert_eq!(js, br#"{"content":"hi"}"#);
    assert_eq!(decode_payload::<Chat>(WireFormat::Json, &js, &mut []).unwrap(), HI);
    // A message's payload, decoded as the channel's type.
    let ClientEnvelope::Message { payload, .. } = decode_client(WireFormat::Postcard, b"\x02\x01a\x02hi").unwrap()
    else {
        panic!()
    };
    assert_eq!(payload::decode_message::<ChatChannel>(WireFormat::Postcard, payload, &mut []).unwrap(), HI);
}

/// The postcard encoding is postcard's own for the equivalent serde enums,
/// payload aside.
#[test]
fn postcard_layout_is_postcards() {
    #[derive(Serialize)]
    enum Client<'a> {
        Join { reference: u32, room: &'a str },
        Leave { reference: u32, room: &'a str },
        Message { room: &'a str },
    }
    #[derive(Serialize)]
    enum Server<'a> {
        Ok { reference: u32 },
        Error { reference: Option<u32>, code: u16, text: &'a str },
        Push { room: Option<&'a str> },
    }
    fn pc<T: Serialize>(v: &T) -> Vec<u8> {
        let mut out = [0u8; 256];
        postcard::to_slice(v, &mut out).unwrap().to_vec()
    }
    let room = "é-room";
    let text = "x".repeat(200); // two-byte length varint
    for reference in [0, 1, 127, 128, 300, 16_384, u32::MAX] {
        let env = ClientEnvelope::Join { reference, room: rid(room) };
        assert_eq!(enc_client(WireFormat::Postcard, &env), pc(&Client::Join { reference, room }));
        let env = ClientEnvelope::Leave { reference, room: rid(room) };
        assert_eq!(enc_client(WireFormat::Postcard, &env), pc(&Client::Leave { reference, room }));
        let env = ServerEnvelope::Ok { reference };
        assert_eq!(enc_server(WireFormat::Postcard, &env), pc(&Server::Ok { reference }));
        for reference in [None, Some(reference)] {
            for code in [0, 127, 128, code::MALFORMED, code::RATE_LIMITED, u16::MAX] {
                let env = ServerEnvelope::Error { reference, code, text: Text::Plain(&text) };
                assert_eq!(enc_server(WireFormat::Postcard, &env), pc(&Server::Error { reference, code, text: &text }));
            }
        }
    }
    let mut expected = pc(&Client::Message { room });
    expected.extend_from_slice(b"\x01\x02\x03");
    let env = ClientEnvelope::Message { room: rid(room), payload: b"\x01\x02\x03" };
    assert_eq!(enc_client(WireFormat::Postcard, &env), expected);
    for r in [None, Some(room)] {
        let mut expected = pc(&Server::Push { room: r });
        expected.extend_from_slice(b"\x2a");
        let env = ServerEnvelope::Push { room: r.map(rid), payload: b"\x2a" };
        assert_eq!(enc_server(WireFormat::Postcard, &env), expected);
    }
}

#[test]
fn push_prefix_plus_payload_is_the_push() {
    for format in [WireFormat::Postcard, WireFormat::Json] {
        let p = payload(format);
        for room in [None, Some("lobby"), Some("quote\"room")] {
            let whole = enc_server(format, &ServerEnvelope::Push { room: room.map(rid), payload: &p });
            let mut prefix = [0u8; 128];
            let n = write_push_prefix(format, room, &mut prefix).unwrap();
            let mut joined = prefix[..n].to_vec();
            joined.extend_from_slice(&p);
            joined.extend_from_slice(push_suffix(format));
            assert_eq!(joined, whole);
            let mut out = [0u8; 128];
            let n = write_push(format, room, &p, &mut out).unwrap();
            assert_eq!(&out[..n], &whole[..]);
        }
    }
}

#[test]
fn write_error_equals_encoded_error() {
    for format in [WireFormat::Postcard, WireFormat::Json] {
        for reference in [None, Some(9)] {
            let text = "bad \"room\"\n";
            let env =
                enc_server(format, &ServerEnvelope::Error { reference, code: code::HANDLER_ERROR, text: text.into() });
            let mut out = [0u8; 128];
            let n = write_error(format, reference, code::HANDLER_ERROR, text, &mut out).unwrap();
            assert_eq!(&out[..n], &env[..]);
            // From a decoded JSON text (still escaped), re-encoded.
            let json_frame = enc_server(
                WireFormat::Json,
                &ServerEnvelope::Error { reference, code: code::HANDLER_ERROR, text: text.into() },
            );
            let decoded = decode_server(WireFormat::Json, &json_frame).unwrap();
            let ServerEnvelope::Error { text: decoded_text, .. } = decoded else { panic!() };
            assert!(matches!(decoded_text, Text::Json(_)));
            assert!(decoded_text.eq_str(text));
            assert_eq!(
                enc_server(format, &ServerEnvelope::Error { reference, code: code::HANDLER_ERROR, text: decoded_text }),
                env
            );
        }
    }
    // A Display error as the text, e.g. a validation failure.
    let err = payload::decode_message::<ChatChannel>(WireFormat::Json, b"{}", &mut []).unwrap_err();
    let mut out = [0u8; 256];
    let n = write_error(WireFormat::Json, None, code::VALIDATION_FAILED, &err, &mut out).unwrap();
    let ServerEnvelope::Error { code: 4005, text, reference: None } =
        decode_server(WireFormat::Json, &out[..n]).unwrap()
    else {
        panic!()
    };
    assert!(text.to_string().starts_with("Message validation failed: "), "{text}");
}

#[test]
fn undersized_output_is_untouched() {
    let env = ServerEnvelope::Error { reference: Some(1), code: 4001, text: "invalid room id".into() };
    for format in [WireFormat::Postcard, WireFormat::Json] {
        let full = enc_server(format, &env);
        let mut out = vec![0xEEu8; full.len() - 1];
        assert_eq!(encode_server(format, &env, &mut out), Err(InsufficientSize { required: full.len() }));
        assert!(out.iter().all(|&b| b == 0xEE));
        let join = ClientEnvelope::Join { reference: 1, room: rid("lobby") };
        let full = enc_client(format, &join);
        let mut out = vec![0xEEu8; full.len() - 1];
        assert_eq!(encode_client(format, &join, &mut out), Err(InsufficientSize { required: full.len() }));
        assert!(out.iter().all(|&b| b == 0xEE));
    }
    // Typed payloads report the size where the encoder can measure it.
    let mut small = [0u8; 2];
    assert_eq!(
        encode_payload(WireFormat::Postcard, &HI, &mut small),
        Err(EncodeError::InsufficientSize(InsufficientSize { required: 3 }))
    );
    let json_err = encode_payload(WireFormat::Json, &HI, &mut small).unwrap_err();
    if cfg!(feature = "std") {
        assert_eq!(json_err, EncodeError::InsufficientSize(InsufficientSize { required: 16 }));
    } else {
        assert_eq!(json_err, EncodeError::BufferFull);
    }
}

// ---------------------------------------------------------------------------
// Malformed envelopes
// ---------------------------------------------------------------------------

fn client_err(format: WireFormat, bytes: &[u8]) -> EnvelopeError {
    decode_client(format, bytes).expect_err(&format!("{bytes:02x?} should not decode"))
}

fn server_err(format: WireFormat, bytes: &[u8]) -> EnvelopeError {
    decode_server(format, bytes).expect_err(&format!("{bytes:02x?} should not decode"))
}

#[test]
fn malformed_postcard() {
    let pc = WireFormat::Postcard;
    let malformed = |e: EnvelopeError, reference: Option<u32>, reason: &str| {
        assert_eq!((e.code, e.reference, e.reason), (code::MALFORMED, reference, reason));
    };
    // Empty and truncated.
    malformed(client_err(pc, b""), None, "truncated envelope");
    malformed(client_err(pc, b"\x00"), None, "truncated envelope");
    malformed(client_err(pc, b"\x00\x80"), None, "truncated envelope"); // varint cut short
    malformed(client_err(pc, b"\x00\x01"), Some(1), "truncated envelope");
    malformed(client_err(pc, b"\x00\x01\x05lob"), Some(1), "truncated envelope");
    malformed(client_err(pc, b"\x02\x05lob"), None, "truncated envelope");
    malformed(client_err(pc, b"\x00\x01\xff\xff\xff\xff\x0f"), Some(1), "truncated envelope");
    malformed(server_err(pc, b"\x01\x01"), None, "truncated envelope");
    malformed(server_err(pc, b"\x01\x00\xa4\x1f\x05ab"), None, "truncated envelope");
    // Varint overflow: a sixth byte, or bits beyond 32 (or 16) in the last.
    malformed(client_err(pc, b"\x00\xff\xff\xff\xff\xff\x01"), None, "varint overflow");
    malformed(client_err(pc, b"\x00\xff\xff\xff\xff\x1f\x01a"), None, "varint overflow");
    malformed(client_err(pc, b"\x80\x80\x80\x80\x80\x80"), None, "varint overflow");
    malformed(server_err(pc, b"\x01\x00\xff\xff\x04\x00"), None, "varint overflow"); // code > u16
    malformed(server_err(pc, b"\x01\x00\xff\xff\xff\x00"), None, "varint overflow");
    // Non-minimal varints are accepted, as by postcard.
    assert_eq!(decode_server(pc, b"\x00\x81\x00").unwrap(), ServerEnvelope::Ok { reference: 1 });
    assert_eq!(postcard::from_bytes::<u32>(b"\x81\x00").unwrap(), 1);
    // Unknown discriminants.
    for tag in [3u8, 4, 0x7f] {
        malformed(client_err(pc, &[tag, 1, 1, b'a']), None, "unknown envelope type");
        malformed(server_err(pc, &[tag, 1]), None, "unknown envelope type");
    }
    malformed(client_err(pc, b"\x80\x01\x01\x01a"), None, "unknown envelope type"); // 128
    // Bad option tags.
    malformed(server_err(pc, b"\x01\x02\x01\xa1\x1f\x00"), None, "invalid option tag");
    malformed(server_err(pc, b"\x02\x02"), None, "invalid option tag");
    // Invalid UTF-8 in a room or a text.
    malformed(client_err(pc, b"\x00\x01\x02\xc3\x28"), Some(1), "invalid UTF-8 in string");
    malformed(client_err(pc, b"\x02\x01\xff"), None, "invalid UTF-8 in string");
    malformed(server_err(pc, b"\x01\x00\xa1\x1f\x01\xff"), None, "invalid UTF-8 in string");
    malformed(server_err(pc, b"\x02\x01\x02\xed\xa0"), None, "invalid UTF-8 in string"); // surrogate
    // Trailing bytes where the layout is closed (payloads run to the end).
    malformed(client_err(pc, b"\x00\x01\x01a\x00"), Some(1), "trailing bytes after envelope");
    malformed(client_err(pc, b"\x01\x01\x01a\x00"), Some(1), "trailing bytes after envelope");
    malformed(server_err(pc, b"\x00\x01\x00"), None, "trailing bytes after envelope");
    malformed(server_err(pc, b"\x01\x00\xa1\x1f\x01ax"), None, "trailing bytes after envelope");
    // Invalid room ids: 4001, with the reference when there is one.
    let e = client_err(pc, b"\x00\x07\x00");
    assert_eq!((e.code, e.reference), (code::INVALID_ROOM_ID, Some(7)));
    let mut long = vec![0x00, 0x08, 65];
    long.extend_from_slice(&[b'x'; 65]);
    let e = client_err(pc, &long);
    assert_eq!((e.code, e.reference), (code::INVALID_ROOM_ID, Some(8)));
    long[2] = 64;
    long.pop();
    assert!(matches!(decode_client(pc, &long), Ok(ClientEnvelope::Join { reference: 8, .. })));
    assert_eq!(client_err(pc, b"\x02\x00").code, code::INVALID_ROOM_ID);
    assert_eq!(server_err(pc, b"\x02\x01\x00").code, code::INVALID_ROOM_ID);
    // Empty payloads are allowed by the envelope (the typed decode decides).
    assert_eq!(decode_client(pc, b"\x02\x01a").unwrap(), ClientEnvelope::Message { room: rid("a"), payload: b"" });
}

#[test]
fn malformed_json() {
    let js = WireFormat::Json;
    let check = |bytes: &str, code: u16, reference: Option<u32>| {
        let e = client_err(js, bytes.as_bytes());
        assert_eq!((e.code, e.reference), (code, reference), "{bytes}: {e}");
    };
    for bad in [
        "",
        "join",
        "[]",
        "\"join\"",
        "{",
        r#"{"type":"join","ref":1,"room":"a",}"#,
        r#"{"ref":1,"room":"a"}"#,
        r#"{"type":1,"ref":1,"room":"a"}"#,
        r#"{"type":"JOIN","ref":1,"room":"a"}"#,
        r#"{"type":"subscribe","ref":1,"room":"a"}"#,
        r#"{"type":"join","room":"a"}"#,
        r#"{"type":"join","ref":-1,"room":"a"}"#,
        r#"{"type":"join","ref":1.0,"room":"a"}"#,
        r#"{"type":"join","ref":"1","room":"a"}"#,
        r#"{"type":"join","ref":4294967296,"room":"a"}"#,
        r#"{"type":"join","ref":null,"room":"a"}"#,
        r#"{"type":"message","room":"a"}"#,
        r#"{"type":"message","data":1}"#,
        r#"{"type":"message","room":5,"data":1}"#,
        "{\"type\":\"join\",\"ref\":1,\"room\":\"\u{1}\"}",
    ] {
        check(bad, code::MALFORMED, None);
    }
    check(r#"{"type":"join","ref":3}"#, code::MALFORMED, Some(3));
    check(r#"{"type":"join","ref":3,"room":7}"#, code::MALFORMED, Some(3));
    check(r#"{"type":"join","ref":3,"room":""}"#, code::INVALID_ROOM_ID, Some(3));
    let long = "x".repeat(MAX_ROOM_ID_LEN + 1);
    check(&format!(r#"{{"type":"leave","ref":4,"room":"{long}"}}"#), code::INVALID_ROOM_ID, Some(4));
    // 64 bytes once unescaped is fine, even if longer escaped.
    let escaped = "\\u0078".repeat(MAX_ROOM_ID_LEN);
    let frame = format!(r#"{{"type":"join","ref":5,"room":"{escaped}"}}"#);
    let env = decode_client(js, frame.as_bytes()).unwrap();
    assert_eq!(env, ClientEnvelope::Join { reference: 5, room: rid(&"x".repeat(MAX_ROOM_ID_LEN)) });
    check(r#"{"type":"message","room":"","data":1}"#, code::INVALID_ROOM_ID, None);

    // Server side.
    for bad in [
        r#"{"type":"ok"}"#,
        r#"{"type":"ok","ref":-1}"#,
        r#"{"type":"error","code":4000}"#,
        r#"{"type":"error","text":"x"}"#,
        r#"{"type":"error","code":65536,"text":"x"}"#,
        r#"{"type":"error","code":4000,"text":1}"#,
        r#"{"type":"error","ref":"1","code":4000,"text":"x"}"#,
        r#"{"type":"push","room":"a"}"#,
        r#"{"type":"push","room":1,"data":1}"#,
        r#"{"type":"pong"}"#,
    ] {
        let e = server_err(js, bad.as_bytes());
        assert_eq!(e.code, code::MALFORMED, "{bad}");
    }
}

#[test]
fn json_decoding_is_forgiving_where_specified() {
    let js = WireFormat::Json;
    // Any member order, unknown members, whitespace, escaped names.
    let env = decode_client(js, br#" { "v" : [1,{"x":null}], "room" : "a" , "ref" : 9 , "type" : "join" } "#).unwrap();
    assert_eq!(env, ClientEnvelope::Join { reference: 9, room: rid("a") });
    let env = decode_client(js, br#"{"\u0074ype":"le\u0061ve","r\u0065f":9,"room":"\u00e9"}"#).unwrap();
    assert_eq!(env, ClientEnvelope::Leave { reference: 9, room: rid("é") });
    // The last of repeated members wins, as in JSON.parse.
    let env = decode_client(js, br#"{"type":"leave","ref":1,"room":"a","type":"join","ref":2}"#).unwrap();
    assert_eq!(env, ClientEnvelope::Join { reference: 2, room: rid("a") });
    // `data` is any JSON value, raw.
    let env = decode_client(js, br#"{"data": [1, "two"] ,"type":"message","room":"a"}"#).unwrap();
    assert_eq!(env, ClientEnvelope::Message { room: rid("a"), payload: br#"[1, "two"]"# });
    // Optional members may be null.
    let env = decode_server(js, br#"{"type":"push","room":null,"data":0}"#).unwrap();
    assert_eq!(env, ServerEnvelope::Push { room: None, payload: b"0" });
    let env = decode_server(js, br#"{"type":"error","ref":null,"code":4000,"text":"x"}"#).unwrap();
    assert_eq!(env, ServerEnvelope::Error { reference: None, code: 4000, text: "x".into() });
}

// ---------------------------------------------------------------------------
// Round trips and robustness
// ---------------------------------------------------------------------------

fn room_strategy() -> impl Strategy<Value = String> {
    // 1..=64 bytes, multi-byte characters and JSON-special ones included.
    proptest::string::string_regex("[a-z0-9:\"\\\\/é😀\u{1}\n -]{1,16}")
        .unwrap()
        .prop_filter("room id length", |s| !s.is_empty() && s.len() <= MAX_ROOM_ID_LEN)
}

proptest! {
    #[test]
    fn client_round_trip(kind in 0..3u8, reference: u32, room in room_strategy(), payload in proptest::collection::vec(any::<u8>(), 0..20)) {
        let json_payload = format!("{:?}", payload.iter().map(|b| u32::from(*b)).collect::<Vec<_>>()).into_bytes();
        for (format, payload) in [(WireFormat::Postcard, &payload[..]), (WireFormat::Json, &json_payload[..])] {
            let env = match kind {
                0 => ClientEnvelope::Join { reference, room: rid(&room) },
                1 => ClientEnvelope::Leave { reference, room: rid(&room) },
                _ => ClientEnvelope::Message { room: rid(&room), payload },
            };
            let bytes = enc_client(format, &env);
            prop_assert_eq!(decode_client(format, &bytes).unwrap(), env);
        }
    }

    #[test]
    fn server_round_trip(kind in 0..3u8, reference: Option<u32>, code: u16, text in "\\PC{0,40}", room in proptest::option::of(room_strategy())) {
        for (format, payload) in [(WireFormat::Postcard, &b"\x00\xff"[..]), (WireFormat::Json, &b"{\"a\":[]}"[..])] {
            let env = match kind {
                0 => ServerEnvelope::Ok { reference: reference.unwrap_or(0) },
                1 => ServerEnvelope::Error { reference, code, text: Text::Plain(&text) },
                _ => ServerEnvelope::Push { room: room.as_deref().map(rid), payload },
            };
            let mut out = vec![0u8; 512];
            let n = encode_server(format, &env, &mut out).unwrap();
            prop_assert_eq!(decode_server(format, &out[..n]).unwrap(), env);
        }
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        for format in [WireFormat::Postcard, WireFormat::Json, WireFormat::Alepha] {
            let _ = decode_client(format, &bytes);
            let _ = decode_server(format, &bytes);
            let _ = decode_payload::<Chat>(format, &bytes, &mut [0u8; 16]);
        }
        let _ = json::validate(&bytes);
        let _ = parse_client_frame(&bytes);
        let mut out = [0u8; 64];
        let _ = split_server_frame(&bytes, &mut out);
        let _ = write_server_frame(&bytes, Some("r"), &mut out);
        if let Ok(text) = core::str::from_utf8(&bytes) {
            let mut rooms = RoomSet::<4>::new();
            let _ = rooms_from_query(Some(text), |_| true, &mut rooms);
        }
    }

    #[test]
    fn json_ish_input_never_panics(doc in "[\\[\\]{}\",:0-9a-z\\\\ .eE+-]{0,40}") {
        let bytes = doc.as_bytes();
        let valid = json::validate(bytes).is_ok();
        let _ = decode_client(WireFormat::Json, bytes);
        let frame = parse_client_frame(bytes);
        prop_assert_eq!(frame.is_ok(), valid);
        if let Ok(ClientFrame { message, .. }) = frame {
            prop_assert!(json::validate(message).is_ok());
        }
        let _ = decode_payload::<Chat>(WireFormat::Json, bytes, &mut [0u8; 16]);
    }

    #[test]
    fn query_never_panics(query in "[a-zA-Z%+=&,#?0-9 é]{0,60}") {
        let mut rooms = RoomSet::<8>::new();
        if rooms_from_query(Some(&query), |_| true, &mut rooms).is_ok() {
            prop_assert!(!rooms.is_empty());
        }
    }

    #[test]
    fn every_prefix_of_a_golden_is_handled(cut in 0usize..64) {
        for (golden, _) in client_goldens() {
            let bytes = golden.postcard_bytes();
            let _ = decode_client(WireFormat::Postcard, &bytes[..cut.min(bytes.len())]);
            let text = golden.json.as_bytes();
            let _ = decode_client(WireFormat::Json, &text[..cut.min(text.len())]);
        }
        for (golden, _) in server_goldens() {
            let bytes = golden.postcard_bytes();
            let _ = decode_server(WireFormat::Postcard, &bytes[..cut.min(bytes.len())]);
        }
    }

    #[test]
    fn labelling_then_splitting_restores_the_payload(content in "\\PC{0,20}", room in room_strategy()) {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Msg { content: String, n: u32 }
        let msg = Msg { content, n: 7 };
        let mut payload = [0u8; 256];
        let n = payload::encode_payload(WireFormat::Alepha, &msg, &mut payload).unwrap();
        let mut frame = [0u8; 512];
        let m = write_server_frame(&payload[..n], Some(&room), &mut frame).unwrap();
        prop_assert!(json::validate(&frame[..m]).is_ok());
        let mut out = [0u8; 512];
        let (label, stripped) = split_server_frame(&frame[..m], &mut out).unwrap();
        prop_assert_eq!(label.as_deref(), Some(room.as_str()));
        prop_assert_eq!(stripped, &payload[..n]);
    }
}

// ---------------------------------------------------------------------------
// Alepha wire: behaviours
// ---------------------------------------------------------------------------

fn query_rooms(query: Option<&str>) -> Vec<String> {
    let mut rooms = RoomSet::<8>::new();
    rooms_from_query(query, |_| true, &mut rooms).unwrap();
    rooms.iter().map(|r| r.to_string()).collect()
}

#[test]
fn behaviours_99_to_101_query_rooms() {
    // 99: ?roomId=lobby → ["lobby"].
    assert_eq!(query_rooms(Some("roomId=lobby")), ["lobby"]);
    // 100: no room parameter → ["default"].
    assert_eq!(query_rooms(None), [DEFAULT_ROOM]);
    assert_eq!(query_rooms(Some("")), [DEFAULT_ROOM]);
    assert_eq!(query_rooms(Some("token=abc")), [DEFAULT_ROOM]);
    // 101: ?roomIds=a,b,c → ["a","b","c"].
    assert_eq!(query_rooms(Some("roomIds=a,b,c")), ["a", "b", "c"]);
    // Mixed: every roomId first, then roomIds, trimmed, empties dropped.
    assert_eq!(query_rooms(Some("roomIds= a, ,b&roomId=x")), ["x", "a", "b"]);
    assert_eq!(query_rooms(Some("roomId=x&roomIds=%20a,%20,b")), ["x", "a", "b"]);
    assert_eq!(query_rooms(Some("roomId=a&roomId=b")), ["a", "b"]);
    // Percent-encoded ids.
    assert_eq!(query_rooms(Some("roomId=chat%3Ageneral&roomIds=caf%C3%A9,a%2Cb")), ["chat:general", "café", "a", "b"]);
    // Duplicates are idempotent.
    assert_eq!(query_rooms(Some("roomId=a&roomIds=a,b,a")), ["a", "b"]);
    // The default room is never validated; named rooms are.
    let mut rooms = RoomSet::<2>::new();
    rooms_from_query(None, |_| false, &mut rooms).unwrap();
    assert_eq!(rooms.first().unwrap(), DEFAULT_ROOM);
    let mut rooms = RoomSet::<2>::new();
    assert_eq!(rooms_from_query(Some("roomId=x"), |_| false, &mut rooms), Err(QueryRoomsError::InvalidRoomId));
    let mut rooms = RoomSet::<2>::new();
    let uuid_only = |r: &str| r.len() == 36;
    assert_eq!(rooms_from_query(Some("roomId=not-a-uuid"), uuid_only, &mut rooms), Err(QueryRoomsError::InvalidRoomId));
    // Too long once decoded.
    let long = "r".repeat(MAX_ROOM_ID_LEN + 1);
    let mut rooms = RoomSet::<2>::new();
    assert_eq!(
        rooms_from_query(Some(&format!("roomId={long}")), |_| true, &mut rooms),
        Err(QueryRoomsError::InvalidRoomId)
    );
    // The channel's default validation.
    use crate::channel::Channel;
    let mut rooms = RoomSet::<2>::new();
    rooms_from_query(Some("roomId=ok"), ChatChannel::validate_room_id, &mut rooms).unwrap();
}

#[test]
fn client_frames() {
    // Enveloped: the room claim and the message.
    let f = parse_client_frame(br#"{"roomId":"room-1","message":{"content":"Hello from client 1!"}}"#).unwrap();
    assert_eq!(f.claimed_room.as_deref(), Some("room-1"));
    assert_eq!(f.message, br#"{"content":"Hello from client 1!"}"#);
    // Bare payload.
    let f = parse_client_frame(br#"{"content":"hi"}"#).unwrap();
    assert_eq!((f.claimed_room, f.message), (None, &br#"{"content":"hi"}"#[..]));
    // A falsy message falls back to the whole frame (JavaScript `||`).
    for falsy in ["0", "-0", "0.0", "\"\"", "false", "null"] {
        let frame = format!(r#"{{"roomId":"a","message":{falsy}}}"#);
        let f = parse_client_frame(frame.as_bytes()).unwrap();
        assert_eq!(f.message, frame.as_bytes(), "{falsy}");
        assert_eq!(f.claimed_room.as_deref(), Some("a"));
    }
    // Truthy non-objects are payloads too.
    for truthy in ["1", "\"text\"", "[]", "{}", "true", "\"0\""] {
        let frame = format!(r#"{{"message":{truthy}}}"#);
        assert_eq!(parse_client_frame(frame.as_bytes()).unwrap().message, truthy.as_bytes());
    }
    // Non-string, empty, too long or escaped room ids.
    for (room, claim) in [
        ("5", None),
        ("null", None),
        ("[\"a\"]", None),
        ("\"\"", None),
        (&*format!("\"{}\"", "r".repeat(65)), None),
        ("\"r\\u00e9\"", Some("ré")),
    ] {
        let frame = format!(r#"{{"roomId":{room},"message":{{}}}}"#);
        assert_eq!(parse_client_frame(frame.as_bytes()).unwrap().claimed_room.as_deref(), claim, "{room}");
    }
    // Top-level non-objects are bare payloads.
    for doc in ["[1,2]", "\"s\"", "42", "null", " true "] {
        let f = parse_client_frame(doc.as_bytes()).unwrap();
        assert_eq!((f.claimed_room, f.message), (None, doc.trim().as_bytes()));
    }
    // Behaviour 105: non-JSON is refused, to be dropped.
    for bad in [&b"hello"[..], b"", b"{", b"{\"a\":1,}", b"\xff", b"{'a':1}", b"NaN"] {
        assert_eq!(parse_client_frame(bad), Err(NotJson), "{bad:?}");
    }
}

#[test]
fn behaviour_90_spoofed_room_is_handled_in_the_first_room() {
    let mut rooms = RoomSet::<4>::new();
    rooms_from_query(Some("roomIds=room-a,room-b"), |_| true, &mut rooms).unwrap();
    let frame = parse_client_frame(br#"{"roomId":"room-z","message":{"content":"x"}}"#).unwrap();
    assert_eq!(resolve_room(frame.claimed_room.as_deref(), &rooms), Some("room-a"));
    let frame = parse_client_frame(br#"{"roomId":"room-b","message":{"content":"x"}}"#).unwrap();
    assert_eq!(resolve_room(frame.claimed_room.as_deref(), &rooms), Some("room-b"));
    let frame = parse_client_frame(br#"{"content":"x"}"#).unwrap();
    assert_eq!(resolve_room(frame.claimed_room.as_deref(), &rooms), Some("room-a"));
    // A connection in no room (taken out of every room by the server) acts in none.
    assert_eq!(resolve_room(Some("x"), &RoomSet::<1>::new()), None);
}

#[test]
fn behaviours_103_104_typed_messages() {
    let f = parse_client_frame(br#"{"roomId":"lobby","message":{"content":"hello"}}"#).unwrap();
    let msg = alepha::decode_message::<ChatChannel>(f.message, &mut [0u8; 32]).unwrap();
    assert_eq!(msg, Chat { content: "hello" });
    // Invalid: the error frame's `error` member is defined.
    let f = parse_client_frame(br#"{"message":{"text":"hello"}}"#).unwrap();
    let err = alepha::decode_message::<ChatChannel>(f.message, &mut [0u8; 32]).unwrap_err();
    let mut out = [0u8; 256];
    let n = write_error_frame(&err, &mut out).unwrap();
    let members: Vec<_> = json::object_members(&out[..n]).unwrap().unwrap().collect();
    assert_eq!(members.len(), 1);
    assert!(members[0].0.eq_str("error"));
    let text = json::as_string(members[0].1).unwrap().to_string();
    assert!(text.starts_with("Message validation failed: "), "{text}");
}

#[test]
fn label_injection_goldens() {
    let label = |payload: &str, room: Option<&str>| {
        let mut out = [0u8; 256];
        let n = write_server_frame(payload.as_bytes(), room, &mut out).unwrap();
        String::from_utf8(out[..n].to_vec()).unwrap()
    };
    assert_eq!(label(r#"{"a":1}"#, Some("r")), r#"{"a":1,"__alephaRoom":"r"}"#);
    assert_eq!(label("{}", Some("r")), r#"{"__alephaRoom":"r"}"#);
    assert_eq!(label(" { } \n", Some("r")), r#" { "__alephaRoom":"r"} "#.to_string() + "\n");
    assert_eq!(label(r#"{"a":{}}"#, Some("r")), r#"{"a":{},"__alephaRoom":"r"}"#);
    assert_eq!(
        label(r#"{"type":"append","content":"Hello"}"#, Some("room-1")),
        r#"{"type":"append","content":"Hello","__alephaRoom":"room-1"}"#
    );
    // The room is JSON-escaped.
    assert_eq!(label("{}", Some("a\"b\\c\n\u{1}é")), r#"{"__alephaRoom":"a\"b\\c\n\u0001é"}"#);
    // No label, or a non-object payload: verbatim.
    assert_eq!(label(r#"{"a":1}"#, None), r#"{"a":1}"#);
    for verbatim in ["[1,2]", "\"s\"", "3", "null", ""] {
        assert_eq!(label(verbatim, Some("r")), verbatim);
    }
    assert_eq!(ROOM_MARKER, "__alephaRoom");
    // Undersized output: untouched, exact size.
    let mut out = [0xEE; 10];
    assert_eq!(write_server_frame(b"{}", Some("r"), &mut out), Err(InsufficientSize { required: 20 }));
    assert_eq!(out, [0xEE; 10]);
}

#[test]
fn error_frame_golden() {
    let mut out = [0u8; 128];
    let n = write_error_frame("bad shape", &mut out).unwrap();
    assert_eq!(&out[..n], br#"{"error":"bad shape"}"#);
    let n = write_error_frame("Unknown error", &mut out).unwrap();
    assert_eq!(&out[..n], br#"{"error":"Unknown error"}"#);
    let n = write_error_frame("say \"hi\"\n", &mut out).unwrap();
    assert_eq!(&out[..n], br#"{"error":"say \"hi\"\n"}"#);
    assert_eq!(write_error_frame("x", &mut [0u8; 5]), Err(InsufficientSize { required: 13 }));
}

#[test]
fn behaviours_86_87_client_sees_the_message_without_marker() {
    // An emit to room-a reaches the socket subscribed to room-a and
    // room-b labelled room-a; the handler sees exactly the emitted message.
    let emitted = br#"{"type":"chat","content":"hello"}"#;
    let mut frame = [0u8; 128];
    let n = write_server_frame(emitted, Some("room-a"), &mut frame).unwrap();
    let mut out = [0u8; 128];
    let (room, payload) = split_server_frame(&frame[..n], &mut out).unwrap();
    assert_eq!(room.as_deref(), Some("room-a"));
    assert_eq!(payload, emitted);
    // Unlabelled frames come back as they are, without a copy.
    let (room, payload) = split_server_frame(emitted, &mut out).unwrap();
    assert_eq!((room, payload.as_ptr()), (None, emitted.as_ptr()));
    assert_eq!(split_server_frame(b"not json", &mut out), Err(SplitError::NotJson));
}

/// Alepha's `t.union` of tagged objects is an internally tagged enum;
/// deserializing one needs serde's buffering (`alloc`) and a
/// self-describing deserializer (`serde_json`, under `std`).
#[cfg(feature = "std")]
#[test]
fn typed_round_trip_internally_tagged() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "lowercase")]
    enum ChatIn {
        Append { content: String, username: String },
        System { message: String },
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "lowercase")]
    enum ChatOut {
        Say { content: String },
        Typing,
    }
    crate::channel! {
        /// Tagged chat.
        struct Tagged { path: "/ws/tagged", in: ChatIn, out: ChatOut }
    }

    let msg = ChatIn::Append { content: "Hello \"you\"".into(), username: "ws-1".into() };
    let mut payload = [0u8; 128];
    let n = alepha::encode_payload::<Tagged>(&msg, &mut payload).unwrap();
    assert_eq!(&payload[..n], br#"{"type":"append","content":"Hello \"you\"","username":"ws-1"}"#);
    let mut frame = [0u8; 160];
    let m = write_server_frame(&payload[..n], Some("room-1"), &mut frame).unwrap();
    assert_eq!(
        &frame[..m],
        br#"{"type":"append","content":"Hello \"you\"","username":"ws-1","__alephaRoom":"room-1"}"#
    );
    let mut out = [0u8; 160];
    let (_, stripped) = split_server_frame(&frame[..m], &mut out).unwrap();
    assert_eq!(serde_json::from_slice::<ChatIn>(stripped).unwrap(), msg);

    let f = parse_client_frame(br#"{"roomId":"room-1","message":{"type":"say","content":"hi"}}"#).unwrap();
    assert_eq!(alepha::decode_message::<Tagged>(f.message, &mut []).unwrap(), ChatOut::Say { content: "hi".into() });
    let f = parse_client_frame(br#"{"type":"typing"}"#).unwrap();
    assert_eq!(alepha::decode_message::<Tagged>(f.message, &mut []).unwrap(), ChatOut::Typing);
    let err = alepha::decode_message::<Tagged>(br#"{"type":"shout"}"#, &mut []).unwrap_err();
    assert!(err.to_string().starts_with("Message validation failed: unknown variant `shout`"), "{err}");

    // The same enum on the roomwire wire, both encodings.
    for format in [WireFormat::Postcard, WireFormat::Json] {
        let mut buf = [0u8; 128];
        let n = encode_payload(format, &ChatOut::Say { content: "hi".into() }, &mut buf).unwrap();
        let msg = payload::decode_message::<Tagged>(format, &buf[..n], &mut []);
        // Postcard is not self-describing: internally tagged enums cannot
        // be deserialized from it (use externally tagged enums there).
        match format {
            WireFormat::Postcard => assert!(msg.is_err()),
            _ => assert_eq!(msg.unwrap(), ChatOut::Say { content: "hi".into() }),
        }
    }
}

/// Without `std`, escaped strings are unescaped into the scratch buffer.
#[test]
fn typed_decoding_with_escapes() {
    #[derive(Debug, PartialEq, Deserialize)]
    struct Owned {
        content: heapless::String<32>,
    }
    let doc = br#"{"content":"caf\u00e9 \"x\""}"#;
    let msg: Owned = decode_payload(WireFormat::Json, doc, &mut [0u8; 32]).unwrap();
    assert_eq!(msg.content.as_str(), "café \"x\"");
    // Borrowed &str cannot hold an escaped string, with either backend.
    assert!(decode_payload::<Chat>(WireFormat::Json, doc, &mut [0u8; 32]).is_err());
    // Nesting beyond the limit is refused before the deserializer runs.
    let deep = format!("{}{}", "[".repeat(json::MAX_DEPTH + 1), "]".repeat(json::MAX_DEPTH + 1));
    let err = decode_payload::<Chat>(WireFormat::Json, deep.as_bytes(), &mut []).unwrap_err();
    assert!(err.is_syntax());
    // Postcard payloads must be consumed entirely.
    assert!(decode_payload::<Chat>(WireFormat::Postcard, b"\x02hi\x00", &mut []).is_err());
    assert!(decode_payload::<Chat>(WireFormat::Postcard, b"\x05hi", &mut []).is_err());
}

// ---------------------------------------------------------------------------
// PROTOCOL.md examples
// ---------------------------------------------------------------------------

const BEGIN: &str = "<!-- BEGIN GENERATED EXAMPLES (core/src/tests/wire_golden.rs) -->";
const END: &str = "<!-- END GENERATED EXAMPLES -->";

fn protocol_md_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../PROTOCOL.md")
}

/// The examples section of PROTOCOL.md, from the real encoders.
fn generated_examples() -> String {
    let mut md = String::new();
    let push = |md: &mut String, s: &str| md.push_str(s);

    push(&mut md, "### A. The roomwire wire\n\n");
    push(
        &mut md,
        "Payloads in these examples are the channel message `Chat { content: \"hi\" }` \
         (`struct Chat<'a> { content: &'a str }`): `02 68 69` in postcard, \
         `{\"content\":\"hi\"}` in JSON.\n\n",
    );
    let sections: [(&str, Vec<Golden>); 2] = [
        (
            &format!("Client → server (`{PROTOCOL_POSTCARD}`: binary messages; `{PROTOCOL_JSON}`: text messages)"),
            client_goldens().into_iter().map(|(g, _)| g).collect(),
        ),
        ("Server → client", server_goldens().into_iter().map(|(g, _)| g).collect()),
    ];
    for (title, goldens) in sections {
        push(&mut md, &format!("#### {title}\n\n"));
        for g in goldens {
            let bytes = g.postcard_bytes();
            push(&mut md, &format!("**`{}`**: {}.\n\n", g.name, g.meaning));
            push(&mut md, &format!("Postcard, {} bytes: `{}`\n\n", bytes.len(), hex(&bytes)));
            push(&mut md, "| bytes | meaning |\n|---|---|\n");
            for (h, meaning) in &g.postcard {
                push(&mut md, &format!("| `{h}` | {meaning} |\n"));
            }
            push(&mut md, &format!("\nJSON:\n\n```json\n{}\n```\n\n", g.json));
        }
    }

    push(&mut md, "### B. The Alepha wire\n\n");
    push(&mut md, "#### Handshake query → rooms\n\n| query | rooms, in order |\n|---|---|\n");
    for query in [
        None,
        Some("roomId=lobby"),
        Some("roomIds=a,b,c"),
        Some("roomId=x&roomIds=%20a,%20,b"),
        Some("roomId=a&roomId=b&roomId=a"),
        Some("roomIds=room-a,room-b&roomIds=ignored"),
        Some("roomId=chat%3Ageneral&roomId=caf%C3%A9&roomId=a+b"),
        Some("roomIds=,,&token=t"),
    ] {
        let rooms = query_rooms(query);
        let rooms = rooms.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ");
        let query = query.map_or("(no query)".to_string(), |q| format!("`?{q}`"));
        push(&mut md, &format!("| {query} | {rooms} |\n"));
    }

    push(
        &mut md,
        "\n#### Client frames\n\nFor a connection that joined `room-a` then `room-b`:\n\n\
         | frame | payload | handled in |\n|---|---|---|\n",
    );
    let mut joined = RoomSet::<2>::new();
    rooms_from_query(Some("roomIds=room-a,room-b"), |_| true, &mut joined).unwrap();
    for frame in [
        r#"{"roomId":"room-b","message":{"content":"hi"}}"#,
        r#"{"content":"hi"}"#,
        r#"{"roomId":"room-z","message":{"content":"hi"}}"#,
        r#"{"roomId":"room-b","message":0}"#,
        r#"{"roomId":42,"message":{"content":"hi"}}"#,
        r#"[1,2]"#,
        "hello",
    ] {
        let cell = match parse_client_frame(frame.as_bytes()) {
            Ok(f) => format!(
                "`{}` | `{}`",
                core::str::from_utf8(f.message).unwrap(),
                resolve_room(f.claimed_room.as_deref(), &joined).unwrap_or("(none)")
            ),
            Err(NotJson) => "not JSON: dropped, no answer | (none)".to_string(),
        };
        push(&mut md, &format!("| `{frame}` | {cell} |\n"));
    }

    push(&mut md, "\n#### Server frames\n\n| payload | sent because of | frame |\n|---|---|---|\n");
    for (payload, label) in [
        (r#"{"type":"append","content":"hi"}"#, Some("room-1")),
        (r#"{}"#, Some("room-1")),
        (r#"{"type":"announce","content":"global"}"#, None),
        (r#"[1,2]"#, Some("room-1")),
        (r#"{"n":1}"#, Some("quote\"room")),
    ] {
        let mut out = [0u8; 256];
        let n = write_server_frame(payload.as_bytes(), label, &mut out).unwrap();
        let why = label.map_or("the connection or the channel".to_string(), |r| format!("room `{r}`"));
        push(&mut md, &format!("| `{payload}` | {why} | `{}` |\n", core::str::from_utf8(&out[..n]).unwrap()));
    }

    push(&mut md, "\n#### Error frames\n\n| error | frame |\n|---|---|\n");
    // The detail of a shape error comes from the deserializer (and differs
    // between serde_json and serde-json-core); a channel's own refusal is
    // the same everywhere.
    let err = alepha::decode_message::<ChatChannel>(br#"{"content":""}"#, &mut [0u8; 32]).unwrap_err();
    let mut out = [0u8; 256];
    let n = write_error_frame(&err, &mut out).unwrap();
    push(
        &mut md,
        &format!(
            "| `{{\"content\":\"\"}}` refused by the channel | `{}` |\n",
            core::str::from_utf8(&out[..n]).unwrap()
        ),
    );
    for text in ["handler boom", "Unknown error"] {
        let n = write_error_frame(text, &mut out).unwrap();
        push(&mut md, &format!("| a handler failed | `{}` |\n", core::str::from_utf8(&out[..n]).unwrap()));
    }
    md
}

#[test]
fn protocol_md_examples_are_generated_from_the_encoders() {
    let path = protocol_md_path();
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = doc.find(BEGIN).expect("PROTOCOL.md has no generated-examples start marker") + BEGIN.len();
    let end = doc.find(END).expect("PROTOCOL.md has no generated-examples end marker");
    let expected = format!("\n\n{}", generated_examples());
    if doc[start..end] == expected {
        return;
    }
    if std::env::var_os("ROOMWIRE_BLESS").is_some() {
        let updated = format!("{}{}{}", &doc[..start], expected, &doc[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!("PROTOCOL.md examples are out of date; rerun with ROOMWIRE_BLESS=1 to regenerate. Expected:\n{expected}");
}
