//! permessage-deflate on the in-memory pair: negotiation through the
//! connections, compressed messages both ways, and what a peer that sends
//! bad or explosive compressed data gets.

use std::boxed::Box;
use std::vec::Vec;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::pair::{Pair, Seen, client_frame};
use crate::deflate::{DeflateConfig, Inflate, InflateError, strip_tail};
use crate::message::TooLarge;
use crate::{CloseCode, Config, MessageKind};

/// A zlib raw inflater that hands out at most 64 bytes per sink call, and
/// counts its resets and the messages it was told are over.
struct TestInflater {
    zlib: Decompress,
    resets: std::rc::Rc<std::cell::Cell<u32>>,
    dones: std::rc::Rc<std::cell::Cell<u32>>,
}

type Count = std::rc::Rc<std::cell::Cell<u32>>;

impl TestInflater {
    fn boxed(bits: u8) -> (Box<dyn Inflate>, Count) {
        let (inflater, resets, _) = Self::counting(bits);
        (inflater, resets)
    }

    fn counting(bits: u8) -> (Box<dyn Inflate>, Count, Count) {
        let (resets, dones) = (Count::default(), Count::default());
        let zlib = Decompress::new_with_window_bits(false, bits);
        (Box::new(Self { zlib, resets: resets.clone(), dones: dones.clone() }), resets, dones)
    }
}

impl Inflate for TestInflater {
    fn inflate(
        &mut self,
        mut input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), TooLarge>,
    ) -> Result<(), InflateError> {
        let mut out = [0u8; 64];
        loop {
            let (was_in, was_out) = (self.zlib.total_in(), self.zlib.total_out());
            let status =
                self.zlib.decompress(input, &mut out, FlushDecompress::Sync).map_err(|_| InflateError::Corrupt)?;
            let used = (self.zlib.total_in() - was_in) as usize;
            let made = (self.zlib.total_out() - was_out) as usize;
            input = &input[used..];
            if made > 0 {
                sink(&out[..made]).map_err(|_| InflateError::TooLarge)?;
            }
            if status == Status::StreamEnd {
                return Err(InflateError::Corrupt);
            }
            if input.is_empty() && made < out.len() {
                return Ok(());
            }
        }
    }

    fn reset(&mut self) {
        self.zlib.reset(false);
        self.resets.set(self.resets.get() + 1);
    }

    fn message_done(&mut self) {
        self.dones.set(self.dones.get() + 1);
    }
}

/// A message's compressed payload: sync-flushed raw deflate, tail stripped.
fn deflate(compressor: &mut Compress, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 64);
    compressor.compress_vec(payload, &mut out, FlushCompress::Sync).unwrap();
    strip_tail(&out).to_vec()
}

fn config(deflate: DeflateConfig) -> Config {
    Config { deflate: Some(deflate), ..Config::default() }
}

/// A pair that negotiated with these settings, each side with an inflater.
fn deflate_pair(client: DeflateConfig, server: DeflateConfig, chunk: usize) -> Pair {
    let mut pair = Pair::with_configs(config(client), config(server), chunk);
    pair.connect();
    let (client_agreed, server_agreed) = (*pair.client.deflate().unwrap(), *pair.server.deflate().unwrap());
    pair.client_in.inflater = Some(TestInflater::boxed(client_agreed.zlib_receive_window_bits()).0);
    pair.server_in.inflater = Some(TestInflater::boxed(server_agreed.zlib_receive_window_bits()).0);
    pair
}

fn server_send_deflated(pair: &mut Pair, kind: MessageKind, deflated: &[u8]) {
    let mut buf = std::vec![0u8; deflated.len() + 14];
    let n = pair.server.send_deflated(kind, deflated, &mut buf).unwrap();
    pair.to_client.extend_from_slice(&buf[..n]);
}

fn client_send_deflated(pair: &mut Pair, kind: MessageKind, deflated: &[u8]) {
    let mut buf = std::vec![0u8; deflated.len() + 14];
    let n = pair.client.send_deflated(kind, deflated, &mut buf).unwrap();
    pair.to_server.extend_from_slice(&buf[..n]);
}

#[test]
fn both_sides_agree_and_compressed_messages_go_both_ways_in_any_split() {
    for chunk in [1, 3, 7, 4096] {
        let client = DeflateConfig { send_context_takeover: true, ..DeflateConfig::DEFAULT };
        let server = DeflateConfig {
            send_max_window_bits: 10,
            receive_context_takeover: true,
            receive_max_window_bits: 12,
            ..DeflateConfig::DEFAULT
        };
        let mut pair = deflate_pair(client, server, chunk);
        let (c, s) = (*pair.client.deflate().unwrap(), *pair.server.deflate().unwrap());
        // What one side sends is what the other receives.
        assert_eq!(
            (c.send_window_bits, c.send_no_context_takeover),
            (s.receive_window_bits, s.receive_no_context_takeover)
        );
        assert_eq!(
            (s.send_window_bits, s.send_no_context_takeover),
            (c.receive_window_bits, c.receive_no_context_takeover)
        );
        assert_eq!((s.send_window_bits, c.send_window_bits), (10, 12));

        let text = "{\"event\":\"chat\",\"data\":{\"text\":\"héllo héllo héllo héllo\"}}".repeat(20);
        let mut to_client = Compress::new_with_window_bits(Compression::fast(), false, s.zlib_send_window_bits());
        let mut to_server = Compress::new_with_window_bits(Compression::fast(), false, c.zlib_send_window_bits());
        for _ in 0..3 {
            // The client keeps its window (context takeover), the server starts afresh.
            let deflated = deflate(&mut to_server, text.as_bytes());
            assert!(deflated.len() < text.len() / 4);
            client_send_deflated(&mut pair, MessageKind::Text, &deflated);
            to_client.reset();
            let deflated = deflate(&mut to_client, &[7u8; 3000]);
            server_send_deflated(&mut pair, MessageKind::Binary, &deflated);
            // Uncompressed messages still mix in.
            pair.client_send(MessageKind::Text, b"plain");
            pair.drive();
        }
        assert_eq!(
            pair.server_in.events,
            std::iter::repeat_n([Seen::Text(text.clone()), Seen::Text("plain".into())], 3)
                .flatten()
                .collect::<Vec<_>>()
        );
        assert_eq!(pair.client_in.events, std::vec![Seen::Binary(std::vec![7u8; 3000]); 3]);
    }
}

#[test]
fn the_inflater_is_reset_exactly_when_the_peer_starts_each_message_afresh() {
    let mut pair = deflate_pair(DeflateConfig::DEFAULT, DeflateConfig::DEFAULT, 4096);
    // The server does not keep its window: the client resets after each message.
    assert!(pair.client.deflate().unwrap().receive_no_context_takeover);
    let (inflater, client_resets) = TestInflater::boxed(15);
    pair.client_in.inflater = Some(inflater);
    // The client offered no_context_takeover: the server holds it to it.
    assert!(pair.server.deflate().unwrap().receive_no_context_takeover);

    let keep = DeflateConfig { send_context_takeover: true, receive_context_takeover: true, ..DeflateConfig::DEFAULT };
    let mut kept = deflate_pair(keep, keep, 4096);
    let (inflater, kept_resets) = TestInflater::boxed(15);
    kept.server_in.inflater = Some(inflater);
    let mut compressor = Compress::new_with_window_bits(Compression::fast(), false, 15);
    for _ in 0..3 {
        let message = deflate(&mut compressor, b"the same words again and again and again");
        client_send_deflated(&mut kept, MessageKind::Text, &message);
        let mut fresh = Compress::new_with_window_bits(Compression::fast(), false, 15);
        server_send_deflated(&mut pair, MessageKind::Text, &deflate(&mut fresh, b"hello hello hello hello"));
    }
    kept.drive();
    pair.drive();
    assert_eq!(kept.server_in.events.len(), 3);
    assert_eq!(pair.client_in.events.len(), 3);
    assert_eq!((client_resets.get(), kept_resets.get()), (3, 0));
}

#[test]
fn a_small_message_that_inflates_past_the_limit_closes_with_1009() {
    let limit = 64 * 1024;
    let server = Config { max_message_size: limit, ..config(DeflateConfig::DEFAULT) };
    let mut pair = Pair::with_configs(config(DeflateConfig::DEFAULT), server, 4096);
    pair.connect();
    // The server's storage holds what the limit allows, and says when more comes.
    let (inflater, _) = TestInflater::boxed(15);
    pair.server_in.inflater = Some(inflater);
    let mut compressor = Compress::new_with_window_bits(Compression::best(), false, 15);
    let bomb = deflate(&mut compressor, &std::vec![0u8; 16 << 20]);
    assert!(bomb.len() < 20_000, "{}", bomb.len());
    client_send_deflated(&mut pair, MessageKind::Binary, &bomb);
    pair.drive();
    let Seen::ProtocolError(error) = pair.server_in.events[0] else { panic!("{:?}", pair.server_in.events) };
    assert_eq!(error.code, CloseCode::MessageTooBig);
    assert_eq!(pair.client_in.events, [Seen::Close(Some(CloseCode::MessageTooBig), "message too big".into())]);
}

/// The inflater hears once per compressed message that the message is
/// over: whole, in any split, or failed past the limit.
#[test]
fn the_inflater_hears_of_each_compressed_messages_end_once() {
    for chunk in [1, 7, 4096] {
        let mut pair = deflate_pair(DeflateConfig::DEFAULT, DeflateConfig::DEFAULT, chunk);
        let (inflater, _, dones) = TestInflater::counting(15);
        pair.server_in.inflater = Some(inflater);
        for n in 0..3 {
            let mut compressor = Compress::new_with_window_bits(Compression::fast(), false, 15);
            let text = std::format!("message {n} ").repeat(50);
            client_send_deflated(&mut pair, MessageKind::Text, &deflate(&mut compressor, text.as_bytes()));
        }
        pair.drive();
        assert_eq!((pair.server_in.events.len(), dones.get()), (3, 3), "split {chunk}");
    }
    let server = Config { max_message_size: 64 * 1024, ..config(DeflateConfig::DEFAULT) };
    let mut pair = Pair::with_configs(config(DeflateConfig::DEFAULT), server, 4096);
    pair.connect();
    let (inflater, _, dones) = TestInflater::counting(15);
    pair.server_in.inflater = Some(inflater);
    let mut compressor = Compress::new_with_window_bits(Compression::best(), false, 15);
    client_send_deflated(&mut pair, MessageKind::Binary, &deflate(&mut compressor, &std::vec![0u8; 1 << 20]));
    pair.drive();
    assert!(matches!(pair.server_in.events[0], Seen::ProtocolError(e) if e.code == CloseCode::MessageTooBig));
    assert_eq!(dones.get(), 1, "a message that failed");
}

#[test]
fn bad_compressed_data_and_misplaced_rsv1_fail_the_connection() {
    // Not deflate data: 1007.
    let mut pair = deflate_pair(DeflateConfig::DEFAULT, DeflateConfig::DEFAULT, 4096);
    client_send_deflated(&mut pair, MessageKind::Text, &[0xff, 0xff, 0xff, 0xff]);
    pair.drive();
    assert!(matches!(pair.server_in.events[0], Seen::ProtocolError(e) if e.code == CloseCode::Invalid));

    // Inflates to bytes that are not UTF-8: 1007.
    let mut pair = deflate_pair(DeflateConfig::DEFAULT, DeflateConfig::DEFAULT, 4096);
    let mut compressor = Compress::new_with_window_bits(Compression::fast(), false, 15);
    client_send_deflated(&mut pair, MessageKind::Text, &deflate(&mut compressor, &[0xc3, 0x28, 0x41]));
    pair.drive();
    assert!(matches!(pair.server_in.events[0], Seen::ProtocolError(e) if e.code == CloseCode::Invalid));

    // RSV1 on a continuation frame or a ping, or RSV2: 1002 even when negotiated.
    for frames in [
        [client_frame(0x41, b"ab"), client_frame(0xC0, b"cd")].concat(),
        client_frame(0xC9, b""),
        client_frame(0xA1, b"x"),
    ] {
        let mut pair = deflate_pair(DeflateConfig::DEFAULT, DeflateConfig::DEFAULT, 4096);
        pair.to_server.extend_from_slice(&frames);
        pair.drive();
        assert!(
            matches!(pair.server_in.events.last(), Some(Seen::ProtocolError(e)) if e.code == CloseCode::Protocol),
            "{:?}",
            pair.server_in.events
        );
    }

    // Without negotiation RSV1 stays a protocol error, and nothing can be sent compressed.
    let mut pair = Pair::with_configs(config(DeflateConfig::DEFAULT), Config::default(), 4096);
    pair.connect();
    assert_eq!((pair.client.deflate(), pair.server.deflate()), (None, None));
    assert_eq!(pair.client.send_deflated(MessageKind::Text, b"x", &mut [0; 32]), Err(crate::SendError::NotNegotiated));
    pair.to_server.extend_from_slice(&client_frame(0xC1, b"x"));
    pair.drive();
    assert!(matches!(pair.server_in.events[0], Seen::ProtocolError(e) if e.code == CloseCode::Protocol));
}

#[test]
fn a_client_that_did_not_offer_refuses_an_answer_with_the_extension() {
    // The server negotiates; the client was built without an offer but the answer carries one.
    let mut pair = Pair::with_configs(Config::default(), config(DeflateConfig::DEFAULT), 4096);
    let req = crate::handshake::ClientRequest {
        host: "h",
        target: "/",
        protocols: &[],
        headers: &[("Sec-WebSocket-Extensions", "permessage-deflate")],
    };
    let mut buf = [0u8; 1024];
    let n = pair.client.write_request(&req, &mut buf).unwrap();
    pair.to_server.extend_from_slice(&buf[..n]);
    pair.drive();
    let n = pair.server.accept(pair.now, None, &[], &mut buf).unwrap();
    assert!(std::str::from_utf8(&buf[..n]).unwrap().contains("Sec-WebSocket-Extensions: permessage-deflate"));
    pair.to_client.extend_from_slice(&buf[..n]);
    pair.drive();
    assert!(matches!(pair.client_in.events[0], Seen::HandshakeFailed(_)), "{:?}", pair.client_in.events);
}

#[test]
fn a_compressed_message_begun_and_not_finished_is_failed_after_the_deflate_timeout() {
    // No message timeout configured: a compressed message gets one anyway.
    let mut pair = deflate_pair(DeflateConfig::DEFAULT, DeflateConfig::DEFAULT, 4096);
    assert_eq!(pair.server.config().message_timeout, None);
    let mut compressor = Compress::new_with_window_bits(Compression::fast(), false, 15);
    let first = deflate(&mut compressor, &[0u8; 4096]);
    // A compressed first frame (RSV1, binary), not final: written by hand.
    pair.to_server.extend_from_slice(&super::pair::client_frame(0x42, &first));
    pair.drive();
    assert!(pair.server_in.events.is_empty(), "{:?}", pair.server_in.events);
    pair.advance(crate::deflate::MESSAGE_TIMEOUT);
    pair.drive();
    assert_eq!(pair.server_in.events, [Seen::Timeout(crate::Timeout::Message)]);
    assert!(
        matches!(pair.client_in.events.last(), Some(Seen::Close(Some(CloseCode::Policy), _))),
        "{:?}",
        pair.client_in.events
    );
}
