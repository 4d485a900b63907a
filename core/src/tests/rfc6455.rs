//! Every RFC 6455 MUST the connection enforces, each with its close code,
//! plus the close handshake, timers and split-invariance, all on the
//! in-memory pair.

use std::string::String;
use std::vec::Vec;

use super::pair::{Pair, Seen, client_frame, close_code_of, raw_frame, transmit};
use crate::{
    CloseCode, Config, Connection, Duration, Event, Instant, MessageKind, Received, SendError, State, Timeout,
    handshake::HandshakeError,
};

const CHUNKS: [usize; 5] = [1, 2, 3, 7, 1 << 20];

/// Send raw client bytes to an open server (at every chunk size) and
/// return what the server reported and the close code it sent.
fn server_receives(bytes: &[u8]) -> (Vec<Seen>, Option<u16>) {
    let mut results = Vec::new();
    for chunk in CHUNKS {
        let mut pair = Pair::new(Config::default(), chunk);
        pair.connect();
        pair.to_server.extend_from_slice(bytes);
        // Deliver to the server only, and capture what it transmits.
        let mut sent = Vec::new();
        while !pair.to_server.is_empty() {
            let n = chunk.min(pair.to_server.len());
            pair.server_in.buf.extend(pair.to_server.drain(..n));
            super::pair::pump(&mut pair.server, pair.now, &mut pair.server_in);
            sent.extend(transmit(&mut pair.server));
        }
        results.push((pair.server_in.events.clone(), close_code_of(&sent)));
    }
    for r in &results[1..] {
        assert_eq!(r, &results[0], "result depends on how the input is split");
    }
    results.remove(0)
}

fn assert_fails(bytes: &[u8], code: u16) {
    let (events, sent) = server_receives(bytes);
    assert!(
        matches!(events.last(), Some(Seen::ProtocolError(e)) if u16::from(e.code) == code),
        "expected protocol error {code}, got {events:?}"
    );
    assert_eq!(sent, Some(code), "close frame code");
}

#[test]
fn rsv_bits_without_extension_are_1002() {
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        assert_fails(&client_frame(0x81 | rsv, b"hi"), 1002);
    }
}

#[test]
fn reserved_opcodes_are_1002() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_fails(&client_frame(0x80 | op, b""), 1002);
    }
}

#[test]
fn control_frames_over_125_bytes_or_fragmented_are_1002() {
    assert_fails(&client_frame(0x89, &[0; 126]), 1002);
    assert_fails(&client_frame(0x8A, &[0; 200]), 1002);
    assert_fails(&client_frame(0x09, b"frag"), 1002);
    assert_fails(&client_frame(0x08, &[0x03, 0xE8]), 1002);
    // 125 is fine.
    let (events, _) = server_receives(&client_frame(0x89, &[7; 125]));
    assert_eq!(events, [Seen::Ping(std::vec![7; 125])]);
}

#[test]
fn unmasked_client_frames_are_1002() {
    assert_fails(&raw_frame(0x81, None, b"hi"), 1002);
}

#[test]
fn masked_server_frames_are_1002() {
    let mut pair = Pair::new(Config::default(), 5);
    pair.connect();
    pair.to_client.extend(client_frame(0x82, b"masked"));
    pair.drive();
    assert!(matches!(pair.client_in.events.first(), Some(Seen::ProtocolError(e)) if e.code == CloseCode::Protocol));
    // The client told the server why (masked, as clients must).
    assert_eq!(
        pair.server_in.events.first(),
        Some(&Seen::Close(Some(CloseCode::Protocol), "masked frame from server".into()))
    );
    assert_eq!(pair.client.state(), State::Closed);
}

#[test]
fn continuation_without_a_message_is_1002() {
    assert_fails(&client_frame(0x80, b"x"), 1002);
    assert_fails(&client_frame(0x00, b"x"), 1002);
}

#[test]
fn data_frame_inside_unfinished_message_is_1002() {
    let mut bytes = client_frame(0x01, b"part");
    bytes.extend(client_frame(0x81, b"new"));
    assert_fails(&bytes, 1002);
    let mut bytes = client_frame(0x02, b"part");
    bytes.extend(client_frame(0x82, b"new"));
    assert_fails(&bytes, 1002);
}

#[test]
fn invalid_close_codes_are_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        assert_fails(&client_frame(0x88, &code.to_be_bytes()), 1002);
    }
    assert_fails(&client_frame(0x88, &[0x03]), 1002);
}

#[test]
fn valid_close_codes_are_echoed() {
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let (events, sent) = server_receives(&client_frame(0x88, &payload));
        assert_eq!(events, [Seen::Close(Some(CloseCode::from(code)), "bye".into())]);
        assert_eq!(sent, Some(code));
    }
    // An empty close is answered with an empty close.
    let mut pair = Pair::new(Config::default(), 64);
    pair.connect();
    pair.to_server.extend(client_frame(0x88, b""));
    pair.server_in.buf.append(&mut pair.to_server);
    super::pair::pump(&mut pair.server, pair.now, &mut pair.server_in);
    assert_eq!(transmit(&mut pair.server), [0x88, 0x00]);
    assert_eq!(pair.server.state(), State::Closed);
}

#[test]
fn invalid_utf8_text_is_1007() {
    assert_fails(
        &client_frame(0x81, &[0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80]),
        1007,
    );
    assert_fails(&client_frame(0x81, &[0xC0, 0xAF]), 1007);
    // A message that ends inside a character.
    assert_fails(&client_frame(0x81, &[b'a', 0xE2, 0x82]), 1007);
    // Fragmented: first fragment fine, the continuation breaks it.
    let mut bytes = client_frame(0x01, "κ".as_bytes());
    bytes.extend(client_frame(0x80, &[0xFF]));
    assert_fails(&bytes, 1007);
}

#[test]
fn invalid_utf8_is_caught_before_the_message_ends() {
    // The first fragment carries the bad byte; the message never ends, yet
    // the server already failed the connection.
    let (events, sent) = server_receives(&client_frame(0x01, &[b'o', b'k', 0xF4, 0x90, 0x80, 0x80]));
    assert!(matches!(events.as_slice(), [Seen::ProtocolError(e)] if e.code == CloseCode::Invalid));
    assert_eq!(sent, Some(1007));
    // Even in the middle of a frame whose rest has not arrived.
    let mut server = open_server(Config::default());
    let mut frame = client_frame(0x81, &[b'a'; 100]);
    frame[6 + 10] ^= 0xFF; // corrupt byte 10 (masked with key byte 2)
    let first = &mut frame[..20];
    let mut consumed = 0;
    let mut failed = false;
    while consumed < first.len() {
        let Received { consumed: n, event } = server.handle_input(Instant::ZERO, &mut first[consumed..]);
        consumed += n;
        if let Some(Event::ProtocolError(e)) = event {
            assert_eq!(e.code, CloseCode::Invalid);
            failed = true;
            break;
        }
        if n == 0 {
            break;
        }
    }
    assert!(failed, "invalid byte not rejected as soon as it arrived");
}

#[test]
fn invalid_utf8_close_reason_is_1007() {
    assert_fails(&client_frame(0x88, &[0x03, 0xE8, 0xFF, 0xFE]), 1007);
}

#[test]
fn oversized_messages_are_1009() {
    let config = Config { max_message_size: 1000, max_fragments: 4, ..Config::default() };
    for chunk in [1, 1 << 20] {
        let mut pair = Pair::new(config, chunk);
        pair.connect();
        // The header alone announces 1001 bytes: refused before the payload.
        let frame = client_frame(0x82, &[0; 1001]);
        pair.to_server.extend_from_slice(&frame[..8]);
        pair.drive();
        assert!(
            matches!(pair.server_in.events.as_slice(), [Seen::ProtocolError(e)] if e.code == CloseCode::MessageTooBig)
        );
        assert_eq!(
            pair.client_in.events.first(),
            Some(&Seen::Close(Some(CloseCode::MessageTooBig), "message too big".into()))
        );
    }
    // Over the limit across fragments.
    let mut pair = Pair::new(config, 9);
    pair.connect();
    pair.to_server.extend(client_frame(0x02, &[0; 600]));
    pair.to_server.extend(client_frame(0x80, &[0; 600]));
    pair.drive();
    assert!(matches!(pair.server_in.events.as_slice(), [Seen::ProtocolError(e)] if e.code == CloseCode::MessageTooBig));
    // Too many fragments.
    let mut pair = Pair::new(config, 9);
    pair.connect();
    for _ in 0..5 {
        pair.to_server.extend(client_frame(if pair.to_server.is_empty() { 0x02 } else { 0x00 }, b"x"));
    }
    pair.drive();
    assert!(matches!(pair.server_in.events.as_slice(), [Seen::ProtocolError(e)] if e.code == CloseCode::MessageTooBig));
}

#[test]
fn length_with_high_bit_is_1002() {
    let mut bytes = std::vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&[1, 2, 3, 4]);
    assert_fails(&bytes, 1002);
}

#[test]
fn nothing_is_processed_after_close() {
    let mut bytes = client_frame(0x88, &1000u16.to_be_bytes());
    bytes.extend(client_frame(0x81, b"after"));
    bytes.extend(client_frame(0x89, b"ping"));
    bytes.extend_from_slice(b"\xFF\xFF garbage");
    let (events, sent) = server_receives(&bytes);
    assert_eq!(events, [Seen::Close(Some(CloseCode::Normal), String::new())]);
    assert_eq!(sent, Some(1000));
}

#[test]
fn ping_is_answered_with_the_same_payload() {
    let mut pair = Pair::new(Config::default(), 3);
    pair.connect();
    pair.to_server.extend(client_frame(0x89, b"are you there"));
    pair.drive();
    assert_eq!(pair.server_in.events, [Seen::Ping(b"are you there".to_vec())]);
    assert_eq!(pair.client_in.events, [Seen::Pong(b"are you there".to_vec())]);
}

#[test]
fn control_frames_may_interleave_fragments() {
    for chunk in CHUNKS {
        let mut pair = Pair::new(Config::default(), chunk);
        pair.connect();
        pair.to_server.extend(client_frame(0x01, b"Hello, "));
        pair.to_server.extend(client_frame(0x89, b"p"));
        pair.to_server.extend(client_frame(0x00, b"wor"));
        pair.to_server.extend(client_frame(0x8A, b"unsolicited"));
        pair.to_server.extend(client_frame(0x80, b"ld"));
        pair.drive();
        assert_eq!(
            pair.server_in.events,
            [Seen::Ping(b"p".to_vec()), Seen::Pong(b"unsolicited".to_vec()), Seen::Text("Hello, world".into())]
        );
    }
}

#[test]
fn conversation_is_the_same_at_every_split() {
    let mut transcripts = Vec::new();
    for chunk in CHUNKS {
        let mut pair = Pair::new(Config::default(), chunk);
        pair.connect_with(&["roomwire.v1.json", "x"]);
        pair.client_send(MessageKind::Text, "κόσμε".as_bytes());
        pair.client_send(MessageKind::Binary, &[0u8; 70_000]);
        pair.server_send(MessageKind::Text, b"");
        pair.server_send(MessageKind::Binary, &[1u8; 300]);
        pair.drive();
        pair.client.close(pair.now, CloseCode::Normal, "done").unwrap();
        pair.drive();
        assert_eq!(pair.client.state(), State::Closed);
        assert_eq!(pair.server.state(), State::Closed);
        transcripts.push((pair.server_in.events, pair.client_in.events));
    }
    let (server, client) = &transcripts[0];
    assert_eq!(server[0], Seen::Text("κόσμε".into()));
    assert_eq!(server[1], Seen::Binary(std::vec![0; 70_000]));
    assert_eq!(server[2], Seen::Close(Some(CloseCode::Normal), "done".into()));
    assert_eq!(client[..2], [Seen::Text(String::new()), Seen::Binary(std::vec![1; 300])]);
    assert_eq!(client[2], Seen::Close(Some(CloseCode::Normal), String::new()));
    for t in &transcripts[1..] {
        assert_eq!(t, &transcripts[0]);
    }
}

#[test]
fn subprotocol_is_negotiated() {
    let mut pair = Pair::new(Config::default(), 1 << 20);
    let req = crate::handshake::ClientRequest { host: "h", target: "/", protocols: &["a", "b"], headers: &[] };
    let mut buf = [0u8; 512];
    let n = pair.client.write_request(&req, &mut buf).unwrap();
    pair.to_server.extend_from_slice(&buf[..n]);
    pair.drive();
    assert_eq!(
        pair.server_in.events,
        [Seen::Request { target: "/".into(), protocols: std::vec!["a".into(), "b".into()] }]
    );
    let n = pair.server.accept(pair.now, Some("b"), &[], &mut buf).unwrap();
    pair.to_client.extend_from_slice(&buf[..n]);
    pair.drive();
    assert_eq!(pair.client_in.events, [Seen::Open { protocol: Some("b".into()) }]);
}

#[test]
fn a_timeout_past_the_end_of_time_is_no_deadline() {
    let forever = Some(Duration::from_micros(u64::MAX));
    let config = Config { handshake_timeout: forever, first_byte_timeout: None, ..Config::default() };
    // From the origin too (the tokio adapter starts every connection's
    // clock there): the longest span is no deadline, not one near the end.
    for start in [Instant::ZERO, Instant::from_micros(5)] {
        let mut server = Connection::server(config, start);
        assert_eq!(server.poll_timeout(), None);
        assert_eq!(server.handle_timeout(Instant::from_micros(u64::MAX)), None);
        assert_eq!(server.state(), State::Connecting);
    }
    let config = Config { handshake_timeout: Some(Duration::from_secs(10)), first_byte_timeout: None, ..config };
    let server = Connection::server(config, Instant::from_micros(5));
    assert_eq!(server.poll_timeout(), Some(Instant::from_micros(10_000_005)));
}

#[test]
fn a_client_offers_only_token_subprotocols() {
    // A name that is not a token would break the request's header (or add
    // one), and the server's answer is matched against the offer exactly.
    for bad in ["", "a b", "a,b", "chat\r\nX-Evil: 1", "caf\u{e9}", "a\tb"] {
        let mut pair = Pair::new(Config::default(), 1 << 20);
        let req = crate::handshake::ClientRequest { host: "h", target: "/", protocols: &["ok", bad], headers: &[] };
        let mut buf = [0u8; 512];
        assert_eq!(pair.client.write_request(&req, &mut buf), Err(SendError::InvalidProtocol), "{bad:?}");
        assert_eq!(buf, [0u8; 512], "nothing written for {bad:?}");
    }
    let mut pair = Pair::new(Config::default(), 1 << 20);
    let req = crate::handshake::ClientRequest {
        host: "h",
        target: "/",
        protocols: &["roomwire.v1.postcard", "x-1_~!"],
        headers: &[],
    };
    let mut buf = [0u8; 512];
    assert!(pair.client.write_request(&req, &mut buf).is_ok());
}

#[test]
fn server_refuses_a_protocol_the_client_did_not_offer() {
    let mut pair = Pair::new(Config::default(), 1 << 20);
    let req = crate::handshake::ClientRequest { host: "h", target: "/", protocols: &["a"], headers: &[] };
    let mut buf = [0u8; 512];
    let n = pair.client.write_request(&req, &mut buf).unwrap();
    pair.to_server.extend_from_slice(&buf[..n]);
    pair.drive();
    let n = pair.server.accept(pair.now, Some("zzz"), &[], &mut buf).unwrap();
    pair.to_client.extend_from_slice(&buf[..n]);
    pair.drive();
    assert!(matches!(pair.client_in.events.as_slice(), [Seen::HandshakeFailed(HandshakeError::BadResponse(_))]));
    assert_eq!(pair.client.state(), State::Closed);
}

#[test]
fn bad_requests_are_refused_with_a_status() {
    for (raw, status) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n", 426),
        (b"\x16\x03\x01 TLS hello", 400),
    ] {
        let mut server = Connection::server(Config::default(), Instant::ZERO);
        let mut input = raw.to_vec();
        let got = server.handle_input(Instant::ZERO, &mut input);
        assert!(matches!(got.event, Some(Event::HandshakeFailed(e)) if e.status() == status));
        let sent = transmit(&mut server);
        let text = String::from_utf8_lossy(&sent);
        assert!(text.starts_with(&std::format!("HTTP/1.1 {status} ")), "{text}");
        if status == 426 {
            assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        }
        assert_eq!(server.state(), State::Closed);
    }
    // An application refusal.
    let mut pair = Pair::new(Config::default(), 1 << 20);
    let req = crate::handshake::ClientRequest { host: "h", target: "/secret", protocols: &[], headers: &[] };
    let mut buf = [0u8; 512];
    let n = pair.client.write_request(&req, &mut buf).unwrap();
    pair.to_server.extend_from_slice(&buf[..n]);
    pair.drive();
    let n = pair.server.refuse(401, &[("WWW-Authenticate", "Bearer")], "login first", &mut buf).unwrap();
    pair.to_client.extend_from_slice(&buf[..n]);
    pair.drive();
    assert_eq!(pair.client_in.events, [Seen::HandshakeFailed(HandshakeError::Rejected { status: 401 })]);
    assert_eq!(pair.server.state(), State::Closed);
}

#[test]
fn oversized_handshake_is_refused_with_431() {
    let config = Config { max_handshake_size: 256, ..Config::default() };
    let mut server = Connection::server(config, Instant::ZERO);
    let mut input = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    input.extend(std::iter::repeat_n(b'a', 300));
    let got = server.handle_input(Instant::ZERO, &mut input);
    assert_eq!(got.event, Some(Event::HandshakeFailed(HandshakeError::TooLarge)));
    assert!(transmit(&mut server).starts_with(b"HTTP/1.1 431 "));
}

#[test]
fn close_handshake_from_the_server() {
    let mut pair = Pair::new(Config::default(), 4);
    pair.connect();
    pair.server.close(pair.now, CloseCode::Away, "shutting down").unwrap();
    assert_eq!(pair.server.state(), State::Closing);
    assert_eq!(pair.server.send_fragment(MessageKind::Text, b"late", true, &mut [0; 64]), Err(SendError::NotOpen));
    pair.drive();
    assert_eq!(pair.client_in.events, [Seen::Close(Some(CloseCode::Away), "shutting down".into())]);
    assert_eq!(pair.server_in.events, [Seen::Close(Some(CloseCode::Away), String::new())]);
    assert_eq!(pair.server.state(), State::Closed);
    assert_eq!(pair.client.state(), State::Closed);
}

#[test]
fn close_timeout_closes_a_silent_peer() {
    let mut pair = Pair::new(Config::default(), 64);
    pair.connect();
    pair.server.close(pair.now, CloseCode::Normal, "").unwrap();
    let _ = transmit(&mut pair.server); // the client never hears it
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + Duration::from_secs(5)));
    pair.advance(Duration::from_millis(4_999));
    assert_eq!(pair.server.state(), State::Closing);
    pair.advance(Duration::from_millis(1));
    assert_eq!(pair.server_in.events, [Seen::Timeout(Timeout::Close)]);
    assert_eq!(pair.server.state(), State::Closed);
}

/// A peer that answers our close with more data, never with its close,
/// cannot postpone the close deadline by keeping the input full: an
/// adapter that feeds input before it looks at its timer still ends the
/// connection on time.
#[test]
fn the_close_deadline_holds_while_the_peer_keeps_sending() {
    let mut pair = Pair::new(Config::default(), 64);
    pair.connect();
    pair.server.close(pair.now, CloseCode::Normal, "").unwrap();
    let _ = transmit(&mut pair.server);
    let mut data = Vec::new();
    let mut messages = 0;
    for _ in 0..10 {
        // A second passes between reads, and every read has a new frame.
        pair.now = pair.now + Duration::from_secs(1);
        let mut frame = client_frame(0x82, b"still talking");
        let received = pair.server.handle_input(pair.now, &mut frame);
        if let Some(Event::Data { .. }) = received.event {
            messages += 1;
        }
        data.push(pair.server.state());
    }
    // Until the deadline (5 s), data is still read (RFC 6455 allows it);
    // from the deadline on, nothing is, and the connection is closed.
    assert_eq!(messages, 4);
    assert_eq!(data[3], State::Closing);
    assert!(data[4..].iter().all(|s| *s == State::Closed), "{data:?}");
}

#[test]
fn keepalive_pings_and_drops_a_silent_peer() {
    let config = Config { keepalive_interval: Some(Duration::from_secs(30)), ..Config::default() };
    let mut pair = Pair::with_configs(Config::default(), config, 64);
    pair.connect();
    for nonce in 1..=3u32 {
        pair.advance(Duration::from_secs(30));
        pair.drive();
        assert_eq!(pair.client_in.events.pop(), Some(Seen::Ping(nonce.to_be_bytes().to_vec())));
        assert_eq!(pair.server_in.events.pop(), Some(Seen::Pong(nonce.to_be_bytes().to_vec())));
        assert_eq!(pair.server.state(), State::Open);
    }
    // Now the client goes silent: the ping goes out, no pong comes back.
    pair.advance(Duration::from_secs(30));
    let _ = transmit(&mut pair.server);
    pair.advance(Duration::from_secs(30));
    assert_eq!(pair.server_in.events.last(), Some(&Seen::Timeout(Timeout::Keepalive)));
    assert_eq!(pair.server.state(), State::Closed);
}

#[test]
fn a_client_that_never_speaks_is_answered_408_at_the_first_byte_timeout() {
    let mut server = Connection::server(Config::default(), Instant::ZERO);
    assert_eq!(server.poll_timeout(), Some(Instant::from_millis(3_000)));
    assert_eq!(server.handle_timeout(Instant::from_millis(2_999)), None);
    assert_eq!(server.handle_timeout(Instant::from_millis(3_000)), Some(Timeout::Handshake));
    assert!(transmit(&mut server).starts_with(b"HTTP/1.1 408 "));
    assert_eq!(server.state(), State::Closed);
}

#[test]
fn handshake_timeout_answers_408() {
    let mut server = Connection::server(Config::default(), Instant::ZERO);
    // One byte of the request: the whole handshake's deadline holds.
    assert_eq!(server.handle_input(Instant::from_millis(1), &mut b"G".to_vec()).consumed, 0);
    assert_eq!(server.poll_timeout(), Some(Instant::from_millis(10_000)));
    assert_eq!(server.handle_timeout(Instant::from_millis(3_000)), None);
    assert_eq!(server.handle_timeout(Instant::from_millis(9_999)), None);
    assert_eq!(server.handle_timeout(Instant::from_millis(10_000)), Some(Timeout::Handshake));
    assert!(transmit(&mut server).starts_with(b"HTTP/1.1 408 "));
    assert_eq!(server.state(), State::Closed);
}

#[test]
fn output_buffer_too_small_is_reported_and_nothing_lost() {
    let mut pair = Pair::new(Config::default(), 64);
    pair.connect();
    pair.to_server.extend(client_frame(0x89, &[9; 100]));
    pair.server_in.buf.append(&mut pair.to_server);
    super::pair::pump(&mut pair.server, pair.now, &mut pair.server_in);
    let mut small = [0u8; 50];
    let err = pair.server.poll_transmit(&mut small).unwrap_err();
    assert_eq!(err.required, 102);
    assert_eq!(small, [0; 50]);
    let mut big = [0u8; 102];
    assert_eq!(pair.server.poll_transmit(&mut big), Ok(102));
    assert_eq!(big[0], 0x8A);
    assert_eq!(err.required, 102);
    // Sending reports the size needed too.
    assert!(matches!(
        pair.server.send_fragment(MessageKind::Binary, &[0; 200], true, &mut small),
        Err(SendError::Buffer(e)) if e.required == 204
    ));
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let mut server = Connection::server(Config::default(), Instant::ZERO);
    let mut out = [0u8; 256];
    assert_eq!(server.accept(Instant::ZERO, None, &[], &mut out), Err(SendError::InvalidState));
    assert_eq!(server.send_fragment(MessageKind::Text, b"x", true, &mut out), Err(SendError::NotOpen));
    assert_eq!(server.close(Instant::ZERO, CloseCode::Normal, ""), Err(SendError::NotOpen));
    let mut pair = Pair::new(Config::default(), 64);
    pair.connect();
    assert_eq!(pair.server.close(pair.now, CloseCode::Status, ""), Err(SendError::InvalidCloseCode));
    assert_eq!(pair.server.close(pair.now, CloseCode::Normal, &"x".repeat(124)), Err(SendError::ControlTooLong));
    assert_eq!(pair.server.ping(&[0; 126], &mut out), Err(SendError::ControlTooLong));
    pair.server.send_fragment(MessageKind::Text, b"a", false, &mut out).unwrap();
    assert_eq!(pair.server.send(crate::Message::Text("b"), &mut out), Err(SendError::FragmentInProgress));
}

fn open_server(config: Config) -> Connection {
    let mut pair = Pair::new(config, 1 << 20);
    pair.connect();
    pair.server
}

/// A message begun and not finished within `message_timeout` fails the
/// connection with 1008, whatever else the peer keeps sending (pings); a
/// message finished in time clears the deadline.
#[test]
fn a_message_left_unfinished_fails_with_1008_at_the_message_timeout() {
    let config = Config { message_timeout: Some(Duration::from_secs(60)), ..Config::default() };
    let mut pair = Pair::new(config, 4096);
    pair.connect();
    // A whole fragmented message in time: no deadline left.
    pair.to_server.extend(client_frame(0x01, b"he"));
    pair.drive();
    pair.advance(Duration::from_secs(59));
    pair.to_server.extend(client_frame(0x80, b"llo"));
    pair.drive();
    assert_eq!(pair.server.poll_timeout(), None);
    assert!(pair.server_in.events.iter().any(|e| matches!(e, Seen::Text(t) if t == "hello")));
    // Begun, then only pings.
    pair.to_server.extend(client_frame(0x02, &[1; 100]));
    pair.drive();
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + Duration::from_secs(60)));
    for _ in 0..5 {
        pair.advance(Duration::from_secs(10));
        pair.to_server.extend(client_frame(0x89, b"still here"));
        pair.drive();
    }
    assert_eq!(pair.server.state(), State::Open);
    pair.advance(Duration::from_secs(10));
    assert_eq!(pair.server_in.events.last(), Some(&Seen::Timeout(Timeout::Message)));
    assert_eq!(close_code_of(&transmit(&mut pair.server)), Some(1008));
    assert_eq!(pair.server.state(), State::Closed);
}

/// `check_alive`: a ping now; no pong within the window closes the
/// connection, a pong keeps it.
#[test]
fn check_alive_pings_now_and_closes_without_a_pong_in_time() {
    for answers in [true, false] {
        let mut pair =
            Pair::new(Config { keepalive_interval: Some(Duration::from_secs(30)), ..Config::default() }, 4096);
        pair.connect();
        pair.server.check_alive(pair.now, Duration::from_secs(5));
        assert_eq!(pair.server.poll_timeout(), Some(pair.now + Duration::from_secs(5)));
        let ping = transmit(&mut pair.server);
        assert_eq!(ping.first(), Some(&0x89));
        if answers {
            pair.to_client.extend(ping);
            pair.drive();
        }
        pair.advance(Duration::from_secs(5));
        let expected = if answers { State::Open } else { State::Closed };
        assert_eq!(pair.server.state(), expected, "answered: {answers}");
    }
}

/// Only the pong that echoes our keepalive ping answers it: pongs the peer
/// sends unasked, or for other pings, do not keep a connection alive.
#[test]
fn keepalive_counts_only_the_pong_to_its_own_ping() {
    let config = Config { keepalive_interval: Some(Duration::from_secs(30)), ..Config::default() };
    let mut pair = Pair::with_configs(Config::default(), config, 4096);
    pair.connect();
    pair.advance(Duration::from_secs(30));
    let ping = transmit(&mut pair.server);
    assert_eq!(ping.first(), Some(&0x89));
    // The client does not read the ping; it sends pongs of its own.
    for payload in [&b""[..], b"\0\0\0\x02", b"anything"] {
        pair.to_server.extend(client_frame(0x8A, payload));
    }
    pair.drive();
    pair.advance(Duration::from_secs(30));
    assert_eq!(pair.server_in.events.last(), Some(&Seen::Timeout(Timeout::Keepalive)));
    assert_eq!(pair.server.state(), State::Closed);
}

/// A request that arrives a byte at a time is read when its header
/// section ends (CRLF or bare LF line endings), and one broken in the
/// middle is refused with 400 by then.
#[test]
fn a_request_sent_a_byte_at_a_time_is_read_at_its_end() {
    let good = b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let broken = b"GET /ws HTTP/1.1\r\nHost: h\r\nBad Header\r\nUpgrade: websocket\r\n\r\n";
    let bare_lf = b"GET /ws HTTP/1.1\nHost: h\nUpgrade: websocket\nConnection: Upgrade\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n";
    for (raw, expect_request) in [(&good[..], true), (&broken[..], false), (&bare_lf[..], true)] {
        let mut server = Connection::server(Config::default(), Instant::ZERO);
        let mut seen = None;
        for end in 1..=raw.len() {
            let mut input = raw[..end].to_vec();
            let got = server.handle_input(Instant::ZERO, &mut input);
            match got.event {
                None => continue,
                Some(Event::Request(_)) => seen = Some((true, end)),
                Some(Event::HandshakeFailed(e)) => {
                    assert_eq!(e.status(), 400, "{e:?}");
                    seen = Some((false, end));
                }
                other => panic!("{other:?}"),
            }
            break;
        }
        let (request, at) = seen.expect("no verdict");
        assert_eq!(request, expect_request);
        if request {
            assert_eq!(at, raw.len(), "read before its end");
        }
    }
}

/// The peer's close starts the close deadline: if our echo cannot get out
/// (a peer that stopped reading), the connection still ends.
#[test]
fn a_close_received_ends_the_connection_by_the_close_timeout() {
    let mut pair = Pair::new(Config::default(), 4096);
    pair.connect();
    pair.to_server.extend(client_frame(0x88, &1000u16.to_be_bytes()));
    pair.server_in.buf.append(&mut pair.to_server);
    super::pair::pump(&mut pair.server, pair.now, &mut pair.server_in);
    assert_eq!(pair.server.state(), State::Closing);
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + Config::default().close_timeout));
    // The echo is never taken out (never written).
    pair.now = pair.now + Config::default().close_timeout;
    assert_eq!(pair.server.handle_timeout(pair.now), Some(Timeout::Close));
    assert_eq!(pair.server.state(), State::Closed);
}
