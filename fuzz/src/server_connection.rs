//! `server_connection`: a whole server [`Connection`] fed arbitrary bytes
//! split at arbitrary points.
//!
//! Input: byte 0 is flags: bit 0 prepends a valid client Upgrade request
//! (so that the frame path is reached without the fuzzer inventing one),
//! bit 1 refuses the request instead of accepting it, bit 2 selects the
//! first offered subprotocol, bit 3 turns keepalive on, bits 4–5 pick a
//! configuration preset (limits down to 64-byte handshakes and 0-byte
//! messages), bit 6 calls `handle_timeout` between reads, bit 7 answers the
//! request only after the handshake deadline (which must refuse the late
//! `accept` and keep the connection closed); bytes 1–4 are
//! the chunk lengths (each 1–256, cycled); the rest is the wire.
//!
//! The input is fed in those chunks and whole, each through the adapter
//! discipline of [`crate::driver`]; asserted: equal transcripts (request,
//! answer, messages, control payloads, close codes, protocol error codes,
//! handshake failures, states, final timeouts) and equal transmitted bytes
//! (101 or refusal, pongs, close frames), plus the driver's invariants.

use roomwire_core::Connection;
use roomwire_core::handshake::{ClientRequest, client_key, write_request};

use crate::driver::{self, Answer, Driver};

/// The nonce of the prepended request's `Sec-WebSocket-Key`.
pub const NONCE: [u8; 16] = *b"roomwire-fuzzing";

/// The valid Upgrade request bit 0 prepends.
pub fn upgrade_request() -> Vec<u8> {
    let req = ClientRequest {
        host: "example.com:9001",
        target: "/chat?room=a",
        protocols: &["chat", "superchat"],
        headers: &[("Origin", "http://example.com"), ("Authorization", "Bearer t0k"), ("Cookie", "sid=1")],
    };
    let mut out = vec![0u8; 1024];
    let n = write_request(&req, &client_key(NONCE), &mut out).unwrap_or_else(|e| panic!("{e:?}"));
    out.truncate(n);
    out
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let [flags, l0, l1, l2, l3, wire @ ..] = data else {
        return;
    };
    let flags = *flags;
    let mut input = if flags & 1 != 0 { upgrade_request() } else { Vec::new() };
    input.extend_from_slice(wire);
    let answer = match flags {
        _ if flags & 0x80 != 0 => Answer::Late,
        _ if flags & 2 != 0 => Answer::Refuse,
        _ => Answer::Accept { protocol: flags & 4 != 0 },
    };
    let config = driver::config(flags >> 4, flags & 8 != 0);
    let make = || Driver::new(Connection::server(config, roomwire_core::Instant::ZERO), answer);
    driver::compare_splits(make, &input, &[*l0, *l1, *l2, *l3], flags & 0x40 != 0);
}
