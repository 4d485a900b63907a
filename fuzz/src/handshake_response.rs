//! `handshake_response`: [`handshake::parse_response`] on arbitrary bytes.
//!
//! Input: byte 0 picks the byte limit (bits 0–1, as in
//! `handshake_request`) and the offered subprotocols (bits 2–3); byte 1 is
//! the client's nonce byte: the key is `client_key([byte1; 16])` and the
//! expected accept value its RFC 6455 §1.3 hash; the rest is the response.
//! Asserted:
//!
//! * prefix consistency, as for requests: every (sampled) prefix of an
//!   accepted or incomplete response is `Ok(None)`, of a refused one
//!   `Ok(None)` or the same error;
//! * `Ok(None)` only below the limit; an accepted response is at most the
//!   limit and the input long, parses the same alone and with bytes after
//!   it, is `TooLarge` with the limit one below its length, and is refused
//!   for any other accept value;
//! * a selected subprotocol is non-empty, trimmed, and one of those offered.

use roomwire_core::handshake::{self, HandshakeError, Response, parse_response};

use crate::prefix_lengths;

/// The comma-joined subprotocols bits 2–3 of byte 0 offer.
pub fn offered(sel: u8) -> &'static str {
    match (sel >> 2) & 3 {
        0 => "",
        1 => "chat",
        2 => "chat,superchat",
        _ => "roomwire.v1.json, roomwire.v1.postcard ,x",
    }
}

/// The accept value a client with nonce `[nonce; 16]` expects.
pub fn expected_accept(nonce: u8) -> [u8; 28] {
    handshake::accept_key(&handshake::client_key([nonce; 16]))
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let [sel, nonce, raw @ ..] = data else {
        return;
    };
    let limit = crate::handshake_request::limit(*sel, raw.len());
    let offered = offered(*sel);
    let accept = expected_accept(*nonce);
    fn parse<'a>(
        bytes: &'a [u8],
        limit: usize,
        accept: &[u8; 28],
        offered: &str,
    ) -> Result<Option<(Response<'a>, usize)>, HandshakeError> {
        parse_response(bytes, limit, accept, offered)
    }
    let parse = |bytes, limit| parse(bytes, limit, &accept, offered);
    match parse(raw, limit) {
        Ok(None) => {
            assert!(raw.len() < limit, "Ok(None) at or over the limit");
            for k in prefix_lengths(raw.len()) {
                assert!(matches!(parse(&raw[..k], limit), Ok(None)), "prefix {k} of an incomplete response");
            }
        }
        Ok(Some((resp, len))) => {
            assert!(len > 0 && len <= raw.len() && len <= limit, "len {len}, input {}, limit {limit}", raw.len());
            if let Some(p) = resp.protocol {
                assert!(!p.is_empty());
                assert_eq!(p.trim(), p);
                assert!(offered.split(',').any(|o| o.trim() == p), "{p:?} not in {offered:?}");
            }
            assert_eq!(parse(&raw[..len], limit), Ok(Some((resp, len))));
            let mut longer = raw[..len].to_vec();
            longer.extend_from_slice(b"\x81\x05Hello HTTP/1.1 101 x\r\n\r\n");
            assert_eq!(parse(&longer, limit), Ok(Some((resp, len))));
            assert_eq!(parse(&raw[..len], len - 1), Err(HandshakeError::TooLarge));
            let other = expected_accept(nonce.wrapping_add(1));
            assert!(parse_response(&raw[..len], limit, &other, offered).is_err(), "accepted a wrong accept value");
            for k in prefix_lengths(len) {
                let got = parse(&raw[..k], limit);
                assert!(matches!(got, Ok(None)), "prefix {k} of an accepted {len}-byte response: {got:?}");
            }
        }
        Err(error) => {
            for k in prefix_lengths(raw.len()) {
                match parse(&raw[..k], limit) {
                    Ok(None) => {}
                    Err(e) if e == error => {}
                    other => panic!("prefix {k} gives {other:?}, the whole input {error:?}"),
                }
            }
        }
    }
}
