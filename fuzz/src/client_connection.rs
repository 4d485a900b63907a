//! `client_connection`: a whole client [`Connection`] fed arbitrary server
//! bytes split at arbitrary points.
//!
//! The client first writes its Upgrade request (its key comes from a
//! deterministic [`MaskKeySource`], as do its masking keys, so both runs
//! mask identically). Input: byte 0 is flags: bit 0 prepends a valid `101`
//! answering that request (its accept value read back from the request we
//! wrote), bit 1 offers subprotocols, bit 2 makes the 101 select one, bit 3
//! turns keepalive on, bits 4–5 pick a configuration preset, bit 6 calls
//! `handle_timeout` between reads; bytes 1–4 are the chunk lengths (each
//! 1–256, cycled); the rest is the wire (server frames, unmasked).
//!
//! Asserted as for `server_connection`: the transcript (open, handshake
//! failure, messages, control payloads, close codes, protocol errors,
//! states, final timeouts) and the transmitted bytes (request, masked pongs
//! and close frames) are the same split and whole.

use roomwire_core::handshake::{ClientRequest, parse_request, write_accept};
use roomwire_core::{Config, Connection, Instant, MaskKeySource};

use crate::driver::{self, Answer, Driver};

/// The subprotocols bit 1 offers.
pub const PROTOCOLS: [&str; 2] = ["chat", "superchat"];

/// A deterministic key source (an LCG): fine for fuzzing, never for a
/// real client (RFC 6455 §10.3).
pub fn keys() -> impl MaskKeySource {
    let mut state = 0x2545_F491u32;
    move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        state.to_le_bytes()
    }
}

/// The client's request.
pub fn client_request(offer: bool) -> ClientRequest<'static> {
    ClientRequest {
        host: "example.com",
        target: "/chat",
        protocols: if offer { &PROTOCOLS } else { &[] },
        headers: &[("Origin", "http://example.com")],
    }
}

/// A client driver whose request has been written, and the 101 that
/// accepts it (selecting `PROTOCOLS[1]` if `select`).
pub fn start(config: Config, offer: bool, select: bool) -> (Driver<impl MaskKeySource>, Vec<u8>) {
    let mut driver = Driver::new(Connection::client(config, Instant::ZERO, keys()), Answer::Refuse);
    let mut out = vec![0u8; 1024];
    let n = driver.conn().write_request(&client_request(offer), &mut out).unwrap_or_else(|e| panic!("{e:?}"));
    let request = &out[..n];
    let accept = match parse_request(request, usize::MAX) {
        Ok(Some((req, len))) if len == n => req.accept_key(),
        other => panic!("our own request does not parse: {other:?}"),
    };
    let mut response = vec![0u8; 1024];
    let protocol = select.then_some(PROTOCOLS[1]);
    let m = write_accept(&accept, protocol, &[], &mut response).unwrap_or_else(|e| panic!("{e:?}"));
    response.truncate(m);
    driver.tx.extend_from_slice(request);
    (driver, response)
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let [flags, l0, l1, l2, l3, wire @ ..] = data else {
        return;
    };
    let flags = *flags;
    let (offer, select) = (flags & 2 != 0, flags & 4 != 0);
    let config = driver::config(flags >> 4, flags & 8 != 0);
    let (_, response) = start(config, offer, select);
    let mut input = if flags & 1 != 0 { response } else { Vec::new() };
    input.extend_from_slice(wire);
    let make = || start(config, offer, select).0;
    driver::compare_splits(make, &input, &[*l0, *l1, *l2, *l3], flags & 0x40 != 0);
}
