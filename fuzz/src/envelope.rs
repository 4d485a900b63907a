//! Both envelope decoders of the roomwire wire, in both encodings, and the
//! server's whole inbound path.
//!
//! The first byte picks the format; the rest is one message. Asserts:
//! * decoding never panics, in either direction;
//! * whatever decodes re-encodes to bytes that decode to the same envelope;
//! * `dispatch::handle_message` on a small fixed room table never panics,
//!   its replies fit the 256-byte buffer it promises to fit, and the table
//!   keeps its invariants (every room non-empty, within capacity).

use roomwire_core::dispatch::{self, Inbound};
use roomwire_core::envelope::{self, ClientEnvelope, ServerEnvelope};
use roomwire_core::payload;
use roomwire_core::room::{FixedRoomTable, MemberId, RoomTable};
use roomwire_core::wire::WireFormat;
use serde::{Deserialize, Serialize};

/// A message type with a borrowed field, an optional one and a nested enum.
#[derive(Debug, Serialize, Deserialize)]
pub struct Out<'a> {
    /// Borrowed text.
    pub content: &'a str,
    /// Optional number.
    pub n: Option<u32>,
    /// Nested, externally tagged.
    pub kind: Option<Kind>,
}

/// Nested enum.
#[derive(Debug, Serialize, Deserialize)]
pub enum Kind {
    /// A unit variant.
    A,
    /// A tuple variant.
    B(i64),
}

roomwire_core::channel! {
    /// A channel for the fuzzer.
    pub struct Fuzz { path: "/fuzz", in: Out<'a>, out: Out<'a> }
}

/// Run one input.
pub fn run(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else { return };
    let format = match selector % 3 {
        0 => WireFormat::Alepha,
        1 => WireFormat::Json,
        _ => WireFormat::Postcard,
    };
    let mut out = [0u8; 4096];
    if format != WireFormat::Alepha {
        if let Ok(env) = envelope::decode_client(format, body) {
            let n = envelope::encode_client(format, &env, &mut out).expect("re-encode fits");
            let again = envelope::decode_client(format, &out[..n]).expect("re-encoded envelope decodes");
            assert_eq!(again, env);
            if let ClientEnvelope::Message { payload, .. } = env {
                let _ = payload::decode_payload::<Out<'_>>(format, payload, &mut [0u8; 128]);
            }
        }
        if let Ok(env) = envelope::decode_server(format, body) {
            let n = envelope::encode_server(format, &env, &mut out).expect("re-encode fits");
            let again = envelope::decode_server(format, &out[..n]).expect("re-encoded envelope decodes");
            assert_eq!(again, env);
            if let ServerEnvelope::Push { payload, .. } = env {
                let _ = payload::decode_payload::<Out<'_>>(format, payload, &mut [0u8; 128]);
            }
        }
    }

    // The server's inbound path, twice in a row (the second sees the
    // memberships the first made), for a member admitted by a query.
    let mut table = FixedRoomTable::<4, 4, 3, 3>::new();
    let member = MemberId(selector as u32 % 4);
    let query = if selector & 0x80 != 0 { Some("roomIds=a,b") } else { None };
    let _ = dispatch::join_handshake_rooms::<Fuzz, _>(
        format,
        member,
        query,
        None,
        &roomwire_core::dispatch::AnyRoom,
        &mut table,
    );
    for _ in 0..2 {
        let mut scratch = [0u8; 64];
        let mut reply = [0u8; 256];
        match dispatch::handle_message::<Fuzz, _>(
            format,
            member,
            &mut table,
            &roomwire_core::dispatch::AnyRoom,
            body,
            &mut scratch,
            &mut reply,
        ) {
            Inbound::Message { room, .. } => {
                assert!(format == WireFormat::Alepha || table.is_in_room(member, &room));
            }
            Inbound::Answer { len, .. } => assert!(len > 0 && len <= reply.len(), "reply must be written"),
            Inbound::Ignored => assert_eq!(format, WireFormat::Alepha),
        }
        for (room, size) in table.rooms() {
            assert!(size > 0 && size <= 3, "room {room} has {size} members");
        }
    }
}
