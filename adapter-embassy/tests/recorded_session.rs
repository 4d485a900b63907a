//! The recorded server sessions that `firmware/src/bin/qemu-decode.rs`
//! decodes under QEMU (scripts/qemu-test.sh): real bytes, produced here by
//! the core's server side (a server `Connection` answering the client's
//! upgrade request, `dispatch::encode_frame` for room pushes).
//!
//! This test checks the committed files under `firmware/session/` are what
//! the core produces today; `ROOMWIRE_BLESS=1 cargo test -p roomwire-embassy
//! --test recorded_session` rewrites them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::PathBuf;

use roomwire_core::envelope::{self, ServerEnvelope};
use roomwire_core::handshake::ClientRequest;
use roomwire_core::payload;
use roomwire_core::target::FrameKey;
use roomwire_core::{CloseCode, Config, Connection, Event, Instant, Message, MessageKind, RoomClient, WireFormat};
use serde::{Deserialize, Serialize};

/// As firmware/src/lib.rs `app`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reading<'a> {
    pub sensor: &'a str,
    pub value: i32,
}

/// As firmware/src/lib.rs `app`.
#[derive(Debug, Serialize, Deserialize)]
pub enum Command<'a> {
    SetPoint { value: i32 },
    Say { text: &'a str },
}

roomwire_core::channel! {
    /// As firmware/src/lib.rs `app`.
    pub struct Telemetry { path: "/ws/telemetry", in: Command<'a>, out: Reading<'a> }
}

/// The deterministic key source the QEMU binary uses too (same constants).
fn keys() -> impl FnMut() -> [u8; 4] {
    let mut state = 0x2545_f491_u32;
    move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state.to_le_bytes()
    }
}

/// The server's bytes for one session on `format`.
fn session(format: WireFormat) -> Vec<u8> {
    let now = Instant::ZERO;
    // The client's request, exactly as the QEMU binary writes it.
    let client = RoomClient::<Telemetry, 2>::with_rooms(format, &["plant-1"]).unwrap();
    let mut target = [0u8; 128];
    let n = client.write_target(&mut target).unwrap();
    let target = std::str::from_utf8(&target[..n]).unwrap();
    let mut conn = Connection::client(Config::default(), now, keys());
    let mut request = [0u8; 512];
    let request_len = conn
        .write_request(
            &ClientRequest { host: "192.0.2.1:8080", target, protocols: client.protocols(), headers: &[] },
            &mut request,
        )
        .unwrap();

    let mut server = Connection::server(Config::default(), now);
    let got = server.handle_input(now, &mut request[..request_len]);
    assert!(matches!(got.event, Some(Event::Request(_))));
    let mut out = vec![0u8; 4096];
    let mut session = Vec::new();
    let n = server.accept(now, format.protocol(), &[], &mut out).unwrap();
    session.extend_from_slice(&out[..n]);

    let payload = |message: &Command<'_>| {
        let mut buf = [0u8; 256];
        let n = payload::encode_payload(format, message, &mut buf).unwrap();
        buf[..n].to_vec()
    };
    let mut push = |session: &mut Vec<u8>, room: Option<&str>, message: &Command<'_>| {
        let frame =
            roomwire_core::dispatch::encode_frame(FrameKey { format, label: room }, &payload(message), &mut out)
                .unwrap();
        session.extend_from_slice(&out[frame]);
    };
    let frame = |server: &mut Connection, session: &mut Vec<u8>, message: Message<'_>| {
        let mut buf = [0u8; 512];
        let n = server.send(message, &mut buf).unwrap();
        session.extend_from_slice(&buf[..n]);
    };
    let kind = format.message_kind();

    if format != WireFormat::Alepha {
        // The answer to the client's join (ref 1).
        let mut ok = [0u8; 64];
        let n = envelope::encode_server(format, &ServerEnvelope::Ok { reference: 1 }, &mut ok).unwrap();
        frame(
            &mut server,
            &mut session,
            if kind == MessageKind::Text {
                Message::Text(std::str::from_utf8(&ok[..n]).unwrap())
            } else {
                Message::Binary(&ok[..n])
            },
        );
    }
    push(&mut session, Some("plant-1"), &Command::SetPoint { value: 21 });
    let mut ping = [0u8; 16];
    let n = server.ping(b"hb", &mut ping).unwrap();
    session.extend_from_slice(&ping[..n]);

    // An unlabelled message (to this connection), in two fragments, with
    // escapes on the JSON wires.
    let say = Command::Say { text: "hello, device" };
    let body = {
        let mut buf = [0u8; 256];
        let n = match format {
            WireFormat::Alepha => roomwire_core::alepha::write_server_frame(&payload(&say), None, &mut buf).unwrap(),
            _ => envelope::write_push(format, None, &payload(&say), &mut buf).unwrap(),
        };
        buf[..n].to_vec()
    };
    let (first, second) = body.split_at(body.len() / 2);
    for (part, fin) in [(first, false), (second, true)] {
        let mut buf = [0u8; 256];
        let n = server.send_fragment(kind, part, fin, &mut buf).unwrap();
        session.extend_from_slice(&buf[..n]);
    }

    // An error not tied to a request.
    let mut error = [0u8; 128];
    let n = match format {
        WireFormat::Alepha => roomwire_core::alepha::write_error_frame("boom", &mut error).unwrap(),
        _ => envelope::write_error(format, None, envelope::code::VALIDATION_FAILED, "boom", &mut error).unwrap(),
    };
    frame(
        &mut server,
        &mut session,
        if kind == MessageKind::Text {
            Message::Text(std::str::from_utf8(&error[..n]).unwrap())
        } else {
            Message::Binary(&error[..n])
        },
    );

    server.close(now, CloseCode::Normal, "bye").unwrap();
    let n = server.poll_transmit(&mut out).unwrap();
    session.extend_from_slice(&out[..n]);
    session
}

#[test]
fn recorded_sessions_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../firmware/session");
    let bless = std::env::var_os("ROOMWIRE_BLESS").is_some();
    for (name, format) in [("postcard.bin", WireFormat::Postcard), ("alepha.bin", WireFormat::Alepha)] {
        let bytes = session(format);
        let path = dir.join(name);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(committed == bytes, "{} is stale: rerun with ROOMWIRE_BLESS=1", path.display());
    }
}
